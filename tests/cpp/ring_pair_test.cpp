// Unit tests of recv::chunk_ring_pair (free-ring source, data-ring sink, graveyard).
#include <gtest/gtest.h>
#include <chrono>
#include <memory>
#include <thread>
#include "recv/chunk/ring_pair.h"

using namespace spead2gpu;
using namespace spead2gpu::recv;
using namespace std::chrono_literals;

TEST(ChunkRingPair, AcquireCountsOnlyTimeSpentWaiting)
{
    auto data = std::make_shared<chunk_ringbuffer>(2), free = std::make_shared<chunk_ringbuffer>(2);
    chunk_ring_pair pair(data, free);
    free->push(std::make_unique<chunk>());
    std::uint64_t wait_ns = 0;
    EXPECT_NE(pair.acquire(wait_ns), nullptr);
    EXPECT_EQ(wait_ns, 0u);
    std::thread refill(
        [&]
        {
            std::this_thread::sleep_for(50ms);
            free->push(std::make_unique<chunk>());
        });
    EXPECT_NE(pair.acquire(wait_ns), nullptr);
    refill.join();
    EXPECT_GE(wait_ns, 40'000'000u);
    EXPECT_LT(wait_ns, 5'000'000'000u);
}

TEST(ChunkRingPair, StopWakesAcquireAndSendsDeliveriesToTheGraveyard)
{
    auto data = std::make_shared<chunk_ringbuffer>(1), free = std::make_shared<chunk_ringbuffer>(1);
    chunk_ring_pair pair(data, free);
    pair.deliver(std::make_unique<chunk>()); // fills the data ring
    std::thread stopper(
        [&]
        {
            std::this_thread::sleep_for(30ms);
            pair.stop();
        });
    std::uint64_t wait_ns = 0;
    EXPECT_EQ(pair.acquire(wait_ns), nullptr); // woken by the stop
    stopper.join();
    pair.deliver(std::make_unique<chunk>()); // stopped: no blocking, buried
    auto buried = pair.take_graveyard();
    EXPECT_EQ(buried.size(), 1u);
    EXPECT_TRUE(pair.take_graveyard().empty());
    // What was delivered before the stop is still there for the consumer.
    EXPECT_NE(data->pop(), nullptr);
    EXPECT_THROW(data->pop(), ringbuffer_stopped);
}

TEST(ChunkRingPair, BlockedDeliveryIsReleasedByTheStop)
{
    auto data = std::make_shared<chunk_ringbuffer>(1), free = std::make_shared<chunk_ringbuffer>(1);
    chunk_ring_pair pair(data, free);
    pair.deliver(std::make_unique<chunk>());
    std::thread stopper(
        [&]
        {
            std::this_thread::sleep_for(30ms);
            pair.stop();
        });
    pair.deliver(std::make_unique<chunk>()); // blocks on the full ring until the stop
    stopper.join();
    EXPECT_EQ(pair.take_graveyard().size(), 1u);
}

TEST(ChunkRingPair, DataRingEndsWithTheLastProducer)
{
    auto data = std::make_shared<chunk_ringbuffer>(4), free = std::make_shared<chunk_ringbuffer>(4);
    chunk_ring_pair a(data, free), b(data, free);
    a.deliver(std::make_unique<chunk>());
    a.producer_done();
    EXPECT_FALSE(data->is_stopped());
    b.producer_done();
    EXPECT_TRUE(data->is_stopped());
    EXPECT_NE(data->pop(), nullptr);
    EXPECT_THROW(data->pop(), ringbuffer_stopped);
}

TEST(Ringbuffer, StorageIsPreallocatedAndWraps)
{
    ringbuffer<int> ring(3);
    for (int round = 0; round < 10; round++)
    {
        ring.push(round * 3);
        ring.push(round * 3 + 1);
        EXPECT_EQ(ring.pop(), round * 3);
        ring.push(round * 3 + 2);
        EXPECT_EQ(ring.pop(), round * 3 + 1);
        EXPECT_EQ(ring.pop(), round * 3 + 2);
    }
    ring.push(1);
    ring.push(2);
    ring.push(3);
    EXPECT_THROW(ring.try_push(4), ringbuffer_full);
    EXPECT_FALSE(ring.push_for(4, 10ms));
    ringbuffer<int> unbounded(0);
    for (int i = 0; i < 1000; i++)
        unbounded.push(int(i));
    for (int i = 0; i < 1000; i++)
        EXPECT_EQ(unbounded.pop(), i);
}

TEST(Ringbuffer, TryPushStatusLeavesTheValueWhenNotPushed)
{
    using status = ringbuffer<std::unique_ptr<int>>::push_status;
    ringbuffer<std::unique_ptr<int>> ring(1);
    auto first = std::make_unique<int>(1);
    EXPECT_EQ(ring.try_push_status(std::move(first)), status::pushed);
    auto second = std::make_unique<int>(2);
    EXPECT_EQ(ring.try_push_status(std::move(second)), status::full);
    ASSERT_TRUE(second); // not moved from: the caller can still push it blocking
    EXPECT_EQ(*second, 2);
    EXPECT_EQ(*ring.pop(), 1);
    ring.stop();
    EXPECT_EQ(ring.try_push_status(std::move(second)), status::stopped);
    ASSERT_TRUE(second);
    EXPECT_THROW(ring.pop(), ringbuffer_stopped);
}

// The blocking push and pop spin before they sleep, with a budget that adapts
// to how long the other side takes. Whatever the budget has become, every
// item arrives once and in order, and a stop wakes a waiter that is spinning
// or sleeping: bounded rounds that alternate a fast and a slow side (the
// budgets grow, then shrink) on a ring of 4.
TEST(Ringbuffer, AdaptiveWaitsDeliverInOrderWhateverTheirPace)
{
    constexpr int per_phase = 200;
    const std::chrono::microseconds paces[] = {0us, 200us, 0us, 5us, 300us, 0us};
    for (bool slow_consumer : {false, true})
    {
        ringbuffer<int> ring(4);
        std::thread producer(
            [&]
            {
                int value = 0;
                for (auto pace : paces)
                    for (int i = 0; i < per_phase; i++)
                    {
                        if (!slow_consumer && pace > 0us)
                            std::this_thread::sleep_for(pace);
                        ring.push(int(value++));
                    }
                ring.stop();
            });
        int expected = 0;
        try
        {
            while (true)
            {
                int phase = expected / per_phase;
                if (slow_consumer && phase < 6 && paces[phase] > 0us)
                    std::this_thread::sleep_for(paces[phase]);
                auto got = (expected % 2) ? ring.pop_for(1s) : std::optional<int>(ring.pop());
                ASSERT_TRUE(got.has_value());
                ASSERT_EQ(*got, expected);
                expected++;
            }
        }
        catch (ringbuffer_stopped &)
        {
        }
        producer.join();
        EXPECT_EQ(expected, per_phase * 6);
    }
    // A stop releases a consumer waiting on an empty ring and a producer
    // waiting on a full one, at once.
    ringbuffer<int> empty(2), full(1);
    full.push(1);
    auto start = std::chrono::steady_clock::now();
    std::thread consumer([&] { EXPECT_THROW(empty.pop(), ringbuffer_stopped); });
    std::thread producer([&] { EXPECT_THROW(full.push(2), ringbuffer_stopped); });
    std::this_thread::sleep_for(20ms);
    empty.stop();
    full.stop();
    consumer.join();
    producer.join();
    EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}
