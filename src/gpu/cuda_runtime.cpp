/**
 * @file cuda_runtime.cpp
 * The CUDA implementation of @ref runtime, device probing and queries (CUDA
 * runtime API, compiled by the host compiler). Without SPEAD2GPU_HAVE_CUDA
 * the probe says so and every operation raises gpu_unavailable.
 */
#include "gpu/runtime.h"
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <mutex>
#include <string>
#include "common/logging.h"
#include "gpu/kernels.h"

#ifdef SPEAD2GPU_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace spead2gpu::gpu
{

bool compiled_with_cuda()
{
#ifdef SPEAD2GPU_HAVE_CUDA
    return true;
#else
    return false;
#endif
}

namespace
{

#ifdef SPEAD2GPU_HAVE_CUDA
[[noreturn]] void throw_cuda(cudaError_t err, const char *what)
{
    cudaGetLastError(); // clear the error so that it is not reported again by the next call
    throw cuda_error(std::string(what) + " failed: " + cudaGetErrorName(err) + ": " + cudaGetErrorString(err));
}

inline void check(cudaError_t err, const char *what)
{
    if (err != cudaSuccess)
        throw_cuda(err, what);
}

inline cudaStream_t to_stream(std::uintptr_t s)
{
    return reinterpret_cast<cudaStream_t>(s);
}

inline cudaEvent_t to_event(std::uintptr_t e)
{
    return reinterpret_cast<cudaEvent_t>(e);
}

std::string version_text(int v)
{
    return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10);
}
#endif

gpu_status do_probe()
{
    gpu_status st;
    const char *disable = std::getenv("SPEAD2GPU_DISABLE_GPU");
    if (disable && *disable && std::strcmp(disable, "0") != 0)
    {
        st.reason = "GPU use disabled by the environment variable SPEAD2GPU_DISABLE_GPU";
        return st;
    }
#ifndef SPEAD2GPU_HAVE_CUDA
    st.reason = "spead2gpu was built without CUDA (nvcc was not found at build time)";
    return st;
#else
    cudaRuntimeGetVersion(&st.runtime_version);
    // Look for the driver library ourselves first, to name the cause plainly.
    void *lib = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
    if (!lib)
    {
        const char *err = dlerror();
        st.reason = std::string("no NVIDIA driver: libcuda.so.1 cannot be loaded (") + (err ? err : "not found") + ")";
        return st;
    }
    dlclose(lib);
    // From here a driver is installed: anything that stops us using it is worth a warning.
    st.present_but_unusable = true;
    cudaError_t err = cudaDriverGetVersion(&st.driver_version);
    if (err != cudaSuccess || st.driver_version == 0)
    {
        cudaGetLastError();
        st.reason = "the NVIDIA driver library is installed but reports no driver (cudaDriverGetVersion)";
        return st;
    }
    int count = 0;
    err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess)
    {
        cudaGetLastError();
        if (err == cudaErrorNoDevice)
        {
            st.reason = "no CUDA device found (cudaErrorNoDevice)";
            st.present_but_unusable = false;
        }
        else if (err == cudaErrorInsufficientDriver)
            st.reason = "the NVIDIA driver (CUDA " + version_text(st.driver_version) +
                ") is older than the CUDA runtime spead2gpu was built with (CUDA " + version_text(st.runtime_version) +
                ", which needs a driver >= " + (st.runtime_version >= 13000 ? "580" : "525") +
                "): upgrade the driver, or use a build against CUDA 12, which runs on drivers >= 525 (see "
                "docs/building.md)";
        else
            st.reason = std::string("CUDA error: ") + cudaGetErrorName(err) + ": " + cudaGetErrorString(err);
        return st;
    }
    if (count == 0)
    {
        st.reason = "no CUDA device found";
        st.present_but_unusable = false;
        return st;
    }
    // The kernels must have an image (SASS or PTX the driver can JIT) for the GPU.
    std::string why;
    if (!kernels_loadable(0, why))
    {
        st.reason = why;
        return st;
    }
    st.device_count = count;
    st.available = true;
    st.present_but_unusable = false;
    return st;
#endif
}

} // namespace

const gpu_status &probe()
{
    static std::once_flag once;
    static gpu_status status;
    std::call_once(once,
                   []
                   {
                       status = do_probe();
                       if (status.present_but_unusable)
                           log_warning("spead2gpu: an NVIDIA GPU or driver is present but cannot be used: " +
                                       status.reason);
                   });
    return status;
}

