/**
 * @file pcap_reader.cpp
 * Capture-file replay: libpcap opens the file, iterates its records and
 * applies the filter; this file parses the link, IP and UDP headers of each
 * record (bounds-checked) and feeds the UDP payloads to the stream.
 */
#include "recv/reader/pcap_reader.h"

#include <stdexcept>
#include "common/logging.h"

#if SPEAD2GPU_HAVE_PCAP
#include <cstdint>
#include <cstdio>
#include <fcntl.h>
#include <limits>
#include <pcap.h>
#endif

namespace spead2gpu::recv
{

#if SPEAD2GPU_HAVE_PCAP

// Link types that older pcap headers may not name.
#ifndef DLT_IPV4
#define DLT_IPV4 228
#endif
#ifndef DLT_IPV6
#define DLT_IPV6 229
#endif
#ifndef DLT_LINUX_SLL2
#define DLT_LINUX_SLL2 276
#endif

namespace pcap_detail
{

namespace
{

/// What one captured record turned out to contain.
enum class frame_kind
{
    udp, ///< a whole UDP datagram: payload is valid
    other, ///< not IP/UDP: skipped silently
    malformed ///< IP/UDP, but truncated, inconsistent or fragmented: counted as malformed
};

struct udp_frame
{
    frame_kind kind = frame_kind::other;
    const std::uint8_t *payload = nullptr; ///< UDP payload (the SPEAD packet)
    std::size_t payload_size = 0;
    const char *why = nullptr; ///< for a malformed frame: the log text (spead2's where it has one)
};

constexpr udp_frame malformed_frame{frame_kind::malformed, nullptr, 0, "dropping packet due to truncation"};
constexpr udp_frame fragment_frame{frame_kind::malformed, nullptr, 0, "IP datagram is fragmented, discarding"};
constexpr udp_frame other_frame{frame_kind::other};
constexpr std::uint8_t PROTO_UDP = 17;

inline std::size_t be16(const std::uint8_t *p)
{
    return std::size_t(p[0]) << 8 | p[1];
}

/// The UDP datagram at @a p, of which @a n bytes belong to the IP packet.
udp_frame parse_udp(const std::uint8_t *p, std::size_t n, bool jumbo)
{
    if (n < 8)
        return malformed_frame;
    std::size_t len = be16(p + 4);
    if (len == 0 && jumbo)
        len = n; // RFC 2675: UDP length 0 in an IPv6 jumbogram
    if (len < 8 || len > n)
        return malformed_frame;
    return {frame_kind::udp, p + 8, len - 8};
}

udp_frame parse_ipv4(const std::uint8_t *p, std::size_t n)
{
    if (n < 20)
        return malformed_frame;
    if ((p[0] >> 4) != 4 || p[9] != PROTO_UDP)
        return other_frame;
    std::size_t ihl = std::size_t(p[0] & 0xf) * 4;
    std::size_t total = be16(p + 2);
    if (ihl < 20 || total < ihl || total > n)
        return malformed_frame;
    if (be16(p + 6) & 0x3fff) // more fragments, or a non-zero offset
        return fragment_frame;
    return parse_udp(p + ihl, total - ihl, false);
}

udp_frame parse_ipv6(const std::uint8_t *p, std::size_t n)
{
    if (n < 40)
        return malformed_frame;
    if ((p[0] >> 4) != 6)
        return other_frame;
    std::size_t plen = be16(p + 4);
    bool jumbo = plen == 0;
    std::size_t limit = jumbo ? n : 40 + plen;
    bool truncated = limit > n;
    if (truncated)
        limit = n;
    std::uint8_t nh = p[6];
    std::size_t off = 40;
    while (true)
    {
        if (nh == PROTO_UDP)
            return truncated ? malformed_frame : parse_udp(p + off, limit - off, jumbo);
        std::size_t ext_len;
        switch (nh)
        {
        case 0: // hop-by-hop options
        case 43: // routing
        case 60: // destination options
        case 135: // mobility
        case 139: // HIP
        case 140: // shim6
        case 51: // authentication header
        case 44: // fragment
            if (limit - off < 8)
                return malformed_frame;
            if (nh == 44)
            {
                // A real fragment (non-zero offset or more-fragments set)?
                if (be16(p + off + 2) & 0xfff9)
                    return p[off] == PROTO_UDP ? fragment_frame : other_frame;
                ext_len = 8; // atomic fragment: the whole datagram follows
            }
            else if (nh == 51)
                ext_len = (std::size_t(p[off + 1]) + 2) * 4;
            else
                ext_len = (std::size_t(p[off + 1]) + 1) * 8;
            break;
        default:
            return other_frame; // not UDP (or an unknown extension)
        }
        if (ext_len > limit - off)
            return malformed_frame;
        nh = p[off];
        off += ext_len;
    }
}

/// An IP packet of either version, told apart by its version nibble.
udp_frame parse_ip(const std::uint8_t *p, std::size_t n)
{
    if (n < 1)
        return other_frame;
    switch (p[0] >> 4)
    {
    case 4:
        return parse_ipv4(p, n);
    case 6:
        return parse_ipv6(p, n);
    default:
        return other_frame;
    }
}

udp_frame parse_ethertype(std::size_t ethertype, const std::uint8_t *p, std::size_t n)
{
    // Skip 802.1Q / 802.1ad / legacy QinQ tags.
    while (ethertype == 0x8100 || ethertype == 0x88a8 || ethertype == 0x9100)
    {
        if (n < 4)
            return other_frame;
        ethertype = be16(p + 2);
        p += 4;
        n -= 4;
    }
    switch (ethertype)
    {
    case 0x0800:
        return parse_ipv4(p, n);
    case 0x86dd:
        return parse_ipv6(p, n);
    default:
        return other_frame;
    }
}

bool dlt_supported(int dlt)
{
    switch (dlt)
    {
    case DLT_NULL:
    case DLT_EN10MB:
    case DLT_RAW:
#if DLT_RAW != 14
    case 14: // DLT_RAW as OpenBSD numbers it
#endif
    case DLT_LOOP:
    case DLT_LINUX_SLL:
    case DLT_LINUX_SLL2:
    case DLT_IPV4:
    case DLT_IPV6:
        return true;
    default:
        return false;
    }
}

/// Parse one record of link type @a dlt (a dlt_supported value).
udp_frame parse_frame(int dlt, const std::uint8_t *data, std::size_t caplen)
{
    switch (dlt)
    {
    case DLT_EN10MB:
        return caplen < 14 ? other_frame : parse_ethertype(be16(data + 12), data + 14, caplen - 14);
    case DLT_LINUX_SLL:
        return caplen < 16 ? other_frame : parse_ethertype(be16(data + 14), data + 16, caplen - 16);
    case DLT_LINUX_SLL2:
        return caplen < 20 ? other_frame : parse_ethertype(be16(data), data + 20, caplen - 20);
    case DLT_IPV4:
        return caplen >= 1 && (data[0] >> 4) == 4 ? parse_ipv4(data, caplen) : other_frame;
    case DLT_IPV6:
        return caplen >= 1 && (data[0] >> 4) == 6 ? parse_ipv6(data, caplen) : other_frame;
    case DLT_NULL:
    case DLT_LOOP:
        // A 4-byte address family (whose IPv6 value differs between
        // systems); the IP version nibble tells us what follows.
        return caplen < 4 ? other_frame : parse_ip(data + 4, caplen - 4);
    default: // raw IP
        return parse_ip(data, caplen);
    }
}

} // anonymous namespace

/// An open capture file with its link type and (optional) compiled filter.
struct capture
{
    pcap_t *handle = nullptr;
    int dlt = 0;
    bool filtered = false;
    bpf_program program{};

