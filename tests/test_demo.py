"""The digitiser demo (python -m spead2gpu.demo)."""

import ast
import importlib
import importlib.util
import io
import json
import pathlib
import re
import subprocess
import sys

import pytest

DEMO_PATH = pathlib.Path(__file__).resolve().parents[1] / "python" / "spead2gpu" / "demo.py"


def load_demo():
    try:
        return importlib.import_module("spead2gpu.demo")
    except ImportError:
        # e.g. spead2gpu aliased to the reference: load the file directly
        spec = importlib.util.spec_from_file_location("spead2gpu_demo", DEMO_PATH)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod


def run_demo(argv):
    demo = load_demo()
    out = io.StringIO()
    rc = demo.run(demo.parse_args(argv), out=out)
    return rc, out.getvalue()


def test_demo_default_small():
    rc, text = run_demo(["--heaps", "16", "--heap-size", "8192"])
    assert rc == 0, text
    assert "heaps received : 16/16 intact" in text
    assert re.search(r"= [0-9.]+ GB/s", text)
    assert "loss           : 0 heaps" in text
    assert "OK" in text


@pytest.mark.parametrize("argv", [
    ["--heaps", "10", "--heap-size", "100000", "--packet-size", "1472",
     "--heap-address-bits", "40"],
    ["--heaps", "40", "--heap-size", "777", "--ring-heaps", "1", "--max-heaps", "1",
     "--window", "2"],
    ["--heaps", "8", "--heap-size", "65536", "--memcpy-nt", "--mem-pool", "--recv-threads", "2"],
    ["--heaps", "3", "--heap-size", "1", "--packet-size", "56"],
])
def test_demo_variants(argv):
    rc, text = run_demo(argv + ["--quiet"])
    n = int(argv[1])
    assert rc == 0, text
    assert f"heaps received : {n}/{n} intact" in text


def test_demo_detects_loss():
    rc, text = run_demo(["--heaps", "20", "--heap-size", "4096", "--simulate-loss", "4"])
    assert rc == 1
    assert "heaps received : 15/20 intact" in text
    assert "loss           : 5 heaps (25.00%)" in text
    assert "FAILED" in text


def test_demo_main_entry_point():
    demo = load_demo()
    assert demo.main(["--heaps", "4", "--heap-size", "1024", "--quiet"]) == 0
    with pytest.raises(SystemExit):
        demo.main(["--heaps", "0"])


def test_demo_uses_only_spead2gpu():
    """The demo must never import the reference implementation."""
    tree = ast.parse(DEMO_PATH.read_text())
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            modules.add((node.module or "").split(".")[0])
    assert "spead2" not in modules
    assert "spead2gpu" in modules


def test_demo_as_module_subprocess():
    """python -m spead2gpu.demo works and exits 0 (needs the real package)."""
    try:
        spec = importlib.util.find_spec("spead2gpu.demo")
    except ImportError:
        spec = None
    if spec is None or spec.origin is None or not spec.origin.endswith("demo.py"):
        pytest.skip("spead2gpu.demo is not importable in this environment")
    proc = subprocess.run([sys.executable, "-m", "spead2gpu.demo", "--heaps", "8",
                           "--heap-size", "4096"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "heaps received : 8/8 intact" in proc.stdout


def test_bench_run_all_quick(tmp_path):
    """bench/run_all.py --quick (the README's one benchmark command, small)
    runs every workload end to end: the table has every row with a figure for
    each library, the plot is a PNG and results.json holds what the table shows.
    It checks that the benchmark completes, not that anything is fast."""
    path = pathlib.Path(__file__).resolve().parents[1] / "bench" / "run_all.py"
    proc = subprocess.run([sys.executable, str(path), "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    keys = [row["key"] for row in results["rows"]]
    for key in ("buffer_1MiB", "itemgroup_4KiB", "inproc_1MiB", "inproc_4KiB", "chunk_1MiB", "chunk_4KiB",
                "chunk_4KiB_layout", "chunk_4KiB_nt", "group_1", "group_2", "send_1MiB", "send_4KiB",
                "udp_4KiB"):
        assert key in keys
    libs = ["spead2gpu"] + (["spead2"] if "spead2" in results["peak_rss"] else [])
    for row in results["rows"]:
        assert row["title"] in proc.stdout
        for lib in libs:
            if not row["key"].startswith("udp"):
                assert row["results"][lib]["median"] > 0, row
        assert row["ceiling"] is None or row["ceiling"]["median"] > 0, row
    assert all(results["peak_rss"][lib] > 0 for lib in libs)
    png = (tmp_path / "throughput_vs_heap_size.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    assert len(results["plot"]["points"]) == 2 * len(libs) * len(results["plot"]["sizes"])
