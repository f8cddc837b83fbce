"""One memory attack on a receive stream, run in a fresh process by test_memory_bounds.py.

    python tests/_memory_attack.py <attack> <max_heap_length> <max_heap_items>

Prints one JSON line: the process's peak resident memory (VmHWM) before and
after the attack, the stream's statistics, and what the consumer saw.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import spead2gpu  # noqa: E402
import spead2gpu.recv  # noqa: E402
import spead2gpu.send  # noqa: E402
from conftest import addr, heap_packet, imm, stop_packet  # noqa: E402

recv = spead2gpu.recv
MAX_HEAPS, RING_HEAPS = 4, 4


def peak_rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


# Each attack is a generator: packets are made as the stream takes them, so that
# the attack's own bytes do not count in the peak.

def huge_heap_length(n):
    """New heaps whose HEAP_LENGTH claims 2**39 bytes (512 GiB), 1 KiB of payload each."""
    return (heap_packet(c, 0, bytes(1024), 1 << 39, [addr(0x1000, 0)]) for c in range(1, n + 1))


def long_heaps(n):
    """New heaps of HEAP_LENGTH 1 GiB (allowed by the default bound): 8 KiB of each arrives."""
    return (heap_packet(c, 0, bytes(8192), 1 << 30, [addr(0x1000, 0)]) for c in range(1, n + 1))


def partial_heaps(n):
    """Heaps of 1 MiB of which only the first 8 KiB arrive: evicted incomplete, one after another."""
    return (heap_packet(c, 0, bytes(8192), 1 << 20, [addr(0x1000, 0)]) for c in range(1, n + 1))


def unsized_growing(n):
    """One unsized heap whose payload keeps growing, 8 KiB a packet (n packets)."""
    return (heap_packet(1, i * 8192, bytes(8192), None, [addr(0x1000, 0)] if i == 0 else [])
            for i in range(n))


def many_items(n):
    """One heap, n packets of 1000 new immediate item pointers each."""
    for i in range(n):
        items = [imm(0x2000 + i * 1000 + k, k) for k in range(1000)]
        yield heap_packet(1, 0, b"", 1 << 20, items)


ATTACKS = {
    "huge_heap_length": lambda: huge_heap_length(20000),
    "long_heaps": lambda: long_heaps(20000),
    "partial_heaps": lambda: partial_heaps(20000),
    "unsized_growing": lambda: unsized_growing(512),          # 4 MiB claimed
    "many_items": lambda: many_items(200),                    # 200,000 pointers offered
}


def run_stream(packets, max_heap_length, max_heap_items):
    config = recv.StreamConfig(max_heaps=MAX_HEAPS, extended_stats=True,
                               max_heap_length=max_heap_length, max_heap_items=max_heap_items)
    stream = recv.Stream(spead2gpu.ThreadPool(), config, recv.RingStreamConfig(heaps=RING_HEAPS))
    q = spead2gpu.InprocQueue()
    stream.add_inproc_reader(q)

    def produce():
        sent = 0
        for p in packets:
            # At most 64 packets in the queue: the queue is not what is measured.
            while sent - stream.stats["packets"] > 64:
                time.sleep(0.0005)
            q.add_packet(p)
            sent += 1
        q.add_packet(stop_packet(1 << 30))
        q.stop()

    producer = threading.Thread(target=produce)
    producer.start()
    seen = {"heaps": 0, "incomplete": 0, "max_items": 0}
    for heap in stream:
        seen["heaps"] += 1
        seen["incomplete"] += isinstance(heap, recv.IncompleteHeap)
        seen["max_items"] = max(seen["max_items"], len(heap.get_items()))
        del heap
    producer.join()
    return dict(stream.stats.items()), seen


def huge_descriptor():
    """Descriptors whose shapes claim 2**40 and 2**124 elements, and a small value for each."""
    results = []
    for shape in [(1 << 40,), (1 << 62, 1 << 62)]:
        ig = spead2gpu.send.ItemGroup()
        ig.add_item(0x1000, "x", "", shape=shape, dtype=np.uint8)
        out = spead2gpu.send.BytesStream(spead2gpu.ThreadPool())
        out.send_heap(ig.get_heap(descriptors="all", data="none"))
        raw = spead2gpu.send.ItemGroup()
        raw.add_item(0x1000, "x", "", shape=(10,), dtype=np.uint8, value=np.arange(10, dtype=np.uint8))
        out.send_heap(raw.get_heap(descriptors="none", data="all"))
        stream = recv.Stream(spead2gpu.ThreadPool(), recv.StreamConfig())
        stream.add_buffer_reader(out.getvalue())
        rig = spead2gpu.ItemGroup()
        for heap in stream:
            try:
                rig.update(heap)
                results.append("ok")
            except ValueError:
                results.append("ValueError")
            except Exception as exc:  # noqa: BLE001 (the test reports what leaked)
                results.append(type(exc).__name__)
    return results


class Reasons(logging.Handler):
    """Counts the spead2gpu logger's messages (why packets were refused)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.counts = {}

    def emit(self, record):
        text = record.getMessage().split(" (")[0]
        self.counts[text] = self.counts.get(text, 0) + 1


def main():
    attack, max_heap_length, max_heap_items = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    reasons = Reasons()
    logger = logging.getLogger("spead2gpu")
    logger.addHandler(reasons)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    # Warm up: imports, a stream, the thread pool; then measure from here.
    run_stream(partial_heaps(10), max_heap_length, max_heap_items)
    before = peak_rss()
    if attack == "huge_descriptor":
        result = {"outcomes": huge_descriptor()}
    else:
        stats, seen = run_stream(ATTACKS[attack](), max_heap_length, max_heap_items)
        result = {"stats": stats, "seen": seen}
        # Log messages reach Python from the forwarding thread: wait for the refusals' ones.
        deadline = time.monotonic() + 10
        while stats.get("spead2gpu.rejected_packets") and not reasons.counts and time.monotonic() < deadline:
            time.sleep(0.01)
    result.update(before=before, after=peak_rss(), reasons=reasons.counts)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
