#include "recv/packet/packet.h"

namespace spead2gpu::recv
{

decode_status decode_packet(packet_header &out, const std::uint8_t *data, std::size_t max_size)
{
    if (max_size < 8)
        return decode_status::too_short;
    std::uint64_t header = load_be64(data);
    if ((header >> 48) != 0x5304)
        return decode_status::bad_magic;
    int id_bits = int((header >> 40) & 0xff) * 8;
    int hab = int((header >> 32) & 0xff) * 8;
    if (id_bits + hab != 64)
        return decode_status::not_spead64;
    if (id_bits == 0 || hab == 0)
        return decode_status::bad_flavour;
    std::size_t n_items = header & 0xffff;
    if (8 + 8 * n_items > max_size)
        return decode_status::too_many_items;

    out.heap_address_bits = hab;
    out.n_items = int(n_items);
    out.heap_cnt = -1;
    out.heap_length = -1;
    out.payload_offset = -1;
    out.payload_length = -1;
    out.pointers = data + 8;
    out.packet = data;
    const item_pointer_t addr_mask = (item_pointer_t(1) << hab) - 1;
    for (std::size_t i = 0; i < n_items; i++)
    {
        item_pointer_t p = load_be64(data + 8 + 8 * i);
        if (!(p & immediate_mask))
            continue;
        item_pointer_t id = (p & ~immediate_mask) >> hab;
        s_item_pointer_t value = s_item_pointer_t(p & addr_mask);
        switch (id)
        {
        case HEAP_CNT_ID:
            out.heap_cnt = value;
            break;
        case HEAP_LENGTH_ID:
            out.heap_length = value;
            break;
        case PAYLOAD_OFFSET_ID:
            out.payload_offset = value;
            break;
        case PAYLOAD_LENGTH_ID:
            out.payload_length = value;
            break;
        default:
            break;
        }
    }
    if (out.heap_cnt < 0 || out.payload_offset < 0 || out.payload_length < 0)
        return decode_status::missing_specials;
    std::size_t size = 8 + 8 * n_items + std::size_t(out.payload_length);
    out.size = size; // what the packet claims, also when it is truncated
    if (std::size_t(out.payload_length) > max_size || size > max_size)
        return decode_status::truncated;
    if (out.heap_length >= 0 && out.payload_offset + out.payload_length > out.heap_length)
        return decode_status::bad_lengths;
    out.payload = data + 8 + 8 * n_items;
    return decode_status::ok;
}

std::string decode_status_message(decode_status status, std::size_t have, std::size_t need)
{
    switch (status)
    {
    case decode_status::ok:
        return "ok";
    case decode_status::too_short:
        return "packet rejected because too small (" + std::to_string(have) + " bytes)";
    case decode_status::bad_magic:
        return "packet rejected because magic or version did not match";
    case decode_status::not_spead64:
        return "packet rejected because flavour is not SPEAD-64-*";
    case decode_status::bad_flavour:
        return "packet rejected because flavour is invalid";
    case decode_status::too_many_items:
        return "packet rejected because the items overflow the packet";
    case decode_status::missing_specials:
        return "packet rejected because it does not have required items";
    case decode_status::truncated:
        return "packet rejected because payload length overflows packet size (" + std::to_string(need) + " > " +
            std::to_string(have) + ")";
    case decode_status::bad_lengths:
        return "packet rejected because payload would overflow given heap length";
    case decode_status::size_mismatch:
        return "discarding packet due to size mismatch (" + std::to_string(need) + " != " + std::to_string(have) + ")";
    }
    return "packet rejected";
}

} // namespace spead2gpu::recv
