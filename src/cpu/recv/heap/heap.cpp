#include "recv/heap/heap.h"
#include <algorithm>

namespace spead2gpu::recv
{

void heap_base::load(live_heap &&h, bool addressed)
{
    cnt_ = h.get_cnt();
    flavour_ = flavour(h.get_heap_address_bits(), h.get_bug_compat());
    const int hab = h.get_heap_address_bits();
    const int imm_bytes = hab / 8;
    const item_pointer_t addr_mask = (item_pointer_t(1) << hab) - 1;
    const item_pointer_t key_mask = immediate_mask | addr_mask;
    std::vector<item_pointer_t> ptrs = h.take_pointers();
    std::stable_sort(ptrs.begin(), ptrs.end(),
                     [key_mask](item_pointer_t a, item_pointer_t b) { return (a & key_mask) < (b & key_mask); });
    const s_item_pointer_t length = h.get_heap_length() >= 0 ? h.get_heap_length() : h.get_max_end();
    if (addressed)
        payload_ = h.take_payload();
    std::size_t n_imm = 0;
    for (auto p : ptrs)
        n_imm += (p & immediate_mask) ? 1 : 0;
    immediate_bytes_.resize(8 * n_imm);
    items_.reserve(ptrs.size());
    std::size_t imm_index = 0;
    for (std::size_t i = 0; i < ptrs.size(); i++)
    {
        item_pointer_t p = ptrs[i];
        s_item_pointer_t id = s_item_pointer_t((p & ~immediate_mask) >> hab);
        if (p & immediate_mask)
        {
            std::uint8_t *store = immediate_bytes_.data() + 8 * imm_index++;
            store_be64(store, p);
            if (id != NULL_ID)
                items_.push_back(item{id, true, p & addr_mask, store + (8 - imm_bytes), std::size_t(imm_bytes)});
        }
        else if (addressed)
        {
            s_item_pointer_t start = s_item_pointer_t(p & addr_mask);
            s_item_pointer_t end = length;
            // The next pointer in sort order that is addressed bounds this item.
            if (i + 1 < ptrs.size() && !(ptrs[i + 1] & immediate_mask))
                end = s_item_pointer_t(ptrs[i + 1] & addr_mask);
            if (id == NULL_ID || end <= start || start >= length)
                continue;
            end = std::min(end, length);
            item it{id, false, 0, payload_.get() + start, std::size_t(end - start)};
            // As in spead2, descriptors are not items: get_descriptors() decodes them.
            (id == DESCRIPTOR_ID ? descriptor_items_ : items_).push_back(it);
        }
    }
}

bool heap_base::is_start_of_stream() const
{
    for (const auto &it : items_)
        if (it.id == STREAM_CTRL_ID && it.is_immediate && it.immediate_value == CTRL_STREAM_START)
            return true;
    return false;
}

bool heap_base::is_end_of_stream() const
{
    for (const auto &it : items_)
        if (it.id == STREAM_CTRL_ID && it.is_immediate && it.immediate_value == CTRL_STREAM_STOP)
            return true;
    return false;
}

heap::heap(live_heap &&h)
{
    load(std::move(h), true);
}

std::vector<descriptor> heap::get_descriptors() const
{
    std::vector<descriptor> out;
    for (const auto &it : descriptor_items_)
    {
        for (auto &d : decode_descriptors(it.ptr, it.length, flavour_.get_bug_compat()))
            if (d.id != 0)
                out.push_back(std::move(d));
    }
    return out;
}

incomplete_heap::incomplete_heap(live_heap &&h, bool keep_payload_ranges)
    : heap_length_(h.get_heap_length()), received_length_(h.get_received_length())
{
    if (keep_payload_ranges)
        payload_ranges_ = h.ranges();
    load(std::move(h), false);
    if (keep_payload_ranges)
        payload_ = h.take_payload();
}

} // namespace spead2gpu::recv
