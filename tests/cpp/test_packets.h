// SPEAD packets built by hand for the C++ tests (flavour SPEAD-64-48).
#pragma once

#include <cstdint>
#include <vector>

namespace spead2gpu::test
{

constexpr std::size_t heap_size = 256; ///< payload bytes per heap
constexpr std::size_t packet_payload = 64; ///< payload bytes per packet (4 packets per heap)

/// Payload byte @a offset of heap @a cnt (distinct per heap and offset).
inline std::uint8_t pattern(std::int64_t cnt, std::size_t offset)
{
    return std::uint8_t(offset * 7 + std::uint64_t(cnt) * 13 + 1);
}

/// The packets of heap @a cnt: heap_size bytes of pattern() in packet_payload pieces.
std::vector<std::vector<std::uint8_t>> heap_packets(std::int64_t cnt);

} // namespace spead2gpu::test
