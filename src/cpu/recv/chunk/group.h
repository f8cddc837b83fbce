/**
 * @file recv_chunk_group.h
 * Chunk stream groups: several single-threaded streams fill the same chunks.
 */
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <vector>
#include "recv/chunk/chunk_stream.h"

namespace spead2gpu::recv
{

/// How the group's window advances past chunks that members still hold.
enum class group_eviction_mode : int
{
    LOSSY = 0,     ///< advance at once and make lagging members flush
    LOSSLESS = 1   ///< wait until every member has moved past
};

/// Group options (Python: recv.ChunkStreamGroupConfig).
class chunk_stream_group_config
{
    std::size_t max_chunks = 2;
    group_eviction_mode eviction_mode = group_eviction_mode::LOSSY;

public:
    static constexpr std::size_t default_max_chunks = 2;
    chunk_stream_group_config &set_max_chunks(std::size_t v)
    {
        if (v == 0)
            throw std::invalid_argument("max_chunks cannot be 0");
        max_chunks = v;
        return *this;
    }
    std::size_t get_max_chunks() const { return max_chunks; }
    chunk_stream_group_config &set_eviction_mode(group_eviction_mode m) { eviction_mode = m; return *this; }
    group_eviction_mode get_eviction_mode() const { return eviction_mode; }
};

class chunk_stream_group;

/**
 * One stream of a group. Its window takes chunks from the group and hands
 * them back; the group delivers a chunk once its window has moved past it
 * and no member holds it.
 */
class chunk_stream_group_member : public chunk_stream
{
    friend class chunk_stream_group;
    chunk_stream_group &group;
    std::size_t index;

    chunk *allocate_chunk(std::int64_t chunk_id, std::uint64_t *stats) override;
    void ready_chunk(chunk *c, std::uint64_t *stats) override;
    void window_head_moved(std::int64_t head) override;
    /// Flush chunks older than @a chunk_id on this member's own thread (lossy eviction).
    void async_flush_until(std::int64_t chunk_id);
    /// Stop only this member (the group stops each member this way).
    void stop_member();

public:
    chunk_stream_group_member(chunk_stream_group &group, std::size_t index,
                              std::shared_ptr<thread_pool> pool, const stream_config &config,
                              const chunk_stream_config &chunk_config);
    ~chunk_stream_group_member() override;
    /// A user stop of any member stops the whole group.
    void stop() override;
    void stop_received() override;
};

/**
 * The group: a window of max_chunks chunks shared by its members, fed by
 * a free ring and delivering, in chunk-id order, to a data ring. Locking is
 * per group operation (acquire/release of one chunk), never per packet.
 */
class chunk_stream_group
{
    friend class chunk_stream_group_member;

    struct entry
    {
        std::unique_ptr<chunk> c;
        int refs = 0;
    };

    chunk_stream_group_config config;
    std::shared_ptr<chunk_ringbuffer> data_ring, free_ring;
    std::mutex mutex;
    std::condition_variable cond;
    std::map<std::int64_t, entry> chunks;          ///< in the window or evicted but still held
    std::int64_t head_id = 0, tail_id = 0;
    std::atomic<std::int64_t> head_atomic{0};       ///< head_id, readable without the lock
    std::vector<std::unique_ptr<chunk_stream_group_member>> members;
    std::vector<std::int64_t> member_heads;
    std::size_t live_members = 0;
    bool stopped = false;
    bool producer_removed = false;
    std::mutex graveyard_mutex;
    std::vector<std::unique_ptr<chunk>> graveyard;
    // Lossy flush tasks still queued on member thread pools.
    std::mutex tasks_mutex;
    std::condition_variable tasks_cond;
    int pending_tasks = 0;

    /// Returned by acquire when the member must first release chunks the group has passed.
    static chunk retry_marker;
    chunk *acquire(chunk_stream_group_member &m, std::int64_t id, std::uint64_t *stats);
    void set_head(std::int64_t head);
    void release(chunk_stream_group_member &m, chunk *c);
    void member_head_moved(chunk_stream_group_member &m, std::int64_t head);
    void member_stopped(chunk_stream_group_member &m);
    /// Deliver evicted chunks that nobody holds, in order (group lock held).
    void deliver_ready();
    void deliver(std::unique_ptr<chunk> &&c);

public:
    chunk_stream_group(const chunk_stream_group_config &config,
                       std::shared_ptr<chunk_ringbuffer> data_ring,
                       std::shared_ptr<chunk_ringbuffer> free_ring);
    virtual ~chunk_stream_group();

    const chunk_stream_group_config &get_config() const { return config; }
    /// Add a member (before adding readers to any member).
    chunk_stream_group_member &emplace_back(std::shared_ptr<thread_pool> pool, const stream_config &config,
                                            const chunk_stream_config &chunk_config);
    std::size_t size() const { return members.size(); }
    chunk_stream_group_member &operator[](std::size_t i) { return *members.at(i); }
    const std::shared_ptr<chunk_ringbuffer> &get_data_ringbuffer() const { return data_ring; }
    const std::shared_ptr<chunk_ringbuffer> &get_free_ringbuffer() const { return free_ring; }
    /// Stop the rings and every member. Idempotent.
    void stop();
    /// Chunks that could not be delivered; the caller destroys them.
    std::vector<std::unique_ptr<chunk>> take_graveyard();
};

} // namespace spead2gpu::recv
