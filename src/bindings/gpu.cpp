/**
 * Bindings for GPU ingest (submodule spead2gpu._spead2.gpu): runtime
 * detection, Buffer (buffer protocol / __cuda_array_interface__ / DLPack),
 * MemoryAllocator, the chunk pipeline and its chunk stream / group, and the
 * first-step kernels. The pure-Python layer is python/spead2gpu/gpu.
 */
#include <cstring>
#include "bindings/chunk_config.h"
#include "bindings/gpu_buffer.h"
#include "bindings/py_common.h"
#include "gpu/emulated_runtime.h"
#include "gpu/memory.h"
#include "gpu/pipeline.h"
#include "gpu/kernels.h"
#include "common/logging.h"
#include "recv/chunk/chunk.h"
#include "recv/chunk/group.h"
#include "recv/chunk/layout.h"
#include "recv/chunk/chunk_ring_stream.h"
#include "common/thread_pool.h"

using namespace pybind11::literals;

namespace spead2gpu::gpu
{

namespace
{

// ---------------------------------------------------------------------------
// Memory kinds
// ---------------------------------------------------------------------------

/// The runtime an `emulator=` argument names: the emulated GPU, or CUDA for None.
std::shared_ptr<runtime> runtime_of(const py::object &emulator)
{
    if (emulator.is_none())
        return cuda_runtime();
    return emulator.cast<std::shared_ptr<emulated_runtime>>();
}

/// Resolve a kind name; "auto" becomes @a gpu_choice if a GPU (or @a rt emulated) is usable, else host.
std::pair<memory_kind, std::string> resolve_kind(const std::string &name, memory_kind gpu_choice,
                                                 const std::shared_ptr<runtime> &rt)
{
    if (name == "auto")
    {
        if (rt->emulated())
            return {gpu_choice, ""};
        const auto &st = probe();
        if (st.available)
            return {gpu_choice, ""};
        return {memory_kind::host, st.reason};
    }
    return {parse_kind(name), ""};
}

// ---------------------------------------------------------------------------
// Chunk stream configuration from the Python ChunkStreamConfig
// ---------------------------------------------------------------------------

/// The C++ chunk config of a recv.ChunkStreamConfig (its placement parsed once, by set_place).
const recv::chunk_stream_config &to_chunk_config(const py::object &cfg)
{
    const auto &c = cfg.cast<const recv::py_chunk_stream_config &>();
    if (!c.config.get_place() && !c.config.get_layout())
        throw py::value_error("chunk_stream_config.place is not set");
    return c.config;
}

// ---------------------------------------------------------------------------
// Chunks handed to Python, streams and groups
// ---------------------------------------------------------------------------

/// A chunk held by the consumer; released explicitly or when garbage collected.
struct held_chunk
{
    std::shared_ptr<chunk_pipeline> pipeline;
    std::unique_ptr<pipeline_chunk> c;
    std::int64_t chunk_id = -1;
    std::uint64_t stream_id = 0;
    std::size_t slot = 0;
    /// The stream the consumer said it would use (get(stream)): a chunk dropped unreleased is released on it.
    std::uintptr_t release_stream = 0;

    held_chunk(std::shared_ptr<chunk_pipeline> p, std::unique_ptr<pipeline_chunk> &&ch)
        : pipeline(std::move(p)), c(std::move(ch)), chunk_id(c->chunk_id), stream_id(c->stream_id), slot(c->slot)
    {
    }
    ~held_chunk()
    {
        // Dropped without release: order the recycle after the stream it was handed out for.
        if (c)
        {
            try
            {
                // release() may wait for an event (after stop()): never with the GIL held.
                if (PyGILState_Check())
                {
                    py::gil_scoped_release nogil;
                    pipeline->release(std::move(c), true, release_stream);
                }
                else
                    pipeline->release(std::move(c), true, release_stream);
            }
            catch (std::exception &e)
            {
                log_warning(std::string("spead2gpu: releasing a dropped chunk failed: ") + e.what());
            }
        }
    }
    void check() const
    {
        if (!c)
            throw py::value_error("the chunk has been released");
    }
};

class gpu_chunk_stream : public recv::chunk_ring_stream
{
public:
    std::shared_ptr<chunk_pipeline> pipeline;
    py::object place_keepalive;

