"""recv.Stream.add_udp_pcap_file_reader: classic pcap and pcapng files (read
by libpcap), all supported link types, libpcap filters, malformed captures,
closing the file on stop, and real loopback traffic captured by tcpdump.

The packets are produced by spead2's own sender (``PacketGenerator``) and
wrapped here in link, IP and UDP headers.  Where spead2's pcap reader can
read the file (Ethernet or Linux SLL with IPv4) spead2gpu must get exactly the
heaps spead2 gets from the same file and filter.  For the encapsulations only
spead2gpu understands (VLAN, IPv6, SLL2, raw IP, loopback) it must get the
heaps spead2 gets from the same datagrams in a plain Ethernet/IPv4 capture.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import time

import numpy as np
import pytest

import spead2gpu
import spead2gpu.recv
from conftest import ALIASED_TO_REFERENCE, heap_summary, recv_config, run_with_timeout, spead2gpu_only

spead2 = pytest.importorskip("spead2")
import spead2.recv  # noqa: E402, F811 (binds spead2 again; loads the submodule that mod.recv needs)
import spead2.send  # noqa: E402

MALFORMED = "spead2gpu.malformed_packets"


def malformed(stats):
    """spead2gpu's malformed-packet count (spead2 has no such statistic)."""
    return None if ALIASED_TO_REFERENCE else stats[MALFORMED]


def expect_malformed(n):
    return None if ALIASED_TO_REFERENCE else n
MAIN_PORT = 8888
OTHER_PORT = 9999
JUNK_PORT = 9998


# ---------------------------------------------------------------------------
# Building packets and capture files
# ---------------------------------------------------------------------------

def sender_packets(n_heaps=6, size=3000, first_cnt=1, mps=1472, seed=0, end=False):
    """SPEAD packets of ``n_heaps`` heaps made by spead2's sender."""
    rng = np.random.default_rng(seed)
    ig = spead2.send.ItemGroup()
    ig.add_item(0x1000, "samples", "some samples", shape=(size,), dtype=np.uint8)
    ig.add_item(0x1001, "timestamp", "a timestamp", shape=(), format=[("u", 48)])
    ig.add_item(0x1002, "label", "a label", shape=(None,), format=[("c", 8)])
    out = []
    cnt = first_cnt
    for i in range(n_heaps):
        ig["samples"].value = rng.integers(0, 256, size, dtype=np.uint8)
        ig["timestamp"].value = 1000 * (i + seed)
        ig["label"].value = f"heap {i} of stream {seed}"
        out += [bytes(p) for p in spead2.send.PacketGenerator(ig.get_heap(), cnt, mps)]
        cnt += 1
    if end:
        out += [bytes(p) for p in spead2.send.PacketGenerator(ig.get_end(), cnt, mps)]
    return out


def _csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def udp(payload, sport=7000, dport=MAIN_PORT, length=None):
    return struct.pack("!HHHH", sport, dport, 8 + len(payload) if length is None else length, 0) + payload


def ipv4(l4, proto=17, flags_frag=0x4000, ihl=5, total=None, src="10.0.0.1", dst="10.0.0.2"):
    opts = b"\x01" * ((ihl - 5) * 4)   # NOP options
    tl = 20 + len(opts) + len(l4) if total is None else total
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, tl & 0xFFFF, 1, flags_frag, 64, proto, 0,
                      socket.inet_aton(src), socket.inet_aton(dst)) + opts
    return hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:] + l4


def ipv6(l4, nh=17, ext=b"", plen=None):
    src = socket.inet_pton(socket.AF_INET6, "fd00::1")
    dst = socket.inet_pton(socket.AF_INET6, "fd00::2")
    pl = len(ext) + len(l4) if plen is None else plen
    return struct.pack("!IHBB16s16s", 0x60000000, pl, nh, 64, src, dst) + ext + l4


def ext_header(nh, length8=1):
    """A generic IPv6 extension header (hop-by-hop/routing/destination) of
    ``length8`` units of 8 bytes, padded with PadN."""
    body = bytes([1, length8 * 8 - 4]) + b"\0" * (length8 * 8 - 4)
    return bytes([nh, length8 - 1]) + body


def frag_header(nh, offset=0, more=False):
    return struct.pack("!BBHI", nh, 0, (offset << 3) | int(more), 0x1234)


ETH_SRC = b"\x02\x00\x00\x00\x00\x01"
ETH_DST = b"\x02\x00\x00\x00\x00\x02"


def eth(l3, ethertype=0x0800, vlans=()):
    out = ETH_DST + ETH_SRC
    for tpid, tci in vlans:
        out += struct.pack("!HH", tpid, tci)
    return out + struct.pack("!H", ethertype) + l3


def sll(l3, proto=0x0800):
    return struct.pack("!HHH8sH", 0, 1, 6, ETH_SRC + b"\0\0", proto) + l3


def sll2(l3, proto=0x0800):
    return struct.pack("!HHIHBB8s", proto, 0, 1, 1, 0, 6, ETH_SRC + b"\0\0") + l3


