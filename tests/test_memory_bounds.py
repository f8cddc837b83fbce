"""Bounded memory under hostile input (see docs/architecture.md, "Memory bounds").

Each attack runs in a fresh process (tests/_memory_attack.py), which reports
its peak resident memory before and after. A receive stream holds at most
``max_heaps * substreams`` live heaps plus the ring's heaps and the one the
consumer holds; each heap's payload is at most ``max_heap_length`` bytes and
its item pointers at most ``max_heap_items``. Memory is committed only for
bytes that arrive, so a header that claims 512 GiB costs nothing, and a flood
of heaps, items or unsized payload is refused (and counted) at the bound.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ALIASED_TO_REFERENCE, SANITIZER, assert_rss_growth_below

pytestmark = pytest.mark.skipif(ALIASED_TO_REFERENCE,
                                reason="max_heap_length / max_heap_items are spead2gpu's")

HERE = os.path.dirname(os.path.abspath(__file__))
MiB = 1 << 20
MAX_HEAPS, RING_HEAPS = 4, 4            # as in _memory_attack.py
SLACK = 24 * MiB                        # allocator and interpreter noise


def attack(name, max_heap_length, max_heap_items):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, os.path.join(HERE, "_memory_attack.py"), name,
                           str(max_heap_length), str(max_heap_items)],
                          capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["growth"] = result["after"] - result["before"]
    # The figure for the record (shown with pytest -s).
    print(f"memory attack {name}: peak RSS grew {result['growth'] / MiB:.2f} MiB "
          f"(max_heap_length {max_heap_length}, max_heap_items {max_heap_items})")
    return result


def bound(max_heap_length, max_heap_items):
    """The documented bound for one stream of _memory_attack.py's configuration."""
    heaps = MAX_HEAPS + RING_HEAPS + 2        # live + ring + the consumer's + the one being pushed
    return heaps * (max_heap_length + 40 * max_heap_items)


def test_huge_heap_length_is_refused_before_allocating():
    r = attack("huge_heap_length", 1 << 31, 1 << 20)       # the default bounds
    assert r["stats"]["spead2gpu.rejected_packets"] == 20000
    assert r["stats"]["heaps"] == 0
    assert_rss_growth_below(r["growth"], SLACK)
    # Refused for its length, not because a 512 GiB allocation happened to fail.
    assert any("longer than max_heap_length" in reason for reason in r["reasons"]), r["reasons"]
    assert not any("could not be allocated" in reason for reason in r["reasons"]), r["reasons"]


@pytest.mark.skipif(SANITIZER == "asan", reason="under ASan every 1 GiB allocation poisons 128 MiB of shadow "
                    "memory: 20000 of them take many minutes (the normal suite runs this attack)")
def test_long_heaps_commit_only_what_arrives():
    """1 GiB heaps are allowed by default: each costs the 8 KiB that arrived, not 1 GiB."""
    r = attack("long_heaps", 1 << 31, 1 << 20)
    assert r["stats"]["heaps"] == 20000
    assert r["stats"]["incomplete_heaps_evicted"] + r["stats"]["incomplete_heaps_flushed"] == 20000
    assert_rss_growth_below(r["growth"], SLACK)


@pytest.mark.parametrize("name", ["partial_heaps", "unsized_growing", "many_items"])
def test_attack_stays_within_the_bound(name):
    max_len, max_items = MiB, 4096
    r = attack(name, max_len, max_items)
    stats = r["stats"]
    assert_rss_growth_below(r["growth"], bound(max_len, max_items) + SLACK + 1, str(r))
    if name == "partial_heaps":                  # 160 MB offered, one heap after another
        assert stats["incomplete_heaps_evicted"] + stats["incomplete_heaps_flushed"] == 20000
    elif name == "unsized_growing":              # 4 MiB offered to one heap: 1 MiB kept, the rest refused
        assert stats["spead2gpu.rejected_packets"] == 512 - max_len // 8192
    else:                                        # 200,000 pointers offered, 4096 allowed
        assert stats["spead2gpu.rejected_packets"] == 200 - max_items // 1000


def test_descriptors_with_huge_shapes_are_value_errors():
    r = attack("huge_descriptor", 1 << 31, 1 << 20)
    # The descriptor heap is accepted; the value that cannot have that shape is a ValueError.
    assert r["outcomes"] == ["ok", "ValueError", "ok", "ValueError"]
    assert_rss_growth_below(r["growth"], SLACK)
