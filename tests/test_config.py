"""Constants, configuration objects and argument validation."""

import functools

import pytest

import spead2gpu
from conftest import outcome, reference

CONSTANTS = {
    "BUG_COMPAT_DESCRIPTOR_WIDTHS": 1,
    "BUG_COMPAT_SHAPE_BIT_1": 2,
    "BUG_COMPAT_SWAP_ENDIAN": 4,
    "BUG_COMPAT_PYSPEAD_0_5_2": 7,
    "NULL_ID": 0,
    "HEAP_CNT_ID": 1,
    "HEAP_LENGTH_ID": 2,
    "PAYLOAD_OFFSET_ID": 3,
    "PAYLOAD_LENGTH_ID": 4,
    "DESCRIPTOR_ID": 5,
    "STREAM_CTRL_ID": 6,
    "DESCRIPTOR_NAME_ID": 0x10,
    "DESCRIPTOR_DESCRIPTION_ID": 0x11,
    "DESCRIPTOR_SHAPE_ID": 0x12,
    "DESCRIPTOR_FORMAT_ID": 0x13,
    "DESCRIPTOR_ID_ID": 0x14,
    "DESCRIPTOR_DTYPE_ID": 0x15,
    "CTRL_STREAM_START": 0,
    "CTRL_DESCRIPTOR_REISSUE": 1,
    "CTRL_STREAM_STOP": 2,
    "CTRL_DESCRIPTOR_UPDATE": 3,
    "MEMCPY_STD": 0,
    "MEMCPY_NONTEMPORAL": 1,
    "_UNRESERVED_ID": 0x1000,
    "_FASTPATH_NONE": 0,
    "_FASTPATH_IMMEDIATE": 1,
    "_FASTPATH_NUMPY": 2,
}

CLASS_CONSTANTS = {
    "recv.StreamConfig.DEFAULT_MAX_HEAPS": 4,
    "recv.RingStreamConfig.DEFAULT_HEAPS": 4,
    "recv.Stream.DEFAULT_UDP_MAX_SIZE": 9200,
    "recv.Stream.DEFAULT_UDP_BUFFER_SIZE": 8388608,
    "recv.Stream.DEFAULT_TCP_MAX_SIZE": 65536,
    "recv.Stream.DEFAULT_TCP_BUFFER_SIZE": 212992,
    "send.StreamConfig.DEFAULT_MAX_PACKET_SIZE": 1472,
    "send.StreamConfig.DEFAULT_MAX_HEAPS": 4,
    "send.StreamConfig.DEFAULT_BURST_SIZE": 65536,
    "send.StreamConfig.DEFAULT_BURST_RATE_RATIO": 1.05,
}


def resolve(mod, path):
    return functools.reduce(getattr, path.split("."), mod)


@pytest.mark.parametrize("name", sorted(CONSTANTS))
def test_constants(impl, name):
    assert getattr(impl, name) == CONSTANTS[name]


def test_constants_equal_spead2():
    ref = reference()
    names = [n for n in dir(ref) if n.isupper() or n.startswith(("_FASTPATH", "_UNRESERVED"))]
    assert set(names) >= set(CONSTANTS)
    for n in names:
        assert hasattr(spead2gpu, n), f"spead2gpu lacks {n}"
        assert getattr(spead2gpu, n) == getattr(ref, n), n
    assert not hasattr(ref, "BUG_COMPAT_NO_SCALAR_NUMPY")
    assert isinstance(spead2gpu.__version__, str)


@pytest.mark.parametrize("path", sorted(CLASS_CONSTANTS))
def test_class_constants(impl, path):
    assert resolve(impl, path) == CLASS_CONSTANTS[path]


def test_send_default_rate_method(impl):
    assert impl.send.StreamConfig.DEFAULT_RATE_METHOD == impl.send.RateMethod.AUTO
    assert [impl.send.RateMethod.SW.value, impl.send.RateMethod.HW.value,
            impl.send.RateMethod.AUTO.value] == [0, 1, 2]
    assert [impl.send.GroupMode.ROUND_ROBIN.value, impl.send.GroupMode.SERIAL.value] == [0, 1]


def test_exceptions(impl):
    for name in ("Stopped", "Empty", "Full"):
        exc = getattr(impl, name)
        assert issubclass(exc, Exception)
        assert exc.__name__ == name
    assert not issubclass(impl.Stopped, impl.Empty)


