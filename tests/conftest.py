"""Shared helpers for the spead2gpu test suite.

The suite checks spead2gpu against the reference implementation, spead2 4.5.1
(a test-only dependency).  Most helpers therefore take the *module* to use as
their first argument (``spead2gpu`` or ``spead2``), so that the same workload
can be run through both and the observable results compared.

Nothing here touches the network: data moves through in-memory buffers
(``send.BytesStream`` / ``recv.Stream.add_buffer_reader``) and in-process
queues (``InprocQueue``).
"""

from __future__ import annotations

import importlib
import os
import struct
import threading

import numpy as np
import pytest

import spead2gpu
import spead2gpu.recv
import spead2gpu.recv.asyncio
import spead2gpu.send
import spead2gpu.send.asyncio
from _expect_gpu import (  # noqa: F401 (hooks: SPEAD2GPU_EXPECT_GPU turns skipped GPU tests into failures)
    pytest_make_collect_report,
    pytest_report_header,
    pytest_runtest_makereport,
)

try:
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        "spead2gpu",
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        derandomize=True,  # deterministic: the same examples on every run
        print_blob=True,
    )
    settings.load_profile("spead2gpu")
except ImportError:  # pragma: no cover
    pass


# ---------------------------------------------------------------------------
# Modules under test
# ---------------------------------------------------------------------------

def reference():
    """The reference implementation (spead2 4.5.1), or skip the test."""
    mod = pytest.importorskip("spead2")
    for sub in ("recv", "send", "recv.asyncio", "send.asyncio"):
        importlib.import_module("spead2." + sub)
    return mod


def both_libs():
    """[spead2 (the reference), spead2gpu], skipping if spead2 is not installed."""
    return [reference(), spead2gpu]


@pytest.fixture(scope="session")
def cb():
    """The numba placement callbacks of test_chunks (compiled once per session;
    the same compiled code serves both libraries). Skips without numba/scipy."""
    from test_chunks import _compile

    return _compile()


#: True when ``spead2gpu`` is really an alias of the reference (used to
#: validate the suite itself against spead2).  Tests of behaviour that only
#: spead2gpu provides skip in that case.
ALIASED_TO_REFERENCE = spead2gpu.__name__ == "spead2"

#: The sanitizer tools/sanitize.sh runs the suite under ("asan", "tsan"), or "".
SANITIZER = os.environ.get("SPEAD2GPU_SANITIZED", "")


def assert_rss_growth_below(growth, limit, what=""):
    """Assert that resident memory grew by less than ``limit`` bytes.

    Not under AddressSanitizer: it keeps freed memory in a quarantine (256 MiB)
    and pads every allocation with redzones, so resident memory there says
    nothing about the allocations under test; the test's other assertions
    (counts, outcomes) still run.
    """
    if SANITIZER == "asan":
        return
    assert growth < limit, f"RSS grew by {growth / 2**20:.1f} MiB {what}".rstrip()

spead2gpu_only = pytest.mark.skipif(
    ALIASED_TO_REFERENCE, reason="spead2gpu-only behaviour (spead2gpu is aliased to spead2)"
)


@pytest.fixture(params=["spead2gpu", "spead2"])
def impl(request):
    """Run a test once against spead2gpu and once against the reference.

    Tests using this fixture assert hard-coded expectations; running them on
    the reference proves the expectations describe spead2's real behaviour.
    """
    if request.param == "spead2gpu":
        return spead2gpu
    return reference()


@pytest.fixture
def ref():
    return reference()


@pytest.fixture
def gpu():
    return spead2gpu


# ---------------------------------------------------------------------------
# Hand-built SPEAD packets (independent of both implementations)
# ---------------------------------------------------------------------------

HAB = 40
IMMEDIATE = 1 << 63


def ptr(id_, value, immediate, hab=HAB):
    """Encode an item pointer as an integer."""
    return (IMMEDIATE if immediate else 0) | (id_ << hab) | value


def imm(id_, value, hab=HAB):
    return ptr(id_, value, True, hab)


def addr(id_, offset, hab=HAB):
    return ptr(id_, offset, False, hab)


