"""End-to-end demo: a synthetic digitiser stream sent and received in-process.

A digitiser emits heaps of 8-bit ADC samples, each tagged with a 48-bit
timestamp (the sample index of the first sample in the heap).  This demo

1. generates such a stream (an ``int8`` tone with a little deterministic
   dither, ``--heaps`` heaps of ``--heap-size`` samples each),
2. sends it with :class:`spead2gpu.send.InprocStream` into an
   :class:`spead2gpu.InprocQueue` from a sender thread,
3. receives it with :class:`spead2gpu.recv.Stream` (on its own
   :class:`spead2gpu.ThreadPool`) and unpacks every heap with
   :class:`spead2gpu.ItemGroup`,
4. verifies every timestamp and every sample, and prints the number of heaps
   received, the payload rate in GB/s and the loss (missing, incomplete or
   corrupt heaps).

It uses only the spead2-compatible public API, so replacing the import by
``import spead2`` runs the same program on spead2.

When a GPU is usable (and ``--memory`` is ``auto``, the default) the receive
side is instead a :class:`spead2gpu.gpu.ChunkStream`: heaps are placed into
chunks of ``device`` memory (``pinned`` if cupy is not installed) by a
built-in :class:`spead2gpu.recv.ChunkLayout`, the samples are unpacked to
float32 on the GPU (:func:`spead2gpu.gpu.unpack_int8`) and verified; the
memory kind used is printed. ``--memory host|pinned|mapped|device`` forces
the chunk path with that kind, ``--memory heap`` the CPU heap path. The
chunk path needs the timestamp as an immediate item, i.e. SPEAD-64-48.

Run it with ``python -m spead2gpu.demo`` (or the ``spead2gpu-demo`` script).
The exit status is 0 when every heap arrived intact and 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

import numpy as np

import spead2gpu as spead2
import spead2gpu.recv
import spead2gpu.send

TIMESTAMP_ID = 0x1600
SAMPLES_ID = 0x3300
TONE_PERIOD = 1000  # samples per period of the synthetic tone


def make_waveform(heap_size: int) -> np.ndarray:
    """One tone period plus a heap's worth of extra samples, so that the
    samples of any heap are a contiguous slice of this array."""
    n = heap_size + TONE_PERIOD
    k = np.arange(n)
    tone = 100.0 * np.sin(2 * np.pi * (k % TONE_PERIOD) / TONE_PERIOD)
    # deterministic dither in [-3, 3], periodic with the tone
    dither = ((k % TONE_PERIOD) * 2654435761 >> 7) % 7 - 3
    return np.round(tone + dither).astype(np.int8)


def heap_samples(wave: np.ndarray, timestamp: int, heap_size: int) -> np.ndarray:
    start = timestamp % TONE_PERIOD
    return wave[start:start + heap_size]


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m spead2gpu.demo",
        description="Send a synthetic digitiser stream in-process, receive it, verify it "
                    "and report heaps, GB/s and loss.")
    p.add_argument("--heaps", type=int, default=64, help="number of data heaps [%(default)s]")
    p.add_argument("--heap-size", type=int, default=64 * 1024,
                   help="int8 samples (bytes) per heap [%(default)s]")
    p.add_argument("--packet-size", type=int, default=9000,
                   help="maximum packet size in bytes [%(default)s]")
    p.add_argument("--heap-address-bits", type=int, default=48, choices=[40, 48],
                   help="SPEAD flavour: 64-40 or 64-48 [%(default)s]")
    p.add_argument("--ring-heaps", type=int, default=8,
                   help="receive ring buffer capacity in heaps [%(default)s]")
    p.add_argument("--max-heaps", type=int, default=4,
                   help="heaps reassembled concurrently by the receiver [%(default)s]")
    p.add_argument("--recv-threads", type=int, default=1,
                   help="threads in the receiver's thread pool [%(default)s]")
    p.add_argument("--window", type=int, default=64,
                   help="most heaps the sender may run ahead of the receiver [%(default)s]")
    p.add_argument("--memcpy-nt", action="store_true",
                   help="use non-temporal memcpy for payload (MEMCPY_NONTEMPORAL)")
    p.add_argument("--mem-pool", action="store_true",
                   help="allocate heap payloads from a MemoryPool")
    p.add_argument("--simulate-loss", type=int, default=0, metavar="N",
                   help="testing aid: do not send every N-th data heap, so that the "
                        "verification must report loss [off]")
    p.add_argument("--memory", default="auto",
                   choices=["auto", "heap", "host", "pinned", "mapped", "device"],
                   help="receive path: 'heap' (CPU heaps), or a GPU chunk stream with this "
                        "memory kind; 'auto' uses the GPU path when a GPU is usable "
                        "[%(default)s]")
    p.add_argument("--quiet", action="store_true", help="print only the summary lines")
    args = p.parse_args(argv)
    if args.heaps < 1:
        p.error("--heaps must be at least 1")
    if args.heap_size < 1:
        p.error("--heap-size must be at least 1")
    if args.packet_size < 56:
        p.error("--packet-size must be at least 56")
    if args.window < 1 or args.ring_heaps < 1 or args.max_heaps < 1 or args.recv_threads < 1:
        p.error("--window, --ring-heaps, --max-heaps and --recv-threads must be positive")
    return args


class _Sender(threading.Thread):
    """Sends the stream from its own thread, at most ``window`` heaps ahead."""

    def __init__(self, args, queue, wave, window, descriptors="stale"):
        super().__init__(name="demo-sender", daemon=True)
        self.args = args
        self.descriptors = descriptors
        self.wave = wave
        self.window = window
        self.error = None
        self.bytes_sent = 0
        self.heaps_sent = 0
        flavour = spead2.Flavour(4, 64, args.heap_address_bits, 0)
        self.thread_pool = spead2.ThreadPool()
        config = spead2.send.StreamConfig(max_packet_size=args.packet_size, max_heaps=4)
        self.stream = spead2.send.InprocStream(self.thread_pool, [queue], config)
        self.queue = queue
        self.ig = spead2.send.ItemGroup(flavour=flavour)
        self.ig.add_item(TIMESTAMP_ID, "timestamp",
                         "Index of the first sample in the heap (ADC sample counter)",
                         shape=(), format=[("u", 48)], value=0)
        self.ig.add_item(SAMPLES_ID, "adc_samples", "Raw 8-bit digitiser samples",
                         shape=(args.heap_size,), dtype=np.int8,
                         value=np.zeros(args.heap_size, np.int8))

    def run(self):
        args = self.args
        try:
            self.bytes_sent += self.stream.send_heap(self.ig.get_start())
            for i in range(args.heaps):
                # Flow control only: if heaps go missing the receiver never
                # releases their slots, so do not wait for ever.
                self.window.acquire(timeout=2.0)
                if args.simulate_loss and i % args.simulate_loss == args.simulate_loss - 1:
                    self.window.release()
                    continue
                timestamp = i * args.heap_size
                self.ig["timestamp"].value = timestamp
                self.ig["adc_samples"].value = heap_samples(self.wave, timestamp,
                                                            args.heap_size)
                self.bytes_sent += self.stream.send_heap(
                    self.ig.get_heap(descriptors=self.descriptors))
                self.heaps_sent += 1
            self.bytes_sent += self.stream.send_heap(self.ig.get_end())
        except Exception as exc:  # reported by the main thread
            self.error = exc
        finally:
            # Ends the receive stream even if the stop heap could not be sent.
            self.queue.stop()


def choose_memory(args):
    """(kind, note) for the GPU chunk path, or (None, note) for the CPU heap path."""
    if args.memory == "heap":
        return None, "CPU heap path requested"
    try:
        from spead2gpu import gpu
    except ImportError:
        return None, "spead2gpu.gpu is not available"
    if args.heap_address_bits != 48:
        return None, "the chunk path needs SPEAD-64-48 (48-bit immediate timestamps)"
    if args.packet_size < 64:
        # Packets too small for all item pointers: the sender spreads them over
        # several packets and the heaps are no longer of a fixed size.
        return None, "the chunk path needs packets of at least 64 bytes"
    if args.memory != "auto":
        return args.memory, "requested"
    if not gpu.available():
        return None, f"no usable GPU: {gpu.unavailable_reason()}"
    if gpu._cupy_available():
        return "device", "GPU found"
    return "pinned", "GPU found, but cupy is not installed (device chunks need it)"


def run(args, out=sys.stdout) -> int:
    kind, note = choose_memory(args)
    if kind is not None:
        return run_chunks(args, kind, note, out)
    if args.memory not in ("auto", "heap") and not args.quiet:
        print(f"memory kind    : heap (CPU path: {note})", file=out)
    return run_heaps(args, out)


def run_heaps(args, out=sys.stdout) -> int:
    def say(*a):
        if not args.quiet:
            print(*a, file=out)

    wave = make_waveform(args.heap_size)
    queue = spead2.InprocQueue()

    recv_kwargs = dict(max_heaps=args.max_heaps)
    if args.memcpy_nt:
        recv_kwargs["memcpy"] = spead2.MEMCPY_NONTEMPORAL
    if args.mem_pool:
        pool = spead2.MemoryPool(lower=args.heap_size, upper=args.heap_size + 4096,
                                 max_free=args.ring_heaps + args.max_heaps + 2,
                                 initial=args.ring_heaps + args.max_heaps)
        recv_kwargs["memory_allocator"] = pool
    recv_pool = spead2.ThreadPool(args.recv_threads)
    stream = spead2.recv.Stream(recv_pool, spead2.recv.StreamConfig(**recv_kwargs),
                                spead2.recv.RingStreamConfig(heaps=args.ring_heaps,
                                                             contiguous_only=False))
    stream.add_inproc_reader(queue)

    window = threading.Semaphore(args.window)
    sender = _Sender(args, queue, wave, window)
    say(f"spead2gpu demo: {args.heaps} heaps x {args.heap_size} int8 samples "
        f"(+48-bit timestamp), SPEAD-64-{args.heap_address_bits}, "
        f"packets <= {args.packet_size} B, in-process")

    ig = spead2.ItemGroup()
    seen = set()
    incomplete = corrupt = duplicate = unexpected = 0
    start_seen = False
    t_start = time.perf_counter()
    sender.start()
    for heap in stream:
        if isinstance(heap, spead2.recv.IncompleteHeap):
            if heap.is_end_of_stream():
                # A stop heap split over several packets: the stream stops on
                # its first packet and flushes the rest as incomplete.
                continue
            incomplete += 1
            window.release()
            continue
        if heap.is_start_of_stream():
            start_seen = True
        updated = ig.update(heap)
        if "adc_samples" not in updated:
            continue  # e.g. the start-of-stream heap
        window.release()
        samples = updated["adc_samples"].value
        timestamp = int(ig["timestamp"].value)
        if timestamp % args.heap_size or not 0 <= timestamp // args.heap_size < args.heaps:
            unexpected += 1
            continue
        index = timestamp // args.heap_size
        if index in seen:
            duplicate += 1
            continue
        expected = heap_samples(wave, timestamp, args.heap_size)
        if (not isinstance(samples, np.ndarray) or samples.dtype != np.int8
                or samples.shape != expected.shape or not np.array_equal(samples, expected)):
            corrupt += 1
            continue
        seen.add(index)
    lost, stats = finish(args, out, say, sender, stream, t_start, len(seen), incomplete=incomplete,
                         corrupt=corrupt, duplicate=duplicate, unexpected=unexpected)
    say(f"receiver stats : heaps={stats['heaps']} packets={stats['packets']} "
        f"incomplete_heaps_evicted={stats['incomplete_heaps_evicted']} "
        f"incomplete_heaps_flushed={stats['incomplete_heaps_flushed']} "
        f"worker_blocked={stats['worker_blocked']}")

    ok = True
    if sender.error is not None:
        print(f"ERROR: sender failed: {sender.error!r}", file=out)
        ok = False
    if not start_seen:
        print("ERROR: start-of-stream heap not received", file=out)
        ok = False
    if lost or incomplete or corrupt or duplicate or unexpected:
        ok = False
    print("OK: every heap arrived intact" if ok else "FAILED: data lost or wrong", file=out)
    return 0 if ok else 1


def finish(args, out, say, sender, stream, t_start, received, **counts):
    """End a run (sender joined, stream stopped) and report it; returns the
    number of heaps lost and the stream's statistics."""
    elapsed = time.perf_counter() - t_start
    sender.join(timeout=60)
    stream.stop()
    return report_outcome(args, out, say, sender, received, elapsed, **counts), stream.stats


