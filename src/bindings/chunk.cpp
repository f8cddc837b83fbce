/**
 * Bindings for chunk streams: Chunk, ChunkStreamConfig, ChunkRingbuffer,
 * ChunkRingPair and ChunkRingStream (spead2-compatible).
 */
#include <cstring>
#include "bindings/chunk_config.h"
#include "bindings/py_common.h"
#include "recv/chunk/chunk.h"
#include "recv/chunk/chunk_ring_stream.h"
#include "recv/chunk/layout.h"
#include "recv/chunk/group.h"
#include "recv/stream/stream.h"

using namespace pybind11::literals;

namespace spead2gpu::recv
{

namespace
{

/// Python-visible state of a Chunk (the buffers are the user's objects).
struct chunk_state
{
    std::int64_t chunk_id = -1;
    std::uint64_t stream_id = 0;
    py::object present = py::none();
    py::object data = py::none();
    py::object extra = py::none();
};

/// Validate a chunk buffer: None, or a writable C-contiguous buffer.
py::object check_chunk_buffer(py::object obj)
{
    if (!obj.is_none())
        request_buffer_view(obj, true); // raises the exporter's own error
    return obj;
}

/**
 * A chunk in transit through the rings: holds the Python Chunk and views of
 * its buffers. Its memory belongs to the Python objects, so it must be
 * destroyed with the GIL held (never on a worker thread).
 */
class py_chunk : public chunk
{
public:
    py::object owner; ///< the Python Chunk (with its buffers detached)
    py::object present_obj, data_obj, extra_obj;
    std::shared_ptr<py_buffer_view> present_view, data_view, extra_view;
};

/// Move the Python chunk's buffers into a C++ chunk (the Python object shows None meanwhile).
std::unique_ptr<chunk> to_cpp(py::object obj)
{
    auto &state = obj.cast<chunk_state &>();
    if (state.data.is_none())
        throw py::value_error("data buffer is not set");
    if (state.present.is_none())
        throw py::value_error("present buffer is not set");
    auto c = std::make_unique<py_chunk>();
    c->data_view = request_buffer_view(state.data, true);
    c->present_view = request_buffer_view(state.present, true);
    if (!state.extra.is_none())
        c->extra_view = request_buffer_view(state.extra, true);
    c->chunk_id = state.chunk_id;
    c->stream_id = state.stream_id;
    c->data = const_cast<std::uint8_t *>(c->data_view->data());
    c->data_size = c->data_view->size();
    c->present = const_cast<std::uint8_t *>(c->present_view->data());
    c->present_size = c->present_view->size();
    if (c->extra_view)
    {
        c->extra = const_cast<std::uint8_t *>(c->extra_view->data());
        c->extra_size = c->extra_view->size();
    }
    c->present_obj = std::move(state.present);
    c->data_obj = std::move(state.data);
    c->extra_obj = std::move(state.extra);
    state.present = state.data = state.extra = py::none();
    c->owner = std::move(obj);
    return c;
}

/// Give the buffers back to the Python chunk and return it.
py::object to_python(std::unique_ptr<chunk> &&c)
{
    auto *pc = static_cast<py_chunk *>(c.get());
    py::object obj = std::move(pc->owner);
    auto &state = obj.cast<chunk_state &>();
    state.chunk_id = pc->chunk_id;
    state.stream_id = pc->stream_id;
    state.present = std::move(pc->present_obj);
    state.data = std::move(pc->data_obj);
    state.extra = std::move(pc->extra_obj);
    c.reset();
    return obj;
}

/// Python ChunkRingbuffer: a ring of chunks shared with streams.
struct py_chunk_ringbuffer
{
    std::shared_ptr<chunk_ringbuffer> ring;

    explicit py_chunk_ringbuffer(std::size_t maxsize) : ring(std::make_shared<chunk_ringbuffer>(maxsize))
    {
        if (maxsize == 0)
            throw std::invalid_argument("maxsize must be at least 1");
    }

    py::object get()
    {
        std::unique_ptr<chunk> c;
        if (auto ready = ring->try_pop_optional())
            c = std::move(*ready);
        else
            c = std::move(*wait_interruptible([this](auto timeout) { return ring->pop_for(timeout); }));
        return to_python(std::move(c));
    }

    py::object get_nowait() { return to_python(ring->try_pop()); }

    void put(py::object obj)
    {
        auto c = to_cpp(obj);
        try
        {
            wait_interruptible([&](auto timeout) { return ring->push_for(std::move(c), timeout); });
        }
        catch (...)
        {
            if (c)
                to_python(std::move(c)); // restore the buffers to the caller's chunk
            throw;
        }
    }

