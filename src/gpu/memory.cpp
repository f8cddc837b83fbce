/**
 * @file memory.cpp
 * Memory kinds, and buffers / the payload allocator / events / streams over
 * a runtime (see memory.h). No CUDA here: the runtime does the GPU calls.
 */
#include "gpu/memory.h"
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

namespace spead2gpu::gpu
{

const char *kind_name(memory_kind kind)
{
    switch (kind)
    {
    case memory_kind::host:
        return "host";
    case memory_kind::pinned:
        return "pinned";
    case memory_kind::mapped:
        return "mapped";
    case memory_kind::device:
        return "device";
    }
    return "?";
}

memory_kind parse_kind(const std::string &name)
{
    if (name == "host")
        return memory_kind::host;
    if (name == "pinned")
        return memory_kind::pinned;
    if (name == "mapped")
        return memory_kind::mapped;
    if (name == "device")
        return memory_kind::device;
    throw std::invalid_argument("unknown memory kind '" + name +
                                "' (expected 'host', 'pinned', 'mapped', 'device' or 'auto')");
}

static std::size_t page_round(std::size_t size)
{
    constexpr std::size_t page = 4096;
    if (size == 0)
        size = 1;
    return (size + page - 1) & ~(page - 1);
}

static std::string kind_what(memory_kind kind)
{
    return std::string("memory kind '") + kind_name(kind) + "'";
}

// ---------------------------------------------------------------------------
// buffer
// ---------------------------------------------------------------------------

buffer::buffer(std::size_t size, memory_kind kind, int device, std::shared_ptr<runtime> rt)
    : kind_(kind), device_(device), size_(size)
{
    if (kind == memory_kind::host)
    {
        void *p = std::aligned_alloc(4096, page_round(size));
        if (!p)
            throw std::bad_alloc();
        alloc_.raw = p;
        alloc_.host = static_cast<std::uint8_t *>(p);
        return;
    }
    if (!rt)
        throw std::invalid_argument(kind_what(kind) + " needs a GPU runtime");
    rt->require(kind_what(kind).c_str(), device);
    alloc_ = rt->allocate(kind, size ? size : 1, device);
    rt_ = std::move(rt);
}

buffer::~buffer()
{
    if (!alloc_.raw)
        return;
    if (kind_ == memory_kind::host)
        std::free(alloc_.raw);
    else
        rt_->deallocate(kind_, alloc_.raw, device_);
}

void buffer::zero()
{
    if (kind_ != memory_kind::device)
    {
        std::memset(alloc_.host, 0, size_);
        return;
    }
    rt_->memset_async(alloc_.device, 0, size_, 0);
    rt_->synchronize_stream(0);
}

// ---------------------------------------------------------------------------
// gpu_memory_allocator
// ---------------------------------------------------------------------------

gpu_memory_allocator::gpu_memory_allocator(memory_kind kind, int device, std::shared_ptr<runtime> rt,
                                           std::size_t max_cached_bytes)
    : kind_(kind), device_(device), rt_(std::move(rt)), max_cached_(max_cached_bytes)
{
    if (!host_addressable(kind))
        throw std::invalid_argument(
            "a heap payload allocator needs host-addressable memory ('host', 'pinned' or 'mapped'), not '" +
            std::string(kind_name(kind)) + "'");
    if (needs_gpu(kind))
    {
        if (!rt_)
            throw std::invalid_argument(kind_what(kind) + " needs a GPU runtime");
        rt_->require(kind_what(kind).c_str(), device);
    }
}

gpu_memory_allocator::~gpu_memory_allocator() = default;

std::size_t gpu_memory_allocator::cache_hits()
{
    std::lock_guard<std::mutex> lock(cache_mutex);
    return hits_;
}

std::size_t gpu_memory_allocator::cache_misses()
{
    std::lock_guard<std::mutex> lock(cache_mutex);
    return misses_;
}

memory_allocator::pointer gpu_memory_allocator::allocate(std::size_t size, void *)
{
    const std::size_t rounded = page_round(size);
    std::unique_ptr<buffer> b;
    {
        std::lock_guard<std::mutex> lock(cache_mutex);
        auto it = cache.find(rounded);
        if (it != cache.end() && !it->second.empty())
        {
            b = std::move(it->second.back());
            it->second.pop_back();
            cached_bytes -= rounded;
            hits_++;
        }
        else
            misses_++;
    }
    if (!b)
        b = std::make_unique<buffer>(rounded, kind_, device_, rt_);
    std::uint8_t *ptr = b->host_ptr();
    return make_pointer(ptr, b.release());
}

void gpu_memory_allocator::free(std::uint8_t *, void *user)
{
    std::unique_ptr<buffer> b(static_cast<buffer *>(user));
    {
        std::lock_guard<std::mutex> lock(cache_mutex);
        if (cached_bytes + b->size() <= max_cached_)
        {
            cached_bytes += b->size();
            cache[b->size()].push_back(std::move(b));
            return;
        }
    }
    // Over the cap: freed outside the lock (cudaFreeHost may wait for the device).
}

// ---------------------------------------------------------------------------
// event and stream
// ---------------------------------------------------------------------------

event::event(int device, bool blocking_sync, std::shared_ptr<runtime> rt) : rt_(std::move(rt)), device_(device)
{
    rt_->require("a CUDA event", device);
    ev = rt_->create_event(device, blocking_sync);
}

event::~event()
{
    if (ev)
        rt_->destroy_event(ev, device_);
}

void event::record(std::uintptr_t stream)
{
    rt_->record_event(ev, stream, device_);
}

void event::synchronize()
{
    rt_->synchronize_event(ev);
}

bool event::query()
{
    return rt_->query_event(ev);
}

void event::wait_on(std::uintptr_t stream)
{
    rt_->stream_wait_event(stream, ev, device_);
}

stream::stream(int device, std::shared_ptr<runtime> rt) : rt_(std::move(rt)), device_(device)
{
    rt_->require("a CUDA stream", device);
    s = rt_->create_stream(device);
}

stream::~stream()
{
    if (s)
        rt_->destroy_stream(s, device_);
}

void stream::synchronize()
{
    rt_->synchronize_stream(s);
}

} // namespace spead2gpu::gpu
