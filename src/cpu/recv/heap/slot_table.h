/**
 * @file slot_table.h
 * The live heaps of a stream: a fixed table of reassembly slots, one ring
 * of max_heaps slots per substream.
 *
 * Why a ring per substream: spead2 decides which incomplete heap to evict
 * by age within a substream (heap_cnt % substreams), not by heap_cnt, so
 * a sender that interleaves N substreams needs N × max_heaps live heaps
 * without evicting one substream's heaps for another's. The table is
 * allocated once, at stream construction: admitting a packet never
 * allocates a slot.
 *
 * Invariants:
 * - a slot is empty (live_heap::empty()) or holds a heap whose cnt belongs
 *   to the slot's substream;
 * - within a substream, head is the slot to reuse next (the oldest claim);
 *   claiming advances it, so eviction order is claim order;
 * - last_hit is only a hint (the slot of the previous lookup's heap); a
 *   wrong hint costs a scan, never a wrong answer.
 *
 * Not thread-safe: the owning stream uses it under its lock.
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>
#include "recv/heap/live_heap.h"

namespace spead2gpu::recv
{

class slot_table
{
    std::size_t max_heaps; ///< slots per substream
    std::vector<live_heap> slots; ///< substreams × max_heaps, substream-major
    std::vector<std::size_t> head; ///< per substream: the slot (0..max_heaps-1) to claim next
    std::vector<std::size_t> last_hit; ///< per substream: the slot found or claimed last

    std::size_t substream_of(s_item_pointer_t cnt) const { return std::size_t(cnt) % head.size(); }

public:
    /// @pre max_heaps > 0 and substreams > 0 (stream_config enforces both)
    slot_table(std::size_t max_heaps, std::size_t substreams);

    /**
     * The live heap with HEAP_CNT @a cnt, or nullptr. Tries the substream's
     * last hit first, then scans the substream; each slot scanned adds one to
     * @a search_dist (spead2's search_dist statistic).
     */
    live_heap *find(s_item_pointer_t cnt, std::uint64_t &search_dist);

    /**
     * The slot for a new heap of @a cnt: the oldest of its substream, which
     * becomes the newest. The caller must first move out (evict) a heap it
     * still holds; the slot then becomes the lookup hint.
     */
    live_heap &claim(s_item_pointer_t cnt);

    /// Call @a f on every non-empty slot (any order).
    template <typename F> void for_each(F &&f)
    {
        for (auto &h : slots)
            if (!h.empty())
                f(h);
    }

    /**
     * Move every live heap out to @a f, oldest first within each substream,
     * substream by substream. The table is empty afterwards.
     */
    template <typename F> void drain(F &&f)
    {
        for (std::size_t sub = 0; sub < head.size(); sub++)
            for (std::size_t k = 0; k < max_heaps; k++)
            {
                std::size_t slot = head[sub] + k;
                if (slot >= max_heaps)
                    slot -= max_heaps;
                live_heap &h = slots[sub * max_heaps + slot];
                if (!h.empty())
                    f(live_heap(std::move(h)));
            }
    }
};

} // namespace spead2gpu::recv
