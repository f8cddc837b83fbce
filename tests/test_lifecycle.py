"""Lifetimes and threads: blocking calls are interruptible by stop(), and
streams, rings and thread pools are collectable (no cycles kept by C++)."""

import gc
import threading
import time
import weakref

import numpy as np
import pytest

import spead2gpu
import spead2gpu.recv
import spead2gpu.send
from conftest import heap_packets


def test_get_interrupted_by_stop_from_other_thread():
    stream = spead2gpu.recv.Stream(spead2gpu.ThreadPool())
    queue = spead2gpu.InprocQueue()
    stream.add_inproc_reader(queue)
    outcome = []

    def consumer():
        try:
            stream.get()
        except spead2gpu.Stopped:
            outcome.append("stopped")

    thread = threading.Thread(target=consumer)
    thread.start()
    time.sleep(0.1)
    assert thread.is_alive()          # really blocked in get()
    start = time.monotonic()
    stream.stop()
    thread.join(5)
    assert not thread.is_alive()
    assert outcome == ["stopped"]
    assert time.monotonic() - start < 1.0


def test_stop_with_full_ring_and_busy_reader_then_destroy():
    """A worker blocked on a full ring while the buffer still has data must
    be released by stop(), and the stream destroyed without waiting."""
    data = b"".join(p for cnt in range(1, 200) for p in heap_packets(cnt, bytes(64), 64))
    stream = spead2gpu.recv.Stream(spead2gpu.ThreadPool(), spead2gpu.recv.StreamConfig(),
                                   spead2gpu.recv.RingStreamConfig(heaps=1))
    stream.add_buffer_reader(data)
    deadline = time.monotonic() + 5
    while stream.stats["worker_blocked"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    start = time.monotonic()
    stream.stop()
    del stream
    gc.collect()
    assert time.monotonic() - start < 1.0


@pytest.mark.parametrize("kind", ["ring", "chunk"])
def test_streams_are_collectable(kind):
    tp = spead2gpu.ThreadPool()
    if kind == "ring":
        stream = spead2gpu.recv.Stream(tp)
        stream.add_inproc_reader(spead2gpu.InprocQueue())
        refs = [weakref.ref(stream), weakref.ref(tp)]
    else:
        layout = spead2gpu.recv.ChunkLayout(heap_size=64, timestamp_id=0x1600, timestamp_step=1,
                                            timestamps_per_chunk=4)
        config = spead2gpu.recv.ChunkStreamConfig(place=layout)
        data_ring, free_ring = spead2gpu.recv.ChunkRingbuffer(2), spead2gpu.recv.ChunkRingbuffer(2)
        stream = spead2gpu.recv.ChunkRingStream(tp, spead2gpu.recv.StreamConfig(), config,
                                                data_ring, free_ring)
        stream.add_free_chunk(spead2gpu.recv.Chunk(present=np.zeros(4, np.uint8),
                                                   data=np.zeros(256, np.uint8)))
        stream.add_inproc_reader(spead2gpu.InprocQueue())
        refs = [weakref.ref(stream), weakref.ref(tp), weakref.ref(data_ring), weakref.ref(free_ring)]
        del data_ring, free_ring, layout, config
    del stream, tp
    gc.collect()
    assert [r() for r in refs] == [None] * len(refs)


def test_chunk_ring_get_interrupted_by_stop():
    ring = spead2gpu.recv.ChunkRingbuffer(2)
    outcome = []

    def consumer():
        try:
            ring.get()
        except spead2gpu.Stopped:
            outcome.append("stopped")

    thread = threading.Thread(target=consumer)
    thread.start()
    time.sleep(0.1)
    ring.stop()
    thread.join(5)
    assert outcome == ["stopped"]


def test_send_stream_collectable():
    tp = spead2gpu.ThreadPool()
    queue = spead2gpu.InprocQueue()
    stream = spead2gpu.send.InprocStream(tp, [queue])
    ig = spead2gpu.send.ItemGroup()
    ig.add_item(0x1000, "x", "", (8,), np.uint8, value=np.zeros(8, np.uint8))
    stream.send_heap(ig.get_heap())
    refs = [weakref.ref(stream), weakref.ref(tp)]
    del stream, tp
    gc.collect()
    assert [r() for r in refs] == [None, None]
