"""Network transports against the reference (spead2 4.5.1), loopback only.

Every transport is exercised in both directions: spead2 sends and spead2gpu
receives, and spead2gpu sends and spead2 receives.  The received heaps are
decoded into an ItemGroup and compared, heap by heap and item by item, with
what the *same* receiver decodes from the *same* sender's heaps passed
through memory (``send.BytesStream`` -> ``recv.Stream.add_buffer_reader``),
so the network path must deliver exactly the heaps the sender built.

All traffic stays on the host: unicast goes to 127.0.0.1 / ::1, IPv4
multicast to a 239.255.x.y group on the interface that has 127.0.0.1, and
IPv6 multicast to a link-local group on the loopback interface (or, if
``SPEAD2GPU_TEST_MCAST6_IFACE`` names another interface, there with a hop
limit of 0, which the kernel loops back locally and never transmits).
Ports are chosen by the OS; every wait is bounded.
"""

import asyncio
import os
import re
import select
import socket
import struct
import threading
import time

import numpy as np
import pytest

import spead2gpu
import spead2gpu.recv
import spead2gpu.send
import spead2gpu.send.asyncio
from conftest import item_group_snapshot, recv_config, reference, run_with_timeout, spead2gpu_only

LOCAL4 = "127.0.0.1"
LOCAL6 = "::1"
N_HEAPS = 6
TIMEOUT = 10.0


# ---------------------------------------------------------------------------
# Environment probes
# ---------------------------------------------------------------------------

def _ipv6_available():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind((LOCAL6, 0))
        return True
    except OSError:
        return False


HAVE_IPV6 = _ipv6_available()
needs_ipv6 = pytest.mark.skipif(not HAVE_IPV6, reason="::1 is not available on this machine")


def _multicast_group4():
    """A group unlikely to collide with a concurrent run."""
    pid = os.getpid()
    return f"239.255.{(pid >> 8) & 0xff}.{pid & 0xff or 1}"


def _probe_multicast(family, group, port, setup_rx, setup_tx, dest):
    """Return None if a datagram to the group loops back, else the reason."""
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as rx, \
                socket.socket(family, socket.SOCK_DGRAM) as tx:
            rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            setup_rx(rx)
            setup_tx(tx)
            tx.sendto(b"probe", dest)
            if not select.select([rx], [], [], 1.0)[0]:
                return "multicast datagram did not loop back"
            rx.recv(100)
            return None
    except OSError as exc:
        return f"multicast to {group} is not routed here: {exc}"


def multicast4():
    """(group, port) for IPv4 multicast on 127.0.0.1, or skip with the reason."""
    group = _multicast_group4()
    port = free_port(socket.AF_INET, socket.SOCK_DGRAM, "0.0.0.0")

    def setup_rx(rx):
        rx.bind((group, port))
        rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                      socket.inet_aton(group) + socket.inet_aton(LOCAL4))

    def setup_tx(tx):
        tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(LOCAL4))
        tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 0)

    reason = _probe_multicast(socket.AF_INET, group, port, setup_rx, setup_tx, (group, port))
    if reason:
        pytest.skip(f"IPv4 multicast on {LOCAL4}: {reason}")
    return group, port


def multicast6():
    """(scoped group, interface index, hops, port) for IPv6 multicast, or skip."""
    if not HAVE_IPV6:
        pytest.skip("IPv6 is not available")
    iface = os.environ.get("SPEAD2GPU_TEST_MCAST6_IFACE", "")
    if not iface:
        names = [name for _, name in socket.if_nameindex()]
        iface = "lo" if "lo" in names else ""
    if not iface:
        pytest.skip("no loopback interface found for IPv6 multicast")
    index = socket.if_nametoindex(iface)
    # Hop limit 0 on a non-loopback interface: looped back locally, never sent.
    hops = 1 if iface == "lo" else 0
    pid = os.getpid()
    group = f"ff12::5eed:{pid & 0xffff:x}"
    port = free_port(socket.AF_INET6, socket.SOCK_DGRAM, "::")

    def setup_rx(rx):
        rx.bind((group, port, 0, index))
        rx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
                      socket.inet_pton(socket.AF_INET6, group) + struct.pack("@I", index))

    def setup_tx(tx):
        tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
        tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 1)
        tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, hops)

    reason = _probe_multicast(socket.AF_INET6, group, port, setup_rx, setup_tx,
                              (group, port, 0, index))
    if reason:
        pytest.skip(f"IPv6 multicast on interface {iface!r}: {reason}")
    return f"{group}%{iface}", index, hops, port


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

def free_port(family=socket.AF_INET, type_=socket.SOCK_DGRAM, host=LOCAL4):
    """A port the OS considers free (bound once, then released)."""
    with socket.socket(family, type_) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def udp_socket(family=socket.AF_INET, host=LOCAL4, rcvbuf=4 << 20):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind((host, 0))
    return s


def listening_socket(family=socket.AF_INET, host=LOCAL4):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.bind((host, 0))
    s.listen(1)
    return s


MODULES = {"spead2gpu": lambda: spead2gpu, "spead2": reference}
DIRECTIONS = [("spead2", "spead2gpu"), ("spead2gpu", "spead2")]


@pytest.fixture(params=DIRECTIONS, ids=[f"{a}->{b}" for a, b in DIRECTIONS])
def direction(request):
    """(sender module, receiver module)."""
    tx, rx = request.param
    return MODULES[tx](), MODULES[rx]()