def packet(pointers, payload=b"", *, hab=HAB, n_items=None, magic=0x53, version=4,
           id_width=None, addr_width=None, reserved=0):
    """Build one packet from raw pointer integers and a payload.

    Every header field can be overridden to build malformed packets.
    """
    header = struct.pack(
        ">BBBBHH",
        magic,
        version,
        (64 - hab) // 8 if id_width is None else id_width,
        hab // 8 if addr_width is None else addr_width,
        reserved,
        len(pointers) if n_items is None else n_items,
    )
    return header + b"".join(struct.pack(">Q", p) for p in pointers) + bytes(payload)


def heap_packet(cnt, offset, payload, heap_length=None, items=(), hab=HAB,
                payload_length=None):
    """One packet of a heap: the special items, then ``items`` (raw pointers)."""
    ptrs = [imm(1, cnt, hab)]
    if heap_length is not None:
        ptrs.append(imm(2, heap_length, hab))
    ptrs += [imm(3, offset, hab),
             imm(4, len(payload) if payload_length is None else payload_length, hab)]
    return packet(ptrs + list(items), payload, hab=hab)


def heap_packets(cnt, payload, chunk, items=None, sized=True, hab=HAB):
    """Split a heap into packets of ``chunk`` payload bytes.

    By default the heap has one addressed item, 0x1000, covering the whole
    payload.  Item pointers go only in the first packet.
    """
    if items is None:
        items = [addr(0x1000, 0, hab)]
    out = []
    for off in range(0, len(payload), chunk):
        out.append(heap_packet(cnt, off, payload[off:off + chunk],
                               len(payload) if sized else None,
                               items if off == 0 else (), hab))
    return out


def stop_packet(cnt, hab=HAB):
    """A single-packet heap carrying STREAM_CTRL=STOP."""
    return heap_packet(cnt, 0, b"\0", 1, [imm(6, 2, hab)], hab)


def parse_packet(data, offset=0):
    """Parse one packet: returns (hab, pointers, payload, size) or None if bad."""
    if len(data) - offset < 8:
        return None
    magic, version, id_w, addr_w, _, n_items = struct.unpack_from(">BBBBHH", data, offset)
    if magic != 0x53 or version != 4 or id_w + addr_w != 8 or id_w == 0 or addr_w == 0:
        return None
    hab = addr_w * 8
    if offset + 8 + 8 * n_items > len(data):
        return None
    ptrs = list(struct.unpack_from(f">{n_items}Q", data, offset + 8))
    mask = (1 << hab) - 1
    plen = None
    for p in ptrs:
        if p & IMMEDIATE and ((p & ~IMMEDIATE) >> hab) == 4:
            plen = p & mask
    if plen is None:
        return None
    start = offset + 8 + 8 * n_items
    if start + plen > len(data):
        return None
    return hab, ptrs, bytes(data[start:start + plen]), 8 + 8 * n_items + plen


def split_packets(data):
    """Split a concatenation of packets (BytesStream output) into packets."""
    out = []
    off = 0
    while off < len(data):
        parsed = parse_packet(data, off)
        assert parsed is not None, f"unparseable packet at offset {off}"
        out.append(bytes(data[off:off + parsed[3]]))
        off += parsed[3]
    return out


def packet_fields(pkt):
    """(heap_cnt, payload_offset, payload_length, other pointers) of a packet."""
    hab, ptrs, payload, _ = parse_packet(pkt)
    mask = (1 << hab) - 1
    special = {}
    rest = []
    for p in ptrs:
        id_ = (p & ~IMMEDIATE) >> hab
        if p & IMMEDIATE and id_ in (1, 2, 3, 4):
            special[id_] = p & mask
        else:
            rest.append(p)
    return special.get(1), special.get(3), special.get(4), rest


# ---------------------------------------------------------------------------
# Send / receive drivers
# ---------------------------------------------------------------------------

def send_bytes(mod, heaps, *, max_packet_size=None, cnts=None, cnt_sequence=None,
               substreams=None):
    """Send heaps through ``mod.send.BytesStream`` and return the bytes."""
    kw = {}
    if max_packet_size is not None:
        kw["max_packet_size"] = max_packet_size
    stream = mod.send.BytesStream(mod.ThreadPool(), mod.send.StreamConfig(**kw))
    if cnt_sequence is not None:
        stream.set_cnt_sequence(*cnt_sequence)
    for i, heap in enumerate(heaps):
        if cnts is not None and cnts[i] is not None:
            stream.send_heap(heap, cnt=cnts[i])
        else:
            stream.send_heap(heap)
    return stream.getvalue()


