/**
 * @file gpu_buffer.h
 * The Python gpu.Buffer (a byte range of one allocation) and its exports to
 * other libraries: DLPack capsules and __cuda_array_interface__ (v3, with the
 * stream the contents are ordered on). Used by gpu.cpp for Buffer and for the
 * chunks the pipeline hands out.
 */
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include "bindings/py_common.h"
#include "gpu/memory.h"

namespace spead2gpu::gpu
{

/// A byte range of one allocation, as Python sees it (gpu.Buffer).
struct buffer_view
{
    std::shared_ptr<buffer> mem;
    std::size_t offset = 0;
    std::size_t size = 0;
    py::object stream = py::none(); ///< stream the contents are ordered on (CAI v3 "stream")
    std::string fallback_reason; ///< why "auto" chose host memory

    memory_kind kind() const { return mem->kind(); }
    std::uintptr_t host_address() const
    {
        return mem->host_ptr() ? reinterpret_cast<std::uintptr_t>(mem->host_ptr()) + offset : 0;
    }
    std::uintptr_t device_address() const { return mem->device_ptr() ? mem->device_ptr() + offset : 0; }
};

/// Make @a consumer wait for the work queued so far on @a producer (no host sync), streams of @a rt.
void stream_wait_stream(const std::shared_ptr<runtime> &rt, std::uintptr_t consumer, std::uintptr_t producer,
                        int device);
/// (DLPack device type, device id) of @a b: where a consumer finds the memory.
std::pair<int, int> dlpack_device_of(const buffer_view &b);
/**
 * A DLPack capsule of @a b for a consumer on @a stream (the __dlpack__
 * protocol): "dltensor_versioned" (DLPack 1.0, writable) if @a versioned,
 * i.e. the consumer passed max_version >= (1, 0), else the legacy
 * "dltensor". stream=0 is refused (DLPack forbids it as ambiguous).
 * @a dl_device (None or a (type, id) pair) asks for another device that
 * names the same memory: kDLCPU for any host-addressable kind, kDLCUDA for
 * mapped; anything else raises BufferError (no copies are made).
 */
py::object dlpack(buffer_view &b, py::object stream, bool versioned, py::object dl_device);
/// The __cuda_array_interface__ dict of @a b (a flat uint8 array).
py::dict cuda_array_interface(const buffer_view &b);

} // namespace spead2gpu::gpu
