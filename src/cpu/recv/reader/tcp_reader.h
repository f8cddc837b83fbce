/**
 * @file recv_tcp_reader.h
 * TCP receive: accepts one connection and reads a concatenation of packets.
 */
#pragma once

#include <cstdint>
#include <memory>
#include "recv/stream/stream.h"
#include "common/socket_util.h"
#include "common/thread_pool.h"

namespace spead2gpu::recv
{

/**
 * Accepts exactly one connection on a listening socket, then parses the byte
 * stream into packets. A header that does not parse makes the reader skip 8
 * bytes and try again (each run of skipped bytes counts as one malformed
 * packet); packets larger than max_size are skipped and counted. EOF stops
 * the stream.
 */
class tcp_reader : public reader
{
public:
    static constexpr std::size_t default_max_size = 65536;
    static constexpr std::size_t default_buffer_size = 212992;

private:
    /// Watches one fd and forwards readiness to the reader.
    class watch : public fd_watch
    {
        tcp_reader &r;
        void (tcp_reader::*handler)();
        void on_ready() override { (r.*handler)(); }

    public:
        watch(tcp_reader &r, int fd, void (tcp_reader::*handler)())
            : fd_watch(r.owner.get_thread_pool(), fd), r(r), handler(handler)
        {
        }
        ~watch() override { unwatch(); }
        using fd_watch::arm;
        using fd_watch::unwatch;
    };

    socket_fd acceptor;
    socket_fd conn;
    std::size_t max_size;
    std::unique_ptr<std::uint8_t[]> buffer;
    std::size_t capacity, head = 0, tail = 0;
    std::size_t skip = 0; ///< bytes still to discard of an oversize packet
    bool in_garbage = false;
    std::unique_ptr<watch> accept_watch, data_watch;

    void on_accept();
    void on_data();
    /// Parse complete packets in [head, tail); returns false if the stream stopped.
    bool parse(add_packet_state &batch);

public:
    /// Listen on @a endpoint (backlog 1).
    tcp_reader(stream &owner, const socket_address &endpoint, std::size_t max_size, std::size_t buffer_size);
    /// Use an existing listening socket (duplicated).
    tcp_reader(stream &owner, int acceptor_fd, std::size_t max_size);
    ~tcp_reader() override;

    void start() override;
    void stop() override;
};

} // namespace spead2gpu::recv
