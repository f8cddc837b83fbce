/**
 * Bindings for the top-level module: constants, exceptions, Flavour,
 * ThreadPool, allocators, InprocQueue, RawDescriptor and logging.
 */
#include <cerrno>
#include <system_error>
#include <thread>
#include <pybind11/functional.h>
#include <pybind11/operators.h>
#include "common/allocator.h"
#include "common/constants.h"
#include "common/descriptor.h"
#include "common/flavour.h"
#include "common/inproc_queue.h"
#include "common/logging.h"
#include "common/memcpy.h"
#include "bindings/py_common.h"
#include "common/ringbuffer.h"
#include "common/thread_pool.h"

using namespace pybind11::literals;

namespace spead2gpu
{

std::shared_ptr<py_buffer_view> request_buffer_view(const py::object &obj, bool writable)
{
    // Ask the exporter itself for a C-contiguous view, so that its own error
    // (e.g. numpy's "ndarray is not C-contiguous", BufferError) propagates.
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    auto *raw = new Py_buffer;
    if (PyObject_GetBuffer(obj.ptr(), raw, flags) != 0)
    {
        delete raw;
        throw py::error_already_set();
    }
    auto *view = new py_buffer_view{py::buffer_info(raw, true)};
    return make_gil_safe(view);
}

namespace
{

/// Forwards core log messages to the "spead2gpu" Python logger from its own thread.
class log_forwarder
{
    ringbuffer<std::pair<int, std::string>> queue{0};
    std::thread thread;

    void run()
    {
        while (true)
        {
            std::pair<int, std::string> msg;
            try
            {
                msg = queue.pop();
            }
            catch (ringbuffer_stopped &)
            {
                return;
            }
            if (!Py_IsInitialized())
                return;
            py::gil_scoped_acquire gil;
            try
            {
                py::module_::import("logging").attr("getLogger")("spead2gpu").attr("log")(msg.first, msg.second);
            }
            catch (py::error_already_set &e)
            {
                e.discard_as_unraisable("spead2gpu logging");
            }
        }
    }

public:
    log_forwarder() : thread([this] { run(); })
    {
        set_log_function(
            [this](log_level level, const std::string &msg)
            {
                try
                {
                    queue.push(std::make_pair(int(level), msg));
                }
                catch (ringbuffer_stopped &)
                {
                }
            });
    }

