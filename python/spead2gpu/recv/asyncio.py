"""Integration of receive streams and chunk ringbuffers with :mod:`asyncio`.

The compiled objects expose file descriptors that are readable while data
(or space) is available, or once they have been stopped. The classes here
register those descriptors with the event loop and satisfy concurrent
waiters in the order in which they started waiting.
"""

import asyncio
import collections
import weakref

import spead2gpu
import spead2gpu.recv
from spead2gpu._spead2 import recv as _recv

__all__ = ["Stream"]


class _FdWaiters:
    """FIFO of coroutines waiting for an operation that depends on an fd.

    Each waiter supplies a non-blocking *attempt* callable. Whenever the fd
    becomes readable, the attempts of the waiters are tried in order: a
    result or an exception (other than *retry_exc*) completes the waiter,
    while *retry_exc* means "not yet", leaving it (and those behind it)
    waiting for the next readiness.
    """

    def __init__(self, get_fd, retry_exc):
        self._get_fd = get_fd
        self._retry_exc = retry_exc
        self._waiters = collections.deque()
        self._loop = None
        self._fd = None

    def __bool__(self):
        return bool(self._waiters)

    def _start_listening(self, loop):
        if self._loop is None:
            self._fd = self._get_fd()
            loop.add_reader(self._fd, self._ready)
            self._loop = loop

    def _stop_listening(self):
        if self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._loop = None

    def _ready(self):
        waiters = self._waiters
        while waiters:
            future, attempt = waiters[0]
            if future.done():  # cancelled while waiting
                waiters.popleft()
                continue
            try:
                result = attempt()
            except self._retry_exc:
                return
            except Exception as exc:
                waiters.popleft()
                future.set_exception(exc)
            else:
                waiters.popleft()
                future.set_result(result)
        self._stop_listening()

    async def wait(self, attempt):
        """Wait (behind any earlier waiters) until *attempt* succeeds or fails."""
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop:
            raise RuntimeError("already waiting on a different event loop")
        future = loop.create_future()
        entry = (future, attempt)
        self._waiters.append(entry)
        self._start_listening(loop)
        try:
            return await future
        finally:
            if future.cancelled():
                try:
                    self._waiters.remove(entry)
                except ValueError:
                    pass
            if not self._waiters:
                self._stop_listening()


def _weak_getter(obj, name):
    """``lambda: obj.<name>`` without a strong reference to *obj*.

    The waiters live on the object itself; a strong reference would make a
    reference cycle, so that a stream dropped without ``stop()`` would keep
    its sockets open until the garbage collector ran (spead2's streams close
    them as soon as the last reference goes).
    """
    ref = weakref.ref(obj)
    return lambda: getattr(ref(), name)


async def _fast_or_wait(waiters, attempt):
    """Try *attempt* right away if nobody is queued, else wait in line.

    The fast path yields to the event loop once first, so that a consumer
    that always finds data ready does not starve other tasks.
    """
    if not waiters:
        await asyncio.sleep(0)
        if not waiters:
            try:
                return attempt()
            except waiters._retry_exc:
                pass
    return await waiters.wait(attempt)


class _AsyncIterable:
    """``async for`` over ``await self.get()``, ending when the source stops."""

    def __aiter__(self):
        return self

    async def __anext__(self):
        try:
            return await self.get()
        except spead2gpu.Stopped:
            raise StopAsyncIteration from None


class Stream(_AsyncIterable, spead2gpu.recv.Stream):
    """Receive stream with an asynchronous :meth:`get`.

    It takes the same constructor arguments as :class:`spead2gpu.recv.Stream`.
    Several coroutines may wait in :meth:`get` at once; they receive heaps in
    the order in which they called it. ``async for heap in stream`` iterates
    until the stream is stopped.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._get_waiters = _FdWaiters(_weak_getter(self, "fd"), spead2gpu.Empty)

    async def get(self):
        """Return the next heap, waiting for one if necessary.

        Raises
        ------
        spead2gpu.Stopped
            once the stream has stopped and every queued heap has been returned
        """
        return await _fast_or_wait(self._get_waiters, self.get_nowait)



if hasattr(_recv, "ChunkRingbuffer"):
    __all__.append("ChunkRingbuffer")

    class ChunkRingbuffer(_AsyncIterable, spead2gpu.recv.ChunkRingbuffer):
        """Chunk ringbuffer with asynchronous :meth:`get` and :meth:`put`.

        Parameters
        ----------
        maxsize : int
            Capacity of the ringbuffer, in chunks

        ``async for chunk in ring`` iterates until the ringbuffer is stopped.
        """

        def __init__(self, maxsize):
            super().__init__(maxsize)
            self._get_waiters = _FdWaiters(_weak_getter(self, "data_fd"), spead2gpu.Empty)
            self._put_waiters = _FdWaiters(_weak_getter(self, "space_fd"), spead2gpu.Full)

        async def get(self):
            """Return the next chunk, waiting for one if necessary.

            Raises
            ------
            spead2gpu.Stopped
                once the ringbuffer has stopped and is empty
            """
            return await _fast_or_wait(self._get_waiters, self.get_nowait)

        async def put(self, chunk):
            """Add a chunk, waiting for space if necessary.

            Raises
            ------
            spead2gpu.Stopped
                if the ringbuffer has been stopped
            ValueError
                if the chunk has no ``data`` or ``present`` buffer
            """
            return await _fast_or_wait(self._put_waiters, lambda: self.put_nowait(chunk))

