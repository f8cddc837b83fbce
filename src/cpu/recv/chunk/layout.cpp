#include "recv/chunk/layout.h"
#include <cstring>
#include <stdexcept>

namespace spead2gpu::recv
{

static constexpr const char *wrong_size_stat = "spead2gpu.layout_wrong_size_heaps";
static constexpr const char *misaligned_stat = "spead2gpu.layout_misaligned_heaps";
static constexpr const char *out_of_range_stat = "spead2gpu.layout_out_of_range_heaps";
static constexpr const char *missing_stat = "spead2gpu.layout_missing_item_heaps";

std::vector<stat_config> chunk_layout::stats()
{
    return {{wrong_size_stat, stat_mode::COUNTER},
            {misaligned_stat, stat_mode::COUNTER},
            {out_of_range_stat, stat_mode::COUNTER},
            {missing_stat, stat_mode::COUNTER}};
}

void chunk_layout::validate() const
{
    if (heap_size == 0)
        throw std::invalid_argument("heap_size must be positive");
    if (timestamp_step == 0 || timestamps_per_chunk == 0)
        throw std::invalid_argument("timestamp_step and timestamps_per_chunk must be positive");
    if (axes.size() > 32 || extra_items.size() > 32)
        throw std::invalid_argument("at most 32 axes and 32 extra items are supported");
    int time_axes = 0;
    for (const auto &a : axes)
    {
        if (a.is_time)
            time_axes++;
        else if (a.count == 0 || a.step == 0)
            throw std::invalid_argument("axis count and step must be positive");
    }
    if (time_axes != 1)
        throw std::invalid_argument("axes must contain the time axis exactly once");
}

std::size_t chunk_layout::heaps_per_chunk() const
{
    std::size_t n = 1;
    for (const auto &a : axes)
        n *= a.is_time ? timestamps_per_chunk : a.count;
    return n;
}

void chunk_layout::place(chunk_place_data *data, std::size_t size, void *self_)
{
    const auto &self = *static_cast<const chunk_layout *>(self_);
    const std::uint8_t *pkt = data->packet;
    if (data->packet_size < 8)
        return;
    const int hab = int(pkt[3]) * 8;
    const int n_items = int(load_be64(pkt) & 0xffff);
    const item_pointer_t addr_mask = (item_pointer_t(1) << hab) - 1;
    if (8 + 8 * std::size_t(n_items) > data->packet_size)
        return;

    // Gather the immediates we need (at most a handful of IDs).
    constexpr std::size_t max_lookup = 32;
    const std::size_t n_axes = self.axes.size();
    const std::size_t n_extra = self.extra_items.size();
    std::int64_t heap_length = -1, timestamp = -1;
    std::int64_t axis_values[max_lookup], extra_values[max_lookup];
    for (std::size_t i = 0; i < n_axes && i < max_lookup; i++)
        axis_values[i] = -1;
    for (std::size_t i = 0; i < n_extra && i < max_lookup; i++)
        extra_values[i] = -1;
    for (int i = 0; i < n_items; i++)
    {
        item_pointer_t p = load_be64(pkt + 8 + 8 * i);
        if (!(p & immediate_mask))
            continue;
        item_pointer_t id = (p & ~immediate_mask) >> hab;
        std::int64_t value = std::int64_t(p & addr_mask);
        if (id == HEAP_LENGTH_ID)
            heap_length = value;
        if (id == self.timestamp_id)
            timestamp = value;
        for (std::size_t k = 0; k < n_axes && k < max_lookup; k++)
            if (!self.axes[k].is_time && self.axes[k].item_id == id)
                axis_values[k] = value;
        for (std::size_t k = 0; k < n_extra && k < max_lookup; k++)
            if (self.extra_items[k] == id)
                extra_values[k] = value;
    }
    std::uint64_t *stats = data->batch_stats;
    if (heap_length != std::int64_t(self.heap_size))
    {
        stats[self.wrong_size_index]++;
        return;
    }
    if (timestamp < 0)
    {
        stats[self.missing_index]++;
        return;
    }
    if (std::uint64_t(timestamp) % self.timestamp_step != 0)
    {
        stats[self.misaligned_index]++;
        return;
    }
    const std::uint64_t t = std::uint64_t(timestamp) / self.timestamp_step;
    std::uint64_t heap_index = 0;
    for (std::size_t k = 0; k < n_axes; k++)
    {
        const layout_axis &a = self.axes[k];
        std::uint64_t idx;
        std::uint64_t count;
        if (a.is_time)
        {
            idx = t % self.timestamps_per_chunk;
            count = self.timestamps_per_chunk;
        }
        else
        {
            if (k >= max_lookup || axis_values[k] < 0)
            {
                stats[self.missing_index]++;
                return;
            }
            std::uint64_t v = std::uint64_t(axis_values[k]);
            if (v < a.offset)
            {
                stats[self.out_of_range_index]++;
                return;
            }
            if ((v - a.offset) % a.step != 0)
            {
                stats[self.misaligned_index]++;
                return;
            }
            idx = (v - a.offset) / a.step;
            count = a.count;
            if (idx >= count)
            {
                stats[self.out_of_range_index]++;
                return;
            }
        }
        heap_index = heap_index * count + idx;
    }
    data->chunk_id = std::int64_t(t / self.timestamps_per_chunk);
    data->heap_index = heap_index;
    data->heap_offset = heap_index * self.heap_size;
    if (n_extra > 0 && n_extra <= max_lookup)
    {
        for (std::size_t k = 0; k < n_extra; k++)
        {
            std::uint64_t v = std::uint64_t(extra_values[k]);
            for (int b = 0; b < 8; b++)
                data->extra[8 * k + b] = std::uint8_t(v >> (8 * b));
        }
        data->extra_offset = heap_index * 8 * n_extra;
        data->extra_size = 8 * n_extra;
    }
}

} // namespace spead2gpu::recv
