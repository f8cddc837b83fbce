"""Blocking calls wake for Ctrl-C: a subprocess blocks in a call, the test
sends SIGINT, and the call must raise KeyboardInterrupt promptly (spead2
does the same). Also: stop() from another thread still wakes them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import spead2gpu
import spead2gpu.recv
import spead2gpu.send
from conftest import ALIASED_TO_REFERENCE

# Where the spead2gpu under test lives (the source tree or an installed copy).
PYTHON_DIR = os.path.dirname(os.path.dirname(spead2gpu.__file__))

SETUP = {
    "udp_stream_get": """
        import socket
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        stream = spead2.recv.Stream(spead2.ThreadPool())
        stream.add_udp_reader(sock)
        block = stream.get
    """,
    "inproc_stream_get": """
        queue = spead2.InprocQueue()
        stream = spead2.recv.Stream(spead2.ThreadPool())
        stream.add_inproc_reader(queue)
        block = stream.get
    """,
    "chunk_ring_get": """
        ring = spead2.recv.ChunkRingbuffer(2)
        block = ring.get
    """,
    "chunk_ring_put": """
        import numpy as np
        ring = spead2.recv.ChunkRingbuffer(1)
        ring.put(spead2.recv.Chunk(data=np.zeros(8, np.uint8), present=np.zeros(1, np.uint8)))
        block = lambda: ring.put(spead2.recv.Chunk(data=np.zeros(8, np.uint8), present=np.zeros(1, np.uint8)))
    """,
    "group_data_ring_get": """
        cfg = spead2.recv.ChunkStreamGroupConfig(max_chunks=2)
        group = spead2.recv.ChunkStreamRingGroup(
            cfg, spead2.recv.ChunkRingbuffer(2), spead2.recv.ChunkRingbuffer(2))
        block = group.data_ringbuffer.get
    """,
}


def child_source(name):
    return textwrap.dedent("""
        import sys, time
        import spead2gpu as spead2
        import spead2gpu.recv
    """) + textwrap.dedent(SETUP[name]) + textwrap.dedent("""
        print("blocking", flush=True)
        start = time.monotonic()
        try:
            block()
        except KeyboardInterrupt:
            print("interrupted %.3f" % (time.monotonic() - start), flush=True)
            sys.exit(0)
        print("returned", flush=True)
        sys.exit(1)
    """)


def interrupt_child(src):
    """Run *src* in a subprocess; once it prints "blocking", send SIGINT. The
    child must then print "interrupted" and exit 0. Returns the seconds from
    the signal to the child's exit."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([PYTHON_DIR, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", src], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "blocking"
        time.sleep(0.3)   # let it settle into the wait
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=5)
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, (out, err)
    assert out.startswith("interrupted"), (out, err)
    return elapsed


@pytest.mark.skipif(ALIASED_TO_REFERENCE, reason="checks spead2gpu's own subprocess")
@pytest.mark.parametrize("name", sorted(SETUP))
def test_sigint_interrupts_blocking_call(name):
    elapsed = interrupt_child(child_source(name))
    # The wait wakes every 50 ms to look for signals; allow for a loaded machine.
    assert elapsed < 2.0


@pytest.mark.skipif(ALIASED_TO_REFERENCE, reason="checks spead2gpu's own subprocess")
def test_sigint_interrupts_send_flush():
    """flush() of a rate-limited send stream with a long queue."""
    src = textwrap.dedent("""
        import asyncio, socket, sys, time
        import numpy as np
        import spead2gpu as spead2
        import spead2gpu.send
        import spead2gpu.send.asyncio

        async def main():
            rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            rx.bind(("127.0.0.1", 0))
            cfg = spead2.send.StreamConfig(rate=1e5, max_heaps=64)
            stream = spead2.send.asyncio.UdpStream(
                spead2.ThreadPool(), [("127.0.0.1", rx.getsockname()[1])], cfg)
            ig = spead2.send.ItemGroup()
            ig.add_item(0x1000, "x", "x", shape=(8192,), dtype=np.uint8,
                        value=np.zeros(8192, np.uint8))
            for _ in range(32):   # 256 KiB at 100 kB/s: over 2 s of sending
                stream.async_send_heap(ig.get_heap(data="all"))
            print("blocking", flush=True)
            start = time.monotonic()
            try:
                stream.flush()
            except KeyboardInterrupt:
                print("interrupted %.3f" % (time.monotonic() - start), flush=True)
                sys.exit(0)
            print("returned", flush=True)
            sys.exit(1)

        # run_until_complete, not asyncio.run: the latter replaces the SIGINT handler
        asyncio.new_event_loop().run_until_complete(main())
    """)
    interrupt_child(src)


def test_stop_from_another_thread_wakes_get():
    """The 50 ms signal checks do not get in the way of stop()."""
    queue = spead2gpu.InprocQueue()
    stream = spead2gpu.recv.Stream(spead2gpu.ThreadPool())
    stream.add_inproc_reader(queue)
    timer = threading.Timer(0.2, stream.stop)
    timer.start()
    start = time.monotonic()
    with pytest.raises(spead2gpu.Stopped):
        stream.get()
    assert time.monotonic() - start < 2.0
    timer.join()


def test_chunk_ring_put_interrupt_keeps_chunk():
    """A put that fails (here: the ring stops while it waits) leaves the
    chunk's buffers with the caller."""
    import numpy as np
    ring = spead2gpu.recv.ChunkRingbuffer(1)
    ring.put(spead2gpu.recv.Chunk(data=np.zeros(8, np.uint8), present=np.zeros(1, np.uint8)))
    chunk = spead2gpu.recv.Chunk(data=np.arange(8, dtype=np.uint8), present=np.zeros(1, np.uint8))
    timer = threading.Timer(0.2, ring.stop)
    timer.start()
    with pytest.raises(spead2gpu.Stopped):
        ring.put(chunk)
    timer.join()
    assert bytes(chunk.data) == bytes(range(8))
