/**
 * @file recv_chunk.h
 * Chunks (large contiguous buffers that heaps are placed into), the
 * placement callback ABI shared with spead2, and chunk stream options.
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <vector>
#include "common/constants.h"
#include "common/ringbuffer.h"

namespace spead2gpu::recv
{

class chunk_layout;

/**
 * Data passed to a placement callback. ABI-compatible with spead2's
 * chunk_place_data (80 bytes on LP64); new fields may only be appended.
 */
struct chunk_place_data
{
    const std::uint8_t *packet; ///< in: first packet of the heap (header to end of payload)
    std::size_t packet_size; ///< in
    std::int64_t *items; ///< in: values of chunk_stream_config::items, -1 if absent
    std::int64_t chunk_id; ///< out: -1 (initial) discards the heap
    std::size_t heap_index; ///< out: index into chunk.present
    std::size_t heap_offset; ///< out: byte offset into chunk.data
    std::uint64_t *batch_stats; ///< in: per-batch statistics (custom stats by index)
    std::uint8_t *extra; ///< in: scratch of max_heap_extra bytes
    std::size_t extra_offset; ///< out: destination in chunk.extra
    std::size_t extra_size; ///< out: bytes of @ref extra to copy
};
static_assert(sizeof(chunk_place_data) == 80, "chunk_place_data must match spead2's ABI");

/// Placement callback: (data, sizeof(chunk_place_data), user data).
using chunk_place_function = void (*)(chunk_place_data *, std::size_t, void *);

/**
 * A chunk: payload memory plus one presence flag per heap (or per packet in
 * packet-presence mode) and optional per-heap extra bytes. The memory is
 * owned by a subclass (the Python binding keeps the user's buffers alive).
 */
class chunk
{
public:
    std::int64_t chunk_id = -1;
    std::uint64_t stream_id = 0;
    std::uint8_t *present = nullptr;
    std::size_t present_size = 0;
    std::uint8_t *data = nullptr;
    std::size_t data_size = 0;
    std::uint8_t *extra = nullptr;
    std::size_t extra_size = 0;

    virtual ~chunk() = default;
};

/// Ring of chunks (data ring or free ring).
using chunk_ringbuffer = ringbuffer<std::unique_ptr<chunk>>;

/// Chunk options (Python: recv.ChunkStreamConfig).
class chunk_stream_config
{
    std::vector<item_pointer_t> items;
    std::size_t max_chunks = 2;
    chunk_place_function place = nullptr;
    void *place_user = nullptr;
    std::size_t max_heap_extra = 0;
    std::size_t packet_presence_payload_size = 0;
    std::shared_ptr<const chunk_layout> layout;

public:
    static constexpr std::size_t default_max_chunks = 2;

    chunk_stream_config &set_items(std::vector<item_pointer_t> v)
    {
        items = std::move(v);
        return *this;
    }
    const std::vector<item_pointer_t> &get_items() const { return items; }
    chunk_stream_config &set_max_chunks(std::size_t v)
    {
        max_chunks = nonzero(v, "max_chunks cannot be 0");
        return *this;
    }
    std::size_t get_max_chunks() const { return max_chunks; }
    chunk_stream_config &set_place(chunk_place_function f, void *user)
    {
        place = f;
        place_user = user;
        layout.reset();
        return *this;
    }
    chunk_place_function get_place() const { return place; }
    /// Use a built-in layout instead of a callback (clears any callback).
    chunk_stream_config &set_layout(std::shared_ptr<const chunk_layout> l)
    {
        layout = std::move(l);
        place = nullptr;
        place_user = nullptr;
        return *this;
    }
    const std::shared_ptr<const chunk_layout> &get_layout() const { return layout; }
    void *get_place_user() const { return place_user; }
    chunk_stream_config &set_max_heap_extra(std::size_t v)
    {
        max_heap_extra = v;
        return *this;
    }
    std::size_t get_max_heap_extra() const { return max_heap_extra; }
    /// Mark presence per packet of @a payload_size bytes instead of per heap.
    chunk_stream_config &enable_packet_presence(std::size_t payload_size)
    {
        if (payload_size == 0)
            throw std::invalid_argument("payload_size must not be zero");
        packet_presence_payload_size = payload_size;
        return *this;
    }
    chunk_stream_config &disable_packet_presence()
    {
        packet_presence_payload_size = 0;
        return *this;
    }
    std::size_t get_packet_presence_payload_size() const { return packet_presence_payload_size; }
};

} // namespace spead2gpu::recv
