"""Self-check of the GPU path on a machine with an NVIDIA GPU: ``python -m spead2gpu.check``.

It prints the driver and runtime versions, the device, its compute
capability and memory, then runs each check in a subprocess with a time limit
and prints one line per check::

    PASS <name>
    FAIL <name>: <why>
    SKIP <name>: <why>        (a tool that is not installed; neither pass nor fail)

followed by a summary line ``spead2gpu.check: N passed, M failed`` (with the
skipped checks named when there are any). The exit status is 0 only when
every check that ran passed, 1 otherwise, and 2 without a usable GPU (the
reason is printed and nothing is run).

The checks (:func:`default_checks`):

``gpu-tests``
    ``python -m pytest tests/test_gpu.py`` with ``SPEAD2GPU_EXPECT_GPU=1``,
    so that any GPU test that would be skipped (no GPU, cupy or numba
    missing, ...) fails instead. The GPU tests cover the kernels at every
    source and destination alignment and with more than 65535 heaps against
    :mod:`spead2gpu.gpu.reference`, a fresh device buffer read on a
    non-blocking stream, recycling held back by a busy consumer stream, chunk
    streams of every memory kind against host memory over in-process queues
    and UDP loopback, ``stop()`` with copies in flight and interpreter exit
    while device chunks are held.
``memcheck``
    the same pytest run under ``compute-sanitizer --tool memcheck`` (SKIP
    when ``compute-sanitizer`` is not on ``PATH``).
``bench-quick``
    ``bench/bench_gpu.py --quick``: every row must be measured.

The tests and the benchmark come from a spead2gpu source tree: the one this
package was imported from (an in-place build), ``--source-dir`` or
``$SPEAD2GPU_SOURCE_DIR``, or the current directory. Each subprocess has a
time limit (:data:`TIMEOUTS`, scaled by ``--timeout-scale``) so that the
whole run takes at most about 8 minutes.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TextIO

_logger = logging.getLogger("spead2gpu")

#: The environment variable that turns skipped GPU tests into failures (see tests/_expect_gpu.py).
EXPECT_GPU_ENV = "SPEAD2GPU_EXPECT_GPU"
#: The environment variable naming the source tree (tests/ and bench/).
SOURCE_DIR_ENV = "SPEAD2GPU_SOURCE_DIR"
#: Seconds each check may run (before ``--timeout-scale``): 7.5 minutes in all.
TIMEOUTS: Mapping[str, float] = {"gpu-tests": 150.0, "memcheck": 210.0, "bench-quick": 90.0}
#: Exit status compute-sanitizer is told to use when it finds errors.
MEMCHECK_ERROR_EXITCODE = 86
#: Options given to compute-sanitizer (child processes are checked too; those that
#: never use CUDA, such as a test's ``python -c``, are not an error).
MEMCHECK_OPTIONS = ("--tool", "memcheck", "--error-exitcode", str(MEMCHECK_ERROR_EXITCODE),
                    "--target-processes", "all", "--require-cuda-init", "no", "--print-limit", "20")
#: Lines of a failed subprocess's output shown under its FAIL line.
TAIL_LINES = 30

#: The statuses of a :class:`Result` (SKIP: could not run here; neither a pass nor a failure).
PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"


@dataclasses.dataclass(frozen=True)
class Result:
    """The outcome of one check.

    ``status`` is ``PASS``, ``FAIL`` or ``SKIP``; ``reason`` (one line) says
    why for FAIL and SKIP; ``details`` are lines printed, indented, above the
    status line (a summary, the figures, or the tail of a failed run).
    """

    status: str
    reason: str = ""
    details: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Check:
    """A named check: ``run()`` returns a :class:`Result` (an exception counts as FAIL)."""

    name: str
    run: Callable[[], Result]


@dataclasses.dataclass(frozen=True)
class Completed:
    """A finished (or timed-out) subprocess: ``returncode`` is None after a timeout."""

    returncode: int | None
    output: str
    seconds: float


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def run_checks(checks: Sequence[Check], out: TextIO | None = None) -> int:
    """Run *checks* in order, print one status line each and the summary line.

    Returns the exit status: 0 when none failed and at least one passed, else 1.
    """
    out = out if out is not None else sys.stdout
    passed = failed = 0
    skipped: list[str] = []
    for check in checks:
        try:
            result = check.run()
            if result.status not in (PASS, FAIL, SKIP):
                raise ValueError(f"check returned status {result.status!r}")
        except Exception as exc:  # noqa: BLE001 (a broken check is a failed check)
            _logger.debug("check %s raised", check.name, exc_info=True)
            result = Result(FAIL, f"{type(exc).__name__}: {exc}")
        for line in result.details:
            print(f"    {line}", file=out)
        if result.status == PASS:
            passed += 1
            print(f"PASS {check.name}", file=out)
        else:
            if result.status == FAIL:
                failed += 1
            else:
                skipped.append(check.name)
            print(f"{result.status} {check.name}: {_one_line(result.reason) or 'no reason given'}", file=out)
        out.flush()
    summary = f"spead2gpu.check: {passed} passed, {failed} failed"
    if skipped:
        summary += f", {len(skipped)} skipped ({', '.join(skipped)}: not counted as passed)"
    if not checks:
        summary += " (no checks to run)"
    print(summary, file=out)
    out.flush()
    return 0 if failed == 0 and passed > 0 else 1


# ---------------------------------------------------------------------------
# Subprocesses
# ---------------------------------------------------------------------------

def _kill_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(5)
            return
        except subprocess.TimeoutExpired:
            continue


def run_subprocess(argv: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None,
                   cwd: str | os.PathLike | None = None, log: Path | None = None) -> Completed:
    """Run *argv* with stdout and stderr together, for at most *timeout* seconds.

    The command runs in its own session; on timeout the whole process group
    is killed (compute-sanitizer and pytest start children). The combined
    output is also written to *log* when given.
    """
    start = time.monotonic()
    proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=None if env is None else dict(env), cwd=cwd,
                            text=True, errors="replace", start_new_session=True)
    returncode: int | None
    try:
        output, _ = proc.communicate(timeout=timeout)
        returncode = proc.returncode
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        try:
            output, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # a child of its own session keeps the pipe open
            proc.kill()
            output = ""
        returncode = None
    done = Completed(returncode, output or "", time.monotonic() - start)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"$ {' '.join(argv)}\n{done.output}\n[exit {returncode}, {done.seconds:.1f} s]\n")
    return done


def _tail(output: str, n: int = TAIL_LINES) -> tuple[str, ...]:
    lines = output.rstrip().splitlines()
    return tuple(lines[-n:])


def check_env() -> dict[str, str]:
    """The environment of the check subprocesses: this spead2gpu first on
    ``PYTHONPATH`` and ``SPEAD2GPU_EXPECT_GPU=1``."""
    import spead2gpu  # noqa: PLC0415

    env = dict(os.environ)
    package_parent = str(Path(spead2gpu.__file__).resolve().parent.parent)
    paths = [package_parent] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env[EXPECT_GPU_ENV] = "1"
    env.pop("SPEAD2GPU_DISABLE_GPU", None)
    return env


# ---------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------

_PYTEST_SUMMARY = re.compile(
    r"^=*\s*((?:\d+ (?:passed|failed|errors?|skipped|xfailed|xpassed|deselected|warnings?)(?:, )?)+)"
    r"(?: in [\d.]+s.*)?\s*=*$", re.MULTILINE)
_PYTEST_FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE)
_MEMCHECK_SUMMARY = re.compile(r"ERROR SUMMARY: (\d+) errors?")


def pytest_summary(output: str) -> str:
    """pytest's final counts line (``3 failed, 50 passed``), or ``""``."""
    found = _PYTEST_SUMMARY.findall(output)
    return found[-1].strip().rstrip(",") if found else ""


