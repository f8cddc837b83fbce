"""Sending SPEAD streams.

Heaps are built with :class:`Heap` (usually via a :class:`HeapGenerator`
or the convenience class :class:`ItemGroup`) and sent with one of the
stream classes, each tied to one transport: :class:`UdpStream`,
:class:`TcpStream`, :class:`BytesStream` or :class:`InprocStream`.
Asynchronous sending is in :mod:`spead2gpu.send.asyncio`.
"""

import weakref

import spead2gpu
from spead2gpu._export import export_compiled as _export_compiled
from spead2gpu._spead2 import Flavour as _Flavour
from spead2gpu._spead2 import send as _send
from spead2gpu._spead2.send import Heap

#: Names re-exported from the compiled module when it defines them.
_COMPILED_NAMES = [
    "Heap",
    "HeapReference",
    "HeapReferenceList",
    "PacketGenerator",
    "RateMethod",
    "GroupMode",
    "StreamConfig",
    "Stream",
    "BytesStream",
    "InprocStream",
    "UdpStream",
    "TcpStream",
    "UdpIbvConfig",
    "UdpIbvStream",
]

# Anything else public that the extension adds, too, except the raw asyncio
# classes, which spead2gpu.send.asyncio wraps.
_export_compiled(globals(), _send, _COMPILED_NAMES, also=lambda name: not name.endswith("Asyncio"))

_DESCRIPTOR_MODES = ("stale", "all", "none")


class _ItemInfo:
    """What a :class:`HeapGenerator` last sent for one item ID."""

    __slots__ = ("version", "descriptor_cnt", "item")

    def __init__(self, item):
        #: Version of the value last sent, or ``None`` if never sent
        self.version = None
        #: Value of the generator's heap counter when the descriptor was last sent
        self.descriptor_cnt = None
        #: Weak reference to the item, to notice when it has been replaced
        self.item = weakref.ref(item)


class HeapGenerator:
    """Builds heaps from an item group, sending only what has changed.

    Parameters
    ----------
    item_group : spead2gpu.ItemGroup
        Items to send
    descriptor_frequency : int, optional
        If given, descriptors are re-sent (in ``'stale'`` mode) once this many
        heaps have been generated since they were last sent.
    flavour : spead2gpu.Flavour
        SPEAD flavour of the generated heaps
    """

    def __init__(self, item_group, descriptor_frequency=None, flavour=_Flavour()):
        self._item_group = item_group
        self._info = {}
        self._descriptor_frequency = descriptor_frequency
        self._descriptor_cnt = 0
        self._flavour = flavour

    def _get_info(self, item):
        info = self._info.get(item.id)
        if info is None or info.item() is not item:
            info = _ItemInfo(item)
            self._info[item.id] = info
        return info

    def _descriptor_stale(self, info):
        if info.descriptor_cnt is None:
            return True
        freq = self._descriptor_frequency
        return freq is not None and self._descriptor_cnt - info.descriptor_cnt >= freq

    def add_to_heap(self, heap, descriptors="stale", data="stale"):
        """Add descriptors and item values to *heap*.

        For each item (in item group order) the descriptor is added and then
        the value, each according to its mode:

        - ``'stale'``: descriptors never sent by this generator (or due again
          under `descriptor_frequency`); values whose version changed since
          they were last sent;
        - ``'all'``: everything;
        - ``'none'``: nothing.

        Items whose value is ``None`` are never added as data.

        Returns
        -------
        heap
            The heap passed in.

        Raises
        ------
        ValueError
            if a mode is not one of ``'stale'``, ``'all'`` or ``'none'``
        """
        if descriptors not in _DESCRIPTOR_MODES:
            raise ValueError("descriptors must be one of 'stale', 'all', 'none'")
        if data not in _DESCRIPTOR_MODES:
            raise ValueError("data must be one of 'stale', 'all', 'none'")
        for item in self._item_group.values():
            info = self._get_info(item)
            if descriptors == "all" or (descriptors == "stale" and self._descriptor_stale(info)):
                heap.add_descriptor(item)
                info.descriptor_cnt = self._descriptor_cnt
            if item.value is not None:
                if data == "all" or (data == "stale" and info.version != item.version):
                    heap.add_item(item)
                    info.version = item.version
        self._descriptor_cnt += 1
        return heap

    def get_heap(self, *args, **kwargs):
        """Return a new heap filled by :meth:`add_to_heap` (same arguments)."""
        heap = Heap(self._flavour)
        self.add_to_heap(heap, *args, **kwargs)
        return heap

    def get_start(self):
        """Return a heap containing only a start-of-stream marker."""
        heap = Heap(self._flavour)
        heap.add_start()
        return heap

    def get_end(self):
        """Return a heap containing only an end-of-stream marker."""
        heap = Heap(self._flavour)
        heap.add_end()
        return heap


class ItemGroup(spead2gpu.ItemGroup, HeapGenerator):
    """An :class:`spead2gpu.ItemGroup` that is its own :class:`HeapGenerator`.

    Parameters
    ----------
    descriptor_frequency : int, optional
        See :class:`HeapGenerator`
    flavour : spead2gpu.Flavour
        SPEAD flavour of the generated heaps
    """

    def __init__(self, descriptor_frequency=None, flavour=_Flavour()):
        spead2gpu.ItemGroup.__init__(self)
        HeapGenerator.__init__(self, self, descriptor_frequency, flavour)
