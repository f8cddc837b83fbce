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
#include <utility>

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
    void operator()(log_level level, const char *msg)
    {
        log_if_due(level, [msg] { return std::string(msg); });
    }

    /**
     * As above, but the text is built (by @a make_text, returning a
     * std::string) only when it is let through, so that a message with
     * numbers in it costs nothing on the packet path while suppressed.
     */
    template <typename MakeText> void operator()(log_level level, MakeText &&make_text)
    {
        log_if_due(level, std::forward<MakeText>(make_text));
    }

private:
    /// True if a message may go out now; @a suppressed is then how many did not since the last one.
    bool due(std::uint64_t &suppressed);
    /// Emit @a text, noting @a suppressed earlier messages.
    static void emit(log_level level, std::string text, std::uint64_t suppressed);

    template <typename MakeText> void log_if_due(log_level level, MakeText &&make_text)
    {
        std::uint64_t n;
        if (due(n))
            emit(level, make_text(), n);
    }
};

} // namespace spead2gpu
