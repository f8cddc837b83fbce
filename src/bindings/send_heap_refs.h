/**
 * @file send_heap_refs.h
 * Python HeapReference and HeapReferenceList of spead2gpu._spead2.send: a Heap
 * object with its send parameters. Shared by the heap bindings (send.cpp) and
 * the stream bindings (send_streams.cpp), which send them.
 */
#pragma once

#include <vector>
#include "bindings/py_common.h"
#include "send/heap/heap.h"
#include "send/stream/stream.h"

namespace spead2gpu::send
{

/// Python HeapReference: the Heap object plus send parameters.
struct py_heap_reference
{
    py::object heap_obj;
    s_item_pointer_t cnt = -1;
    std::size_t substream_index = 0;
    double rate = -1.0;

    heap_reference to_core() const
    {
        heap_reference ref;
        ref.h = &heap_obj.cast<const heap &>();
        ref.cnt = cnt;
        ref.substream_index = substream_index;
        ref.rate = rate;
        return ref;
    }
};

/// Python HeapReferenceList: a frozen list of references, converted once.
struct py_heap_reference_list
{
    std::vector<heap_reference> refs;
    std::vector<py::object> heaps; ///< keeps the Heap objects alive

    py_heap_reference_list() = default;
    explicit py_heap_reference_list(const std::vector<py_heap_reference> &in)
    {
        refs.reserve(in.size());
        heaps.reserve(in.size());
        for (const auto &r : in)
        {
            refs.push_back(r.to_core());
            heaps.push_back(r.heap_obj);
        }
    }
};

/// Existing Python wrapper of a heap bound by reference.
inline py::object heap_object(const heap &h)
{
    return py::cast(&h, py::return_value_policy::reference);
}

} // namespace spead2gpu::send
