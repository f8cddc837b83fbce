/**
 * @file send_writer.h
 * Transports for send streams. A writer receives batches of ready-made
 * packets from the stream's worker and puts them on the wire (or in memory).
 */
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <vector>
#include "common/inproc_queue.h"
#include "send/heap/packet_generator.h"
#include "common/thread_pool.h"

namespace spead2gpu
{
namespace send
{

/**
 * A packet handed to a writer. The stream fills @ref buf and @ref substream;
 * the writer sets @ref result (left clear on success).
 */
struct transmit_packet
{
    packet_buffer buf; ///< the packet (scatter/gather)
    std::size_t substream = 0; ///< destination (endpoint or queue index)
    std::error_code result; ///< set by the writer on failure
    // Bookkeeping for the stream (writers ignore these).
    std::size_t heap_index = 0; ///< queue position of the owning heap
    bool last = false; ///< last packet of its heap
};

/**
 * Base class for transports. The owning stream calls write_packets() from
 * its worker, one batch at a time (never concurrently). A writer either
 * finishes the batch synchronously (returns true), or returns false and
 * later calls write_done() exactly once, from any thread - typically a
 * thread-pool worker running an fd_watch that waited for the socket to
 * become writable - but never from inside write_packets() itself (the
 * stream continues its work inside write_done()). Writers must not block a
 * worker thread indefinitely.
 *
 * Writers that transmit bytes over the network (UDP with sendmmsg/GSO, TCP)
 * fit the same interface: they translate each packet's pieces into iovecs.
 */
class writer
{
    friend class stream;
    std::function<void()> done_callback;
    thread_pool *pool_ = nullptr;

    /// Called by the stream before any write.
    void attach(thread_pool &pool, std::function<void()> done)
    {
        pool_ = &pool;
        done_callback = std::move(done);
    }

protected:
    /// Report that the batch passed to the last write_packets() call (which returned false) is done.
    void write_done() { done_callback(); }
    /// Thread pool of the owning stream (valid after the stream is constructed).
    thread_pool &get_thread_pool() const { return *pool_; }

public:
    virtual ~writer() = default;

    /// Number of substreams (destinations) this writer serves.
    virtual std::size_t get_num_substreams() const = 0;

    /// Preferred maximum number of packets per batch.
    virtual std::size_t max_batch() const { return 64; }

    /**
     * Transmit @a n packets starting at @a packets, setting each result.
     * Packet buffers stay valid until the batch is done.
     * @return true if the batch completed synchronously; false if
     *         write_done() will be called later.
     */
    virtual bool write_packets(transmit_packet *packets, std::size_t n) = 0;
};

/**
 * Writer that appends every packet to memory.
 *
 * The bytes live in blocks that never move: each new block is as large as
 * everything before it (64 KiB to 64 MiB), mapped with map_large. Growing
 * one contiguous string instead copied the whole output at every doubling
 * and faulted in every 4 KiB page twice; with that gone the fill rate is
 * the copy's, not the page faults' (issue 11).
 *
 * Data is append-only, so the first size() bytes never change once
 * written: readers take the size, then copy that prefix.
 */
class bytes_writer : public writer
{
    /// One mapped block: @ref used of its @ref capacity bytes are written.
    struct block
    {
        std::uint8_t *data;
        std::size_t capacity;
        std::size_t used;
    };
    /// Guards @ref blocks and @ref total: the worker appends while Python reads.
    mutable std::mutex mutex;
    std::vector<block> blocks; ///< in write order; only the last has room
    std::size_t total = 0; ///< bytes written, the sum of every block's @c used

    /// Room for at least @a need more bytes (a new block if the last is full).
    block &room(std::size_t need);

public:
    bytes_writer() = default;
    bytes_writer(const bytes_writer &) = delete;
    bytes_writer &operator=(const bytes_writer &) = delete;
    ~bytes_writer() override;

    std::size_t get_num_substreams() const override { return 1; }
    bool write_packets(transmit_packet *packets, std::size_t n) override;
    /// Number of bytes written so far.
    std::size_t size() const;
    /// Copy the first @a n bytes written (n ≤ size()) to @a dest.
    void copy_to(std::uint8_t *dest, std::size_t n) const;
    /// Copy of everything written so far.
    std::string getvalue() const;
};

/// Writer that pushes each packet (copied) into the inproc_queue of its substream.
class inproc_writer : public writer
{
    std::vector<std::shared_ptr<inproc_queue>> queues;

public:
    /// @throws std::invalid_argument("queues is empty") if @a queues is empty
    explicit inproc_writer(std::vector<std::shared_ptr<inproc_queue>> queues);
    std::size_t get_num_substreams() const override { return queues.size(); }
    bool write_packets(transmit_packet *packets, std::size_t n) override;
    /// The queues, one per substream.
    const std::vector<std::shared_ptr<inproc_queue>> &get_queues() const { return queues; }
};

} // namespace send
} // namespace spead2gpu
