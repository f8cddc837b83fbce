/**
 * Bindings for spead2gpu._spead2.recv: heaps, items, statistics, configs and
 * the ring stream.
 */
#include <pybind11/operators.h>
#include "common/inproc_queue.h"
#include "bindings/py_common.h"
#include "recv/heap/heap.h"
#include "recv/reader/in_process_readers.h"
#include "recv/reader/pcap_reader.h"
#include "recv/reader/tcp_reader.h"
#include "recv/reader/udp_reader.h"
#include "common/socket_util.h"
#include "recv/ring/ring_stream.h"
#include "recv/stream/stats.h"
#include "recv/stream/stream.h"

using namespace pybind11::literals;

namespace spead2gpu::recv
{

namespace
{

/// One item of a delivered heap; keeps the heap alive.
struct raw_item
{
    std::shared_ptr<const heap_base> owner;
    const item *it;
};

/// Python-facing view of a ring stream's ring (Stream.Ringbuffer).
struct ring_view
{
    ring_stream *owner;
    std::size_t size() const { return owner->ring_size(); }
    std::size_t capacity() const { return owner->ring_capacity(); }
};

py::object to_python(ring_stream::frozen &&f)
{
    if (auto *h = std::get_if<heap>(&f))
        return py::cast(std::make_shared<heap>(std::move(*h)));
    return py::cast(std::make_shared<incomplete_heap>(std::move(std::get<incomplete_heap>(f))));
}

/// Blocking pop: tries without releasing the GIL first (cheap when heaps are waiting).
ring_stream::frozen pop_heap(ring_stream &s)
{
    if (auto h = s.try_pop_ready())
        return std::move(*h);
    return std::move(*wait_interruptible([&](auto timeout) { return s.pop_for(timeout); }));
}

/**
 * File descriptor of a Python socket.socket of the given type; anything else
 * raises TypeError (as an overload mismatch does in spead2), naming what was
 * wrong: this overload also receives every port number the port overload
 * refused, so an out-of-range port is reported as one.
 */
int socket_fileno(const py::object &sock, int type, const char *method)
{
    py::object socket_cls = py::module_::import("socket").attr("socket");
    if (!py::isinstance(sock, socket_cls))
    {
        const std::string what = std::string(method) + "(): ";
        if (py::isinstance<py::int_>(sock) && !py::isinstance<py::bool_>(sock))
            throw py::type_error(what + "port " + py::str(sock).cast<std::string>() +
                                 " is out of range (a port is 0 to 65535)");
        throw py::type_error(what + "expected a port number (int) or a socket.socket, not " +
                             py::str(py::type::handle_of(sock).attr("__name__")).cast<std::string>());
    }
    if ((sock.attr("type").cast<int>() & 0xf) != type)
        throw py::type_error(type == SOCK_DGRAM ? "expected a UDP (SOCK_DGRAM) socket"
                                                : "expected a TCP (SOCK_STREAM) socket");
    return sock.attr("fileno")().cast<int>();
}

/**
 * add_udp_reader / add_tcp_reader on a port of this host. With @a binds_at_start
 * (UDP, as in spead2) an explicit-start stream binds the port at start().
 */
template <typename Reader, bool binds_at_start>
void add_port_reader(stream &s, std::uint16_t port, std::size_t max_size, std::size_t buffer_size,
                     const std::string &bind_hostname)
{
    auto endpoint = resolve_address(bind_hostname, port);
    py::gil_scoped_release release;
    s.add_reader([=](stream &owner) { return std::make_unique<Reader>(owner, endpoint, max_size, buffer_size); },
                 binds_at_start);
}

/// add_udp_reader / add_tcp_reader with a Python socket (the reader keeps a duplicate of its fd).
template <typename Reader, int type> void add_socket_reader(stream &s, py::object sock, std::size_t max_size)
{
    int fd = socket_fileno(sock, type, type == SOCK_DGRAM ? "add_udp_reader" : "add_tcp_reader");
    py::gil_scoped_release release;
    s.add_reader([=](stream &owner) { return std::make_unique<Reader>(owner, fd, max_size); });
}

} // namespace

void register_chunk(py::module_ &m);

void register_recv_impl(py::module_ &m)
{
    py::class_<raw_item>(m, "RawItem", py::buffer_protocol(), "One item of a received heap")
        .def_property_readonly("id", [](const raw_item &r) { return r.it->id; })
        .def_property_readonly("is_immediate", [](const raw_item &r) { return r.it->is_immediate; })
        .def_property_readonly("immediate_value", [](const raw_item &r) { return r.it->immediate_value; })
        .def_buffer(
            [](raw_item &r)
            {
                return py::buffer_info(const_cast<std::uint8_t *>(r.it->ptr), 1,
                                       py::format_descriptor<std::uint8_t>::format(), 1, {py::ssize_t(r.it->length)},
                                       {py::ssize_t(1)}, false);
            });

    py::class_<heap_base, std::shared_ptr<heap_base>>(m, "HeapBase", "Common part of received heaps")
        .def_property_readonly("cnt", &heap_base::get_cnt)
        .def_property_readonly("flavour", &heap_base::get_flavour)
        .def("get_items",
             [](std::shared_ptr<heap_base> &self)
             {
                 py::list out;
                 for (const auto &it : self->get_items())
                     out.append(raw_item{self, &it});
                 return out;
             })
        .def("is_start_of_stream", &heap_base::is_start_of_stream)
        .def("is_end_of_stream", &heap_base::is_end_of_stream);
    py::class_<heap, heap_base, std::shared_ptr<heap>>(m, "Heap", "A received heap")
        .def("get_descriptors", &heap::get_descriptors);
    py::class_<incomplete_heap, heap_base, std::shared_ptr<incomplete_heap>>(m, "IncompleteHeap",
                                                                             "A received heap with parts missing")
        .def_property_readonly("heap_length", &incomplete_heap::get_heap_length)
        .def_property_readonly("received_length", &incomplete_heap::get_received_length)
        .def_property_readonly("payload_ranges", &incomplete_heap::get_payload_ranges);

    py::class_<stat_config> stat_cls(m, "StreamStatConfig", "Name and mode of a statistic");
    py::enum_<stat_mode>(stat_cls, "Mode").value("COUNTER", stat_mode::COUNTER).value("MAXIMUM", stat_mode::MAXIMUM);
    stat_cls
        .def(py::init([](std::string name, stat_mode mode) { return stat_config{std::move(name), mode}; }), "name"_a,
             "mode"_a = stat_mode::COUNTER)
        .def_property_readonly("name", [](const stat_config &c) { return c.name; })
        .def_property_readonly("mode", [](const stat_config &c) { return c.mode; })
        .def("combine", &stat_config::combine, "a"_a, "b"_a)
        .def(py::self == py::self)
        .def(py::self != py::self);

    py::class_<stream_stats> stats_cls(m, "StreamStats", "Statistics of a receive stream");
    auto get_index = [](const stream_stats &s, py::object key) -> std::size_t
    {
        if (py::isinstance<py::str>(key))
        {
            try
            {
                return s.index(key.cast<std::string>());
            }
            catch (std::out_of_range &)
            {
                throw py::key_error(key.cast<std::string>());
            }
        }
        auto idx = key.cast<py::ssize_t>();
        if (idx < 0)
            idx += py::ssize_t(s.size());
        if (idx < 0 || std::size_t(idx) >= s.size())
            throw py::index_error();
        return std::size_t(idx);
    };
    stats_cls.def(py::init<>())
        .def("__getitem__",
             [get_index](const stream_stats &s, py::object key) { return s.values()[get_index(s, key)]; })
        .def("__setitem__",
             [get_index](stream_stats &s, py::object key, std::uint64_t v) { s.values()[get_index(s, key)] = v; })
        .def("__contains__",
             [](const stream_stats &s, const std::string &name)
             {
                 for (const auto &c : *s.config())
                     if (c.name == name)
                         return true;
                 return false;
             })
        .def(
            "get",
            [](const stream_stats &s, const std::string &name, py::object dflt) -> py::object
            {
                for (std::size_t i = 0; i < s.size(); i++)
                    if ((*s.config())[i].name == name)
                        return py::int_(s.values()[i]);
                return dflt;
            },
            "name"_a, "default"_a = py::none())
        .def("keys",
             [](const stream_stats &s)
             {
                 py::list out;
                 for (const auto &c : *s.config())
                     out.append(c.name);
                 return out.attr("__iter__")();
             })
        .def("values", [](const stream_stats &s) { return py::cast(s.values()).attr("__iter__")(); })
        .def("items",
             [](const stream_stats &s)
             {
                 py::list out;
                 for (std::size_t i = 0; i < s.size(); i++)
                     out.append(py::make_tuple((*s.config())[i].name, s.values()[i]));
                 return out.attr("__iter__")();
             })
        .def("__iter__",
             [](const stream_stats &s)
             {
                 py::list out;
                 for (const auto &c : *s.config())
                     out.append(c.name);
                 return out.attr("__iter__")();
             })
        .def("__len__", &stream_stats::size)
        .def_property_readonly("config", [](const stream_stats &s) { return *s.config(); })
        .def(py::self + py::self)
        .def(py::self += py::self);
    // The core statistics: attributes of StreamStats and constants of
    // stream_stat_indices, both from the one list in the core.
    auto indices = m.def_submodule("stream_stat_indices", "Indices of the core statistics");
    const std::vector<stat_config> core_stats = default_stat_configs();
    for (std::size_t i = 0; i < core_stats.size(); i++)
    {
        const std::string &name = core_stats[i].name;
        stats_cls.def_property(
            name.c_str(), [i](const stream_stats &s) { return s.values()[i]; },
            [i](stream_stats &s, std::uint64_t v) { s.values()[i] = v; });
        std::string upper = name;
        for (auto &c : upper)
            c = char(std::toupper(c));
        indices.attr(upper.c_str()) = py::int_(i);
    }

    py::class_<stream_config>(m, "StreamConfig", "Receive stream options")
        .def(py::init(&from_kwargs<stream_config>))
        .def_property("max_heaps", &stream_config::get_max_heaps, &stream_config::set_max_heaps)
        .def_property("substreams", &stream_config::get_substreams, &stream_config::set_substreams)
        .def_property("bug_compat", &stream_config::get_bug_compat, &stream_config::set_bug_compat)
        .def_property(
            "memcpy", [](const stream_config &c) { return int(c.get_memcpy()); },
            [](stream_config &c, int v) { c.set_memcpy(memcpy_function_id(v)); })
        .def_property("memory_allocator", &stream_config::get_memory_allocator, &stream_config::set_memory_allocator)
        .def_property("stop_on_stop_item", &stream_config::get_stop_on_stop_item, &stream_config::set_stop_on_stop_item)
        .def_property("allow_unsized_heaps", &stream_config::get_allow_unsized_heaps,
                      &stream_config::set_allow_unsized_heaps)
        .def_property("allow_out_of_order", &stream_config::get_allow_out_of_order,
                      &stream_config::set_allow_out_of_order)
        .def_property("stream_id", &stream_config::get_stream_id, &stream_config::set_stream_id)
        .def_property("explicit_start", &stream_config::get_explicit_start, &stream_config::set_explicit_start)
        .def_property("extended_stats", &stream_config::get_extended_stats, &stream_config::set_extended_stats,
                      "Also report spead2gpu's own statistics (``spead2gpu.*``: malformed and rejected packets, "
                      "kernel drops, bad placements, free-chunk waits); off by default, so that the statistics "
                      "are exactly spead2's")
        .def_property("max_heap_length", &stream_config::get_max_heap_length, &stream_config::set_max_heap_length,
                      "spead2gpu only: packets of a heap longer than this (HEAP_LENGTH, or an unsized heap's "
                      "payload end) are refused and counted, so that a hostile header cannot make the stream "
                      "allocate what it claims (default 2 GiB)")
        .def_property("max_heap_items", &stream_config::get_max_heap_items, &stream_config::set_max_heap_items,
                      "spead2gpu only: packets that would give one heap more distinct item pointers (or, out "
                      "of order, payload fragments) than this are refused and counted (default 2**20)")
        .def_property_readonly("stats", &stream_config::get_stats)
        .def("add_stat", &stream_config::add_stat, "name"_a, "mode"_a = stat_mode::COUNTER)
        .def("get_stat_index", &stream_config::get_stat_index, "name"_a)
        .def("next_stat_index", &stream_config::next_stat_index)
        .def_readonly_static("DEFAULT_MAX_HEAPS", &stream_config::default_max_heaps)
        .def_readonly_static("DEFAULT_MAX_HEAP_LENGTH", &stream_config::default_max_heap_length)
        .def_readonly_static("DEFAULT_MAX_HEAP_ITEMS", &stream_config::default_max_heap_items);

    py::class_<ring_stream_config>(m, "RingStreamConfig", "Ring options of a receive stream")
        .def(py::init(&from_kwargs<ring_stream_config>))
        .def_property("heaps", &ring_stream_config::get_heaps, &ring_stream_config::set_heaps)
        .def_property("contiguous_only", &ring_stream_config::get_contiguous_only,
                      &ring_stream_config::set_contiguous_only)
        .def_property("incomplete_keep_payload_ranges", &ring_stream_config::get_incomplete_keep_payload_ranges,
                      &ring_stream_config::set_incomplete_keep_payload_ranges)
        .def_readonly_static("DEFAULT_HEAPS", &ring_stream_config::default_heaps);

    py::class_<stream> base(m, "_Stream", "Base of receive streams");
    base.attr("DEFAULT_UDP_MAX_SIZE") = 9200;
    base.attr("DEFAULT_UDP_BUFFER_SIZE") = 8 * 1024 * 1024;
    base.attr("DEFAULT_TCP_MAX_SIZE") = 65536;
    base.attr("DEFAULT_TCP_BUFFER_SIZE") = 212992;
    base.def(
            "add_buffer_reader",
            [](stream &s, py::object buffer)
            {
                auto view = request_buffer_view(buffer);
                py::gil_scoped_release release; // add_reader may wait for a stop in progress
                s.add_reader([=](stream &owner)
                             { return std::make_unique<mem_reader>(owner, view->data(), view->size(), view); });
            },
            "buffer"_a)
        .def("add_udp_reader", &add_port_reader<udp_reader, true>, "port"_a,
             "max_size"_a = udp_reader::default_max_size, "buffer_size"_a = udp_reader::default_buffer_size,
             "bind_hostname"_a = "")
        .def(
            "add_udp_reader",
            [](stream &s, const std::string &multicast_group, std::uint16_t port, std::size_t max_size,
               std::size_t buffer_size, const std::string &interface_address)
            {
                auto group = resolve_address(multicast_group, port);
                auto iface = resolve_address(interface_address, 0, AF_INET);
                py::gil_scoped_release release;
                s.add_reader([=](stream &owner)
                             { return std::make_unique<udp_reader>(owner, group, max_size, buffer_size, iface); },
                             true);
            },
            "multicast_group"_a, "port"_a, "max_size"_a = udp_reader::default_max_size,
            "buffer_size"_a = udp_reader::default_buffer_size, "interface_address"_a = "0.0.0.0")
        .def(
            "add_udp_reader",
            [](stream &s, const std::string &multicast_group, std::uint16_t port, std::size_t max_size,
               std::size_t buffer_size, unsigned int interface_index)
            {
                auto group = resolve_address(multicast_group, port);
                py::gil_scoped_release release;
                s.add_reader(
                    [=](stream &owner)
                    { return std::make_unique<udp_reader>(owner, group, max_size, buffer_size, interface_index); },
                    true);
            },
            "multicast_group"_a, "port"_a, "max_size"_a = udp_reader::default_max_size,
            "buffer_size"_a = udp_reader::default_buffer_size, "interface_index"_a = 0)
        .def("add_udp_reader", &add_socket_reader<udp_reader, SOCK_DGRAM>, "socket"_a,
             "max_size"_a = udp_reader::default_max_size)
        // (bound at add time, as in spead2)
        .def("add_tcp_reader", &add_port_reader<tcp_reader, false>, "port"_a,
             "max_size"_a = tcp_reader::default_max_size, "buffer_size"_a = tcp_reader::default_buffer_size,
             "bind_hostname"_a = "")
        .def("add_tcp_reader", &add_socket_reader<tcp_reader, SOCK_STREAM>, "acceptor"_a,
             "max_size"_a = tcp_reader::default_max_size)
        .def(
            "add_inproc_reader", [](stream &s, std::shared_ptr<inproc_queue> queue)
            { s.add_reader([=](stream &owner) { return std::make_unique<inproc_reader>(owner, queue); }); }, "queue"_a,
            py::call_guard<py::gil_scoped_release>())
        .def(
            "add_udp_pcap_file_reader",
            [](stream &s, const std::string &filename, const std::string &filter)
            {
                s.add_reader([=](stream &owner) { return std::make_unique<pcap_reader>(owner, filename, filter); },
                             false); // opened at add time, as in spead2
            },
            "filename"_a, "filter"_a = "", py::call_guard<py::gil_scoped_release>())
        .def("start", &stream::start, py::call_guard<py::gil_scoped_release>())
        .def("stop", &stream::stop, py::call_guard<py::gil_scoped_release>())
        .def_property_readonly("stats", &stream::get_stats)
        .def_property_readonly("config", &stream::get_config);

    py::class_<ring_stream, stream> ring_cls(m, "Stream", "Receive stream delivering heaps through a ring");
    py::class_<ring_view>(ring_cls, "Ringbuffer", "The stream's ring of heaps")
        .def("size", &ring_view::size)
        .def("capacity", &ring_view::capacity);
    ring_cls
        .def(py::init([](std::shared_ptr<thread_pool> pool, const stream_config &config,
                         const ring_stream_config &ring_config)
                      { return new ring_stream(std::move(pool), config, ring_config); }),
             py::arg("thread_pool").none(false), "config"_a = stream_config(), "ring_config"_a = ring_stream_config())
        .def("get", [](ring_stream &s) { return to_python(pop_heap(s)); })
        .def("get_nowait", [](ring_stream &s) { return to_python(s.try_pop()); })
        .def("__iter__", [](py::object self) { return self; })
        .def("__next__",
             [](ring_stream &s)
             {
                 try
                 {
                     return to_python(pop_heap(s));
                 }
                 catch (ringbuffer_stopped &)
                 {
                     throw py::stop_iteration();
                 }
             })
        .def_property_readonly("fd", &ring_stream::fd)
        .def_property_readonly("ringbuffer",
                               py::cpp_function([](ring_stream &s) { return ring_view{&s}; }, py::keep_alive<0, 1>()))
        .def_property_readonly("ring_config", &ring_stream::get_ring_config);
    register_chunk(m);
}

} // namespace spead2gpu::recv

namespace spead2gpu
{
void register_recv(py::module_ &m)
{
    recv::register_recv_impl(m);
}
} // namespace spead2gpu
