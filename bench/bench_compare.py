#!/usr/bin/env python3
"""Benchmark spead2gpu against spead2 on the same workloads, in one run.

Workloads (nothing touches the network):

(a) decode + reassembly from a memory buffer: 1 MiB heaps in 8 KiB packets,
    received with ``recv.Stream.add_buffer_reader``; GB/s of heap payload.
(b) 4 KiB single-packet heaps (a 48-bit timestamp immediate and 4096 int8
    samples), received from a memory buffer and applied with
    ``ItemGroup.update``; heaps/s.
(c) in-process send -> receive: ``send.InprocStream`` -> ``InprocQueue`` ->
    ``recv.Stream.add_inproc_reader``, 1 MiB heaps in 8 KiB packets; GB/s.

Every measurement is repeated several times, alternating between the two
implementations (the machine may be noisy), and the median is reported
together with the ratio spead2gpu / spead2 (> 1 means spead2gpu is faster).

Usage:  python bench/bench_compare.py [--quick] [--repeat N] [--only a,b,c] [--scale F]
"""

from __future__ import annotations

import argparse
import gc
import importlib
import statistics
import sys
import threading
import time

import numpy as np

MiB = 1 << 20
PACKET_SIZE = 8192


def load(name):
    mod = importlib.import_module(name)
    for sub in ("recv", "send"):
        importlib.import_module(f"{name}.{sub}")
    return mod


# ---------------------------------------------------------------------------
# Workload construction (done once, outside the timed regions)
# ---------------------------------------------------------------------------

def build_big_heaps_buffer(mod, n_heaps, heap_size=MiB, packet_size=PACKET_SIZE):
    """Bytes of ``n_heaps`` heaps with one ``heap_size`` item each."""
    tp = mod.ThreadPool()
    stream = mod.send.BytesStream(tp, mod.send.StreamConfig(max_packet_size=packet_size,
                                                            max_heaps=8))
    payload = (np.arange(heap_size, dtype=np.uint32) % 251).astype(np.uint8)
    item = mod.Item(0x1000, "payload", "", (heap_size,), dtype=np.uint8, value=payload)
    heap = mod.send.Heap()
    heap.add_item(item)
    for i in range(n_heaps):
        stream.send_heap(heap, cnt=i + 1)
    return stream.getvalue()


def build_small_heaps_buffer(mod, n_heaps, size=4096):
    """Descriptors, then ``n_heaps`` single-packet heaps (timestamp + samples)."""
    tp = mod.ThreadPool()
    stream = mod.send.BytesStream(tp, mod.send.StreamConfig(max_packet_size=9000, max_heaps=8))
    ig = mod.send.ItemGroup(flavour=mod.Flavour(4, 64, 48, 0))
    ig.add_item(0x1600, "timestamp", "", (), format=[("u", 48)], value=0)
    ig.add_item(0x3300, "samples", "", (size,), dtype=np.int8, value=np.zeros(size, np.int8))
    stream.send_heap(ig.get_heap(descriptors="all", data="none"))
    samples = (np.arange(size) % 256 - 128).astype(np.int8)
    ig["samples"].value = samples
    for i in range(n_heaps):
        ig["timestamp"].value = i * size
        stream.send_heap(ig.get_heap(descriptors="none", data="all"))
    return stream.getvalue()


# ---------------------------------------------------------------------------
# Measurements: each returns (value, unit) for one run
# ---------------------------------------------------------------------------

def measure_buffer_decode(mod, data, n_heaps, heap_size=MiB):
    tp = mod.ThreadPool(1)
    stream = mod.recv.Stream(tp, mod.recv.StreamConfig(max_heaps=4),
                             mod.recv.RingStreamConfig(heaps=4))
    t0 = time.perf_counter()
    stream.add_buffer_reader(data)
    n = 0
    nbytes = 0
    for heap in stream:
        items = heap.get_items()
        nbytes += memoryview(items[0]).nbytes
        n += 1
    elapsed = time.perf_counter() - t0
    stream.stop()
    if n != n_heaps or nbytes != n_heaps * heap_size:
        raise RuntimeError(f"{mod.__name__}: got {n} heaps / {nbytes} bytes, "
                           f"expected {n_heaps} / {n_heaps * heap_size}")
    return nbytes / elapsed / 1e9


def measure_small_heaps(mod, data, n_heaps):
    tp = mod.ThreadPool(1)
    stream = mod.recv.Stream(tp, mod.recv.StreamConfig(max_heaps=4),
                             mod.recv.RingStreamConfig(heaps=16))
    ig = mod.ItemGroup()
    t0 = time.perf_counter()
    stream.add_buffer_reader(data)
    n = 0
    last_ts = -1
    for heap in stream:
        updated = ig.update(heap)
        if "samples" in updated:
            n += 1
            last_ts = updated["timestamp"].value if "timestamp" in updated else last_ts
    elapsed = time.perf_counter() - t0
    stream.stop()
    if n != n_heaps or last_ts != (n_heaps - 1) * 4096:
        raise RuntimeError(f"{mod.__name__}: got {n} heaps (last timestamp {last_ts}), "
                           f"expected {n_heaps}")
    return n / elapsed


