/**
 * @file send_udp_writer.cpp
 */
#include "send/writer/udp_writer.h"
#include <cerrno>
#include <cstring>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdexcept>
#include <system_error>
#include <unistd.h>
#include "common/logging.h"
#include "common/socket_util.h"

#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

namespace spead2gpu
{
namespace send
{

namespace
{

void set_option(int fd, int level, int name, const void *value, socklen_t len)
{
    if (setsockopt(fd, level, name, value, len) != 0)
        throw std::runtime_error(socket_error_text("set_option", errno));
}

/// Number of non-empty pieces of @a pkt.
std::size_t piece_count(const transmit_packet &pkt)
{
    std::size_t n = 0;
    for (const auto &piece : pkt.buf.pieces)
        if (piece.size > 0)
            n++;
    return n;
}

/// Number of iovecs packet @a pkt needs (1 if it has to be linearised).
std::size_t iov_count(const transmit_packet &pkt)
{
    std::size_t n = piece_count(pkt);
    return n > iov_max ? 1 : n;
}

} // namespace

/// Waits for the socket to become writable and resumes the batch.

/* ---------------------------------------------------------- construction */

void udp_writer::check_family(int family) const
{
    for (const auto &ep : endpoints)
        if (ep.family() != family)
            throw std::invalid_argument("Endpoint does not match protocol of the socket");
}

void udp_writer::init_multicast_socket(int family, std::size_t buffer_size, int ttl)
{
    // Like spead2, an empty endpoint list is accepted (no substreams), and a
    // wrong endpoint is reported with the IPv4 message for both families.
    for (const auto &ep : endpoints)
        if (ep.family() != family || !ep.is_multicast())
            throw std::invalid_argument("endpoint is not an IPv4 multicast address");
    if (ttl < 0 || ttl > 255)
        throw std::out_of_range("multicast hops value out of range");
    init_socket(family, buffer_size);
}

void udp_writer::init_socket(int family, std::size_t buffer_size)
{
    sock = make_socket(family, SOCK_DGRAM);
    set_socket_buffer_size(sock.get(), SO_SNDBUF, buffer_size);
}

void udp_writer::detect_gso()
{
    int value = 0;
    socklen_t len = sizeof(value);
    gso = getsockopt(sock.get(), SOL_UDP, UDP_SEGMENT, &value, &len) == 0;
}

udp_writer::udp_writer(const std::vector<socket_address> &endpoints, std::size_t buffer_size,
                       const socket_address *interface_address)
    : endpoints(endpoints)
{
    if (endpoints.empty())
        throw std::invalid_argument("Endpoint list must be non-empty");
    check_family(endpoints[0].family());
    init_socket(endpoints[0].family(), buffer_size);
    if (interface_address)
    {
        if (::bind(sock.get(), interface_address->get(), interface_address->length) != 0)
            throw std::runtime_error(socket_error_text("bind", errno));
    }
    detect_gso();
}

udp_writer::udp_writer(const std::vector<socket_address> &endpoints, std::size_t buffer_size, int ttl)
    : endpoints(endpoints)
{
    if (endpoints.empty())
        throw std::invalid_argument("Endpoint list must be non-empty");
    for (const auto &ep : endpoints)
        if (!ep.is_multicast())
            throw std::invalid_argument("endpoint is not a multicast address");
    check_family(endpoints[0].family());
    if (ttl < 0 || ttl > 255)
        throw std::out_of_range("multicast hops value out of range");
    init_socket(endpoints[0].family(), buffer_size);
    if (endpoints[0].family() == AF_INET)
        set_option(sock.get(), IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof(ttl));
    else
        set_option(sock.get(), IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &ttl, sizeof(ttl));
    detect_gso();
}

udp_writer::udp_writer(const std::vector<socket_address> &endpoints, std::size_t buffer_size, int ttl,
                       const socket_address &interface_address)
    : endpoints(endpoints)
{
    if (interface_address.family() != AF_INET)
        throw std::invalid_argument("interface address is not an IPv4 address");
    init_multicast_socket(AF_INET, buffer_size, ttl);
    set_option(sock.get(), IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof(ttl));
    in_addr iface = reinterpret_cast<const sockaddr_in *>(interface_address.get())->sin_addr;
    set_option(sock.get(), IPPROTO_IP, IP_MULTICAST_IF, &iface, sizeof(iface));
    detect_gso();
}

udp_writer::udp_writer(const std::vector<socket_address> &endpoints, std::size_t buffer_size, int ttl,
                       unsigned int interface_index)
    : endpoints(endpoints)
{
    init_multicast_socket(AF_INET6, buffer_size, ttl);
    set_option(sock.get(), IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &ttl, sizeof(ttl));
    set_option(sock.get(), IPPROTO_IPV6, IPV6_MULTICAST_IF, &interface_index, sizeof(interface_index));
    detect_gso();
}

udp_writer::udp_writer(int fd, const std::vector<socket_address> &endpoints) : endpoints(endpoints)
{
    sock = duplicate_fd(fd);
    int family = 0;
    socklen_t len = sizeof(family);
    if (getsockopt(sock.get(), SOL_SOCKET, SO_DOMAIN, &family, &len) != 0)
        throw std::runtime_error(socket_error_text("getsockopt", errno));
    check_family(family);
    detect_gso();
}

udp_writer::~udp_writer()
{
    stop_waiting();
}

/* ---------------------------------------------------------------- sending */

void udp_writer::build_messages(std::size_t first)
{
    // Size the iovec and scratch storage (they only grow).
    std::size_t total_iov = 0, total_scratch = 0;
    for (std::size_t p = first; p < n_packets; p++)
    {
        std::size_t c = piece_count(packets[p]);
        if (c > iov_max)
        {
            total_iov++;
            total_scratch += packets[p].buf.size;
        }
        else
            total_iov += c;
    }
    if (iovs.size() < total_iov)
        iovs.resize(total_iov);
    if (scratch.size() < total_scratch)
        scratch.resize(total_scratch);

    std::size_t iov_pos = 0, scratch_pos = 0;
    auto add_packet = [&](const transmit_packet &pkt)
    {
        if (pkt.buf.pieces.size() > iov_max && piece_count(pkt) > iov_max)
        {
            std::uint8_t *dst = scratch.data() + scratch_pos;
            pkt.buf.copy_to(dst);
            scratch_pos += pkt.buf.size;
            iovs[iov_pos++] = iovec{dst, pkt.buf.size};
            return;
        }
        for (const auto &piece : pkt.buf.pieces)
            if (piece.size > 0)
                iovs[iov_pos++] = iovec{const_cast<std::uint8_t *>(piece.data), piece.size};
    };

    std::size_t m = cur_msg;
    std::size_t p = first;
    while (p < n_packets)
    {
        const transmit_packet &head = packets[p];
        const std::size_t seg = head.buf.size;
        const std::size_t iov_start = iov_pos;
        add_packet(head);
        std::size_t count = 1;
        std::size_t total = seg;
        if (gso)
        {
            while (p + count < n_packets && count < max_gso_segments)
            {
                const transmit_packet &next = packets[p + count];
                if (next.substream != head.substream || next.buf.size > seg || total + next.buf.size > max_gso_bytes ||
                    iov_pos - iov_start + iov_count(next) > iov_max)
                    break;
                add_packet(next);
                count++;
                total += next.buf.size;
                if (next.buf.size < seg)
                    break; // only the last segment may be shorter
            }
        }
        const socket_address &ep = endpoints[head.substream];
        msghdr &hdr = msgs[m].msg_hdr;
        hdr.msg_name = const_cast<sockaddr *>(ep.get());
        hdr.msg_namelen = ep.length;
        hdr.msg_iov = iovs.data() + iov_start;
        hdr.msg_iovlen = iov_pos - iov_start;
        hdr.msg_flags = 0;
        if (count > 1)
        {
            control_buffer &ctl = controls[m];
            std::memset(&ctl, 0, sizeof(ctl));
            hdr.msg_control = ctl.buf;
            hdr.msg_controllen = sizeof(ctl.buf);
            cmsghdr *c = CMSG_FIRSTHDR(&hdr);
            c->cmsg_level = SOL_UDP;
            c->cmsg_type = UDP_SEGMENT;
            c->cmsg_len = CMSG_LEN(sizeof(std::uint16_t));
            std::uint16_t gso_size = std::uint16_t(seg);
            std::memcpy(CMSG_DATA(c), &gso_size, sizeof(gso_size));
        }
        else
        {
            hdr.msg_control = nullptr;
            hdr.msg_controllen = 0;
        }
        msgs[m].msg_len = 0;
        info[m] = message_info{p, count, count > 1};
        m++;
        p += count;
    }
    n_msgs = m;
}

void udp_writer::fail_message(std::size_t m, int err)
{
    const message_info &mi = info[m];
    std::error_code ec(err, std::generic_category());
    for (std::size_t i = 0; i < mi.count; i++)
        packets[mi.first + i].result = ec;
}

bool udp_writer::send_pending()
{
    while (cur_msg < n_msgs)
    {
        int r = sendmmsg(sock.get(), msgs.data() + cur_msg, unsigned(n_msgs - cur_msg), MSG_DONTWAIT);
        if (r > 0)
        {
            cur_msg += std::size_t(r);
            continue;
        }
        int err = r == 0 ? EAGAIN : errno;
        if (err == EINTR)
            continue;
        if (err == EAGAIN || err == EWOULDBLOCK)
        {
            if (wait_writable("UDP writer"))
                return false; // on_writable resumes
            for (std::size_t m = cur_msg; m < n_msgs; m++)
                fail_message(m, err);
            cur_msg = n_msgs;
            return true;
        }
        if (info[cur_msg].gso && (err == EINVAL || err == EIO || err == EMSGSIZE))
        {
            log_info("UDP GSO rejected by the kernel (" + std::string(std::strerror(err)) +
                     "); sending one datagram per message from now on");
            gso = false;
            build_messages(info[cur_msg].first);
            continue;
        }
        fail_message(cur_msg, err);
        cur_msg++;
    }
    return true;
}

bool udp_writer::write_packets(transmit_packet *packets, std::size_t n)
{
    this->packets = packets;
    n_packets = n;
    if (msgs.size() < n)
    {
        msgs.resize(n);
        info.resize(n);
        controls.resize(n);
    }
    cur_msg = 0;
    build_messages(0);
    return send_pending();
}

void udp_writer::on_writable()
{
    if (send_pending())
        write_done(); // nothing of *this may be touched after this
}

} // namespace send
} // namespace spead2gpu
