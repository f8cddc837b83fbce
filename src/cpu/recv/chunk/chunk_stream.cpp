#include "recv/chunk/chunk_stream.h"
#include "recv/chunk/layout.h"
#include <cstring>

namespace spead2gpu::recv
{

static stream_config chunk_config_stream(stream_config config)
{
    config.set_allow_unsized_heaps(false);
    return config;
}

/// The statistics spead2 gives a chunk stream, and those of a layout (the user chose one).
static std::vector<stat_config> chunk_stats(const chunk_stream_config &config)
{
    std::vector<stat_config> out{stat_config{too_old_heaps_stat, stat_mode::COUNTER},
                                 stat_config{rejected_heaps_stat, stat_mode::COUNTER}};
    if (config.get_layout())
        for (auto &s : chunk_layout::stats())
            out.push_back(s);
    return out;
}

/// spead2gpu's additions to a chunk stream's statistics (reported with extended_stats).
static std::vector<stat_config> chunk_extension_stats()
{
    return {stat_config{bad_placement_stat, stat_mode::COUNTER}, stat_config{free_chunk_wait_stat, stat_mode::COUNTER}};
}

/// The effective chunk config: a layout brings its own placement and extra size.
static chunk_stream_config resolve_layout(chunk_stream_config config, chunk_layout *layout)
{
    if (layout)
    {
        config.set_place(&chunk_layout::place, layout);
        config.set_max_heap_extra(std::max(config.get_max_heap_extra(), layout->extra_bytes_per_heap()));
    }
    return config;
}

chunk_stream::chunk_stream(std::shared_ptr<thread_pool> pool, const stream_config &config,
                           const chunk_stream_config &chunk_config_)
    : stream(std::move(pool), chunk_config_stream(config), chunk_stats(chunk_config_), chunk_extension_stats()),
      layout(chunk_config_.get_layout() ? std::make_unique<chunk_layout>(*chunk_config_.get_layout()) : nullptr),
      chunk_config(resolve_layout(chunk_config_, layout.get())), too_old_index(stat_index(too_old_heaps_stat)),
      rejected_heaps_index(stat_index(rejected_heaps_stat)), bad_placement_index(stat_index(bad_placement_stat)),
      window(chunk_config.get_max_chunks()), item_values(chunk_config.get_items().size(), -1),
      extra_scratch(new std::uint8_t[std::max<std::size_t>(chunk_config.get_max_heap_extra(), 1)]),
      free_chunk_wait_index(stat_index(free_chunk_wait_stat))
{
    if (!chunk_config.get_place())
        throw std::invalid_argument("chunk_stream_config.place is not set");
    if (layout)
    {
        layout->validate();
        auto names = chunk_layout::stats();
        layout->wrong_size_index = stat_index(names[0].name);
        layout->misaligned_index = stat_index(names[1].name);
        layout->out_of_range_index = stat_index(names[2].name);
        layout->missing_index = stat_index(names[3].name);
    }
    heap_opts.placer = this;
    heap_opts.keep_pointers = false; // chunk heaps are never frozen into items
}

void chunk_stream::retire(chunk *c, std::uint64_t *stats)
{
    // Heaps still being written into this chunk age out: their later
    // packets are accepted but no longer copied.
    slots.for_each(
        [&](live_heap &h)
        {
            if (h.get_placement().chunk == c && !h.get_placement().discarded)
            {
                h.discard_placement();
                stats[too_old_index]++;
            }
        });
    ready_chunk(c, stats);
}

bool chunk_stream::place(const packet_header &packet, live_heap &heap)
{
    std::uint64_t *stats = batch_stats.data();
    const auto &items = chunk_config.get_items();
    std::fill(item_values.begin(), item_values.end(), -1);
    const int hab = packet.heap_address_bits;
    const item_pointer_t addr_mask = (item_pointer_t(1) << hab) - 1;
    for (int i = 0; i < packet.n_items; i++)
    {
        item_pointer_t p = packet.pointer(i);
        if (!(p & immediate_mask))
            continue;
        item_pointer_t id = (p & ~immediate_mask) >> hab;
        for (std::size_t k = 0; k < items.size(); k++)
            if (items[k] == id)
                item_values[k] = std::int64_t(p & addr_mask);
    }
    chunk_place_data d;
    d.packet = packet.packet;
    d.packet_size = packet.size;
    d.items = item_values.data();
    d.chunk_id = -1;
    d.heap_index = 0;
    d.heap_offset = 0;
    d.batch_stats = stats;
    d.extra = extra_scratch.get();
    d.extra_offset = 0;
    d.extra_size = 0;
    chunk_config.get_place()(&d, sizeof(d), chunk_config.get_place_user());
    if (d.chunk_id < 0)
    {
        stats[rejected_heaps_index]++;
        return false;
    }
    bool too_old;
    chunk *c = window.get(
        std::uint64_t(d.chunk_id), [&](chunk *r) { retire(r, stats); }, [this](std::uint64_t head)
        { window_head_moved(head); }, [&](std::uint64_t id) { return allocate_chunk(id, stats); }, too_old);
    if (too_old)
    {
        stats[too_old_index]++;
        return false;
    }
    if (!c)
        return false; // no chunk could be had (rings stopped)
    // Bounds checks: a bad placement is dropped, never written.
    const std::size_t heap_length = std::size_t(packet.heap_length);
    const std::size_t presence = chunk_config.get_packet_presence_payload_size();
    const std::size_t flags = presence ? (heap_length + presence - 1) / presence : 1;
    bool ok = d.heap_offset <= c->data_size && heap_length <= c->data_size - d.heap_offset;
    if (c->present)
        ok = ok && d.heap_index <= c->present_size && flags <= c->present_size - d.heap_index;
    if (d.extra_size > 0)
        ok = ok && d.extra_size <= chunk_config.get_max_heap_extra() && c->extra && d.extra_offset <= c->extra_size &&
            d.extra_size <= c->extra_size - d.extra_offset;
    if (!ok)
    {
        stats[bad_placement_index]++;
        bad_packet_log(log_level::warning, "placement callback gave a heap position outside its chunk; heap dropped");
        return false;
    }
    if (d.extra_size > 0)
        std::memcpy(c->extra + d.extra_offset, extra_scratch.get(), d.extra_size);
    heap_placement where;
    where.chunk = c;
    where.chunk_id = d.chunk_id;
    where.heap_index = d.heap_index;
    where.heap_offset = d.heap_offset;
    heap.place_at(c->data + d.heap_offset, heap_length, where);
    return true;
}

void chunk_stream::packet_added(const packet_header &packet, live_heap &heap)
{
    std::size_t presence = chunk_config.get_packet_presence_payload_size();
    if (!presence)
        return;
    auto *c = static_cast<chunk *>(heap.get_placement().chunk);
    std::size_t idx = heap.get_placement().heap_index + std::size_t(packet.payload_offset) / presence;
    if (c->present && idx < c->present_size)
        c->present[idx] = 1;
}

void chunk_stream::heap_ready(live_heap &&h)
{
    // The payload points into the chunk with a non-owning deleter: dropping
    // the heap frees nothing.
    const heap_placement &where = h.get_placement();
    if (where.chunk && !where.discarded && h.is_complete() && !chunk_config.get_packet_presence_payload_size())
    {
        auto *c = static_cast<chunk *>(where.chunk);
        if (c->present)
            c->present[where.heap_index] = 1;
    }
}

void chunk_stream::flush_until(std::uint64_t chunk_id, std::uint64_t *stats)
{
    window.flush_until(
        chunk_id, [&](chunk *r) { retire(r, stats); }, [this](std::uint64_t head) { window_head_moved(head); });
}

void chunk_stream::flush_chunks()
{
    std::vector<std::uint64_t> stats(batch_stats.size(), 0);
    window.flush_all([&](chunk *r) { retire(r, stats.data()); },
                     [this](std::uint64_t head) { window_head_moved(head); });
    for (std::size_t i = 0; i < stats.size(); i++)
        if (stats[i])
            add_stat_now(i, stats[i]);
}

void chunk_stream::stopped_locked(bool by_user)
{
    flush_chunks();
}

} // namespace spead2gpu::recv
