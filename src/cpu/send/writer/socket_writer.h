/**
 * @file socket_writer.h
 * Base of the writers that own a socket (UDP, TCP): the socket and the one
 * way they wait for it to become writable.
 */
#pragma once

#include <memory>
#include "common/socket_util.h"
#include "common/thread_pool.h"
#include "send/writer/writer.h"

namespace spead2gpu
{
namespace send
{

/**
 * A writer with a socket. When the kernel's buffer is full a writer calls
 * wait_writable() and returns false from write_packets(); on_writable() then
 * runs on a worker thread once the socket can take more (or has an error or
 * hang-up, which the next send reports).
 */
class socket_writer : public writer
{
    class watch;
    std::unique_ptr<watch> writable_watch; ///< created on the first wait, re-armed for each

protected:
    socket_fd sock; ///< the socket (closed when the writer is destroyed)

    /**
     * Arm a one-shot wait for writability. Returns false (and logs why, with
     * @a what naming the writer) if the socket cannot be watched: the caller
     * then fails what remains of its batch.
     */
    bool wait_writable(const char *what);
    /// Arm a one-shot wait for writability; throws if the socket cannot be watched.
    void arm_writable();
    /// No more on_writable() calls after this returns (derived destructors call it first).
    void stop_waiting();
    /// The socket became writable (worker thread).
    virtual void on_writable() = 0;

public:
    socket_writer();
    ~socket_writer() override;
    /// The socket's file descriptor.
    int native_handle() const { return sock.get(); }
};

} // namespace send
} // namespace spead2gpu