def failed_tests(output: str) -> list[str]:
    """Node ids of the tests pytest's short summary lists as FAILED or ERROR."""
    seen: list[str] = []
    for node in _PYTEST_FAILED.findall(output):
        if node not in seen:
            seen.append(node)
    return seen


def pytest_argv(test_path: Path) -> list[str]:
    """The pytest command line of the GPU tests."""
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE", str(test_path)]


def _pytest_result(done: Completed, what: str, timeout: float) -> Result | None:
    """FAIL for a timed-out or failed pytest run, None when it passed."""
    summary = pytest_summary(done.output)
    if done.returncode is None:
        return Result(FAIL, f"{what} timed out after {timeout:.0f} s" + (f" ({summary})" if summary else ""),
                      _tail(done.output))
    if done.returncode == 0:
        return None
    if done.returncode == 5:
        return Result(FAIL, f"{what}: no tests ran", _tail(done.output))
    names = [n.rsplit("::", 1)[-1] for n in failed_tests(done.output)]
    listed = ", ".join(names[:8]) + (f" (+{len(names) - 8} more)" if len(names) > 8 else "")
    why = f"{what} exited with status {done.returncode}"
    if summary:
        why += f": {summary}"
    if listed:
        why += f"; failed: {listed}"
    return Result(FAIL, why, _tail(done.output))


