"""Interoperability with spead2 in both directions.

spead2 sends -> spead2gpu receives, and spead2gpu sends -> spead2 receives,
with every item value and descriptor checked.  The oracle is spead2 itself
receiving the same bytes.
"""

import numpy as np
import pytest
from hypothesis import given, settings

import spead2gpu
from conftest import (
    assert_item_groups_equal,
    build_and_send,
    describe_value,
    heap_summary,
    item_group_snapshot,
    reference,
    send_bytes,
    send_cases,
    values_equal,
)


def receive_into_item_group(mod, data, bug_compat=0, via="buffer"):
    """Receive ``data`` with ``mod``; return per-heap (summary, updated names,
    ItemGroup snapshot) and the final ItemGroup."""
    tp = mod.ThreadPool()
    stream = mod.recv.Stream(tp, mod.recv.StreamConfig(bug_compat=bug_compat, max_heaps=4),
                             mod.recv.RingStreamConfig(heaps=4))
    if via == "buffer":
        stream.add_buffer_reader(data)
    else:
        from conftest import split_packets
        queue = mod.InprocQueue()
        for pkt in split_packets(data):
            queue.add_packet(pkt)
        queue.stop()
        stream.add_inproc_reader(queue)
    ig = mod.ItemGroup()
    trace = []
    for heap in stream:
        updated = ig.update(heap)
        assert all(isinstance(k, str) for k in updated)
        for name, item in updated.items():
            assert ig[name] is item
        trace.append((heap_summary(mod, heap), sorted(updated), item_group_snapshot(ig)))
        assert len(trace) < 100
    return trace, ig


def compare_traces(got, expected):
    assert len(got) == len(expected), f"{len(got)} heaps received, expected {len(expected)}"
    for i, (g, e) in enumerate(zip(got, expected)):
        assert g[0] == e[0], f"heap {i}: summary differs"
        assert g[1] == e[1], f"heap {i}: updated items {g[1]} != {e[1]}"
        assert g[2] == e[2], f"heap {i}: item group state differs"


@settings(max_examples=150)
@given(case=send_cases())
def test_spead2_to_spead2gpu(case):
    ref = reference()
    _, _, data = build_and_send(ref, case)
    expected, _ = receive_into_item_group(ref, data, case["bug_compat"])
    got, _ = receive_into_item_group(spead2gpu, data, case["bug_compat"])
    compare_traces(got, expected)


@settings(max_examples=150)
@given(case=send_cases())
def test_spead2gpu_to_spead2(case):
    ref = reference()
    _, _, ref_data = build_and_send(ref, case)
    _, _, gpu_data = build_and_send(spead2gpu, case)
    expected, _ = receive_into_item_group(ref, ref_data, case["bug_compat"])
    got, _ = receive_into_item_group(ref, gpu_data, case["bug_compat"])
    compare_traces(got, expected)


@settings(max_examples=30)
@given(case=send_cases(flavours=((40, 0), (48, 7))))
def test_spead2_to_spead2gpu_inproc(case):
    ref = reference()
    _, _, data = build_and_send(ref, case)
    expected, _ = receive_into_item_group(ref, data, case["bug_compat"], via="inproc")
    got, _ = receive_into_item_group(spead2gpu, data, case["bug_compat"], via="inproc")
    compare_traces(got, expected)


# ---------------------------------------------------------------------------
# Explicit items with known values
# ---------------------------------------------------------------------------

