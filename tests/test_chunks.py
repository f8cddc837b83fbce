"""Chunk streams (placement, windows, rings, shared rings, asyncio, layouts) against spead2 4.5.1.

Most tests run the same workload through spead2 (the reference, 4.5.1) and
spead2gpu: the **same** numba placement callback (compiled once, passed to
both as the same ``scipy.LowLevelCallable``) on the **same** hand-built
packets, and compare the delivered chunks (id, stream id, present, data,
extra) and the statistics.  Where a test asserts hard-coded expectations it
takes the ``impl`` fixture and runs against both libraries, which proves that
the expectations describe spead2's behaviour.

spead2gpu-only behaviour (bounds-checked placement, ``free_chunk_wait_ns``,
the built-in :class:`~spead2gpu.recv.ChunkLayout`) is tested at the end; the
built-in layouts are checked to produce exactly the chunks that an equivalent
numba callback produces in spead2.

numba and scipy are test dependencies: tests that need them skip cleanly when
they are missing (the ring and layout tests still run).
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import importlib
import pathlib
import random
import select
import socket
import threading
import time
import types as pytypes

import numpy as np
import pytest

import spead2gpu
import spead2gpu.recv
import spead2gpu.recv.asyncio
from conftest import (
    ALIASED_TO_REFERENCE,
    DETERMINISTIC_STATS,
    addr,
    heap_packet,
    imm,
    outcome,
    recv_config,
    reference,
    run_with_timeout,
    spead2gpu_only,
    split_packets,
    stop_packet,
)

# ---------------------------------------------------------------------------
# Constants of the generic workload
# ---------------------------------------------------------------------------

HEAP_CNT_ID = 0x01
HEAP_LENGTH_ID = 0x02
TS_ID = 0x1600          # timestamp (immediate)
DATA_ID = 0x1000        # the heap's payload item
HS = 512                # heap size
PKT = 128               # payload bytes per packet (4 packets per heap)
PPH = HS // PKT         # packets per heap
HPC = 4                 # heaps per chunk
ITEMS = [HEAP_CNT_ID, HEAP_LENGTH_ID, TS_ID]
CUSTOM_STAT = "test.wrong_size_heaps"
SENTINEL = 0xEE         # fill of chunk memory the stream has not written
STOP_CNT = 999_999      # heap cnt of the stop packet appended for UDP
COMPARED_STATS = DETERMINISTIC_STATS + ("too_old_heaps", "rejected_heaps")

#: Every statistic spead2gpu adds beyond spead2's starts with this prefix.
GPU_PREFIX = "spead2gpu."

_KEEPALIVE = []   # user-data arrays referenced by LowLevelCallables


def pattern(cnt, size):
    """Deterministic payload of heap ``cnt`` (distinct per heap and offset)."""
    return ((np.arange(size, dtype=np.int64) * 7 + cnt * 13 + (cnt >> 8)) & 0xFF) \
        .astype(np.uint8).tobytes()


def heap(cnt, size=HS, pkt=PKT, items=(), drop=(), order=None, repeat=False, sized=True):
    """Packets of one heap: ``items`` (raw pointers) go into the first packet
    (and every packet with ``repeat``), followed by the payload item.
    ``drop`` removes packets (original indices), ``order`` reorders them."""
    payload = pattern(cnt, size)
    pkts = []
    for i, off in enumerate(range(0, size, pkt)):
        its = list(items) + [addr(DATA_ID, 0)] if i == 0 else (list(items) if repeat else [])
        pkts.append(heap_packet(cnt, off, payload[off:off + pkt], size if sized else None, its))
    idx = list(order) if order is not None else list(range(len(pkts)))
    return [pkts[i] for i in idx if i not in drop]


def heaps(cnts, **kw):
    return [p for c in cnts for p in heap(c, **kw)]


def ts(value):
    return [imm(TS_ID, value)]


def interleave(*lists):
    out = []
    for i in range(max(len(x) for x in lists)):
        out += [x[i] for x in lists if i < len(x)]
    return out


def both():
    """(spead2, spead2gpu), skipping if spead2 is not installed."""
    return reference(), spead2gpu


# ---------------------------------------------------------------------------
# numba callbacks (compiled once; the same compiled code serves both libraries)
# ---------------------------------------------------------------------------

# Parameters of the generic 3-argument callback (an int64 array passed as user data)
P_HEAP_SIZE, P_HPC, P_KEY, P_STEP, P_SCALE, P_STAT, P_EXTRA, P_BIAS, P_BAD_MODE, P_BAD_KEY, \
    P_BAD_VALUE = range(11)
N_PARAMS = 11
KEY_CNT, KEY_TS = 0, 1
BAD_OFFSET, BAD_INDEX, BAD_EXTRA_OFFSET, BAD_EXTRA_SIZE = 1, 2, 3, 4

# F-engine (digitiser input) and X-engine (channelised input) constants, used
# by the numba callbacks and by the equivalent built-in layouts.
DIG_ID, DIG_STATUS_ID, RAW_ID = 0x3101, 0x3102, 0x3300
F_HS = 1024             # 1024 8-bit samples per heap
F_PKT = 256
F_STEP = 1024           # timestamp step = samples per heap
F_TPC = 4               # timestamps per chunk
F_NIN = 4               # digitiser inputs
FENG_ID, FREQ_ID, XENG_RAW_ID = 0x4101, 0x4103, 0x4300
X_HS = 256              # 16 channels x 4 spectra x 2 pols x 2 bytes
X_PKT = 128
X_STEP = 8192           # timestamp step per heap (4 spectra x 2 x 1024 channels)
X_TPC = 2
X_NANTS = 4
X_CPH = 16              # channels per heap
X_NSUB = 2              # channel blocks (heaps along frequency) per chunk
X_FIRST = 64            # first channel handled by this X-engine
LAYOUT_STATS = ("spead2gpu.layout_wrong_size_heaps", "spead2gpu.layout_misaligned_heaps",
                "spead2gpu.layout_out_of_range_heaps", "spead2gpu.layout_missing_item_heaps")


@functools.cache
def _compile():
    numba = pytest.importorskip("numba")
    scipy = pytest.importorskip("scipy")
    from numba import types

    from spead2gpu.numba import intp_to_voidptr
    from spead2gpu.recv.numba import chunk_place_data

    sig2 = types.void(types.CPointer(chunk_place_data), types.uintp)
    sig3 = types.void(types.CPointer(chunk_place_data), types.uintp, types.CPointer(types.int64))

    @numba.cfunc(sig2, nopython=True)
    def place_simple(data_ptr, data_size):
        # The tutorial callback: HEAP_CNT -> chunk/heap index, size checked.
        data = numba.carray(data_ptr, 1)
        items = numba.carray(intp_to_voidptr(data[0].items), 2, dtype=np.int64)
        heap_cnt = items[0]
        heap_size = items[1]
        if heap_size == HS:
            data[0].chunk_id = heap_cnt // HPC
            data[0].heap_index = heap_cnt % HPC
            data[0].heap_offset = data[0].heap_index * HS

    @numba.cfunc(sig3, nopython=True)
    def place_generic(data_ptr, data_size, user):
        data = numba.carray(data_ptr, 1)
        items = numba.carray(intp_to_voidptr(data[0].items), 3, dtype=np.int64)
        p = numba.carray(user, N_PARAMS)
        if items[1] != p[P_HEAP_SIZE]:
            if p[P_STAT] >= 0:
                stats = numba.carray(intp_to_voidptr(data[0].batch_stats), p[P_STAT] + 1,
                                     dtype=np.uint64)
                stats[p[P_STAT]] += 1
            return
        if p[P_KEY] == KEY_CNT:
            key = items[0]
        else:
            if items[2] < 0:
                return
            key = items[2] // p[P_STEP]
        idx = key % p[P_HPC]
        data[0].chunk_id = key // p[P_HPC] - p[P_BIAS]
        data[0].heap_index = idx * p[P_SCALE]
        data[0].heap_offset = idx * p[P_HEAP_SIZE]
        if p[P_EXTRA] > 0:
            extra = numba.carray(intp_to_voidptr(data[0].extra), 2, dtype=np.int64)
            extra[0] = items[0]
            extra[1] = items[2]
            data[0].extra_offset = idx * 16
            data[0].extra_size = 16
        if p[P_BAD_MODE] != 0 and key == p[P_BAD_KEY]:
            if p[P_BAD_MODE] == BAD_OFFSET:
                data[0].heap_offset = p[P_BAD_VALUE]
            elif p[P_BAD_MODE] == BAD_INDEX:
                data[0].heap_index = p[P_BAD_VALUE]
            elif p[P_BAD_MODE] == BAD_EXTRA_OFFSET:
                data[0].extra_offset = p[P_BAD_VALUE]
            elif p[P_BAD_MODE] == BAD_EXTRA_SIZE:
                data[0].extra_size = p[P_BAD_VALUE]

    # The numba equivalents of the built-in layouts.  User data: the indices
    # of the four rejection statistics (registered under the layout's names).
    @numba.cfunc(sig3, nopython=True)
    def place_feng(data_ptr, data_size, stat_idx):
        # items: HEAP_LENGTH, TIMESTAMP, DIGITISER_ID, DIGITISER_STATUS
        data = numba.carray(data_ptr, 1)
        items = numba.carray(intp_to_voidptr(data[0].items), 4, dtype=np.int64)
        s = numba.carray(stat_idx, 4)
        stats = numba.carray(intp_to_voidptr(data[0].batch_stats), s[3] + 1, dtype=np.uint64)
        if items[0] != F_HS:
            stats[s[0]] += 1
            return
        if items[1] < 0:
            stats[s[3]] += 1
            return
        if items[1] % F_STEP != 0:
            stats[s[1]] += 1
            return
        t = items[1] // F_STEP
        if items[2] < 0:
            stats[s[3]] += 1
            return
        if items[2] >= F_NIN:
            stats[s[2]] += 1
            return
        idx = (t % F_TPC) * F_NIN + items[2]
        data[0].chunk_id = t // F_TPC
        data[0].heap_index = idx
        data[0].heap_offset = idx * F_HS
        extra = numba.carray(intp_to_voidptr(data[0].extra), 1, dtype=np.int64)
        extra[0] = items[3]
        data[0].extra_offset = idx * 8
        data[0].extra_size = 8

    @numba.cfunc(sig3, nopython=True)
    def place_xeng(data_ptr, data_size, stat_idx):
        # items: HEAP_LENGTH, TIMESTAMP, FENG_ID, FREQUENCY
        data = numba.carray(data_ptr, 1)
        items = numba.carray(intp_to_voidptr(data[0].items), 4, dtype=np.int64)
        s = numba.carray(stat_idx, 4)
        stats = numba.carray(intp_to_voidptr(data[0].batch_stats), s[3] + 1, dtype=np.uint64)
        if items[0] != X_HS:
            stats[s[0]] += 1
            return
        if items[1] < 0:
            stats[s[3]] += 1
            return
        if items[1] % X_STEP != 0:
            stats[s[1]] += 1
            return
        t = items[1] // X_STEP
        feng = items[2]
        if feng < 0:
            stats[s[3]] += 1
            return
        if feng >= X_NANTS:
            stats[s[2]] += 1
            return
        freq = items[3]
        if freq < 0:
            stats[s[3]] += 1
            return
        if freq < X_FIRST:
            stats[s[2]] += 1
            return
        if (freq - X_FIRST) % X_CPH != 0:
            stats[s[1]] += 1
            return
        sub = (freq - X_FIRST) // X_CPH
        if sub >= X_NSUB:
            stats[s[2]] += 1
            return
        idx = (feng * X_TPC + t % X_TPC) * X_NSUB + sub
        data[0].chunk_id = t // X_TPC
        data[0].heap_index = idx
        data[0].heap_offset = idx * X_HS
        extra = numba.carray(intp_to_voidptr(data[0].extra), 2, dtype=np.int64)
        extra[0] = feng
        extra[1] = items[1]
        data[0].extra_offset = idx * 16
        data[0].extra_size = 16

    def llc(fn, user=None):
        if user is None:
            return scipy.LowLevelCallable(fn.ctypes, signature="void (void *, size_t)")
        _KEEPALIVE.append(user)
        return scipy.LowLevelCallable(fn.ctypes, user_data=ctypes.c_void_p(user.ctypes.data),
                                      signature="void (void *, size_t, void *)")

    def generic(heap_size=HS, hpc=HPC, key=KEY_CNT, step=1, scale=1, extra=0, bias=0,
                bad_mode=0, bad_key=-1, bad_value=0):
        """A factory: stat index -> LowLevelCallable of place_generic."""
        def make(stat_index):
            p = np.array([heap_size, hpc, key, step, scale, stat_index, extra, bias,
                          bad_mode, bad_key, bad_value], np.int64)
            assert len(p) == N_PARAMS
            return llc(place_generic, p)
        return make

    def with_stats(fn):
        """A factory taking the indices of the four layout statistics."""
        def make(indices):
            return llc(fn, np.array(indices, np.int64))
        return make

    return pytypes.SimpleNamespace(
        numba=numba, scipy=scipy, llc=llc, generic=generic,
        simple=lambda stat_index=-1: llc(place_simple),
        feng=with_stats(place_feng), xeng=with_stats(place_xeng),
        place_simple=place_simple, place_generic=place_generic)


# ---------------------------------------------------------------------------
# Running a chunk stream
# ---------------------------------------------------------------------------

def new_chunk(mod, cls=None, *, data_size, present_size, extra_size=0):
    cls = cls or mod.recv.Chunk
    kw = dict(present=np.zeros(present_size, np.uint8),
              data=np.full(data_size, SENTINEL, np.uint8))
    if extra_size:
        kw["extra"] = np.full(extra_size, SENTINEL, np.uint8)
    return cls(**kw)


def snapshot(chunk):
    return (chunk.chunk_id, chunk.stream_id, bytes(chunk.present), bytes(chunk.data),
            None if chunk.extra is None else bytes(chunk.extra))


def recycle(stream, chunk):
    """What a consumer does after using a chunk: back to the free ring.  The
    data is refilled with the sentinel so that every delivered byte that the
    stream did not write is predictable."""
    np.asarray(chunk.data)[:] = SENTINEL
    if chunk.extra is not None:
        np.asarray(chunk.extra)[:] = SENTINEL
    stream.add_free_chunk(chunk)


def udp_pair():
    """A bound receive socket on 127.0.0.1 (OS-chosen port) and a sender."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    rx.bind(("127.0.0.1", 0))
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    return rx, tx


