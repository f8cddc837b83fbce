#include "recv/reader/in_process_readers.h"
#include <optional>
#include <cstring>

namespace spead2gpu::recv
{

mem_reader::mem_reader(stream &owner, const std::uint8_t *data, std::size_t size, std::shared_ptr<void> keepalive)
    : reader(owner), data(data), size(size), keepalive(std::move(keepalive))
{
}

void mem_reader::start()
{
    started = true;
    task.post(owner.get_thread_pool(), [this] { run(); });
}

void mem_reader::run()
{
    std::size_t pos = 0;
    bool in_garbage = false;
    while (pos < size)
    {
        add_packet_state batch(owner);
        if (batch.is_stopped())
            return;
        for (std::size_t i = 0; i < batch_size && pos < size; i++)
        {
            std::size_t n = batch.add_packet(data + pos, size - pos);
            if (n == 0)
            {
                // Resynchronise: look for the next SPEAD magic byte by byte
                // (packets need not be multiples of 8 bytes long).
                if (!in_garbage)
                    batch.add_malformed();
                in_garbage = true;
                const void *next = std::memchr(data + pos + 1, 0x53, size - pos - 1);
                pos = next ? std::size_t(static_cast<const std::uint8_t *>(next) - data) : size;
            }
            else
            {
                in_garbage = false;
                pos += n;
            }
        }
    }
    add_packet_state batch(owner);
    owner.stop_received();
}

void mem_reader::stop()
{
    task.wait();
}

inproc_reader::inproc_reader(stream &owner, std::shared_ptr<inproc_queue> queue)
    : reader(owner), fd_watch(owner.get_thread_pool(), queue->buffer.data_fd()), queue(std::move(queue))
{
}

inproc_reader::~inproc_reader()
{
    unwatch();
}

void inproc_reader::start()
{
    arm();
}

void inproc_reader::stop()
{
    unwatch();
}

void inproc_reader::on_ready()
{
    add_packet_state batch(owner);
    if (batch.is_stopped())
        return;
    for (std::size_t i = 0; i < batch_size; i++)
    {
        // try_pop_optional: draining the queue is how every batch ends, so
        // an empty queue must not cost an exception.
        std::optional<inproc_queue::packet> next;
        try
        {
            next = queue->buffer.try_pop_optional();
        }
        catch (ringbuffer_stopped &)
        {
            owner.stop_received();
            return;
        }
        if (!next)
            break;
        inproc_queue::packet &p = *next;
        // Each queued packet is a datagram: its SPEAD size must match exactly.
        batch.add_datagram(p.data.get(), p.size, SIZE_MAX);
        if (batch.is_stopped())
            return;
    }
    arm();
}

} // namespace spead2gpu::recv
