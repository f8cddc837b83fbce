"""spead2's own command-line tools, run against spead2gpu.

The spead2 wheel installs ``spead2_recv.py``, ``spead2_send.py`` and
``spead2_bench.py``. Each is run here in a subprocess, either unchanged (on
spead2) or with ``tests/spead2_alias`` on ``PYTHONPATH``: its
``sitecustomize`` makes ``import spead2`` (and ``spead2.recv``,
``spead2.send.asyncio``, …) resolve to spead2gpu while ``spead2.tools`` still
comes from the spead2 wheel, so the tool's code is spead2's and the library
under it spead2gpu. An aliased process reports the module it got on stderr,
and every aliased run checks that report.

- ``spead2_send.py`` -> ``spead2_recv.py`` over UDP and TCP on loopback, for
  every pairing of the two libraries: every heap arrives.
- ``spead2_bench.py agent`` with two short rounds of its master (see
  ``spead2_alias/bench_rounds.py``) over UDP: every round delivers every
  heap. The second round needs the agent's first stream to have released its
  port on ``stop()`` while the stream object is still alive (it sits in a
  reference cycle until the garbage collector runs).

spead2's master can drive a spead2gpu agent: when spead2 has ibverbs the
master sends ``ibv: false`` among its receiver options, and the agent goes on
because its stream has ``add_udp_ibv_reader`` (spead2's API; spead2gpu has no
ibverbs transport, so the method raises, as spead2's does without an RDMA
device).

Every subprocess is bounded by a timeout, and ports are picked by binding
port 0 first.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

import spead2gpu
from conftest import ALIASED_TO_REFERENCE

pytest.importorskip("spead2")  # a test dependency: installs the tools

pytestmark = pytest.mark.skipif(
    ALIASED_TO_REFERENCE, reason="spead2gpu is aliased to spead2: nothing to alias the tools to"
)

HERE = Path(__file__).resolve().parent
ALIAS_DIR = HERE / "spead2_alias"
BENCH_ROUNDS = ALIAS_DIR / "bench_rounds.py"
MARKER = "spead2-alias: spead2 -> spead2gpu "
LIBS = ["spead2", "spead2gpu"]
TIMEOUT = 60


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _is_python_script(path):
    try:
        with open(path, "rb") as f:
            first = f.readline()
    except OSError:
        return False
    return first.startswith(b"#!") and b"python" in first


def find_tool(name):
    """The installed console script *name* (a Python file, not a shim)."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / name,
        Path(sys.executable).parent / name,
    ]
    found = shutil.which(name)
    if found:
        candidates.append(Path(found))
    for c in candidates:
        if c.is_file() and _is_python_script(c):
            return str(c)
    pytest.fail(f"{name} not found (looked at {[str(c) for c in candidates]}); "
                "it comes with the spead2 wheel, a test dependency")


def tool_env(lib):
    """Environment for a tool process using *lib* ("spead2" or "spead2gpu")."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
             if p and Path(p).resolve() != ALIAS_DIR]
    if lib == "spead2gpu":
        package_parent = str(Path(spead2gpu.__file__).resolve().parent.parent)
        paths = [str(ALIAS_DIR), package_parent] + paths
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def check_alias(lib, stderr):
    """The process used spead2gpu when aliased, and spead2 itself otherwise."""
    if lib == "spead2gpu":
        expected = MARKER + str(Path(spead2gpu.__file__))
        lines = [line for line in stderr.splitlines() if line.startswith(MARKER)]
        assert lines, f"the alias did not take effect; stderr:\n{stderr}"
        assert Path(lines[0][len(MARKER):]).resolve() == Path(spead2gpu.__file__).resolve(), (
            f"expected {expected!r}, got {lines[0]!r}")
    else:
        assert MARKER not in stderr


def start(lib, argv):
    return subprocess.Popen(
        [sys.executable] + [str(a) for a in argv],
        env=tool_env(lib),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc, timeout=TIMEOUT):
    """Wait for *proc* (killing it after *timeout*); return (rc, stdout, stderr)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{proc.args} did not finish in {timeout}s\nstdout:\n{out}\nstderr:\n{err}")
    return proc.returncode, out, err