def test_module_layout(impl):
    import importlib
    for sub in ("recv", "send", "recv.asyncio", "send.asyncio"):
        importlib.import_module(impl.__name__ + "." + sub)
    for name in ("Flavour", "ThreadPool", "MemoryAllocator", "MmapAllocator", "MemoryPool",
                 "InprocQueue", "Descriptor", "Item", "ItemGroup", "parse_range_list"):
        assert hasattr(impl, name), name
    for name in ("Heap", "IncompleteHeap", "Stream", "StreamConfig", "RingStreamConfig",
                 "StreamStats", "StreamStatConfig", "stream_stat_indices"):
        assert hasattr(impl.recv, name), name
    for name in ("Heap", "HeapReference", "HeapReferenceList", "PacketGenerator", "RateMethod",
                 "GroupMode", "StreamConfig", "Stream", "BytesStream", "InprocStream",
                 "HeapGenerator", "ItemGroup"):
        assert hasattr(impl.send, name), name
    assert hasattr(impl.recv.asyncio, "Stream")
    assert hasattr(impl.send.asyncio, "InprocStream")
    assert issubclass(impl.recv.asyncio.Stream, impl.recv.Stream)
    assert issubclass(impl.send.ItemGroup, impl.ItemGroup)
    assert issubclass(impl.send.ItemGroup, impl.send.HeapGenerator)
    assert issubclass(impl.Item, impl.Descriptor)


def test_parse_range_list(impl):
    assert impl.parse_range_list("2,3-5") == [2, 3, 4, 5]
    assert impl.parse_range_list("7") == [7]
    assert impl.parse_range_list("") == []


# ---------------------------------------------------------------------------
# Options: defaults and read/write
# ---------------------------------------------------------------------------

RECV_OPTIONS = [
    ("max_heaps", 4, 17),
    ("substreams", 1, 3),
    ("bug_compat", 0, 7),
    ("memcpy", 0, 1),
    ("stop_on_stop_item", True, False),
    ("allow_unsized_heaps", True, False),
    ("allow_out_of_order", False, True),
    ("stream_id", 0, 123),
    ("explicit_start", False, True),
]
RING_OPTIONS = [
    ("heaps", 4, 11),
    ("contiguous_only", True, False),
    ("incomplete_keep_payload_ranges", False, True),
]
SEND_OPTIONS = [
    ("max_packet_size", 1472, 9000),
    ("rate", 0.0, 1e9),
    ("burst_size", 65536, 1000),
    ("max_heaps", 4, 8),
    ("burst_rate_ratio", 1.05, 2.5),
]


@pytest.mark.parametrize("cls,options", [("recv.StreamConfig", RECV_OPTIONS),
                                         ("recv.RingStreamConfig", RING_OPTIONS),
                                         ("send.StreamConfig", SEND_OPTIONS)])
def test_options_read_write(impl, cls, options):
    klass = resolve(impl, cls)
    default = klass()
    for name, dflt, new in options:
        assert getattr(default, name) == dflt, name
        via_kw = klass(**{name: new})
        assert getattr(via_kw, name) == new, name
        obj = klass()
        setattr(obj, name, new)
        assert getattr(obj, name) == new, name
    # All keywords at once
    obj = klass(**{name: new for name, _, new in options})
    for name, _, new in options:
        assert getattr(obj, name) == new, name


def test_recv_memory_allocator_option(impl):
    cfg = impl.recv.StreamConfig()
    assert isinstance(cfg.memory_allocator, impl.MemoryAllocator)
    for alloc in (impl.MmapAllocator(), impl.MemoryPool(16, 1024, 2, 1),
                  impl.MemoryAllocator()):
        cfg.memory_allocator = alloc
        assert cfg.memory_allocator is alloc
        assert impl.recv.StreamConfig(memory_allocator=alloc).memory_allocator is alloc
    assert impl.recv.StreamConfig(memcpy=impl.MEMCPY_NONTEMPORAL).memcpy == impl.MEMCPY_NONTEMPORAL


def test_send_rate_method_and_burst_rate(impl):
    cfg = impl.send.StreamConfig(rate_method=impl.send.RateMethod.SW)
    assert cfg.rate_method == impl.send.RateMethod.SW
    cfg.rate_method = impl.send.RateMethod.HW
    assert cfg.rate_method == impl.send.RateMethod.HW
    assert impl.send.StreamConfig().rate_method == impl.send.RateMethod.AUTO
    assert impl.send.StreamConfig().burst_rate == 0.0
    assert impl.send.StreamConfig(rate=1000.0).burst_rate == pytest.approx(1050.0)
    assert impl.send.StreamConfig(rate=1000.0, burst_rate_ratio=2).burst_rate == \
        pytest.approx(2000.0)