def recv_config(mod, **kwargs):
    """``mod.recv.StreamConfig(**kwargs)``; for spead2gpu with
    ``extended_stats=True`` too, so that tests can read the ``spead2gpu.*``
    drop counters.  (The default, spead2's statistics exactly, is tested in
    test_stats.py.)"""
    if mod is spead2gpu and not ALIASED_TO_REFERENCE:
        kwargs.setdefault("extended_stats", True)
    return mod.recv.StreamConfig(**kwargs)


def make_stream(mod, config=None, ring=None, threads=1):
    return mod.recv.Stream(
        mod.ThreadPool(threads),
        recv_config(mod, **(config or {})),
        mod.recv.RingStreamConfig(**(ring or {})),
    )


def receive(mod, data, config=None, ring=None, via="buffer", max_heaps_out=100000):
    """Receive everything from ``data`` (bytes for "buffer", a list of packets
    for "inproc").  Returns (list of heaps, stream)."""
    stream = make_stream(mod, config, ring)
    if via == "buffer":
        if not isinstance(data, (bytes, bytearray, memoryview)):
            data = b"".join(data)
        stream.add_buffer_reader(data)
    elif via == "inproc":
        queue = mod.InprocQueue()
        if isinstance(data, (bytes, bytearray)):
            data = split_packets(data)
        for pkt in data:
            queue.add_packet(pkt)
        queue.stop()
        stream.add_inproc_reader(queue)
    else:
        raise ValueError(via)
    heaps = []
    for heap in stream:
        heaps.append(heap)
        assert len(heaps) <= max_heaps_out, "stream produced too many heaps"
    # The ring reports Stopped before the reader's final batch statistics are
    # merged (spead2 does the same); stop() waits for the readers, after
    # which the statistics are final.
    stream.stop()
    return heaps, stream


#: Statistics whose value is fully determined by the input once the stream
#: has been drained (``batches``/``max_batch``/``search_dist`` depend on
#: batching and ``worker_blocked`` on timing).
DETERMINISTIC_STATS = (
    "heaps",
    "incomplete_heaps_evicted",
    "incomplete_heaps_flushed",
    "packets",
    "single_packet_heaps",
)


def stats_dict(stats, names=DETERMINISTIC_STATS):
    return {name: stats[name] for name in names}


def item_summary(item):
    data = bytes(memoryview(item))
    return (item.id, bool(item.is_immediate),
            item.immediate_value if item.is_immediate else None, data)


def descriptor_summary(d):
    return (d.id, bytes(d.name), bytes(d.description), list(map(tuple, d.format)),
            list(d.shape), bytes(d.numpy_header))


def heap_summary(mod, heap):
    """A plain-Python description of a received heap, comparable across modules."""
    fl = heap.flavour
    common = (heap.cnt, fl.heap_address_bits, fl.bug_compat,
              heap.is_start_of_stream(), heap.is_end_of_stream(),
              [item_summary(i) for i in heap.get_items()])
    if isinstance(heap, mod.recv.IncompleteHeap):
        return ("incomplete",) + common + (
            heap.heap_length, heap.received_length,
            [tuple(r) for r in heap.payload_ranges])
    assert isinstance(heap, mod.recv.Heap)
    return ("heap",) + common + ([descriptor_summary(d) for d in heap.get_descriptors()],)


def receive_summary(mod, data, config=None, ring=None, via="buffer"):
    heaps, stream = receive(mod, data, config, ring, via)
    return [heap_summary(mod, h) for h in heaps], stats_dict(stream.stats)


def exc_name(exc):
    return type(exc).__name__


def outcome(fn, *args, **kwargs):
    """('ok', result) or ('raise', exception class name) for comparisons."""
    try:
        return ("ok", fn(*args, **kwargs))
    except Exception as exc:  # noqa: BLE001
        return ("raise", exc_name(exc))


# ---------------------------------------------------------------------------
# Item values
# ---------------------------------------------------------------------------

