/**
 * @file send_tcp_writer.cpp
 */
#include "send/writer/tcp_writer.h"
#include <cerrno>
#include <cstring>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdexcept>
#include <sys/socket.h>
#include <unistd.h>
#include "common/logging.h"
#include "common/socket_util.h"

namespace spead2gpu
{
namespace send
{

namespace
{

/// Pending socket error (SO_ERROR), which reading clears.
int socket_error(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        return errno;
    return err;
}

} // namespace

/// Waits for the socket to become writable (connect finished, or buffer space).

tcp_writer::tcp_writer(const socket_address &endpoint, std::size_t buffer_size, const socket_address *interface_address,
                       bool async)
    : peer(endpoint), iovs(iov_max)
{
    sock = make_socket(endpoint.family(), SOCK_STREAM);
    set_socket_buffer_size(sock.get(), SO_SNDBUF, buffer_size);
    if (interface_address)
    {
        if (::bind(sock.get(), interface_address->get(), interface_address->length) != 0)
            throw std::runtime_error(socket_error_text("bind", errno));
    }
    int one = 1;
    setsockopt(sock.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (async)
    {
        set_nonblocking(sock.get());
        state = state_t::connecting;
        return;
    }
    if (::connect(sock.get(), peer.get(), peer.length) != 0)
    {
        int err = errno;
        if (err == EINTR)
        {
            // The connection continues in the background: wait for it.
            pollfd pfd{sock.get(), POLLOUT, 0};
            while (::poll(&pfd, 1, -1) < 0 && errno == EINTR)
            {
            }
            err = socket_error(sock.get());
        }
        if (err != 0)
            throw std::system_error(err, std::generic_category(), "connect");
    }
}

tcp_writer::tcp_writer(int fd) : iovs(iov_max)
{
    sock = duplicate_fd(fd);
}

tcp_writer::~tcp_writer()
{
    stop_waiting();
}

void tcp_writer::start_connect(connect_handler handler)
{
    on_connect = std::move(handler);
    if (::connect(sock.get(), peer.get(), peer.length) != 0 && errno != EINPROGRESS)
        connect_error = std::error_code(errno, std::generic_category());
    // Whether the connect finished, failed or is in progress, the socket
    // reports writability (or an error/hang-up) once it is settled, so the
    // handler always runs on a worker thread.
    arm_writable();
}

void tcp_writer::connect_done(const std::error_code &ec)
{
    connect_handler handler;
    bool had_batch;
    {
        std::lock_guard<std::mutex> lock(mutex);
        state = ec ? state_t::failed : state_t::connected;
        connect_error = ec;
        handler = std::move(on_connect);
        on_connect = nullptr;
        had_batch = deferred;
        deferred = false;
    }
    if (handler)
        handler(ec);
    if (had_batch)
    {
        if (ec)
        {
            fail_rest(ec);
            write_done();
        }
        else if (send_pending())
            write_done();
    }
}

void tcp_writer::on_writable()
{
    bool connecting;
    {
        std::lock_guard<std::mutex> lock(mutex);
        connecting = state == state_t::connecting;
    }
    if (connecting)
    {
        std::error_code ec = connect_error;
        if (!ec)
        {
            int err = socket_error(sock.get());
            if (err != 0)
                ec = std::error_code(err, std::generic_category());
        }
        connect_done(ec);
    }
    else if (send_pending())
        write_done(); // nothing of *this may be touched after this
}

void tcp_writer::fail_rest(const std::error_code &ec)
{
    for (std::size_t p = cur_packet; p < n_packets; p++)
        packets[p].result = ec;
    cur_packet = n_packets;
    cur_offset = 0;
}

bool tcp_writer::send_pending()
{
    while (cur_packet < n_packets)
    {
        // Gather iovecs from the current position.
        std::size_t k = 0;
        std::size_t skip = cur_offset;
        for (std::size_t p = cur_packet; p < n_packets && k < iov_max; p++)
        {
            for (const auto &piece : packets[p].buf.pieces)
            {
                if (piece.size <= skip)
                {
                    skip -= piece.size;
                    continue;
                }
                iovs[k++] = iovec{const_cast<std::uint8_t *>(piece.data) + skip, piece.size - skip};
                skip = 0;
                if (k == iov_max)
                    break;
            }
        }
        msghdr msg{};
        msg.msg_iov = iovs.data();
        msg.msg_iovlen = k;
        ssize_t r = ::sendmsg(sock.get(), &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r < 0)
        {
            int err = errno;
            if (err == EINTR)
                continue;
            if (err == EAGAIN || err == EWOULDBLOCK)
            {
                if (wait_writable("TCP writer"))
                    return false; // on_writable resumes
            }
            fail_rest(std::error_code(err, std::generic_category()));
            return true;
        }
        // Advance past what was written.
        std::size_t written = std::size_t(r);
        while (written > 0 && cur_packet < n_packets)
        {
            std::size_t left = packets[cur_packet].buf.size - cur_offset;
            if (written >= left)
            {
                written -= left;
                cur_packet++;
                cur_offset = 0;
            }
            else
            {
                cur_offset += written;
                written = 0;
            }
        }
    }
    return true;
}

bool tcp_writer::write_packets(transmit_packet *packets, std::size_t n)
{
    this->packets = packets;
    n_packets = n;
    cur_packet = 0;
    cur_offset = 0;
    {
        std::lock_guard<std::mutex> lock(mutex);
        if (state == state_t::connecting)
        {
            deferred = true;
            return false; // connect_done resumes
        }
        if (state == state_t::failed)
        {
            for (std::size_t p = 0; p < n; p++)
                packets[p].result = connect_error;
            return true;
        }
    }
    return send_pending();
}

} // namespace send
} // namespace spead2gpu
