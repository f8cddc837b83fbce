/**
 * @file group.h
 * Chunk stream groups: several single-threaded member streams fill the same
 * chunks (Python: recv.ChunkStreamRingGroup).
 *
 * State machine
 * =============
 * State, all under the group lock (@ref chunk_stream_group::mutex):
 * - @c window: the group's @ref chunk_window of max_chunks (G) ids, holding
 *   the chunks taken from the free ring;
 * - @c member_heads[i]: the head of member i's own window (member windows
 *   have M_i <= G slots), or chunk_window::end_id once member i has ended;
 * - @c flush_requested: (LOSSY) the highest id up to which lagging members
 *   have been asked to flush;
 * - @c live_members, @c stopped (user stop), @c ended (every member ended).
 *
 * Invariant: window.head == min(member_heads) once any member has reported,
 * and never more. So a chunk is delivered exactly when every member's window
 * has moved past it, which is when no member can still write into it: no
 * reference counts are needed.
 *
 * Who waits on what
 * -----------------
 * - A member that needs chunk id (from its own window, member lock held)
 *   calls get_chunk. If id >= window.head + G it must wait for the group head
 *   to reach target = id - G + 1. It has already moved its own head past
 *   target (its window is no larger than the group's, and a window reports a
 *   head move before allocating), so it only waits for the others:
 *   - LOSSLESS: it waits (condition @c head_moved, group lock released) for
 *     the other members to move on by receiving later packets or ending;
 *   - LOSSY: it also posts flush_until(target) to every member whose head is
 *     below target, to run on that member's own thread; those flushes cut
 *     off the heaps still being written into the evicted chunks (counted as
 *     too_old_heaps) and move the heads.
 *   No cycle is possible: the waiting member with the smallest id depends
 *   only on members that are not waiting (the argument spead2 documents).
 * - Allocation (window.get) pops from the free ring while holding the group
 *   lock; the free ring refills only from the consumer, never from a member,
 *   so this cannot deadlock when the free ring holds at least G chunks.
 * - Delivery pushes to the data ring while holding the group lock; a full
 *   data ring blocks the whole group until the consumer pops (back-pressure).
 *
 * When a chunk retires
 * --------------------
 * When the minimum member head passes it (member_head_moved), in id order,
 * through the ring pair's deliver (data ring, or graveyard after a stop).
 * LOSSLESS: only when every member has moved past. LOSSY: possibly earlier,
 * after forced flushes.
 *
 * Stop and end of stream
 * ----------------------
 * - A member's network end (stop item, EOF): its window is flushed (head =
 *   its tail), then member_ended sets its head to end_id. When the last
 *   member ends, the whole group window is delivered and the group leaves
 *   the data ring's producers, so the consumer sees ringbuffer_stopped after
 *   the last chunk.
 * - User stop (the group's stop(), or any member's stop()): stops both rings
 *   first (wakes a member blocked on the free or data ring), sets @c stopped
 *   and wakes LOSSLESS waiters (get_chunk then gives nullptr), then stops
 *   every member (each flushes its window and stops its readers), then moves
 *   what is left in the group window to the graveyard.
 *
 * Locks and their order
 * ---------------------
 * 1. a member's stream lock (stream::mutex): its live heaps and window;
 * 2. @ref chunk_stream_group::mutex: the group state above;
 * 3. the rings' internal locks, and the ring pair's graveyard lock.
 * Always taken in that order. The group never takes a member lock while
 * holding its own: lossy flushes are posted to the member's thread, and
 * stop() stops members with no group lock held. @ref flush_gate::mutex is
 * taken before a member lock by a posted flush, and only for a pointer swap
 * by the destructor.
 */
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <vector>
#include "recv/chunk/chunk_stream.h"
#include "recv/chunk/ring_pair.h"
#include "recv/chunk/window.h"

namespace spead2gpu::recv
{

/// How the group's window advances past chunks that members still hold.
enum class group_eviction_mode : int
{
    LOSSY = 0, ///< advance at once and make lagging members flush
    LOSSLESS = 1 ///< wait until every member has moved past
};

/// Group options (Python: recv.ChunkStreamGroupConfig).
class chunk_stream_group_config
{
    std::size_t max_chunks = default_max_chunks; ///< size of the group window
    group_eviction_mode eviction_mode = group_eviction_mode::LOSSY; ///< what happens to a lagging member

public:
    static constexpr std::size_t default_max_chunks = 2;
    chunk_stream_group_config &set_max_chunks(std::size_t v)
    {
        max_chunks = nonzero(v, "max_chunks cannot be 0");
        return *this;
    }
    std::size_t get_max_chunks() const { return max_chunks; }
    chunk_stream_group_config &set_eviction_mode(group_eviction_mode m)
    {
        eviction_mode = m;
        return *this;
    }
    group_eviction_mode get_eviction_mode() const { return eviction_mode; }
};

class chunk_stream_group;

/**
 * One stream of a group. Its window takes chunks from the group and reports
 * its head to it; the group delivers a chunk once every member's window has
 * moved past it.
 */
class chunk_stream_group_member : public chunk_stream
{
    friend class chunk_stream_group;
    chunk_stream_group &group; ///< the owner (members never outlive it)
    const std::size_t index; ///< position in the group (member_heads index)

