"""Write the seed corpora fuzz/corpus/recv (C++ target) and fuzz/corpus/python.

    PYTHONPATH=python python fuzz/make_corpus.py

Seeds: heaps sent by spead2gpu.send (items of several kinds, descriptors in
both forms, start and stop heaps, several flavours and packet sizes), chunk
traffic for the layouts and the placement callback of the harnesses, and
hand-made malformed packets. The inputs are deterministic, so rerunning the
script reproduces the committed files (it removes the old ones first).
"""

from __future__ import annotations

import hashlib
import pathlib
import random
import struct
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import fuzz_python  # noqa: E402

import spead2gpu  # noqa: E402
import spead2gpu.send  # noqa: E402

TS_ID, AXIS_ID, OFFSET_ID, EXTRA_ID = 0x1600, 0x1601, 0x1602, 0x1603


# --- packets by hand ----------------------------------------------------------


def imm(item_id, value, hab=48):
    return (1 << 63) | (item_id << hab) | (value & ((1 << hab) - 1))


def addr(item_id, address, hab=48):
    return (item_id << hab) | address


def packet(pointers, payload=b"", hab=48, n_items=None, magic=0x53, version=4):
    n = len(pointers) if n_items is None else n_items
    header = bytes((magic, version, 8 - hab // 8, hab // 8, 0, 0)) + struct.pack(">H", n)
    return header + b"".join(struct.pack(">Q", p) for p in pointers) + payload


def heap_packets(cnt, payload, packet_payload, items=(), hab=48, heap_length=True, drop=()):
    """The packets of one heap; the extra items go into every packet."""
    out = []
    for i, off in enumerate(range(0, max(len(payload), 1), packet_payload)):
        part = payload[off : off + packet_payload]
        ptrs = [imm(1, cnt, hab), imm(3, off, hab), imm(4, len(part), hab)]
        if heap_length:
            ptrs.insert(1, imm(2, len(payload), hab))
        ptrs += list(items)
        if i not in drop:
            out.append(packet(ptrs, part, hab))
    return out


def stop_packet(cnt, hab=48):
    return packet(
        [imm(1, cnt, hab), imm(2, 0, hab), imm(3, 0, hab), imm(4, 0, hab), imm(6, 2, hab)], b"", hab
    )


def pattern(cnt, n):
    return bytes((cnt * 13 + i * 7 + 1) & 0xFF for i in range(n))


MALFORMED = [
    b"",
    b"\x53\x04\x03",
    packet([]),
    packet([imm(1, 5), imm(2, 4), imm(3, 0), imm(4, 4)], b"", n_items=6),
    packet([imm(1, 5), imm(2, 400), imm(3, 0), imm(4, 400)], b"abcd"),
    packet([imm(1, 5), imm(2, 4), imm(3, 0), imm(4, 4)], b"abcd", magic=0x54),
    packet([imm(1, 5), imm(2, 4), imm(3, 0), imm(4, 4)], b"abcd", version=3),
    packet([imm(1, 5), imm(2, 4), imm(3, 2), imm(4, 4)], b"abcd"),
    packet([imm(2, 4), imm(3, 0), imm(4, 4)], b"abcd"),
    packet([imm(1, 5), imm(2, 4), imm(3, 0), imm(4, 4), addr(0x1000, (1 << 40) - 1)], b"abcd"),
    packet([imm(1, 6), imm(2, 1 << 46), imm(3, 0), imm(4, 4), addr(0x1000, 0)], b"abcd"),
    packet([imm(1, 7), imm(3, 1 << 40), imm(4, 4)], b"abcd"),
    packet([imm(1, 5), imm(2, 0), imm(3, 0), imm(4, 0)], b""),
    packet([imm(1, 5), imm(2, 4), imm(3, 0), imm(4, 4)], b"abcd") + b"xyz",
]


# --- heaps from spead2gpu.send ------------------------------------------------


def sent_packets(
    flavour=None, packet_size=1472, n_heaps=3, descriptors="all", start=False, end=False, first_cnt=1, seed=0
):
    """Packets of heaps of a send ItemGroup with items of every kind."""
    flavour = flavour or spead2gpu.Flavour(4, 64, 48, 0)
    rng = np.random.default_rng(seed)
    ig = spead2gpu.send.ItemGroup(flavour=flavour)
    ig.add_item(0x1000, "ints", "uint16 array", (5,), dtype=np.dtype(">u2"))
    ig.add_item(0x1001, "counter", "u48 immediate", (), format=[("u", flavour.heap_address_bits)])
    ig.add_item(0x1002, "bits", "12-bit fields", (3,), format=[("u", 12)])
    ig.add_item(0x1003, "name", "string", (None,), format=[("c", 8)])
    ig.add_item(0x1004, "pairs", "structured", (2,), format=[("i", 8), ("f", 32)])
    ig.add_item(0x1005, "matrix", "fortran floats", (2, 3), dtype=np.float32, order="F")
    heaps = []
    if start:
        heaps.append(ig.get_start())
    for i in range(n_heaps):
        ig["ints"].value = rng.integers(0, 1000, 5).astype(">u2")
        ig["counter"].value = 1000 + i
        ig["bits"].value = [i, 2 * i, 4095]
        ig["name"].value = f"heap{i}"
        ig["pairs"].value = [(i, 0.5), (-i, 1.5)]
        ig["matrix"].value = np.arange(6, dtype=np.float32).reshape(2, 3) * i
        heaps.append(ig.get_heap(descriptors=descriptors if i == 0 else "stale", data="all"))
    if end:
        heaps.append(ig.get_end())
    out = []
    for k, heap in enumerate(heaps):
        out += list(spead2gpu.send.PacketGenerator(heap, first_cnt + k, packet_size))
    return out


def layout_heaps(
    heap_size,
    n,
    ts_step=1,
    tpc=2,
    axis_count=0,
    extra=False,
    packet_payload=None,
    hab=48,
    first_cnt=1,
    drop_every=0,
):
    """Heaps for a layout: timestamp, optional axis value, optional extra item."""
    packet_payload = packet_payload or max(heap_size // 2, 1)
    out = []
    cnt = first_cnt
    for t in range(n):
        for a in range(max(axis_count, 1)):
            items = [imm(TS_ID, t * ts_step, hab)]
            if axis_count:
                items.append(imm(AXIS_ID, a, hab))
            if extra:
                items.append(imm(EXTRA_ID, 100 + cnt, hab))
            drop = (1,) if drop_every and cnt % drop_every == 0 else ()
            out += heap_packets(cnt, pattern(cnt, heap_size), packet_payload, items, hab, drop=drop)
            cnt += 1
    return out


def framed(packets):
    return b"".join(struct.pack(">H", len(p)) + p for p in packets)


# --- the C++ target's configuration (fuzz/recv_harness.cpp) ------------------

KINDS = {
    "ring": 0,
    "collector": 1,
    "chunk_layout": 2,
    "chunk_callback": 3,
    "ring_chunk_layout": 4,
    "ring_chunk_callback": 5,
}


def cpp_config(
    kind="ring",
    ooo=False,
    unsized=True,
    buffer=False,
    no_stop=False,
    keep=False,
    max_heaps=4,
    substreams=1,
    bug_compat=0,
    max_chunks=2,
    heap_log=6,
    presence=False,
    presence_shift=0,
    tpc=2,
    ts_step_log=0,
    axis=False,
    axis_outer=False,
    extra=False,
    contiguous_only=False,
    axis_count=4,
    axis_step=1,
    axis_offset=0,
    batch=4,
    hpc=4,
    wild=False,
    extra_words=0,
    bias=0,
    no_present=False,
    max_size_log=5,
    nontemporal=False,
    claim_more=False,
    slack=0,
    alloc_log=15,
    network_end=False,
    max_len_log=0,
    max_items_log=0,
):
    b = [0] * 9
    b[0] = KINDS[kind] | ooo << 3 | unsized << 4 | buffer << 5 | no_stop << 6 | keep << 7
    b[1] = (max_heaps - 1) | (substreams - 1) << 3 | bug_compat << 5
    b[2] = (max_chunks - 1) | (heap_log - 2) << 2 | presence << 5 | presence_shift << 6
    b[3] = (tpc - 1) | ts_step_log << 2 | axis << 4 | axis_outer << 5 | extra << 6 | contiguous_only << 7
    b[4] = (axis_count - 1) | (axis_step - 1) << 2 | axis_offset << 3 | (batch - 1) << 5
    b[5] = (hpc - 1) | wild << 3 | extra_words << 4 | bias << 6 | no_present << 7
    b[6] = max_size_log | nontemporal << 3 | claim_more << 4 | slack << 5
    b[7] = alloc_log | network_end << 4
    b[8] = max_len_log | max_items_log << 4
    return bytes(b)


def cpp_input(config, packets, buffer=False):
    return config + (b"".join(packets) if buffer else framed(packets))


def recv_corpus():
    rng = random.Random(1)
    seeds = {}
    base = sent_packets()
    small = sent_packets(packet_size=96, n_heaps=2)
    shuffled = list(small)
    rng.shuffle(shuffled)
    f40 = sent_packets(spead2gpu.Flavour(4, 64, 40, 0), packet_size=200)
    compat = sent_packets(spead2gpu.Flavour(4, 64, 40, spead2gpu.BUG_COMPAT_PYSPEAD_0_5_2), packet_size=300)
    framing = sent_packets(start=True, end=True)
    for kind in ("ring", "collector"):
        seeds[f"{kind}_sent"] = cpp_input(cpp_config(kind), base)
        seeds[f"{kind}_sent_buffer"] = cpp_input(cpp_config(kind, buffer=True), base, buffer=True)
        seeds[f"{kind}_small_packets"] = cpp_input(cpp_config(kind, keep=True), small)
        seeds[f"{kind}_out_of_order"] = cpp_input(
            cpp_config(kind, ooo=True, keep=True, max_heaps=2), shuffled
        )
        seeds[f"{kind}_flavour40"] = cpp_input(cpp_config(kind, max_size_log=7), f40)
        seeds[f"{kind}_bug_compat"] = cpp_input(cpp_config(kind, bug_compat=7), compat)
        seeds[f"{kind}_start_stop"] = cpp_input(cpp_config(kind), framing)
        seeds[f"{kind}_malformed"] = cpp_input(cpp_config(kind), small[:2] + MALFORMED + small[2:])
        seeds[f"{kind}_malformed_buffer"] = cpp_input(
            cpp_config(kind, buffer=True), small[:2] + MALFORMED, buffer=True
        )
    unsized = heap_packets(3, pattern(3, 700), 100, [addr(0x1000, 0)], heap_length=False)
    seeds["ring_unsized"] = cpp_input(cpp_config("ring", keep=True), unsized + [stop_packet(9)])
    seeds["collector_unsized_ooo"] = cpp_input(
        cpp_config("collector", ooo=True, keep=True), unsized[::-1] + unsized[:2]
    )
    seeds["collector_substreams"] = cpp_input(
        cpp_config("collector", max_heaps=1, substreams=4, keep=True),
        [
            p
            for pair in zip(heap_packets(4, pattern(4, 64), 16), heap_packets(5, pattern(5, 64), 16))
            for p in pair
        ],
    )
    seeds["collector_bounds"] = cpp_input(
        cpp_config("collector", max_len_log=5, max_items_log=4, ooo=True, keep=True), shuffled + unsized
    )
    seeds["collector_no_memory"] = cpp_input(cpp_config("collector", alloc_log=2, network_end=True), base)
    seeds["ring_contiguous_only"] = cpp_input(
        cpp_config("ring", contiguous_only=True, network_end=True),
        heap_packets(6, pattern(6, 100), 25, drop=(2,)),
    )

    # Chunks: heap_log 6 -> 64-byte heaps.
    lay = layout_heaps(64, 6, tpc=2)
    lay_axis = layout_heaps(64, 4, tpc=2, axis_count=4, extra=True, drop_every=5)
    seeds["chunk_layout"] = cpp_input(cpp_config("chunk_layout"), lay)
    seeds["chunk_layout_buffer"] = cpp_input(cpp_config("chunk_layout", buffer=True), lay, buffer=True)
    seeds["chunk_layout_axis_extra"] = cpp_input(
        cpp_config("chunk_layout", axis=True, extra=True, max_heaps=8), lay_axis
    )
    seeds["chunk_layout_axis_outer"] = cpp_input(
        cpp_config("chunk_layout", axis=True, axis_outer=True, axis_step=2, axis_offset=1, max_heaps=8),
        layout_heaps(64, 3, tpc=2, axis_count=4),
    )
    seeds["chunk_layout_presence"] = cpp_input(
        cpp_config("chunk_layout", presence=True, presence_shift=1), layout_heaps(64, 4, drop_every=3)
    )
    seeds["chunk_layout_ts_step"] = cpp_input(
        cpp_config("chunk_layout", ts_step_log=2, tpc=3), layout_heaps(64, 8, ts_step=4, tpc=3) + lay[:3]
    )
    seeds["chunk_layout_window_jump"] = cpp_input(
        cpp_config("chunk_layout", max_chunks=1),
        lay[:4]
        + layout_heaps(64, 1, first_cnt=50)[:1]
        + heap_packets(51, pattern(51, 64), 32, [imm(TS_ID, 1 << 40)])
        + lay[4:],
    )
    seeds["chunk_layout_wrong"] = cpp_input(
        cpp_config("chunk_layout", axis=True, extra=True),
        heap_packets(70, pattern(70, 32), 16, [imm(TS_ID, 0), imm(AXIS_ID, 0)])
        + heap_packets(71, pattern(71, 64), 32, [imm(AXIS_ID, 0)])
        + heap_packets(72, pattern(72, 64), 32, [imm(TS_ID, 0), imm(AXIS_ID, 9)])
        + heap_packets(73, pattern(73, 64), 64, [imm(TS_ID, 2)])
        + MALFORMED[:4],
    )
    seeds["ring_chunk_layout"] = cpp_input(cpp_config("ring_chunk_layout", network_end=True), lay)
    seeds["ring_chunk_layout_stop"] = cpp_input(
        cpp_config("ring_chunk_layout", axis=True, extra=True), lay_axis + [stop_packet(99)]
    )
    cb = layout_heaps(64, 10, tpc=1)
    seeds["chunk_callback"] = cpp_input(cpp_config("chunk_callback", extra_words=1), cb)
    seeds["chunk_callback_presence"] = cpp_input(
        cpp_config("chunk_callback", presence=True, presence_shift=2),
        layout_heaps(64, 6, tpc=1, packet_payload=16, drop_every=2),
    )
    wild = []
    for i, (idx, off, ex) in enumerate(
        [
            (0, 0, 8),
            (3, 192, 8 | 3 << 6),
            (4, 0, 8),
            (0, 250, 8),
            (1, 64, 16 | 20 << 6),
            (2, 128, 8 | 31 << 6),
        ]
    ):
        wild += heap_packets(
            80 + i,
            pattern(80 + i, 64),
            32,
            [imm(TS_ID, i), imm(AXIS_ID, idx), imm(OFFSET_ID, off), imm(EXTRA_ID, ex)],
        )
    seeds["chunk_callback_wild"] = cpp_input(
        cpp_config("chunk_callback", wild=True, extra_words=1, slack=1), wild
    )
    seeds["chunk_callback_claims_more"] = cpp_input(
        cpp_config("chunk_callback", extra_words=1, claim_more=True, bias=1, no_present=True), cb
    )
    seeds["ring_chunk_callback"] = cpp_input(
        cpp_config("ring_chunk_callback", extra_words=2), cb + [stop_packet(7)]
    )
    seeds["ring_chunk_callback_ooo"] = cpp_input(
        cpp_config("ring_chunk_callback", ooo=True, wild=True, max_heaps=2, batch=8), wild[::-1] + cb
    )
    return seeds


# --- the Python target's configuration (fuzz/fuzz_python.py) ----------------


def py_config(
    route=0,
    raw_pcap=False,
    chunk_buffer=False,
    ooo=False,
    unsized=True,
    not_contiguous=False,
    keep=False,
    max_heaps=4,
    substreams=1,
    bug_compat=0,
    heap_log=6,
    tpc=2,
    axis=False,
    extra=False,
    no_stop=False,
    max_chunks=2,
    free_extra=1,
    order=0,
    link=0,
    max_len_log=0,
    max_items_log=0,
):
    b0 = route | (raw_pcap or chunk_buffer) << 2 | ooo << 4 | unsized << 5 | not_contiguous << 6 | keep << 7
    b1 = (max_heaps - 1) | (substreams - 1) << 3 | bug_compat << 5
    b2 = (heap_log - 2) | (tpc - 1) << 3 | axis << 5 | extra << 6 | no_stop << 7
    b3 = (max_chunks - 1) | free_extra << 2 | order << 4 | link << 6
    b4 = max_len_log | max_items_log << 4
    return bytes((b0, b1, b2, b3, b4))


def descriptor_packet(cnt, numpy_header=None, fmt=b"", shape=b"", name=b"x", desc=b"d", item_id=0x1000):
    """A heap holding one hand-made descriptor (for headers spead2gpu.send would not write)."""
    parts = [name, desc, fmt, shape] + ([numpy_header] if numpy_header is not None else [])
    ids = [0x10, 0x11, 0x13, 0x12] + ([0x15] if numpy_header is not None else [])
    offs, o = [], 0
    for p in parts:
        offs.append(o)
        o += len(p)
    payload = b"".join(parts)
    inner = packet(
        [imm(1, 1), imm(2, len(payload)), imm(3, 0), imm(4, len(payload)), imm(0x14, item_id)]
        + [addr(i, off) for i, off in zip(ids, offs)],
        payload,
    )
    return heap_packets(cnt, inner, len(inner), [addr(5, 0)])


def pcapng(datagrams):
    """A minimal little-endian pcapng file (SHB, IDB, one EPB per datagram) of Ethernet frames."""

    def block(kind, body):
        body += bytes(-len(body) % 4)
        n = 12 + len(body)
        return struct.pack("<II", kind, n) + body + struct.pack("<I", n)

    out = [
        block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)),
        block(1, struct.pack("<HHI", 1, 0, 262144)),
    ]
    for i, d in enumerate(datagrams):
        frame = fuzz_python.LINKS[0][1](d)
        out.append(block(6, struct.pack("<IIIII", 0, 0, i, len(frame), len(frame)) + frame))
    return b"".join(out)


def python_corpus():
    rng = random.Random(2)
    seeds = {}
    base = sent_packets()
    small = sent_packets(packet_size=96, n_heaps=2)
    shuffled = list(small)
    rng.shuffle(shuffled)
    framing = sent_packets(start=True, end=True)
    compat = sent_packets(spead2gpu.Flavour(4, 64, 40, spead2gpu.BUG_COMPAT_PYSPEAD_0_5_2), packet_size=300)
    swap = sent_packets(spead2gpu.Flavour(4, 64, 48, spead2gpu.BUG_COMPAT_SWAP_ENDIAN))
    seeds["buffer_sent"] = py_config(0) + b"".join(base)
    seeds["buffer_start_stop"] = py_config(0) + b"".join(framing)
    seeds["buffer_bug_compat"] = py_config(0, bug_compat=7) + b"".join(compat)
    seeds["buffer_swap_endian"] = py_config(
        0, bug_compat=spead2gpu.BUG_COMPAT_SWAP_ENDIAN, order=1
    ) + b"".join(swap)
    seeds["inproc_sent"] = py_config(1) + framed(base)
    seeds["inproc_small"] = py_config(1, keep=True, not_contiguous=True) + framed(small)
    seeds["inproc_out_of_order"] = py_config(1, ooo=True, keep=True, not_contiguous=True, order=2) + framed(
        shuffled
    )
    seeds["inproc_malformed"] = py_config(1, not_contiguous=True) + framed(small[:3] + MALFORMED + small[3:])
    seeds["inproc_bounds"] = py_config(
        1, ooo=True, not_contiguous=True, keep=True, max_len_log=4, max_items_log=5
    ) + framed(shuffled + base)
    seeds["buffer_malformed"] = py_config(0) + b"".join(small[:2] + MALFORMED)
    for link in range(4):
        seeds[f"pcap_wrapped_link{link}"] = py_config(2, link=link) + framed(small)
    seeds["pcap_raw"] = py_config(2, raw_pcap=True) + fuzz_python.pcap_file(small + MALFORMED[:3], 1)
    seeds["pcap_raw_pcapng"] = py_config(2, raw_pcap=True) + pcapng(base)
    lay = layout_heaps(64, 6, ts_step=64, tpc=2)
    seeds["chunks_inproc"] = py_config(3) + framed(lay)
    seeds["chunks_buffer"] = py_config(3, chunk_buffer=True) + b"".join(lay)
    seeds["chunks_axis_extra"] = py_config(3, axis=True, extra=True, max_heaps=8, max_chunks=3) + framed(
        layout_heaps(64, 4, ts_step=64, tpc=2, axis_count=4, extra=True, drop_every=5)
    )
    # Descriptors written by hand: numpy headers good and bad, odd formats and shapes.
    headers = [
        b"{'descr': '<u4', 'fortran_order': False, 'shape': (2,)}",
        b"{'descr': [('a', '<u2'), ('b', '>f8')], 'fortran_order': True, 'shape': (1, 1)}",
        b"{'descr': 'u4,(', 'fortran_order': False, 'shape': (2,)}",
        b"{'descr': 'zz', 'fortran_order': False, 'shape': (3,)}",
        b"{'descr': '<f4', 'fortran_order': False}",
        b"__import__('os')",
        b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    ]
    desc = []
    for i, h in enumerate(headers):
        desc += descriptor_packet(10 + i, h, item_id=0x1000 + i)
        value = heap_packets(30 + i, bytes(range(8)), 8, [addr(0x1000 + i, 0)])
        desc += value
    desc += descriptor_packet(40, None, b"u\0\0\x0c", b"\x01" + bytes(5), item_id=0x1100)
    desc += heap_packets(41, bytes(range(9)), 9, [addr(0x1100, 0)])
    desc += descriptor_packet(42, None, b"q\0\0\x08", b"", item_id=0x1101)
    desc += descriptor_packet(43, None, b"u\0\0\x08", b"\x01" + bytes(5) + b"\x01" + bytes(5), item_id=0x1102)
    desc += descriptor_packet(44, None, b"\xff\0\0\x08", b"", name=b"\xff", item_id=0x1103)
    seeds["descriptors_inproc"] = py_config(1) + framed(desc)
    seeds["descriptors_buffer"] = py_config(0, order=3) + b"".join(desc)
    return seeds


def write(target, seeds):
    out = HERE / "corpus" / target
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        old.unlink()
    for name, data in sorted(seeds.items()):
        digest = hashlib.sha1(data).hexdigest()[:8]
        (out / f"{name}-{digest}").write_bytes(data)
    total = sum(len(d) for d in seeds.values())
    print(f"{out.relative_to(HERE.parent)}: {len(seeds)} files, {total} bytes")


def main():
    write("recv", recv_corpus())
    write("python", python_corpus())


if __name__ == "__main__":
    main()
