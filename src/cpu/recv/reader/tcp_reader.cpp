#include "recv/reader/tcp_reader.h"
#include <cerrno>
#include <cstring>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <system_error>
#include <unistd.h>

namespace spead2gpu::recv
{

tcp_reader::tcp_reader(stream &owner, const socket_address &endpoint, std::size_t max_size, std::size_t buffer_size)
    : reader(owner), max_size(max_size)
{
    acceptor = make_socket(endpoint.family(), SOCK_STREAM);
    int one = 1;
    setsockopt(acceptor.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    set_socket_buffer_size(acceptor.get(), SO_RCVBUF, buffer_size);
    // RuntimeError in Python, as spead2 raises for socket set-up failures.
    if (::bind(acceptor.get(), endpoint.get(), endpoint.length) != 0)
        throw std::runtime_error("bind to " + endpoint.host() + ":" + std::to_string(endpoint.port()) + ": " +
                                 std::strerror(errno));
    if (::listen(acceptor.get(), 1) != 0)
        throw std::runtime_error(std::string("listen: ") + std::strerror(errno));
    set_nonblocking(acceptor.get());
    capacity = std::max<std::size_t>(2 * max_size, 256 * 1024);
    buffer.reset(new std::uint8_t[capacity]);
    accept_watch = std::make_unique<watch>(*this, acceptor.get(), &tcp_reader::on_accept);
}

tcp_reader::tcp_reader(stream &owner, int acceptor_fd, std::size_t max_size) : reader(owner), max_size(max_size)
{
    acceptor = duplicate_fd(acceptor_fd);
    set_nonblocking(acceptor.get());
    capacity = std::max<std::size_t>(2 * max_size, 256 * 1024);
    buffer.reset(new std::uint8_t[capacity]);
    accept_watch = std::make_unique<watch>(*this, acceptor.get(), &tcp_reader::on_accept);
}

tcp_reader::~tcp_reader()
{
    stop();
}

void tcp_reader::start()
{
    accept_watch->arm();
}

void tcp_reader::stop()
{
    // Watches are unregistered (and idle) before their sockets close. The
    // accept watch goes first: once it is idle, on_accept cannot create
    // data_watch any more.
    if (accept_watch)
        accept_watch->unwatch();
    if (data_watch)
        data_watch->unwatch();
    conn.reset();
    acceptor.reset();
}

void tcp_reader::on_accept()
{
    if (owner.is_stopped())
        return;
    int fd = ::accept4(acceptor.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
    {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED)
            accept_watch->arm();
        else
            log_warning(std::string("TCP accept failed: ") + std::strerror(errno));
        return;
    }
    conn = socket_fd(fd);
    // Exactly one connection: as in spead2 the listening socket is closed
    // now, so further connection attempts are refused.
    accept_watch->remove_from_callback();
    acceptor.reset();
    data_watch = std::make_unique<watch>(*this, conn.get(), &tcp_reader::on_data);
    data_watch->arm();
}

bool tcp_reader::parse(add_packet_state &batch)
{
    while (true)
    {
        if (batch.is_stopped())
            return false;
        std::size_t avail = tail - head;
        if (skip > 0)
        {
            std::size_t d = std::min(skip, avail);
            head += d;
            skip -= d;
            if (skip > 0)
                return true;
            continue;
        }
        if (avail < 8)
            return true;
        const std::uint8_t *p = buffer.get() + head;
        std::uint64_t header = load_be64(p);
        int id_bits = int((header >> 40) & 0xff) * 8;
        int hab = int((header >> 32) & 0xff) * 8;
        if ((header >> 48) != 0x5304 || id_bits == 0 || hab == 0 || id_bits + hab != 64)
        {
            if (!in_garbage)
                batch.add_malformed((header >> 48) != 0x5304  ? decode_status::bad_magic
                                        : id_bits + hab != 64 ? decode_status::not_spead64
                                                              : decode_status::bad_flavour);
            in_garbage = true;
            head += 8;
            continue;
        }
        std::size_t n_items = header & 0xffff;
        std::size_t header_size = 8 + 8 * n_items;
        if (header_size > max_size)
        {
            batch.add_malformed(decode_status::too_many_items);
            head += 8;
            in_garbage = true;
            continue;
        }
        if (avail < header_size)
            return true;
        // Find PAYLOAD_LENGTH to know the packet size.
        std::int64_t payload_length = -1;
        const item_pointer_t addr_mask = (item_pointer_t(1) << hab) - 1;
        for (std::size_t i = 0; i < n_items; i++)
        {
            item_pointer_t ptr = load_be64(p + 8 + 8 * i);
            if ((ptr & immediate_mask) && ((ptr & ~immediate_mask) >> hab) == PAYLOAD_LENGTH_ID)
                payload_length = std::int64_t(ptr & addr_mask);
        }
        if (payload_length < 0)
        {
            if (!in_garbage)
                batch.add_malformed(decode_status::missing_specials);
            in_garbage = true;
            head += 8;
            continue;
        }
        in_garbage = false;
        std::size_t size = header_size + std::size_t(payload_length);
        if (size > max_size)
        {
            batch.add_malformed(decode_status::truncated, max_size, size);
            skip = size;
            continue;
        }
        if (avail < size)
            return true;
        if (batch.add_packet(p, size) == 0)
            batch.add_malformed();
        head += size;
    }
}

void tcp_reader::on_data()
{
    bool eof = false;
    for (int iter = 0; iter < 16; iter++)
    {
        if (head == tail)
            head = tail = 0;
        else if (capacity - tail < max_size && head > 0)
        {
            std::memmove(buffer.get(), buffer.get() + head, tail - head);
            tail -= head;
            head = 0;
        }
        ssize_t n = ::recv(conn.get(), buffer.get() + tail, capacity - tail, 0);
        if (n < 0)
        {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                break;
            log_warning(std::string("TCP receive failed: ") + std::strerror(errno));
            eof = true;
            break;
        }
        if (n == 0)
        {
            eof = true;
            break;
        }
        tail += std::size_t(n);
        add_packet_state batch(owner);
        if (!parse(batch))
            return;
        if (std::size_t(n) < capacity / 2)
            break;
    }
    if (eof)
    {
        add_packet_state batch(owner);
        owner.stop_received();
        return;
    }
    data_watch->arm();
}

} // namespace spead2gpu::recv
