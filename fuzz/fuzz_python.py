"""atheris target: fuzzed bytes through spead2gpu's Python receive API.

Run it with ``fuzz/run.sh python <seconds>`` (see fuzz/README.md).  Without
atheris, ``python fuzz/fuzz_python.py --replay FILE...`` replays inputs, which is what
tests/test_fuzz_regressions.py does with fuzz/regressions/python/*.

Input: 5 configuration bytes, then the body.

  0  route (bits 0-1): 0 ``add_buffer_reader(body)``; 1 an InprocQueue of
     datagrams; 2 a pcap file given to ``add_udp_pcap_file_reader``; 3 a
     ChunkRingStream with a ChunkLayout.  2: the body is the pcap file
     itself (else its datagrams are wrapped in a pcap file); 3: buffer
     (else inproc datagrams).  4 allow_out_of_order; 5 allow_unsized_heaps;
     6 contiguous_only off; 7 incomplete_keep_payload_ranges
  1  max_heaps 1 + (0-2); substreams 1 + (3-4); bug_compat (5-7)
  2  layout heap size 4 << (0-2); timestamps_per_chunk 1 + (3-4); 5 a
     second axis (item 0x1601, 4 values); 6 an extra item (0x1603);
     7 stop_on_stop_item off
  3  max_chunks 1 + (0-1); free chunks max_chunks + 1 + (2-3); the
     new_order given to ItemGroup.update (4-5); pcap link type (6-7):
     Ethernet, raw IPv4, Linux cooked (SLL), Ethernet with IPv6
  4  max_heap_length: default if (0-3) is 0, else 64 << (0-3);
     max_heap_items: default if (4-7) is 0, else 1 << ((4-7) - 1)

Datagrams: a 2-byte big-endian length, then that many bytes, repeated.

The contract checked: receiving never raises; ``ItemGroup.update`` on a
received heap either works or raises ``ValueError`` (the documented error for
a heap it cannot interpret); heaps, incomplete heaps, chunks and statistics are
self-consistent.  Anything else escaping is a finding.
"""

from __future__ import annotations

import os
import struct
import sys
import tempfile

spead2gpu = None
np = None

TIMESTAMP_ID = 0x1600
AXIS_ID = 0x1601
EXTRA_ID = 0x1603
AXIS_COUNT = 4
NEW_ORDERS = ("=", "|", "<", ">")
CONFIG_BYTES = 5
UDP_PORT = 7148

_pool = None
_tmpdir = None


def _import():
    """Import spead2gpu and numpy (under atheris instrumentation when fuzzing)."""
    global spead2gpu, np
    if spead2gpu is None:
        import numpy

        import spead2gpu as s
        import spead2gpu.recv  # noqa: F401

        spead2gpu, np = s, numpy


class Finding(AssertionError):
    """A self-consistency check failed (not an assert: python -O keeps it)."""


def check(cond, message):
    if not cond:
        raise Finding(message)


class Config:
    def __init__(self, b):
        self.route = b[0] & 3
        self.raw_pcap = bool(b[0] & 4) if self.route == 2 else False
        self.chunk_buffer = bool(b[0] & 4) if self.route == 3 else False
        self.out_of_order = bool(b[0] & 16)
        self.unsized = bool(b[0] & 32)
        self.contiguous_only = not (b[0] & 64)
        self.keep_ranges = bool(b[0] & 128)
        self.max_heaps = 1 + (b[1] & 7)
        self.substreams = 1 + ((b[1] >> 3) & 3)
        self.bug_compat = b[1] >> 5
        self.heap_size = 4 << (b[2] & 7)
        self.tpc = 1 + ((b[2] >> 3) & 3)
        self.axis = bool(b[2] & 32)
        self.extra = bool(b[2] & 64)
        self.stop_on_stop_item = not (b[2] & 128)
        self.max_chunks = 1 + (b[3] & 3)
        self.n_chunks = self.max_chunks + 1 + ((b[3] >> 2) & 3)
        self.new_order = NEW_ORDERS[(b[3] >> 4) & 3]
        self.link = b[3] >> 6
        self.max_heap_length = 64 << (b[4] & 15) if b[4] & 15 else None
        self.max_heap_items = 1 << ((b[4] >> 4) - 1) if b[4] >> 4 else None

    def stream_config(self):
        bounds = {}
        if self.max_heap_length:
            bounds["max_heap_length"] = self.max_heap_length
        if self.max_heap_items:
            bounds["max_heap_items"] = self.max_heap_items
        return spead2gpu.recv.StreamConfig(
            max_heaps=self.max_heaps, substreams=self.substreams, bug_compat=self.bug_compat,
            allow_out_of_order=self.out_of_order, allow_unsized_heaps=self.unsized,
            stop_on_stop_item=self.stop_on_stop_item, extended_stats=True, **bounds)