def feed(mod, stream, packets, via):
    """Give ``packets`` to ``stream``; returns sockets to close after the run."""
    if via == "buffer":
        stream.add_buffer_reader(b"".join(packets))
        return []
    if via == "inproc":
        queue = mod.InprocQueue()
        for p in packets:
            queue.add_packet(p)
        queue.stop()
        stream.add_inproc_reader(queue)
        return []
    if via == "udp":
        rx, tx = udp_pair()
        stream.add_udp_reader(rx, max_size=9200)
        dest = rx.getsockname()
        for p in list(packets) + [stop_packet(STOP_CNT)]:
            tx.sendto(p, dest)
        return [rx, tx]
    raise ValueError(via)


def stats_of(stream, names):
    stats = stream.stats
    return {name: stats[name] for name in names}


def run_chunks(mod, packets, place, *, max_chunks=2, n_chunks=8, hpc=HPC, heap_size=HS,
               present_size=None, extra_size=0, max_heap_extra=0, presence=None, items=ITEMS,
               stream_kw=None, custom_stats=(), via="buffer", extra_stats=(),
               stat_names=COMPARED_STATS, timeout=20.0):
    """Receive ``packets`` through a ChunkRingStream of ``mod``; returns
    (list of chunk snapshots, statistics by name).

    ``place`` is a ChunkStreamConfig.place value, or a factory called with the
    indices of ``custom_stats`` (registered with StreamConfig.add_stat)."""
    config = recv_config(mod, **(stream_kw or {}))
    indices = [config.add_stat(name) for name in custom_stats]
    if callable(place):
        place = place(indices[0] if len(indices) == 1 else indices if indices else -1)
    ccfg = mod.recv.ChunkStreamConfig(items=list(items), max_chunks=max_chunks, place=place,
                                      max_heap_extra=max_heap_extra)
    if presence:
        assert ccfg.enable_packet_presence(presence) is ccfg
    data_ring = mod.recv.ChunkRingbuffer(n_chunks)
    free_ring = mod.recv.ChunkRingbuffer(n_chunks)
    stream = mod.recv.ChunkRingStream(mod.ThreadPool(), config, ccfg, data_ring, free_ring)
    for _ in range(n_chunks):
        stream.add_free_chunk(new_chunk(mod, data_size=hpc * heap_size,
                                        present_size=present_size or hpc, extra_size=extra_size))
    sockets = feed(mod, stream, packets, via)

    def consume():
        out = []
        for chunk in data_ring:
            out.append(snapshot(chunk))
            recycle(stream, chunk)
            assert len(out) < 1000, "too many chunks"
        return out

    try:
        chunks = run_with_timeout(consume, timeout)
        stream.stop()
    finally:
        for s in sockets:
            s.close()
    return chunks, stats_of(stream, tuple(stat_names) + tuple(custom_stats) + tuple(extra_stats))


def describe(chunks):
    return [(c[0], c[1], list(c[2])) for c in chunks]


def assert_same_chunks(got, expected):
    """Compare chunk snapshots with readable messages."""
    assert describe(got) == describe(expected), "chunk ids / stream ids / present differ"
    for g, e in zip(got, expected):
        for what, a, b in (("data", g[3], e[3]), ("extra", g[4], e[4])):
            if a != b:
                if a is None or b is None or len(a) != len(b):
                    pytest.fail(f"chunk {g[0]}: {what} {a!r:.60} != {b!r:.60}")
                first = next(i for i in range(len(a)) if a[i] != b[i])
                pytest.fail(f"chunk {g[0]}: {what} differs first at byte {first}: "
                            f"{a[first:first + 16].hex()} != {b[first:first + 16].hex()}")


def check_chunk_contents(chunks, heap_size=HS, hpc=HPC):
    """Independent check: every present heap holds its own payload."""
    for cid, _, present, data, _ in chunks:
        for i in range(hpc):
            if present[i]:
                cnt = cid * hpc + i
                assert data[i * heap_size:(i + 1) * heap_size] == pattern(cnt, heap_size), \
                    f"chunk {cid} heap {i}"


# ---------------------------------------------------------------------------
# The callback ABI
# ---------------------------------------------------------------------------

def test_chunk_place_data_record_matches_spead2():
    pytest.importorskip("numba")
    ref = reference()
    ref_numba = importlib.import_module("spead2.recv.numba")
    importlib.import_module("spead2.numba")
    import spead2gpu.numba
    import spead2gpu.recv.numba
    a, b = ref_numba.chunk_place_data, spead2gpu.recv.numba.chunk_place_data
    assert a.size == b.size == 80
    assert [(n, str(t), a.offset(n)) for n, t in a.members] == \
        [(n, str(t), b.offset(n)) for n, t in b.members]
    assert callable(spead2gpu.numba.intp_to_voidptr)
    assert ref.recv.ChunkStreamConfig.DEFAULT_MAX_CHUNKS == \
        spead2gpu.recv.ChunkStreamConfig.DEFAULT_MAX_CHUNKS


# ---------------------------------------------------------------------------
# Scenarios compared against spead2 (same callback, same packets)
# ---------------------------------------------------------------------------

def _lossy():
    return (heap(0) + heap(1, drop=[2]) + heap(2) + heap(3) + heap(4, drop=[0])
            + heap(5, drop=[3]) + heap(6) + heap(7, drop=[1, 2]))


def _shuffled():
    rng = random.Random(1234)
    out = []
    for k in range(0, 8, 2):
        pk = heap(k) + heap(k + 1)
        rng.shuffle(pk)
        out += pk
    return out


def _aged_out():
    h0 = heap(0)
    return [h0[0]] + heap(4) + h0[1:] + heap(5)


def _ts_heaps(order, step=1000):
    return [p for i in order for p in heap(100 + 3 * i, items=ts(step * i))]


def _ts_late():
    return (heap(0, items=ts(0)) + heap(1, items=ts(1000), order=[1, 0, 2, 3])
            + heap(2, items=ts(2000), order=[1, 0, 2, 3], repeat=True) + heap(3)
            + heap(4, items=ts(4000), order=[2, 3, 0, 1], repeat=True))


def _presence():
    return (heap(0) + heap(1, drop=[1]) + heap(2, order=[3, 1, 0, 2]) + heap(3, drop=[0, 3])
            + heap(5, drop=[2]) + heap(6, order=[1, 0, 3, 2], drop=[0]) + heap(7))