#: link name -> (pcap LINKTYPE, wrap(l3 bytes, ip version) -> frame)
LINKS = {
    "ethernet": (1, lambda l3, v: eth(l3, 0x0800 if v == 4 else 0x86DD)),
    "vlan": (1, lambda l3, v: eth(l3, 0x0800 if v == 4 else 0x86DD, [(0x8100, 42)])),
    "qinq": (1, lambda l3, v: eth(l3, 0x0800 if v == 4 else 0x86DD, [(0x88A8, 7), (0x8100, 42)])),
    "sll": (113, lambda l3, v: sll(l3, 0x0800 if v == 4 else 0x86DD)),
    "sll2": (276, lambda l3, v: sll2(l3, 0x0800 if v == 4 else 0x86DD)),
    "raw": (101, lambda l3, v: l3),
    "raw12": (12, lambda l3, v: l3),
    # The address family of DLT_NULL is in the capturing host's byte order
    # (Capture writes it in the file's); DLT_LOOP's is big-endian. libpcap's
    # filters know the BSD values of AF_INET6 (24, 28, 30), not Linux's 10.
    "null": (0, lambda l3, v: struct.pack("<I", 2 if v == 4 else 24) + l3),
    "loop": (108, lambda l3, v: struct.pack(">I", 2 if v == 4 else 30) + l3),
}


def ip_udp(payload, version, sport, dport):
    if version == 4:
        return ipv4(udp(payload, sport, dport))
    return ipv6(udp(payload, sport, dport))


class Capture:
    """A list of captured frames of one link type, with helpers to add
    SPEAD datagrams and assorted other traffic."""

    def __init__(self, link="ethernet"):
        self.link = link
        self.linktype, self._wrap = LINKS[link]
        self.records = []   # (frame bytes, original length)

    def wrap(self, l3, version=4):
        return self._wrap(l3, version)

    def add_frame(self, frame, orig_len=None):
        self.records.append((frame, len(frame) if orig_len is None else orig_len))

    def add_l3(self, l3, version=4):
        self.add_frame(self.wrap(l3, version))

    def add_udp(self, payload, version=4, sport=7000, dport=MAIN_PORT):
        self.add_l3(ip_udp(payload, version, sport, dport), version)

    def add_noise(self, version=4):
        """Non-UDP traffic: TCP, ICMP (and an ARP frame on Ethernet)."""
        tcp = struct.pack("!HHIIBBHHH", 7000, MAIN_PORT, 1, 0, 0x50, 0x02, 1024, 0, 0)
        if version == 4:
            self.add_l3(ipv4(tcp, proto=6))
            self.add_l3(ipv4(b"\x08\0\0\0\0\0\0\0", proto=1))
        else:
            self.add_l3(ipv6(tcp, nh=6), 6)
            self.add_l3(ipv6(b"\x80\0\0\0\0\0\0\0", nh=58), 6)
        if self.linktype == 1:
            self.add_frame(eth(b"\0\1\x08\0\6\4\0\1" + b"\0" * 20, 0x0806))

    def _records(self, endian):
        """The records as a host of byte order ``endian`` captured them."""
        for data, orig in self.records:
            if self.linktype == 0 and endian == ">":    # DLT_NULL: host-order family
                data = data[3::-1] + data[4:]
            yield data, orig

    def pcap(self, endian="<", nano=False, snaplen=262144, modified=False):
        """Classic pcap; ``modified`` gives Kuznetzov's variant (24-byte record headers)."""
        magic = 0xA1B2CD34 if modified else 0xA1B23C4D if nano else 0xA1B2C3D4
        out = [struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, snaplen, self.linktype)]
        for i, (data, orig) in enumerate(self._records(endian)):
            out.append(struct.pack(endian + "IIII", 1700000000 + i, i * 7, len(data), orig))
            if modified:
                out.append(struct.pack(endian + "IHBB", 1, 0x0800, 0, 0))
            out.append(data)
        return b"".join(out)

    def pcapng(self, endian="<", simple=False, extra_blocks=True):
        out = [ng_shb(endian), ng_idb(self.linktype, endian)]
        if extra_blocks:
            out.append(ng_block(4, struct.pack(endian + "HH", 0, 0), endian))   # empty NRB
        for i, (data, orig) in enumerate(self._records(endian)):
            if simple:
                out.append(ng_spb(data, endian, orig))
            else:
                out.append(ng_epb(data, 0, endian, orig, ts=i * 1000))
            if extra_blocks and i % 5 == 0:
                out.append(ng_block(0x00000BAD, b"\0\0\0\0custom", endian))     # custom block
        if extra_blocks:
            out.append(ng_block(5, struct.pack(endian + "III", 0, 0, 0), endian))  # ISB
        return b"".join(out)


def _pad4(b):
    return b + b"\0" * (-len(b) % 4)


def ng_block(btype, body, endian="<"):
    body = _pad4(body)
    n = 12 + len(body)
    return struct.pack(endian + "II", btype, n) + body + struct.pack(endian + "I", n)


def ng_shb(endian="<"):
    return ng_block(0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1), endian)


def ng_idb(linktype, endian="<", snaplen=0):
    # with an if_tsresol option (ignored by the reader) and opt_endofopt
    opts = struct.pack(endian + "HH", 9, 1) + b"\x06\0\0\0" + struct.pack(endian + "HH", 0, 0)
    return ng_block(1, struct.pack(endian + "HHI", linktype, 0, snaplen) + opts, endian)


def ng_epb(data, iface=0, endian="<", orig=None, ts=0):
    return ng_block(6, struct.pack(endian + "IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, len(data),
                                   len(data) if orig is None else orig) + data, endian)


def ng_spb(data, endian="<", orig=None):
    return ng_block(3, struct.pack(endian + "I", len(data) if orig is None else orig) + data, endian)


