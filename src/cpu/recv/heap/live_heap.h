/**
 * @file recv_live_heap.h
 * A heap under reassembly: payload buffer, item pointers and received ranges.
 */
#pragma once

#include <cstdint>
#include <map>
#include <vector>
#include "common/allocator.h"
#include "common/constants.h"
#include "common/memcpy.h"
#include "recv/packet/packet.h"

namespace spead2gpu::recv
{

/// Why live_heap::add_packet refused a packet.
enum class packet_result
{
    accepted,
    out_of_order, ///< in-order mode and the offset is not the next expected one
    duplicate, ///< overlaps payload already received
    inconsistent, ///< heap length / flavour disagrees with earlier packets
    beyond_heap, ///< an item pointer or payload lies beyond the heap length
    unsized, ///< no HEAP_LENGTH and unsized heaps are not allowed
    no_memory ///< the payload buffer could not be allocated
};

class live_heap;

/**
 * Decides where a heap's payload goes instead of the allocator (chunk
 * streams). place() runs once per heap, for its first accepted packet; it
 * either points the heap's payload into caller-owned memory (and records
 * whatever it needs in live_heap::placement) or discards the heap, whose
 * later packets are then accepted but not copied.
 */
class heap_placer
{
public:
    virtual ~heap_placer() = default;
    /// @return false to discard the heap
    virtual bool place(const packet_header &packet, live_heap &heap) = 0;
    /// Called for each accepted packet of a placed heap, after its payload is copied.
    virtual void packet_added(const packet_header &packet, live_heap &heap) {}
};

/// Where a placed heap's payload lives (chunk streams).
struct heap_placement
{
    void *chunk = nullptr; ///< owner of the memory (a recv::chunk), null if unplaced
    std::int64_t chunk_id = -1;
    std::size_t heap_index = 0;
    std::size_t heap_offset = 0;
    bool discarded = false; ///< rejected, too old, or aged out: payload is not written
};

/// Options of the owning stream that reassembly needs.
struct live_heap_options
{
    bool allow_out_of_order = false;
    bool allow_unsized_heaps = true;
    memcpy_function memcpy = nullptr;
    memory_allocator *allocator = nullptr;
    heap_placer *placer = nullptr; ///< if set, replaces the allocator
};

/**
 * Reassembly state of one heap. Movable; a default-constructed object is
 * an empty slot (cnt < 0).
 */
class live_heap
{
public:
    s_item_pointer_t cnt = -1;
    int heap_address_bits = 0;
    std::uint32_t bug_compat = 0;
    s_item_pointer_t heap_length = -1; ///< -1 while unknown
    s_item_pointer_t received_length = 0; ///< payload bytes received
    s_item_pointer_t min_length = 0; ///< the largest item address seen
    s_item_pointer_t max_end = 0; ///< the largest payload end seen
    bool end_of_stream = false; ///< carried STREAM_CTRL=STOP
    memory_allocator::pointer payload;
    std::size_t payload_capacity = 0;
    /// Item pointers (host order), without the four packet specials, de-duplicated.
    std::vector<item_pointer_t> pointers;
    /// Received [start, end) ranges, merged; kept only in out-of-order mode.
    std::map<s_item_pointer_t, s_item_pointer_t> payload_ranges;
    /// Set by a heap_placer; payload is then non-owning.
    heap_placement placement;

    live_heap() = default;
    live_heap(live_heap &&) noexcept = default;
    live_heap &operator=(live_heap &&) noexcept = default;

    bool empty() const { return cnt < 0; }
    /// Start a heap from its first packet (does not add the packet).
    void reset(const packet_header &packet, std::uint32_t bug_compat);
    /// Add one packet of this heap; copies its payload.
    packet_result add_packet(const packet_header &packet, const live_heap_options &opts);
    /// All of the heap has arrived.
    bool is_complete() const { return heap_length >= 0 && received_length == heap_length && heap_length >= min_length; }
    /// The payload received so far is contiguous from 0 and covers all items.
    bool is_contiguous() const;
    /// Received [start, end) ranges (a single range in in-order mode).
    std::vector<std::pair<s_item_pointer_t, s_item_pointer_t>> ranges() const;

private:
    void reserve(std::size_t size, const packet_header &packet, const live_heap_options &opts);
};

} // namespace spead2gpu::recv