    void put_nowait(py::object obj)
    {
        auto c = to_cpp(obj);
        try
        {
            ring->try_push(std::move(c));
        }
        catch (...)
        {
            if (c)
                to_python(std::move(c));
            throw;
        }
    }
};

/// Python ChunkRingPair: the data and free rings of a chunk stream (or group).
class py_chunk_ring_pair
{
public:
    py::object data_ringbuffer, free_ringbuffer; ///< the Python ChunkRingbuffer objects
    std::shared_ptr<chunk_ringbuffer> data_ring, free_ring;

    py_chunk_ring_pair(py::object data_rb, py::object free_rb)
        : data_ringbuffer(data_rb), free_ringbuffer(free_rb), data_ring(data_rb.cast<py_chunk_ringbuffer &>().ring),
          free_ring(free_rb.cast<py_chunk_ringbuffer &>().ring)
    {
    }
    virtual ~py_chunk_ring_pair() = default;

    /// Zero the chunk's present flags and give it to the free ring.
    void add_free_chunk(py::object obj)
    {
        auto &state = obj.cast<chunk_state &>();
        if (!state.present.is_none())
        {
            auto view = request_buffer_view(state.present, true);
            std::memset(const_cast<std::uint8_t *>(view->data()), 0, view->size());
        }
        auto c = to_cpp(obj);
        try
        {
            free_ring->try_push(std::move(c));
        }
        catch (ringbuffer_stopped &)
        {
            // As in spead2: a stopped stream silently swallows the chunk (its
            // buffers are released; the Python object keeps None).
            c.reset();
        }
        catch (...)
        {
            if (c)
                to_python(std::move(c));
            throw;
        }
    }
};

} // namespace

static void two_arg_trampoline(chunk_place_data *data, std::size_t size, void *user)
{
    reinterpret_cast<void (*)(void *, std::size_t)>(user)(data, size);
}

void set_place(py_chunk_stream_config &self, py::object place)
{
    if (place.is_none())
    {
        self.config.set_place(nullptr, nullptr);
        self.place = place;
        return;
    }
    if (py::isinstance<chunk_layout>(place))
    {
        auto layout = std::make_shared<chunk_layout>(place.cast<const chunk_layout &>());
        layout->validate();
        self.config.set_layout(std::move(layout));
        self.place = place;
        return;
    }
    py::tuple t(place); // TypeError if not iterable
    if (t.size() == 0)
        throw py::index_error("place must be a tuple whose first element is a capsule");
    py::object cap = t[0];
    if (!PyCapsule_CheckExact(cap.ptr()))
        throw py::type_error(std::string("Object of type '") +
                             std::string(py::str(py::type::of(cap).attr("__name__"))) +
                             "' is not an instance of 'capsule'");
    const char *name = PyCapsule_GetName(cap.ptr());
    void *fn = PyCapsule_GetPointer(cap.ptr(), name);
    if (!fn)
        throw py::error_already_set();
    std::string sig = name ? name : "";
    if (sig == "void (void *, size_t)")
        self.config.set_place(&two_arg_trampoline, fn);
    else if (sig == "void (void *, size_t, void *)")
        self.config.set_place(reinterpret_cast<chunk_place_function>(fn), PyCapsule_GetContext(cap.ptr()));
    else
        throw py::value_error("Unknown signature " + sig);
    self.place = place;
}

namespace
{

/// Python ChunkRingStream.
class py_chunk_ring_stream : public py_chunk_ring_pair, public chunk_ring_stream
{
public:
    py::object place_keepalive;

    py_chunk_ring_stream(std::shared_ptr<thread_pool> pool, const stream_config &config,
                         const py_chunk_stream_config &chunk_config, py::object data_rb, py::object free_rb)
        : py_chunk_ring_pair(data_rb, free_rb),
          chunk_ring_stream(std::move(pool), config, chunk_config.config, py_chunk_ring_pair::data_ring,
                            py_chunk_ring_pair::free_ring),
          place_keepalive(chunk_config.place)
    {
    }

    ~py_chunk_ring_stream() override
    {
        {
            py::gil_scoped_release release;
            stop();
        }
        take_graveyard(); // destroyed here, with the GIL
    }
};

/// Python ChunkStreamRingGroup.
class py_chunk_stream_ring_group : public py_chunk_ring_pair, public chunk_stream_group
{
public:
    std::vector<py::object> place_keepalive;

