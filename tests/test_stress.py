"""Stress and lifecycle (marker ``stress``; bounded loops, run by CI with the rest).

Every case checks that it leaves no file descriptor behind, and the loops
check that resident memory stays flat: a receiver runs for months, so a
leak of one socket or one heap per stop would eventually take it down.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import spead2gpu
import spead2gpu.recv
import spead2gpu.recv.asyncio
import spead2gpu.send
import spead2gpu.send.asyncio
from conftest import addr, assert_rss_growth_below, heap_packet, imm, run_with_timeout, stop_packet

pytestmark = pytest.mark.stress

recv, send = spead2gpu.recv, spead2gpu.send
TS_ID, DATA_ID, FENG_ID = 0x1600, 0x3300, 0x4101
HS = 1024


def open_fds():
    return set(os.listdir("/proc/self/fd"))


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture(autouse=True)
def no_fd_leak():
    gc.collect()
    before = open_fds()
    yield
    gc.collect()
    deadline = time.monotonic() + 5
    while (leaked := open_fds() - before) and time.monotonic() < deadline:
        time.sleep(0.05)            # a closing thread may still be on its way out
        gc.collect()
    assert not leaked, f"file descriptors left open: {sorted(leaked)}"


def one_packet_heap(cnt, ts=None, feng=None):
    ts = cnt if ts is None else ts
    items = [imm(TS_ID, ts * HS), addr(DATA_ID, 0)]
    if feng is not None:
        items.insert(1, imm(FENG_ID, feng))
    return heap_packet(cnt, 0, bytes([cnt & 0xFF]) * HS, HS, items)


def udp_socket():
    sk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sk.bind(("127.0.0.1", 0))
    return sk


# ---------------------------------------------------------------------------

def test_streams_created_and_destroyed_with_readers_attached():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    payload = b"".join(one_packet_heap(c) for c in range(1, 20)) + stop_packet(20)

    def cycle():
        s = recv.Stream(spead2gpu.ThreadPool(), recv.StreamConfig(), recv.RingStreamConfig(heaps=2))
        s.add_udp_reader(0, bind_hostname="127.0.0.1")
        s.add_tcp_reader(listener)
        q = spead2gpu.InprocQueue()
        s.add_inproc_reader(q)
        s.add_buffer_reader(payload)
        n = 0
        for _ in s:                      # ends at the buffer's stop heap
            n += 1
        assert n == 19
        q.stop()
        s.stop()

    try:
        for _ in range(10):              # warm-up: allocator pools, thread stacks
            cycle()
        gc.collect()
        base = rss()
        for _ in range(150):
            cycle()
        gc.collect()
        assert_rss_growth_below(rss() - base, 16 << 20, "over 150 streams")
    finally:
        listener.close()


# A sender process blasting UDP heaps at full rate (rate=0) to every port
# named on its command line, one substream per port, until it is killed.  It
# is a separate process so the receiver's GIL and cores are not shared with it.
# It also ends by itself when its standard input closes (the test process
# died without killing it) or after two minutes, so it can never outlive a
# crashed or interrupted test run.
BLASTER = r"""
import os, sys, threading
threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
threading.Timer(120, lambda: os._exit(0)).start()
import numpy as np
import spead2gpu, spead2gpu.send as send
ports = [int(p) for p in sys.argv[1:]]
tx = send.UdpStream(spead2gpu.ThreadPool(), [("127.0.0.1", p) for p in ports],
                    send.StreamConfig(rate=0, max_packet_size=1472, max_heaps=len(ports) * 4))
ig = send.ItemGroup()
ig.add_item(0x1600, "timestamp", "", shape=(), format=[("u", 48)])
ig.add_item(0x3300, "data", "", shape=(8192,), dtype=np.uint8)
ig["data"].value = np.arange(8192, dtype=np.uint8)
ts = 0
while True:
    heaps = []
    for sub in range(len(ports)):
        ig["timestamp"].value = ts * 8192
        heaps.append(send.HeapReference(ig.get_heap(descriptors="none", data="all"), substream_index=sub))
    ts += 1
    try:
        tx.send_heaps(heaps, send.GroupMode.ROUND_ROBIN)
    except OSError:
        pass        # ECONNREFUSED from a port with no reader yet
