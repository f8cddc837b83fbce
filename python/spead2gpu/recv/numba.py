"""numba types for writing chunk placement callbacks (requires :mod:`numba`).

A placement callback written with numba receives a pointer to
:data:`chunk_place_data`::

    @numba.cfunc(types.void(types.CPointer(chunk_place_data), types.uintp), nopython=True)
    def place(data_ptr, data_size):
        data = numba.carray(data_ptr, 1)
        ...

and is passed to :class:`spead2gpu.recv.ChunkStreamConfig` as
``scipy.LowLevelCallable(place.ctypes, signature="void (void *, size_t)")``.
"""

from numba import types

__all__ = ["chunk_place_data"]

_size_t = types.uintp

#: numba Record matching the C ``chunk_place_data`` structure (80 bytes on
#: LP64). Pointer members are declared as ``intp``; convert them with
#: :func:`spead2gpu.numba.intp_to_voidptr`.
chunk_place_data = types.Record.make_c_struct(
    [
        ("packet", types.intp),  # const uint8_t *: first packet of the heap
        ("packet_size", _size_t),  # its size in bytes
        ("items", types.intp),  # int64_t *: values of ChunkStreamConfig.items (-1 if absent)
        ("chunk_id", types.int64),  # out: chunk ID (-1: discard the heap)
        ("heap_index", _size_t),  # out: index into chunk.present
        ("heap_offset", _size_t),  # out: byte offset of the heap in chunk.data
        ("batch_stats", types.intp),  # uint64_t *: per-batch statistics
        ("extra", types.intp),  # uint8_t *: scratch of max_heap_extra bytes
        ("extra_offset", _size_t),  # out: offset in chunk.extra to copy extra to
        ("extra_size", _size_t),  # out: number of bytes of extra to copy
    ]
)
