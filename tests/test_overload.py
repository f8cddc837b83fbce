"""Overload with nothing lost silently: every heap sent is delivered or counted.

A receiver slower than its sender, with a tiny socket buffer and tiny rings,
loses data; the contract is that each loss shows up in a statistic a user
can read. Heaps here are one packet each, so that a packet the kernel
dropped (``spead2gpu.kernel_drops``, from SO_RXQ_OVFL) is exactly one heap.
The sums are exact:

* UDP ring stream: sent = delivered + kernel drops;
* UDP chunk streams (``ChunkRingStream``, ``gpu.ChunkStream``): sent =
  heaps present in delivered chunks + kernel drops;
* inproc with damaged input (missing packets, stale timestamps, heaps the
  layout cannot place): sent = delivered + incomplete evicted + too old +
  rejected by the layout + malformed.
"""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

import spead2gpu
import spead2gpu.recv
from conftest import ALIASED_TO_REFERENCE, addr, heap_packet, imm, run_with_timeout, stop_packet

pytestmark = pytest.mark.skipif(ALIASED_TO_REFERENCE,
                                reason="kernel drops and extended statistics are spead2gpu's")

recv = spead2gpu.recv
TS_ID, DATA_ID = 0x1600, 0x3300
HS = 1024           # one packet per heap
TPC = 8             # heaps per chunk


