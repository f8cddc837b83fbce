"""The C++ sources follow .clang-format (clang-format from the test extra)."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

ROOT = pathlib.Path(__file__).resolve().parent.parent


def cpp_sources():
    patterns = ["src/*.h", "src/*.cpp", "src/*.cu", "tests/cpp/*.h", "tests/cpp/*.cpp"]
    proc = subprocess.run(["git", "ls-files", *patterns], cwd=ROOT, capture_output=True, text=True,
                          check=True)
    return proc.stdout.split()


def test_clang_format():
    exe = shutil.which("clang-format")
    assert exe, "clang-format is needed (pip install '.[test]' provides it)"
    files = cpp_sources()
    assert len(files) > 50
    proc = subprocess.run([exe, "--dry-run", "--Werror", *files], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