void require_gpu(const char *what, int device)
{
    const auto &st = probe();
    if (!st.available)
        throw gpu_unavailable(std::string(what) + " needs a usable GPU: " + st.reason);
    if (device < 0 || device >= st.device_count)
        throw gpu_unavailable(std::string(what) + ": CUDA device " + std::to_string(device) + " does not exist (" +
                              std::to_string(st.device_count) + " found)");
}

#ifdef SPEAD2GPU_HAVE_CUDA

device_guard::device_guard(int device)
{
    check(cudaGetDevice(&previous), "cudaGetDevice");
    if (previous != device)
        check(cudaSetDevice(device), "cudaSetDevice");
    else
        previous = -1;
}

device_guard::~device_guard()
{
    if (previous >= 0)
        cudaSetDevice(previous);
}

std::size_t device_total_memory(int device)
{
    if (!probe().available)
        return 0;
    device_guard guard(device);
    std::size_t free_b = 0, total = 0;
    if (cudaMemGetInfo(&free_b, &total) != cudaSuccess)
    {
        cudaGetLastError();
        return 0;
    }
    return total;
}

std::string device_name(int device)
{
    if (!probe().available)
        return "";
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, device) != cudaSuccess)
    {
        cudaGetLastError();
        return "";
    }
    return prop.name;
}

int device_compute_capability(int device)
{
    if (!probe().available)
        return 0;
    int major = 0, minor = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess)
    {
        cudaGetLastError();
        return 0;
    }
    return major * 10 + minor;
}

namespace
{

/// @ref runtime on the CUDA runtime API; stateless, so one instance serves every device.
class cuda_impl final : public runtime
{
public:
    bool emulated() const override { return false; }
    void require(const char *what, int device) const override { require_gpu(what, device); }
    void bind_thread(int device) override { check(cudaSetDevice(device), "cudaSetDevice"); }

    allocation allocate(memory_kind kind, std::size_t size, int device) override
    {
        device_guard guard(device);
        allocation a;
        switch (kind)
        {
        case memory_kind::pinned:
            check(cudaHostAlloc(&a.raw, size, cudaHostAllocPortable), "cudaHostAlloc");
            a.host = static_cast<std::uint8_t *>(a.raw);
            break;
        case memory_kind::mapped:
        {
            check(cudaHostAlloc(&a.raw, size, cudaHostAllocPortable | cudaHostAllocMapped), "cudaHostAlloc(mapped)");
            a.host = static_cast<std::uint8_t *>(a.raw);
            void *dptr = nullptr;
            cudaError_t err = cudaHostGetDevicePointer(&dptr, a.raw, 0);
            if (err != cudaSuccess)
            {
                cudaFreeHost(a.raw);
                throw_cuda(err, "cudaHostGetDevicePointer");
            }
            a.device = reinterpret_cast<std::uintptr_t>(dptr);
            break;
        }
        case memory_kind::device:
            check(cudaMalloc(&a.raw, size), "cudaMalloc");
            a.device = reinterpret_cast<std::uintptr_t>(a.raw);
            break;
        default:
            throw std::invalid_argument("the CUDA runtime does not allocate 'host' memory");
        }
        return a;
    }

    void deallocate(memory_kind kind, void *raw, int device) noexcept override
    {
        // Errors (e.g. the driver already shut down at exit) are ignored.
        int prev = -1;
        if (cudaGetDevice(&prev) == cudaSuccess && prev != device)
            cudaSetDevice(device);
        if (kind == memory_kind::device)
            cudaFree(raw);
        else
            cudaFreeHost(raw);
        if (prev >= 0 && prev != device)
            cudaSetDevice(prev);
        cudaGetLastError();
    }

    void memcpy_async(std::uintptr_t dst, std::uintptr_t src, std::size_t size, std::uintptr_t stream) override
    {
        check(cudaMemcpyAsync(reinterpret_cast<void *>(dst), reinterpret_cast<const void *>(src), size,
                              cudaMemcpyDefault, to_stream(stream)),
              "cudaMemcpyAsync");
    }

    void memset_async(std::uintptr_t dst, int value, std::size_t size, std::uintptr_t stream) override
    {
        check(cudaMemsetAsync(reinterpret_cast<void *>(dst), value, size, to_stream(stream)), "cudaMemsetAsync");
    }

    std::uintptr_t create_stream(int device) override
    {
        device_guard guard(device);
        cudaStream_t s;
        check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
        return reinterpret_cast<std::uintptr_t>(s);
    }

