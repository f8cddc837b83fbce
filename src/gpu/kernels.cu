/**
 * @file kernels.cu
 * First-step kernels (see kernels.h). Kept small and template-free so that
 * nvcc's share of the build stays short. Each kernel is a grid-stride loop;
 * the vectorised variants (4 samples per thread, float4 stores) are used when
 * the pointers are suitably aligned, the scalar ones otherwise.
 */
#include "gpu/kernels.h"
#include "gpu/kind.h"
#include <algorithm>
#include <cuda_runtime.h>
#include <string>

namespace spead2gpu::gpu
{

namespace
{

constexpr unsigned block_size = 256;

inline unsigned grid_for(std::size_t work)
{
    std::size_t blocks = (work + block_size - 1) / block_size;
    return unsigned(std::max<std::size_t>(1, std::min<std::size_t>(blocks, 65536)));
}

inline cudaStream_t to_stream(std::uintptr_t s)
{
    return reinterpret_cast<cudaStream_t>(s);
}

std::string error_text(cudaError_t err)
{
    return std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
}

/**
 * Launch @a kernel on @a stream and check the launch. An error already
 * pending from earlier work is reported as that, before launching, rather
 * than blamed on this kernel (cudaGetLastError returns the last error of any
 * call on this thread).
 */
template <typename... Params, typename... Args>
void launch(const char *name, void (*kernel)(Params...), dim3 grid, std::uintptr_t stream, Args... args)
{
    cudaError_t pending = cudaGetLastError();
    if (pending != cudaSuccess)
        throw cuda_error(std::string("not launching ") + name +
                         ": an earlier CUDA error is pending: " + error_text(pending));
    kernel<<<grid, block_size, 0, to_stream(stream)>>>(args...);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess)
        throw cuda_error(std::string(name) + " launch failed: " + error_text(err));
}

/// A 4-bit two's-complement value (0..15) as an int, without shifting a negative number.
__device__ __forceinline__ int sext4(unsigned v)
{
    return int(v ^ 0x8u) - 0x8;
}

__device__ __forceinline__ int sext10(unsigned v)
{
    return int(v ^ 0x200u) - 0x200;
}

__global__ void zero_missing_kernel(unsigned char *data, const unsigned char *present, std::size_t n_heaps,
                                    std::size_t heap_bytes, std::size_t stride)
{
    const std::size_t nthreads = std::size_t(gridDim.x) * blockDim.x;
    const std::size_t tid = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
    for (std::size_t h = blockIdx.y; h < n_heaps; h += gridDim.y)
    {
        if (present[h * stride])
            continue;
        unsigned char *p = data + h * heap_bytes;
        std::size_t head = (16 - (reinterpret_cast<std::uintptr_t>(p) & 15)) & 15;
        if (head > heap_bytes)
            head = heap_bytes;
        const std::size_t nvec = (heap_bytes - head) / 16;
        const std::size_t tail = head + nvec * 16;
        for (std::size_t i = tid; i < head; i += nthreads)
            p[i] = 0;
        uint4 *v = reinterpret_cast<uint4 *>(p + head);
        for (std::size_t i = tid; i < nvec; i += nthreads)
            v[i] = make_uint4(0, 0, 0, 0);
        for (std::size_t i = tail + tid; i < heap_bytes; i += nthreads)
            p[i] = 0;
    }
}

// int8 -> float32; 4 samples per thread (src 4-aligned, dst 16-aligned).
__global__ void unpack_int8_vec(const char4 *src, float4 *dst, std::size_t n4)
{
    for (std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n4;
         i += std::size_t(gridDim.x) * blockDim.x)
    {
        char4 c = src[i];
        dst[i] = make_float4(c.x, c.y, c.z, c.w);
    }
}

__global__ void unpack_int8_scalar(const signed char *src, float *dst, std::size_t begin, std::size_t n)
{
    for (std::size_t i = begin + std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += std::size_t(gridDim.x) * blockDim.x)
        dst[i] = src[i];
}

// int4 -> float32; 2 bytes (4 samples) per thread (src 2-aligned, dst 16-aligned).
__global__ void unpack_int4_vec(const unsigned short *src, float4 *dst, std::size_t n4)
{
    for (std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n4;
         i += std::size_t(gridDim.x) * blockDim.x)
    {
        // Little-endian load: the first byte is the low half of the short.
        // Each byte holds two samples, the high nibble first.
        unsigned w = src[i];
        dst[i] = make_float4(float(sext4((w >> 4) & 0xfu)), float(sext4(w & 0xfu)), float(sext4((w >> 12) & 0xfu)),
                             float(sext4((w >> 8) & 0xfu)));
    }
}

__global__ void unpack_int4_scalar(const unsigned char *src, float *dst, std::size_t begin, std::size_t n)
{
    for (std::size_t i = begin + std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += std::size_t(gridDim.x) * blockDim.x)
    {
        unsigned b = src[i / 2];
        dst[i] = float(sext4((i & 1) ? b & 0xfu : b >> 4)); // the high nibble first
    }
}

// 10-bit big-endian packed -> float32: one 5-byte group (4 samples) per thread.
__global__ void unpack_int10_kernel(const unsigned char *src, float *dst, std::size_t groups, bool vec)
{
    for (std::size_t g = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; g < groups;
         g += std::size_t(gridDim.x) * blockDim.x)
    {
        const unsigned char *p = src + 5 * g;
        unsigned long long v = (static_cast<unsigned long long>(p[0]) << 32) |
            (static_cast<unsigned long long>(p[1]) << 24) | (static_cast<unsigned long long>(p[2]) << 16) |
            (static_cast<unsigned long long>(p[3]) << 8) | static_cast<unsigned long long>(p[4]);
        float s0 = float(sext10(unsigned(v >> 30) & 0x3ffu));
        float s1 = float(sext10(unsigned(v >> 20) & 0x3ffu));
        float s2 = float(sext10(unsigned(v >> 10) & 0x3ffu));
        float s3 = float(sext10(unsigned(v) & 0x3ffu));
        if (vec)
            reinterpret_cast<float4 *>(dst)[g] = make_float4(s0, s1, s2, s3);
        else
        {
            dst[4 * g] = s0;
            dst[4 * g + 1] = s1;
            dst[4 * g + 2] = s2;
            dst[4 * g + 3] = s3;
        }
    }
}

inline bool aligned(std::uintptr_t p, std::uintptr_t a)
{
    return (p & (a - 1)) == 0;
}

} // namespace

