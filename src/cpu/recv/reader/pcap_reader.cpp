/**
 * @file recv_pcap_reader.cpp
 * Capture-file replay: file access, pcap/pcapng record iteration, link /
 * IP / UDP header parsing, packet filters (libpcap loaded at run time, or
 * a built-in subset) and the reader task.
 */
#include "recv/reader/pcap_reader.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <fcntl.h>
#include <limits>
#include <stdexcept>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>
#include "common/logging.h"

namespace spead2gpu::recv
{

namespace pcap_detail
{

namespace
{

[[noreturn]] void throw_errno(const std::string &filename, int err)
{
    throw std::runtime_error(filename + ": " + std::strerror(err));
}

inline std::uint16_t load_be16(const std::uint8_t *p)
{
    return std::uint16_t(p[0]) << 8 | p[1];
}

inline std::uint32_t load_u32(const std::uint8_t *p, bool big)
{
    std::uint32_t v;
    std::memcpy(&v, p, 4);
    if (big)
        v = __builtin_bswap32(v);   // host is little-endian (Linux x86/ARM)
    return v;
}

inline std::uint16_t load_u16(const std::uint8_t *p, bool big)
{
    std::uint16_t v;
    std::memcpy(&v, p, 2);
    if (big)
        v = __builtin_bswap16(v);
    return v;
}

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "pcap byte-order handling assumes a little-endian host");

// pcap / pcapng constants
constexpr std::uint32_t PCAP_MAGIC_US = 0xa1b2c3d4;
constexpr std::uint32_t PCAP_MAGIC_NS = 0xa1b23c4d;
constexpr std::uint32_t PCAP_MAGIC_MODIFIED = 0xa1b2cd34;   // Kuznetzov's patched format
constexpr std::uint32_t PCAPNG_SHB = 0x0A0D0D0A;
constexpr std::uint32_t PCAPNG_BOM = 0x1A2B3C4D;
constexpr std::uint32_t PCAPNG_IDB = 1;
constexpr std::uint32_t PCAPNG_OPB = 2;    // obsolete Packet Block
constexpr std::uint32_t PCAPNG_SPB = 3;
constexpr std::uint32_t PCAPNG_EPB = 6;
constexpr std::uint32_t NO_LINKTYPE = 0xffffffff;

// link types (LINKTYPE_* values as stored in files)
constexpr std::uint32_t LT_NULL = 0;
constexpr std::uint32_t LT_ETHERNET = 1;
constexpr std::uint32_t LT_RAW_12 = 12;
constexpr std::uint32_t LT_RAW_14 = 14;
constexpr std::uint32_t LT_RAW = 101;
constexpr std::uint32_t LT_LOOP = 108;
constexpr std::uint32_t LT_LINUX_SLL = 113;
constexpr std::uint32_t LT_IPV4 = 228;
constexpr std::uint32_t LT_IPV6 = 229;
constexpr std::uint32_t LT_LINUX_SLL2 = 276;

constexpr std::uint16_t ETH_IPV4 = 0x0800;
constexpr std::uint16_t ETH_IPV6 = 0x86DD;
constexpr std::uint8_t IPPROTO_UDP_ = 17;

} // anonymous namespace

/************************************************************************
 * file_contents
 ************************************************************************/

file_contents::file_contents(const std::string &filename)
{
    int fd = ::open(filename.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        throw_errno(filename, errno);
    struct stat st;
    if (::fstat(fd, &st) != 0)
    {
        int err = errno;
        ::close(fd);
        throw_errno(filename, err);
    }
    if (S_ISDIR(st.st_mode))
    {
        ::close(fd);
        throw_errno(filename, EISDIR);
    }
    if (S_ISREG(st.st_mode) && st.st_size > 0)
    {
        void *addr = ::mmap(nullptr, std::size_t(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
        if (addr != MAP_FAILED)
        {
            ::madvise(addr, std::size_t(st.st_size), MADV_SEQUENTIAL);
            map_addr = addr;
            ptr = static_cast<const std::uint8_t *>(addr);
            len = std::size_t(st.st_size);
            ::close(fd);
            return;
        }
    }
    // Not mappable (pipe, special file, mmap failure): read it all.
    std::size_t used = 0;
    copy.resize(S_ISREG(st.st_mode) && st.st_size > 0 ? std::size_t(st.st_size) : 65536);
    while (true)
    {
        if (used == copy.size())
            copy.resize(copy.size() * 2);
        ssize_t n = ::read(fd, copy.data() + used, copy.size() - used);
        if (n < 0)
        {
            if (errno == EINTR)
                continue;
            int err = errno;
            ::close(fd);
            throw_errno(filename, err);
        }
        if (n == 0)
            break;
        used += std::size_t(n);
    }
    ::close(fd);
    copy.resize(used);
    ptr = copy.data();
    len = used;
}

file_contents::~file_contents()
{
    if (map_addr)
        ::munmap(map_addr, len);
}

/************************************************************************
 * Frame parsing
 ************************************************************************/

bool linktype_supported(std::uint32_t linktype)
{
    switch (linktype)
    {
    case LT_NULL:
    case LT_ETHERNET:
    case LT_RAW_12:
    case LT_RAW_14:
    case LT_RAW:
    case LT_LOOP:
    case LT_LINUX_SLL:
    case LT_IPV4:
    case LT_IPV6:
    case LT_LINUX_SLL2:
        return true;
    default:
        return false;
    }
}

namespace
{

udp_frame parse_udp(const std::uint8_t *p, std::size_t n, int ip_version, bool jumbo)
{
    udp_frame f;
    f.ip_version = ip_version;
    if (n < 8)
    {
        f.kind = frame_kind::malformed;
        return f;
    }
    std::size_t len = load_be16(p + 4);
    if (len == 0 && jumbo)
        len = n;            // RFC 2675: UDP length 0 in a jumbogram
    if (len < 8 || len > n)
    {
        f.kind = frame_kind::malformed;
        return f;
    }
    f.kind = frame_kind::udp;
    f.src_port = load_be16(p);
    f.dst_port = load_be16(p + 2);
    f.payload = p + 8;
    f.payload_size = len - 8;
    return f;
}

udp_frame parse_ipv4(const std::uint8_t *p, std::size_t n)
{
    udp_frame f;
    f.ip_version = 4;
    if (n < 20 || (p[0] >> 4) != 4)
    {
        f.kind = n < 20 ? frame_kind::malformed : frame_kind::other;
        return f;
    }
    std::size_t ihl = std::size_t(p[0] & 0xf) * 4;
    std::size_t total = load_be16(p + 2);
    std::uint8_t proto = p[9];
    if (proto != IPPROTO_UDP_)
        return f;                       // not UDP: other
    if (ihl < 20 || total < ihl || total > n)
    {
        f.kind = frame_kind::malformed;
        return f;
    }
    std::uint16_t frag = load_be16(p + 6);
    if (frag & 0x3fff)                  // MF set or non-zero offset
    {
        f.kind = frame_kind::malformed;
        return f;
    }
    return parse_udp(p + ihl, total - ihl, 4, false);
}

udp_frame parse_ipv6(const std::uint8_t *p, std::size_t n)
{
    udp_frame f;
    f.ip_version = 6;
    if (n < 40)
    {
        f.kind = frame_kind::malformed;
        return f;
    }
    if ((p[0] >> 4) != 6)
        return f;
    std::size_t plen = load_be16(p + 4);
    bool jumbo = plen == 0;
    std::size_t limit = jumbo ? n : 40 + plen;
    std::uint8_t nh = p[6];
    std::size_t off = 40;
    bool truncated = limit > n;
    if (truncated)
        limit = n;
    while (true)
    {
        if (nh == IPPROTO_UDP_)
        {
            if (truncated)
            {
                f.kind = frame_kind::malformed;
                return f;
            }
            return parse_udp(p + off, limit - off, 6, jumbo);
        }
        std::size_t ext_len;
        switch (nh)
        {
        case 0:     // hop-by-hop options
        case 43:    // routing
        case 60:    // destination options
        case 135:   // mobility
        case 139:   // HIP
        case 140:   // shim6
            if (limit - off < 8)
            {
                f.kind = frame_kind::malformed;
                return f;
            }
            ext_len = (std::size_t(p[off + 1]) + 1) * 8;
            break;
        case 51:    // authentication header
            if (limit - off < 8)
            {
                f.kind = frame_kind::malformed;
                return f;
            }
            ext_len = (std::size_t(p[off + 1]) + 2) * 4;
            break;
        case 44:    // fragment
            if (limit - off < 8)
            {
                f.kind = frame_kind::malformed;
                return f;
            }
            if (load_be16(p + off + 2) & 0xfff9)
            {
                // A real fragment (non-zero offset or more-fragments set).
                if (p[off] == IPPROTO_UDP_)
                    f.kind = frame_kind::malformed;
                return f;
            }
            ext_len = 8;    // atomic fragment: the whole datagram follows
            break;
        default:
            return f;       // not UDP (or an unknown extension): other
        }
        if (ext_len > limit - off)
        {
            f.kind = frame_kind::malformed;
            return f;
        }
        nh = p[off];
        off += ext_len;
    }
}

udp_frame parse_ip(const std::uint8_t *p, std::size_t n)
{
    if (n < 1)
        return udp_frame{};
    switch (p[0] >> 4)
    {
    case 4: return parse_ipv4(p, n);
    case 6: return parse_ipv6(p, n);
    default: return udp_frame{};
    }
}

udp_frame parse_ethertype(std::uint16_t ethertype, const std::uint8_t *p, std::size_t n)
{
    // Skip 802.1Q / 802.1ad / legacy QinQ tags.
    while (ethertype == 0x8100 || ethertype == 0x88a8 || ethertype == 0x9100)
    {
        if (n < 4)
            return udp_frame{};
        ethertype = load_be16(p + 2);
        p += 4;
        n -= 4;
    }
    switch (ethertype)
    {
    case ETH_IPV4: return parse_ipv4(p, n);
    case ETH_IPV6: return parse_ipv6(p, n);
    default: return udp_frame{};
    }
}

} // anonymous namespace

udp_frame parse_frame(std::uint32_t linktype, const std::uint8_t *data, std::size_t caplen)
{
    switch (linktype)
    {
    case LT_ETHERNET:
        if (caplen < 14)
            return udp_frame{};
        return parse_ethertype(load_be16(data + 12), data + 14, caplen - 14);
    case LT_LINUX_SLL:
        if (caplen < 16)
            return udp_frame{};
        return parse_ethertype(load_be16(data + 14), data + 16, caplen - 16);
    case LT_LINUX_SLL2:
        if (caplen < 20)
            return udp_frame{};
        return parse_ethertype(load_be16(data), data + 20, caplen - 20);
    case LT_RAW:
    case LT_RAW_12:
    case LT_RAW_14:
        return parse_ip(data, caplen);
    case LT_IPV4:
        return caplen >= 1 && (data[0] >> 4) == 4 ? parse_ipv4(data, caplen) : udp_frame{};
    case LT_IPV6:
        return caplen >= 1 && (data[0] >> 4) == 6 ? parse_ipv6(data, caplen) : udp_frame{};
    case LT_NULL:
    case LT_LOOP:
        // 4-byte address family (host or network order); the IP version
        // nibble tells us what follows.
        if (caplen < 4)
            return udp_frame{};
        return parse_ip(data + 4, caplen - 4);
    default:
        return udp_frame{};
    }
}

/************************************************************************
 * Capture file iteration
 ************************************************************************/

/// One captured packet.
struct capture_record
{
    std::uint32_t linktype = NO_LINKTYPE;
    const std::uint8_t *data = nullptr;
    std::size_t caplen = 0;
    std::uint64_t origlen = 0;
};

/**
 * Walks the records of a pcap or pcapng file held in memory. Every length
 * is checked against the file size; corruption that makes the rest of the
 * file unparseable ends the walk (reported once as malformed).
 */
class capture_cursor
{
public:
    enum class step
    {
        record,     ///< a packet record was produced
        malformed,  ///< an undecodable record or a corrupt tail (count one)
        skip,       ///< a non-packet block
        end         ///< end of file
    };

private:
    struct interface
    {
        std::uint32_t linktype;
        std::uint32_t snaplen;
    };

    const std::uint8_t *base;
    std::size_t size;
    std::size_t pos = 0;
    bool ng = false;
    bool big = false;                 ///< byte order of the file (pcap) or current section (pcapng)
    std::uint32_t linktype = NO_LINKTYPE;   ///< classic pcap only
    std::size_t record_header = 16;   ///< classic pcap only
    std::vector<interface> interfaces;   ///< pcapng: interfaces of the current section
    bool done = false;

    step next_pcap(capture_record &r);
    step next_pcapng(capture_record &r);

public:
    /// Detect the format and validate the file header; throws std::runtime_error.
    capture_cursor(const std::string &filename, const std::uint8_t *base, std::size_t size);

    bool is_pcapng() const { return ng; }
    /// Link type of a classic pcap file.
    std::uint32_t get_linktype() const { return linktype; }
    /// Link types declared before the first packet (for up-front checks).
    std::vector<std::uint32_t> initial_linktypes() const;

    step next(capture_record &r) { return ng ? next_pcapng(r) : next_pcap(r); }
};

capture_cursor::capture_cursor(const std::string &filename, const std::uint8_t *base, std::size_t size)
    : base(base), size(size)
{
    if (size < 4)
        throw std::runtime_error(filename + ": truncated file header (file too short to be pcap or pcapng)");
    std::uint32_t le = load_u32(base, false);
    std::uint32_t be = load_u32(base, true);
    if (le == PCAPNG_SHB)
    {
        ng = true;
        if (size < 28)
            throw std::runtime_error(filename + ": truncated pcapng section header");
        std::uint32_t bom = load_u32(base + 8, false);
        if (bom == PCAPNG_BOM)
            big = false;
        else if (__builtin_bswap32(bom) == PCAPNG_BOM)
            big = true;
        else
            throw std::runtime_error(filename + ": pcapng section header has an invalid byte-order magic");
        std::uint32_t len = load_u32(base + 4, big);
        if (len < 28 || len % 4 != 0 || len > size)
            throw std::runtime_error(filename + ": pcapng section header has an invalid length");
        return;   // pos stays 0: next() processes the first SHB like any other
    }
    std::uint32_t magic;
    if (le == PCAP_MAGIC_US || le == PCAP_MAGIC_NS || le == PCAP_MAGIC_MODIFIED)
    {
        big = false;
        magic = le;
    }
    else if (be == PCAP_MAGIC_US || be == PCAP_MAGIC_NS || be == PCAP_MAGIC_MODIFIED)
    {
        big = true;
        magic = be;
    }
    else
        throw std::runtime_error(filename + ": unknown file format (neither pcap nor pcapng)");
    if (size < 24)
        throw std::runtime_error(filename + ": truncated pcap file header");
    record_header = magic == PCAP_MAGIC_MODIFIED ? 24 : 16;
    linktype = load_u32(base + 20, big) & 0xffff;   // upper bits: FCS information
    pos = 24;
}

std::vector<std::uint32_t> capture_cursor::initial_linktypes() const
{
    if (!ng)
        return {linktype};
    // Walk blocks up to the first packet block, collecting interfaces.
    std::vector<std::uint32_t> out;
    capture_cursor c = *this;
    while (c.pos < c.size && c.size - c.pos >= 12)
    {
        std::uint32_t type = load_u32(c.base + c.pos, c.big);
        if (type == PCAPNG_OPB || type == PCAPNG_SPB || type == PCAPNG_EPB)
            break;
        capture_record r;
        step s = c.next(r);
        if (s == step::end || (s == step::malformed && c.done))
            break;
        if (type == PCAPNG_IDB && !c.interfaces.empty())
            out.push_back(c.interfaces.back().linktype);
    }
    return out;
}

capture_cursor::step capture_cursor::next_pcap(capture_record &r)
{
    if (done || pos == size)
    {
        done = true;
        return step::end;
    }
    if (size - pos < record_header)
    {
        done = true;    // truncated record header at the end of the file
        return step::malformed;
    }
    const std::uint8_t *h = base + pos;
    std::uint32_t caplen = load_u32(h + 8, big);
    std::uint32_t origlen = load_u32(h + 12, big);
    if (caplen > size - pos - record_header)
    {
        done = true;    // truncated record data at the end of the file
        return step::malformed;
    }
    r.linktype = linktype;
    r.data = h + record_header;
    r.caplen = caplen;
    r.origlen = origlen;
    pos += record_header + caplen;
    return step::record;
}

capture_cursor::step capture_cursor::next_pcapng(capture_record &r)
{
    if (done || pos == size)
    {
        done = true;
        return step::end;
    }
    if (size - pos < 12)
    {
        done = true;
        return step::malformed;
    }
    const std::uint8_t *b = base + pos;
    std::uint32_t type = load_u32(b, big);
    if (type == PCAPNG_SHB)
    {
        // New section: its own byte order and interface list.
        if (size - pos < 28)
        {
            done = true;
            return step::malformed;
        }
        std::uint32_t bom = load_u32(b + 8, false);
        if (bom == PCAPNG_BOM)
            big = false;
        else if (__builtin_bswap32(bom) == PCAPNG_BOM)
            big = true;
        else
        {
            done = true;
            return step::malformed;
        }
        interfaces.clear();
    }
    std::uint32_t len = load_u32(b + 4, big);
    if (len < 12 || len % 4 != 0 || len > size - pos)
    {
        done = true;    // corrupt block length: cannot find the next block
        return step::malformed;
    }
    const std::uint8_t *body = b + 8;
    std::size_t body_len = len - 12;
    pos += len;
    switch (type)
    {
    case PCAPNG_SHB:
        return step::skip;
    case PCAPNG_IDB:
        if (body_len < 8)
            interfaces.push_back({NO_LINKTYPE, 0});    // keep the numbering
        else
            interfaces.push_back({load_u16(body, big), load_u32(body + 4, big)});
        return step::skip;
    case PCAPNG_EPB:
    case PCAPNG_OPB:
    {
        if (body_len < 20)
            return step::malformed;
        std::uint32_t id = type == PCAPNG_EPB ? load_u32(body, big) : load_u16(body, big);
        std::uint32_t caplen = load_u32(body + 12, big);
        std::uint32_t origlen = load_u32(body + 16, big);
        if (id >= interfaces.size() || caplen > body_len - 20)
            return step::malformed;
        r.linktype = interfaces[id].linktype;
        r.data = body + 20;
        r.caplen = caplen;
        r.origlen = origlen;
        return step::record;
    }
    case PCAPNG_SPB:
    {
        if (body_len < 4 || interfaces.empty())
            return step::malformed;
        std::uint32_t origlen = load_u32(body, big);
        std::size_t caplen = std::min<std::size_t>(origlen, body_len - 4);
        if (interfaces[0].snaplen != 0)
            caplen = std::min<std::size_t>(caplen, interfaces[0].snaplen);
        r.linktype = interfaces[0].linktype;
        r.data = body + 4;
        r.caplen = caplen;
        r.origlen = origlen;
        return step::record;
    }
    default:
        return step::skip;
    }
}

/************************************************************************
 * Filters
 ************************************************************************/

namespace
{

// Just the parts of libpcap's ABI that we use (stable since libpcap 0.8).
struct bpf_program_abi
{
    unsigned int bf_len;
    void *bf_insns;
};

struct pcap_pkthdr_abi
{
    struct timeval ts;
    std::uint32_t caplen;
    std::uint32_t len;
};

struct libpcap_api
{
    void *(*open_dead)(int linktype, int snaplen);
    int (*compile)(void *p, bpf_program_abi *fp, const char *str, int optimize, std::uint32_t netmask);
    void (*freecode)(bpf_program_abi *fp);
    int (*offline_filter)(const bpf_program_abi *fp, const pcap_pkthdr_abi *h, const std::uint8_t *pkt);
    char *(*geterr)(void *p);
    void (*close)(void *p);
};

constexpr std::uint32_t PCAP_NETMASK_UNKNOWN = 0xffffffff;

/// libpcap, loaded once; nullptr if it cannot be found.
const libpcap_api *load_libpcap()
{
    static const libpcap_api *api = []() -> const libpcap_api * {
        static const char *const names[] = {"libpcap.so.1", "libpcap.so.0.8", "libpcap.so"};
        for (const char *name : names)
        {
            void *handle = ::dlopen(name, RTLD_NOW | RTLD_LOCAL);
            if (!handle)
                continue;
            static libpcap_api a;
            a.open_dead = reinterpret_cast<decltype(a.open_dead)>(::dlsym(handle, "pcap_open_dead"));
            a.compile = reinterpret_cast<decltype(a.compile)>(::dlsym(handle, "pcap_compile"));
            a.freecode = reinterpret_cast<decltype(a.freecode)>(::dlsym(handle, "pcap_freecode"));
            a.offline_filter = reinterpret_cast<decltype(a.offline_filter)>(::dlsym(handle, "pcap_offline_filter"));
            a.geterr = reinterpret_cast<decltype(a.geterr)>(::dlsym(handle, "pcap_geterr"));
            a.close = reinterpret_cast<decltype(a.close)>(::dlsym(handle, "pcap_close"));
            if (a.open_dead && a.compile && a.freecode && a.offline_filter && a.geterr && a.close)
                return &a;   // handle deliberately never closed
            ::dlclose(handle);
        }
        return nullptr;
    }();
    return api;
}

/// libpcap < 1.8 has a non-reentrant filter compiler.
std::mutex libpcap_compile_mutex;

/// libpcap's DLT_* value for a file's LINKTYPE_* value.
int linktype_to_dlt(std::uint32_t linktype)
{
    switch (linktype)
    {
    case LT_RAW:
    case LT_RAW_12:
    case LT_RAW_14:
        return 12;      // DLT_RAW on Linux
    default:
        return int(linktype);
    }
}

bool libpcap_disabled_by_env()
{
    const char *v = std::getenv("SPEAD2GPU_NO_LIBPCAP");
    return v && *v && std::strcmp(v, "0") != 0;
}

std::vector<std::string> tokenize(const std::string &expr)
{
    std::vector<std::string> out;
    std::size_t i = 0;
    while (i < expr.size())
    {
        unsigned char c = expr[i];
        if (std::isspace(c))
        {
            i++;
            continue;
        }
        if (c == '&' && i + 1 < expr.size() && expr[i + 1] == '&')
        {
            out.emplace_back("and");
            i += 2;
            continue;
        }
        std::size_t j = i;
        while (j < expr.size() && !std::isspace(static_cast<unsigned char>(expr[j]))
               && !(expr[j] == '&' && j + 1 < expr.size() && expr[j + 1] == '&'))
            j++;
        out.push_back(expr.substr(i, j - i));
        i = j;
    }
    return out;
}

} // anonymous namespace

/**
 * A capture filter: either a BPF program per link type compiled by libpcap
 * (applied to the raw record), or a conjunction of simple UDP clauses
 * (applied to the parsed frame).
 */
class packet_filter
{
    struct clause
    {
        enum kind_t { IP4, IP6, PORT } kind;
        int dir = 0;                ///< 0 either port, 1 source, 2 destination
        std::uint16_t port = 0;
    };

    struct program
    {
        std::uint32_t linktype;
        bool ok;
        bpf_program_abi prog;
    };

    std::string expr;
    const libpcap_api *pcap = nullptr;
    std::vector<clause> clauses;
    std::vector<program> programs;

    [[noreturn]] void unsupported() const
    {
        throw std::invalid_argument(
            "pcap filter '" + expr + "' is not supported without libpcap: only 'udp', 'ip', 'ip6' and "
            "'[udp] [src|dst] port N', joined by 'and', are understood. Install libpcap "
            "(libpcap.so.1) for the full BPF filter syntax");
    }

    void parse_builtin()
    {
        std::vector<std::string> tok = tokenize(expr);
        std::size_t i = 0;
        auto parse_port = [&](std::size_t k) -> std::uint16_t {
            if (k >= tok.size() || tok[k].empty() || tok[k].size() > 5
                || !std::all_of(tok[k].begin(), tok[k].end(), [](char c) { return c >= '0' && c <= '9'; }))
                unsupported();
            unsigned long v = std::stoul(tok[k]);
            if (v > 65535)
                unsupported();
            return std::uint16_t(v);
        };
        while (i < tok.size())
        {
            if (tok[i] == "ip" || tok[i] == "ip6")
            {
                clause c;
                c.kind = tok[i] == "ip" ? clause::IP4 : clause::IP6;
                clauses.push_back(c);
                i++;
            }
            else
            {
                bool udp = tok[i] == "udp";
                if (udp)
                    i++;
                int dir = 0;
                if (i < tok.size() && (tok[i] == "src" || tok[i] == "dst"))
                {
                    dir = tok[i] == "src" ? 1 : 2;
                    i++;
                    if (i >= tok.size() || tok[i] != "port")
                        unsupported();
                }
                if (i < tok.size() && tok[i] == "port")
                {
                    clause c;
                    c.kind = clause::PORT;
                    c.dir = dir;
                    c.port = parse_port(i + 1);
                    clauses.push_back(c);
                    i += 2;
                }
                else if (!udp)
                    unsupported();
                // A plain "udp" needs no clause: only UDP datagrams are fed.
            }
            if (i < tok.size())
            {
                if (tok[i] != "and" || i + 1 >= tok.size())
                    unsupported();
                i++;
            }
        }
    }

    /// Compile for @a linktype (once); returns the program entry.
    program &compile(std::uint32_t linktype, bool throw_on_error)
    {
        for (auto &p : programs)
            if (p.linktype == linktype)
                return p;
        program p{linktype, false, {0, nullptr}};
        std::string error;
        {
            std::lock_guard<std::mutex> lock(libpcap_compile_mutex);
            void *handle = pcap->open_dead(linktype_to_dlt(linktype), 262144);
            if (!handle)
                error = "pcap_open_dead failed";
            else
            {
                if (pcap->compile(handle, &p.prog, expr.c_str(), 1, PCAP_NETMASK_UNKNOWN) == 0)
                    p.ok = true;
                else
                    error = pcap->geterr(handle);
                pcap->close(handle);
            }
        }
        if (!p.ok)
        {
            if (throw_on_error)
                throw std::runtime_error(error);   // e.g. "can't parse filter expression: syntax error"
            log_warning("pcap filter '" + expr + "' cannot be compiled for link type "
                        + std::to_string(linktype) + " (" + error + "); its packets are skipped");
        }
        programs.push_back(p);
        return programs.back();
    }

public:
    explicit packet_filter(const std::string &expr) : expr(expr)
    {
        if (!libpcap_disabled_by_env())
            pcap = load_libpcap();
        if (!pcap)
            parse_builtin();
    }

    ~packet_filter()
    {
        for (auto &p : programs)
            if (p.ok)
                pcap->freecode(&p.prog);
    }

    packet_filter(const packet_filter &) = delete;
    packet_filter &operator=(const packet_filter &) = delete;

    bool uses_libpcap() const { return pcap != nullptr; }

    /// Compile now for a link type known up front; errors throw.
    void prepare(std::uint32_t linktype)
    {
        if (pcap)
            compile(linktype, true);
    }

    /// libpcap mode: test the raw record.
    bool accept_record(const capture_record &r)
    {
        if (!pcap)
            return true;
        const program &p = compile(r.linktype, false);
        if (!p.ok)
            return false;
        pcap_pkthdr_abi hdr{};
        hdr.caplen = std::uint32_t(r.caplen);
        hdr.len = std::uint32_t(std::min<std::uint64_t>(r.origlen, std::numeric_limits<std::uint32_t>::max()));
        return pcap->offline_filter(&p.prog, &hdr, r.data) != 0;
    }

    /// Built-in mode: test the parsed UDP datagram.
    bool accept_frame(const udp_frame &f) const
    {
        for (const auto &c : clauses)
        {
            switch (c.kind)
            {
            case clause::IP4:
                if (f.ip_version != 4)
                    return false;
                break;
            case clause::IP6:
                if (f.ip_version != 6)
                    return false;
                break;
            case clause::PORT:
                if (c.dir == 1 ? f.src_port != c.port
                    : c.dir == 2 ? f.dst_port != c.port
                    : (f.src_port != c.port && f.dst_port != c.port))
                    return false;
                break;
            }
        }
        return true;
    }
};

} // namespace pcap_detail

/************************************************************************
 * pcap_reader
 ************************************************************************/

using namespace pcap_detail;

pcap_reader::completion_guard::~completion_guard()
{
    std::lock_guard<std::mutex> lock(c->mutex);
    c->done = true;
    c->cond.notify_all();
}

pcap_reader::pcap_reader(stream &owner, const std::string &filename, const std::string &filter_expr)
    : reader(owner), filename(filename), state(std::make_shared<completion>())
{
    file = std::make_unique<file_contents>(filename);
    cursor = std::make_unique<capture_cursor>(filename, file->data(), file->size());
    std::vector<std::uint32_t> linktypes = cursor->initial_linktypes();
    if (cursor->is_pcapng() && linktypes.empty())
        throw std::runtime_error(filename + ": the capture file has no Interface Description Blocks"
                                 " before its first packet");
    if (!linktypes.empty()
        && std::none_of(linktypes.begin(), linktypes.end(), linktype_supported))
        throw std::runtime_error(filename + ": unsupported pcap link type "
                                 + std::to_string(linktypes.front())
                                 + " (supported: Ethernet, Linux SLL/SLL2, raw IP, BSD loopback)");
    bool blank = std::all_of(filter_expr.begin(), filter_expr.end(),
                             [](unsigned char c) { return std::isspace(c); });
    if (!blank)
    {
        filter = std::make_unique<packet_filter>(filter_expr);
        for (std::uint32_t lt : linktypes)
            if (linktype_supported(lt))
                filter->prepare(lt);
    }
}

pcap_reader::~pcap_reader()
{
    stop();
}

void pcap_reader::start()
{
    started = true;
    // Constructed in place: a temporary guard's destructor would signal
    // completion before the task even ran.
    auto guard = std::shared_ptr<completion_guard>(new completion_guard{state});
    owner.get_thread_pool().post([this, guard] { run(); });
}

void pcap_reader::run()
{
    if (!cursor)
        return;     // stopped before it started
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
}

void pcap_reader::replay()
{
    capture_cursor &cur = *cursor;
    bool end = false;
    while (!end)
    {
        add_packet_state batch(owner);
        if (batch.is_stopped())
            return;
        for (std::size_t i = 0; i < batch_size && !end; i++)
        {
            capture_record r;
            switch (cur.next(r))
            {
            case capture_cursor::step::end:
                end = true;
                continue;
            case capture_cursor::step::skip:
                continue;
            case capture_cursor::step::malformed:
                batch.add_malformed(decode_status::truncated);
                continue;
            case capture_cursor::step::record:
                break;
            }
            if (!linktype_supported(r.linktype))
                continue;
            if (filter && !filter->accept_record(r))
                continue;
            if (r.caplen < r.origlen)
            {
                // Cut short by the capture's snap length.
                batch.add_malformed(decode_status::truncated);
                continue;
            }
            udp_frame f = parse_frame(r.linktype, r.data, r.caplen);
            if (f.kind == frame_kind::other)
                continue;
            if (f.kind == frame_kind::malformed)
            {
                batch.add_malformed(decode_status::truncated);
                continue;
            }
            if (filter && !filter->uses_libpcap() && !filter->accept_frame(f))
                continue;
            batch.add_datagram(f.payload, f.payload_size, std::numeric_limits<std::size_t>::max());
            if (batch.is_stopped())
                return;     // a stop item ended the stream
        }
    }
    add_packet_state batch(owner);
    owner.stop_received();
}

void pcap_reader::stop()
{
    if (started)
    {
        std::unique_lock<std::mutex> lock(state->mutex);
        state->cond.wait(lock, [this] { return state->done; });
    }
    // The replay task is over (or never ran): unmap the file.
    cursor.reset();
    file.reset();
}

} // namespace spead2gpu::recv
