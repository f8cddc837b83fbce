/**
 * @file chunk_ring_stream.h
 * A chunk stream that takes chunks from a free ring and delivers them to a
 * data ring (Python: recv.ChunkRingStream).
 */
#pragma once

#include <memory>
#include <vector>
#include "recv/chunk/chunk_stream.h"
#include "recv/chunk/ring_pair.h"

namespace spead2gpu::recv
{

/**
 * Chunk stream fed by a free ring and delivering to a data ring. Taking a
 * chunk from an empty free ring blocks the worker (the wait is counted in
 * spead2gpu.free_chunk_wait_ns); chunks that cannot be delivered after a
 * stop are kept in the ring pair's graveyard until the owner collects them.
 *
 * Stopping: a user stop() stops both rings first (so that a worker blocked
 * on either lets go of the stream lock), then flushes the window (its chunks
 * go to the graveyard). A network end flushes the window into the data ring
 * and removes this stream as a producer of it, so the consumer sees
 * ringbuffer_stopped after the last chunk.
 */
class chunk_ring_stream : public chunk_stream
{
    chunk_ring_pair rings; ///< source of free chunks and sink of finished ones

    chunk *allocate_chunk(std::uint64_t chunk_id, std::uint64_t *stats) override;
    void ready_chunk(chunk *c, std::uint64_t *stats) override;
    void stop_requested() override;
    void stopped_locked(bool by_user) override;

public:
    chunk_ring_stream(std::shared_ptr<thread_pool> pool, const stream_config &config,
                      const chunk_stream_config &chunk_config, std::shared_ptr<chunk_ringbuffer> data_ring,
                      std::shared_ptr<chunk_ringbuffer> free_ring);
    ~chunk_ring_stream() override;

    const std::shared_ptr<chunk_ringbuffer> &get_data_ringbuffer() const { return rings.get_data_ringbuffer(); }
    const std::shared_ptr<chunk_ringbuffer> &get_free_ringbuffer() const { return rings.get_free_ringbuffer(); }
    /// Chunks that could not be delivered; the caller destroys them.
    std::vector<std::unique_ptr<chunk>> take_graveyard() { return rings.take_graveyard(); }
};

} // namespace spead2gpu::recv
