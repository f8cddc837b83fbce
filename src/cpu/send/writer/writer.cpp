/**
 * @file send_writer.cpp
 */
#include "send/writer/writer.h"
#include <algorithm>
#include <cstring>
#include <stdexcept>
#include "common/allocator.h"

namespace spead2gpu
{
namespace send
{

bytes_writer::~bytes_writer()
{
    for (const block &b : blocks)
        unmap_large(b.data, b.capacity);
}

bytes_writer::block &bytes_writer::room(std::size_t need)
{
    if (!blocks.empty() && blocks.back().capacity - blocks.back().used >= need)
        return blocks.back();
    constexpr std::size_t min_block = 64 * 1024;
    constexpr std::size_t max_block = 64 * 1024 * 1024;
    std::size_t capacity = std::max(need, std::clamp(total, min_block, max_block));
    std::uint8_t *data = map_large(capacity);
    try
    {
        blocks.push_back(block{data, capacity, 0});
    }
    catch (...)
    {
        unmap_large(data, capacity);
        throw;
    }
    return blocks.back();
}

bool bytes_writer::write_packets(transmit_packet *packets, std::size_t n)
{
    std::lock_guard<std::mutex> lock(mutex);
    for (std::size_t i = 0; i < n; i++)
    {
        // A packet never straddles two blocks (the copy stays one piece).
        block &b = room(packets[i].buf.size);
        packets[i].buf.copy_to(b.data + b.used);
        b.used += packets[i].buf.size;
        total += packets[i].buf.size;
        packets[i].result = std::error_code();
    }
    return true;
}

std::size_t bytes_writer::size() const
{
    std::lock_guard<std::mutex> lock(mutex);
    return total;
}

void bytes_writer::copy_to(std::uint8_t *dest, std::size_t n) const
{
    std::lock_guard<std::mutex> lock(mutex);
    for (const block &b : blocks)
    {
        if (n == 0)
            break;
        std::size_t len = std::min(n, b.used);
        std::memcpy(dest, b.data, len);
        dest += len;
        n -= len;
    }
}

std::string bytes_writer::getvalue() const
{
    std::lock_guard<std::mutex> lock(mutex);
    std::string out;
    out.reserve(total);
    for (const block &b : blocks)
        out.append(reinterpret_cast<const char *>(b.data), b.used);
    return out;
}

inproc_writer::inproc_writer(std::vector<std::shared_ptr<inproc_queue>> queues) : queues(std::move(queues))
{
    if (this->queues.empty())
        throw std::invalid_argument("queues is empty");
}

bool inproc_writer::write_packets(transmit_packet *packets, std::size_t n)
{
    for (std::size_t i = 0; i < n; i++)
    {
        transmit_packet &pkt = packets[i];
        if (!queues[pkt.substream])
        {
            pkt.result = std::make_error_code(std::errc::bad_file_descriptor);
            continue;
        }
        inproc_queue::packet p;
        p.data.reset(new std::uint8_t[pkt.buf.size]);
        p.size = pkt.buf.size;
        pkt.buf.copy_to(p.data.get());
        try
        {
            queues[pkt.substream]->add_packet(std::move(p));
            pkt.result = std::error_code();
        }
        catch (ringbuffer_stopped &)
        {
            pkt.result = std::make_error_code(std::errc::operation_canceled);
        }
    }
    return true;
}

} // namespace send
} // namespace spead2gpu