    chunk *allocate_chunk(std::uint64_t chunk_id, std::uint64_t *stats) override;
    void ready_chunk(chunk *c, std::uint64_t *stats) override {} ///< the chunk stays the group's
    void window_head_moved(std::uint64_t head) override;
    /// A user stop of any member stops the whole group.
    void stop_requested() override;
    void stopped_locked(bool by_user) override;
    /// Lossy eviction: on this member's own thread, flush chunks older than @a chunk_id.
    void flush_later(std::uint64_t chunk_id);

public:
    chunk_stream_group_member(chunk_stream_group &group, std::size_t index, std::shared_ptr<thread_pool> pool,
                              const stream_config &config, const chunk_stream_config &chunk_config);
    ~chunk_stream_group_member() override;
};

/**
 * The group: a window of max_chunks chunks shared by its members, fed by a
 * free ring and delivering, in chunk-id order, to a data ring. Locking is per
 * chunk (acquire of a new chunk, a member's head moving), never per packet.
 * See the file comment for the state machine and the lock order.
 */
class chunk_stream_group
{
    friend class chunk_stream_group_member;

    /// Lets a lossy flush posted to a member's thread find out whether the group still exists.
    struct flush_gate
    {
        std::mutex mutex; ///< held while a posted flush runs
        chunk_stream_group *group = nullptr; ///< null once the group is being destroyed
    };

    const chunk_stream_group_config config;
    chunk_ring_pair rings; ///< free-chunk source and data sink
    std::mutex mutex; ///< protects everything below (see the lock order)
    std::condition_variable head_moved; ///< window head moved, or stopped
    chunk_window window; ///< the chunks of the group, ids [head, tail)
    std::vector<std::unique_ptr<chunk_stream_group_member>> members;
    std::vector<std::uint64_t> member_heads; ///< each member's window head (end_id once ended)
    std::uint64_t flush_requested = 0; ///< LOSSY: members were asked to flush below this id
    std::size_t live_members = 0; ///< members that have not ended
    bool stopped = false; ///< user stop
    std::shared_ptr<flush_gate> gate = std::make_shared<flush_gate>();

    /// Chunk @a id for member @a m (member lock held); nullptr once stopped.
    chunk *get_chunk(chunk_stream_group_member &m, std::uint64_t id, std::uint64_t *stats);
    /// Member @a m's window head moved to @a head (member lock held).
    void member_head_moved(chunk_stream_group_member &m, std::uint64_t head);
    /// Member @a m reached the end of its input (member lock held, its window flushed).
    void member_ended(chunk_stream_group_member &m);
    /// Set member @a i's head and deliver what the new minimum passes (group lock held).
    void set_member_head(std::size_t i, std::uint64_t head);

public:
    chunk_stream_group(const chunk_stream_group_config &config, std::shared_ptr<chunk_ringbuffer> data_ring,
                       std::shared_ptr<chunk_ringbuffer> free_ring);
    virtual ~chunk_stream_group();

    const chunk_stream_group_config &get_config() const { return config; }
    /// Add a member (before adding readers to any member).
    chunk_stream_group_member &emplace_back(std::shared_ptr<thread_pool> pool, const stream_config &config,
                                            const chunk_stream_config &chunk_config);
    std::size_t size() const { return members.size(); }
    chunk_stream_group_member &operator[](std::size_t i) { return *members.at(i); }
    const std::shared_ptr<chunk_ringbuffer> &get_data_ringbuffer() const { return rings.get_data_ringbuffer(); }
    const std::shared_ptr<chunk_ringbuffer> &get_free_ringbuffer() const { return rings.get_free_ringbuffer(); }
    /// Stop the rings and every member. Idempotent; returns once no member's reader runs.
    void stop();
    /// Chunks that could not be delivered; the caller destroys them.
    std::vector<std::unique_ptr<chunk>> take_graveyard() { return rings.take_graveyard(); }
};

} // namespace spead2gpu::recv
