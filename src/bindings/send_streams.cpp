/**
 * @file send_streams.cpp
 * The send stream classes of spead2gpu._spead2.send: the Stream base, the
 * bytes / inproc / UDP / TCP streams, each in its synchronous and asyncio
 * flavour (spead2's constructor overloads written once per transport, the
 * send methods once per flavour).
 *
 * GIL rules: the core never takes the GIL. Python objects that a queued heap
 * depends on (the Heap object, whose keep-alive list holds the item buffer
 * views) are owned here and released only on a thread holding the GIL: the
 * synchronous caller (which keeps them in its frame while it waits with the
 * GIL released), or process_callbacks() for the asyncio streams.
 */
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>
#include <pybind11/native_enum.h>
#include "common/descriptor.h"
#include "bindings/endpoints.h"
#include "common/flavour.h"
#include "common/inproc_queue.h"
#include "bindings/py_common.h"
#include "bindings/send_heap_refs.h"
#include "send/heap/heap.h"
#include "send/heap/packet_generator.h"
#include "send/stream/stream.h"
#include "send/writer/tcp_writer.h"
#include "send/writer/udp_writer.h"
#include "common/ringbuffer.h"
#include "common/socket_util.h"
#include "common/logging.h"
#include "common/thread_pool.h"

using namespace pybind11::literals;

namespace spead2gpu
{
/// A Python socket.socket of a given type (SOCK_DGRAM or SOCK_STREAM), open.
template <int Type> struct python_socket
{
    py::object obj;
    int fd = -1;
};
} // namespace spead2gpu

namespace pybind11
{
namespace detail
{
/**
 * Accepts only an open socket.socket of the right type, so that anything
 * else is an overload mismatch (TypeError), as in spead2.
 */
template <int Type> struct type_caster<spead2gpu::python_socket<Type>>
{
    PYBIND11_TYPE_CASTER(spead2gpu::python_socket<Type>, const_name("socket.socket"));

    bool load(handle src, bool)
    {
        object cls = module_::import("socket").attr("socket");
        if (!isinstance(src, cls))
            return false;
        try
        {
            if ((src.attr("type").cast<int>() & 0xf) != Type)
                return false;
            int fd = src.attr("fileno")().cast<int>();
            if (fd < 0)
                return false;
            value.obj = reinterpret_borrow<object>(src);
            value.fd = fd;
            return true;
        }
        catch (error_already_set &)
        {
            return false;
        }
    }

    static handle cast(const spead2gpu::python_socket<Type> &src, return_value_policy, handle)
    {
        return src.obj.inc_ref();
    }
};
} // namespace detail
} // namespace pybind11

namespace spead2gpu
{
namespace send
{
namespace
{

/* ------------------------------------------------------------ errors */

/// OSError (or the errno-specific subclass Python picks) for @a ec.
py::object make_os_error(const std::error_code &ec, bool sync_format)
{
    std::string msg = ec.message();
    if (sync_format)
        msg += " [system:" + std::to_string(ec.value()) + "]";
    return py::module_::import("builtins").attr("OSError")(ec.value(), msg);
}

[[noreturn]] void raise_os_error(const std::error_code &ec)
{
    py::object exc = make_os_error(ec, true);
    PyErr_SetObject(reinterpret_cast<PyObject *>(Py_TYPE(exc.ptr())), exc.ptr());
    throw py::error_already_set();
}

/* ------------------------------------------------------------ streams */

/// Python base class "Stream": owns the core stream.
class py_stream
{
public:
    std::unique_ptr<stream> s;

