"""``stop()`` closes a stream's sockets (and files) before it returns.

spead2 documents ``recv.Stream.stop()`` as "shut down the stream and close
all associated sockets". Every test here that takes the ``impl`` fixture runs
against spead2gpu and against spead2 4.5.1 with the same hard-coded
expectations, so passing on both proves parity.

What spead2 4.5.1 does, found by experiment (and asserted below):

- a unicast UDP reader does not set SO_REUSEADDR (a second bind of its port
  fails while it runs, even with SO_REUSEADDR on the new socket); after
  ``stop()`` the port can be bound again by a plain socket without
  SO_REUSEADDR, while the stopped stream is still referenced;
- a TCP reader's listening socket sets SO_REUSEADDR; it is closed once the one
  connection has been accepted (further connections are refused) and by
  ``stop()``; after ``stop()`` the port can be bound again, without
  SO_REUSEADDR if no connection was accepted, and with SO_REUSEADDR (as the
  readers themselves do) when the stopped side's connection is in TIME_WAIT;
- a stream stopped from the network side (stop heap, TCP EOF) closes its
  sockets too, without ``stop()``;
- dropping the last reference to a stream that was never stopped closes its
  sockets at once (no garbage collection needed), sync and asyncio alike;
- send streams have no ``stop()``: their sockets close when the last
  reference to the stream goes.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import struct
import tempfile
import threading
import time

import numpy as np
import pytest

import spead2gpu
import spead2gpu.recv
from conftest import ALIASED_TO_REFERENCE, split_packets

UDP4 = ("udp", socket.AF_INET, "127.0.0.1")
UDP6 = ("udp", socket.AF_INET6, "::1")
TCP4 = ("tcp", socket.AF_INET, "127.0.0.1")
TCP6 = ("tcp", socket.AF_INET6, "::1")
TRANSPORTS = [UDP4, UDP6, TCP4, TCP6]
TRANSPORT_IDS = ["udp4", "udp6", "tcp4", "tcp6"]


def _ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback (::1)")


def _params(transports=TRANSPORTS, ids=TRANSPORT_IDS):
    return [
        pytest.param(t, id=i, marks=[needs_ipv6] if t[1] == socket.AF_INET6 else [])
        for t, i in zip(transports, ids)
    ]


def sock_type(proto):
    return socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM


def free_port(proto, family, host):
    """A port that is free now (bound to 0 and released)."""
    with socket.socket(family, sock_type(proto)) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def try_bind(proto, family, host, port, reuse=False):
    """Bind (and for TCP listen on) a new socket; return None or the error text."""
    s = socket.socket(family, sock_type(proto))
    try:
        if reuse:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        if proto == "tcp":
            s.listen(1)
        return None
    except OSError as exc:
        return exc.strerror
    finally:
        s.close()


def try_connect(family, host, port):
    """Connect over TCP; return "connected" or the error text."""
    with socket.socket(family, socket.SOCK_STREAM) as c:
        c.settimeout(5)
        try:
            c.connect((host, port))
            return "connected"
        except OSError as exc:
            return exc.strerror or type(exc).__name__


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


def add_reader(stream, proto, host, port):
    if proto == "udp":
        stream.add_udp_reader(port, bind_hostname=host)
    else:
        stream.add_tcp_reader(port, bind_hostname=host)


def make_item_group(mod):
    ig = mod.send.ItemGroup()
    ig.add_item(0x1000, "x", "test item", (64,), np.uint8)
    ig["x"].value = np.arange(64, dtype=np.uint8)
    return ig


def send_heaps(mod, proto, host, port, n=1, end=False):
    """Send *n* data heaps (and a stop heap if *end*) to a receiver."""
    ig = make_item_group(mod)
    tp = mod.ThreadPool()
    if proto == "udp":
        tx = mod.send.UdpStream(tp, [(host, port)])
    else:
        tx = mod.send.TcpStream(tp, [(host, port)])
    for _ in range(n):
        tx.send_heap(ig.get_heap())
    if end:
        tx.send_heap(ig.get_end())
    return tx


def receive_one(mod, stream):
    """The next heap's x value (blocking, bounded)."""
    heap = stream.get()
    ig = mod.ItemGroup()
    ig.update(heap)
    return ig["x"].value


