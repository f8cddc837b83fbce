/**
 * @file recv_packet.h
 * Decoding of one SPEAD packet's header and special items.
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
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
    too_short, ///< fewer than 8 bytes
    bad_magic, ///< magic or version is not SPEAD's
    not_spead64, ///< item-id and address widths do not add up to 64 bits
    bad_flavour, ///< a zero item-id or address width
    too_many_items, ///< the item pointers run past the end
    missing_specials, ///< no HEAP_CNT, PAYLOAD_OFFSET or PAYLOAD_LENGTH
    truncated, ///< the payload runs past the end
    bad_lengths, ///< the payload runs past the packet's own HEAP_LENGTH
    size_mismatch ///< a datagram longer or shorter than the packet it holds
};

/// Number of decode_status values (for per-status tables).
constexpr std::size_t decode_status_count = std::size_t(decode_status::size_mismatch) + 1;

/**
 * Decode the packet starting at @a data of at most @a max_size bytes.
 * On success fills @a out and returns decode_status::ok; out.size is then
 * the packet length (8 + 8*n_items + payload_length ≤ max_size).
 */
decode_status decode_packet(packet_header &out, const std::uint8_t *data, std::size_t max_size);

/**
 * spead2's log text for a rejected packet (the same words, so that logs and
 * log filters written for spead2 keep working). @a have is the number of
 * bytes there were; @a need is the number the packet claims (truncated) or
 * its decoded size (size_mismatch). Neither is used by the other statuses.
 */
std::string decode_status_message(decode_status status, std::size_t have = 0, std::size_t need = 0);

} // namespace spead2gpu::recv
