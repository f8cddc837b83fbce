// Bounded stress tests of the chunk stream group state machine (recv/chunk/group.h):
// members fed by in-process queues, a consumer that recycles chunks, every
// case must end with the data ring stopped, and LOSSLESS must lose nothing.
#include <gtest/gtest.h>
#include <atomic>
#include <chrono>
#include <future>
#include <random>
#include <set>
#include <thread>
#include "common/inproc_queue.h"
#include "recv/chunk/group.h"
#include "recv/reader/in_process_readers.h"
#include "test_packets.h"

using namespace spead2gpu;
using namespace spead2gpu::recv;
using namespace std::chrono_literals;

namespace
{

constexpr std::size_t heaps_per_chunk = 4;

/// A chunk that owns its memory.
struct owned_chunk : chunk
{
    std::vector<std::uint8_t> data_mem, present_mem;
    owned_chunk() : data_mem(heaps_per_chunk * test::heap_size), present_mem(heaps_per_chunk)
    {
        data = data_mem.data();
        data_size = data_mem.size();
        present = present_mem.data();
        present_size = present_mem.size();
    }
};

/// chunk id = heap cnt / heaps_per_chunk + *user (an offset).
void place(chunk_place_data *d, std::size_t, void *user)
{
    std::int64_t cnt = d->items[0];
    std::int64_t offset = *static_cast<std::int64_t *>(user);
    d->chunk_id = cnt / std::int64_t(heaps_per_chunk) + offset;
    d->heap_index = std::size_t(cnt % std::int64_t(heaps_per_chunk));
    d->heap_offset = d->heap_index * test::heap_size;
}

struct outcome
{
    std::vector<std::int64_t> ids; ///< chunk ids in delivery order
    std::set<std::int64_t> heaps; ///< heap cnts present, with the right payload
    bool ended = false; ///< the data ring stopped by itself
};

/**
 * Run a group of @a members over @a n_heaps heaps (heap c to member c % members,
 * member @a short_member sending only its first half), @a free free chunks.
 */
outcome run_group(std::size_t members, group_eviction_mode mode, std::size_t max_chunks, std::size_t free,
                  std::size_t data_cap, std::int64_t n_heaps, std::int64_t offset, int short_member = -1,
                  bool slow_consumer = false)
{
    auto data_ring = std::make_shared<chunk_ringbuffer>(data_cap);
    auto free_ring = std::make_shared<chunk_ringbuffer>(free);
    outcome out;
    {
        chunk_stream_group group(chunk_stream_group_config().set_max_chunks(max_chunks).set_eviction_mode(mode),
                                 data_ring, free_ring);
        chunk_stream_config ccfg;
        ccfg.set_items({HEAP_CNT_ID}).set_max_chunks(max_chunks).set_place(&place, &offset);
        std::vector<std::shared_ptr<inproc_queue>> queues;
        for (std::size_t m = 0; m < members; m++)
        {
            auto &member = group.emplace_back(std::make_shared<thread_pool>(), stream_config(), ccfg);
            queues.push_back(std::make_shared<inproc_queue>());
            auto q = queues.back();
            member.add_reader([q](stream &s) { return std::make_unique<inproc_reader>(s, q); });
        }
        for (std::size_t i = 0; i < free; i++)
            free_ring->push(std::make_unique<owned_chunk>());
        std::thread sender(
            [&]
            {
                for (std::int64_t c = 0; c < n_heaps; c++)
                {
                    std::size_t m = std::size_t(c) % members;
                    if (int(m) == short_member && c >= n_heaps / 2)
                        continue;
                    for (auto &p : test::heap_packets(c))
                        queues[m]->add_packet(p.data(), p.size());
                }
                for (auto &q : queues)
                    q->stop();
            });
        auto consumer =
            std::async(std::launch::async,
                       [&]
                       {
                           while (true)
                           {
                               std::unique_ptr<chunk> c;
                               try
                               {
                                   c = data_ring->pop();
                               }
                               catch (ringbuffer_stopped &)
                               {
                                   out.ended = true;
                                   return;
                               }
                               out.ids.push_back(c->chunk_id);
                               for (std::size_t i = 0; i < heaps_per_chunk; i++)
                                   if (c->present[i])
                                   {
                                       std::int64_t cnt =
                                           (c->chunk_id - offset) * std::int64_t(heaps_per_chunk) + std::int64_t(i);
                                       bool ok = true;
                                       for (std::size_t b = 0; b < test::heap_size; b++)
                                           ok = ok && c->data[i * test::heap_size + b] == test::pattern(cnt, b);
                                       EXPECT_TRUE(ok) << "heap " << cnt;
                                       out.heaps.insert(cnt);
                                   }
                               std::fill(c->present, c->present + c->present_size, 0);
                               if (slow_consumer)
                                   std::this_thread::sleep_for(1ms);
                               free_ring->push(std::move(c));
                           }
                       });
        sender.join();
        EXPECT_EQ(consumer.wait_for(20s), std::future_status::ready) << "the data ring did not stop (hang)";
        if (consumer.wait_for(0s) != std::future_status::ready)
        {
            group.stop(); // let the test fail instead of hanging
            consumer.wait();
        }
        group.stop();
    }
    return out;
}

} // namespace