    capture(const std::string &filename, const std::string &filter)
    {
        char errbuf[PCAP_ERRBUF_SIZE] = "";
        handle = pcap_open_offline(filename.c_str(), errbuf);
        if (!handle)
        {
            // libpcap names the file for errors of fopen (e.g. "<filename>:
            // No such file or directory", as spead2 reports); name it always.
            std::string msg = errbuf;
            if (msg.compare(0, filename.size(), filename) != 0)
                msg = filename + ": " + msg;
            throw std::runtime_error(msg);
        }
        if (std::FILE *f = pcap_file(handle))
            ::fcntl(fileno(f), F_SETFD, FD_CLOEXEC);
        try
        {
            dlt = pcap_datalink(handle);
            if (!dlt_supported(dlt))
            {
                const char *name = pcap_datalink_val_to_name(dlt);
                throw std::runtime_error(filename + ": unsupported pcap link type " + std::to_string(dlt) +
                                         (name ? std::string(" (") + name + ")" : std::string()) +
                                         " (supported: Ethernet, Linux SLL/SLL2, raw IP, BSD loopback)");
            }
            if (filter.find_first_not_of(" \t\r\n\f\v") != std::string::npos)
            {
                if (pcap_compile(handle, &program, filter.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0)
                    throw std::runtime_error(pcap_geterr(handle));
                filtered = true;
            }
        }
        catch (...)
        {
            pcap_close(handle);
            throw;
        }
    }

    ~capture()
    {
        if (filtered)
            pcap_freecode(&program);
        pcap_close(handle);
    }

    capture(const capture &) = delete;
    capture &operator=(const capture &) = delete;
};

} // namespace pcap_detail

using namespace pcap_detail;

pcap_reader::pcap_reader(stream &owner, const std::string &filename, const std::string &filter)
    : reader(owner), filename(filename), cap(std::make_unique<capture>(filename, filter))
{
}

void pcap_reader::replay()
{
    capture &c = *cap;
    bool end = false;
    while (!end)
    {
        add_packet_state batch(owner);
        if (batch.is_stopped())
            return;
        for (std::size_t i = 0; i < batch_size && !end; i++)
        {
            pcap_pkthdr *h;
            const u_char *data;
            int status = pcap_next_ex(c.handle, &h, &data);
            if (status == PCAP_ERROR_BREAK)
            {
                end = true; // end of the file
                continue;
            }
            if (status != 1)
            {
                // A corrupt or cut-short file: libpcap cannot go on.
                log_warning(filename + ": " + pcap_geterr(c.handle) + "; the rest of the file is skipped");
                batch.add_malformed(nullptr);
                end = true;
                continue;
            }
            if (c.filtered && !pcap_offline_filter(&c.program, h, data))
                continue;
            if (h->caplen < h->len)
            {
                // Cut short by the capture's snap length.
                batch.add_malformed(
                    ("Packet was truncated (" + std::to_string(h->caplen) + " < " + std::to_string(h->len) + ")")
                        .c_str()); // spead2's text
                continue;
            }
            udp_frame f = parse_frame(c.dlt, data, h->caplen);
            if (f.kind == frame_kind::other)
                continue;
            if (f.kind == frame_kind::malformed)
            {
                batch.add_malformed(f.why);
                continue;
            }
            batch.add_datagram(f.payload, f.payload_size, std::numeric_limits<std::size_t>::max());
            if (batch.is_stopped())
                return; // a stop item ended the stream
        }
    }
    add_packet_state batch(owner);
    owner.stop_received();
}

#else // !SPEAD2GPU_HAVE_PCAP

namespace pcap_detail
{
struct capture
{
};
} // namespace pcap_detail

pcap_reader::pcap_reader(stream &owner, const std::string &filename, const std::string &filter)
    : reader(owner), filename(filename)
{
    throw std::runtime_error("add_udp_pcap_file_reader: spead2gpu was built without libpcap, so it cannot read " +
                             filename +
                             " (install libpcap-dev, or your system's libpcap development package, and rebuild)");
}

void pcap_reader::replay() {}

#endif // SPEAD2GPU_HAVE_PCAP

pcap_reader::~pcap_reader()
{
    stop();
}

void pcap_reader::start()
{
    if (started || !cap)
        return;
    started = true;
    task.post(owner.get_thread_pool(), [this] { run(); });
}

void pcap_reader::run()
{
    try
    {
        replay();
    }
    catch (std::exception &e)
    {
        // E.g. std::bad_alloc for a heap with an absurd HEAP_LENGTH. End the
        // stream rather than leave its consumer waiting forever.
        log_warning(filename + ": pcap replay stopped early: " + e.what());
        add_packet_state batch(owner);
        owner.stop_received();
    }
    cap.reset(); // close the file now; stop() waits for this task
}

void pcap_reader::stop()
{
    task.wait();
    cap.reset();
}

} // namespace spead2gpu::recv