"""


def full_rate_receiver(kind, tp):
    """(streams, the object whose stop() ends them all, what the consumer iterates) for one round."""
    lay = recv.ChunkLayout(heap_size=8192, timestamp_id=TS_ID, timestamp_step=8192, timestamps_per_chunk=8)
    if kind == "ring":
        stream = recv.Stream(tp, recv.StreamConfig(), recv.RingStreamConfig(heaps=4))
        return [stream], stream, stream
    data_ring, free_ring = recv.ChunkRingbuffer(2), recv.ChunkRingbuffer(4)
    chunk_config = recv.ChunkStreamConfig(place=lay, max_chunks=2)
    if kind == "chunk":
        owner = recv.ChunkRingStream(tp, recv.StreamConfig(), chunk_config, data_ring, free_ring)
        streams = [owner]
    else:
        owner = recv.ChunkStreamRingGroup(recv.ChunkStreamGroupConfig(max_chunks=2), data_ring, free_ring)
        streams = [owner.emplace_back(tp, recv.StreamConfig(), chunk_config) for _ in range(2)]
    for _ in range(4):
        owner.add_free_chunk(recv.Chunk(data=np.zeros(lay.chunk_data_size, np.uint8),
                                        present=np.zeros(lay.heaps_per_chunk, np.uint8)))
    return streams, owner, data_ring


@pytest.mark.parametrize("kind", ["ring", "chunk", "group"])
def test_stop_while_readers_receive_at_full_rate(kind):
    """stop() mid-flow, with a consumer running and stats polled, returns promptly every time.

    Three sockets: two readers share the first one (the kernel hands each
    datagram to one of them) and one reader each has the others.
    """
    socks = [udp_socket() for _ in range(3)]
    for sk in socks:
        sk.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    blaster = subprocess.Popen([sys.executable, "-c", BLASTER] + [str(sk.getsockname()[1]) for sk in socks],
                               stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    total_packets = 0
    try:
        for i in range(12):
            streams, owner, consumed = full_rate_receiver(kind, spead2gpu.ThreadPool(1 + i % 2))
            readers = [socks[0], socks[0], socks[1], socks[2]]
            for j, sk in enumerate(readers):
                streams[j % len(streams)].add_udp_reader(sk)

            def consume():
                n = 0
                for item in consumed:
                    n += 1
                    if kind != "ring":
                        item.present[:] = 0
                        owner.add_free_chunk(item)
                return n

            consumer = threading.Thread(target=consume, daemon=True)
            if i % 3:                      # every third round: no consumer, so the worker blocks
                consumer.start()
            time.sleep(0.05 + 0.02 * (i % 4))
            polled = run_with_timeout(lambda: [s.stats["packets"] for s in streams], 5)
            start = time.monotonic()
            if kind == "group" and i % 2:
                streams[0].stop()          # one member first, then the whole group
            owner.stop()
            took = time.monotonic() - start
            assert took < 5, f"stop() took {took:.1f} s in round {i}"
            if i % 3:
                consumer.join(5)
                assert not consumer.is_alive(), f"consumer still blocked after stop() in round {i}"
            after = [s.stats["packets"] for s in streams]
            assert all(a >= p for a, p in zip(after, polled))
            total_packets += sum(after)
    finally:
        blaster.kill()
        err = blaster.communicate()[1]
        for sk in socks:
            sk.close()
    assert blaster.returncode == -9, err.decode()     # it was still blasting when killed
    assert total_packets > 1000, f"only {total_packets} packets received: the sender did not run"


def test_stats_are_final_when_the_stream_ends():
    """Once iteration ends (the stop heap was seen), stats count every heap and packet.

    The end is seen inside a batch; the batch's counts used to be merged only
    when it ended, after the ring had already told the consumer, so a
    consumer reading stats at once could miss the last batch's heaps. (spead2
    4.5.1 has that lag: its packet count is sometimes one short here, so this
    test is spead2gpu's alone.)
    """
    for _ in range(30):
        s = recv.Stream(spead2gpu.ThreadPool(), recv.StreamConfig(), recv.RingStreamConfig(heaps=4))
        q = spead2gpu.InprocQueue()
        for c in range(1, 301):
            q.add_packet(one_packet_heap(c))
        q.add_packet(stop_packet(301))
        s.add_inproc_reader(q)
        try:
            n = sum(1 for _ in s)
            stats = s.stats
            assert (n, stats["heaps"], stats["packets"]) == (300, 300, 301)
        finally:
            q.stop()
            s.stop()


def test_add_reader_while_worker_blocked_on_full_ring(impl):
    """Adding a reader before starting the consumer must not wait for the consumer.

    The first reader fills the one-heap ring and its worker blocks there,
    inside its batch; add_*_reader (and stats, and stop) must not wait for
    that batch, or a program that adds its readers and then starts its
    consumer deadlocks (it did, with UDP readers at full rate).
    """
    q1, q2 = impl.InprocQueue(), impl.InprocQueue()
    for c in range(1, 50):
        q1.add_packet(one_packet_heap(c))
    s = impl.recv.Stream(impl.ThreadPool(), impl.recv.StreamConfig(), impl.recv.RingStreamConfig(heaps=1))
    s.add_inproc_reader(q1)
    deadline = time.monotonic() + 5
    while s.ringbuffer.size() < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.02)                      # the worker is now blocked pushing heap 2
    run_with_timeout(lambda: s.add_inproc_reader(q2), 5)
    run_with_timeout(lambda: s.stats, 5)
    q2.add_packet(one_packet_heap(60))    # the second reader works too

    def consume():
        cnts = []
        while len(cnts) < 50:
            cnts.append(s.get().cnt)
        return cnts

    cnts = run_with_timeout(consume, 10)
    assert sorted(cnts) == list(range(1, 50)) + [60]
    s.stop()


@pytest.mark.parametrize("kind", ["ring", "chunk"])
def test_blocked_worker_then_stop(kind):
    """A full data ring (or no free chunk) blocks the worker; stop() must still return."""
    for i in range(10):
        q = spead2gpu.InprocQueue()
        for c in range(1, 400):
            q.add_packet(one_packet_heap(c))
        if kind == "ring":
            s = recv.Stream(spead2gpu.ThreadPool(), recv.StreamConfig(), recv.RingStreamConfig(heaps=1))
        else:
            lay = recv.ChunkLayout(heap_size=HS, timestamp_id=TS_ID, timestamp_step=HS,
                                   timestamps_per_chunk=4)
            s = recv.ChunkRingStream(spead2gpu.ThreadPool(), recv.StreamConfig(),
                                     recv.ChunkStreamConfig(place=lay, max_chunks=1),
                                     recv.ChunkRingbuffer(1), recv.ChunkRingbuffer(1))
            s.add_free_chunk(recv.Chunk(data=np.zeros(4 * HS, np.uint8), present=np.zeros(4, np.uint8)))
        s.add_inproc_reader(q)
        time.sleep(0.02 + 0.01 * (i % 3))
        run_with_timeout(lambda: s.stats, 5)    # stats never wait for the blocked batch
        start = time.monotonic()
        s.stop()
        assert time.monotonic() - start < 5
        q.stop()


@pytest.mark.parametrize("mode", ["LOSSLESS", "LOSSY"])
def test_group_member_stopped_mid_stream(mode):
    n_members, tpc = 3, 4
    lay = recv.ChunkLayout(heap_size=HS, timestamp_id=TS_ID, timestamp_step=HS, timestamps_per_chunk=tpc,
                           axes=["time", (FENG_ID, n_members)])
    for round_ in range(6):
        data_ring, free_ring = recv.ChunkRingbuffer(4), recv.ChunkRingbuffer(4)
        eviction = getattr(recv.ChunkStreamGroupConfig.EvictionMode, mode)
        gcfg = recv.ChunkStreamGroupConfig(max_chunks=2, eviction_mode=eviction)
        group = recv.ChunkStreamRingGroup(gcfg, data_ring, free_ring)
        queues = []
        for _ in range(n_members):
            member = group.emplace_back(spead2gpu.ThreadPool(), recv.StreamConfig(),
                                        recv.ChunkStreamConfig(place=lay, max_chunks=2))
            q = spead2gpu.InprocQueue()
            member.add_inproc_reader(q)
            queues.append(q)
        for _ in range(4):
            group.add_free_chunk(recv.Chunk(data=np.zeros(lay.chunk_data_size, np.uint8),
                                            present=np.zeros(lay.heaps_per_chunk, np.uint8)))
        victim = round_ % n_members

        def produce():
            cnt = 1
            for ts in range(40 * tpc):
                for f in range(n_members):
                    if f == victim and ts == 10 * tpc:
                        group[f].stop()          # this member stops mid-stream
                    queues[f].add_packet(one_packet_heap(cnt, ts, f))
                    cnt += 1
            for q in queues:
                q.stop()

        producer = threading.Thread(target=produce)
        producer.start()

        def consume():
            ids = []
            for chunk in data_ring:
                ids.append(chunk.chunk_id)
                chunk.present[:] = 0
                group.add_free_chunk(chunk)
            return ids

        ids = run_with_timeout(consume, 30)
        producer.join(10)
        assert ids == sorted(ids)
        group.stop()


def test_asyncio_cancellation_of_gets_and_sends():
    async def run():
        for _ in range(20):
            s = recv.asyncio.Stream(spead2gpu.ThreadPool(), recv.StreamConfig(),
                                    recv.RingStreamConfig(heaps=2))
            q = spead2gpu.InprocQueue()
            s.add_inproc_reader(q)
            pending = asyncio.ensure_future(s.get())
            await asyncio.sleep(0.001)
            pending.cancel()
            with pytest.raises(asyncio.CancelledError):
                await pending
            q.add_packet(one_packet_heap(1))   # the cancelled get must not have eaten it
            heap = await asyncio.wait_for(s.get(), 5)
            assert heap.cnt == 1
            q.stop()
            s.stop()

            sk = udp_socket()
            tx = send.asyncio.UdpStream(spead2gpu.ThreadPool(), [("127.0.0.1", sk.getsockname()[1])],
                                        send.StreamConfig(rate=1e6, max_heaps=64))
            ig = send.ItemGroup()
            ig.add_item(0x1000, "x", "", shape=(8192,), dtype=np.uint8, value=np.zeros(8192, np.uint8))
            futures = [tx.async_send_heap(ig.get_heap()) for _ in range(8)]
            for fut in futures[4:]:
                fut.cancel()
            done = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 20)
            assert all(isinstance(d, (int, asyncio.CancelledError)) for d in done), done
            await asyncio.wait_for(tx.async_flush(), 20)
            del tx
            sk.close()

    asyncio.run(run())


def test_garbage_collected_from_other_threads():
    """Streams, heaps, chunks and rings whose last reference goes away on another thread."""
    objects = []
    for i in range(30):
        s = recv.Stream(spead2gpu.ThreadPool(), recv.StreamConfig(), recv.RingStreamConfig(heaps=4))
        q = spead2gpu.InprocQueue()
        for c in range(1, 4):
            q.add_packet(one_packet_heap(c))
        q.stop()
        s.add_inproc_reader(q)
        heaps = list(s)
        ring = recv.ChunkRingbuffer(2)
        ring.put(recv.Chunk(data=np.zeros(64, np.uint8), present=np.zeros(1, np.uint8)))
        objects.append([s if i % 2 else None, heaps, ring, recv.Chunk(data=np.zeros(64, np.uint8))])
        del s, heaps, ring

    def drop(batch):
        batch.clear()
        gc.collect()

    threads = [threading.Thread(target=drop, args=(objects[i],)) for i in range(len(objects))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not any(t.is_alive() for t in threads)
