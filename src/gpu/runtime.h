/**
 * @file runtime.h
 * The GPU operations the chunk pipeline and gpu.Buffer need, behind one
 * interface with two implementations:
 *
 * - @ref cuda_runtime (cuda_runtime.cpp): the CUDA runtime API;
 * - @ref emulated_runtime (emulated_runtime.h): an emulated GPU in host memory
 *   whose streams are worker threads and whose events complete later, when
 *   the worker reaches them.
 *
 * Why: the pipeline's hard part is ordering (recycle a chunk only after the
 * consumer's GPU work on it completed; copy into a device chunk only after the
 * last release of it). With this interface the same pipeline code runs on a
 * GPU and, in CI on CPU-only machines, on the emulation, where an event
 * recorded behind slow work really does complete late. Users get the same:
 * their chunk-consuming code can be tested without a GPU.
 *
 * Handles are integers. Streams: 0 is the legacy default stream, 1
 * cudaStreamLegacy, 2 cudaStreamPerThread (the emulation maps all three to
 * its one default stream); anything else a stream of this runtime. Events are
 * opaque handles from create_event(). Methods that name a @a device select it
 * for the call and restore the caller's.
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include "gpu/kind.h"

namespace spead2gpu::gpu
{

class runtime
{
public:
    /// Where one allocation lives (see @ref allocate).
    struct allocation
    {
        void *raw = nullptr; ///< what deallocate() is given
        std::uint8_t *host = nullptr; ///< host address; null for device memory on a real GPU
        std::uintptr_t device = 0; ///< device address (mapped, device); 0 otherwise
    };

    virtual ~runtime() = default;
    /// True for the emulated GPU: "device" memory is host memory, kernels cannot run.
    virtual bool emulated() const = 0;
    /// Throw gpu_unavailable naming @a what unless @a device can be used.
    virtual void require(const char *what, int device) const = 0;
    /// Make @a device the calling thread's current device (for threads that issue work).
    virtual void bind_thread(int device) = 0;

    /// @a size bytes of a GPU kind (pinned, mapped or device) on @a device.
    virtual allocation allocate(memory_kind kind, std::size_t size, int device) = 0;
    /// Free what allocate() returned. Never throws (errors at exit are ignored).
    virtual void deallocate(memory_kind kind, void *raw, int device) noexcept = 0;

    virtual void memcpy_async(std::uintptr_t dst, std::uintptr_t src, std::size_t size, std::uintptr_t stream) = 0;
    virtual void memset_async(std::uintptr_t dst, int value, std::size_t size, std::uintptr_t stream) = 0;

    /// A new stream, non-blocking with respect to the legacy default stream.
    virtual std::uintptr_t create_stream(int device) = 0;
    virtual void destroy_stream(std::uintptr_t stream, int device) noexcept = 0;
    /// Block until the work queued so far on @a stream is done.
    virtual void synchronize_stream(std::uintptr_t stream) = 0;
    /// Block until all work on @a device is done.
    virtual void synchronize_device(int device) = 0;

    /// A new event (timing disabled); with @a blocking_sync, waiting sleeps instead of spinning.
    virtual std::uintptr_t create_event(int device, bool blocking_sync) = 0;
    virtual void destroy_event(std::uintptr_t event, int device) noexcept = 0;
    /// Capture the work queued so far on @a stream in @a event.
    virtual void record_event(std::uintptr_t event, std::uintptr_t stream, int device) = 0;
    /// Whether the captured work is done (true for a never-recorded event). Never blocks.
    virtual bool query_event(std::uintptr_t event) = 0;
    /// Block until the captured work is done.
    virtual void synchronize_event(std::uintptr_t event) = 0;
    /// Make @a stream wait (on the device, not the host) for the work captured in @a event.
    virtual void stream_wait_event(std::uintptr_t stream, std::uintptr_t event, int device) = 0;
};

// ---------------------------------------------------------------------------
// The CUDA runtime
// ---------------------------------------------------------------------------

/// True if the library was built with nvcc (SPEAD2GPU_HAVE_CUDA).
bool compiled_with_cuda();

/// Result of probing the CUDA runtime (cached after the first call).
struct gpu_status
{
    bool available = false;
    int device_count = 0;
    int driver_version = 0; ///< e.g. 13000; 0 if no driver
    int runtime_version = 0; ///< of the linked CUDA runtime
    std::string reason; ///< why not available ("" when available)
    /**
     * True when a GPU or driver is present but cannot be used (driver older
     * than the runtime, no kernel image for its architecture, ...): the
     * Python layer logs @ref reason as a WARNING, not as routine INFO.
     */
    bool present_but_unusable = false;
};

/**
 * Probe once for a usable GPU. Never crashes without a driver: libcuda is
 * looked for first, and CUDA's "insufficient driver" / "no device" errors
 * become @ref gpu_status::reason.
 */
const gpu_status &probe();

/// Throw gpu_unavailable naming the cause if no GPU (or @a device does not exist).
void require_gpu(const char *what, int device = 0);

/// Set the calling thread's current CUDA device for a scope (restores the previous one).
class device_guard
{
    int previous = -1;

public:
    explicit device_guard(int device);
    ~device_guard();
    device_guard(const device_guard &) = delete;
    device_guard &operator=(const device_guard &) = delete;
};

/// Total memory of CUDA device @a device (cudaMemGetInfo), or 0.
std::size_t device_total_memory(int device);
/// Name of CUDA device @a device, or "".
std::string device_name(int device);
/// Compute capability of CUDA device @a device as major * 10 + minor, or 0.
int device_compute_capability(int device);

/**
 * The CUDA runtime (a process-wide singleton, never destroyed so that buffers
 * freed at interpreter exit still find it). Its methods throw gpu_unavailable
 * without a usable GPU or without CUDA support compiled in.
 */
const std::shared_ptr<runtime> &cuda_runtime();

} // namespace spead2gpu::gpu
