#!/usr/bin/env python3
"""UDP loopback benchmark: spead2gpu vs spead2, in one run.

1. Lossless receive rate: the same sender (the reference spead2, run in a
   separate process so it does not share the receiver's GIL) sends heaps to
   127.0.0.1 at a fixed rate for at least ``--duration`` seconds; the receiver
   (spead2gpu or spead2, same configuration) must get every heap complete.
   A binary search over the rate finds the highest lossless rate; each probe
   is repeated and must pass every time.
2. Send throughput: each library's UdpStream sends as fast as it can to a
   local socket for ``--duration`` seconds (packets the kernel drops at the
   receiving socket do not matter here).

Prints both figures for each library and the ratio spead2gpu / spead2.
"""

import argparse
import importlib
import os
import socket
import subprocess
import sys
import textwrap
import time

SENDER = textwrap.dedent(
    """
    import sys, time, numpy as np, spead2, spead2.send
    host, port, rate, heap_size, packet, n_heaps = sys.argv[1:7]
    port, rate, heap_size, packet, n_heaps = int(port), float(rate), int(heap_size), int(packet), int(n_heaps)
    tp = spead2.ThreadPool()
    cfg = spead2.send.StreamConfig(max_packet_size=packet, rate=rate, max_heaps=64)
    stream = spead2.send.UdpStream(tp, [(host, port)], cfg, buffer_size=8 << 20)
    ig = spead2.send.ItemGroup()
    ig.add_item(0x1000, "data", "", (heap_size,), np.uint8, value=np.zeros(heap_size, np.uint8))
    heap = ig.get_heap(descriptors="none", data="all")
    heap.repeat_pointers = True
    sent = 0
    while sent < n_heaps:
        batch = min(32, n_heaps - sent)
        refs = [spead2.send.HeapReference(heap, cnt=sent + i + 1) for i in range(batch)]
        stream.send_heaps(refs, spead2.send.GroupMode.ROUND_ROBIN)
        sent += batch
    time.sleep(0.05)
    stream.send_heap(ig.get_end())
    """
)


def load(name):
    mod = importlib.import_module(name)
    importlib.import_module(name + ".recv")
    importlib.import_module(name + ".send")
    return mod


def probe(lib, rate, args):
    """Return True if ``lib`` received every heap sent at ``rate`` bytes/s."""
    n_heaps = max(16, int(rate * args.duration / args.heap_size))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    tp = lib.ThreadPool()
    pool = lib.MemoryPool(args.heap_size, args.heap_size + 4096, 32, 32)
    config = lib.recv.StreamConfig(max_heaps=8, memory_allocator=pool)
    stream = lib.recv.Stream(tp, config, lib.recv.RingStreamConfig(heaps=32))
    stream.add_udp_reader(sock, max_size=args.packet + 100)
    # (the reader duplicates the socket; buffer size from the socket itself)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sender = subprocess.Popen(
        [sys.executable, "-c", SENDER, "127.0.0.1", str(port), str(rate),
         str(args.heap_size), str(args.packet), str(n_heaps)])
    complete = 0
    deadline = time.monotonic() + args.duration * 3 + 10
    try:
        for heap in stream:
            if type(heap).__name__ == "Heap":
                complete += 1
            if time.monotonic() > deadline:
                break
    finally:
        sender.wait()
        stream.stop()
        sock.close()
    return complete >= n_heaps


def lossless_rate(lib, args):
    lo, hi = args.min_rate * 1e9 / 8, args.max_rate * 1e9 / 8
    best = 0.0
    for _ in range(args.steps):
        mid = (lo + hi) / 2
        ok = all(probe(lib, mid, args) for _ in range(args.repeats))
        if ok:
            best, lo = mid, mid
        else:
            hi = mid
    return best * 8 / 1e9


def send_rate(lib, args):
    import numpy as np

    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    port = sink.getsockname()[1]
    tp = lib.ThreadPool()
    stream = lib.send.UdpStream(tp, [("127.0.0.1", port)],
                                lib.send.StreamConfig(max_packet_size=args.packet, max_heaps=64))
    ig = lib.send.ItemGroup()
    ig.add_item(0x1000, "data", "", (args.heap_size,), np.uint8, value=np.zeros(args.heap_size, np.uint8))
    heap = ig.get_heap(descriptors="none", data="all")
    sent = 0
    cnt = 1
    start = time.perf_counter()
    while time.perf_counter() - start < args.duration:
        refs = [lib.send.HeapReference(heap, cnt=cnt + i) for i in range(32)]
        cnt += 32
        sent += stream.send_heaps(refs, lib.send.GroupMode.ROUND_ROBIN)
    elapsed = time.perf_counter() - start
    sink.close()
    return sent * 8 / elapsed / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heap-size", type=int, default=256 * 1024)
    parser.add_argument("--packet", type=int, default=8192 + 64)
    parser.add_argument("--duration", type=float, default=1.0, help="seconds per probe (>= 1 for the report)")
    parser.add_argument("--repeats", type=int, default=2, help="probes per rate; all must be lossless")
    parser.add_argument("--steps", type=int, default=6, help="binary-search steps")
    parser.add_argument("--min-rate", type=float, default=0.5, help="Gb/s")
    parser.add_argument("--max-rate", type=float, default=40.0, help="Gb/s")
    parser.add_argument("--quick", action="store_true", help="short run (not for reported figures)")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.repeats, args.steps = 0.3, 1, 3
    libs = {"spead2gpu": load("spead2gpu"), "spead2": load("spead2")}
    results = {}
    for name, lib in libs.items():
        results[name] = (lossless_rate(lib, args), send_rate(lib, args))
        print(f"{name:10s} lossless receive {results[name][0]:7.2f} Gb/s   send {results[name][1]:7.2f} Gb/s",
              flush=True)
    a, b = results["spead2gpu"], results["spead2"]
    print(f"ratio spead2gpu/spead2: lossless receive {a[0] / b[0]:.2f}x, send {a[1] / b[1]:.2f}x")


if __name__ == "__main__":
    main()
