#include "recv/chunk/group.h"
#include <limits>

namespace spead2gpu::recv
{

static constexpr std::int64_t stopped_head = std::numeric_limits<std::int64_t>::max();

chunk chunk_stream_group::retry_marker;

void chunk_stream_group::set_head(std::int64_t head)
{
    head_id = head;
    head_atomic.store(head, std::memory_order_release);
}

chunk_stream_group_member::chunk_stream_group_member(
    chunk_stream_group &group, std::size_t index, std::shared_ptr<thread_pool> pool,
    const stream_config &config, const chunk_stream_config &chunk_config)
    : chunk_stream(std::move(pool), config, chunk_config), group(group), index(index)
{
}

chunk_stream_group_member::~chunk_stream_group_member()
{
    stop_member();
}

chunk *chunk_stream_group_member::allocate_chunk(std::int64_t chunk_id, std::uint64_t *stats)
{
    while (true)
    {
        // Release chunks the group has already moved past: they hold up the
        // (ordered) delivery, and with it the return of free chunks. Only
        // ids below chunk_id are touched, so the caller's window walk stays valid.
        std::int64_t limit = std::min(group.head_atomic.load(std::memory_order_acquire), chunk_id);
        flush_until(limit, stats);
        chunk *c = group.acquire(*this, chunk_id, stats);
        if (c != &chunk_stream_group::retry_marker)
            return c;
    }
}

void chunk_stream_group_member::ready_chunk(chunk *c, std::uint64_t *stats)
{
    group.release(*this, c);
}

void chunk_stream_group_member::window_head_moved(std::int64_t head)
{
    group.member_head_moved(*this, head);
}

void chunk_stream_group_member::async_flush_until(std::int64_t chunk_id)
{
    struct guard
    {
        chunk_stream_group &g;
        ~guard()
        {
            std::lock_guard<std::mutex> lock(g.tasks_mutex);
            if (--g.pending_tasks == 0)
                g.tasks_cond.notify_all();
        }
    };
    {
        std::lock_guard<std::mutex> lock(group.tasks_mutex);
        group.pending_tasks++;
    }
    std::shared_ptr<guard> g(new guard{group});
    get_thread_pool().post([this, chunk_id, g] {
        std::lock_guard<std::mutex> lock(mutex);
        if (stopped)
            return;
        std::vector<std::uint64_t> stats(batch_stats.size(), 0);
        flush_until(chunk_id, stats.data());
        for (std::size_t i = 0; i < stats.size(); i++)
            if (stats[i])
                add_stat_now(i, stats[i]);
    });
}

void chunk_stream_group_member::stop_member()
{
    chunk_stream::stop();
}

void chunk_stream_group_member::stop()
{
    group.stop();
}

void chunk_stream_group_member::stop_received()
{
    if (stopped)
        return;
    chunk_stream::stop_received();
    group.member_stopped(*this);
}

chunk_stream_group::chunk_stream_group(const chunk_stream_group_config &config,
                                       std::shared_ptr<chunk_ringbuffer> data_ring,
                                       std::shared_ptr<chunk_ringbuffer> free_ring)
    : config(config), data_ring(std::move(data_ring)), free_ring(std::move(free_ring))
{
    this->data_ring->add_producer();
}

chunk_stream_group::~chunk_stream_group()
{
    stop();
    std::unique_lock<std::mutex> lock(tasks_mutex);
    tasks_cond.wait(lock, [this] { return pending_tasks == 0; });
}

chunk_stream_group_member &chunk_stream_group::emplace_back(
    std::shared_ptr<thread_pool> pool, const stream_config &stream_config,
    const chunk_stream_config &chunk_config)
{
    if (chunk_config.get_max_chunks() > config.get_max_chunks())
        throw std::invalid_argument("stream max_chunks must not be larger than group max_chunks");
    std::lock_guard<std::mutex> lock(mutex);
    if (stopped)
        throw std::runtime_error("group has been stopped");
    members.push_back(std::make_unique<chunk_stream_group_member>(
        *this, members.size(), std::move(pool), stream_config, chunk_config));
    member_heads.push_back(head_id);
    live_members++;
    return *members.back();
}

chunk *chunk_stream_group::acquire(chunk_stream_group_member &m, std::int64_t id, std::uint64_t *stats)
{
    std::unique_lock<std::mutex> lock(mutex);
    if (stopped || id < head_id)
        return nullptr;
    const std::int64_t max = std::int64_t(config.get_max_chunks());
    if (id >= head_id + max)
    {
        const std::int64_t new_head = id - max + 1;
        member_heads[m.index] = std::max(member_heads[m.index], new_head);
        if (config.get_eviction_mode() == group_eviction_mode::LOSSLESS)
        {
            cond.wait(lock, [&] {
                if (stopped)
                    return true;
                for (auto h : member_heads)
                    if (h < new_head)
                        return false;
                return true;
            });
            if (stopped)
                return nullptr;
        }
        else
        {
            for (std::size_t i = 0; i < members.size(); i++)
                if (i != m.index && member_heads[i] < new_head)
                    members[i]->async_flush_until(new_head);
        }
        if (new_head > head_id)
        {
            set_head(new_head);
            tail_id = std::max(tail_id, head_id);
            deliver_ready();
        }
        if (id < head_id)
            return nullptr;
    }
    while (tail_id <= id)
    {
        const std::int64_t want = tail_id;
        if (want < 0)
        {
            tail_id++;
            continue;
        }
        std::unique_ptr<chunk> c;
        try
        {
            if (auto ready = free_ring->try_pop_optional())
                c = std::move(*ready);
            else
            {
                auto start = std::chrono::steady_clock::now();
                lock.unlock();   // other members may release chunks meanwhile
                try
                {
                    while (true)
                    {
                        if (auto got = free_ring->pop_for(std::chrono::milliseconds(1)))
                        {
                            c = std::move(*got);
                            break;
                        }
                        // Still waiting: if this member holds chunks the group
                        // has passed, it must release them first (otherwise the
                        // chunks it waits for may never come back).
                        std::lock_guard<std::mutex> check(mutex);
                        if (member_heads[m.index] < head_id)
                            break;
                    }
                }
                catch (...)
                {
                    lock.lock();
                    throw;
                }
                lock.lock();
                if (!c)
                    return &retry_marker;
                stats[m.free_chunk_wait_index] += std::uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                    std::chrono::steady_clock::now() - start).count());
            }
        }
        catch (ringbuffer_stopped &)
        {
            return nullptr;
        }
        if (stopped || tail_id != want)
        {
            // Stopped, or another member allocated this id while we waited:
            // the chunk goes back (or to the graveyard).
            bool returned = false;
            if (!stopped)
            {
                try
                {
                    free_ring->try_push(std::move(c));
                    returned = true;
                }
                catch (std::exception &)
                {
                }
            }
            if (!returned)
            {
                std::lock_guard<std::mutex> glock(graveyard_mutex);
                graveyard.push_back(std::move(c));
            }
            if (stopped || id < head_id)
                return nullptr;
            continue;
        }
        c->chunk_id = want;
        c->stream_id = 0;
        chunks[want].c = std::move(c);
        tail_id++;
    }
    auto it = chunks.find(id);
    if (it == chunks.end())
        return nullptr;
    it->second.refs++;
    return it->second.c.get();
}

