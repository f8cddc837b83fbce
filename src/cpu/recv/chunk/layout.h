/**
 * @file recv_chunk_layout.h
 * Built-in heap placement for chunk streams: declarative layouts executed in
 * C++ without the GIL, so common F-engine / X-engine receivers need no numba.
 */
#pragma once

#include <cstdint>
#include <string>
#include <vector>
#include "common/constants.h"
#include "recv/chunk/chunk.h"
#include "recv/stream/stats.h"

namespace spead2gpu::recv
{

/**
 * One axis of the heap index. The time axis takes its position from the
 * timestamp; any other axis from an immediate item:
 * index = (value - offset) / step, which must divide exactly and be < count.
 */
struct layout_axis
{
    bool is_time = false;
    item_pointer_t item_id = 0;
    std::uint64_t count = 1;
    std::uint64_t step = 1;
    std::uint64_t offset = 0;
};

/**
 * A declarative chunk layout:
 * - chunk id = (timestamp / timestamp_step) / timestamps_per_chunk;
 * - heap index = mixed-radix number over @ref axes (outermost first), the
 *   time axis counting timestamps_per_chunk positions;
 * - heap offset = heap index × heap_size;
 * - optionally, the values of @ref extra_items are stored as little-endian
 *   uint64 into chunk.extra at heap index × 8 × len(extra_items).
 * Heaps whose length is not heap_size, whose timestamp or axis values are
 * misaligned, out of range or missing are rejected (chunk id -1) and counted.
 */
class chunk_layout
{
public:
    std::size_t heap_size = 0;
    item_pointer_t timestamp_id = 0;
    std::uint64_t timestamp_step = 1;
    std::uint64_t timestamps_per_chunk = 1;
    std::vector<layout_axis> axes;
    std::vector<item_pointer_t> extra_items;

    /// Statistic indices (filled in per stream by bind_stats).
    std::size_t wrong_size_index = 0, misaligned_index = 0, out_of_range_index = 0, missing_index = 0;

    /// Throws std::invalid_argument if the description is inconsistent.
    void validate() const;
    /// Heaps in one chunk (product of the axis counts).
    std::size_t heaps_per_chunk() const;
    /// Bytes of chunk.extra per heap.
    std::size_t extra_bytes_per_heap() const { return 8 * extra_items.size(); }
    /// The statistics this layout counts rejections under.
    static std::vector<stat_config> stats();
    /// The placement function (user data: a chunk_layout).
    static void place(chunk_place_data *data, std::size_t size, void *self);
};

} // namespace spead2gpu::recv