def make_item_group(mod):
    """An ItemGroup with several kinds of item (numpy, bit formats, strings)."""
    ig = mod.send.ItemGroup()
    ig.add_item(0x1000, "timestamp", "48-bit counter", shape=(), format=[("u", 48)])
    ig.add_item(0x1001, "vis", "complex visibilities", shape=(64, 4), dtype="<c8")
    ig.add_item(0x1002, "big", "array spanning many packets", shape=(6000,), dtype=">i4")
    ig.add_item(0x1003, "name", "variable-length string", shape=(None,), format=[("c", 8)])
    ig.add_item(0x1004, "nibbles", "4-bit values", shape=(5,), format=[("u", 4)])
    ig.add_item(0x1005, "rec", "structured dtype", shape=(3,),
                dtype=[("a", "<i2"), ("b", ">f8")])
    ig.add_item(0x1006, "gain", "float scalar", shape=(), format=[("f", 64)])
    ig.add_item(0x1007, "fortran", "Fortran-order array", shape=(3, 5), dtype="<u2", order="F")
    return ig


def set_values(ig, k, all_items=True):
    ig["timestamp"].value = 1000 * k + 7
    ig["big"].value = (np.arange(6000, dtype=">i4") * (k + 3)) % 100003
    if not all_items:
        return
    ig["vis"].value = (np.arange(256, dtype=np.float32) * (k + 1)
                       + 1j * np.arange(256, dtype=np.float32)).astype("<c8").reshape(64, 4)
    ig["name"].value = f"heap number {k}" + "!" * k
    ig["nibbles"].value = [(k + i) % 16 for i in range(5)]
    ig["rec"].value = np.array([(k, 0.5 * k), (-k, 1.5), (7, -2.25)],
                               dtype=[("a", "<i2"), ("b", ">f8")])
    ig["gain"].value = 1.0 / (k + 1)
    ig["fortran"].value = np.asfortranarray(np.arange(15, dtype="<u2").reshape(3, 5) + k)


def build_heaps(mod, n=N_HEAPS, end=True):
    """Heaps built from a fresh item group: descriptors first, changing values."""
    ig = make_item_group(mod)
    heaps = []
    for k in range(n):
        # Heap 3 changes only some items: the others are not sent again.
        set_values(ig, k, all_items=(k != 3))
        heaps.append(ig.get_heap(descriptors="stale", data="stale"))
    if end:
        heaps.append(ig.get_end())
    return ig, heaps


def consume(mod, stream, limit=100):
    """Decode every heap of ``stream`` into an ItemGroup; return the trace."""
    ig = mod.ItemGroup()
    trace = []
    for heap in stream:
        updated = ig.update(heap)
        trace.append((heap.cnt, type(heap).__name__, sorted(updated), item_group_snapshot(ig)))
        assert len(trace) <= limit, "stream produced too many heaps"
    return trace


def consume_with_timeout(mod, stream, timeout=TIMEOUT):
    try:
        return run_with_timeout(lambda: consume(mod, stream), timeout)
    finally:
        stream.stop()


_expected_cache = {}


def expected_trace(tx, rx):
    """What ``rx`` decodes from ``tx``'s heaps passed through memory."""
    key = (tx.__name__, rx.__name__)
    if key not in _expected_cache:
        _, heaps = build_heaps(tx)
        bs = tx.send.BytesStream(tx.ThreadPool())
        for h in heaps:
            bs.send_heap(h)
        stream = rx_stream(rx)
        stream.add_buffer_reader(bs.getvalue())
        _expected_cache[key] = consume_with_timeout(rx, stream)
        assert len(_expected_cache[key]) == N_HEAPS
    return _expected_cache[key]


def rx_stream(mod, thread_pool=None, ring_heaps=16, **config):
    config.setdefault("max_heaps", 4)
    return mod.recv.Stream(thread_pool or mod.ThreadPool(),
                           recv_config(mod, **config),
                           mod.recv.RingStreamConfig(heaps=ring_heaps))


def send_all(stream, heaps):
    total = 0
    for h in heaps:
        total += stream.send_heap(h)
    return total


def check_transfer(tx, rx, stream, sender, heaps=None):
    """Send the standard heaps with ``sender`` and compare what ``stream`` gets."""
    if heaps is None:
        _, heaps = build_heaps(tx)
    send_all(sender, heaps)
    got = consume_with_timeout(rx, stream)
    expected = expected_trace(tx, rx)
    assert len(got) == len(expected), f"{len(got)} heaps received, expected {len(expected)}"
    for i, (g, e) in enumerate(zip(got, expected)):
        assert g == e, f"heap {i} differs"


# ---------------------------------------------------------------------------
# Unicast UDP, TCP, multicast: both directions
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("packet", [1472, 8972])
def test_udp_ipv4(direction, packet):
    tx, rx = direction
    port = free_port()
    stream = rx_stream(rx)
    stream.add_udp_reader(port, max_size=9200, bind_hostname=LOCAL4)
    sender = tx.send.UdpStream(tx.ThreadPool(), [(LOCAL4, port)],
                               tx.send.StreamConfig(max_packet_size=packet))
    check_transfer(tx, rx, stream, sender)


@needs_ipv6
def test_udp_ipv6(direction):
    tx, rx = direction
    port = free_port(socket.AF_INET6, host=LOCAL6)
    stream = rx_stream(rx)
    stream.add_udp_reader(port, bind_hostname=LOCAL6)
    sender = tx.send.UdpStream(tx.ThreadPool(), [(LOCAL6, port)], tx.send.StreamConfig())
    check_transfer(tx, rx, stream, sender)


