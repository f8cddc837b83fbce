/**
 * @file ring_pair.h
 * Where chunks come from and where they go: a free ring (the source) and a
 * data ring (the sink), shared by chunk ring streams and chunk stream groups.
 */
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>
#include "recv/chunk/chunk.h"

namespace spead2gpu::recv
{

/**
 * The chunk source and sink of a chunk ring stream or a chunk stream group.
 *
 * - acquire() takes a chunk from the free ring, blocking while it is empty
 *   (the wait is added to the caller's wait statistic); nullptr once the free
 *   ring is stopped and empty.
 * - deliver() pushes a finished chunk to the data ring, blocking while it is
 *   full; once the data ring is stopped the chunk goes to the graveyard.
 * - The graveyard keeps chunks that can no longer be delivered until their
 *   owner collects them (take_graveyard): chunks may own Python objects,
 *   which must only be destroyed by a thread holding the GIL.
 *
 * Thread safety: acquire/deliver may be called from any thread (the rings
 * lock themselves); @ref graveyard_mutex protects only the graveyard and is
 * never held while waiting on a ring.
 */
class chunk_ring_pair
{
    std::shared_ptr<chunk_ringbuffer> data_ring; ///< finished chunks, in chunk-id order
    std::shared_ptr<chunk_ringbuffer> free_ring; ///< chunks ready to be filled
    std::mutex graveyard_mutex; ///< protects graveyard
    std::vector<std::unique_ptr<chunk>> graveyard; ///< undeliverable chunks awaiting their owner

public:
    /// Registers this pair as a producer of @a data_ring (spead2: the ring stops when the last producer ends).
    chunk_ring_pair(std::shared_ptr<chunk_ringbuffer> data_ring, std::shared_ptr<chunk_ringbuffer> free_ring);

    const std::shared_ptr<chunk_ringbuffer> &get_data_ringbuffer() const { return data_ring; }
    const std::shared_ptr<chunk_ringbuffer> &get_free_ringbuffer() const { return free_ring; }

    /// A free chunk (blocking); nullptr once the free ring has stopped. Adds the wait to @a wait_ns.
    std::unique_ptr<chunk> acquire(std::uint64_t &wait_ns);
    /// Push @a c to the data ring (blocking), or to the graveyard if the data ring has stopped.
    void deliver(std::unique_ptr<chunk> &&c);
    /// Keep @a c until the owner collects it.
    void bury(std::unique_ptr<chunk> &&c);
    /// The producer has ended (network end of stream): the data ring stops once every producer has.
    void producer_done() { data_ring->remove_producer(); }
    /// Stop both rings (user stop): wakes anyone blocked on either.
    void stop();
    /// Chunks that could not be delivered; the caller destroys them (with the GIL if they hold Python objects).
    std::vector<std::unique_ptr<chunk>> take_graveyard();
};

} // namespace spead2gpu::recv
