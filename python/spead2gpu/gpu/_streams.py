"""GPU chunk streams: :class:`ChunkStream`, :class:`ChunkStreamGroup` and :class:`Chunk` (private).

The classes are public as members of :mod:`spead2gpu.gpu` (and their
``__module__`` says so).  The chunk pipeline itself (memory, copy thread,
event-aware recycling) is the compiled ``_ChunkPipeline``; this module works
out the chunk geometry, creates the pipeline and wraps delivered chunks as
numpy arrays, cupy arrays or raw :class:`~spead2gpu.gpu.Buffer` objects.
"""

from __future__ import annotations

import asyncio
import logging
import math
import types

import numpy as np

from .. import Empty, Stopped
from .._spead2 import gpu as _gpu
from ._cuda import _cupy_available, _cupy_view, _import_cupy, current_stream
from ._emulator import _impl_of
from ._memory import KINDS, resolve_kind

_logger = logging.getLogger("spead2gpu")


# ---------------------------------------------------------------------------
# Chunk geometry and views
# ---------------------------------------------------------------------------

class _Region:
    """Shape and dtype of one region of a chunk (data, present or extra)."""

    __slots__ = ("shape", "dtype", "nbytes")

    def __init__(self, shape, dtype):
        self.dtype = np.dtype(dtype)
        self.shape = tuple(int(s) for s in (shape if isinstance(shape, (tuple, list)) else (shape,)))
        self.nbytes = int(math.prod(self.shape)) * self.dtype.itemsize


