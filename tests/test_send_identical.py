"""spead2gpu's sender must produce byte-identical packets to spead2's."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import spead2gpu
import spead2gpu.send
from conftest import (
    addr,
    build_and_send,
    imm,
    packet,
    packet_fields,
    parse_packet,
    reference,
    send_bytes,
    send_cases,
    split_packets,
)


def _first_difference(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def assert_same_bytes(got, expected):
    if got != expected:
        i = _first_difference(got, expected)
        pytest.fail(f"outputs differ at byte {i} (lengths {len(got)} vs {len(expected)}):\n"
                    f"  spead2gpu: {got[max(0, i - 16):i + 24].hex()}\n"
                    f"  spead2   : {expected[max(0, i - 16):i + 24].hex()}")


@settings(max_examples=300)
@given(case=send_cases())
def test_bytesstream_identical(case):
    ref = reference()
    g_items, g_heaps, g_total = build_and_send(spead2gpu, case)
    r_items, r_heaps, r_total = build_and_send(ref, case)
    assert g_items == r_items, "add_item outcomes differ"
    assert [h[0] for h in g_heaps] == [h[0] for h in r_heaps]
    for g, r in zip(g_heaps, r_heaps):
        if g[0] == "ok":
            assert_same_bytes(g[1], r[1])
        else:
            assert g == r, "different exceptions"
    assert_same_bytes(g_total, r_total)


@settings(max_examples=100)
@given(case=send_cases())
def test_packet_generator_identical(case):
    ref = reference()
    _, g_heaps, _ = build_and_send(spead2gpu, case, use_packet_generator=True)
    _, r_heaps, _ = build_and_send(ref, case, use_packet_generator=True)
    assert len(g_heaps) == len(r_heaps)
    for g, r in zip(g_heaps, r_heaps):
        if g[0] == "raise" or r[0] == "raise":  # get_heap itself failed
            assert g == r
            continue
        (_, g_pg), (_, r_pg) = g, r
        assert g_pg[0] == r_pg[0], (g_pg, r_pg)
        if g_pg[0] == "ok":
            assert [type(p) for p in g_pg[1]] == [bytes] * len(g_pg[1])
            assert len(g_pg[1]) == len(r_pg[1])
            for gp, rp in zip(g_pg[1], r_pg[1]):
                assert_same_bytes(gp, rp)
        else:
            assert g_pg == r_pg


@pytest.mark.parametrize("hab", [8, 16, 24, 32, 40, 48, 56])
def test_all_heap_address_bits(hab):
    """Every flavour spead2 accepts encodes identically (small IDs fit all)."""
    ref = reference()
    outs = []
    for mod in (spead2gpu, ref):
        fl = mod.Flavour(4, 64, hab, 0)
        assert fl.heap_address_bits == hab
        assert fl.version == 4 and fl.item_pointer_bits == 64
        heap = mod.send.Heap(fl)
        item = mod.Item(0x10, "x", "small", (), format=[("u", 8)], value=3)
        arr = mod.Item(0x11, "y", "array", (5,), format=[("u", 8)], value=[1, 2, 3, 4, 5])
        heap.add_descriptor(item)
        heap.add_descriptor(arr)
        heap.add_item(item)
        heap.add_item(arr)
        heap.add_end()
        outs.append(send_bytes(mod, [heap], cnts=[5], max_packet_size=200))
    assert_same_bytes(outs[0], outs[1])


def test_descriptor_id_out_of_range():
    ref = reference()
    for mod in (spead2gpu, ref):
        heap = mod.send.Heap(mod.Flavour(4, 64, 56, 0))
        item = mod.Item(0x1000, "x", "big id", (), format=[("u", 8)], value=3)
        with pytest.raises(ValueError):
            heap.add_descriptor(item)


def test_empty_heap_known_bytes(impl):
    """Spec example: an empty heap is one 49-byte packet."""
    data = send_bytes(impl, [impl.send.Heap()], cnts=[1])
    assert data == (bytes.fromhex("5304030500000005"
                                  "8000010000000001" "8000020000000001"
                                  "8000030000000000" "8000040000000001"
                                  "0000000000000000") + b"\0")


def test_single_immediate_known_bytes(impl):
    """Spec example: a single u32 immediate item gives 57 bytes."""
    heap = impl.send.Heap()
    item = impl.Item(0x1000, "x", "", (), format=[("u", 32)], value=7)
    heap.add_item(item)
    data = send_bytes(impl, [heap], cnts=[2])
    assert data.hex() == ("5304030500000006" "8000010000000002" "8000020000000001"
                          "8000030000000000" "8000040000000001" "8010000000000007"
                          "0000000000000000" "00")


def test_packetisation_3000_bytes(impl):
    """Spec example: 3000-byte item with mps=1472 -> payloads 1424, 1432, 144."""
    heap = impl.send.Heap()
    item = impl.Item(0x1000, "x", "", (3000,), dtype=np.uint8,
                     value=np.arange(3000, dtype=np.uint64).astype(np.uint8))
    heap.add_item(item)
    pkts = list(impl.send.PacketGenerator(heap, 1, 1472))
    assert [len(p) for p in pkts] == [1472, 1472, 40 + 144]
    fields = [packet_fields(p) for p in pkts]
    assert [f[2] for f in fields] == [1424, 1432, 144]
    assert [f[1] for f in fields] == [0, 1424, 2856]
    assert [f[0] for f in fields] == [1, 1, 1]
    assert fields[0][3] == [addr(0x1000, 0)]
    assert fields[1][3] == [] and fields[2][3] == []
    assert b"".join(p[40 + 8 * len(f[3]):] for p, f in zip(pkts, fields)) == \
        item.value.tobytes()


def test_max_packet_size_rounded_and_minimum(impl):
    heap = impl.send.Heap()
    heap.add_item(impl.Item(0x1000, "x", "", (500,), dtype=np.uint8,
                            value=np.zeros(500, np.uint8)))
    sizes = [len(p) for p in impl.send.PacketGenerator(heap, 1, 103)]
    assert max(sizes) <= 96  # rounded down to a multiple of 8
    with pytest.raises(ValueError):
        impl.send.PacketGenerator(heap, 1, 55)
    impl.send.PacketGenerator(heap, 1, 56)
    stream = impl.send.BytesStream(impl.ThreadPool(), impl.send.StreamConfig(max_packet_size=55))
    with pytest.raises(ValueError):
        stream.send_heap(heap)


def test_repeat_pointers(impl):
    heap = impl.send.Heap()
    items = [impl.Item(0x1000 + i, f"x{i}", "", (100,), dtype=np.uint8,
                       value=np.full(100, i, np.uint8)) for i in range(3)]
    for it in items:
        heap.add_item(it)
    assert heap.repeat_pointers is False
    heap.repeat_pointers = True
    pkts = list(impl.send.PacketGenerator(heap, 9, 128))
    assert len(pkts) > 2
    for p in pkts:
        assert packet_fields(p)[3] == [addr(0x1000, 0), addr(0x1001, 100), addr(0x1002, 200)]
    with pytest.raises(ValueError):
        list(impl.send.PacketGenerator(heap, 9, 56))


def test_pointer_spill(impl):
    """Many item pointers spill from the first packet into later packets."""
    heap = impl.send.Heap()
    n = 20
    for i in range(n):
        heap.add_item(impl.Item(0x1000 + i, f"x{i}", "", (8,), dtype=np.uint8,
                                value=np.full(8, i, np.uint8)))
    pkts = list(impl.send.PacketGenerator(heap, 1, 96))
    ptrs = [q for p in pkts for q in packet_fields(p)[3]]
    assert ptrs == [addr(0x1000 + i, 8 * i) for i in range(n)]
    assert len(packet_fields(pkts[0])[3]) == (96 - 48) // 8


def test_explicit_cnt_and_sequence_identical():
    ref = reference()
    outs = []
    for mod in (spead2gpu, ref):
        tp = mod.ThreadPool()
        stream = mod.send.BytesStream(tp)
        heap = mod.send.Heap()
        heap.add_item(mod.Item(0x1000, "x", "", (), format=[("u", 8)], value=1))
        stream.send_heap(heap)
        stream.send_heap(heap)
        stream.set_cnt_sequence(100, 7)
        stream.send_heap(heap)
        stream.send_heap(heap, cnt=3)
        stream.send_heap(heap)
        stream.set_cnt_sequence((1 << 40) - 1, 5)  # wraps: low 40 bits kept
        stream.send_heap(heap)
        stream.send_heap(heap)
        data = stream.getvalue()
        outs.append(data)
        cnts = [packet_fields(p)[0] for p in split_packets(data)]
        assert cnts == [1, 2, 100, 3, 107, (1 << 40) - 1, 4]
    assert_same_bytes(outs[0], outs[1])


def test_cnt_out_of_range_raises(impl):
    stream = impl.send.BytesStream(impl.ThreadPool())
    with pytest.raises(OSError):
        stream.send_heap(impl.send.Heap(), cnt=1 << 40)
    with pytest.raises(ValueError):
        stream.set_cnt_sequence(1, 0)
    assert stream.getvalue() == b""


def test_substream_index_out_of_range(impl):
    stream = impl.send.BytesStream(impl.ThreadPool())
    assert stream.num_substreams == 1
    with pytest.raises(OSError):
        stream.send_heap(impl.send.Heap(), substream_index=1)


def test_value_updated_in_place_is_sent(impl):
    """Spec: a single whole-byte u/i field is referenced, so an in-place
    update after building the heap is visible when it is sent."""
    ig = impl.send.ItemGroup()
    item = ig.add_item(0x1000, "x", "", (4,), dtype=np.uint32, value=np.zeros(4, np.uint32))
    heap = ig.get_heap(descriptors="none")
    item.value[:] = [1, 2, 3, 4]
    a = send_bytes(impl, [heap], cnts=[1])
    assert np.array([1, 2, 3, 4], np.uint32).tobytes() in a


@settings(max_examples=40)
@given(heaps=st.lists(st.tuples(st.integers(0, 3000), st.booleans(), st.booleans()),
                      min_size=1, max_size=4),
       mps=st.integers(56, 2000))
def test_raw_heaps_identical(heaps, mps):
    """send.Heap built directly (add_item / add_descriptor / start / end)."""
    ref = reference()
    outs = []
    for mod in (spead2gpu, ref):
        hs = []
        for i, (size, start, end) in enumerate(heaps):
            h = mod.send.Heap()
            if start:
                h.add_start()
            item = mod.Item(0x2000 + i, f"n{i}", "d", (size,), dtype=">u2",
                            value=np.arange(size, dtype=">u2"))
            h.add_descriptor(item)
            h.add_item(item)
            if end:
                h.add_end()
            hs.append(h)
        outs.append(send_bytes(mod, hs, max_packet_size=mps))
    assert_same_bytes(outs[0], outs[1])


def test_descriptor_bytes_known(impl):
    """A format/shape descriptor is a nested single-packet heap (spec §5)."""
    heap = impl.send.Heap()
    d = impl.Descriptor(0x1234, "nm", "ds", (None, 3), format=[("u", 4)])
    heap.add_descriptor(d)
    data = send_bytes(impl, [heap], cnts=[1])
    fields = packet_fields(data)
    assert fields[3] == [addr(5, 0)]
    nested = split_packets(data)[0][48:]
    hab, ptrs, payload, size = parse_packet(nested)
    assert hab == 40 and size == len(nested)
    # name, description, format (4-byte entries), shape (1+5 byte entries)
    assert payload == b"nm" + b"ds" + b"u\0\0\x04" + b"\x01" + b"\0" * 5 + b"\0" + \
        (3).to_bytes(5, "big")
    assert ptrs[:5] == [imm(1, 1), imm(2, len(payload)), imm(3, 0), imm(4, len(payload)),
                        imm(0x14, 0x1234)]


def test_shape_bit_1_and_descriptor_widths(impl):
    fl = impl.Flavour(4, 64, 48, impl.BUG_COMPAT_SHAPE_BIT_1 | impl.BUG_COMPAT_DESCRIPTOR_WIDTHS)
    heap = impl.send.Heap(fl)
    heap.add_descriptor(impl.Descriptor(0x12, "a", "b", (None,), format=[("u", 8)]))
    data = send_bytes(impl, [heap], cnts=[1])
    nested = split_packets(data)[0][48:]
    payload = parse_packet(nested)[2]
    assert payload == b"ab" + b"u\0\0\x08" + b"\x02" + b"\0" * 7


def test_packet_header_bad_packet_builder_selfcheck():
    """The helper builder used elsewhere agrees with a real sender."""
    ref = reference()
    h = ref.send.Heap()
    h.add_item(ref.Item(0x1000, "x", "", (8,), dtype=np.uint8, value=np.arange(8, dtype=np.uint8)))
    data = send_bytes(ref, [h], cnts=[3])
    assert data == packet([imm(1, 3), imm(2, 8), imm(3, 0), imm(4, 8), addr(0x1000, 0)],
                          bytes(range(8)))


def test_large_output_identical_and_prefix_stable():
    """A BytesStream output spanning many storage blocks (64 KiB growing to
    several MiB, the later ones huge-page mapped) is byte-identical to
    spead2's, and getvalue() mid-stream is a prefix of the final value."""
    ref = reference()
    outputs = []
    for mod in (spead2gpu, ref):
        stream = mod.send.BytesStream(mod.ThreadPool(), mod.send.StreamConfig(max_packet_size=8972))
        heap = mod.send.Heap()
        # 777 bytes: packets do not divide the blocks, so every block ends with room to spare
        value = np.arange(333_777, dtype=np.uint32).view(np.uint8)
        heap.add_item(mod.Item(0x1000, "v", "", value.shape, dtype=np.uint8, value=value))
        early = None
        for cnt in range(1, 31):
            stream.send_heap(heap, cnt=cnt)
            if cnt == 3:
                early = stream.getvalue()
        final = stream.getvalue()
        assert final.startswith(early)
        outputs.append(final)
    assert len(outputs[0]) > 38 << 20
    assert_same_bytes(outputs[0], outputs[1])