def test_udp_existing_sockets(direction):
    """add_udp_reader(socket) and UdpStream(thread_pool, socket, endpoints)."""
    tx, rx = direction
    rx_sock = udp_socket()
    stream = rx_stream(rx)
    stream.add_udp_reader(rx_sock, max_size=2000)
    tx_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = tx.send.UdpStream(tx.ThreadPool(), tx_sock, [rx_sock.getsockname()],
                               tx.send.StreamConfig())
    # The stream and reader hold their own duplicates of the sockets.
    tx_sock.close()
    rx_sock.close()
    check_transfer(tx, rx, stream, sender)


def test_udp_interface_address(direction):
    """The unicast overload with interface_address binds the sending socket."""
    tx, rx = direction
    rx_sock = udp_socket()
    stream = rx_stream(rx)
    stream.add_udp_reader(rx_sock)
    sender = tx.send.UdpStream(tx.ThreadPool(), [rx_sock.getsockname()], tx.send.StreamConfig(),
                               buffer_size=1 << 20, interface_address=LOCAL4)
    check_transfer(tx, rx, stream, sender)


def test_tcp(direction):
    tx, rx = direction
    port = free_port(type_=socket.SOCK_STREAM)
    stream = rx_stream(rx)
    stream.add_tcp_reader(port, bind_hostname=LOCAL4)
    sender = tx.send.TcpStream(tx.ThreadPool(), [(LOCAL4, port)], tx.send.StreamConfig())
    check_transfer(tx, rx, stream, sender)
    del sender


@needs_ipv6
def test_tcp_ipv6(direction):
    tx, rx = direction
    acceptor = listening_socket(socket.AF_INET6, LOCAL6)
    stream = rx_stream(rx)
    stream.add_tcp_reader(acceptor)
    sender = tx.send.TcpStream(tx.ThreadPool(), [acceptor.getsockname()[:2]],
                               tx.send.StreamConfig(max_packet_size=9000),
                               buffer_size=65536, interface_address=LOCAL6)
    check_transfer(tx, rx, stream, sender)


def test_tcp_existing_sockets(direction):
    """add_tcp_reader(acceptor) and TcpStream(thread_pool, connected socket)."""
    tx, rx = direction
    acceptor = listening_socket()
    stream = rx_stream(rx)
    stream.add_tcp_reader(acceptor)
    conn = socket.create_connection(acceptor.getsockname(), timeout=TIMEOUT)
    sender = tx.send.TcpStream(tx.ThreadPool(), conn, tx.send.StreamConfig())
    acceptor.close()
    _, heaps = build_heaps(tx)
    send_all(sender, heaps)
    # Closing our socket and the stream's duplicate ends the connection.
    conn.close()
    del sender
    got = consume_with_timeout(rx, stream)
    assert got == expected_trace(tx, rx)


def test_tcp_asyncio_connect(direction):
    tx, rx = direction
    acceptor = listening_socket()
    stream = rx_stream(rx)
    stream.add_tcp_reader(acceptor)
    _, heaps = build_heaps(tx)

    async def run():
        sender = await tx.send.asyncio.TcpStream.connect(
            tx.ThreadPool(), [acceptor.getsockname()], tx.send.StreamConfig(max_heaps=3))
        futures = []
        for h in heaps:
            futures.append(sender.async_send_heap(h))
            if len(futures) >= 2:
                await futures[-2]
        await sender.async_flush()
        return [f.result() for f in futures]

    sizes = asyncio.run(asyncio.wait_for(run(), TIMEOUT))
    assert all(s > 0 for s in sizes)
    got = consume_with_timeout(rx, stream)
    assert got == expected_trace(tx, rx)


def test_tcp_slow_reader(impl):
    """A reader that lags behind: the sender's socket buffer fills and sends
    wait for writability; the byte stream is exactly BytesStream's."""
    acceptor = listening_socket()
    acceptor.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)   # inherited
    ig = impl.send.ItemGroup()
    ig.add_item(0x1000, "blob", "", shape=(1 << 20,), dtype=np.uint8)
    heaps = []
    for k in range(4):
        ig["blob"].value = np.full(1 << 20, k, np.uint8)
        heaps.append(ig.get_heap())
    heaps.append(ig.get_end())
    config = impl.send.StreamConfig(max_packet_size=9000)
    bs = impl.send.BytesStream(impl.ThreadPool(), config)
    send_all(bs, heaps)
    expected = bs.getvalue()

    def send():
        stream = impl.send.TcpStream(impl.ThreadPool(), [acceptor.getsockname()], config,
                                     buffer_size=8192)
        start = time.monotonic()
        total = send_all(stream, heaps)
        return total, time.monotonic() - start

    result = {}
    thread = threading.Thread(target=lambda: result.update(value=send()), daemon=True)
    thread.start()
    acceptor.settimeout(TIMEOUT)
    conn, _ = acceptor.accept()
    time.sleep(0.2)   # the sender blocks meanwhile
    conn.settimeout(TIMEOUT)
    chunks = []
    while True:
        data = conn.recv(1 << 16)
        if not data:
            break   # the stream was destroyed when send() returned
        chunks.append(data)
    conn.close()
    thread.join(TIMEOUT)
    assert "value" in result
    total, elapsed = result["value"]
    assert elapsed >= 0.15
    assert total == len(expected)
    assert b"".join(chunks) == expected


