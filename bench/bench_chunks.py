#!/usr/bin/env python3
"""Chunk receive throughput: spead2 vs spead2gpu, same stream, one run.

The stream is an F-engine style digitiser feed: 64 KiB heaps (65536 8-bit
samples) in 8 KiB packets, each heap carrying a 48-bit timestamp and a
digitiser id as immediates; 4 digitisers x 4 timestamps = 16 heaps per
1 MiB chunk.  It is received by a ``recv.ChunkRingStream`` with

* spead2 + a numba placement callback (the reference),
* spead2gpu + the *same* numba callback (the same ``scipy.LowLevelCallable``),
* spead2gpu + the built-in ``recv.ChunkLayout`` (no numba),

from a memory buffer (``add_buffer_reader``) and from an ``InprocQueue``
filled beforehand (``add_inproc_reader``).  The figure is GB/s of heap
payload from adding the reader until the data ring stops, the consumer
taking every chunk and recycling it with ``add_free_chunk``.  Every run
checks that all heaps arrived (a wrong count aborts the benchmark).

Repetitions are interleaved across the variants so that machine noise hits
all of them alike; the table shows medians and the ratios to spead2.

Usage:  python bench/bench_chunks.py [--quick] [--repeat N] [--payload-mib M]
                                     [--only buffer,inproc] [--no-reference]
"""

from __future__ import annotations

import argparse
import gc
import importlib
import statistics
import struct
import sys
import time

import numpy as np

MiB = 1 << 20
HEAP_SIZE = 64 * 1024          # bytes (= samples) per heap
PACKET_SIZE = 8192             # max_packet_size
N_INPUTS = 4                   # digitisers
TIMESTAMPS_PER_CHUNK = 4
HEAPS_PER_CHUNK = N_INPUTS * TIMESTAMPS_PER_CHUNK
TIMESTAMP_ID = 0x1600
DIGITISER_ID = 0x3101
SAMPLES_ID = 0x3300
MAX_CHUNKS = 4
N_CHUNKS = 8                   # chunks in circulation (= ring capacities)
HEAP_LENGTH_ID = 0x02


def load(name):
    mod = importlib.import_module(name)
    for sub in ("recv", "send"):
        importlib.import_module(f"{name}.{sub}")
    return mod


# ---------------------------------------------------------------------------
# The stream (built once, outside the timed regions)
# ---------------------------------------------------------------------------

