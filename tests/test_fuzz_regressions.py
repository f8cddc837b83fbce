"""Replay the fuzzing findings and seeds through the Python API.

Every file in fuzz/regressions/python/ is an input of the atheris target
(fuzz/fuzz_python.py) that once made spead2gpu misbehave; each is replayed
with the target's own checks, without atheris or clang. The seed corpus
(fuzz/corpus/python/) is replayed too: the harness's checks hold on it.
Inputs of the C++ target (fuzz/regressions/cpp/, fuzz/corpus/recv/) are
replayed by the C++ unit tests (tests/cpp/fuzz_replay_test.cpp, built and run
by test_cpp_units.py).
"""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest

import spead2gpu
import spead2gpu.recv
import spead2gpu.send

ROOT = pathlib.Path(__file__).resolve().parent.parent
FUZZ = ROOT / "fuzz"

_spec = importlib.util.spec_from_file_location("fuzz_python", FUZZ / "fuzz_python.py")
fuzz_python = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz_python)



def _inputs(folder):
    return sorted(p for p in (FUZZ / folder).iterdir() if p.is_file() and not p.name.startswith("."))


REGRESSIONS = _inputs("regressions/python")
SEEDS = _inputs("corpus/python")


@pytest.mark.parametrize("path", REGRESSIONS, ids=lambda p: p.name)
def test_python_regression(path):
    fuzz_python.run_input(path.read_bytes())


@pytest.mark.parametrize("path", SEEDS, ids=lambda p: p.name)
def test_python_seed(path):
    fuzz_python.run_input(path.read_bytes())


def test_cpp_inputs_exist():
    """The C++ replay test finds its inputs (and every regression has a name)."""
    assert _inputs("corpus/recv")
    for path in _inputs("regressions/cpp") + REGRESSIONS:
        assert path.stat().st_size > 0, path


@pytest.mark.parametrize("descr", ["u4,(", ",", "u4,,u4", "(2,u4", "zz", "(999999999999,99999999999)u4"])
def test_bad_numpy_descr_is_value_error(descr):
    """numpy parses comma-separated descrs with Python's parser (SyntaxError)
    and rejects bad shapes with ValueError: both reach the user as ValueError."""
    header = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': (2,)}}"
    with pytest.raises(ValueError):
        spead2gpu.Descriptor._parse_numpy_header(header)


def _heap_with_descr(descr):
    """A heap (bytes) with one descriptor of shape (2,) whose numpy header says ``descr``, and its value."""
    ig = spead2gpu.send.ItemGroup()
    ig.add_item(0x1000, "x", "", shape=(2,), dtype=np.dtype("<u4"), value=np.array([1, 2], np.uint32))
    out = spead2gpu.send.BytesStream(spead2gpu.ThreadPool())
    out.send_heap(ig.get_heap())
    data = out.getvalue()
    assert data.count(b"'<u4'") == 1
    return data.replace(b"'<u4'", repr(descr).encode())


def test_subarray_dtype_is_value_error(impl):
    """Fuzz finding (regressions/python/numpy_header_subarray_dtype): a descr of
    '1u4' is a subarray dtype, with which numpy gave a (2,) item a (2, 1) value.
    spead2 raises ValueError on the update; so does spead2gpu."""
    stream = impl.recv.Stream(impl.ThreadPool(), impl.recv.StreamConfig())
    stream.add_buffer_reader(_heap_with_descr("1u4"))
    heaps = list(stream)
    assert len(heaps) == 1
    with pytest.raises(ValueError):
        impl.ItemGroup().update(heaps[0])