    py_chunk_stream_ring_group(const chunk_stream_group_config &config, py::object data_rb, py::object free_rb)
        : py_chunk_ring_pair(data_rb, free_rb),
          chunk_stream_group(config, py_chunk_ring_pair::data_ring, py_chunk_ring_pair::free_ring)
    {
    }

    ~py_chunk_stream_ring_group() override
    {
        {
            py::gil_scoped_release release;
            stop();
        }
        take_graveyard(); // destroyed here, with the GIL
    }
};

} // namespace

void register_chunk(py::module_ &m)
{
    py::class_<chunk_state>(m, "Chunk", py::dynamic_attr(), "Buffers that heaps are placed into")
        .def(py::init(
            [](const py::kwargs &kwargs)
            {
                chunk_state state;
                for (auto item : kwargs)
                {
                    std::string key = item.first.cast<std::string>();
                    py::object value = py::reinterpret_borrow<py::object>(item.second);
                    if (key == "chunk_id")
                        state.chunk_id = value.cast<std::int64_t>();
                    else if (key == "stream_id")
                        state.stream_id = value.cast<std::uint64_t>();
                    else if (key == "present")
                        state.present = check_chunk_buffer(value);
                    else if (key == "data")
                        state.data = check_chunk_buffer(value);
                    else if (key == "extra")
                        state.extra = check_chunk_buffer(value);
                    else
                        throw py::type_error("got an unexpected keyword argument '" + key + "'");
                }
                return state;
            }))
        .def_readwrite("chunk_id", &chunk_state::chunk_id)
        .def_readwrite("stream_id", &chunk_state::stream_id)
        .def_property(
            "present", [](const chunk_state &s) { return s.present; },
            [](chunk_state &s, py::object v) { s.present = check_chunk_buffer(v); })
        .def_property(
            "data", [](const chunk_state &s) { return s.data; },
            [](chunk_state &s, py::object v) { s.data = check_chunk_buffer(v); })
        .def_property(
            "extra", [](const chunk_state &s) { return s.extra; },
            [](chunk_state &s, py::object v) { s.extra = check_chunk_buffer(v); });

    py::class_<chunk_layout>(m, "ChunkLayout", R"doc(
Built-in heap placement (no numba needed), usable as ``ChunkStreamConfig(place=layout)``.

chunk_id = (timestamp // timestamp_step) // timestamps_per_chunk; the heap index is a
mixed-radix number over ``axes`` (outermost first), where ``"time"`` is the position of
the timestamp within the chunk and ``(item_id, count[, step[, offset]])`` takes
``(value - offset) // step`` from an immediate item; heap_offset = heap_index * heap_size.
Values of ``extra_items`` are stored as little-endian uint64 in ``chunk.extra`` at
``heap_index * 8 * len(extra_items)``. Heaps of another size, with misaligned or
out-of-range values, or missing items are rejected and counted in the statistics
``spead2gpu.layout_wrong_size_heaps``, ``spead2gpu.layout_misaligned_heaps``,
``spead2gpu.layout_out_of_range_heaps`` and ``spead2gpu.layout_missing_item_heaps``.
)doc")
        .def(py::init(
                 [](std::size_t heap_size, item_pointer_t timestamp_id, std::uint64_t timestamp_step,
                    std::uint64_t timestamps_per_chunk, py::object axes, std::vector<item_pointer_t> extra_items)
                 {
                     chunk_layout l;
                     l.heap_size = heap_size;
                     l.timestamp_id = timestamp_id;
                     l.timestamp_step = timestamp_step;
                     l.timestamps_per_chunk = timestamps_per_chunk;
                     l.extra_items = std::move(extra_items);
                     if (axes.is_none())
                         l.axes.push_back(layout_axis{true});
                     else
                         for (auto a : axes)
                         {
                             if (py::isinstance<py::str>(a))
                             {
                                 if (a.cast<std::string>() != "time")
                                     throw py::value_error("the only named axis is 'time'");
                                 l.axes.push_back(layout_axis{true});
                                 continue;
                             }
                             py::tuple t(py::reinterpret_borrow<py::object>(a));
                             if (t.size() < 2 || t.size() > 4)
                                 throw py::value_error("an axis is 'time' or (item_id, count[, step[, offset]])");
                             layout_axis ax;
                             ax.item_id = t[0].cast<item_pointer_t>();
                             ax.count = t[1].cast<std::uint64_t>();
                             if (t.size() > 2)
                                 ax.step = t[2].cast<std::uint64_t>();
                             if (t.size() > 3)
                                 ax.offset = t[3].cast<std::uint64_t>();
                             l.axes.push_back(ax);
                         }
                     l.validate();
                     return l;
                 }),
             "heap_size"_a, "timestamp_id"_a, "timestamp_step"_a, "timestamps_per_chunk"_a, "axes"_a = py::none(),
             "extra_items"_a = std::vector<item_pointer_t>())
        .def_readonly("heap_size", &chunk_layout::heap_size)
        .def_readonly("timestamp_id", &chunk_layout::timestamp_id)
        .def_readonly("timestamp_step", &chunk_layout::timestamp_step)
        .def_readonly("timestamps_per_chunk", &chunk_layout::timestamps_per_chunk)
        .def_readonly("extra_items", &chunk_layout::extra_items)
        .def_property_readonly("axes",
                               [](const chunk_layout &l)
                               {
                                   py::list out;
                                   for (const auto &a : l.axes)
                                   {
                                       if (a.is_time)
                                           out.append(py::str("time"));
                                       else
                                           out.append(py::make_tuple(a.item_id, a.count, a.step, a.offset));
                                   }
                                   return out;
                               })
        .def_property_readonly("heaps_per_chunk", &chunk_layout::heaps_per_chunk)
        .def_property_readonly("chunk_data_size",
                               [](const chunk_layout &l) { return l.heaps_per_chunk() * l.heap_size; })
        .def_property_readonly("extra_bytes_per_heap", &chunk_layout::extra_bytes_per_heap)
        .def_property_readonly("chunk_extra_size",
                               [](const chunk_layout &l) { return l.heaps_per_chunk() * l.extra_bytes_per_heap(); });

    py::class_<py_chunk_stream_config>(m, "ChunkStreamConfig", "Chunk stream options")
        .def(py::init(&from_kwargs<py_chunk_stream_config>))
        .def_property(
            "items",
            [](const py_chunk_stream_config &c)
            {
                std::vector<item_pointer_t> v = c.config.get_items();
                return v;
            },
            [](py_chunk_stream_config &c, std::vector<item_pointer_t> v) { c.config.set_items(std::move(v)); })
        .def_property(
            "max_chunks", [](const py_chunk_stream_config &c) { return c.config.get_max_chunks(); },
            [](py_chunk_stream_config &c, std::size_t v) { c.config.set_max_chunks(v); })
        .def_property(
            "place", [](const py_chunk_stream_config &c) { return c.place; }, &set_place)
        .def_property(
            "max_heap_extra", [](const py_chunk_stream_config &c) { return c.config.get_max_heap_extra(); },
            [](py_chunk_stream_config &c, std::size_t v) { c.config.set_max_heap_extra(v); })
        .def(
            "enable_packet_presence",
            [](py::object self, std::size_t payload_size)
            {
                self.cast<py_chunk_stream_config &>().config.enable_packet_presence(payload_size);
                return self;
            },
            "payload_size"_a)
        .def("disable_packet_presence",
             [](py::object self)
             {
                 self.cast<py_chunk_stream_config &>().config.disable_packet_presence();
                 return self;
             })
        .def_property_readonly("packet_presence_payload_size", [](const py_chunk_stream_config &c)
                               { return c.config.get_packet_presence_payload_size(); })
        .def_readonly_static("DEFAULT_MAX_CHUNKS", &chunk_stream_config::default_max_chunks);

    py::class_<py_chunk_ringbuffer>(m, "ChunkRingbuffer", "Ring of chunks")
        .def(py::init<std::size_t>(), "maxsize"_a)
        .def("get", &py_chunk_ringbuffer::get)
        .def("get_nowait", &py_chunk_ringbuffer::get_nowait)
        .def("put", &py_chunk_ringbuffer::put, "chunk"_a)
        .def("put_nowait", &py_chunk_ringbuffer::put_nowait, "chunk"_a)
        .def("qsize", [](const py_chunk_ringbuffer &r) { return r.ring->size(); })
        .def_property_readonly("maxsize", [](const py_chunk_ringbuffer &r) { return r.ring->capacity(); })
        .def_property_readonly("data_fd", [](const py_chunk_ringbuffer &r) { return r.ring->data_fd(); })
        .def_property_readonly("space_fd", [](const py_chunk_ringbuffer &r) { return r.ring->space_fd(); })
        .def("empty", [](const py_chunk_ringbuffer &r) { return r.ring->size() == 0; })
        .def("full", [](const py_chunk_ringbuffer &r) { return r.ring->size() == r.ring->capacity(); })
        .def("stop",
             [](py_chunk_ringbuffer &r)
             {
                 r.ring->stop();
                 return true; // spead2 reports True whether or not it was already stopped
             })
        .def("add_producer", [](py_chunk_ringbuffer &r) { r.ring->add_producer(); })
        .def("remove_producer", [](py_chunk_ringbuffer &r) { return r.ring->remove_producer(); })
        .def("__iter__", [](py::object self) { return self; })
        .def("__next__",
             [](py_chunk_ringbuffer &r)
             {
                 try
                 {
                     return r.get();
                 }
                 catch (ringbuffer_stopped &)
                 {
                     throw py::stop_iteration();
                 }
             });

    py::class_<py_chunk_ring_pair>(m, "ChunkRingPair", "Data and free rings of a chunk stream")
        .def("add_free_chunk", &py_chunk_ring_pair::add_free_chunk, "chunk"_a)
        .def_readonly("data_ringbuffer", &py_chunk_ring_pair::data_ringbuffer)
        .def_readonly("free_ringbuffer", &py_chunk_ring_pair::free_ringbuffer);

    py::class_<chunk_stream_group_config> group_config(m, "ChunkStreamGroupConfig", "Chunk stream group options");
    py::enum_<group_eviction_mode>(group_config, "EvictionMode")
        .value("LOSSY", group_eviction_mode::LOSSY)
        .value("LOSSLESS", group_eviction_mode::LOSSLESS);
    group_config.def(py::init(&from_kwargs<chunk_stream_group_config>))
        .def_property("max_chunks", &chunk_stream_group_config::get_max_chunks,
                      &chunk_stream_group_config::set_max_chunks)
        .def_property("eviction_mode", &chunk_stream_group_config::get_eviction_mode,
                      &chunk_stream_group_config::set_eviction_mode)
        .def_readonly_static("DEFAULT_MAX_CHUNKS", &chunk_stream_group_config::default_max_chunks);

    py::class_<chunk_stream_group_member, stream>(m, "ChunkStreamGroupMember", "One stream of a ChunkStreamRingGroup");

    py::class_<py_chunk_stream_ring_group, py_chunk_ring_pair>(m, "ChunkStreamRingGroup",
                                                               "Streams that fill the same chunks")
        .def(py::init<const chunk_stream_group_config &, py::object, py::object>(), "config"_a, "data_ringbuffer"_a,
             "free_ringbuffer"_a)
        .def_property_readonly("config", &py_chunk_stream_ring_group::get_config)
        .def(
            "emplace_back",
            [](py_chunk_stream_ring_group &g, std::shared_ptr<thread_pool> pool, const stream_config &config,
               const py_chunk_stream_config &chunk_config) -> chunk_stream_group_member &
            {
                auto &member = g.emplace_back(std::move(pool), config, chunk_config.config);
                g.place_keepalive.push_back(chunk_config.place);
                return member;
            },
            py::arg("thread_pool").none(false), "config"_a, "chunk_stream_config"_a,
            py::return_value_policy::reference_internal)
        .def("stop", &py_chunk_stream_ring_group::stop, py::call_guard<py::gil_scoped_release>())
        .def("__len__", &py_chunk_stream_ring_group::size)
        .def("__getitem__",
             [](py::object self, py::object key) -> py::object
             {
                 auto &g = self.cast<py_chunk_stream_ring_group &>();
                 auto policy = py::return_value_policy::reference_internal;
                 if (py::isinstance<py::slice>(key))
                 {
                     std::size_t start, stop, step, length;
                     if (!key.cast<py::slice>().compute(g.size(), &start, &stop, &step, &length))
                         throw py::error_already_set();
                     py::list out;
                     for (std::size_t i = 0; i < length; i++)
                         out.append(py::cast(&g[start + i * step], policy, self));
                     return out;
                 }
                 auto idx = key.cast<py::ssize_t>();
                 if (idx < 0)
                     idx += py::ssize_t(g.size());
                 if (idx < 0 || std::size_t(idx) >= g.size())
                     throw py::index_error("group member index out of range");
                 return py::cast(&g[std::size_t(idx)], policy, self);
             });

    py::class_<py_chunk_ring_stream, py_chunk_ring_pair, stream>(m, "ChunkRingStream", py::multiple_inheritance(),
                                                                 "Chunk stream fed and drained through rings")
        .def(py::init<std::shared_ptr<thread_pool>, const stream_config &, const py_chunk_stream_config &, py::object,
                      py::object>(),
             py::arg("thread_pool").none(false), "config"_a = stream_config(), "chunk_stream_config"_a,
             "data_ringbuffer"_a, "free_ringbuffer"_a);
}

} // namespace spead2gpu::recv
