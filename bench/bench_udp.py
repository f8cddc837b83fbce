#!/usr/bin/env python3
"""UDP loopback benchmark: spead2gpu vs spead2, in one run.

1. Lossless receive rate: the same sender (the reference spead2 unless
   ``--sender spead2gpu``, run in a separate process so it does not share
   the receiver's GIL) sends heaps to 127.0.0.1 at a fixed rate for at least
   ``--duration`` seconds; the receiver
   (spead2gpu or spead2, same configuration) must get every heap complete.
   A binary search over the rate finds the highest lossless rate; each probe
   is repeated and must pass every time. The sender reports the rate it
   really achieved; a probe whose sender fell more than 3 % short of the
   requested rate is marked "sender-limited" (it proves nothing about the
   receiver above the achieved rate). Each probe also prints the CPU time
   the receiving process used (on a small machine the receiver competes
   with the sender for cores). The two libraries' searches are interleaved
   step by step so that background load affects both alike.
2. Send throughput: each library's UdpStream sends as fast as it can to a
   local socket for ``--duration`` seconds (packets the kernel drops at the
   receiving socket do not matter here); the median of several runs,
   interleaved between the libraries.

Prints every probe, both figures for each library and the ratios
spead2gpu / spead2.
"""

import argparse
import importlib
import socket
import statistics
import subprocess
import sys
import textwrap
import threading
import time

SENDER = textwrap.dedent(
    """
    import sys, time, importlib, numpy as np
    spead2 = importlib.import_module(sys.argv[7])
    importlib.import_module(sys.argv[7] + ".send")
    host, port, rate, heap_size, packet, n_heaps, _, burst = sys.argv[1:9]
    port, rate, heap_size, packet, n_heaps = int(port), float(rate), int(heap_size), int(packet), int(n_heaps)
    tp = spead2.ThreadPool()
    cfg = spead2.send.StreamConfig(max_packet_size=packet, rate=rate, max_heaps=64, burst_size=int(burst))
    stream = spead2.send.UdpStream(tp, [(host, port)], cfg, buffer_size=8 << 20)
    ig = spead2.send.ItemGroup()
    ig.add_item(0x1000, "data", "", (heap_size,), np.uint8, value=np.zeros(heap_size, np.uint8))
    heap = ig.get_heap(descriptors="none", data="all")
    heap.repeat_pointers = True
    sent = 0
    wire = 0
    start = time.perf_counter()
    while sent < n_heaps:
        batch = min(32, n_heaps - sent)
        refs = [spead2.send.HeapReference(heap, cnt=sent + i + 1) for i in range(batch)]
        # SERIAL: one heap after another, so the receiver needs few live heaps
        wire += stream.send_heaps(refs, spead2.send.GroupMode.SERIAL)
        sent += batch
    elapsed = time.perf_counter() - start
    print(f"ACHIEVED {wire / elapsed} {wire}", flush=True)
    time.sleep(0.05)
    end = ig.get_end()
    for _ in range(3):   # in case one is lost
        stream.send_heap(end)
        time.sleep(0.01)
    """
)


def load(name):
    mod = importlib.import_module(name)
    importlib.import_module(name + ".recv")
    importlib.import_module(name + ".send")
    return mod


def start_sender(port, rate, n_heaps, args):
    """The common sender process: ``n_heaps`` heaps of ``args.heap_size`` bytes to
    127.0.0.1:``port`` at ``rate`` bytes/s, then three end-of-stream heaps."""
    return subprocess.Popen(
        [sys.executable, "-c", SENDER, "127.0.0.1", str(port), str(rate),
         str(args.heap_size), str(args.packet), str(n_heaps), args.sender, str(args.burst_size)],
        stdout=subprocess.PIPE, text=True)


def sender_report(output):
    """(achieved rate in bytes/s, bytes on the wire before the end heaps) from
    the sender's output; (0, 0) when it printed none (it was killed)."""
    for line in output.splitlines():
        if line.startswith("ACHIEVED "):
            _, rate, wire = line.split()
            return float(rate), int(wire)
    return 0.0, 0


def probe(lib, rate, args):
    """Receive one run at ``rate`` bytes/s with ``lib``.

    Returns (lossless, achieved sender rate in bytes/s, heaps complete,
    heaps sent, CPU seconds used by this (receiving) process).
    """
    n_heaps = max(16, int(rate * args.duration / args.heap_size))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # Same kernel buffer for both receivers (the socket overload of
    # add_udp_reader leaves the socket's own buffer size alone).
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    tp = lib.ThreadPool()
    pool = lib.MemoryPool(args.heap_size, args.heap_size + 4096, 32, 32)
    config = lib.recv.StreamConfig(max_heaps=8, memory_allocator=pool)
    stream = lib.recv.Stream(tp, config, lib.recv.RingStreamConfig(heaps=32))
    stream.add_udp_reader(sock, max_size=args.packet + 100)
    sender = start_sender(port, rate, n_heaps, args)
    cpu_start = time.process_time()
    output = []

    def watch():
        # Bounded wait: stop the stream shortly after the sender is done (in
        # case every end-of-stream packet was lost) or at the deadline.
        try:
            out, _ = sender.communicate(timeout=args.duration * 3 + 20)
            output.append(out)
            time.sleep(0.5)
        except subprocess.TimeoutExpired:
            sender.kill()
        stream.stop()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    complete = 0
    try:
        for heap in stream:
            if not isinstance(heap, lib.recv.IncompleteHeap):
                complete += 1
    finally:
        watcher.join()
        stream.stop()
        sock.close()
    cpu = time.process_time() - cpu_start
    achieved, _ = sender_report("".join(output))
    return complete >= n_heaps, achieved, complete, n_heaps, cpu


