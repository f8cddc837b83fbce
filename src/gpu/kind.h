/**
 * @file kind.h
 * Memory kinds and the two GPU error types: the vocabulary every other GPU
 * header uses, with no CUDA types.
 */
#pragma once

#include <stdexcept>
#include <string>

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
/// Whether the host can read and write the memory (on a real GPU).
inline bool host_addressable(memory_kind k)
{
    return k != memory_kind::device;
}
/// Whether GPU kernels can address the memory directly.
inline bool gpu_addressable(memory_kind k)
{
    return k == memory_kind::mapped || k == memory_kind::device;
}
/// Whether the kind needs a GPU runtime (real or emulated).
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

/// Raised for a CUDA error (message: what failed and CUDA's error text), or an emulated one.
class cuda_error : public std::runtime_error
{
public:
    using std::runtime_error::runtime_error;
};

} // namespace spead2gpu::gpu
