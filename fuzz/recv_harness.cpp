/**
 * @file recv_harness.cpp
 * The receive-path fuzz harness (see recv_harness.h).
 *
 * Configuration bytes (each field takes the bits named):
 *
 *   0  kind (bits 0-2, mod 6): 0 ring_stream, 1 a heap collector (sees
 *      flushed and evicted heaps), 2 chunk stream + ChunkLayout, 3 chunk
 *      stream + placement callback, 4 chunk_ring_stream + ChunkLayout,
 *      5 chunk_ring_stream + callback; 3 allow_out_of_order;
 *      4 allow_unsized_heaps; 5 buffer replay instead of datagrams;
 *      6 stop_on_stop_item off; 7 incomplete_keep_payload_ranges
 *   1  max_heaps 1 + (0-2); substreams 1 + (3-4); bug_compat (5-7)
 *   2  max_chunks 1 + (0-1); heap size 4 << (2-4); 5 packet presence;
 *      presence payload size = heap size >> (6-7)
 *   3  timestamps_per_chunk 1 + (0-1); timestamp_step 1 << (2-3); 4 a
 *      second layout axis (item 0x1601); 5 that axis outermost; 6 an extra
 *      item (0x1603); 7 contiguous_only
 *   4  axis count 1 + (0-1), step 1 + (2), offset (3-4); packets per
 *      batch 1 + (5-7)
 *   5  callback heaps per chunk 1 + (0-2); 3 "wild" placements (heap
 *      index, offset and extra placement taken from items 0x1601-0x1603,
 *      to probe the bounds checks); extra bytes 8 × (4-5); 6 chunk id
 *      bias of 1 (chunk id -1 for the first heaps); 7 chunks without
 *      presence array
 *   6  datagram max_size 64 << (0-2); 3 non-temporal memcpy; 4 callback
 *      may claim 8 more extra bytes than it has; chunk data slack
 *      (5-6) × half a heap
 *   7  allocator cap 64 << (0-3) bytes (larger heaps get bad_alloc, i.e.
 *      no_memory); 4 end of input by the network (stop_received) rather
 *      than stop()
 *   8  max_heap_length: default if (0-3) is 0, else 16 << (0-3);
 *      max_heap_items: default if (4-7) is 0, else 1 << ((4-7) - 1)
 *
 * Item IDs the layouts and the callback use: timestamp 0x1600, axis /
 * wild heap index 0x1601, wild heap offset 0x1602, extra item / wild extra
 * placement 0x1603.
 */
#include "recv_harness.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <variant>
#include <vector>

#include "common/allocator.h"
#include "common/thread_pool.h"
#include "recv/chunk/chunk_ring_stream.h"
#include "recv/chunk/chunk_stream.h"
#include "recv/chunk/layout.h"
#include "recv/heap/heap.h"
#include "recv/packet/packet.h"
#include "recv/ring/ring_stream.h"
#include "recv/stream/stream.h"