# ---------------------------------------------------------------------------
# stop() frees the port while the stream object is still referenced
# ---------------------------------------------------------------------------


def _new_stream_works(mod, proto, host, port):
    """A new stream of *mod* binds the same port and receives from it."""
    stream = mod.recv.Stream(mod.ThreadPool())
    add_reader(stream, proto, host, port)
    tx = send_heaps(mod, proto, host, port)
    value = receive_one(mod, stream)
    np.testing.assert_array_equal(value, np.arange(64, dtype=np.uint8))
    del tx
    stream.stop()


def _check_port_free_after_stop(mod, proto, family, host, port):
    # Plain sockets, no SO_REUSEADDR: nothing of the stopped stream remains.
    assert try_bind(proto, family, host, port) is None
    if proto == "tcp":
        assert try_connect(family, host, port) == "Connection refused"
    _new_stream_works(mod, proto, host, port)


@pytest.mark.parametrize("transport", _params())
def test_sync_stop_frees_port(impl, transport):
    proto, family, host = transport
    port = free_port(proto, family, host)
    stream = impl.recv.Stream(impl.ThreadPool())
    add_reader(stream, proto, host, port)
    # The reader holds the port (even against SO_REUSEADDR on the newcomer).
    assert try_bind(proto, family, host, port) == "Address already in use"
    assert try_bind(proto, family, host, port, reuse=True) == "Address already in use"
    stream.stop()
    _check_port_free_after_stop(impl, proto, family, host, port)
    # Still referenced (and still usable as a stopped stream).
    with pytest.raises(impl.Stopped):
        stream.get()
    stream.stop()  # idempotent


@pytest.mark.parametrize("transport", _params())
def test_asyncio_stop_frees_port(impl, transport):
    proto, family, host = transport
    port = free_port(proto, family, host)

    async def main():
        stream = impl.recv.asyncio.Stream(impl.ThreadPool())
        add_reader(stream, proto, host, port)
        assert try_bind(proto, family, host, port) == "Address already in use"
        getter = asyncio.ensure_future(stream.get())
        await asyncio.sleep(0.05)  # the getter is now waiting on the stream's fd
        stream.stop()
        with pytest.raises(impl.Stopped):
            await asyncio.wait_for(getter, 5)
        return stream

    stream = asyncio.run(main())
    _check_port_free_after_stop(impl, proto, family, host, port)
    assert stream is not None


@pytest.mark.parametrize("transport", _params([TCP4, TCP6], ["tcp4", "tcp6"]))
def test_tcp_stop_with_connection(impl, transport):
    """A served connection is closed by stop(); the port is then reusable with
    SO_REUSEADDR (the stopped side's connection is in TIME_WAIT)."""
    proto, family, host = transport
    port = free_port(proto, family, host)
    stream = impl.recv.Stream(impl.ThreadPool())
    add_reader(stream, proto, host, port)
    client = socket.create_connection((host, port), timeout=5)
    try:
        # One connection only: the listening socket is closed once it is accepted.
        assert wait_until(lambda: try_connect(family, host, port) == "Connection refused")
        stream.stop()
        # The peer sees the connection closed.
        assert client.recv(100) == b""
    finally:
        client.close()
    assert try_bind(proto, family, host, port, reuse=True) is None
    assert try_connect(family, host, port) == "Connection refused"
    _new_stream_works(impl, proto, host, port)
    assert stream is not None


@pytest.mark.parametrize("transport", _params())
def test_network_stop_frees_port(impl, transport):
    """A stream ended by the sender (stop heap; for TCP also EOF) releases its
    sockets without stop()."""
    proto, family, host = transport
    port = free_port(proto, family, host)
    stream = impl.recv.Stream(impl.ThreadPool())
    add_reader(stream, proto, host, port)
    tx = send_heaps(impl, proto, host, port, n=2, end=True)
    del tx  # TCP: the sender closes first, so no TIME_WAIT here
    assert len(list(stream)) == 2
    # (TCP: SO_REUSEADDR, in case the receiver closed before the sender's FIN
    # arrived, leaving its side in TIME_WAIT.)
    assert wait_until(lambda: try_bind(proto, family, host, port, reuse=proto == "tcp") is None)
    if proto == "tcp":
        assert try_connect(family, host, port) == "Connection refused"
    _new_stream_works(impl, proto, host, port)
    stream.stop()


