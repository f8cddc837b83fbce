/**
 * @file recv_heap.h
 * Frozen (delivered) heaps: items resolved to byte ranges of the payload.
 */
#pragma once

#include <cstdint>
#include <vector>
#include "common/allocator.h"
#include "common/descriptor.h"
#include "common/flavour.h"
#include "recv/heap/live_heap.h"

namespace spead2gpu::recv
{

/// One item of a delivered heap. Immediates point at their hab/8 bytes.
struct item
{
    s_item_pointer_t id;
    bool is_immediate;
    item_pointer_t immediate_value; ///< valid when is_immediate
    const std::uint8_t *ptr;
    std::size_t length;
};

/**
 * Common part of complete and incomplete heaps. Built from a live_heap,
 * taking over its payload; item pointers are sorted by address so that
 * each addressed item's length runs to the next address.
 */
class heap_base
{
protected:
    s_item_pointer_t cnt_ = -1;
    flavour flavour_;
    memory_allocator::pointer payload_;
    std::vector<std::uint8_t> immediate_bytes_;
    std::vector<item> items_;
    std::vector<item> descriptor_items_; ///< addressed DESCRIPTOR items (not in items_)

    /// @param addressed  include addressed items (false for incomplete heaps)
    void load(live_heap &&h, bool addressed);

public:
    s_item_pointer_t get_cnt() const { return cnt_; }
    const flavour &get_flavour() const { return flavour_; }
    const std::vector<item> &get_items() const { return items_; }
    /// Has a STREAM_CTRL item with value CTRL_STREAM_START.
    bool is_start_of_stream() const;
    /// Has a STREAM_CTRL item with value CTRL_STREAM_STOP.
    bool is_end_of_stream() const;
    const std::uint8_t *payload() const { return payload_.get(); }
};

/// A heap delivered complete (or contiguous).
class heap : public heap_base
{
public:
    explicit heap(live_heap &&h);
    /// Decode all DESCRIPTOR items (those with a valid id).
    std::vector<descriptor> get_descriptors() const;
};

/// A heap delivered with parts missing (RingStreamConfig.contiguous_only=false).
class incomplete_heap : public heap_base
{
    s_item_pointer_t heap_length_;
    s_item_pointer_t received_length_;
    std::vector<std::pair<s_item_pointer_t, s_item_pointer_t>> payload_ranges_;

public:
    /// @param keep_payload_ranges  keep the payload and its received ranges
    incomplete_heap(live_heap &&h, bool keep_payload_ranges);
    s_item_pointer_t get_heap_length() const { return heap_length_; }
    s_item_pointer_t get_received_length() const { return received_length_; }
    const std::vector<std::pair<s_item_pointer_t, s_item_pointer_t>> &get_payload_ranges() const
    {
        return payload_ranges_;
    }
};

} // namespace spead2gpu::recv
