/**
 * @file gpu_buffer.cpp
 * DLPack and __cuda_array_interface__ export of gpu.Buffer (see gpu_buffer.h).
 */
#include "bindings/gpu_buffer.h"
#include <cstring>

namespace spead2gpu::gpu
{

namespace
{

// DLPack ABI (0.8 legacy "dltensor" and 1.x "dltensor_versioned" capsules), written out here.
struct DLDevice
{
    std::int32_t device_type;
    std::int32_t device_id;
};
struct DLDataType
{
    std::uint8_t code;
    std::uint8_t bits;
    std::uint16_t lanes;
};
struct DLTensor
{
    void *data;
    DLDevice device;
    std::int32_t ndim;
    DLDataType dtype;
    std::int64_t *shape;
    std::int64_t *strides;
    std::uint64_t byte_offset;
};
struct DLManagedTensor
{
    DLTensor dl_tensor;
    void *manager_ctx;
    void (*deleter)(DLManagedTensor *self);
};
constexpr std::int32_t kDLCPU = 1, kDLCUDA = 2, kDLCUDAHost = 3;
constexpr std::uint8_t kDLUInt = 1;

// DLPack 1.x: the versioned tensor of "dltensor_versioned" capsules.
struct DLPackVersion
{
    std::uint32_t major;
    std::uint32_t minor;
};
struct DLManagedTensorVersioned
{
    DLPackVersion version;
    void *manager_ctx;
    void (*deleter)(DLManagedTensorVersioned *self);
    std::uint64_t flags; ///< 0: writable, not a copy
    DLTensor dl_tensor;
};

/// One export: the tensor (either ABI) and what keeps its memory alive.
struct dlpack_context
{
    DLManagedTensor legacy;
    DLManagedTensorVersioned versioned;
    std::int64_t shape[1];
    std::shared_ptr<buffer> keepalive; ///< no GIL needed to release
};

void dlpack_deleter(DLManagedTensor *self)
{
    delete static_cast<dlpack_context *>(self->manager_ctx);
}

void dlpack_versioned_deleter(DLManagedTensorVersioned *self)
{
    delete static_cast<dlpack_context *>(self->manager_ctx);
}

/// Capsule destructors: a capsule still under its original name was never consumed, so we own it.
void dlpack_capsule_destructor(PyObject *capsule)
{
    if (PyCapsule_IsValid(capsule, "dltensor"))
    {
        auto *t = static_cast<DLManagedTensor *>(PyCapsule_GetPointer(capsule, "dltensor"));
        if (t && t->deleter)
            t->deleter(t);
    }
}

void dlpack_versioned_capsule_destructor(PyObject *capsule)
{
    if (PyCapsule_IsValid(capsule, "dltensor_versioned"))
    {
        auto *t = static_cast<DLManagedTensorVersioned *>(PyCapsule_GetPointer(capsule, "dltensor_versioned"));
        if (t && t->deleter)
            t->deleter(t);
    }
}

/**
 * Where a consumer finds @a b's memory. Pinned and mapped memory is host
 * memory the GPU can also reach (under unified virtual addressing, which
 * every 64-bit CUDA platform has, its device address is its host address):
 * kDLCUDAHost, which numpy accepts. An emulated GPU's memory is kDLCPU.
 */
DLDevice dlpack_device(const buffer_view &b)
{
    if (b.mem->emulated())
        return {kDLCPU, 0};
    switch (b.kind())
    {
    case memory_kind::host:
        return {kDLCPU, 0};
    case memory_kind::pinned:
    case memory_kind::mapped:
        return {kDLCUDAHost, 0};
    default:
        return {kDLCUDA, b.mem->device()};
    }
}

/// Whether @a b can be exported as @a want (a device other than dlpack_device(b) that names the same memory).
bool exportable_as(const buffer_view &b, DLDevice want)
{
    DLDevice own = dlpack_device(b);
    if (want.device_type == own.device_type && want.device_id == own.device_id)
        return true;
    if (!host_addressable(b.kind()) && !b.mem->emulated())
        return false;
    if (want.device_type == kDLCPU && want.device_id == 0)
        return true; // any host-addressable memory can be read as plain host memory
    // mapped memory as device memory, for CUDA consumers that do not take kDLCUDAHost
    return b.kind() == memory_kind::mapped && !b.mem->emulated() && want.device_type == kDLCUDA &&
        want.device_id == b.mem->device();
}

} // namespace

std::pair<int, int> dlpack_device_of(const buffer_view &b)
{
    DLDevice d = dlpack_device(b);
    return {d.device_type, d.device_id};
}

void stream_wait_stream(const std::shared_ptr<runtime> &rt, std::uintptr_t consumer, std::uintptr_t producer,
                        int device)
{
    if (consumer == producer)
        return;
    event ev(device, false, rt);
    ev.record(producer);
    ev.wait_on(consumer);
}

static std::uintptr_t stream_handle(const py::object &s)
{
    if (s.is_none())
        return 0;
    return s.cast<std::uintptr_t>();
}

py::object dlpack(buffer_view &b, py::object stream, bool versioned, py::object dl_device)
{
    if (!stream.is_none() && stream.cast<std::intptr_t>() == 0)
        throw py::value_error("__dlpack__: stream=0 is not allowed by DLPack (it is ambiguous); pass None or 1 for "
                              "the legacy default stream, 2 for the per-thread default stream, or a stream handle");
    DLDevice device = dlpack_device(b);
    if (!dl_device.is_none())
    {
        auto want = dl_device.cast<std::pair<int, int>>();
        DLDevice w{want.first, want.second};
        if (!exportable_as(b, w))
            throw py::buffer_error("spead2gpu.gpu.Buffer.__dlpack__: memory kind '" + std::string(kind_name(b.kind())) +
                                   "' cannot be exported to DLPack device (" + std::to_string(want.first) + ", " +
                                   std::to_string(want.second) + ") without a copy");
        device = w;
    }
    if (!b.stream.is_none() && device.device_type == kDLCUDA && !b.mem->emulated())
    {
        // DLPack: None means the legacy default stream, -1 means "no synchronisation".
        std::intptr_t consumer = stream.is_none() ? 1 : stream.cast<std::intptr_t>();
        if (consumer != -1)
            stream_wait_stream(b.mem->rt(), std::uintptr_t(consumer), stream_handle(b.stream), b.mem->device());
    }
    auto *ctx = new dlpack_context();
    ctx->keepalive = b.mem;
    ctx->shape[0] = std::int64_t(b.size);
    DLTensor &t = versioned ? ctx->versioned.dl_tensor : ctx->legacy.dl_tensor;
    t.device = device;
    t.data = reinterpret_cast<void *>(device.device_type == kDLCUDA ? b.device_address() : b.host_address());
    t.ndim = 1;
    t.dtype = DLDataType{kDLUInt, 8, 1};
    t.shape = ctx->shape;
    t.strides = nullptr;
    t.byte_offset = 0;
    PyObject *cap;
    if (versioned)
    {
        ctx->versioned.version = DLPackVersion{1, 0};
        ctx->versioned.manager_ctx = ctx;
        ctx->versioned.deleter = dlpack_versioned_deleter;
        ctx->versioned.flags = 0;
        cap = PyCapsule_New(&ctx->versioned, "dltensor_versioned", dlpack_versioned_capsule_destructor);
    }
    else
    {
        ctx->legacy.manager_ctx = ctx;
        ctx->legacy.deleter = dlpack_deleter;
        cap = PyCapsule_New(&ctx->legacy, "dltensor", dlpack_capsule_destructor);
    }
    if (!cap)
    {
        delete ctx;
        throw py::error_already_set();
    }
    return py::reinterpret_steal<py::object>(cap);
}

py::dict cuda_array_interface(const buffer_view &b)
{
    if (b.mem->emulated())
        throw py::attribute_error("__cuda_array_interface__: the memory belongs to an emulated GPU (it is host "
                                  "memory: use the buffer protocol or __dlpack__)");
    if (!gpu_addressable(b.kind()))
        throw py::attribute_error(std::string("__cuda_array_interface__: memory kind '") + kind_name(b.kind()) +
                                  "' is not addressable by GPU kernels (use 'mapped' or 'device')");
    py::dict d;
    d["shape"] = py::make_tuple(b.size);
    d["typestr"] = "|u1";
    d["data"] = py::make_tuple(b.device_address(), false);
    d["version"] = 3;
    d["strides"] = py::none();
    py::object s = b.stream;
    if (!s.is_none() && s.cast<std::uintptr_t>() == 0)
        s = py::int_(1); // CAI v3: 1 is the legacy default stream (0 is not allowed)
    d["stream"] = s;
    return d;
}

} // namespace spead2gpu::gpu
