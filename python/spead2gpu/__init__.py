"""spead2gpu: SPEAD protocol implementation with a GPU-oriented receive path.

The Python API follows spead2 4.5.1, so that code written for spead2 keeps
working after ``import spead2gpu as spead2``.  This module provides the
constants and classes shared by sending and receiving (re-exported from the
compiled extension :mod:`spead2gpu._spead2`) together with the pure-Python
item model: :class:`Descriptor`, :class:`Item` and :class:`ItemGroup`.

Sending lives in :mod:`spead2gpu.send` and receiving in :mod:`spead2gpu.recv`;
neither is imported automatically.
"""

from . import _spead2
from ._codec import _FASTPATH_IMMEDIATE, _FASTPATH_NONE, _FASTPATH_NUMPY  # noqa: F401
from ._export import export_compiled as _export_compiled
from ._items import _UNRESERVED_ID, Descriptor, Item, ItemGroup  # noqa: F401
from ._spead2 import (  # noqa: F401
    BUG_COMPAT_DESCRIPTOR_WIDTHS,
    BUG_COMPAT_PYSPEAD_0_5_2,
    BUG_COMPAT_SHAPE_BIT_1,
    BUG_COMPAT_SWAP_ENDIAN,
    CTRL_DESCRIPTOR_REISSUE,
    CTRL_DESCRIPTOR_UPDATE,
    CTRL_STREAM_START,
    CTRL_STREAM_STOP,
    DESCRIPTOR_DESCRIPTION_ID,
    DESCRIPTOR_DTYPE_ID,
    DESCRIPTOR_FORMAT_ID,
    DESCRIPTOR_ID,
    DESCRIPTOR_ID_ID,
    DESCRIPTOR_NAME_ID,
    DESCRIPTOR_SHAPE_ID,
    HEAP_CNT_ID,
    HEAP_LENGTH_ID,
    MEMCPY_NONTEMPORAL,
    MEMCPY_STD,
    NULL_ID,
    PAYLOAD_LENGTH_ID,
    PAYLOAD_OFFSET_ID,
    STREAM_CTRL_ID,
    Empty,
    Flavour,
    Full,
    InprocQueue,
    MemoryAllocator,
    MemoryPool,
    MmapAllocator,
    RawDescriptor,
    Stopped,
    ThreadPool,
)

# Only present when the extension is built with ibverbs support (never in the
# reference 4.5.1 build); code probes it with ``hasattr(spead2, "IbvContext")``.
_export_compiled(globals(), _spead2, ["IbvContext"])

try:
    from importlib.metadata import version as _dist_version

    __version__: str = _dist_version("spead2gpu")
except Exception:  # not installed as a distribution (e.g. running in-tree)
    __version__ = "0.1.0"


def parse_range_list(ranges: str) -> list[int]:
    """Parse a comma-separated list of integers and inclusive ranges.

    For example ``"2,3-5"`` gives ``[2, 3, 4, 5]``, and the empty string gives
    an empty list.  This is used to parse CPU affinity lists on command lines.

    Raises
    ------
    ValueError
        if an entry is not an integer or an ``a-b`` range of integers
    """
    if not ranges:
        return []
    out: list[int] = []
    for part in ranges.split(","):
        if "-" in part:
            first, last = part.split("-", 1)
            out.extend(range(int(first), int(last) + 1))
        else:
            out.append(int(part))
    return out
