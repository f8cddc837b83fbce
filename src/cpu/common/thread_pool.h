/**
 * @file thread_pool.h
 * Worker threads running a small epoll reactor: posted tasks and
 * file-descriptor watches. Readers and send streams run here, never on
 * the Python thread.
 */
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace spead2gpu
{

class thread_pool;

/**
 * A file descriptor watched by a thread pool. When the fd becomes readable
 * (or writable, as requested) @ref on_ready runs on one worker thread; the
 * watch is one-shot and must be re-armed with @ref arm to fire again.
 * @ref unwatch waits until no callback is running, so after it returns the
 * owner may be destroyed.
 */
class fd_watch
{
    friend class thread_pool;
    thread_pool &pool;
    int fd;
    std::uint32_t events;
    std::mutex mutex;
    std::condition_variable idle_cond;
    bool registered = false;
    int running = 0; ///< callbacks in progress (a re-armed watch may overlap briefly)
    bool removed = false;
    /// Remove the fd from epoll once (mutex held); never touch the fd afterwards.
    void deregister_locked();

    void dispatch();

public:
    /// @param write  watch for writability instead of readability
    fd_watch(thread_pool &pool, int fd, bool write = false);
    virtual ~fd_watch();
    fd_watch(const fd_watch &) = delete;
    fd_watch &operator=(const fd_watch &) = delete;

    /// Start (or resume) watching. Safe to call from inside on_ready.
    void arm();
    /**
     * Stop watching and wait for any running callback (not from inside it).
     * Once it returns, the owner may close the fd: it is no longer in the
     * epoll set, and no callback is running or will run.
     */
    void unwatch();
    /**
     * Stop watching, from inside this watch's own on_ready (which must not
     * have re-armed it): the fd leaves the epoll set now, without waiting for
     * the running callback, so the callback may close the fd before it
     * returns. A later unwatch() still waits for that callback to finish.
     */
    void remove_from_callback();
    /// True once unwatch has been called.
    bool is_removed();

protected:
    /// Set the watched fd (only before the first arm()).
    void set_fd(int new_fd) { fd = new_fd; }
    /// Called on a worker thread when the fd is ready.
    virtual void on_ready() = 0;
};

/**
 * A pool of worker threads. Tasks posted with @ref post run on some worker;
 * fd_watch objects registered with the pool are dispatched by the same
 * workers. Each thread may be pinned to a CPU (affinity list used cyclically).
 */
class thread_pool
{
    friend class fd_watch;
    int epoll_fd = -1;
    int task_fd = -1; ///< eventfd (semaphore): one count per queued task
    int stop_fd = -1; ///< eventfd written once at stop: wakes every worker
    std::mutex task_mutex;
    std::deque<std::function<void()>> tasks;
    std::vector<std::thread> workers;
    bool stopped = false;

    void run();

public:
    explicit thread_pool(int num_threads = 1, const std::vector<int> &affinity = {});
    ~thread_pool();
    thread_pool(const thread_pool &) = delete;
    thread_pool &operator=(const thread_pool &) = delete;

    /// Queue a task to run on a worker thread.
    void post(std::function<void()> task);
    /// Stop and join the workers; queued tasks are discarded. Idempotent.
    void stop();
    /// Number of worker threads.
    std::size_t num_threads() const { return workers.size(); }
    /// Pin the calling thread to @a core.
    static void set_affinity(int core);
    /// True if the calling thread is one of this pool's workers.
    bool in_worker() const;
};

} // namespace spead2gpu
