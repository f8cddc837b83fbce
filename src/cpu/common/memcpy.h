/**
 * @file memcpy.h
 * Payload copy functions selectable per stream (MEMCPY_STD / MEMCPY_NONTEMPORAL).
 */
#pragma once

#include <cstddef>

namespace spead2gpu
{

/// Identifies a copy function (values match spead2's MEMCPY_* constants).
enum class memcpy_function_id : int
{
    STD = 0,
    NONTEMPORAL = 1
};

using memcpy_function = void *(*)(void *, const void *, std::size_t) noexcept;

/// memcpy with non-temporal (cache-bypassing) stores where the CPU has them.
void *memcpy_nontemporal(void *dest, const void *src, std::size_t n) noexcept;

/// The function for @a id.
memcpy_function get_memcpy_function(memcpy_function_id id);

} // namespace spead2gpu