def _geometry(layout, data_shape, data_dtype, present_shape, extra_shape, extra_dtype):
    """The three regions, defaulting from a ChunkLayout where one is given."""
    if data_shape is None:
        if layout is None:
            raise ValueError("data_shape is required unless the placement is a ChunkLayout")
        data_shape = (layout.chunk_data_size // np.dtype(data_dtype).itemsize,)
    if present_shape is None:
        if layout is None:
            raise ValueError("present_shape is required unless the placement is a ChunkLayout")
        present_shape = (layout.heaps_per_chunk,)
    if extra_shape is None:
        extra = layout.chunk_extra_size if layout is not None else 0
        extra_shape = (extra // np.dtype(extra_dtype).itemsize,) if extra else (0,)
    data = _Region(data_shape, data_dtype)
    present = _Region(present_shape, np.uint8)
    extra = _Region(extra_shape, extra_dtype)
    if layout is not None and data.nbytes < layout.chunk_data_size:
        raise ValueError(f"data ({data.nbytes} bytes) is smaller than the layout's chunk "
                         f"({layout.chunk_data_size} bytes)")
    if data.nbytes == 0:
        raise ValueError("chunk data must not be empty")
    return data, present, extra


def _layout_of(chunk_stream_config):
    place = getattr(chunk_stream_config, "place", None)
    from ..recv import ChunkLayout  # noqa: PLC0415

    return place if isinstance(place, ChunkLayout) else None


class Chunk:
    """A complete chunk handed to the consumer.

    ``data``, ``present`` and ``extra`` are arrays of the stream's dtypes and
    shapes: cupy arrays for ``device``/``mapped`` (when cupy is installed),
    numpy arrays otherwise (``buffers`` gives the raw :class:`Buffer` objects,
    with ``__cuda_array_interface__``/``__dlpack__``). The arrays are views
    of memory that is reused once the chunk is released: release the chunk
    (``with chunk:`` or :meth:`release`) after the last GPU work that reads it
    has been *queued* — the chunk is recycled only when that work completes —
    or with :meth:`release_now` if only the CPU used it. A chunk dropped
    without a release is released on the stream given to ``get()``.
    """

    __module__ = "spead2gpu.gpu"  # public as spead2gpu.gpu.Chunk

    __slots__ = ("_held", "_to_handle", "chunk_id", "stream_id", "data", "present", "extra",
                 "buffers", "kind", "__weakref__")

    def __init__(self, held, views, kind, to_handle):
        self._held = held
        self._to_handle = to_handle
        self.chunk_id = held.chunk_id
        self.stream_id = held.stream_id
        self.data, self.present, self.extra, self.buffers = views
        self.kind = kind

    @property
    def released(self) -> bool:
        return self._held.released

    def wait(self, stream=None) -> None:
        """Order *stream* (default: the current one) after this chunk's host-to-device copy.

        Done for the stream given to ``get()``; needed only to use the chunk
        on another stream. A no-op except for ``device``.
        """
        if self.kind == "device":
            self._held.order_before(self._to_handle(stream))

    def release(self, stream=None) -> None:
        """Give the chunk back once the work queued so far on *stream* is done.

        An event is recorded on *stream* (default: the stream given to
        ``get()``, which defaulted to the current stream, see
        :func:`current_stream`); a recycler thread returns the chunk to the
        free pool when it completes. Never blocks. Idempotent. For ``host``
        the chunk is recycled at once.
        """
        if self._held.released:
            return
        if self.kind == "host":
            self._held.release(False, 0)
        else:
            handle = self._held.release_stream if stream is None else self._to_handle(stream)
            self._held.release(True, handle)

    def release_now(self) -> None:
        """Give the chunk back at once, with no event: for chunks no GPU work uses.

        Use it when the chunk was read by the CPU only, or after synchronising
        with every stream that used it. Recycling then waits for nothing (an
        event on a busy stream would hold the chunk back until unrelated work
        finished). Idempotent.
        """
        if not self._held.released:
            self._held.release(False, 0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
        return False

    def __repr__(self):
        state = "released" if self.released else "held"
        return f"<spead2gpu.gpu.Chunk id={self.chunk_id} stream={self.stream_id} kind={self.kind!r} {state}>"


class _Consumer:
    """The consumer side shared by ChunkStream and ChunkStreamGroup."""

    def _setup_consumer(self, pipeline, regions, kind, array_module, fallback_reason):
        if array_module not in ("auto", "numpy", "cupy", "buffer"):
            raise ValueError("array_module must be 'auto', 'numpy', 'cupy' or 'buffer'")
        emulated = pipeline.emulated
        if array_module == "auto":
            if emulated:
                array_module = "numpy"
            elif kind in ("device", "mapped") and _cupy_available():
                array_module = "cupy"
            elif kind == "device":
                array_module = "buffer"
                _logger.info("spead2gpu.gpu: cupy is not importable: device chunks are exposed as "
                             "gpu.Buffer objects (use __cuda_array_interface__ or __dlpack__)")
            else:
                array_module = "numpy"
        if array_module == "numpy" and kind == "device" and not emulated:
            raise ValueError("device memory cannot be viewed as numpy arrays")
        if array_module == "cupy" and kind not in ("device", "mapped"):
            raise ValueError("cupy arrays need 'device' or 'mapped' memory")
        if array_module == "cupy" and emulated:
            raise ValueError("an emulated GPU's chunks are host memory: use array_module='numpy'")
        if array_module == "cupy":
            _import_cupy()
        self._pipeline = pipeline
        self._regions = regions
        self.kind = kind
        self.array_module = array_module
        self.fallback_reason = fallback_reason
        self.emulated = emulated
        self._to_handle = _emulated_handle if emulated else current_stream
        self._views = [None] * pipeline.consumer_slots
        if fallback_reason:
            _logger.info("spead2gpu.gpu: memory kind 'auto' fell back to 'host': %s", fallback_reason)

    def _make_views(self, slot):
        bufs = types.SimpleNamespace()
        arrays = []
        for name, region in zip(("data", "present", "extra"), self._regions):
            buf = self._pipeline.slot_buffer(slot, name)
            setattr(bufs, name, buf)
            if region.nbytes == 0 and name == "extra":
                arrays.append(None)
            elif self.array_module == "numpy":
                arrays.append(np.frombuffer(buf, region.dtype, count=math.prod(region.shape))
                              .reshape(region.shape))
            elif self.array_module == "cupy":
                arrays.append(_cupy_view(buf, region.shape, region.dtype))
            else:
                arrays.append(buf)
        views = (arrays[0], arrays[1], arrays[2], bufs)
        self._views[slot] = views
        return views

    def _wrap(self, held, stream):
        views = self._views[held.slot] or self._make_views(held.slot)
        if self.kind != "host":
            handle = self._to_handle(stream)
            held.release_stream = handle
            if self.kind == "device":
                held.order_before(handle)
                if self.emulated:
                    held.synchronize_ready()  # the consumer reads it with numpy, on the host
                else:
                    for buf in (views[3].data, views[3].present, views[3].extra):
                        buf.stream = handle
        return Chunk(held, views, self.kind, self._to_handle)

    @property
    def pipeline(self):
        """The underlying chunk pipeline (statistics: ``pipeline.stats``)."""
        return self._pipeline

    @property
    def pipeline_stats(self) -> dict:
        """Counters of the chunk pipeline: deliveries, releases, copies, copy back-pressure."""
        return self._pipeline.stats

    def get(self, stream=None) -> Chunk:
        """Wait for the next complete chunk (raises :class:`spead2gpu.Stopped` at the end).

        For ``device`` the copy is ordered before *stream* (default: the
        current stream): work queued there sees the data, with no host wait.
        """
        return self._wrap(self._pipeline.get(), stream)

    def get_nowait(self, stream=None) -> Chunk:
        """The next complete chunk, or :class:`spead2gpu.Empty`."""
        return self._wrap(self._pipeline.get_nowait(), stream)

    def __iter__(self):
        return self

    def __next__(self) -> Chunk:
        try:
            return self.get()
        except Stopped:
            raise StopIteration from None

    async def get_async(self, stream=None) -> Chunk:
        """Like :meth:`get`, without blocking the event loop."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                return self.get_nowait(stream)
            except Empty:
                pass
            fut = loop.create_future()
            fd = self._pipeline.data_fd

            def ready(fut=fut):
                if not fut.done():
                    fut.set_result(None)

            loop.add_reader(fd, ready)
            try:
                await fut
            finally:
                loop.remove_reader(fd)

    def __aiter__(self):
        return self

    async def __anext__(self) -> Chunk:
        try:
            return await self.get_async()
        except Stopped:
            raise StopAsyncIteration from None


def _emulated_handle(stream) -> int:
    """Stream handle on an emulated GPU: None is its default stream."""
    return 0 if stream is None else current_stream(stream)


def _resolve_for_stream(kind, emulator):
    if emulator is not None:
        if kind == "auto":
            return "device", None
        if kind not in KINDS:
            raise ValueError(f"unknown memory kind {kind!r} (expected one of {KINDS + ('auto',)})")
        return kind, None
    return resolve_kind(kind)


def _defaults(kind, max_chunks, n_chunks, n_device_chunks):
    if n_chunks is None:
        n_chunks = max_chunks + (2 if kind == "device" else 4)
    if n_device_chunks is None:
        n_device_chunks = 4 if kind == "device" else 0
    return n_chunks, n_device_chunks


class ChunkStream(_Consumer, _gpu._ChunkStream):
    """A chunk stream whose chunks live in memory of a chosen kind.

    The receive side is spead2's chunk model (``chunk_stream_config``:
    placement callback or :class:`spead2gpu.recv.ChunkLayout`, ``max_chunks``
    window, present flags, ``max_heap_extra``, packet presence) and the
    usual ``add_*_reader`` methods; the consumer iterates (or awaits) the
    stream and receives :class:`Chunk` objects.

    Parameters
    ----------
    kind
        ``host``, ``pinned``, ``mapped``, ``device`` or ``auto``.
    data_shape, data_dtype
        Shape and dtype of ``chunk.data`` (default: the layout's chunk as bytes).
    present_shape
        Shape of ``chunk.present`` (uint8; default: the layout's heaps per chunk).
    extra_shape, extra_dtype
        Shape and dtype of ``chunk.extra`` (default: the layout's extra bytes, else none).
    n_chunks
        Chunks filled by the network thread (pinned staging chunks for ``device``);
        default ``max_chunks`` + 4 (+ 2 for ``device``).
    n_device_chunks
        Device chunks the consumer cycles through (``device`` only; default 4).
    device
        CUDA device ordinal.
    array_module
        ``auto`` (cupy for device/mapped when importable, else numpy / raw buffers),
        ``numpy``, ``cupy`` or ``buffer``.
    emulator
        A :class:`spead2gpu.gpu.Emulator` to run on an emulated GPU instead
        of CUDA (``auto`` is then ``device``, and chunks are numpy arrays).
    """

    __module__ = "spead2gpu.gpu"  # public as spead2gpu.gpu.ChunkStream

    def __init__(self, thread_pool, config=None, chunk_stream_config=None, *, kind="auto",
                 data_shape=None, data_dtype=np.uint8, present_shape=None, extra_shape=None,
                 extra_dtype=np.uint8, n_chunks=None, n_device_chunks=None, device=0,
                 array_module="auto", emulator=None):
        from .. import recv  # noqa: PLC0415

        if chunk_stream_config is None:
            raise TypeError("chunk_stream_config is required")
        if config is None:
            config = recv.StreamConfig()
        kind, reason = _resolve_for_stream(kind, emulator)
        regions = _geometry(_layout_of(chunk_stream_config), data_shape, data_dtype, present_shape,
                            extra_shape, extra_dtype)
        n_chunks, n_device_chunks = _defaults(kind, chunk_stream_config.max_chunks, n_chunks,
                                              n_device_chunks)
        pipeline = _gpu._ChunkPipeline(kind, device, regions[0].nbytes, regions[1].nbytes,
                                       regions[2].nbytes, n_chunks, n_device_chunks,
                                       _impl_of(emulator))
        super().__init__(thread_pool, config, chunk_stream_config, pipeline)
        self._setup_consumer(pipeline, regions, kind, array_module, reason)

    def close(self) -> None:
        """Stop the stream and the pipeline (chunks not yet taken are dropped)."""
        self.stop()
        self._pipeline.stop()


class ChunkStreamGroup(_Consumer, _gpu._ChunkStreamGroup):
    """Several streams filling the same chunks (spead2's ChunkStreamRingGroup) in memory of one kind.

    Chunk geometry is given here (``layout=`` supplies the defaults, as the
    chunk stream configs do for :class:`ChunkStream`); members are added with
    :meth:`emplace_back` and reached with ``group[i]``. Iterating the group
    yields chunks. Other parameters as for :class:`ChunkStream`.
    """

    __module__ = "spead2gpu.gpu"  # public as spead2gpu.gpu.ChunkStreamGroup

    def __init__(self, config=None, *, layout=None, kind="auto", data_shape=None,
                 data_dtype=np.uint8, present_shape=None, extra_shape=None, extra_dtype=np.uint8,
                 n_chunks=None, n_device_chunks=None, device=0, array_module="auto",
                 emulator=None):
        from .. import recv  # noqa: PLC0415

        if config is None:
            config = recv.ChunkStreamGroupConfig()
        kind, reason = _resolve_for_stream(kind, emulator)
        regions = _geometry(layout, data_shape, data_dtype, present_shape, extra_shape, extra_dtype)
        n_chunks, n_device_chunks = _defaults(kind, config.max_chunks, n_chunks, n_device_chunks)
        pipeline = _gpu._ChunkPipeline(kind, device, regions[0].nbytes, regions[1].nbytes,
                                       regions[2].nbytes, n_chunks, n_device_chunks,
                                       _impl_of(emulator))
        super().__init__(config, pipeline)
        self._setup_consumer(pipeline, regions, kind, array_module, reason)

    def emplace_back(self, thread_pool, config, chunk_stream_config):
        """Add a member stream; returns it (a ``recv.ChunkStreamGroupMember``)."""
        return self._emplace_back(thread_pool, config, chunk_stream_config)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self._member(i) for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("group member index out of range")
        return self._member(index)

    def close(self) -> None:
        self.stop()
        self._pipeline.stop()