@pytest.mark.parametrize("cls", ["sync", "asyncio"])
def test_release_without_stop_frees_port(impl, cls):
    """Dropping a running stream closes its socket at once, without the
    garbage collector (no reference cycles)."""
    proto, family, host = UDP4
    port = free_port(proto, family, host)
    stream_cls = impl.recv.Stream if cls == "sync" else impl.recv.asyncio.Stream
    enabled = gc.isenabled()
    gc.disable()
    try:
        stream = stream_cls(impl.ThreadPool())
        add_reader(stream, proto, host, port)
        del stream
        assert try_bind(proto, family, host, port) is None
    finally:
        if enabled:
            gc.enable()


def test_stop_from_many_threads(impl):
    """stop() concurrently from several threads (and again later) returns in
    every thread, with the sockets closed."""
    streams = []
    ports = []
    for proto, family, host in (UDP4, TCP4):
        port = free_port(proto, family, host)
        stream = impl.recv.Stream(impl.ThreadPool(2))
        add_reader(stream, proto, host, port)
        streams.append(stream)
        ports.append((proto, family, host, port))
    barrier = threading.Barrier(4)
    errors = []

    def stopper():
        try:
            barrier.wait(5)
            for s in streams:
                s.stop()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=stopper, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads), "stop() deadlocked"
    assert errors == []
    for proto, family, host, port in ports:
        assert try_bind(proto, family, host, port) is None
    for s in streams:
        s.stop()


def test_reader_added_after_stop_holds_no_port(impl):
    proto, family, host = UDP4
    port = free_port(proto, family, host)
    stream = impl.recv.Stream(impl.ThreadPool())
    stream.stop()
    add_reader(stream, proto, host, port)  # a no-op on a stopped stream
    assert try_bind(proto, family, host, port) is None


def test_stop_before_explicit_start_frees_port(impl):
    proto, family, host = UDP4
    port = free_port(proto, family, host)
    stream = impl.recv.Stream(impl.ThreadPool(), impl.recv.StreamConfig(explicit_start=True))
    add_reader(stream, proto, host, port)
    stream.stop()
    assert try_bind(proto, family, host, port) is None


def test_explicit_start_binds_udp_at_start(impl):
    """A UDP port reader added before an explicit start() binds at start(), as
    in spead2: the port is free until then, and a port that is taken by then
    makes start() raise (the add itself succeeds)."""
    proto, family, host = UDP4
    port = free_port(proto, family, host)
    stream = impl.recv.Stream(impl.ThreadPool(), impl.recv.StreamConfig(explicit_start=True))
    add_reader(stream, proto, host, port)
    assert try_bind(proto, family, host, port) is None    # still free
    stream.start()
    assert try_bind(proto, family, host, port) is not None  # now the stream's
    stream.stop()
    assert try_bind(proto, family, host, port) is None

    port = free_port(proto, family, host)
    with socket.socket(family, sock_type(proto)) as holder:
        holder.bind((host, port))
        stream = impl.recv.Stream(impl.ThreadPool(), impl.recv.StreamConfig(explicit_start=True))
        add_reader(stream, proto, host, port)
        with pytest.raises(RuntimeError, match="Address already in use"):
            stream.start()
        stream.stop()


def test_explicit_start_binds_tcp_at_add(impl):
    """A TCP acceptor, by contrast, is bound when the reader is added (spead2)."""
    proto, family, host = TCP4
    port = free_port(proto, family, host)
    stream = impl.recv.Stream(impl.ThreadPool(), impl.recv.StreamConfig(explicit_start=True))
    add_reader(stream, proto, host, port)
    assert try_bind(proto, family, host, port) is not None
    stream.stop()
    assert try_bind(proto, family, host, port) is None