TEST(ChunkStreamGroup, LosslessDeliversEverythingWithExactlyMaxChunksFree)
{
    for (std::size_t members : {1, 2, 4, 8})
    {
        auto out = run_group(members, group_eviction_mode::LOSSLESS, 4, 4, 2, 80, 0);
        EXPECT_TRUE(out.ended);
        EXPECT_EQ(out.heaps.size(), 80u) << members << " members";
        std::vector<std::int64_t> expected;
        for (std::int64_t i = 0; i < 20; i++)
            expected.push_back(i);
        EXPECT_EQ(out.ids, expected);
    }
}

TEST(ChunkStreamGroup, MemberStoppingHalfWayDoesNotBlockTheOthers)
{
    for (auto mode : {group_eviction_mode::LOSSLESS, group_eviction_mode::LOSSY})
    {
        auto out = run_group(3, mode, 4, 4, 1, 96, 0, 2);
        EXPECT_TRUE(out.ended);
        if (mode == group_eviction_mode::LOSSLESS)
            EXPECT_EQ(out.heaps.size(), 96u - 16u); // member 2 sent 16 of its 32 heaps
    }
}

TEST(ChunkStreamGroup, ChunkIdsUpToTheInt64Limit)
{
    const std::int64_t n_chunks = 10;
    const std::int64_t offset = std::numeric_limits<std::int64_t>::max() - (n_chunks - 1);
    for (auto mode : {group_eviction_mode::LOSSLESS, group_eviction_mode::LOSSY})
    {
        auto out = run_group(2, mode, 4, 4, 2, n_chunks * 4, offset);
        EXPECT_TRUE(out.ended);
        ASSERT_FALSE(out.ids.empty());
        EXPECT_EQ(out.ids.back(), std::numeric_limits<std::int64_t>::max());
    }
}

TEST(ChunkStreamGroup, UserStopReleasesMembersBlockedOnAnEmptyFreeRing)
{
    auto data_ring = std::make_shared<chunk_ringbuffer>(8);
    auto free_ring = std::make_shared<chunk_ringbuffer>(8);
    chunk_stream_group group(chunk_stream_group_config().set_max_chunks(2), data_ring, free_ring);
    std::int64_t offset = 0;
    chunk_stream_config ccfg;
    ccfg.set_items({HEAP_CNT_ID}).set_max_chunks(2).set_place(&place, &offset);
    auto q = std::make_shared<inproc_queue>();
    auto &member = group.emplace_back(std::make_shared<thread_pool>(), stream_config(), ccfg);
    member.add_reader([q](stream &s) { return std::make_unique<inproc_reader>(s, q); });
    for (auto &p : test::heap_packets(0)) // needs a chunk; none is free
        q->add_packet(p.data(), p.size());
    std::this_thread::sleep_for(50ms);
    auto start = std::chrono::steady_clock::now();
    auto stopped = std::async(std::launch::async, [&] { group.stop(); });
    EXPECT_EQ(stopped.wait_for(5s), std::future_status::ready);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
    EXPECT_THROW(data_ring->pop(), ringbuffer_stopped);
}

TEST(ChunkStreamGroup, RandomisedStressIsBounded)
{
    std::mt19937 rng(2026);
    for (int round = 0; round < 30; round++)
    {
        std::size_t members = 1 + rng() % 6;
        std::size_t max_chunks = 1 + rng() % 4;
        std::size_t free = max_chunks + rng() % (max_chunks + 1);
        std::size_t data_cap = 1 + rng() % 4;
        auto mode = rng() % 2 ? group_eviction_mode::LOSSY : group_eviction_mode::LOSSLESS;
        int short_member = rng() % 3 == 0 ? int(rng() % members) : -1;
        auto out =
            run_group(members, mode, max_chunks, free, data_cap, 16 + rng() % 48, 0, short_member, rng() % 4 == 0);
        ASSERT_TRUE(out.ended) << "round " << round;
        for (std::size_t i = 1; i < out.ids.size(); i++)
            ASSERT_LT(out.ids[i - 1], out.ids[i]) << "chunks in id order, once each";
    }
}
