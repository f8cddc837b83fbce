"""Build and run the C++ unit tests (tests/cpp, GoogleTest) of the core's
concurrent machinery: the chunk window, the ring pair, the ringbuffer and the
chunk stream group state machine. GoogleTest comes from Debian's
libgtest-dev, which .ci/run installs: a missing one fails, it does not skip."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

ROOT = pathlib.Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "cpp-tests"


def run(cmd, timeout):
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}")
    return proc.stdout


def test_cpp_unit_tests():
    cmake = shutil.which("cmake")
    assert cmake, "cmake is needed to build tests/cpp (pip install '.[test]' provides it)"
    configure = [cmake, "-S", str(ROOT / "tests" / "cpp"), "-B", str(BUILD)]
    if shutil.which("ninja") and not (BUILD / "CMakeCache.txt").exists():
        configure += ["-G", "Ninja"]
    run(configure, 300)
    run([cmake, "--build", str(BUILD), "-j", str(os.cpu_count() or 2)], 900)
    out = run([str(BUILD / "spead2gpu_cpp_tests"), "--gtest_brief=1"], 300)
    assert "PASSED" in out
