"""Receiving SPEAD streams.

The stream, heap, configuration and statistics classes come from the
compiled extension (:mod:`spead2gpu._spead2.recv`). Received heaps are
normally passed to :meth:`spead2gpu.ItemGroup.update`.

The chunk API (:class:`Chunk`, :class:`ChunkRingbuffer`,
:class:`ChunkRingStream`, :class:`ChunkStreamRingGroup`, …) is exported when
the extension provides it. Asynchronous receive is in
:mod:`spead2gpu.recv.asyncio`.
"""

import collections.abc as _abc
import sys as _sys

from spead2gpu._export import export_compiled as _export_compiled
from spead2gpu._spead2 import recv as _recv

#: Names re-exported from the compiled module when it defines them.
_COMPILED_NAMES = [
    "Stream",
    "StreamConfig",
    "RingStreamConfig",
    "Heap",
    "HeapBase",
    "IncompleteHeap",
    "RawItem",
    "StreamStats",
    "StreamStatConfig",
    "UdpIbvConfig",
    "_Stream",
    # Chunk API
    "Chunk",
    "ChunkRingPair",
    "ChunkRingStream",
    "ChunkRingbuffer",
    "ChunkStreamConfig",
    "ChunkStreamGroupConfig",
    "ChunkStreamGroupMember",
]

# Anything else public that the extension adds, too (the group is wrapped below).
_export_compiled(globals(), _recv, _COMPILED_NAMES, also=lambda name: name != "ChunkStreamRingGroup")

#: Indices of the core statistics in :class:`StreamStats`.
stream_stat_indices = _recv.stream_stat_indices
# Allow ``import spead2gpu.recv.stream_stat_indices``
_sys.modules.setdefault(__name__ + ".stream_stat_indices", stream_stat_indices)

if hasattr(_recv, "ChunkStreamRingGroup"):
    _ChunkStreamRingGroup = _recv.ChunkStreamRingGroup

    class ChunkStreamRingGroup(_ChunkStreamRingGroup):
        """Group of chunk streams that fill the same chunks, using ringbuffers.

        Parameters
        ----------
        config : ChunkStreamGroupConfig
            Group configuration
        data_ringbuffer : ChunkRingbuffer
            Ringbuffer to which completed chunks are pushed
        free_ringbuffer : ChunkRingbuffer
            Ringbuffer from which empty chunks are taken

        Members are added with :meth:`emplace_back`. The group is a
        :class:`collections.abc.Sequence` of its members
        (:class:`ChunkStreamGroupMember`): it supports ``len``, indexing
        (including slices), iteration, ``reversed``, ``in``, :meth:`count`
        and :meth:`index`.
        """

        # The compiled base has a pybind11 metaclass, so the Sequence ABC
        # cannot be a base class; take its mixin methods and register instead.
        __iter__ = _abc.Sequence.__iter__
        __reversed__ = _abc.Sequence.__reversed__
        __contains__ = _abc.Sequence.__contains__
        index = _abc.Sequence.index
        count = _abc.Sequence.count

    _abc.Sequence.register(ChunkStreamRingGroup)