def gpu_tests_check(test_path: Path | None, *, timeout: float, env: Mapping[str, str] | None = None,
                    cwd: Path | None = None, log: Path | None = None) -> Result:
    """Run the GPU tests (skips are failures through ``SPEAD2GPU_EXPECT_GPU``)."""
    if test_path is None or not test_path.is_file():
        return Result(FAIL, _not_found("tests/test_gpu.py", test_path))
    done = run_subprocess(pytest_argv(test_path), timeout=timeout,
                          env=env if env is not None else check_env(), cwd=cwd or test_path.parent.parent,
                          log=log)
    failed = _pytest_result(done, "pytest", timeout)
    if failed:
        return failed
    return Result(PASS, details=(f"{pytest_summary(done.output) or 'passed'} ({done.seconds:.1f} s)",))


def memcheck_check(test_path: Path | None, *, timeout: float, tool: str | None = None,
                   env: Mapping[str, str] | None = None, cwd: Path | None = None,
                   log: Path | None = None) -> Result:
    """The GPU tests under ``compute-sanitizer --tool memcheck`` (SKIP without the tool)."""
    tool = tool if tool is not None else shutil.which("compute-sanitizer")
    if not tool:
        return Result(SKIP, "compute-sanitizer is not on PATH (it comes with the CUDA toolkit)")
    if test_path is None or not test_path.is_file():
        return Result(FAIL, _not_found("tests/test_gpu.py", test_path))
    argv = [tool, *MEMCHECK_OPTIONS, *pytest_argv(test_path)]
    done = run_subprocess(argv, timeout=timeout, env=env if env is not None else check_env(),
                          cwd=cwd or test_path.parent.parent, log=log)
    counts = [int(n) for n in _MEMCHECK_SUMMARY.findall(done.output)]
    errors = sum(counts)
    if errors or done.returncode == MEMCHECK_ERROR_EXITCODE:
        reports = [line for line in done.output.splitlines() if line.startswith("=========")
                   and re.search(r"Invalid|[Ee]rror", line) and not _MEMCHECK_SUMMARY.search(line)]
        return Result(FAIL, f"memcheck reported {errors or 'some'} error(s)",
                      tuple(reports[:TAIL_LINES]) or _tail(done.output))
    failed = _pytest_result(done, "pytest under memcheck", timeout)
    if failed:
        return failed
    if not counts:
        return Result(FAIL, "compute-sanitizer printed no ERROR SUMMARY (did it run the tests?)",
                      _tail(done.output))
    summary = pytest_summary(done.output) or "passed"
    return Result(PASS, details=(f"{summary}; memcheck: 0 errors in {len(counts)} process(es) "
                                 f"({done.seconds:.1f} s)",))


