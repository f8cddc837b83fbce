"""Statistics and drop logs as spead2 4.5.1 has them.

By default a stream's statistics are exactly spead2's: the same names, modes,
order and count (``config.stats``, ``stream.stats``, ``len``, positional
access, ``stream_stat_indices``), for plain, chunk and chunk-group streams, so
that code which indexes or counts them keeps working.  spead2gpu's own
counters (``spead2gpu.*``) run all the time and are reported with
``StreamConfig(extended_stats=True)``; a built-in ChunkLayout (a spead2gpu-only
feature) reports its own rejections either way.

Packets that spead2 drops with a log line are dropped with the same line
(text and level) on the ``spead2gpu`` logger; compared here by running the same
bad packets through both libraries.
"""

from __future__ import annotations

import logging
import socket
import struct
import time

import pytest
from test_bad_input import CORPUS, INPROC_UB_IN_SPEAD2, RING, good

import spead2gpu
import spead2gpu.recv
from conftest import (
    addr,
    both_libs,
    heap_packet,
    receive,
    run_with_timeout,
    spead2gpu_only,
    stats_dict,
    stop_packet,
)
from test_chunks import HPC, HS, ITEMS

#: spead2gpu's additions, in the order an extended plain stream reports them.
EXTENSION_STATS = ["spead2gpu.malformed_packets", "spead2gpu.rejected_packets", "spead2gpu.kernel_drops"]
#: ... and what a chunk stream adds before those.
CHUNK_EXTENSION_STATS = ["spead2gpu.bad_placement_heaps", "spead2gpu.free_chunk_wait_ns"]
LAYOUT_STATS = ["spead2gpu.layout_wrong_size_heaps", "spead2gpu.layout_misaligned_heaps",
                "spead2gpu.layout_out_of_range_heaps", "spead2gpu.layout_missing_item_heaps"]


def described(stat_configs):
    return [(s.name, s.mode.name) for s in stat_configs]


def make(mod, kind, cb, **config):
    """A stream of ``kind`` with one custom statistic; returns (stream, closer)."""
    cfg = mod.recv.StreamConfig(**config)
    cfg.add_stat("test.custom", mod.recv.StreamStatConfig.Mode.MAXIMUM)
    if kind == "stream":
        s = mod.recv.Stream(mod.ThreadPool(), cfg)
        return s, s.stop
    ccfg = mod.recv.ChunkStreamConfig(items=ITEMS, max_chunks=2, place=cb.generic()(-1))
    if kind == "chunk":
        s = mod.recv.ChunkRingStream(mod.ThreadPool(), cfg, ccfg, mod.recv.ChunkRingbuffer(2),
                                     mod.recv.ChunkRingbuffer(2))
        return s, s.stop
    group = mod.recv.ChunkStreamRingGroup(mod.recv.ChunkStreamGroupConfig(max_chunks=2),
                                          mod.recv.ChunkRingbuffer(2), mod.recv.ChunkRingbuffer(2))
    group.emplace_back(mod.ThreadPool(), cfg, ccfg)
    return group[0], group.stop


def stats_shape(stream):
    stats = stream.stats
    return dict(keys=list(stats.keys()), len=len(stats), n_values=len(list(stats.values())),
                config=described(stats.config), stream_config=described(stream.config.stats),
                positional=[stats[i] for i in range(len(stats))],
                items=[k for k, _ in stats.items()])


@pytest.mark.parametrize("kind", ["stream", "chunk", "group member"])
def test_default_stats_are_spead2s(cb, kind):
    shapes = {}
    for mod in both_libs():
        stream, stop = make(mod, kind, cb)
        shapes[mod.__name__] = stats_shape(stream)
        stop()
    assert shapes[spead2gpu.__name__] == shapes["spead2"]
    names = shapes["spead2"]["keys"]
    assert names[9] == "test.custom"
    assert len(names) == (10 if kind == "stream" else 12)


def test_default_config_stats_and_indices_are_spead2s():
    ref = both_libs()[0]
    assert described(spead2gpu.recv.StreamConfig().stats) == described(ref.recv.StreamConfig().stats)
    for name in dir(ref.recv.stream_stat_indices):
        if name.isupper():
            assert getattr(spead2gpu.recv.stream_stat_indices, name) == \
                getattr(ref.recv.stream_stat_indices, name)
    assert spead2gpu.recv.StreamConfig().next_stat_index() == ref.recv.StreamConfig().next_stat_index() == 9


