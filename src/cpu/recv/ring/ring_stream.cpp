#include "recv/ring/ring_stream.h"

namespace spead2gpu::recv
{

ring_stream::ring_stream(std::shared_ptr<thread_pool> pool, const stream_config &config,
                         const ring_stream_config &ring_config)
    : stream(std::move(pool), config), ring_config(ring_config), ring(ring_config.get_heaps())
{
}

ring_stream::~ring_stream()
{
    stop();
}

void ring_stream::heap_ready(live_heap &&h)
{
    if (ring_config.get_contiguous_only() && !h.is_contiguous())
    {
        incomplete_log(log_level::debug, "dropped incomplete heap (contiguous_only is set)");
        return;
    }
    // No exception on the common path: behind a slow consumer the ring is
    // usually full, and this runs once per heap.
    if (ring.try_push_status(std::move(h)) != decltype(ring)::push_status::full)
        return; // pushed, or stopped by the user (the heap is counted but cannot be delivered)
    add_stat_now(stat_index::WORKER_BLOCKED, 1);
    publish_batch_stats(); // the wait may be long: let stats show the batch so far
    try
    {
        ring.push(std::move(h));
    }
    catch (ringbuffer_stopped &)
    {
    }
}

ring_stream::frozen ring_stream::freeze(live_heap &&h)
{
    if (h.is_contiguous())
        return frozen(std::in_place_type<heap>, std::move(h));
    return frozen(std::in_place_type<incomplete_heap>, std::move(h), ring_config.get_incomplete_keep_payload_ranges());
}

ring_stream::frozen ring_stream::pop()
{
    return freeze(ring.pop());
}

std::optional<ring_stream::frozen> ring_stream::pop_for(std::chrono::nanoseconds timeout)
{
    auto h = ring.pop_for(timeout);
    if (!h)
        return std::nullopt;
    return freeze(std::move(*h));
}

std::optional<ring_stream::frozen> ring_stream::try_pop_ready()
{
    auto h = ring.try_pop_optional();
    if (!h)
        return std::nullopt;
    return freeze(std::move(*h));
}

ring_stream::frozen ring_stream::try_pop()
{
    return freeze(ring.try_pop());
}

void ring_stream::stop_requested()
{
    ring.stop();
}

void ring_stream::stopped_locked(bool by_user)
{
    ring.stop();
}

} // namespace spead2gpu::recv