@spead2gpu_only
def test_tcp_connection_reset():
    """A reset connection fails the send with OSError promptly (spead2 4.5.1
    hangs here)."""
    acceptor = listening_socket()
    ig = spead2gpu.send.ItemGroup()
    ig.add_item(0x1000, "x", "", shape=(200000,), dtype=np.uint8, value=np.ones(200000, np.uint8))
    heap = ig.get_heap()
    stream = spead2gpu.send.TcpStream(spead2gpu.ThreadPool(), [acceptor.getsockname()],
                                      buffer_size=16384)
    conn, _ = acceptor.accept()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
    conn.close()

    def send_until_error():
        for _ in range(20):
            stream.send_heap(heap)

    with pytest.raises(OSError):
        run_with_timeout(send_until_error, TIMEOUT)


def test_tcp_asyncio_connect_refused(impl):
    port = free_port(type_=socket.SOCK_STREAM)

    async def run():
        await impl.send.asyncio.TcpStream.connect(impl.ThreadPool(), [(LOCAL4, port)])

    with pytest.raises(ConnectionRefusedError):
        asyncio.run(asyncio.wait_for(run(), TIMEOUT))


@pytest.mark.parametrize("overload", ["ttl_interface_address", "interface_address"])
def test_udp_multicast_ipv4(direction, overload):
    tx, rx = direction
    group, port = multicast4()
    stream = rx_stream(rx)
    stream.add_udp_reader(group, port, interface_address=LOCAL4)
    if overload == "ttl_interface_address":
        sender = tx.send.UdpStream(tx.ThreadPool(), [(group, port)], tx.send.StreamConfig(),
                                   ttl=0, interface_address=LOCAL4)
    else:
        # Bound to 127.0.0.1: the kernel sends the multicast out of lo.
        sender = tx.send.UdpStream(tx.ThreadPool(), [(group, port)], tx.send.StreamConfig(),
                                   interface_address=LOCAL4)
    check_transfer(tx, rx, stream, sender)


def test_udp_multicast_ipv6(direction):
    tx, rx = direction
    group, index, hops, port = multicast6()
    stream = rx_stream(rx)
    stream.add_udp_reader(group, port, interface_index=index)
    sender = tx.send.UdpStream(tx.ThreadPool(), [(group, port)], tx.send.StreamConfig(),
                               ttl=hops, interface_index=index)
    check_transfer(tx, rx, stream, sender)


# ---------------------------------------------------------------------------
# Several readers / streams
# ---------------------------------------------------------------------------

def _full_heaps(mod, first_cnt, n):
    """Self-contained heaps (all descriptors and data) with known cnts."""
    ig = make_item_group(mod)
    heaps = []
    for k in range(n):
        set_values(ig, first_cnt + k)
        heaps.append(mod.send.HeapReference(ig.get_heap(descriptors="all", data="all"),
                                            cnt=first_cnt + k))
    return ig, heaps


def _check_full_heap(mod, heap):
    ig = mod.ItemGroup()
    ig.update(heap)
    k = heap.cnt
    assert ig["timestamp"].value == 1000 * k + 7
    np.testing.assert_array_equal(ig["big"].value, (np.arange(6000) * (k + 3)) % 100003)
    assert ig["name"].value == f"heap number {k}" + "!" * k
    assert ig["gain"].value == 1.0 / (k + 1)


def test_several_readers_one_stream(direction):
    """Two UDP readers and a TCP reader feed one stream."""
    tx, rx = direction
    stream = rx_stream(rx, max_heaps=8, ring_heaps=32)
    u1, u2 = udp_socket(), udp_socket()
    acceptor = listening_socket()
    stream.add_udp_reader(u1)
    stream.add_udp_reader(u2)
    stream.add_tcp_reader(acceptor)
    tp = tx.ThreadPool()
    senders = [
        tx.send.UdpStream(tp, [u1.getsockname()], tx.send.StreamConfig()),
        tx.send.UdpStream(tp, [u2.getsockname()], tx.send.StreamConfig()),
        tx.send.TcpStream(tp, [acceptor.getsockname()], tx.send.StreamConfig()),
    ]
    keep = []
    expected = set()
    for i, s in enumerate(senders):
        ig, refs = _full_heaps(tx, 10 * (i + 1), 3)
        keep.append(ig)
        s.send_heaps(refs, tx.send.GroupMode.SERIAL)
        expected.update(r.cnt for r in refs)

    def collect():
        return [stream.get() for _ in range(len(expected))]

    try:
        heaps = run_with_timeout(collect, TIMEOUT)
    finally:
        stream.stop()
    assert sorted(h.cnt for h in heaps) == sorted(expected)
    for h in heaps:
        _check_full_heap(rx, h)


def test_several_streams_one_thread_pool(direction):
    tx, rx = direction
    rx_pool = rx.ThreadPool(2)
    tx_pool = tx.ThreadPool(1)
    streams, senders = [], []
    for _ in range(3):
        sock = udp_socket()
        stream = rx_stream(rx, thread_pool=rx_pool)
        stream.add_udp_reader(sock)
        streams.append(stream)
        senders.append(tx.send.UdpStream(tx_pool, [sock.getsockname()], tx.send.StreamConfig()))
    for sender in senders:
        _, heaps = build_heaps(tx)
        send_all(sender, heaps)
    expected = expected_trace(tx, rx)
    for stream in streams:
        assert consume_with_timeout(rx, stream) == expected