def _extra():
    return (heap(0, items=ts(5)) + heap(1, items=ts(6), drop=[2]) + heap(2)
            + heap(3, items=ts(8), drop=[0, 1, 2, 3]) + heap(5, items=ts(9), drop=[3])
            + heap(6, items=ts(10)))


PRESENCE_KW = dict(presence=PKT, present_size=HPC * PPH, stream_kw=dict(allow_out_of_order=True))
EXTRA_KW = dict(max_heap_extra=16, extra_size=HPC * 16)

#: name -> (packets, generic-callback parameters, run_chunks keywords, expectations).
#: Expectations (chunk ids, statistics) are checked on both libraries.
SCENARIOS = {
    "in_order": (heaps(range(12)), {}, {}, dict(ids=[0, 1, 2], too_old_heaps=0)),
    "backfill": (heaps([0, 1, 2, 3, 13]), {}, dict(max_chunks=4),
                 dict(ids=[0, 1, 2, 3], present={1: [0] * 4, 2: [0] * 4, 3: [0, 1, 0, 0]})),
    "backfill_small_window": (heaps([0, 1, 2, 3, 13]), {}, {}, dict(ids=[0, 2, 3])),
    "jump_beyond_window": (heaps([0, 1, 400, 401, 2, 397]), {}, {},
                           dict(ids=[0, 99, 100], too_old_heaps=1,
                                present={99: [0, 1, 0, 0], 100: [1, 1, 0, 0]})),
    "too_old": (heaps([0, 1, 2, 3, 8, 1, 4, 9]), {}, dict(max_chunks=1),
                dict(ids=[0, 2], too_old_heaps=2, heaps=8)),
    "start_late": (heaps([20, 21, 16, 17, 12]), {}, {}, dict(ids=[4, 5], too_old_heaps=1)),
    "negative_chunk_ids": (heaps(range(12)), dict(bias=2), {},
                           dict(ids=[0], rejected_heaps=8, too_old_heaps=0)),
    "negative_then_jump": (heaps([0, 1, 13, 4]), dict(bias=2), dict(max_chunks=3),
                           dict(ids=[0, 1], rejected_heaps=3, present={1: [0, 1, 0, 0]})),
    "wrong_size": (heaps([0, 2, 3]) + heap(1, size=256) + heap(5, size=1024) + heaps([4, 6]),
                   {}, dict(custom_stats=[CUSTOM_STAT]),
                   {"rejected_heaps": 2, CUSTOM_STAT: 2, "ids": [0, 1]}),
    "missing_heaps": (heaps([0, 2, 3, 5, 7]), {}, {},
                      dict(ids=[0, 1], present={0: [1, 0, 1, 1], 1: [0, 1, 0, 1]})),
    "lost_packets": (_lossy(), {}, {},
                     dict(ids=[0, 1], present={0: [1, 0, 1, 1], 1: [0, 0, 1, 0]})),
    "lost_packets_out_of_order": (_lossy(), {}, dict(stream_kw=dict(allow_out_of_order=True)),
                                  dict(ids=[0, 1], present={0: [1, 0, 1, 1], 1: [0, 0, 1, 0]})),
    "reorder_in_order_mode": (heap(0) + heap(1, order=[0, 2, 1, 3]) + heap(2)
                              + heap(3, order=[3, 2, 1, 0]), {}, {},
                              dict(ids=[0], present={0: [1, 0, 1, 0]})),
    "reorder_out_of_order": (heap(0) + heap(1, order=[0, 2, 1, 3]) + heap(2)
                             + heap(3, order=[3, 2, 1, 0]), {},
                             dict(stream_kw=dict(allow_out_of_order=True)),
                             dict(ids=[0], present={0: [1, 1, 1, 1]})),
    "shuffled_out_of_order": (_shuffled(), {}, dict(stream_kw=dict(allow_out_of_order=True,
                                                                   max_heaps=4)),
                              dict(ids=[0, 1], present={0: [1] * 4, 1: [1] * 4})),
    "interleaved_max_heaps_1": (heaps([0, 1, 2]) + interleave(heap(3), heap(4)) + heaps([5]),
                                {}, dict(stream_kw=dict(max_heaps=1)), {}),
    "aged_out_heap": (_aged_out(), {}, dict(max_chunks=1), dict(ids=[0, 1], too_old_heaps=1)),
    "duplicate_heap": (heaps([0, 1, 1, 2, 3]), {}, {}, dict(ids=[0])),
    "stop_item": (heaps(range(4)) + [stop_packet(50)] + heaps(range(4, 8)), {}, {},
                  dict(ids=[0])),
    "unsized_heap": (heaps([0, 2]) + heap(1, sized=False) + heaps([3]), {}, {}, dict(ids=[0])),
    "single_packet_heaps": (heaps(range(8), size=PKT), dict(heap_size=PKT),
                            dict(heap_size=PKT), dict(ids=[0, 1], single_packet_heaps=8)),
    "timestamp_placement": (_ts_heaps([1, 0, 2, 3, 5, 4, 7, 6, 8, 9, 11, 10]),
                            dict(key=KEY_TS, step=1000), {},
                            dict(ids=[0, 1, 2], present={0: [1] * 4, 1: [1] * 4, 2: [1] * 4})),
    "timestamp_missing_or_late": (_ts_late(), dict(key=KEY_TS, step=1000),
                                  dict(stream_kw=dict(allow_out_of_order=True)),
                                  dict(ids=[0, 1], rejected_heaps=2)),
    "packet_presence": (_presence(), dict(scale=PPH), PRESENCE_KW, dict(ids=[0, 1])),
    "packet_presence_in_order": (_presence(), dict(scale=PPH),
                                 dict(presence=PKT, present_size=HPC * PPH), dict(ids=[0, 1])),
    "extra": (_extra(), dict(extra=16), EXTRA_KW, dict(ids=[0, 1])),
    "extra_large_scratch": (_extra(), dict(extra=16), dict(max_heap_extra=64,
                                                           extra_size=HPC * 16), {}),
}

UDP_SCENARIOS = {"in_order", "lost_packets", "packet_presence", "extra", "timestamp_placement",
                 "jump_beyond_window"}
SCENARIO_CASES = [(name, via) for name in SCENARIOS for via in ("buffer", "inproc")] + \
    [(name, "udp") for name in sorted(UDP_SCENARIOS)]


def check_expectations(chunks, stats, expect):
    for key, value in expect.items():
        if key == "ids":
            assert [c[0] for c in chunks] == value
        elif key == "present":
            by_id = {c[0]: list(c[2]) for c in chunks}
            for cid, flags in value.items():
                assert by_id[cid] == flags, f"present of chunk {cid}"
        else:
            assert stats[key] == value, key


@pytest.mark.parametrize("name,via", SCENARIO_CASES)
def test_scenario_matches_spead2(cb, name, via):
    packets, params, kw, expect = SCENARIOS[name]
    results = {}
    for mod in both():
        results[mod.__name__] = run_chunks(mod, packets, cb.generic(**params), via=via, **kw)
    ref_chunks, ref_stats = results["spead2"]
    gpu_chunks, gpu_stats = results[spead2gpu.__name__]
    assert_same_chunks(gpu_chunks, ref_chunks)
    assert gpu_stats == ref_stats
    if via != "udp":   # the appended stop packet changes the statistics
        check_expectations(ref_chunks, ref_stats, expect)
    else:
        check_expectations(ref_chunks, ref_stats, {"ids": expect["ids"]} if "ids" in expect else {})
    if params.get("key", KEY_CNT) == KEY_CNT and "presence" not in kw and not params.get("bias"):
        check_chunk_contents(gpu_chunks, kw.get("heap_size", HS))


def test_extra_contents(cb):
    """extra[heap_index*16:] holds the values the callback wrote (HEAP_CNT and
    the timestamp item, -1 if absent), copied at placement time: even for
    heaps that end up incomplete."""
    for mod in both():
        chunks, _ = run_chunks(mod, _extra(), cb.generic(extra=16), **EXTRA_KW)
        extra = {c[0]: np.frombuffer(c[4], np.int64).reshape(HPC, 2) for c in chunks}
        sentinel = np.frombuffer(bytes([SENTINEL]) * 8, np.int64)[0]
        assert extra[0].tolist() == [[0, 5], [1, 6], [2, -1], [sentinel] * 2]
        assert extra[1].tolist() == [[sentinel] * 2, [5, 9], [6, 10], [sentinel] * 2]
        assert [list(c[2]) for c in chunks] == [[1, 0, 1, 0], [0, 0, 1, 0]]


def test_packet_presence_flags(cb):
    """present[heap_index + payload_offset / P] is set per received packet."""
    for mod in both():
        chunks, _ = run_chunks(mod, _presence(), cb.generic(scale=PPH), **PRESENCE_KW)
        flags = {c[0]: np.frombuffer(c[2], np.uint8).reshape(HPC, PPH).tolist() for c in chunks}
        assert flags[0] == [[1, 1, 1, 1], [1, 0, 1, 1], [1, 1, 1, 1], [0, 1, 1, 0]]
        assert flags[1] == [[0, 0, 0, 0], [1, 1, 0, 1], [0, 1, 1, 1], [1, 1, 1, 1]]


def test_config_properties(impl):
    cfg = impl.recv.ChunkStreamConfig()
    assert cfg.items == [] and cfg.max_chunks == cfg.DEFAULT_MAX_CHUNKS == 2
    assert cfg.place is None and cfg.max_heap_extra == 0
    assert cfg.packet_presence_payload_size == 0
    assert cfg.enable_packet_presence(128) is cfg
    assert cfg.packet_presence_payload_size == 128
    assert cfg.disable_packet_presence() is cfg
    assert cfg.packet_presence_payload_size == 0
    cfg = impl.recv.ChunkStreamConfig(items=[1, 2], max_chunks=5, max_heap_extra=16)
    assert (cfg.items, cfg.max_chunks, cfg.max_heap_extra) == ([1, 2], 5, 16)
    assert outcome(impl.recv.ChunkStreamConfig, max_chunks=0)[0] == "raise"
    assert outcome(impl.recv.ChunkStreamConfig, bogus=1) == ("raise", "TypeError")
    assert outcome(cfg.enable_packet_presence, 0)[0] == "raise"


def test_config_errors_match_spead2():
    out = {}
    for mod in both():
        cfg = mod.recv.ChunkStreamConfig
        out[mod.__name__] = [outcome(cfg, max_chunks=0), outcome(cfg().enable_packet_presence, 0)]
    assert out["spead2"] == out[spead2gpu.__name__]


