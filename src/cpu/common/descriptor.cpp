/**
 * @file descriptor.cpp
 * Encoding and decoding of item descriptors (docs/wire-format.md §5).
 */
#include "common/descriptor.h"
#include <algorithm>
#include <cstring>

namespace spead2gpu
{

namespace
{

/// Append the low @a bytes bytes of @a value to @a out, big-endian.
void append_be(std::string &out, std::uint64_t value, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--)
        out.push_back(char(i >= 8 ? 0 : (value >> (8 * i)) & 0xff));
}

/// Read @a bytes bytes big-endian (only the low 8 bytes are significant).
std::uint64_t load_be(const std::uint8_t *p, std::size_t bytes)
{
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < bytes; i++)
        v = (v << 8) | p[i];
    return v;
}

/// Width of one format entry (code byte + bits field).
int format_field_width(int heap_address_bytes, std::uint32_t bug_compat)
{
    if (bug_compat & BUG_COMPAT_DESCRIPTOR_WIDTHS)
        return 4;
    return 1 + (8 - heap_address_bytes);
}

/// Width of one shape entry (flag byte + size field).
int shape_field_width(int heap_address_bytes, std::uint32_t bug_compat)
{
    if (bug_compat & BUG_COMPAT_DESCRIPTOR_WIDTHS)
        return 8;
    return 1 + heap_address_bytes;
}

/**
 * Parse one packet at @a data, which must hold a complete single-packet
 * heap. On success fills @a out and returns true. @a packet_size is set to
 * the size of the packet if the packet itself is valid (so that a reader
 * would go on to the next one), or to 0 if it is not, or if it carries a
 * stream stop item (a reader would stop there).
 */