def build_stream(mod, n_heaps):
    """Bytes of ``n_heaps`` digitiser heaps (timestamp-major, then input)."""
    stream = mod.send.BytesStream(mod.ThreadPool(),
                                  mod.send.StreamConfig(max_packet_size=PACKET_SIZE, max_heaps=8))
    ig = mod.send.ItemGroup(flavour=mod.Flavour(4, 64, 48, 0))
    ig.add_item(TIMESTAMP_ID, "timestamp", "", (), format=[("u", 48)])
    ig.add_item(DIGITISER_ID, "digitiser_id", "", (), format=[("u", 48)])
    ig.add_item(SAMPLES_ID, "samples", "", (HEAP_SIZE,), dtype=np.int8)
    ig["samples"].value = (np.arange(HEAP_SIZE) % 251 - 125).astype(np.int8)
    for i in range(n_heaps):
        ig["timestamp"].value = (i // N_INPUTS) * HEAP_SIZE
        ig["digitiser_id"].value = i % N_INPUTS
        stream.send_heap(ig.get_heap(descriptors="none", data="all"))
    return stream.getvalue()


def split_packets(data):
    """Split concatenated SPEAD packets (for the InprocQueue)."""
    out = []
    off = 0
    view = memoryview(data)
    while off < len(data):
        n_items = struct.unpack_from(">H", data, off + 6)[0]
        hab = data[off + 3] * 8
        plen = None
        for p in struct.unpack_from(f">{n_items}Q", data, off + 8):
            if p >> 63 and ((p & ~(1 << 63)) >> hab) == 4:
                plen = p & ((1 << hab) - 1)
        size = 8 + 8 * n_items + plen
        out.append(bytes(view[off:off + size]))
        off += size
    return out


# ---------------------------------------------------------------------------
# Placement
# ---------------------------------------------------------------------------

def numba_place(record_mod, voidptr_mod):
    """The numba callback an spead2 user would write for this stream."""
    import numba
    import scipy
    from numba import types

    chunk_place_data = record_mod.chunk_place_data
    intp_to_voidptr = voidptr_mod.intp_to_voidptr

    @numba.cfunc(types.void(types.CPointer(chunk_place_data), types.uintp), nopython=True)
    def place(data_ptr, data_size):
        data = numba.carray(data_ptr, 1)
        items = numba.carray(intp_to_voidptr(data[0].items), 3, dtype=np.int64)
        timestamp, digitiser, heap_size = items[0], items[1], items[2]
        if heap_size != HEAP_SIZE or timestamp < 0 or timestamp % HEAP_SIZE != 0:
            return
        if digitiser < 0 or digitiser >= N_INPUTS:
            return
        t = timestamp // HEAP_SIZE
        idx = (t % TIMESTAMPS_PER_CHUNK) * N_INPUTS + digitiser
        data[0].chunk_id = t // TIMESTAMPS_PER_CHUNK
        data[0].heap_index = idx
        data[0].heap_offset = idx * HEAP_SIZE

    return scipy.LowLevelCallable(place.ctypes, signature="void (void *, size_t)")


NUMBA_ITEMS = [TIMESTAMP_ID, DIGITISER_ID, HEAP_LENGTH_ID]


def layout_place(gpu):
    return gpu.recv.ChunkLayout(
        heap_size=HEAP_SIZE, timestamp_id=TIMESTAMP_ID, timestamp_step=HEAP_SIZE,
        timestamps_per_chunk=TIMESTAMPS_PER_CHUNK, axes=["time", (DIGITISER_ID, N_INPUTS)])


# ---------------------------------------------------------------------------
# One measurement
# ---------------------------------------------------------------------------

def measure(mod, place, items, transport, data, packets, n_heaps):
    config = mod.recv.StreamConfig(max_heaps=8)
    chunk_config = mod.recv.ChunkStreamConfig(items=items, max_chunks=MAX_CHUNKS, place=place)
    data_ring = mod.recv.ChunkRingbuffer(N_CHUNKS)
    free_ring = mod.recv.ChunkRingbuffer(N_CHUNKS)
    stream = mod.recv.ChunkRingStream(mod.ThreadPool(1), config, chunk_config,
                                      data_ring, free_ring)
    for _ in range(N_CHUNKS):
        # np.ones touches the pages: no page faults in the timed region
        stream.add_free_chunk(mod.recv.Chunk(
            present=np.zeros(HEAPS_PER_CHUNK, np.uint8),
            data=np.ones(HEAPS_PER_CHUNK * HEAP_SIZE, np.uint8)))
    if transport == "inproc":
        queue = mod.InprocQueue()
        for p in packets:
            queue.add_packet(p)
        queue.stop()
    gc.collect()
    t0 = time.perf_counter()
    if transport == "buffer":
        stream.add_buffer_reader(data)
    else:
        stream.add_inproc_reader(queue)
    heaps = 0
    for chunk in data_ring:
        heaps += int(np.count_nonzero(chunk.present))
        stream.add_free_chunk(chunk)
    elapsed = time.perf_counter() - t0
    stream.stop()
    if heaps != n_heaps:
        raise RuntimeError(f"{mod.__name__} ({transport}): {heaps} heaps placed, "
                           f"expected {n_heaps}; stats {dict(stream.stats.items())}")
    return n_heaps * HEAP_SIZE / elapsed / 1e9


def digitiser_of(packet):
    """DIGITISER_ID immediate of a packet (-1 if absent: not a first packet)."""
    n_items = struct.unpack(">Q", packet[:8])[0] & 0xFFFF
    hab = packet[3] * 8
    for i in range(n_items):
        p = struct.unpack(">Q", packet[8 + 8 * i:16 + 8 * i])[0]
        if p >> 63 and ((p & ~(1 << 63)) >> hab) == DIGITISER_ID:
            return p & ((1 << hab) - 1)
    return -1


def split_by_member(packets, members):
    """Packets of each heap go to member (digitiser % members)."""
    out = [[] for _ in range(members)]
    current = {}
    for p in packets:
        cnt = None
        n_items = struct.unpack(">Q", p[:8])[0] & 0xFFFF
        hab = p[3] * 8
        for i in range(n_items):
            q = struct.unpack(">Q", p[8 + 8 * i:16 + 8 * i])[0]
            if q >> 63 and ((q & ~(1 << 63)) >> hab) == 1:
                cnt = q & ((1 << hab) - 1)
        dig = digitiser_of(p)
        if dig >= 0:
            current[cnt] = dig % members
        out[current.get(cnt, 0)].append(p)
    return [b"".join(x) for x in out]


def measure_group(mod, place, items, member_data, n_heaps):
    """A ChunkStreamRingGroup of len(member_data) members (one thread each),
    each reading its own buffer; LOSSLESS eviction."""
    EvictionMode = mod.recv.ChunkStreamGroupConfig.EvictionMode
    group_config = mod.recv.ChunkStreamGroupConfig(max_chunks=MAX_CHUNKS,
                                                  eviction_mode=EvictionMode.LOSSLESS)
    data_ring = mod.recv.ChunkRingbuffer(N_CHUNKS)
    free_ring = mod.recv.ChunkRingbuffer(N_CHUNKS)
    group = mod.recv.ChunkStreamRingGroup(group_config, data_ring, free_ring)
    chunk_config = mod.recv.ChunkStreamConfig(items=items, max_chunks=MAX_CHUNKS, place=place)
    for _ in member_data:
        group.emplace_back(mod.ThreadPool(1), mod.recv.StreamConfig(max_heaps=8), chunk_config)
    for _ in range(N_CHUNKS):
        group.add_free_chunk(mod.recv.Chunk(
            present=np.zeros(HEAPS_PER_CHUNK, np.uint8),
            data=np.ones(HEAPS_PER_CHUNK * HEAP_SIZE, np.uint8)))
    gc.collect()
    t0 = time.perf_counter()
    for member, data in zip(group, member_data):
        member.add_buffer_reader(data)
    heaps = 0
    for chunk in data_ring:
        heaps += int(np.count_nonzero(chunk.present))
        group.add_free_chunk(chunk)
    elapsed = time.perf_counter() - t0
    group.stop()
    if heaps != n_heaps:
        raise RuntimeError(f"{mod.__name__} (group): {heaps} heaps placed, expected {n_heaps}")
    return n_heaps * HEAP_SIZE / elapsed / 1e9


# ---------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="64 MiB per measurement, 3 repetitions")
    parser.add_argument("--repeat", type=int, help="repetitions (default 7, 3 with --quick)")
    parser.add_argument("--payload-mib", type=int,
                        help="heap payload per measurement (default 256, 64 with --quick)")
    parser.add_argument("--only", default="buffer,inproc,group",
                        help="comma-separated subset of buffer,inproc,group")
    parser.add_argument("--no-reference", action="store_true",
                        help="measure spead2gpu only (no ratios)")
    args = parser.parse_args(argv)
    repeat = args.repeat or (3 if args.quick else 7)
    payload_mib = args.payload_mib or (64 if args.quick else 256)
    n_heaps = max(HEAPS_PER_CHUNK, payload_mib * MiB // HEAP_SIZE // HEAPS_PER_CHUNK
                  * HEAPS_PER_CHUNK)
    transports = [t for t in ("buffer", "inproc") if t in args.only.split(",")]
    do_group = "group" in args.only.split(",")

    gpu = load("spead2gpu")
    ref = None
    if not args.no_reference:
        try:
            ref = load("spead2")
        except ImportError:
            print("spead2 is not installed: spead2gpu only "
                  "(pip install spead2==4.5.1 for ratios)", file=sys.stderr)
    try:
        import numba  # noqa: F401
        import scipy  # noqa: F401
        have_numba = True
    except ImportError:
        print("numba/scipy are not installed: built-in layout only", file=sys.stderr)
        have_numba = False

    variants = []   # (label, module, place, items)
    if have_numba:
        # one compiled callback, passed to both libraries
        rec = importlib.import_module("spead2gpu.recv.numba")
        vp = importlib.import_module("spead2gpu.numba")
        cb = numba_place(rec, vp)
        if ref is not None:
            variants.append(("spead2 + numba", ref, cb, NUMBA_ITEMS))
        variants.append(("spead2gpu + numba", gpu, cb, NUMBA_ITEMS))
    variants.append(("spead2gpu + ChunkLayout", gpu, layout_place(gpu), []))

    data = build_stream(ref or gpu, n_heaps)
    packets = split_packets(data) if ("inproc" in transports or do_group) else None
    member_data = split_by_member(packets, 2) if do_group else None
    print(f"spead2gpu {getattr(gpu, '__version__', '?')}"
          + (f" vs spead2 {ref.__version__}" if ref else "")
          + f"; {n_heaps} heaps of {HEAP_SIZE // 1024} KiB ({n_heaps * HEAP_SIZE / MiB:.0f} MiB)"
          f" in {PACKET_SIZE // 1024} KiB packets, {HEAPS_PER_CHUNK} heaps per chunk;"
          f" {repeat} interleaved repetitions, median GB/s of payload")

    results = {}
    for transport in transports:
        for _label, mod, place, items in variants:   # warm-up
            measure(mod, place, items, transport, data, packets, n_heaps)
        for _ in range(repeat):
            for label, mod, place, items in variants:
                results.setdefault((transport, label), []).append(
                    measure(mod, place, items, transport, data, packets, n_heaps))

    group_results = {}
    if do_group:
        for _label, mod, place, items in variants:   # warm-up
            measure_group(mod, place, items, member_data, n_heaps)
        for _ in range(repeat):
            for label, mod, place, items in variants:
                group_results.setdefault(label, []).append(
                    measure_group(mod, place, items, member_data, n_heaps))

    labels = [v[0] for v in variants]
    width = max(len(x) for x in labels) + 2
    header = f"{'transport':<10}" + "".join(f"{x:>{width}}" for x in labels)
    base = "spead2 + numba" if "spead2 + numba" in labels else None
    if base:
        header += "".join(f"{'ratio ' + x.split(' + ')[1]:>18}" for x in labels if x != base)
    print(header)
    print("-" * len(header))
    for transport in transports:
        med = {x: statistics.median(results[(transport, x)]) for x in labels}
        line = f"{transport:<10}" + "".join(f"{med[x]:>{width}.3f}" for x in labels)
        if base:
            line += "".join(f"{med[x] / med[base]:>18.2f}" for x in labels if x != base)
        print(line)
    if do_group:
        med = {x: statistics.median(group_results[x]) for x in labels}
        line = f"{'group of 2':<10}" + "".join(f"{med[x]:>{width}.3f}" for x in labels)
        if base:
            line += "".join(f"{med[x] / med[base]:>18.2f}" for x in labels if x != base)
        print(line)
    if base:
        print("(ratio = spead2gpu variant / spead2 + numba; above 1.0 spead2gpu is faster)")
    print()
    print("spread (min..max GB/s):")
    if do_group:
        print("  group of 2: " + ", ".join(
            f"{x} {min(group_results[x]):.2f}..{max(group_results[x]):.2f}" for x in labels))
    for transport in transports:
        print(f"  {transport}: " + ", ".join(
            f"{x} {min(results[(transport, x)]):.2f}..{max(results[(transport, x)]):.2f}"
            for x in labels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