# ---------------------------------------------------------------------------
# Signatures, user data, custom statistics
# ---------------------------------------------------------------------------

def test_two_and_three_argument_signatures(cb):
    """The 2-argument tutorial callback and the 3-argument one with user data
    give the same chunks, in both libraries."""
    packets = heaps([0, 1, 2, 5, 6, 7, 9]) + heap(3, size=256)
    runs = []
    for mod in both():
        runs.append(run_chunks(mod, packets, cb.simple(), items=ITEMS[:2]))
        runs.append(run_chunks(mod, packets, cb.generic()))
    for r in runs[1:]:
        assert_same_chunks(r[0], runs[0][0])
        assert r[1] == runs[0][1]
    assert [c[0] for c in runs[0][0]] == [0, 1, 2]
    assert runs[0][1]["rejected_heaps"] == 1


def test_user_data_is_passed(cb):
    """The capsule context reaches the callback: two LowLevelCallables of the
    same function with different user data place differently."""
    packets = heaps(range(8))
    for mod in both():
        a, _ = run_chunks(mod, packets, cb.generic(hpc=4))
        b, _ = run_chunks(mod, packets, cb.generic(hpc=2), hpc=2)
        assert [c[0] for c in a] == [0, 1]
        assert [c[0] for c in b] == [0, 1, 2, 3]


def test_custom_stat_indices_and_order(cb):
    """add_stat gives the same index in both libraries; the callback's
    batch_stats increments land in it; spead2's statistics come first (in
    spead2's order) and spead2gpu's additions follow, all prefixed."""
    packets = heaps([0, 1]) + heap(2, size=256) + heap(3, size=256) + heap(9, size=64, pkt=64)
    keys = {}
    for mod in both():
        config = recv_config(mod)
        idx = config.add_stat(CUSTOM_STAT)
        assert idx == 9
        _, stats = run_chunks(mod, packets, cb.generic(), custom_stats=[CUSTOM_STAT])
        assert stats[CUSTOM_STAT] == 3 and stats["rejected_heaps"] == 3
        ccfg = mod.recv.ChunkStreamConfig(items=ITEMS, place=cb.generic()(idx))
        stream = mod.recv.ChunkRingStream(mod.ThreadPool(), config, ccfg,
                                          mod.recv.ChunkRingbuffer(2), mod.recv.ChunkRingbuffer(2))
        keys[mod.__name__] = list(stream.stats.keys())
        assert stream.stats[idx] == 0 and stream.stats.config[idx].name == CUSTOM_STAT
        stream.stop()
    ref_keys, gpu_keys = keys["spead2"], keys[spead2gpu.__name__]
    assert ref_keys[9:] == [CUSTOM_STAT, "too_old_heaps", "rejected_heaps"]
    assert gpu_keys[:len(ref_keys)] == ref_keys
    assert all(k.startswith(GPU_PREFIX) for k in gpu_keys[len(ref_keys):])
    if not ALIASED_TO_REFERENCE:
        assert "spead2gpu.bad_placement_heaps" in gpu_keys
        assert "spead2gpu.free_chunk_wait_ns" in gpu_keys


# ---------------------------------------------------------------------------
# Transports with the tutorial callback (2-argument signature)
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("via", ["buffer", "inproc", "udp"])
def test_tutorial_callback_transports(cb, via):
    packets = heaps([0, 1, 2, 3, 4, 6, 7, 9, 10, 11]) + heap(5, drop=[1]) + heap(8, size=64)
    out = []
    for mod in both():
        out.append(run_chunks(mod, packets, cb.simple(), items=ITEMS[:2], via=via))
    assert_same_chunks(out[1][0], out[0][0])
    assert out[1][1] == out[0][1]
    assert describe(out[0][0]) == [(0, 0, [1, 1, 1, 1]), (1, 0, [1, 0, 1, 1]),
                                   (2, 0, [0, 1, 1, 1])]
    check_chunk_contents(out[1][0])


# ---------------------------------------------------------------------------
# Chunk objects
# ---------------------------------------------------------------------------

def test_chunk_defaults_and_buffers(impl):
    c = impl.recv.Chunk()
    assert (c.chunk_id, c.stream_id, c.present, c.data, c.extra) == (-1, 0, None, None, None)
    data, present = np.zeros(8, np.uint8), bytearray(2)
    c = impl.recv.Chunk(chunk_id=3, stream_id=2, data=data, present=present)
    assert c.data is data and c.present is present and c.extra is None
    c.extra = memoryview(bytearray(4))
    c.chunk_id = 7
    assert c.chunk_id == 7
    c.data = None
    assert c.data is None


def bad_buffers():
    ro = np.zeros(8, np.uint8)
    ro.flags.writeable = False
    return {"bytes": b"abcd", "read_only": ro, "non_contiguous": np.zeros(16, np.uint8)[::2],
            "fortran_2d": np.zeros((4, 4), np.uint8, order="F"), "int": 5}


def test_bad_chunk_buffers_match_spead2():
    results = {}
    for mod in both():
        r = results[mod.__name__] = {}
        for name, buf in bad_buffers().items():
            for field in ("data", "present", "extra"):
                r[f"init {field} {name}"] = exc_only(lambda: mod.recv.Chunk(**{field: buf}))

                def assign():
                    setattr(mod.recv.Chunk(), field, buf)
                r[f"set {field} {name}"] = exc_only(assign)
        r["unknown kw"] = exc_only(lambda: mod.recv.Chunk(bogus=1))
        r["positional"] = exc_only(lambda: mod.recv.Chunk(1))
    assert results[spead2gpu.__name__] == results["spead2"]
    assert results["spead2"]["init data read_only"] == "ValueError"
    assert results["spead2"]["set present non_contiguous"] == "ValueError"


def exc_only(fn):
    res = outcome(fn)
    return "ok" if res[0] == "ok" else res[1]


def make_capsule(name):
    if name is not None:
        name = ctypes.create_string_buffer(name)   # PyCapsule_New keeps the pointer
        _KEEPALIVE.append(name)
    new = ctypes.pythonapi.PyCapsule_New
    new.restype = ctypes.py_object
    new.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    # Any valid function address will do: these callbacks are never called.
    return new(ctypes.cast(ctypes.pythonapi.Py_IncRef, ctypes.c_void_p).value, name, None)


def bad_places():
    return {
        "int": 5,
        "string": "void (void *, size_t)",
        "not_a_capsule": (5,),
        "wrong_name": (make_capsule(b"void (void *)"),),
        "wrong_name_3": (make_capsule(b"void (void *, size_t, int *)"),),
        "no_name": (make_capsule(None),),
        "bare_capsule": make_capsule(b"void (void *, size_t)"),
    }


def test_bad_place_matches_spead2():
    results = {}
    for mod in both():
        r = results[mod.__name__] = {}
        for name, place in bad_places().items():
            r["init " + name] = exc_only(lambda: mod.recv.ChunkStreamConfig(place=place))

            def assign():
                mod.recv.ChunkStreamConfig().place = place
            r["set " + name] = exc_only(assign)
        for name in ("void (void *, size_t)", "void (void *, size_t, void *)"):
            cfg = mod.recv.ChunkStreamConfig(place=(make_capsule(name.encode()), 1))
            r["good " + name] = cfg.place is not None
            cfg.place = None
            r["cleared " + name] = cfg.place is None
    assert results[spead2gpu.__name__] == results["spead2"]
    assert results["spead2"]["init not_a_capsule"] == "TypeError"
    assert results["spead2"]["init wrong_name"] == "ValueError"


def test_empty_place_tuple_matches_spead2():
    out = [exc_only(lambda: mod.recv.ChunkStreamConfig(place=())) for mod in both()]
    assert out[1] == out[0]


# ---------------------------------------------------------------------------
# ChunkRingbuffer
# ---------------------------------------------------------------------------

def ring_chunk(mod, cls=None, n=4, **kw):
    return (cls or mod.recv.Chunk)(data=np.zeros(n, np.uint8), present=np.zeros(n, np.uint8), **kw)


def readable(fd):
    return bool(select.select([fd], [], [], 0)[0])


def test_ringbuffer_api(impl):
    rb = impl.recv.ChunkRingbuffer(2)
    assert rb.maxsize == 2 and rb.qsize() == 0 and rb.empty() and not rb.full()
    assert not readable(rb.data_fd) and readable(rb.space_fd)
    with pytest.raises(impl.Empty):
        rb.get_nowait()
    c1 = ring_chunk(impl, chunk_id=5, stream_id=3)
    data = c1.data
    rb.put(c1)
    # in transit, the Python chunk has no buffers
    assert c1.data is None and c1.present is None and c1.chunk_id == 5
    assert rb.qsize() == 1 and not rb.empty() and not rb.full()
    assert readable(rb.data_fd) and readable(rb.space_fd)
    rb.put_nowait(ring_chunk(impl, chunk_id=6))
    assert rb.full() and rb.qsize() == 2
    assert readable(rb.data_fd) and not readable(rb.space_fd)
    spare = ring_chunk(impl)
    with pytest.raises(impl.Full):
        rb.put_nowait(spare)
    assert spare.data is not None, "a failed put leaves the chunk its buffers"
    got = rb.get()
    assert got is c1 and got.data is data and (got.chunk_id, got.stream_id) == (5, 3)
    assert rb.get_nowait().chunk_id == 6
    for missing in ("data", "present"):
        c = ring_chunk(impl)
        setattr(c, missing, None)
        with pytest.raises(ValueError):
            rb.put(c)
        with pytest.raises(ValueError):
            rb.put_nowait(c)
    assert rb.empty()


def test_ringbuffer_stop_and_iteration(impl):
    rb = impl.recv.ChunkRingbuffer(3)
    for i in range(2):
        rb.put(ring_chunk(impl, chunk_id=i))
    assert rb.stop() is True
    assert readable(rb.data_fd) and readable(rb.space_fd)
    with pytest.raises(impl.Stopped):
        rb.put(ring_chunk(impl))
    with pytest.raises(impl.Stopped):
        rb.put_nowait(ring_chunk(impl))
    assert [c.chunk_id for c in rb] == [0, 1]   # what was queued is still delivered
    with pytest.raises(impl.Stopped):
        rb.get()
    with pytest.raises(impl.Stopped):
        rb.get_nowait()
    assert list(rb) == []