def values_equal(a, b):
    """Strict equality of two item values: same Python/numpy type, dtype,
    shape, memory order and bytes (NaNs compare equal bit-for-bit)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        if a.flags.c_contiguous != b.flags.c_contiguous or a.flags.f_contiguous != b.flags.f_contiguous:
            return False
        if a.dtype.hasobject:
            return a.tolist() == b.tolist()
        return a.tobytes() == b.tobytes()
    if isinstance(a, np.generic):
        if a.dtype != b.dtype:
            return False
        if a.dtype.hasobject:
            return a.tolist() == b.tolist()
        return a.tobytes() == b.tobytes()
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    return a == b


def describe_value(v):
    if isinstance(v, (np.ndarray, np.generic)):
        return f"{type(v).__name__}(dtype={v.dtype}, shape={np.shape(v)}, {v!r})"
    return f"{type(v).__name__}({v!r})"


def item_state(item):
    """Descriptor fields of an ItemGroup item (comparable across modules)."""
    return (item.id, item.name, item.description, tuple(item.shape),
            None if item.dtype is None else np.dtype(item.dtype).str,
            None if item.dtype is None else np.dtype(item.dtype).descr,
            item.order, None if item.format is None else [tuple(f) for f in item.format])


def assert_item_groups_equal(ig_a, ig_b):
    assert sorted(ig_a.ids()) == sorted(ig_b.ids())
    assert sorted(ig_a.keys()) == sorted(ig_b.keys())
    for id_ in ig_a.ids():
        a, b = ig_a[id_], ig_b[id_]
        assert item_state(a) == item_state(b), (a.name, item_state(a), item_state(b))
        assert values_equal(a.value, b.value), (
            f"item {a.name!r}: {describe_value(a.value)} != {describe_value(b.value)}")


# ---------------------------------------------------------------------------
# Thread helper
# ---------------------------------------------------------------------------

def run_with_timeout(fn, timeout=10.0):
    """Run ``fn`` in a daemon thread; fail the test (not hang) if it blocks."""
    result = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as exc:  # noqa: BLE001
            result["exc"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"{fn!r} did not finish within {timeout}s (deadlock?)"
    if "exc" in result:
        raise result["exc"]
    return result.get("value")


def value_key(v):
    """Canonical, hashable-ish description of an item value for comparisons."""
    if isinstance(v, np.ndarray):
        return ("ndarray", v.dtype.descr, v.shape, bool(v.flags.c_contiguous),
                bool(v.flags.f_contiguous),
                v.tolist() if v.dtype.hasobject else v.tobytes())
    if isinstance(v, np.generic):
        return (type(v).__name__, v.dtype.descr,
                v.tolist() if v.dtype.hasobject else v.tobytes())
    if isinstance(v, float):
        return ("float", struct.pack("<d", v))
    return (type(v).__name__, v)


def item_group_snapshot(ig):
    """Sorted list of (descriptor fields, value key) for every item."""
    return sorted(((item_state(item), value_key(item.value)) for item in ig.values()),
                  key=lambda t: t[0][0])


# ---------------------------------------------------------------------------
# Hypothesis strategies for items and send cases
# ---------------------------------------------------------------------------

try:
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp
except ImportError:  # pragma: no cover
    st = None

if st is not None:
    NUMPY_DTYPES = [
        "u1", "i1", "<u2", ">u2", "<i2", ">i2", "<u4", ">u4", "<i4", ">i4",
        "<u8", ">u8", "<i8", ">i8", "<f4", ">f4", "<f8", ">f8", "<c8", ">c16",
        "?", "S3", [("a", "<i2"), ("b", ">f4")], [("x", "u1"), ("y", ">i8")],
    ]

    FAST_FORMATS = [
        [("u", 8)], [("i", 8)], [("u", 16)], [("i", 16)], [("u", 32)], [("i", 32)],
        [("u", 64)], [("i", 64)], [("f", 32)], [("f", 64)], [("b", 8)], [("c", 8)],
    ]
    BIT_FORMATS = [
        [("u", 4)], [("i", 12)], [("u", 48)], [("b", 1)], [("i", 3)], [("u", 40)],
        [("u", 24)], [("i", 24)], [("i", 1)], [("u", 1)], [("u", 63)], [("i", 40)],
    ]
    COMPOUND_FORMATS = [
        [("u", 4), ("i", 12)], [("u", 16), ("f", 32)], [("u", 8), ("i", 8)],
        [("c", 8), ("u", 8)], [("b", 1), ("u", 7)],
    ]

    def field_values(code, bits, scalar):
        if code == "u":
            return st.integers(0, (1 << bits) - 1)
        if code == "i":
            if scalar and bits % 8 == 0 and bits not in (8, 16, 32, 64):
                # spead2 4.5.1 cannot send negative values for these as scalars
                return st.integers(0, (1 << (bits - 1)) - 1)
            return st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
        if code == "f":
            return st.floats(width=bits, allow_nan=True, allow_infinity=True)
        if code == "b":
            return st.booleans()
        if code == "c":
            # ASCII only: a 1-d c8 item is decoded as ASCII text on receive,
            # and spead2 itself raises UnicodeDecodeError for other bytes.
            return st.integers(0, 127).map(lambda b: bytes([b]))
        raise AssertionError(code)

    def fixed_shapes(max_dims=2, max_side=5):
        return st.lists(st.integers(1, max_side), min_size=0, max_size=max_dims).map(tuple)

    @st.composite
    def numpy_item(draw):
        dtype = np.dtype(draw(st.sampled_from(NUMPY_DTYPES)))
        shape = draw(st.one_of(fixed_shapes(), st.tuples(st.integers(1, 700))))
        order = draw(st.sampled_from(["C", "F"]))
        value = draw(hnp.arrays(dtype, shape))
        if order == "F" and draw(st.booleans()):
            value = np.asfortranarray(value)
        if shape == () and draw(st.booleans()):
            value = value[()]  # numpy scalar instead of 0-d array
        return dict(shape=shape, dtype=dtype, order=order, value=value)

    @st.composite
    def format_item(draw):
        kind = draw(st.sampled_from(["fast", "bits", "compound", "string", "variable"]))
        if kind == "string":
            text = draw(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126),
                                min_size=0, max_size=40))
            fixed = draw(st.booleans()) and len(text) > 0
            value = text if draw(st.booleans()) else text.encode("ascii")
            return dict(shape=(len(text),) if fixed else (None,), format=[("c", 8)], value=value)
        fmt = draw(st.sampled_from({"fast": FAST_FORMATS, "bits": BIT_FORMATS,
                                    "compound": COMPOUND_FORMATS,
                                    "variable": FAST_FORMATS + BIT_FORMATS}[kind]))
        if kind == "variable":
            dims = draw(st.lists(st.integers(0, 5), min_size=1, max_size=2))
            var_dim = draw(st.integers(0, len(dims) - 1))
            shape = tuple(None if i == var_dim else max(d, 1) for i, d in enumerate(dims))
            actual = tuple(d if i == var_dim else max(d, 1) for i, d in enumerate(dims))
        else:
            shape = actual = draw(fixed_shapes())
        scalar = actual == ()
        if len(fmt) == 1:
            elem = field_values(*fmt[0], scalar)
        else:
            elem = st.tuples(*(field_values(c, b, scalar) for c, b in fmt))
        n = int(np.prod(actual, dtype=np.int64))
        flat = draw(st.lists(elem, min_size=n, max_size=n))
        if scalar:
            value = flat[0]
        else:
            arr = np.empty(n, dtype=object)
            for i, v in enumerate(flat):
                arr[i] = v
            value = arr.reshape(actual).tolist()
            if len(fmt) == 1 and fmt[0][0] != "c" and draw(st.booleans()):
                value = np.array(value, dtype=object if fmt not in FAST_FORMATS else None)
        return dict(shape=shape, format=fmt, value=value)

    @st.composite
    def item_specs(draw, max_items=6, max_id=(1 << 15) - 1):
        n = draw(st.integers(0, max_items))
        ids = draw(st.lists(st.integers(7, max_id), min_size=n, max_size=n, unique=True))
        specs = []
        for i, id_ in enumerate(ids):
            spec = draw(st.one_of(numpy_item(), format_item()))
            spec["id"] = id_
            spec["name"] = f"item{i}_{id_:x}"
            spec["description"] = draw(st.sampled_from(["", "a description", "x" * 100]))
            specs.append(spec)
        return specs

    @st.composite
    def send_cases(draw, flavours=((40, 0), (48, 0), (40, 7), (48, 7), (40, 1), (40, 2),
                                   (48, 4), (40, 4), (48, 3))):
        hab, bug_compat = draw(st.sampled_from(flavours))
        specs = draw(item_specs())
        heaps = []
        for _ in range(draw(st.integers(1, 3))):
            heaps.append(dict(
                descriptors=draw(st.sampled_from(["stale", "all", "none"])),
                data=draw(st.sampled_from(["stale", "all"])),
                start=draw(st.booleans()),
                end=draw(st.booleans()),
                repeat_pointers=draw(st.booleans()),
                # new values for some items before building this heap
                updates=draw(st.lists(st.integers(0, max(len(specs) - 1, 0)), max_size=2))
                if specs else [],
            ))
        mps = draw(st.sampled_from([56, 64, 72, 100, 257, 1000, 1472, 9000]))
        cnt_mode = draw(st.sampled_from(["default", "explicit", "sequence"]))
        if cnt_mode == "explicit":
            cnts = draw(st.lists(st.integers(0, (1 << hab) - 1), min_size=len(heaps),
                                 max_size=len(heaps)))
        else:
            cnts = None
        seq = (draw(st.integers(0, 1 << 20)), draw(st.integers(1, 1000))) \
            if cnt_mode == "sequence" else None
        return dict(hab=hab, bug_compat=bug_compat, specs=specs, heaps=heaps,
                    mps=mps, cnts=cnts, cnt_sequence=seq)


def add_spec(mod, ig, spec):
    kw = dict(shape=spec["shape"], value=spec["value"])
    if "dtype" in spec:
        kw["dtype"] = spec["dtype"]
        kw["order"] = spec["order"]
    else:
        kw["format"] = spec["format"]
    return ig.add_item(spec["id"], spec["name"], spec["description"], **kw)


def build_and_send(mod, case, use_packet_generator=False):
    """Build the heaps of a send case with ``mod`` and send them.

    Returns a list of per-heap outcomes (bytes, or the exception name) and the
    total BytesStream output.  Building and sending is interleaved so that
    value updates between heaps behave as in a real application.
    """
    flavour = mod.Flavour(4, 64, case["hab"], case["bug_compat"])
    ig = mod.send.ItemGroup(flavour=flavour)
    results = []
    for spec in case["specs"]:
        results.append(outcome(add_spec, mod, ig, spec)[0])
    stream = mod.send.BytesStream(mod.ThreadPool(),
                                  mod.send.StreamConfig(max_packet_size=case["mps"]))
    if case["cnt_sequence"] is not None:
        stream.set_cnt_sequence(*case["cnt_sequence"])
    out = []
    for i, h in enumerate(case["heaps"]):
        for idx in h["updates"]:
            spec = case["specs"][idx]
            if spec["id"] in ig:
                # Re-assign the same value: makes the item stale again.
                ig[spec["id"]].value = spec["value"]
        res = outcome(ig.get_heap, descriptors=h["descriptors"], data=h["data"])
        if res[0] != "ok":
            out.append(res)
            continue
        heap = res[1]
        if h["start"]:
            heap.add_start()
        if h["end"]:
            heap.add_end()
        heap.repeat_pointers = h["repeat_pointers"]
        assert heap.repeat_pointers == h["repeat_pointers"]
        assert heap.flavour == flavour
        cnt = case["cnts"][i] if case["cnts"] is not None else None
        before = len(stream.getvalue())
        if cnt is None:
            r = outcome(stream.send_heap, heap)
        else:
            r = outcome(stream.send_heap, heap, cnt=cnt)
        if r[0] == "ok":
            data = stream.getvalue()[before:]
            assert r[1] == len(data), "send_heap must return the number of bytes sent"
            r = ("ok", data)
        if use_packet_generator:
            pg_cnt = cnt if cnt is not None else 1000 + i
            r = (r, outcome(lambda: list(mod.send.PacketGenerator(heap, pg_cnt, case["mps"]))))
        out.append(r)
    return results, out, stream.getvalue()
