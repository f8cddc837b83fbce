"""Memory kinds and device availability for :mod:`spead2gpu.gpu` (private).

The names here are public as members of :mod:`spead2gpu.gpu`, which documents
the memory kinds.  :class:`Buffer`, :class:`MemoryAllocator`, the exceptions
and the availability queries come from the compiled extension; this module
adds :func:`resolve_kind`.
"""

from __future__ import annotations

from .._spead2 import gpu as _gpu

#: The memory kinds a chunk stream or allocator can use (besides ``auto``).
KINDS = ("host", "pinned", "mapped", "device")
Buffer = _gpu.Buffer
MemoryAllocator = _gpu.MemoryAllocator
GpuUnavailableError = _gpu.GpuUnavailableError
CudaError = _gpu.CudaError
compiled_with_cuda = _gpu.compiled_with_cuda
available = _gpu.available
unavailable_reason = _gpu.unavailable_reason
device_count = _gpu.device_count


def resolve_kind(kind: str, *, host_addressable: bool = False) -> tuple[str, str | None]:
    """Resolve ``auto`` (and check names): returns ``(kind, fallback_reason)``.

    ``auto`` is ``device`` (``pinned`` if *host_addressable*) when a GPU is
    usable, otherwise ``host`` with the reason. A GPU kind without a GPU
    raises :class:`GpuUnavailableError`.
    """
    if kind == "auto":
        if available():
            return ("pinned" if host_addressable else "device"), None
        return "host", unavailable_reason()
    if kind not in KINDS:
        raise ValueError(f"unknown memory kind {kind!r} (expected one of {KINDS + ('auto',)})")
    if kind != "host" and not available():
        raise GpuUnavailableError(f"memory kind {kind!r} needs a usable GPU: {unavailable_reason()}")
    return kind, None