def report_outcome(args, out, say, sender, received, elapsed, *, incomplete=0, corrupt=0,
                   duplicate=0, unexpected=0):
    """Print what was sent and received (shared by the heap and chunk paths);
    returns the number of heaps that did not arrive intact."""
    lost = args.heaps - received
    payload = received * args.heap_size
    rate = payload / elapsed / 1e9 if elapsed > 0 else float("inf")
    say(f"sent           : {sender.heaps_sent} data heaps, {sender.bytes_sent} bytes on the wire")
    print(f"heaps received : {received}/{args.heaps} intact "
          f"(incomplete {incomplete}, corrupt {corrupt}, duplicate {duplicate}, "
          f"unexpected {unexpected})", file=out)
    print(f"payload        : {payload / 1e6:.3f} MB in {elapsed:.4f} s = {rate:.3f} GB/s",
          file=out)
    print(f"loss           : {lost} heaps ({100.0 * lost / args.heaps:.2f}%)", file=out)
    return lost


def chunk_geometry(args):
    """Heaps per chunk and window (max_chunks) such that the sender's flow-control
    window always covers what the receiver needs to complete a chunk."""
    hpc = max(1, min(args.heaps, args.window // 4, (4 << 20) // args.heap_size))
    max_chunks = 2 if args.window >= 3 * hpc else 1
    return hpc, max_chunks


def _host(a):
    return a.get() if hasattr(a, "get") else np.asarray(a)


def run_chunks(args, kind, note, out=sys.stdout) -> int:
    """The GPU path: a gpu.ChunkStream with memory of ``kind``."""
    from spead2gpu import gpu

    def say(*a):
        if not args.quiet:
            print(*a, file=out)

    wave = make_waveform(args.heap_size)
    queue = spead2.InprocQueue()
    hpc, max_chunks = chunk_geometry(args)
    layout = spead2.recv.ChunkLayout(heap_size=args.heap_size, timestamp_id=TIMESTAMP_ID,
                                     timestamp_step=args.heap_size, timestamps_per_chunk=hpc)
    recv_kwargs = dict(max_heaps=args.max_heaps, extended_stats=True)  # for free_chunk_wait_ns
    if args.memcpy_nt:
        recv_kwargs["memcpy"] = spead2.MEMCPY_NONTEMPORAL
    try:
        stream = gpu.ChunkStream(
            spead2.ThreadPool(args.recv_threads), spead2.recv.StreamConfig(**recv_kwargs),
            spead2.recv.ChunkStreamConfig(place=layout, max_chunks=max_chunks),
            kind=kind, data_shape=(hpc, args.heap_size), data_dtype=np.int8)
    except (gpu.GpuUnavailableError, ValueError) as exc:
        print(f"ERROR: memory kind {kind!r}: {exc}", file=out)
        return 1
    if stream.array_module == "buffer":
        # Device chunks without cupy are gpu.Buffer objects: the demo's
        # processing step (gpu.unpack_int8 on an array) cannot run on them.
        stream.stop()
        print(f"ERROR: memory kind {kind!r}: the demo processes device chunks with cupy, which is not "
              "installed (pip install cupy-cuda12x, or use --memory pinned or mapped)", file=out)
        return 1
    stream.add_inproc_reader(queue)

    window = threading.Semaphore(args.window)
    sender = _Sender(args, queue, wave, window, descriptors="none")
    device = f" on {gpu._gpu.device_name(0)}" if kind != "host" else ""
    say(f"spead2gpu demo: {args.heaps} heaps x {args.heap_size} int8 samples "
        f"(+48-bit timestamp), SPEAD-64-{args.heap_address_bits}, "
        f"packets <= {args.packet_size} B, in-process")
    print(f"memory kind    : {kind} (GPU chunk stream{device}, {hpc} heaps per chunk, "
          f"{stream.array_module} arrays; {note})", file=out)

    seen = set()
    corrupt = unexpected = 0
    t_start = time.perf_counter()
    sender.start()
    for chunk in stream:
        with chunk:
            present = np.array(_host(chunk.present))  # a copy: released chunks are reused
            # First processing step on the GPU (numpy for host memory).
            samples = _host(gpu.unpack_int8(chunk.data))
        base = chunk.chunk_id * hpc
        n_present = int(np.count_nonzero(present))
        if n_present:
            window.release(n_present)   # the sender's flow control (one per heap)
        for i in np.flatnonzero(present):
            index = base + int(i)
            if not 0 <= index < args.heaps:
                unexpected += 1
                continue
            expected = heap_samples(wave, index * args.heap_size, args.heap_size)
            if not np.array_equal(samples[i], expected.astype(np.float32)):
                corrupt += 1
                continue
            seen.add(index)
    lost, stats = finish(args, out, say, sender, stream, t_start, len(seen), corrupt=corrupt,
                         unexpected=unexpected)
    pstats = stream.pipeline_stats
    say(f"receiver stats : heaps={stats['heaps']} packets={stats['packets']} "
        f"too_old_heaps={stats['too_old_heaps']} "
        f"free_chunk_wait_ns={stats['spead2gpu.free_chunk_wait_ns']} "
        f"chunks={pstats['chunks_delivered']} copied={pstats['chunks_copied']} "
        f"copy_waits={pstats['copy_waits']}")
    stream.close()

    ok = sender.error is None and not (lost or corrupt or unexpected)
    if sender.error is not None:
        print(f"ERROR: sender failed: {sender.error!r}", file=out)
    print("OK: every heap arrived intact" if ok else "FAILED: data lost or wrong", file=out)
    return 0 if ok else 1


def main(argv=None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
