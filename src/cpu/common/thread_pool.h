/**
 * @file thread_pool.h
 * Worker threads running a small epoll reactor: posted tasks and
 * file-descriptor watches. Readers and send streams run here, never on
 * the Python thread.
 */
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <unordered_map>
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
 *
 * Epoll events carry the watch's @ref id, never its address: a worker may
 * hold an event that epoll_wait returned just before another thread
 * unwatched and destroyed the watch (one epoll_wait returns up to 16
 * events, and the callbacks before this one can take a whole batch). The
 * pool resolves the id under its lock, so such an event finds nothing.
 */
class fd_watch
{
    friend class thread_pool;
    thread_pool &pool;
    /// The key of this watch in the pool's table (and the epoll event's data): never reused.
    const std::uint64_t id;
    int fd;
    std::uint32_t events;
    /// Protects registered, running and removed; taken after thread_pool::watches_mutex.
    std::mutex mutex;
    /// Notified when running drops to 0 (unwatch waits for it).
    std::condition_variable idle_cond;
    bool registered = false; ///< the fd is in the epoll set
    int running = 0; ///< callbacks in progress (a re-armed watch may overlap briefly)
    bool removed = false; ///< unwatched: never armed or dispatched again
    /// Remove the fd from epoll once (mutex held); never touch the fd afterwards.
    void deregister_locked();

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
 *
 * Mutexes: @ref task_mutex protects the task queue and @ref stopped;
 * @ref watches_mutex protects the watch table. They are never held
 * together. watches_mutex is taken before an fd_watch's own mutex.
 */
class thread_pool
{
    friend class fd_watch;
    /// epoll event data of the task eventfd; watches use their ids (from first_watch_id).
    static constexpr std::uint64_t task_event = 0;
    /// epoll event data of the stop eventfd.
    static constexpr std::uint64_t stop_event = 1;
    static constexpr std::uint64_t first_watch_id = 2;

    int epoll_fd = -1;
    int task_fd = -1; ///< eventfd (semaphore): one count per queued task
    int stop_fd = -1; ///< eventfd written once at stop: wakes every worker
    std::mutex task_mutex;
    std::deque<std::function<void()>> tasks; ///< posted, not yet run (under task_mutex)
    std::vector<std::thread> workers;
    bool stopped = false; ///< stop() was called (under task_mutex)

    std::mutex watches_mutex;
    /// The live watches by id, so that an event for a destroyed watch is recognised (under watches_mutex).
    std::unordered_map<std::uint64_t, fd_watch *> watches;
    std::uint64_t next_watch_id = first_watch_id; ///< under watches_mutex

    void run();
    /// Register @a w; returns its id.
    std::uint64_t add_watch(fd_watch *w);
    /// Forget watch @a id (idempotent): events still in flight for it are ignored.
    void remove_watch(std::uint64_t id);
    /// Run the callback of watch @a id, if it still exists and has not been unwatched.
    void dispatch(std::uint64_t id);

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