def test_stop_with_busy_readers_is_safe(impl):
    """stop() while packets are arriving: no use of a closed (and possibly
    reused) fd, and the port is free afterwards."""
    proto, family, host = UDP4
    for _ in range(20):
        port = free_port(proto, family, host)
        stream = impl.recv.Stream(impl.ThreadPool(2), impl.recv.StreamConfig(max_heaps=2),
                                  impl.recv.RingStreamConfig(heaps=2))
        add_reader(stream, proto, host, port)
        tx = send_heaps(impl, proto, host, port, n=20)
        stream.stop()
        # A socket opened now may get the closed socket's fd number; the old
        # reader must not read from it.
        with socket.socket(family, socket.SOCK_DGRAM) as s, \
                socket.socket(family, socket.SOCK_DGRAM) as peer:
            s.bind((host, port))
            s.settimeout(5)
            peer.sendto(b"ping", (host, port))
            assert s.recv(100) == b"ping"
        del tx
        stream.stop()


# ---------------------------------------------------------------------------
# Send streams: their sockets close when the stream goes
# ---------------------------------------------------------------------------


def socket_inodes():
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            out.add(target)
    return out


@pytest.mark.parametrize("mode", ["sync", "asyncio"])
@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_send_stream_socket_closed_on_release(impl, mode, proto):
    host = "127.0.0.1"
    listener = socket.socket()
    listener.bind((host, 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    tp = impl.ThreadPool()
    ig = make_item_group(impl)
    loop = asyncio.new_event_loop()  # its self-pipe exists before the baseline
    enabled = gc.isenabled()
    gc.disable()
    try:
        before = socket_inodes()

        async def make():
            mod = impl.send.asyncio if mode == "asyncio" else impl.send
            if proto == "udp":
                stream = mod.UdpStream(tp, [(host, port)])
            elif mode == "asyncio":
                stream = await mod.TcpStream.connect(tp, [(host, port)])
            else:
                stream = mod.TcpStream(tp, [(host, port)])
            if mode == "asyncio":
                await stream.async_send_heap(ig.get_heap())
            else:
                stream.send_heap(ig.get_heap())
            return stream

        stream = loop.run_until_complete(asyncio.wait_for(make(), 10))
        conn = None
        if proto == "tcp":
            conn, _ = listener.accept()
            conn.settimeout(5)
        opened = socket_inodes() - before
        assert len(opened) == (2 if conn else 1)   # the stream's socket (+ accepted)
        del stream
        closed = opened - socket_inodes()
        assert len(closed) == 1
        if conn is not None:
            data = b""
            while True:
                chunk = conn.recv(1 << 16)
                if not chunk:
                    break
                data += chunk
            assert data  # the heap arrived, then EOF
            conn.close()
    finally:
        if enabled:
            gc.enable()
        loop.close()
        listener.close()


# ---------------------------------------------------------------------------
# Capture files (spead2gpu only: spead2 4.5.1 keeps a pcap file open until
# the stream is destroyed, even after stop() or the end of the file)
# ---------------------------------------------------------------------------


def write_pcap(path, packets):
    def record(payload):
        udp = struct.pack(">HHHH", 7000, 8888, 8 + len(payload), 0) + payload
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                         bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])) + udp
        frame = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip
        return struct.pack("<IIII", 0, 0, len(frame), len(frame)) + frame

    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for p in packets:
            f.write(record(p))


def file_held(path):
    fds = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    with open("/proc/self/maps") as f:
        maps = f.read()
    return path in fds or path in maps


@pytest.mark.skipif(ALIASED_TO_REFERENCE, reason="spead2 keeps pcap files open after stop()")
@pytest.mark.parametrize("how", ["stop", "end_of_file"])
def test_pcap_file_released(how):
    mod = spead2gpu
    ig = make_item_group(mod)
    out = mod.send.BytesStream(mod.ThreadPool())
    for _ in range(3):
        out.send_heap(ig.get_heap())
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "capture.pcap")
        write_pcap(path, split_packets(out.getvalue()))
        # A one-heap ring: the replay blocks with the file still in use.
        stream = mod.recv.Stream(mod.ThreadPool(), mod.recv.StreamConfig(),
                                 mod.recv.RingStreamConfig(heaps=1))
        stream.add_udp_pcap_file_reader(path)
        if how == "stop":
            assert wait_until(lambda: file_held(path))
            stream.stop()
            assert not file_held(path)
        else:
            assert len(list(stream)) == 3
            assert wait_until(lambda: not file_held(path))
        stream.stop()
