/**
 * @file pipeline.h
 * The chunk pipeline behind the GPU chunk stream: a pool of chunks of one
 * memory kind feeding a chunk stream (or group) through its free ring and
 * data ring, the staged host-to-device copy for the `device` kind, and
 * event-aware recycling.
 *
 *   kind host/pinned/mapped:
 *     free ring ──► chunk stream (network thread) ──► data ring ──► consumer
 *        ▲                                                            │ release(stream): event
 *        └──── present zeroed ◄── release recycler (event done) ◄─────┘
 *
 *   kind device:
 *     staging free ──► chunk stream ──► staging data ──► copy thread ──► output ring ──► consumer
 *        ▲                               (cudaMemcpyAsync on the copy stream,   │ (stream waits on the
 *        │                                ready event per chunk)                │  chunk's ready event)
 *        └── present zeroed ◄── staging recycler (copy event done)              │ release(stream): event
 *     device free ◄──────────────────────── release recycler (event done) ◄─────┘
 *
 * Nothing here takes the GIL. The copy thread never synchronises with the
 * GPU; only the recycler threads wait, each on one event at a time.
 *
 * All GPU work goes through a @ref runtime: CUDA, or the emulated GPU
 * (emulated_runtime.h) on which the same code runs without a GPU, with
 * events that really complete late.
 *
 * Failure (the pipeline's error state): if the copy thread or a recycler
 * cannot use the GPU (a failed copy, event record, query or wait), the
 * chunk concerned is retired — never reused or freed, since the GPU may
 * still touch it — the error is kept (error()), and every ring is stopped:
 * the stream stops, and the consumer's get() raises instead of waiting for
 * chunks that will never come back.
 */
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>
#include "gpu/memory.h"
#include "recv/chunk/chunk.h"
#include "common/ringbuffer.h"

namespace spead2gpu::gpu
{

/// Sizes of a chunk's three regions, laid out in one allocation per chunk.
struct chunk_geometry
{
    static constexpr std::size_t alignment = 256;
    std::size_t data_size = 0;
    std::size_t present_size = 0;
    std::size_t extra_size = 0;

    static std::size_t round(std::size_t n) { return (n + alignment - 1) / alignment * alignment; }
    std::size_t data_offset() const { return 0; }
    std::size_t present_offset() const { return round(data_size); }
    std::size_t extra_offset() const { return present_offset() + round(present_size); }
    /// Bytes of one chunk's allocation (and of its single H2D copy).
    std::size_t total() const { return extra_offset() + extra_size; }
};

/// A chunk of the pipeline (network chunk, staging chunk or device chunk).
class pipeline_chunk : public recv::chunk
{
public:
    std::size_t slot = 0; ///< index among the chunks of its kind (consumer views are cached per slot)
    bool staging = false; ///< a pinned staging chunk of the `device` kind (never seen by the consumer)
    std::shared_ptr<buffer> memory; ///< its one allocation (shared with Python views of it)
    std::unique_ptr<event> ready; ///< device/staging: recorded after the H2D copy
    std::unique_ptr<event> released; ///< recorded on the consumer's stream at release
};

using pipeline_chunk_ptr = std::unique_ptr<recv::chunk>;

/// Counters of a pipeline (all monotonic).
struct pipeline_counters
{
    std::atomic<std::uint64_t> chunks_delivered{0}; ///< handed to the consumer
    std::atomic<std::uint64_t> chunks_released{0}; ///< given back by the consumer
    std::atomic<std::uint64_t> chunks_copied{0}; ///< device kind: H2D copies issued
    std::atomic<std::uint64_t> bytes_copied{0};
    std::atomic<std::uint64_t> copy_waits{0}; ///< copy thread found no free device chunk
    std::atomic<std::uint64_t> copy_wait_ns{0}; ///< ... and waited this long in total
    std::atomic<std::uint64_t> release_event_waits{0}; ///< recycler found a release event pending
    std::atomic<std::uint64_t> staging_event_waits{0}; ///< recycler found a copy event pending
};

/**
 * A thread that hands chunks on once their event has completed, in FIFO
 * order, without blocking whoever queued them.
 */
class event_recycler
{
public:
    using action = std::function<void(pipeline_chunk_ptr &&)>;
    /// Called (on the recycler thread) when an event cannot be waited for.
    using failure = std::function<void(const std::string &)>;

private:
    struct entry
    {
        pipeline_chunk_ptr chunk;
        event *ev = nullptr;
    };
    ringbuffer<entry> queue{0};
    action done;
    failure failed;
    std::atomic<std::uint64_t> &pending_waits;
    std::shared_ptr<runtime> rt;
    int device;
    std::thread thread;
    void run();

public:
    event_recycler(std::shared_ptr<runtime> rt, int device, action done, failure failed,
                   std::atomic<std::uint64_t> &pending_waits);
    ~event_recycler();
    void push(pipeline_chunk_ptr &&c, event *ev);
    /// Finish the queued entries (waiting for their events) and end the thread.
    void stop();
};

/**
 * Chunks of one kind and the machinery that moves them; see the file comment.
 * The stream (or group) is built separately on network_data_ring() and
 * network_free_ring().
 */
class chunk_pipeline : public std::enable_shared_from_this<chunk_pipeline>
{
    memory_kind kind_;
    int device_;
    std::shared_ptr<runtime> rt; ///< CUDA or the emulated GPU (unused for `host`)
    chunk_geometry geom;
    std::size_t n_network, n_device;
    std::shared_ptr<recv::chunk_ringbuffer> net_data, net_free; ///< rings of the chunk stream
    std::shared_ptr<recv::chunk_ringbuffer> dev_free, output; ///< device kind only (output = net_data otherwise)
    std::vector<std::shared_ptr<buffer>> consumer_memory; ///< per consumer-visible slot
    std::unique_ptr<stream> copy_stream;
    std::unique_ptr<event_recycler> staging_recycler, release_recycler;
    std::thread copy_thread;
    std::mutex error_mutex;
    std::string error_;
    std::atomic<bool> stopped{false};
    pipeline_counters counters;