    gpu_chunk_stream(std::shared_ptr<thread_pool> pool, const recv::stream_config &config,
                     const recv::chunk_stream_config &chunk_config, std::shared_ptr<chunk_pipeline> p, py::object place)
        : recv::chunk_ring_stream(std::move(pool), config, chunk_config, p->network_data_ring(),
                                  p->network_free_ring()),
          pipeline(std::move(p)), place_keepalive(std::move(place))
    {
    }

    ~gpu_chunk_stream() override
    {
        {
            py::gil_scoped_release release;
            stop();
        }
        take_graveyard();
    }
};

class gpu_chunk_stream_group : public recv::chunk_stream_group
{
public:
    std::shared_ptr<chunk_pipeline> pipeline;
    std::vector<py::object> place_keepalive;

    gpu_chunk_stream_group(const recv::chunk_stream_group_config &config, std::shared_ptr<chunk_pipeline> p)
        : recv::chunk_stream_group(config, p->network_data_ring(), p->network_free_ring()), pipeline(std::move(p))
    {
    }

    ~gpu_chunk_stream_group() override
    {
        {
            py::gil_scoped_release release;
            stop();
        }
        take_graveyard();
    }
};

py::dict pipeline_stats(const chunk_pipeline &p)
{
    const auto &c = p.get_counters();
    py::dict d;
    d["chunks_delivered"] = c.chunks_delivered.load();
    d["chunks_released"] = c.chunks_released.load();
    d["chunks_copied"] = c.chunks_copied.load();
    d["bytes_copied"] = c.bytes_copied.load();
    d["copy_waits"] = c.copy_waits.load();
    d["copy_wait_ns"] = c.copy_wait_ns.load();
    d["release_event_waits"] = c.release_event_waits.load();
    d["staging_event_waits"] = c.staging_event_waits.load();
    return d;
}

class py_gpu_allocator : public gpu_memory_allocator
{
public:
    using gpu_memory_allocator::gpu_memory_allocator;
    std::string fallback_reason;
};

py::object wrap_popped(const std::shared_ptr<chunk_pipeline> &p, std::unique_ptr<pipeline_chunk> &&c)
{
    return py::cast(std::make_unique<held_chunk>(p, std::move(c)));
}

void check_pipeline_error(chunk_pipeline &p)
{
    std::string err = p.error();
    if (!err.empty())
        throw cuda_error("the GPU copy pipeline failed: " + err);
}

} // namespace

void register_gpu(py::module_ &parent)
{
    py::module_ m = parent.def_submodule("gpu", "GPU ingest: memory kinds, GPU chunk streams, kernels");
    static py::exception<gpu_unavailable> unavailable_exc(m, "GpuUnavailableError", PyExc_RuntimeError);
    static py::exception<cuda_error> cuda_exc(m, "CudaError", PyExc_RuntimeError);
    py::register_exception_translator(
        [](std::exception_ptr p)
        {
            try
            {
                if (p)
                    std::rethrow_exception(p);
            }
            catch (const gpu_unavailable &e)
            {
                py::set_error(unavailable_exc, e.what());
            }
            catch (const cuda_error &e)
            {
                py::set_error(cuda_exc, e.what());
            }
        });

    m.def("compiled_with_cuda", &compiled_with_cuda, "Whether the CUDA sources were compiled (nvcc at build time)");
    m.def("available", [] { return probe().available; }, "Whether a usable GPU exists");
    m.def(
        "unavailable_reason",
        []
        {
            const auto &st = probe();
            return st.available ? py::object(py::none()) : py::object(py::str(st.reason));
        },
        "Why no GPU is usable (None when one is)");
    m.def("device_count", [] { return probe().device_count; });
    m.def("driver_version", [] { return probe().driver_version; });
    m.def("runtime_version", [] { return probe().runtime_version; });
    m.def("device_name", &device_name, "device"_a = 0);
    m.def("device_total_memory", &device_total_memory, "device"_a = 0);
    m.def("device_compute_capability", &device_compute_capability, "device"_a = 0,
          "Compute capability as (major, minor) packed into major * 10 + minor (0 without a GPU)");
    m.def(
        "_present_but_unusable", [] { return probe().present_but_unusable; },
        "Whether a GPU or driver is present but cannot be used (unavailable_reason says why)");
    m.def(
        "_stream_wait_stream", [](std::uintptr_t consumer, std::uintptr_t producer, int device, py::object emulator)
        { stream_wait_stream(runtime_of(emulator), consumer, producer, device); }, "consumer"_a, "producer"_a,
        "device"_a = 0, "emulator"_a = py::none());
    m.def(
        "_stream_synchronize",
        [](std::uintptr_t stream, py::object emulator)
        {
            auto rt = runtime_of(emulator);
            py::gil_scoped_release nogil;
            rt->synchronize_stream(stream);
        },
        "stream"_a, "emulator"_a = py::none());
    m.def(
        "_device_synchronize",
        [](int device, py::object emulator)
        {
            auto rt = runtime_of(emulator);
            py::gil_scoped_release nogil;
            rt->synchronize_device(device);
        },
        "device"_a = 0, "emulator"_a = py::none());
    m.def(
        "_memcpy_async",
        [](std::uintptr_t dst, std::uintptr_t src, std::size_t size, std::uintptr_t stream, py::object emulator)
        { runtime_of(emulator)->memcpy_async(dst, src, size, stream); }, "dst"_a, "src"_a, "size"_a, "stream"_a,
        "emulator"_a = py::none());
    m.attr("KINDS") = py::make_tuple("host", "pinned", "mapped", "device");

    py::class_<emulated_runtime, std::shared_ptr<emulated_runtime>>(m, "_Emulator",
                                                                    "An emulated GPU (see spead2gpu.gpu.Emulator)")
        .def(py::init(
                 [](double latency, double bytes_per_second, int device_count)
                 {
                     if (!(latency >= 0))
                         throw py::value_error("latency must be >= 0 seconds");
                     if (!(bytes_per_second >= 0))
                         throw py::value_error("bytes_per_second must be >= 0 (0: copies take no time)");
                     if (device_count < 1)
                         throw py::value_error("device_count must be >= 1");
                     emulation_options o;
                     o.latency = std::chrono::nanoseconds(std::int64_t(latency * 1e9));
                     o.bytes_per_second = bytes_per_second;
                     o.device_count = device_count;
                     return std::make_shared<emulated_runtime>(o);
                 }),
             "latency"_a = 200e-6, "bytes_per_second"_a = 0.0, "device_count"_a = 1)
        .def_property_readonly(
            "latency", [](const emulated_runtime &e) { return e.get_options().latency.count() * 1e-9; },
            "Seconds from queuing an operation to its earliest start")
        .def_property_readonly(
            "bytes_per_second", [](const emulated_runtime &e) { return e.get_options().bytes_per_second; },
            "Speed of emulated copies (0: they take no time)")
        .def_property_readonly(
            "device_count", [](const emulated_runtime &e) { return e.get_options().device_count; },
            "Number of emulated devices")
        .def(
            "busy",
            [](emulated_runtime &e, std::uintptr_t stream, double seconds)
            {
                if (!(seconds >= 0))
                    throw py::value_error("seconds must be >= 0");
                e.enqueue_busy(stream, std::chrono::nanoseconds(std::int64_t(seconds * 1e9)));
            },
            "stream"_a, "seconds"_a)
        .def("fail_next", &emulated_runtime::fail_next, "operation"_a, "count"_a = 1)
        .def_property_readonly("operations_run", &emulated_runtime::operations_run,
                               "Operations the emulated GPU has run so far (on every stream)")
        .def("pending", &emulated_runtime::pending, "stream"_a = 0)
        .def("synchronize", &emulated_runtime::synchronize_stream, "stream"_a = 0,
             py::call_guard<py::gil_scoped_release>())
        .def("synchronize_device", &emulated_runtime::synchronize_device, "device"_a = 0,
             py::call_guard<py::gil_scoped_release>());

    py::class_<event>(m, "_Event", "A CUDA (or emulated) event (timing disabled)")
        .def(py::init([](int device, bool blocking_sync, py::object emulator)
                      { return std::make_unique<event>(device, blocking_sync, runtime_of(emulator)); }),
             "device"_a = 0, "blocking_sync"_a = true, "emulator"_a = py::none())
        .def("record", &event::record, "stream"_a)
        .def("synchronize", &event::synchronize, py::call_guard<py::gil_scoped_release>())
        .def("query", &event::query)
        .def("wait_on", &event::wait_on, "stream"_a);
    py::class_<stream>(m, "_Stream", "A non-blocking CUDA (or emulated) stream owned by spead2gpu")
        .def(py::init([](int device, py::object emulator)
                      { return std::make_unique<stream>(device, runtime_of(emulator)); }),
             "device"_a = 0, "emulator"_a = py::none())
        .def_property_readonly("handle", &stream::handle)
        .def_property_readonly("ptr", &stream::handle)
        .def("synchronize", &stream::synchronize, py::call_guard<py::gil_scoped_release>());

    py::class_<buffer_view>(m, "Buffer", py::buffer_protocol(), py::dynamic_attr(), R"doc(
Memory of one kind: ``host`` (page-aligned), ``pinned`` (cudaHostAlloc), ``mapped``
(pinned and mapped into the GPU's address space) or ``device`` (cudaMalloc); ``auto``
picks ``device`` when a GPU is usable and ``host`` otherwise (``fallback_reason`` says why).

Host-addressable kinds export the buffer protocol (``numpy.frombuffer(buf, dtype)``);
``mapped`` and ``device`` export ``__cuda_array_interface__`` (v3); every kind exports
``__dlpack__`` / ``__dlpack_device__``. The contents start zeroed.
)doc")
        .def(py::init(
                 [](std::size_t nbytes, const std::string &kind, int device, py::object emulator)
                 {
                     auto rt = runtime_of(emulator);
                     auto [k, reason] = resolve_kind(kind, memory_kind::device, rt);
                     if (!reason.empty())
                         log_message(log_level::info,
                                     "spead2gpu.gpu.Buffer: kind 'auto' fell back to 'host': " + reason);
                     buffer_view v;
                     v.mem = std::make_shared<buffer>(nbytes, k, device, rt);
                     {
                         py::gil_scoped_release nogil; // zeroing device memory waits for the GPU
                         v.mem->zero();
                     }
                     v.size = nbytes;
                     v.fallback_reason = reason;
                     return v;
                 }),
             "nbytes"_a, "kind"_a = "auto", "device"_a = 0, "emulator"_a = py::none())
        .def_buffer(
            [](buffer_view &b) -> py::buffer_info
            {
                if (!host_addressable(b.kind()) && !b.mem->emulated())
                    throw std::invalid_argument("memory kind 'device' is not host-addressable: use "
                                                "__cuda_array_interface__ or __dlpack__");
                return py::buffer_info(reinterpret_cast<void *>(b.host_address()), 1,
                                       py::format_descriptor<std::uint8_t>::format(), 1, {py::ssize_t(b.size)},
                                       {py::ssize_t(1)}, false);
            })
        .def_property_readonly("nbytes", [](const buffer_view &b) { return b.size; })
        .def("__len__", [](const buffer_view &b) { return b.size; })
        .def_property_readonly("kind", [](const buffer_view &b) { return kind_name(b.kind()); })
        .def_property_readonly("device", [](const buffer_view &b) { return b.mem->device(); })
        .def_property_readonly(
            "emulated", [](const buffer_view &b) { return b.mem->emulated(); },
            "Whether the memory belongs to an emulated GPU (host memory, whatever its kind)")
        .def_property_readonly(
            "fallback_reason", [](const buffer_view &b)
            { return b.fallback_reason.empty() ? py::object(py::none()) : py::object(py::str(b.fallback_reason)); })
        .def_property_readonly("host_ptr", &buffer_view::host_address, "Host address (0 for 'device')")
        .def_property_readonly("device_ptr", &buffer_view::device_address,
                               "Device address ('mapped' and 'device'; 0 otherwise)")
        .def_property_readonly("ptr", [](const buffer_view &b)
                               { return gpu_addressable(b.kind()) ? b.device_address() : b.host_address(); })
        .def_property(
            "stream", [](const buffer_view &b) { return b.stream; },
            [](buffer_view &b, py::object s)
            {
                if (!s.is_none())
                    s = py::int_(s.cast<std::uintptr_t>());
                b.stream = s;
            },
            "Stream the contents are ordered on (reported as CAI v3 'stream'; None: ready)")
        .def_property_readonly("__cuda_array_interface__", &cuda_array_interface)
        .def(
            "__dlpack__",
            [](buffer_view &b, py::object stream, py::object max_version, py::object dl_device, py::object copy)
            {
                if (!copy.is_none() && copy.cast<bool>())
                    throw py::buffer_error("spead2gpu.gpu.Buffer.__dlpack__ does not copy");
                // DLPack 1.x consumers (numpy >= 2.1, cupy, torch) pass max_version=(major, minor).
                const bool versioned = !max_version.is_none() && max_version.cast<py::tuple>()[0].cast<int>() >= 1;
                return dlpack(b, stream, versioned, dl_device);
            },
            py::kw_only(), "stream"_a = py::none(), "max_version"_a = py::none(), "dl_device"_a = py::none(),
            "copy"_a = py::none())
        .def("__dlpack_device__",
             [](const buffer_view &b)
             {
                 auto d = dlpack_device_of(b);
                 return py::make_tuple(d.first, d.second);
             })
        .def("zero",
             [](buffer_view &b)
             {
                 if (b.offset == 0 && b.size == b.mem->size())
                 {
                     py::gil_scoped_release nogil;
                     b.mem->zero();
                 }
                 else if (b.mem->host_ptr())
                     std::memset(b.mem->host_ptr() + b.offset, 0, b.size);
                 else
                     throw py::value_error("zero() of part of a device buffer is not supported");
             })
        .def("__repr__",
             [](const buffer_view &b)
             {
                 return "<spead2gpu.gpu.Buffer " + std::to_string(b.size) + " bytes, kind '" + kind_name(b.kind()) +
                     "'>";
             });

    py::class_<py_gpu_allocator, memory_allocator, std::shared_ptr<py_gpu_allocator>>(m, "MemoryAllocator", R"doc(
Heap payload allocator of a host-addressable kind (``host``, ``pinned``, ``mapped``;
``auto``: ``pinned`` when a GPU is usable, else ``host``), usable as
``recv.StreamConfig(memory_allocator=...)`` or as the base allocator of a ``MemoryPool``
(recommended: one cudaHostAlloc per heap is slow).
)doc")
        .def(py::init(
                 [](const std::string &kind, int device, std::size_t max_cached_bytes, py::object emulator)
                 {
                     auto rt = runtime_of(emulator);
                     auto [k, reason] = resolve_kind(kind, memory_kind::pinned, rt);
                     if (!reason.empty())
                         log_message(log_level::info,
                                     "spead2gpu.gpu.MemoryAllocator: kind 'auto' fell back to 'host': " + reason);
                     auto a = std::make_shared<py_gpu_allocator>(k, device, rt, max_cached_bytes);
                     a->fallback_reason = reason;
                     return a;
                 }),
             "kind"_a = "auto", "device"_a = 0, "max_cached_bytes"_a = gpu_memory_allocator::default_max_cached,
             "emulator"_a = py::none())
        .def_property_readonly("max_cached_bytes", &py_gpu_allocator::max_cached_bytes)
        .def_property_readonly("cache_hits", &py_gpu_allocator::cache_hits,
                               "Allocations served by reusing a freed buffer")
        .def_property_readonly("cache_misses", &py_gpu_allocator::cache_misses,
                               "Allocations that needed a new buffer (a cudaHostAlloc)")
        .def_property_readonly("kind", [](const py_gpu_allocator &a) { return kind_name(a.kind()); })
        .def_property_readonly("device", &py_gpu_allocator::device)
        .def_property_readonly(
            "fallback_reason", [](const py_gpu_allocator &a)
            { return a.fallback_reason.empty() ? py::object(py::none()) : py::object(py::str(a.fallback_reason)); });

    // --- chunk pipeline -------------------------------------------------------
    py::class_<held_chunk>(m, "_HeldChunk", "A chunk owned by the consumer (see spead2gpu.gpu.Chunk)")
        .def_readonly("chunk_id", &held_chunk::chunk_id)
        .def_readonly("stream_id", &held_chunk::stream_id)
        .def_readonly("slot", &held_chunk::slot)
        .def_property_readonly("released", [](const held_chunk &h) { return !h.c; })
        .def_readwrite("release_stream", &held_chunk::release_stream,
                       "Stream a chunk dropped unreleased is released on (the one given to get())")
        .def(
            "synchronize_ready",
            [](held_chunk &h)
            {
                h.check();
                if (h.c->ready)
                {
                    py::gil_scoped_release nogil;
                    h.c->ready->synchronize();
                }
            },
            "Block until this chunk's copy is done ('device' only; for host readers of an emulated GPU)")
        .def(
            "order_before",
            [](held_chunk &h, std::uintptr_t stream)
            {
                h.check();
                h.pipeline->order_before(*h.c, stream);
            },
            "stream"_a, "Make the stream wait (on the GPU) for this chunk's copy ('device' only)")
        .def(
            "release",
            [](held_chunk &h, bool use_stream, std::uintptr_t stream)
            {
                if (!h.c)
                    return;
                // Taken from the holder with the GIL held (so two threads cannot both release it);
                // released without it, since release() may wait for an event.
                std::unique_ptr<pipeline_chunk> c = std::move(h.c);
                std::shared_ptr<chunk_pipeline> pipeline = h.pipeline;
                py::gil_scoped_release nogil;
                pipeline->release(std::move(c), use_stream, stream);
            },
            "use_stream"_a = true, "stream"_a = 0);

    py::class_<chunk_pipeline, std::shared_ptr<chunk_pipeline>>(
        m, "_ChunkPipeline", "Chunks of one memory kind and their copy/recycle machinery")
        .def(py::init(
                 [](const std::string &kind, int device, std::size_t data_size, std::size_t present_size,
                    std::size_t extra_size, std::size_t n_chunks, std::size_t n_device_chunks, py::object emulator)
                 {
                     chunk_geometry g;
                     g.data_size = data_size;
                     g.present_size = present_size;
                     g.extra_size = extra_size;
                     auto rt = runtime_of(emulator);
                     py::gil_scoped_release release;
                     return std::make_shared<chunk_pipeline>(parse_kind(kind), device, g, n_chunks, n_device_chunks,
                                                             std::move(rt));
                 }),
             "kind"_a, "device"_a, "data_size"_a, "present_size"_a, "extra_size"_a, "n_chunks"_a, "n_device_chunks"_a,
             "emulator"_a = py::none())
        .def_property_readonly("emulated", &chunk_pipeline::emulated)
        .def_property_readonly("kind", [](const chunk_pipeline &p) { return kind_name(p.kind()); })
        .def_property_readonly("device", &chunk_pipeline::device)
        .def_property_readonly("n_chunks", &chunk_pipeline::network_chunks)
        .def_property_readonly("n_device_chunks", &chunk_pipeline::device_chunks)
        .def_property_readonly("consumer_slots", &chunk_pipeline::consumer_slots)
        .def_property_readonly("copy_stream", &chunk_pipeline::copy_stream_handle)
        .def_property_readonly("chunk_bytes", [](const chunk_pipeline &p) { return p.geometry().total(); })
        .def(
            "slot_buffer",
            [](const chunk_pipeline &p, std::size_t slot, const std::string &region)
            {
                const auto &g = p.geometry();
                buffer_view v;
                v.mem = p.slot_memory(slot);
                if (region == "data")
                {
                    v.offset = g.data_offset();
                    v.size = g.data_size;
                }
                else if (region == "present")
                {
                    v.offset = g.present_offset();
                    v.size = g.present_size;
                }
                else if (region == "extra")
                {
                    v.offset = g.extra_offset();
                    v.size = g.extra_size;
                }
                else
                    throw py::value_error("region must be 'data', 'present' or 'extra'");
                return v;
            },
            "slot"_a, "region"_a)
        .def("get",
             [](std::shared_ptr<chunk_pipeline> p)
             {
                 std::unique_ptr<pipeline_chunk> c;
                 try
                 {
                     py::gil_scoped_release release;
                     c = p->pop();
                 }
                 catch (ringbuffer_stopped &)
                 {
                     check_pipeline_error(*p);
                     throw;
                 }
                 return wrap_popped(p, std::move(c));
             })
        .def("get_nowait",
             [](std::shared_ptr<chunk_pipeline> p)
             {
                 std::unique_ptr<pipeline_chunk> c;
                 try
                 {
                     c = p->try_pop();
                 }
                 catch (ringbuffer_stopped &)
                 {
                     check_pipeline_error(*p);
                     throw;
                 }
                 return wrap_popped(p, std::move(c));
             })
        .def_property_readonly("data_fd", [](const chunk_pipeline &p) { return p.output_ring()->data_fd(); })
        .def("qsize", [](const chunk_pipeline &p) { return p.output_ring()->size(); })
        .def("free_chunks", [](const chunk_pipeline &p) { return p.network_free_ring()->size(); })
        .def("stop", &chunk_pipeline::stop, py::call_guard<py::gil_scoped_release>())
        .def("_pump", &chunk_pipeline::pump, "n"_a, "first_id"_a = 0, py::call_guard<py::gil_scoped_release>(),
             "Benchmark hook: feed n chunks without a stream, then end (measures the copy pipeline)")
        .def_property_readonly("error",
                               [](chunk_pipeline &p)
                               {
                                   std::string e = p.error();
                                   return e.empty() ? py::object(py::none()) : py::object(py::str(e));
                               })
        .def_property_readonly("stats", [](const chunk_pipeline &p) { return pipeline_stats(p); });

    py::class_<gpu_chunk_stream, recv::stream>(m, "_ChunkStream",
                                               "Chunk stream filling a _ChunkPipeline (see spead2gpu.gpu.ChunkStream)")
        .def(py::init(
                 [](std::shared_ptr<thread_pool> pool, const recv::stream_config &config,
                    py::object chunk_stream_config, std::shared_ptr<chunk_pipeline> pipeline)
                 {
                     const auto &cc = to_chunk_config(chunk_stream_config);
                     return new gpu_chunk_stream(std::move(pool), config, cc, std::move(pipeline),
                                                 chunk_stream_config.attr("place"));
                 }),
             py::arg("thread_pool").none(false), "config"_a, "chunk_stream_config"_a, "pipeline"_a)
        .def_property_readonly("pipeline", [](const gpu_chunk_stream &s) { return s.pipeline; });

    py::class_<gpu_chunk_stream_group>(
        m, "_ChunkStreamGroup", "Chunk stream group filling a _ChunkPipeline (see spead2gpu.gpu.ChunkStreamGroup)")
        .def(py::init<const recv::chunk_stream_group_config &, std::shared_ptr<chunk_pipeline>>(), "config"_a,
             "pipeline"_a)
        .def_property_readonly("config", &gpu_chunk_stream_group::get_config)
        .def_property_readonly("pipeline", [](const gpu_chunk_stream_group &g) { return g.pipeline; })
        .def(
            "_emplace_back",
            [](gpu_chunk_stream_group &g, std::shared_ptr<thread_pool> pool, const recv::stream_config &config,
               py::object chunk_stream_config) -> recv::chunk_stream_group_member &
            {
                const auto &cc = to_chunk_config(chunk_stream_config);
                auto &member = g.emplace_back(std::move(pool), config, cc);
                g.place_keepalive.push_back(chunk_stream_config.attr("place"));
                return member;
            },
            py::arg("thread_pool").none(false), "config"_a, "chunk_stream_config"_a,
            py::return_value_policy::reference_internal)
        .def("stop", &gpu_chunk_stream_group::stop, py::call_guard<py::gil_scoped_release>())
        .def("__len__", &gpu_chunk_stream_group::size)
        .def(
            "_member",
            [](gpu_chunk_stream_group &g, std::size_t i) -> recv::chunk_stream_group_member &
            {
                if (i >= g.size())
                    throw py::index_error("group member index out of range");
                return g[i];
            },
            py::return_value_policy::reference_internal);

    // --- kernels --------------------------------------------------------------
    m.def(
        "_zero_missing",
        [](std::uintptr_t data, std::uintptr_t present, std::size_t n_heaps, std::size_t heap_bytes,
           std::size_t present_stride, std::uintptr_t stream, int device)
        {
            require_gpu("zero_missing", device);
            device_guard guard(device);
            launch_zero_missing(data, present, n_heaps, heap_bytes, present_stride, stream);
        },
        "data"_a, "present"_a, "n_heaps"_a, "heap_bytes"_a, "present_stride"_a, "stream"_a, "device"_a = 0);
    m.def(
        "_unpack",
        [](const std::string &fmt, std::uintptr_t src, std::uintptr_t dst, std::size_t n, std::uintptr_t stream,
           int device)
        {
            if (!compiled_with_cuda() || !probe().available)
                require_gpu(("unpack_" + fmt).c_str(), device);
            device_guard guard(device);
            if (fmt == "int8")
                launch_unpack_int8(src, dst, n, stream);
            else if (fmt == "int4")
                launch_unpack_int4(src, dst, n, stream);
            else if (fmt == "int10")
                launch_unpack_int10(src, dst, n, stream);
            else if (fmt == "cint8")
                launch_unpack_cint8(src, dst, n, stream);
            else
                throw py::value_error("unknown sample format " + fmt);
        },
        "fmt"_a, "src"_a, "dst"_a, "n"_a, "stream"_a, "device"_a = 0);
}

} // namespace spead2gpu::gpu
