"""Chunk stream groups: several streams (one thread each) filling the same
chunks, compared with spead2 where the outcome is deterministic (LOSSLESS),
and checked for consistency where it is not (LOSSY)."""

from __future__ import annotations

import collections.abc
import socket

import numpy as np
import pytest

import spead2gpu
import spead2gpu.recv
from conftest import both_libs, run_with_timeout, stop_packet
from test_chunks import HPC, HS, ITEMS, PKT, SENTINEL, check_chunk_contents, heaps, snapshot


def make_group(mod, place, *, members=2, mode="LOSSLESS", max_chunks=4, n_chunks=8):
    EvictionMode = mod.recv.ChunkStreamGroupConfig.EvictionMode
    config = mod.recv.ChunkStreamGroupConfig(max_chunks=max_chunks,
                                            eviction_mode=getattr(EvictionMode, mode))
    data_ring, free_ring = mod.recv.ChunkRingbuffer(n_chunks), mod.recv.ChunkRingbuffer(n_chunks)
    group = mod.recv.ChunkStreamRingGroup(config, data_ring, free_ring)
    ccfg = mod.recv.ChunkStreamConfig(items=ITEMS, max_chunks=max_chunks, place=place)
    for _ in range(members):
        group.emplace_back(mod.ThreadPool(), mod.recv.StreamConfig(), ccfg)
    for _ in range(n_chunks):
        group.add_free_chunk(mod.recv.Chunk(present=np.zeros(HPC, np.uint8),
                                            data=np.full(HPC * HS, SENTINEL, np.uint8)))
    return group, data_ring


def consume(group, data_ring):
    out = []
    for chunk in data_ring:
        out.append(snapshot(chunk))
        np.asarray(chunk.data)[:] = SENTINEL
        group.add_free_chunk(chunk)
        assert len(out) < 1000
    return out


def split_by_member(cnts, members=2):
    """Heap cnt c goes to member c % members (members write disjoint heaps)."""
    return [[c for c in cnts if c % members == m] for m in range(members)]


CNTS = [c for c in range(48) if c not in (5, 13, 22, 30)]


@pytest.mark.parametrize("via", ["buffer", "inproc"])
def test_lossless_group_matches_spead2(cb, via):
    results = []
    for mod in both_libs()[::-1]:
        group, data_ring = make_group(mod, cb.simple())
        for member, cnts in zip(group, split_by_member(CNTS)):
            pkts = heaps(cnts)
            if via == "buffer":
                member.add_buffer_reader(b"".join(pkts))
            else:
                queue = mod.InprocQueue()
                for p in pkts:
                    queue.add_packet(p)
                queue.stop()
                member.add_inproc_reader(queue)
        chunks = run_with_timeout(lambda: consume(group, data_ring), 20)
        group.stop()
        results.append(chunks)
    got, expected = results
    assert [c[0] for c in got] == list(range(12))
    assert got == expected
    check_chunk_contents(got)
    missing = {c for c in range(48) if c not in CNTS}
    for cid, _, present, _, _ in got:
        for i in range(HPC):
            assert present[i] == (0 if cid * HPC + i in missing else 1)


def test_lossy_group_is_consistent(cb):
    """LOSSY advances without waiting for lagging members: which heaps survive
    depends on timing, but chunks arrive once each, in order, and every heap
    marked present holds exactly its own payload."""
    group, data_ring = make_group(spead2gpu, cb.simple(), mode="LOSSY", max_chunks=2)
    for member, cnts in zip(group, split_by_member(list(range(64)))):
        member.add_buffer_reader(b"".join(heaps(cnts)))
    chunks = run_with_timeout(lambda: consume(group, data_ring), 20)
    ids = [c[0] for c in chunks]
    assert ids == sorted(set(ids))
    check_chunk_contents(chunks)
    stats = [m.stats for m in group]
    present = sum(sum(c[2]) for c in chunks)
    assert present <= 64
    assert present + sum(s["too_old_heaps"] for s in stats) >= 1
    group.stop()


