"""Errors at the public entry points: one table, run against spead2 and spead2gpu.

Each row is a call with a bad argument, or a call on an object that has been
stopped. The reference's outcome (the exception class it raises, or success)
is spead2gpu's contract, so each row runs on both libraries and the outcomes
must match. Where spead2's message is only pybind11's overload dump, or
says nothing about the argument, spead2gpu's must name the argument: the
row's ``says`` words must appear in spead2gpu's message.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import ALIASED_TO_REFERENCE, both_libs


def _stream(m):
    return m.recv.Stream(m.ThreadPool(), m.recv.StreamConfig())


def _stopped(m):
    s = _stream(m)
    s.stop()
    return s


def _stopped_ring(m):
    r = m.recv.ChunkRingbuffer(2)
    r.stop()
    return r


def _stopped_queue(m):
    q = m.InprocQueue()
    q.stop()
    return q


def _chunk(m):
    return m.recv.Chunk(data=np.zeros(8, np.uint8), present=np.zeros(1, np.uint8))


def _bad_shape_heap(m):
    ig = m.send.ItemGroup()
    ig.add_item(0x1000, "x", "", shape=(2,), dtype=np.uint8)
    ig["x"].value = np.zeros(3, np.uint8)
    return ig.get_heap()


#: (name, call(module), words spead2gpu's message must contain, or None)
ROWS = [
    # receive readers
    ("udp reader: port 99999", lambda m: _stream(m).add_udp_reader(99999), ["port 99999", "out of range"]),
    ("udp reader: port -1", lambda m: _stream(m).add_udp_reader(-1), ["port -1", "out of range"]),
    ("udp reader: a str", lambda m: _stream(m).add_udp_reader("x"), ["add_udp_reader", "str"]),
    ("udp reader: unknown host",
     lambda m: _stream(m).add_udp_reader(0, bind_hostname="no.such.host.invalid"), ["no.such.host.invalid"]),
    ("udp reader: buffer_size -1", lambda m: _stream(m).add_udp_reader(0, buffer_size=-1), None),
    ("tcp reader: port 99999", lambda m: _stream(m).add_tcp_reader(99999), ["port 99999", "out of range"]),
    ("buffer reader: a str", lambda m: _stream(m).add_buffer_reader("abc"), None),
    # configurations
    ("StreamConfig(max_heaps=0)", lambda m: m.recv.StreamConfig(max_heaps=0), ["max_heaps"]),
    ("StreamConfig(max_heaps=-1)", lambda m: m.recv.StreamConfig(max_heaps=-1), None),
    ("StreamConfig(substreams=0)", lambda m: m.recv.StreamConfig(substreams=0), ["substreams"]),
    ("StreamConfig(foo=1)", lambda m: m.recv.StreamConfig(foo=1), ["foo"]),
    ("RingStreamConfig(heaps=0)", lambda m: m.recv.RingStreamConfig(heaps=0), ["heaps"]),
    ("ChunkStreamConfig(max_chunks=0)", lambda m: m.recv.ChunkStreamConfig(max_chunks=0), ["max_chunks"]),
    ("ThreadPool(0)", lambda m: m.ThreadPool(0), ["thread"]),
    ("ThreadPool(-1)", lambda m: m.ThreadPool(-1), ["thread"]),
    ("send.StreamConfig(rate=-1)", lambda m: m.send.StreamConfig(rate=-1), ["rate"]),
    ("send.StreamConfig(burst_rate_ratio=0.5)", lambda m: m.send.StreamConfig(burst_rate_ratio=0.5),
     ["burst rate ratio"]),
    ("send.StreamConfig(max_heaps=0)", lambda m: m.send.StreamConfig(max_heaps=0), ["max_heaps"]),
    ("Flavour(5, ...)", lambda m: m.Flavour(5, 64, 48, 0), ["version"]),
    ("Flavour(heap_address_bits=63)", lambda m: m.Flavour(4, 64, 63, 0), ["heap_address_bits"]),
    ("Flavour(item_pointer_bits=32)", lambda m: m.Flavour(4, 32, 24, 0), ["item_pointer_bits"]),
    # send streams
    ("UdpStream: no endpoints", lambda m: m.send.UdpStream(m.ThreadPool(), []), ["endpoint"]),
    ("UdpStream: unknown host",
     lambda m: m.send.UdpStream(m.ThreadPool(), [("no.such.host.invalid", 1234)]), ["no.such.host.invalid"]),
    ("UdpStream: port 99999", lambda m: m.send.UdpStream(m.ThreadPool(), [("127.0.0.1", 99999)]),
     ["endpoints[0]", "port 99999", "out of range"]),
    ("UdpStream: second port -1",
     lambda m: m.send.UdpStream(m.ThreadPool(), [("127.0.0.1", 8888), ("127.0.0.1", -1)]),
     ["endpoints[1]", "port -1", "out of range"]),
    ("UdpStream: port 2**70", lambda m: m.send.UdpStream(m.ThreadPool(), [("127.0.0.1", 2**70)]),
     ["endpoints[0]", "out of range"]),
    ("UdpStream: endpoint without port", lambda m: m.send.UdpStream(m.ThreadPool(), [("127.0.0.1",)]), None),
    ("UdpStream: endpoints a string", lambda m: m.send.UdpStream(m.ThreadPool(), "127.0.0.1"), None),
    ("TcpStream: port 99999", lambda m: m.send.TcpStream(m.ThreadPool(), [("127.0.0.1", 99999)]),
     ["endpoints[0]", "port 99999"]),
    ("send_heap(None)", lambda m: m.send.BytesStream(m.ThreadPool()).send_heap(None), None),
    ("send_heap: substream 99",
     lambda m: m.send.BytesStream(m.ThreadPool()).send_heap(m.send.ItemGroup().get_end(), substream_index=99),
     None),
    # items and descriptors
    ("Descriptor: neither dtype nor format", lambda m: m.Descriptor(0x1000, "x", "", shape=(1,)),
     ["dtype", "format"]),
    ("Descriptor: dtype and format",
     lambda m: m.Descriptor(0x1000, "x", "", shape=(1,), dtype="u1", format=[("u", 8)]), ["dtype", "format"]),
    ("Item: illegal format", lambda m: m.Item(0x1000, "x", "", shape=(), format=[("q", 8)]), ["format"]),
    ("get_heap: value of the wrong shape", _bad_shape_heap, ["shape"]),
    ("ItemGroup.update(None)", lambda m: m.ItemGroup().update(None), None),
    # configuration objects and pools
    ("ThreadPool(0)", lambda m: m.ThreadPool(0), ["thread"]),
    ("StreamConfig(max_heaps=0)", lambda m: m.recv.StreamConfig(max_heaps=0), ["max_heaps"]),
    ("StreamConfig(substreams=0)", lambda m: m.recv.StreamConfig(substreams=0), ["substreams"]),
    ("StreamConfig(bogus=1)", lambda m: m.recv.StreamConfig(bogus=1), ["bogus"]),
    ("StreamConfig(memcpy=99)", lambda m: m.recv.StreamConfig(memcpy=99), ["memcpy"]),
    ("get_stat_index(unknown)", lambda m: m.recv.StreamConfig().get_stat_index("nope"), ["nope"]),
    ("StreamConfig.add_stat(existing)", lambda m: m.recv.StreamConfig().add_stat("heaps"), ["heaps"]),
    ("RingStreamConfig(heaps=0)", lambda m: m.recv.RingStreamConfig(heaps=0), ["heaps"]),
    ("ChunkStreamConfig(max_chunks=0)", lambda m: m.recv.ChunkStreamConfig(max_chunks=0), ["max_chunks"]),
    ("ChunkStreamConfig(items=[-1])", lambda m: m.recv.ChunkStreamConfig(items=[-1]), None),
    ("ChunkStreamGroupConfig(max_chunks=0)", lambda m: m.recv.ChunkStreamGroupConfig(max_chunks=0),
     ["max_chunks"]),
    ("Chunk(data=3)", lambda m: m.recv.Chunk(data=3), None),
    ("Stream(None)", lambda m: m.recv.Stream(None, m.recv.StreamConfig()), None),
    ("Descriptor: two unknown dimensions",
     lambda m: m.Descriptor(0x1000, "x", "", shape=(None, None), dtype=np.uint8), ["unknown"]),
    ("Flavour(version=5)", lambda m: m.Flavour(5, 64, 48, 0), ["version"]),
    ("Flavour(heap_address_bits=47)", lambda m: m.Flavour(4, 64, 47, 0), ["heap_address_bits"]),
    ("send.StreamConfig(rate=-1)", lambda m: m.send.StreamConfig(rate=-1), ["rate"]),
    ("send.StreamConfig(max_heaps=0)", lambda m: m.send.StreamConfig(max_heaps=0), ["max_heaps"]),
    ("send.StreamConfig(burst_rate_ratio=0.5)", lambda m: m.send.StreamConfig(burst_rate_ratio=0.5),
     ["burst rate ratio"]),
    # more readers and streams
    ("pcap reader: missing file",
     lambda m: _stream(m).add_udp_pcap_file_reader("/nonexistent/x.pcap"), ["/nonexistent/x.pcap"]),
    ("udp reader: unknown bind_hostname",
     lambda m: _stream(m).add_udp_reader(0, bind_hostname="no.such.host.invalid"), ["no.such.host.invalid"]),
    ("buffer reader: not a buffer", lambda m: _stream(m).add_buffer_reader(3), None),
    ("InprocQueue.add_packet(3)", lambda m: m.InprocQueue().add_packet(3), None),
    ("InprocStream: no queues", lambda m: m.send.InprocStream(m.ThreadPool(), []), ["queues"]),
    ("TcpStream: two endpoints",
     lambda m: m.send.TcpStream(m.ThreadPool(), [("127.0.0.1", 1), ("127.0.0.1", 2)]), ["endpoints"]),
    ("HeapReference(None)", lambda m: m.send.HeapReference(None), None),
    # calls on stopped objects
    ("stopped stream: add_udp_reader", lambda m: _stopped(m).add_udp_reader(0), None),
    ("stopped stream: add_buffer_reader", lambda m: _stopped(m).add_buffer_reader(b"abc"), None),
    ("stopped stream: add_inproc_reader", lambda m: _stopped(m).add_inproc_reader(m.InprocQueue()), None),
    ("stopped stream: get", lambda m: _stopped(m).get(), None),
    ("stopped stream: get_nowait", lambda m: _stopped(m).get_nowait(), None),
    ("stopped stream: stats", lambda m: _stopped(m).stats["heaps"], None),
    ("stopped stream: stop again", lambda m: _stopped(m).stop(), None),
    ("stopped stream: iterate", lambda m: list(_stopped(m)), None),
    ("stopped ring: put", lambda m: _stopped_ring(m).put(_chunk(m)), None),
    ("stopped ring: get", lambda m: _stopped_ring(m).get(), None),
    ("stopped queue: add_packet", lambda m: _stopped_queue(m).add_packet(b"12345678"), None),
]


def _outcome(call, m):
    try:
        call(m)
    except Exception as exc:  # noqa: BLE001
        return type(exc).__name__, str(exc)
    return "ok", ""


@pytest.mark.parametrize(("name", "call", "says"), ROWS, ids=[r[0] for r in ROWS])
def test_error_matches_spead2(name, call, says):
    ref, ours = both_libs()
    expected, _ = _outcome(call, ref)
    got, message = _outcome(call, ours)
    assert got == expected, f"{name}: spead2 gives {expected}, spead2gpu {got}: {message}"
    if says and not ALIASED_TO_REFERENCE:
        for word in says:
            assert word.lower() in message.lower(), f"{name}: {message!r} does not say {word!r}"
