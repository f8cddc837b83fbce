"""Receive semantics (reassembly, eviction, stop/start items, raw items, stats) on hand-built packets.

Tests taking the ``impl`` fixture run against both spead2gpu and spead2 with
hard-coded expectations; the scenario table is additionally compared
directly between the two implementations.
"""

import gc
import select
import time

import numpy as np
import pytest

import spead2gpu
from conftest import (
    DETERMINISTIC_STATS,
    addr,
    heap_packet,
    heap_packets,
    imm,
    receive,
    receive_summary,
    reference,
    run_with_timeout,
    stats_dict,
    stop_packet,
)

P = bytes(range(256)) * 4  # 1 KiB payload
NC = dict(contiguous_only=False)
NCK = dict(contiguous_only=False, incomplete_keep_payload_ranges=True)


def A(c=1):
    return heap_packets(c, P, 256)


def kinds(heaps, mod):
    return [("inc" if isinstance(h, mod.recv.IncompleteHeap) else "heap", h.cnt) for h in heaps]


# ---------------------------------------------------------------------------
# Scenario table, compared against spead2
# ---------------------------------------------------------------------------

def _items3():
    return [addr(0x1000, 0), addr(0x1001, 100), addr(0x1002, 700), imm(0x1003, 42), imm(6, 0)]


def scenarios():
    a, b, c = A(1), A(2), A(3)
    it = heap_packets(1, P, 256, items=_items3())
    un = heap_packets(1, P, 256, items=_items3(), sized=False)
    single = [heap_packet(10 + i, 0, bytes([i]) * 50, 50, [addr(0x1000, 0), imm(0x1001, i)])
              for i in range(8)]
    inc9 = heap_packet(9, 0, bytes(10), 20, [addr(0x1000, 0)])
    return {
        "in_order": (a + b, {}, {}),
        "reordered_in_order_mode": ([a[0], a[2], a[1], a[3]], {}, NCK),
        "reordered_out_of_order": ([a[0], a[2], a[1], a[3]], dict(allow_out_of_order=True), NCK),
        "reversed_out_of_order": (a[::-1] + b[::-1], dict(allow_out_of_order=True), NCK),
        "missing_middle": ([a[0], a[1], a[3]] + b, {}, NCK),
        "missing_middle_no_ranges": ([a[0], a[1], a[3]] + b, {}, NC),
        "missing_middle_contiguous_only": ([a[0], a[1], a[3]] + b, {}, {}),
        "interleave_max_heaps_1": ([x for pair in zip(a, b) for x in pair], dict(max_heaps=1), NCK),
        "interleave_max_heaps_2": ([x for pair in zip(a, b) for x in pair], dict(max_heaps=2), NCK),
        "interleave_3_max_heaps_2": ([x for t in zip(a, b, c) for x in t], dict(max_heaps=2), NCK),
        "substreams": ([x for pair in zip(a, b) for x in pair],
                       dict(max_heaps=1, substreams=2), NCK),
        "substreams_collide": ([x for t in zip(a, c) for x in t],
                               dict(max_heaps=1, substreams=2), NCK),
        "unsized_complete": (un[:3], dict(allow_out_of_order=True), NCK),
        "unsized_gap": ([un[0], un[1], un[3]], dict(allow_out_of_order=True), NCK),
        "unsized_in_order": (un, {}, NCK),
        "unsized_disallowed": (un + b, dict(allow_unsized_heaps=False), NCK),
        "start_not_zero": (a[1:] + b, {}, NCK),
        "start_not_zero_ooo": (a[1:] + b, dict(allow_out_of_order=True), NCK),
        "duplicate": ([a[0], a[1], a[1], a[2], a[3]], {}, NCK),
        "duplicate_ooo": ([a[0], a[1], a[1], a[2], a[3]], dict(allow_out_of_order=True), NCK),
        "items_incomplete": ([it[0], it[1], it[3]], {}, NCK),
        "items_incomplete_ooo": ([it[0], it[2], it[3]], dict(allow_out_of_order=True), NCK),
        "items_missing_first": ([it[1], it[2], it[3]], dict(allow_out_of_order=True), NCK),
        "items_complete": (it, {}, {}),
        "single_packet_heaps": (single, {}, {}),
        "single_packet_evict": (single[:2] + [inc9] + single[2:], dict(max_heaps=2), NC),
        "stop_item": (a + [stop_packet(50)] + b, {}, {}),
        "stop_item_ignored": (a + [stop_packet(50)] + b, dict(stop_on_stop_item=False), {}),
        "stop_item_flushes": ([a[0], b[0], stop_packet(50), a[1]], {}, NCK),
        "stop_in_multi_packet_heap": ([a[0], heap_packet(1, 256, P[256:512], 1024, [imm(6, 2)]),
                                       a[2], a[3]], {}, NCK),
        "start_item": ([heap_packet(5, 0, b"\0", 1, [imm(6, 0)])] + a, {}, {}),
        "hab48": (heap_packets(1, P, 256, hab=48) + heap_packets(2, P, 100, hab=48), {}, {}),
        "mixed_flavours": (heap_packets(1, P, 256, hab=48) + heap_packets(2, P, 100, hab=40), {}, {}),
        "immediates_sorted": ([heap_packet(1, 0, bytes(16), 16,
                                           [imm(0x1001, 0x123456789a), imm(0x1002, 5),
                                            addr(0x1000, 0), addr(0x1003, 10), imm(0x1004, 0)])],
                              {}, {}),
        "zero_length_items": ([heap_packet(1, 0, bytes(16), 16,
                                           [addr(0x1000, 0), addr(0x1001, 8), addr(0x1002, 8),
                                            addr(0x1003, 16), addr(0, 12)])], {}, {}),
        "duplicate_pointers": ([heap_packet(1, 0, bytes(range(16)), 16,
                                            [addr(0x1000, 0), addr(0x1001, 8)]),
                                heap_packet(2, 0, P[:64], 128, [addr(0x1000, 0)]),
                                heap_packet(2, 64, P[64:128], 128, [addr(0x1000, 0)])],
                               {}, {}),
        "flush_order_after_wrap": (A(1) + [A(2)[0], A(3)[0]], dict(max_heaps=2), NCK),
        "flush_order_after_wrap_3": (A(7) + [A(1)[0], A(2)[0], A(3)[0]], dict(max_heaps=3), NCK),
        "many_heaps_small_ring": ([p for i in range(40) for p in heap_packets(i, P[:100], 40)],
                                  {}, dict(heaps=1)),
    }


