/**
 * @file memory.h
 * Owning wrappers over a @ref runtime: buffers of a memory kind, the heap
 * payload allocator, events and streams. Each object keeps its runtime alive
 * (an emulated GPU lives as long as the last buffer, event or stream of it).
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>
#include "common/allocator.h"
#include "gpu/kind.h"
#include "gpu/runtime.h"

namespace spead2gpu::gpu
{

/// One allocation of a memory kind. Non-copyable; freed on destruction.
class buffer
{
    std::shared_ptr<runtime> rt_; ///< null for host memory
    memory_kind kind_;
    int device_;
    std::size_t size_;
    runtime::allocation alloc_;

public:
    /// @a rt is needed for every kind but host (where it is ignored).
    buffer(std::size_t size, memory_kind kind, int device = 0, std::shared_ptr<runtime> rt = cuda_runtime());
    ~buffer();
    buffer(const buffer &) = delete;
    buffer &operator=(const buffer &) = delete;

    memory_kind kind() const { return kind_; }
    int device() const { return device_; }
    std::size_t size() const { return size_; }
    /// Host address: null only for device memory of a real GPU.
    std::uint8_t *host_ptr() const { return alloc_.host; }
    /// Device address (mapped, device; 0 otherwise).
    std::uintptr_t device_ptr() const { return alloc_.device; }
    /// Whether the memory belongs to an emulated GPU (so device memory is host memory).
    bool emulated() const { return rt_ && rt_->emulated(); }
    const std::shared_ptr<runtime> &rt() const { return rt_; }
    /**
     * Zero the whole buffer and return once it is zero for every stream:
     * memset on the host, or a memset on the legacy default stream followed
     * by a wait for that stream (a bare cudaMemset would return before it is
     * done for device memory).
     */
    void zero();
};

/**
 * Heap-payload allocator of a host-addressable kind (host, pinned, mapped).
 *
 * cudaHostAlloc and cudaFreeHost synchronise the whole device, and the
 * allocator is called on the network thread for every heap, so freed
 * buffers are cached by size (page-rounded) and reused; at most
 * @ref max_cached_bytes stay cached, the rest are freed. Allocations run
 * under one mutex (@ref cache_mutex), taken once per heap, never per packet.
 */
class gpu_memory_allocator : public memory_allocator
{
    memory_kind kind_;
    int device_;
    std::shared_ptr<runtime> rt_;
    std::size_t max_cached_;
    /// Guards cache and cached_bytes (the only state allocate/free share).
    std::mutex cache_mutex;
    /// Freed buffers by their page-rounded size, ready for reuse.
    std::map<std::size_t, std::vector<std::unique_ptr<buffer>>> cache;
    std::size_t cached_bytes = 0;
    std::size_t hits_ = 0, misses_ = 0;

public:
    /// Default cap on cached memory (bytes).
    static constexpr std::size_t default_max_cached = std::size_t(256) << 20;

    gpu_memory_allocator(memory_kind kind, int device = 0, std::shared_ptr<runtime> rt = cuda_runtime(),
                         std::size_t max_cached_bytes = default_max_cached);
    ~gpu_memory_allocator() override;
    memory_kind kind() const { return kind_; }
    int device() const { return device_; }
    std::size_t max_cached_bytes() const { return max_cached_; }
    /// Allocations served from the cache / by a new buffer (a CUDA allocation).
    std::size_t cache_hits();
    std::size_t cache_misses();
    pointer allocate(std::size_t size, void *hint) override;

protected:
    void free(std::uint8_t *ptr, void *user) override;
};

/// An event of a runtime (timing disabled).
class event
{
    std::shared_ptr<runtime> rt_;
    std::uintptr_t ev = 0;
    int device_;

public:
    /// With @a blocking_sync, synchronize() sleeps instead of spinning.
    event(int device, bool blocking_sync, std::shared_ptr<runtime> rt = cuda_runtime());
    ~event();
    event(const event &) = delete;
    event &operator=(const event &) = delete;
    void record(std::uintptr_t stream);
    /// Block the calling thread until the last recorded work is done.
    void synchronize();
    /// Non-blocking: whether the last recorded work is done.
    bool query();
    /// Make @a stream wait (on the device) for the last recorded work.
    void wait_on(std::uintptr_t stream);
    std::uintptr_t handle() const { return ev; }
};

/// A stream created by us (non-blocking with respect to the legacy default stream).
class stream
{
    std::shared_ptr<runtime> rt_;
    std::uintptr_t s = 0;
    int device_;

public:
    explicit stream(int device, std::shared_ptr<runtime> rt = cuda_runtime());
    ~stream();
    stream(const stream &) = delete;
    stream &operator=(const stream &) = delete;
    std::uintptr_t handle() const { return s; }
    void synchronize();
};

} // namespace spead2gpu::gpu
