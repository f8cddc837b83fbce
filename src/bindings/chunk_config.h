/**
 * @file chunk_config.h
 * Python ChunkStreamConfig, shared by the chunk bindings and the GPU
 * bindings so that a placement is parsed in one place only.
 */
#pragma once

#include "bindings/py_common.h"
#include "recv/chunk/chunk.h"

namespace spead2gpu::recv
{

/// Python ChunkStreamConfig: the C++ config plus the Python placement object.
struct py_chunk_stream_config
{
    chunk_stream_config config; ///< what the C++ stream uses (placement resolved to a function)
    py::object place = py::none(); ///< the user's object, kept alive while a stream uses its function
};

/**
 * Set the placement from Python: None, a recv.ChunkLayout, or a tuple whose
 * first element is a PyCapsule named "void (void *, size_t)" or
 * "void (void *, size_t, void *)" (a scipy LowLevelCallable), as spead2.
 */
void set_place(py_chunk_stream_config &self, py::object place);

} // namespace spead2gpu::recv