def count_pcap_records(path):
    """Number of complete records in a classic pcap file (for tcpdump)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return 0
    if len(data) < 24:
        return 0
    endian = "<" if struct.unpack_from("<I", data)[0] in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    pos, n = 24, 0
    while pos + 16 <= len(data):
        caplen = struct.unpack_from(endian + "I", data, pos + 8)[0]
        if pos + 16 + caplen > len(data):
            break
        pos += 16 + caplen
        n += 1
    return n


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------

def read_pcap(mod, path, filter="", config=None):
    """(heap summaries, stats) of everything ``mod`` reads from ``path``."""
    stream = mod.recv.Stream(mod.ThreadPool(), recv_config(mod, **(config or {})),
                             mod.recv.RingStreamConfig())
    stream.add_udp_pcap_file_reader(str(path), filter)

    def drain():
        return [heap_summary(mod, h) for h in stream]

    heaps = run_with_timeout(drain, 30)
    stream.stop()
    return heaps, stream.stats


def read_both(path, filter=""):
    ours, ours_stats = read_pcap(spead2gpu, path, filter)
    theirs, theirs_stats = read_pcap(spead2, path, filter)
    return ours, theirs, ours_stats, theirs_stats


def assert_same_heaps(ours, theirs):
    assert [h[1] for h in ours] == [h[1] for h in theirs], "heap cnts differ"
    assert ours == theirs


def reference_heaps(datagrams, tmp_path, name="reference.pcap"):
    """What spead2 reads from these UDP payloads in a plain Ethernet/IPv4 capture."""
    cap = Capture("ethernet")
    for d in datagrams:
        cap.add_udp(d)
    path = tmp_path / name
    path.write_bytes(cap.pcap())
    heaps, _ = read_pcap(spead2, path)
    return heaps


def mixed_capture(link, main, other, junk=True, noise=True, version=4):
    """Main-stream datagrams on MAIN_PORT interleaved with a second SPEAD
    stream on OTHER_PORT, non-SPEAD UDP on JUNK_PORT and non-UDP traffic."""
    cap = Capture(link)
    oi = 0
    for i, p in enumerate(main):
        cap.add_udp(p, version, 7000, MAIN_PORT)
        if i % 3 == 1 and oi < len(other):
            cap.add_udp(other[oi], version, 7001, OTHER_PORT)
            oi += 1
        if junk and i % 4 == 2:
            cap.add_udp(b"not a SPEAD packet " * (i % 3), version, 7002, JUNK_PORT)
        if noise and i % 5 == 3:
            cap.add_noise(version)
    for p in other[oi:]:
        cap.add_udp(p, version, 7001, OTHER_PORT)
    return cap


# ---------------------------------------------------------------------------
# Same file, same heaps as spead2
# ---------------------------------------------------------------------------

CONTAINERS = {
    "pcap-le-us": lambda c: c.pcap("<"),
    "pcap-be-us": lambda c: c.pcap(">"),
    "pcap-le-ns": lambda c: c.pcap("<", nano=True),
    "pcap-be-ns": lambda c: c.pcap(">", nano=True),
    "pcap-modified": lambda c: c.pcap("<", modified=True),
    "pcapng-le": lambda c: c.pcapng("<"),
    "pcapng-be": lambda c: c.pcapng(">"),
    "pcapng-spb": lambda c: c.pcapng("<", simple=True),
}


@pytest.mark.parametrize("container", sorted(CONTAINERS))
@pytest.mark.parametrize("link", ["ethernet", "sll"])
def test_same_as_spead2(tmp_path, container, link):
    main = sender_packets(8, seed=1)
    other = sender_packets(3, first_cnt=100, seed=2, size=500)
    cap = mixed_capture(link, main, other)
    path = tmp_path / "capture"
    path.write_bytes(CONTAINERS[container](cap))
    ours, theirs, ours_stats, theirs_stats = read_both(path)
    assert len(theirs) == 11
    assert_same_heaps(ours, theirs)
    assert ours_stats["packets"] == theirs_stats["packets"]
    assert ours_stats["heaps"] == theirs_stats["heaps"]
    # the non-SPEAD datagrams on JUNK_PORT are counted as malformed
    n_junk = sum(1 for i in range(len(main)) if i % 4 == 2)
    assert malformed(ours_stats) == expect_malformed(n_junk)


@pytest.mark.parametrize("mps", [200, 1472, 9000])
def test_packet_sizes(tmp_path, mps):
    main = sender_packets(5, size=20000, mps=mps, seed=3)
    cap = mixed_capture("ethernet", main, [], junk=False, noise=False)
    path = tmp_path / "capture.pcap"
    path.write_bytes(cap.pcap())
    ours, theirs, ours_stats, theirs_stats = read_both(path)
    assert len(theirs) == 5
    assert_same_heaps(ours, theirs)
    assert malformed(ours_stats) == expect_malformed(0)


def test_ethernet_padding_and_trailer(tmp_path):
    """Bytes after the UDP datagram (Ethernet padding, FCS) are not payload."""
    main = sender_packets(3, seed=4)
    cap = Capture("ethernet")
    for p in main:
        cap.add_frame(eth(ipv4(udp(p))) + b"\0\0\0\0")           # FCS-like trailer
    small = sender_packets(2, size=1, first_cnt=50, seed=5)     # short frames
    for p in small:
        cap.add_frame(eth(ipv4(udp(p))).ljust(60 + 64, b"\0"))  # padded
    # an IP packet with options (IHL 6)
    extra = sender_packets(1, first_cnt=60, seed=6)
    for p in extra:
        cap.add_frame(eth(ipv4(udp(p), ihl=6)))
    path = tmp_path / "padded.pcap"
    path.write_bytes(cap.pcap())
    ours, theirs, _, _ = read_both(path)
    assert len(theirs) == 6
    assert_same_heaps(ours, theirs)


def test_stop_item_in_capture(tmp_path):
    """A STOP heap in the middle of the file ends the stream as in spead2."""
    main = sender_packets(3, seed=7, end=True) + sender_packets(3, first_cnt=10, seed=8)
    cap = mixed_capture("ethernet", main, [], junk=False)
    path = tmp_path / "stop.pcap"
    path.write_bytes(cap.pcap())
    ours, theirs, _, _ = read_both(path)
    assert [h[1] for h in theirs] == [1, 2, 3]
    assert_same_heaps(ours, theirs)


def test_stream_config(tmp_path):
    """Stream options apply to pcap input as to any reader (substreams, out of order)."""
    main = sender_packets(6, seed=9)
    random.Random(1).shuffle(main)
    cap = mixed_capture("ethernet", main, [], junk=False)
    path = tmp_path / "shuffled.pcap"
    path.write_bytes(cap.pcap())
    config = dict(allow_out_of_order=True, max_heaps=8, substreams=2)
    ours, _ = read_pcap(spead2gpu, path, config=config)
    theirs, _ = read_pcap(spead2, path, config=config)
    assert sorted(h[1] for h in theirs) == [1, 2, 3, 4, 5, 6]
    assert sorted(ours) == sorted(theirs)


# ---------------------------------------------------------------------------
# Encapsulations that only spead2gpu reads: compare with spead2 on an
# equivalent Ethernet/IPv4 capture
# ---------------------------------------------------------------------------

@spead2gpu_only
@pytest.mark.parametrize("link", sorted(LINKS))
@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("container", ["pcap-le-us", "pcap-be-ns", "pcapng-be"])
def test_link_types(tmp_path, link, version, container):
    main = sender_packets(5, seed=10)
    other = sender_packets(2, first_cnt=100, seed=11, size=100)
    cap = mixed_capture(link, main, other, version=version)
    path = tmp_path / "capture"
    path.write_bytes(CONTAINERS[container](cap))
    ours, stats = read_pcap(spead2gpu, path)
    expected = reference_heaps([d for d in _udp_payloads(main, other)], tmp_path)
    assert len(expected) == 7
    assert_same_heaps(ours, expected)
    # the filtered view: only the main stream (libpcap needs "vlan" once per tag)
    vlan = "vlan and " * {"vlan": 1, "qinq": 2}.get(link, 0)
    ours_main, _ = read_pcap(spead2gpu, path, vlan + f"udp dst port {MAIN_PORT}")
    assert_same_heaps(ours_main, reference_heaps(main, tmp_path, "main.pcap"))
    # and by IP version
    ours_v, _ = read_pcap(spead2gpu, path, vlan + ("ip" if version == 4 else "ip6"))
    assert_same_heaps(ours_v, expected)
    ours_none, _ = read_pcap(spead2gpu, path, vlan + ("ip6" if version == 4 else "ip"))
    assert ours_none == []


def _udp_payloads(main, other):
    """The SPEAD datagrams of mixed_capture in file order."""
    out = []
    oi = 0
    for i, p in enumerate(main):
        out.append(p)
        if i % 3 == 1 and oi < len(other):
            out.append(other[oi])
            oi += 1
    return out + other[oi:]


@spead2gpu_only
def test_ipv6_extension_headers(tmp_path):
    main = sender_packets(4, seed=12)
    cap = Capture("ethernet")
    for i, p in enumerate(main):
        u = udp(p)
        if i % 4 == 0:
            l3 = ipv6(u, nh=0, ext=ext_header(17))                        # hop-by-hop
        elif i % 4 == 1:
            l3 = ipv6(u, nh=60, ext=ext_header(43, 2) + ext_header(17))   # dest opts + routing
        elif i % 4 == 2:
            l3 = ipv6(u, nh=44, ext=frag_header(17))                      # atomic fragment
        else:
            l3 = ipv6(u)
        cap.add_l3(l3, 6)
    # real fragments are not reassembled: counted as malformed
    frag = sender_packets(1, first_cnt=77, seed=13, size=10)[0]
    cap.add_l3(ipv6(udp(frag), nh=44, ext=frag_header(17, more=True)), 6)
    cap.add_l3(ipv6(frag[:16], nh=44, ext=frag_header(17, offset=2)), 6)
    path = tmp_path / "ext.pcap"
    path.write_bytes(cap.pcap())
    ours, stats = read_pcap(spead2gpu, path)
    assert_same_heaps(ours, reference_heaps(main, tmp_path))
    assert malformed(stats) == expect_malformed(2)


@spead2gpu_only
def test_multiple_sections_and_interfaces(tmp_path):
    """pcapng with two sections, each with several interfaces (of one link
    type and byte order, as libpcap requires), packets on all of them."""
    main = sender_packets(6, seed=14)
    blocks = [ng_shb(), ng_idb(1), ng_idb(1), ng_idb(1)]
    half = len(main) // 2
    for i, p in enumerate(main[:half]):
        blocks.append(ng_epb(eth(ip_udp(p, 4, 7000, MAIN_PORT)), i % 3))
    blocks += [ng_shb(), ng_idb(1), ng_idb(1)]
    for i, p in enumerate(main[half:]):
        blocks.append(ng_epb(eth(ip_udp(p, 6, 7000, MAIN_PORT), 0x86DD), 1 - i % 2))
    path = tmp_path / "sections.pcapng"
    path.write_bytes(b"".join(blocks))
    ours, stats = read_pcap(spead2gpu, path)
    assert_same_heaps(ours, reference_heaps(main, tmp_path))
    assert malformed(stats) == expect_malformed(0)


#: pcapng content that libpcap cannot read past: the block that stops it
PCAPNG_STOPPERS = {
    "other-linktype": lambda: ng_idb(113),
    "other-byte-order": lambda: ng_shb(">") + ng_idb(1, ">"),
    "undeclared-interface": lambda: ng_epb(eth(ipv4(udp(b"junk"))), 7),
    "short-epb": lambda: ng_block(6, b"\0" * 8),
    "caplen-beyond-block": lambda: ng_block(6, struct.pack("<IIIII", 0, 0, 0, 1 << 20, 100) + b"\0" * 100),
    "empty-spb": lambda: ng_block(3, b""),
    "length-beyond-file": lambda: struct.pack("<II", 6, 1 << 30) + b"\0" * 20,
}


@spead2gpu_only
@pytest.mark.parametrize("stopper", sorted(PCAPNG_STOPPERS))
def test_pcapng_unreadable_blocks(tmp_path, stopper):
    """A block libpcap cannot read ends the replay there: the heaps before it
    arrive, the read error counts as one malformed packet."""
    main = sender_packets(4, seed=27, size=500)
    frames = [eth(ipv4(udp(p))) for p in main]
    blocks = [ng_shb(), ng_idb(1), ng_epb(frames[0]), ng_epb(frames[1]),
              PCAPNG_STOPPERS[stopper](), ng_epb(frames[2]), ng_epb(frames[3])]
    path = _write(tmp_path / "bad.pcapng", b"".join(blocks))
    heaps, stats = read_pcap(spead2gpu, path)
    assert [h[1] for h in heaps] == [1, 2]
    assert malformed(stats) == expect_malformed(1)


# ---------------------------------------------------------------------------
# Filters
# ---------------------------------------------------------------------------

FILTERS = [
    "",
    "udp",
    f"udp port {MAIN_PORT}",
    f"udp dst port {MAIN_PORT}",
    "udp src port 7001",
    f"port {OTHER_PORT}",
    f"dst port {OTHER_PORT}",
    "src port 7000",
    f"udp and dst port {MAIN_PORT}",
    f"udp && port {OTHER_PORT}",
    f"ip and udp dst port {MAIN_PORT}",
    f"port {MAIN_PORT} and port 7000",
    f"port {MAIN_PORT} and port 7001",
    "udp port 1",
    "udp or tcp",
    "(udp)",
    "host 10.0.0.1",
    f"not port {JUNK_PORT}",
    "port 0x22b8",
    "greater 1000",
    f"udp port {OTHER_PORT} or less 300",
]


@pytest.mark.parametrize("filter", FILTERS)
def test_filter_same_as_spead2(tmp_path, filter):
    main = sender_packets(6, seed=15)
    other = sender_packets(4, first_cnt=100, seed=16, size=700)
    cap = mixed_capture("ethernet", main, other)
    path = tmp_path / "filter.pcap"
    path.write_bytes(cap.pcap())
    ours, theirs, ours_stats, theirs_stats = read_both(path, filter)
    assert_same_heaps(ours, theirs)
    assert ours_stats["packets"] == theirs_stats["packets"]


@spead2gpu_only
@pytest.mark.parametrize("filter", [f"udp dst port {MAIN_PORT}", f"port {OTHER_PORT}", "ip6", "ip"])
def test_filter_ipv6(tmp_path, filter):
    """Filters select IPv4 and IPv6 datagrams alike (spead2 has no IPv6)."""
    main = sender_packets(4, seed=17)
    other = sender_packets(3, first_cnt=100, seed=18, size=700)
    cap = Capture("ethernet")
    for i, p in enumerate(main):
        cap.add_udp(p, 6 if i % 2 else 4, 7000, MAIN_PORT)
    for p in other:
        cap.add_udp(p, 6, 7001, OTHER_PORT)
    path = tmp_path / "mixed-ip.pcap"
    path.write_bytes(cap.pcap())
    ours, _ = read_pcap(spead2gpu, path, filter)
    expected = {
        f"udp dst port {MAIN_PORT}": main,
        f"port {OTHER_PORT}": other,
        "ip6": [p for i, p in enumerate(main) if i % 2] + other,
        "ip": [p for i, p in enumerate(main) if not i % 2],
    }[filter]
    assert_same_heaps(ours, reference_heaps(expected, tmp_path))


@pytest.mark.parametrize("filter", ["udp port", "port 70000", "and", "udp and", "udp prt 9999",
                                    "(udp", "gateway foo", "tcp and udp"])
def test_filter_errors(tmp_path, filter):
    """A filter libpcap rejects raises RuntimeError with libpcap's message, as in spead2."""
    path = tmp_path / "f.pcap"
    path.write_bytes(mixed_capture("ethernet", sender_packets(1), []).pcap())
    msgs = []
    for mod in (spead2gpu, spead2):
        stream = mod.recv.Stream(mod.ThreadPool())
        with pytest.raises(RuntimeError) as info:
            stream.add_udp_pcap_file_reader(str(path), filter)
        msgs.append(str(info.value))
        stream.stop()
    assert msgs[0] == msgs[1]
    assert msgs[0]