def split_datagrams(body):
    out = []
    pos = 0
    while len(body) - pos >= 2:
        n = (body[pos] << 8) | body[pos + 1]
        pos += 2
        out.append(body[pos:pos + n])
        pos += n
    return out


# --- pcap files -------------------------------------------------------------

def _ip_checksum(header):
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _udp(payload):
    return struct.pack("!HHHH", 7000, UDP_PORT, 8 + len(payload), 0) + payload


def _ipv4(l4):
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0x4000, 64, 17, 0,
                      bytes((10, 0, 0, 1)), bytes((10, 0, 0, 2)))
    return hdr[:10] + struct.pack("!H", _ip_checksum(hdr)) + hdr[12:] + l4


def _ipv6(l4):
    return struct.pack("!IHBB16s16s", 0x60000000, len(l4), 17, 64, bytes(15) + b"\1",
                       bytes(15) + b"\2") + l4


def _ethernet(l3, ethertype):
    return bytes(range(1, 7)) + bytes(range(7, 13)) + struct.pack("!H", ethertype) + l3


def _sll(l3):
    return struct.pack("!HHH8sH", 0, 1, 6, bytes(range(1, 9)), 0x0800) + l3


#: link type code -> (pcap LINKTYPE, frame builder)
LINKS = (
    (1, lambda d: _ethernet(_ipv4(_udp(d)), 0x0800)),
    (101, lambda d: _ipv4(_udp(d))),
    (113, lambda d: _sll(_ipv4(_udp(d)))),
    (1, lambda d: _ethernet(_ipv6(_udp(d)), 0x86DD)),
)


def pcap_file(datagrams, link=0):
    """A classic little-endian pcap file holding each datagram as UDP over IP."""
    linktype, frame = LINKS[link]
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype)]
    for i, d in enumerate(datagrams):
        f = frame(d)
        out.append(struct.pack("<IIII", 1700000000 + i, i, len(f), len(f)))
        out.append(f)
    return b"".join(out)


# --- checks -----------------------------------------------------------------

def _pool_get():
    global _pool
    if _pool is None:
        _pool = spead2gpu.ThreadPool(1)
    return _pool


def check_ranges(ranges, received, heap_length):
    prev_end = -1
    total = 0
    for start, end in ranges:
        check(0 <= start < end, f"bad payload range {start, end}")
        check(start > prev_end, f"payload ranges overlap or are unmerged: {ranges}")
        check(heap_length < 0 or end <= heap_length, f"range {start, end} beyond {heap_length}")
        total += end - start
        prev_end = end
    check(total == received, f"ranges {ranges} do not add up to {received}")


