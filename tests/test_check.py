"""python -m spead2gpu.check: its behaviour without a GPU, its summary and
exit status, and each check's verdict on real (small) subprocesses: pytest on
temporary test files, a stand-in compute-sanitizer, a stand-in benchmark."""

from __future__ import annotations

import io
import os
import pathlib
import subprocess
import sys
import textwrap
import time

import pytest

import spead2gpu
from spead2gpu import check, gpu

TESTS = pathlib.Path(__file__).resolve().parent
ROOT = TESTS.parent
PACKAGE_PARENT = str(pathlib.Path(spead2gpu.__file__).resolve().parent.parent)


def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([PACKAGE_PARENT, str(TESTS)]
                                        + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.pop("SPEAD2GPU_EXPECT_GPU", None)
    env.update(extra)
    return env


def fake(status, reason="", details=()):
    return lambda: check.Result(status, reason, tuple(details))


# ---------------------------------------------------------------------------
# Without a GPU
# ---------------------------------------------------------------------------

def test_check_without_gpu_says_why_and_exits_2():
    """On a machine without a usable GPU (forced here) nothing runs: the reason, exit status 2."""
    proc = subprocess.run([sys.executable, "-m", "spead2gpu.check"], capture_output=True, text=True,
                          env=_env(SPEAD2GPU_DISABLE_GPU="1"), timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert ("spead2gpu.check: no usable GPU: GPU use disabled by the environment variable "
            "SPEAD2GPU_DISABLE_GPU") in lines
    assert any(line.startswith("driver         : ") for line in lines)
    assert not [line for line in lines if line.startswith(("PASS ", "FAIL ", "SKIP "))]
    assert "passed" not in proc.stdout


def test_check_here_without_gpu_reports_the_probe_reason():
    if gpu.available():
        pytest.skip("a GPU is available (the check would run for real)")
    proc = subprocess.run([sys.executable, "-m", "spead2gpu.check"], capture_output=True, text=True,
                          env=_env(), timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"spead2gpu.check: no usable GPU: {gpu.unavailable_reason()}" in proc.stdout.splitlines()
    # in-process too, with injected checks that must not run
    out = io.StringIO()
    ran = []
    assert check.main([], checks=[check.Check("x", lambda: ran.append(1) or check.Result(check.PASS))],
                      out=out) == 2
    assert not ran and "no usable GPU" in out.getvalue()


# ---------------------------------------------------------------------------
# Summary and exit status (fake checks)
# ---------------------------------------------------------------------------

def test_all_pass():
    out = io.StringIO()
    rc = check.run_checks([check.Check("a", fake(check.PASS, details=["3 passed"])),
                           check.Check("b", fake(check.PASS))], out)
    assert rc == 0
    assert out.getvalue().splitlines() == ["    3 passed", "PASS a", "PASS b",
                                           "spead2gpu.check: 2 passed, 0 failed"]


def test_one_failure_fails_the_run():
    out = io.StringIO()
    rc = check.run_checks([check.Check("a", fake(check.PASS)),
                           check.Check("b", fake(check.FAIL, "it broke\nbadly", ["tail 1", "tail 2"])),
                           check.Check("c", fake(check.PASS))], out)
    assert rc == 1
    assert out.getvalue().splitlines() == ["PASS a", "    tail 1", "    tail 2", "FAIL b: it broke; badly",
                                           "PASS c", "spead2gpu.check: 2 passed, 1 failed"]


def test_skip_is_neither_pass_nor_fail_but_said():
    out = io.StringIO()
    rc = check.run_checks([check.Check("a", fake(check.PASS)),
                           check.Check("tool", fake(check.SKIP, "not installed"))], out)
    assert rc == 0
    lines = out.getvalue().splitlines()
    assert lines[1] == "SKIP tool: not installed"
    assert lines[2] == "spead2gpu.check: 1 passed, 0 failed, 1 skipped (tool: not counted as passed)"
    # Only skips: nothing was proven.
    assert check.run_checks([check.Check("tool", fake(check.SKIP, "x"))], io.StringIO()) == 1
    assert check.run_checks([], io.StringIO()) == 1


def test_a_check_that_raises_or_misbehaves_fails():
    def boom():
        raise RuntimeError("no such device")

    out = io.StringIO()
    rc = check.run_checks([check.Check("boom", boom), check.Check("odd", fake("MAYBE")),
                           check.Check("mute", fake(check.FAIL))], out)
    assert rc == 1
    assert out.getvalue().splitlines() == [
        "FAIL boom: RuntimeError: no such device",
        "FAIL odd: ValueError: check returned status 'MAYBE'",
        "FAIL mute: no reason given",
        "spead2gpu.check: 0 passed, 3 failed"]


def test_main_runs_injected_checks_when_a_gpu_is_usable(monkeypatch):
    monkeypatch.setattr(check, "describe", lambda out: True)
    out = io.StringIO()
    assert check.main([], checks=[check.Check("a", fake(check.PASS))], out=out) == 0
    assert out.getvalue().splitlines()[-1] == "spead2gpu.check: 1 passed, 0 failed"
    out = io.StringIO()
    assert check.main([], checks=[check.Check("a", fake(check.FAIL, "x"))], out=out) == 1
    with pytest.raises(SystemExit):
        check.main(["--timeout-scale", "0"])


def test_default_checks_without_a_source_tree(monkeypatch):
    """Without tests/ and bench/ the checks fail and say where to look; no
    compute-sanitizer is a SKIP."""
    checks = check.default_checks(None, sanitizer="")
    assert [c.name for c in checks] == ["gpu-tests", "memcheck", "bench-quick"]
    out = io.StringIO()
    assert check.run_checks(checks, out) == 1
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("FAIL gpu-tests: tests/test_gpu.py not found: ")
    assert "--source-dir" in lines[0] and check.SOURCE_DIR_ENV in lines[0]
    assert lines[1].startswith("SKIP memcheck: compute-sanitizer is not on PATH")
    assert lines[2].startswith("FAIL bench-quick: bench/bench_gpu.py not found")
    assert lines[3] == "spead2gpu.check: 0 passed, 2 failed, 1 skipped (memcheck: not counted as passed)"


def test_time_limits_fit_in_eight_minutes():
    assert set(check.TIMEOUTS) == {"gpu-tests", "memcheck", "bench-quick"}
    assert sum(check.TIMEOUTS.values()) <= 7.75 * 60


def test_find_source_dir(tmp_path, monkeypatch):
    assert check.find_source_dir() == ROOT       # this checkout (python/spead2gpu/check.py)
    assert check.find_source_dir(tmp_path) == tmp_path.resolve()
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_gpu.py").write_text("")
    monkeypatch.setenv(check.SOURCE_DIR_ENV, str(tmp_path))
    assert check.find_source_dir() == tmp_path.resolve()


def test_versions_and_compute_capability(monkeypatch):
    assert check.cuda_version(12040) == "12.4"
    assert check.cuda_version(13000) == "13.0"
    assert check.cuda_version(0) == "none"
    monkeypatch.setitem(sys.modules, "cupy", None)     # import cupy raises ImportError
    assert check.compute_capability().startswith("unknown (")


# ---------------------------------------------------------------------------
# Subprocesses and the checks' verdicts
# ---------------------------------------------------------------------------

def _state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def test_run_subprocess_timeout_kills_the_process_group(tmp_path):
    code = ("import subprocess, sys, time; "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
            "print(p.pid, flush=True); time.sleep(120)")
    log = tmp_path / "logs" / "x.log"
    start = time.monotonic()
    done = check.run_subprocess([sys.executable, "-c", code], timeout=3, log=log)
    assert done.returncode is None and time.monotonic() - start < 30
    grandchild = int(done.output.split()[0])
    deadline = time.monotonic() + 10
    while _state(grandchild) not in (None, "Z") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _state(grandchild) in (None, "Z")     # killed with its parent (a zombie at most)
    assert "[exit None" in log.read_text()
    ok = check.run_subprocess([sys.executable, "-c", "import sys; print('hi'); sys.exit(3)"], timeout=30)
    assert (ok.returncode, ok.output) == (3, "hi\n")


PASSING = "def test_good():\n    pass\n\ndef test_also_good():\n    pass\n"
FAILING = "def test_good():\n    pass\n\ndef test_bad():\n    assert 1 == 2\n"
SKIPPING = ("import pytest\n\ndef test_good():\n    pass\n\n"
            "def test_needs_it():\n    pytest.importorskip('cupy_not_here')\n")


def _tree(tmp_path, text, conftest=True):
    (tmp_path / "tests").mkdir(exist_ok=True)
    path = tmp_path / "tests" / "test_gpu.py"
    path.write_text(text)
    if conftest:
        (tmp_path / "tests" / "conftest.py").write_text(
            "from _expect_gpu import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401\n")
    return path


def test_gpu_tests_check_verdicts(tmp_path):
    env = _env(SPEAD2GPU_EXPECT_GPU="1")
    r = check.gpu_tests_check(_tree(tmp_path, PASSING), timeout=60, env=env)
    assert r.status == check.PASS and r.details[0].startswith("2 passed (")
    r = check.gpu_tests_check(_tree(tmp_path, FAILING), timeout=60, env=env)
    assert r.status == check.FAIL
    assert r.reason == "pytest exited with status 1: 1 failed, 1 passed; failed: test_bad"
    assert any("assert 1 == 2" in line for line in r.details)
    # A skip is a failure: the check runs pytest with SPEAD2GPU_EXPECT_GPU=1.
    r = check.gpu_tests_check(_tree(tmp_path, SKIPPING), timeout=60, env=check.check_env() | {
        "PYTHONPATH": env["PYTHONPATH"]})
    assert r.status == check.FAIL and "test_needs_it" in r.reason, r
    r = check.gpu_tests_check(_tree(tmp_path, "import time\n\ndef test_slow():\n    time.sleep(60)\n"),
                              timeout=1, env=env)
    assert r.status == check.FAIL and r.reason.startswith("pytest timed out after 1 s")
    r = check.gpu_tests_check(_tree(tmp_path, "x = 1\n"), timeout=60, env=env)
    assert r.status == check.FAIL and r.reason == "pytest: no tests ran"
    r = check.gpu_tests_check(tmp_path / "nowhere" / "test_gpu.py", timeout=60)
    assert r.status == check.FAIL and "does not exist" in r.reason


def test_check_env():
    env = check.check_env()
    assert env["SPEAD2GPU_EXPECT_GPU"] == "1"
    assert env["PYTHONPATH"].split(os.pathsep)[0] == PACKAGE_PARENT
    assert "SPEAD2GPU_DISABLE_GPU" not in env


FAKE_SANITIZER = textwrap.dedent('''\
    import os, subprocess, sys
    args = sys.argv[1:]
    with open(os.environ["FAKE_ARGV_LOG"], "w") as f:
        f.write("\\n".join(args))
    program = args.index(sys.executable)          # the options end where the program starts
    rc = subprocess.call(args[program:])
    errors = int(os.environ.get("FAKE_ERRORS", "0"))
    if os.environ.get("FAKE_SUMMARY", "1") == "1":
        if errors:
            print("========= Invalid __global__ write of size 4 bytes")
        print(f"========= ERROR SUMMARY: {errors} errors")
    sys.exit(86 if errors else rc)
''')


def test_memcheck_check_verdicts(tmp_path, monkeypatch):
    monkeypatch.setattr(check.shutil, "which", lambda name: None)
    r = check.memcheck_check(tmp_path / "test_gpu.py", timeout=60)
    assert r.status == check.SKIP and "compute-sanitizer is not on PATH" in r.reason
    tool = tmp_path / "compute-sanitizer"
    tool.write_text(f"#!{sys.executable}\n" + FAKE_SANITIZER)
    tool.chmod(0o755)
    argv_log = tmp_path / "argv.txt"
    tests = _tree(tmp_path, PASSING)
    env = _env(SPEAD2GPU_EXPECT_GPU="1", FAKE_ARGV_LOG=str(argv_log))

    r = check.memcheck_check(tests, timeout=60, tool=str(tool), env=env)
    assert r.status == check.PASS, r
    assert r.details[0].startswith("2 passed; memcheck: 0 errors in 1 process(es)")
    argv = argv_log.read_text().splitlines()
    assert argv[:2] == ["--tool", "memcheck"] and "--error-exitcode" in argv
    assert argv[argv.index("--target-processes") + 1] == "all"
    assert argv[argv.index(sys.executable):] == check.pytest_argv(tests)

    r = check.memcheck_check(tests, timeout=60, tool=str(tool), env=env | {"FAKE_ERRORS": "2"})
    assert r.status == check.FAIL and r.reason == "memcheck reported 2 error(s)"
    assert r.details == ("========= Invalid __global__ write of size 4 bytes",)
    r = check.memcheck_check(tests, timeout=60, tool=str(tool), env=env | {"FAKE_SUMMARY": "0"})
    assert r.status == check.FAIL and "no ERROR SUMMARY" in r.reason
    r = check.memcheck_check(_tree(tmp_path, FAILING), timeout=60, tool=str(tool), env=env)
    assert r.status == check.FAIL and r.reason.startswith("pytest under memcheck exited with status 1")


BENCH_OK = textwrap.dedent('''\
    print("device: Fake H100, driver 12040, runtime 12080; chunk 4.0 MiB")
    print("(1) cudaMemcpyAsync pinned->device   50.00 GB/s  [ceiling]")
    print("(2) copy pipeline (device kind)      48.00 GB/s")
    print("(3) spead2gpu ingest, 4 streams      20.00 GB/s")
    print("(3) spead2 + cupy pattern: skipped (No module named 'spead2')")
    for label in ("device-to-device copy", "zero_missing", "unpack_int8", "unpack_int4", "unpack_int10",
                  "unpack_cint8"):
        print(f"(4) {label}   1000.00 GB/s")
    print("(5) spead2gpu UDP loopback at 8 Gb/s: 1024/1024 heaps; 0.50 CPU s/GB")
''')


def test_bench_check_verdicts(tmp_path):
    bench = tmp_path / "bench" / "bench_gpu.py"
    bench.parent.mkdir()
    bench.write_text(BENCH_OK)
    r = check.bench_check(bench, timeout=60, env=_env())
    assert r.status == check.PASS, r
    assert r.details[0].startswith("device: Fake H100") and len(r.details) == 13
    no_kernels = "print('(4) kernels: skipped (No module named cupy)')\n"
    bench.write_text(BENCH_OK.split("for label")[0] + no_kernels)
    r = check.bench_check(bench, timeout=60, env=_env())
    assert r.status == check.FAIL
    assert "did not measure (4) device-to-device copy" in r.reason and "(4) kernels: skipped" in r.reason
    bench.write_text("import sys\nprint('bench_gpu: no usable GPU: none', file=sys.stderr)\nsys.exit(2)\n")
    r = check.bench_check(bench, timeout=60, env=_env())
    assert r.status == check.FAIL and r.reason == ("bench_gpu.py --quick exited with status 2: "
                                                   "bench_gpu: no usable GPU: none")
    r = check.bench_check(tmp_path / "missing.py", timeout=60)
    assert r.status == check.FAIL and "bench/bench_gpu.py not found" in r.reason


def test_bench_check_on_the_real_bench_without_gpu():
    if gpu.available():
        pytest.skip("a GPU is available (the check runs the bench for real)")
    r = check.bench_check(ROOT / "bench" / "bench_gpu.py", timeout=120, env=_env())
    assert r.status == check.FAIL
    assert r.reason.startswith("bench_gpu.py --quick exited with status 2: ")
    assert any("no usable GPU" in line for line in r.details)


def test_cuda_extras_bring_cupy():
    """pip install '.[cuda12]' / '.[cuda13]' installs the cupy the GPU tests need
    (without it they would fail under SPEAD2GPU_EXPECT_GPU, not pass vacuously)."""
    tomllib = pytest.importorskip("tomllib")
    with open(ROOT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    extras = project["optional-dependencies"]
    assert extras["cuda12"] == ["cupy-cuda12x"]
    assert extras["cuda13"] == ["cupy-cuda13x"]
    assert project["scripts"]["spead2gpu-check"] == "spead2gpu.check:main"


def test_docs_describe_the_check_and_each_byte():
    """README.md documents the self-check as it is (its check names, the
    variable) and says per memory kind what happens to each byte."""
    readme = (ROOT / "README.md").read_text()
    assert "python -m spead2gpu.check" in readme and "SPEAD2GPU_EXPECT_GPU=1" in readme
    for c in check.default_checks(None, sanitizer=""):
        assert f"`{c.name}`" in readme, c.name
    assert "not** mean GPUDirect RDMA" in readme
    rows = {line.split("|")[1].strip(): line for line in readme.splitlines() if line.startswith("| `")}
    for kind in gpu.KINDS:
        assert "one: packet buffer" in rows[f"`{kind}`"], kind
    assert "cudaMemcpyAsync" in rows["`device`"]
    arch = (ROOT / "docs" / "architecture.md").read_text()
    assert "not GPUDirect RDMA" in arch and "python -m spead2gpu.check" in arch
