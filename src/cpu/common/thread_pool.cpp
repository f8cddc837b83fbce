#include "common/thread_pool.h"
#include "common/logging.h"
#include <cerrno>
#include <pthread.h>
#include <sched.h>
#include <stdexcept>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <system_error>
#include <unistd.h>

namespace spead2gpu
{

/// Run a worker callback; an escaping exception is logged, never fatal.
template <typename F> static void run_guarded(F &&f)
{
    try
    {
        f();
    }
    catch (std::exception &e)
    {
        log_warning(std::string("worker thread caught exception: ") + e.what());
    }
}

static void check(int r, const char *what)
{
    if (r < 0)
        throw std::system_error(errno, std::generic_category(), what);
}

fd_watch::fd_watch(thread_pool &pool, int fd, bool write)
    : pool(pool), id(pool.add_watch(this)), fd(fd), events((write ? EPOLLOUT : EPOLLIN) | EPOLLONESHOT)
{
}

fd_watch::~fd_watch()
{
    unwatch();
}

void fd_watch::arm()
{
    std::lock_guard<std::mutex> lock(mutex);
    if (removed)
        return;
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = id;
    if (!registered)
    {
        check(epoll_ctl(pool.epoll_fd, EPOLL_CTL_ADD, fd, &ev), "epoll_ctl(ADD)");
        registered = true;
    }
    else
        check(epoll_ctl(pool.epoll_fd, EPOLL_CTL_MOD, fd, &ev), "epoll_ctl(MOD)");
}

void fd_watch::deregister_locked()
{
    if (!removed)
    {
        removed = true;
        if (registered)
            epoll_ctl(pool.epoll_fd, EPOLL_CTL_DEL, fd, nullptr);
    }
    // The fd may be closed and its number reused: never touch it again.
    registered = false;
}

void fd_watch::unwatch()
{
    pool.remove_watch(id); // no event resolves to this watch from now on
    std::unique_lock<std::mutex> lock(mutex);
    deregister_locked();
    idle_cond.wait(lock, [this] { return running == 0; });
}

void fd_watch::remove_from_callback()
{
    std::lock_guard<std::mutex> lock(mutex);
    deregister_locked();
}

bool fd_watch::is_removed()
{
    std::lock_guard<std::mutex> lock(mutex);
    return removed;
}

std::uint64_t thread_pool::add_watch(fd_watch *w)
{
    std::lock_guard<std::mutex> lock(watches_mutex);
    std::uint64_t id = next_watch_id++;
    watches.emplace(id, w);
    return id;
}

void thread_pool::remove_watch(std::uint64_t id)
{
    std::lock_guard<std::mutex> lock(watches_mutex);
    watches.erase(id);
}

void thread_pool::dispatch(std::uint64_t id)
{
    fd_watch *w;
    {
        // While the watch is in the table it has not been unwatched, so it
        // is alive; counting the callback as running before letting go of
        // the table makes unwatch wait for it.
        std::lock_guard<std::mutex> lock(watches_mutex);
        auto it = watches.find(id);
        if (it == watches.end())
            return;
        w = it->second;
        std::lock_guard<std::mutex> wlock(w->mutex);
        if (w->removed)
            return;
        w->running++;
    }
    run_guarded([w] { w->on_ready(); });
    std::lock_guard<std::mutex> lock(w->mutex);
    if (--w->running == 0)
        w->idle_cond.notify_all();
}

thread_pool::thread_pool(int num_threads, const std::vector<int> &affinity)
{
    if (num_threads < 1)
        throw std::invalid_argument("at least one thread is required");
    epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    check(epoll_fd, "epoll_create1");
    task_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK | EFD_SEMAPHORE);
    check(task_fd, "eventfd");
    stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    check(stop_fd, "eventfd");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = task_event;
    check(epoll_ctl(epoll_fd, EPOLL_CTL_ADD, task_fd, &ev), "epoll_ctl");
    ev.data.u64 = stop_event;
    check(epoll_ctl(epoll_fd, EPOLL_CTL_ADD, stop_fd, &ev), "epoll_ctl");
    for (int i = 0; i < num_threads; i++)
    {
        int core = affinity.empty() ? -1 : affinity[i % affinity.size()];
        workers.emplace_back(
            [this, core]
            {
                // Named so that top -H, perf and gdb tell pool workers from
                // the application's threads (at most 15 characters).
                pthread_setname_np(pthread_self(), "spead2gpu-pool");
                if (core >= 0)
                    set_affinity(core);
                run();
            });
    }
}

thread_pool::~thread_pool()
{
    stop();
    ::close(epoll_fd);
    ::close(task_fd);
    ::close(stop_fd);
}

void thread_pool::post(std::function<void()> task)
{
    {
        std::lock_guard<std::mutex> lock(task_mutex);
        if (stopped)
            return;
        tasks.push_back(std::move(task));
    }
    std::uint64_t one = 1;
    [[maybe_unused]] auto r = ::write(task_fd, &one, sizeof(one));
}

void thread_pool::run()
{
    epoll_event events[16];
    while (true)
    {
        int n = epoll_wait(epoll_fd, events, 16, -1);
        if (n < 0)
        {
            if (errno == EINTR)
                continue;
            return;
        }
        for (int i = 0; i < n; i++)
        {
            std::uint64_t what = events[i].data.u64;
            if (what == stop_event)
                return;
            else if (what == task_event)
            {
                std::uint64_t count;
                if (::read(task_fd, &count, sizeof(count)) != sizeof(count))
                    continue; // another worker took it
                std::function<void()> task;
                {
                    std::lock_guard<std::mutex> lock(task_mutex);
                    if (stopped || tasks.empty())
                        continue;
                    task = std::move(tasks.front());
                    tasks.pop_front();
                }
                run_guarded(task);
            }
            else
                dispatch(what);
        }
    }
}

void thread_pool::stop()
{
    {
        std::lock_guard<std::mutex> lock(task_mutex);
        if (stopped)
            return;
        stopped = true;
    }
    std::uint64_t one = 1;
    [[maybe_unused]] auto r = ::write(stop_fd, &one, sizeof(one));
    for (auto &w : workers)
    {
        if (w.get_id() == std::this_thread::get_id())
            w.detach();
        else if (w.joinable())
            w.join();
    }
    std::deque<std::function<void()>> discard;
    {
        std::lock_guard<std::mutex> lock(task_mutex);
        discard.swap(tasks);
    }
}

void thread_pool::set_affinity(int core)
{
    if (core < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(core, &set);
    pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

bool thread_pool::in_worker() const
{
    for (auto &w : workers)
        if (w.get_id() == std::this_thread::get_id())
            return true;
    return false;
}

} // namespace spead2gpu
