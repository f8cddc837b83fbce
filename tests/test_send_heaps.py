"""HeapReference / HeapReferenceList / send_heaps with GroupMode."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import spead2gpu
from conftest import packet_fields, reference, split_packets


def make_heap(mod, size, fill=7, hab=40):
    heap = mod.send.Heap(mod.Flavour(4, 64, hab, 0))
    heap.add_item(mod.Item(0x1000, "x", "", (size,), dtype=np.uint8,
                           value=np.full(size, fill, np.uint8)))
    return heap


def send_group(mod, sizes, mode, cnts=None, mps=1024, as_list=False, sequence=None):
    tp = mod.ThreadPool()
    stream = mod.send.BytesStream(tp, mod.send.StreamConfig(max_packet_size=mps, max_heaps=8))
    if sequence:
        stream.set_cnt_sequence(*sequence)
    heaps = [make_heap(mod, s, fill=i) for i, s in enumerate(sizes)]
    refs = [mod.send.HeapReference(h, cnt=-1 if cnts is None else cnts[i])
            for i, h in enumerate(heaps)]
    if as_list:
        refs = mod.send.HeapReferenceList(refs)
    n = stream.send_heaps(refs, getattr(mod.send.GroupMode, mode))
    data = stream.getvalue()
    assert n == len(data)
    return data


def cnt_order(data):
    return [packet_fields(p)[0] for p in split_packets(data)]


@pytest.mark.parametrize("mode,expected", [
    ("ROUND_ROBIN", [10, 11, 12, 10, 12, 10, 12, 10]),
    ("SERIAL", [10, 10, 10, 10, 11, 12, 12, 12]),
])
def test_group_mode_packet_order(impl, mode, expected):
    data = send_group(impl, [3000, 100, 2000], mode, cnts=[10, 11, 12])
    assert cnt_order(data) == expected


@pytest.mark.parametrize("mode", ["ROUND_ROBIN", "SERIAL"])
@pytest.mark.parametrize("as_list", [False, True])
def test_send_heaps_identical_to_spead2(mode, as_list):
    ref = reference()
    sizes = [5000, 1, 0, 1500, 64, 9000]
    a = send_group(spead2gpu, sizes, mode, as_list=as_list, sequence=(50, 3))
    b = send_group(ref, sizes, mode, as_list=as_list, sequence=(50, 3))
    assert cnt_order(a) == cnt_order(b)
    assert a == b


@settings(max_examples=40)
@given(sizes=st.lists(st.integers(0, 5000), min_size=1, max_size=6),
       mode=st.sampled_from(["ROUND_ROBIN", "SERIAL"]),
       mps=st.sampled_from([64, 200, 1472, 9000]),
       explicit=st.booleans())
def test_send_heaps_hypothesis(sizes, mode, mps, explicit):
    ref = reference()
    cnts = [1000 + 3 * i for i in range(len(sizes))] if explicit else None
    a = send_group(spead2gpu, sizes, mode, cnts=cnts, mps=mps)
    b = send_group(ref, sizes, mode, cnts=cnts, mps=mps)
    assert a == b


def test_heap_reference_attributes(impl):
    heap = impl.send.Heap()
    r = impl.send.HeapReference(heap)
    assert r.heap is heap
    assert (r.cnt, r.substream_index, r.rate) == (-1, 0, -1.0)
    r2 = impl.send.HeapReference(heap, cnt=3, substream_index=1, rate=2.0)
    assert (r2.cnt, r2.substream_index, r2.rate) == (3, 1, 2.0)
    with pytest.raises(TypeError):
        impl.send.HeapReference(heap, 3)  # keyword-only


def test_heap_reference_list(impl):
    heaps = [impl.send.Heap() for _ in range(3)]
    lst = impl.send.HeapReferenceList([impl.send.HeapReference(h, cnt=i + 1)
                                       for i, h in enumerate(heaps)])
    assert len(lst) == 3
    sub = lst[1:]
    assert isinstance(sub, impl.send.HeapReferenceList)
    assert len(sub) == 2
    assert len(lst[::2]) == 2
    stream = impl.send.BytesStream(impl.ThreadPool())
    stream.send_heaps(sub, impl.send.GroupMode.SERIAL)
    assert cnt_order(stream.getvalue()) == [2, 3]
    # a list can be sent repeatedly
    stream.send_heaps(lst, impl.send.GroupMode.ROUND_ROBIN)
    assert cnt_order(stream.getvalue()) == [2, 3, 1, 2, 3]


def test_send_heaps_empty_raises(impl):
    stream = impl.send.BytesStream(impl.ThreadPool())
    with pytest.raises(OSError):
        stream.send_heaps([], impl.send.GroupMode.SERIAL)


def test_send_heaps_substreams_inproc(impl):
    tp = impl.ThreadPool()
    queues = [impl.InprocQueue(), impl.InprocQueue()]
    sender = impl.send.InprocStream(tp, queues, impl.send.StreamConfig(max_packet_size=512))
    heaps = [make_heap(impl, 2000, fill=i) for i in range(4)]
    refs = [impl.send.HeapReference(h, cnt=i + 1, substream_index=i % 2)
            for i, h in enumerate(heaps)]
    sender.send_heaps(refs, impl.send.GroupMode.ROUND_ROBIN)
    for q in queues:
        q.stop()
    results = []
    for q in queues:
        s = impl.recv.Stream(impl.ThreadPool(), impl.recv.StreamConfig(max_heaps=4),
                             impl.recv.RingStreamConfig(heaps=8))
        s.add_inproc_reader(q)
        results.append([(h.cnt, bytes(memoryview(h.get_items()[0]))) for h in s])
    assert [[c for c, _ in r] for r in results] == [[1, 3], [2, 4]]
    for r in results:
        for cnt, payload in r:
            assert payload == bytes([cnt - 1]) * 2000


def test_send_heaps_more_than_max_heaps(impl):
    stream = impl.send.BytesStream(impl.ThreadPool(), impl.send.StreamConfig(max_heaps=2))
    refs = [impl.send.HeapReference(impl.send.Heap()) for _ in range(3)]
    with pytest.raises(BlockingIOError):
        stream.send_heaps(refs, impl.send.GroupMode.SERIAL)
    assert stream.getvalue() == b""
    stream.send_heaps(refs[:2], impl.send.GroupMode.SERIAL)
    assert cnt_order(stream.getvalue()) == [1, 2]


def test_send_heaps_out_of_range_cnt(impl):
    stream = impl.send.BytesStream(impl.ThreadPool())
    refs = [impl.send.HeapReference(impl.send.Heap(), cnt=1 << 40)]
    with pytest.raises(OSError):
        stream.send_heaps(refs, impl.send.GroupMode.SERIAL)