    virtual ~py_stream()
    {
        // Destroying the core stream waits for queued heaps; never hold the
        // GIL while waiting for the worker.
        if (s)
        {
            py::gil_scoped_release release;
            s.reset();
        }
    }
};

/// Result slot for a synchronous send.
struct sync_state
{
    std::mutex mutex;
    std::condition_variable cond;
    bool done = false;
    std::error_code ec;
    item_pointer_t bytes = 0;
};

/**
 * Send a group synchronously: enqueue and wait with the GIL released. The
 * caller's frame keeps the Python heaps alive throughout.
 */
item_pointer_t sync_send(stream &s, const heap_reference *refs, std::size_t n, group_mode mode)
{
    auto state = std::make_shared<sync_state>();
    {
        py::gil_scoped_release release;
        s.async_send_heaps(
            refs, n,
            [state](const std::error_code &ec, item_pointer_t bytes)
            {
                std::lock_guard<std::mutex> lock(state->mutex);
                state->ec = ec;
                state->bytes = bytes;
                state->done = true;
                state->cond.notify_all();
            },
            mode);
    }
    auto finished = [&](auto timeout)
    {
        std::unique_lock<std::mutex> lock(state->mutex);
        return state->cond.wait_for(lock, timeout, [&] { return state->done; });
    };
    try
    {
        wait_interruptible(finished);
    }
    catch (py::error_already_set &)
    {
        // Interrupted (Ctrl-C): the heaps the caller's frame keeps alive are
        // still being read by the worker, so let the send finish (it is
        // bounded: no other heap is queued behind it) before raising.
        py::gil_scoped_release release;
        while (!finished(signal_check_interval))
        {
        }
        throw;
    }
    if (state->ec)
        raise_os_error(state->ec);
    return state->bytes;
}

/**
 * Completion queue for the asyncio streams. Handlers (worker threads, no
 * GIL) append finished entries and make the eventfd readable;
 * process_callbacks (GIL held) runs the Python callbacks and drops the
 * Python references.
 */
class callback_queue
{
public:
    /// One pending asynchronous send.
    struct entry
    {
        py::object callback;
        std::vector<py::object> refs; ///< heaps (and containers) kept alive
        std::error_code ec;
        item_pointer_t bytes = 0;
    };

private:
    std::mutex mutex;
    std::vector<entry *> done;
    level_fd ready_fd; ///< readable while done is non-empty (set and cleared under mutex)

public:
    /// Must be called with the GIL held (drops Python references).
    ~callback_queue()
    {
        for (entry *e : done)
            delete e;
    }

    int fd() const { return ready_fd.fd(); }

    /// Completion handler body: any thread, no GIL.
    void push(entry *e, const std::error_code &ec, item_pointer_t bytes)
    {
        e->ec = ec;
        e->bytes = bytes;
        std::lock_guard<std::mutex> lock(mutex);
        done.push_back(e);
        ready_fd.set(true);
    }

    completion_handler make_handler(entry *e)
    {
        return [this, e](const std::error_code &ec, item_pointer_t bytes) { push(e, ec, bytes); };
    }

    /// Run pending callbacks (GIL held). Never blocks.
    void process()
    {
        std::vector<entry *> ready;
        {
            std::lock_guard<std::mutex> lock(mutex);
            ready.swap(done);
            ready_fd.set(false);
        }
        std::exception_ptr first_error;
        for (std::size_t i = 0; i < ready.size(); i++)
        {
            std::unique_ptr<entry> e(ready[i]);
            try
            {
                py::object exc = e->ec ? make_os_error(e->ec, false) : py::object(py::none());
                e->callback(exc, e->bytes);
            }
            catch (...)
            {
                if (!first_error)
                    first_error = std::current_exception();
            }
        }
        if (first_error)
            std::rethrow_exception(first_error);
    }
};

/// Python base of the asyncio stream classes.
class py_asyncio_stream : public py_stream
{
public:
    callback_queue callbacks;

    ~py_asyncio_stream() override
    {
        // Wait for the worker first (it may still push into callbacks),
        // then let callback_queue drop the Python references (GIL held).
        if (s)
        {
            py::gil_scoped_release release;
            s.reset();
        }
    }

    bool async_send_heap(py::object heap_obj, py::object callback, s_item_pointer_t cnt, std::size_t substream_index,
                         double rate)
    {
        const heap &h = heap_obj.cast<const heap &>();
        auto *e = new callback_queue::entry{std::move(callback), {std::move(heap_obj)}, {}, 0};
        try
        {
            return s->async_send_heap(h, callbacks.make_handler(e), cnt, substream_index, rate);
        }
        catch (...)
        {
            delete e; // the handler is not called when async_send_heaps throws
            throw;
        }
    }

