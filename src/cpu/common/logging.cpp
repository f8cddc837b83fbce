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

void rate_limited_log::operator()(log_level level, const char *msg)
{
    auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
                   .count();
    std::int64_t next = next_ns.load(std::memory_order_relaxed);
    if (now < next || !next_ns.compare_exchange_strong(next, now + interval_ns))
    {
        suppressed.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    std::uint64_t n = suppressed.exchange(0, std::memory_order_relaxed);
    if (n)
        log_message(level, std::string(msg) + " (" + std::to_string(n) + " similar messages suppressed)");
    else
        log_message(level, msg);
}

} // namespace spead2gpu