SCENARIOS = scenarios()


@pytest.mark.parametrize("via", ["buffer", "inproc"])
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_matches_spead2(name, via):
    ref = reference()
    pkts, config, ring = SCENARIOS[name]
    got = receive_summary(spead2gpu, pkts, config, ring, via)
    expected = receive_summary(ref, pkts, config, ring, via)
    assert got[1] == expected[1], f"stats differ: {got[1]} != {expected[1]}"
    assert [s[:2] for s in got[0]] == [s[:2] for s in expected[0]], "heap kinds/cnts differ"
    for g, e in zip(got[0], expected[0]):
        assert g == e


# ---------------------------------------------------------------------------
# Hard-coded expectations (checked on both implementations)
# ---------------------------------------------------------------------------

def test_in_order_basic(impl):
    heaps, stream = receive(impl, A(1) + A(2))
    assert kinds(heaps, impl) == [("heap", 1), ("heap", 2)]
    for h in heaps:
        items = h.get_items()
        assert [i.id for i in items] == [0x1000]
        assert bytes(memoryview(items[0])) == P
        assert h.flavour == impl.Flavour()
        assert not h.is_start_of_stream() and not h.is_end_of_stream()
    st = stream.stats
    assert stats_dict(st) == dict(heaps=2, incomplete_heaps_evicted=0,
                                  incomplete_heaps_flushed=0, packets=8,
                                  single_packet_heaps=0)