# ---------------------------------------------------------------------------
# Receiver behaviour
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["udp", "udp_socket", "tcp", "tcp_acceptor", "tcp_connected"])
def test_stop_idle_reader_promptly(impl, kind):
    stream = rx_stream(impl)
    extra = []
    if kind == "udp":
        stream.add_udp_reader(free_port(), bind_hostname=LOCAL4)
    elif kind == "udp_socket":
        extra.append(udp_socket())
        stream.add_udp_reader(extra[0])
    elif kind == "tcp":
        stream.add_tcp_reader(free_port(type_=socket.SOCK_STREAM), bind_hostname=LOCAL4)
    else:
        acceptor = listening_socket()
        stream.add_tcp_reader(acceptor)
        extra.append(acceptor)
        if kind == "tcp_connected":
            extra.append(socket.create_connection(acceptor.getsockname(), timeout=TIMEOUT))
    time.sleep(0.05)
    start = time.monotonic()
    run_with_timeout(stream.stop, 5.0)
    assert time.monotonic() - start < 1.0
    for s in extra:
        s.close()


def test_explicit_start(impl):
    stream = rx_stream(impl, explicit_start=True)
    sock = udp_socket()
    stream.add_udp_reader(sock)
    sender = impl.send.UdpStream(impl.ThreadPool(), [sock.getsockname()], impl.send.StreamConfig())
    _, heaps = build_heaps(impl, n=2)
    send_all(sender, heaps)   # queued in the socket until the stream starts
    stream.start()
    with pytest.raises(RuntimeError, match="Cannot add readers after explicit start"):
        stream.add_udp_reader(udp_socket())
    trace = consume_with_timeout(impl, stream)
    assert [t[0] for t in trace] == [1, 2]
    with pytest.raises(RuntimeError, match="Cannot add readers after explicit start"):
        stream.add_udp_reader(udp_socket())


def _oversize_case(mod, max_size):
    """Send one datagram over max_size, then a small heap; return (trace, stream)."""
    sock = udp_socket()
    stream = rx_stream(mod)
    stream.add_udp_reader(sock, max_size=max_size)
    ig, heaps = build_heaps(mod, n=1)
    # A valid SPEAD packet that is too large for the reader.
    big = next(iter(mod.send.PacketGenerator(heaps[0], 99, max_size + 500)))
    assert len(big) > max_size
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        raw.sendto(big, sock.getsockname())
    small = mod.send.ItemGroup()
    small.add_item(0x2000, "x", "", shape=(), format=[("u", 32)], value=12345)
    sender = mod.send.UdpStream(mod.ThreadPool(), [sock.getsockname()],
                                mod.send.StreamConfig(max_packet_size=max_size))
    send_all(sender, [small.get_heap(), small.get_end()])
    trace = consume_with_timeout(mod, stream)
    return trace, stream


def test_oversize_datagram_dropped(impl):
    trace, stream = _oversize_case(impl, 1000)
    assert [t[0] for t in trace] == [1]
    assert stream.stats["packets"] == 2   # the heap and the end-of-stream packet


@spead2gpu_only
def test_oversize_datagram_counted():
    _, stream = _oversize_case(spead2gpu, 1000)
    assert stream.stats["spead2gpu.malformed_packets"] == 1


@pytest.mark.parametrize("garbage", [
    b"garbage!" * 3,                                                     # not SPEAD at all
    struct.pack(">Q", 0x5304020600000001) + b"\0" * 8,                  # header, no specials
    struct.pack(">Q", 0x5304020600000005) + b"\xff" * 40,               # junk pointers
])
def test_tcp_resync_after_garbage(garbage):
    """Both implementations skip 8-byte-aligned garbage and find the packets."""
    ref = reference()
    ig, heaps = build_heaps(ref, n=3)
    bs = ref.send.BytesStream(ref.ThreadPool())
    for h in heaps:
        bs.send_heap(h)
    data = garbage + bs.getvalue()
    results = {}
    for label, mod in (("spead2gpu", spead2gpu), ("spead2", ref)):
        acceptor = listening_socket()
        stream = rx_stream(mod)
        stream.add_tcp_reader(acceptor)
        with socket.create_connection(acceptor.getsockname(), timeout=TIMEOUT) as conn:
            conn.sendall(data)
        results[label] = (consume_with_timeout(mod, stream), stream.stats["heaps"])
        acceptor.close()
    assert results["spead2gpu"] == results["spead2"]
    assert [t[0] for t in results["spead2gpu"][0]] == [1, 2, 3]


# ---------------------------------------------------------------------------
# Sender behaviour
# ---------------------------------------------------------------------------

def test_rate_control():
    """A 1 s send at 200 Mb/s, 64 KiB heaps, lasts within 2 % of 1 s."""
    rate = 200e6 / 8
    heap_size = 65536
    sink = udp_socket(rcvbuf=1 << 16)   # never read: the kernel drops the overflow
    ig = spead2gpu.send.ItemGroup()
    ig.add_item(0x1000, "data", "", shape=(heap_size,), dtype=np.uint8,
                value=np.ones(heap_size, np.uint8))
    heap = ig.get_heap(descriptors="none", data="all")
    wire = sum(len(p) for p in spead2gpu.send.PacketGenerator(heap, 1, 1472))
    n = int(round(rate / wire))   # 1 s worth of heaps
    refs = spead2gpu.send.HeapReferenceList(
        [spead2gpu.send.HeapReference(heap, cnt=i + 1) for i in range(n)])
    config = spead2gpu.send.StreamConfig(rate=rate, max_heaps=n)
    errors = []
    for _ in range(3):
        stream = spead2gpu.send.UdpStream(spead2gpu.ThreadPool(), [sink.getsockname()], config)
        # Warm up (and let the first, unthrottled burst go) before timing.
        stream.send_heap(heap, cnt=1)
        start = time.perf_counter()
        sent = stream.send_heaps(refs, spead2gpu.send.GroupMode.SERIAL)
        elapsed = time.perf_counter() - start
        assert sent == n * wire
        measured = sent / elapsed
        errors.append(abs(measured - rate) / rate)
        if errors[-1] < 0.02:
            break
    assert min(errors) < 0.02, f"rate errors {errors}"