def stop_server(proc):
    """End a process that serves until killed; return (stdout, stderr)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return out, err


def _bound_ports(proto, listening):
    ports = set()
    for name in (proto, proto + "6"):
        try:
            with open(f"/proc/net/{name}") as f:
                next(f)
                for line in f:
                    fields = line.split()
                    local, state = fields[1], fields[3]
                    if listening and state != "0A":  # TCP_LISTEN
                        continue
                    ports.add(int(local.rsplit(":", 1)[1], 16))
        except FileNotFoundError:
            pass
    return ports


def wait_bound(proc, proto, port, timeout=30):
    """Wait until *proc* has bound (TCP: listens on) *port*, without touching it."""
    deadline = time.monotonic() + timeout
    while port not in _bound_ports(proto, listening=proto == "tcp"):
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"{proc.args} exited ({proc.returncode}) before binding {proto} "
                        f"port {port}\nstdout:\n{out}\nstderr:\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"{proc.args} did not bind {proto} port {port} in {timeout}s\n"
                        f"stdout:\n{out}\nstderr:\n{err}")
        time.sleep(0.02)


def free_port(*uses):
    """A port free for every (type, family, host) in *uses* (tries a few)."""
    for _ in range(50):
        first_type, first_family, first_host = uses[0]
        with socket.socket(first_family, first_type) as s:
            s.bind((first_host, 0))
            port = s.getsockname()[1]
        ok = True
        for typ, family, host in uses[1:]:
            try:
                with socket.socket(family, typ) as s:
                    if family == socket.AF_INET6:
                        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    s.bind((host, port))
            except OSError:
                ok = False
                break
        if ok:
            return port
    pytest.fail("no port free for all of " + repr(uses))


# ---------------------------------------------------------------------------
# spead2_send.py -> spead2_recv.py
# ---------------------------------------------------------------------------

N_HEAPS = 20
HEAP_SIZE = 16384
RECEIVED = re.compile(r"^Received heap (\d+) on stream (\S+)$", re.M)
SENT = re.compile(r"^Sent (\d+) bytes in ", re.M)


@pytest.mark.parametrize("proto", ["udp", "tcp"])
@pytest.mark.parametrize("receiver_lib", LIBS)
@pytest.mark.parametrize("sender_lib", LIBS)
def test_send_to_recv(sender_lib, receiver_lib, proto):
    recv_tool = find_tool("spead2_recv.py")
    send_tool = find_tool("spead2_send.py")
    typ = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    port = free_port((typ, socket.AF_INET, "127.0.0.1"))
    endpoint = f"127.0.0.1:{port}"
    tcp = ["--tcp"] if proto == "tcp" else []

    receiver = start(receiver_lib, [recv_tool, *tcp, "--max-heaps", N_HEAPS, endpoint])
    try:
        wait_bound(receiver, proto, port)
        sender = start(sender_lib, [send_tool, *tcp, "--heaps", N_HEAPS,
                                    "--heap-size", HEAP_SIZE, endpoint])
        s_rc, s_out, s_err = finish(sender)
        assert s_rc == 0, f"sender failed\nstdout:\n{s_out}\nstderr:\n{s_err}"
        assert SENT.search(s_out), s_out
        check_alias(sender_lib, s_err)
        r_rc, r_out, r_err = finish(receiver)
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.communicate()
    assert r_rc == 0, f"receiver failed\nstdout:\n{r_out}\nstderr:\n{r_err}"
    check_alias(receiver_lib, r_err)
    assert "Traceback" not in r_err, r_err
    received = RECEIVED.findall(r_out)
    # Every data heap, in order, each updating the sender's one item.
    assert [int(cnt) for cnt, _ in received] == list(range(1, N_HEAPS + 1)), r_out
    assert {name for _, name in received} == {endpoint}
    assert len(re.findall(r"^Test item 0$", r_out, re.M)) == N_HEAPS, r_out


# ---------------------------------------------------------------------------
# spead2_bench.py agent / master
# ---------------------------------------------------------------------------

ROUNDS = 2
BENCH_HEAPS = 20
BENCH_HEAP_SIZE = 65536
ROUND = re.compile(r"^round (\d+): received (-?\d+)/(\d+) heaps (GOOD|BAD)$", re.M)


@pytest.mark.parametrize(
    "master_lib, agent_lib",
    [("spead2gpu", "spead2gpu"), ("spead2gpu", "spead2"), ("spead2", "spead2gpu"), ("spead2", "spead2")],
)
def test_bench_rounds(master_lib, agent_lib):
    bench_tool = find_tool("spead2_bench.py")
    # The agent listens for control on every interface (IPv4 and IPv6) and
    # receives the data on 127.0.0.1 UDP, all on the one port.
    port = free_port(
        (socket.SOCK_STREAM, socket.AF_INET, ""),
        (socket.SOCK_STREAM, socket.AF_INET6, "::"),
        (socket.SOCK_DGRAM, socket.AF_INET, "127.0.0.1"),
    )
    agent = start(agent_lib, [bench_tool, "agent", port])
    try:
        wait_bound(agent, "tcp", port)
        master = start(master_lib, [
            BENCH_ROUNDS, "--script", bench_tool, "--rounds", ROUNDS, "--heaps", BENCH_HEAPS,
            "--heap-size", BENCH_HEAP_SIZE, f"127.0.0.1:{port}",
        ])
        m_rc, m_out, m_err = finish(master)
    finally:
        a_out, a_err = stop_server(agent)
    assert m_rc == 0, (f"master failed\nstdout:\n{m_out}\nstderr:\n{m_err}\n"
                       f"agent stderr:\n{a_err}")
    check_alias(master_lib, m_err)
    check_alias(agent_lib, a_err)
    assert "Traceback" not in a_err, a_err
    rounds = ROUND.findall(m_out)
    assert [int(i) for i, *_ in rounds] == list(range(ROUNDS)), m_out
    for _i, received, sent, verdict in rounds:
        assert (int(received), int(sent), verdict) == (BENCH_HEAPS, BENCH_HEAPS, "GOOD"), m_out