namespace spead2gpu::fuzz
{

using namespace spead2gpu::recv;

namespace
{

[[noreturn]] void check_failed(const char *file, int line, const char *expr)
{
    std::fprintf(stderr, "spead2gpu fuzz: check failed at %s:%d: %s\n", file, line, expr);
    std::fflush(stderr);
    std::abort();
}

#define FUZZ_CHECK(expr)                                                                                               \
    do                                                                                                                 \
    {                                                                                                                  \
        if (!(expr))                                                                                                   \
            check_failed(__FILE__, __LINE__, #expr);                                                                   \
    } while (false)

constexpr item_pointer_t timestamp_id = 0x1600;
constexpr item_pointer_t axis_id = 0x1601;
constexpr item_pointer_t offset_id = 0x1602;
constexpr item_pointer_t extra_id = 0x1603;
constexpr std::uint8_t fill_byte = 0xa5;
/// Byte comparisons the payload checks may make per input (keeps slow inputs rare).
constexpr std::uint64_t check_budget = 1 << 22;

enum class stream_kind
{
    ring,
    collector,
    chunk_layout,
    chunk_callback,
    ring_chunk_layout,
    ring_chunk_callback
};

struct fuzz_config
{
    stream_kind kind = stream_kind::ring;
    bool out_of_order = false, unsized = false, buffer_mode = false, stop_on_stop_item = true;
    bool keep_ranges = false, contiguous_only = false, nontemporal = false, network_end = false;
    std::size_t max_heaps = 1, substreams = 1;
    std::uint32_t bug_compat = 0;
    std::size_t max_chunks = 1, heap_size = 4;
    bool presence = false;
    std::size_t presence_size = 1;
    std::uint64_t tpc = 1, ts_step = 1;
    bool axis = false, axis_outer = false, extra_item = false;
    std::uint64_t axis_count = 1, axis_step = 1, axis_offset = 0;
    std::size_t batch = 1;
    std::size_t heaps_per_chunk = 1;
    bool wild = false;
    std::size_t extra_bytes = 0; ///< the stream's max_heap_extra and the chunk's extra bytes per heap
    bool claim_more_extra = false; ///< the callback claims 8 extra bytes more than max_heap_extra
    std::int64_t chunk_bias = 0;
    bool no_present = false;
    std::size_t max_size = 64, data_slack = 0, alloc_cap = 64;
    std::size_t max_heap_length = 0, max_heap_items = 0; ///< 0: the stream's default

    bool is_chunk() const { return kind >= stream_kind::chunk_layout; }
    bool is_layout() const { return kind == stream_kind::chunk_layout || kind == stream_kind::ring_chunk_layout; }
    /// Presence flags per heap (per packet of presence_size bytes in presence mode).
    std::size_t flags_per_heap() const { return presence ? (heap_size + presence_size - 1) / presence_size : 1; }
};

fuzz_config parse_config(const std::uint8_t *b)
{
    fuzz_config c;
    c.kind = stream_kind((b[0] & 7) % 6);
    c.out_of_order = b[0] & 8;
    c.unsized = b[0] & 16;
    c.buffer_mode = b[0] & 32;
    c.stop_on_stop_item = !(b[0] & 64);
    c.keep_ranges = b[0] & 128;
    c.max_heaps = 1 + (b[1] & 7);
    c.substreams = 1 + ((b[1] >> 3) & 3);
    c.bug_compat = b[1] >> 5;
    c.max_chunks = 1 + (b[2] & 3);
    c.heap_size = std::size_t(4) << ((b[2] >> 2) & 7);
    c.presence = (b[2] >> 5) & 1;
    c.presence_size = std::max<std::size_t>(1, c.heap_size >> ((b[2] >> 6) & 3));
    c.tpc = 1 + (b[3] & 3);
    c.ts_step = std::uint64_t(1) << ((b[3] >> 2) & 3);
    c.axis = (b[3] >> 4) & 1;
    c.axis_outer = (b[3] >> 5) & 1;
    c.extra_item = (b[3] >> 6) & 1;
    c.contiguous_only = (b[3] >> 7) & 1;
    c.axis_count = 1 + (b[4] & 3);
    c.axis_step = 1 + ((b[4] >> 2) & 1);
    c.axis_offset = (b[4] >> 3) & 3;
    c.batch = 1 + (b[4] >> 5);
    c.heaps_per_chunk = 1 + (b[5] & 7);
    c.wild = (b[5] >> 3) & 1;
    c.extra_bytes = 8 * ((b[5] >> 4) & 3);
    c.chunk_bias = (b[5] >> 6) & 1;
    c.no_present = (b[5] >> 7) & 1;
    c.max_size = std::size_t(64) << (b[6] & 7);
    c.nontemporal = (b[6] >> 3) & 1;
    c.claim_more_extra = (b[6] >> 4) & 1;
    c.data_slack = ((b[6] >> 5) & 3) * c.heap_size / 2;
    c.alloc_cap = std::size_t(64) << (b[7] & 15);
    c.network_end = (b[7] >> 4) & 1;
    if (b[8] & 15)
        c.max_heap_length = std::size_t(16) << (b[8] & 15);
    if (b[8] >> 4)
        c.max_heap_items = std::size_t(1) << ((b[8] >> 4) - 1);
    return c;
}

/// The pool every stream of the process shares (stop_received posts a task to it).
const std::shared_ptr<thread_pool> &shared_pool()
{
    static const auto pool = std::make_shared<thread_pool>(1);
    return pool;
}

/// malloc-backed, but refuses (bad_alloc) anything above a cap: exercises the no_memory path cheaply.
class capped_allocator : public memory_allocator
{
    std::size_t cap;

public:
    explicit capped_allocator(std::size_t cap) : cap(cap) {}
    pointer allocate(std::size_t size, void *hint) override
    {
        FUZZ_CHECK(hint != nullptr); // the first packet of the heap
        if (size > cap)
            throw std::bad_alloc();
        return memory_allocator::allocate(size, hint);
    }
};

/// Read every byte (so that ASan sees a bad pointer or length).
std::uint64_t touch(const std::uint8_t *p, std::size_t n)
{
    std::uint64_t sum = 0;
    for (std::size_t i = 0; i < n; i++)
        sum += p[i];
    return sum;
}

/// Where the placement function puts the heap of a packet (the oracle's view).
struct placement
{
    s_item_pointer_t cnt;
    std::int64_t chunk_id;
    std::size_t heap_index, heap_offset, heap_length;
};

/// Parameters of the C placement callback (its user data).
struct callback_params
{
    const fuzz_config *cfg;
    std::size_t placed_index; ///< a custom statistic the callback increments
};

/// The placement callback: chunk and heap index from the timestamp item, optionally wild.
void fuzz_place(chunk_place_data *d, std::size_t size, void *user)
{
    const auto &p = *static_cast<const callback_params *>(user);
    const fuzz_config &cfg = *p.cfg;
    FUZZ_CHECK(size == sizeof(chunk_place_data));
    FUZZ_CHECK(d->packet_size >= 8 && d->packet[0] == 0x53);
    touch(d->packet, d->packet_size);
    FUZZ_CHECK(d->chunk_id == -1 && d->extra_size == 0);
    d->batch_stats[p.placed_index]++;
    const std::int64_t ts = d->items[0];
    if (ts < 0)
        return;
    const std::int64_t hpc = std::int64_t(cfg.heaps_per_chunk);
    const std::int64_t chunk_id = ts / hpc - cfg.chunk_bias;
    if (chunk_id < 0)
        return;
    const std::size_t index = std::size_t(ts % hpc);
    d->chunk_id = chunk_id;
    d->heap_index = index * cfg.flags_per_heap();
    d->heap_offset = index * cfg.heap_size;
    if (cfg.wild && d->items[1] >= 0)
        d->heap_index = std::size_t(d->items[1]);
    if (cfg.wild && d->items[2] >= 0)
        d->heap_offset = std::size_t(d->items[2]);
    if (cfg.extra_bytes)
    {
        d->extra_offset = index * cfg.extra_bytes;
        d->extra_size = cfg.extra_bytes + (cfg.claim_more_extra ? 8 : 0);
        if (cfg.wild && d->items[3] >= 0)
        {
            d->extra_size = std::size_t(d->items[3]) & 63;
            d->extra_offset = std::size_t(d->items[3]) >> 6;
        }
        // The scratch holds max_heap_extra bytes; a larger extra_size must be refused by the stream.
        for (std::size_t i = 0; i < std::min(d->extra_size, cfg.extra_bytes); i++)
            d->extra[i] = std::uint8_t(ts + i);
    }
}

/// A chunk with exactly sized buffers of its own (so that ASan sees any overrun).
class test_chunk : public chunk
{
    std::unique_ptr<std::uint8_t[]> data_buf, present_buf, extra_buf;

public:
    test_chunk(std::size_t data_bytes, std::size_t present_bytes, bool with_present, std::size_t extra_bytes)
        : data_buf(new std::uint8_t[data_bytes]), present_buf(with_present ? new std::uint8_t[present_bytes] : nullptr),
          extra_buf(extra_bytes ? new std::uint8_t[extra_bytes] : nullptr)
    {
        data = data_buf.get();
        data_size = data_bytes;
        present = present_buf.get();
        present_size = with_present ? present_bytes : 0;
        extra = extra_buf.get();
        extra_size = extra_bytes;
        reset();
    }

    void reset()
    {
        chunk_id = -1;
        std::memset(data, fill_byte, data_size);
        if (present)
            std::memset(present, 0, present_size);
        if (extra)
            std::memset(extra, 0, extra_size);
    }
};

/// Everything the harness knows about what it fed, and the checks of what came out.
class checker
{
public:
    const fuzz_config &cfg;
    std::unique_ptr<chunk_layout> layout; ///< the oracle's copy of the stream's layout
    callback_params params;
    std::vector<packet_header> fed; ///< decoded packets handed to a running stream
    std::unordered_map<s_item_pointer_t, std::vector<std::size_t>> by_cnt; ///< indices into fed
    std::vector<placement> placements; ///< the placement of every fed packet that names one
    std::unordered_map<std::int64_t, std::vector<std::size_t>> by_chunk; ///< indices into placements
    std::uint64_t malformed = 0;
    std::uint64_t heaps_ready = 0, incomplete_ready = 0;
    std::uint64_t frozen_seen = 0, chunks_seen = 0, present_seen = 0; ///< for the summary
    std::int64_t last_chunk_id = -1;
    std::uint64_t last_head = 0;
    std::uint64_t budget = check_budget;

    explicit checker(const fuzz_config &cfg) : cfg(cfg), params{&cfg, 0}
    {
        if (cfg.is_layout())
            layout = std::make_unique<chunk_layout>(make_layout(cfg));
    }

    static chunk_layout make_layout(const fuzz_config &cfg)
    {
        chunk_layout l;
        l.heap_size = cfg.heap_size;
        l.timestamp_id = timestamp_id;
        l.timestamp_step = cfg.ts_step;
        l.timestamps_per_chunk = cfg.tpc;
        layout_axis time;
        time.is_time = true;
        layout_axis other;
        other.item_id = axis_id;
        other.count = cfg.axis_count;
        other.step = cfg.axis_step;
        other.offset = cfg.axis_offset;
        if (!cfg.axis)
            l.axes = {time};
        else if (cfg.axis_outer)
            l.axes = {other, time};
        else
            l.axes = {time, other};
        if (cfg.extra_item)
            l.extra_items = {extra_id};
        return l;
    }

    std::size_t chunk_heaps() const { return layout ? layout->heaps_per_chunk() : cfg.heaps_per_chunk; }
    std::size_t chunk_data_size() const { return chunk_heaps() * cfg.heap_size + (layout ? 0 : cfg.data_slack); }
    std::size_t chunk_present_size() const
    {
        // A layout's heap index is not scaled by the flags per heap: leave room for the last heap's flags.
        if (layout)
            return cfg.presence ? chunk_heaps() + cfg.flags_per_heap() - 1 : chunk_heaps();
        return chunk_heaps() * cfg.flags_per_heap();
    }
    std::size_t chunk_extra_size() const
    {
        return layout ? chunk_heaps() * layout->extra_bytes_per_heap() : chunk_heaps() * cfg.extra_bytes;
    }
    std::unique_ptr<test_chunk> make_chunk() const
    {
        return std::make_unique<test_chunk>(chunk_data_size(), chunk_present_size(), !cfg.no_present || layout,
                                            chunk_extra_size());
    }

    /// Compute where the stream's placement function puts @a pk's heap, as a user would expect.
    void record_placement(const packet_header &pk)
    {
        if (pk.heap_length < 0)
            return;
        std::int64_t items[4] = {-1, -1, -1, -1};
        const item_pointer_t ids[4] = {timestamp_id, axis_id, offset_id, extra_id};
        const item_pointer_t addr_mask = (item_pointer_t(1) << pk.heap_address_bits) - 1;
        for (int i = 0; i < pk.n_items; i++)
        {
            item_pointer_t p = pk.pointer(i);
            if (!(p & immediate_mask))
                continue;
            item_pointer_t id = (p & ~immediate_mask) >> pk.heap_address_bits;
            for (int k = 0; k < 4; k++)
                if (ids[k] == id)
                    items[k] = std::int64_t(p & addr_mask);
        }
        std::uint64_t stats[64] = {};
        std::vector<std::uint8_t> extra(8 * 32 + 64);
        chunk_place_data d{};
        d.packet = pk.packet;
        d.packet_size = pk.size;
        d.items = items;
        d.chunk_id = -1;
        d.batch_stats = stats;
        d.extra = extra.data();
        if (layout)
            chunk_layout::place(&d, sizeof(d), layout.get());
        else
        {
            callback_params local{&cfg, 0};
            fuzz_place(&d, sizeof(d), &local);
        }
        if (d.chunk_id < 0)
            return;
        by_chunk[d.chunk_id].push_back(placements.size());
        placements.push_back(
            placement{pk.heap_cnt, d.chunk_id, d.heap_index, d.heap_offset, std::size_t(pk.heap_length)});
    }

    void record(const packet_header &pk)
    {
        by_cnt[pk.heap_cnt].push_back(fed.size());
        fed.push_back(pk);
        if (cfg.is_chunk())
            record_placement(pk);
    }

    /// A datagram the harness is about to give to add_datagram.
    void expect_datagram(const std::uint8_t *d, std::size_t len, bool stopped)
    {
        if (len > cfg.max_size)
        {
            malformed++;
            return;
        }
        packet_header pk;
        if (decode_packet(pk, d, len) != decode_status::ok || pk.size != len)
        {
            malformed++;
            return;
        }
        FUZZ_CHECK(pk.packet == d && pk.payload == d + 8 + 8 * std::size_t(pk.n_items));
        FUZZ_CHECK(pk.heap_address_bits >= 8 && pk.heap_address_bits <= 56 && pk.heap_cnt >= 0);
        FUZZ_CHECK(pk.heap_length < 0 || pk.payload_offset + pk.payload_length <= pk.heap_length);
        if (!stopped)
            record(pk);
    }

    /// Could byte @a o of heap @a cnt hold @a v (some fed packet of the heap carried it there)?
    bool byte_possible(s_item_pointer_t cnt, int hab, s_item_pointer_t o, std::uint8_t v)
    {
        auto it = by_cnt.find(cnt);
        if (it == by_cnt.end())
            return false;
        for (std::size_t idx : it->second)
        {
            if (budget)
                budget--;
            const packet_header &pk = fed[idx];
            if (pk.heap_address_bits == hab && pk.payload_offset <= o && o < pk.payload_offset + pk.payload_length &&
                pk.payload[o - pk.payload_offset] == v)
                return true;
        }
        return false;
    }

    /// Every byte of [start, end) of a heap's payload came from a fed packet of that heap.
    void check_payload(s_item_pointer_t cnt, int hab, const std::uint8_t *payload, s_item_pointer_t start,
                       s_item_pointer_t end)
    {
        for (s_item_pointer_t o = start; o < end && budget; o++)
            FUZZ_CHECK(byte_possible(cnt, hab, o, payload[o]));
    }

    /// Merged, sorted, disjoint ranges that add up to the received length and lie within the heap.
    static void check_ranges(const std::vector<std::pair<s_item_pointer_t, s_item_pointer_t>> &ranges,
                             s_item_pointer_t received, s_item_pointer_t heap_length)
    {
        s_item_pointer_t prev_end = -1, total = 0;
        for (const auto &r : ranges)
        {
            FUZZ_CHECK(r.first >= 0 && r.first < r.second);
            FUZZ_CHECK(r.first > prev_end); // merged: neither overlapping nor touching
            FUZZ_CHECK(heap_length < 0 || r.second <= heap_length);
            total += r.second - r.first;
            prev_end = r.second;
        }
        FUZZ_CHECK(total == received);
    }

    template <typename Heap> void check_items(const Heap &h, bool addressed)
    {
        const int hab = h.get_flavour().get_heap_address_bits();
        FUZZ_CHECK(hab >= 8 && hab <= 56);
        FUZZ_CHECK(h.get_cnt() >= 0);
        for (const item &it : h.get_items())
        {
            FUZZ_CHECK(it.id != 0);
            if (it.is_immediate)
            {
                FUZZ_CHECK(it.length == std::size_t(hab / 8));
                item_pointer_t v = 0;
                for (std::size_t i = 0; i < it.length; i++)
                    v = (v << 8) | it.ptr[i];
                FUZZ_CHECK(v == it.immediate_value);
            }
            else
            {
                FUZZ_CHECK(addressed);
                FUZZ_CHECK(h.payload() != nullptr && it.ptr >= h.payload() && it.length > 0);
                const s_item_pointer_t start = it.ptr - h.payload();
                check_payload(h.get_cnt(), hab, h.payload(), start, start + s_item_pointer_t(it.length));
            }
        }
        h.is_start_of_stream();
        h.is_end_of_stream();
    }

    void check_heap(const heap &h)
    {
        check_items(h, true);
        for (const descriptor &d : h.get_descriptors())
        {
            FUZZ_CHECK(d.id != 0);
            touch(reinterpret_cast<const std::uint8_t *>(d.name.data()), d.name.size());
            touch(reinterpret_cast<const std::uint8_t *>(d.description.data()), d.description.size());
            touch(reinterpret_cast<const std::uint8_t *>(d.numpy_header.data()), d.numpy_header.size());
            FUZZ_CHECK(d.numpy_header.empty() || (d.format.empty() && d.shape.empty()));
            for (auto dim : d.shape)
                FUZZ_CHECK(dim >= -1);
        }
    }

    void check_incomplete(const incomplete_heap &h)
    {
        check_items(h, false);
        FUZZ_CHECK(h.get_received_length() >= 0);
        FUZZ_CHECK(h.get_heap_length() < 0 || h.get_received_length() <= h.get_heap_length());
        if (cfg.keep_ranges)
        {
            check_ranges(h.get_payload_ranges(), h.get_received_length(), h.get_heap_length());
            const int hab = h.get_flavour().get_heap_address_bits();
            if (h.payload())
                for (const auto &r : h.get_payload_ranges())
                    check_payload(h.get_cnt(), hab, h.payload(), r.first, r.second);
        }
        else
            FUZZ_CHECK(h.get_payload_ranges().empty() && !h.payload());
    }

    /// A heap that the collector stream was handed (complete, evicted or flushed).
    void on_heap(live_heap &&h)
    {
        heaps_ready++;
        FUZZ_CHECK(!h.empty());
        const s_item_pointer_t length = h.get_heap_length();
        FUZZ_CHECK(length < 0 || h.get_max_end() <= length);
        check_ranges(h.ranges(), h.get_received_length(), length);
        if (h.is_complete())
        {
            FUZZ_CHECK(h.is_contiguous() && h.get_received_length() == length);
            heap frozen(std::move(h));
            check_heap(frozen);
        }
        else
        {
            incomplete_ready++;
            incomplete_heap frozen(std::move(h), cfg.keep_ranges);
            check_incomplete(frozen);
        }
    }

    void on_frozen(ring_stream::frozen &&f)
    {
        frozen_seen++;
        if (auto *h = std::get_if<heap>(&f))
            check_heap(*h);
        else
        {
            const auto &ih = std::get<incomplete_heap>(f);
            FUZZ_CHECK(!cfg.contiguous_only);
            check_incomplete(ih);
        }
    }

    void on_head_moved(std::uint64_t head)
    {
        FUZZ_CHECK(head >= last_head);
        last_head = head;
    }

    /// A chunk leaving the stream (to the data ring, the graveyard, or ready_chunk).
    void on_chunk(const chunk &c)
    {
        FUZZ_CHECK(c.chunk_id > last_chunk_id);
        last_chunk_id = c.chunk_id;
        chunks_seen++;
        FUZZ_CHECK(c.data_size == chunk_data_size() && c.extra_size == chunk_extra_size());
        if (!c.present)
            return;
        FUZZ_CHECK(c.present_size == chunk_present_size());
        auto it = by_chunk.find(c.chunk_id);
        const std::vector<std::size_t> none;
        const std::vector<std::size_t> &here = it == by_chunk.end() ? none : it->second;
        std::vector<bool> byte_ok; // per data byte: some heap placed in this chunk could have written it
        for (std::size_t i = 0; i < c.present_size; i++)
        {
            FUZZ_CHECK(c.present[i] <= 1);
            if (!c.present[i])
                continue;
            present_seen++;
            bool found = false;
            for (std::size_t k : here)
            {
                const placement &p = placements[k];
                if (cfg.presence)
                {
                    const std::size_t flags = (p.heap_length + cfg.presence_size - 1) / cfg.presence_size;
                    found = found || (p.heap_index <= i && i < p.heap_index + flags);
                }
                else if (p.heap_index == i && p.heap_offset <= c.data_size &&
                         p.heap_length <= c.data_size - p.heap_offset)
                {
                    if (byte_ok.empty())
                        byte_ok = writable_bytes(c, here);
                    bool all = true;
                    for (std::size_t o = p.heap_offset; o < p.heap_offset + p.heap_length && all; o++)
                        all = byte_ok[o];
                    found = found || all;
                }
            }
            // A present flag names a heap that was placed there, with all its bytes from its packets.
            FUZZ_CHECK(found || !budget);
        }
    }

    /// Which data bytes of @a c hold a value that a fed packet of a heap placed in this chunk carried there.
    std::vector<bool> writable_bytes(const chunk &c, const std::vector<std::size_t> &here)
    {
        std::vector<bool> ok(c.data_size, false);
        std::set<std::tuple<s_item_pointer_t, std::size_t, std::size_t>> done;
        for (std::size_t k : here)
        {
            const placement &p = placements[k];
            if (p.heap_offset > c.data_size || p.heap_length > c.data_size - p.heap_offset)
                continue;
            if (!done.emplace(p.cnt, p.heap_offset, p.heap_length).second)
                continue;
            for (std::size_t idx : by_cnt[p.cnt])
            {
                const packet_header &pk = fed[idx];
                if (pk.heap_length != s_item_pointer_t(p.heap_length))
                    continue;
                for (s_item_pointer_t j = 0; j < pk.payload_length && budget; j++, budget--)
                {
                    const std::size_t o = p.heap_offset + std::size_t(pk.payload_offset + j);
                    if (c.data[o] == pk.payload[j])
                        ok[o] = true;
                }
            }
        }
        return ok;
    }
};

/// Collects every heap the stream hands on, complete or not.
class collector_stream : public stream
{
    checker &chk;
    void heap_ready(live_heap &&h) override { chk.on_heap(std::move(h)); }

public:
    collector_stream(const stream_config &config, checker &chk) : stream(shared_pool(), config), chk(chk) {}
    ~collector_stream() override { stop(); }
};

/// A chunk stream without rings: fresh chunks, checked and freed as they leave.
class owning_chunk_stream : public chunk_stream
{
    checker &chk;

    chunk *allocate_chunk(std::uint64_t chunk_id, std::uint64_t *stats) override
    {
        auto c = chk.make_chunk();
        c->chunk_id = std::int64_t(chunk_id);
        return c.release();
    }
    void ready_chunk(chunk *c, std::uint64_t *stats) override
    {
        std::unique_ptr<chunk> owned(c);
        chk.on_chunk(*owned);
    }
    void window_head_moved(std::uint64_t head) override { chk.on_head_moved(head); }

public:
    owning_chunk_stream(const stream_config &config, const chunk_stream_config &chunk_config, checker &chk)
        : chunk_stream(shared_pool(), config, chunk_config), chk(chk)
    {
    }
    ~owning_chunk_stream() override { stop(); }
};

/// chunk_ring_stream, watching its window head.
class watched_chunk_ring_stream : public chunk_ring_stream
{
    checker &chk;
    void window_head_moved(std::uint64_t head) override { chk.on_head_moved(head); }

public:
    watched_chunk_ring_stream(const stream_config &config, const chunk_stream_config &chunk_config,
                              std::shared_ptr<chunk_ringbuffer> data_ring, std::shared_ptr<chunk_ringbuffer> free_ring,
                              checker &chk)
        : chunk_ring_stream(shared_pool(), config, chunk_config, std::move(data_ring), std::move(free_ring)), chk(chk)
    {
    }
};

/// Feed the packets after the configuration bytes; @a drain runs after every batch.
template <typename Drain> void feed(stream &s, checker &chk, const std::uint8_t *p, std::size_t n, Drain &&drain)
{
    const fuzz_config &cfg = chk.cfg;
    std::size_t pos = 0;
    bool in_garbage = false;
    while (pos < n)
    {
        {
            add_packet_state batch(s);
            if (batch.is_stopped())
                break;
            for (std::size_t i = 0; i < cfg.batch && pos < n; i++)
            {
                const bool stopped = batch.is_stopped();
                if (!cfg.buffer_mode)
                {
                    if (n - pos < 2)
                    {
                        pos = n;
                        break;
                    }
                    std::size_t len = (std::size_t(p[pos]) << 8) | p[pos + 1];
                    pos += 2;
                    len = std::min(len, n - pos);
                    chk.expect_datagram(p + pos, len, stopped);
                    batch.add_datagram(p + pos, len, cfg.max_size);
                    pos += len;
                    continue;
                }
                // As add_buffer_reader does: on garbage, resynchronise on the next magic byte.
                // The packet is recorded first: a collector checks the heap it completes at once.
                packet_header pk;
                const bool decoded = decode_packet(pk, p + pos, n - pos) == decode_status::ok;
                if (decoded && !stopped)
                    chk.record(pk);
                const std::size_t used = batch.add_packet(p + pos, n - pos);
                FUZZ_CHECK(decoded == (used != 0));
                if (used == 0)
                {
                    if (!in_garbage)
                    {
                        batch.add_malformed();
                        chk.malformed++;
                    }
                    in_garbage = true;
                    const void *next = std::memchr(p + pos + 1, 0x53, n - pos - 1);
                    pos = next ? std::size_t(static_cast<const std::uint8_t *>(next) - p) : n;
                }
                else
                {
                    FUZZ_CHECK(pk.size == used && used <= n - pos);
                    in_garbage = false;
                    pos += used;
                }
            }
        }
        drain();
    }
    if (cfg.network_end)
    {
        add_packet_state batch(s);
        s.stop_received();
    }
    drain();
    s.stop();
    drain();
}

/// Statistics against what the harness fed and saw.
void check_stats(stream &s, const checker &chk, bool collector)
{
    const stream_stats st = s.get_stats();
    const auto &v = st.values();
    auto get = [&](const char *name) { return v.at(s.stat_index(name)); };
    if (std::getenv("SPEAD2GPU_FUZZ_SUMMARY"))
        std::fprintf(stderr,
                     "kind %d: %zu packets fed, %llu malformed, %llu rejected, %llu heaps (%llu seen, %llu frozen), "
                     "%llu chunks, %llu present flags, budget left %llu\n",
                     int(chk.cfg.kind), chk.fed.size(), (unsigned long long)chk.malformed,
                     (unsigned long long)get(rejected_packets_stat), (unsigned long long)v[stat_index::HEAPS],
                     (unsigned long long)chk.heaps_ready, (unsigned long long)chk.frozen_seen,
                     (unsigned long long)chk.chunks_seen, (unsigned long long)chk.present_seen,
                     (unsigned long long)chk.budget);
    FUZZ_CHECK(v[stat_index::PACKETS] == chk.fed.size());
    FUZZ_CHECK(get(malformed_packets_stat) == chk.malformed);
    FUZZ_CHECK(get(rejected_packets_stat) <= v[stat_index::PACKETS]);
    FUZZ_CHECK(v[stat_index::HEAPS] >=
               v[stat_index::INCOMPLETE_HEAPS_EVICTED] + v[stat_index::INCOMPLETE_HEAPS_FLUSHED]);
    FUZZ_CHECK(v[stat_index::MAX_BATCH] <= chk.cfg.batch);
    FUZZ_CHECK(v[stat_index::WORKER_BLOCKED] == 0); // the rings were sized never to fill
    FUZZ_CHECK(get(kernel_drops_stat) == 0);
    if (collector)
    {
        FUZZ_CHECK(v[stat_index::HEAPS] == chk.heaps_ready);
        FUZZ_CHECK(v[stat_index::INCOMPLETE_HEAPS_EVICTED] + v[stat_index::INCOMPLETE_HEAPS_FLUSHED] ==
                   chk.incomplete_ready);
    }
    if (chk.cfg.is_chunk())
    {
        if (chk.cfg.is_layout())
            FUZZ_CHECK(get(bad_placement_stat) == 0); // the chunks are exactly the layout's size
        FUZZ_CHECK(get(free_chunk_wait_stat) == 0);
    }
}

} // namespace

void run_recv_input(const std::uint8_t *data, std::size_t size)
{
    if (size < config_bytes)
        return;
    const fuzz_config cfg = parse_config(data);
    const std::uint8_t *p = data + config_bytes;
    const std::size_t n = size - config_bytes;
    checker chk(cfg);

    stream_config sc;
    sc.set_max_heaps(cfg.max_heaps)
        .set_substreams(cfg.substreams)
        .set_bug_compat(cfg.bug_compat)
        .set_allow_out_of_order(cfg.out_of_order)
        .set_allow_unsized_heaps(cfg.unsized)
        .set_stop_on_stop_item(cfg.stop_on_stop_item)
        .set_memcpy(cfg.nontemporal ? memcpy_function_id::NONTEMPORAL : memcpy_function_id::STD)
        .set_memory_allocator(std::make_shared<capped_allocator>(cfg.alloc_cap))
        .set_extended_stats(true);
    if (cfg.max_heap_length)
        sc.set_max_heap_length(cfg.max_heap_length);
    if (cfg.max_heap_items)
        sc.set_max_heap_items(cfg.max_heap_items);

    if (!cfg.is_chunk())
    {
        if (cfg.kind == stream_kind::collector)
        {
            collector_stream s(sc, chk);
            feed(s, chk, p, n, [] {});
            check_stats(s, chk, true);
            return;
        }
        ring_stream_config rc;
        rc.set_contiguous_only(cfg.contiguous_only).set_incomplete_keep_payload_ranges(cfg.keep_ranges);
        // Room for every heap one batch can hand on (an eviction and a delivery per packet) plus a flush.
        rc.set_heaps(2 * cfg.batch + cfg.max_heaps * cfg.substreams + 2);
        ring_stream s(shared_pool(), sc, rc);
        auto drain = [&]
        {
            try
            {
                while (auto f = s.try_pop_ready())
                    chk.on_frozen(std::move(*f));
            }
            catch (ringbuffer_stopped &)
            {
            }
        };
        feed(s, chk, p, n, drain);
        check_stats(s, chk, false);
        return;
    }

    chk.params.placed_index = sc.add_stat("fuzz.placed");
    chunk_stream_config cc;
    cc.set_max_chunks(cfg.max_chunks);
    if (cfg.presence)
        cc.enable_packet_presence(cfg.presence_size);
    if (chk.layout)
        cc.set_layout(std::make_shared<chunk_layout>(*chk.layout));
    else
    {
        cc.set_items({timestamp_id, axis_id, offset_id, extra_id});
        cc.set_place(&fuzz_place, &chk.params);
        cc.set_max_heap_extra(cfg.extra_bytes);
    }

    if (cfg.kind == stream_kind::chunk_layout || cfg.kind == stream_kind::chunk_callback)
    {
        owning_chunk_stream s(sc, cc, chk);
        feed(s, chk, p, n, [] {});
        check_stats(s, chk, false);
        return;
    }

    // A window can retire and allocate max_chunks chunks per packet: enough
    // chunks circulate that the free ring never runs dry between drains.
    const std::size_t n_chunks = cfg.max_chunks * (cfg.batch + 1) + 1;
    auto data_ring = std::make_shared<chunk_ringbuffer>(n_chunks);
    auto free_ring = std::make_shared<chunk_ringbuffer>(n_chunks);
    for (std::size_t i = 0; i < n_chunks; i++)
        free_ring->push(chk.make_chunk());
    watched_chunk_ring_stream s(sc, cc, data_ring, free_ring, chk);
    auto recycle = [&](std::unique_ptr<chunk> c)
    {
        chk.on_chunk(*c);
        static_cast<test_chunk &>(*c).reset();
        try
        {
            free_ring->push(std::move(c));
        }
        catch (ringbuffer_stopped &)
        {
        }
    };
    auto drain = [&]
    {
        try
        {
            while (auto c = data_ring->try_pop_optional())
                recycle(std::move(*c));
        }
        catch (ringbuffer_stopped &)
        {
        }
    };
    feed(s, chk, p, n, drain);
    for (auto &c : s.take_graveyard())
        recycle(std::move(c));
    check_stats(s, chk, false);
}

} // namespace spead2gpu::fuzz
