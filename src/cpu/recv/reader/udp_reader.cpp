#include "recv/reader/udp_reader.h"
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdexcept>
#include <system_error>
#include <unistd.h>

#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif

namespace spead2gpu::recv
{

static void bind_or_throw(int fd, const socket_address &addr)
{
    // RuntimeError in Python, as spead2 raises for socket set-up failures.
    if (::bind(fd, addr.get(), addr.length) != 0)
        throw std::runtime_error("bind to " + addr.host() + ":" + std::to_string(addr.port()) + ": " +
                                 std::strerror(errno));
}

udp_reader::udp_reader(stream &owner, const socket_address &endpoint, std::size_t max_size, std::size_t buffer_size)
    : reader(owner), fd_watch(owner.get_thread_pool(), -1), max_size(max_size)
{
    sock = make_socket(endpoint.family(), SOCK_DGRAM);
    if (endpoint.is_multicast())
    {
        int one = 1;
        setsockopt(sock.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    }
    bind_or_throw(sock.get(), endpoint);
    setup(buffer_size);
}

udp_reader::udp_reader(stream &owner, const socket_address &group, std::size_t max_size, std::size_t buffer_size,
                       const socket_address &interface_address)
    : reader(owner), fd_watch(owner.get_thread_pool(), -1), max_size(max_size)
{
    if (group.family() != AF_INET)
        throw std::invalid_argument("endpoint is not an IPv4 address");
    if (!group.is_multicast() && !group.same_host(interface_address))
        throw std::invalid_argument("endpoint is not multicast and does not match interface address");
    sock = make_socket(AF_INET, SOCK_DGRAM);
    int one = 1;
    setsockopt(sock.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    bind_or_throw(sock.get(), group);
    if (group.is_multicast())
    {
        ip_mreq mreq{};
        mreq.imr_multiaddr = reinterpret_cast<const sockaddr_in *>(group.get())->sin_addr;
        mreq.imr_interface = reinterpret_cast<const sockaddr_in *>(interface_address.get())->sin_addr;
        if (setsockopt(sock.get(), IPPROTO_IP, IP_ADD_MEMBERSHIP, &mreq, sizeof(mreq)) != 0)
            throw std::runtime_error(std::string("join multicast group (IP_ADD_MEMBERSHIP): ") + std::strerror(errno));
    }
    setup(buffer_size);
}

udp_reader::udp_reader(stream &owner, const socket_address &group, std::size_t max_size, std::size_t buffer_size,
                       unsigned int interface_index)
    : reader(owner), fd_watch(owner.get_thread_pool(), -1), max_size(max_size)
{
    if (group.family() != AF_INET6)
        throw std::invalid_argument("endpoint is not an IPv6 address");
    if (!group.is_multicast())
        throw std::invalid_argument("endpoint is not an IPv6 multicast address");
    sock = make_socket(AF_INET6, SOCK_DGRAM);
    int one = 1;
    setsockopt(sock.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    bind_or_throw(sock.get(), group);
    ipv6_mreq mreq{};
    mreq.ipv6mr_multiaddr = reinterpret_cast<const sockaddr_in6 *>(group.get())->sin6_addr;
    mreq.ipv6mr_interface = interface_index;
    if (setsockopt(sock.get(), IPPROTO_IPV6, IPV6_JOIN_GROUP, &mreq, sizeof(mreq)) != 0)
        throw std::runtime_error(std::string("join multicast group (IPV6_JOIN_GROUP): ") + std::strerror(errno));
    setup(buffer_size);
}

udp_reader::udp_reader(stream &owner, int existing_fd, std::size_t max_size)
    : reader(owner), fd_watch(owner.get_thread_pool(), -1), max_size(max_size)
{
    sock = duplicate_fd(existing_fd);
    setup(0);
}

udp_reader::~udp_reader()
{
    unwatch();
}

void udp_reader::setup(std::size_t buffer_size)
{
    set_nonblocking(sock.get());
    set_socket_buffer_size(sock.get(), SO_RCVBUF, buffer_size);
    int one = 1;
    setsockopt(sock.get(), SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof(one));
    // UDP GRO lets the kernel hand over several same-sized datagrams in one
    // buffer; it needs 64 KiB slots.
    if (max_size < gro_buffer_size && setsockopt(sock.get(), SOL_UDP, UDP_GRO, &one, sizeof(one)) == 0)
        gro = true;
    slot_size = gro ? gro_buffer_size : max_size + 1; // +1 detects oversize datagrams
    mmsg_count = int(std::clamp<std::size_t>(batch_buffer_bytes / slot_size, min_mmsg_count, max_mmsg_count));
    buffer.reset(new std::uint8_t[slot_size * mmsg_count]);
    control_size = CMSG_SPACE(sizeof(std::uint32_t)) + CMSG_SPACE(sizeof(int));
    control.reset(new std::uint8_t[control_size * mmsg_count]);
    msgs.resize(mmsg_count);
    iovs.resize(mmsg_count);
    for (int i = 0; i < mmsg_count; i++)
    {
        iovs[i].iov_base = buffer.get() + i * slot_size;
        iovs[i].iov_len = slot_size;
        std::memset(&msgs[i], 0, sizeof(msgs[i]));
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    kernel_drops_index = owner.stat_index(kernel_drops_stat);
    fd_watch::set_fd(sock.get());
}

void udp_reader::start()
{
    arm();
}

void udp_reader::stop()
{
    unwatch(); // out of the epoll set, and no on_ready running
    sock.reset(); // so the port is free once the stream has stopped
}

void udp_reader::on_ready()
{
    for (int b = 0; b < max_batches; b++)
    {
        for (int i = 0; i < mmsg_count; i++)
        {
            msgs[i].msg_hdr.msg_control = control.get() + i * control_size;
            msgs[i].msg_hdr.msg_controllen = control_size;
            msgs[i].msg_hdr.msg_flags = 0;
        }
        int n = recvmmsg(sock.get(), msgs.data(), mmsg_count, MSG_DONTWAIT, nullptr);
        if (n < 0)
        {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                break;
            log_warning(std::string("UDP receive failed: ") + std::strerror(errno));
            break;
        }
        if (n == 0)
            break;
        add_packet_state batch(owner);
        if (batch.is_stopped())
            return;
        for (int i = 0; i < n; i++)
        {
            const std::uint8_t *data = buffer.get() + i * slot_size;
            std::size_t len = msgs[i].msg_len;
            int segment = 0;
            for (cmsghdr *c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c; c = CMSG_NXTHDR(&msgs[i].msg_hdr, c))
            {
                if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO)
                    std::memcpy(&segment, CMSG_DATA(c), sizeof(int));
                else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL)
                {
                    std::uint32_t total;
                    std::memcpy(&total, CMSG_DATA(c), sizeof(total));
                    batch.batch_stats()[kernel_drops_index] += std::uint32_t(total - last_overflow);
                    last_overflow = total;
                }
            }
            if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC)
            {
                batch.add_malformed(truncated_datagram_text);
                continue;
            }
            if (segment > 0 && std::size_t(segment) < len)
            {
                for (std::size_t off = 0; off < len; off += std::size_t(segment))
                    batch.add_datagram(data + off, std::min<std::size_t>(segment, len - off), max_size);
            }
            else
                batch.add_datagram(data, len, max_size);
        }
        if (batch.is_stopped())
            return;
        if (n < mmsg_count)
            break;
    }
    arm();
}

} // namespace spead2gpu::recv