def _capture(sock, expected_bytes, timeout=5.0):
    """Read datagrams until ``expected_bytes`` arrived (or time runs out)."""
    out = []
    total = 0
    deadline = time.monotonic() + timeout
    sock.setblocking(False)
    while total < expected_bytes and time.monotonic() < deadline:
        if select.select([sock], [], [], 0.05)[0]:
            data = sock.recv(65536)
            out.append(data)
            total += len(data)
    return out


@pytest.mark.parametrize("mode", ["ROUND_ROBIN", "SERIAL"])
def test_send_heaps_two_endpoints(mode):
    """send_heaps to two substreams: the datagrams at each endpoint, in order,
    are exactly spead2's."""
    ref = reference()
    captured = {}
    for label, mod in (("spead2gpu", spead2gpu), ("spead2", ref)):
        socks = [udp_socket(), udp_socket()]
        stream = mod.send.UdpStream(mod.ThreadPool(), [s.getsockname() for s in socks],
                                    mod.send.StreamConfig(max_packet_size=1024, max_heaps=8))
        assert stream.num_substreams == 2
        ig = make_item_group(mod)
        refs = []
        for k in range(4):
            set_values(ig, k)
            heap = ig.get_heap(descriptors="all" if k < 2 else "none", data="all")
            refs.append(mod.send.HeapReference(heap, cnt=100 + k, substream_index=k % 2))
        sent = stream.send_heaps(refs, getattr(mod.send.GroupMode, mode))
        per_endpoint = [
            sum(len(p) for r in refs if r.substream_index == i
                for p in mod.send.PacketGenerator(r.heap, r.cnt, 1024))
            for i in range(2)]
        assert sent == sum(per_endpoint)
        captured[label] = [_capture(s, n) for s, n in zip(socks, per_endpoint)]
        for s in socks:
            s.close()
    for i in range(2):
        got, exp = captured["spead2gpu"][i], captured["spead2"][i]
        assert len(got) == len(exp), f"endpoint {i}: {len(got)} datagrams, expected {len(exp)}"
        assert got == exp, f"endpoint {i}: datagrams differ"


def test_udp_substream_out_of_range(impl):
    sock = udp_socket()
    stream = impl.send.UdpStream(impl.ThreadPool(), [sock.getsockname()], impl.send.StreamConfig())
    _, heaps = build_heaps(impl, n=1, end=False)
    with pytest.raises(OSError):
        stream.send_heap(heaps[0], substream_index=1)


def test_udp_datagram_too_large(impl):
    """A packet the kernel refuses (over 64 KiB) fails the send with OSError."""
    sock = udp_socket()
    stream = impl.send.UdpStream(impl.ThreadPool(), [sock.getsockname()],
                                 impl.send.StreamConfig(max_packet_size=70000))
    ig = impl.send.ItemGroup()
    ig.add_item(0x1000, "x", "", shape=(100000,), dtype=np.uint8, value=np.zeros(100000, np.uint8))
    with pytest.raises(OSError) as info:
        stream.send_heap(ig.get_heap())
    assert info.value.errno == 90  # EMSGSIZE


def test_asyncio_udp(impl):
    """Futures give the bytes sent; async_flush waits; a full queue fails
    the extra heaps with BlockingIOError (an IOError)."""
    sock = udp_socket()
    ig = impl.send.ItemGroup()
    ig.add_item(0x1000, "x", "", shape=(50000,), dtype=np.uint8, value=np.ones(50000, np.uint8))
    heap = ig.get_heap()
    expected = sum(len(p) for p in impl.send.PacketGenerator(heap, 1, 1472))

    async def run():
        # 0.05 s per heap, so the queue is certainly still full below
        config = impl.send.StreamConfig(max_heaps=2, rate=1e6, burst_size=2000)
        stream = impl.send.asyncio.UdpStream(impl.ThreadPool(), [sock.getsockname()], config)
        futures = [stream.async_send_heap(heap, cnt=i + 1) for i in range(5)]
        await stream.async_flush()
        assert all(f.done() for f in futures)
        results = await asyncio.gather(*futures, return_exceptions=True)
        # Afterwards the queue has room again.
        again = await stream.async_send_heap(heap, cnt=10)
        stream.flush()
        return results, again

    results, again = asyncio.run(asyncio.wait_for(run(), TIMEOUT))
    assert results[:2] == [expected, expected]
    for exc in results[2:]:
        assert isinstance(exc, IOError)
        assert type(exc) is BlockingIOError
    assert again == expected


