"""The GPU chunk pipeline's ordering, run on the emulated GPU (gpu.Emulator).

The emulator runs the pipeline's own code — copy thread, events, recyclers —
with streams as worker threads whose events complete only when the work
queued before them has run. So these tests show, without a GPU, what the
GPU path promises: a chunk is recycled only after the consumer's work on it
has finished, a device chunk's copy is ordered before the consumer's stream,
and GPU errors stop the pipeline loudly instead of hanging it.
"""

from __future__ import annotations

import gc
import threading
import time

import numpy as np
import pytest

import spead2gpu
import spead2gpu.recv
from conftest import ALIASED_TO_REFERENCE, addr, heap_packet, imm, run_with_timeout, stop_packet

if ALIASED_TO_REFERENCE:  # pragma: no cover
    pytest.skip("spead2gpu.gpu is spead2gpu-only", allow_module_level=True)

from spead2gpu import gpu  # noqa: E402

recv = spead2gpu.recv
TS_ID, DATA_ID = 0x1600, 0x3300
HS = 256          # heap size
TPC = 4           # heaps (timestamps) per chunk
KINDS = ["pinned", "mapped", "device"]


def payload(ts):
    return ((np.arange(HS, dtype=np.int64) * 7 + ts * 13) & 0xFF).astype(np.uint8)


def heap(ts, cnt=None):
    cnt = ts + 1 if cnt is None else cnt
    return heap_packet(cnt, 0, payload(ts).tobytes(), HS, [imm(TS_ID, ts * HS), addr(DATA_ID, 0)])


def layout():
    return recv.ChunkLayout(heap_size=HS, timestamp_id=TS_ID, timestamp_step=HS,
                            timestamps_per_chunk=TPC)


def make_stream(emu, kind, **kw):
    return gpu.ChunkStream(spead2gpu.ThreadPool(), recv.StreamConfig(max_heaps=4),
                           recv.ChunkStreamConfig(place=layout(), max_chunks=1),
                           kind=kind, emulator=emu, **kw)


def expected_chunk(chunk_id):
    return np.concatenate([payload(chunk_id * TPC + i) for i in range(TPC)])


def feed(stream, n_chunks, stop=True):
    q = spead2gpu.InprocQueue()
    for ts in range(n_chunks * TPC):
        q.add_packet(heap(ts))
    if stop:
        q.add_packet(stop_packet(n_chunks * TPC + 1))
        q.stop()
    stream.add_inproc_reader(q)
    return q


