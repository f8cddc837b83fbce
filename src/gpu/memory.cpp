/**
 * @file gpu_memory.cpp
 * Host code for GPU memory, streams and events (CUDA runtime API, compiled by
 * the host compiler). Without SPEAD2GPU_HAVE_CUDA every GPU operation raises
 * gpu_unavailable("not compiled with CUDA") and only `host` memory works.
 */
#include "gpu/memory.h"
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <mutex>
#include <new>
#include <string>

#ifdef SPEAD2GPU_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

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

std::size_t page_round(std::size_t size)
{
    constexpr std::size_t page = 4096;
    if (size == 0)
        size = 1;
    return (size + page - 1) & ~(page - 1);
}

#ifdef SPEAD2GPU_HAVE_CUDA
[[noreturn]] void throw_cuda(cudaError_t err, const char *what)
{
    cudaGetLastError(); // clear the sticky-free error state
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
    cudaError_t err = cudaDriverGetVersion(&st.driver_version);
    if (err != cudaSuccess || st.driver_version == 0)
    {
        cudaGetLastError();
        st.reason = "no usable NVIDIA driver (cudaDriverGetVersion reported none)";
        return st;
    }
    int count = 0;
    err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess)
    {
        cudaGetLastError();
        if (err == cudaErrorNoDevice)
            st.reason = "no CUDA device found (cudaErrorNoDevice)";
        else if (err == cudaErrorInsufficientDriver)
            st.reason = "the NVIDIA driver (version " + std::to_string(st.driver_version) +
                ") is older than the CUDA runtime (version " + std::to_string(st.runtime_version) + ")";
        else
            st.reason = std::string("CUDA error: ") + cudaGetErrorName(err) + ": " + cudaGetErrorString(err);
        return st;
    }
    if (count == 0)
    {
        st.reason = "no CUDA device found";
        return st;
    }
    st.device_count = count;
    st.available = true;
    return st;
#endif
}

} // namespace