#: Rows bench_gpu.py prints when every measurement ran.
BENCH_ROWS = ("(1) cudaMemcpyAsync", "(2) copy pipeline", "(3) spead2gpu ingest",
              "(4) device-to-device copy", "(4) zero_missing", "(4) unpack_int8", "(4) unpack_int4",
              "(4) unpack_int10", "(4) unpack_cint8", "(5) spead2gpu UDP loopback")


def bench_check(bench_path: Path | None, *, timeout: float, env: Mapping[str, str] | None = None,
                cwd: Path | None = None, log: Path | None = None) -> Result:
    """``bench_gpu.py --quick``: it must exit 0 having printed every row."""
    if bench_path is None or not bench_path.is_file():
        return Result(FAIL, _not_found("bench/bench_gpu.py", bench_path))
    done = run_subprocess([sys.executable, str(bench_path), "--quick"], timeout=timeout,
                          env=env if env is not None else check_env(), cwd=cwd or bench_path.parent.parent,
                          log=log)
    if done.returncode is None:
        return Result(FAIL, f"bench_gpu.py --quick timed out after {timeout:.0f} s", _tail(done.output))
    if done.returncode != 0:
        last = _tail(done.output, 1)
        return Result(FAIL, f"bench_gpu.py --quick exited with status {done.returncode}"
                      + (f": {last[0]}" if last else ""), _tail(done.output))
    skipped = [line.strip() for line in done.output.splitlines() if "skipped" in line]
    missing = [r for r in BENCH_ROWS if r not in done.output]
    if missing:
        why = f"bench_gpu.py --quick did not measure {', '.join(missing)}"
        if skipped:
            why += f" ({'; '.join(skipped)})"
        return Result(FAIL, why, _tail(done.output))
    rows = tuple(line for line in done.output.splitlines() if line.startswith(("device:", "(")))
    return Result(PASS, details=rows + (f"({done.seconds:.1f} s)",))


def _not_found(what: str, path: Path | None) -> str:
    where = f" ({path} does not exist)" if path is not None else ""
    return (f"{what} not found{where}: run from a spead2gpu source tree, pass --source-dir "
            f"or set {SOURCE_DIR_ENV}")


def find_source_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """The spead2gpu source tree holding ``tests/test_gpu.py``, or None.

    Looked for in order: *explicit*, ``$SPEAD2GPU_SOURCE_DIR``, the tree this
    package was imported from (``python/spead2gpu`` in a checkout), the current
    directory.
    """
    if explicit is not None:
        # Used even when incomplete: the checks then say what is missing.
        return Path(explicit).resolve()
    candidates: list[Path] = []
    if os.environ.get(SOURCE_DIR_ENV):
        candidates.append(Path(os.environ[SOURCE_DIR_ENV]))
    candidates += [Path(__file__).resolve().parents[2], Path.cwd()]
    for c in candidates:
        if (c / "tests" / "test_gpu.py").is_file():
            return c.resolve()
    return None


def default_checks(source_dir: Path | None, *, timeout_scale: float = 1.0, log_dir: Path | None = None,
                   sanitizer: str | None = None) -> list[Check]:
    """The self-check's checks, in order: ``gpu-tests``, ``memcheck``, ``bench-quick``."""
    tests = source_dir / "tests" / "test_gpu.py" if source_dir else None
    bench = source_dir / "bench" / "bench_gpu.py" if source_dir else None
    if sanitizer is None:
        sanitizer = shutil.which("compute-sanitizer") or ""

    def log(name: str) -> Path | None:
        return log_dir / f"{name}.log" if log_dir else None

    def t(name: str) -> float:
        return TIMEOUTS[name] * timeout_scale

    return [
        Check("gpu-tests", lambda: gpu_tests_check(tests, timeout=t("gpu-tests"), log=log("gpu-tests"))),
        Check("memcheck", lambda: memcheck_check(tests, timeout=t("memcheck"), tool=sanitizer,
                                                 log=log("memcheck"))),
        Check("bench-quick", lambda: bench_check(bench, timeout=t("bench-quick"), log=log("bench-quick"))),
    ]


# ---------------------------------------------------------------------------
# Device description and main
# ---------------------------------------------------------------------------

