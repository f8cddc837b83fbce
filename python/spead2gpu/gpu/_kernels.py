"""First-step kernels (private): a CUDA kernel for CUDA arrays, the numpy reference otherwise.

The functions are public as members of :mod:`spead2gpu.gpu`.  An array is
treated as a GPU array when it has ``__cuda_array_interface__``; the kernel
is queued on the given (default: current) stream, ordered after the stream
named by each array's interface, if any.  Other arrays go to
:mod:`spead2gpu.gpu.reference`.
"""

from __future__ import annotations

import math

import numpy as np

from .._spead2 import gpu as _gpu
from . import reference
from ._cuda import _import_cupy, current_stream


def _is_gpu_array(a) -> bool:
    return hasattr(a, "__cuda_array_interface__")


def _cai(a, what):
    d = a.__cuda_array_interface__
    shape = tuple(d["shape"])
    dtype = np.dtype(d["typestr"])
    strides = d.get("strides")
    if strides is not None:
        expected, step = [], dtype.itemsize
        for s in reversed(shape):
            expected.append(step)
            step *= s
        if tuple(strides) != tuple(reversed(expected)) and math.prod(shape) > 1:
            raise ValueError(f"{what} must be C-contiguous")
    ptr = d["data"][0]
    if d["data"][1]:
        if what.startswith("out"):
            raise ValueError(f"{what} is read-only")
    return ptr, shape, dtype, int(math.prod(shape)) * dtype.itemsize, d.get("stream")


def _device_of(*arrays, device=None):
    if device is not None:
        return device
    for a in arrays:
        dev = getattr(a, "device", None)
        if dev is not None and hasattr(dev, "id"):
            return int(dev.id)
        if isinstance(dev, int):
            return dev
    return 0


def _order_after_producer(handle, producer, device):
    if producer is None:
        return
    producer = 0 if producer == 1 else producer   # CAI's 1 is the legacy default stream, handle 0
    if producer != handle:
        _gpu._stream_wait_stream(handle, producer, device)


def zero_missing(data, present, *, stream=None, device=None):
    """Zero, in place, the payload of every heap whose ``present`` flag is 0.

    ``data`` is split into ``present.size`` equal runs of bytes, one per heap
    in order (a chunk's data and present arrays as delivered). NumPy arrays
    use :func:`reference.zero_missing`; CUDA arrays (``__cuda_array_interface__``)
    run a kernel on *stream* (default: the current stream). Returns ``data``.
    """
    if not _is_gpu_array(data):
        return reference.zero_missing(np.asarray(data), np.asarray(present))
    if not _is_gpu_array(present):
        raise TypeError("present must be a CUDA array when data is")
    dptr, _, _, dbytes, dstream = _cai(data, "data")
    pptr, _, pdtype, pbytes, pstream = _cai(present, "present")
    n = pbytes // pdtype.itemsize
    if pdtype.itemsize != 1:
        raise ValueError("present must be uint8")
    if n == 0:
        return data
    if dbytes % n:
        raise ValueError(f"data ({dbytes} bytes) is not a whole number of heaps ({n} present flags)")
    dev = _device_of(data, present, device=device)
    handle = current_stream(stream)
    _order_after_producer(handle, dstream, dev)
    _order_after_producer(handle, pstream, dev)
    _gpu._zero_missing(dptr, pptr, n, dbytes // n, 1, handle, dev)
    return data


#: Alignment the kernels need of ``out`` (they store float32); the source may have any alignment.
_OUT_ALIGNMENT = 4
_OUT_DTYPES = {"int8": np.float32, "int4": np.float32, "int10": np.float32, "cint8": np.complex64}
_REFERENCE = {"int8": reference.unpack_int8, "int4": reference.unpack_int4,
              "int10": reference.unpack_int10, "cint8": reference.unpack_cint8}


def _unpack(fmt, src, out, stream, device):
    if not _is_gpu_array(src):
        if out is not None and _is_gpu_array(out):
            raise TypeError("src is a host array but out is a CUDA array")
        return _REFERENCE[fmt](np.asarray(src), out)
    sptr, sshape, sdtype, sbytes, sstream = _cai(src, "src")
    byte_shape = (sshape[:-1] + (sshape[-1] * sdtype.itemsize,)) if sshape else (sbytes,)
    shape = reference.unpacked_shape(fmt, byte_shape)
    n = int(math.prod(shape))
    dev = _device_of(src, out, device=device)
    if out is None:
        try:
            cupy = _import_cupy()
        except ImportError:
            raise TypeError("out is required when cupy is not installed") from None
        with cupy.cuda.Device(dev):
            out = cupy.empty(shape, _OUT_DTYPES[fmt])
    optr, _, odtype, obytes, ostream = _cai(out, "out")
    if odtype != np.dtype(_OUT_DTYPES[fmt]) or obytes != n * odtype.itemsize:
        raise ValueError(f"out must be {np.dtype(_OUT_DTYPES[fmt])} with {n} elements")
    if optr % _OUT_ALIGNMENT:
        # The kernels store float32 values: a misaligned store is a GPU fault
        # that leaves the CUDA context unusable.
        raise ValueError(f"out must be {_OUT_ALIGNMENT}-byte aligned (its address is {optr:#x})")
    handle = current_stream(stream)
    _order_after_producer(handle, sstream, dev)
    _order_after_producer(handle, ostream, dev)
    _gpu._unpack(fmt, sptr, optr, n, handle, dev)
    return out


def unpack_int8(src, out=None, *, stream=None, device=None):
    """int8 samples to float32 (same shape). GPU kernel for CUDA arrays, numpy otherwise."""
    return _unpack("int8", src, out, stream, device)


def unpack_int4(src, out=None, *, stream=None, device=None):
    """Packed int4 (two's complement, high nibble first) to float32; the last axis doubles."""
    return _unpack("int4", src, out, stream, device)


def unpack_int10(src, out=None, *, stream=None, device=None):
    """10-bit big-endian packed signed samples (4 in 5 bytes) to float32; last axis × 4/5."""
    return _unpack("int10", src, out, stream, device)


def unpack_cint8(src, out=None, *, stream=None, device=None):
    """Interleaved complex int8 to complex64; the last axis halves."""
    return _unpack("cint8", src, out, stream, device)
