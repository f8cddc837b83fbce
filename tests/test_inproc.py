"""In-process transport: InprocQueue, send.InprocStream (sync and asyncio),
recv.Stream.add_inproc_reader and recv.asyncio.Stream."""

import asyncio

import numpy as np
import pytest

from conftest import reference, run_with_timeout, send_bytes, split_packets


def make_item_group(mod, n=256):
    ig = mod.send.ItemGroup()
    ig.add_item(0x1000, "timestamp", "ts", (), format=[("u", 48)], value=0)
    ig.add_item(0x1001, "samples", "data", (n,), dtype=np.int8, value=np.zeros(n, np.int8))
    return ig


def samples_for(i, n=256):
    return ((np.arange(n) + i * 7) % 256 - 128).astype(np.int8)


def check_received(mod, stream, n_heaps, n=256, first=0):
    rig = mod.ItemGroup()
    seen = []
    for heap in stream:
        rig.update(heap)
        if "samples" not in rig or rig["samples"].value is None:
            continue
        ts = rig["timestamp"].value
        seen.append(ts)
        np.testing.assert_array_equal(rig["samples"].value, samples_for(ts // n, n))
        assert len(seen) <= n_heaps
    assert seen == [(first + i) * n for i in range(n_heaps)]


def test_sync_inproc(impl):
    tp = impl.ThreadPool()
    queue = impl.InprocQueue()
    sender = impl.send.InprocStream(tp, [queue], impl.send.StreamConfig(max_packet_size=200))
    assert sender.num_substreams == 1
    assert len(sender.queues) == 1 and sender.queues[0] is queue
    recv = impl.recv.Stream(impl.ThreadPool(), impl.recv.StreamConfig(),
                            impl.recv.RingStreamConfig(heaps=4))
    recv.add_inproc_reader(queue)
    ig = make_item_group(impl)
    n_heaps = 20
    total = 0
    for i in range(n_heaps):
        ig["timestamp"].value = i * 256
        ig["samples"].value = samples_for(i)
        heap = ig.get_heap()
        sent = sender.send_heap(heap)
        # same byte count as the same heap through a BytesStream
        assert sent == len(send_bytes(impl, [heap], max_packet_size=200, cnts=[i + 1]))
        total += sent
    sender.send_heap(ig.get_end())
    run_with_timeout(lambda: check_received(impl, recv, n_heaps), 20)
    recv.stop()
    assert recv.stats["heaps"] == n_heaps
    assert recv.stats["packets"] > 2 * n_heaps


def test_inproc_queue_stop_ends_stream(impl):
    queue = impl.InprocQueue()
    recv = impl.recv.Stream(impl.ThreadPool())
    recv.add_inproc_reader(queue)
    queue.stop()
    assert run_with_timeout(lambda: list(recv), 10) == []


def test_inproc_queue_add_packet_bytes(impl):
    """Packets put into the queue by hand are received as-is."""
    ref_data = send_bytes(reference(), [make_item_group(reference()).get_heap()], cnts=[3])
    queue = impl.InprocQueue()
    for i, pkt in enumerate(split_packets(ref_data) * 2):
        queue.add_packet(pkt if i % 2 else bytearray(pkt))
    queue.stop()
    recv = impl.recv.Stream(impl.ThreadPool())
    recv.add_inproc_reader(queue)
    heaps = run_with_timeout(lambda: list(recv), 10)
    assert [h.cnt for h in heaps] == [3, 3]  # a repeated single-packet heap arrives twice


def test_inproc_substreams(impl):
    tp = impl.ThreadPool()
    queues = [impl.InprocQueue(), impl.InprocQueue()]
    sender = impl.send.InprocStream(tp, queues)
    assert sender.num_substreams == 2
    assert all(a is b for a, b in zip(sender.queues, queues))
    streams = []
    for q in queues:
        s = impl.recv.Stream(impl.ThreadPool(), impl.recv.StreamConfig(),
                             impl.recv.RingStreamConfig(heaps=16))
        s.add_inproc_reader(q)
        streams.append(s)
    heap = impl.send.Heap()
    heap.add_item(impl.Item(0x1000, "x", "", (), format=[("u", 8)], value=1))
    for i in range(10):
        sender.send_heap(heap, cnt=100 + i, substream_index=i % 2)
    for q in queues:
        q.stop()
    got = [[h.cnt for h in run_with_timeout(lambda s=s: list(s), 10)] for s in streams]
    assert got == [[100, 102, 104, 106, 108], [101, 103, 105, 107, 109]]
    with pytest.raises(OSError):
        sender.send_heap(heap, substream_index=2)


def test_asyncio_send_and_receive(impl):
    async def main():
        tp = impl.ThreadPool()
        queue = impl.InprocQueue()
        sender = impl.send.asyncio.InprocStream(tp, [queue],
                                                impl.send.StreamConfig(max_packet_size=300))
        recv = impl.recv.asyncio.Stream(impl.ThreadPool(), impl.recv.StreamConfig(),
                                        impl.recv.RingStreamConfig(heaps=4))
        recv.add_inproc_reader(queue)
        ig = make_item_group(impl)
        futures = []
        for i in range(8):
            ig["timestamp"].value = i * 256
            ig["samples"].value = samples_for(i)
            fut = sender.async_send_heap(ig.get_heap())
            assert isinstance(fut, asyncio.Future)
            futures.append(fut)
            if i % 3 == 0:
                assert await fut > 0
        sizes = await asyncio.gather(*futures)
        assert all(s > 256 for s in sizes)
        # send_heaps through the asyncio wrapper
        refs = []
        for i in range(8, 12):
            ig["timestamp"].value = i * 256
            ig["samples"].value = samples_for(i)
            refs.append(impl.send.HeapReference(ig.get_heap(descriptors="none")))
        n = await sender.async_send_heaps(refs, impl.send.GroupMode.ROUND_ROBIN)
        assert n > 4 * 256
        await sender.async_flush()
        sender.flush()
        queue.stop()

        rig = impl.ItemGroup()
        first = await recv.get()
        rig.update(first)
        seen = [rig["timestamp"].value]
        async for heap in recv:
            rig.update(heap)
            ts = rig["timestamp"].value
            np.testing.assert_array_equal(rig["samples"].value, samples_for(ts // 256))
            seen.append(ts)
            assert len(seen) <= 12
        assert sorted(seen) == [i * 256 for i in range(12)]
        assert seen[:8] == [i * 256 for i in range(8)]
        with pytest.raises(impl.Stopped):
            await recv.get()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_asyncio_waiters_fifo(impl):
    """Several concurrent get() calls are served in order."""
    async def main():
        queue = impl.InprocQueue()
        recv = impl.recv.asyncio.Stream(impl.ThreadPool())
        recv.add_inproc_reader(queue)
        tasks = [asyncio.ensure_future(recv.get()) for _ in range(3)]
        await asyncio.sleep(0.05)
        assert not any(t.done() for t in tasks)
        sender = impl.send.asyncio.InprocStream(impl.ThreadPool(), [queue])
        heap = impl.send.Heap()
        for cnt in (11, 12, 13):
            await sender.async_send_heap(heap, cnt=cnt)
        heaps = await asyncio.gather(*tasks)
        assert [h.cnt for h in heaps] == [11, 12, 13]
        queue.stop()
        with pytest.raises(impl.Stopped):
            await recv.get()
        assert [h async for h in recv] == []

    asyncio.run(asyncio.wait_for(main(), 30))


def test_asyncio_receive_from_sync_sender(impl):
    async def main():
        queue = impl.InprocQueue()
        recv = impl.recv.asyncio.Stream(impl.ThreadPool(), impl.recv.StreamConfig(),
                                        impl.recv.RingStreamConfig(heaps=2))
        recv.add_inproc_reader(queue)
        sender = impl.send.InprocStream(impl.ThreadPool(), [queue])
        heap = impl.send.Heap()
        heap.add_item(impl.Item(0x1000, "x", "", (1000,), dtype=np.uint8,
                                value=np.arange(1000, dtype=np.uint16).astype(np.uint8)))
        n = 50

        async def produce():
            for i in range(n):
                sender.send_heap(heap, cnt=i + 1)
                if i % 10 == 0:
                    await asyncio.sleep(0)
            queue.stop()

        prod = asyncio.ensure_future(produce())
        cnts = []
        async for h in recv:
            cnts.append(h.cnt)
            assert bytes(memoryview(h.get_items()[0])) == bytes(range(256)) * 3 + bytes(range(232))
            assert len(cnts) <= n
        await prod
        assert cnts == list(range(1, n + 1))

    asyncio.run(asyncio.wait_for(main(), 30))