def gbps(rate):
    return rate * 8 / 1e9


class Search:
    """Binary search over the rate for one library."""

    def __init__(self, name, lib, args):
        self.name, self.lib, self.args = name, lib, args
        self.lo, self.hi = args.min_rate * 1e9 / 8, args.max_rate * 1e9 / 8
        #: (requested, achieved, sender_limited) of the best lossless rate, bytes/s
        self.best = (0.0, 0.0, False)

    def step(self):
        mid = (self.lo + self.hi) / 2
        achieved = []
        for _ in range(self.args.repeats):
            lossless, ach, complete, n, cpu = probe(self.lib, mid, self.args)
            achieved.append(ach)
            print(f"  {self.name:10s} probe {gbps(mid):6.2f} Gb/s (sender achieved {gbps(ach):6.2f}): "
                  f"{complete}/{n} heaps {'ok' if lossless else 'LOSS'}, "
                  f"receiver CPU {cpu:.2f} s", flush=True)
            if not lossless:
                self.hi = mid
                return
        self.best = (mid, min(achieved), min(achieved) < 0.97 * mid)
        self.lo = mid


def send_rate(lib, args):
    """Unthrottled send rate of one run, in bytes/s."""
    import numpy as np

    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    port = sink.getsockname()[1]
    tp = lib.ThreadPool()
    stream = lib.send.UdpStream(tp, [("127.0.0.1", port)],
                                lib.send.StreamConfig(max_packet_size=args.packet, max_heaps=64))
    ig = lib.send.ItemGroup()
    ig.add_item(0x1000, "data", "", (args.heap_size,), np.uint8,
                value=np.zeros(args.heap_size, np.uint8))
    heap = ig.get_heap(descriptors="none", data="all")
    sent = 0
    cnt = 1
    start = time.perf_counter()
    while time.perf_counter() - start < args.duration:
        refs = [lib.send.HeapReference(heap, cnt=cnt + i) for i in range(32)]
        cnt += 32
        sent += stream.send_heaps(refs, lib.send.GroupMode.ROUND_ROBIN)
    elapsed = time.perf_counter() - start
    del stream
    sink.close()
    return sent / elapsed


def ratio(a, b):
    return f"{a / b:.2f}x" if b > 0 else "n/a"


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heap-size", type=int, default=256 * 1024)
    parser.add_argument("--packet", type=int, default=8192 + 64)
    parser.add_argument("--duration", type=float, default=1.0, help="seconds per probe (>= 1 for the report)")
    parser.add_argument("--repeats", type=int, default=2, help="probes per rate; all must be lossless")
    parser.add_argument("--steps", type=int, default=6, help="binary-search steps")
    parser.add_argument("--min-rate", type=float, default=0.5, help="Gb/s")
    parser.add_argument("--max-rate", type=float, default=40.0, help="Gb/s")
    parser.add_argument("--rcvbuf", type=int, default=8 << 20, help="receive socket buffer (bytes)")
    parser.add_argument("--sender", choices=["spead2", "spead2gpu"], default="spead2",
                        help="library of the (common) sender process for the lossless search")
    parser.add_argument("--burst-size", type=int, default=1 << 20,
                        help="burst size of the rate-limited sender (bytes; larger bursts "
                             "make it less sensitive to timer latency)")
    parser.add_argument("--quick", action="store_true", help="short run (not for reported figures)")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.repeats, args.steps = 0.3, 1, 3
    libs = {"spead2gpu": load("spead2gpu"), "spead2": load("spead2")}
    # Interleave the two libraries step by step, so that noise from other
    # load on the machine hits both alike.
    searches = {name: Search(name, lib, args) for name, lib in libs.items()}
    for _ in range(args.steps):
        for search in searches.values():
            search.step()
    sends = {name: [] for name in libs}
    for _ in range(max(3, args.repeats)):
        for name, lib in libs.items():
            sends[name].append(send_rate(lib, args))
    results = {name: (searches[name].best, statistics.median(sends[name])) for name in libs}
    for name, ((req, ach, limited), send) in results.items():
        note = "  (sender-limited)" if limited else ""
        print(f"{name:10s} lossless receive {gbps(req):7.2f} Gb/s (sender achieved {gbps(ach):6.2f}){note}"
              f"   send {gbps(send):7.2f} Gb/s", flush=True)
    (a_req, a_ach, _), a_send = results["spead2gpu"]
    (b_req, b_ach, _), b_send = results["spead2"]
    print(f"ratio spead2gpu/spead2: lossless receive {ratio(a_req, b_req)} "
          f"(achieved {ratio(a_ach, b_ach)}), send {ratio(a_send, b_send)}")


if __name__ == "__main__":
    main()