def test_out_of_order(impl):
    a = A(1)
    pkts = [a[0], a[2], a[1], a[3]]
    heaps, stream = receive(impl, pkts, ring=NCK)
    assert kinds(heaps, impl) == [("inc", 1)]
    h = heaps[0]
    assert (h.heap_length, h.received_length, h.payload_ranges) == (1024, 512, [(0, 512)])
    assert stream.stats["incomplete_heaps_flushed"] == 1
    heaps, _ = receive(impl, pkts, config=dict(allow_out_of_order=True), ring=NCK)
    assert kinds(heaps, impl) == [("heap", 1)]
    assert bytes(memoryview(heaps[0].get_items()[0])) == P


def test_incomplete_heap_fields(impl):
    items = [addr(0x1000, 0), addr(0x1001, 100), imm(0x1003, 42), imm(6, 0)]
    it = heap_packets(7, P, 256, items=items)
    heaps, _ = receive(impl, [it[0], it[2], it[3]], config=dict(allow_out_of_order=True),
                       ring=NCK)
    assert len(heaps) == 1
    h = heaps[0]
    assert isinstance(h, impl.recv.IncompleteHeap)
    assert any(c.__name__ == "HeapBase" and c in impl.recv.Heap.__mro__ for c in type(h).__mro__)
    assert not isinstance(h, impl.recv.Heap)
    assert h.cnt == 7
    assert h.heap_length == 1024
    assert h.received_length == 768
    assert h.payload_ranges == [(0, 256), (512, 1024)]
    assert h.is_start_of_stream()
    # only immediate items are exposed for incomplete heaps
    assert sorted((i.id, i.immediate_value) for i in h.get_items()) == [(6, 0), (0x1003, 42)]
    # without incomplete_keep_payload_ranges the list is empty
    heaps, _ = receive(impl, [it[0], it[2], it[3]], config=dict(allow_out_of_order=True),
                       ring=NC)
    assert heaps[0].payload_ranges == []
    assert heaps[0].received_length == 768


def test_contiguous_only_drops_incomplete(impl):
    a = A(1)
    heaps, stream = receive(impl, [a[0], a[1], a[3]] + A(2))
    assert kinds(heaps, impl) == [("heap", 2)]
    assert stream.stats["incomplete_heaps_flushed"] == 1
    assert stream.stats["heaps"] == 2


def test_eviction(impl):
    a, b = A(1), A(2)
    inter = [x for pair in zip(a, b) for x in pair]
    heaps, stream = receive(impl, inter, config=dict(max_heaps=1), ring=NCK)
    assert kinds(heaps, impl) == [("inc", 1), ("heap", 2)]
    assert heaps[0].received_length == 256
    assert stream.stats["incomplete_heaps_evicted"] == 1
    assert stream.stats["incomplete_heaps_flushed"] == 0
    heaps, stream = receive(impl, inter, config=dict(max_heaps=2), ring=NCK)
    assert kinds(heaps, impl) == [("heap", 1), ("heap", 2)]
    assert stream.stats["incomplete_heaps_evicted"] == 0


def test_flush_order_oldest_first(impl):
    """Live heaps flushed at the end of the stream come out oldest first, also
    after the live-heap slots have wrapped around."""
    pkts = A(7) + A(8) + [A(1)[0], A(2)[0], A(3)[0]]
    heaps, stream = receive(impl, pkts, config=dict(max_heaps=3), ring=NCK)
    assert kinds(heaps, impl) == [("heap", 7), ("heap", 8), ("inc", 1), ("inc", 2), ("inc", 3)]
    assert stream.stats["incomplete_heaps_flushed"] == 3


def test_substreams(impl):
    a, b, c = A(1), A(2), A(3)
    # cnt % 2 differs: separate substreams, no eviction
    heaps, stream = receive(impl, [x for p in zip(a, b) for x in p],
                            config=dict(max_heaps=1, substreams=2), ring=NCK)
    assert kinds(heaps, impl) == [("heap", 1), ("heap", 2)]
    # cnt 1 and 3 share substream 1: eviction
    heaps, stream = receive(impl, [x for p in zip(a, c) for x in p],
                            config=dict(max_heaps=1, substreams=2), ring=NCK)
    assert stream.stats["incomplete_heaps_evicted"] == 1
    assert ("heap", 3) in kinds(heaps, impl)