def test_ringbuffer_producers(impl):
    rb = impl.recv.ChunkRingbuffer(2)
    rb.add_producer()
    rb.add_producer()
    assert rb.remove_producer() is False
    with pytest.raises(impl.Empty):
        rb.get_nowait()
    rb.put(ring_chunk(impl, chunk_id=1))
    assert rb.remove_producer() is True   # the last producer stops the ring
    assert [c.chunk_id for c in rb] == [1]
    with pytest.raises(impl.Stopped):
        rb.get_nowait()


def test_ringbuffer_stop_twice_matches_spead2():
    out = []
    for mod in both():
        rb = mod.recv.ChunkRingbuffer(2)
        out.append([rb.stop(), rb.stop()])
    assert out[1] == out[0]


def test_remove_producer_without_producers_matches_spead2():
    out = []
    for mod in both():
        rb = mod.recv.ChunkRingbuffer(2)
        out.append([rb.remove_producer(), exc_only(rb.get_nowait)])
    assert out[1] == out[0]


def test_ringbuffer_blocking_across_threads(impl):
    rb = impl.recv.ChunkRingbuffer(1)
    got = []

    def consumer():
        got.append(rb.get().chunk_id)      # blocks (GIL released) until the put
        got.append(rb.get().chunk_id)

    t = threading.Thread(target=consumer, daemon=True)
    t.start()
    time.sleep(0.05)
    rb.put(ring_chunk(impl, chunk_id=1))
    rb.put(ring_chunk(impl, chunk_id=2))   # may block until the consumer took the first
    t.join(5)
    assert not t.is_alive() and got == [1, 2]
    # a put blocked on a full ring is released by a get in another thread
    rb.put(ring_chunk(impl, chunk_id=3))
    threading.Timer(0.05, rb.get).start()
    run_with_timeout(lambda: rb.put(ring_chunk(impl, chunk_id=4)), 5)
    assert rb.get().chunk_id == 4
    # a get blocked on an empty ring is released by stop
    threading.Timer(0.05, rb.stop).start()
    with pytest.raises(impl.Stopped):
        run_with_timeout(rb.get, 5)


def test_chunk_subclass_round_trips(cb, impl):
    """A Chunk subclass with its own attributes comes back from the rings as
    the same object, through a stream and through plain put/get."""
    class MyChunk(impl.recv.Chunk):
        def __init__(self, tag, **kw):
            super().__init__(**kw)
            self.tag = tag

        def describe(self):
            return (self.tag, self.chunk_id)

    rb = impl.recv.ChunkRingbuffer(1)
    c = ring_chunk(impl, MyChunk, tag="x")
    rb.put(c)
    got = rb.get()
    assert got is c and type(got) is MyChunk and got.tag == "x"

    data_ring, free_ring = impl.recv.ChunkRingbuffer(4), impl.recv.ChunkRingbuffer(4)
    ccfg = impl.recv.ChunkStreamConfig(items=ITEMS, place=cb.generic()(-1))
    stream = impl.recv.ChunkRingStream(impl.ThreadPool(), impl.recv.StreamConfig(stream_id=7),
                                       ccfg, data_ring, free_ring)
    assert stream.data_ringbuffer is data_ring and stream.free_ringbuffer is free_ring
    mine = [MyChunk(f"c{i}", present=np.zeros(HPC, np.uint8), data=np.zeros(HPC * HS, np.uint8))
            for i in range(4)]
    ids = {id(c) for c in mine}
    for c in mine:
        stream.add_free_chunk(c)
    stream.add_buffer_reader(b"".join(heaps(range(12))))
    seen = []
    for c in run_with_timeout(lambda: list(data_ring), 10):
        assert type(c) is MyChunk and id(c) in ids
        seen.append(c.describe() + (c.stream_id,))
        np.testing.assert_array_equal(c.present, 1)
    stream.stop()
    assert seen == [("c0", 0, 7), ("c1", 1, 7), ("c2", 2, 7)]


# ---------------------------------------------------------------------------
# add_free_chunk, stop, shared rings
# ---------------------------------------------------------------------------

def make_stream(mod, cb, n_ring=2, stream_id=0, max_chunks=2, **params):
    data_ring, free_ring = mod.recv.ChunkRingbuffer(n_ring), mod.recv.ChunkRingbuffer(n_ring)
    ccfg = mod.recv.ChunkStreamConfig(items=ITEMS, max_chunks=max_chunks,
                                      place=cb.generic(**params)(-1))
    stream = mod.recv.ChunkRingStream(mod.ThreadPool(), recv_config(mod, stream_id=stream_id),
                                      ccfg, data_ring, free_ring)
    return stream, data_ring, free_ring


def test_add_free_chunk(cb, impl):
    stream, data_ring, free_ring = make_stream(impl, cb, n_ring=2)
    c = impl.recv.Chunk(present=np.ones(HPC, np.uint8), data=np.zeros(HPC * HS, np.uint8))
    stream.add_free_chunk(c)
    assert c.data is None and free_ring.qsize() == 1
    stream.add_free_chunk(ring_chunk(impl))
    extra = ring_chunk(impl)
    with pytest.raises(impl.Full):
        stream.add_free_chunk(extra)
    assert extra.data is not None
    got = free_ring.get_nowait()
    assert got is c
    np.testing.assert_array_equal(got.present, 0)   # zeroed by add_free_chunk
    with pytest.raises(ValueError):
        stream.add_free_chunk(impl.recv.Chunk(present=np.zeros(4, np.uint8)))
    stream.stop()
    assert free_ring.qsize() == 1
    late = ring_chunk(impl)
    stream.add_free_chunk(late)      # silently ignored after stop
    assert free_ring.qsize() == 1
    with pytest.raises(impl.Stopped):
        free_ring.put(ring_chunk(impl))
    with pytest.raises(impl.Stopped):
        data_ring.get()


def test_network_stop_keeps_free_ring(cb, impl):
    """End of input removes the stream as a producer of the data ring (which
    stops); the free ring keeps working."""
    stream, data_ring, free_ring = make_stream(impl, cb, n_ring=4)
    for _ in range(4):
        stream.add_free_chunk(new_chunk(impl, data_size=HPC * HS, present_size=HPC))
    stream.add_buffer_reader(b"".join(heaps(range(8))))
    chunks = run_with_timeout(lambda: list(data_ring), 10)
    assert [c.chunk_id for c in chunks] == [0, 1]
    with pytest.raises(impl.Stopped):
        data_ring.get_nowait()
    n = free_ring.qsize()
    stream.add_free_chunk(chunks[0])
    assert free_ring.qsize() == n + 1
    stream.stop()


def test_user_stop_stops_both_rings(cb):
    """stop() stops both rings first: chunks still in the window are not
    delivered; the consumer's loop ends; spead2 behaves the same."""
    results = {}
    for mod in both():
        stream, data_ring, free_ring = make_stream(mod, cb, n_ring=4, max_chunks=1)
        for _ in range(4):
            stream.add_free_chunk(new_chunk(mod, data_size=HPC * HS, present_size=HPC))
        queue = mod.InprocQueue()
        for p in heaps(range(6)):
            queue.add_packet(p)
        stream.add_inproc_reader(queue)
        first = run_with_timeout(data_ring.get, 10)   # chunk 0 (chunk 1 is in the window)
        stream.stop()
        rest = run_with_timeout(lambda: list(data_ring), 10)
        late = new_chunk(mod, data_size=HPC * HS, present_size=HPC)
        stream.add_free_chunk(late)   # ignored
        results[mod.__name__] = (first.chunk_id, list(first.present), [c.chunk_id for c in rest],
                                 exc_only(free_ring.get_nowait), exc_only(data_ring.get_nowait),
                                 exc_only(lambda: free_ring.put(new_chunk(
                                     mod, data_size=HPC * HS, present_size=HPC))))
        queue.stop()
    assert results[spead2gpu.__name__] == results["spead2"]
    assert results["spead2"][:3] == (0, [1, 1, 1, 1], [])


def test_add_free_chunk_after_stop_takes_buffers(cb):
    out = []
    for mod in both():
        stream, _, _ = make_stream(mod, cb)
        stream.stop()
        late = new_chunk(mod, data_size=HPC * HS, present_size=HPC)
        stream.add_free_chunk(late)
        out.append((late.data is None, late.present is None))
    assert out[1] == out[0]


def test_stop_then_destroy_does_not_hang(cb, impl):
    """A stream stopped (or just dropped) while its worker waits for a free
    chunk ends promptly."""
    def run():
        stream, data_ring, free_ring = make_stream(impl, cb, n_ring=1, max_chunks=1)
        stream.add_free_chunk(new_chunk(impl, data_size=HPC * HS, present_size=HPC))
        queue = impl.InprocQueue()
        for p in heaps(range(16)):
            queue.add_packet(p)
        stream.add_inproc_reader(queue)
        time.sleep(0.1)   # the worker is now blocked: data ring full, free ring empty
        stream.stop()
        queue.stop()
        return [c.chunk_id for c in data_ring]
    assert run_with_timeout(run, 10) == [0]


def test_shared_rings_two_streams(cb):
    """Two streams share a data ring and a free ring: stream_id tells the
    chunks apart, and the data ring stops only when both streams have hit
    the end of their input."""
    results = {}
    for mod in both():
        data_ring, free_ring = mod.recv.ChunkRingbuffer(8), mod.recv.ChunkRingbuffer(8)
        streams = []
        for sid in (1, 2):
            ccfg = mod.recv.ChunkStreamConfig(items=ITEMS, max_chunks=2, place=cb.generic()(-1))
            streams.append(mod.recv.ChunkRingStream(
                mod.ThreadPool(), mod.recv.StreamConfig(stream_id=sid), ccfg, data_ring, free_ring))
        for _ in range(8):
            streams[0].add_free_chunk(new_chunk(mod, data_size=HPC * HS, present_size=HPC))
        queue = mod.InprocQueue()
        streams[1].add_inproc_reader(queue)          # no packets yet
        streams[0].add_buffer_reader(b"".join(heaps(range(8))))
        got = []

        def take(n=None):
            while n is None or len(got) < n:
                try:
                    c = data_ring.get()
                except mod.Stopped:
                    return
                got.append((c.stream_id, c.chunk_id, list(c.present)))
                streams[1].add_free_chunk(c)    # either stream can recycle to the shared ring
        run_with_timeout(lambda: take(2), 10)   # stream 1's chunks; its input has ended
        time.sleep(0.1)
        still_running = exc_only(data_ring.get_nowait)   # stream 2 is still a producer
        for p in heaps([4, 5, 6, 7, 9, 10]):
            queue.add_packet(p)
        queue.stop()
        run_with_timeout(take, 10)              # until the data ring stops
        for s in streams:
            s.stop()
        results[mod.__name__] = (got, still_running)
    assert results[spead2gpu.__name__] == results["spead2"]
    assert results["spead2"] == (
        [(1, 0, [1, 1, 1, 1]), (1, 1, [1, 1, 1, 1]),
         (2, 0, [0, 0, 0, 0]), (2, 1, [1, 1, 1, 1]), (2, 2, [0, 1, 1, 0])],
        "Empty")


