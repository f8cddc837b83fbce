#!/usr/bin/env python3
"""GPU ingest benchmarks (run on a machine with an NVIDIA GPU; cupy needed for most rows).

Rows, all measured in one run:

(1) memcpy    cudaMemcpyAsync pinned -> device bandwidth for one chunk (the ceiling).
(2) pipeline  the `device` copy pipeline alone (staging chunks fed without a
              network, copy thread, events, recycling, consumer release) in GB/s and as
              a fraction of (1) (target >= 90%).
(3) ingest    end to end into device memory from in-memory packet buffers with a group
              of streams (one thread each): spead2gpu.gpu.ChunkStreamGroup(kind="device")
              against spead2 + the hand-written cupy pattern (pinned chunks, numba
              placement, cp.ndarray.set(..., stream), an event per chunk, recycle when the
              event completes) fed the same packets (target >= 1.2x).
(4) unpack    zero_missing / unpack_int8 / int4 / int10 / cint8 kernels in GB/s
              (bytes read + written) against device-to-device copy bandwidth.
(5) udp       end to end over UDP loopback into device chunks at a fixed offered rate
              (a sender subprocess, so this process's CPU time is the receiver's):
              heaps received and receiver CPU seconds per GB, spead2gpu against
              spead2 + the hand-written cupy pattern.

Rows (2) and (3) also report CPU seconds per GB ingested (process CPU time:
network threads, copy thread, recyclers, Python).

Without a usable GPU it prints why and exits with status 2, unless --emulate
runs rows (1)-(3) and (5) for spead2gpu on the emulated GPU (gpu.Emulator:
the same pipeline code, host memory; figures mean nothing, the code paths
are exercised, which is what the tests do with it).

    python bench/bench_gpu.py [--chunk-mb 32] [--chunks 64] [--streams 4] [--quick] [--emulate]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import deque

import numpy as np

import spead2gpu
import spead2gpu.recv
import spead2gpu.send
from spead2gpu import gpu

TS_ID, FENG_ID, DATA_ID = 0x1600, 0x4101, 0x3300


def gbps(nbytes, seconds):
    return nbytes / seconds / 1e9 if seconds > 0 else float("inf")


def row(name, value, extra=""):
    print(f"{name:<44} {value:>10.2f} GB/s  {extra}")


def cpu_per_gb(cpu_seconds, nbytes):
    return f"{cpu_seconds / (nbytes / 1e9):.3f} CPU s/GB" if nbytes else "n/a CPU s/GB"


class Target:
    """Where the bench runs: the real GPU, or an emulated one (``--emulate``)."""

    def __init__(self, emulator=None):
        self.emulator = emulator

    def stream(self):
        return gpu._gpu._Stream(0, emulator=self.emulator)

    def memcpy(self, dst, src, n, stream):
        gpu._gpu._memcpy_async(dst, src, n, stream, emulator=self.emulator)

    def buffer(self, n, kind):
        return gpu.Buffer(n, kind, emulator=self.emulator)


# ---------------------------------------------------------------------------
# (1) memcpy ceiling and (2) the copy pipeline alone
# ---------------------------------------------------------------------------

def bench_memcpy(target, chunk_bytes, repeat):
    src = target.buffer(chunk_bytes, "pinned")
    dst = target.buffer(chunk_bytes, "device")
    stream = target.stream()
    for _ in range(3):
        target.memcpy(dst.device_ptr, src.host_ptr, chunk_bytes, stream.handle)
    stream.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeat):
        target.memcpy(dst.device_ptr, src.host_ptr, chunk_bytes, stream.handle)
    stream.synchronize()
    return gbps(chunk_bytes * repeat, time.perf_counter() - t0)


def bench_pipeline(target, chunk_bytes, n_chunks, n_staging, n_device):
    pipe = gpu._gpu._ChunkPipeline("device", 0, chunk_bytes, 64, 0, n_staging, n_device,
                                   target.emulator)
    consumer = target.stream()
    pump = threading.Thread(target=pipe._pump, args=(n_chunks,))
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    pump.start()
    got = 0
    while True:
        try:
            held = pipe.get()
        except spead2gpu.Stopped:
            break
        held.order_before(consumer.handle)
        held.release(True, consumer.handle)
        got += 1
    consumer.synchronize()
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    pump.join()
    stats = pipe.stats
    pipe.stop()
    assert got == n_chunks, (got, n_chunks)
    return gbps(stats["bytes_copied"], elapsed), stats, cpu


# ---------------------------------------------------------------------------
# (3) end-to-end ingest with a group of streams
# ---------------------------------------------------------------------------

def make_packets(n_streams, heap_size, heaps_per_stream, packet_size):
    """One in-memory packet buffer per stream (F-engine f carries FENG_ID=f)."""
    buffers = []
    for f in range(n_streams):
        flavour = spead2gpu.Flavour(4, 64, 48, 0)
        ig = spead2gpu.send.ItemGroup(flavour=flavour)
        ig.add_item(TS_ID, "ts", "", shape=(), format=[("u", 48)], value=0)
        ig.add_item(FENG_ID, "feng", "", shape=(), format=[("u", 48)], value=f)
        ig.add_item(DATA_ID, "data", "", shape=(heap_size,), dtype=np.int8,
                    value=np.zeros(heap_size, np.int8))
        out = spead2gpu.send.BytesStream(spead2gpu.ThreadPool(),
                                         spead2gpu.send.StreamConfig(max_packet_size=packet_size))
        payload = (np.arange(heap_size) % 251).astype(np.int8)
        for t in range(heaps_per_stream):
            ig["ts"].value = t * heap_size
            ig["data"].value = payload
            out.send_heap(ig.get_heap(descriptors="none", data="all"))
        out.send_heap(ig.get_end())
        buffers.append(out.getvalue())
    return buffers


def feed_buffers(buffers):
    """Attach function of the in-memory rows: member f reads packet buffer f."""
    return lambda f, stream: stream.add_buffer_reader(buffers[f])


def bench_spead2gpu_ingest(target, attach, n_streams, heap_size, tpc, max_chunks, n_device,
                           start=None):
    """spead2gpu: a ChunkStreamGroup of kind device; returns (GB/s, chunks, heaps, stats, CPU s)."""
    recv = spead2gpu.recv
    layout = recv.ChunkLayout(heap_size=heap_size, timestamp_id=TS_ID, timestamp_step=heap_size,
                              timestamps_per_chunk=tpc, axes=["time", (FENG_ID, n_streams)])
    group = gpu.ChunkStreamGroup(recv.ChunkStreamGroupConfig(max_chunks=max_chunks), layout=layout,
                                 kind="device", n_device_chunks=n_device,
                                 n_chunks=max_chunks + 4, array_module="buffer",
                                 emulator=target.emulator)
    for _ in range(n_streams):
        group.emplace_back(spead2gpu.ThreadPool(), recv.StreamConfig(max_heaps=4),
                           recv.ChunkStreamConfig(place=layout, max_chunks=max_chunks))
    consumer = target.stream()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for f in range(n_streams):
        attach(f, group[f])
    if start is not None:
        start()
    nbytes = complete = heaps = 0
    for chunk in group.__iter__():
        chunk.wait(consumer.handle)
        nbytes += layout.chunk_data_size
        complete += 1
        chunk.release(consumer.handle)
    consumer.synchronize()
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    for f in range(n_streams):   # complete heaps (the present flags may be in device memory)
        st = group[f].stats
        heaps += st["heaps"] - st["incomplete_heaps_evicted"] - st["incomplete_heaps_flushed"]
    stats = group.pipeline_stats
    group.close()
    return gbps(nbytes, elapsed), complete, heaps, stats, cpu


def bench_spead2_cupy_ingest(attach, n_streams, heap_size, tpc, max_chunks, n_device, start=None):
    """spead2 + the hand-written cupy pattern (katgpucbf style); returns (GB/s, chunks, heaps, CPU s)."""
    import cupy as cp
    import cupyx
    import numba
    import scipy
    import spead2
    import spead2.recv
    from numba import types
    from spead2.numba import intp_to_voidptr
    from spead2.recv.numba import chunk_place_data

    hpc = tpc * n_streams

    @numba.cfunc(types.void(types.CPointer(chunk_place_data), types.uintp), nopython=True)
    def place(data_ptr, data_size):
        data = numba.carray(data_ptr, 1)
        items = numba.carray(intp_to_voidptr(data[0].items), 3, dtype=np.int64)
        if items[0] == heap_size and items[1] >= 0 and items[2] >= 0:
            t = items[1] // heap_size
            idx = (t % tpc) * n_streams + items[2]
            data[0].chunk_id = t // tpc
            data[0].heap_index = idx
            data[0].heap_offset = idx * heap_size

    cb = scipy.LowLevelCallable(place.ctypes, signature="void (void *, size_t)")
    n_free = max_chunks + 4
    data_ring, free_ring = spead2.recv.ChunkRingbuffer(n_free), spead2.recv.ChunkRingbuffer(n_free)
    group = spead2.recv.ChunkStreamRingGroup(spead2.recv.ChunkStreamGroupConfig(max_chunks=max_chunks),
                                             data_ring, free_ring)
    for _ in range(n_streams):
        group.emplace_back(spead2.ThreadPool(), spead2.recv.StreamConfig(max_heaps=4),
                           spead2.recv.ChunkStreamConfig(
                               items=[spead2.HEAP_LENGTH_ID, TS_ID, FENG_ID],
                               max_chunks=max_chunks, place=cb))
    for _ in range(n_free):
        group.add_free_chunk(spead2.recv.Chunk(
            data=cupyx.empty_pinned(hpc * heap_size, np.uint8),
            present=np.zeros(hpc, np.uint8)))
    copy_stream = cp.cuda.Stream(non_blocking=True)
    consumer = cp.cuda.Stream(non_blocking=True)
    device_chunks = [cp.empty(hpc * heap_size, np.uint8) for _ in range(n_device)]
    device_free = deque(range(n_device))
    pending = deque()   # (copy event, host chunk, device slot)
    in_use = deque()    # (release event, device slot)

    def reap(block):
        while pending and (block or pending[0][0].done):
            ev, c, _ = pending.popleft()
            ev.synchronize()
            c.present[:] = 0
            group.add_free_chunk(c)
        while in_use and (block or in_use[0][0].done):
            ev, slot = in_use.popleft()
            ev.synchronize()
            device_free.append(slot)

    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for f in range(n_streams):
        attach(f, group[f])
    if start is not None:
        start()
    nbytes = complete = heaps = 0
    for chunk in data_ring:
        heaps += int(chunk.present.sum())
        while not device_free:
            reap(False)
            if not device_free:
                in_use[0][0].synchronize()
        slot = device_free.popleft()
        dev = device_chunks[slot]
        dev.set(chunk.data, stream=copy_stream)
        ev = copy_stream.record()
        consumer.wait_event(ev)
        pending.append((ev, chunk, slot))
        in_use.append((consumer.record(), slot))
        nbytes += hpc * heap_size
        complete += 1
        reap(False)
    reap(True)
    consumer.synchronize()
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    group.stop()
    return gbps(nbytes, elapsed), complete, heaps, cpu


# ---------------------------------------------------------------------------
# (5) UDP loopback at a fixed offered rate
# ---------------------------------------------------------------------------

SENDER = """
import json, sys, threading, numpy as np, spead2gpu, spead2gpu.send as send
ports, ids = json.loads(sys.argv[1]), json.loads(sys.argv[5])
heap_size, n_heaps, rate = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
def run(f, port):
    ig = send.ItemGroup(flavour=spead2gpu.Flavour(4, 64, 48, 0))
    ig.add_item(ids[0], "ts", "", shape=(), format=[("u", 48)], value=0)
    ig.add_item(ids[1], "feng", "", shape=(), format=[("u", 48)], value=f)
    ig.add_item(ids[2], "data", "", shape=(heap_size,), dtype=np.int8, value=np.zeros(heap_size, np.int8))
    cfg = send.StreamConfig(max_packet_size=8972, rate=rate / len(ports))
    s = send.UdpStream(spead2gpu.ThreadPool(), [("127.0.0.1", port)], cfg)
    payload = (np.arange(heap_size) % 251).astype(np.int8)
    for t in range(n_heaps):
        ig["ts"].value = t * heap_size
        ig["data"].value = payload
        s.send_heap(ig.get_heap(descriptors="none", data="all"))
    for _ in range(3):
        s.send_heap(ig.get_end())