def test_flavour(impl):
    f = impl.Flavour()
    assert (f.version, f.item_pointer_bits, f.heap_address_bits, f.bug_compat) == (4, 64, 40, 0)
    g = impl.Flavour(4, 64, 48, impl.BUG_COMPAT_PYSPEAD_0_5_2)
    assert (g.version, g.item_pointer_bits, g.heap_address_bits, g.bug_compat) == (4, 64, 48, 7)
    assert impl.Flavour(4, 64, 48) == impl.Flavour(4, 64, 48, 0)
    assert impl.Flavour(4, 64, 40) != impl.Flavour(4, 64, 48)
    assert impl.Flavour(4, 64, 40, 1) != impl.Flavour(4, 64, 40, 2)
    assert not (impl.Flavour() != impl.Flavour(4, 64, 40, 0))
    for hab in range(8, 64, 8):
        assert impl.Flavour(4, 64, hab).heap_address_bits == hab
    with pytest.raises(AttributeError):
        f.heap_address_bits = 48


def test_thread_pool(impl):
    tp = impl.ThreadPool()
    tp2 = impl.ThreadPool(2)
    tp3 = impl.ThreadPool(3, [0])  # affinity reused cyclically
    tp4 = impl.ThreadPool(threads=2, affinity=[0, 0])
    impl.ThreadPool.set_affinity(0)
    for pool in (tp, tp2, tp3, tp4):
        stream = impl.recv.Stream(pool)
        stream.stop()
        pool.stop()


# ---------------------------------------------------------------------------
# Validation: same exception types as spead2
# ---------------------------------------------------------------------------

BAD_CALLS = [
    ("recv.StreamConfig", (), dict(max_heaps=0)),
    ("recv.StreamConfig", (), dict(max_heaps=-1)),
    ("recv.StreamConfig", (), dict(max_heaps="a")),
    ("recv.StreamConfig", (), dict(substreams=0)),
    ("recv.StreamConfig", (), dict(bug_compat=8)),
    ("recv.StreamConfig", (), dict(bug_compat=255)),
    ("recv.StreamConfig", (), dict(memcpy=2)),
    ("recv.StreamConfig", (), dict(memcpy=-1)),
    ("recv.StreamConfig", (), dict(stream_id=-1)),
    ("recv.StreamConfig", (), dict(stream_id=2 ** 64)),
    ("recv.StreamConfig", (), dict(foo=1)),
    ("recv.StreamConfig", (1,), {}),
    ("recv.StreamConfig", (), dict(memory_allocator=5)),
    ("recv.RingStreamConfig", (), dict(heaps=0)),
    ("recv.RingStreamConfig", (), dict(heaps=-1)),
    ("recv.RingStreamConfig", (), dict(foo=1)),
    ("send.StreamConfig", (), dict(rate=-1)),
    ("send.StreamConfig", (), dict(rate=-1e-9)),
    ("send.StreamConfig", (), dict(max_heaps=0)),
    ("send.StreamConfig", (), dict(burst_rate_ratio=0.5)),
    ("send.StreamConfig", (), dict(burst_rate_ratio=float("inf"))),
    ("send.StreamConfig", (), dict(max_packet_size=-5)),
    ("send.StreamConfig", (), dict(rate_method=5)),
    ("send.StreamConfig", (), dict(foo=1)),
    ("Flavour", (3, 64, 40, 0), {}),
    ("Flavour", (4, 32, 40, 0), {}),
    ("Flavour", (4, 64, 41, 0), {}),
    ("Flavour", (4, 64, 0, 0), {}),
    ("Flavour", (4, 64, 64, 0), {}),
    ("Flavour", (4, 64, 72, 0), {}),
    ("Flavour", (4, 64, 40, -1), {}),
    ("Flavour", (4, 64), {}),
    ("ThreadPool", (0,), {}),
    ("ThreadPool", (-1,), {}),
    ("ThreadPool", ("a",), {}),
    ("ThreadPool", (0, [0]), {}),
]

BAD_SETTERS = [
    ("recv.StreamConfig", "max_heaps", 0),
    ("recv.StreamConfig", "substreams", 0),
    ("recv.StreamConfig", "bug_compat", 8),
    ("recv.StreamConfig", "memcpy", 5),
    ("recv.RingStreamConfig", "heaps", 0),
    ("send.StreamConfig", "rate", -1.0),
    ("send.StreamConfig", "max_heaps", 0),
    ("send.StreamConfig", "burst_rate_ratio", 0.9),
]