def one_packet_heap(cnt, ts=None):
    ts = cnt if ts is None else ts
    data = bytes([(cnt * 7 + i) & 0xFF for i in range(8)]) * (HS // 8)
    return heap_packet(cnt, 0, data, HS, [imm(TS_ID, ts * HS), addr(DATA_ID, 0)])


def tiny_socket():
    sk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sk.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sk.bind(("127.0.0.1", 0))
    return sk


def extended():
    return recv.StreamConfig(max_heaps=1, extended_stats=True)


def settle(stream, quiet=0.3, timeout=30):
    """Wait until the stream has taken no packet for *quiet* seconds."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        n = stream.stats["packets"]
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since > quiet:
            return
        time.sleep(0.02)
    raise AssertionError("the stream kept receiving")


def blast(port, n, first_cnt=1):
    """Send n one-packet heaps as fast as Python can."""
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    pkts = [one_packet_heap(first_cnt + i) for i in range(n)]
    for p in pkts:
        tx.sendto(p, ("127.0.0.1", port))
    return tx


def finish(tx, port, stream, cnt):
    """Once the receiver has drained its socket, a stop heap: it also carries the
    final SO_RXQ_OVFL count (the kernel reports drops with the next packet)."""
    settle(stream)
    tx.sendto(stop_packet(cnt), ("127.0.0.1", port))
    tx.close()


N = 3000


def test_udp_ring_stream_overload():
    sk = tiny_socket()
    port = sk.getsockname()[1]
    stream = recv.Stream(spead2gpu.ThreadPool(), extended(), recv.RingStreamConfig(heaps=2))
    stream.add_udp_reader(sk)
    delivered = []

    def consume():
        for heap in stream:
            time.sleep(0.0002)           # slower than the sender
            if isinstance(heap, recv.Heap):
                delivered.append(heap.cnt)

    consumer = threading.Thread(target=consume)
    consumer.start()
    tx = blast(port, N)
    finish(tx, port, stream, N + 1)
    consumer.join(30)
    assert not consumer.is_alive()
    stats = stream.stats
    drops = stats["spead2gpu.kernel_drops"]
    assert drops > 0, "the receiver was not overloaded"
    assert len(delivered) == len(set(delivered))
    assert len(delivered) + drops == N, (len(delivered), drops)
    print(f"UDP ring stream: sent {N} = delivered {len(delivered)} + kernel drops {drops}")
    assert stats["incomplete_heaps_evicted"] == 0
    sk.close()


def _layout():
    return recv.ChunkLayout(heap_size=HS, timestamp_id=TS_ID, timestamp_step=HS,
                            timestamps_per_chunk=TPC)


def _ring_chunk_stream():
    lay = _layout()
    data_ring, free_ring = recv.ChunkRingbuffer(2), recv.ChunkRingbuffer(2)
    stream = recv.ChunkRingStream(spead2gpu.ThreadPool(), extended(),
                                  recv.ChunkStreamConfig(place=lay, max_chunks=2), data_ring, free_ring)
    for _ in range(2):
        stream.add_free_chunk(recv.Chunk(data=np.zeros(lay.chunk_data_size, np.uint8),
                                         present=np.zeros(lay.heaps_per_chunk, np.uint8)))

    def chunks():
        for c in data_ring:
            yield c.chunk_id, int(np.asarray(c.present).sum())
            c.present[:] = 0
            stream.add_free_chunk(c)

    return stream, chunks


def _gpu_chunk_stream():
    from spead2gpu import gpu

    stream = gpu.ChunkStream(spead2gpu.ThreadPool(), extended(),
                             recv.ChunkStreamConfig(place=_layout(), max_chunks=2),
                             kind="device", emulator=gpu.Emulator(), n_chunks=3, n_device_chunks=2)

    def chunks():
        for c in stream:
            with c:
                yield c.chunk_id, int(c.present.sum())

    return stream, chunks


@pytest.mark.parametrize("make", [_ring_chunk_stream, _gpu_chunk_stream], ids=["ChunkRingStream", "gpu"])
def test_udp_chunk_stream_overload(make):
    sk = tiny_socket()
    port = sk.getsockname()[1]
    stream, chunks = make()
    stream.add_udp_reader(sk)
    present = []

    def consume():
        for chunk_id, n in chunks():
            time.sleep(0.002)            # a chunk of 8 heaps takes longer than 8 heaps' sending
            present.append((chunk_id, n))

    consumer = threading.Thread(target=consume)
    consumer.start()
    tx = blast(port, N)
    finish(tx, port, stream, N + 1)
    consumer.join(30)
    assert not consumer.is_alive()
    stats = stream.stats
    drops = stats["spead2gpu.kernel_drops"]
    got = sum(n for _, n in present)
    assert drops > 0, "the receiver was not overloaded"
    # Chunks that lost every heap are never opened; the rest arrive in order.
    ids = [cid for cid, _ in present]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    # The stop heap is rejected by the placement, as in spead2: one rejected heap that was not data.
    assert got + drops + stats["too_old_heaps"] + stats["rejected_heaps"] - 1 == N, dict(stats.items())
    print(f"UDP {make.__name__}: sent {N} = placed {got} + kernel drops {drops} + too old "
          f"{stats['too_old_heaps']} + rejected {stats['rejected_heaps'] - 1} (the stop heap not counted)")
    sk.close()


def _damaged_packets():
    """Heaps 1..n in timestamp order, with damage of every counted kind.

    Returns (packets, sent data heaps, expected counts)."""
    pkts, sent = [], 0
    counts = {"incomplete": 0, "too_old": 0, "rejected": 0, "malformed": 0}
    cnt = 1
    for ts in range(400):
        kind = ts % 25
        if kind == 3:                   # a two-packet heap with its second packet lost
            data = bytes(HS)
            pkts.append(heap_packet(cnt, 0, data[:HS // 2], HS, [imm(TS_ID, ts * HS), addr(DATA_ID, 0)]))
            counts["incomplete"] += 1
        elif kind == 7 and ts > 3 * TPC:   # a stale timestamp, behind the window
            pkts.append(one_packet_heap(cnt, ts - 3 * TPC))
            counts["too_old"] += 1
        elif kind == 11:                # a timestamp that is not a multiple of the step
            data = bytes(HS)
            pkts.append(heap_packet(cnt, 0, data, HS, [imm(TS_ID, ts * HS + 1), addr(DATA_ID, 0)]))
            counts["rejected"] += 1
        elif kind == 13:                # not SPEAD at all
            pkts.append(b"\x00" * 64)
            counts["malformed"] += 1
            continue
        else:
            pkts.append(one_packet_heap(cnt, ts))
        sent += 1
        cnt += 1
    pkts.append(stop_packet(cnt))
    return pkts, sent, counts


def test_inproc_ring_stream_accounting():
    pkts, sent, counts = _damaged_packets()
    q = spead2gpu.InprocQueue()
    for p in pkts:
        q.add_packet(p)
    q.stop()
    stream = recv.Stream(spead2gpu.ThreadPool(), extended(), recv.RingStreamConfig(heaps=2))
    stream.add_inproc_reader(q)

    def consume():
        n = 0
        for heap in stream:
            time.sleep(0.0001)
            n += isinstance(heap, recv.Heap)
        return n

    delivered = run_with_timeout(consume, 30)
    stats = stream.stats
    # Without a placement, stale and unplaceable heaps are ordinary heaps.
    assert delivered + stats["incomplete_heaps_evicted"] == sent
    assert stats["incomplete_heaps_evicted"] == counts["incomplete"]
    assert stats["spead2gpu.malformed_packets"] == counts["malformed"]
    print(f"inproc ring stream: sent {sent} = complete {delivered} + incomplete "
          f"{stats['incomplete_heaps_evicted']}; malformed packets {stats['spead2gpu.malformed_packets']}")


def test_inproc_chunk_stream_accounting():
    pkts, sent, counts = _damaged_packets()
    q = spead2gpu.InprocQueue()
    for p in pkts:
        q.add_packet(p)
    q.stop()
    stream, chunks = _ring_chunk_stream()
    stream.add_inproc_reader(q)
    got = run_with_timeout(lambda: sum(n for _, n in chunks()), 30)
    stats = stream.stats
    # An incomplete heap keeps its place in its chunk with its present flag clear. The stop
    # heap is rejected by the placement (as spead2 rejects it): one rejected heap that was not data.
    accounted = (got + stats["incomplete_heaps_evicted"] + stats["too_old_heaps"]
                 + stats["rejected_heaps"] - 1)
    assert accounted == sent, (got, dict(stats.items()))
    assert stats["too_old_heaps"] == counts["too_old"]
    assert stats["rejected_heaps"] == counts["rejected"] + 1
    assert stats["incomplete_heaps_evicted"] == counts["incomplete"]
    assert stats["spead2gpu.malformed_packets"] == counts["malformed"]
    print(f"inproc chunk stream: sent {sent} = placed {got} + incomplete "
          f"{stats['incomplete_heaps_evicted']} + too old {stats['too_old_heaps']} + rejected "
          f"{stats['rejected_heaps'] - 1}; malformed packets {stats['spead2gpu.malformed_packets']}")
