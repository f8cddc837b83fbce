"""Lint the Python sources with ruff, configured in pyproject.toml ([tool.ruff]).

ruff is part of the ``test`` extra; a missing one fails rather than skips.
"""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_ruff():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "python", "tests", "bench"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"ruff check failed:\n{proc.stdout}\n{proc.stderr}"
