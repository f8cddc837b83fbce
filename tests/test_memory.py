"""Thread pools, memory allocators, memory pools and memcpy variants."""

import gc

import numpy as np
import pytest

import spead2gpu
from conftest import heap_packets, run_with_timeout, spead2gpu_only

SIZES = [1, 7, 100, 1000, 4095, 4096, 10000, 65536, 100001, 300000]


def payload(cnt, size):
    return (np.arange(size, dtype=np.uint32) * 2654435761 + cnt).astype(np.uint8).tobytes()


def stream_data(sizes=SIZES, chunk=8192):
    return b"".join(p for cnt, size in enumerate(sizes, 1)
                    for p in heap_packets(cnt, payload(cnt, size), chunk))


def receive_and_check(mod, config, threads=1, data=None, sizes=SIZES, keep=True):
    tp = mod.ThreadPool(threads)
    stream = mod.recv.Stream(tp, config, mod.recv.RingStreamConfig(heaps=4))
    stream.add_buffer_reader(stream_data(sizes) if data is None else data)
    heaps = run_with_timeout(lambda: list(stream), 30)
    assert [h.cnt for h in heaps] == list(range(1, len(sizes) + 1))
    views = []
    for h, size in zip(heaps, sizes):
        items = h.get_items()
        assert len(items) == 1
        arr = np.asarray(items[0])
        assert arr.nbytes == size
        assert arr.tobytes() == payload(h.cnt, size)
        views.append((h.cnt, size, arr))
    stream.stop()
    return views


def allocators(mod):
    return {
        "default": None,
        "MemoryAllocator": mod.MemoryAllocator(),
        "MmapAllocator": mod.MmapAllocator(),
        "MmapAllocator_flags_huge": mod.MmapAllocator(0, True),
        "MmapAllocator_kw": mod.MmapAllocator(flags=0, prefer_huge=True),
        "MemoryPool": mod.MemoryPool(1024, 65536, 4, 2),
        "MemoryPool_mmap": mod.MemoryPool(1024, 65536, 4, 2, mod.MmapAllocator()),
        "MemoryPool_kw": mod.MemoryPool(lower=0, upper=1 << 20, max_free=2, initial=1,
                                        allocator=mod.MmapAllocator(0, True)),
    }


@pytest.mark.parametrize("name", list(allocators(spead2gpu)))
@pytest.mark.parametrize("memcpy", ["MEMCPY_STD", "MEMCPY_NONTEMPORAL"])
def test_receive_with_allocator(impl, name, memcpy):
    alloc = allocators(impl)[name]
    kw = dict(memcpy=getattr(impl, memcpy), max_heaps=2)
    if alloc is not None:
        kw["memory_allocator"] = alloc
    cfg = impl.recv.StreamConfig(**kw)
    if alloc is not None:
        assert cfg.memory_allocator is alloc
    views = receive_and_check(impl, cfg)
    # Payload stays valid after the stream, pool and config are gone.
    del cfg, alloc
    gc.collect()
    for cnt, size, arr in views:
        assert arr.tobytes() == payload(cnt, size)


def test_memory_pool_exhaustion(impl):
    """Holding more heaps than the pool keeps still works (falls back to the
    underlying allocator); warn_on_empty is a read/write flag."""
    pool = impl.MemoryPool(16, 70000, 2, 1)
    assert pool.warn_on_empty is True
    pool.warn_on_empty = False
    assert pool.warn_on_empty is False
    pool.warn_on_empty = True
    assert pool.warn_on_empty is True
    pool.warn_on_empty = False
    sizes = [60000] * 12
    views = receive_and_check(impl, impl.recv.StreamConfig(memory_allocator=pool),
                              sizes=sizes)
    assert len(views) == 12
    # second stream reuses the pool after the first stream's heaps are freed
    del views
    gc.collect()
    receive_and_check(impl, impl.recv.StreamConfig(memory_allocator=pool), sizes=sizes)