def test_unsized_heaps(impl):
    items = [addr(0x1000, 0), addr(0x1001, 100), addr(0x1002, 700)]
    un = heap_packets(1, P, 256, items=items, sized=False)
    heaps, stream = receive(impl, un[:3], ring=NCK)
    # contiguous at stop: delivered as a complete Heap, counted as flushed
    assert kinds(heaps, impl) == [("heap", 1)]
    assert [(i.id, len(memoryview(i))) for i in heaps[0].get_items()] == \
        [(0x1000, 100), (0x1001, 600), (0x1002, 68)]
    assert stream.stats["incomplete_heaps_flushed"] == 1
    heaps, stream = receive(impl, [un[0], un[1], un[3]], config=dict(allow_out_of_order=True),
                            ring=NCK)
    assert kinds(heaps, impl) == [("inc", 1)]
    assert heaps[0].heap_length == -1
    assert heaps[0].payload_ranges == [(0, 512), (768, 1024)]
    heaps, stream = receive(impl, un + A(2), config=dict(allow_unsized_heaps=False), ring=NCK)
    assert kinds(heaps, impl) == [("heap", 2)]
    assert stream.stats["packets"] == 8


def test_stop_item(impl):
    a, b = A(1), A(2)
    heaps, stream = receive(impl, a + [stop_packet(9)] + b)
    assert kinds(heaps, impl) == [("heap", 1)]
    assert stream.stats["heaps"] == 1
    assert stream.stats["packets"] == 5  # includes the stop packet
    heaps, stream = receive(impl, a + [stop_packet(9)] + b,
                            config=dict(stop_on_stop_item=False))
    assert kinds(heaps, impl) == [("heap", 1), ("heap", 9), ("heap", 2)]
    assert heaps[1].is_end_of_stream() and not heaps[1].is_start_of_stream()
    assert [(i.id, i.immediate_value) for i in heaps[1].get_items()] == [(6, 2)]
    # live heaps are flushed when the stop item arrives
    heaps, stream = receive(impl, [a[0], b[0], stop_packet(9), a[1]], ring=NCK)
    assert kinds(heaps, impl) == [("inc", 1), ("inc", 2)]
    assert stream.stats["incomplete_heaps_flushed"] == 2


def test_start_item(impl):
    heaps, _ = receive(impl, [heap_packet(5, 0, b"\0", 1, [imm(6, 0)])])
    assert len(heaps) == 1
    assert heaps[0].is_start_of_stream() and not heaps[0].is_end_of_stream()


def test_raw_items(impl):
    pkt = heap_packet(3, 0, bytes(range(20)), 20,
                      [addr(0x1000, 0), imm(0x1001, 0x123456789a), imm(0x1002, 5),
                       addr(0x1003, 10)])
    heaps, _ = receive(impl, [pkt])
    h = heaps[0]
    assert h.cnt == 3
    items = h.get_items()
    # sorted by (immediate flag | address)
    assert [i.id for i in items] == [0x1000, 0x1003, 0x1002, 0x1001]
    assert [i.is_immediate for i in items] == [False, False, True, True]
    assert items[2].immediate_value == 5
    assert items[3].immediate_value == 0x123456789a
    mv = memoryview(items[3])
    assert (mv.format, mv.itemsize, mv.shape, mv.nbytes) == ("B", 1, (5,), 5)
    assert bytes(mv) == bytes.fromhex("123456789a")
    assert bytes(memoryview(items[0])) == bytes(range(10))
    assert bytes(memoryview(items[1])) == bytes(range(10, 20))
    arr = np.asarray(items[1])
    assert arr.dtype == np.uint8 and arr.shape == (10,)
    # The buffer keeps the heap alive
    del h, items, heaps, mv
    gc.collect()
    assert arr.tolist() == list(range(10, 20))


def test_raw_item_hab48(impl):
    pkt = heap_packet(3, 0, bytes(8), 8, [imm(0x1001, 0xabcdef012345, 48), addr(0x1000, 0, 48)],
                      hab=48)
    heaps, _ = receive(impl, [pkt])
    h = heaps[0]
    assert h.flavour.heap_address_bits == 48
    imms = [i for i in h.get_items() if i.is_immediate]
    assert bytes(memoryview(imms[0])) == bytes.fromhex("abcdef012345")


