/**
 * @file recv_readers.h
 * In-memory readers: a byte buffer of concatenated packets, and an
 * in-process packet queue. (Network readers live in their own headers.)
 */
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include "common/inproc_queue.h"
#include "recv/reader/posted_task.h"
#include "recv/stream/stream.h"
#include "common/thread_pool.h"

namespace spead2gpu::recv
{

/**
 * Reads packets from a contiguous buffer of concatenated packets, in
 * batches, on one worker thread. Unlike spead2, which abandons the buffer at
 * the first undecodable packet, bytes that do not decode are skipped up to the
 * next SPEAD magic byte (resynchronising), and each run of them counts as one
 * malformed packet. The end of the buffer stops the stream.
 */
class mem_reader : public reader
{

    const std::uint8_t *data;
    std::size_t size;
    std::shared_ptr<void> keepalive;
    posted_task task; ///< the replay task, which stop() waits for
    bool started = false;

    void run();

public:
    static constexpr std::size_t batch_size = 64;

    /// @param keepalive  owner of the bytes, kept until the reader is destroyed
    mem_reader(stream &owner, const std::uint8_t *data, std::size_t size, std::shared_ptr<void> keepalive = nullptr);
    void start() override;
    void stop() override;
};

/// Reads packets from an inproc_queue whenever its fd signals data.
class inproc_reader : public reader, private fd_watch
{
    std::shared_ptr<inproc_queue> queue;

    void on_ready() override;

public:
    static constexpr std::size_t batch_size = 64;

    inproc_reader(stream &owner, std::shared_ptr<inproc_queue> queue);
    ~inproc_reader() override;
    void start() override;
    void stop() override;
};

} // namespace spead2gpu::recv
