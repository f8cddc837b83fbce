/**
 * @file ringbuffer.h
 * Bounded, stoppable, thread-safe FIFO with file descriptors that signal
 * readability (data or stopped) and writability (space or stopped), for
 * event loops such as asyncio.
 */
#pragma once

#include <cerrno>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <sys/eventfd.h>
#include <system_error>
#include <unistd.h>
#include "common.h"

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
    ~level_fd() { if (fd_ >= 0) ::close(fd_); }
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
 * Bounded FIFO of @a T. A capacity of 0 means unbounded.
 *
 * Producers may be counted (add_producer/remove_producer): when the last
 * producer leaves, the ring stops. A stopped ring refuses pushes and
 * still delivers what it holds before reporting ringbuffer_stopped.
 */
template <typename T>
class ringbuffer
{
    mutable std::mutex mutex;
    std::condition_variable data_cond, space_cond;
    std::deque<T> items;
    std::size_t cap;
    bool stopped_ = false;
    int producers = 0;
    level_fd data_level, space_level;

    void update_levels()
    {
        data_level.set(!items.empty() || stopped_);
        space_level.set(cap == 0 || items.size() < cap || stopped_);
    }

    bool has_space() const { return cap == 0 || items.size() < cap; }

public:
    explicit ringbuffer(std::size_t capacity) : cap(capacity)
    {
        update_levels();
    }

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
    int data_fd() const { return data_level.fd(); }
    int space_fd() const { return space_level.fd(); }

    /// Push without blocking; throws ringbuffer_full or ringbuffer_stopped.
    void try_push(T &&value)
    {
        std::lock_guard<std::mutex> lock(mutex);
        if (stopped_)
            throw ringbuffer_stopped();
        if (!has_space())
            throw ringbuffer_full();
        items.push_back(std::move(value));
        update_levels();
        data_cond.notify_one();
    }

    /// Push, waiting for space; throws ringbuffer_stopped if stopped meanwhile.
    void push(T &&value)
    {
        std::unique_lock<std::mutex> lock(mutex);
        space_cond.wait(lock, [this] { return stopped_ || has_space(); });
        if (stopped_)
            throw ringbuffer_stopped();
        items.push_back(std::move(value));
        update_levels();
        data_cond.notify_one();
    }

    /// Pop without blocking; throws ringbuffer_empty or ringbuffer_stopped.
    T try_pop()
    {
        std::lock_guard<std::mutex> lock(mutex);
        if (items.empty())
        {
            if (stopped_)
                throw ringbuffer_stopped();
            throw ringbuffer_empty();
        }
        return pop_locked();
    }

    /// Pop, waiting for data; throws ringbuffer_stopped once stopped and empty.
    T pop()
    {
        std::unique_lock<std::mutex> lock(mutex);
        data_cond.wait(lock, [this] { return stopped_ || !items.empty(); });
        if (items.empty())
            throw ringbuffer_stopped();
        return pop_locked();
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
        bool last;
        {
            std::lock_guard<std::mutex> lock(mutex);
            last = (--producers <= 0);
        }
        return last ? stop() : false;
    }

private:
    T pop_locked()
    {
        T value = std::move(items.front());
        items.pop_front();
        update_levels();
        space_cond.notify_one();
        return value;
    }
};

} // namespace spead2gpu
