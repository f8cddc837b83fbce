#include "common/socket_util.h"
#include "common/logging.h"
#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <netdb.h>
#include <stdexcept>
#include <system_error>
#include <unistd.h>

namespace spead2gpu
{

bool socket_address::is_multicast() const
{
    if (family() == AF_INET)
        return IN_MULTICAST(ntohl(reinterpret_cast<const sockaddr_in *>(&storage)->sin_addr.s_addr));
    if (family() == AF_INET6)
        return IN6_IS_ADDR_MULTICAST(&reinterpret_cast<const sockaddr_in6 *>(&storage)->sin6_addr);
    return false;
}

std::uint16_t socket_address::port() const
{
    if (family() == AF_INET)
        return ntohs(reinterpret_cast<const sockaddr_in *>(&storage)->sin_port);
    if (family() == AF_INET6)
        return ntohs(reinterpret_cast<const sockaddr_in6 *>(&storage)->sin6_port);
    return 0;
}

std::string socket_address::host() const
{
    char buf[INET6_ADDRSTRLEN] = "";
    if (family() == AF_INET)
        inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in *>(&storage)->sin_addr, buf, sizeof(buf));
    else if (family() == AF_INET6)
        inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6 *>(&storage)->sin6_addr, buf, sizeof(buf));
    return buf;
}

bool socket_address::same_host(const socket_address &o) const
{
    if (family() != o.family())
        return false;
    if (family() == AF_INET)
        return reinterpret_cast<const sockaddr_in *>(&storage)->sin_addr.s_addr ==
            reinterpret_cast<const sockaddr_in *>(&o.storage)->sin_addr.s_addr;
    if (family() == AF_INET6)
        return std::memcmp(&reinterpret_cast<const sockaddr_in6 *>(&storage)->sin6_addr,
                           &reinterpret_cast<const sockaddr_in6 *>(&o.storage)->sin6_addr, sizeof(in6_addr)) == 0;
    return false;
}

socket_address resolve_address(const std::string &host, std::uint16_t port, int family_hint, bool passive)
{
    socket_address out;
    if (host.empty())
    {
        if (family_hint == AF_INET6)
        {
            auto *a = reinterpret_cast<sockaddr_in6 *>(&out.storage);
            a->sin6_family = AF_INET6;
            a->sin6_port = htons(port);
            a->sin6_addr = passive ? in6addr_any : in6addr_loopback;
            out.length = sizeof(sockaddr_in6);
        }
        else
        {
            auto *a = reinterpret_cast<sockaddr_in *>(&out.storage);
            a->sin_family = AF_INET;
            a->sin_port = htons(port);
            a->sin_addr.s_addr = htonl(passive ? INADDR_ANY : INADDR_LOOPBACK);
            out.length = sizeof(sockaddr_in);
        }
        return out;
    }
    addrinfo hints{};
    hints.ai_family = family_hint;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_ADDRCONFIG * 0;
    addrinfo *res = nullptr;
    int r = getaddrinfo(host.c_str(), nullptr, &hints, &res);
    if (r != 0 || !res)
        throw std::runtime_error("resolve: Host not found (" + host + "): " + gai_strerror(r));
    std::memcpy(&out.storage, res->ai_addr, res->ai_addrlen);
    out.length = res->ai_addrlen;
    freeaddrinfo(res);
    if (out.family() == AF_INET)
        reinterpret_cast<sockaddr_in *>(&out.storage)->sin_port = htons(port);
    else if (out.family() == AF_INET6)
        reinterpret_cast<sockaddr_in6 *>(&out.storage)->sin6_port = htons(port);
    return out;
}

socket_address parse_numeric_address(const std::string &host, std::uint16_t port)
{
    socket_address out;
    auto *a4 = reinterpret_cast<sockaddr_in *>(&out.storage);
    auto *a6 = reinterpret_cast<sockaddr_in6 *>(&out.storage);
    if (inet_pton(AF_INET, host.c_str(), &a4->sin_addr) == 1)
    {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
        out.length = sizeof(sockaddr_in);
    }
    else if (inet_pton(AF_INET6, host.c_str(), &a6->sin6_addr) == 1)
    {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        out.length = sizeof(sockaddr_in6);
    }
    else
        throw std::invalid_argument("not a numeric IP address: " + host);
    return out;
}

std::string socket_error_text(const char *what, int err)
{
    return std::string(what) + ": " + std::strerror(err) + " [system:" + std::to_string(err) + "]";
}

void socket_fd::reset()
{
    if (fd_ >= 0)
        ::close(fd_);
    fd_ = -1;
}

socket_fd make_socket(int family, int type, int protocol)
{
    int fd = ::socket(family, type | SOCK_CLOEXEC, protocol);
    if (fd < 0)
        throw std::system_error(errno, std::generic_category(), "socket");
    return socket_fd(fd);
}

void set_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        throw std::system_error(errno, std::generic_category(), "fcntl");
}

socket_fd duplicate_fd(int fd)
{
    int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (d < 0)
        throw std::system_error(errno, std::generic_category(), "dup");
    return socket_fd(d);
}

void set_socket_buffer_size(int fd, int option, std::size_t size)
{
    if (size == 0)
        return;
    int value = int(std::min<std::size_t>(size, 0x7fffffff));
    int force = option == SO_RCVBUF ? SO_RCVBUFFORCE : SO_SNDBUFFORCE;
    if (setsockopt(fd, SOL_SOCKET, force, &value, sizeof(value)) != 0)
        setsockopt(fd, SOL_SOCKET, option, &value, sizeof(value));
    int actual = 0;
    socklen_t len = sizeof(actual);
    if (getsockopt(fd, SOL_SOCKET, option, &actual, &len) == 0 && std::size_t(actual) < size)
        log_warning("requested socket buffer size " + std::to_string(size) + " but only received " +
                    std::to_string(actual) + ": refer to documentation for details on increasing buffer size");
}

} // namespace spead2gpu
