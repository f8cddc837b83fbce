/**
 * @file recv_chunk_stream.h
 * Chunk streams: heaps are written straight into chunks chosen by a
 * placement callback, within a sliding window of chunks.
 */
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <vector>
#include "recv/chunk/chunk.h"
#include "recv/chunk/layout.h"
#include "recv/stream/stream.h"

namespace spead2gpu::recv
{

/// Names of the statistics a chunk stream adds.
constexpr const char *too_old_heaps_stat = "too_old_heaps";
constexpr const char *rejected_heaps_stat = "rejected_heaps";
constexpr const char *bad_placement_stat = "spead2gpu.bad_placement_heaps";
constexpr const char *free_chunk_wait_stat = "spead2gpu.free_chunk_wait_ns";

/**
 * Base of chunk streams. For the first packet of each heap the placement
 * callback names a chunk id, heap index and offset; the payload is then
 * copied into the chunk (bounds-checked: a placement that does not fit is
 * dropped and counted, never written). The window holds max_chunks
 * consecutive chunk ids; a heap for a newer chunk retires the oldest chunks
 * (handing them to ready_chunk) and allocates new ones in order.
 *
 * Subclasses provide allocate_chunk / ready_chunk.
 */
class chunk_stream : public stream, private heap_placer
{
    std::unique_ptr<chunk_layout> layout;   ///< this stream's copy of a built-in layout
    chunk_stream_config chunk_config;
    std::size_t too_old_index, rejected_index, bad_placement_index;
    std::vector<chunk *> window;                  ///< circular, max_chunks slots (owned by the subclass's source)
    std::int64_t head_id = 0;                     ///< oldest chunk id in the window
    std::int64_t tail_id = 0;                     ///< one past the newest allocated id
    std::size_t head_pos = 0;                     ///< slot of head_id
    std::vector<std::int64_t> item_values;
    std::unique_ptr<std::uint8_t[]> extra_scratch;
    std::uint64_t *current_stats = nullptr;       ///< batch stats while a batch runs

    bool place(const packet_header &packet, live_heap &heap) override;
    void packet_added(const packet_header &packet, live_heap &heap) override;
    void heap_ready(live_heap &&h) override;

    chunk *&slot(std::int64_t id);
    /// Chunk for @a id, advancing the window; null if too old or unavailable.
    chunk *get_chunk(std::int64_t id, std::uint64_t *stats, bool &too_old);
    /// Hand the oldest chunk to ready_chunk, after cutting off heaps still writing to it.
    void retire_head(std::uint64_t *stats);

protected:
    const std::size_t free_chunk_wait_index;

    /**
     * Obtain a chunk for @a chunk_id; null if none can be had (e.g. stopped).
     * The chunk stays owned by the subclass until handed back to ready_chunk.
     */
    virtual chunk *allocate_chunk(std::int64_t chunk_id, std::uint64_t *stats) = 0;
    /// A chunk leaves the window (complete or not).
    virtual void ready_chunk(chunk *c, std::uint64_t *stats) = 0;
    /// Retire chunks older than @a chunk_id (stream lock held).
    void flush_until(std::int64_t chunk_id, std::uint64_t *stats);
    /// The window's oldest chunk id moved to @a head (stream lock held).
    virtual void window_head_moved(std::int64_t head) {}
    /// Retire every chunk in the window (stream lock held).
    void flush_chunks();

public:
    chunk_stream(std::shared_ptr<thread_pool> pool, const stream_config &config,
                 const chunk_stream_config &chunk_config);
    const chunk_stream_config &get_chunk_config() const { return chunk_config; }
    void stop_received() override;
    void stop() override;
};

/**
 * Chunk stream fed by a free ring and delivering to a data ring (Python:
 * recv.ChunkRingStream). Taking a chunk from an empty free ring blocks the
 * worker (the wait is counted in spead2gpu.free_chunk_wait_ns); chunks that
 * cannot be delivered after a stop are kept in a graveyard until the owner
 * collects them.
 */
class chunk_ring_stream : public chunk_stream
{
    std::shared_ptr<chunk_ringbuffer> data_ring, free_ring;
    std::mutex graveyard_mutex;
    std::vector<std::unique_ptr<chunk>> graveyard;

    chunk *allocate_chunk(std::int64_t chunk_id, std::uint64_t *stats) override;
    void ready_chunk(chunk *c, std::uint64_t *stats) override;

public:
    chunk_ring_stream(std::shared_ptr<thread_pool> pool, const stream_config &config,
                      const chunk_stream_config &chunk_config,
                      std::shared_ptr<chunk_ringbuffer> data_ring,
                      std::shared_ptr<chunk_ringbuffer> free_ring);
    ~chunk_ring_stream() override;

    const std::shared_ptr<chunk_ringbuffer> &get_data_ringbuffer() const { return data_ring; }
    const std::shared_ptr<chunk_ringbuffer> &get_free_ringbuffer() const { return free_ring; }
    /// Stop both rings, then the stream.
    void stop() override;
    void stop_received() override;
    /// Chunks that could not be delivered; the caller destroys them.
    std::vector<std::unique_ptr<chunk>> take_graveyard();
};

} // namespace spead2gpu::recv