def test_filter_libpcap_syntax(tmp_path):
    """The full libpcap syntax: boolean operators, hosts, byte offsets."""
    main = sender_packets(3, seed=19)
    other = sender_packets(2, first_cnt=100, seed=20, size=100)
    path = tmp_path / "f.pcap"
    path.write_bytes(mixed_capture("ethernet", main, other).pcap())
    ours, theirs, _, _ = read_both(path, f"(udp dst port {OTHER_PORT}) or (src host 10.0.0.1 and udp port 1)")
    assert_same_heaps(ours, theirs)
    assert [h[1] for h in ours] == [100, 101]
    # SPEAD packets start with 0x53 0x04: the non-SPEAD datagrams are not even seen
    ours, stats = read_pcap(spead2gpu, path, "udp[8:2] = 0x5304")
    assert sorted(h[1] for h in ours) == [1, 2, 3, 100, 101]
    assert malformed(stats) == expect_malformed(0)


# ---------------------------------------------------------------------------
# Malformed and truncated captures
# ---------------------------------------------------------------------------

def test_bad_records_keep_good_heaps(tmp_path):
    """Broken records between the good ones are skipped (and counted where
    they are UDP), and every good heap still arrives, as in spead2."""
    main = sender_packets(6, seed=21)
    cap = Capture("ethernet")
    bad = sender_packets(1, first_cnt=500, seed=22, size=2000)[0]
    n_malformed = 0
    for i, p in enumerate(main):
        cap.add_udp(p)
        kind = i % 9
        if kind == 0:    # truncated by the snap length
            f = eth(ipv4(udp(bad)))
            cap.add_frame(f[:100], len(f))
        elif kind == 1:  # IPv4 fragment (more fragments)
            cap.add_frame(eth(ipv4(udp(bad), flags_frag=0x2000)))
        elif kind == 2:  # IPv4 fragment (offset)
            cap.add_frame(eth(ipv4(bad[:100], flags_frag=0x0010)))
        elif kind == 3:  # UDP length beyond the IP packet
            cap.add_frame(eth(ipv4(udp(bad, length=len(bad) + 100))))
        elif kind == 4:  # UDP length one short: SPEAD size mismatch
            cap.add_frame(eth(ipv4(udp(bad, length=len(bad) + 7))))
        elif kind == 5:  # IP total length beyond the frame
            cap.add_frame(eth(ipv4(udp(bad), total=len(bad) + 200)))
        elif kind == 6:  # frame cut inside the IP header (not truncated by snaplen)
            cap.add_frame(eth(ipv4(udp(bad)))[:20])
        elif kind == 7:  # UDP length < 8
            cap.add_frame(eth(ipv4(udp(bad, length=4))))
        elif kind == 8:  # bad IHL
            cap.add_frame(eth(ipv4(udp(bad))[:0] + b"\x43" + ipv4(udp(bad))[1:]))
        n_malformed += 1
    path = tmp_path / "bad.pcap"
    path.write_bytes(cap.pcap())
    ours, theirs, ours_stats, theirs_stats = read_both(path)
    expected = reference_heaps(main, tmp_path)
    assert len(expected) == 6
    assert_same_heaps(ours, expected)
    assert_same_heaps(theirs, expected)
    assert malformed(ours_stats) == expect_malformed(n_malformed)
    assert ours_stats["packets"] == theirs_stats["packets"] == len(main)


