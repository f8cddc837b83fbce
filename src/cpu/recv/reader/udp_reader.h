/**
 * @file recv_udp_reader.h
 * UDP receive: batched recvmmsg, UDP GRO where the kernel has it, kernel
 * drop counting (SO_RXQ_OVFL), unicast and IPv4/IPv6 multicast.
 */
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>
#include <sys/socket.h>
#include "recv/stream/stream.h"
#include "common/socket_util.h"
#include "common/thread_pool.h"

namespace spead2gpu::recv
{

/**
 * Reads SPEAD packets from a UDP socket. Each readiness event drains the
 * socket with up to @ref max_batches recvmmsg calls of up to @ref max_mmsg_count
 * datagrams (fewer for big slots: see @ref batch_buffer_bytes), each call one batch (one stream lock). Datagrams longer than
 * max_size, or whose SPEAD size differs from the datagram length, are
 * counted as malformed. Kernel drops reported by SO_RXQ_OVFL are added to
 * the "spead2gpu.kernel_drops" statistic.
 */
class udp_reader : public reader, private fd_watch
{
public:
    static constexpr std::size_t default_max_size = 9200;
    static constexpr std::size_t default_buffer_size = 8 * 1024 * 1024;
    /// Most datagrams per recvmmsg call.
    static constexpr int max_mmsg_count = 64;
    /// Fewest datagrams per recvmmsg call.
    static constexpr int min_mmsg_count = 8;
    /**
     * Bytes of receive slots one recvmmsg call may fill. The slots are
     * written by the kernel and read back at once by the placement copy, so
     * they should stay in cache: 64 GRO slots of 64 KiB (4 MiB) did not, and
     * on loopback at 26 to 29 Gb/s of 1 MiB heaps that lost heaps in 11 of
     * 13 one-second probes, against 4 of 16 with 8 slots (issue 11).
     */
    static constexpr std::size_t batch_buffer_bytes = 512 * 1024;
    static constexpr int max_batches = 16;
    static constexpr std::size_t gro_buffer_size = 65536;

private:
    socket_fd sock;
    std::size_t max_size;
    bool gro = false;
    std::size_t slot_size;
    /// Datagrams per recvmmsg call: batch_buffer_bytes of slots, within [min_mmsg_count, max_mmsg_count].
    int mmsg_count = max_mmsg_count;
    std::unique_ptr<std::uint8_t[]> buffer;
    std::vector<mmsghdr> msgs;
    std::vector<iovec> iovs;
    std::unique_ptr<std::uint8_t[]> control;
    std::size_t control_size;
    std::uint32_t last_overflow = 0;
    std::size_t kernel_drops_index;

    void setup(std::size_t buffer_size);
    void on_ready() override;

public:
    /// Bind to @a endpoint (unicast, any family).
    udp_reader(stream &owner, const socket_address &endpoint, std::size_t max_size, std::size_t buffer_size);
    /// Join IPv4 multicast @a group on @a interface_address (or bind unicast if equal).
    udp_reader(stream &owner, const socket_address &group, std::size_t max_size, std::size_t buffer_size,
               const socket_address &interface_address);
    /// Join IPv6 multicast @a group on interface @a interface_index.
    udp_reader(stream &owner, const socket_address &group, std::size_t max_size, std::size_t buffer_size,
               unsigned int interface_index);
    /// Use an existing bound socket (duplicated; the caller keeps its own).
    udp_reader(stream &owner, int existing_fd, std::size_t max_size);
    ~udp_reader() override;

    void start() override;
    void stop() override;
};

} // namespace spead2gpu::recv
