"""pytest plugin: with ``SPEAD2GPU_EXPECT_GPU`` set, skipped GPU tests fail.

On a machine that is meant to have a usable GPU (``python -m spead2gpu.check``
sets the variable), a GPU test that skips proves nothing: the GPU is not
usable after all, cupy or numba is missing, ... So every test of a GPU test
file (:data:`GPU_TEST_FILES`) that would be reported as skipped — a
``skipif`` marker, ``pytest.skip``, ``pytest.importorskip``, or the whole
module skipped at collection — is reported as FAILED instead, with the skip
reason. The exceptions are skips that are expected *because* a GPU is
present (the reason contains one of :data:`EXPECTED_WITH_GPU`: CPU-fallback
tests) and expected failures (``xfail``).

tests/conftest.py imports the hooks; ``-p _expect_gpu`` loads the plugin
elsewhere (the tests of this plugin do).
"""

from __future__ import annotations

import os

import pytest

ENV = "SPEAD2GPU_EXPECT_GPU"
#: Test files whose skips fail when ENV is set.
GPU_TEST_FILES = frozenset({"test_gpu.py"})
#: Fragments of skip reasons that mean "skipped because a GPU is available":
#: these skips are expected on a GPU machine and stay skips.
EXPECTED_WITH_GPU = ("a GPU is available", "auto is the real device kind here")


def expect_gpu() -> bool:
    """Whether ENV is set (to anything but empty or 0)."""
    return os.environ.get(ENV, "").strip() not in ("", "0")


def _is_gpu_test_file(path) -> bool:
    return path is not None and os.path.basename(str(path)) in GPU_TEST_FILES


def _skip_reason(longrepr) -> str:
    """The reason of a skip report (its longrepr is (path, lineno, "Skipped: reason"))."""
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else longrepr
    text = str(text)
    return text[len("Skipped: "):] if text.startswith("Skipped: ") else text


def _message(reason: str) -> str:
    return f"{ENV} is set, so this GPU test must run, but it was skipped: {reason}"


def _expected_skip(reason: str) -> bool:
    return any(fragment in reason for fragment in EXPECTED_WITH_GPU)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """A skipped test of a GPU test file is reported as failed (see the module docstring)."""
    outcome = yield
    report = outcome.get_result()
    if not (report.skipped and expect_gpu() and _is_gpu_test_file(getattr(item, "path", None))):
        return
    if hasattr(report, "wasxfail"):
        return
    reason = _skip_reason(report.longrepr)
    if _expected_skip(reason):
        return
    report.outcome = "failed"
    # A skip in setup (skipif markers) would otherwise be counted as an error in
    # setup; it is this test's failure.
    report.when = "call"
    report.longrepr = _message(reason)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_make_collect_report(collector):
    """A GPU test file skipped as a whole (module-level skip or importorskip) fails to collect."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and expect_gpu() and _is_gpu_test_file(getattr(collector, "path", None)):
        reason = _skip_reason(report.longrepr)
        if not _expected_skip(reason):
            report.outcome = "failed"
            report.longrepr = _message(reason)


def pytest_report_header(config):
    """Say so in the header when skipped GPU tests fail."""
    if expect_gpu():
        return f"{ENV} is set: skipped tests in {', '.join(sorted(GPU_TEST_FILES))} are failures"
    return None