def test_ringbuffer_get_nowait_fd(impl):
    tp = impl.ThreadPool()
    queue = impl.InprocQueue()
    stream = impl.recv.Stream(tp, impl.recv.StreamConfig(), impl.recv.RingStreamConfig(heaps=3))
    assert stream.ringbuffer.capacity() == 3
    assert stream.ringbuffer.size() == 0
    assert isinstance(stream.ringbuffer, impl.recv.Stream.Ringbuffer)
    assert isinstance(stream.fd, int) and stream.fd >= 0
    assert stream.ring_config.heaps == 3
    stream.add_inproc_reader(queue)
    with pytest.raises(impl.Empty):
        stream.get_nowait()
    assert select.select([stream.fd], [], [], 0)[0] == []
    for c in range(1, 4):
        for p in heap_packets(c, bytes(100), 100):
            queue.add_packet(p)
    deadline = time.monotonic() + 10
    while stream.ringbuffer.size() < 3 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert stream.ringbuffer.size() == 3
    assert select.select([stream.fd], [], [], 0)[0] == [stream.fd]
    assert stream.get_nowait().cnt == 1
    assert stream.ringbuffer.size() == 2
    assert stream.get().cnt == 2
    queue.stop()
    assert [h.cnt for h in stream] == [3]
    with pytest.raises(impl.Stopped):
        stream.get_nowait()
    with pytest.raises(impl.Stopped):
        stream.get()
    # fd stays readable once stopped so that event loops wake up
    assert select.select([stream.fd], [], [], 0)[0] == [stream.fd]
    stream.stop()  # waits for the reader: statistics are final afterwards
    assert stream.stats.heaps == 3


def test_get_blocks_until_data(impl):
    tp = impl.ThreadPool()
    queue = impl.InprocQueue()
    stream = impl.recv.Stream(tp)
    stream.add_inproc_reader(queue)

    import threading

    def feed():
        time.sleep(0.1)
        for p in heap_packets(4, bytes(10), 10):
            queue.add_packet(p)

    t = threading.Thread(target=feed)
    t.start()
    heap = run_with_timeout(stream.get, 10)
    t.join()
    assert heap.cnt == 4
    stream.stop()
    with pytest.raises(impl.Stopped):
        stream.get()


def test_stop_with_blocked_worker(impl):
    """stop() must not deadlock while the worker waits on a full ring."""
    data = b"".join(p for c in range(1, 21) for p in heap_packets(c, bytes(64), 64))
    stream = impl.recv.Stream(impl.ThreadPool(), impl.recv.StreamConfig(),
                              impl.recv.RingStreamConfig(heaps=2))
    stream.add_buffer_reader(data)
    assert run_with_timeout(stream.get, 10).cnt == 1
    # Eventually the ring holds heaps 2 and 3 and the worker blocks on heap 4.
    deadline = time.monotonic() + 10
    while ((stream.ringbuffer.size() < 2 or stream.stats.worker_blocked < 1)
           and time.monotonic() < deadline):
        time.sleep(0.001)
    assert stream.ringbuffer.size() == 2
    assert stream.stats.worker_blocked >= 1
    run_with_timeout(stream.stop, 10)
    rest = run_with_timeout(lambda: [h.cnt for h in stream], 10)
    assert rest == [2, 3]
    assert stream.stats.worker_blocked >= 1
    run_with_timeout(stream.stop, 10)  # idempotent


def test_explicit_start(impl):
    data = b"".join(p for c in range(1, 4) for p in heap_packets(c, bytes(64), 64))
    stream = impl.recv.Stream(impl.ThreadPool(), impl.recv.StreamConfig(explicit_start=True))
    stream.add_buffer_reader(data)
    time.sleep(0.05)
    with pytest.raises(impl.Empty):
        stream.get_nowait()
    stream.start()
    assert [h.cnt for h in run_with_timeout(lambda: list(stream), 10)] == [1, 2, 3]


