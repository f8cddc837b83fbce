/**
 * @file send_heap.h
 * A heap to be sent: an ordered list of items referring to caller memory.
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>
#include "common/constants.h"
#include "common/descriptor.h"
#include "common/flavour.h"

namespace spead2gpu
{
namespace send
{

/**
 * One item of a send heap. The data is referenced, not copied: it is read
 * when packets are generated, so updating the memory in place between sends
 * is visible on the wire.
 */
struct item
{
    /// Item ID (shifted into the pointer without masking, like spead2).
    item_pointer_t id = 0;
    /// Start of the value (unused when @ref is_inline).
    const std::uint8_t *data = nullptr;
    /// Length of the value in bytes.
    std::size_t length = 0;
    /// Whether the value may be sent as an immediate if it fits.
    bool allow_immediate = false;
    /// If true, the item is an immediate whose value is @ref inline_value.
    bool is_inline = false;
    /// Immediate value, for @ref is_inline items.
    item_pointer_t inline_value = 0;

    /**
     * Whether this item is encoded as an immediate in flavour @a f: inline
     * items always, others when allowed and at most heap_address_bits/8 bytes.
     */
    bool is_immediate(const flavour &f) const
    {
        return is_inline || (allow_immediate && length <= std::size_t(f.get_heap_address_bytes()));
    }

    /**
     * Immediate value (big-endian interpretation of the data, right-aligned,
     * i.e. with head padding). Only valid when is_immediate() is true.
     */
    item_pointer_t immediate_value() const
    {
        if (is_inline)
            return inline_value;
        item_pointer_t v = 0;
        for (std::size_t i = 0; i < length; i++)
            v = (v << 8) | data[i];
        return v;
    }
};

/**
 * A heap to be sent. Items are kept in the order they were added; item
 * memory must stay valid (and, for in-place updates, stable) for as long
 * as the heap may be packetised. Storage for descriptors and stream-control
 * items is owned by the heap; arbitrary keep-alive objects (e.g. Python
 * buffer views) can be attached with add_keepalive().
 *
 * A heap is not modified by sending it, so one heap may be queued on
 * several streams at once, but it must not be modified while queued.
 */
class heap
{
    flavour flavour_;
    std::vector<item> items_;
    /// Owned values (descriptor encodings); deque keeps addresses stable.
    std::deque<std::string> storage_;
    std::vector<std::shared_ptr<void>> keepalive_;
    bool repeat_pointers_ = false;

public:
    /// Create an empty heap with flavour @a f.
    explicit heap(const flavour &f = flavour()) : flavour_(f) {}
    heap(const heap &) = delete;
    heap &operator=(const heap &) = delete;

    /// The flavour packets of this heap are encoded with.
    const flavour &get_flavour() const { return flavour_; }

    /**
     * Add an item referencing @a length bytes at @a data (not copied).
     * @param allow_immediate  send as an immediate if it fits in heap_address_bits/8 bytes
     */
    void add_item(item_pointer_t id, const void *data, std::size_t length, bool allow_immediate);

    /// Add an item whose value is a copy of @a value, owned by the heap.
    void add_item(item_pointer_t id, std::string value, bool allow_immediate);

    /// Add an immediate item with the given integer value.
    void add_immediate(item_pointer_t id, item_pointer_t value);

    /**
     * Encode @a d (encode_descriptor with this heap's flavour) and add it as
     * a DESCRIPTOR item. Throws std::invalid_argument("Item ID out of range")
     * unless 0 < d.id < 2^(63 - heap_address_bits).
     */
    void add_descriptor(const descriptor &d);

    /// Add a STREAM_CTRL item with value CTRL_STREAM_START.
    void add_start() { add_immediate(STREAM_CTRL_ID, CTRL_STREAM_START); }
    /// Add a STREAM_CTRL item with value CTRL_STREAM_STOP.
    void add_end() { add_immediate(STREAM_CTRL_ID, CTRL_STREAM_STOP); }

    /// Keep @a obj alive as long as the heap (e.g. the owner of item memory).
    void add_keepalive(std::shared_ptr<void> obj) { keepalive_.push_back(std::move(obj)); }

    /// The items, in order.
    const std::vector<item> &get_items() const { return items_; }

    /// Whether every packet repeats all item pointers.
    bool get_repeat_pointers() const { return repeat_pointers_; }
    /// Set whether every packet repeats all item pointers.
    void set_repeat_pointers(bool repeat) { repeat_pointers_ = repeat; }
};

} // namespace send
} // namespace spead2gpu