def test_default_stats_add_and_compare_with_spead2s_arithmetic():
    """StreamStats from two streams add (spead2_recv sums them this way)."""
    a = spead2gpu.recv.Stream(spead2gpu.ThreadPool())
    b = spead2gpu.recv.Stream(spead2gpu.ThreadPool())
    total = a.stats + b.stats
    assert len(total) == 9 and total["heaps"] == 0
    a.stop()
    b.stop()


@spead2gpu_only
def test_extended_stats_keyword_and_property():
    assert spead2gpu.recv.StreamConfig().extended_stats is False
    config = spead2gpu.recv.StreamConfig(extended_stats=True)
    assert config.extended_stats is True
    config.extended_stats = False
    assert config.extended_stats is False
    # The StreamConfig itself never lists the extension statistics: only the stream adds them.
    assert len(spead2gpu.recv.StreamConfig(extended_stats=True).stats) == 9


@spead2gpu_only
@pytest.mark.parametrize("kind", ["stream", "chunk", "group member"])
def test_extended_stats_follow_spead2s(cb, kind):
    ref = both_libs()[0]
    stream, stop = make(ref, kind, cb)
    ref_keys = list(stream.stats.keys())
    stop()
    stream, stop = make(spead2gpu, kind, cb, extended_stats=True)
    keys = list(stream.stats.keys())
    assert stream.config.extended_stats
    assert [s.name for s in stream.config.stats] == keys
    stop()
    extension = EXTENSION_STATS if kind == "stream" else CHUNK_EXTENSION_STATS + EXTENSION_STATS
    assert keys == ref_keys + extension


@spead2gpu_only
def test_drops_are_counted_with_extended_stats_and_hidden_without():
    pkts = good(1) + CORPUS["bad_magic"] + CORPUS["duplicate_payload"] + good(2)
    counts = {}
    for extended in (False, True):
        heaps_out, stream = run_with_timeout(lambda: receive(
            spead2gpu, pkts, config=dict(extended_stats=extended), ring=RING, via="inproc"))
        assert sorted(h.cnt for h in heaps_out if isinstance(h, spead2gpu.recv.Heap)) == [1, 2]
        counts[extended] = dict(stream.stats.items())
    assert list(counts[False]) == list(counts[True])[:9]
    assert counts[True]["spead2gpu.malformed_packets"] == 1
    assert counts[True]["spead2gpu.rejected_packets"] == 1
    assert counts[True]["spead2gpu.kernel_drops"] == 0
    assert {k: counts[True][k] for k in counts[False]} == counts[False]


@spead2gpu_only
def test_layout_reports_its_rejections_without_extended_stats():
    layout = spead2gpu.recv.ChunkLayout(heap_size=HS, timestamp_id=0x1600, timestamp_step=HS,
                                        timestamps_per_chunk=HPC)
    stream = spead2gpu.recv.ChunkRingStream(
        spead2gpu.ThreadPool(), spead2gpu.recv.StreamConfig(),
        spead2gpu.recv.ChunkStreamConfig(place=layout, max_chunks=2),
        spead2gpu.recv.ChunkRingbuffer(2), spead2gpu.recv.ChunkRingbuffer(2))
    keys = list(stream.stats.keys())
    stream.stop()
    assert keys[9:] == ["too_old_heaps", "rejected_heaps"] + LAYOUT_STATS


# ---------------------------------------------------------------------------
# Drop logs
# ---------------------------------------------------------------------------

class Records(logging.Handler):
    """Collects (level, message) of INFO and above from one logger."""

    def __init__(self, name):
        super().__init__(logging.DEBUG)
        self.logger = logging.getLogger(name)
        self.records = []

    def emit(self, record):
        if record.levelno >= logging.INFO:
            self.records.append((record.levelname, record.getMessage()))

    def __enter__(self):
        self.old_level = self.logger.level
        self.logger.setLevel(logging.DEBUG)
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self)
        self.logger.setLevel(self.old_level)

    def settle(self, want=None, timeout=3.0):
        """The records once they stop arriving (both libraries forward C++ log
        messages to Python from a thread), or once they equal ``want``."""
        deadline = time.monotonic() + timeout
        last, quiet = None, 0
        while time.monotonic() < deadline:
            now = sorted(set(self.records))
            if want is not None and now == want:
                return now
            quiet = quiet + 1 if now == last else 0
            if want is None and quiet >= 10:
                return now
            last = now
            time.sleep(0.02)
        return sorted(set(self.records))


