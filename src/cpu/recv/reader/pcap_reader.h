/**
 * @file recv_pcap_reader.h
 * Receive reader that replays the UDP datagrams of a packet capture file
 * (classic pcap or pcapng) into a stream.
 */
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>
#include "recv/stream/stream.h"

namespace spead2gpu::recv
{

namespace pcap_detail
{

/// Read-only contents of a whole file (memory-mapped where possible).
class file_contents
{
    const std::uint8_t *ptr = nullptr;
    std::size_t len = 0;
    void *map_addr = nullptr;          ///< non-null if the file is mmapped
    std::vector<std::uint8_t> copy;    ///< used when the file cannot be mapped

public:
    /// Open and map (or read) @a filename; throws std::runtime_error("<filename>: <strerror>").
    explicit file_contents(const std::string &filename);
    ~file_contents();
    file_contents(const file_contents &) = delete;
    file_contents &operator=(const file_contents &) = delete;

    const std::uint8_t *data() const { return ptr; }
    std::size_t size() const { return len; }
};

/// What one captured record turned out to contain.
enum class frame_kind
{
    udp,        ///< a whole UDP datagram: payload/ports are valid
    other,      ///< not IP/UDP (or an unsupported link type): skipped silently
    malformed   ///< IP/UDP, but truncated, inconsistent or fragmented: counted as malformed
};

/// Result of parsing the link, network and transport headers of a record.
struct udp_frame
{
    frame_kind kind = frame_kind::other;
    int ip_version = 0;
    std::uint16_t src_port = 0;
    std::uint16_t dst_port = 0;
    const std::uint8_t *payload = nullptr;  ///< UDP payload (the SPEAD packet)
    std::size_t payload_size = 0;
};

/**
 * Parse one captured frame of pcap link type @a linktype (LINKTYPE_*
 * value, already masked to 16 bits). Every field is bounds-checked against
 * @a caplen.
 */
udp_frame parse_frame(std::uint32_t linktype, const std::uint8_t *data, std::size_t caplen);

/// True for the link types parse_frame understands.
bool linktype_supported(std::uint32_t linktype);

class packet_filter;
class capture_cursor;

} // namespace pcap_detail

/**
 * Reads a capture file and feeds the payload of every UDP datagram in it to
 * the stream, as if it had been received by a UDP reader: the payload must
 * decode to a SPEAD packet of exactly its length, or it is counted as
 * malformed. The end of the file stops the stream.
 *
 * Supported formats are classic pcap (either byte order, microsecond or
 * nanosecond timestamps, and the "modified" Kuznetzov variant) and pcapng
 * (any number of sections of either byte order; Enhanced and Simple Packet
 * Blocks; other blocks are skipped). Supported link types are Ethernet
 * (with 802.1Q / 802.1ad VLAN tags), Linux cooked capture v1 (SLL) and v2
 * (SLL2), raw IP (LINKTYPE_RAW, 12, 14, IPV4, IPV6) and BSD loopback
 * (NULL, LOOP). Both IPv4 and IPv6 are understood; IPv6 extension headers
 * are skipped. IP fragments and records truncated by the capture's snap
 * length are counted as malformed packets and skipped.
 *
 * The optional filter is a BPF filter expression (as for tcpdump). When
 * libpcap can be loaded at run time (libpcap.so.1, libpcap.so.0.8 or
 * libpcap.so) it is compiled by libpcap for each link type in the file and
 * applied to every record. Otherwise (or when the environment variable
 * SPEAD2GPU_NO_LIBPCAP is set to a non-empty value other than "0") a
 * built-in parser accepts the common subset: `udp`, `ip`, `ip6`, and
 * `[udp] [src|dst] port N`, joined with `and` (or `&&`).
 *
 * Packets are fed in batches of at most @ref batch_size records from one
 * task posted to the stream's thread pool. Records that are not UDP over
 * IP (or are rejected by the filter) are skipped without being counted.
 * Should feeding a packet throw (e.g. std::bad_alloc for a corrupt,
 * enormous HEAP_LENGTH), a warning is logged and the stream is stopped as
 * at the end of the file.
 */
class pcap_reader : public reader
{
    struct completion
    {
        std::mutex mutex;
        std::condition_variable cond;
        bool done = false;
    };
    /// Marks the task finished when destroyed (whether it ran or was discarded).
    struct completion_guard
    {
        std::shared_ptr<completion> c;
        ~completion_guard();
    };

    std::string filename;
    std::unique_ptr<pcap_detail::file_contents> file;
    std::unique_ptr<pcap_detail::capture_cursor> cursor;
    std::unique_ptr<pcap_detail::packet_filter> filter;
    std::shared_ptr<completion> state;
    bool started = false;

    void run();
    /// The body of run(): feed every record, then stop the stream.
    void replay();

public:
    /// Maximum number of capture records handled under one stream lock.
    static constexpr std::size_t batch_size = 64;

    /**
     * Open and validate the capture file and compile the filter.
     *
     * @param owner     stream to feed
     * @param filename  path of a pcap or pcapng file
     * @param filter    BPF filter expression; empty accepts every UDP datagram
     * @throws std::runtime_error    the file cannot be opened or read
     *                               ("<filename>: <strerror>"), is not a
     *                               pcap/pcapng file, is a pcapng file with no
     *                               interface before its first packet, has
     *                               only unsupported link types, or libpcap
     *                               rejects the filter (libpcap's message)
     * @throws std::invalid_argument libpcap is unavailable and the filter is
     *                               outside the built-in subset
     */
    pcap_reader(stream &owner, const std::string &filename, const std::string &filter = "");
    ~pcap_reader() override;

    /// Post the replay task to the stream's thread pool.
    void start() override;
    /// Wait until the replay task has finished (or been discarded), then unmap the file.
    void stop() override;
};

} // namespace spead2gpu::recv
