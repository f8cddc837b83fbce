/**
 * @file send_stream.cpp
 */
#include "send/stream/stream.h"
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <stdexcept>
#include <sys/timerfd.h>
#include <unistd.h>
#include "common/logging.h"

namespace spead2gpu
{
namespace send
{

/* ---------------------------------------------------------------- config */

stream_config &stream_config::set_rate(double rate)
{
    if (!(rate >= 0.0))
        throw std::invalid_argument("rate must be non-negative");
    this->rate = rate;
    return *this;
}

stream_config &stream_config::set_max_heaps(std::size_t max_heaps)
{
    if (max_heaps == 0)
        throw std::invalid_argument("max_heaps must be positive");
    this->max_heaps = max_heaps;
    return *this;
}

stream_config &stream_config::set_burst_rate_ratio(double ratio)
{
    if (!(ratio >= 1.0) || !std::isfinite(ratio))
        throw std::invalid_argument("burst rate ratio must be at least 1.0 and finite");
    burst_rate_ratio = ratio;
    return *this;
}

/* ----------------------------------------------------------------- timer */

/// Watches the stream's timerfd; resumes the worker when a rate wait ends.
class stream::timer_watch : public fd_watch
{
    stream &owner;

public:
    timer_watch(stream &owner, int fd) : fd_watch(*owner.pool, fd), owner(owner) {}

protected:
    void on_ready() override { owner.on_timer(); }
};

/* ---------------------------------------------------------------- stream */

stream::stream(std::shared_ptr<thread_pool> pool, const stream_config &config, std::unique_ptr<writer> w)
    : pool(std::move(pool)), config(config), w(std::move(w)), capacity(config.get_max_heaps()),
      num_substreams(this->w->get_num_substreams()), heaps(capacity), groups(capacity)
{
    if (!this->pool)
        throw std::invalid_argument("thread pool is null");
    batch.resize(std::max<std::size_t>(1, this->w->max_batch()));
    timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (timer_fd < 0)
        throw std::system_error(errno, std::generic_category(), "timerfd_create");
    timer = std::make_unique<timer_watch>(*this, timer_fd);
    this->w->attach(*this->pool, [this] { on_write_done(); });
}

stream::~stream()
{
    flush();
    timer->unwatch();
    timer.reset();
    ::close(timer_fd);
}

double stream::now_seconds()
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void stream::set_cnt_sequence(item_pointer_t next, item_pointer_t step)
{
    if (step == 0)
        throw std::invalid_argument("step cannot be 0");
    std::lock_guard<std::mutex> lock(mutex);
    next_cnt = next;
    step_cnt = step;
}

bool stream::async_send_heap(const heap &h, completion_handler handler, s_item_pointer_t cnt,
                             std::size_t substream_index, double rate)
{
    heap_reference ref;
    ref.h = &h;
    ref.cnt = cnt;
    ref.substream_index = substream_index;
    ref.rate = rate;
    return async_send_heaps(&ref, 1, std::move(handler), group_mode::ROUND_ROBIN);
}

bool stream::async_send_heaps(const heap_reference *refs, std::size_t n, completion_handler handler, group_mode mode)
{
    std::error_code ec;
    if (n == 0)
    {
        log_warning("Empty heap group");
        handler(std::make_error_code(std::errc::invalid_argument), 0);
        return false;
    }

    bool need_start = false;
    {
        std::unique_lock<std::mutex> lock(mutex);
        std::size_t free_slots = capacity - (heap_tail - heap_head);
        item_pointer_t cnt_next = next_cnt;
        const char *reason = nullptr;
        std::size_t built = 0;
        try
        {
            for (std::size_t i = 0; i < n; i++)
            {
                const heap_reference &ref = refs[i];
                if (ref.substream_index >= num_substreams)
                {
                    reason = "substream index is out of range";
                    ec = std::make_error_code(std::errc::invalid_argument);
                    break;
                }
                if (i >= free_slots)
                {
                    reason = "queue is full";
                    ec = std::make_error_code(std::errc::resource_unavailable_try_again);
                    break;
                }
                const int hab = ref.h->get_flavour().get_heap_address_bits();
                const item_pointer_t cnt_mask = (item_pointer_t(1) << hab) - 1;
                item_pointer_t cnt;
                if (ref.cnt < 0)
                {
                    cnt = cnt_next & cnt_mask;
                    cnt_next += step_cnt;
                }
                else if (item_pointer_t(ref.cnt) > cnt_mask)
                {
                    reason = "cnt is out of range";
                    ec = std::make_error_code(std::errc::invalid_argument);
                    break;
                }
                else
                    cnt = ref.cnt;
                heap_slot &slot = heaps[(heap_tail + i) % capacity];
                slot.gen.emplace(*ref.h, cnt, config.get_max_packet_size());
                built++;
                slot.substream = ref.substream_index;
                slot.rate = ref.rate < 0.0 ? config.get_rate() : ref.rate;
                slot.burst_rate = slot.rate * config.get_burst_rate_ratio();
                slot.group = group_tail;
            }
        }
        catch (...)
        {
            for (std::size_t i = 0; i < built; i++)
                heaps[(heap_tail + i) % capacity].gen.reset();
            throw;
        }
        if (reason)
        {
            for (std::size_t i = 0; i < built; i++)
                heaps[(heap_tail + i) % capacity].gen.reset();
            lock.unlock();
            log_warning(std::string("async_send_heap(s): dropping heap because ") + reason);
            handler(ec, 0);
            return false;
        }
        next_cnt = cnt_next;
        group_slot &g = groups[group_tail % capacity];
        g.first = heap_tail;
        g.n = n;
        g.mode = mode;
        g.handler = std::move(handler);
        g.ec = std::error_code();
        g.bytes = 0;
        g.heaps_done = 0;
        g.remaining = n;
        g.cursor = 0;
        heap_tail += n;
        group_tail++;
        if (!worker_active)
        {
            worker_active = true;
            need_start = true;
        }
    }
    if (need_start)
        pool->post([this] { start_worker(); });
    return true;
}

void stream::flush()
{
    std::unique_lock<std::mutex> lock(mutex);
    idle_cond.wait(lock, [this] { return !worker_active; });
}

bool stream::flush_for(std::chrono::nanoseconds timeout)
{
    std::unique_lock<std::mutex> lock(mutex);
    return idle_cond.wait_for(lock, timeout, [this] { return !worker_active; });
}

void stream::start_worker()
{
    // After idling, the rate schedules may not lie in the past (no catch-up
    // burst for time spent idle), but a pending wait is still honoured.
    double now = now_seconds();
    t_nominal = std::max(t_nominal, now);
    t_burst = std::max(t_burst, now);
    run();
}

void stream::run()
{
    while (true)
    {
        if (wait_pending)
        {
            wait_pending = false;
            rate_bytes = 0;
            double target = std::max(t_nominal, t_burst);
            double now = now_seconds();
            if (target > now)
            {
                itimerspec spec{};
                double secs = std::floor(target);
                spec.it_value.tv_sec = time_t(secs);
                spec.it_value.tv_nsec = long((target - secs) * 1e9);
                if (spec.it_value.tv_nsec >= 1000000000)
                    spec.it_value.tv_nsec = 999999999;
                if (spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0)
                    spec.it_value.tv_nsec = 1;
                if (timerfd_settime(timer_fd, TFD_TIMER_ABSTIME, &spec, nullptr) == 0)
                {
                    wait_target = target;
                    timer->arm();
                    return; // resumed by on_timer
                }
                // Could not arm the timer: fall through without waiting.
            }
            t_burst = std::max(t_burst, now);
        }
        batch_n = fill_batch();
        if (batch_n == 0)
        {
            if (wait_pending)
                continue;
            std::lock_guard<std::mutex> lock(mutex);
            if (group_cur == group_tail)
            {
                worker_active = false;
                idle_cond.notify_all();
                return; // nothing may touch *this after this point
            }
            continue;
        }
        if (!w->write_packets(batch.data(), batch_n))
            return; // resumed by on_write_done
        process_batch();
    }
}

void stream::on_write_done()
{
    process_batch();
    run();
}

void stream::on_timer()
{
    std::uint64_t expirations;
    [[maybe_unused]] auto r = ::read(timer_fd, &expirations, sizeof(expirations));
    // Measure the next burst from the intended wake-up time, so that timer
    // latency is absorbed (at no more than the burst rate) instead of
    // accumulating as lost time.
    t_burst = std::max(t_burst, wait_target);
    run();
}

std::size_t stream::fill_batch()
{
    std::size_t n = 0;
    const std::size_t burst_size = config.get_burst_size();
    while (n < batch.size())
    {
        if (group_cur == group_snapshot)
        {
            std::lock_guard<std::mutex> lock(mutex);
            group_snapshot = group_tail;
            if (group_cur == group_snapshot)
                break;
        }
        group_slot &g = groups[group_cur % capacity];
        if (g.remaining == 0)
        {
            group_cur++;
            continue;
        }
        // Choose the heap to take the next packet from.
        heap_slot *hs = &heaps[(g.first + g.cursor) % capacity];
        while (!hs->gen->has_next_packet())
        {
            g.cursor = (g.cursor + 1) % g.n;
            hs = &heaps[(g.first + g.cursor) % capacity];
        }
        if (hs->rate > 0.0 && rate_bytes > 0 && rate_bytes >= burst_size)
        {
            wait_pending = true;
            break;
        }
        transmit_packet &pkt = batch[n++];
        hs->gen->next_packet(pkt.buf);
        pkt.substream = hs->substream;
        pkt.heap_index = g.first + g.cursor;
        pkt.last = !hs->gen->has_next_packet();
        pkt.result = std::error_code();
        if (hs->rate > 0.0)
        {
            rate_bytes += pkt.buf.size;
            t_nominal += double(pkt.buf.size) / hs->rate;
            t_burst += double(pkt.buf.size) / hs->burst_rate;
        }
        if (pkt.last)
        {
            g.remaining--;
            if (g.remaining == 0)
            {
                group_cur++;
                continue;
            }
        }
        if (g.mode == group_mode::ROUND_ROBIN || pkt.last)
            g.cursor = (g.cursor + 1) % g.n;
    }
    return n;
}

void stream::process_batch()
{
    for (std::size_t i = 0; i < batch_n; i++)
    {
        transmit_packet &pkt = batch[i];
        heap_slot &hs = heaps[pkt.heap_index % capacity];
        group_slot &g = groups[hs.group % capacity];
        if (pkt.result)
        {
            if (!g.ec)
                g.ec = pkt.result;
        }
        else
            g.bytes += pkt.buf.size;
        if (pkt.last)
        {
            g.heaps_done++;
            if (g.heaps_done == g.n)
                complete_group(g);
        }
    }
    batch_n = 0;
}

void stream::complete_group(group_slot &g)
{
    completion_handler handler = std::move(g.handler);
    g.handler = nullptr;
    std::error_code ec = g.ec;
    item_pointer_t bytes = g.bytes;
    for (std::size_t i = 0; i < g.n; i++)
        heaps[(g.first + i) % capacity].gen.reset();
    {
        std::lock_guard<std::mutex> lock(mutex);
        heap_head += g.n;
        group_head++;
    }
    if (handler)
        handler(ec, bytes);
}

/* ------------------------------------------------------- concrete streams */

bytes_stream::bytes_stream(std::shared_ptr<thread_pool> pool, const stream_config &config)
    : stream(std::move(pool), config, std::make_unique<bytes_writer>())
{
}

std::string bytes_stream::getvalue() const
{
    return static_cast<const bytes_writer &>(get_writer()).getvalue();
}

std::size_t bytes_stream::size() const
{
    return static_cast<const bytes_writer &>(get_writer()).size();
}

void bytes_stream::copy_to(std::uint8_t *dest, std::size_t n) const
{
    static_cast<const bytes_writer &>(get_writer()).copy_to(dest, n);
}

inproc_stream::inproc_stream(std::shared_ptr<thread_pool> pool, std::vector<std::shared_ptr<inproc_queue>> queues,
                             const stream_config &config)
    : stream(std::move(pool), config, std::make_unique<inproc_writer>(std::move(queues)))
{
}

const std::vector<std::shared_ptr<inproc_queue>> &inproc_stream::get_queues() const
{
    return static_cast<const inproc_writer &>(get_writer()).get_queues();
}

} // namespace send
} // namespace spead2gpu
