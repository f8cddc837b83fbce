/**
 * @file recv_ring_stream.h
 * A receive stream that delivers heaps through a bounded ring (Python:
 * recv.Stream). Heaps are frozen on the consumer's side of the ring.
 */
#pragma once

#include <chrono>

#include <optional>
#include <variant>
#include "recv/heap/heap.h"
#include "recv/stream/stream.h"
#include "common/ringbuffer.h"

namespace spead2gpu::recv
{

/// Ring options (Python: recv.RingStreamConfig).
class ring_stream_config
{
    std::size_t heaps = 4;
    bool contiguous_only = true;
    bool incomplete_keep_payload_ranges = false;

public:
    static constexpr std::size_t default_heaps = 4;
    ring_stream_config &set_heaps(std::size_t v)
    {
        heaps = nonzero(v, "heaps must be at least 1");
        return *this;
    }
    std::size_t get_heaps() const { return heaps; }
    ring_stream_config &set_contiguous_only(bool v)
    {
        contiguous_only = v;
        return *this;
    }
    bool get_contiguous_only() const { return contiguous_only; }
    ring_stream_config &set_incomplete_keep_payload_ranges(bool v)
    {
        incomplete_keep_payload_ranges = v;
        return *this;
    }
    bool get_incomplete_keep_payload_ranges() const { return incomplete_keep_payload_ranges; }
};

/**
 * Stream whose complete heaps (and, unless contiguous_only, incomplete ones)
 * are pushed to a ring of live heaps. A full ring blocks the worker (counted
 * in worker_blocked); stop() stops the ring first so the worker is released.
 */
class ring_stream : public stream
{
    ring_stream_config ring_config;
    ringbuffer<live_heap> ring;
    rate_limited_log incomplete_log;

    /// Stop the ring first, so that a worker blocked on a full ring lets go of the stream lock.
    void stop_requested() override;
    /// Network end: the ring stops (heaps already in it are still delivered).
    void stopped_locked(bool by_user) override;
    void heap_ready(live_heap &&h) override;

public:
    using frozen = std::variant<heap, incomplete_heap>;

    ring_stream(std::shared_ptr<thread_pool> pool, const stream_config &config, const ring_stream_config &ring_config);
    ~ring_stream() override;

    const ring_stream_config &get_ring_config() const { return ring_config; }
    /// Blocking pop; throws ringbuffer_stopped once stopped and drained.
    frozen pop();
    /// Pop, waiting at most @a timeout (nullopt on timeout); throws ringbuffer_stopped once stopped and drained.
    std::optional<frozen> pop_for(std::chrono::nanoseconds timeout);
    /// Non-blocking pop that reports an empty ring as nullopt (no exception).
    std::optional<frozen> try_pop_ready();
    /// Non-blocking pop; throws ringbuffer_empty or ringbuffer_stopped.
    frozen try_pop();
    /// Readable while heaps are available or the stream has stopped.
    int fd() const { return ring.data_fd(); }
    std::size_t ring_size() const { return ring.size(); }
    std::size_t ring_capacity() const { return ring.capacity(); }

private:
    frozen freeze(live_heap &&h);
};

} // namespace spead2gpu::recv
