"""The libFuzzer target builds with clang and fuzzes for a few seconds.

A short run, not a fuzzing campaign (fuzz/README.md has those figures): it
proves that fuzz/run.sh, the harness and the sanitizer build still work, and
that the committed seed corpus runs clean under ASan and UBSan, so that the
next campaign starts from a working target. .ci/run installs clang and
libFuzzer (Debian: clang, libfuzzer-14-dev).
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_recv_fuzz_target_builds_and_runs_clean():
    assert shutil.which("clang++"), "clang++ is needed (.ci/run installs clang and libfuzzer-14-dev)"
    env = dict(os.environ, JOBS=str(os.cpu_count() or 2))
    proc = subprocess.run(["bash", str(ROOT / "fuzz" / "run.sh"), "recv", "10"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1200)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    m = re.search(r"== recv: (\d+) executions in (\d+) s", out)
    assert m, out[-4000:]
    assert int(m.group(1)) > 1000, m.group(0)     # it really fuzzed, beyond the seeds
    assert "ERROR: AddressSanitizer" not in out and "runtime error" not in out