bool decode_one(const std::uint8_t *data, std::size_t size, std::uint32_t bug_compat, descriptor &out,
                std::size_t &packet_size)
{
    packet_size = 0;
    out = descriptor();
    if (size < 8)
        return false;
    std::uint64_t header = load_be64(data);
    if ((header >> 48) != 0x5304)
        return false;
    int id_bytes = (header >> 40) & 0xff;
    int addr_bytes = (header >> 32) & 0xff;
    if (id_bytes == 0 || addr_bytes == 0 || id_bytes + addr_bytes != 8)
        return false;
    std::size_t n_items = header & 0xffff;
    if (8 + 8 * n_items > size)
        return false;
    const int hab = addr_bytes * 8;
    const item_pointer_t addr_mask = (item_pointer_t(1) << hab) - 1;
    const item_pointer_t id_mask = (item_pointer_t(1) << (63 - hab)) - 1;
    const std::uint8_t *ptrs = data + 8;

    // First pass: the special items.
    bool have_cnt = false, have_length = false, have_offset = false, have_plen = false;
    item_pointer_t heap_length = 0, payload_offset = 0, payload_length = 0;
    std::size_t n_regular = 0;
    for (std::size_t i = 0; i < n_items; i++)
    {
        item_pointer_t p = load_be64(ptrs + 8 * i);
        item_pointer_t id = (p >> hab) & id_mask;
        item_pointer_t value = p & addr_mask;
        // Pointers with IDs 1-4 are never ordinary items; only immediate ones
        // provide the special values (the last one wins).
        switch (id)
        {
        case HEAP_CNT_ID:
            if (p & immediate_mask)
                have_cnt = true;
            break;
        case HEAP_LENGTH_ID:
            if (p & immediate_mask)
            {
                have_length = true;
                heap_length = value;
            }
            break;
        case PAYLOAD_OFFSET_ID:
            if (p & immediate_mask)
            {
                have_offset = true;
                payload_offset = value;
            }
            break;
        case PAYLOAD_LENGTH_ID:
            if (p & immediate_mask)
            {
                have_plen = true;
                payload_length = value;
            }
            break;
        default:
            // A stop item ends the (temporary) stream before the heap is delivered.
            if ((p & immediate_mask) && id == STREAM_CTRL_ID && value == CTRL_STREAM_STOP)
                return false;
            n_regular++;
            break;
        }
    }
    if (!have_cnt || !have_offset || !have_plen)
        return false;
    if (payload_length > size - 8 - 8 * n_items)
        return false;
    if (have_length && payload_offset + payload_length > heap_length)
        return false;
    // The packet is valid: from here on, failures only drop this heap.
    packet_size = 8 + 8 * n_items + payload_length;
    // Must be the whole heap in one packet.
    if (payload_offset != 0)
        return false;
    if (have_length && heap_length != payload_length)
        return false;
    const std::uint8_t *payload = ptrs + 8 * n_items;
    const item_pointer_t length = payload_length;

    // Collect the non-special pointers and stable-sort them by
    // (immediate flag | address), as a receiver does to find item lengths.
    constexpr std::size_t small = 32;
    item_pointer_t local[small];
    std::vector<item_pointer_t> heap_storage;
    item_pointer_t *sorted = local;
    if (n_regular > small)
    {
        heap_storage.resize(n_regular);
        sorted = heap_storage.data();
    }
    std::size_t k = 0;
    for (std::size_t i = 0; i < n_items; i++)
    {
        item_pointer_t p = load_be64(ptrs + 8 * i);
        item_pointer_t id = (p >> hab) & id_mask;
        if (id >= HEAP_CNT_ID && id <= PAYLOAD_LENGTH_ID)
            continue;
        sorted[k++] = p;
    }
    const item_pointer_t key_mask = immediate_mask | addr_mask;
    std::stable_sort(sorted, sorted + n_regular,
                     [key_mask](item_pointer_t a, item_pointer_t b) { return (a & key_mask) < (b & key_mask); });
    // A receiver ignores a pointer identical to one already seen (the same
    // pointers recur with repeat_pointers). Identical pointers have equal
    // keys, so they lie in the same run of equal keys, in their original
    // order: keep the first of each.
    {
        std::size_t out_n = 0;
        std::size_t run_start = 0;
        for (std::size_t i = 0; i < n_regular; i++)
        {
            if (out_n == 0 || (sorted[out_n - 1] & key_mask) != (sorted[i] & key_mask))
                run_start = out_n;
            bool dup = false;
            for (std::size_t j = run_start; j < out_n && !dup; j++)
                dup = sorted[j] == sorted[i];
            if (!dup)
                sorted[out_n++] = sorted[i];
        }
        n_regular = out_n;
    }
    // Any addressed pointer beyond the end of the heap makes it invalid.
    for (std::size_t i = 0; i < n_regular; i++)
        if (!(sorted[i] & immediate_mask) && (sorted[i] & addr_mask) > length)
            return false;

    const int format_width = format_field_width(addr_bytes, bug_compat);
    const int shape_width = shape_field_width(addr_bytes, bug_compat);
    const int variable_flag = (bug_compat & BUG_COMPAT_SHAPE_BIT_1) ? 2 : 1;
    std::uint8_t imm_bytes[8];
    for (std::size_t i = 0; i < n_regular; i++)
    {
        item_pointer_t p = sorted[i];
        item_pointer_t id = (p >> hab) & id_mask;
        item_pointer_t value = p & addr_mask;
        bool is_imm = (p & immediate_mask) != 0;
        const std::uint8_t *ptr;
        std::size_t len;
        if (is_imm)
        {
            for (int j = 0; j < addr_bytes; j++)
                imm_bytes[j] = std::uint8_t(value >> (8 * (addr_bytes - 1 - j)));
            ptr = imm_bytes;
            len = addr_bytes;
        }
        else
        {
            item_pointer_t end = length;
            // Next addressed pointer in sorted order (immediates sort last).
            if (i + 1 < n_regular && !(sorted[i + 1] & immediate_mask))
                end = sorted[i + 1] & addr_mask;
            ptr = payload + value;
            len = end - value;
            if (len == 0)
                continue; // zero-length items are not delivered
        }
        switch (id)
        {
        case NULL_ID:
            break;
        case DESCRIPTOR_ID_ID:
            if (is_imm)
                out.id = value;
            break;
        case DESCRIPTOR_NAME_ID:
            out.name.assign(reinterpret_cast<const char *>(ptr), len);
            break;
        case DESCRIPTOR_DESCRIPTION_ID:
            out.description.assign(reinterpret_cast<const char *>(ptr), len);
            break;
        case DESCRIPTOR_FORMAT_ID:
            out.format.clear();
            for (std::size_t off = 0; off + format_width <= len; off += format_width)
            {
                char code = char(ptr[off]);
                s_item_pointer_t bits = load_be(ptr + off + 1, format_width - 1);
                out.format.emplace_back(code, bits);
            }
            break;
        case DESCRIPTOR_SHAPE_ID:
            out.shape.clear();
            for (std::size_t off = 0; off + shape_width <= len; off += shape_width)
            {
                if (ptr[off] & variable_flag)
                    out.shape.push_back(-1);
                else
                    out.shape.push_back(s_item_pointer_t(load_be(ptr + off + 1, shape_width - 1)));
            }
            break;
        case DESCRIPTOR_DTYPE_ID:
            out.numpy_header.assign(reinterpret_cast<const char *>(ptr), len);
            break;
        default:
            break;
        }
    }
    if (!out.numpy_header.empty())
    {
        out.format.clear();
        out.shape.clear();
    }
    if (out.id == 0)
    {
        out = descriptor();
        return false;
    }
    return true;
}

} // anonymous namespace

