"""NumPy reference implementations of the first-step GPU kernels.

They are the CPU fallback of :mod:`spead2gpu.gpu` (used whenever the inputs
are NumPy arrays) and the oracle the GPU kernels are tested against: the GPU
results must be bit-identical.

Sample formats (the last axis holds the bytes of one run of samples):

``int8``
    one signed byte per sample.
``int4``
    two's complement nibbles, two samples per byte, high nibble first.
``int10``
    10-bit two's complement samples packed big-endian, most significant bit
    first: 4 samples in 5 bytes (as MeerKAT digitisers send them).
``cint8``
    interleaved (real, imaginary) signed bytes, giving complex64.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "zero_missing",
    "unpack_int8",
    "unpack_int4",
    "unpack_int10",
    "unpack_cint8",
    "pack_int4",
    "pack_int10",
    "unpacked_shape",
]


def _bytes(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if not a.flags.c_contiguous:
        raise ValueError("array must be C-contiguous")
    if a.ndim == 0:
        a = a.reshape(1)
    return a.view(np.uint8).reshape(a.shape[:-1] + (-1,))


def unpacked_shape(fmt: str, shape) -> tuple:
    """Shape of the unpacked output for packed input bytes of ``shape`` (last axis in bytes)."""
    shape = tuple(shape) or (1,)
    last = shape[-1]
    if fmt == "int8":
        n = last
    elif fmt == "int4":
        n = 2 * last
    elif fmt == "int10":
        if last % 5:
            raise ValueError("int10 data must be a multiple of 5 bytes along the last axis")
        n = last // 5 * 4
    elif fmt == "cint8":
        if last % 2:
            raise ValueError("cint8 data must be an even number of bytes along the last axis")
        n = last // 2
    else:
        raise ValueError(f"unknown sample format {fmt!r}")
    return shape[:-1] + (n,)


def zero_missing(data: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Zero, in place, the bytes of each heap whose ``present`` flag is 0.

    ``data`` is split into ``present.size`` equal runs of bytes (one per heap,
    in order). Returns ``data``.
    """
    present = np.asarray(present).reshape(-1)
    b = _bytes(data).reshape(-1)
    n = present.size
    if n == 0:
        return data
    if b.size % n:
        raise ValueError(f"data ({b.size} bytes) is not a whole number of heaps ({n} present flags)")
    b.reshape(n, -1)[present == 0] = 0
    return data


def _out(out, shape, dtype):
    if out is None:
        return np.empty(shape, dtype)
    if out.dtype != dtype or out.size != int(np.prod(shape)):
        raise ValueError(f"out must be {np.dtype(dtype)} with {int(np.prod(shape))} elements")
    return out


def unpack_int8(src: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """int8 samples to float32."""
    b = _bytes(src)
    o = _out(out, unpacked_shape("int8", b.shape), np.float32)
    o.reshape(b.shape)[...] = b.view(np.int8)
    return o


def unpack_int4(src: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Packed int4 (high nibble first) to float32."""
    b = _bytes(src).view(np.int8)
    shape = unpacked_shape("int4", b.shape)
    o = _out(out, shape, np.float32)
    v = o.reshape(shape)
    v[..., 0::2] = b >> 4
    v[..., 1::2] = (b << 4).astype(np.int8) >> 4
    return o


def unpack_int10(src: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """10-bit big-endian packed signed samples (4 in 5 bytes) to float32."""
    b = _bytes(src)
    shape = unpacked_shape("int10", b.shape)
    o = _out(out, shape, np.float32)
    g = b.reshape(b.shape[:-1] + (-1, 5)).astype(np.uint64)
    v = (g[..., 0] << 32) | (g[..., 1] << 24) | (g[..., 2] << 16) | (g[..., 3] << 8) | g[..., 4]
    s = np.empty(v.shape + (4,), np.int64)
    for j in range(4):
        raw = ((v >> np.uint64(30 - 10 * j)) & np.uint64(0x3FF)).astype(np.int64)
        s[..., j] = (raw ^ 0x200) - 0x200
    o.reshape(shape)[...] = s.reshape(shape)
    return o


def unpack_cint8(src: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Interleaved complex int8 (re, im) to complex64."""
    b = _bytes(src)
    shape = unpacked_shape("cint8", b.shape)
    o = _out(out, shape, np.complex64)
    o.reshape(shape)[...] = b.view(np.int8).astype(np.float32).view(np.complex64)
    return o


def _signed_samples(samples, bits: int, group: int, how_many: str) -> np.ndarray:
    """*samples* as int64, checked: a whole number of *group* samples along the
    last axis, each a *bits*-bit two's complement value."""
    s = np.asarray(samples, dtype=np.int64)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if s.shape[-1] % group:
        raise ValueError(f"int{bits} needs {how_many} samples along the last axis")
    if s.size and (s.min() < lo or s.max() > hi):
        raise ValueError(f"int{bits} samples must be in [{lo}, {hi}]")
    return s


def pack_int4(samples) -> np.ndarray:
    """Inverse of :func:`unpack_int4`: integers in [-8, 7] (even count along the last axis) to bytes."""
    s = _signed_samples(samples, 4, 2, "an even number of")
    u = (s & 0xF).astype(np.uint8)
    return ((u[..., 0::2] << 4) | u[..., 1::2]).astype(np.uint8)


def pack_int10(samples) -> np.ndarray:
    """Inverse of :func:`unpack_int10`: integers in [-512, 511] (count a multiple of 4) to bytes."""
    s = _signed_samples(samples, 10, 4, "a multiple of 4")
    u = (s & 0x3FF).astype(np.uint64).reshape(s.shape[:-1] + (-1, 4))
    v = (u[..., 0] << 30) | (u[..., 1] << 20) | (u[..., 2] << 10) | u[..., 3]
    out = np.empty(v.shape + (5,), np.uint8)
    for k in range(5):
        out[..., k] = (v >> np.uint64(32 - 8 * k)) & np.uint64(0xFF)
    return out.reshape(s.shape[:-1] + (-1,))