def measure_inproc(mod, n_heaps, heap_size=MiB, window=16):
    queue = mod.InprocQueue()
    recv_tp = mod.ThreadPool(1)
    send_tp = mod.ThreadPool(1)
    stream = mod.recv.Stream(recv_tp, mod.recv.StreamConfig(max_heaps=4),
                             mod.recv.RingStreamConfig(heaps=4))
    stream.add_inproc_reader(queue)
    sender = mod.send.InprocStream(send_tp, [queue],
                                   mod.send.StreamConfig(max_packet_size=PACKET_SIZE, max_heaps=8))
    payload = (np.arange(heap_size, dtype=np.uint32) % 251).astype(np.uint8)
    heap = mod.send.Heap()
    heap.add_item(mod.Item(0x1000, "payload", "", (heap_size,), dtype=np.uint8, value=payload))
    credits = threading.Semaphore(window)  # bound the memory queued in the InprocQueue
    error = []

    def send():
        try:
            for i in range(n_heaps):
                credits.acquire(timeout=10)
                sender.send_heap(heap, cnt=i + 1)
        except Exception as exc:  # reported below
            error.append(exc)
        finally:
            queue.stop()

    t0 = time.perf_counter()
    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    n = 0
    nbytes = 0
    for h in stream:
        nbytes += memoryview(h.get_items()[0]).nbytes
        n += 1
        credits.release()
    elapsed = time.perf_counter() - t0
    thread.join()
    stream.stop()
    if error:
        raise error[0]
    if n != n_heaps or nbytes != n_heaps * heap_size:
        raise RuntimeError(f"{mod.__name__}: got {n} heaps / {nbytes} bytes, "
                           f"expected {n_heaps} / {n_heaps * heap_size}")
    return nbytes / elapsed / 1e9


# ---------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short run (fewer heaps, 5 repeats)")
    parser.add_argument("--repeat", type=int, help="repetitions per implementation "
                                                   "(default 7, or 3 with --quick)")
    parser.add_argument("--only", default="a,b,c", help="comma-separated subset of a,b,c")
    parser.add_argument("--no-reference", action="store_true",
                        help="measure spead2gpu only (no ratios)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply the number of heaps per run (e.g. 0.01 for a smoke test)")
    args = parser.parse_args(argv)
    repeat = args.repeat or (5 if args.quick else 7)
    which = set(args.only.split(","))
    # heaps per run: big enough that one run takes tens of milliseconds at least
    sizes = dict(a=128 if args.quick else 512, b=10000 if args.quick else 50000,
                 c=64 if args.quick else 512)
    sizes = {k: max(2, int(v * args.scale)) for k, v in sizes.items()}

    gpu = load("spead2gpu")
    impls = [("spead2gpu", gpu)]
    ref = None
    if not args.no_reference:
        try:
            ref = load("spead2")
            impls.append(("spead2", ref))
        except ImportError:
            print("spead2 is not installed: reporting spead2gpu only "
                  "(pip install spead2==4.5.1 for ratios)", file=sys.stderr)
    builder = ref or gpu  # the same bytes are fed to both receivers

    workloads = []
    if "a" in which:
        data = build_big_heaps_buffer(builder, sizes["a"])
        workloads.append(("(a) buffer decode+reassembly, 1 MiB heaps / 8 KiB packets", "GB/s",
                          lambda mod, d=data: measure_buffer_decode(mod, d, sizes["a"])))
    if "b" in which:
        data_b = build_small_heaps_buffer(builder, sizes["b"])
        workloads.append(("(b) 4 KiB single-packet heaps + ItemGroup.update", "heaps/s",
                          lambda mod, d=data_b: measure_small_heaps(mod, d, sizes["b"])))
    if "c" in which:
        workloads.append(("(c) in-process send -> receive, 1 MiB heaps / 8 KiB packets", "GB/s",
                          lambda mod: measure_inproc(mod, sizes["c"])))

    print(f"spead2gpu {getattr(gpu, '__version__', '?')}"
          + (f" vs spead2 {ref.__version__}" if ref else "")
          + f"; {repeat} interleaved repetitions, median reported")
    rows = []
    for title, unit, fn in workloads:
        for _, mod in impls:  # warm-up (page faults, lazy imports)
            fn(mod)
        results = {name: [] for name, _ in impls}
        for _ in range(repeat):
            for name, mod in impls:
                gc.collect()
                results[name].append(fn(mod))
        rows.append((title, unit, results))

    name_w = max(len(r[0]) for r in rows) if rows else 10
    header = f"{'benchmark':<{name_w}}  {'unit':<7}  {'spead2gpu':>12}  {'spead2':>12}  {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for title, unit, results in rows:
        g = statistics.median(results["spead2gpu"])
        fmt = (lambda v: f"{v:12.3f}") if unit == "GB/s" else (lambda v: f"{v:12.0f}")
        if "spead2" in results:
            r = statistics.median(results["spead2"])
            print(f"{title:<{name_w}}  {unit:<7}  {fmt(g)}  {fmt(r)}  {g / r:6.2f}")
        else:
            print(f"{title:<{name_w}}  {unit:<7}  {fmt(g)}  {'-':>12}  {'-':>6}")
    print()
    print("spread (min..max):")
    for title, unit, results in rows:
        spread = ", ".join(f"{name} {min(v):.3g}..{max(v):.3g}" for name, v in results.items())
        print(f"  {title.split(' ')[0]} {spread} {unit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