    void stop()
    {
        set_log_function({});
        queue.stop();
        if (thread.joinable())
        {
            py::gil_scoped_release release;
            thread.join();
        }
    }
};

log_forwarder *forwarder = nullptr;

} // namespace

void register_common(py::module_ &m)
{
    // Exceptions (derive from Exception, as in spead2).
    static py::exception<ringbuffer_stopped> stopped_exc(m, "Stopped");
    static py::exception<ringbuffer_empty> empty_exc(m, "Empty");
    static py::exception<ringbuffer_full> full_exc(m, "Full");
    py::register_exception_translator(
        [](std::exception_ptr p)
        {
            try
            {
                if (p)
                    std::rethrow_exception(p);
            }
            catch (const ringbuffer_stopped &e)
            {
                py::set_error(stopped_exc, e.what());
            }
            catch (const ringbuffer_empty &e)
            {
                py::set_error(empty_exc, e.what());
            }
            catch (const ringbuffer_full &e)
            {
                py::set_error(full_exc, e.what());
            }
            catch (const std::system_error &e)
            {
                py::object err = py::module_::import("builtins").attr("OSError")(e.code().value(), e.what());
                PyErr_SetObject(PyExc_OSError, err.ptr());
            }
        });

#define SPEAD2GPU_CONST(name) m.attr(#name) = py::int_(static_cast<std::uint64_t>(name))
    SPEAD2GPU_CONST(BUG_COMPAT_DESCRIPTOR_WIDTHS);
    SPEAD2GPU_CONST(BUG_COMPAT_SHAPE_BIT_1);
    SPEAD2GPU_CONST(BUG_COMPAT_SWAP_ENDIAN);
    SPEAD2GPU_CONST(BUG_COMPAT_PYSPEAD_0_5_2);
    SPEAD2GPU_CONST(NULL_ID);
    SPEAD2GPU_CONST(HEAP_CNT_ID);
    SPEAD2GPU_CONST(HEAP_LENGTH_ID);
    SPEAD2GPU_CONST(PAYLOAD_OFFSET_ID);
    SPEAD2GPU_CONST(PAYLOAD_LENGTH_ID);
    SPEAD2GPU_CONST(DESCRIPTOR_ID);
    SPEAD2GPU_CONST(STREAM_CTRL_ID);
    SPEAD2GPU_CONST(DESCRIPTOR_NAME_ID);
    SPEAD2GPU_CONST(DESCRIPTOR_DESCRIPTION_ID);
    SPEAD2GPU_CONST(DESCRIPTOR_SHAPE_ID);
    SPEAD2GPU_CONST(DESCRIPTOR_FORMAT_ID);
    SPEAD2GPU_CONST(DESCRIPTOR_ID_ID);
    SPEAD2GPU_CONST(DESCRIPTOR_DTYPE_ID);
    SPEAD2GPU_CONST(CTRL_STREAM_START);
    SPEAD2GPU_CONST(CTRL_DESCRIPTOR_REISSUE);
    SPEAD2GPU_CONST(CTRL_STREAM_STOP);
    SPEAD2GPU_CONST(CTRL_DESCRIPTOR_UPDATE);
#undef SPEAD2GPU_CONST
    m.attr("MEMCPY_STD") = py::int_(int(memcpy_function_id::STD));
    m.attr("MEMCPY_NONTEMPORAL") = py::int_(int(memcpy_function_id::NONTEMPORAL));

    py::class_<flavour>(m, "Flavour", "SPEAD flavour (heap address bits and bug-compatibility flags)")
        .def(py::init<>())
        .def(py::init<int, int, int, std::uint32_t>(), "version"_a, "item_pointer_bits"_a, "heap_address_bits"_a,
             "bug_compat"_a = 0)
        .def(py::self == py::self)
        .def(py::self != py::self)
        .def_property_readonly("version", &flavour::get_version)
        .def_property_readonly("item_pointer_bits", &flavour::get_item_pointer_bits)
        .def_property_readonly("heap_address_bits", &flavour::get_heap_address_bits)
        .def_property_readonly("bug_compat", &flavour::get_bug_compat)
        .def(py::pickle([](const flavour &f) { return py::make_tuple(f.get_heap_address_bits(), f.get_bug_compat()); },
                        [](py::tuple t) { return flavour(t[0].cast<int>(), t[1].cast<std::uint32_t>()); }))
        .def("__repr__",
             [](const flavour &f)
             {
                 return "Flavour(4, 64, " + std::to_string(f.get_heap_address_bits()) + ", " +
                     std::to_string(f.get_bug_compat()) + ")";
             });

    py::class_<thread_pool, std::shared_ptr<thread_pool>>(m, "ThreadPool", "Worker threads for streams")
        .def(py::init(
                 [](int threads)
                 {
                     if (threads < 1)
                         throw std::invalid_argument("at least one thread is required");
                     return std::make_shared<thread_pool>(threads);
                 }),
             "threads"_a = 1)
        .def(py::init(
                 [](int threads, const std::vector<int> &affinity)
                 {
                     if (threads < 1)
                         throw std::invalid_argument("at least one thread is required");
                     return std::make_shared<thread_pool>(threads, affinity);
                 }),
             "threads"_a, "affinity"_a)
        .def("stop", &thread_pool::stop, py::call_guard<py::gil_scoped_release>())
        .def_static("set_affinity", &thread_pool::set_affinity, "core"_a);

    py::class_<memory_allocator, std::shared_ptr<memory_allocator>>(m, "MemoryAllocator",
                                                                    "Default (malloc-backed) allocator")
        .def(py::init<>());
    py::class_<mmap_allocator, memory_allocator, std::shared_ptr<mmap_allocator>>(
        m, "MmapAllocator", "Allocator using mmap, optionally with huge pages")
        .def(py::init<int, bool>(), "flags"_a = 0, "prefer_huge"_a = false);
    py::class_<memory_pool, memory_allocator, std::shared_ptr<memory_pool>>(
        m, "MemoryPool", "Pool of fixed-size buffers for heap payloads")
        .def(py::init<std::size_t, std::size_t, std::size_t, std::size_t, std::shared_ptr<memory_allocator>>(),
             "lower"_a, "upper"_a, "max_free"_a, "initial"_a, "allocator"_a = nullptr)
        .def(py::init<std::shared_ptr<thread_pool>, std::size_t, std::size_t, std::size_t, std::size_t, std::size_t,
                      std::shared_ptr<memory_allocator>>(),
             "thread_pool"_a, "lower"_a, "upper"_a, "max_free"_a, "initial"_a, "low_water"_a, "allocator"_a = nullptr)
        .def_property("warn_on_empty", &memory_pool::get_warn_on_empty, &memory_pool::set_warn_on_empty);

    py::class_<inproc_queue, std::shared_ptr<inproc_queue>>(m, "InprocQueue", "In-process packet queue")
        .def(py::init<>())
        .def(
            "add_packet",
            [](inproc_queue &q, py::buffer buf)
            {
                auto view = buf.request();
                q.add_packet(static_cast<const std::uint8_t *>(view.ptr), std::size_t(view.size * view.itemsize));
            },
            "packet"_a)
        .def("stop", &inproc_queue::stop);

    py::class_<descriptor>(m, "RawDescriptor", "Item descriptor as carried on the wire")
        .def(py::init<>())
        .def_readwrite("id", &descriptor::id)
        .def_property(
            "name", [](const descriptor &d) { return py::bytes(d.name); },
            [](descriptor &d, const std::string &v) { d.name = v; })
        .def_property(
            "description", [](const descriptor &d) { return py::bytes(d.description); },
            [](descriptor &d, const std::string &v) { d.description = v; })
        .def_property(
            "numpy_header", [](const descriptor &d) { return py::bytes(d.numpy_header); },
            [](descriptor &d, const std::string &v) { d.numpy_header = v; })
        .def_readwrite("format", &descriptor::format)
        .def_property(
            "shape",
            [](const descriptor &d)
            {
                py::list out;
                for (auto s : d.shape)
                    out.append(s < 0 ? py::object(py::none()) : py::object(py::int_(s)));
                return out;
            },
            [](descriptor &d, const py::iterable &shape)
            {
                std::vector<s_item_pointer_t> out;
                for (auto s : shape)
                {
                    if (s.is_none())
                        out.push_back(-1);
                    else
                    {
                        auto v = s.cast<s_item_pointer_t>();
                        out.push_back(v < 0 ? -1 : v);
                    }
                }
                d.shape = std::move(out);
            });

    m.def("log_info", [](const std::string &msg) { log_info(msg); }, "msg"_a);

    forwarder = new log_forwarder();
    py::module_::import("atexit").attr("register")(py::cpp_function(
        []()
        {
            if (forwarder)
                forwarder->stop();
        }));
}

} // namespace spead2gpu