    bool async_send_heaps(const std::vector<heap_reference> &refs, std::vector<py::object> keep, py::object callback,
                          group_mode mode)
    {
        auto *e = new callback_queue::entry{std::move(callback), std::move(keep), {}, 0};
        try
        {
            return s->async_send_heaps(refs.data(), refs.size(), callbacks.make_handler(e), mode);
        }
        catch (...)
        {
            delete e;
            throw;
        }
    }
};

class py_bytes_stream : public py_stream
{
public:
    py_bytes_stream(std::shared_ptr<thread_pool> pool, const stream_config &config)
    {
        s = std::make_unique<bytes_stream>(std::move(pool), config);
    }
    /// Everything sent so far, copied once straight into a new bytes object.
    py::bytes getvalue() const
    {
        const auto &stream = static_cast<const bytes_stream &>(*s);
        std::size_t n = stream.size();
        PyObject *obj = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(n));
        if (!obj)
            throw py::error_already_set();
        auto out = py::reinterpret_steal<py::bytes>(obj);
        {
            py::gil_scoped_release release; // the bytes object is not yet visible to any other thread
            stream.copy_to(reinterpret_cast<std::uint8_t *>(PyBytes_AS_STRING(obj)), n);
        }
        return out;
    }
};

/// InprocStream and InprocStreamAsyncio: an inproc_stream behind either Python stream base.
template <typename Base> class py_inproc_stream_of : public Base
{
public:
    py_inproc_stream_of(std::shared_ptr<thread_pool> pool, std::vector<std::shared_ptr<inproc_queue>> queues,
                        const stream_config &config)
    {
        this->s = std::make_unique<inproc_stream>(std::move(pool), std::move(queues), config);
    }
    const std::vector<std::shared_ptr<inproc_queue>> &get_queues() const
    {
        return static_cast<const inproc_stream &>(*this->s).get_queues();
    }
};
using py_inproc_stream = py_inproc_stream_of<py_stream>;
using py_inproc_stream_asyncio = py_inproc_stream_of<py_asyncio_stream>;

/* ------------------------------------------------- network streams */

/// Resolve every endpoint (RuntimeError "resolve: …" if a host is unknown).
std::vector<socket_address> resolve_endpoints(const endpoint_list &endpoints)
{
    std::vector<socket_address> out;
    out.reserve(endpoints.size());
    for (const auto &ep : endpoints)
        out.push_back(resolve_address(ep.first, ep.second));
    return out;
}

/**
 * A stream class over a transport writer. @a Tag only makes each Python
 * class a distinct C++ type.
 */
template <typename Base, int Tag> class py_network_stream : public Base
{
public:
    py_network_stream(std::shared_ptr<thread_pool> pool, const stream_config &config, std::unique_ptr<writer> w)
    {
        this->s = std::make_unique<stream>(std::move(pool), config, std::move(w));
    }
};

using py_udp_stream = py_network_stream<py_stream, 0>;
using py_udp_stream_asyncio = py_network_stream<py_asyncio_stream, 1>;
using py_tcp_stream = py_network_stream<py_stream, 2>;
using py_tcp_stream_asyncio = py_network_stream<py_asyncio_stream, 3>;

/// Connect a TCP writer synchronously (GIL released); OSError on failure.
std::unique_ptr<tcp_writer> connect_tcp(const endpoint_list &endpoints, std::size_t buffer_size,
                                        const std::string &interface_address, bool async)
{
    if (endpoints.size() != 1)
        throw std::invalid_argument("endpoints must contain exactly one element");
    socket_address peer = resolve_address(endpoints[0].first, endpoints[0].second);
    socket_address iface;
    if (!interface_address.empty())
        iface = resolve_address(interface_address, 0);
    try
    {
        py::gil_scoped_release release;
        return std::make_unique<tcp_writer>(peer, buffer_size, interface_address.empty() ? nullptr : &iface, async);
    }
    catch (std::system_error &e)
    {
        raise_os_error(e.code());
    }
}

/// Connect handler calling a Python callback(exc_or_None) on the worker thread.
tcp_writer::connect_handler make_connect_handler(py::object callback)
{
    auto holder = make_gil_safe(new py::object(std::move(callback)));
    return [holder](const std::error_code &ec)
    {
        py::gil_scoped_acquire gil;
        try
        {
            py::object cb = std::move(*holder);
            py::object exc = ec ? make_os_error(ec, false) : py::object(py::none());
            cb(exc);
        }
        catch (py::error_already_set &e)
        {
            log_warning(std::string("worker thread caught exception: ") + e.what());
        }
        catch (std::exception &e)
        {
            log_warning(std::string("worker thread caught exception: ") + e.what());
        }
    };
}

/// The UdpStream / UdpStreamAsyncio constructors (spead2's five overloads).
template <typename T, typename Cls> void add_udp_constructors(Cls &cls)
{
    cls.def(py::init(
                [](std::shared_ptr<thread_pool> pool, const endpoint_list &endpoints, const stream_config &config,
                   std::size_t buffer_size, const std::string &interface_address)
                {
                    auto eps = resolve_endpoints(endpoints);
                    std::unique_ptr<udp_writer> w;
                    if (interface_address.empty())
                        w = std::make_unique<udp_writer>(eps, buffer_size);
                    else
                    {
                        socket_address iface = resolve_address(interface_address, 0);
                        w = std::make_unique<udp_writer>(eps, buffer_size, &iface);
                    }
                    return new T(std::move(pool), config, std::move(w));
                }),
            py::arg("thread_pool").none(false), "endpoints"_a, "config"_a = stream_config(),
            "buffer_size"_a = udp_writer::default_buffer_size, "interface_address"_a = "");
    cls.def(py::init(
                [](std::shared_ptr<thread_pool> pool, const endpoint_list &endpoints, const stream_config &config,
                   std::size_t buffer_size, int ttl)
                {
                    auto w = std::make_unique<udp_writer>(resolve_endpoints(endpoints), buffer_size, ttl);
                    return new T(std::move(pool), config, std::move(w));
                }),
            py::arg("thread_pool").none(false), "endpoints"_a, "config"_a = stream_config(),
            "buffer_size"_a = udp_writer::default_buffer_size, "ttl"_a);
    cls.def(py::init(
                [](std::shared_ptr<thread_pool> pool, const endpoint_list &endpoints, const stream_config &config,
                   std::size_t buffer_size, int ttl, const std::string &interface_address)
                {
                    socket_address iface = resolve_address(interface_address, 0);
                    auto w = std::make_unique<udp_writer>(resolve_endpoints(endpoints), buffer_size, ttl, iface);
                    return new T(std::move(pool), config, std::move(w));
                }),
            py::arg("thread_pool").none(false), "endpoints"_a, "config"_a = stream_config(),
            "buffer_size"_a = udp_writer::default_buffer_size, "ttl"_a, "interface_address"_a);
    cls.def(py::init(
                [](std::shared_ptr<thread_pool> pool, const endpoint_list &endpoints, const stream_config &config,
                   std::size_t buffer_size, int ttl, unsigned int interface_index)
                {
                    auto w =
                        std::make_unique<udp_writer>(resolve_endpoints(endpoints), buffer_size, ttl, interface_index);
                    return new T(std::move(pool), config, std::move(w));
                }),
            py::arg("thread_pool").none(false), "endpoints"_a, "config"_a = stream_config(),
            "buffer_size"_a = udp_writer::default_buffer_size, "ttl"_a, "interface_index"_a);
    cls.def(py::init(
                [](std::shared_ptr<thread_pool> pool, const python_socket<SOCK_DGRAM> &sock,
                   const endpoint_list &endpoints, const stream_config &config)
                {
                    auto w = std::make_unique<udp_writer>(sock.fd, resolve_endpoints(endpoints));
                    return new T(std::move(pool), config, std::move(w));
                }),
            py::arg("thread_pool").none(false), "socket"_a, "endpoints"_a, "config"_a = stream_config());
    cls.attr("DEFAULT_BUFFER_SIZE") = py::int_(udp_writer::default_buffer_size);
}

/// The InprocStream / InprocStreamAsyncio constructor and queues property.
template <typename T, typename Cls> void add_inproc_members(Cls &cls)
{
    cls.def(py::init<std::shared_ptr<thread_pool>, std::vector<std::shared_ptr<inproc_queue>>, const stream_config &>(),
            py::arg("thread_pool").none(false), "queues"_a, "config"_a = stream_config())
        .def_property_readonly("queues", &T::get_queues);
}

/// The C++ class a py::class_ (or a reference to one) binds.
template <typename Cls> using class_type = typename std::decay_t<Cls>::type;

/// The TcpStream (socket) constructor shared by the sync and asyncio classes.
template <typename T, typename Cls> void add_tcp_socket_constructor(Cls &cls)
{
    cls.def(py::init([](std::shared_ptr<thread_pool> pool, const python_socket<SOCK_STREAM> &sock,
                        const stream_config &config)
                     { return new T(std::move(pool), config, std::make_unique<tcp_writer>(sock.fd)); }),
            py::arg("thread_pool").none(false), "socket"_a, "config"_a = stream_config());
    cls.attr("DEFAULT_BUFFER_SIZE") = py::int_(tcp_writer::default_buffer_size);
}

/* -------------------------------------------------- method registration */

/// send_heap / send_heaps on a synchronous stream class.
template <typename T, typename Cls> void add_sync_methods(Cls &cls)
{
    cls.def(
        "send_heap",
        [](T &self, const heap &h, s_item_pointer_t cnt, std::size_t substream_index, double rate)
        {
            heap_reference ref;
            ref.h = &h;
            ref.cnt = cnt;
            ref.substream_index = substream_index;
            ref.rate = rate;
            return sync_send(*self.s, &ref, 1, group_mode::ROUND_ROBIN);
        },
        "heap"_a, "cnt"_a = -1, "substream_index"_a = 0, "rate"_a = -1.0);
    cls.def(
        "send_heaps", [](T &self, const py_heap_reference_list &heaps, group_mode mode)
        { return sync_send(*self.s, heaps.refs.data(), heaps.refs.size(), mode); }, "heaps"_a, "mode"_a);
    cls.def(
        "send_heaps",
        [](T &self, const std::vector<py_heap_reference> &heaps, group_mode mode)
        {
            std::vector<heap_reference> refs;
            refs.reserve(heaps.size());
            for (const auto &r : heaps)
                refs.push_back(r.to_core());
            return sync_send(*self.s, refs.data(), refs.size(), mode);
        },
        "heaps"_a, "mode"_a);
}

/// async_send_heap(s), fd, flush, process_callbacks on an asyncio stream class.
template <typename T, typename Cls> void add_asyncio_methods(Cls &cls)
{
    cls.def(
        "async_send_heap",
        [](T &self, py::object heap, py::object callback, s_item_pointer_t cnt, std::size_t substream_index,
           double rate)
        { return self.async_send_heap(std::move(heap), std::move(callback), cnt, substream_index, rate); },
        "heap"_a, "callback"_a, "cnt"_a = -1, "substream_index"_a = 0, "rate"_a = -1.0);
    cls.def(
        "async_send_heaps", [](T &self, const py_heap_reference_list &heaps, py::object callback, group_mode mode)
        { return self.async_send_heaps(heaps.refs, heaps.heaps, std::move(callback), mode); }, "heaps"_a, "callback"_a,
        "mode"_a);
    cls.def(
        "async_send_heaps",
        [](T &self, const std::vector<py_heap_reference> &heaps, py::object callback, group_mode mode)
        {
            std::vector<heap_reference> refs;
            std::vector<py::object> keep;
            refs.reserve(heaps.size());
            keep.reserve(heaps.size());
            for (const auto &r : heaps)
            {
                refs.push_back(r.to_core());
                keep.push_back(r.heap_obj);
            }
            return self.async_send_heaps(refs, std::move(keep), std::move(callback), mode);
        },
        "heaps"_a, "callback"_a, "mode"_a);
    cls.def_property_readonly("fd", [](const T &self) { return self.callbacks.fd(); });
    cls.def("flush", [](T &self) { wait_interruptible([&](auto timeout) { return self.s->flush_for(timeout); }); });
    cls.def("process_callbacks", [](T &self) { self.callbacks.process(); });
}

/// Name and docstring of a Python class (string literals: pybind11 keeps the pointers).
struct class_names
{
    const char *name;
    const char *doc;
};

/**
 * A transport's synchronous stream class and its asyncio variant: @a members
 * (a generic lambda taking either py::class_) adds what the two have in
 * common, then each gets its flavour's send methods. Returns both classes
 * for what differs.
 */
template <typename Sync, typename Async, typename Members>
std::pair<py::class_<Sync, py_stream>, py::class_<Async, py_stream>>
register_flavours(py::module_ &m, class_names sync_names, class_names async_names, Members &&members)
{
    py::class_<Sync, py_stream> sync_cls(m, sync_names.name, sync_names.doc);
    members(sync_cls);
    add_sync_methods<Sync>(sync_cls);
    py::class_<Async, py_stream> async_cls(m, async_names.name, async_names.doc);
    members(async_cls);
    add_asyncio_methods<Async>(async_cls);
    return {sync_cls, async_cls};
}

} // anonymous namespace

void register_send_streams(py::module_ &m)
{
    py::class_<py_stream>(m, "Stream", "Base class of the send streams")
        .def(
            "set_cnt_sequence", [](py_stream &self, item_pointer_t next, item_pointer_t step)
            { self.s->set_cnt_sequence(next, step); }, "next"_a, "step"_a)
        .def_property_readonly("num_substreams", [](const py_stream &self) { return self.s->get_num_substreams(); });

    auto bytes_cls = py::class_<py_bytes_stream, py_stream>(m, "BytesStream", "Stream that collects packets in memory");
    bytes_cls
        .def(py::init<std::shared_ptr<thread_pool>, const stream_config &>(), py::arg("thread_pool").none(false),
             "config"_a = stream_config())
        .def("getvalue", &py_bytes_stream::getvalue);
    add_sync_methods<py_bytes_stream>(bytes_cls);

    register_flavours<py_inproc_stream, py_inproc_stream_asyncio>(
        m, {"InprocStream", "Stream that sends to in-process queues"},
        {"InprocStreamAsyncio", "Asyncio variant of InprocStream (callback interface)"},
        [](auto &cls) { add_inproc_members<class_type<decltype(cls)>>(cls); });
    register_flavours<py_udp_stream, py_udp_stream_asyncio>(
        m, {"UdpStream", "Stream that sends UDP datagrams"},
        {"UdpStreamAsyncio", "Asyncio variant of UdpStream (callback interface)"},
        [](auto &cls) { add_udp_constructors<class_type<decltype(cls)>>(cls); });
    // TCP: the socket constructor is shared; connecting differs (blocking, or with a callback).
    auto [tcp_cls, tcp_async_cls] = register_flavours<py_tcp_stream, py_tcp_stream_asyncio>(
        m, {"TcpStream", "Stream that sends over a TCP connection"},
        {"TcpStreamAsyncio", "Asyncio variant of TcpStream (callback interface)"},
        [](auto &cls) { add_tcp_socket_constructor<class_type<decltype(cls)>>(cls); });
    tcp_cls.def(py::init(
                    [](std::shared_ptr<thread_pool> pool, const endpoint_list &endpoints, const stream_config &config,
                       std::size_t buffer_size, const std::string &interface_address)
                    {
                        auto w = connect_tcp(endpoints, buffer_size, interface_address, false);
                        return new py_tcp_stream(std::move(pool), config, std::move(w));
                    }),
                py::arg("thread_pool").none(false), "endpoints"_a, "config"_a = stream_config(),
                "buffer_size"_a = tcp_writer::default_buffer_size, "interface_address"_a = "");
    tcp_async_cls.def(py::init(
                          [](py::object callback, std::shared_ptr<thread_pool> pool, const endpoint_list &endpoints,
                             const stream_config &config, std::size_t buffer_size, const std::string &interface_address)
                          {
                              auto w = connect_tcp(endpoints, buffer_size, interface_address, true);
                              tcp_writer &tw = *w;
                              auto *out = new py_tcp_stream_asyncio(std::move(pool), config, std::move(w));
                              try
                              {
                                  tw.start_connect(make_connect_handler(std::move(callback)));
                              }
                              catch (...)
                              {
                                  delete out;
                                  throw;
                              }
                              return out;
                          }),
                      "callback"_a, py::arg("thread_pool").none(false), "endpoints"_a, "config"_a = stream_config(),
                      "buffer_size"_a = tcp_writer::default_buffer_size, "interface_address"_a = "");
}

} // namespace send
} // namespace spead2gpu