def test_asyncio_send_heaps(impl):
    socks = [udp_socket(), udp_socket()]

    async def run():
        stream = impl.send.asyncio.UdpStream(impl.ThreadPool(), [s.getsockname() for s in socks],
                                             impl.send.StreamConfig(max_heaps=4))
        ig = impl.send.ItemGroup()
        ig.add_item(0x1000, "x", "", shape=(3000,), dtype=np.uint8, value=np.ones(3000, np.uint8))
        refs = [impl.send.HeapReference(ig.get_heap(descriptors="all", data="all"),
                                        substream_index=i % 2) for i in range(4)]
        total = await stream.async_send_heaps(refs, impl.send.GroupMode.ROUND_ROBIN)
        bad = stream.async_send_heaps(refs + refs, impl.send.GroupMode.SERIAL)
        with pytest.raises(IOError):
            await bad
        await stream.async_flush()
        return total, refs

    total, refs = asyncio.run(asyncio.wait_for(run(), TIMEOUT))
    assert total == sum(len(p) for r in refs for p in impl.send.PacketGenerator(r.heap, 1, 1472))


# ---------------------------------------------------------------------------
# Constructor API: same overloads, defaults and exceptions as spead2
# ---------------------------------------------------------------------------

def test_docstrings_match():
    ref = reference()
    norm = lambda s: re.sub(r" at 0x[0-9a-f]+", "", s.replace("spead2gpu.", "spead2."))  # noqa: E731
    for name in ("UdpStream", "UdpStreamAsyncio", "TcpStream", "TcpStreamAsyncio"):
        a = getattr(spead2gpu._spead2.send, name)
        b = getattr(ref._spead2.send, name)
        assert norm(a.__init__.__doc__) == norm(b.__init__.__doc__), name
        assert a.DEFAULT_BUFFER_SIZE == b.DEFAULT_BUFFER_SIZE
    assert spead2gpu.send.UdpStream.DEFAULT_BUFFER_SIZE == 524288
    assert spead2gpu.send.TcpStream.DEFAULT_BUFFER_SIZE == 212992
    assert spead2gpu.send.asyncio.UdpStream.DEFAULT_BUFFER_SIZE == 524288
    assert spead2gpu.send.asyncio.TcpStream.DEFAULT_BUFFER_SIZE == 212992