@pytest.mark.parametrize("size", [500, 3000])
def test_truncated_good_packet(tmp_path, size):
    """A truncated record of a real packet loses (only) that packet's heap."""
    main = sender_packets(5, seed=23, size=size)     # 1 or 3 packets per heap
    cap = Capture("ethernet")
    for i, p in enumerate(main):
        f = eth(ipv4(udp(p)))
        if i == 2:
            cap.add_frame(f[:200], len(f))
        else:
            cap.add_frame(f)
    path = tmp_path / "trunc.pcap"
    path.write_bytes(cap.pcap())
    ours, theirs, stats, _ = read_both(path)
    assert [h[1] for h in theirs] == ([1, 2, 4, 5] if size == 500 else [2, 3, 4, 5])
    assert_same_heaps(ours, theirs)
    assert malformed(stats) == expect_malformed(1)


@spead2gpu_only
@pytest.mark.parametrize("container", ["pcap-le-us", "pcapng-le", "pcapng-spb"])
def test_file_cut_short(tmp_path, container):
    """A file cut at any point: no crash; the heaps wholly before the cut arrive."""
    main = sender_packets(4, seed=24, size=500)      # single-packet heaps
    cap = mixed_capture("ethernet", main, [], junk=False)
    data = CONTAINERS[container](cap)
    full, _ = read_pcap(spead2gpu, _write(tmp_path / "full", data))
    assert [h[1] for h in full] == [1, 2, 3, 4]
    cuts = sorted(set(list(range(0, 64)) + list(range(64, len(data), 37)) + [len(data) - 1]))
    previous = 0
    for cut in cuts:
        path = _write(tmp_path / f"cut{cut}", data[:cut])
        try:
            heaps, _ = read_pcap(spead2gpu, path)
        except RuntimeError:
            # only a missing file header (or pcapng interface) may raise
            header = 24 if container.startswith("pcap-") else len(ng_shb() + ng_idb(1))
            assert cut < header, f"cut at {cut} raised"
            continue
        assert heaps == full[:len(heaps)]
        assert len(heaps) >= previous
        previous = len(heaps)
    assert previous >= 3


