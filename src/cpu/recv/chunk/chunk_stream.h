/**
 * @file chunk_stream.h
 * Chunk streams: heaps are written straight into chunks chosen by a
 * placement callback, within a sliding window of chunks.
 */
#pragma once

#include <memory>
#include <mutex>
#include <vector>
#include "recv/chunk/chunk.h"
#include "recv/chunk/layout.h"
#include "recv/chunk/window.h"
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
 * dropped and counted, never written). The chunks live in a
 * @ref chunk_window of max_chunks consecutive ids; a heap for a newer chunk
 * retires the oldest chunks (cutting off heaps still writing to them and
 * handing them to ready_chunk) and allocates new ones in order.
 *
 * Subclasses provide allocate_chunk / ready_chunk and chain
 * stopped_locked (which flushes the window).
 */
class chunk_stream : public stream, private heap_placer
{
    std::unique_ptr<chunk_layout> layout; ///< this stream's copy of a built-in layout
    chunk_stream_config chunk_config; ///< with a layout resolved to its placement function
    std::size_t too_old_index, rejected_heaps_index, bad_placement_index;
    chunk_window window; ///< chunks the stream may write into (owned by the subclass's source)
    std::vector<std::int64_t> item_values; ///< placement items of the current packet (reused per heap)
    std::unique_ptr<std::uint8_t[]> extra_scratch; ///< the callback's extra output, copied into the chunk

    bool place(const packet_header &packet, live_heap &heap) override;
    void packet_added(const packet_header &packet, live_heap &heap) override;
    void heap_ready(live_heap &&h) override;

    /// A chunk leaves the window: cut off heaps still writing to it, then ready_chunk.
    void retire(chunk *c, std::uint64_t *stats);

protected:
    const std::size_t free_chunk_wait_index;

    /**
     * Obtain a chunk for @a chunk_id; null if none can be had (e.g. stopped).
     * The chunk stays owned by the subclass until handed back to ready_chunk.
     */
    virtual chunk *allocate_chunk(std::uint64_t chunk_id, std::uint64_t *stats) = 0;
    /// A chunk leaves the window (complete or not).
    virtual void ready_chunk(chunk *c, std::uint64_t *stats) = 0;
    /// The window's oldest chunk id moved to @a head (stream lock held).
    virtual void window_head_moved(std::uint64_t head) {}
    /// Retire chunks older than @a chunk_id (stream lock held).
    void flush_until(std::uint64_t chunk_id, std::uint64_t *stats);
    /// Retire every chunk in the window (stream lock held; stats counted at once).
    void flush_chunks();
    void stopped_locked(bool by_user) override;

public:
    chunk_stream(std::shared_ptr<thread_pool> pool, const stream_config &config,
                 const chunk_stream_config &chunk_config);
    const chunk_stream_config &get_chunk_config() const { return chunk_config; }
};

} // namespace spead2gpu::recv