@pytest.mark.parametrize("path,args,kwargs", BAD_CALLS,
                         ids=[f"{p}{a}{k}" for p, a, k in BAD_CALLS])
def test_bad_constructor_arguments(path, args, kwargs):
    ref = reference()
    expected = outcome(resolve(ref, path), *args, **kwargs)
    got = outcome(resolve(spead2gpu, path), *args, **kwargs)
    assert expected[0] == "raise", "reference accepted these arguments"
    assert got[0] == "raise", f"spead2gpu accepted these arguments; spead2 raises {expected[1]}"
    assert got[1] == expected[1]


@pytest.mark.parametrize("path,attr,value", BAD_SETTERS)
def test_bad_setters(path, attr, value):
    ref = reference()
    res = []
    for mod in (spead2gpu, ref):
        obj = resolve(mod, path)()
        res.append(outcome(setattr, obj, attr, value))
    assert res[1][0] == "raise"
    assert res[0] == res[1]


def test_error_messages_are_clear():
    """A few messages users rely on (they name the offending option)."""
    for call, words in [
        (lambda: spead2gpu.recv.StreamConfig(max_heaps=0), "max_heaps"),
        (lambda: spead2gpu.recv.StreamConfig(substreams=0), "substreams"),
        (lambda: spead2gpu.recv.RingStreamConfig(heaps=0), "heaps"),
        (lambda: spead2gpu.send.StreamConfig(rate=-1), "rate"),
        (lambda: spead2gpu.Flavour(4, 64, 41, 0), "heap_address_bits"),
        (lambda: spead2gpu.ThreadPool(0), "thread"),
    ]:
        with pytest.raises(Exception) as info:
            call()
        assert words in str(info.value).lower()


def test_stream_validation_matches_spead2():
    ref = reference()
    cases = [
        lambda m: m.recv.Stream(None),
        lambda m: m.recv.Stream(m.ThreadPool(), m.recv.StreamConfig(), m.recv.RingStreamConfig(), 1),
        lambda m: m.recv.Stream(m.ThreadPool(), m.recv.RingStreamConfig()),
        lambda m: m.send.InprocStream(m.ThreadPool(), []),
        lambda m: m.send.BytesStream(None),
        lambda m: m.send.PacketGenerator(m.send.Heap(), 1, 20),
        lambda m: m.send.PacketGenerator(m.send.Heap(), 1, 55),
        lambda m: m.send.BytesStream(m.ThreadPool()).set_cnt_sequence(1, 0),
        lambda m: m.send.BytesStream(m.ThreadPool()).set_cnt_sequence(-1, 1),
        lambda m: m.send.BytesStream(m.ThreadPool()).send_heap(m.send.Heap(), cnt=1 << 40),
        lambda m: m.send.BytesStream(m.ThreadPool()).send_heaps([], m.send.GroupMode.SERIAL),
        lambda m: m.send.BytesStream(m.ThreadPool(), m.send.StreamConfig(max_packet_size=55))
        .send_heap(m.send.Heap()),
        lambda m: m.send.Heap().add_item(5),
        lambda m: m.recv.StreamConfig().get_stat_index("nope"),
        lambda m: m.recv.StreamConfig().add_stat("heaps"),
        lambda m: m.Descriptor(0x1000, "a", "b", (), None, format=None),
        lambda m: m.Descriptor(0x1000, "a", "b", (), "<i4", format=[("u", 8)]),
        lambda m: m.Descriptor(0x1000, "a", "b", (None, None), format=[("u", 8)]),
        lambda m: m.Descriptor(0x1000, "a", "b", (None,), dtype="<i4"),
        lambda m: m.Descriptor(0x1000, "a", "b", (), format=[("0", 8)]),
        lambda m: m.Descriptor(0x1000, "a", "b", (), format=[("f", 16)]),
        lambda m: m.Descriptor(0x1000, "a", "b", (), format=[("c", 7)]),
        lambda m: m.Item(0x1000, "a", "b", (), format=[("u", 8)]).to_buffer(),
        lambda m: m.Item(0x1000, "a", "b", (2,), format=[("u", 8)], value=[1, 2, 3]).to_buffer(),
        lambda m: m.Item(0x1000, "a", "b", (3,), format=[("c", 8)], value="ab").to_buffer(),
        lambda m: setattr(m.Item(0x1000, "a", "b", (), format=[("u", 8)]), "value", None),
        lambda m: m.ItemGroup()["missing"],
        lambda m: m.ItemGroup()[0x1234],
        lambda m: m.MemoryPool(),
        lambda m: m.InprocQueue().add_packet(5),
    ]
    import inspect
    problems = []
    for case in cases:
        src = inspect.getsource(case).strip()
        expected = outcome(case, ref)
        got = outcome(case, spead2gpu)
        assert expected[0] == "raise", f"reference did not raise: {src}"
        if got != expected:
            problems.append(f"{src}: spead2gpu {got}, spead2 {expected}")
    assert not problems, "\n".join(problems)


