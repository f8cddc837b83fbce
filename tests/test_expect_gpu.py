"""SPEAD2GPU_EXPECT_GPU (tests/_expect_gpu.py): skipped GPU tests are failures.

Each case runs pytest in a subprocess on small test files (or on the real
tests/test_gpu.py) with and without the variable and reads the outcomes from
its JUnit XML report.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

import pytest

import spead2gpu
from spead2gpu import gpu

TESTS = pathlib.Path(__file__).resolve().parent
ENV = "SPEAD2GPU_EXPECT_GPU"

GPU_FILE = '''
import pytest

@pytest.mark.skipif(True, reason="no usable GPU: fake reason")
def test_marker():
    pass

def test_call_skip():
    pytest.skip("no GPU in this body")

def test_importorskip():
    pytest.importorskip("spead2gpu_no_such_module_xyz")

def test_passes():
    pass

def test_fails():
    assert False

@pytest.mark.skipif(True, reason="a GPU is available")
def test_cpu_fallback_only():
    pass

@pytest.mark.xfail(reason="known problem")
def test_xfail():
    assert False
'''

OTHER_FILE = '''
import pytest

def test_other_skip():
    pytest.skip("unrelated to the GPU")
'''


def _env(expect):
    env = dict(os.environ)
    paths = [str(TESTS), str(pathlib.Path(spead2gpu.__file__).resolve().parent.parent)]
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.pop(ENV, None)
    if expect is not None:
        env[ENV] = expect
    return env


def run_pytest(args, cwd, expect, plugin=True):
    """pytest in a subprocess; returns (returncode, output, {test name: outcome, message})."""
    xml = pathlib.Path(cwd) / "report.xml"
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--junitxml={xml}", "-rfE"]
    if plugin:
        argv += ["-p", "_expect_gpu"]
    proc = subprocess.run(argv + list(args), cwd=cwd, env=_env(expect), capture_output=True, text=True,
                          timeout=120)
    outcomes = {}
    if xml.exists():
        for case in ET.parse(xml).iter("testcase"):
            kind, message = "passed", ""
            for child in case:
                if child.tag in ("failure", "error", "skipped"):
                    kind = child.tag
                    message = (child.get("message") or "") + (child.text or "")
            outcomes[case.get("name")] = (kind, message)
    return proc.returncode, proc.stdout + proc.stderr, outcomes


@pytest.fixture
def files(tmp_path):
    (tmp_path / "test_gpu.py").write_text(GPU_FILE)
    (tmp_path / "test_other.py").write_text(OTHER_FILE)
    return tmp_path


def test_skips_in_gpu_test_file_fail(files):
    rc, out, got = run_pytest([], files, "1")
    assert rc == 1, out
    for name, reason in [("test_marker", "no usable GPU: fake reason"),
                         ("test_call_skip", "no GPU in this body"),
                         ("test_importorskip", "spead2gpu_no_such_module_xyz")]:
        kind, message = got[name]
        # A failure of the test, not an error in its setup.
        assert kind == "failure", (name, got[name], out)
        assert f"{ENV} is set" in message and reason in message, (name, message)
    assert got["test_passes"][0] == "passed"
    assert got["test_fails"][0] == "failure"
    assert got["test_cpu_fallback_only"][0] == "skipped"    # expected when a GPU is present
    assert got["test_xfail"][0] == "skipped"                # xfail is not a skip
    assert got["test_other_skip"][0] == "skipped"           # not a GPU test file
    assert "4 failed, 1 passed, 2 skipped, 1 xfailed" in out
    assert f"{ENV} is set: skipped tests in test_gpu.py are failures" in out


@pytest.mark.parametrize("expect", [None, "0"])
def test_without_the_variable_skips_stay_skips(files, expect):
    rc, out, got = run_pytest([], files, expect)
    assert rc == 1, out                                      # test_fails only
    for name in ("test_marker", "test_call_skip", "test_importorskip", "test_cpu_fallback_only"):
        assert got[name][0] == "skipped", (name, got[name])
    assert "1 failed, 1 passed, 5 skipped, 1 xfailed" in out
    assert ENV not in out


def test_module_skipped_at_collection_fails(tmp_path):
    (tmp_path / "test_gpu.py").write_text(
        'import pytest\ncupy = pytest.importorskip("spead2gpu_no_such_cupy")\n\ndef test_x():\n    pass\n')
    rc, out, _ = run_pytest([], tmp_path, "1")
    assert rc not in (0, 5), out
    assert "ERROR" in out and f"{ENV} is set" in out and "spead2gpu_no_such_cupy" in out
    rc, out, _ = run_pytest([], tmp_path, None)
    assert rc in (0, 5) and "1 skipped" in out, out


def test_real_gpu_tests_fail_instead_of_skipping_without_gpu(tmp_path):
    """Here (no usable GPU) tests/test_gpu.py with the variable set has no skips:
    every GPU test fails with the reason the GPU is unusable."""
    if gpu.available():
        pytest.skip("a GPU is available (python -m spead2gpu.check runs these with the variable set)")
    rc, out, got = run_pytest(["--rootdir", str(TESTS.parent), str(TESTS / "test_gpu.py")], tmp_path, "1",
                              plugin=False)        # loaded by tests/conftest.py
    assert rc == 1, out
    assert got, out
    skipped = {name for name, (kind, _) in got.items() if kind == "skipped"}
    assert not skipped, skipped
    gpu_failures = [name for name, (kind, msg) in got.items()
                    if kind == "failure" and gpu.unavailable_reason() in msg and f"{ENV} is set" in msg]
    assert any(n.startswith("test_gpu_buffer_kinds") for n in gpu_failures), gpu_failures
    assert any(n.startswith("test_gpu_device_release") for n in gpu_failures), gpu_failures
    assert len(gpu_failures) >= 10, gpu_failures


def test_plugin_helpers():
    import _expect_gpu as plugin

    assert plugin._skip_reason(("f.py", 3, "Skipped: why not")) == "why not"
    assert plugin._skip_reason("plain") == "plain"
    assert plugin._expected_skip("a GPU is available (the bench runs for real there)")
    assert not plugin._expected_skip("no usable GPU: no NVIDIA driver")
    assert textwrap.dedent(plugin.__doc__).strip()


@pytest.mark.parametrize("value, on", [(None, False), ("", False), ("0", False), (" 0 ", False), ("1", True),
                                       ("yes", True)])
def test_expect_gpu_values(monkeypatch, value, on):
    import _expect_gpu as plugin

    if value is None:
        monkeypatch.delenv(ENV, raising=False)
    else:
        monkeypatch.setenv(ENV, value)
    assert plugin.expect_gpu() is on