threads = [threading.Thread(target=run, args=(f, p)) for f, p in enumerate(ports)]
for t in threads: t.start()
for t in threads: t.join()
"""


def udp_feed(n_streams, heap_size, heaps_per_stream, rate):
    """(attach, start, finish) for one UDP row: sockets on OS-chosen loopback ports,
    and a sender subprocess started when the receivers are ready."""
    socks = []
    for _ in range(n_streams):
        sk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sk.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sk.bind(("127.0.0.1", 0))
        socks.append(sk)
    ports = [sk.getsockname()[1] for sk in socks]
    procs = []

    def attach(f, stream):
        stream.add_udp_reader(socks[f], max_size=9000)

    def start():
        env = dict(os.environ)
        procs.append(subprocess.Popen([sys.executable, "-c", SENDER, json.dumps(ports), str(heap_size),
                                       str(heaps_per_stream), str(rate),
                                       json.dumps([TS_ID, FENG_ID, DATA_ID])], env=env))

    def finish():
        for proc in procs:
            proc.wait(timeout=600)
        for sk in socks:
            sk.close()

    return attach, start, finish


# ---------------------------------------------------------------------------
# (4) kernels
# ---------------------------------------------------------------------------

#: Present flags (heaps) in the zero_missing row.
KERNEL_HEAPS = 1024


def kernel_workload(xp, nbytes, rng):
    """The kernel rows' operations on arrays of module ``xp`` (cupy here; numpy
    in the tests, where the same calls run the reference implementations):
    a list of (label, operation, bytes moved). The source is a whole number of
    5-byte int10 groups and of KERNEL_HEAPS heaps, so every call is valid."""
    unit = 20 * KERNEL_HEAPS
    src = xp.asarray(rng.integers(0, 256, size=max(nbytes // unit, 1) * unit, dtype=np.uint8))
    n = src.size
    dst = xp.empty_like(src)
    present = xp.asarray((rng.random(KERNEL_HEAPS) < 0.9).astype(np.uint8))
    ops = [("(4) device-to-device copy (read+write)", lambda: xp.copyto(dst, src), 2 * n),
           ("(4) zero_missing (10% missing, bytes written)", lambda: gpu.zero_missing(dst, present), n // 10)]
    for fmt, fn, outn, osz in [("int8", gpu.unpack_int8, n, 4), ("int4", gpu.unpack_int4, 2 * n, 4),
                               ("int10", gpu.unpack_int10, n * 4 // 5, 4),
                               ("cint8", gpu.unpack_cint8, n // 2, 8)]:
        out = xp.empty(outn, np.complex64 if fmt == "cint8" else np.float32)
        ops.append((f"(4) unpack_{fmt} (bytes read + written)", lambda fn=fn, out=out: fn(src, out),
                    n + outn * osz))
    return ops


def bench_kernels(nbytes, repeat):
    import cupy as cp

    def timed(fn):
        fn()
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        for _ in range(repeat):
            fn()
        stop.record()
        stop.synchronize()
        return cp.cuda.get_elapsed_time(start, stop) / 1e3 / repeat

    for label, fn, moved in kernel_workload(cp, nbytes, np.random.default_rng(0)):
        row(label, gbps(moved, timed(fn)), "[memory bandwidth]" if "copy" in label else "")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chunk-mb", type=float, default=32, help="chunk size in MiB [%(default)s]")
    p.add_argument("--chunks", type=int, default=64, help="chunks per pipeline run [%(default)s]")
    p.add_argument("--streams", type=int, default=4, help="streams in the ingest group [%(default)s]")
    p.add_argument("--heap-kb", type=int, default=64, help="heap size in KiB for ingest [%(default)s]")
    p.add_argument("--ingest-mb", type=int, default=1024, help="MiB of payload for ingest [%(default)s]")
    p.add_argument("--udp-gbps", type=float, default=8.0,
                   help="offered rate of the UDP rows, Gb/s over all streams [%(default)s]")
    p.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    p.add_argument("--emulate", action="store_true",
                   help="run spead2gpu's rows on the emulated GPU (no GPU needed; not GPU figures)")
    args = p.parse_args(argv)
    if args.emulate:
        target = Target(gpu.Emulator(latency=20e-6))
        label = "emulated GPU"
    elif not gpu.available():
        print(f"bench_gpu: no usable GPU: {gpu.unavailable_reason()}", file=sys.stderr)
        print("bench_gpu: nothing measured (run this on a machine with an NVIDIA GPU, or use --emulate)",
              file=sys.stderr)
        return 2
    else:
        target = Target()
        label = (f"{gpu._gpu.device_name(0)}, driver {gpu._gpu.driver_version()}, "
                 f"runtime {gpu._gpu.runtime_version()}")
    if args.quick:
        args.chunk_mb, args.chunks, args.ingest_mb = 4, 16, 64
    chunk_bytes = int(args.chunk_mb * (1 << 20))
    print(f"device: {label}; chunk {chunk_bytes / (1 << 20):.1f} MiB")

    ceiling = bench_memcpy(target, chunk_bytes, max(8, args.chunks // 2))
    row("(1) cudaMemcpyAsync pinned->device", ceiling, "[ceiling]")
    rate, stats, cpu = bench_pipeline(target, chunk_bytes, args.chunks, n_staging=6, n_device=4)
    row("(2) copy pipeline (device kind)", rate,
        f"= {100 * rate / ceiling:.1f}% of (1) (target >= 90%); copy_waits={stats['copy_waits']}; "
        f"{cpu_per_gb(cpu, stats['bytes_copied'])}")

    heap_size = args.heap_kb * 1024
    tpc = max(1, chunk_bytes // (heap_size * args.streams))
    heaps_per_stream = max(tpc * 4, args.ingest_mb * (1 << 20) // (heap_size * args.streams) // tpc * tpc)
    buffers = make_packets(args.streams, heap_size, heaps_per_stream, 8972)
    ours, n_ours, _, gstats, cpu = bench_spead2gpu_ingest(target, feed_buffers(buffers), args.streams,
                                                          heap_size, tpc, 4, 4)
    total = n_ours * tpc * args.streams * heap_size
    row(f"(3) spead2gpu ingest, {args.streams} streams", ours,
        f"{n_ours} chunks; copy_waits={gstats['copy_waits']}; {cpu_per_gb(cpu, total)}")
    theirs = None
    if args.emulate:
        print("(3) spead2 + cupy pattern: skipped (--emulate)")
    else:
        try:
            theirs, n_theirs, _, cpu = bench_spead2_cupy_ingest(feed_buffers(buffers), args.streams,
                                                                heap_size, tpc, 4, 4)
        except ImportError as exc:
            print(f"(3) spead2 + cupy pattern: skipped ({exc})")
        else:
            row(f"(3) spead2 + hand-written cupy, {args.streams} streams", theirs,
                f"{n_theirs} chunks; spead2gpu/spead2 = {ours / theirs:.2f}x (target >= 1.2x); "
                f"{cpu_per_gb(cpu, n_theirs * tpc * args.streams * heap_size)}")
    if args.emulate:
        print("(4) kernels: skipped (--emulate: the emulated GPU runs no kernels)")
    else:
        try:
            bench_kernels(256 << 20 if not args.quick else 16 << 20, 20)
        except ImportError as exc:
            print(f"(4) kernels: skipped ({exc})")

    udp_rate = args.udp_gbps * 1e9 / 8
    udp_heaps = max(tpc * 4, int(udp_rate * (1.0 if args.quick else 4.0)) // (heap_size * args.streams)
                    // tpc * tpc)
    if args.emulate:
        udp_heaps = tpc * 4
    offered = udp_heaps * args.streams
    attach, start, finish = udp_feed(args.streams, heap_size, udp_heaps, udp_rate)
    _, n_ours, got, _, cpu = bench_spead2gpu_ingest(target, attach, args.streams, heap_size, tpc, 4, 4,
                                                    start=start)
    finish()
    print(f"(5) spead2gpu UDP loopback at {args.udp_gbps:g} Gb/s: {got}/{offered} heaps; "
          f"{cpu_per_gb(cpu, n_ours * tpc * args.streams * heap_size)}")
    if not args.emulate:
        try:
            attach, start, finish = udp_feed(args.streams, heap_size, udp_heaps, udp_rate)
            _, n_theirs, got, cpu = bench_spead2_cupy_ingest(attach, args.streams, heap_size, tpc, 4, 4,
                                                             start=start)
            finish()
        except ImportError as exc:
            print(f"(5) spead2 + cupy pattern over UDP: skipped ({exc})")
        else:
            print(f"(5) spead2 + hand-written cupy UDP loopback: {got}/{offered} heaps; "
                  f"{cpu_per_gb(cpu, n_theirs * tpc * args.streams * heap_size)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