def known_items():
    """(name, add_item kwargs, expected received value)."""
    f_arr = np.arange(12, dtype="<f8").reshape(3, 4)
    return [
        ("u8_scalar", dict(shape=(), format=[("u", 8)], value=200), np.uint8(200)),
        ("i16_scalar", dict(shape=(), format=[("i", 16)], value=-300), np.int16(-300)),
        ("u32_imm", dict(shape=(), format=[("u", 32)], value=123456), np.uint32(123456)),
        ("i64", dict(shape=(), format=[("i", 64)], value=-3), np.int64(-3)),
        ("f32", dict(shape=(2,), format=[("f", 32)], value=[1.5, -2.0]),
         np.array([1.5, -2.0], np.float32)),
        ("f64_scalar", dict(shape=(), format=[("f", 64)], value=2.25), np.float64(2.25)),
        ("bool8", dict(shape=(3,), format=[("b", 8)], value=[True, False, True]),
         np.array([True, False, True])),
        ("u4", dict(shape=(5,), format=[("u", 4)], value=[1, 2, 3, 4, 15]),
         np.array([1, 2, 3, 4, 15], dtype=object)),
        ("i12", dict(shape=(3,), format=[("i", 12)], value=[-1, 2, -2048]),
         np.array([-1, 2, -2048], dtype=object)),
        ("i12_scalar", dict(shape=(), format=[("i", 12)], value=-5), -5),
        ("u48", dict(shape=(), format=[("u", 48)], value=2 ** 47 + 3), 2 ** 47 + 3),
        ("b1", dict(shape=(4,), format=[("b", 1)], value=[True, False, True, True]),
         np.array([True, False, True, True], dtype=object)),
        ("string", dict(shape=(None,), format=[("c", 8)], value="hello world"), "hello world"),
        ("bytes_string", dict(shape=(None,), format=[("c", 8)], value=b"raw"), "raw"),
        ("chars2d", dict(shape=(2, 2), format=[("c", 8)],
                         value=np.array([[b"a", b"b"], [b"c", b"d"]])),
         np.array([[b"a", b"b"], [b"c", b"d"]], dtype="S1")),
        ("compound", dict(shape=(2,), format=[("u", 16), ("f", 32)], value=[(1, 2.5), (3, 4.5)]),
         np.array([(1, 2.5), (3, 4.5)], dtype=[("f0", "<u2"), ("f1", "<f4")])),
        ("variable", dict(shape=(None, 3), format=[("i", 32)], value=np.arange(6).reshape(2, 3)),
         np.arange(6, dtype=np.int32).reshape(2, 3)),
        ("np_c", dict(shape=(3, 4), dtype="<f8", value=f_arr), f_arr),
        ("np_fortran", dict(shape=(3, 4), dtype=">i4", order="F",
                            value=np.arange(12, dtype=">i4").reshape(3, 4)),
         np.arange(12, dtype=np.int32).reshape(3, 4)),
        ("np_scalar", dict(shape=(), dtype=np.int16, value=np.int16(-4)), np.int16(-4)),
        ("np_u8_big", dict(shape=(), dtype=">u8", value=2 ** 63 + 1), np.uint64(2 ** 63 + 1)),
        ("np_complex", dict(shape=(2,), dtype="<c8", value=np.array([1 + 2j, 3 - 4j], "<c8")),
         np.array([1 + 2j, 3 - 4j], np.complex64)),
        ("np_struct", dict(shape=(2,), dtype=[("a", "<i2"), ("b", "<f4")],
                           value=np.array([(1, 2.0), (3, 4.0)], [("a", "<i2"), ("b", "<f4")])),
         np.array([(1, 2.0), (3, 4.0)], [("a", "<i2"), ("b", "<f4")])),
        ("large", dict(shape=(5000,), dtype=np.uint8,
                       value=(np.arange(5000) % 251).astype(np.uint8)),
         (np.arange(5000) % 251).astype(np.uint8)),
    ]


FLAVOURS = [(40, 0), (48, 0), (40, 7), (48, 7)]


@pytest.mark.parametrize("hab,bug_compat", FLAVOURS)
@pytest.mark.parametrize("direction", ["spead2->spead2gpu", "spead2gpu->spead2",
                                       "spead2gpu->spead2gpu"])