def wait_until(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


# ---------------------------------------------------------------------------
# The emulator itself
# ---------------------------------------------------------------------------

def test_emulator_events_complete_after_queued_work():
    emu = gpu.Emulator(latency=0)
    s = emu.stream()
    ev = gpu._gpu._Event(0, True, emulator=emu)
    assert ev.query()                       # never recorded: complete, as in CUDA
    s.busy(0.15)
    ev.record(s.handle)
    assert not ev.query() and s.pending == 2
    start = time.monotonic()
    ev.synchronize()
    assert time.monotonic() - start > 0.08
    assert ev.query() and s.pending == 0


def test_emulator_stream_wait_event_orders_streams():
    emu = gpu.Emulator(latency=0)
    producer, consumer = emu.stream(), emu.stream()
    src = gpu.Buffer(64, "pinned", emulator=emu)
    dst = gpu.Buffer(64, "device", emulator=emu)
    np.frombuffer(src, np.uint8)[:] = 9
    producer.busy(0.1)
    gpu._gpu._memcpy_async(dst.device_ptr, src.host_ptr, 64, producer.handle, emulator=emu)
    gpu._gpu._stream_wait_stream(consumer.handle, producer.handle, 0, emulator=emu)
    out = gpu.Buffer(64, "pinned", emulator=emu)
    gpu._gpu._memcpy_async(out.host_ptr, dst.device_ptr, 64, consumer.handle, emulator=emu)
    consumer.synchronize()                  # waits for the producer's copy through the event
    assert np.frombuffer(out, np.uint8).tolist() == [9] * 64


def test_emulator_buffers():
    emu = gpu.Emulator()
    for kind in ("host", *KINDS):
        b = gpu.Buffer(1000, kind, emulator=emu)
        assert b.kind == kind and b.emulated == (kind != "host")
        a = np.frombuffer(b, np.uint8)      # emulated device memory is host memory
        assert a.size == 1000 and not a.any()
        assert b.__dlpack_device__() == (1, 0)
        assert np.from_dlpack(b).size == 1000
        if kind != "host":
            with pytest.raises(AttributeError, match="emulated"):
                b.__cuda_array_interface__  # noqa: B018
    assert gpu.Buffer(10, "auto", emulator=emu).kind == "device"
    with pytest.raises(gpu.GpuUnavailableError, match="emulated device 1 does not exist"):
        gpu.Buffer(10, "device", device=1, emulator=emu)
    with pytest.raises(ValueError, match="not a stream of this emulated GPU"):
        emu.busy(12345678, 0.01)
    with pytest.raises(ValueError, match="unknown operation"):
        emu.fail_next("launch_rockets")
    with pytest.raises(ValueError, match="latency"):
        gpu.Emulator(latency=-1)


def test_emulated_fresh_device_buffer_is_zero_on_other_streams():
    """Buffer() returns once the memory is zero for every stream (defect: cudaMemset
    on the legacy stream returned before it was done)."""
    emu = gpu.Emulator(latency=0.05)
    b = gpu.Buffer(4096, "device", emulator=emu)
    assert emu.pending() == 0               # the memset has run, not merely been queued
    assert not np.frombuffer(b, np.uint8).any()


def test_memory_allocator_reuses_buffers():
    emu = gpu.Emulator()
    alloc = gpu.MemoryAllocator("pinned", emulator=emu, max_cached_bytes=1 << 20)
    assert alloc.kind == "pinned" and alloc.max_cached_bytes == 1 << 20
    q = spead2gpu.InprocQueue()
    for ts in range(20):
        q.add_packet(heap(ts))
    q.stop()
    s = recv.Stream(spead2gpu.ThreadPool(), recv.StreamConfig(memory_allocator=alloc))
    s.add_inproc_reader(q)
    n = 0
    for h in s:
        data = next(item for item in h.get_items() if item.id == DATA_ID)
        assert bytes(memoryview(data)) == payload(n).tobytes()
        n += 1
        del h
    assert n == 20
    assert alloc.cache_misses >= 1 and alloc.cache_hits >= 10   # not a cudaHostAlloc per heap


# ---------------------------------------------------------------------------
# Recycling waits for the consumer's stream
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_recycling_held_back_until_busy_consumer_stream_finishes(kind):
    emu = gpu.Emulator(latency=0)
    consumer = emu.stream()
    s = make_stream(emu, kind, n_chunks=3)
    feed(s, 2)
    chunk = s.get(consumer)
    np.testing.assert_array_equal(chunk.data, expected_chunk(0))
    consumer.busy(0.6)                      # the consumer's kernels on the chunk
    before = s.pipeline_stats
    chunk.release(consumer)
    time.sleep(0.1)
    stats = s.pipeline_stats
    assert stats["chunks_released"] == before["chunks_released"] + 1
    assert consumer.pending >= 1            # still busy: the chunk must not be reused yet
    assert stats["release_event_waits"] == 1    # the recycler is waiting on the event
    pool = s.pipeline.free_chunks() if kind != "device" else None
    consumer.synchronize()
    if kind != "device":
        assert wait_until(lambda: s.pipeline.free_chunks() == pool + 1)
    rest = [c.chunk_id for c in drain(s)]
    assert rest == [1]
    s.close()


def drain(s, stream=None):
    out = []
    for c in s:
        if stream is None:
            c.release_now()
        else:
            c.release(stream)
        out.append(c)
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_release_now_does_not_wait_for_busy_streams(kind):
    emu = gpu.Emulator(latency=0)
    busy = emu.stream()
    s = make_stream(emu, kind, n_chunks=3)
    feed(s, 3)
    chunk = s.get(busy)
    busy.busy(1.0)                          # unrelated long work on the stream
    free_before = s.pipeline.free_chunks()
    chunk.release_now()
    assert chunk.released
    if kind != "device":
        assert s.pipeline.free_chunks() == free_before + 1
    assert s.pipeline_stats["release_event_waits"] == 0
    assert [c.chunk_id for c in drain(s)] == [1, 2]
    s.close()


def test_dropped_chunk_is_released_on_its_get_stream():
    """A chunk garbage-collected unreleased is ordered after the stream given to get(),
    not the default stream."""
    emu = gpu.Emulator(latency=0)
    consumer = emu.stream()
    s = make_stream(emu, "mapped", n_chunks=3)
    feed(s, 2)
    chunk = s.get(consumer)
    consumer.busy(0.6)
    free_before = s.pipeline.free_chunks()
    del chunk
    gc.collect()
    time.sleep(0.1)
    assert s.pipeline.free_chunks() == free_before     # held back by the busy consumer stream
    consumer.synchronize()
    assert wait_until(lambda: s.pipeline.free_chunks() == free_before + 1)
    s.close()


def test_release_defaults_to_the_get_stream():
    emu = gpu.Emulator(latency=0)
    consumer = emu.stream()
    s = make_stream(emu, "pinned", n_chunks=3)
    feed(s, 2)
    chunk = s.get(consumer)
    consumer.busy(0.6)
    free_before = s.pipeline.free_chunks()
    chunk.release()                          # no stream: the one given to get()
    time.sleep(0.1)
    assert s.pipeline.free_chunks() == free_before
    consumer.synchronize()
    assert wait_until(lambda: s.pipeline.free_chunks() == free_before + 1)
    s.close()


# ---------------------------------------------------------------------------
# The device kind: copies ordered before the consumer, staging recycled after them
# ---------------------------------------------------------------------------

def test_device_copies_are_ordered_and_staging_waits_for_them():
    # Slow copies: each staging chunk is recycled only once its copy event completes.
    emu = gpu.Emulator(latency=0.001, bytes_per_second=2e6)
    s = make_stream(emu, "device", n_chunks=2, n_device_chunks=2)
    feed(s, 6)
    consumer = emu.stream()
    ids = []
    for chunk in s:
        # get() has made the consumer stream wait for the copy; an emulated host
        # reader has also waited, so the data is complete here.
        np.testing.assert_array_equal(chunk.data, expected_chunk(chunk.chunk_id))
        assert chunk.present.all()
        consumer.busy(0.002)
        chunk.release(consumer)
        ids.append(chunk.chunk_id)
    assert ids == list(range(6))
    stats = s.pipeline_stats
    assert stats["chunks_copied"] == 6
    assert stats["staging_event_waits"] >= 1     # a copy was still running when its staging chunk came back
    s.close()


def test_device_chunk_reused_only_after_release_event():
    """One device chunk: the copy thread may copy into it again only after the
    consumer's stream has finished with it (else the consumer's kernels would
    see the next chunk's data)."""
    emu = gpu.Emulator(latency=0)
    consumer = emu.stream()
    s = make_stream(emu, "device", n_chunks=3, n_device_chunks=1)
    feed(s, 3)
    first = s.get(consumer)
    np.testing.assert_array_equal(first.data, expected_chunk(0))
    consumer.busy(0.6)
    first.release(consumer)
    time.sleep(0.15)
    # The consumer is still "running": no copy into the single device chunk has
    # been issued, so it still holds chunk 0. (Counted, not read: reading a
    # released chunk is the race this machinery exists to prevent, and
    # ThreadSanitizer rightly reports it.)
    assert s.pipeline_stats["chunks_copied"] == 1
    assert s.pipeline.qsize() == 0
    rest = [c.chunk_id for c in drain(s, consumer)]
    assert rest == [1, 2]
    assert s.pipeline_stats["copy_waits"] >= 1
    s.close()


# ---------------------------------------------------------------------------
# GPU errors stop the pipeline loudly (no hang, no reuse of memory in flight)
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_recycler_failure_raises_instead_of_hanging(kind):
    emu = gpu.Emulator(latency=0)
    consumer = emu.stream()
    s = make_stream(emu, kind, n_chunks=2, n_device_chunks=1)
    q = feed(s, 8, stop=False)
    chunk = s.get(consumer)
    consumer.busy(0.05)
    emu.fail_next("query_event")
    chunk.release(consumer)

    def consume():
        with pytest.raises(gpu.CudaError, match="event failed"):
            while True:
                c = s.get()
                c.release(consumer)

    run_with_timeout(consume, 20)
    assert "query_event" in s.pipeline.error
    q.stop()
    s.close()


def test_copy_failure_raises():
    emu = gpu.Emulator(latency=0)
    emu.fail_next("memcpy_async")
    s = make_stream(emu, "device", n_chunks=3)
    feed(s, 3)
    with pytest.raises(gpu.CudaError, match="memcpy_async failed: emulated failure"):
        run_with_timeout(lambda: [c.release_now() for c in s], 20)
    s.close()


def test_copy_event_failure_waits_for_the_copy_then_raises():
    emu = gpu.Emulator(latency=0, bytes_per_second=5e5)
    s = make_stream(emu, "device", n_chunks=3)
    emu.fail_next("record_event")           # the copy thread's first event record
    feed(s, 3)
    with pytest.raises(gpu.CudaError, match="record_event failed"):
        run_with_timeout(lambda: [c.release_now() for c in s], 20)
    # The copy that was in flight had finished before its memory could be freed.
    assert emu.pending(s.pipeline.copy_stream) == 0
    s.close()


@pytest.mark.parametrize("kind", KINDS)
def test_stop_with_copies_and_events_in_flight(kind):
    emu = gpu.Emulator(latency=0.002, bytes_per_second=1e6)
    consumer = emu.stream()
    s = make_stream(emu, kind, n_chunks=4, n_device_chunks=2)
    q = feed(s, 50, stop=False)
    held = [s.get(consumer), s.get(consumer)]
    consumer.busy(0.1)
    held[0].release(consumer)
    start = time.monotonic()
    s.close()                               # copies queued, one release event pending
    assert time.monotonic() - start < 10
    held[1].release(consumer)               # after stop: waits for its event, no crash
    q.stop()
    with pytest.raises(spead2gpu.Stopped):
        while True:
            s.get_nowait().release_now()


# ---------------------------------------------------------------------------
# Bounded stress: many chunks, random consumer streams and work, every byte checked
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", [1, 2])
def test_stress_random_release_order(kind, seed):
    rng = np.random.default_rng(seed)
    emu = gpu.Emulator(latency=float(rng.choice([0, 1e-4])), bytes_per_second=float(rng.choice([0, 2e7])))
    streams = [emu.stream() for _ in range(3)]
    n = 40
    s = make_stream(emu, kind, n_chunks=3, n_device_chunks=2)
    q = spead2gpu.InprocQueue()
    s.add_inproc_reader(q)

    def produce():
        for ts in range(n * TPC):
            q.add_packet(heap(ts))
        q.add_packet(stop_packet(n * TPC + 1))
        q.stop()

    producer = threading.Thread(target=produce)
    producer.start()
    held = []
    seen = []

    def consume():
        for chunk in s:
            seen.append(chunk.chunk_id)
            np.testing.assert_array_equal(chunk.data, expected_chunk(chunk.chunk_id))
            held.append(chunk)
            # Release a random held chunk (or several) on a random stream, after random work.
            while held and (len(held) > 1 or rng.random() < 0.5):
                c = held.pop(int(rng.integers(len(held))))
                # Still intact while held: nothing reused it early.
                np.testing.assert_array_equal(c.data, expected_chunk(c.chunk_id))
                st = streams[int(rng.integers(len(streams)))]
                if rng.random() < 0.2:
                    c.release_now()
                    continue
                # The consumer's "kernel": some time, then a read of the chunk on its
                # stream. Were the chunk reused before the stream got there, the read
                # would see another chunk's data.
                if rng.random() < 0.5:
                    st.busy(float(rng.random()) * 0.002)
                out = gpu.Buffer(c.buffers.data.nbytes, "pinned", emulator=emu)
                gpu._gpu._memcpy_async(out.host_ptr, c.buffers.data.ptr, out.nbytes, st.handle,
                                       emulator=emu)
                reads.append((c.chunk_id, out))
                c.release(st)
        for c in held:
            c.release()

    reads = []
    run_with_timeout(consume, 60)
    producer.join()
    assert seen == list(range(n))
    for st in streams:
        st.synchronize()
    assert len(reads) >= n // 4
    for chunk_id, out in reads:
        np.testing.assert_array_equal(np.frombuffer(out, np.uint8), expected_chunk(chunk_id))
    stats = s.pipeline_stats
    assert stats["chunks_delivered"] == stats["chunks_released"] == n
    assert s.stats["incomplete_heaps_evicted"] == 0
    s.close()