def _write(path, data):
    path.write_bytes(data)
    return path


@spead2gpu_only
@pytest.mark.parametrize("container", ["pcap-le-us", "pcap-be-ns", "pcapng-le", "pcapng-be"])
def test_corrupted_files_do_not_crash(tmp_path, container):
    """Random byte corruption anywhere in the file never crashes or hangs."""
    main = sender_packets(3, seed=25, size=800)
    other = sender_packets(1, first_cnt=100, seed=26, size=50)
    cap = mixed_capture("sll", main, other)
    data = CONTAINERS[container](cap)
    # Corrupt the capture structure and the link/IP/UDP headers, not the SPEAD
    # packets themselves (whose decoding is tested elsewhere; a corrupted
    # HEAP_LENGTH could ask for an absurd allocation).
    spead = bytearray(len(data))
    for p in main + other:
        start = data.find(p)
        assert start >= 0
        spead[start:start + len(p)] = b"\1" * len(p)
    positions = [i for i in range(len(data)) if not spead[i]]
    rng = random.Random(container)
    for trial in range(60):
        buf = bytearray(data)
        for _ in range(rng.choice([1, 2, 5, 20])):
            pos = rng.choice(positions)
            buf[pos] = rng.choice([0, 0xFF, rng.randrange(256)])
        path = _write(tmp_path / f"corrupt{trial}", bytes(buf))
        try:
            read_pcap(spead2gpu, path)
            read_pcap(spead2gpu, path, f"udp port {MAIN_PORT}")
        except RuntimeError:
            pass     # a corrupted file header is an error, not a crash