def test_known_values(direction, hab, bug_compat):
    ref = reference()
    sender, receiver = {"spead2->spead2gpu": (ref, spead2gpu),
                        "spead2gpu->spead2": (spead2gpu, ref),
                        "spead2gpu->spead2gpu": (spead2gpu, spead2gpu)}[direction]
    ig = sender.send.ItemGroup(flavour=sender.Flavour(4, 64, hab, bug_compat))
    items = known_items()
    for i, (name, kw, _) in enumerate(items):
        ig.add_item(0x1000 + i, name, "description of " + name, **kw)
    heaps = [ig.get_start(), ig.get_heap(), ig.get_end()]
    data = send_bytes(sender, heaps, max_packet_size=1472)
    trace, rig = receive_into_item_group(receiver, data, bug_compat)
    # the end heap is a stop heap: not delivered
    assert len(trace) == 2
    assert trace[0][0][4] is True  # is_start_of_stream
    for i, (name, kw, expected) in enumerate(items):
        item = rig[name]
        assert item.id == 0x1000 + i
        assert item.description == "description of " + name
        assert values_equal(np.ascontiguousarray(item.value)
                            if isinstance(item.value, np.ndarray) else item.value,
                            expected), \
            f"{name}: got {describe_value(item.value)}, expected {describe_value(expected)}"
        if "dtype" in kw:
            assert item.format is None
            assert item.order == kw.get("order", "C")
        else:
            assert [tuple(f) for f in item.format] == kw["format"]
            assert tuple(item.shape) == kw["shape"]
    # Same outcome as spead2 receiving the same bytes.
    _, ref_ig = receive_into_item_group(ref, data, bug_compat)
    assert_item_groups_equal(rig, ref_ig)


@pytest.mark.parametrize("hab", [40, 48])
def test_descriptors_round_trip(hab):
    """Heap.get_descriptors() exposes the same RawDescriptors as spead2."""
    ref = reference()
    out = []
    for mod in (spead2gpu, ref):
        ig = mod.send.ItemGroup(flavour=mod.Flavour(4, 64, hab, 0))
        ig.add_item(0x1000, "fmt", "format item", (None, 2), format=[("u", 12), ("i", 4)])
        ig.add_item(0x1001, "npy", "numpy item", (3, 4), dtype=">f4", order="F")
        ig.add_item(0x1002, "str", "", (None,), format=[("c", 8)])
        heap = ig.get_heap(descriptors="all", data="none")
        data = send_bytes(mod, [heap])
        stream = mod.recv.Stream(mod.ThreadPool())
        stream.add_buffer_reader(data)
        heaps = list(stream)
        assert len(heaps) == 1
        descs = heaps[0].get_descriptors()
        assert [d.id for d in descs] == [0x1000, 0x1001, 0x1002]
        by_id = {d.id: d for d in descs}
        assert by_id[0x1000].name == b"fmt" and by_id[0x1000].description == b"format item"
        assert list(map(tuple, by_id[0x1000].format)) == [("u", 12), ("i", 4)]
        assert list(by_id[0x1000].shape) == [None, 2]
        assert by_id[0x1000].numpy_header == b""
        assert by_id[0x1001].numpy_header == \
            b"{'descr': '>f4', 'fortran_order': True, 'shape': (3, 4)}"
        assert by_id[0x1001].format == [] and list(by_id[0x1001].shape) == []
        out.append([(d.id, d.name, d.description, list(map(tuple, d.format)), list(d.shape),
                     d.numpy_header) for d in descs])
        rig = mod.ItemGroup()
        assert rig.update(heaps[0]) == {}
        assert sorted(rig.keys()) == ["fmt", "npy", "str"]
        assert rig["npy"].order == "F" and rig["npy"].dtype == np.dtype(">f4")
    assert out[0] == out[1]


def test_swap_endian_numpy_header(impl):
    """BUG_COMPAT_SWAP_ENDIAN swaps the numpy header byte order both ways."""
    fl = impl.Flavour(4, 64, 40, impl.BUG_COMPAT_SWAP_ENDIAN)
    heap = impl.send.Heap(fl)
    heap.add_descriptor(impl.Descriptor(0x1000, "x", "", (2,), dtype="<u2"))
    data = send_bytes(impl, [heap])
    assert b"'descr': '>u2'" in data
    stream = impl.recv.Stream(impl.ThreadPool(),
                              impl.recv.StreamConfig(bug_compat=impl.BUG_COMPAT_SWAP_ENDIAN))
    stream.add_buffer_reader(data)
    ig = impl.ItemGroup()
    for heap in stream:
        ig.update(heap)
    assert ig["x"].dtype == np.dtype("<u2")
