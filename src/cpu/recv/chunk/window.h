/**
 * @file window.h
 * The sliding window of chunks: the one mechanism behind a chunk stream's
 * window and a chunk stream group's window.
 *
 * Design notes
 * ------------
 * A window holds the chunks with ids in [head, tail), at most @c size of
 * them, in a circular array. Chunk ids are the placement callback's
 * non-negative int64 values; they are kept here as uint64 so that the tail
 * of a window holding id 2^63 - 1 (one past it) and the "end of everything"
 * head (@ref chunk_window::end_id) are representable without overflow.
 *
 * Invariants (checked by the unit tests in tests/cpp):
 * - head <= tail and tail - head <= size;
 * - every id in [head, tail) has had its allocate callback called exactly
 *   once (the slot may hold nullptr when allocation failed, e.g. after stop);
 * - ids leave the window only at the head, in increasing order, each through
 *   the ready callback exactly once (nullptr slots are skipped);
 * - the head never moves backwards. Every move is reported through the
 *   head_moved callback once per operation, after the chunks it passed have
 *   been readied and before any new chunk is allocated, so that whoever
 *   waits for the head (a chunk stream group) sees progress before the
 *   caller can block in an allocation.
 *
 * get(id) for id >= head + size first retires chunks until
 * head = id - size + 1 (if the whole window is older than that, it is
 * flushed and the head jumps, so that skipped ids are never allocated), then
 * allocates every id from tail to id in order. This matches spead2's
 * behaviour: ids inside the new window that no heap named are still
 * allocated and delivered (with nothing present).
 *
 * The class does no locking: its owner's lock protects it.
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>
#include "recv/chunk/chunk.h"

namespace spead2gpu::recv
{

class chunk_window
{
public:
    /// A head beyond every valid chunk id: "flush everything" / "this member has ended".
    static constexpr std::uint64_t end_id = std::numeric_limits<std::uint64_t>::max();

private:
    std::vector<chunk *> slots; ///< circular storage; id's slot is (head_pos + id - head) % size
    std::uint64_t head = 0; ///< oldest id in the window
    std::uint64_t tail = 0; ///< one past the newest allocated id
    std::size_t head_pos = 0; ///< slot of @ref head

    chunk *&slot(std::uint64_t id)
    {
        std::size_t pos = head_pos + std::size_t(id - head);
        return slots[pos >= slots.size() ? pos - slots.size() : pos];
    }

    /// Ready the head chunk and advance the head by one (head < tail).
    template <typename Ready> void retire_head(Ready &&ready)
    {
        chunk *c = slots[head_pos];
        slots[head_pos] = nullptr;
        head++;
        if (++head_pos == slots.size())
            head_pos = 0;
        if (c)
            ready(c);
    }

    /// Retire chunks below @a id; if the window empties before, jump to @a id. Returns whether the head moved.
    template <typename Ready> bool advance_to(std::uint64_t id, Ready &&ready)
    {
        if (id <= head)
            return false;
        while (head < tail && head < id)
            retire_head(ready);
        if (head < id)
        {
            head = tail = id;
            head_pos = 0;
        }
        return true;
    }

public:
    /// An empty window of @a max_chunks slots (must be at least 1).
    explicit chunk_window(std::size_t max_chunks) : slots(nonzero(max_chunks, "max_chunks cannot be 0"), nullptr) {}

    std::size_t size() const { return slots.size(); }
    std::uint64_t get_head() const { return head; }
    std::uint64_t get_tail() const { return tail; }
    bool empty() const { return head == tail; }

    /**
     * The chunk for @a id, allocating every id from tail to @a id in order.
     * Returns nullptr if @a id is older than the head (too old) or its
     * allocation gave nullptr. @a too_old is set for the first case.
     *
     * @param ready       called with each chunk that leaves the window
     * @param head_moved  called with the new head, once, if it moved
     * @param allocate    called with each new id; returns a chunk or nullptr
     */
    template <typename Ready, typename HeadMoved, typename Allocate>
    chunk *get(std::uint64_t id, Ready &&ready, HeadMoved &&head_moved, Allocate &&allocate, bool &too_old)
    {
        too_old = id < head;
        if (too_old)
            return nullptr;
        if (id - head >= slots.size())
        {
            advance_to(id - (slots.size() - 1), ready);
            head_moved(head);
        }
        while (tail <= id)
        {
            chunk *&s = slot(tail);
            s = nullptr; // the slot is reserved before allocate, which may block
            s = allocate(tail);
            tail++;
        }
        return slot(id);
    }

    /// Retire every chunk older than @a id (@a id may be @ref end_id).
    template <typename Ready, typename HeadMoved>
    void flush_until(std::uint64_t id, Ready &&ready, HeadMoved &&head_moved)
    {
        if (advance_to(id, ready))
            head_moved(head);
    }

    /// Retire every chunk; the head moves to the tail.
    template <typename Ready, typename HeadMoved> void flush_all(Ready &&ready, HeadMoved &&head_moved)
    {
        flush_until(tail, ready, head_moved);
    }
};

} // namespace spead2gpu::recv
