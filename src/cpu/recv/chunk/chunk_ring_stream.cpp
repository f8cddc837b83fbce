#include "recv/chunk/chunk_ring_stream.h"

namespace spead2gpu::recv
{

chunk_ring_stream::chunk_ring_stream(std::shared_ptr<thread_pool> pool, const stream_config &config,
                                     const chunk_stream_config &chunk_config,
                                     std::shared_ptr<chunk_ringbuffer> data_ring,
                                     std::shared_ptr<chunk_ringbuffer> free_ring)
    : chunk_stream(std::move(pool), config, chunk_config), rings(std::move(data_ring), std::move(free_ring))
{
}

chunk_ring_stream::~chunk_ring_stream()
{
    stop();
}

chunk *chunk_ring_stream::allocate_chunk(std::uint64_t chunk_id, std::uint64_t *stats)
{
    std::unique_ptr<chunk> c = rings.acquire(stats[free_chunk_wait_index]);
    if (!c)
        return nullptr;
    c->chunk_id = std::int64_t(chunk_id);
    c->stream_id = get_config().get_stream_id();
    return c.release();
}

void chunk_ring_stream::ready_chunk(chunk *c, std::uint64_t *stats)
{
    rings.deliver(std::unique_ptr<chunk>(c));
}

void chunk_ring_stream::stop_requested()
{
    rings.stop();
}

void chunk_ring_stream::stopped_locked(bool by_user)
{
    chunk_stream::stopped_locked(by_user);
    if (!by_user)
        rings.producer_done();
}

} // namespace spead2gpu::recv