def test_stop_before_reading(impl):
    stream = impl.recv.Stream(impl.ThreadPool())
    stream.stop()
    assert list(stream) == []
    with pytest.raises(impl.Stopped):
        stream.get_nowait()


def test_many_heaps_iteration(impl):
    n = 500
    data = b"".join(p for c in range(n) for p in heap_packets(c, bytes([c % 256]) * 300, 128))
    heaps, stream = receive(impl, data, ring=dict(heaps=2))
    assert [h.cnt for h in heaps] == list(range(n))
    for h in heaps[::37]:
        assert bytes(memoryview(h.get_items()[0])) == bytes([h.cnt % 256]) * 300
    assert stream.stats["heaps"] == n
    assert stream.stats["packets"] == 3 * n


def test_heap_descriptors_and_item_group(impl):
    ig = impl.send.ItemGroup()
    ig.add_item(0x1000, "ts", "timestamp", (), format=[("u", 48)], value=12345)
    ig.add_item(0x1001, "data", "samples", (16,), dtype=np.int8, value=np.arange(16, dtype=np.int8))
    stream_out = impl.send.BytesStream(impl.ThreadPool())
    stream_out.send_heap(ig.get_heap())
    heaps, _ = receive(impl, stream_out.getvalue())
    h = heaps[0]
    descs = h.get_descriptors()
    assert sorted(d.id for d in descs) == [0x1000, 0x1001]
    # DESCRIPTOR items are consumed by get_descriptors; only data items remain
    assert sorted(i.id for i in h.get_items()) == [0x1000, 0x1001]
    rig = impl.ItemGroup()
    updated = rig.update(h)
    assert sorted(updated) == ["data", "ts"]
    assert rig["ts"].value == 12345
    assert rig["data"].value.tolist() == list(range(16))


# ---------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------

CORE_STATS = ["heaps", "incomplete_heaps_evicted", "incomplete_heaps_flushed", "packets",
              "batches", "max_batch", "single_packet_heaps", "search_dist", "worker_blocked"]


def test_stat_indices(impl):
    idx = impl.recv.stream_stat_indices
    assert [idx.HEAPS, idx.INCOMPLETE_HEAPS_EVICTED, idx.INCOMPLETE_HEAPS_FLUSHED, idx.PACKETS,
            idx.BATCHES, idx.MAX_BATCH, idx.SINGLE_PACKET_HEAPS, idx.SEARCH_DIST,
            idx.WORKER_BLOCKED] == list(range(9))
    cfg = impl.recv.StreamConfig()
    assert [cfg.get_stat_index(n) for n in CORE_STATS] == list(range(9))
    assert [s.name for s in cfg.stats] == CORE_STATS
    modes = [s.mode for s in cfg.stats]
    M = impl.recv.StreamStatConfig.Mode
    assert modes == [M.COUNTER] * 5 + [M.MAXIMUM] + [M.COUNTER] * 3


