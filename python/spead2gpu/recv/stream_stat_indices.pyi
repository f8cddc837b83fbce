"""Indices of the core statistics in :class:`spead2gpu.recv.StreamStats`."""

from typing import Final

HEAPS: Final[int]
INCOMPLETE_HEAPS_EVICTED: Final[int]
INCOMPLETE_HEAPS_FLUSHED: Final[int]
PACKETS: Final[int]
BATCHES: Final[int]
MAX_BATCH: Final[int]
SINGLE_PACKET_HEAPS: Final[int]
SEARCH_DIST: Final[int]
WORKER_BLOCKED: Final[int]
