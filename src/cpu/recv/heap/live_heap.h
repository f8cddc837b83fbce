/**
 * @file recv_live_heap.h
 * A heap under reassembly: payload buffer, item pointers and received ranges.
 */
#pragma once

#include <cstdint>
#include <map>
#include <unordered_set>
#include <vector>
#include "common/allocator.h"
#include "common/constants.h"
#include "common/logging.h"
#include "common/memcpy.h"
#include "recv/packet/packet.h"

namespace spead2gpu::recv
{

/// Why live_heap::add_packet (or the stream, before it) refused a packet.
enum class packet_result
{
    accepted,
    out_of_order, ///< in-order mode and the offset is not the next expected one
    missed_start, ///< in-order mode and the packet starts a heap at a non-zero offset
    duplicate, ///< out-of-order mode and the payload overlaps payload already received
    flavour_inconsistent, ///< the heap address width differs from the heap's earlier packets
    length_inconsistent, ///< HEAP_LENGTH differs from the heap's earlier packets
    length_too_small, ///< HEAP_LENGTH is less than payload or item addresses already seen
    beyond_heap, ///< an unsized packet's payload lies beyond the heap's known length
    unsized, ///< no HEAP_LENGTH and unsized heaps are not allowed
    too_long, ///< the heap would be longer than max_heap_length
    too_many_items, ///< the heap would have more than max_heap_items item pointers or fragments
    no_memory ///< the payload buffer could not be allocated
};

/// Number of packet_result values (for per-result tables).
constexpr std::size_t packet_result_count = std::size_t(packet_result::no_memory) + 1;

/**
 * How a refused packet is logged: spead2's text and level where spead2 logs
 * the case (so that logs and filters written for spead2 keep working), a
 * debug-level text of spead2gpu's own where spead2 is silent.
 */
struct packet_result_log
{
    log_level level;
    const char *text;
};

/// The log entry for @a result (not meaningful for packet_result::accepted).
packet_result_log packet_result_message(packet_result result);

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
    std::size_t max_heap_length = std::size_t(-1); ///< longer heaps are refused (stream_config::max_heap_length)
    std::size_t max_heap_items = std::size_t(-1); ///< more pointers or fragments are refused
    /**
     * Whether the heap keeps its item pointers. False where nothing reads
     * them (a chunk stream places payload and reads immediates from the
     * packet): the per-pointer de-duplication was a tenth of the chunk path's
     * non-copy time on single-packet heaps. Stream control is still seen.
     */
    bool keep_pointers = true;
};

/**
 * Reassembly state of one heap. A default-constructed object is an empty
 * slot (cnt < 0); moving from a heap leaves it empty, so a slot that has
 * handed its heap on needs no reset.
 *
 * The state is private: only add_packet changes it, so its invariants
 * (received_length counts accepted payload, pointers are de-duplicated,
 * payload_ranges are merged) hold for every reader of the heap.
 */
class live_heap
{
    s_item_pointer_t cnt = -1; ///< HEAP_CNT; negative for an empty slot
    int heap_address_bits = 0; ///< flavour of the first packet; later packets must match
    std::uint32_t bug_compat = 0; ///< the stream's bug_compat, for the flavour of the finished heap
    s_item_pointer_t heap_length = -1; ///< -1 while unknown
    s_item_pointer_t received_length = 0; ///< payload bytes received
    s_item_pointer_t min_length = 0; ///< the largest item address seen
    s_item_pointer_t max_end = 0; ///< the largest payload end seen
    bool end_of_stream = false; ///< carried STREAM_CTRL=STOP
    memory_allocator::pointer payload; ///< owned, or (placed heaps) a non-owning pointer into a chunk
    std::size_t payload_capacity = 0; ///< bytes writable at payload
    /// Item pointers (host order), without the four packet specials, de-duplicated.
    std::vector<item_pointer_t> pointers;
    /**
     * The same pointers as a set, built once a heap has many (beyond
     * linear_dedup_limit), so that de-duplication stays O(1) per pointer
     * instead of O(n): a flood of items cannot make reassembly quadratic.
     */
    std::unordered_set<item_pointer_t> pointer_set;
    /// Received [start, end) ranges, merged; kept only in out-of-order mode.
    std::map<s_item_pointer_t, s_item_pointer_t> payload_ranges;
    /// Set by a heap_placer; payload is then non-owning.
    heap_placement placement;

    void reserve(std::size_t size, const packet_header &packet, const live_heap_options &opts);
    bool has_pointer(item_pointer_t p) const;
    /// Append @a p unless the heap has it already.
    void add_pointer(item_pointer_t p);
    /// How many of @a packet's item pointers (specials excepted) the heap does not have yet.
    std::size_t count_new_pointers(const packet_header &packet) const;

public:
    live_heap() = default;
    live_heap(live_heap &&other) noexcept { *this = std::move(other); }
    live_heap &operator=(live_heap &&other) noexcept;

    bool empty() const { return cnt < 0; }
    /// Start a heap from its first packet (does not add the packet).
    void reset(const packet_header &packet, std::uint32_t bug_compat);
    /// Make this an empty slot, freeing an owned payload (the vectors keep their capacity).
    void clear();
    /// Add one packet of this heap; copies its payload.
    packet_result add_packet(const packet_header &packet, const live_heap_options &opts);
    /// All of the heap has arrived.
    bool is_complete() const { return heap_length >= 0 && received_length == heap_length && heap_length >= min_length; }
    /// The payload received so far is contiguous from 0 and covers all items.
    bool is_contiguous() const;
    /// Received [start, end) ranges (a single range in in-order mode).
    std::vector<std::pair<s_item_pointer_t, s_item_pointer_t>> ranges() const;

    s_item_pointer_t get_cnt() const { return cnt; }
    int get_heap_address_bits() const { return heap_address_bits; }
    std::uint32_t get_bug_compat() const { return bug_compat; }
    /// HEAP_LENGTH, or -1 if no packet carried one.
    s_item_pointer_t get_heap_length() const { return heap_length; }
    s_item_pointer_t get_received_length() const { return received_length; }
    /// The end of the furthest payload received (the length of an unsized heap).
    s_item_pointer_t get_max_end() const { return max_end; }
    /// A packet carried STREAM_CTRL=STOP.
    bool is_end_of_stream() const { return end_of_stream; }
    const heap_placement &get_placement() const { return placement; }

    /// Hand the item pointers on (the heap is being frozen).
    std::vector<item_pointer_t> take_pointers() { return std::move(pointers); }
    /// Hand the payload on (the heap is being frozen).
    memory_allocator::pointer take_payload() { return std::move(payload); }

    /**
     * heap_placer::place: write the payload at @a data (@a capacity bytes of
     * caller-owned memory) and remember where it is.
     */
    void place_at(std::uint8_t *data, std::size_t capacity, const heap_placement &where);
    /**
     * A placed heap's chunk has gone (retired or delivered): later packets are
     * accepted but not copied, and the chunk memory is forgotten, never freed.
     */
    void discard_placement();
};

} // namespace spead2gpu::recv
