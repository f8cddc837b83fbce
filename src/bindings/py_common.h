/**
 * @file py_common.h
 * Helpers shared by the binding translation units.
 */
#pragma once

#include <chrono>
#include <memory>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

namespace py = pybind11;

namespace spead2gpu
{

/**
 * The one GIL-safe holder: own @a p (an object holding Python references)
 * so that the last owner may be on any thread: the deleter takes the GIL to
 * destroy it. (Chunks holding Python buffers use the ring pair's graveyard
 * instead: they are destroyed by their Python owner.)
 */
template <typename T> std::shared_ptr<T> make_gil_safe(T *p)
{
    return std::shared_ptr<T>(p,
                              [](T *v)
                              {
                                  py::gil_scoped_acquire gil;
                                  delete v;
                              });
}

/**
 * Keep a Python buffer alive from C++ without holding the GIL: the
 * returned shared_ptr owns a Py_buffer view; its deleter takes the GIL
 * only to release the view. Do not let the last reference die on a worker
 * thread while the Python thread may wait on that worker; hand it back to
 * a Python thread instead.
 */
struct py_buffer_view
{
    py::buffer_info info;
    const std::uint8_t *data() const { return static_cast<const std::uint8_t *>(info.ptr); }
    std::size_t size() const { return std::size_t(info.size * info.itemsize); }
};

/// Request a C-contiguous byte view of @a obj (raises TypeError/BufferError if impossible).
std::shared_ptr<py_buffer_view> request_buffer_view(const py::object &obj, bool writable = false);

/**
 * Build a T the way spead2's keyword-only config constructors do: default
 * construct, then assign each keyword to the property of that name.
 * An unknown keyword raises TypeError.
 */
template <typename T> T from_kwargs(const py::kwargs &kwargs)
{
    py::object obj = py::cast(T());
    py::object type = py::type::of(obj);
    py::object property = py::module_::import("builtins").attr("property");
    for (auto item : kwargs)
    {
        std::string key = item.first.cast<std::string>();
        if (!py::hasattr(type, key.c_str()) || !py::isinstance(type.attr(key.c_str()), property))
            throw py::type_error("got an unexpected keyword argument '" + key + "'");
        obj.attr(key.c_str()) = item.second;
    }
    return obj.cast<T>();
}

/// How often a blocking call wakes to run Python's signal handlers (Ctrl-C).
constexpr std::chrono::milliseconds signal_check_interval{50};

/**
 * The one way bindings block: call @a attempt(timeout) with the GIL released
 * until it returns something true (an engaged optional, or true), waking
 * every @ref signal_check_interval to run Python's signal handlers with the
 * GIL held. An exception from a handler (KeyboardInterrupt for Ctrl-C)
 * propagates. Waking for stop() from another thread is @a attempt's job (a
 * stopped ring throws ringbuffer_stopped at once).
 */
template <typename Attempt> auto wait_interruptible(Attempt &&attempt)
{
    while (true)
    {
        {
            py::gil_scoped_release release;
            auto result = attempt(signal_check_interval);
            if (result)
                return result;
        }
        if (PyErr_CheckSignals() != 0)
            throw py::error_already_set();
    }
}

void register_common(py::module_ &m);
void register_recv(py::module_ &m);
void register_send(py::module_ &m);

} // namespace spead2gpu