# ---------------------------------------------------------------------------
# asyncio
# ---------------------------------------------------------------------------

def test_asyncio_ringbuffer(impl):
    aio = importlib.import_module(impl.__name__ + ".recv.asyncio")

    async def main():
        rb = aio.ChunkRingbuffer(2)
        assert isinstance(rb, impl.recv.ChunkRingbuffer) and rb.maxsize == 2
        await rb.put(ring_chunk(impl, chunk_id=1))
        assert (await rb.get()).chunk_id == 1
        # put of a chunk that has no data (while there is space)
        with pytest.raises(ValueError):
            await rb.put(impl.recv.Chunk(present=np.zeros(2, np.uint8)))
        # get waiting for data
        waiter = asyncio.ensure_future(rb.get())
        await asyncio.sleep(0.01)
        assert not waiter.done()
        await rb.put(ring_chunk(impl, chunk_id=2))
        assert (await asyncio.wait_for(waiter, 5)).chunk_id == 2
        # put waiting for space
        await rb.put(ring_chunk(impl, chunk_id=3))
        await rb.put(ring_chunk(impl, chunk_id=4))
        putter = asyncio.ensure_future(rb.put(ring_chunk(impl, chunk_id=5)))
        await asyncio.sleep(0.01)
        assert not putter.done()
        assert (await rb.get()).chunk_id == 3
        await asyncio.wait_for(putter, 5)
        # a producer in another thread, async for until stopped
        def produce():
            time.sleep(0.02)
            impl.recv.ChunkRingbuffer.put(rb, ring_chunk(impl, chunk_id=6))   # blocking put
            rb.stop()
        t = threading.Thread(target=produce)
        t.start()
        ids = [c.chunk_id async for c in rb]
        t.join()
        with pytest.raises(impl.Stopped):
            await rb.get()
        return ids

    assert asyncio.run(asyncio.wait_for(main(), 10)) == [4, 5, 6]


def test_asyncio_chunk_stream(cb):
    """A ChunkRingStream whose rings are asyncio ChunkRingbuffers, drained by
    ``async for`` and ``await get()``, same chunks in both libraries."""
    results = {}
    packets = heaps(range(16)) + heap(17, drop=[2])
    for mod in both():
        aio = importlib.import_module(mod.__name__ + ".recv.asyncio")

        async def main():
            data_ring, free_ring = aio.ChunkRingbuffer(2), aio.ChunkRingbuffer(2)
            ccfg = mod.recv.ChunkStreamConfig(items=ITEMS, place=cb.generic()(-1))
            stream = mod.recv.ChunkRingStream(mod.ThreadPool(), mod.recv.StreamConfig(), ccfg,
                                              data_ring, free_ring)
            for _ in range(2):
                await free_ring.put(new_chunk(mod, data_size=HPC * HS, present_size=HPC))
            stream.add_buffer_reader(b"".join(packets))
            first = await data_ring.get()
            out = [snapshot(first)]
            recycle(stream, first)
            async for chunk in data_ring:
                out.append(snapshot(chunk))
                recycle(stream, chunk)
            stream.stop()
            return out
        results[mod.__name__] = asyncio.run(asyncio.wait_for(main(), 10))
    assert_same_chunks(results[spead2gpu.__name__], results["spead2"])
    assert [c[0] for c in results["spead2"]] == [0, 1, 2, 3, 4]


# ---------------------------------------------------------------------------
# A receiver written for spead2, run unchanged against both libraries
# ---------------------------------------------------------------------------

SPEAD2_HEADER = """\
import spead2
import spead2.recv
import spead2.recv.asyncio
from spead2.numba import intp_to_voidptr
from spead2.recv.numba import chunk_place_data
"""

SPEAD2GPU_HEADER = """\
import spead2gpu as spead2
import spead2gpu.recv
import spead2gpu.recv.asyncio
from spead2gpu.numba import intp_to_voidptr
from spead2gpu.recv.numba import chunk_place_data
"""

#: A small but complete chunk receiver in spead2 style (placement by an
#: immediate timestamp, extra data, a custom statistic, asyncio rings).
RECEIVER_PROGRAM = """
import asyncio
import ctypes

import numba
import numpy as np
import scipy
from numba import types

HEAP_SAMPLES = 256
HEAPS_PER_CHUNK = 8
TIMESTAMP_ID = 0x1600
N_CHUNKS = 4


@numba.cfunc(types.void(types.CPointer(chunk_place_data), types.uintp, types.CPointer(types.int64)),
             nopython=True)
def place(data_ptr, data_size, user_data):
    data = numba.carray(data_ptr, 1)
    items = numba.carray(intp_to_voidptr(data[0].items), 3, dtype=np.int64)
    params = numba.carray(user_data, 1)
    timestamp = items[0]
    heap_size = items[1]
    if timestamp < 0 or heap_size != HEAP_SAMPLES:
        stats = numba.carray(intp_to_voidptr(data[0].batch_stats), params[0] + 1, dtype=np.uint64)
        stats[params[0]] += 1
        return
    heap = timestamp // HEAP_SAMPLES
    data[0].chunk_id = heap // HEAPS_PER_CHUNK
    data[0].heap_index = heap % HEAPS_PER_CHUNK
    data[0].heap_offset = data[0].heap_index * HEAP_SAMPLES
    extra = numba.carray(intp_to_voidptr(data[0].extra), 1, dtype=np.int64)
    extra[0] = items[2]
    data[0].extra_offset = data[0].heap_index * 8
    data[0].extra_size = 8


async def receive(sock):
    config = spead2.recv.StreamConfig(max_heaps=4)
    stat_index = config.add_stat("app.bad_heaps")
    user_data = np.array([stat_index], np.int64)
    chunk_config = spead2.recv.ChunkStreamConfig(
        items=[TIMESTAMP_ID, spead2.HEAP_LENGTH_ID, spead2.HEAP_CNT_ID],
        max_chunks=2,
        max_heap_extra=8,
        place=scipy.LowLevelCallable(place.ctypes,
                                     user_data=user_data.ctypes.data_as(ctypes.c_void_p),
                                     signature="void (void *, size_t, void *)"))
    data_ring = spead2.recv.asyncio.ChunkRingbuffer(N_CHUNKS)
    free_ring = spead2.recv.asyncio.ChunkRingbuffer(N_CHUNKS)
    stream = spead2.recv.ChunkRingStream(spead2.ThreadPool(), config, chunk_config,
                                         data_ring, free_ring)
    for _ in range(N_CHUNKS):
        stream.add_free_chunk(spead2.recv.Chunk(
            present=np.zeros(HEAPS_PER_CHUNK, np.uint8),
            data=np.zeros(HEAPS_PER_CHUNK * HEAP_SAMPLES, np.int8),
            extra=np.zeros(HEAPS_PER_CHUNK, np.int64)))
    stream.add_udp_reader(sock, max_size=9000)
    received = []
    async for chunk in data_ring:
        received.append((chunk.chunk_id, chunk.stream_id, chunk.present.tolist(),
                         chunk.data.tobytes(), chunk.extra.tolist()))
        chunk.extra[:] = 0
        stream.add_free_chunk(chunk)
    stream.stop()
    stats = stream.stats
    return received, {name: stats[name] for name in
                      ("heaps", "packets", "too_old_heaps", "rejected_heaps", "app.bad_heaps")}
"""


def _sender_packets():
    """Packets from spead2's own sender: a descriptor heap, 24 data heaps
    (timestamp as an immediate) with one skipped and two reordered, and the
    end-of-stream heap."""
    ref = reference()
    import spead2.send  # noqa: F401
    ig = ref.send.ItemGroup(flavour=ref.Flavour(4, 64, 48, 0))
    ig.add_item(TS_ID, "timestamp", "ts", (), format=[("u", 48)])
    ig.add_item(0x1700, "samples", "samples", (256,), dtype=np.int8)
    stream = ref.send.BytesStream(ref.ThreadPool(), ref.send.StreamConfig(max_packet_size=1100))
    stream.send_heap(ig.get_heap(descriptors="all", data="none"))
    blobs = []
    for i in range(24):
        ig["timestamp"].value = i * 256
        ig["samples"].value = ((np.arange(256) + i * 5) % 256 - 128).astype(np.int8)
        heap = ig.get_heap(descriptors="none", data="all")
        heap.repeat_pointers = True
        before = len(stream.getvalue())
        stream.send_heap(heap)
        blobs.append(stream.getvalue()[before:])
    desc = stream.getvalue()[:len(stream.getvalue()) - sum(len(b) for b in blobs)]
    blobs[5], blobs[6] = blobs[6], blobs[5]
    del blobs[10]
    end = ref.send.BytesStream(ref.ThreadPool(), ref.send.StreamConfig())
    end.send_heap(ig.get_end())
    return split_packets(desc + b"".join(blobs) + end.getvalue())


def test_spead2_program_runs_on_both():
    pytest.importorskip("numba")
    pytest.importorskip("scipy")
    packets = _sender_packets()
    results = {}
    for name, header in (("spead2", SPEAD2_HEADER), ("spead2gpu", SPEAD2GPU_HEADER)):
        reference()
        namespace = {"__name__": f"program_{name}"}
        exec(compile(header + RECEIVER_PROGRAM, f"<receiver for {name}>", "exec"), namespace)
        rx, tx = udp_pair()
        try:
            async def main():
                task = asyncio.ensure_future(namespace["receive"](rx))
                await asyncio.sleep(0.05)
                for p in packets:
                    tx.sendto(p, rx.getsockname())
                return await asyncio.wait_for(task, 10)
            results[name] = asyncio.run(main())
        finally:
            rx.close()
            tx.close()
    chunks, stats = results["spead2"]
    assert_same_chunks(results["spead2gpu"][0], chunks)
    assert results["spead2gpu"][1] == stats
    assert [c[0] for c in chunks] == [0, 1, 2]
    assert chunks[1][2] == [1, 1, 0, 1, 1, 1, 1, 1]
    assert stats["app.bad_heaps"] >= 1 and stats["too_old_heaps"] == 0


