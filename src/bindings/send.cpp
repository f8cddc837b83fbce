/**
 * @file send.cpp
 * Bindings for spead2gpu._spead2.send: the enums, Heap, HeapReference(List),
 * PacketGenerator and StreamConfig; the stream classes are registered by
 * send_streams.cpp.
 */
#include <string>
#include <vector>
#include <pybind11/native_enum.h>
#include "common/descriptor.h"
#include "common/flavour.h"
#include "bindings/py_common.h"
#include "bindings/send_heap_refs.h"
#include "send/heap/heap.h"
#include "send/heap/packet_generator.h"
#include "send/stream/stream.h"

using namespace pybind11::literals;

namespace spead2gpu
{
namespace send
{
void register_send_streams(py::module_ &m);

namespace
{

/* ----------------------------------------------------- packet generator */

/// Python PacketGenerator: iterates over the packets of a heap as bytes.
class py_packet_generator
{
    packet_generator gen;
    packet_buffer buf;

public:
    py_packet_generator(const heap &h, item_pointer_t cnt, std::size_t max_packet_size) : gen(h, cnt, max_packet_size)
    {
    }

    py::bytes next()
    {
        if (!gen.has_next_packet())
            throw py::stop_iteration();
        gen.next_packet(buf);
        py::bytes out(nullptr, buf.size);
        buf.copy_to(reinterpret_cast<std::uint8_t *>(PyBytes_AS_STRING(out.ptr())));
        return out;
    }
};

} // anonymous namespace
} // namespace send

void register_send(py::module_ &m)
{
    using namespace send;

    py::native_enum<rate_method>(m, "RateMethod", "enum.Enum")
        .value("SW", rate_method::SW)
        .value("HW", rate_method::HW)
        .value("AUTO", rate_method::AUTO)
        .finalize();
    py::native_enum<group_mode>(m, "GroupMode", "enum.Enum")
        .value("ROUND_ROBIN", group_mode::ROUND_ROBIN)
        .value("SERIAL", group_mode::SERIAL)
        .finalize();

    py::class_<heap>(m, "Heap", "A heap to be sent")
        .def(py::init<const flavour &>(), "flavour"_a = flavour())
        .def_property_readonly("flavour", &heap::get_flavour)
        .def_property("repeat_pointers", &heap::get_repeat_pointers, &heap::set_repeat_pointers)
        .def(
            "add_item",
            [](heap &h, py::object item)
            {
                auto id = item.attr("id").cast<s_item_pointer_t>();
                py::object buffer = item.attr("to_buffer")();
                bool allow_immediate = item.attr("allow_immediate")().cast<bool>();
                auto view = request_buffer_view(buffer);
                h.add_item(item_pointer_t(id), view->data(), view->size(), allow_immediate);
                h.add_keepalive(std::move(view));
            },
            "item"_a)
        .def(
            "add_descriptor",
            [](heap &h, py::object descriptor_obj)
            {
                py::object raw = descriptor_obj.attr("to_raw")(h.get_flavour());
                h.add_descriptor(raw.cast<descriptor>());
            },
            "descriptor"_a)
        .def("add_start", &heap::add_start)
        .def("add_end", &heap::add_end);

    py::class_<py_heap_reference>(m, "HeapReference", "A heap with its send parameters")
        .def(py::init([](const heap &h, s_item_pointer_t cnt, std::size_t substream_index, double rate)
                      { return py_heap_reference{heap_object(h), cnt, substream_index, rate}; }),
             "heap"_a, py::kw_only(), "cnt"_a = -1, "substream_index"_a = 0, "rate"_a = -1.0)
        .def_property_readonly("heap", [](const py_heap_reference &r) { return r.heap_obj; })
        .def_readwrite("cnt", &py_heap_reference::cnt)
        .def_readwrite("substream_index", &py_heap_reference::substream_index)
        .def_readwrite("rate", &py_heap_reference::rate);

    py::class_<py_heap_reference_list>(m, "HeapReferenceList", "An immutable list of heap references")
        .def(py::init<const std::vector<py_heap_reference> &>(), "heaps"_a)
        .def("__len__", [](const py_heap_reference_list &l) { return l.refs.size(); })
        .def("__getitem__",
             [](const py_heap_reference_list &l, const py::slice &slice)
             {
                 std::size_t start, stop, step, length;
                 if (!slice.compute(l.refs.size(), &start, &stop, &step, &length))
                     throw py::error_already_set();
                 py_heap_reference_list out;
                 out.refs.reserve(length);
                 out.heaps.reserve(length);
                 for (std::size_t i = 0; i < length; i++, start += step)
                 {
                     out.refs.push_back(l.refs[start]);
                     out.heaps.push_back(l.heaps[start]);
                 }
                 return out;
             });

    py::class_<py_packet_generator>(m, "PacketGenerator", "Iterate over the packets of a heap")
        .def(py::init<const heap &, item_pointer_t, std::size_t>(), "heap"_a, "cnt"_a, "max_packet_size"_a,
             py::keep_alive<1, 2>())
        .def("__iter__", [](py::object self) { return self; })
        .def("__next__", &py_packet_generator::next);

    auto config_cls = py::class_<stream_config>(m, "StreamConfig", "Send stream configuration");
    config_cls
        .def(py::init(
            [](py::kwargs kwargs)
            {
                static const char *const names[] = {"max_packet_size",  "rate",       "burst_size", "max_heaps",
                                                    "burst_rate_ratio", "rate_method"};
                py::object obj = py::cast(stream_config());
                for (auto item : kwargs)
                {
                    std::string key = py::str(item.first);
                    bool known = false;
                    for (const char *name : names)
                        known = known || key == name;
                    if (!known)
                        throw py::type_error("got an unexpected keyword argument");
                    obj.attr(key.c_str()) = item.second;
                }
                return obj.cast<stream_config>();
            }))
        .def_property("max_packet_size", &stream_config::get_max_packet_size,
                      [](stream_config &c, std::size_t v) { c.set_max_packet_size(v); })
        .def_property("rate", &stream_config::get_rate, [](stream_config &c, double v) { c.set_rate(v); })
        .def_property("burst_size", &stream_config::get_burst_size,
                      [](stream_config &c, std::size_t v) { c.set_burst_size(v); })
        .def_property("max_heaps", &stream_config::get_max_heaps,
                      [](stream_config &c, std::size_t v) { c.set_max_heaps(v); })
        .def_property("burst_rate_ratio", &stream_config::get_burst_rate_ratio,
                      [](stream_config &c, double v) { c.set_burst_rate_ratio(v); })
        .def_property("rate_method", &stream_config::get_rate_method,
                      [](stream_config &c, rate_method v) { c.set_rate_method(v); })
        .def_property_readonly("burst_rate", &stream_config::get_burst_rate);
    config_cls.attr("DEFAULT_MAX_PACKET_SIZE") = py::int_(stream_config::default_max_packet_size);
    config_cls.attr("DEFAULT_MAX_HEAPS") = py::int_(stream_config::default_max_heaps);
    config_cls.attr("DEFAULT_BURST_SIZE") = py::int_(stream_config::default_burst_size);
    config_cls.attr("DEFAULT_BURST_RATE_RATIO") = py::float_(stream_config::default_burst_rate_ratio);
    config_cls.attr("DEFAULT_RATE_METHOD") = py::cast(stream_config::default_rate_method);

    register_send_streams(m);
}

} // namespace spead2gpu
