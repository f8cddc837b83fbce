/**
 * @file send_packet.cpp
 * Packetisation of send heaps (docs/wire-format.md §4).
 */
#include "send/heap/packet_generator.h"
#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace spead2gpu
{
namespace send
{

namespace
{
constexpr std::size_t prefix_size = 8 + 4 * sizeof(item_pointer_t); ///< header + 4 specials
constexpr std::size_t min_packet_size = prefix_size + 16;
} // anonymous namespace

void packet_buffer::copy_to(std::uint8_t *out) const
{
    for (const auto &piece : pieces)
    {
        std::memcpy(out, piece.data, piece.size);
        out += piece.size;
    }
}

packet_generator::packet_generator(const heap &h, item_pointer_t cnt, std::size_t max_packet_size)
    : h(&h), cnt(cnt), max_packet_size(max_packet_size & ~std::size_t(7)), repeat_pointers(h.get_repeat_pointers()),
      hab(h.get_flavour().get_heap_address_bits())
{
    if (this->max_packet_size < min_packet_size)
        throw std::invalid_argument("packet size is too small");
    max_item_pointers = (this->max_packet_size - prefix_size - 8) / sizeof(item_pointer_t);

    const flavour &f = h.get_flavour();
    const auto &items = h.get_items();
    std::size_t n_items = items.size();
    real_payload = 0;
    for (const auto &it : items)
        if (!it.is_immediate(f))
            real_payload += it.length;

    // The minimum payload is computed allowing for one extra (padding)
    // pointer, as spead2 does: every packet that carries pointers must also
    // carry at least one payload byte.
    std::size_t need;
    if (repeat_pointers)
    {
        if (n_items + 1 > max_item_pointers)
            throw std::invalid_argument("packet size is too small to repeat item pointers");
        need = 1;
    }
    else
    {
        std::size_t packets = (n_items + 1 + max_item_pointers - 1) / max_item_pointers;
        std::size_t full_capacity = this->max_packet_size - prefix_size - max_item_pointers * sizeof(item_pointer_t);
        need = (packets - 1) * full_capacity + 1;
    }
    padded = real_payload < need;
    payload_size = padded ? need : real_payload;
    n_item_pointers = n_items + (padded ? 1 : 0);
}

std::size_t packet_generator::max_header_size() const
{
    // Padding within one packet never exceeds 8 bytes (see constructor).
    return prefix_size + sizeof(item_pointer_t) * std::min(n_item_pointers, max_item_pointers) + 8;
}

item_pointer_t packet_generator::next_item_pointer(std::size_t &item_idx, std::size_t &address) const
{
    const auto &items = h->get_items();
    if (item_idx == items.size())
    {
        // Padding pointer marking the end of the real payload.
        item_idx++;
        return (item_pointer_t(NULL_ID) << hab) | item_pointer_t(real_payload);
    }
    const item &it = items[item_idx++];
    if (it.is_immediate(h->get_flavour()))
        return immediate_mask | (it.id << hab) | it.immediate_value();
    item_pointer_t ptr = (it.id << hab) | item_pointer_t(address);
    address += it.length;
    return ptr;
}

void packet_generator::next_packet(packet_buffer &out)
{
    const flavour &f = h->get_flavour();
    std::size_t n_ptrs =
        repeat_pointers ? n_item_pointers : std::min(max_item_pointers, n_item_pointers - next_pointer);
    std::size_t avail = max_packet_size - prefix_size - n_ptrs * sizeof(item_pointer_t);
    std::size_t len = std::min(avail, payload_size - payload_offset);
    std::size_t real = payload_offset < real_payload ? std::min(len, real_payload - payload_offset) : 0;
    std::size_t pad = len - real;
    std::size_t header_size = prefix_size + n_ptrs * sizeof(item_pointer_t) + pad;

    if (out.header.size() < header_size)
        out.header.resize(std::max(header_size, max_header_size()));
    std::uint8_t *p = out.header.data();
    const int addr_bytes = hab / 8;
    store_be64(p,
               (std::uint64_t(0x5304) << 48) | (std::uint64_t(8 - addr_bytes) << 40) |
                   (std::uint64_t(addr_bytes) << 32) | std::uint64_t(4 + n_ptrs));
    p += 8;
    store_be64(p, immediate_mask | (item_pointer_t(HEAP_CNT_ID) << hab) | cnt);
    // Like spead2, values are not masked to heap_address_bits.
    store_be64(p + 8, immediate_mask | (item_pointer_t(HEAP_LENGTH_ID) << hab) | payload_size);
    store_be64(p + 16, immediate_mask | (item_pointer_t(PAYLOAD_OFFSET_ID) << hab) | payload_offset);
    store_be64(p + 24, immediate_mask | (item_pointer_t(PAYLOAD_LENGTH_ID) << hab) | len);
    p += 32;
    if (repeat_pointers)
    {
        std::size_t idx = 0, address = 0;
        for (std::size_t i = 0; i < n_ptrs; i++, p += 8)
            store_be64(p, next_item_pointer(idx, address));
        next_pointer = n_item_pointers;
    }
    else
    {
        for (std::size_t i = 0; i < n_ptrs; i++, p += 8)
            store_be64(p, next_item_pointer(ptr_item, ptr_address));
        next_pointer += n_ptrs;
    }
    std::memset(p, 0, pad);

    out.pieces.clear();
    out.pieces.push_back(packet_piece{out.header.data(), header_size});
    const auto &items = h->get_items();
    std::size_t remaining = real;
    while (remaining > 0)
    {
        const item &it = items[data_item];
        if (it.is_immediate(f) || data_offset >= it.length)
        {
            data_item++;
            data_offset = 0;
            continue;
        }
        std::size_t take = std::min(remaining, it.length - data_offset);
        out.pieces.push_back(packet_piece{it.data + data_offset, take});
        data_offset += take;
        remaining -= take;
    }
    out.size = header_size + real;
    payload_offset += len;
}

} // namespace send
} // namespace spead2gpu