void chunk_stream_group::release(chunk_stream_group_member &m, chunk *c)
{
    std::lock_guard<std::mutex> lock(mutex);
    auto it = chunks.find(c->chunk_id);
    if (it != chunks.end() && it->second.c.get() == c)
        it->second.refs--;
    deliver_ready();
    cond.notify_all();
}

void chunk_stream_group::member_head_moved(chunk_stream_group_member &m, std::int64_t head)
{
    std::lock_guard<std::mutex> lock(mutex);
    if (member_heads[m.index] < head)
    {
        member_heads[m.index] = head;
        cond.notify_all();
    }
}

void chunk_stream_group::member_stopped(chunk_stream_group_member &m)
{
    std::lock_guard<std::mutex> lock(mutex);
    member_heads[m.index] = stopped_head;
    cond.notify_all();
    if (--live_members == 0 && !producer_removed)
    {
        // Every member has reached the end of its input: deliver everything.
        set_head(tail_id);
        deliver_ready();
        producer_removed = true;
        data_ring->remove_producer();
    }
}

void chunk_stream_group::deliver_ready()
{
    while (!chunks.empty())
    {
        auto it = chunks.begin();
        if (it->first >= head_id || it->second.refs > 0)
            break;
        std::unique_ptr<chunk> c = std::move(it->second.c);
        chunks.erase(it);
        deliver(std::move(c));
    }
}

void chunk_stream_group::deliver(std::unique_ptr<chunk> &&c)
{
    try
    {
        if (!stopped)
        {
            data_ring->push(std::move(c));
            return;
        }
    }
    catch (ringbuffer_stopped &)
    {
    }
    std::lock_guard<std::mutex> lock(graveyard_mutex);
    graveyard.push_back(std::move(c));
}

void chunk_stream_group::stop()
{
    // Rings first: a member blocked on a full data ring (holding the group
    // lock) is released before we take the lock.
    data_ring->stop();
    free_ring->stop();
    {
        std::lock_guard<std::mutex> lock(mutex);
        if (stopped)
            return;
        stopped = true;
        cond.notify_all();
    }
    for (auto &m : members)
        m->stop_member();
    std::lock_guard<std::mutex> lock(mutex);
    for (auto &kv : chunks)
        if (kv.second.c)
        {
            std::lock_guard<std::mutex> glock(graveyard_mutex);
            graveyard.push_back(std::move(kv.second.c));
        }
    chunks.clear();
}

std::vector<std::unique_ptr<chunk>> chunk_stream_group::take_graveyard()
{
    std::lock_guard<std::mutex> lock(graveyard_mutex);
    return std::move(graveyard);
}

} // namespace spead2gpu::recv