def test_errors(tmp_path):
    # missing file: same RuntimeError text as spead2 ("<filename>: <strerror>")
    missing = str(tmp_path / "does-not-exist.pcap")
    msgs = []
    for mod in (spead2gpu, spead2):
        stream = mod.recv.Stream(mod.ThreadPool())
        with pytest.raises(RuntimeError) as info:
            stream.add_udp_pcap_file_reader(missing)
        msgs.append(str(info.value))
        stream.stop()
    assert msgs[0] == msgs[1] == f"{missing}: No such file or directory"

    if ALIASED_TO_REFERENCE:
        return     # the messages below name the file; spead2's do not always
    bad = {
        "garbage": b"this is not a capture file at all",
        "empty": b"",
        "short-header": struct.pack("<IHH", 0xA1B2C3D4, 2, 4),
        "short-shb": struct.pack("<II", 0x0A0D0D0A, 28),
        "bad-bom": struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x12345678, 1, 0, -1) + struct.pack("<I", 28),
        "unsupported-linktype": Capture("ethernet").pcap()[:20] + struct.pack("<I", 105),
        "unsupported-linktype-ng": ng_shb() + ng_idb(105),
        "directory": None,
    }
    for name, data in bad.items():
        if data is None:
            path = tmp_path / "a-directory"
            path.mkdir()
        else:
            path = _write(tmp_path / name, data)
        stream = spead2gpu.recv.Stream(spead2gpu.ThreadPool())
        with pytest.raises(RuntimeError) as info:
            stream.add_udp_pcap_file_reader(str(path))
        assert str(path) in str(info.value), name
        stream.stop()

    if os.geteuid() != 0:
        path = _write(tmp_path / "unreadable.pcap", Capture().pcap())
        path.chmod(0)
        stream = spead2gpu.recv.Stream(spead2gpu.ThreadPool())
        with pytest.raises(RuntimeError, match="Permission denied"):
            stream.add_udp_pcap_file_reader(str(path))


def test_empty_captures(tmp_path):
    """Valid files without packets just end the stream; a pcapng file without
    an interface before its first packet is an error, as in spead2."""
    for name, data in [("pcap", Capture().pcap()), ("pcapng-idb", ng_shb() + ng_idb(1))]:
        for mod in (spead2gpu, spead2):
            heaps, stats = read_pcap(mod, _write(tmp_path / name, data))
            assert heaps == [] and stats["packets"] == 0
    frame = eth(ipv4(udp(sender_packets(1, size=10)[0])))
    for name, data in [("pcapng", ng_shb()), ("pcapng-no-idb", ng_shb() + ng_epb(frame))]:
        path = _write(tmp_path / name, data)
        for mod in (spead2gpu, spead2):
            with pytest.raises(RuntimeError, match="no Interface Description Blocks|packet block before"):
                read_pcap(mod, path)


@pytest.mark.parametrize("mod_name", ["spead2gpu", "spead2"])
def test_keyword_arguments_and_stop(tmp_path, mod_name):
    """filename/filter keywords; stop() during a long replay returns promptly
    (repeatedly, with streams destroyed while their reader may still be
    busy); adding a pcap reader to a stopped stream behaves as in spead2."""
    mod = spead2gpu if mod_name == "spead2gpu" else spead2
    main = sender_packets(200, seed=28, size=3000)
    cap = mixed_capture("ethernet", main, [], junk=False, noise=False)
    path = _write(tmp_path / "long.pcap", cap.pcap())
    for _ in range(10):
        stream = mod.recv.Stream(mod.ThreadPool(), recv_config(mod),
                                 mod.recv.RingStreamConfig(heaps=2))
        stream.add_udp_pcap_file_reader(filename=str(path), filter="")
        first = stream.get()
        assert first.cnt == 1
        run_with_timeout(stream.stop, 10)
        assert stream.stats["heaps"] <= 200
        stream.add_udp_pcap_file_reader(str(path))     # a no-op, as in spead2
        del stream


