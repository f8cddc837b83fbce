from collections.abc import ItemsView, KeysView, Sequence, ValuesView
from typing import Any, Final, Literal, TypeAlias, overload

import numpy as np
import numpy.typing as npt
from typing_extensions import Buffer

import spead2gpu.recv

_EndpointList: TypeAlias = list[tuple[str, int]]
_Format: TypeAlias = Sequence[tuple[str, int]]
_Shape: TypeAlias = Sequence[int | None]
_Order: TypeAlias = Literal["C", "F"]

__version__: str

BUG_COMPAT_DESCRIPTOR_WIDTHS: Final[int]
BUG_COMPAT_SHAPE_BIT_1: Final[int]
BUG_COMPAT_SWAP_ENDIAN: Final[int]
BUG_COMPAT_PYSPEAD_0_5_2: Final[int]

NULL_ID: Final[int]
HEAP_CNT_ID: Final[int]
HEAP_LENGTH_ID: Final[int]
PAYLOAD_OFFSET_ID: Final[int]
PAYLOAD_LENGTH_ID: Final[int]
DESCRIPTOR_ID: Final[int]
STREAM_CTRL_ID: Final[int]

DESCRIPTOR_NAME_ID: Final[int]
DESCRIPTOR_DESCRIPTION_ID: Final[int]
DESCRIPTOR_SHAPE_ID: Final[int]
DESCRIPTOR_FORMAT_ID: Final[int]
DESCRIPTOR_ID_ID: Final[int]
DESCRIPTOR_DTYPE_ID: Final[int]

CTRL_STREAM_START: Final[int]
CTRL_DESCRIPTOR_REISSUE: Final[int]
CTRL_STREAM_STOP: Final[int]
CTRL_DESCRIPTOR_UPDATE: Final[int]

MEMCPY_STD: Final[int]
MEMCPY_NONTEMPORAL: Final[int]

_UNRESERVED_ID: Final[int]
_FASTPATH_NONE: Final[int]
_FASTPATH_IMMEDIATE: Final[int]
_FASTPATH_NUMPY: Final[int]

class Stopped(Exception): ...
class Empty(Exception): ...
class Full(Exception): ...

def parse_range_list(ranges: str) -> list[int]: ...

class Flavour:
    @overload
    def __init__(
        self, version: int, item_pointer_bits: int, heap_address_bits: int, bug_compat: int = 0
    ) -> None: ...
    @overload
    def __init__(self) -> None: ...
    def __eq__(self, other: object) -> bool: ...
    def __ne__(self, other: object) -> bool: ...
    @property
    def version(self) -> int: ...
    @property
    def item_pointer_bits(self) -> int: ...
    @property
    def heap_address_bits(self) -> int: ...
    @property
    def bug_compat(self) -> int: ...

class ThreadPool:
    @overload
    def __init__(self, threads: int = 1) -> None: ...
    @overload
    def __init__(self, threads: int, affinity: Sequence[int]) -> None: ...
    @staticmethod
    def set_affinity(core: int) -> None: ...
    def stop(self) -> None: ...

class MemoryAllocator:
    def __init__(self) -> None: ...

class MmapAllocator(MemoryAllocator):
    def __init__(self, flags: int = 0, prefer_huge: bool = False) -> None: ...

class MemoryPool(MemoryAllocator):
    warn_on_empty: bool
    @overload
    def __init__(
        self,
        lower: int,
        upper: int,
        max_free: int,
        initial: int,
        allocator: MemoryAllocator | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self,
        thread_pool: ThreadPool,
        lower: int,
        upper: int,
        max_free: int,
        initial: int,
        low_water: int,
        allocator: MemoryAllocator | None = None,
    ) -> None: ...

class InprocQueue:
    def __init__(self) -> None: ...
    def add_packet(self, packet: Buffer) -> None: ...
    def stop(self) -> None: ...

class RawDescriptor:
    id: int
    name: bytes
    description: bytes
    shape: list[int | None]
    format: list[tuple[str, int]]
    numpy_header: bytes
    def __init__(self) -> None: ...

class Descriptor:
    id: int
    name: str
    description: str
    shape: tuple[int | None, ...]
    dtype: np.dtype[Any] | None
    order: _Order
    format: _Format | None
    def __init__(
        self,
        id: int,
        name: str,
        description: str,
        shape: _Shape,
        dtype: npt.DTypeLike | None = None,
        order: _Order = "C",
        format: _Format | None = None,
    ) -> None: ...
    @property
    def itemsize_bits(self) -> int: ...
    def is_variable_size(self) -> bool: ...
    def allow_immediate(self) -> bool: ...
    def dynamic_shape(self, max_elements: int) -> tuple[int | None, ...] | list[int]: ...
    def compatible_shape(self, shape: Sequence[int | None]) -> bool: ...
    @classmethod
    def from_raw(cls, raw_descriptor: RawDescriptor, flavour: Flavour) -> Descriptor: ...
    def to_raw(self, flavour: Flavour) -> RawDescriptor: ...
    @classmethod
    def _parse_format(cls, fmt: _Format) -> np.dtype[Any]: ...
    @classmethod
    def _make_numpy_header(cls, shape: _Shape, dtype: np.dtype[Any], order: _Order) -> str: ...
    @classmethod
    def _parse_numpy_header(cls, header: str) -> tuple[tuple[int, ...], _Order, np.dtype[Any]]: ...

class Item(Descriptor):
    version: int
    def __init__(
        self,
        id: int | None,
        name: str,
        description: str,
        shape: _Shape,
        dtype: npt.DTypeLike | None = None,
        order: _Order = "C",
        format: _Format | None = None,
        *,
        value: Any = None,
    ) -> None: ...
    @classmethod
    def from_raw(cls, raw_descriptor: RawDescriptor, flavour: Flavour) -> Item: ...
    @property
    def value(self) -> Any: ...
    @value.setter
    def value(self, new_value: Any) -> None: ...
    def set_from_raw(self, raw_item: spead2gpu.recv.RawItem, new_order: str = "=") -> None: ...
    def to_buffer(self) -> Buffer: ...

class ItemGroup:
    def __init__(self) -> None: ...
    def add_item(
        self,
        id: int | None,
        name: str,
        description: str,
        shape: _Shape,
        dtype: npt.DTypeLike | None = None,
        order: _Order = "C",
        format: _Format | None = None,
        value: Any = None,
    ) -> Item: ...
    def __getitem__(self, key: int | str) -> Item: ...
    def __contains__(self, key: object) -> bool: ...
    def keys(self) -> KeysView[str]: ...
    def ids(self) -> KeysView[int]: ...
    def values(self) -> ValuesView[Item]: ...
    def items(self) -> ItemsView[str, Item]: ...
    def __len__(self) -> int: ...
    def update(self, heap: spead2gpu.recv.Heap, new_order: str = "=") -> dict[str, Item]: ...
