#include "recv/heap/live_heap.h"
#include <algorithm>
#include <iterator>
#include <utility>

namespace spead2gpu::recv
{

namespace
{
/// Up to this many pointers a heap de-duplicates by a linear search (no allocation); beyond, by pointer_set.
constexpr std::size_t linear_dedup_limit = 32;
} // namespace

void live_heap::reset(const packet_header &packet, std::uint32_t bug_compat_)
{
    clear();
    cnt = packet.heap_cnt;
    heap_address_bits = packet.heap_address_bits;
    bug_compat = bug_compat_;
}

live_heap &live_heap::operator=(live_heap &&other) noexcept
{
    if (this != &other)
    {
        cnt = std::exchange(other.cnt, -1);
        heap_address_bits = other.heap_address_bits;
        bug_compat = other.bug_compat;
        heap_length = std::exchange(other.heap_length, -1);
        received_length = std::exchange(other.received_length, 0);
        min_length = std::exchange(other.min_length, 0);
        max_end = std::exchange(other.max_end, 0);
        end_of_stream = std::exchange(other.end_of_stream, false);
        payload = std::move(other.payload);
        payload_capacity = std::exchange(other.payload_capacity, 0);
        pointers = std::move(other.pointers);
        other.pointers.clear();
        pointer_set = std::move(other.pointer_set);
        other.pointer_set.clear();
        payload_ranges = std::move(other.payload_ranges);
        other.payload_ranges.clear();
        placement = std::exchange(other.placement, heap_placement());
    }
    return *this;
}

bool live_heap::has_pointer(item_pointer_t p) const
{
    if (pointers.size() <= linear_dedup_limit)
        return std::find(pointers.begin(), pointers.end(), p) != pointers.end();
    return pointer_set.count(p) != 0;
}

void live_heap::add_pointer(item_pointer_t p)
{
    if (has_pointer(p))
        return;
    pointers.push_back(p);
    if (pointers.size() == linear_dedup_limit + 1)
        pointer_set.insert(pointers.begin(), pointers.end()); // switch to the set
    else if (pointers.size() > linear_dedup_limit + 1)
        pointer_set.insert(p);
}

std::size_t live_heap::count_new_pointers(const packet_header &packet) const
{
    std::size_t n = 0;
    for (int i = 0; i < packet.n_items; i++)
    {
        item_pointer_t p = packet.pointer(i);
        item_pointer_t id = (p & ~immediate_mask) >> heap_address_bits;
        if (id >= HEAP_CNT_ID && id <= PAYLOAD_LENGTH_ID)
            continue;
        if (!has_pointer(p))
            n++; // a pointer repeated within this packet is counted twice: a bound, not an exact count
    }
    return n;
}

void live_heap::clear()
{
    // Field by field rather than from a fresh heap: the vectors keep their
    // capacity, so a reused slot allocates nothing for its next heap.
    cnt = -1;
    heap_length = -1;
    received_length = 0;
    min_length = 0;
    max_end = 0;
    end_of_stream = false;
    payload.reset();
    payload_capacity = 0;
    pointers.clear();
    // Guarded: clearing an unordered_set zeroes its whole bucket array even
    // when it holds nothing, and most heaps never switch to the set.
    if (!pointer_set.empty())
        pointer_set.clear();
    if (!payload_ranges.empty())
        payload_ranges.clear();
    placement = heap_placement();
}

void live_heap::place_at(std::uint8_t *data, std::size_t capacity, const heap_placement &where)
{
    payload = memory_allocator::pointer(data, memory_allocator::deleter{});
    payload_capacity = capacity;
    placement = where;
}

void live_heap::discard_placement()
{
    placement.discarded = true;
    payload.release();
}

void live_heap::reserve(std::size_t size, const packet_header &packet, const live_heap_options &opts)
{
    if (size <= payload_capacity && payload)
        return;
    auto fresh = opts.allocator->allocate(size, const_cast<packet_header *>(&packet));
    if (payload && received_length > 0)
        std::memcpy(fresh.get(), payload.get(), std::min<std::size_t>(payload_capacity, max_end));
    payload = std::move(fresh);
    payload_capacity = size;
}

bool live_heap::is_contiguous() const
{
    if (heap_length >= 0)
        return is_complete();
    if (received_length < min_length)
        return false;
    if (!payload_ranges.empty())
        return payload_ranges.size() == 1 && payload_ranges.begin()->first == 0;
    return received_length == max_end;
}

std::vector<std::pair<s_item_pointer_t, s_item_pointer_t>> live_heap::ranges() const
{
    std::vector<std::pair<s_item_pointer_t, s_item_pointer_t>> out;
    if (!payload_ranges.empty())
        out.assign(payload_ranges.begin(), payload_ranges.end());
    else if (received_length > 0)
        out.emplace_back(0, received_length);
    return out;
}

packet_result live_heap::add_packet(const packet_header &packet, const live_heap_options &opts)
{
    if (packet.heap_address_bits != heap_address_bits)
        return packet_result::flavour_inconsistent;
    if (packet.heap_length >= 0)
    {
        if (heap_length >= 0 && heap_length != packet.heap_length)
            return packet_result::length_inconsistent;
        if (packet.heap_length < max_end)
            return packet_result::length_too_small;
    }
    else if (!opts.allow_unsized_heaps)
        return packet_result::unsized;
    const s_item_pointer_t known_length = heap_length >= 0 ? heap_length : packet.heap_length;
    // A heap whose items already point beyond its length can never complete:
    // (as in spead2) the packet that revealed it was accepted, later ones are not.
    if (known_length >= 0 && min_length > known_length)
        return packet.heap_length >= 0 ? packet_result::length_too_small : packet_result::beyond_heap;
    const s_item_pointer_t start = packet.payload_offset;
    const s_item_pointer_t end = start + packet.payload_length;
    if (known_length >= 0 && end > known_length)
        return packet_result::beyond_heap;
    // Hostile lengths are refused before anything is allocated for them.
    if (std::size_t(known_length >= 0 ? known_length : end) > opts.max_heap_length)
        return packet_result::too_long;
    if (opts.keep_pointers && pointers.size() + std::size_t(packet.n_items) > opts.max_heap_items + 4 &&
        pointers.size() + count_new_pointers(packet) > opts.max_heap_items)
        return packet_result::too_many_items;
    if (opts.allow_out_of_order && payload_ranges.size() >= opts.max_heap_items)
        return packet_result::too_many_items;

    // Check item pointers before changing any state.
    const int hab = heap_address_bits;
    const item_pointer_t addr_mask = (item_pointer_t(1) << hab) - 1;
    s_item_pointer_t new_min_length = min_length;
    for (int i = 0; i < packet.n_items; i++)
    {
        item_pointer_t p = packet.pointer(i);
        if (!(p & immediate_mask))
        {
            // An address beyond the heap length does not reject the packet
            // (spead2 behaviour): it only keeps the heap from ever completing.
            s_item_pointer_t addr = s_item_pointer_t(p & addr_mask);
            new_min_length = std::max(new_min_length, addr);
        }
    }

    // Placement of the payload range.
    if (!opts.allow_out_of_order)
    {
        if (start != received_length)
            return packet_result::out_of_order;
    }
    else if (packet.payload_length > 0)
    {
        auto next = payload_ranges.upper_bound(start);
        if (next != payload_ranges.end() && next->first < end)
            return packet_result::duplicate;
        if (next != payload_ranges.begin())
        {
            auto prev = std::prev(next);
            if (prev->second > start)
                return packet_result::duplicate;
        }
    }

    // Make room for the payload before changing any state, so that a failed
    // allocation leaves the heap as it was.
    if (opts.placer)
    {
        if (!placement.chunk && !placement.discarded && !opts.placer->place(packet, *this))
            placement.discarded = true;
    }
    else if (packet.payload_length > 0)
    {
        try
        {
            if (known_length >= 0)
                reserve(std::size_t(known_length), packet, opts);
            else
            {
                std::size_t want = std::max<std::size_t>(payload_capacity, 256);
                while (want < std::size_t(end))
                    want *= 2;
                reserve(want, packet, opts);
            }
        }
        catch (std::bad_alloc &)
        {
            return packet_result::no_memory;
        }
    }

    // Accept: update state.
    if (packet.heap_length >= 0 && heap_length < 0)
        heap_length = packet.heap_length;
    min_length = new_min_length;
    for (int i = 0; i < packet.n_items; i++)
    {
        item_pointer_t p = packet.pointer(i);
        item_pointer_t id = (p & ~immediate_mask) >> hab;
        if (id >= HEAP_CNT_ID && id <= PAYLOAD_LENGTH_ID)
            continue;
        if (id == STREAM_CTRL_ID && (p & immediate_mask) && (p & addr_mask) == CTRL_STREAM_STOP)
            end_of_stream = true;
        if (opts.keep_pointers)
            add_pointer(p);
    }
    if (packet.payload_length > 0)
    {
        if (payload) // null for a discarded (chunk-stream) heap
            opts.memcpy(payload.get() + start, packet.payload, std::size_t(packet.payload_length));
        if (opts.allow_out_of_order)
        {
            // Insert and merge with neighbours.
            auto it = payload_ranges.emplace(start, end).first;
            auto next = std::next(it);
            if (next != payload_ranges.end() && next->first == end)
            {
                it->second = next->second;
                payload_ranges.erase(next);
            }
            if (it != payload_ranges.begin())
            {
                auto prev = std::prev(it);
                if (prev->second == start)
                {
                    prev->second = it->second;
                    payload_ranges.erase(it);
                }
            }
        }
    }
    received_length += packet.payload_length;
    max_end = std::max(max_end, end);
    if (opts.placer && placement.chunk && !placement.discarded)
        opts.placer->packet_added(packet, *this);
    return packet_result::accepted;
}

packet_result_log packet_result_message(packet_result result)
{
    // Indexed by packet_result; spead2's wording where spead2 logs the case,
    // including its out-of-order advice (which names the wrong value).
    static constexpr packet_result_log table[packet_result_count] = {
        {log_level::debug, "packet accepted"},
        {log_level::warning,
         "packet rejected because it is out-of-order in the heap (you might need to set "
         "allow_out_of_order to false in the stream config)"},
        {log_level::debug, "packet rejected because the start of its heap was missed"},
        {log_level::debug, "packet rejected because it overlaps payload already received"},
        {log_level::info, "packet rejected because its flavour is inconsistent with the heap"},
        {log_level::info, "packet rejected because its HEAP_LEN is inconsistent with the heap"},
        {log_level::info, "packet rejected because its HEAP_LEN is too small for the heap"},
        {log_level::debug, "packet rejected because its payload lies beyond the heap length"},
        {log_level::info, "packet rejected because it has no HEAP_LEN"},
        {log_level::warning, "packet rejected because its heap would be longer than max_heap_length"},
        {log_level::warning, "packet rejected because its heap would have more than max_heap_items items"},
        {log_level::warning, "packet rejected because its heap's payload could not be allocated"},
    };
    static_assert(std::size(table) == packet_result_count);
    return table[std::size_t(result)];
}

} // namespace spead2gpu::recv
