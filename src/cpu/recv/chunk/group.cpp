#include "recv/chunk/group.h"
#include <algorithm>

namespace spead2gpu::recv
{

chunk_stream_group_member::chunk_stream_group_member(chunk_stream_group &group, std::size_t index,
                                                     std::shared_ptr<thread_pool> pool, const stream_config &config,
                                                     const chunk_stream_config &chunk_config)
    : chunk_stream(std::move(pool), config, chunk_config), group(group), index(index)
{
}

chunk_stream_group_member::~chunk_stream_group_member()
{
    finish_stop();
}

chunk *chunk_stream_group_member::allocate_chunk(std::uint64_t chunk_id, std::uint64_t *stats)
{
    return group.get_chunk(*this, chunk_id, stats);
}

void chunk_stream_group_member::window_head_moved(std::uint64_t head)
{
    group.member_head_moved(*this, head);
}

void chunk_stream_group_member::stop_requested()
{
    group.stop();
}

void chunk_stream_group_member::stopped_locked(bool by_user)
{
    chunk_stream::stopped_locked(by_user); // flushes the window: the head reaches the tail
    group.member_ended(*this);
}

void chunk_stream_group_member::flush_later(std::uint64_t chunk_id)
{
    std::shared_ptr<chunk_stream_group::flush_gate> gate = group.gate;
    get_thread_pool().post(
        [this, gate, chunk_id]
        {
            std::lock_guard<std::mutex> gate_lock(gate->mutex);
            if (!gate->group)
                return;
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

chunk_stream_group::chunk_stream_group(const chunk_stream_group_config &config,
                                       std::shared_ptr<chunk_ringbuffer> data_ring,
                                       std::shared_ptr<chunk_ringbuffer> free_ring)
    : config(config), rings(std::move(data_ring), std::move(free_ring)), window(config.get_max_chunks())
{
    gate->group = this;
}

chunk_stream_group::~chunk_stream_group()
{
    stop();
    {
        // Flushes already posted to member threads find the gate closed.
        std::lock_guard<std::mutex> gate_lock(gate->mutex);
        gate->group = nullptr;
    }
    members.clear();
}

chunk_stream_group_member &chunk_stream_group::emplace_back(std::shared_ptr<thread_pool> pool,
                                                            const stream_config &stream_config,
                                                            const chunk_stream_config &chunk_config)
{
    if (chunk_config.get_max_chunks() > config.get_max_chunks())
        throw std::invalid_argument("stream max_chunks must not be larger than group max_chunks");
    std::lock_guard<std::mutex> lock(mutex);
    if (stopped)
        throw std::runtime_error("group has been stopped");
    members.push_back(std::make_unique<chunk_stream_group_member>(*this, members.size(), std::move(pool), stream_config,
                                                                  chunk_config));
    member_heads.push_back(window.get_head());
    live_members++;
    return *members.back();
}

chunk *chunk_stream_group::get_chunk(chunk_stream_group_member &m, std::uint64_t id, std::uint64_t *stats)
{
    std::unique_lock<std::mutex> lock(mutex);
    const std::uint64_t max = config.get_max_chunks();
    if (!stopped && id - window.get_head() >= max && id >= window.get_head())
    {
        const std::uint64_t target = id - (max - 1);
        if (config.get_eviction_mode() == group_eviction_mode::LOSSY && target > flush_requested)
        {
            flush_requested = target;
            for (std::size_t i = 0; i < members.size(); i++)
                if (member_heads[i] < target)
                    members[i]->flush_later(target);
        }
        head_moved.wait(lock, [&] { return stopped || window.get_head() >= target; });
    }
    if (stopped)
        return nullptr;
    bool too_old;
    std::uint64_t &wait_ns = stats[m.free_chunk_wait_index];
    const std::uint64_t stream_id = m.get_config().get_stream_id();
    return window.get(
        id, [this](chunk *c) { rings.deliver(std::unique_ptr<chunk>(c)); },
        [this](std::uint64_t) { head_moved.notify_all(); },
        [&](std::uint64_t new_id) -> chunk *
        {
            std::unique_ptr<chunk> c = rings.acquire(wait_ns);
            if (!c)
                return nullptr;
            c->chunk_id = std::int64_t(new_id);
            c->stream_id = stream_id;
            return c.release();
        },
        too_old);
}

void chunk_stream_group::set_member_head(std::size_t i, std::uint64_t head)
{
    const std::uint64_t old = member_heads[i];
    if (head <= old)
        return;
    member_heads[i] = head;
    if (old != window.get_head())
        return; // another member is further behind: the minimum did not move
    const std::uint64_t min_head = *std::min_element(member_heads.begin(), member_heads.end());
    window.flush_until(
        min_head, [this](chunk *c) { rings.deliver(std::unique_ptr<chunk>(c)); },
        [this](std::uint64_t) { head_moved.notify_all(); });
}

void chunk_stream_group::member_head_moved(chunk_stream_group_member &m, std::uint64_t head)
{
    std::lock_guard<std::mutex> lock(mutex);
    set_member_head(m.index, head);
}

void chunk_stream_group::member_ended(chunk_stream_group_member &m)
{
    std::lock_guard<std::mutex> lock(mutex);
    set_member_head(m.index, chunk_window::end_id);
    if (--live_members == 0)
    {
        // Every member has ended: everything has been delivered (the minimum
        // head is end_id); the consumer sees the end after the last chunk.
        rings.producer_done();
    }
}

void chunk_stream_group::stop()
{
    // Rings first: a member blocked on the free or data ring (holding the
    // group lock) lets go before we take the lock.
    rings.stop();
    {
        std::lock_guard<std::mutex> lock(mutex);
        stopped = true;
        head_moved.notify_all();
    }
    for (auto &m : members)
        m->finish_stop();
    std::lock_guard<std::mutex> lock(mutex);
    window.flush_all([this](chunk *c) { rings.bury(std::unique_ptr<chunk>(c)); }, [](std::uint64_t) {});
}

} // namespace spead2gpu::recv
