/**
 * @file send_tcp_writer.h
 * TCP transport for send streams: packets are written back to back on one
 * connection.
 */
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <system_error>
#include <vector>
#include <sys/uio.h>
#include "send/writer/socket_writer.h"
#include "common/socket_util.h"

namespace spead2gpu
{
namespace send
{

/**
 * Writer that sends every packet over one TCP connection (one substream).
 *
 * Packets are written with sendmsg (MSG_DONTWAIT | MSG_NOSIGNAL), iovecs
 * pointing into the packet buffers; partial writes continue where they
 * stopped, and when the socket buffer is full the writer waits for
 * writability with an fd_watch and completes the batch later. A failed
 * write fails the packet it was in and the rest of the batch (a TCP byte
 * stream cannot skip a packet).
 *
 * Three ways to get the connection:
 * - connect synchronously in the constructor (blocking the calling thread);
 * - connect asynchronously: construct with @c async = true, hand the writer
 *   to a stream, then call start_connect(), whose handler runs once on a
 *   thread-pool worker. Batches written before the connection is up wait
 *   for it (and fail with the connection error if it fails);
 * - an existing socket (duplicated; its options are left alone).
 */
class tcp_writer : public socket_writer
{
public:
    /// Default SO_SNDBUF request in bytes.
    static constexpr std::size_t default_buffer_size = 212992;
    /// Called once on a worker thread when an asynchronous connect finishes.
    using connect_handler = std::function<void(const std::error_code &)>;

    /**
     * Create a socket and connect to @a endpoint.
     * @param endpoint           peer
     * @param buffer_size        SO_SNDBUF request (0 leaves the kernel default)
     * @param interface_address  if non-null, bind to this address before connecting
     * @param async              if false, connect now (blocking; throws
     *                           std::system_error on failure); if true, only
     *                           prepare: call start_connect() once the writer
     *                           belongs to a stream
     * @throws std::runtime_error("bind: …") if binding fails
     */
    tcp_writer(const socket_address &endpoint, std::size_t buffer_size, const socket_address *interface_address,
               bool async);

    /// Use an existing (connected) TCP socket, which is duplicated.
    explicit tcp_writer(int fd);

    ~tcp_writer() override;

    /**
     * Start the asynchronous connect prepared by the constructor. @a handler
     * is called exactly once, on a worker thread, with the result (unless the
     * thread pool is stopped first). Call at most once, after the writer has
     * been handed to a stream.
     */
    void start_connect(connect_handler handler);

    std::size_t get_num_substreams() const override { return 1; }
    bool write_packets(transmit_packet *packets, std::size_t n) override;

    /// The socket's file descriptor (owned by the writer).

private:
    enum class state_t
    {
        connecting, ///< asynchronous connect not finished
        connected,
        failed ///< asynchronous connect failed
    };

    socket_address peer;
    std::mutex mutex; ///< protects state and the deferred batch
    state_t state = state_t::connected;
    std::error_code connect_error;
    connect_handler on_connect;
    bool deferred = false; ///< a batch arrived while connecting

    // Batch in progress
    transmit_packet *packets = nullptr;
    std::size_t n_packets = 0;
    std::size_t cur_packet = 0; ///< first packet not completely written
    std::size_t cur_offset = 0; ///< bytes of it already written
    std::vector<iovec> iovs;

    /// Send what remains of the batch; false if waiting for writability.
    bool send_pending();
    void fail_rest(const std::error_code &ec);
    void connect_done(const std::error_code &ec);
    void on_writable() override;
};

} // namespace send
} // namespace spead2gpu
