import enum
import socket
from collections.abc import Iterator, Sequence
from typing import ClassVar, Literal, TypeAlias, overload

import spead2gpu
from spead2gpu import _EndpointList

_Mode: TypeAlias = Literal["stale", "all", "none"]

class RateMethod(enum.Enum):
    SW = 0
    HW = 1
    AUTO = 2

class GroupMode(enum.Enum):
    ROUND_ROBIN = 0
    SERIAL = 1

class Heap:
    repeat_pointers: bool
    def __init__(self, flavour: spead2gpu.Flavour = ...) -> None: ...
    @property
    def flavour(self) -> spead2gpu.Flavour: ...
    def add_item(self, item: spead2gpu.Item) -> None: ...
    def add_descriptor(self, descriptor: spead2gpu.Descriptor) -> None: ...
    def add_start(self) -> None: ...
    def add_end(self) -> None: ...

class HeapReference:
    cnt: int
    substream_index: int
    rate: float
    def __init__(
        self, heap: Heap, *, cnt: int = -1, substream_index: int = 0, rate: float = -1.0
    ) -> None: ...
    @property
    def heap(self) -> Heap: ...

class HeapReferenceList:
    def __init__(self, heaps: Sequence[HeapReference]) -> None: ...
    def __len__(self) -> int: ...
    def __getitem__(self, index: slice) -> HeapReferenceList: ...

class PacketGenerator:
    def __init__(self, heap: Heap, cnt: int, max_packet_size: int) -> None: ...
    def __iter__(self) -> Iterator[bytes]: ...
    def __next__(self) -> bytes: ...

class StreamConfig:
    DEFAULT_MAX_PACKET_SIZE: ClassVar[int]
    DEFAULT_MAX_HEAPS: ClassVar[int]
    DEFAULT_BURST_SIZE: ClassVar[int]
    DEFAULT_BURST_RATE_RATIO: ClassVar[float]
    DEFAULT_RATE_METHOD: ClassVar[RateMethod]
    max_packet_size: int
    rate: float
    burst_size: int
    max_heaps: int
    burst_rate_ratio: float
    rate_method: RateMethod
    def __init__(
        self,
        *,
        max_packet_size: int = ...,
        rate: float = ...,
        burst_size: int = ...,
        max_heaps: int = ...,
        burst_rate_ratio: float = ...,
        rate_method: RateMethod = ...,
    ) -> None: ...
    @property
    def burst_rate(self) -> float: ...

class Stream:
    def set_cnt_sequence(self, next: int, step: int) -> None: ...
    @property
    def num_substreams(self) -> int: ...

class UdpIbvConfig:
    """spead2's ibverbs sender options (spead2gpu has no ibverbs transport)."""

    DEFAULT_BUFFER_SIZE: ClassVar[int]
    DEFAULT_MAX_POLL: ClassVar[int]
    endpoints: list[tuple[str, int]]
    interface_address: str
    buffer_size: int
    ttl: int
    comp_vector: int
    max_poll: int
    memory_regions: list[object]
    def __init__(
        self,
        *,
        endpoints: list[tuple[str, int]] = ...,
        interface_address: str = ...,
        buffer_size: int = ...,
        ttl: int = ...,
        comp_vector: int = ...,
        max_poll: int = ...,
        memory_regions: list[object] = ...,
    ) -> None: ...

class _SyncStream(Stream):
    # Not a runtime class: the methods every synchronous stream defines
    def send_heap(
        self, heap: Heap, cnt: int = -1, substream_index: int = 0, rate: float = -1.0
    ) -> int: ...
    def send_heaps(
        self, heaps: Sequence[HeapReference] | HeapReferenceList, mode: GroupMode
    ) -> int: ...

class _UdpStreamConstructors:
    # Not a runtime class: the constructors shared by UdpStream and asyncio.UdpStream
    DEFAULT_BUFFER_SIZE: ClassVar[int]
    @overload
    def __init__(
        self,
        thread_pool: spead2gpu.ThreadPool,
        endpoints: _EndpointList,
        config: StreamConfig = ...,
        buffer_size: int = ...,
        interface_address: str = ...,
    ) -> None: ...
    @overload
    def __init__(
        self,
        thread_pool: spead2gpu.ThreadPool,
        endpoints: _EndpointList,
        config: StreamConfig,
        buffer_size: int,
        ttl: int,
    ) -> None: ...
    @overload
    def __init__(
        self,
        thread_pool: spead2gpu.ThreadPool,
        endpoints: _EndpointList,
        config: StreamConfig,
        buffer_size: int,
        ttl: int,
        interface_address: str,
    ) -> None: ...
    @overload
    def __init__(
        self,
        thread_pool: spead2gpu.ThreadPool,
        endpoints: _EndpointList,
        config: StreamConfig,
        buffer_size: int,
        ttl: int,
        interface_index: int,
    ) -> None: ...
    @overload
    def __init__(
        self,
        thread_pool: spead2gpu.ThreadPool,
        socket: socket.socket,
        endpoints: _EndpointList,
        config: StreamConfig = ...,
    ) -> None: ...

class UdpStream(_UdpStreamConstructors, _SyncStream): ...

class TcpStream(_SyncStream):
    DEFAULT_BUFFER_SIZE: ClassVar[int]
    @overload
    def __init__(
        self, thread_pool: spead2gpu.ThreadPool, socket: socket.socket, config: StreamConfig = ...
    ) -> None: ...
    @overload
    def __init__(
        self,
        thread_pool: spead2gpu.ThreadPool,
        endpoints: _EndpointList,
        config: StreamConfig = ...,
        buffer_size: int = ...,
        interface_address: str = ...,
    ) -> None: ...

class BytesStream(_SyncStream):
    def __init__(self, thread_pool: spead2gpu.ThreadPool, config: StreamConfig = ...) -> None: ...
    def getvalue(self) -> bytes: ...

class InprocStream(_SyncStream):
    def __init__(
        self,
        thread_pool: spead2gpu.ThreadPool,
        queues: Sequence[spead2gpu.InprocQueue],
        config: StreamConfig = ...,
    ) -> None: ...
    @property
    def queues(self) -> list[spead2gpu.InprocQueue]: ...

class HeapGenerator:
    def __init__(
        self,
        item_group: spead2gpu.ItemGroup,
        descriptor_frequency: int | None = None,
        flavour: spead2gpu.Flavour = ...,
    ) -> None: ...
    def add_to_heap(self, heap: Heap, descriptors: _Mode = "stale", data: _Mode = "stale") -> Heap: ...
    def get_heap(self, descriptors: _Mode = "stale", data: _Mode = "stale") -> Heap: ...
    def get_start(self) -> Heap: ...
    def get_end(self) -> Heap: ...

class ItemGroup(spead2gpu.ItemGroup, HeapGenerator):
    def __init__(
        self, descriptor_frequency: int | None = None, flavour: spead2gpu.Flavour = ...
    ) -> None: ...
