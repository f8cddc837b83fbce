/**
 * @file common.h
 * Protocol constants, exceptions and byte-order helpers shared by the whole core.
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>

namespace spead2gpu
{

/// An item pointer as it appears on the wire (after byte swapping).
using item_pointer_t = std::uint64_t;
/// Signed counterpart, used for "unknown" (-1) lengths.
using s_item_pointer_t = std::int64_t;

constexpr int item_pointer_bits = 64;
constexpr item_pointer_t immediate_mask = item_pointer_t(1) << 63;

/// Bug-compatibility flags (bit mask), same values as spead2.
enum : std::uint32_t
{
    BUG_COMPAT_DESCRIPTOR_WIDTHS = 1,
    BUG_COMPAT_SHAPE_BIT_1 = 2,
    BUG_COMPAT_SWAP_ENDIAN = 4,
    BUG_COMPAT_PYSPEAD_0_5_2 = 7
};
constexpr std::uint32_t bug_compat_all = 7;

/// @a value, or std::invalid_argument(@a message) when it is 0 (what config setters check).
inline std::size_t nonzero(std::size_t value, const char *message)
{
    if (value == 0)
        throw std::invalid_argument(message);
    return value;
}

/// Well-known item IDs.
enum : item_pointer_t
{
    NULL_ID = 0,
    HEAP_CNT_ID = 1,
    HEAP_LENGTH_ID = 2,
    PAYLOAD_OFFSET_ID = 3,
    PAYLOAD_LENGTH_ID = 4,
    DESCRIPTOR_ID = 5,
    STREAM_CTRL_ID = 6,
    DESCRIPTOR_NAME_ID = 0x10,
    DESCRIPTOR_DESCRIPTION_ID = 0x11,
    DESCRIPTOR_SHAPE_ID = 0x12,
    DESCRIPTOR_FORMAT_ID = 0x13,
    DESCRIPTOR_ID_ID = 0x14,
    DESCRIPTOR_DTYPE_ID = 0x15
};

/// Values of the STREAM_CTRL item.
enum : item_pointer_t
{
    CTRL_STREAM_START = 0,
    CTRL_DESCRIPTOR_REISSUE = 1,
    CTRL_STREAM_STOP = 2,
    CTRL_DESCRIPTOR_UPDATE = 3
};

/// Thrown by a ring or queue that has been stopped (and drained).
class ringbuffer_stopped : public std::runtime_error
{
public:
    using std::runtime_error::runtime_error;
    ringbuffer_stopped() : std::runtime_error("ring buffer has been stopped") {}
};

/// Thrown by a non-blocking pop on an empty ring.
class ringbuffer_empty : public std::runtime_error
{
public:
    ringbuffer_empty() : std::runtime_error("ring buffer is empty") {}
};

/// Thrown by a non-blocking push on a full ring.
class ringbuffer_full : public std::runtime_error
{
public:
    ringbuffer_full() : std::runtime_error("ring buffer is full") {}
};

/// Load a big-endian 64-bit value from possibly unaligned memory.
inline std::uint64_t load_be64(const std::uint8_t *p)
{
    std::uint64_t v;
    std::memcpy(&v, p, 8);
    return __builtin_bswap64(v);
}

/// Store a 64-bit value big-endian to possibly unaligned memory.
inline void store_be64(std::uint8_t *p, std::uint64_t v)
{
    v = __builtin_bswap64(v);
    std::memcpy(p, &v, 8);
}

} // namespace spead2gpu
