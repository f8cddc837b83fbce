/**
 * @file emulated_runtime.cpp
 * The emulated GPU (see emulated_runtime.h).
 */
#include "gpu/emulated_runtime.h"
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>

namespace spead2gpu::gpu
{

namespace
{

std::size_t page_round(std::size_t size)
{
    constexpr std::size_t page = 4096;
    if (size == 0)
        size = 1;
    return (size + page - 1) & ~(page - 1);
}

} // namespace

emulated_runtime::emulated_runtime(const emulation_options &opts) : options(opts)
{
    if (options.device_count < 1)
        throw std::invalid_argument("an emulated GPU needs device_count >= 1");
    if (options.latency.count() < 0 || options.bytes_per_second < 0)
        throw std::invalid_argument("emulated GPU latency and bytes_per_second must not be negative");
    std::unique_lock<std::mutex> lock(mutex);
    default_handle = start_stream(lock);
}

emulated_runtime::~emulated_runtime()
{
    std::unique_lock<std::mutex> lock(mutex);
    for (auto &[handle, s] : streams)
        s->closing = true;
    changed.notify_all();
    auto all = std::move(streams);
    streams.clear();
    lock.unlock();
    for (auto &[handle, s] : all)
        if (s->worker.joinable())
            s->worker.join();
}

std::uintptr_t emulated_runtime::start_stream(std::unique_lock<std::mutex> &)
{
    auto s = std::make_unique<stream_state>();
    stream_state *raw = s.get();
    auto handle = reinterpret_cast<std::uintptr_t>(raw);
    raw->worker = std::thread([this, raw] { serve(*raw); });
    streams.emplace(handle, std::move(s));
    return handle;
}

void emulated_runtime::serve(stream_state &s)
{
    std::unique_lock<std::mutex> lock(mutex);
    while (true)
    {
        changed.wait(lock, [&] { return s.closing || !s.queue.empty(); });
        if (s.queue.empty())
            break; // closing and drained
        operation &op = s.queue.front();
        if (op.wait)
        {
            auto wait = op.wait;
            auto generation = op.wait_generation;
            changed.wait(lock, [&] { return wait->completed >= generation; });
        }
        auto deadline = std::max(op.not_before, std::chrono::steady_clock::now() + op.duration);
        while (std::chrono::steady_clock::now() < deadline)
            changed.wait_until(lock, deadline);
        if (op.work)
        {
            auto work = std::move(op.work);
            lock.unlock();
            work();
            lock.lock();
        }
        operation &front = s.queue.front(); // only this worker pops, so still the same operation
        if (front.signal)
            front.signal->completed = std::max(front.signal->completed, front.signal_generation);
        s.queue.pop_front();
        s.done++;
        operations_run_++;
        changed.notify_all();
    }
}

emulated_runtime::stream_state &emulated_runtime::stream_of(std::uintptr_t handle)
{
    if (handle <= 2)
        handle = default_handle;
    auto it = streams.find(handle);
    if (it == streams.end() || it->second->closing)
        throw std::invalid_argument("stream handle " + std::to_string(handle) +
                                    " is not a stream of this emulated GPU (use its default stream, 0, or one it "
                                    "created)");
    return *it->second;
}

std::shared_ptr<emulated_runtime::event_state> emulated_runtime::event_of(std::uintptr_t handle)
{
    auto it = events.find(handle);
    if (it == events.end())
        throw std::invalid_argument("event handle " + std::to_string(handle) + " is not an event of this emulated GPU");
    return it->second;
}

void emulated_runtime::take_fault(const char *op)
{
    auto it = faults.find(op);
    if (it != faults.end() && it->second > 0)
    {
        it->second--;
        throw cuda_error(std::string(op) + " failed: emulated failure (fail_next)");
    }
}

void emulated_runtime::enqueue(std::uintptr_t stream, operation &&op)
{
    stream_state &s = stream_of(stream);
    op.not_before = std::chrono::steady_clock::now() + options.latency;
    s.queue.push_back(std::move(op));
    s.queued++;
    changed.notify_all();
}

void emulated_runtime::wait_drained(std::unique_lock<std::mutex> &lock, stream_state &s)
{
    const std::uint64_t target = s.queued;
    changed.wait(lock, [&] { return s.done >= target; });
}

void emulated_runtime::require(const char *what, int device) const
{
    if (device < 0 || device >= options.device_count)
        throw gpu_unavailable(std::string(what) + ": emulated device " + std::to_string(device) + " does not exist (" +
                              std::to_string(options.device_count) + " emulated)");
}

runtime::allocation emulated_runtime::allocate(memory_kind kind, std::size_t size, int device)
{
    require("emulated GPU memory", device);
    {
        std::lock_guard<std::mutex> lock(mutex);
        take_fault("allocate");
    }
    void *p = std::aligned_alloc(4096, page_round(size));
    if (!p)
        throw std::bad_alloc();
    allocation a;
    a.raw = p;
    a.host = static_cast<std::uint8_t *>(p);
    if (gpu_addressable(kind))
        a.device = reinterpret_cast<std::uintptr_t>(p);
    return a;
}

void emulated_runtime::deallocate(memory_kind, void *raw, int) noexcept
{
    std::free(raw);
}

void emulated_runtime::memcpy_async(std::uintptr_t dst, std::uintptr_t src, std::size_t size, std::uintptr_t stream)
{
    std::lock_guard<std::mutex> lock(mutex);
    take_fault("memcpy_async");
    operation op;
    if (options.bytes_per_second > 0)
        op.duration = std::chrono::nanoseconds(std::int64_t(double(size) / options.bytes_per_second * 1e9));
    op.work = [dst, src, size]
    { std::memcpy(reinterpret_cast<void *>(dst), reinterpret_cast<const void *>(src), size); };
    enqueue(stream, std::move(op));
}

void emulated_runtime::memset_async(std::uintptr_t dst, int value, std::size_t size, std::uintptr_t stream)
{
    std::lock_guard<std::mutex> lock(mutex);
    take_fault("memset_async");
    operation op;
    if (options.bytes_per_second > 0)
        op.duration = std::chrono::nanoseconds(std::int64_t(double(size) / options.bytes_per_second * 1e9));
    op.work = [dst, value, size] { std::memset(reinterpret_cast<void *>(dst), value, size); };
    enqueue(stream, std::move(op));
}

std::uintptr_t emulated_runtime::create_stream(int device)
{
    require("an emulated stream", device);
    std::unique_lock<std::mutex> lock(mutex);
    take_fault("create_stream");
    return start_stream(lock);
}

void emulated_runtime::destroy_stream(std::uintptr_t handle, int) noexcept
{
    std::unique_lock<std::mutex> lock(mutex);
    auto it = streams.find(handle);
    if (it == streams.end() || handle == default_handle)
        return;
    // As in CUDA, queued work still runs; unlike CUDA, this waits for it (so the worker can be joined).
    std::unique_ptr<stream_state> s = std::move(it->second);
    streams.erase(it);
    s->closing = true;
    changed.notify_all();
    lock.unlock();
    if (s->worker.joinable())
        s->worker.join();
}

void emulated_runtime::synchronize_stream(std::uintptr_t stream)
{
    std::unique_lock<std::mutex> lock(mutex);
    take_fault("synchronize_stream");
    wait_drained(lock, stream_of(stream));
}

void emulated_runtime::synchronize_device(int device)
{
    require("synchronising an emulated device", device);
    std::unique_lock<std::mutex> lock(mutex);
    take_fault("synchronize_device");
    std::vector<stream_state *> all;
    for (auto &[handle, s] : streams)
        all.push_back(s.get());
    for (stream_state *s : all)
        wait_drained(lock, *s);
}

std::uintptr_t emulated_runtime::create_event(int device, bool)
{
    require("an emulated event", device);
    std::lock_guard<std::mutex> lock(mutex);
    take_fault("create_event");
    auto ev = std::make_shared<event_state>();
    auto handle = reinterpret_cast<std::uintptr_t>(ev.get());
    events.emplace(handle, std::move(ev));
    return handle;
}

void emulated_runtime::destroy_event(std::uintptr_t handle, int) noexcept
{
    std::lock_guard<std::mutex> lock(mutex);
    events.erase(handle); // operations that signal or wait for it hold their own reference
}

void emulated_runtime::record_event(std::uintptr_t event, std::uintptr_t stream, int)
{
    std::lock_guard<std::mutex> lock(mutex);
    take_fault("record_event");
    auto ev = event_of(event);
    stream_of(stream); // validate before changing the event
    operation op;
    op.signal = ev;
    op.signal_generation = ++ev->recorded;
    enqueue(stream, std::move(op));
}

bool emulated_runtime::query_event(std::uintptr_t event)
{
    std::lock_guard<std::mutex> lock(mutex);
    take_fault("query_event");
    auto ev = event_of(event);
    return ev->completed >= ev->recorded;
}

void emulated_runtime::synchronize_event(std::uintptr_t event)
{
    std::unique_lock<std::mutex> lock(mutex);
    take_fault("synchronize_event");
    auto ev = event_of(event);
    const std::uint64_t target = ev->recorded;
    changed.wait(lock, [&] { return ev->completed >= target; });
}

void emulated_runtime::stream_wait_event(std::uintptr_t stream, std::uintptr_t event, int)
{
    std::lock_guard<std::mutex> lock(mutex);
    take_fault("stream_wait_event");
    auto ev = event_of(event);
    if (ev->recorded == 0)
    {
        stream_of(stream); // a never-recorded event is complete: nothing to wait for
        return;
    }
    operation op;
    op.wait = ev;
    op.wait_generation = ev->recorded;
    enqueue(stream, std::move(op));
}

void emulated_runtime::enqueue_busy(std::uintptr_t stream, std::chrono::nanoseconds duration)
{
    if (duration.count() < 0)
        throw std::invalid_argument("busy duration must not be negative");
    std::lock_guard<std::mutex> lock(mutex);
    operation op;
    op.duration = duration;
    enqueue(stream, std::move(op));
}

void emulated_runtime::fail_next(const std::string &op, unsigned count)
{
    static const char *const known[] = {"allocate",           "memcpy_async",       "memset_async",     "create_stream",
                                        "synchronize_stream", "synchronize_device", "create_event",     "record_event",
                                        "query_event",        "synchronize_event",  "stream_wait_event"};
    if (std::none_of(std::begin(known), std::end(known), [&](const char *k) { return op == k; }))
        throw std::invalid_argument("fail_next: unknown operation '" + op + "'");
    std::lock_guard<std::mutex> lock(mutex);
    faults[op] = count;
}

std::uint64_t emulated_runtime::operations_run()
{
    std::lock_guard<std::mutex> lock(mutex);
    return operations_run_;
}

std::uint64_t emulated_runtime::pending(std::uintptr_t stream)
{
    std::lock_guard<std::mutex> lock(mutex);
    auto &s = stream_of(stream);
    return s.queued - s.done;
}

} // namespace spead2gpu::gpu