def logged(mod, run):
    with Records(mod.__name__) as rec:
        run(mod)
        return rec.settle()


def compare_logs(run):
    ref = both_libs()[0]
    expected = logged(ref, run)
    with Records(spead2gpu.__name__) as rec:
        run(spead2gpu)
        got = rec.settle(want=expected)
    assert got == expected
    return expected


P = bytes(range(200))
#: Cases beyond the bad-input corpus: stream-level refusals.
STREAM_CASES = {
    "unsized_first": ([heap_packet(5, 0, P[:100], None, [addr(0x1000, 0)])],
                      dict(allow_unsized_heaps=False)),
    "unsized_second": ([heap_packet(5, 0, P[:100], 200, [addr(0x1000, 0)]),
                        heap_packet(5, 100, P[100:], None)], dict(allow_unsized_heaps=False)),
    "heap_length_below_payload": ([heap_packet(5, 0, P[:100], None, [addr(0x1000, 0)]),
                                   heap_packet(5, 100, P[100:150], 120)], {}),
    "missed_start": ([heap_packet(5, 100, P[100:], 200)], {}),
    "out_of_order_overlap": ([heap_packet(5, 0, P[:100], 200, [addr(0x1000, 0)]),
                              heap_packet(5, 50, P[50:150], 200)], dict(allow_out_of_order=True)),
}
CASES = {name: (good(1) + pkts + good(2), {}) for name, pkts in CORPUS.items()
         if name not in INPROC_UB_IN_SPEAD2}
CASES.update({name: (good(1) + pkts + good(2), config) for name, (pkts, config) in STREAM_CASES.items()})


@spead2gpu_only
@pytest.mark.parametrize("name", sorted(CASES))
def test_drop_log_matches_spead2(name):
    pkts, config = CASES[name]
    outcome = {}

    def run(mod):
        _, stream = run_with_timeout(lambda: receive(mod, pkts, config=config, ring=RING, via="inproc"))
        outcome[mod.__name__] = stats_dict(stream.stats)

    compare_logs(run)
    assert outcome[spead2gpu.__name__] == outcome["spead2"]


@spead2gpu_only
def test_drop_logs_name_spead2s_reasons():
    """A sample of the texts, so that a silent spead2 (no log at all) cannot
    make the comparison above pass vacuously."""
    def run_case(name):
        return lambda mod: run_with_timeout(
            lambda: receive(mod, CASES[name][0], config=CASES[name][1], ring=RING, via="inproc"))

    assert compare_logs(run_case("unsized_first")) == [
        ("INFO", "packet rejected because it has no HEAP_LEN")]
    assert compare_logs(run_case("bad_magic")) == [
        ("INFO", "packet rejected because magic or version did not match")]
    assert compare_logs(run_case("truncated_payload")) == [
        ("INFO", "packet rejected because payload length overflows packet size (440 > 44)")]
    assert compare_logs(run_case("duplicate_payload"))[0][0] == "WARNING"


@spead2gpu_only
def test_truncated_datagram_log_matches_spead2():
    """A UDP datagram longer than max_size: spead2's "truncation" line."""
    big = struct.pack(">Q", 0x5304020600000004) + bytes(8 * 4) + bytes(2000)

    def run(mod):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            rx.bind(("127.0.0.1", 0))
            stream = mod.recv.Stream(mod.ThreadPool(), mod.recv.StreamConfig())
            stream.add_udp_reader(rx, max_size=1000)
            tx.sendto(big, rx.getsockname())
            tx.sendto(stop_packet(7), rx.getsockname())
            run_with_timeout(lambda: list(stream), 10)
            stream.stop()

    assert compare_logs(run) == [("INFO", "dropped packet due to truncation")]