def test_memory_pool_shared_between_streams(impl):
    pool = impl.MemoryPool(0, 1 << 17, 8, 4)
    pool.warn_on_empty = False
    cfg = impl.recv.StreamConfig(memory_allocator=pool, memcpy=impl.MEMCPY_NONTEMPORAL)
    a = receive_and_check(impl, cfg)
    b = receive_and_check(impl, cfg, threads=2)
    for cnt, size, arr in a + b:
        assert arr.tobytes() == payload(cnt, size)


@spead2gpu_only
def test_memory_pool_thread_pool_constructor():
    """MemoryPool(thread_pool, lower, upper, max_free, initial, low_water,
    allocator) refills in the background.  (spead2 4.5.1 itself cannot bind
    its own ThreadPool here, so this is spead2gpu-only.)"""
    mod = spead2gpu
    tp = mod.ThreadPool()
    pool = mod.MemoryPool(tp, 1024, 1 << 17, 8, 4, 2)
    pool2 = mod.MemoryPool(tp, 1024, 1 << 17, 8, 4, 2, mod.MmapAllocator())
    pool3 = mod.MemoryPool(thread_pool=tp, lower=1024, upper=1 << 17, max_free=8, initial=4,
                           low_water=2, allocator=None)
    for p in (pool, pool2, pool3):
        p.warn_on_empty = False
        views = receive_and_check(mod, mod.recv.StreamConfig(memory_allocator=p))
        assert len(views) == len(SIZES)


def test_unaligned_nontemporal(impl):
    """Odd sizes and offsets through the non-temporal copy."""
    sizes = list(range(1, 200, 13)) + [4097, 8191, 8193]
    data = b"".join(p for cnt, size in enumerate(sizes, 1)
                    for p in heap_packets(cnt, payload(cnt, size), 61))
    receive_and_check(impl, impl.recv.StreamConfig(memcpy=impl.MEMCPY_NONTEMPORAL),
                      data=data, sizes=sizes)


def test_large_heaps_mmap_huge(impl):
    sizes = [4 << 20, 3 << 20]
    data = b"".join(p for cnt, size in enumerate(sizes, 1)
                    for p in heap_packets(cnt, payload(cnt, size), 8192))
    cfg = impl.recv.StreamConfig(memory_allocator=impl.MmapAllocator(0, True),
                                 memcpy=impl.MEMCPY_NONTEMPORAL)
    receive_and_check(impl, cfg, data=data, sizes=sizes)


@pytest.mark.parametrize("threads,affinity", [(1, None), (2, None), (2, [0]), (3, [0, 0])])
def test_thread_pool_receive(impl, threads, affinity):
    tp = impl.ThreadPool(threads) if affinity is None else impl.ThreadPool(threads, affinity)
    stream = impl.recv.Stream(tp)
    stream.add_buffer_reader(stream_data())
    assert len(run_with_timeout(lambda: list(stream), 30)) == len(SIZES)
    stream.stop()


def test_many_streams_one_pool(impl):
    tp = impl.ThreadPool(2)
    streams = []
    for i in range(6):
        s = impl.recv.Stream(tp, impl.recv.StreamConfig(), impl.recv.RingStreamConfig(heaps=16))
        s.add_buffer_reader(stream_data(sizes=[1000 * (i + 1)] * 3))
        streams.append(s)
    for i, s in enumerate(streams):
        heaps = run_with_timeout(lambda s=s: list(s), 30)
        assert [len(memoryview(h.get_items()[0])) for h in heaps] == [1000 * (i + 1)] * 3


def test_large_heaps_default_allocator(impl):
    """Heaps of 16 MiB and more, which the default allocator maps itself
    (huge-page advised, and reused once freed), arrive whole with their own
    bytes; so do the small ones either side."""
    sizes = [1000, 16 << 20, (17 << 20) + 3, 5000, 24 << 20, 16 << 20, (17 << 20) + 3, 16 << 20]
    data = b"".join(p for cnt, size in enumerate(sizes, 1)
                    for p in heap_packets(cnt, payload(cnt, size), 8192))
    receive_and_check(impl, impl.recv.StreamConfig(), data=data, sizes=sizes)
