/**
 * @file flavour.h
 * SPEAD flavour: heap address bits and bug-compatibility flags.
 */
#pragma once

#include <cstdint>
#include <stdexcept>
#include "common/constants.h"

namespace spead2gpu
{

/**
 * A SPEAD flavour. Only SPEAD-64-XX version 4 exists in practice, so only
 * the heap address width and the bug-compatibility mask are stored.
 */
class flavour
{
    int heap_address_bits_ = 40;
    std::uint32_t bug_compat_ = 0;

public:
    flavour() = default;

    /// Validates like spead2: throws std::invalid_argument on a bad combination.
    flavour(int version, int item_pointer_bits_, int heap_address_bits, std::uint32_t bug_compat = 0)
    {
        if (version != 4)
            throw std::invalid_argument("Version is not supported");
        if (item_pointer_bits_ != 64)
            throw std::invalid_argument("item_pointer_bits not supported");
        if (heap_address_bits <= 0 || heap_address_bits >= 64)
            throw std::invalid_argument("heap_address_bits out of range");
        if (heap_address_bits % 8 != 0)
            throw std::invalid_argument("heap_address_bits not a multiple of 8");
        heap_address_bits_ = heap_address_bits;
        bug_compat_ = bug_compat;
    }

    explicit flavour(int heap_address_bits, std::uint32_t bug_compat = 0)
        : flavour(4, 64, heap_address_bits, bug_compat)
    {
    }

    int get_version() const { return 4; }
    int get_item_pointer_bits() const { return 64; }
    int get_heap_address_bits() const { return heap_address_bits_; }
    /// Bytes in an immediate value / heap address (hab / 8).
    int get_heap_address_bytes() const { return heap_address_bits_ / 8; }
    std::uint32_t get_bug_compat() const { return bug_compat_; }

    /// Mask selecting the address / immediate-value bits of an item pointer.
    item_pointer_t address_mask() const { return (item_pointer_t(1) << heap_address_bits_) - 1; }
    /// Mask selecting the item ID once shifted down by heap_address_bits.
    item_pointer_t id_mask() const { return (item_pointer_t(1) << (63 - heap_address_bits_)) - 1; }

    item_pointer_t make_immediate(item_pointer_t id, item_pointer_t value) const
    {
        return immediate_mask | (id << heap_address_bits_) | (value & address_mask());
    }
    item_pointer_t make_address(item_pointer_t id, item_pointer_t address) const
    {
        return (id << heap_address_bits_) | (address & address_mask());
    }

    bool operator==(const flavour &o) const
    {
        return heap_address_bits_ == o.heap_address_bits_ && bug_compat_ == o.bug_compat_;
    }
    bool operator!=(const flavour &o) const { return !(*this == o); }
};

} // namespace spead2gpu