    std::unique_ptr<pipeline_chunk> make_chunk(std::size_t slot, memory_kind kind, bool staging);
    void copy_loop();
    /// Back to the network free ring with present zeroed (dropped if the ring is stopped).
    void recycle_network(pipeline_chunk_ptr &&c);
    void recycle_device(pipeline_chunk_ptr &&c);
    void set_error(const std::string &msg);
    /// Enter the error state (see the file comment): keep @a msg, stop every ring.
    void fail(const std::string &msg);

public:
    /**
     * @param n_chunks  network chunks (staging chunks for `device`)
     * @param n_device_chunks  device chunks (`device` only)
     * @param rt  the GPU: CUDA (the default) or an emulated_runtime
     */
    chunk_pipeline(memory_kind kind, int device, const chunk_geometry &geom, std::size_t n_chunks,
                   std::size_t n_device_chunks, std::shared_ptr<runtime> rt = cuda_runtime());
    /// Whether the pipeline runs on an emulated GPU.
    bool emulated() const { return rt && rt->emulated(); }
    const std::shared_ptr<runtime> &get_runtime() const { return rt; }
    ~chunk_pipeline();

    memory_kind kind() const { return kind_; }
    int device() const { return device_; }
    const chunk_geometry &geometry() const { return geom; }
    std::size_t network_chunks() const { return n_network; }
    std::size_t device_chunks() const { return n_device; }
    const std::shared_ptr<recv::chunk_ringbuffer> &network_data_ring() const { return net_data; }
    const std::shared_ptr<recv::chunk_ringbuffer> &network_free_ring() const { return net_free; }
    const std::shared_ptr<recv::chunk_ringbuffer> &output_ring() const { return output; }
    /// Memory of consumer-visible chunk @a slot (one allocation, see chunk_geometry).
    const std::shared_ptr<buffer> &slot_memory(std::size_t slot) const { return consumer_memory.at(slot); }
    std::size_t consumer_slots() const { return consumer_memory.size(); }
    std::uintptr_t copy_stream_handle() const { return copy_stream ? copy_stream->handle() : 0; }

    /// Next complete chunk (blocks; throws ringbuffer_stopped at the end).
    std::unique_ptr<pipeline_chunk> pop();
    /// Next complete chunk or ringbuffer_empty / ringbuffer_stopped.
    std::unique_ptr<pipeline_chunk> try_pop();
    /// Make @a stream wait (on the device) for @a c's copy; no-op unless `device`.
    void order_before(pipeline_chunk &c, std::uintptr_t stream);
    /**
     * Give a chunk back. With @a use_stream (GPU kinds only) an event is
     * recorded on @a stream and the chunk is recycled once it completes;
     * otherwise at once. Never blocks.
     */
    void release(std::unique_ptr<pipeline_chunk> &&c, bool use_stream, std::uintptr_t stream);
    /**
     * Benchmark/test hook, instead of a stream: act as the network producer
     * for @a n chunks (ids @a first_id.., all present, data left as is), then
     * end the data ring. Measures the copy pipeline alone.
     */
    void pump(std::size_t n, std::int64_t first_id = 0);
    /// Stop every ring and thread (pending events are waited for). Idempotent.
    void stop();
    /// Error that stopped the copy thread, or "".
    std::string error();
    const pipeline_counters &get_counters() const { return counters; }
};

} // namespace spead2gpu::gpu