def cuda_version(v: int) -> str:
    """A CUDA version number (``12040``) as text (``12.4``); ``none`` for 0."""
    return f"{v // 1000}.{v % 1000 // 10}" if v > 0 else "none"


def compute_capability(device: int = 0) -> str:
    """The device's compute capability (``9.0``) from cupy, or ``unknown (...)`` without it."""
    try:
        import cupy  # noqa: PLC0415 (optional)

        cc = str(cupy.cuda.Device(device).compute_capability)
    except Exception as exc:  # noqa: BLE001 (ImportError, or a cupy built for another CUDA)
        return f"unknown ({type(exc).__name__}: {_one_line(exc)})"
    return f"{cc[:-1]}.{cc[-1]}" if len(cc) >= 2 and cc.isdigit() else cc


def describe(out: TextIO) -> bool:
    """Print the versions and the device; returns whether a GPU is usable."""
    import numpy  # noqa: PLC0415

    import spead2gpu  # noqa: PLC0415
    from spead2gpu import gpu  # noqa: PLC0415

    g = gpu._gpu
    print(f"spead2gpu      : {getattr(spead2gpu, '__version__', '?')} ({Path(spead2gpu.__file__).parent})",
          file=out)
    print(f"python, numpy  : {sys.version.split()[0]}, {numpy.__version__}", file=out)
    print(f"CUDA compiled  : {'yes' if gpu.compiled_with_cuda() else 'no'}", file=out)
    print(f"driver         : {cuda_version(g.driver_version())}", file=out)
    print(f"runtime        : {cuda_version(g.runtime_version())}", file=out)
    if not gpu.available():
        return False
    print(f"device         : {g.device_name(0)} (device 0 of {gpu.device_count()})", file=out)
    print(f"compute cap.   : {compute_capability(0)}", file=out)
    print(f"memory         : {g.device_total_memory(0) / (1 << 30):.1f} GiB", file=out)
    return True


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m spead2gpu.check",
        description="Prove the GPU path on this machine: GPU tests (skips fail), the same under "
                    "compute-sanitizer memcheck, and bench_gpu.py --quick. Exit status 0 only "
                    "when all pass; 2 without a usable GPU.")
    p.add_argument("--source-dir", help="spead2gpu source tree with tests/ and bench/ "
                                        f"[${SOURCE_DIR_ENV}, this package's tree, or .]")
    p.add_argument("--timeout-scale", type=float, default=1.0,
                   help="multiply every check's time limit by this [%(default)s]")
    p.add_argument("--log-dir", help="write each check's full output to LOG_DIR/<check>.log")
    args = p.parse_args(argv)
    if args.timeout_scale <= 0:
        p.error("--timeout-scale must be positive")
    return args


def main(argv: Sequence[str] | None = None, *, checks: Sequence[Check] | None = None,
         out: TextIO | None = None) -> int:
    """Run the self-check; returns the exit status (0 all passed, 1 a check failed, 2 no GPU).

    *checks* replaces :func:`default_checks` (used by the tests); the GPU
    requirement applies either way.
    """
    args = _parse_args(argv)
    out = out if out is not None else sys.stdout
    if not describe(out):
        from spead2gpu import gpu  # noqa: PLC0415

        print(f"spead2gpu.check: no usable GPU: {gpu.unavailable_reason()}", file=out)
        print("spead2gpu.check: nothing was checked (run it on a machine with an NVIDIA GPU)", file=out)
        return 2
    if checks is None:
        source = find_source_dir(args.source_dir)
        print(f"source tree    : {source if source else 'not found'}", file=out)
        sanitizer = shutil.which("compute-sanitizer")
        print(f"sanitizer      : {sanitizer or 'not found'}", file=out)
        checks = default_checks(source, timeout_scale=args.timeout_scale, sanitizer=sanitizer or "",
                                log_dir=Path(args.log_dir) if args.log_dir else None)
    out.flush()
    return run_checks(checks, out)


if __name__ == "__main__":
    sys.exit(main())
