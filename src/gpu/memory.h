/**
 * @file gpu_memory.h
 * GPU runtime detection, memory kinds, buffers, allocators, CUDA streams and
 * events, behind an interface with no CUDA types, so that it compiles (as
 * stubs that report "not compiled with CUDA") without the CUDA toolkit.
 *
 * Stream handles are plain integers holding a cudaStream_t: 0 is the legacy
 * default stream, 1 cudaStreamLegacy, 2 cudaStreamPerThread, anything else a
 * stream created by this process (by us, cupy, torch, ...). The CUDA runtime is
 * linked statically; driver handles (streams, events, pointers in the primary
 * context) are shared with other runtimes in the process.
 */
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include "common/allocator.h"

namespace spead2gpu::gpu
{

/// Where a buffer lives.
enum class memory_kind : int
{
    host = 0, ///< page-aligned ordinary host memory (always available)
    pinned = 1, ///< page-locked host memory (cudaHostAlloc): fast DMA source
    mapped = 2, ///< page-locked and mapped into the device address space (zero-copy)
    device = 3 ///< device memory (cudaMalloc); not host-addressable
};

const char *kind_name(memory_kind kind);
/// Parse "host", "pinned", "mapped" or "device" (not "auto"); std::invalid_argument otherwise.
memory_kind parse_kind(const std::string &name);
inline bool host_addressable(memory_kind k)
{
    return k != memory_kind::device;
}
/// Whether GPU kernels can address the memory directly.
inline bool gpu_addressable(memory_kind k)
{
    return k == memory_kind::mapped || k == memory_kind::device;
}
inline bool needs_gpu(memory_kind k)
{
    return k != memory_kind::host;
}

/// Raised when a GPU memory kind or operation is requested without a usable GPU.
class gpu_unavailable : public std::runtime_error
{
public:
    using std::runtime_error::runtime_error;
};

/// Raised for a CUDA error (message: what failed and CUDA's error text).
class cuda_error : public std::runtime_error
{
public:
    using std::runtime_error::runtime_error;
};

/// True if the library was built with nvcc (SPEAD2GPU_HAVE_CUDA).
bool compiled_with_cuda();

/// Result of probing the CUDA runtime (cached after the first call).
struct gpu_status
{
    bool available = false;
    int device_count = 0;
    int driver_version = 0; ///< e.g. 13000; 0 if no driver
    int runtime_version = 0; ///< of the statically linked runtime
    std::string reason; ///< why not available ("" when available)
};

/**
 * Probe once for a usable GPU. Never crashes without a driver: the static
 * runtime loads libcuda lazily and reports cudaErrorInsufficientDriver /
 * cudaErrorNoDevice, which become @ref gpu_status::reason.
 */
const gpu_status &probe();

/// Throw gpu_unavailable naming the cause if no GPU (or @a device does not exist).
void require_gpu(const char *what, int device = 0);

/// Set the calling thread's current device for a scope (restores the previous one).
class device_guard
{
    int previous = -1;

public:
    explicit device_guard(int device);
    ~device_guard();
    device_guard(const device_guard &) = delete;
    device_guard &operator=(const device_guard &) = delete;
};

/// One allocation of a memory kind. Non-copyable; freed on destruction.
class buffer
{
    memory_kind kind_;
    int device_;
    std::size_t size_;
    std::uint8_t *host_ = nullptr; ///< host address (null for device)
    std::uintptr_t device_ptr_ = 0; ///< device address (mapped, device; 0 otherwise)
    void *raw_ = nullptr; ///< what to free

public:
    buffer(std::size_t size, memory_kind kind, int device = 0);
    ~buffer();
    buffer(const buffer &) = delete;
    buffer &operator=(const buffer &) = delete;

    memory_kind kind() const { return kind_; }
    int device() const { return device_; }
    std::size_t size() const { return size_; }
    std::uint8_t *host_ptr() const { return host_; }
    std::uintptr_t device_ptr() const { return device_ptr_; }
    /// Zero the whole buffer (cudaMemset for device memory, synchronous).
    void zero();
};

/**
 * Heap-payload / chunk allocator for a host-addressable kind (host, pinned,
 * mapped). Each allocation is a separate @ref buffer; wrap it in a
 * memory_pool to avoid a cudaHostAlloc per heap.
 */
class gpu_memory_allocator : public memory_allocator
{
    memory_kind kind_;
    int device_;

public:
    gpu_memory_allocator(memory_kind kind, int device = 0);
    memory_kind kind() const { return kind_; }
    int device() const { return device_; }
    pointer allocate(std::size_t size, void *hint) override;

protected:
    void free(std::uint8_t *ptr, void *user) override;
};

/**
 * A CUDA event (timing disabled). Created only when a GPU is usable; with
 * blocking_sync, synchronize() sleeps instead of spinning.
 */
class event
{
    void *ev = nullptr;
    int device_;

public:
    event(int device, bool blocking_sync);
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
    std::uintptr_t handle() const { return reinterpret_cast<std::uintptr_t>(ev); }
};

/// A CUDA stream created by us (non-blocking w.r.t. the legacy default stream).
class stream
{
    void *s = nullptr;
    int device_;

public:
    explicit stream(int device);
    ~stream();
    stream(const stream &) = delete;
    stream &operator=(const stream &) = delete;
    std::uintptr_t handle() const { return reinterpret_cast<std::uintptr_t>(s); }
    void synchronize();
};

/// Asynchronous host-to-device (or any direction: cudaMemcpyDefault) copy.
void memcpy_async(std::uintptr_t dst, std::uintptr_t src, std::size_t size, std::uintptr_t stream);
/// cudaStreamSynchronize (not for hot paths).
void stream_synchronize(std::uintptr_t stream);
/// cudaDeviceSynchronize on @a device.
void device_synchronize(int device);
/// Free device memory of @a device (cudaMemGetInfo), or 0.
std::size_t device_total_memory(int device);
/// Name of @a device (cudaGetDeviceProperties), or "".
std::string device_name(int device);

} // namespace spead2gpu::gpu
