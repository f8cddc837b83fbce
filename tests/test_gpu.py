"""GPU ingest (spead2gpu.gpu): memory kinds, GPU chunk streams, recycling, kernels.

Without a GPU (CI) the whole API runs with ``host``/``auto`` memory, every GPU
kind runs on the emulated GPU (gpu.Emulator: the same pipeline code, events
that complete late; its ordering is tested in test_gpu_emulated.py), GPU kinds
without an emulator raise GpuUnavailableError, and the GPU tests skip with the
reason.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import os
import shutil
import socket
import time

import numpy as np
import pytest

import spead2gpu
import spead2gpu.recv
import spead2gpu.send
from conftest import ALIASED_TO_REFERENCE, addr, heap_packet, imm, run_with_timeout, stop_packet

if ALIASED_TO_REFERENCE:  # pragma: no cover
    pytest.skip("spead2gpu.gpu is spead2gpu-only", allow_module_level=True)

from spead2gpu import gpu  # noqa: E402
from spead2gpu.gpu import reference as ref  # noqa: E402

recv = spead2gpu.recv
send = spead2gpu.send

GPU = gpu.available()
REASON = gpu.unavailable_reason() or ""
needs_gpu = pytest.mark.skipif(not GPU, reason=f"no usable GPU: {REASON}")
no_gpu_only = pytest.mark.skipif(GPU, reason="a GPU is available")
GPU_KINDS = ["pinned", "mapped", "device"]

TS_ID, DATA_ID, FENG_ID = 0x1600, 0x3300, 0x4101
HS = 512            # heap size (bytes)
PKT = 128           # payload bytes per packet
TPC = 4             # timestamps per chunk
NF = 2              # F-engines (second layout axis)


def payload(ts, feng=0, size=HS):
    return ((np.arange(size, dtype=np.int64) * 5 + ts * 3 + feng * 101) & 0xFF).astype(np.uint8)


def heap_pkts(cnt, ts, feng=0, drop=(), size=HS, pkt=PKT):
    data = payload(ts, feng, size).tobytes()
    out = []
    for i, off in enumerate(range(0, size, pkt)):
        items = [imm(TS_ID, ts * HS), imm(FENG_ID, feng), addr(DATA_ID, 0)] if i == 0 else []
        if i not in drop:
            out.append(heap_packet(cnt, off, data[off:off + pkt], size, items))
    return out


def stream_packets(n_ts=14, missing=(5,), incomplete=(9,), nf=NF):
    """Heaps for timestamps 0..n_ts-1 and every F-engine; some missing or incomplete."""
    pkts, cnt = [], 1
    for t in range(n_ts):
        for f in range(nf):
            if (t, f) in missing or t in missing:
                cnt += 1
                continue
            drop = (1,) if t in incomplete and f == 0 else ()
            pkts += heap_pkts(cnt, t, f, drop)
            cnt += 1
    return pkts + [stop_packet(cnt)]


def layout(nf=NF, extra=True):
    return recv.ChunkLayout(heap_size=HS, timestamp_id=TS_ID, timestamp_step=HS,
                            timestamps_per_chunk=TPC, axes=["time", (FENG_ID, nf)],
                            extra_items=[TS_ID] if extra else [])


def feed_inproc(stream, pkts):
    q = spead2gpu.InprocQueue()
    for p in pkts:
        q.add_packet(p)
    q.stop()
    stream.add_inproc_reader(q)


def snapshot(chunk):
    """(chunk_id, present, data bytes, extra bytes) of a numpy-backed chunk."""
    extra = None if chunk.extra is None else np.asarray(chunk.extra).tobytes()
    return (chunk.chunk_id, np.asarray(chunk.present).tobytes(), np.asarray(chunk.data).tobytes(),
            extra)


def plain_chunks(pkts, lay=None, max_chunks=2, n_free=8):
    """What a plain recv.ChunkRingStream produces for the same packets."""
    lay = lay or layout()
    data_ring, free_ring = recv.ChunkRingbuffer(n_free), recv.ChunkRingbuffer(n_free)
    s = recv.ChunkRingStream(spead2gpu.ThreadPool(), recv.StreamConfig(max_heaps=4),
                             recv.ChunkStreamConfig(place=lay, max_chunks=max_chunks),
                             data_ring, free_ring)
    for _ in range(n_free):
        s.add_free_chunk(recv.Chunk(
            data=np.zeros(lay.chunk_data_size, np.uint8),
            present=np.zeros(lay.heaps_per_chunk, np.uint8),
            extra=np.zeros(max(lay.chunk_extra_size, 1), np.uint8)))
    feed_inproc(s, pkts)
    out = []
    for c in data_ring:
        extra = None if lay.chunk_extra_size == 0 else bytes(c.extra[:lay.chunk_extra_size])
        out.append((c.chunk_id, bytes(c.present), bytes(c.data), extra))
        s.add_free_chunk(c)
    s.stop()
    return out


def gpu_chunks(stream):
    out = []
    for c in stream:
        with c:
            out.append(snapshot(c))
    return out


def make_gpu_stream(kind="host", lay=None, max_chunks=2, **kw):
    lay = lay or layout()
    return gpu.ChunkStream(spead2gpu.ThreadPool(), recv.StreamConfig(max_heaps=4),
                           recv.ChunkStreamConfig(place=lay, max_chunks=max_chunks),
                           kind=kind, **kw)


def zeroed_missing(chunks):
    """Chunks with the payload of missing heaps zeroed (stale data differs by pool size)."""
    out = []
    for cid, present, data, extra in chunks:
        d = np.frombuffer(data, np.uint8).copy()
        ref.zero_missing(d, np.frombuffer(present, np.uint8))
        e = extra
        if extra is not None:
            ee = np.frombuffer(extra, np.uint8).copy()
            ref.zero_missing(ee, np.frombuffer(present, np.uint8))
            e = ee.tobytes()
        out.append((cid, present, d.tobytes(), e))
    return out


# ---------------------------------------------------------------------------
# Build and runtime detection
# ---------------------------------------------------------------------------

def test_compiled_with_cuda_when_nvcc_present():
    """The CUDA sources are compiled whenever nvcc was available to the build."""
    if GPU:
        # Whatever nvcc this machine has (maybe none: a wheel built elsewhere), a usable GPU
        # means CUDA was compiled in; no skip here, which SPEAD2GPU_EXPECT_GPU would fail.
        assert gpu.compiled_with_cuda()
        return
    nvcc = shutil.which("nvcc") or os.path.exists("/usr/local/cuda/bin/nvcc")
    if not nvcc:
        pytest.skip("nvcc is not installed here")
    if os.environ.get("SPEAD2GPU_EXPECT_NO_CUDA"):
        pytest.skip("built with SPEAD2GPU_CUDA=OFF on purpose")
    assert gpu.compiled_with_cuda()


def test_availability_is_consistent():
    assert isinstance(gpu.available(), bool)
    if gpu.available():
        assert gpu.unavailable_reason() is None
        assert gpu.device_count() >= 1
    else:
        reason = gpu.unavailable_reason()
        assert isinstance(reason, str) and reason
        assert gpu.device_count() == 0
        # Probing twice is cached and never crashes.
        assert gpu.unavailable_reason() == reason


@no_gpu_only
@pytest.mark.parametrize("kind", GPU_KINDS)
def test_gpu_kinds_raise_clear_error(kind):
    with pytest.raises(gpu.GpuUnavailableError, match="needs a usable GPU") as info:
        gpu.Buffer(1024, kind)
    assert REASON in str(info.value)
    assert isinstance(info.value, RuntimeError)
    with pytest.raises(gpu.GpuUnavailableError, match=kind):
        make_gpu_stream(kind)
    if kind != "device":
        with pytest.raises(gpu.GpuUnavailableError):
            gpu.MemoryAllocator(kind)


def test_resolve_kind():
    kind, reason = gpu.resolve_kind("auto")
    if GPU:
        assert (kind, reason) == ("device", None)
        assert gpu.resolve_kind("auto", host_addressable=True) == ("pinned", None)
    else:
        assert (kind, reason) == ("host", REASON)
    assert gpu.resolve_kind("host") == ("host", None)
    with pytest.raises(ValueError, match="unknown memory kind"):
        gpu.resolve_kind("vram")


def test_current_stream():
    assert gpu.current_stream(5) == 5
    assert gpu.current_stream(np.int64(7)) == 7

    class CupyLike:
        ptr = 11

    class TorchLike:
        cuda_stream = 12

    class NumbaLike:
        handle = ctypes.c_void_p(13)

    assert gpu.current_stream(CupyLike()) == 11
    assert gpu.current_stream(TorchLike()) == 12
    assert gpu.current_stream(NumbaLike()) == 13
    if "cupy" not in __import__("sys").modules:
        assert gpu.current_stream() == 0
    with pytest.raises(TypeError):
        gpu.current_stream("stream")


# ---------------------------------------------------------------------------
# Buffers and allocators
# ---------------------------------------------------------------------------

def test_host_buffer_protocols():
    b = gpu.Buffer(10000, "host")
    assert (b.kind, b.nbytes, len(b), b.fallback_reason) == ("host", 10000, 10000, None)
    assert b.host_ptr % 4096 == 0 and b.device_ptr == 0
    a = np.frombuffer(b, np.uint8)
    assert a.flags.writeable and not a.any()
    a[:3] = [1, 2, 3]
    m = memoryview(b)
    assert m.nbytes == 10000 and bytes(m[:3]) == b"\x01\x02\x03"
    assert b.__dlpack_device__() == (1, 0)
    d = np.from_dlpack(b)
    assert d.dtype == np.uint8 and d.shape == (10000,)
    a[5] = 9
    assert d[5] == 9          # same memory, no copy
    assert not hasattr(b, "__cuda_array_interface__")
    assert "host" in repr(b)
    b.zero()
    assert not a.any()
    assert b.__dlpack__(dl_device=(1, 0)) is not None
    for other in ((2, 0), (3, 0), (1, 1)):
        with pytest.raises(BufferError, match="without a copy"):
            b.__dlpack__(dl_device=other)


def test_dlpack_versioned_capsule_for_dlpack_1_consumers():
    """numpy >= 2.1 (like cupy and torch) asks for a DLPack 1.x capsule with
    max_version; it gets "dltensor_versioned", not flagged read-only, so the
    array is writable and shares the buffer's memory. Without max_version the
    legacy capsule is given."""
    b = gpu.Buffer(64, "host")
    assert '"dltensor_versioned"' in repr(b.__dlpack__(max_version=(1, 0)))
    assert '"dltensor_versioned"' in repr(b.__dlpack__(max_version=(1, 3)))
    assert '"dltensor"' in repr(b.__dlpack__())
    assert '"dltensor"' in repr(b.__dlpack__(max_version=(0, 8)))
    d = np.from_dlpack(b)
    assert d.flags.writeable
    d[:4] = [1, 2, 3, 4]
    assert bytes(memoryview(b)[:4]) == b"\x01\x02\x03\x04"
    for _ in range(100):      # unconsumed versioned capsules are freed too
        cap = b.__dlpack__(max_version=(1, 0))
        del cap


def test_dlpack_stream_zero_is_refused():
    """DLPack forbids stream=0 (ambiguous between the legacy and per-thread
    default streams): a clear ValueError naming it."""
    b = gpu.Buffer(64, "host")
    with pytest.raises(ValueError, match="stream=0"):
        b.__dlpack__(stream=0)


def test_dlpack_capsule_unconsumed_is_freed():
    b = gpu.Buffer(64, "host")
    for _ in range(100):
        cap = b.__dlpack__()
        assert type(cap).__name__ == "PyCapsule"
        del cap           # destructor calls the deleter (never consumed)
    with pytest.raises(BufferError):
        b.__dlpack__(copy=True)
    with pytest.raises(BufferError):
        b.__dlpack__(dl_device=(2, 0))


def test_auto_buffer():
    b = gpu.Buffer(100)
    if GPU:
        assert b.kind == "device" and b.fallback_reason is None
    else:
        assert b.kind == "host" and b.fallback_reason == REASON


def test_memory_allocator_host_in_stream_config():
    alloc = gpu.MemoryAllocator("host")
    assert isinstance(alloc, spead2gpu.MemoryAllocator)
    assert alloc.kind == "host"
    auto = gpu.MemoryAllocator()
    assert auto.kind == ("pinned" if GPU else "host")
    assert (auto.fallback_reason is None) == GPU
    with pytest.raises(ValueError, match="host-addressable"):
        gpu.MemoryAllocator("device")
    for allocator in (alloc, spead2gpu.MemoryPool(1024, 8192, 4, 2, allocator=alloc)):
        ig = send.ItemGroup()
        ig.add_item(0x1000, "x", "", shape=(3000,), dtype=np.uint16,
                    value=np.arange(3000, dtype=np.uint16))
        out = send.BytesStream(spead2gpu.ThreadPool())
        out.send_heap(ig.get_heap())
        stream = recv.Stream(spead2gpu.ThreadPool(), recv.StreamConfig(memory_allocator=allocator))
        stream.add_buffer_reader(out.getvalue())
        heaps = list(stream)
        rig = spead2gpu.ItemGroup()
        rig.update(heaps[0])
        np.testing.assert_array_equal(rig["x"].value, np.arange(3000, dtype=np.uint16))


# ---------------------------------------------------------------------------
# GPU chunk stream on host memory (and every kind on the emulated GPU)
# ---------------------------------------------------------------------------

def variant_kwargs(variant):
    """ChunkStream keywords of a test variant: a kind, or ``emulated-<kind>``."""
    if variant.startswith("emulated-"):
        return dict(kind=variant.split("-", 1)[1], emulator=gpu.Emulator())
    return dict(kind=variant)


@pytest.mark.parametrize("variant", ["host", "auto", "emulated-pinned", "emulated-mapped",
                                     "emulated-device"])
def test_chunk_stream_matches_plain_chunk_stream(variant):
    pkts = stream_packets()
    expected = plain_chunks(pkts)
    assert len(expected) >= 3
    if variant == "auto" and GPU:
        pytest.skip("auto is the real device kind here (covered by the GPU tests)")
    s = make_gpu_stream(**variant_kwargs(variant))
    assert s.kind == ("host" if variant == "auto" else variant.split("-")[-1])
    assert s.emulated == variant.startswith("emulated")
    feed_inproc(s, pkts)
    got = gpu_chunks(s)
    assert zeroed_missing(got) == zeroed_missing(expected)
    # The heaps that arrived are bit-identical, including stale-free present flags.
    assert [g[:2] for g in got] == [e[:2] for e in expected]
    stats = s.pipeline_stats
    assert stats["chunks_delivered"] == stats["chunks_released"] == len(got)
    if variant == "emulated-device":
        assert stats["chunks_copied"] == len(got)
        assert stats["bytes_copied"] >= len(got) * layout().chunk_data_size
    s.stop()
    assert s.stats["too_old_heaps"] == 0


def test_chunk_stream_arrays_dtype_shape():
    lay = layout()
    s = make_gpu_stream("host", data_shape=(TPC, NF, HS // 2), data_dtype=np.uint16,
                        extra_dtype=np.uint64)
    assert s.array_module == "numpy"
    feed_inproc(s, stream_packets(n_ts=4, missing=(), incomplete=()))
    chunks = list(s)
    assert len(chunks) == 1
    c = chunks[0]
    assert c.data.shape == (TPC, NF, HS // 2) and c.data.dtype == np.uint16
    assert c.present.shape == (lay.heaps_per_chunk,) and c.present.dtype == np.uint8
    assert c.extra.dtype == np.uint64 and c.extra.shape == (lay.heaps_per_chunk,)
    assert c.present.all()
    # extra holds each heap's timestamp (little-endian uint64), heap index = t * NF + f
    np.testing.assert_array_equal(c.extra, np.repeat(np.arange(TPC) * HS, NF))
    np.testing.assert_array_equal(c.data[2, 1].view(np.uint8), payload(2, 1))
    assert isinstance(c.buffers.data, gpu.Buffer) and c.buffers.data.nbytes == lay.chunk_data_size
    c.release()
    assert c.released
    c.release()  # idempotent


def test_chunk_stream_callback_placement():
    """A numba placement callback (spead2's ABI) drives the GPU chunk stream too."""
    numba = pytest.importorskip("numba")
    scipy = pytest.importorskip("scipy")
    from numba import types

    from spead2gpu.numba import intp_to_voidptr
    from spead2gpu.recv.numba import chunk_place_data

    hpc = TPC * NF

    @numba.cfunc(types.void(types.CPointer(chunk_place_data), types.uintp), nopython=True)
    def place(data_ptr, data_size):
        data = numba.carray(data_ptr, 1)
        items = numba.carray(intp_to_voidptr(data[0].items), 3, dtype=np.int64)
        if items[1] == HS and items[2] >= 0:
            idx = (items[2] // HS) * NF + items[0]
            data[0].chunk_id = idx // hpc
            data[0].heap_index = idx % hpc
            data[0].heap_offset = (idx % hpc) * HS

    cb = scipy.LowLevelCallable(place.ctypes, signature="void (void *, size_t)")
    cfg = recv.ChunkStreamConfig(items=[FENG_ID, spead2gpu.HEAP_LENGTH_ID, TS_ID], max_chunks=2,
                                 place=cb)
    with pytest.raises(ValueError, match="data_shape"):
        gpu.ChunkStream(spead2gpu.ThreadPool(), recv.StreamConfig(), cfg, kind="host")
    s = gpu.ChunkStream(spead2gpu.ThreadPool(), recv.StreamConfig(max_heaps=4), cfg, kind="host",
                        data_shape=(hpc, HS), present_shape=(hpc,))
    pkts = stream_packets()
    feed_inproc(s, pkts)
    got = gpu_chunks(s)
    expected = plain_chunks(pkts, lay=layout(extra=False))
    assert zeroed_missing([g[:3] + (None,) for g in got]) == zeroed_missing(expected)


def _free_port_socket():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", 0))
    return sock


def test_chunk_stream_udp_loopback():
    """Over UDP loopback the GPU chunk stream (host) and a plain ChunkRingStream agree."""
    pkts = stream_packets(n_ts=12, missing=(5,), incomplete=())
    lay = layout()
    socks = [_free_port_socket(), _free_port_socket()]
    s = make_gpu_stream("host")
    s.add_udp_reader(socks[0])
    data_ring, free_ring = recv.ChunkRingbuffer(8), recv.ChunkRingbuffer(8)
    plain = recv.ChunkRingStream(spead2gpu.ThreadPool(), recv.StreamConfig(max_heaps=4),
                                 recv.ChunkStreamConfig(place=lay, max_chunks=2), data_ring, free_ring)
    for _ in range(8):
        plain.add_free_chunk(recv.Chunk(data=np.zeros(lay.chunk_data_size, np.uint8),
                                        present=np.zeros(lay.heaps_per_chunk, np.uint8),
                                        extra=np.zeros(lay.chunk_extra_size, np.uint8)))
    plain.add_udp_reader(socks[1])
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for p in pkts:
        for sk in socks:
            tx.sendto(p, sk.getsockname())
        time.sleep(0.0002)
    tx.close()
    # A lost stop packet must fail the test, not hang it.
    got = run_with_timeout(lambda: gpu_chunks(s), 30)

    def drain_plain():
        out = []
        for c in data_ring:
            out.append((c.chunk_id, bytes(c.present), bytes(c.data), bytes(c.extra)))
            plain.add_free_chunk(c)
        return out

    expected = run_with_timeout(drain_plain, 30)
    plain.stop()
    s.stop()
    for sk in socks:
        sk.close()
    assert len(got) >= 3
    assert zeroed_missing(got) == zeroed_missing(expected)


def test_release_recycles_and_zeroes_present():
    """Held chunks are not reused; release (explicit, with, or dropped) gives them back."""
    s = make_gpu_stream("host", max_chunks=1, n_chunks=3)
    pipe = s.pipeline
    assert pipe.free_chunks() == 3
    q = spead2gpu.InprocQueue()
    s.add_inproc_reader(q)

    def send_ts(lo, hi):
        for t in range(lo, hi):
            for f in range(NF):
                for p in heap_pkts(1000 + t * NF + f, t, f):
                    q.add_packet(p)

    send_ts(0, TPC + 1)   # completes chunk 0 (chunk 1 opened)
    c0 = s.get()
    assert c0.chunk_id == 0 and c0.present.all()
    assert pipe.free_chunks() == 1    # c0 held, chunk 1 in the window
    send_ts(TPC + 1, 2 * TPC + 1)      # completes chunk 1
    c1 = s.get()
    assert pipe.free_chunks() == 0
    with c1:
        assert c1.chunk_id == 1
    assert c1.released and pipe.free_chunks() == 1
    c0.release()
    assert pipe.free_chunks() == 2
    # Only one heap of chunk 3 arrives: the recycled chunk's present flags were zeroed.
    send_ts(2 * TPC + 1, 3 * TPC)
    for p in heap_pkts(5000, 3 * TPC, 0):
        q.add_packet(p)
    c2 = s.get()
    assert c2.chunk_id == 2 and c2.present.all()
    del c2
    gc.collect()
    assert pipe.free_chunks() >= 1     # dropped chunks are released too
    q.stop()
    c3 = s.get()
    assert c3.chunk_id == 3
    assert c3.present.tolist() == [1] + [0] * (len(c3.present) - 1)
    c3.release()
    with pytest.raises(spead2gpu.Stopped):
        s.get()
    stats = s.pipeline_stats
    assert stats["chunks_delivered"] == stats["chunks_released"] == 4


def test_emulated_device_copy_back_pressure():
    """With one device chunk held by the consumer the copy thread waits (counted)."""
    s = make_gpu_stream("device", emulator=gpu.Emulator(), n_device_chunks=1, n_chunks=4)
    pkts = stream_packets(n_ts=12, missing=(), incomplete=())
    feed_inproc(s, pkts)
    first = s.get()
    deadline = time.time() + 10
    while s.stats["packets"] < len(pkts) - 1 and time.time() < deadline:
        time.sleep(0.01)             # the network side has delivered every chunk
    time.sleep(0.1)                  # the copy thread now waits for a free device chunk
    assert s.pipeline.qsize() == 0
    first.release()
    rest = [c.chunk_id for c in _drain(s)]
    assert [first.chunk_id] + rest == [0, 1, 2]
    stats = s.pipeline_stats
    assert stats["copy_waits"] >= 1 and stats["copy_wait_ns"] > 0
    assert stats["chunks_copied"] == 3


def _drain(s):
    out = []
    for c in s:
        out.append(c)
        c.release()
    return out


def test_stream_stop_and_close():
    s = make_gpu_stream("host")
    q = spead2gpu.InprocQueue()
    s.add_inproc_reader(q)
    for p in stream_packets(n_ts=10, missing=(), incomplete=())[:-1]:
        q.add_packet(p)
    deadline = time.time() + 5
    while s.pipeline.qsize() < 1 and time.time() < deadline:
        time.sleep(0.01)
    # A user stop stops the rings first (as in spead2): chunks already delivered
    # to the ring are still handed out, those in the window are dropped.
    s.stop()
    ids = [c.chunk_id for c in _drain(s)]
    assert ids == [0]
    s.close()
    with pytest.raises(spead2gpu.Stopped):
        s.get_nowait()


def test_get_nowait_and_async():
    s = make_gpu_stream("host")
    with pytest.raises(spead2gpu.Empty):
        s.get_nowait()
    feed_inproc(s, stream_packets(n_ts=8, missing=(), incomplete=()))

    async def consume():
        out = []
        async for chunk in s:
            with chunk:
                out.append(chunk.chunk_id)
        return out

    assert asyncio.run(consume()) == [0, 1]


@pytest.mark.parametrize("variant", ["host", "emulated-mapped", "emulated-device"])
def test_chunk_stream_group(variant):
    """A group of two members (one per F-engine) fills the same chunks as a plain group."""
    lay = layout()
    pkts = [stream_packets(n_ts=12, missing=(3,), incomplete=(), nf=NF)]
    by_feng = [[], []]
    for p in pkts[0][:-1]:
        # route each heap's packets to the member of its F-engine (cnt parity by construction)
        cnt = int.from_bytes(p[8 + 2:8 + 8], "big") & ((1 << 40) - 1)
        by_feng[(cnt - 1) % NF].append(p)
    kw = variant_kwargs(variant)
    # Lossless eviction: the result does not depend on how the members' threads interleave.
    gcfg = recv.ChunkStreamGroupConfig(max_chunks=2,
                                       eviction_mode=recv.ChunkStreamGroupConfig.EvictionMode.LOSSLESS)
    group = gpu.ChunkStreamGroup(gcfg, layout=lay, **kw)
    for _ in range(NF):
        group.emplace_back(spead2gpu.ThreadPool(), recv.StreamConfig(max_heaps=4),
                           recv.ChunkStreamConfig(place=lay, max_chunks=2))
    assert len(group) == NF and len(group[:]) == NF
    for f in range(NF):
        feed_inproc(group[f], by_feng[f] + [stop_packet(9999)])
    got = []
    for c in group:
        with c:
            got.append(snapshot(c))
    group.stop()

    data_ring, free_ring = recv.ChunkRingbuffer(8), recv.ChunkRingbuffer(8)
    plain = recv.ChunkStreamRingGroup(gcfg, data_ring, free_ring)
    for _ in range(NF):
        plain.emplace_back(spead2gpu.ThreadPool(), recv.StreamConfig(max_heaps=4),
                           recv.ChunkStreamConfig(place=lay, max_chunks=2))
    for _ in range(8):
        plain.add_free_chunk(recv.Chunk(data=np.zeros(lay.chunk_data_size, np.uint8),
                                        present=np.zeros(lay.heaps_per_chunk, np.uint8),
                                        extra=np.zeros(lay.chunk_extra_size, np.uint8)))
    for f in range(NF):
        feed_inproc(plain[f], by_feng[f] + [stop_packet(9999)])
    expected = []
    for c in data_ring:
        expected.append((c.chunk_id, bytes(c.present), bytes(c.data), bytes(c.extra)))
        plain.add_free_chunk(c)
    plain.stop()
    assert [g[0] for g in got] == [0, 1, 2]
    assert zeroed_missing(got) == zeroed_missing(expected)


def test_geometry_errors():
    with pytest.raises(ValueError, match="smaller than the layout"):
        make_gpu_stream("host", data_shape=(10,))
    with pytest.raises(ValueError, match="array_module"):
        make_gpu_stream("host", array_module="jax")
    with pytest.raises(ValueError, match="cupy arrays need"):
        make_gpu_stream("host", array_module="cupy")
    with pytest.raises(ValueError, match="emulated GPU's chunks are host memory"):
        make_gpu_stream("device", emulator=gpu.Emulator(), array_module="cupy")
    with pytest.raises(TypeError, match="emulator must be"):
        make_gpu_stream("device", emulator=object())


# ---------------------------------------------------------------------------
# Kernels: references against hand-computed values
# ---------------------------------------------------------------------------

def test_reference_int8():
    src = np.array([-128, -1, 0, 1, 127], np.int8)
    np.testing.assert_array_equal(gpu.unpack_int8(src),
                                  np.array([-128, -1, 0, 1, 127], np.float32))
    assert gpu.unpack_int8(src).dtype == np.float32


def test_reference_int4():
    src = np.array([0x7F, 0x80, 0xF1, 0x08], np.uint8)
    out = gpu.unpack_int4(src)
    np.testing.assert_array_equal(out, np.array([7, -1, -8, 0, -1, 1, 0, -8], np.float32))
    np.testing.assert_array_equal(ref.pack_int4(out.astype(int)), src)


def test_reference_int10():
    # 1, -1, 511, -512 -> 0000000001 1111111111 0111111111 1000000000
    src = np.array([0x00, 0x7F, 0xF7, 0xFE, 0x00], np.uint8)
    np.testing.assert_array_equal(gpu.unpack_int10(src), np.array([1, -1, 511, -512], np.float32))
    np.testing.assert_array_equal(ref.pack_int10([1, -1, 511, -512]), src)
    # 0x80 0x00 ... : first sample -512 (1000000000), rest 0
    np.testing.assert_array_equal(gpu.unpack_int10(np.array([0x80, 0, 0, 0, 0], np.uint8)),
                                  [-512, 0, 0, 0])
    with pytest.raises(ValueError, match="multiple of 5"):
        gpu.unpack_int10(np.zeros(7, np.uint8))


def test_reference_cint8():
    src = np.array([1, -2, -128, 127], np.int8)
    out = gpu.unpack_cint8(src)
    assert out.dtype == np.complex64
    np.testing.assert_array_equal(out, np.array([1 - 2j, -128 + 127j], np.complex64))


def test_reference_zero_missing():
    data = np.arange(1, 13, dtype=np.uint8).reshape(3, 4)
    gpu.zero_missing(data, np.array([1, 0, 1], np.uint8))
    np.testing.assert_array_equal(data, [[1, 2, 3, 4], [0, 0, 0, 0], [9, 10, 11, 12]])
    wide = np.ones((2, 3), np.float32)
    gpu.zero_missing(wide, np.array([0, 1], np.uint8))
    np.testing.assert_array_equal(wide, [[0, 0, 0], [1, 1, 1]])
    with pytest.raises(ValueError, match="whole number of heaps"):
        gpu.zero_missing(np.zeros(5, np.uint8), np.zeros(2, np.uint8))


def test_reference_shapes_and_roundtrips():
    rng = np.random.default_rng(1)
    s4 = rng.integers(-8, 8, size=(3, 64))
    np.testing.assert_array_equal(gpu.unpack_int4(ref.pack_int4(s4)), s4.astype(np.float32))
    s10 = rng.integers(-512, 512, size=(2, 40))
    packed = ref.pack_int10(s10)
    assert packed.shape == (2, 50)
    np.testing.assert_array_equal(gpu.unpack_int10(packed), s10.astype(np.float32))
    raw = rng.integers(-128, 128, size=(4, 6)).astype(np.int8)
    out = np.empty((4, 3), np.complex64)
    assert gpu.unpack_cint8(raw, out) is out
    np.testing.assert_array_equal(out.real, raw[:, 0::2]) and np.testing.assert_array_equal(
        out.imag, raw[:, 1::2])
    with pytest.raises(ValueError, match="out must be"):
        gpu.unpack_int8(raw, np.empty(3, np.float32))


@no_gpu_only
def test_kernels_need_gpu_for_cuda_arrays():
    class FakeCuda:
        __cuda_array_interface__ = {"shape": (8,), "typestr": "|u1", "data": (4096, False),
                                    "version": 3, "strides": None, "stream": None}

    with pytest.raises(gpu.GpuUnavailableError, match="needs a usable GPU"):
        gpu.unpack_int8(FakeCuda(), FakeCuda2())
    with pytest.raises(gpu.GpuUnavailableError):
        gpu.zero_missing(FakeCuda(), FakeCuda())


class FakeCuda2:
    __cuda_array_interface__ = {"shape": (8,), "typestr": "<f4", "data": (8192, False),
                                "version": 3, "strides": None, "stream": None}


def _fake_cuda(ptr, shape, typestr):
    class Fake:
        __cuda_array_interface__ = {"shape": shape, "typestr": typestr, "data": (ptr, False),
                                    "version": 3, "strides": None, "stream": None}

    return Fake()


@pytest.mark.parametrize("fmt, shape, typestr", [("int8", (8,), "<f4"), ("int4", (16,), "<f4"),
                                                 ("int10", (8,), "<f4"), ("cint8", (4,), "<c8")])
@pytest.mark.parametrize("misalign", [1, 2, 3])
def test_kernels_refuse_misaligned_out(fmt, shape, typestr, misalign):
    """The kernels store float32: an ``out`` not 4-byte aligned (a byte-offset
    view, which __cuda_array_interface__ allows) is refused before anything is
    launched, rather than faulting on the GPU. The source may be at any byte."""
    src = _fake_cuda(4096 + 3, (10,) if fmt == "int10" else (8,), "|u1")
    fn = getattr(gpu, f"unpack_{fmt}")
    with pytest.raises(ValueError, match="4-byte aligned"):
        fn(src, _fake_cuda(8192 + misalign, shape, typestr))


# ---------------------------------------------------------------------------
# GPU tests (need a GPU; cupy where arrays are involved)
# ---------------------------------------------------------------------------

@needs_gpu
@pytest.mark.parametrize("kind", GPU_KINDS)
def test_gpu_buffer_kinds(kind):
    b = gpu.Buffer(1 << 20, kind)
    assert b.kind == kind and b.nbytes == 1 << 20
    if kind in ("pinned", "mapped"):
        a = np.frombuffer(b, np.uint8)
        assert not a.any()
        a[:] = 7
    else:
        with pytest.raises(BufferError):
            memoryview(b)
    if kind in ("mapped", "device"):
        cai = b.__cuda_array_interface__
        assert cai["version"] == 3 and cai["shape"] == (1 << 20,) and cai["typestr"] == "|u1"
        assert cai["data"][0] == b.device_ptr != 0 and "stream" in cai
    else:
        assert not hasattr(b, "__cuda_array_interface__")
    # pinned and mapped are host memory the GPU also reaches: kDLCUDAHost, which numpy takes.
    assert b.__dlpack_device__() == ((2, 0) if kind == "device" else (3, 0))
    if kind != "device":
        d = np.from_dlpack(b)
        assert d.size == 1 << 20 and (d == 7).all()
        assert np.from_dlpack(b, device="cpu").size == 1 << 20   # dl_device=(kDLCPU, 0)
        assert b.__dlpack__(dl_device=(1, 0)) is not None
    if kind == "mapped":
        assert b.__dlpack__(dl_device=(2, 0)) is not None        # by its device pointer
    if kind == "device":
        with pytest.raises(BufferError, match="without a copy"):
            b.__dlpack__(dl_device=(1, 0))


@needs_gpu
@pytest.mark.parametrize("kind", ["mapped", "device"])
def test_gpu_buffer_cupy_and_dlpack(kind):
    cupy = pytest.importorskip("cupy")
    b = gpu.Buffer(4096, kind)
    a = cupy.asarray(b)
    a[:] = 3
    cupy.cuda.get_current_stream().synchronize()
    d = cupy.from_dlpack(b)
    assert int(d.sum()) == 3 * 4096
    if kind == "mapped":
        assert np.frombuffer(b, np.uint8).sum() == 3 * 4096


@needs_gpu
@pytest.mark.parametrize("kind", ["pinned", "mapped"])
def test_gpu_memory_allocator(kind):
    alloc = gpu.MemoryAllocator(kind)
    assert alloc.kind == kind
    pool = spead2gpu.MemoryPool(1024, 65536, 4, 2, allocator=alloc)
    ig = send.ItemGroup()
    ig.add_item(0x1000, "x", "", shape=(5000,), dtype=np.int32, value=np.arange(5000, dtype=np.int32))
    out = send.BytesStream(spead2gpu.ThreadPool())
    out.send_heap(ig.get_heap())
    for a in (alloc, pool):
        stream = recv.Stream(spead2gpu.ThreadPool(), recv.StreamConfig(memory_allocator=a))
        stream.add_buffer_reader(out.getvalue())
        rig = spead2gpu.ItemGroup()
        rig.update(list(stream)[0])
        np.testing.assert_array_equal(rig["x"].value, np.arange(5000, dtype=np.int32))


def _to_host(a):
    if a is None:
        return None
    if hasattr(a, "get"):
        return a.get()
    return np.asarray(a)


@needs_gpu
@pytest.mark.parametrize("kind", GPU_KINDS)
def test_gpu_chunk_stream_bit_identical_to_cpu(kind):
    """Every GPU kind yields the same chunks as the host path for the same stream."""
    if kind in ("mapped", "device"):
        pytest.importorskip("cupy")
    pkts = stream_packets(n_ts=40, missing=(5, 17), incomplete=(9, 30))
    host = make_gpu_stream("host")
    feed_inproc(host, pkts)
    expected = gpu_chunks(host)
    s = make_gpu_stream(kind)
    assert s.kind == kind
    feed_inproc(s, pkts)
    got = []
    for c in s:
        with c:
            if kind in ("mapped", "device"):
                assert type(c.data).__module__.startswith("cupy")
            got.append((c.chunk_id, _to_host(c.present).tobytes(), _to_host(c.data).tobytes(),
                        _to_host(c.extra).tobytes()))
    assert zeroed_missing(got) == zeroed_missing(expected)
    stats = s.pipeline_stats
    assert stats["chunks_delivered"] == stats["chunks_released"] == len(got)
    if kind == "device":
        assert stats["chunks_copied"] == len(got)


def _cupy():
    """cupy (the GPU tests' arrays); a skip without it, which SPEAD2GPU_EXPECT_GPU turns into a failure."""
    return pytest.importorskip("cupy")


_SPIN_SOURCE = r"""
extern "C" __global__ void spead2gpu_test_spin(unsigned long long ns)
{
    unsigned long long start, now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
    do
    {
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    } while (now - start < ns);
}
"""
_spin_kernel = []


def _spin(cupy, stream, seconds):
    """Keep *stream* busy for *seconds* of wall time (one thread reading %globaltimer).

    The kernel is compiled on first use, before anything is queued, so the
    busy time starts when the kernel starts.
    """
    if not _spin_kernel:
        kernel = cupy.RawKernel(_SPIN_SOURCE, "spead2gpu_test_spin")
        kernel.compile()
        _spin_kernel.append(kernel)
    with stream:
        _spin_kernel[0]((1,), (1,), (np.uint64(int(seconds * 1e9)),))


def _wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _chunk_payload(chunk_id):
    """The data bytes of a complete chunk of layout() (heap index t * NF + f)."""
    return np.concatenate([payload(chunk_id * TPC + t, f) for t in range(TPC) for f in range(NF)]).tobytes()


def _host_snapshot(c):
    """(chunk_id, present, data, extra) bytes of a chunk of any kind."""
    extra = _to_host(c.extra)
    return (c.chunk_id, _to_host(c.present).tobytes(), _to_host(c.data).tobytes(),
            None if extra is None else extra.tobytes())


@needs_gpu
def test_gpu_device_release_is_stream_ordered():
    """A device chunk released on a busy stream is recycled only once that
    stream's work is done: with one device chunk the next chunk is not even
    copied until then, and work the stream queued before the release reads the
    chunk's own data, not the next chunk's."""
    cupy = _cupy()
    pkts = stream_packets(n_ts=12, missing=(), incomplete=())
    s = make_gpu_stream("device", n_device_chunks=1, n_chunks=4)
    feed_inproc(s, pkts)
    busy = cupy.cuda.Stream(non_blocking=True)
    c = run_with_timeout(lambda: s.get(busy), 10)
    assert c.chunk_id == 0
    _spin(cupy, busy, 1.5)
    with busy:
        late = c.data.copy()          # runs after the spin
    c.release(busy)
    assert c.released and s.pipeline_stats["chunks_released"] == 1
    time.sleep(0.5)
    assert not busy.done, "the busy stream finished early: the test proves nothing"
    with pytest.raises(spead2gpu.Empty):
        s.get_nowait()                # the only device chunk is not free yet ...
    assert s.pipeline_stats["chunks_copied"] == 1     # ... so nothing was copied into it
    busy.synchronize()
    nxt = run_with_timeout(lambda: s.get(busy), 10)
    assert nxt.chunk_id == 1
    with busy:
        nxt_data = nxt.data.copy()
    nxt.release(busy)
    busy.synchronize()
    assert late.get().tobytes() == _chunk_payload(0)
    assert nxt_data.get().tobytes() == _chunk_payload(1)
    assert s.pipeline_stats["release_event_waits"] >= 1   # the recycler did find the event pending
    rest = [c.chunk_id for c in _drain(s)]
    assert rest == [2]
    s.stop()


@needs_gpu
@pytest.mark.parametrize("kind", ["pinned", "mapped"])
def test_gpu_recycle_waits_for_busy_consumer_stream(kind):
    """A pinned/mapped chunk released on a busy non-blocking stream goes back to
    the free ring (where the network thread could overwrite it) only after that
    stream's work; the release itself is counted at once and never blocks."""
    cupy = _cupy()
    s = make_gpu_stream(kind, max_chunks=1, n_chunks=3)
    pipe = s.pipeline
    q = spead2gpu.InprocQueue()
    s.add_inproc_reader(q)
    for t in range(TPC + 1):           # completes chunk 0 and opens chunk 1
        for f in range(NF):
            for p in heap_pkts(1000 + t * NF + f, t, f):
                q.add_packet(p)
    c0 = run_with_timeout(s.get, 10)
    assert c0.chunk_id == 0
    assert _wait_for(lambda: pipe.free_chunks() == 1)   # c0 held, chunk 1 in the window
    busy = cupy.cuda.Stream(non_blocking=True)
    _spin(cupy, busy, 1.5)
    late = None
    if kind == "mapped":
        with busy:
            late = cupy.asarray(c0.data).copy()   # the GPU reads the mapped chunk in place, later
    start = time.monotonic()
    c0.release(busy)
    assert time.monotonic() - start < 0.5           # never waits for the stream
    assert c0.released and s.pipeline_stats["chunks_released"] == 1
    time.sleep(0.5)
    assert not busy.done, "the busy stream finished early: the test proves nothing"
    assert pipe.free_chunks() == 1                  # held back
    busy.synchronize()
    assert _wait_for(lambda: pipe.free_chunks() == 2, 5), pipe.free_chunks()
    assert s.pipeline_stats["release_event_waits"] >= 1
    if late is not None:
        assert late.get().tobytes() == _chunk_payload(0)
    q.stop()
    assert [c.chunk_id for c in _drain(s)] == [1]
    s.stop()


_UNPACK_CASES = {
    # format: (kernel, reference, source bytes (vector part + a tail), output dtype)
    "int8": (gpu.unpack_int8, ref.unpack_int8, 1027, np.float32),
    "int4": (gpu.unpack_int4, ref.unpack_int4, 515, np.float32),
    "int10": (gpu.unpack_int10, ref.unpack_int10, 1025, np.float32),
    "cint8": (gpu.unpack_cint8, ref.unpack_cint8, 1026, np.complex64),
}
SENTINEL = 0xA5


def _view(cupy, base, offset, shape, dtype):
    """A view of *base*'s memory at byte *offset* (any alignment)."""
    return cupy.ndarray(shape, dtype, memptr=base.data + offset)


@needs_gpu
@pytest.mark.parametrize("fmt", list(_UNPACK_CASES))
def test_gpu_unpack_every_alignment(fmt):
    """Every source byte offset (0..15) with every output offset the API allows
    (4-byte steps: 0, 4, 8, 12 mod 16), as views into larger buffers, so the
    vector paths and the scalar ones (and their tails) all run; bit-identical
    to the reference and nothing written outside ``out``."""
    cupy = _cupy()
    fn, rfn, nsrc, odtype = _UNPACK_CASES[fmt]
    rng = np.random.default_rng(11)
    host = rng.integers(0, 256, size=nsrc + 32, dtype=np.uint8)
    src_base = cupy.asarray(host)
    nout = ref.unpacked_shape(fmt, (nsrc,))[0]
    obytes = nout * np.dtype(odtype).itemsize
    dst_base = cupy.empty(obytes + 64, cupy.uint8)
    assert src_base.data.ptr % 16 == 0 and dst_base.data.ptr % 16 == 0
    for soff in range(16):
        expected_out = rfn(host[soff:soff + nsrc])
        src = _view(cupy, src_base, soff, (nsrc,), cupy.uint8)
        assert src.data.ptr % 16 == soff
        for doff in range(0, 16, 4):
            dst_base.fill(SENTINEL)
            out = _view(cupy, dst_base, doff, (nout,), odtype)
            assert out.data.ptr % 16 == doff
            assert fn(src, out) is out
            expected = np.full(obytes + 64, SENTINEL, np.uint8)
            expected[doff:doff + obytes] = expected_out.view(np.uint8)
            assert dst_base.get().tobytes() == expected.tobytes(), (fmt, soff, doff)
        allocated = fn(src)              # out allocated by the wrapper
        assert allocated.dtype == odtype and allocated.shape == (nout,)
        assert allocated.get().tobytes() == expected_out.tobytes(), (fmt, soff)


@needs_gpu
@pytest.mark.parametrize("heap_bytes", [1, 5, 16, 33, 1000])
def test_gpu_zero_missing_every_alignment(heap_bytes):
    """zero_missing with data at every byte offset (0..15) and present flags at
    several, heap sizes that are and are not whole 16-byte vectors: the missing
    heaps are zeroed exactly as by the reference, nothing else changes."""
    cupy = _cupy()
    rng = np.random.default_rng(heap_bytes)
    n = 13
    flags = (rng.random(n) < 0.5).astype(np.uint8)
    flags[:2] = (0, 1)
    flags[-1] = 0
    total = n * heap_bytes
    host = rng.integers(1, 256, size=total + 32, dtype=np.uint8)   # no zeros: zeroing shows
    base = cupy.empty(total + 32, cupy.uint8)
    pbase = cupy.empty(n + 8, cupy.uint8)
    for off in range(16):
        for poff in (0, 1, 3):
            base.set(host)
            phost = np.full(n + 8, 2, np.uint8)        # non-zero around: "present"
            phost[poff:poff + n] = flags
            pbase.set(phost)
            data = _view(cupy, base, off, (total,), cupy.uint8)
            present = _view(cupy, pbase, poff, (n,), cupy.uint8)
            assert data.data.ptr % 16 == off
            assert gpu.zero_missing(data, present) is data
            expected = host.copy()
            ref.zero_missing(expected[off:off + total], flags)
            assert base.get().tobytes() == expected.tobytes(), (heap_bytes, off, poff)


@needs_gpu
@pytest.mark.parametrize("n_heaps, heap_bytes, offset", [
    (65535, 7, 0), (65536, 16, 0), (70001, 7, 3), (140001, 64, 8), (3, (1 << 20) + 3, 5)])
def test_gpu_zero_missing_many_heaps(n_heaps, heap_bytes, offset):
    """More than 65535 heaps: the kernel's grid-y loop (one row of blocks per
    65535 heaps) reaches every heap; and heaps larger than one grid-x pass."""
    cupy = _cupy()
    rng = np.random.default_rng(n_heaps)
    flags = (rng.random(n_heaps) < 0.7).astype(np.uint8)
    flags[[0, -1]] = 0
    if n_heaps > 65535:
        flags[65535] = 0            # the first heap of the second grid-y pass
    else:
        flags[1] = 1
    total = n_heaps * heap_bytes
    host = rng.integers(1, 256, size=total + offset + 16, dtype=np.uint8)
    base = cupy.asarray(host)
    data = _view(cupy, base, offset, (total,), cupy.uint8)
    gpu.zero_missing(data, cupy.asarray(flags))
    expected = host.copy()
    ref.zero_missing(expected[offset:offset + total], flags)
    got = base.get()
    assert np.array_equal(got, expected)
    assert not got[offset + (n_heaps - 1) * heap_bytes:offset + total].any()   # the last heap


@needs_gpu
@pytest.mark.parametrize("fmt, nbytes, offset", [
    ("int8", (1 << 26) + (1 << 20) + 13, 0),    # vector kernel: more than 65536 x 256 threads' work
    ("int8", (1 << 24) + 4099, 1),              # scalar kernel (unaligned source), likewise
    ("int4", (1 << 25) + (1 << 19) + 7, 0),
    ("int10", 5 * ((1 << 24) + 1001), 0),
])
def test_gpu_unpack_large_grid_stride(fmt, nbytes, offset):
    """Inputs longer than one pass of the largest grid (65536 blocks of 256):
    every grid-stride loop iterates, results bit-identical to the reference."""
    cupy = _cupy()
    fn, rfn, _, odtype = _UNPACK_CASES[fmt]
    rng = np.random.default_rng(nbytes)
    host = rng.integers(0, 256, size=nbytes + offset, dtype=np.uint8)
    base = cupy.asarray(host)
    src = _view(cupy, base, offset, (nbytes,), cupy.uint8)
    got = fn(src).get()
    del base, src
    assert got.shape == ref.unpacked_shape(fmt, (nbytes,))
    step = 5 << 20          # whole int10 groups and int4/cint8 pairs; bounded host memory
    for lo in range(0, nbytes, step):
        hi = min(lo + step, nbytes)
        expected = rfn(host[offset + lo:offset + hi])
        first = ref.unpacked_shape(fmt, (lo,))[0]
        part = got[first:first + expected.size]
        assert np.array_equal(part.view(np.uint32), expected.view(np.uint32)), (fmt, lo)
    cupy.get_default_memory_pool().free_all_blocks()


@needs_gpu
def test_gpu_kernels_bit_identical_to_reference():
    """2-D inputs (the last axis unpacked), a genuinely unaligned source (a
    byte-offset view into a larger device buffer) and zero_missing."""
    cupy = _cupy()
    rng = np.random.default_rng(7)
    raw = rng.integers(0, 256, size=(8, 4000), dtype=np.uint8)
    for fmt, fn, rfn in [
        ("int8", gpu.unpack_int8, ref.unpack_int8),
        ("int4", gpu.unpack_int4, ref.unpack_int4),
        ("int10", gpu.unpack_int10, ref.unpack_int10),
        ("cint8", gpu.unpack_cint8, ref.unpack_cint8),
    ]:
        out = fn(cupy.asarray(raw))
        expected = rfn(raw)
        assert out.shape == expected.shape, fmt
        assert out.get().tobytes() == expected.tobytes(), fmt
    flat = cupy.asarray(raw.reshape(-1))
    unaligned = flat[1:1 + 31997]
    assert unaligned.data.ptr % 4 == 1
    assert gpu.unpack_int8(unaligned).get().tobytes() == ref.unpack_int8(raw.reshape(-1)[1:31998]).tobytes()
    data = rng.integers(0, 256, size=(16, 1000), dtype=np.uint8)
    present = (rng.random(16) < 0.5).astype(np.uint8)
    d = cupy.asarray(data)
    gpu.zero_missing(d, cupy.asarray(present))
    assert d.get().tobytes() == ref.zero_missing(data.copy(), present).tobytes()


@needs_gpu
def test_gpu_kernels_on_a_non_blocking_stream():
    """stream= runs the kernel there, after the source's producer: a source
    written on one non-blocking stream, unpacked on another."""
    cupy = _cupy()
    producer = cupy.cuda.Stream(non_blocking=True)
    consumer = cupy.cuda.Stream(non_blocking=True)
    n = 1 << 22
    with producer:
        _spin(cupy, producer, 0.3)
        src = (cupy.arange(n, dtype=cupy.int64) & 0xFF).astype(cupy.uint8).view(cupy.int8)   # after the spin
    with consumer:
        out = cupy.empty(n, cupy.float32)
    consumer.synchronize()
    with producer:
        # cupy reports the producer stream in the source's __cuda_array_interface__
        gpu.unpack_int8(src, out, stream=consumer)
    consumer.synchronize()
    expected = ref.unpack_int8((np.arange(n) & 0xFF).astype(np.uint8).view(np.int8))
    assert out.get().tobytes() == expected.tobytes()


@needs_gpu
def test_gpu_group_device():
    pytest.importorskip("cupy")
    lay = layout()
    group = gpu.ChunkStreamGroup(recv.ChunkStreamGroupConfig(max_chunks=2), layout=lay, kind="device")
    group.emplace_back(spead2gpu.ThreadPool(), recv.StreamConfig(max_heaps=4),
                       recv.ChunkStreamConfig(place=lay, max_chunks=2))
    feed_inproc(group[0], stream_packets(n_ts=12, missing=(), incomplete=()))
    ids = []
    for c in group:
        with c:
            ids.append(c.chunk_id)
            assert bool(c.present.all())
    assert ids == [0, 1, 2]


@needs_gpu
def test_gpu_fresh_device_buffer_reads_zero_on_non_blocking_stream():
    """A new gpu.Buffer(n, "device") says it is ready (CAI stream None), so its
    first use may be on any stream: read at once on a non-blocking stream it is
    all zeros, even when the legacy default stream is busy and the memory was
    just freed full of other data (the allocator hands the same memory back)."""
    cupy = _cupy()
    n = 64 << 20
    side = cupy.cuda.Stream(non_blocking=True)
    legacy = cupy.cuda.Stream.null
    for i in range(6):
        dirty = gpu.Buffer(n, "device")
        cupy.asarray(dirty).fill(0xA5)
        cupy.cuda.Device().synchronize()
        del dirty                       # cudaFree; the next cudaMalloc of n bytes tends to reuse it
        _spin(cupy, legacy, 0.2)        # anything queued on the legacy stream now waits
        b = gpu.Buffer(n, "device")
        with side:
            nonzero = cupy.count_nonzero(cupy.asarray(b))
        side.synchronize()
        assert int(nonzero) == 0, f"iteration {i}: {int(nonzero)} non-zero bytes in a fresh buffer"
        legacy.synchronize()
        del b


def _udp_chunks(kind, pkts):
    """The chunks of a gpu.ChunkStream of *kind* fed *pkts* over UDP loopback, and its stats."""
    sock = _free_port_socket()
    s = make_gpu_stream(kind)
    s.add_udp_reader(sock)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for p in pkts:
        tx.sendto(p, sock.getsockname())
        time.sleep(0.0002)
    tx.close()

    def consume():
        out = []
        for c in s:
            with c:
                out.append(_host_snapshot(c))
        return out

    got = run_with_timeout(consume, 30)   # a lost stop packet fails, not hangs
    stats = s.stats
    s.stop()
    sock.close()
    return got, stats


@needs_gpu
@pytest.mark.parametrize("kind", GPU_KINDS)
def test_gpu_chunk_stream_udp_loopback_bit_identical_to_host(kind):
    """Over UDP loopback (127.0.0.1, a port the OS chose) every GPU kind yields
    the chunks the host kind yields for the same packets in process."""
    _cupy()
    pkts = stream_packets(n_ts=20, missing=(5,), incomplete=(9,))
    host = make_gpu_stream("host")
    feed_inproc(host, pkts)
    expected = gpu_chunks(host)
    host_packets = host.stats["packets"]
    host.stop()
    got, stats = _udp_chunks(kind, pkts)
    assert stats["packets"] == host_packets, "packets were lost on loopback"
    assert len(got) == len(expected) >= 4
    assert zeroed_missing(got) == zeroed_missing(expected)
    assert [g[:2] for g in got] == [e[:2] for e in expected]   # present flags identical


@needs_gpu
def test_gpu_stop_with_copies_in_flight():
    """stop() and close() while host-to-device copies are queued (the copy
    stream is held busy): nothing hangs, nothing is freed under a copy, the
    chunk the consumer holds keeps its data and can still be used and released,
    and chunks delivered before the stop are intact."""
    cupy = _cupy()
    pkts = stream_packets(n_ts=24, missing=(), incomplete=())
    s = make_gpu_stream("device", n_chunks=8, n_device_chunks=4)
    copy_stream = cupy.cuda.ExternalStream(s.pipeline.copy_stream)
    _spin(cupy, copy_stream, 2.0)       # every copy queued from now on waits behind this
    feed_inproc(s, pkts)
    consumer = cupy.cuda.Stream(non_blocking=True)
    c = run_with_timeout(lambda: s.get(consumer), 10)   # handed over once its copy is queued
    with consumer:
        first = c.data.copy()           # ordered after the copy by get(consumer)
    assert _wait_for(lambda: s.pipeline_stats["chunks_copied"] >= 4, 5)
    assert not copy_stream.done, "the copies finished early: the test proves nothing"
    start = time.monotonic()
    s.stop()
    s.close()
    assert time.monotonic() - start < 20
    assert copy_stream.done             # close() waited for the copies
    assert s.pipeline.error is None
    consumer.synchronize()
    assert first.get().tobytes() == _chunk_payload(c.chunk_id)
    with consumer:
        again = c.data.copy()           # the held chunk's memory outlives the pipeline's stop
    consumer.synchronize()
    assert again.get().tobytes() == _chunk_payload(c.chunk_id)
    c.release(consumer)                 # after close: neither hangs nor raises
    consumer.synchronize()
    later = []
    while True:
        try:
            d = s.get(consumer)
        except spead2gpu.Stopped:
            break
        with consumer:
            later.append((d.chunk_id, d.data.copy()))
        d.release(consumer)
    consumer.synchronize()
    for cid, data in later:
        assert data.get().tobytes() == _chunk_payload(cid), cid


_EXIT_SCRIPT = r'''
import pickle
import sys

import spead2gpu
import spead2gpu.recv as recv
from spead2gpu import gpu

kind, mode, path = sys.argv[1:4]
with open(path, "rb") as f:
    pkts, (hs, ts_id, feng_id, tpc, nf), spin_source = pickle.load(f)
lay = recv.ChunkLayout(heap_size=hs, timestamp_id=ts_id, timestamp_step=hs, timestamps_per_chunk=tpc,
                       axes=["time", (feng_id, nf)], extra_items=[ts_id])
extra = {"n_device_chunks": 2} if kind == "device" else {}
s = gpu.ChunkStream(spead2gpu.ThreadPool(), recv.StreamConfig(max_heaps=4),
                    recv.ChunkStreamConfig(place=lay, max_chunks=2), kind=kind, n_chunks=4, **extra)
q = spead2gpu.InprocQueue()
for p in pkts:
    q.add_packet(p)
s.add_inproc_reader(q)      # never stopped: the stream is still receiving at exit
held = [s.get(), s.get()]   # every device chunk (device) / every free chunk (others) held
import cupy

work = cupy.asarray(held[0].data).astype(cupy.float32).sum()   # GPU work on a held chunk
if mode == "busy":
    stream = cupy.cuda.Stream(non_blocking=True)
    kernel = cupy.RawKernel(spin_source, "spead2gpu_test_spin")
    with stream:
        kernel((1,), (1,), (cupy.uint64(2_000_000_000),))
    held[1].release(stream)  # its recycle waits for the stream at exit
print("holding", [c.chunk_id for c in held], flush=True)
'''


@needs_gpu
@pytest.mark.parametrize("kind, mode", [("device", "held"), ("device", "busy"), ("pinned", "busy"),
                                        ("mapped", "held")])
def test_gpu_interpreter_exit_while_holding_chunks(tmp_path, kind, mode):
    """A program that ends while it holds GPU chunks (no release, no stop; the
    stream still receiving, the copy thread waiting for a device chunk, maybe a
    release event pending on a busy stream) exits with status 0, promptly."""
    import pickle
    import subprocess
    import sys

    _cupy()
    data = tmp_path / "packets.pickle"
    with open(data, "wb") as f:
        pickle.dump((stream_packets(n_ts=16, missing=(), incomplete=())[:-1], (HS, TS_ID, FENG_ID, TPC, NF),
                     _SPIN_SOURCE), f)
    script = tmp_path / "exit_holding.py"
    script.write_text(_EXIT_SCRIPT)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(spead2gpu.__file__))]
                                        + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(script), kind, mode, str(data)], capture_output=True,
                          text=True, env=env, timeout=90)
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "holding [0, 1]" in proc.stdout, proc.stdout + proc.stderr
    for bad in ("Traceback", "terminate called", "Fatal Python error", "Segmentation fault", "Aborted"):
        assert bad not in proc.stderr, proc.stderr
    assert elapsed < 45, f"exit took {elapsed:.1f} s"


