/**
 * @file send_udp_writer.h
 * UDP transport for send streams: one endpoint per substream, batched with
 * sendmmsg and, where the kernel supports it, UDP generic segmentation
 * offload (GSO).
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <sys/socket.h>
#include <sys/uio.h>
#include <vector>
#include "send/writer/socket_writer.h"
#include "common/socket_util.h"

namespace spead2gpu
{
namespace send
{

/**
 * Writer that sends every packet as one UDP datagram to the endpoint of its
 * substream.
 *
 * A batch is turned into an array of messages for one sendmmsg call; the
 * iovecs point straight into the packet buffers (no copy). When GSO is
 * available, runs of consecutive packets to the same endpoint whose sizes
 * are equal (the last one may be shorter) are merged into one message with
 * a UDP_SEGMENT control message, which the kernel splits into datagrams. If
 * the kernel rejects a GSO message (EINVAL, EIO or EMSGSIZE), GSO is turned
 * off for good and the packets are sent one datagram per message.
 *
 * The socket is used with MSG_DONTWAIT (its file status flags are left
 * alone, so a socket shared with Python is unaffected). When the socket
 * buffer is full the writer waits for writability with an fd_watch on the
 * thread pool and completes the batch later (write_done()).
 *
 * Errors are per packet: a datagram the kernel refuses (for example
 * EMSGSIZE for a packet larger than 64 KiB) gets its transmit_packet::result
 * set and the rest of the batch is still sent.
 *
 * Constructors throw std::invalid_argument (bad endpoint list),
 * std::out_of_range (TTL outside 0..255) or std::runtime_error (socket
 * option or bind failure, message "set_option: …" / "bind: …").
 */
class udp_writer : public socket_writer
{
public:
    /// Default SO_SNDBUF request in bytes.
    static constexpr std::size_t default_buffer_size = 524288;
    /// Maximum number of datagrams merged into one GSO message.
    static constexpr std::size_t max_gso_segments = 64;
    /// Maximum total payload of one GSO message.
    static constexpr std::size_t max_gso_bytes = 65000;

    /**
     * Unicast or multicast without special options.
     * @param endpoints          one destination per substream (all of one address family)
     * @param buffer_size        SO_SNDBUF request (0 leaves the kernel default)
     * @param interface_address  if non-null, the socket is bound to this address (port 0)
     */
    udp_writer(const std::vector<socket_address> &endpoints, std::size_t buffer_size,
               const socket_address *interface_address = nullptr);

    /**
     * Multicast with a TTL (IP_MULTICAST_TTL / IPV6_MULTICAST_HOPS).
     * @throws std::invalid_argument("endpoint is not a multicast address")
     */
    udp_writer(const std::vector<socket_address> &endpoints, std::size_t buffer_size, int ttl);

    /**
     * IPv4 multicast with a TTL, sent out of the interface that has
     * @a interface_address (IP_MULTICAST_IF).
     * @throws std::invalid_argument("endpoint is not an IPv4 multicast address")
     */
    udp_writer(const std::vector<socket_address> &endpoints, std::size_t buffer_size, int ttl,
               const socket_address &interface_address);

    /**
     * IPv6 multicast with a hop limit, sent out of interface
     * @a interface_index (IPV6_MULTICAST_IF; 0 lets the kernel choose).
     * @throws std::invalid_argument (with spead2's message, "endpoint is not
     *         an IPv4 multicast address") if an endpoint is not IPv6 multicast
     */
    udp_writer(const std::vector<socket_address> &endpoints, std::size_t buffer_size, int ttl,
               unsigned int interface_index);

    /**
     * Use an existing UDP socket, which is duplicated (the caller keeps
     * ownership of @a fd). Its options are not changed.
     * @throws std::invalid_argument("Endpoint does not match protocol of the socket")
     */
    udp_writer(int fd, const std::vector<socket_address> &endpoints);

    ~udp_writer() override;

    std::size_t get_num_substreams() const override { return endpoints.size(); }
    std::size_t max_batch() const override { return 64; }
    bool write_packets(transmit_packet *packets, std::size_t n) override;

    /// The socket's file descriptor (owned by the writer).
    /// Whether GSO is currently used.
    bool gso_enabled() const { return gso; }

private:
    /// Per-message bookkeeping: the packets it carries.
    struct message_info
    {
        std::size_t first;
        std::size_t count;
        bool gso;
    };
    /// Control-message buffer for UDP_SEGMENT, suitably aligned.
    union control_buffer
    {
        cmsghdr align;
        char buf[CMSG_SPACE(sizeof(std::uint16_t))];
    };

    std::vector<socket_address> endpoints;
    bool gso = false;

    // State of the batch in progress
    transmit_packet *packets = nullptr;
    std::size_t n_packets = 0;
    std::vector<mmsghdr> msgs;
    std::vector<message_info> info;
    std::vector<control_buffer> controls;
    std::vector<iovec> iovs;
    std::vector<std::uint8_t> scratch; ///< linearised packets with too many pieces
    std::size_t n_msgs = 0;
    std::size_t cur_msg = 0;

    void init_socket(int family, std::size_t buffer_size);
    /// Check multicast @a endpoints of @a family and the @a ttl (spead2's messages), then init_socket.
    void init_multicast_socket(int family, std::size_t buffer_size, int ttl);
    void check_family(int family) const;
    void detect_gso();
    /// Lay out messages for packets [first, n_packets) (from message index cur_msg on).
    void build_messages(std::size_t first);
    /// Send what remains of the batch; false if waiting for writability.
    bool send_pending();
    void fail_message(std::size_t m, int err);
    void on_writable() override;
};

} // namespace send
} // namespace spead2gpu