    void destroy_stream(std::uintptr_t s, int) noexcept override
    {
        cudaStreamDestroy(to_stream(s));
        cudaGetLastError();
    }

    void synchronize_stream(std::uintptr_t s) override
    {
        check(cudaStreamSynchronize(to_stream(s)), "cudaStreamSynchronize");
    }

    void synchronize_device(int device) override
    {
        device_guard guard(device);
        check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    }

    std::uintptr_t create_event(int device, bool blocking_sync) override
    {
        device_guard guard(device);
        unsigned flags = cudaEventDisableTiming | (blocking_sync ? cudaEventBlockingSync : 0);
        cudaEvent_t e;
        check(cudaEventCreateWithFlags(&e, flags), "cudaEventCreateWithFlags");
        return reinterpret_cast<std::uintptr_t>(e);
    }

    void destroy_event(std::uintptr_t e, int) noexcept override
    {
        cudaEventDestroy(to_event(e));
        cudaGetLastError();
    }

    void record_event(std::uintptr_t e, std::uintptr_t s, int device) override
    {
        device_guard guard(device);
        check(cudaEventRecord(to_event(e), to_stream(s)), "cudaEventRecord");
    }

    bool query_event(std::uintptr_t e) override
    {
        cudaError_t err = cudaEventQuery(to_event(e));
        if (err == cudaErrorNotReady)
            return false;
        check(err, "cudaEventQuery");
        return true;
    }

    void synchronize_event(std::uintptr_t e) override
    {
        check(cudaEventSynchronize(to_event(e)), "cudaEventSynchronize");
    }

    void stream_wait_event(std::uintptr_t s, std::uintptr_t e, int device) override
    {
        device_guard guard(device);
        check(cudaStreamWaitEvent(to_stream(s), to_event(e), 0), "cudaStreamWaitEvent");
    }
};

} // namespace

#else // !SPEAD2GPU_HAVE_CUDA

device_guard::device_guard(int)
{
    throw gpu_unavailable(probe().reason);
}

device_guard::~device_guard() = default;

std::size_t device_total_memory(int)
{
    return 0;
}

std::string device_name(int)
{
    return "";
}

int device_compute_capability(int)
{
    return 0;
}

namespace
{

[[noreturn]] void no_cuda(const char *what)
{
    throw gpu_unavailable(std::string(what) + " needs a usable GPU: " + probe().reason);
}

/// Without CUDA: nothing can be created, so only require() and the no-throw members are ever reached.
class cuda_impl final : public runtime
{
public:
    bool emulated() const override { return false; }
    void require(const char *what, int device) const override { require_gpu(what, device); }
    void bind_thread(int) override { no_cuda("selecting a CUDA device"); }
    allocation allocate(memory_kind, std::size_t, int) override { no_cuda("GPU memory"); }
    void deallocate(memory_kind, void *, int) noexcept override {}
    void memcpy_async(std::uintptr_t, std::uintptr_t, std::size_t, std::uintptr_t) override
    {
        no_cuda("cudaMemcpyAsync");
    }
    void memset_async(std::uintptr_t, int, std::size_t, std::uintptr_t) override { no_cuda("cudaMemsetAsync"); }
    std::uintptr_t create_stream(int) override { no_cuda("a CUDA stream"); }
    void destroy_stream(std::uintptr_t, int) noexcept override {}
    void synchronize_stream(std::uintptr_t) override { no_cuda("cudaStreamSynchronize"); }
    void synchronize_device(int) override { no_cuda("cudaDeviceSynchronize"); }
    std::uintptr_t create_event(int, bool) override { no_cuda("a CUDA event"); }
    void destroy_event(std::uintptr_t, int) noexcept override {}
    void record_event(std::uintptr_t, std::uintptr_t, int) override { no_cuda("cudaEventRecord"); }
    bool query_event(std::uintptr_t) override { no_cuda("cudaEventQuery"); }
    void synchronize_event(std::uintptr_t) override { no_cuda("cudaEventSynchronize"); }
    void stream_wait_event(std::uintptr_t, std::uintptr_t, int) override { no_cuda("cudaStreamWaitEvent"); }
};

} // namespace

#endif

const std::shared_ptr<runtime> &cuda_runtime()
{
    // Deliberately leaked: buffers freed during interpreter exit must still find it.
    static auto *rt = new std::shared_ptr<runtime>(std::make_shared<cuda_impl>());
    return *rt;
}

} // namespace spead2gpu::gpu
