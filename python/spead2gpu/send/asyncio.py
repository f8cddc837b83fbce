"""Asynchronous sending with :mod:`asyncio`.

The stream classes here take the same constructor arguments as their
synchronous counterparts in :mod:`spead2gpu.send` (except
:meth:`TcpStream.connect`, which connects asynchronously). Instead of
``send_heap`` they offer :meth:`~InprocStream.async_send_heap`, which
enqueues the heap immediately and returns an :class:`asyncio.Future` for
the number of bytes sent.

At most ``max_heaps`` (see :class:`spead2gpu.send.StreamConfig`) heaps can
be in flight; further heaps are dropped and their futures fail with
:exc:`IOError`.
"""

import asyncio
import threading
import warnings

from spead2gpu._spead2 import send as _send

__all__: list[str] = []


def _get_loop():
    """The running event loop, or the current thread's default one."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return asyncio.get_event_loop()


def _complete(future, exc, result):
    """Complete *future* unless the caller has already cancelled it."""
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


class _AsyncStreamMixin:
    """Turns the callback API of the compiled ``*Asyncio`` classes into futures.

    The compiled stream queues completion callbacks and makes :attr:`fd`
    readable; :meth:`process_callbacks` runs them. While sends are pending
    the fd is registered with the event loop.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        #: Number of sends whose completion has not been processed yet
        self._active = 0
        #: Future of the most recently started send (None when idle)
        self._last_queued_future = None
        self._pending = set()
        self._loop = None

    def _async_send(self, start):
        loop = _get_loop()
        future = loop.create_future()
        loop_thread = threading.get_ident()

        def finish(exc, bytes_transferred):
            _complete(future, exc, bytes_transferred)
            if future in self._pending:
                self._pending.discard(future)
                self._active -= 1
                if self._active == 0:
                    self._loop.remove_reader(self.fd)
                    self._loop = None
                    self._last_queued_future = None

        def callback(exc, bytes_transferred):
            # Normally run by process_callbacks, in the event loop's thread
            if threading.get_ident() == loop_thread:
                finish(exc, bytes_transferred)
            else:
                loop.call_soon_threadsafe(finish, exc, bytes_transferred)

        if self._active == 0:
            loop.add_reader(self.fd, self.process_callbacks)
            self._loop = loop
        self._active += 1
        self._pending.add(future)
        self._last_queued_future = future
        try:
            start(callback)
        except BaseException:
            future.cancel()
            finish(None, 0)
            raise
        return future

    def async_send_heap(self, heap, cnt=-1, substream_index=0, rate=-1.0):
        """Send a heap asynchronously.

        This is *not* a coroutine: the heap is enqueued immediately, which
        preserves ordering, and a future is returned.

        Parameters
        ----------
        heap : spead2gpu.send.Heap
            Heap to send
        cnt : int
            Heap cnt (negative: take the next value from the stream's sequence)
        substream_index : int
            Substream (endpoint or queue) to send to
        rate : float
            Rate in bytes per second for this heap (negative: the stream's rate)

        Returns
        -------
        asyncio.Future[int]
            Completes with the number of bytes sent, or fails with
            :exc:`IOError` (for example if ``max_heaps`` is exceeded).
        """
        return self._async_send(
            lambda callback: super(_AsyncStreamMixin, self).async_send_heap(
                heap, callback, cnt, substream_index, rate
            )
        )

    def async_send_heaps(self, heaps, mode):
        """Send several heaps asynchronously as a group.

        Parameters
        ----------
        heaps : list of spead2gpu.send.HeapReference, or HeapReferenceList
            Heaps to send
        mode : spead2gpu.send.GroupMode
            Interleaving of the packets of the heaps

        Returns
        -------
        asyncio.Future[int]
            Completes with the total number of bytes sent.
        """
        return self._async_send(
            lambda callback: super(_AsyncStreamMixin, self).async_send_heaps(heaps, callback, mode)
        )

    async def async_flush(self):
        """Wait until every heap enqueued before this call has been sent or dropped."""
        pending = list(self._pending)
        if pending:
            await asyncio.wait(pending)


if hasattr(_send, "InprocStreamAsyncio"):

    class InprocStream(_AsyncStreamMixin, _send.InprocStreamAsyncio):
        """Asynchronous stream that sends packets to :class:`spead2gpu.InprocQueue` objects.

        Takes the arguments of :class:`spead2gpu.send.InprocStream`:
        ``(thread_pool, queues, config=StreamConfig())``.
        """

    __all__.append("InprocStream")

if hasattr(_send, "UdpStreamAsyncio"):

    class UdpStream(_AsyncStreamMixin, _send.UdpStreamAsyncio):
        """Asynchronous stream that sends UDP datagrams.

        Takes the arguments of :class:`spead2gpu.send.UdpStream`.
        """

    __all__.append("UdpStream")

if hasattr(_send, "UdpIbvStreamAsyncio"):

    class UdpIbvStream(_AsyncStreamMixin, _send.UdpIbvStreamAsyncio):
        """Asynchronous stream that sends UDP with ibverbs.

        Takes the arguments of :class:`spead2gpu.send.UdpIbvStream`.
        """

    __all__.append("UdpIbvStream")

if hasattr(_send, "TcpStreamAsyncio"):

    class TcpStream(_AsyncStreamMixin, _send.TcpStreamAsyncio):
        """Asynchronous stream that sends over a TCP connection.

        Constructing it directly requires an already-connected socket:
        ``TcpStream(thread_pool, socket, config=StreamConfig())``. To let the
        stream connect, use the coroutine :meth:`connect`.
        """

        @classmethod
        async def connect(cls, *args, **kwargs):
            """Connect to a peer and return the stream.

            Takes the arguments of the connecting constructor of
            :class:`spead2gpu.send.TcpStream`: ``(thread_pool, endpoints,
            config=StreamConfig(), buffer_size=DEFAULT_BUFFER_SIZE,
            interface_address='')``.

            Raises
            ------
            OSError
                if the connection fails
            """
            loop = asyncio.get_running_loop()
            future = loop.create_future()

            def callback(exc=None, *_):
                # Runs on a worker thread of the thread pool
                try:
                    loop.call_soon_threadsafe(_complete, future, exc, None)
                except RuntimeError:  # event loop already closed
                    pass

            stream = cls(callback, *args, **kwargs)
            await future
            return stream

    __all__.append("TcpStream")