def check_items(heap):
    hab = heap.flavour.heap_address_bits
    check(8 <= hab <= 56 and hab % 8 == 0, f"bad flavour {hab}")
    for item in heap.get_items():
        view = memoryview(item)
        data = bytes(view)
        if item.is_immediate:
            check(len(data) == hab // 8, "immediate of the wrong width")
            check(int.from_bytes(data, "big") == item.immediate_value, "immediate bytes differ")
        else:
            check(len(data) > 0, "empty addressed item")


def check_heap(heap, cfg, group, stats):
    check(heap.cnt >= 0, "negative heap cnt")
    check_items(heap)
    heap.is_start_of_stream()
    heap.is_end_of_stream()
    if isinstance(heap, spead2gpu.recv.IncompleteHeap):
        check(not cfg.contiguous_only, "incomplete heap delivered with contiguous_only")
        check(heap.heap_length < 0 or heap.received_length <= heap.heap_length,
              "received more than the heap length")
        if cfg.keep_ranges:
            check_ranges(heap.payload_ranges, heap.received_length, heap.heap_length)
        else:
            check(not heap.payload_ranges, "payload ranges kept without keep_payload_ranges")
        for item in heap.get_items():
            check(item.is_immediate, "addressed item in an incomplete heap")
        return
    for raw in heap.get_descriptors():
        check(raw.id != 0, "descriptor with id 0")
        bytes(raw.name), bytes(raw.description), bytes(raw.numpy_header)
        list(raw.shape), list(raw.format)
    try:
        updated = group.update(heap, new_order=cfg.new_order)
    except ValueError:
        stats["value_errors"] = stats.get("value_errors", 0) + 1
        return
    for name, item in updated.items():
        check(group[name] is item, "update() returned an item the group does not hold")
        value = item.value
        check(value is not None, "updated item without a value")
        if isinstance(value, np.ndarray):
            check(item.compatible_shape(value.shape), f"value shape {value.shape} vs {item.shape}")
        # A received value can be sent again (or fails with ValueError).
        try:
            item.to_buffer()
        except ValueError:
            pass


def check_stream_stats(stream):
    s = stream.stats
    check(s["heaps"] >= s["incomplete_heaps_evicted"] + s["incomplete_heaps_flushed"],
          "heaps < incomplete heaps")
    check(s["spead2gpu.rejected_packets"] <= s["packets"], "more rejected packets than packets")


def receive_heaps(stream, cfg):
    group = spead2gpu.ItemGroup()
    stats = {}
    n = 0
    for heap in stream:
        n += 1
        check_heap(heap, cfg, group, stats)
    stream.stop()
    check_stream_stats(stream)
    check(n <= stream.stats["heaps"], f"{n} heaps delivered but only {stream.stats['heaps']} counted")


def make_layout(cfg):
    axes = ["time"]
    if cfg.axis:
        axes.append((AXIS_ID, AXIS_COUNT))
    return spead2gpu.recv.ChunkLayout(
        cfg.heap_size, TIMESTAMP_ID, cfg.heap_size, cfg.tpc, axes=axes,
        extra_items=[EXTRA_ID] if cfg.extra else [])


def receive_chunks(cfg, body):
    layout = make_layout(cfg)
    data_ring = spead2gpu.recv.ChunkRingbuffer(cfg.n_chunks)
    free_ring = spead2gpu.recv.ChunkRingbuffer(cfg.n_chunks)
    stream = spead2gpu.recv.ChunkRingStream(
        _pool_get(), cfg.stream_config(),
        spead2gpu.recv.ChunkStreamConfig(place=layout, max_chunks=cfg.max_chunks),
        data_ring, free_ring)
    for _ in range(cfg.n_chunks):
        stream.add_free_chunk(spead2gpu.recv.Chunk(
            present=np.zeros(layout.heaps_per_chunk, np.uint8),
            data=np.zeros(layout.chunk_data_size, np.uint8),
            extra=np.zeros(max(layout.chunk_extra_size, 1), np.uint8)))
    if cfg.chunk_buffer:
        stream.add_buffer_reader(body)
    else:
        queue = spead2gpu.InprocQueue()
        for d in split_datagrams(body):
            queue.add_packet(d)
        queue.stop()
        stream.add_inproc_reader(queue)
    last = -1
    for chunk in data_ring:
        check(chunk.chunk_id > last, f"chunk {chunk.chunk_id} after {last}")
        last = chunk.chunk_id
        present = np.asarray(chunk.present)
        check(present.shape == (layout.heaps_per_chunk,), "present array changed shape")
        check(bool(np.all(present <= 1)), "present flag other than 0 or 1")
        present[:] = 0
        stream.add_free_chunk(chunk)
    stream.stop()
    check_stream_stats(stream)
    s = stream.stats
    check(s["spead2gpu.bad_placement_heaps"] == 0, "a layout placed a heap outside its chunk")


def run_input(data: bytes) -> None:
    """Run one fuzz input; raises on a finding."""
    global _tmpdir
    _import()
    if len(data) < CONFIG_BYTES:
        return
    cfg = Config(data[:CONFIG_BYTES])
    body = bytes(data[CONFIG_BYTES:])
    if cfg.route == 3:
        receive_chunks(cfg, body)
        return
    stream = spead2gpu.recv.Stream(
        _pool_get(), cfg.stream_config(),
        spead2gpu.recv.RingStreamConfig(
            heaps=4, contiguous_only=cfg.contiguous_only,
            incomplete_keep_payload_ranges=cfg.keep_ranges))
    if cfg.route == 0:
        stream.add_buffer_reader(body)
    elif cfg.route == 1:
        queue = spead2gpu.InprocQueue()
        for d in split_datagrams(body):
            queue.add_packet(d)
        queue.stop()
        stream.add_inproc_reader(queue)
    else:
        if _tmpdir is None:
            _tmpdir = tempfile.mkdtemp(prefix="spead2gpu-fuzz-")
        path = os.path.join(_tmpdir, "input.pcap")
        with open(path, "wb") as f:
            f.write(body if cfg.raw_pcap else pcap_file(split_datagrams(body), cfg.link))
        try:
            stream.add_udp_pcap_file_reader(path)
        except RuntimeError:
            # Not a capture file libpcap opens, or an unsupported link type: documented.
            check(cfg.raw_pcap, "a well-formed pcap file was refused")
            stream.stop()
            return
    receive_heaps(stream, cfg)


def main(argv):
    if argv[1:2] == ["--replay"]:
        _import()
        for name in argv[2:]:
            with open(name, "rb") as f:
                run_input(f.read())
            print(f"ok {name}")
        return
    import logging

    import atheris

    with atheris.instrument_imports(include=["spead2gpu"]):
        _import()
    # Rejected packets and undescribed items are logged; at fuzzing rates that is only noise.
    logging.getLogger("spead2gpu").setLevel(logging.CRITICAL)
    atheris.Setup(argv, run_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
