#include "recv/heap/slot_table.h"

namespace spead2gpu::recv
{

slot_table::slot_table(std::size_t max_heaps, std::size_t substreams)
    : max_heaps(max_heaps), slots(max_heaps * substreams), head(substreams, 0), last_hit(substreams, 0)
{
}

live_heap *slot_table::find(s_item_pointer_t cnt, std::uint64_t &search_dist)
{
    const std::size_t sub = substream_of(cnt);
    live_heap *base = slots.data() + sub * max_heaps;
    std::size_t &hint = last_hit[sub];
    if (base[hint].get_cnt() == cnt)
        return &base[hint];
    for (std::size_t i = 0; i < max_heaps; i++)
    {
        search_dist++;
        if (base[i].get_cnt() == cnt)
        {
            hint = i;
            return &base[i];
        }
    }
    return nullptr;
}

live_heap &slot_table::claim(s_item_pointer_t cnt)
{
    const std::size_t sub = substream_of(cnt);
    std::size_t &h = head[sub];
    const std::size_t slot = h;
    h = (h + 1 == max_heaps) ? 0 : h + 1;
    last_hit[sub] = slot;
    return slots[sub * max_heaps + slot];
}

} // namespace spead2gpu::recv
