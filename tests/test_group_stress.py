"""Stress matrix for chunk stream groups (the state machine in
src/cpu/recv/chunk/group.h): members 1-8, free chunks from exactly the group's
max_chunks to twice that, data rings of 1 and 8, both eviction modes, and
eight traffic scenarios. Every case must end (the data ring stops after the
senders stop) within a bounded time; where the outcome is deterministic
(LOSSLESS, or a single member) the chunks and statistics must equal spead2
4.5.1's on the same packets; elsewhere the chunks must be consistent.

Set SPEAD2GPU_STRESS_REPEAT=N to run the whole matrix N times.
"""

from __future__ import annotations

import importlib
import itertools
import os
import threading
import time

import numpy as np
import pytest

import spead2gpu
import spead2gpu.recv
from conftest import reference, run_with_timeout
from test_chunks import HPC, HS, ITEMS, SENTINEL, check_chunk_contents, heaps

G = 4                      # the group's max_chunks (members use the same)
N_CHUNKS = 12              # chunks' worth of heaps per case
INT64_MAX = 2**63 - 1
REPEAT = int(os.environ.get("SPEAD2GPU_STRESS_REPEAT", "1"))

SCENARIOS = ["all", "missing_member", "member_stops_halfway", "missing_chunks", "late_member",
             "int64_limit", "slow_consumer", "returned_out_of_order"]


def traffic(scenario, members):
    """Heap cnts for each member (heap c goes to member c % members), and
    whether the last member is sent late."""
    cnts = list(range(N_CHUNKS * HPC))
    if scenario == "missing_chunks":
        cnts = [c for c in cnts if c // HPC not in (3, 5, 6, 7)]
    per_member = [[c for c in cnts if c % members == m] for m in range(members)]
    if scenario == "missing_member" and members > 1:
        per_member[-1] = []
    if scenario == "member_stops_halfway":
        per_member[-1] = per_member[-1][:len(per_member[-1]) // 2]
    return per_member, scenario == "late_member"


def run_case(mod, place, *, members, mode, free, data_size, scenario):
    """Run one case on ``mod``; returns (chunks, per-member stats)."""
    recv = mod.recv
    config = recv.ChunkStreamGroupConfig(
        max_chunks=G, eviction_mode=getattr(recv.ChunkStreamGroupConfig.EvictionMode, mode))
    data_ring, free_ring = recv.ChunkRingbuffer(data_size), recv.ChunkRingbuffer(free)
    group = recv.ChunkStreamRingGroup(config, data_ring, free_ring)
    ccfg = recv.ChunkStreamConfig(items=ITEMS, max_chunks=G, place=place)
    for _ in range(members):
        group.emplace_back(mod.ThreadPool(), recv.StreamConfig(), ccfg)
    for _ in range(free):
        group.add_free_chunk(recv.Chunk(present=np.zeros(HPC, np.uint8),
                                        data=np.full(HPC * HS, SENTINEL, np.uint8)))
    per_member, late = traffic(scenario, members)
    queues = [mod.InprocQueue() for _ in range(members)]
    for member, queue in zip(group, queues):
        member.add_inproc_reader(queue)

    def send(indices):
        # Round-robin over the members' queues, heap by heap.
        pkts = [[heaps([c]) for c in per_member[m]] for m in indices]
        for row in itertools.zip_longest(*pkts):
            for q_index, heap_pkts in zip(indices, row):
                for p in heap_pkts or ():
                    queues[q_index].add_packet(p)
        for m in indices:
            queues[m].stop()

    early = list(range(members - 1)) if late and members > 1 else list(range(members))
    sender = threading.Thread(target=send, args=(early,))
    sender.start()
    if late and members > 1:
        def send_late():
            time.sleep(0.02)
            send([members - 1])
        late_sender = threading.Thread(target=send_late)
        late_sender.start()
    else:
        late_sender = None

    out = []
    held = None

    def consume():
        nonlocal held
        for chunk in data_ring:
            out.append((chunk.chunk_id, bytes(chunk.present), bytes(chunk.data)))
            assert len(out) <= 4 * N_CHUNKS, "more chunks than were sent"
            np.asarray(chunk.data)[:] = SENTINEL
            if scenario == "slow_consumer":
                time.sleep(0.002)
            if scenario == "returned_out_of_order" and free > G:
                # Keep one chunk back and return it after the next one.
                if held is None:
                    held = chunk
                    continue
                group.add_free_chunk(chunk)
                group.add_free_chunk(held)
                held = None
                continue
            group.add_free_chunk(chunk)

    run_with_timeout(consume, 30)
    sender.join(10)
    if late_sender is not None:
        late_sender.join(10)
    stats = [(m.stats["too_old_heaps"], m.stats["rejected_heaps"], m.stats["heaps"]) for m in group]
    group.stop()
    return out, stats


def deterministic(mode, members, scenario):
    if members == 1:
        return True
    return mode == "LOSSLESS"


def check_consistent(chunks, bias):
    ids = [c[0] for c in chunks]
    assert ids == sorted(set(ids)), "chunks delivered once each, in id order"
    check_chunk_contents([(cid + bias, None, present, data, None) for cid, present, data in chunks])


CASES = [
    (members, mode, free, data_size, scenario)
    for members in (1, 2, 3, 8)
    for mode in ("LOSSLESS", "LOSSY")
    for free in (G, 2 * G)
    for data_size in (1, 8)
    for scenario in SCENARIOS
]


@pytest.mark.parametrize("repeat", range(REPEAT))
@pytest.mark.parametrize("members,mode,free,data_size,scenario", CASES)
def test_group_stress(cb, members, mode, free, data_size, scenario, repeat):
    # chunk id = heap cnt // HPC + offset; int64_limit puts the last chunk at 2**63 - 1.
    offset = INT64_MAX - (N_CHUNKS - 1) if scenario == "int64_limit" else 0
    place = cb.generic(bias=-offset)(-1)
    kw = dict(members=members, mode=mode, free=free, data_size=data_size, scenario=scenario)
    got, got_stats = run_case(spead2gpu, place, **kw)
    check_consistent([(cid - offset, p, d) for cid, p, d in got], 0)
    per_member, _ = traffic(scenario, members)
    sent = {c // HPC for m in per_member for c in m}
    if deterministic(mode, members, scenario):
        ref = reference()
        importlib.import_module("spead2.recv")
        expected, expected_stats = run_case(ref, place, **kw)
        assert [c[0] for c in got] == [c[0] for c in expected]
        assert got == expected
        assert got_stats == expected_stats
        # LOSSLESS loses nothing: every heap sent is present.
        delivered = {(cid - offset) * HPC + i for cid, present, _ in got
                     for i in range(HPC) if present[i]}
        assert delivered == {c for m in per_member for c in m}
    else:
        # Windows open max_chunks - 1 ids before the first chunk named, and a
        # lossy flush may open the group window up to G - 1 more before that.
        ids = {c[0] - offset for c in got}
        assert min(ids) >= min(sent) - 2 * (G - 1) and max(ids) == max(sent)
