/**
 * @file send_packet.h
 * Splitting a send heap into packets (docs/wire-format.md §4), as
 * scatter/gather lists that point into item memory.
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>
#include "common/constants.h"
#include "send/heap/heap.h"

namespace spead2gpu
{
namespace send
{

/// A contiguous piece of a packet.
struct packet_piece
{
    const std::uint8_t *data;
    std::size_t size;
};

/**
 * A packet as a scatter/gather list. The header, item pointers and any zero
 * padding live in @ref header (owned, reused from packet to packet); the
 * payload pieces point into the items' memory. @ref pieces[0] is always the
 * header. Buffers only grow, so reusing a packet_buffer does not allocate
 * in steady state.
 */
struct packet_buffer
{
    /// Storage for header, pointers and padding.
    std::vector<std::uint8_t> header;
    /// The pieces, in wire order; pieces[0] refers to @ref header.
    std::vector<packet_piece> pieces;
    /// Total packet size in bytes.
    std::size_t size = 0;

    /// Copy the whole packet to @a out, which must hold @ref size bytes.
    void copy_to(std::uint8_t *out) const;
};

/**
 * Produces the packets of one heap. The heap must outlive the generator and
 * must not change structurally meanwhile (item values may change: they are
 * read when each packet is produced).
 *
 * Layout (byte-compatible with spead2): @c max_packet_size is rounded down
 * to a multiple of 8; each packet has the header, the four specials
 * HEAP_CNT, HEAP_LENGTH, PAYLOAD_OFFSET, PAYLOAD_LENGTH, then item pointers
 * (at most (max_packet_size - 48) / 8 per packet, spilling into later packets,
 * or all of them in every packet with repeat_pointers), then payload. Every
 * packet carries at least one payload byte: when the payload is too small,
 * the heap is padded with zeros and a NULL_ID pointer marks the end of the
 * real data. Within a packet, padding bytes precede the real payload bytes
 * (a spead2 quirk reproduced for byte compatibility).
 */
class packet_generator
{
    const heap *h;
    item_pointer_t cnt;
    std::size_t max_packet_size;
    std::size_t max_item_pointers; ///< per packet, excluding the 4 specials
    std::size_t n_item_pointers; ///< total, including the padding pointer
    std::size_t real_payload; ///< bytes of addressed item data
    std::size_t payload_size; ///< heap length including padding
    bool padded;
    bool repeat_pointers;
    int hab;

    // Progress
    std::size_t next_pointer = 0; ///< next pointer to emit (non-repeat mode)
    std::size_t ptr_item = 0; ///< item index for the pointer cursor
    std::size_t ptr_address = 0; ///< heap address of the next addressed item
    std::size_t payload_offset = 0; ///< heap offset of the next packet's payload
    std::size_t data_item = 0; ///< item index for the payload cursor
    std::size_t data_offset = 0; ///< offset within that item

    item_pointer_t next_item_pointer(std::size_t &item_idx, std::size_t &address) const;

public:
    /**
     * @param h                the heap
     * @param cnt              heap counter (written unmasked, like spead2)
     * @param max_packet_size  maximum packet size in bytes
     * @throws std::invalid_argument "packet size is too small" if the rounded
     *         size is below 56, or "packet size is too small to repeat item
     *         pointers" if repeat_pointers is set and they do not all fit.
     */
    packet_generator(const heap &h, item_pointer_t cnt, std::size_t max_packet_size);

    /// Whether another packet remains.
    bool has_next_packet() const { return payload_offset < payload_size || next_pointer < n_item_pointers; }

    /// Upper bound on the header size of any packet (header, pointers, padding).
    std::size_t max_header_size() const;

    /// Heap payload size (the HEAP_LENGTH value), including padding.
    std::size_t get_payload_size() const { return payload_size; }

    /**
     * Produce the next packet into @a out (reusing its buffers).
     * @pre has_next_packet()
     */
    void next_packet(packet_buffer &out);
};

} // namespace send
} // namespace spead2gpu
