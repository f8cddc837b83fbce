/**
 * @file send_writer.cpp
 */
#include "send/writer/writer.h"
#include <stdexcept>

namespace spead2gpu
{
namespace send
{

bool bytes_writer::write_packets(transmit_packet *packets, std::size_t n)
{
    std::size_t total = 0;
    for (std::size_t i = 0; i < n; i++)
        total += packets[i].buf.size;
    std::lock_guard<std::mutex> lock(mutex);
    if (data.capacity() < data.size() + total)
        data.reserve(std::max(data.size() + total, 2 * data.capacity()));
    for (std::size_t i = 0; i < n; i++)
    {
        for (const auto &piece : packets[i].buf.pieces)
            data.append(reinterpret_cast<const char *>(piece.data), piece.size);
        packets[i].result = std::error_code();
    }
    return true;
}

std::string bytes_writer::getvalue() const
{
    std::lock_guard<std::mutex> lock(mutex);
    return data;
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