# ---------------------------------------------------------------------------
# Pipeline under load (emulated device), bench and demo
# ---------------------------------------------------------------------------

def test_emulated_pipeline_pump_in_order():
    """The staged pipeline alone (no stream), tiny pools: every chunk arrives, in order."""
    import threading

    emu = gpu.Emulator()
    pipe = gpu._gpu._ChunkPipeline("device", 0, 4096, 8, 16, 3, 2, emu)
    assert pipe.emulated and pipe.consumer_slots == 2 and pipe.n_chunks == 3
    t = threading.Thread(target=pipe._pump, args=(50, 7))
    t.start()
    ids = []
    while True:
        try:
            held = pipe.get()
        except spead2gpu.Stopped:
            break
        ids.append(held.chunk_id)
        held.synchronize_ready()
        present = np.frombuffer(pipe.slot_buffer(held.slot, "present"), np.uint8)
        assert present.all()
        held.release(True, 0)
    t.join()
    assert ids == list(range(7, 57))
    stats = pipe.stats
    assert stats["chunks_copied"] == stats["chunks_delivered"] == stats["chunks_released"] == 50
    pipe.stop()
    pipe.stop()


def _load_bench_gpu():
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "bench" / "bench_gpu.py"
    spec = importlib.util.spec_from_file_location("bench_gpu", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


@pytest.mark.parametrize("nbytes", [16 << 20, 12345])   # --quick's size, and an odd one
def test_bench_gpu_kernel_rows_are_valid_calls(nbytes):
    """The kernel rows' calls, run once with numpy (the reference
    implementations, same argument checks as the kernels): every one is valid.
    The zero_missing row used
    to stop the bench with ValueError (its data was not a whole number of
    heaps)."""
    bench = _load_bench_gpu()
    ops = bench.kernel_workload(np, nbytes, np.random.default_rng(0))
    assert len(ops) == 6
    for label, fn, moved in ops:
        fn()
        assert moved > 0, label


def test_bench_gpu_without_gpu(capsys):
    if GPU:
        pytest.skip("a GPU is available (the bench runs for real there)")
    bench = _load_bench_gpu()
    assert bench.main(["--quick"]) == 2
    assert "no usable GPU" in capsys.readouterr().err


def test_bench_gpu_runs_on_the_emulated_gpu(capsys):
    """Every spead2gpu row of the GPU bench (copy ceiling, copy pipeline, in-memory
    ingest, UDP loopback ingest) runs its real code on the emulated GPU, so a
    crash like defect 1's is caught here, not on the GPU machine."""
    bench = _load_bench_gpu()
    assert bench.main(["--quick", "--emulate", "--streams", "2", "--udp-gbps", "2"]) == 0
    out = capsys.readouterr().out
    for label in ("(1) cudaMemcpyAsync", "(2) copy pipeline", "(3) spead2gpu ingest, 2 streams",
                  "(4) kernels: skipped", "(5) spead2gpu UDP loopback"):
        assert label in out, out
    assert "CPU s/GB" in out and "16 chunks" in out
    udp = [line for line in out.splitlines() if line.startswith("(5)")][0]
    got, offered = udp.split(": ")[1].split(" heaps")[0].split("/")
    assert int(offered) > 0 and int(got) >= int(offered) * 0.9, udp   # loopback at 2 Gb/s: ~lossless


def _run_demo(argv):
    import io

    from spead2gpu import demo

    out = io.StringIO()
    rc = demo.run(demo.parse_args(argv), out=out)
    return rc, out.getvalue()


@pytest.mark.parametrize("argv", [
    ["--heaps", "16", "--heap-size", "8192"],
    ["--heaps", "40", "--heap-size", "777", "--ring-heaps", "1", "--max-heaps", "1", "--window", "2"],
    ["--heaps", "8", "--heap-size", "65536", "--memcpy-nt", "--recv-threads", "2"],
])
def test_demo_chunk_path_on_host_memory(argv):
    """The demo's GPU path (a gpu.ChunkStream) runs here with host memory."""
    rc, text = _run_demo(argv + ["--memory", "host"])
    n = int(argv[1])
    assert rc == 0, text
    assert "memory kind    : host (GPU chunk stream" in text
    assert f"heaps received : {n}/{n} intact" in text
    assert "loss           : 0 heaps" in text


def test_demo_chunk_path_detects_loss():
    rc, text = _run_demo(["--heaps", "20", "--heap-size", "4096", "--simulate-loss", "4",
                          "--memory", "host"])
    assert rc == 1
    assert "heaps received : 15/20 intact" in text
    assert "loss           : 5 heaps (25.00%)" in text


def test_demo_auto_path_choice():
    rc, text = _run_demo(["--heaps", "4", "--heap-size", "1024"])
    assert rc == 0, text
    if GPU:
        assert "memory kind    : " in text
    else:
        assert "memory kind" not in text   # the CPU path's output is unchanged
    rc, text = _run_demo(["--heaps", "4", "--heap-size", "1024", "--memory", "host",
                          "--heap-address-bits", "40"])
    assert rc == 0 and "memory kind    : heap (CPU path" in text
    if not GPU:
        rc, text = _run_demo(["--heaps", "4", "--memory", "device"])
        assert rc == 1 and "needs a usable GPU" in text


def test_demo_device_without_cupy_says_so(monkeypatch):
    """On a GPU machine without cupy, device chunks are gpu.Buffer objects; the
    demo stops with a clear message instead of a TypeError from its
    processing step. Shown here with an emulated device stream."""

    real = gpu.ChunkStream

    def buffer_stream(*args, **kwargs):
        kwargs.update(emulator=gpu.Emulator(), array_module="buffer")
        return real(*args, **kwargs)

    monkeypatch.setattr(gpu, "ChunkStream", buffer_stream)
    rc, text = _run_demo(["--heaps", "4", "--heap-size", "1024", "--memory", "device"])
    assert rc == 1, text
    assert "cupy" in text and "Traceback" not in text


def test_disable_gpu_environment_variable():
    """SPEAD2GPU_DISABLE_GPU forces the CPU fallback (e.g. to test it on a GPU machine)."""
    import subprocess
    import sys

    code = ("from spead2gpu import gpu; import sys; "
            "print(gpu.available(), gpu.unavailable_reason()); "
            "print(gpu.resolve_kind('auto'))")
    env = dict(os.environ, SPEAD2GPU_DISABLE_GPU="1")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("False GPU use disabled by the environment variable")
    assert "('host'," in proc.stdout
