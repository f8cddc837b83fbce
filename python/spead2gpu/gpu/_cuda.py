"""CUDA stream handles and cupy interop for :mod:`spead2gpu.gpu` (private).

:func:`current_stream` is public as ``spead2gpu.gpu.current_stream``.  cupy
is optional: it is imported only when needed, and :func:`_cupy_available`
says whether it can be used.
"""

from __future__ import annotations

import sys

import numpy as np

from ._memory import available


def current_stream(stream=None) -> int:
    """The CUDA stream handle (an int) for *stream*.

    *stream* may be an int (a ``cudaStream_t``), an object with ``ptr``
    (cupy), ``cuda_stream`` (torch) or ``handle`` (numba, spead2gpu), or None:
    cupy's current stream if cupy has been imported, else 0 (the legacy
    default stream).
    """
    if stream is None:
        cupy = sys.modules.get("cupy")
        if cupy is not None and available():
            return int(cupy.cuda.get_current_stream().ptr)
        return 0
    if isinstance(stream, (int, np.integer)):
        return int(stream)
    for attr in ("ptr", "cuda_stream", "handle"):
        if hasattr(stream, attr):
            value = getattr(stream, attr)
            if hasattr(value, "value"):  # ctypes.c_void_p (numba)
                value = value.value
            return int(value or 0)
    raise TypeError(f"cannot find a CUDA stream handle in {stream!r}")


def _import_cupy():
    import cupy  # noqa: PLC0415 (optional, imported lazily)

    return cupy


def _cupy_available() -> bool:
    if not available():
        return False
    try:
        _import_cupy()
    except Exception:  # noqa: BLE001 (ImportError, or a broken CUDA install)
        return False
    return True


def _cupy_view(buf, shape, dtype):
    cupy = _import_cupy()
    mem = cupy.cuda.UnownedMemory(buf.device_ptr, buf.nbytes, buf, device_id=buf.device)
    return cupy.ndarray(shape, dtype, cupy.cuda.MemoryPointer(mem, 0))