def test_numba_helpers_match_spead2():
    """spead2gpu.recv.numba.chunk_place_data has spead2's C layout (80 bytes)."""
    pytest.importorskip("numba")
    ref = reference()
    import importlib

    layouts = []
    for mod in (spead2gpu, ref):
        rn = importlib.import_module(mod.__name__ + ".recv.numba")
        n = importlib.import_module(mod.__name__ + ".numba")
        assert hasattr(n, "intp_to_voidptr")
        t = rn.chunk_place_data
        layouts.append((t.size, [(k, str(v.type), v.offset) for k, v in t.fields.items()]))
    assert layouts[0] == layouts[1]
    assert layouts[0][0] == 80
    assert [f[0] for f in layouts[0][1]] == [
        "packet", "packet_size", "items", "chunk_id", "heap_index", "heap_offset",
        "batch_stats", "extra", "extra_offset", "extra_size"]


# ---------------------------------------------------------------------------
# ibverbs configuration (spead2's API; spead2gpu has no ibverbs transport)
# ---------------------------------------------------------------------------

IBV_ATTRS = {
    "recv": dict(DEFAULT_BUFFER_SIZE=16 * 1024 * 1024, DEFAULT_MAX_POLL=10, DEFAULT_MAX_SIZE=9200,
                 buffer_size=16 * 1024 * 1024, comp_vector=0, endpoints=[], interface_address="",
                 max_poll=10, max_size=9200),
    "send": dict(DEFAULT_BUFFER_SIZE=512 * 1024, DEFAULT_MAX_POLL=10, buffer_size=512 * 1024,
                 comp_vector=0, endpoints=[], interface_address="", max_poll=10, ttl=1),
}


@pytest.mark.parametrize("side", ["recv", "send"])
def test_udp_ibv_config_matches_spead2(impl, side):
    """The config classes exist with spead2's defaults and validation, so that
    spead2's tools (which read ``UdpIbvConfig.DEFAULT_MAX_POLL``) work."""
    cls = getattr(impl, side).UdpIbvConfig
    config = cls()
    assert {k: getattr(config, k) for k in IBV_ATTRS[side]} == IBV_ATTRS[side]
    assert cls(buffer_size=0).buffer_size == IBV_ATTRS[side]["DEFAULT_BUFFER_SIZE"]  # 0: the default
    config = cls(endpoints=[("239.1.2.3", 7000)], interface_address="10.0.0.1", comp_vector=-1,
                 max_poll=3)
    assert (config.endpoints, config.interface_address, config.comp_vector, config.max_poll) == \
        ([("239.1.2.3", 7000)], "10.0.0.1", -1, 3)
    with pytest.raises(ValueError, match="max_poll must be at least 1"):
        cls(max_poll=0)
    with pytest.raises(TypeError):
        cls(no_such_option=1)
    if side == "recv":
        with pytest.raises(ValueError, match="max_size must be positive"):
            cls(max_size=0)


def test_add_udp_ibv_reader_validates_then_needs_a_device(impl):
    """spead2's checks come first; then, as spead2 on a host without an RDMA
    device (and always for spead2gpu, as RuntimeError), an error."""
    stream = impl.recv.Stream(impl.ThreadPool())
    with pytest.raises(ValueError, match="endpoints is empty"):
        stream.add_udp_ibv_reader(impl.recv.UdpIbvConfig())
    with pytest.raises(ValueError, match="interface address has not been specified"):
        stream.add_udp_ibv_reader(impl.recv.UdpIbvConfig(endpoints=[("239.1.2.3", 7000)]))
    # (spead2 raises RuntimeError or OSError, depending on what it finds missing)
    with pytest.raises((RuntimeError, OSError)):
        stream.add_udp_ibv_reader(impl.recv.UdpIbvConfig(endpoints=[("239.1.2.3", 7000)],
                                                         interface_address="127.0.0.1"))
    stream.stop()
