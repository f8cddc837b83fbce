#include "send/writer/socket_writer.h"
#include <exception>
#include <string>
#include "common/logging.h"

namespace spead2gpu
{
namespace send
{

class socket_writer::watch : public fd_watch
{
    socket_writer &owner;

public:
    explicit watch(socket_writer &owner) : fd_watch(owner.get_thread_pool(), owner.sock.get(), true), owner(owner) {}

protected:
    void on_ready() override { owner.on_writable(); }
};

socket_writer::socket_writer() = default;

socket_writer::~socket_writer()
{
    stop_waiting();
}

void socket_writer::stop_waiting()
{
    if (writable_watch)
        writable_watch->unwatch();
}

void socket_writer::arm_writable()
{
    if (!writable_watch)
        writable_watch = std::make_unique<watch>(*this);
    writable_watch->arm();
}

bool socket_writer::wait_writable(const char *what)
{
    try
    {
        arm_writable();
        return true;
    }
    catch (std::exception &e)
    {
        log_warning(std::string(what) + " cannot wait for the socket: " + e.what());
        return false;
    }
}

} // namespace send
} // namespace spead2gpu
