/**
 * @file socket_util.h
 * Small POSIX socket helpers: address resolution, owned fds, buffer sizes.
 */
#pragma once

#include <netinet/in.h>
#include <string>
#include <sys/socket.h>

namespace spead2gpu
{

/// An IPv4 or IPv6 socket address.
struct socket_address
{
    sockaddr_storage storage{};
    socklen_t length = 0;

    int family() const { return storage.ss_family; }
    const sockaddr *get() const { return reinterpret_cast<const sockaddr *>(&storage); }
    sockaddr *get() { return reinterpret_cast<sockaddr *>(&storage); }
    bool is_multicast() const;
    std::uint16_t port() const;
    /// Numeric host part as text (for messages).
    std::string host() const;
    /// Same address (ignoring port).
    bool same_host(const socket_address &other) const;
};

/**
 * Resolve @a host (numeric or name; empty = wildcard of @a family_hint, IPv4
 * if AF_UNSPEC) and @a port. Throws std::runtime_error("resolve: …") on failure.
 * @param passive  wildcard address for binding when host is empty
 */
socket_address resolve_address(const std::string &host, std::uint16_t port, int family_hint = AF_UNSPEC,
                               bool passive = true);

/// Parse a numeric address only (throws std::invalid_argument if not numeric).
socket_address parse_numeric_address(const std::string &host, std::uint16_t port);

/// Owned file descriptor (closed on destruction).
class socket_fd
{
    int fd_ = -1;

public:
    socket_fd() = default;
    explicit socket_fd(int fd) : fd_(fd) {}
    ~socket_fd() { reset(); }
    socket_fd(socket_fd &&o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
    socket_fd &operator=(socket_fd &&o) noexcept
    {
        if (this != &o)
        {
            reset();
            fd_ = o.fd_;
            o.fd_ = -1;
        }
        return *this;
    }
    int get() const { return fd_; }
    int release()
    {
        int f = fd_;
        fd_ = -1;
        return f;
    }
    void reset();
};

/// Most iovecs the kernel accepts in one call (UIO_MAXIOV).
constexpr std::size_t iov_max = 1024;

/// Message for a failed socket call, in spead2's style "what: strerror [system:N]".
std::string socket_error_text(const char *what, int err);

/// Create a socket; throws std::system_error.
socket_fd make_socket(int family, int type, int protocol = 0);
/// Set O_NONBLOCK; throws std::system_error.
void set_nonblocking(int fd);
/// Duplicate @a fd (close-on-exec); throws std::system_error.
socket_fd duplicate_fd(int fd);

/**
 * Request a kernel buffer of @a size bytes (SO_RCVBUF or SO_SNDBUF), trying the
 * privileged *FORCE variant first; logs a warning if less was granted.
 */
void set_socket_buffer_size(int fd, int option, std::size_t size);

} // namespace spead2gpu
