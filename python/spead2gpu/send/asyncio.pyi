import asyncio
import socket
from collections.abc import Callable, Sequence
from typing import ClassVar, overload

import spead2gpu
import spead2gpu.send
from spead2gpu import _EndpointList
from spead2gpu.send import GroupMode, Heap, HeapReference, HeapReferenceList, StreamConfig

class _AsyncStream(spead2gpu.send.Stream):
    # Not a runtime class: the interface shared by the asyncio streams
    _active: int
    @property
    def fd(self) -> int: ...
    def async_send_heap(
        self, heap: Heap, cnt: int = -1, substream_index: int = 0, rate: float = -1.0
    ) -> asyncio.Future[int]: ...
    def async_send_heaps(
        self, heaps: Sequence[HeapReference] | HeapReferenceList, mode: GroupMode
    ) -> asyncio.Future[int]: ...
    async def async_flush(self) -> None: ...
    def flush(self) -> None: ...
    def process_callbacks(self) -> None: ...

class UdpStream(spead2gpu.send._UdpStreamConstructors, _AsyncStream): ...

class TcpStream(_AsyncStream):
    DEFAULT_BUFFER_SIZE: ClassVar[int]
    @overload
    def __init__(
        self, thread_pool: spead2gpu.ThreadPool, socket: socket.socket, config: StreamConfig = ...
    ) -> None: ...
    @overload
    def __init__(
        self,
        callback: Callable[[BaseException | None], object],
        thread_pool: spead2gpu.ThreadPool,
        endpoints: _EndpointList,
        config: StreamConfig = ...,
        buffer_size: int = ...,
        interface_address: str = ...,
    ) -> None: ...
    @classmethod
    async def connect(
        cls,
        thread_pool: spead2gpu.ThreadPool,
        endpoints: _EndpointList,
        config: StreamConfig = ...,
        buffer_size: int = ...,
        interface_address: str = ...,
    ) -> TcpStream: ...

class InprocStream(_AsyncStream):
    def __init__(
        self,
        thread_pool: spead2gpu.ThreadPool,
        queues: Sequence[spead2gpu.InprocQueue],
        config: StreamConfig = ...,
    ) -> None: ...
    @property
    def queues(self) -> list[spead2gpu.InprocQueue]: ...