# ---------------------------------------------------------------------------
# Chunk stream groups: see test_chunk_groups.py
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# spead2gpu only: bounds-checked placement
# ---------------------------------------------------------------------------

GUARD = 64
GUARD_BYTE = 0x5A


def guarded(n, fill):
    """A buffer of n bytes followed by a guard area; returns (view, backing)."""
    backing = np.full(n + GUARD, GUARD_BYTE, np.uint8)
    backing[:n] = fill
    return backing[:n], backing


BAD_PLACEMENTS = {
    # mode, value, run keywords
    "offset_straddles_end": (BAD_OFFSET, HPC * HS - HS // 2, {}),
    "offset_at_end": (BAD_OFFSET, HPC * HS, {}),
    "offset_huge": (BAD_OFFSET, 1 << 62, {}),
    "heap_index_beyond_present": (BAD_INDEX, HPC, {}),
    "heap_index_huge": (BAD_INDEX, 1 << 62, {}),
    "presence_flags_beyond_present": (BAD_INDEX, HPC * PPH - 2, dict(presence=PKT)),
    "extra_offset_beyond_extra": (BAD_EXTRA_OFFSET, HPC * 16 - 8, dict(extra=16)),
    "extra_size_beyond_max_heap_extra": (BAD_EXTRA_SIZE, 32, dict(extra=16)),
}


@spead2gpu_only
@pytest.mark.parametrize("name", list(BAD_PLACEMENTS))
def test_bad_placement_is_dropped_and_counted(cb, name):
    mode, value, opts = BAD_PLACEMENTS[name]
    presence = opts.get("presence")
    scale = PPH if presence else 1
    present_size = HPC * scale
    extra_size = HPC * 16 if opts.get("extra") else 0
    bad_cnt = 2
    data_ring, free_ring = spead2gpu.recv.ChunkRingbuffer(2), spead2gpu.recv.ChunkRingbuffer(2)
    ccfg = spead2gpu.recv.ChunkStreamConfig(
        items=ITEMS, max_chunks=1, max_heap_extra=opts.get("extra", 0),
        place=cb.generic(scale=scale, extra=opts.get("extra", 0), bad_mode=mode,
                         bad_key=bad_cnt, bad_value=value)(-1))
    if presence:
        ccfg.enable_packet_presence(presence)
    stream = spead2gpu.recv.ChunkRingStream(spead2gpu.ThreadPool(), recv_config(spead2gpu),
                                            ccfg, data_ring, free_ring)
    data, data_back = guarded(HPC * HS, SENTINEL)
    present, present_back = guarded(present_size, 0)
    kw = dict(data=data, present=present)
    if extra_size:
        extra, extra_back = guarded(extra_size, SENTINEL)
        kw["extra"] = extra
    stream.add_free_chunk(spead2gpu.recv.Chunk(**kw))
    stream.add_buffer_reader(b"".join(heaps(range(4))))
    chunks = run_with_timeout(lambda: list(data_ring), 10)
    stream.stop()
    assert len(chunks) == 1
    stats = stream.stats
    assert stats["spead2gpu.bad_placement_heaps"] == 1
    assert stats["rejected_heaps"] == 0 and stats["too_old_heaps"] == 0
    # Nothing outside the chunk's buffers was touched.
    assert (data_back[HPC * HS:] == GUARD_BYTE).all()
    assert (present_back[present_size:] == GUARD_BYTE).all()
    if extra_size:
        assert (extra_back[extra_size:] == GUARD_BYTE).all()
    # The other heaps were placed normally; the bad one left its slot untouched.
    flags = chunks[0].present.reshape(HPC, scale)
    assert flags[:, 0].tolist() == [1, 1, 0, 1]
    for i in range(HPC):
        expected = pattern(i, HS) if i != bad_cnt else bytes([SENTINEL]) * HS
        assert data[i * HS:(i + 1) * HS].tobytes() == expected, f"heap {i}"
    if extra_size:
        ex = np.frombuffer(extra.tobytes(), np.int64).reshape(HPC, 2)
        assert ex[[0, 1, 3], 0].tolist() == [0, 1, 3]
        assert extra[bad_cnt * 16:(bad_cnt + 1) * 16].tolist() == [SENTINEL] * 16


@spead2gpu_only
def test_free_chunk_wait_ns(cb):
    """The time the worker waits for a free chunk is counted."""
    stream, data_ring, _ = make_stream(spead2gpu, cb, n_ring=2, max_chunks=1)
    for _ in range(2):
        stream.add_free_chunk(new_chunk(spead2gpu, data_size=HPC * HS, present_size=HPC))
    stream.add_buffer_reader(b"".join(heaps(range(16))))     # 4 chunks
    held = [run_with_timeout(data_ring.get, 10) for _ in range(2)]
    time.sleep(0.3)   # the worker now needs a third chunk and waits for it
    for c in held:
        stream.add_free_chunk(c)

    def drain():
        for c in data_ring:
            stream.add_free_chunk(c)
    run_with_timeout(drain, 10)
    stream.stop()
    waited = stream.stats["spead2gpu.free_chunk_wait_ns"]
    assert waited >= 0.2e9
    assert waited < 5e9


# ---------------------------------------------------------------------------
# spead2gpu only: built-in layouts
# ---------------------------------------------------------------------------

@spead2gpu_only
def test_layout_properties():
    L = spead2gpu.recv.ChunkLayout
    f = L(heap_size=F_HS, timestamp_id=TS_ID, timestamp_step=F_STEP, timestamps_per_chunk=F_TPC,
          axes=["time", (DIG_ID, F_NIN)], extra_items=[DIG_STATUS_ID])
    assert f.heaps_per_chunk == F_TPC * F_NIN
    assert f.chunk_data_size == F_TPC * F_NIN * F_HS
    assert f.extra_bytes_per_heap == 8 and f.chunk_extra_size == F_TPC * F_NIN * 8
    assert f.axes == ["time", (DIG_ID, F_NIN, 1, 0)]
    assert (f.heap_size, f.timestamp_id, f.timestamp_step, f.timestamps_per_chunk) == \
        (F_HS, TS_ID, F_STEP, F_TPC)
    assert f.extra_items == [DIG_STATUS_ID]
    x = xeng_layout()
    assert x.heaps_per_chunk == X_NANTS * X_TPC * X_NSUB
    assert x.axes == [(FENG_ID, X_NANTS, 1, 0), "time", (FREQ_ID, X_NSUB, X_CPH, X_FIRST)]
    d = L(100, TS_ID, 10, 3)
    assert d.axes == ["time"] and d.heaps_per_chunk == 3 and d.chunk_extra_size == 0
    cfg = spead2gpu.recv.ChunkStreamConfig(place=f)
    assert cfg.place is f


@spead2gpu_only
@pytest.mark.parametrize("kwargs", [
    dict(axes=[]),
    dict(axes=[(DIG_ID, 4)]),
    dict(axes=["time", "time"]),
    dict(axes=["frequency"]),
    dict(axes=["time", (DIG_ID, 0)]),
    dict(axes=["time", (DIG_ID, 4, 0)]),
    dict(axes=["time", (DIG_ID,)]),
    dict(axes=["time", (DIG_ID, 1, 1, 0, 5)]),
    dict(heap_size=0),
    dict(timestamp_step=0),
    dict(timestamps_per_chunk=0),
])
def test_layout_validation(kwargs):
    base = dict(heap_size=64, timestamp_id=TS_ID, timestamp_step=64, timestamps_per_chunk=2,
                axes=["time"])
    base.update(kwargs)
    with pytest.raises(ValueError):
        spead2gpu.recv.ChunkLayout(**base)


def feng_layout():
    return spead2gpu.recv.ChunkLayout(
        heap_size=F_HS, timestamp_id=TS_ID, timestamp_step=F_STEP, timestamps_per_chunk=F_TPC,
        axes=["time", (DIG_ID, F_NIN)], extra_items=[DIG_STATUS_ID])


def xeng_layout():
    return spead2gpu.recv.ChunkLayout(
        heap_size=X_HS, timestamp_id=TS_ID, timestamp_step=X_STEP, timestamps_per_chunk=X_TPC,
        axes=[(FENG_ID, X_NANTS), "time", (FREQ_ID, X_NSUB, X_CPH, X_FIRST)],
        extra_items=[FENG_ID, TS_ID])


F_BASE = 1_000_003 * F_TPC     # first timestamp index (a large, chunk-aligned value)


def feng_traffic():
    """Digitiser heaps for 12 timestamps x 4 inputs, shuffled within each
    timestamp, with losses and one heap of each rejected kind.  Returns
    (packets, expected layout statistics)."""
    rng = random.Random(99)
    out = []
    cnt = 1
    for t in range(12):
        group = []
        for dig in range(F_NIN):
            timestamp = (F_BASE + t) * F_STEP
            items = [imm(TS_ID, timestamp), imm(DIG_ID, dig), imm(DIG_STATUS_ID, t * 16 + dig)]
            drop = [2] if (t, dig) in {(1, 2), (6, 0)} else ()
            if (t, dig) == (4, 3):
                drop = [0, 1, 2, 3]           # lost heap
            group.append(heap(cnt, F_HS, F_PKT, items, drop=drop))
            cnt += 1
        rng.shuffle(group)
        out += [p for g in group for p in g]
    ts0 = F_BASE * F_STEP
    bad = [
        # wrong size
        heap(cnt + 0, F_HS // 2, F_PKT, [imm(TS_ID, ts0), imm(DIG_ID, 0)]),
        # misaligned timestamp
        heap(cnt + 1, F_HS, F_PKT, [imm(TS_ID, ts0 + 5 * F_STEP + 3), imm(DIG_ID, 1)]),
        # out-of-range digitiser id
        heap(cnt + 2, F_HS, F_PKT, [imm(TS_ID, ts0 + 6 * F_STEP), imm(DIG_ID, F_NIN)]),
        heap(cnt + 3, F_HS, F_PKT, [imm(TS_ID, ts0 + 6 * F_STEP), imm(DIG_ID, 1000)]),
        # missing digitiser id, missing timestamp
        heap(cnt + 4, F_HS, F_PKT, [imm(TS_ID, ts0 + 7 * F_STEP)]),
        heap(cnt + 5, F_HS, F_PKT, [imm(DIG_ID, 2)]),
        # status missing: placed (where the lost heap (4, 3) belongs), extra = -1
        heap(cnt + 6, F_HS, F_PKT, [imm(TS_ID, ts0 + 4 * F_STEP), imm(DIG_ID, 3)]),
    ]
    # the bad heaps go in the middle of the stream, inside the window
    pos = len(out) * 2 // 3
    out = out[:pos] + [p for b in bad[:-1] for p in b] + out[pos:] + bad[-1]
    return out, dict(zip(LAYOUT_STATS, (1, 1, 2, 2)))


def xeng_traffic():
    """Channelised heaps from 4 F-engines, 2 channel blocks each, 6
    timestamps, with loss, reordering and every kind of rejection."""
    rng = random.Random(7)
    out = []
    cnt = 1
    t0 = 5000
    for t in range(6):
        group = []
        for feng in range(X_NANTS):
            for sub in range(X_NSUB):
                items = [imm(TS_ID, (t0 + t) * X_STEP), imm(FENG_ID, feng),
                         imm(FREQ_ID, X_FIRST + sub * X_CPH)]
                drop = [1] if (t, feng, sub) == (2, 1, 0) else ()
                if (t, feng, sub) == (3, 3, 1):
                    drop = [0, 1]
                group.append(heap(cnt, X_HS, X_PKT, items, drop=drop))
                cnt += 1
        rng.shuffle(group)
        out += [p for g in group for p in g]
    ts = (t0 + 4) * X_STEP

    def bad(size=X_HS, timestamp=ts, feng=0, freq=X_FIRST):
        nonlocal cnt
        items = []
        if timestamp is not None:
            items.append(imm(TS_ID, timestamp))
        if feng is not None:
            items.append(imm(FENG_ID, feng))
        if freq is not None:
            items.append(imm(FREQ_ID, freq))
        cnt += 1
        return heap(cnt, size, X_PKT, items)

    rejects = (bad(size=X_HS * 2) + bad(size=X_PKT)                    # wrong size: 2
               + bad(timestamp=ts + 1) + bad(freq=X_FIRST + 1)         # misaligned: 2
               + bad(feng=X_NANTS) + bad(freq=X_FIRST - X_CPH)         # out of range: 3
               + bad(freq=X_FIRST + X_NSUB * X_CPH)
               + bad(feng=None) + bad(freq=None) + bad(timestamp=None))  # missing: 3
    pos = len(out) * 3 // 4
    return out[:pos] + rejects + out[pos:], dict(zip(LAYOUT_STATS, (2, 2, 3, 3)))


ENGINES = {
    # name: (layout factory, numba factory name, items, traffic, max_chunks)
    "feng": (feng_layout, "feng", [HEAP_LENGTH_ID, TS_ID, DIG_ID, DIG_STATUS_ID], feng_traffic, 3),
    "xeng": (xeng_layout, "xeng", [HEAP_LENGTH_ID, TS_ID, FENG_ID, FREQ_ID], xeng_traffic, 2),
}


def run_engine(mod, place, engine, via, packets, custom_stats=()):
    layout = ENGINES[engine][0]()
    return run_chunks(
        mod, packets, place, max_chunks=ENGINES[engine][4], n_chunks=6,
        hpc=layout.heaps_per_chunk, heap_size=layout.heap_size,
        extra_size=layout.chunk_extra_size, max_heap_extra=layout.extra_bytes_per_heap,
        items=ENGINES[engine][2], via=via, custom_stats=custom_stats,
        stream_kw=dict(max_heaps=8), stat_names=COMPARED_STATS)


@spead2gpu_only
@pytest.mark.parametrize("engine,via", [("feng", "buffer"), ("feng", "udp"), ("xeng", "buffer"),
                                        ("xeng", "inproc")])
def test_layout_matches_numba_in_spead2(cb, engine, via):
    """The built-in layout gives exactly the chunks (data, present, extra) and
    statistics that the equivalent numba callback gives in spead2 (and in
    spead2gpu)."""
    ref = reference()
    packets, expected_stats = ENGINES[engine][3]()
    numba_place = getattr(cb, ENGINES[engine][1])
    ref_chunks, ref_stats = run_engine(ref, numba_place, engine, via, packets, LAYOUT_STATS)
    gpu_numba = run_engine(spead2gpu, numba_place, engine, via, packets, LAYOUT_STATS)
    layout = ENGINES[engine][0]()
    gpu_chunks, gpu_stats = run_chunks(
        spead2gpu, packets, layout, max_chunks=ENGINES[engine][4], n_chunks=6,
        hpc=layout.heaps_per_chunk, heap_size=layout.heap_size,
        extra_size=layout.chunk_extra_size, items=[], via=via, stream_kw=dict(max_heaps=8),
        extra_stats=LAYOUT_STATS)
    assert_same_chunks(gpu_numba[0], ref_chunks)
    assert gpu_numba[1] == ref_stats
    assert_same_chunks(gpu_chunks, ref_chunks)
    assert gpu_stats == ref_stats
    if via == "udp":   # the appended stop heap is placed too, and has the wrong size
        expected_stats["spead2gpu.layout_wrong_size_heaps"] += 1
    assert {k: ref_stats[k] for k in LAYOUT_STATS} == expected_stats
    assert ref_stats["rejected_heaps"] == sum(expected_stats.values())
    assert ref_stats["too_old_heaps"] == 0
    # the window is back-filled below the first chunk (max_chunks - 1 empty chunks)
    assert len(ref_chunks) == {"feng": 5, "xeng": 4}[engine]
    assert sum(sum(c[2]) for c in ref_chunks) > 0


@spead2gpu_only
def test_feng_layout_contents():
    """Independent check of the F-engine layout: heap (t, input) lands at
    index (t % timestamps_per_chunk) * n_inputs + input of chunk
    t // timestamps_per_chunk, extra holds the status item (all ones if the
    heap lacked it), lost and incomplete heaps are absent, and the window is
    back-filled below the first chunk."""
    packets, expected_stats = feng_traffic()
    layout = feng_layout()
    chunks, stats = run_chunks(
        spead2gpu, packets, layout, max_chunks=3, n_chunks=6, hpc=layout.heaps_per_chunk,
        heap_size=F_HS, extra_size=layout.chunk_extra_size, items=[],
        extra_stats=LAYOUT_STATS + ("spead2gpu.bad_placement_heaps",),
        stream_kw=dict(max_heaps=8))
    first = F_BASE // F_TPC
    assert [c[0] for c in chunks] == [first - 2 + i for i in range(5)]
    assert sum(chunks[0][2]) == sum(chunks[1][2]) == 0      # back-filled, empty
    assert {k: stats[k] for k in LAYOUT_STATS} == expected_stats
    assert stats["rejected_heaps"] == sum(expected_stats.values())
    assert stats["spead2gpu.bad_placement_heaps"] == 0
    by_id = {c[0]: c for c in chunks}
    incomplete = {(1, 2), (6, 0)}
    status_less_cnt = 12 * F_NIN + 1 + 6
    cnt = 1
    for t in range(12):
        _, _, present, data, extra = by_id[first + t // F_TPC]
        extra = np.frombuffer(extra, np.int64)
        for dig in range(F_NIN):
            idx = (t % F_TPC) * F_NIN + dig
            heap_data = data[idx * F_HS:(idx + 1) * F_HS]
            if (t, dig) in incomplete:
                assert present[idx] == 0, (t, dig)
            elif (t, dig) == (4, 3):     # lost, then the status-less heap took its place
                assert present[idx] == 1
                assert heap_data == pattern(status_less_cnt, F_HS)
                assert extra[idx] == -1
            else:
                assert present[idx] == 1, (t, dig)
                assert heap_data == pattern(cnt, F_HS)
                assert extra[idx] == t * 16 + dig, (t, dig)
            if (t, dig) in incomplete:
                assert extra[idx] == t * 16 + dig    # extra is copied even so
            cnt += 1


@spead2gpu_only
def test_layout_extra_without_buffer_is_bad_placement():
    """A layout with extra_items on chunks without an extra buffer: heaps are
    dropped as bad placements (never written out of bounds)."""
    layout = feng_layout()
    packets = [p for dig in range(F_NIN) for p in heap(
        dig + 1, F_HS, F_PKT, [imm(TS_ID, 0), imm(DIG_ID, dig), imm(DIG_STATUS_ID, 0)])]
    chunks, stats = run_chunks(spead2gpu, packets, layout, hpc=layout.heaps_per_chunk,
                               heap_size=F_HS, items=[],
                               extra_stats=("spead2gpu.bad_placement_heaps",))
    assert stats["spead2gpu.bad_placement_heaps"] == F_NIN
    assert all(sum(c[2]) == 0 for c in chunks)


@spead2gpu_only
def test_layout_needs_no_numba():
    """Built-in layouts run without numba or scipy being imported."""
    code = (
        "import sys, numpy as np\n"
        "sys.modules['numba'] = None; sys.modules['scipy'] = None\n"
        "import spead2gpu, spead2gpu.recv\n"
        "layout = spead2gpu.recv.ChunkLayout(64, 0x1600, 64, 2)\n"
        "cfg = spead2gpu.recv.ChunkStreamConfig(place=layout)\n"
        "d, f = spead2gpu.recv.ChunkRingbuffer(2), spead2gpu.recv.ChunkRingbuffer(2)\n"
        "s = spead2gpu.recv.ChunkRingStream(spead2gpu.ThreadPool(), spead2gpu.recv.StreamConfig(),"
        " cfg, d, f)\n"
        "s.add_free_chunk(spead2gpu.recv.Chunk(present=np.zeros(2, np.uint8),"
        " data=np.zeros(128, np.uint8)))\n"
        "s.stop()\n"
        "assert 'numba' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "print('ok')\n")
    import os
    import subprocess
    import sys
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "chunk-layouts.md"


def doc_examples():
    if not DOC.exists():
        return []
    text = DOC.read_text()
    blocks = text.split("```python\n")[1:]
    return [b.split("```")[0] for b in blocks]


@spead2gpu_only
@pytest.mark.parametrize("index", range(len(doc_examples())))
def test_chunk_layouts_doc_examples_run(index):
    """The code in docs/chunk-layouts.md runs (its signature sketch is a ```py block, not collected)."""
    code = doc_examples()[index]
    if "import numba" in code:
        pytest.importorskip("numba")
        pytest.importorskip("scipy")
    run_with_timeout(lambda: exec(compile(code, f"{DOC.name} block {index}", "exec"), {}), 30)
