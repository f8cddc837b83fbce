"""GPU ingest: memory kinds, GPU chunk streams with event-aware recycling, first-step kernels.

Memory kinds (chosen by a word)

``host``
    page-aligned host memory; always available (the CPU fallback).
``pinned``
    page-locked host memory (``cudaHostAlloc``): the CPU writes, the copy engine reads.
``mapped``
    pinned and mapped into the GPU's address space: kernels read it in place (zero-copy).
``device``
    device memory (``cudaMalloc``); the network thread fills pinned *staging*
    chunks and a copy thread moves each completed chunk to a device chunk with
    ``cudaMemcpyAsync`` on a dedicated stream, one event per chunk.
``auto``
    ``device`` (or ``pinned`` for heap allocators) when a GPU is usable, else
    ``host``; the reason is logged and kept in ``fallback_reason``.

For every kind the network thread copies each payload byte once, from the
UDP reader's packet buffer into the chunk (``device``: into the staging
chunk, then one DMA per chunk); it is not GPUDirect RDMA (README.md, "What
happens to each byte").

A GPU kind without a usable GPU raises :class:`GpuUnavailableError` naming the
cause (:func:`unavailable_reason`).

Without a GPU, an :class:`Emulator` stands in for one (``emulator=`` on chunk
streams, groups, buffers and allocators): the same pipeline runs on host
memory with streams as worker threads and events that complete late, so code
that consumes GPU chunks can be tested on CPU-only machines.

Typical use::

    layout = spead2gpu.recv.ChunkLayout(heap_size=..., timestamp_id=..., ...)
    stream = spead2gpu.gpu.ChunkStream(
        spead2gpu.ThreadPool(), spead2gpu.recv.StreamConfig(max_heaps=8),
        spead2gpu.recv.ChunkStreamConfig(place=layout, max_chunks=4),
        kind="auto", data_shape=(n_time, n_chan), data_dtype=np.int8)
    stream.add_udp_reader(port)
    for chunk in stream:          # chunk.data: cupy (device/mapped) or numpy array
        with chunk:               # recycled once the current stream's work is done
            spead2gpu.gpu.zero_missing(chunk.data, chunk.present)
            samples = spead2gpu.gpu.unpack_int8(chunk.data)

The implementation is split by concern: :mod:`._memory` (memory kinds,
availability), :mod:`._cuda` (stream handles, cupy interop), :mod:`._streams`
(chunk streams and chunks) and :mod:`._kernels` (kernels with their numpy
fallback in :mod:`.reference`); this package only re-exports them.
"""

from .._spead2 import gpu as _gpu  # noqa: F401 (the compiled module, used by tests and benchmarks)
from . import reference
from ._cuda import _cupy_available, current_stream  # noqa: F401 (_cupy_available: used by the demo)
from ._emulator import EmulatedStream, Emulator
from ._kernels import unpack_cint8, unpack_int4, unpack_int8, unpack_int10, zero_missing
from ._memory import (
    KINDS,
    Buffer,
    CudaError,
    GpuUnavailableError,
    MemoryAllocator,
    available,
    compiled_with_cuda,
    device_count,
    resolve_kind,
    unavailable_reason,
)
from ._streams import Chunk, ChunkStream, ChunkStreamGroup

__all__ = [
    "KINDS",
    "Buffer",
    "Chunk",
    "ChunkStream",
    "ChunkStreamGroup",
    "CudaError",
    "EmulatedStream",
    "Emulator",
    "GpuUnavailableError",
    "MemoryAllocator",
    "available",
    "compiled_with_cuda",
    "current_stream",
    "device_count",
    "reference",
    "resolve_kind",
    "unavailable_reason",
    "unpack_cint8",
    "unpack_int4",
    "unpack_int8",
    "unpack_int10",
    "zero_missing",
]
