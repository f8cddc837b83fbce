/**
 * @file pcap_reader.h
 * Receive reader that replays the UDP datagrams of a packet capture file
 * (classic pcap or pcapng, read by libpcap) into a stream.
 */
#pragma once

#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include "recv/reader/posted_task.h"
#include "recv/stream/stream.h"

namespace spead2gpu::recv
{

namespace pcap_detail
{
/// The open capture (libpcap handle and compiled filter); defined in the .cpp.
struct capture;
} // namespace pcap_detail

/**
 * Reads a capture file with libpcap and feeds the payload of every UDP
 * datagram in it to the stream, as if it had been received by a UDP reader:
 * the payload must decode to a SPEAD packet of exactly its length, or it is
 * counted as malformed. The end of the file stops the stream.
 *
 * Any file libpcap opens is accepted (classic pcap in either byte order and
 * timestamp precision, pcapng). The frames are parsed for the link types
 * Ethernet (with 802.1Q / 802.1ad VLAN tags), Linux cooked capture v1 (SLL)
 * and v2 (SLL2), raw IP (DLT_RAW, DLT_IPV4, DLT_IPV6) and BSD loopback
 * (DLT_NULL, DLT_LOOP); other link types are refused when the file is opened.
 * IPv4 and IPv6 (whose extension headers are skipped) are understood. IP
 * fragments, inconsistent headers and records truncated by the capture's
 * snap length are counted as malformed packets and skipped; so is a read
 * error (a corrupt or cut-short file), which also ends the replay.
 *
 * The optional filter is a libpcap (BPF) filter expression, as for tcpdump,
 * applied to every record; records it rejects, and records that are not UDP
 * over IP, are skipped without being counted.
 *
 * Packets are fed in batches of at most @ref batch_size records (one stream
 * lock per batch) from one task posted to the stream's thread pool. Should
 * feeding a packet throw (e.g. std::bad_alloc for a corrupt, enormous
 * HEAP_LENGTH), a warning is logged and the stream is stopped as at the end
 * of the file. The file is closed when the replay ends and at the latest
 * when stop() returns.
 *
 * Without libpcap at build time (SPEAD2GPU_HAVE_PCAP unset) the constructor
 * always throws std::runtime_error.
 */
class pcap_reader : public reader
{

    std::string filename;
    std::unique_ptr<pcap_detail::capture> cap; ///< null once closed
    posted_task task; ///< the replay task, which stop() waits for
    bool started = false;

    void run();
    /// The body of run(): feed every record, then stop the stream.
    void replay();

public:
    /// Maximum number of capture records handled under one stream lock.
    static constexpr std::size_t batch_size = 64;

    /**
     * Open the capture file and compile the filter.
     *
     * @param owner     stream to feed
     * @param filename  path of a pcap or pcapng file
     * @param filter    libpcap filter expression; empty accepts every UDP datagram
     * @throws std::runtime_error the file cannot be opened or is not a capture
     *     file (libpcap's message, e.g. "<filename>: No such file or
     *     directory" as in spead2; other messages are prefixed with the file
     *     name), its link type is not supported, libpcap rejects the filter
     *     (libpcap's message), or spead2gpu was built without libpcap
     */
    pcap_reader(stream &owner, const std::string &filename, const std::string &filter = "");
    ~pcap_reader() override;

    /// Post the replay task to the stream's thread pool.
    void start() override;
    /// Wait until the replay task has finished (or been discarded), then close the file.
    void stop() override;
};

} // namespace spead2gpu::recv