std::string encode_descriptor(const descriptor &d, const flavour &f)
{
    const int hab = f.get_heap_address_bits();
    const int addr_bytes = f.get_heap_address_bytes();
    const std::uint32_t bug_compat = f.get_bug_compat();
    const int format_width = format_field_width(addr_bytes, bug_compat);
    const int shape_width = shape_field_width(addr_bytes, bug_compat);
    const int variable_flag = (bug_compat & BUG_COMPAT_SHAPE_BIT_1) ? 2 : 1;
    const bool has_dtype = !d.numpy_header.empty();
    const std::size_t n_items = has_dtype ? 10 : 9;

    std::size_t format_size = d.format.size() * format_width;
    std::size_t shape_size = d.shape.size() * shape_width;
    std::size_t payload_size = d.name.size() + d.description.size() + format_size + shape_size + d.numpy_header.size();

    std::string out;
    out.reserve(8 + 8 * n_items + payload_size);
    std::uint64_t header = (std::uint64_t(0x5304) << 48) | (std::uint64_t(8 - addr_bytes) << 40) |
        (std::uint64_t(addr_bytes) << 32) | n_items;
    append_be(out, header, 8);
    auto imm = [&](item_pointer_t id, item_pointer_t value)
    {
        append_be(out, immediate_mask | (id << hab) | value, 8); // unmasked, like spead2
    };
    auto addr = [&](item_pointer_t id, item_pointer_t offset) { append_be(out, (id << hab) | offset, 8); };
    imm(HEAP_CNT_ID, 1);
    imm(HEAP_LENGTH_ID, payload_size);
    imm(PAYLOAD_OFFSET_ID, 0);
    imm(PAYLOAD_LENGTH_ID, payload_size);
    // Not masked (like spead2): an ID wider than the immediate field spills over.
    append_be(out, immediate_mask | (item_pointer_t(DESCRIPTOR_ID_ID) << hab) | item_pointer_t(d.id), 8);
    std::size_t offset = 0;
    addr(DESCRIPTOR_NAME_ID, offset);
    offset += d.name.size();
    addr(DESCRIPTOR_DESCRIPTION_ID, offset);
    offset += d.description.size();
    addr(DESCRIPTOR_FORMAT_ID, offset);
    offset += format_size;
    addr(DESCRIPTOR_SHAPE_ID, offset);
    offset += shape_size;
    if (has_dtype)
        addr(DESCRIPTOR_DTYPE_ID, offset);

    out += d.name;
    out += d.description;
    for (const auto &field : d.format)
    {
        out.push_back(field.first);
        append_be(out, std::uint64_t(field.second), format_width - 1);
    }
    for (s_item_pointer_t dim : d.shape)
    {
        if (dim < 0)
        {
            out.push_back(char(variable_flag));
            append_be(out, 0, shape_width - 1);
        }
        else
        {
            out.push_back(0);
            append_be(out, std::uint64_t(dim), shape_width - 1);
        }
    }
    out += d.numpy_header;
    return out;
}

bool decode_descriptor(const std::uint8_t *data, std::size_t size, std::uint32_t bug_compat, descriptor &out)
{
    std::size_t packet_size;
    return decode_one(data, size, bug_compat, out, packet_size);
}

std::vector<descriptor> decode_descriptors(const std::uint8_t *data, std::size_t size, std::uint32_t bug_compat)
{
    std::vector<descriptor> result;
    std::size_t pos = 0;
    while (pos < size)
    {
        descriptor d;
        std::size_t packet_size;
        if (decode_one(data + pos, size - pos, bug_compat, d, packet_size))
            result.push_back(std::move(d));
        if (packet_size == 0)
            break;
        pos += packet_size;
    }
    return result;
}

} // namespace spead2gpu
