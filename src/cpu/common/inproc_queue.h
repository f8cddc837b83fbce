/**
 * @file inproc_queue.h
 * In-process packet queue connecting a send::inproc_writer to a
 * recv inproc reader.
 */
#pragma once

#include <cstdint>
#include <memory>
#include <vector>
#include "common/ringbuffer.h"

namespace spead2gpu
{

/**
 * Unbounded queue of whole packets. Each packet is an owned byte array.
 * Receivers watch data_fd(); stop() ends the stream after the queued
 * packets have been consumed.
 */
class inproc_queue
{
public:
    /// One packet (owned copy of its bytes).
    struct packet
    {
        std::unique_ptr<std::uint8_t[]> data;
        std::size_t size = 0;
    };

    ringbuffer<packet> buffer{0};

    /// Enqueue a copy of @a size bytes; throws ringbuffer_stopped after stop().
    void add_packet(const std::uint8_t *data, std::size_t size)
    {
        packet p;
        p.data.reset(new std::uint8_t[size]);
        std::memcpy(p.data.get(), data, size);
        p.size = size;
        buffer.push(std::move(p));
    }
    /// Enqueue an already-owned packet.
    void add_packet(packet &&p) { buffer.push(std::move(p)); }
    void stop() { buffer.stop(); }
};

} // namespace spead2gpu
