/**
 * @file recv_packet.h
 * Decoding of one SPEAD packet's header and special items.
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include "common/constants.h"

namespace spead2gpu::recv
{

/// The parts of a packet the receive path needs, pointing into the raw bytes.
struct packet_header
{
    int heap_address_bits = 0;
    int n_items = 0;
    s_item_pointer_t heap_cnt = -1;
    s_item_pointer_t heap_length = -1; ///< -1 if the packet has no HEAP_LENGTH
    s_item_pointer_t payload_offset = 0;
    s_item_pointer_t payload_length = 0;
    const std::uint8_t *pointers = nullptr; ///< n_items big-endian item pointers
    const std::uint8_t *payload = nullptr; ///< payload_length bytes
    const std::uint8_t *packet = nullptr; ///< start of the packet
    std::size_t size = 0; ///< total packet size

    item_pointer_t pointer(int i) const { return load_be64(pointers + 8 * i); }
};

/// Why a packet was rejected (for logging and tests).
enum class decode_status
{
    ok,
    too_short,
    bad_magic,
    bad_widths,
    too_many_items,
    missing_specials,
    truncated,
    bad_lengths,
    size_mismatch
};

/**
 * Decode the packet starting at @a data of at most @a max_size bytes.
 * On success fills @a out and returns decode_status::ok; out.size is then
 * the packet length (8 + 8*n_items + payload_length ≤ max_size).
 */
decode_status decode_packet(packet_header &out, const std::uint8_t *data, std::size_t max_size);

/// Human-readable reason for a rejected packet.
const char *decode_status_message(decode_status status);

} // namespace spead2gpu::recv
