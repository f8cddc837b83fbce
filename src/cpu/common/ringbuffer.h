/**
 * @file ringbuffer.h
 * Bounded, stoppable, thread-safe FIFO with file descriptors that signal
 * readability (data or stopped) and writability (space or stopped), for
 * event loops such as asyncio.
 */
#pragma once

#include <cerrno>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>

#include <mutex>
#include <optional>
#include <vector>
#include <algorithm>
#include <sys/eventfd.h>
#include <system_error>
#include <thread>
#include <unistd.h>
#include "common/constants.h"

namespace spead2gpu
{

/// An eventfd used as a level: readable exactly while set.
class level_fd
{
    int fd_ = -1;
    bool set_ = false;

public:
    level_fd()
    {
        fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (fd_ < 0)
            throw std::system_error(errno, std::generic_category(), "eventfd");
    }
    ~level_fd()
    {
        if (fd_ >= 0)
            ::close(fd_);
    }
    level_fd(const level_fd &) = delete;
    level_fd &operator=(const level_fd &) = delete;

    int fd() const { return fd_; }

    /// Make the fd readable or not. Caller serialises calls.
    void set(bool value)
    {
        if (value == set_)
            return;
        if (value)
        {
            std::uint64_t one = 1;
            [[maybe_unused]] auto r = ::write(fd_, &one, sizeof(one));
        }
        else
        {
            std::uint64_t tmp;
            [[maybe_unused]] auto r = ::read(fd_, &tmp, sizeof(tmp));
        }
        set_ = value;
    }
};

/**
 * FIFO storage for @ref ringbuffer: a circular array allocated once (at the
 * ring's capacity), so that pushing and popping never allocate. An
 * unbounded ring (capacity 0) starts small and doubles when full.
 */
template <typename T> class slot_fifo
{
    std::vector<std::optional<T>> slots; ///< circular; [first, first + count) hold values
    std::size_t first = 0; ///< index of the oldest value
    std::size_t count = 0; ///< values held
    bool growable; ///< unbounded ring: double when full

    void grow()
    {
        std::vector<std::optional<T>> bigger(std::max<std::size_t>(slots.size() * 2, 16));
        for (std::size_t i = 0; i < count; i++)
            bigger[i] = std::move(slots[(first + i) % slots.size()]);
        slots = std::move(bigger);
        first = 0;
    }

public:
    explicit slot_fifo(std::size_t capacity) : slots(capacity ? capacity : 16), growable(capacity == 0) {}
    std::size_t size() const { return count; }
    bool empty() const { return count == 0; }
    /// Append (the caller has checked for space in a bounded ring).
    void push_back(T &&value)
    {
        if (count == slots.size())
        {
            if (!growable)
                throw std::logic_error("slot_fifo overflow");
            grow();
        }
        std::size_t pos = first + count;
        slots[pos >= slots.size() ? pos - slots.size() : pos].emplace(std::move(value));
        count++;
    }
    T &front() { return *slots[first]; }
    void pop_front()
    {
        slots[first].reset();
        if (++first == slots.size())
            first = 0;
        count--;
    }
};

/**
 * Bounded FIFO of @a T. A capacity of 0 means unbounded.
 *
 * Producers may be counted (add_producer/remove_producer): when the last
 * producer leaves, the ring stops. A stopped ring refuses pushes and
 * still delivers what it holds before reporting ringbuffer_stopped.
 */
template <typename T> class ringbuffer
{
    mutable std::mutex mutex;
    std::condition_variable data_cond, space_cond;
    slot_fifo<T> items; ///< preallocated to the capacity (grows only when unbounded)
    std::atomic<std::size_t> count{0}; ///< items.size(), readable without the lock
    std::size_t cap;
    bool stopped_ = false;
    int producers = 0;
    mutable level_fd data_level, space_level;
    // The fds are kept up to date only once someone has asked for them,
    // which saves two syscalls per item for purely blocking users.
    mutable bool data_fd_used = false, space_fd_used = false;

    void update_levels()
    {
        if (data_fd_used)
            data_level.set(!items.empty() || stopped_);
        if (space_fd_used)
            space_level.set(cap == 0 || items.size() < cap || stopped_);
    }

    bool has_space() const { return cap == 0 || items.size() < cap; }
    /// A blocked producer resumes only once the ring has drained to this size,
    /// so that a fast producer and slow consumer do not ping-pong per item.
    std::size_t resume_size() const { return cap / 2; }

    /// Longest spin (pause instructions, with a yield every 16) before a wait sleeps.
    static constexpr int max_spin = 256;
    /// Shortest spin: a few pauses, no yield, so that a spin that fails costs next to nothing.
    static constexpr int min_spin = 8;
    /// A sleep shorter than this would have been caught by a longer spin.
    static constexpr std::chrono::microseconds spin_worth{50};
    /**
     * Current spin budgets of consumers (@ref data_spin) and producers
     * (@ref space_spin), guarded by @ref mutex. A wait that the spin
     * answered, or whose sleep was shorter than @ref spin_worth, doubles
     * its budget; a longer sleep halves it. Spinning pays where the other
     * side answers within microseconds (memory and in-process readers, a
     * Python heap loop: a futex sleep and wake per half-ring of 4 heaps was
     * the in-process 4 KiB row's cost) and only burns a core where it does
     * not: behind a UDP stream of 1 MiB heaps a fixed 256-iteration spin
     * was 15 sched_yield calls per heap, which doubled the receiving
     * process's CPU time (issue 11).
     */
    int data_spin = max_spin, space_spin = max_spin;

    static void spin_pause()
    {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#else
        std::this_thread::yield();
#endif
    }

    /**
     * With @a lock held: return at once if @a ready(); otherwise spin
     * without the lock (which the other side needs) while @a waiting(), for
     * at most @a budget iterations, then relock and, if still not ready,
     * @a sleep() (a condition-variable wait with the lock held, returning
     * whether it ended ready). Adapts @a budget; returns whether ready.
     */
    template <typename Ready, typename Waiting, typename Sleep>
    bool adaptive_wait(std::unique_lock<std::mutex> &lock, int &budget, Ready &&ready, Waiting &&waiting, Sleep &&sleep)
    {
        if (ready())
            return true;
        const int n = budget;
        lock.unlock();
        for (int i = 0; i < n && waiting(); i++)
        {
            // Mostly pause; yield now and then in case the other side shares
            // this core (an oversubscribed machine).
            if (i % 16 == 15)
                std::this_thread::yield();
            else
                spin_pause();
        }
        lock.lock();
        if (ready())
        {
            budget = std::min(max_spin, n * 2);
            return true;
        }
        const auto start = std::chrono::steady_clock::now();
        const bool ok = sleep();
        const bool short_sleep = std::chrono::steady_clock::now() - start < spin_worth;
        budget = short_sleep ? std::min(max_spin, n * 2) : std::max(min_spin, n - n / 4);
        return ok;
    }

    bool data_or_stopped() const { return stopped_ || !items.empty(); }
    bool empty_relaxed() const { return count.load(std::memory_order_relaxed) == 0; }
    bool full_relaxed() const { return count.load(std::memory_order_relaxed) > resume_size(); }

public:
    explicit ringbuffer(std::size_t capacity) : items(capacity), cap(capacity) { update_levels(); }

    std::size_t capacity() const { return cap; }
    std::size_t size() const
    {
        std::lock_guard<std::mutex> lock(mutex);
        return items.size();
    }
    bool is_stopped() const
    {
        std::lock_guard<std::mutex> lock(mutex);
        return stopped_;
    }
    /// Readable while items are available or the ring is stopped.
    int data_fd() const
    {
        std::lock_guard<std::mutex> lock(mutex);
        if (!data_fd_used)
        {
            data_fd_used = true;
            data_level.set(!items.empty() || stopped_);
        }
        return data_level.fd();
    }
    /// Readable while there is space or the ring is stopped.
    int space_fd() const
    {
        std::lock_guard<std::mutex> lock(mutex);
        if (!space_fd_used)
        {
            space_fd_used = true;
            space_level.set(cap == 0 || items.size() < cap || stopped_);
        }
        return space_level.fd();
    }

    /// What try_push_status did.
    enum class push_status
    {
        pushed, ///< the value is in the ring
        full, ///< no space: the value is left untouched
        stopped ///< the ring is stopped: the value is left untouched
    };

    /**
     * Push without blocking or throwing: the producer's fast path. A full
     * ring is the normal state behind a slow consumer, and a C++ exception
     * per item (as try_push throws) costs microseconds of unwinding.
     */
    push_status try_push_status(T &&value)
    {
        std::unique_lock<std::mutex> lock(mutex);
        if (stopped_)
            return push_status::stopped;
        if (!has_space())
            return push_status::full;
        put(lock, std::move(value));
        return push_status::pushed;
    }

    /// Push without blocking; throws ringbuffer_full or ringbuffer_stopped.
    void try_push(T &&value)
    {
        switch (try_push_status(std::move(value)))
        {
        case push_status::pushed:
            return;
        case push_status::full:
            throw ringbuffer_full();
        case push_status::stopped:
            throw ringbuffer_stopped();
        }
    }

    /// Push, waiting for space; throws ringbuffer_stopped if stopped meanwhile.
    void push(T &&value)
    {
        std::unique_lock<std::mutex> lock(mutex);
        adaptive_wait(
            lock, space_spin, [this] { return stopped_ || has_space(); }, [this] { return full_relaxed(); },
            [&]
            {
                space_cond.wait(lock, [this] { return space_or_stopped(); });
                return true;
            });
        put(lock, std::move(value));
    }

    /**
     * Push, waiting at most @a timeout for space; returns false on timeout
     * (@a value is left untouched). Throws ringbuffer_stopped if stopped.
     */
    template <typename Rep, typename Period> bool push_for(T &&value, const std::chrono::duration<Rep, Period> &timeout)
    {
        std::unique_lock<std::mutex> lock(mutex);
        if (!stopped_ && !has_space() && !space_cond.wait_for(lock, timeout, [this] { return space_or_stopped(); }))
            return false;
        put(lock, std::move(value));
        return true;
    }

    /// Pop without blocking; throws ringbuffer_empty or ringbuffer_stopped.
    T try_pop()
    {
        std::unique_lock<std::mutex> lock(mutex);
        if (items.empty() && !stopped_)
            throw ringbuffer_empty();
        return take(lock);
    }

    /**
     * Pop without blocking or throwing on an empty ring (the cheap check on
     * the consumer's fast path). Throws ringbuffer_stopped once stopped and empty.
     */
    std::optional<T> try_pop_optional()
    {
        std::unique_lock<std::mutex> lock(mutex);
        if (items.empty() && !stopped_)
            return std::nullopt;
        return take(lock);
    }

    /**
     * Pop, waiting at most @a timeout; nullopt on timeout. Throws
     * ringbuffer_stopped once stopped and empty.
     */
    template <typename Rep, typename Period> std::optional<T> pop_for(const std::chrono::duration<Rep, Period> &timeout)
    {
        std::unique_lock<std::mutex> lock(mutex);
        if (!adaptive_wait(
                lock, data_spin, [this] { return data_or_stopped(); }, [this] { return empty_relaxed(); },
                [&] { return data_cond.wait_for(lock, timeout, [this] { return data_or_stopped(); }); }))
            return std::nullopt;
        return take(lock);
    }

    /// Pop, waiting for data; throws ringbuffer_stopped once stopped and empty.
    T pop()
    {
        std::unique_lock<std::mutex> lock(mutex);
        adaptive_wait(
            lock, data_spin, [this] { return data_or_stopped(); }, [this] { return empty_relaxed(); },
            [&]
            {
                data_cond.wait(lock, [this] { return data_or_stopped(); });
                return true;
            });
        return take(lock);
    }

    /**
     * Pop, waiting for data like pop(), and add the time spent waiting (zero
     * when an item was ready) to @a wait_ns. This is the one timed acquire
     * used by everything that takes chunks from a free ring.
     */
    T pop_timed(std::uint64_t &wait_ns)
    {
        if (auto ready = try_pop_optional())
            return std::move(*ready);
        auto start = std::chrono::steady_clock::now();
        T value = pop();
        wait_ns += std::uint64_t(
            std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count());
        return value;
    }

    /// Stop the ring; returns false if it was already stopped.
    bool stop()
    {
        std::lock_guard<std::mutex> lock(mutex);
        if (stopped_)
            return false;
        stopped_ = true;
        update_levels();
        data_cond.notify_all();
        space_cond.notify_all();
        return true;
    }

    void add_producer()
    {
        std::lock_guard<std::mutex> lock(mutex);
        producers++;
    }

    /// Remove a producer; stops the ring (and returns true) when it was the last.
    bool remove_producer()
    {
        {
            std::lock_guard<std::mutex> lock(mutex);
            if (producers == 0)
                return false; // (spead2 behaviour: nothing to remove, ring keeps running)
            if (--producers > 0)
                return false;
        }
        stop();
        return true;
    }

private:
    /// A blocked producer may go on (hysteresis: see resume_size), or the ring stopped.
    bool space_or_stopped() const { return stopped_ || items.size() <= resume_size(); }

    /// Append @a value (space checked by the caller) and wake a consumer; throws ringbuffer_stopped.
    void put(std::unique_lock<std::mutex> &lock, T &&value)
    {
        if (stopped_)
            throw ringbuffer_stopped();
        items.push_back(std::move(value));
        count.store(items.size(), std::memory_order_relaxed);
        update_levels();
        // Notify after unlocking, so the woken consumer does not block on the mutex.
        lock.unlock();
        data_cond.notify_one();
    }

    /// Remove the front item and wake a producer if it may go on; throws ringbuffer_stopped if empty.
    T take(std::unique_lock<std::mutex> &lock)
    {
        if (items.empty())
            throw ringbuffer_stopped();
        T value = std::move(items.front());
        items.pop_front();
        count.store(items.size(), std::memory_order_relaxed);
        update_levels();
        const bool wake = items.size() <= resume_size();
        lock.unlock();
        if (wake)
            space_cond.notify_one();
        return value;
    }
};

} // namespace spead2gpu