bool kernels_loadable(int device, std::string &why)
{
    int previous = -1;
    cudaGetDevice(&previous);
    cudaSetDevice(device);
    cudaFuncAttributes attr;
    cudaError_t err = cudaFuncGetAttributes(&attr, zero_missing_kernel);
    if (previous >= 0 && previous != device)
        cudaSetDevice(previous);
    if (err == cudaSuccess)
        return true;
    cudaGetLastError();
    int major = 0, minor = 0;
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device);
    cudaGetLastError();
    why = "spead2gpu's kernels have no image for CUDA device " + std::to_string(device) + " (compute capability " +
        std::to_string(major) + "." + std::to_string(minor) + "): " + error_text(err) +
        "; rebuild with -DCMAKE_CUDA_ARCHITECTURES including " + std::to_string(major * 10 + minor);
    return false;
}

void launch_zero_missing(std::uintptr_t data, std::uintptr_t present, std::size_t n_heaps, std::size_t heap_bytes,
                         std::size_t present_stride, std::uintptr_t stream)
{
    if (n_heaps == 0 || heap_bytes == 0)
        return;
    dim3 grid(unsigned(std::min<std::size_t>((heap_bytes / 16 + block_size - 1) / block_size + 1, 64)),
              unsigned(std::min<std::size_t>(n_heaps, 65535)));
    launch("zero_missing", zero_missing_kernel, grid, stream, reinterpret_cast<unsigned char *>(data),
           reinterpret_cast<const unsigned char *>(present), n_heaps, heap_bytes, present_stride);
}

void launch_unpack_int8(std::uintptr_t src, std::uintptr_t dst, std::size_t n, std::uintptr_t stream)
{
    if (n == 0)
        return;
    std::size_t begin = 0;
    if (aligned(src, 4) && aligned(dst, 16) && n >= 4)
    {
        std::size_t n4 = n / 4;
        launch("unpack_int8", unpack_int8_vec, grid_for(n4), stream, reinterpret_cast<const char4 *>(src),
               reinterpret_cast<float4 *>(dst), n4);
        begin = n4 * 4;
    }
    if (begin < n)
    {
        launch("unpack_int8", unpack_int8_scalar, grid_for(n - begin), stream,
               reinterpret_cast<const signed char *>(src), reinterpret_cast<float *>(dst), begin, n);
    }
}

void launch_unpack_int4(std::uintptr_t src, std::uintptr_t dst, std::size_t n, std::uintptr_t stream)
{
    if (n == 0)
        return;
    std::size_t begin = 0;
    if (aligned(src, 2) && aligned(dst, 16) && n >= 4)
    {
        std::size_t n4 = n / 4;
        launch("unpack_int4", unpack_int4_vec, grid_for(n4), stream, reinterpret_cast<const unsigned short *>(src),
               reinterpret_cast<float4 *>(dst), n4);
        begin = n4 * 4;
    }
    if (begin < n)
    {
        launch("unpack_int4", unpack_int4_scalar, grid_for(n - begin), stream,
               reinterpret_cast<const unsigned char *>(src), reinterpret_cast<float *>(dst), begin, n);
    }
}

void launch_unpack_int10(std::uintptr_t src, std::uintptr_t dst, std::size_t n, std::uintptr_t stream)
{
    std::size_t groups = n / 4;
    if (groups == 0)
        return;
    launch("unpack_int10", unpack_int10_kernel, grid_for(groups), stream, reinterpret_cast<const unsigned char *>(src),
           reinterpret_cast<float *>(dst), groups, aligned(dst, 16));
}

void launch_unpack_cint8(std::uintptr_t src, std::uintptr_t dst, std::size_t n, std::uintptr_t stream)
{
    // complex64 is (re, im) float32 pairs: the same as unpacking 2n int8 samples.
    launch_unpack_int8(src, dst, 2 * n, stream);
}

} // namespace spead2gpu::gpu