def _constructor_cases():
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.close()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    refused = free_port(type_=socket.SOCK_STREAM)
    mc4 = ("239.255.1.2", 8888)
    mc6 = ("ff15::1234", 8888)
    return {
        "ok": lambda m, tp: m.send.UdpStream(tp, [(LOCAL4, 8888)]).num_substreams,
        "ok-two": lambda m, tp: m.send.UdpStream(tp, [(LOCAL4, 1), (LOCAL4, 2)]).num_substreams,
        "ok-list-endpoint": lambda m, tp: m.send.UdpStream(tp, [[LOCAL4, 1]]).num_substreams,
        "ok-localhost": lambda m, tp: m.send.UdpStream(tp, [("localhost", 1)]).num_substreams,
        "ok-buffer-0": lambda m, tp: m.send.UdpStream(tp, [(LOCAL4, 1)], buffer_size=0).num_substreams,
        "empty": lambda m, tp: m.send.UdpStream(tp, []),
        "mixed-family": lambda m, tp: m.send.UdpStream(tp, [(LOCAL4, 1), (LOCAL6, 1)]),
        "port-big": lambda m, tp: m.send.UdpStream(tp, [(LOCAL4, 70000)]),
        "port-negative": lambda m, tp: m.send.UdpStream(tp, [(LOCAL4, -1)]),
        "port-str": lambda m, tp: m.send.UdpStream(tp, [(LOCAL4, "80")]),
        "tuple3": lambda m, tp: m.send.UdpStream(tp, [(LOCAL4, 80, 1)]),
        "buffer-negative": lambda m, tp: m.send.UdpStream(tp, [(LOCAL4, 1)], buffer_size=-1),
        "no-pool": lambda m, tp: m.send.UdpStream(None, [(LOCAL4, 1)]),
        "bad-host": lambda m, tp: m.send.UdpStream(tp, [("host.invalid", 1)]),
        "ttl-unicast": lambda m, tp: m.send.UdpStream(tp, [(LOCAL4, 1)], ttl=4),
        "ttl-mc4": lambda m, tp: m.send.UdpStream(tp, [mc4], ttl=4).num_substreams,
        "ttl-mc6": lambda m, tp: m.send.UdpStream(tp, [mc6], ttl=4).num_substreams,
        "ttl-too-big": lambda m, tp: m.send.UdpStream(tp, [mc4], ttl=300),
        "ttl-negative": lambda m, tp: m.send.UdpStream(tp, [mc4], ttl=-1),
        "ttl-float": lambda m, tp: m.send.UdpStream(tp, [mc4], ttl=1.5),
        "ttl-mixed-family": lambda m, tp: m.send.UdpStream(tp, [mc4, mc6], ttl=1),
        "positional-ttl": lambda m, tp: m.send.UdpStream(
            tp, [mc4], m.send.StreamConfig(), 1000, 2).num_substreams,
        "ifaddr-mc4": lambda m, tp: m.send.UdpStream(
            tp, [mc4], ttl=1, interface_address=LOCAL4).num_substreams,
        "ifaddr-empty-list": lambda m, tp: m.send.UdpStream(
            tp, [], ttl=1, interface_address=LOCAL4).num_substreams,
        "ifaddr-unicast": lambda m, tp: m.send.UdpStream(tp, [(LOCAL4, 1)], ttl=1,
                                                         interface_address=LOCAL4),
        "ifaddr-mc6": lambda m, tp: m.send.UdpStream(tp, [mc6], ttl=1, interface_address=LOCAL4),
        "ifaddr-v6-address": lambda m, tp: m.send.UdpStream(tp, [mc4], ttl=1,
                                                            interface_address=LOCAL6),
        "ifaddr-not-local": lambda m, tp: m.send.UdpStream(tp, [mc4], ttl=1,
                                                           interface_address="203.0.113.77"),
        "ifaddr-bad-ttl": lambda m, tp: m.send.UdpStream(tp, [mc4], ttl=999,
                                                         interface_address=LOCAL4),
        "ifindex-mc6": lambda m, tp: m.send.UdpStream(tp, [mc6], ttl=1, interface_index=0).num_substreams,
        "ifindex-empty-list": lambda m, tp: m.send.UdpStream(
            tp, [], ttl=1, interface_index=0).num_substreams,
        "ifindex-mc4": lambda m, tp: m.send.UdpStream(tp, [mc4], ttl=1, interface_index=0),
        "ifindex-unicast6": lambda m, tp: m.send.UdpStream(tp, [(LOCAL6, 1)], ttl=1, interface_index=0),
        "ifindex-no-device": lambda m, tp: m.send.UdpStream(tp, [mc6], ttl=1, interface_index=99999),
        "ifindex-negative": lambda m, tp: m.send.UdpStream(tp, [mc6], ttl=1, interface_index=-1),
        "bind-unicast": lambda m, tp: m.send.UdpStream(
            tp, [(LOCAL4, 1)], interface_address=LOCAL4).num_substreams,
        "bind-not-local": lambda m, tp: m.send.UdpStream(tp, [(LOCAL4, 1)],
                                                         interface_address="203.0.113.77"),
        "bind-wrong-family": lambda m, tp: m.send.UdpStream(tp, [(LOCAL4, 1)],
                                                            interface_address=LOCAL6),
        "socket": lambda m, tp: m.send.UdpStream(tp, udp, [(LOCAL4, 1)]).num_substreams,
        "socket-no-endpoints": lambda m, tp: m.send.UdpStream(tp, udp, []).num_substreams,
        "socket-keywords": lambda m, tp: m.send.UdpStream(
            tp, socket=udp, endpoints=[(LOCAL4, 1)]).num_substreams,
        "socket-family-mismatch": lambda m, tp: m.send.UdpStream(tp, udp, [(LOCAL6, 1)]),
        "socket-tcp": lambda m, tp: m.send.UdpStream(tp, tcp, [(LOCAL4, 1)]),
        "socket-closed": lambda m, tp: m.send.UdpStream(tp, closed, [(LOCAL4, 1)]),
        "socket-fileno": lambda m, tp: m.send.UdpStream(tp, udp.fileno(), [(LOCAL4, 1)]),
        "tcp-refused": lambda m, tp: m.send.TcpStream(tp, [(LOCAL4, refused)]),
        "tcp-empty": lambda m, tp: m.send.TcpStream(tp, []),
        "tcp-two": lambda m, tp: m.send.TcpStream(tp, [(LOCAL4, 1), (LOCAL4, 2)]),
        "tcp-bind-not-local": lambda m, tp: m.send.TcpStream(tp, [(LOCAL4, refused)],
                                                             interface_address="203.0.113.77"),
        "tcp-buffer-negative": lambda m, tp: m.send.TcpStream(tp, [(LOCAL4, 1)], buffer_size=-5),
        "tcp-udp-socket": lambda m, tp: m.send.TcpStream(tp, udp),
        "tcp-socket": lambda m, tp: m.send.TcpStream(tp, tcp).num_substreams,
        "tcp-async-socket": lambda m, tp: m.send.asyncio.TcpStream(tp, tcp).num_substreams,
        "tcp-async-two": lambda m, tp: m._spead2.send.TcpStreamAsyncio(
            lambda *args: None, tp, [(LOCAL4, 1), (LOCAL4, 2)]),
        "tcp-async-not-callable-pool": lambda m, tp: m._spead2.send.TcpStreamAsyncio(
            lambda *args: None, None, [(LOCAL4, 1)]),
        "udp-async-empty": lambda m, tp: m.send.asyncio.UdpStream(tp, []),
        "udp-async-ok": lambda m, tp: m.send.asyncio.UdpStream(tp, [(LOCAL4, 1)]).num_substreams,
    }


def test_constructor_errors_match():
    ref = reference()
    cases = _constructor_cases()

    def outcome(mod, fn):
        tp = mod.ThreadPool()
        try:
            return ("ok", fn(mod, tp))
        except Exception as exc:  # noqa: BLE001
            return ("raise", type(exc).__name__)

    mismatches = []
    for name, fn in cases.items():
        a, b = outcome(spead2gpu, fn), outcome(ref, fn)
        if a != b:
            mismatches.append((name, a, b))
    assert not mismatches, mismatches


@pytest.mark.parametrize("reader", ["udp", "tcp"])
def test_bind_failure_raises_like_spead2(reader):
    """Socket set-up failures raise RuntimeError, as in spead2."""
    import importlib
    mods = [spead2gpu]
    try:
        mods.append(importlib.import_module("spead2.recv") and importlib.import_module("spead2"))
    except ImportError:
        pass
    for mod in mods:
        importlib.import_module(mod.__name__ + ".recv")
        stream = mod.recv.Stream(mod.ThreadPool())
        add = stream.add_udp_reader if reader == "udp" else stream.add_tcp_reader
        with pytest.raises(RuntimeError):
            add(0, bind_hostname="192.0.2.1")   # TEST-NET-1: never a local address
        stream.stop()