const gpu_status &probe()
{
    static std::once_flag once;
    static gpu_status status;
    std::call_once(once, [] { status = do_probe(); });
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

device_guard::device_guard(int device)
{
#ifdef SPEAD2GPU_HAVE_CUDA
    check(cudaGetDevice(&previous), "cudaGetDevice");
    if (previous != device)
        check(cudaSetDevice(device), "cudaSetDevice");
    else
        previous = -1;
#else
    throw gpu_unavailable(probe().reason);
#endif
}

device_guard::~device_guard()
{
#ifdef SPEAD2GPU_HAVE_CUDA
    if (previous >= 0)
        cudaSetDevice(previous);
#endif
}

buffer::buffer(std::size_t size, memory_kind kind, int device) : kind_(kind), device_(device), size_(size)
{
    if (kind == memory_kind::host)
    {
        void *p = std::aligned_alloc(4096, page_round(size));
        if (!p)
            throw std::bad_alloc();
        raw_ = p;
        host_ = static_cast<std::uint8_t *>(p);
        return;
    }
    require_gpu((std::string("memory kind '") + kind_name(kind) + "'").c_str(), device);
#ifdef SPEAD2GPU_HAVE_CUDA
    device_guard guard(device);
    std::size_t n = size ? size : 1;
    switch (kind)
    {
    case memory_kind::pinned:
        check(cudaHostAlloc(&raw_, n, cudaHostAllocPortable), "cudaHostAlloc");
        host_ = static_cast<std::uint8_t *>(raw_);
        break;
    case memory_kind::mapped:
    {
        check(cudaHostAlloc(&raw_, n, cudaHostAllocPortable | cudaHostAllocMapped), "cudaHostAlloc(mapped)");
        host_ = static_cast<std::uint8_t *>(raw_);
        void *dptr = nullptr;
        cudaError_t err = cudaHostGetDevicePointer(&dptr, raw_, 0);
        if (err != cudaSuccess)
        {
            cudaFreeHost(raw_);
            throw_cuda(err, "cudaHostGetDevicePointer");
        }
        device_ptr_ = reinterpret_cast<std::uintptr_t>(dptr);
        break;
    }
    case memory_kind::device:
        check(cudaMalloc(&raw_, n), "cudaMalloc");
        device_ptr_ = reinterpret_cast<std::uintptr_t>(raw_);
        break;
    default:
        break;
    }
#endif
}

buffer::~buffer()
{
    if (!raw_)
        return;
    if (kind_ == memory_kind::host)
    {
        std::free(raw_);
        return;
    }
#ifdef SPEAD2GPU_HAVE_CUDA
    // Errors (e.g. the runtime already unloaded at exit) are ignored.
    int prev = -1;
    if (cudaGetDevice(&prev) == cudaSuccess && prev != device_)
        cudaSetDevice(device_);
    if (kind_ == memory_kind::device)
        cudaFree(raw_);
    else
        cudaFreeHost(raw_);
    if (prev >= 0 && prev != device_)
        cudaSetDevice(prev);
    cudaGetLastError();
#endif
}

void buffer::zero()
{
    if (host_)
    {
        std::memset(host_, 0, size_);
        return;
    }
#ifdef SPEAD2GPU_HAVE_CUDA
    device_guard guard(device_);
    check(cudaMemset(raw_, 0, size_), "cudaMemset");
#endif
}

gpu_memory_allocator::gpu_memory_allocator(memory_kind kind, int device) : kind_(kind), device_(device)
{
    if (!host_addressable(kind))
        throw std::invalid_argument(
            "a heap payload allocator needs host-addressable memory ('host', 'pinned' or 'mapped'), not '" +
            std::string(kind_name(kind)) + "'");
    if (needs_gpu(kind))
        require_gpu((std::string("memory kind '") + kind_name(kind) + "'").c_str(), device);
}

memory_allocator::pointer gpu_memory_allocator::allocate(std::size_t size, void *hint)
{
    auto *b = new buffer(size, kind_, device_);
    return make_pointer(b->host_ptr(), b);
}

void gpu_memory_allocator::free(std::uint8_t *ptr, void *user)
{
    delete static_cast<buffer *>(user);
}

// ---------------------------------------------------------------------------
// Events and streams
// ---------------------------------------------------------------------------

#ifdef SPEAD2GPU_HAVE_CUDA

event::event(int device, bool blocking_sync) : device_(device)
{
    require_gpu("a CUDA event", device);
    device_guard guard(device);
    unsigned flags = cudaEventDisableTiming | (blocking_sync ? cudaEventBlockingSync : 0);
    cudaEvent_t e;
    check(cudaEventCreateWithFlags(&e, flags), "cudaEventCreateWithFlags");
    ev = e;
}

event::~event()
{
    if (ev)
    {
        cudaEventDestroy(static_cast<cudaEvent_t>(ev));
        cudaGetLastError();
    }
}

void event::record(std::uintptr_t stream)
{
    device_guard guard(device_);
    check(cudaEventRecord(static_cast<cudaEvent_t>(ev), to_stream(stream)), "cudaEventRecord");
}

void event::synchronize()
{
    check(cudaEventSynchronize(static_cast<cudaEvent_t>(ev)), "cudaEventSynchronize");
}

bool event::query()
{
    cudaError_t err = cudaEventQuery(static_cast<cudaEvent_t>(ev));
    if (err == cudaErrorNotReady)
        return false;
    check(err, "cudaEventQuery");
    return true;
}

void event::wait_on(std::uintptr_t stream)
{
    device_guard guard(device_);
    check(cudaStreamWaitEvent(to_stream(stream), static_cast<cudaEvent_t>(ev), 0), "cudaStreamWaitEvent");
}

stream::stream(int device) : device_(device)
{
    require_gpu("a CUDA stream", device);
    device_guard guard(device);
    cudaStream_t st;
    check(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    s = st;
}

stream::~stream()
{
    if (s)
    {
        cudaStreamDestroy(static_cast<cudaStream_t>(s));
        cudaGetLastError();
    }
}

void stream::synchronize()
{
    check(cudaStreamSynchronize(static_cast<cudaStream_t>(s)), "cudaStreamSynchronize");
}

void memcpy_async(std::uintptr_t dst, std::uintptr_t src, std::size_t size, std::uintptr_t stream)
{
    check(cudaMemcpyAsync(reinterpret_cast<void *>(dst), reinterpret_cast<const void *>(src), size, cudaMemcpyDefault,
                          to_stream(stream)),
          "cudaMemcpyAsync");
}

void stream_synchronize(std::uintptr_t stream)
{
    check(cudaStreamSynchronize(to_stream(stream)), "cudaStreamSynchronize");
}

void device_synchronize(int device)
{
    device_guard guard(device);
    check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
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

#else // !SPEAD2GPU_HAVE_CUDA

[[noreturn]] static void no_cuda(const char *what)
{
    throw gpu_unavailable(std::string(what) + " needs a usable GPU: " + probe().reason);
}

event::event(int device, bool) : device_(device)
{
    no_cuda("a CUDA event");
}
event::~event() = default;
void event::record(std::uintptr_t)
{
    no_cuda("cudaEventRecord");
}
void event::synchronize()
{
    no_cuda("cudaEventSynchronize");
}
bool event::query()
{
    no_cuda("cudaEventQuery");
}
void event::wait_on(std::uintptr_t)
{
    no_cuda("cudaStreamWaitEvent");
}
stream::stream(int device) : device_(device)
{
    no_cuda("a CUDA stream");
}
stream::~stream() = default;
void stream::synchronize()
{
    no_cuda("cudaStreamSynchronize");
}
void memcpy_async(std::uintptr_t, std::uintptr_t, std::size_t, std::uintptr_t)
{
    no_cuda("cudaMemcpyAsync");
}
void stream_synchronize(std::uintptr_t)
{
    no_cuda("cudaStreamSynchronize");
}
void device_synchronize(int)
{
    no_cuda("cudaDeviceSynchronize");
}
std::size_t device_total_memory(int)
{
    return 0;
}
std::string device_name(int)
{
    return "";
}

#endif

} // namespace spead2gpu::gpu
