// Unit tests of recv::chunk_window against a reference model.
#include <gtest/gtest.h>
#include <algorithm>
#include <cstdint>
#include <memory>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>
#include "recv/chunk/window.h"

using namespace spead2gpu::recv;

namespace
{

/// Records every callback, and owns the chunks it allocates.
struct recorder
{
    std::vector<std::string> events;
    std::vector<std::unique_ptr<chunk>> owned;
    bool fail_allocations = false;

    auto ready()
    {
        return [this](chunk *c) { events.push_back("ready " + std::to_string(c->chunk_id)); };
    }
    auto moved()
    {
        return [this](std::uint64_t h) { events.push_back("head " + std::to_string(h)); };
    }
    auto allocate()
    {
        return [this](std::uint64_t id) -> chunk *
        {
            events.push_back("alloc " + std::to_string(id));
            if (fail_allocations)
                return nullptr;
            owned.push_back(std::make_unique<chunk>());
            owned.back()->chunk_id = std::int64_t(id);
            return owned.back().get();
        };
    }
};

} // namespace

TEST(ChunkWindow, AllocatesInOrderAndRetiresAtTheHead)
{
    chunk_window w(3);
    recorder r;
    bool too_old;
    EXPECT_EQ(w.get(1, r.ready(), r.moved(), r.allocate(), too_old)->chunk_id, 1);
    EXPECT_FALSE(too_old);
    // ids 0 and 1 were allocated (the window starts at 0)
    EXPECT_EQ(r.events, (std::vector<std::string>{"alloc 0", "alloc 1"}));
    r.events.clear();
    EXPECT_EQ(w.get(4, r.ready(), r.moved(), r.allocate(), too_old)->chunk_id, 4);
    // Head moves to 2 (reported once, after the readies, before allocations)
    EXPECT_EQ(r.events, (std::vector<std::string>{"ready 0", "ready 1", "head 2", "alloc 2", "alloc 3", "alloc 4"}));
    EXPECT_EQ(w.get_head(), 2u);
    EXPECT_EQ(w.get_tail(), 5u);
    r.events.clear();
    EXPECT_EQ(w.get(1, r.ready(), r.moved(), r.allocate(), too_old), nullptr);
    EXPECT_TRUE(too_old);
    EXPECT_TRUE(r.events.empty());
    EXPECT_EQ(w.get(3, r.ready(), r.moved(), r.allocate(), too_old)->chunk_id, 3);
    EXPECT_TRUE(r.events.empty());
}

TEST(ChunkWindow, JumpBeyondTheWindowSkipsIds)
{
    chunk_window w(2);
    recorder r;
    bool too_old;
    w.get(0, r.ready(), r.moved(), r.allocate(), too_old);
    r.events.clear();
    w.get(10, r.ready(), r.moved(), r.allocate(), too_old);
    EXPECT_EQ(r.events, (std::vector<std::string>{"ready 0", "head 9", "alloc 9", "alloc 10"}));
}

TEST(ChunkWindow, FailedAllocationsLeaveEmptySlots)
{
    chunk_window w(2);
    recorder r;
    bool too_old;
    r.fail_allocations = true;
    EXPECT_EQ(w.get(0, r.ready(), r.moved(), r.allocate(), too_old), nullptr);
    EXPECT_FALSE(too_old);
    r.fail_allocations = false;
    w.get(1, r.ready(), r.moved(), r.allocate(), too_old);
    r.events.clear();
    w.flush_all(r.ready(), r.moved());
    EXPECT_EQ(r.events, (std::vector<std::string>{"ready 1", "head 2"}));
    EXPECT_TRUE(w.empty());
}

TEST(ChunkWindow, IdsAtTheInt64Limit)
{
    const std::uint64_t last = std::numeric_limits<std::int64_t>::max();
    chunk_window w(4);
    recorder r;
    bool too_old;
    EXPECT_EQ(w.get(last, r.ready(), r.moved(), r.allocate(), too_old)->chunk_id, std::int64_t(last));
    EXPECT_EQ(w.get_tail(), last + 1);
    r.events.clear();
    w.flush_until(chunk_window::end_id, r.ready(), r.moved());
    ASSERT_EQ(r.events.size(), 5u);
    EXPECT_EQ(r.events[3], "ready " + std::to_string(last));
    EXPECT_EQ(w.get_head(), chunk_window::end_id);
    // Flushing again is a no-op, not a 2^64-step loop.
    r.events.clear();
    w.flush_until(chunk_window::end_id, r.ready(), r.moved());
    EXPECT_TRUE(r.events.empty());
}

TEST(ChunkWindow, RandomOperationsMatchAModel)
{
    std::mt19937_64 rng(12345);
    for (int round = 0; round < 200; round++)
    {
        const std::size_t size = 1 + rng() % 5;
        chunk_window w(size);
        std::map<std::uint64_t, chunk *> model; // ids in the window that hold a chunk
        std::uint64_t head = 0, tail = 0, last_ready = 0;
        bool any_ready = false;
        std::vector<std::unique_ptr<chunk>> owned;
        auto ready = [&](chunk *c)
        {
            std::uint64_t id = std::uint64_t(c->chunk_id);
            ASSERT_TRUE(!any_ready || id > last_ready) << "ready in id order, once each";
            ASSERT_EQ(model.count(id), 1u);
            model.erase(id);
            last_ready = id;
            any_ready = true;
        };
        int moves = 0;
        auto moved = [&](std::uint64_t h) { moves++; };
        auto allocate = [&](std::uint64_t id) -> chunk *
        {
            EXPECT_EQ(id, tail) << "allocated in order, each id once";
            tail = id + 1;
            if (rng() % 7 == 0)
                return nullptr;
            owned.push_back(std::make_unique<chunk>());
            owned.back()->chunk_id = std::int64_t(id);
            model[id] = owned.back().get();
            return owned.back().get();
        };
        for (int op = 0; op < 100; op++)
        {
            const std::uint64_t base = w.get_head();
            const std::uint64_t id = base + rng() % (3 * size) - std::min<std::uint64_t>(base, size);
            moves = 0;
            if (rng() % 5 == 0)
            {
                if (id > head)
                {
                    head = id;
                    tail = std::max(tail, head);
                }
                w.flush_until(id, ready, moved);
            }
            else
            {
                const bool expect_too_old = id < head;
                if (!expect_too_old && id - head >= size)
                {
                    head = id - (size - 1);
                    tail = std::max(tail, head); // the jump: skipped ids are never allocated
                }
                bool too_old;
                chunk *c = w.get(id, ready, moved, allocate, too_old);
                ASSERT_EQ(too_old, expect_too_old);
                if (!too_old)
                    ASSERT_EQ(c, model.count(id) ? model[id] : nullptr);
            }
            ASSERT_LE(moves, 1) << "one head report per operation";
            ASSERT_EQ(w.get_head(), head);
            ASSERT_LE(w.get_tail() - w.get_head(), size);
            for (auto &kv : model)
                ASSERT_GE(kv.first, head) << "nothing older than the head is held";
        }
    }
}
