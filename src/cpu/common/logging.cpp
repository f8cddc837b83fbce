#include "common/logging.h"
#include <cstdio>
#include <mutex>

namespace spead2gpu
{

static std::mutex log_mutex;
static log_function log_sink;

void set_log_function(log_function f)
{
    std::lock_guard<std::mutex> lock(log_mutex);
    log_sink = std::move(f);
}

void log_message(log_level level, const std::string &msg)
{
    std::lock_guard<std::mutex> lock(log_mutex);
    if (log_sink)
        log_sink(level, msg);
    else
        std::fprintf(stderr, "spead2gpu: %s\n", msg.c_str());
}

bool rate_limited_log::due(std::uint64_t &n)
{
    auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
                   .count();
    std::int64_t next = next_ns.load(std::memory_order_relaxed);
    if (now < next || !next_ns.compare_exchange_strong(next, now + interval_ns))
    {
        suppressed.fetch_add(1, std::memory_order_relaxed);
        return false;
    }
    n = suppressed.exchange(0, std::memory_order_relaxed);
    return true;
}

void rate_limited_log::emit(log_level level, std::string text, std::uint64_t n)
{
    if (n)
        text += " (" + std::to_string(n) + " similar messages suppressed)";
    log_message(level, text);
}

} // namespace spead2gpu
