#include "recv/chunk/ring_pair.h"

namespace spead2gpu::recv
{

chunk_ring_pair::chunk_ring_pair(std::shared_ptr<chunk_ringbuffer> data_ring_,
                                 std::shared_ptr<chunk_ringbuffer> free_ring_)
    : data_ring(std::move(data_ring_)), free_ring(std::move(free_ring_))
{
    data_ring->add_producer();
}

std::unique_ptr<chunk> chunk_ring_pair::acquire(std::uint64_t &wait_ns)
{
    try
    {
        return free_ring->pop_timed(wait_ns);
    }
    catch (ringbuffer_stopped &)
    {
        return nullptr;
    }
}

void chunk_ring_pair::deliver(std::unique_ptr<chunk> &&c)
{
    try
    {
        data_ring->push(std::move(c));
    }
    catch (ringbuffer_stopped &)
    {
        bury(std::move(c));
    }
}

void chunk_ring_pair::bury(std::unique_ptr<chunk> &&c)
{
    std::lock_guard<std::mutex> lock(graveyard_mutex);
    graveyard.push_back(std::move(c));
}

void chunk_ring_pair::stop()
{
    data_ring->stop();
    free_ring->stop();
}

std::vector<std::unique_ptr<chunk>> chunk_ring_pair::take_graveyard()
{
    std::lock_guard<std::mutex> lock(graveyard_mutex);
    return std::move(graveyard);
}

} // namespace spead2gpu::recv