def test_group_udp_lossless(cb):
    """Two members on their own UDP sockets and threads; a sender alternates
    heaps between them; every chunk arrives complete."""
    group, data_ring = make_group(spead2gpu, cb.simple())
    socks = []
    for member in group:
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        rx.bind(("127.0.0.1", 0))
        member.add_udp_reader(rx)
        socks.append(rx)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for m, cnts in enumerate(split_by_member(list(range(32)))):
        for p in heaps(cnts) + [stop_packet(999_999)]:
            tx.sendto(p, socks[m].getsockname())
    chunks = run_with_timeout(lambda: consume(group, data_ring), 20)
    group.stop()
    for s in socks + [tx]:
        s.close()
    assert [c[0] for c in chunks] == list(range(8))
    assert all(bytes(c[2]) == b"\x01" * HPC for c in chunks)
    check_chunk_contents(chunks)


def test_group_with_builtin_layout():
    """Each member receives one digitiser; the built-in layout interleaves
    them in the shared chunks without numba."""
    from conftest import addr, heap_packet, imm
    layout = spead2gpu.recv.ChunkLayout(heap_size=HS, timestamp_id=0x1600, timestamp_step=HS,
                                        timestamps_per_chunk=2, axes=["time", (0x3101, 2)])
    group, data_ring = make_group(spead2gpu, layout)
    for dig, member in enumerate(group):
        pkts = []
        for t in range(8):
            payload = bytes([(t * 2 + dig) & 0xFF]) * HS
            for off in range(0, HS, PKT):
                items = [imm(0x1600, t * HS), imm(0x3101, dig), addr(0x1000, 0)] if off == 0 else []
                pkts.append(heap_packet(100 + t * 2 + dig, off, payload[off:off + PKT], HS, items))
        member.add_buffer_reader(b"".join(pkts))
    chunks = run_with_timeout(lambda: consume(group, data_ring), 20)
    group.stop()
    assert [c[0] for c in chunks] == [0, 1, 2, 3]
    for cid, _, present, data, _ in chunks:
        assert bytes(present) == b"\x01" * 4
        for h in range(4):
            t, dig = cid * 2 + h // 2, h % 2
            assert data[h * HS:(h + 1) * HS] == bytes([(t * 2 + dig) & 0xFF]) * HS


def test_group_sequence_api(cb):
    for mod in both_libs()[::-1]:
        group, data_ring = make_group(mod, cb.simple(), members=3)
        assert len(group) == 3
        assert isinstance(group, collections.abc.Sequence)
        assert group[-1] is not None and type(group[0]).__name__ == "ChunkStreamGroupMember"
        assert len(group[0:2]) == 2
        assert len(list(group)) == 3
        with pytest.raises(IndexError):
            group[3]
        assert group.config.max_chunks == 4
        assert group.config.eviction_mode == mod.recv.ChunkStreamGroupConfig.EvictionMode.LOSSLESS
        too_big = mod.recv.ChunkStreamConfig(items=ITEMS, max_chunks=5, place=cb.simple())
        with pytest.raises(ValueError):
            group.emplace_back(mod.ThreadPool(), mod.recv.StreamConfig(), too_big)
        group.stop()


def test_member_stop_stops_group(cb):
    group, data_ring = make_group(spead2gpu, cb.simple())
    queues = []
    for member in group:
        queue = spead2gpu.InprocQueue()
        member.add_inproc_reader(queue)
        queues.append(queue)
    group[1].stop()
    # The whole group is stopped: the data ring ends, and so does the free ring.
    assert run_with_timeout(lambda: list(data_ring), 5) == []
    with pytest.raises(spead2gpu.Stopped):
        group.free_ringbuffer.put_nowait(spead2gpu.recv.Chunk(present=np.zeros(HPC, np.uint8),
                                                              data=np.zeros(HPC * HS, np.uint8)))