def _open_fds(path):
    """How many of this process's file descriptors are open on ``path``."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{fd}") == str(path)
        except OSError:
            pass
    return n


@spead2gpu_only
def test_file_closed(tmp_path):
    """The capture file is closed by stop() (during the replay, or before it
    started), at the end of the replay, and when the filter is rejected."""
    main = sender_packets(200, seed=31, size=3000)
    path = _write(tmp_path / "long.pcap", mixed_capture("ethernet", main, [], junk=False, noise=False).pcap())
    # stopped during the replay
    stream = spead2gpu.recv.Stream(spead2gpu.ThreadPool(), recv_config(spead2gpu),
                                   spead2gpu.recv.RingStreamConfig(heaps=2))
    stream.add_udp_pcap_file_reader(str(path))
    assert stream.get().cnt == 1
    assert _open_fds(path) == 1
    run_with_timeout(stream.stop, 10)
    assert _open_fds(path) == 0
    # never started
    stream = spead2gpu.recv.Stream(spead2gpu.ThreadPool(), spead2gpu.recv.StreamConfig(explicit_start=True))
    stream.add_udp_pcap_file_reader(str(path))
    assert _open_fds(path) == 1
    stream.stop()
    assert _open_fds(path) == 0
    # replayed to the end: closed without a stop()
    stream = spead2gpu.recv.Stream(spead2gpu.ThreadPool())
    stream.add_udp_pcap_file_reader(str(path))
    assert len(run_with_timeout(lambda: list(stream), 30)) == 200
    deadline = time.monotonic() + 10
    while _open_fds(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _open_fds(path) == 0
    stream.stop()
    # a rejected filter
    stream = spead2gpu.recv.Stream(spead2gpu.ThreadPool())
    with pytest.raises(RuntimeError):
        stream.add_udp_pcap_file_reader(str(path), "udp prt 9999")
    assert _open_fds(path) == 0
    stream.stop()


def test_explicit_start(tmp_path):
    main = sender_packets(3, seed=29)
    path = _write(tmp_path / "c.pcap", mixed_capture("ethernet", main, []).pcap())
    stream = spead2gpu.recv.Stream(spead2gpu.ThreadPool(), spead2gpu.recv.StreamConfig(explicit_start=True))
    stream.add_udp_pcap_file_reader(str(path))
    time.sleep(0.05)
    assert stream.stats["packets"] == 0
    stream.start()
    heaps = run_with_timeout(lambda: [heap_summary(spead2gpu, h) for h in stream], 10)
    assert_same_heaps(heaps, reference_heaps(main, tmp_path))


# ---------------------------------------------------------------------------
# Real traffic captured by tcpdump
# ---------------------------------------------------------------------------

def _free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tcpdump_capture(tmp_path):
    """Start tcpdump on the loopback interface; yields (path, port, wait)."""
    exe = shutil.which("tcpdump")
    if exe is None:
        pytest.fail("tcpdump is not installed (.ci/run installs it: apt-get install tcpdump)")
    port = _free_udp_port()
    path = tmp_path / "loopback.pcap"
    cmd = [exe, "-i", "lo", "-n", "-U", "-s", "0", "-w", str(path)]
    if os.geteuid() == 0:
        cmd += ["-Z", "root"]     # keep write access to tmp_path
    cmd += ["udp", "port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    line = b""
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if b"listening on" in line or not line:
            break
    if b"listening on" not in line:
        proc.kill()
        err = line + proc.stderr.read()
        proc.wait()
        proc.stderr.close()
        pytest.fail(f"cannot capture on lo with tcpdump: {err.decode(errors='replace').strip()}")

    def wait(n_packets, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and count_pcap_records(path) < n_packets:
            time.sleep(0.05)
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
        return count_pcap_records(path)

    yield path, port, wait
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    proc.stderr.close()


def test_tcpdump_loopback(tcpdump_capture):
    path, port, wait = tcpdump_capture
    # a receiver, so that the datagrams are not answered with ICMP errors
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", port))
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    try:
        sender = spead2.send.UdpStream(
            spead2.ThreadPool(), [("127.0.0.1", port)],
            spead2.send.StreamConfig(max_packet_size=1472, rate=50e6))
        ig = spead2.send.ItemGroup()
        ig.add_item(0x1000, "samples", "", shape=(20000,), dtype=np.int16)
        ig.add_item(0x1001, "timestamp", "", shape=(), format=[("u", 48)])
        rng = np.random.default_rng(30)
        n_heaps = 20
        expected_packets = 0
        for i in range(n_heaps + 1):
            if i < n_heaps:
                ig["samples"].value = rng.integers(-30000, 30000, 20000, dtype=np.int16)
                ig["timestamp"].value = i * 20000
                heap = ig.get_heap()
            else:
                heap = ig.get_end()
            expected_packets += len(list(spead2.send.PacketGenerator(heap, i + 1, 1472)))
            sender.send_heap(heap)
        del sender
        captured = wait(expected_packets)
    finally:
        sink.close()
    assert captured > 0
    for filter in ["", f"udp dst port {port}"]:
        ours, theirs, ours_stats, theirs_stats = read_both(path, filter)
        assert len(theirs) >= 1
        if captured == expected_packets:     # tcpdump saw everything
            assert [h[1] for h in theirs] == list(range(1, n_heaps + 1))
        assert_same_heaps(ours, theirs)
        assert ours_stats["packets"] == theirs_stats["packets"]
    ours_other, _ = read_pcap(spead2gpu, path, f"udp dst port {port + 1 if port < 65535 else 1}")
    assert ours_other == []
