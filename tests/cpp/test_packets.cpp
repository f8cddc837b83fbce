#include "test_packets.h"

namespace spead2gpu::test
{

namespace
{

void put_be(std::vector<std::uint8_t> &out, std::uint64_t value, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--)
        out.push_back(std::uint8_t(value >> (8 * i)));
}

std::uint64_t immediate(std::uint64_t id, std::uint64_t value)
{
    return (std::uint64_t(1) << 63) | (id << 48) | value;
}

} // namespace

std::vector<std::vector<std::uint8_t>> heap_packets(std::int64_t cnt)
{
    std::vector<std::vector<std::uint8_t>> out;
    for (std::size_t off = 0; off < heap_size; off += packet_payload)
    {
        std::vector<std::uint64_t> items{immediate(1, std::uint64_t(cnt)), immediate(2, heap_size), immediate(3, off),
                                         immediate(4, packet_payload)};
        if (off == 0)
            items.push_back(std::uint64_t(0x1000) << 48); // the data item, at address 0
        std::vector<std::uint8_t> p{0x53, 4, 2, 6, 0, 0};
        put_be(p, items.size(), 2);
        for (auto item : items)
            put_be(p, item, 8);
        for (std::size_t i = 0; i < packet_payload; i++)
            p.push_back(pattern(cnt, off + i));
        out.push_back(std::move(p));
    }
    return out;
}

} // namespace spead2gpu::test
