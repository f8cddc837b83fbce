/**
 * @file logging.h
 * Log sink for the core. The Python bindings install a sink that forwards to
 * the "spead2gpu" Python logger from a dedicated thread (workers never take
 * the GIL). Without a sink, messages go to stderr.
 */
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <string>

namespace spead2gpu
{

enum class log_level : int
{
    debug = 10,
    info = 20,
    warning = 30,
    error = 40
};

using log_function = std::function<void(log_level, const std::string &)>;

/// Install the process-wide sink (empty function restores stderr).
void set_log_function(log_function f);
/// Emit one message through the current sink.
void log_message(log_level level, const std::string &msg);

inline void log_info(const std::string &msg)
{
    log_message(log_level::info, msg);
}
inline void log_warning(const std::string &msg)
{
    log_message(log_level::warning, msg);
}

/**
 * Lets through at most one message per interval; counts the rest and
 * reports how many were suppressed with the next one let through.
 * Thread-safe and lock-free; cheap enough for the packet path.
 */
class rate_limited_log
{
    std::atomic<std::int64_t> next_ns{0};
    std::atomic<std::uint64_t> suppressed{0};
    std::int64_t interval_ns;

public:
    explicit rate_limited_log(std::chrono::milliseconds interval = std::chrono::milliseconds(1000))
        : interval_ns(std::chrono::duration_cast<std::chrono::nanoseconds>(interval).count())
    {
    }

    /// Log @a msg at @a level unless one was logged within the interval.
    void operator()(log_level level, const char *msg);
};

} // namespace spead2gpu
