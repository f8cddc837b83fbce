"""An emulated GPU for CPU-only machines (private; public as :class:`spead2gpu.gpu.Emulator`).

The chunk pipeline's hard part is ordering: a chunk may be reused only once
the consumer's GPU work on it has completed, and a device chunk may be
copied into only once its last release has. The emulator runs the very same
pipeline code with host memory standing in for every kind, a worker thread
per stream and events that complete *later*, when the worker reaches them —
so CI, and users' own tests of code that consumes GPU chunks, exercise that
ordering without a GPU.
"""

from __future__ import annotations

from .._spead2 import gpu as _gpu


class EmulatedStream:
    """A stream of an :class:`Emulator` (its worker runs queued operations in order).

    Pass it (or its ``handle``) wherever a CUDA stream is accepted by an
    emulated chunk stream: ``stream.get(s)``, ``chunk.release(s)``.
    """

    __module__ = "spead2gpu.gpu"

    def __init__(self, emulator: Emulator, device: int = 0) -> None:
        self.emulator = emulator
        self._stream = _gpu._Stream(device, emulator=emulator)

    @property
    def handle(self) -> int:
        """The stream handle (an int, as for CUDA streams)."""
        return self._stream.handle

    def busy(self, seconds: float) -> None:
        """Queue work that keeps the stream busy for *seconds* (an emulated kernel)."""
        self.emulator.busy(self, seconds)

    def synchronize(self) -> None:
        """Block until everything queued on the stream so far has run."""
        self.emulator.synchronize(self)

    @property
    def pending(self) -> int:
        """Operations queued on the stream that have not finished."""
        return self.emulator.pending(self.handle)


def _handle(stream) -> int:
    if stream is None:
        return 0
    if isinstance(stream, EmulatedStream):
        return stream.handle
    return int(stream)


class Emulator(_gpu._Emulator):
    """An emulated GPU: pass ``emulator=`` to chunk streams, groups, buffers and allocators.

    Memory of every kind is host memory (so chunks of every kind, ``device``
    included, are numpy arrays); streams are worker threads; an operation
    (copy, event record, :meth:`busy` work) starts *latency* seconds after it
    was queued and copies run at *bytes_per_second* (0: instantly), so
    events really complete late and recycling really waits for them.
    Stream 0 (``None``) is the emulator's default stream. The emulation does
    not run GPU kernels.

    Parameters
    ----------
    latency
        Seconds from queuing an operation to its earliest start.
    bytes_per_second
        Speed of emulated copies (0: they take no time).
    device_count
        Number of emulated devices.
    """

    __module__ = "spead2gpu.gpu"

    def __init__(self, latency: float = 200e-6, bytes_per_second: float = 0.0,
                 device_count: int = 1) -> None:
        super().__init__(latency, bytes_per_second, device_count)

    def stream(self, device: int = 0) -> EmulatedStream:
        """A new stream of this emulated GPU."""
        return EmulatedStream(self, device)

    def busy(self, stream, seconds: float) -> None:
        """Keep *stream* (an :class:`EmulatedStream`, handle or None) busy for *seconds*."""
        super().busy(_handle(stream), seconds)

    def synchronize(self, stream=None) -> None:
        """Block until the work queued so far on *stream* (default: the default stream) has run."""
        super().synchronize(_handle(stream))

    def fail_next(self, operation: str, count: int = 1) -> None:
        """Make the next *count* calls of *operation* fail with :class:`CudaError`.

        *operation* is one of ``allocate``, ``memcpy_async``, ``memset_async``,
        ``create_stream``, ``synchronize_stream``, ``synchronize_device``,
        ``create_event``, ``record_event``, ``query_event``,
        ``synchronize_event`` and ``stream_wait_event``: a way to test how
        code copes with GPU errors.
        """
        super().fail_next(operation, count)

    def pending(self, stream=None) -> int:
        """Operations queued on *stream* (default: the default stream) that have not finished."""
        return super().pending(_handle(stream))

    def __repr__(self) -> str:
        return (f"<spead2gpu.gpu.Emulator latency={self.latency:g}s "
                f"bytes_per_second={self.bytes_per_second:g} devices={self.device_count}>")


def _impl_of(emulator):
    """The compiled emulator of *emulator* (None for the real GPU)."""
    if emulator is None:
        return None
    if not isinstance(emulator, Emulator):
        raise TypeError(f"emulator must be a spead2gpu.gpu.Emulator or None, not {type(emulator).__name__}")
    return emulator
