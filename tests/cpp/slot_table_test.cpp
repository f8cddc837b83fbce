// Unit tests of recv::slot_table (and of live_heap's move, which it relies
// on) against a reference model: per substream, a FIFO of claimed heaps.
#include <gtest/gtest.h>
#include <cstdint>
#include <deque>
#include <map>
#include <random>
#include <vector>
#include "recv/heap/slot_table.h"

using namespace spead2gpu;
using namespace spead2gpu::recv;

namespace
{

/// A one-packet header of heap @a cnt (only the fields live_heap::reset reads).
packet_header header_of(s_item_pointer_t cnt)
{
    packet_header p;
    p.heap_cnt = cnt;
    p.heap_address_bits = 48;
    return p;
}

live_heap heap_of(s_item_pointer_t cnt)
{
    live_heap h;
    h.reset(header_of(cnt), 0);
    return h;
}

} // namespace

TEST(LiveHeap, MoveLeavesSourceEmpty)
{
    live_heap a = heap_of(7);
    ASSERT_FALSE(a.empty());
    live_heap b(std::move(a));
    EXPECT_TRUE(a.empty());
    EXPECT_EQ(b.get_cnt(), 7);
    live_heap c;
    c = std::move(b);
    EXPECT_TRUE(b.empty());
    EXPECT_EQ(c.get_cnt(), 7);
    EXPECT_EQ(b.get_heap_length(), -1);
    EXPECT_EQ(b.get_received_length(), 0);
    c.clear();
    EXPECT_TRUE(c.empty());
}

TEST(SlotTable, FindsClaimedHeapsAndCountsScans)
{
    slot_table t(4, 1);
    std::uint64_t dist = 0;
    EXPECT_EQ(t.find(3, dist), nullptr);
    EXPECT_EQ(dist, 4u); // a miss scans the whole substream
    for (s_item_pointer_t cnt : {10, 11, 12})
        t.claim(cnt) = heap_of(cnt);
    dist = 0;
    live_heap *h = t.find(12, dist);
    ASSERT_NE(h, nullptr);
    EXPECT_EQ(h->get_cnt(), 12);
    EXPECT_EQ(dist, 0u); // the last claim is the hint
    h = t.find(10, dist);
    ASSERT_NE(h, nullptr);
    EXPECT_EQ(dist, 1u); // found in the first slot scanned
    dist = 0;
    EXPECT_EQ(t.find(10, dist), h); // and now it is the hint
    EXPECT_EQ(dist, 0u);
}

TEST(SlotTable, ClaimReusesOldestSlotPerSubstream)
{
    slot_table t(2, 2);
    // Substream 0 gets even cnts, substream 1 odd ones; each ring holds 2.
    for (s_item_pointer_t cnt : {0, 1, 2, 3})
        t.claim(cnt) = heap_of(cnt);
    live_heap &slot = t.claim(4); // substream 0: its oldest is heap 0
    EXPECT_EQ(slot.get_cnt(), 0);
    live_heap evicted(std::move(slot));
    EXPECT_TRUE(slot.empty());
    slot = heap_of(4);
    std::uint64_t dist = 0;
    EXPECT_NE(t.find(1, dist), nullptr); // substream 1 untouched
    EXPECT_NE(t.find(3, dist), nullptr);
    EXPECT_EQ(t.find(0, dist), nullptr);
}

TEST(SlotTable, DrainIsOldestFirstAndEmptiesTable)
{
    slot_table t(3, 1);
    for (s_item_pointer_t cnt : {1, 2, 3, 4}) // 4 takes heap 1's slot
    {
        live_heap &slot = t.claim(cnt);
        live_heap old(std::move(slot));
        slot = heap_of(cnt);
    }
    std::vector<s_item_pointer_t> order;
    t.drain([&](live_heap h) { order.push_back(h.get_cnt()); });
    EXPECT_EQ(order, (std::vector<s_item_pointer_t>{2, 3, 4}));
    int left = 0;
    t.for_each([&](live_heap &) { left++; });
    EXPECT_EQ(left, 0);
}

// Random claims, finds, completions (a slot emptied by moving its heap out)
// and drains, checked against a model: per substream, the FIFO of the slot
// ring's occupants in claim order.
TEST(SlotTable, MatchesModelUnderRandomOperations)
{
    for (unsigned seed = 0; seed < 20; seed++)
    {
        std::mt19937 rng(seed);
        const std::size_t max_heaps = 1 + rng() % 4, substreams = 1 + rng() % 3;
        slot_table t(max_heaps, substreams);
        // model: per substream, the ring of cnts (-1 = empty) and its head
        std::vector<std::vector<s_item_pointer_t>> ring(substreams, std::vector<s_item_pointer_t>(max_heaps, -1));
        std::vector<std::size_t> head(substreams, 0);
        s_item_pointer_t next_cnt = 0;
        for (int step = 0; step < 2000; step++)
        {
            const unsigned op = rng() % 10;
            std::uint64_t dist = 0;
            if (op < 5)
            {
                // a packet of a new heap
                const s_item_pointer_t cnt = next_cnt++;
                const std::size_t sub = std::size_t(cnt) % substreams;
                live_heap &slot = t.claim(cnt);
                ASSERT_EQ(slot.get_cnt(), ring[sub][head[sub]]) << "seed " << seed << " step " << step;
                live_heap old(std::move(slot));
                slot = heap_of(cnt);
                ring[sub][head[sub]] = cnt;
                head[sub] = (head[sub] + 1) % max_heaps;
            }
            else if (op < 8 && next_cnt > 0)
            {
                // a packet of a recent heap: found exactly when the model holds it
                const s_item_pointer_t cnt = next_cnt - 1 - s_item_pointer_t(rng() % (max_heaps * substreams + 2));
                if (cnt < 0)
                    continue;
                const std::size_t sub = std::size_t(cnt) % substreams;
                bool held = false;
                for (auto c : ring[sub])
                    held = held || c == cnt;
                live_heap *h = t.find(cnt, dist);
                ASSERT_EQ(h != nullptr, held) << "seed " << seed << " step " << step;
                ASSERT_LE(dist, max_heaps);
                if (h && rng() % 2)
                {
                    // the heap completes: moved out, its slot is empty
                    live_heap done(std::move(*h));
                    ASSERT_EQ(done.get_cnt(), cnt);
                    for (auto &c : ring[sub])
                        if (c == cnt)
                            c = -1;
                }
            }
            else if (op == 9 && rng() % 20 == 0)
            {
                std::vector<s_item_pointer_t> got, want;
                t.drain([&](live_heap h) { got.push_back(h.get_cnt()); });
                for (std::size_t sub = 0; sub < substreams; sub++)
                    for (std::size_t k = 0; k < max_heaps; k++)
                    {
                        auto &c = ring[sub][(head[sub] + k) % max_heaps];
                        if (c >= 0)
                            want.push_back(c);
                        c = -1;
                    }
                ASSERT_EQ(got, want) << "seed " << seed << " step " << step;
            }
        }
    }
}