def test_stats_access(impl):
    cfg = impl.recv.StreamConfig()
    assert cfg.next_stat_index() == 9
    M = impl.recv.StreamStatConfig.Mode
    assert cfg.add_stat("test.counter") == 9
    assert cfg.add_stat("test.max", M.MAXIMUM) == 10
    assert cfg.next_stat_index() == 11
    assert cfg.get_stat_index("test.max") == 10
    with pytest.raises(ValueError):
        cfg.add_stat("heaps")
    with pytest.raises(ValueError):
        cfg.add_stat("test.counter")
    with pytest.raises(IndexError):
        cfg.get_stat_index("nope")
    assert [(s.name, s.mode) for s in cfg.stats][9:] == [("test.counter", M.COUNTER),
                                                         ("test.max", M.MAXIMUM)]

    data = b"".join(A(1) + A(2) + [heap_packet(3, 0, b"x", 1)])
    stream = impl.recv.Stream(impl.ThreadPool(), cfg)
    stream.add_buffer_reader(data)
    assert len(list(stream)) == 3
    stream.stop()
    st = stream.stats
    assert isinstance(st, impl.recv.StreamStats)
    names = list(st)
    # The config's statistics, at their indices.  spead2gpu may append its own
    # statistics after them (named "spead2gpu.*"), as spead2's chunk streams
    # append theirs; spead2 code that looks statistics up by name or by the
    # index returned from add_stat is unaffected.
    assert names[:11] == CORE_STATS + ["test.counter", "test.max"]
    assert all(n.startswith("spead2gpu.") for n in names[11:]), names[11:]
    assert len(st) == len(names)
    assert list(st.keys()) == names
    assert list(st.values()) == [st[i] for i in range(len(names))]
    assert list(st.items()) == list(zip(st.keys(), st.values()))
    for i, name in enumerate(CORE_STATS):
        assert st[name] == st[i] == getattr(st, name)
    assert st.heaps == 3 and st.packets == 9 and st.single_packet_heaps == 1
    assert st.max_batch >= 1 and st.batches >= 1
    assert st["test.counter"] == 0 and st["test.max"] == 0
    assert "heaps" in st and "test.max" in st and "nope" not in st
    assert st.get("heaps") == 3 and st.get("nope") is None and st.get("nope", 5) == 5
    with pytest.raises(KeyError):
        st["nope"]
    with pytest.raises(IndexError):
        st[len(names)]
    with pytest.raises(KeyError):
        st["nope"] = 1
    st["test.counter"] = 4
    st[10] = 7
    st.heaps = 10
    assert st["test.counter"] == 4 and st["test.max"] == 7 and st["heaps"] == 10
    assert [(c.name, c.mode) for c in st.config][:11] == [(c.name, c.mode) for c in cfg.stats]
    assert len(st.config) == len(names)

    other = stream.stats
    other["test.counter"] = 1
    other["test.max"] = 9
    total = st + other
    assert total["test.counter"] == 5
    assert total["test.max"] == 9  # maximum
    assert total["heaps"] == 13
    assert total["max_batch"] == max(st["max_batch"], other["max_batch"])
    before = st["test.counter"]
    st += other
    assert st["test.counter"] == before + 1
    # mismatched configs cannot be added
    plain = impl.recv.Stream(impl.ThreadPool())
    plain.stop()
    with pytest.raises(ValueError):
        st + plain.stats
    # stats are a snapshot
    assert stream.stats["test.counter"] == 0


def test_stream_stat_config(impl):
    SSC = impl.recv.StreamStatConfig
    a = SSC("a")
    assert a.name == "a" and a.mode == SSC.Mode.COUNTER
    assert SSC.Mode.COUNTER.value == 0 and SSC.Mode.MAXIMUM.value == 1
    assert a.combine(3, 7) == 10
    assert SSC("m", SSC.Mode.MAXIMUM).combine(3, 7) == 7
    assert SSC("a") == SSC("a")
    assert SSC("a") != SSC("b")
    assert SSC("a") != SSC("a", SSC.Mode.MAXIMUM)


def test_stats_match_spead2_for_stream():
    ref = reference()
    pkts = [x for p in zip(A(1), A(2), A(3)) for x in p] + A(4) + [stop_packet(5)]
    out = []
    for mod in (spead2gpu, ref):
        _, stream = receive(mod, pkts, config=dict(max_heaps=2), ring=NCK)
        out.append(stats_dict(stream.stats))
    assert out[0] == out[1]
    assert set(out[0]) == set(DETERMINISTIC_STATS)


def test_config_property_on_stream(impl):
    cfg = impl.recv.StreamConfig(max_heaps=7, substreams=3, stream_id=5, allow_out_of_order=True)
    ring = impl.recv.RingStreamConfig(heaps=9, contiguous_only=False)
    stream = impl.recv.Stream(impl.ThreadPool(), cfg, ring)
    assert stream.config.max_heaps == 7
    assert stream.config.substreams == 3
    assert stream.config.stream_id == 5
    assert stream.config.allow_out_of_order is True
    assert stream.ring_config.heaps == 9
    assert stream.ring_config.contiguous_only is False
    assert stream.ringbuffer.capacity() == 9
    stream.stop()

