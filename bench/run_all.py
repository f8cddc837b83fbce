#!/usr/bin/env python3
"""Every benchmark workload, spead2gpu against spead2 4.5.1, in one run.

    python bench/run_all.py            # full run, a few minutes
    python bench/run_all.py --quick    # small sizes, one repetition (CI: it completes)

How it measures (so that a ratio means something on a small, shared machine):

* The parent builds every input once, with spead2gpu's sender (byte-identical
  to spead2's), into files in a temporary directory; both libraries decode
  exactly the same bytes.
* Each library runs in its own long-lived worker process (so neither shares a
  GIL, an allocator or a peak-RSS figure with the other), taking requests as
  JSON lines; ``OPENBLAS_NUM_THREADS=1`` so no idle BLAS thread spins.
* Per workload: one warm-up each, then ``--repeat`` rounds of spead2gpu,
  spead2, ceiling (A B C A B C ...), so noise hits all three alike.  The table
  gives medians, min..max, the ratio spead2gpu / spead2 of the medians, and
  each median as a fraction of its ceiling measured in the same rounds:
  a single-core memcpy of the same bytes for memory workloads, a minimal C
  ``recvmmsg`` receiver (``bench/recvmmsg_ceiling.c``, compiled now) for UDP.
* UDP rows are binary searches for the highest lossless rate, the three
  receivers interleaved step by step and fed by one common sender process;
  ``--udp-searches`` (3) independent searches give the median and spread,
  since one kernel drop moves a single search by half its range. A step
  counts the rate the sender really achieved, not the one asked for.
* Peak RSS is each worker's ``ru_maxrss`` after all its workloads.
* The plot (``throughput_vs_heap_size.png`` in ``--out``) is memory-buffer
  receive throughput against heap size, 4 KiB ... 64 MiB, for packet sizes
  1472 and 8972 bytes, both libraries, with the memcpy ceiling.

Results also go to ``results.json`` in ``--out`` (default ``bench-results``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_udp  # noqa: E402
import workloads as wl  # noqa: E402

LIBS = ("spead2gpu", "spead2")
KiB, MiB = wl.KiB, wl.MiB


# ---------------------------------------------------------------------------
# Worker side
# ---------------------------------------------------------------------------

def worker_main(lib_name):
    """Serve requests (one JSON object per line on stdin) with ``lib_name``."""
    reply = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything else printed goes to stderr, not into the replies
    mod = wl.load(lib_name)
    # Back-pressure warnings ("blocked by full ringbuffer") are expected while a
    # probe overloads a receiver; losses are counted, not logged.
    logging.getLogger(lib_name).setLevel(logging.ERROR)
    cache: dict[str, bytes] = {}

    def data(path):
        if path not in cache:
            cache.clear()  # one workload's inputs at a time: RSS stays comparable
            cache[path] = pathlib.Path(path).read_bytes()
        return cache[path]

    for line in sys.stdin:
        req = json.loads(line)
        try:
            op = req["op"]
            if op == "quit":
                break
            if op == "rss":
                result = {"peak_rss": wl.peak_rss_bytes()}
            elif op == "measure":
                kwargs = dict(req["kwargs"])
                if "data" in req:
                    kwargs["data"] = data(req["data"])
                if "member_data" in req:
                    cache.clear()
                    kwargs["member_data"] = [pathlib.Path(p).read_bytes() for p in req["member_data"]]
                result = getattr(wl, req["fn"])(mod, **kwargs)
            elif op == "udp_probe":
                ok, achieved, complete, n, cpu = bench_udp.probe(
                    mod, req["rate"], types.SimpleNamespace(**req["args"]))
                result = {"lossless": ok, "achieved": achieved, "complete": complete,
                          "sent": n, "cpu": cpu}
            else:
                raise ValueError(f"unknown op {op!r}")
            reply.write(json.dumps({"ok": True, "result": result}) + "\n")
        except Exception as exc:  # reported to the parent, which stops the run
            reply.write(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}) + "\n")
        reply.flush()


class Worker:
    """Parent's handle on one library's worker process."""

    def __init__(self, lib_name):
        self.name = lib_name
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen([sys.executable, str(pathlib.Path(__file__).resolve()),
                                      "--worker", lib_name],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def call(self, **req):
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name} worker died (exit status {self.proc.wait()})")
        answer = json.loads(line)
        if not answer["ok"]:
            raise RuntimeError(f"{self.name}: {answer['error']}")
        return answer["result"]

    def close(self):
        try:
            self.call(op="quit")
        except (RuntimeError, BrokenPipeError, OSError):
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# ---------------------------------------------------------------------------
# Parent side: inputs, rows, ceilings
# ---------------------------------------------------------------------------

class Inputs:
    """Builds each input file once (spead2gpu's sender) and remembers its path."""

    def __init__(self, directory):
        self.dir = pathlib.Path(directory)
        self.mod = wl.load("spead2gpu")
        self.paths: dict[tuple, str] = {}

    def get(self, kind, *args):
        key = (kind, *args)
        if key not in self.paths:
            path = self.dir / ("_".join(str(k) for k in key) + ".bin")
            if kind == "plain":
                path.write_bytes(wl.build_plain_heaps(self.mod, *args))
            elif kind == "itemgroup":
                path.write_bytes(wl.build_itemgroup_heaps(self.mod, *args))
            elif kind == "digitiser":
                path.write_bytes(wl.build_digitiser_heaps(self.mod, *args))
            else:
                raise ValueError(kind)
            self.paths[key] = str(path)
        return self.paths[key]

    def members(self, n_members, *args):
        key = ("members", n_members, *args)
        if key not in self.paths:
            whole = pathlib.Path(self.get("digitiser", *args)).read_bytes()
            paths = []
            for i, part in enumerate(wl.split_by_member(whole, n_members)):
                path = self.dir / f"member{i}of{n_members}_{'_'.join(map(str, args))}.bin"
                path.write_bytes(part)
                paths.append(str(path))
            self.paths[key] = paths
        return self.paths[key]


def summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "values": values}


def fmt_rate(s, unit):
    if s is None:
        return "—"
    scale = 1e9 if unit == "GB/s" else 1e6
    return f"{s['median'] / scale:.2f} ({s['min'] / scale:.2f}..{s['max'] / scale:.2f})"


class Row:
    """One workload: what each library runs and how its figure is read."""

    def __init__(self, key, title, target, requests, unit="GB/s", ceiling_bytes=None):
        self.key, self.title, self.target, self.unit = key, title, target, unit
        #: {library: request dict}
        self.requests = requests
        #: bytes of the same-run memcpy ceiling (None: no ceiling)
        self.ceiling_bytes = ceiling_bytes
        self.results: dict[str, dict] = {}
        self.ceiling = None

    def figure(self, result):
        if self.unit == "Mheaps/s":
            return result["heaps"] / result["seconds"]
        return result["bytes"] / result["seconds"]


def make_rows(args, inputs, libs):
    total = args.total_bytes
    p8k = 8192
    big, small = MiB, 4 * KiB
    n_big, n_small = max(4, total // big), total // small
    rows = []

    def both(fn, **req):
        return {lib: dict(op="measure", fn=fn, **req) for lib in libs}

    d = inputs.get("plain", n_big, big, p8k)
    rows.append(Row("buffer_1MiB", "memory buffer, 1 MiB heaps, 8 KiB packets", "≥ 1.1×, ≥ 90% memcpy",
                    both("measure_buffer_heaps", data=d, kwargs={"n_heaps": n_big, "heap_size": big}),
                    ceiling_bytes=n_big * big))
    n_ig = n_small // 4 if args.quick else n_small
    d = inputs.get("itemgroup", n_ig, small)
    rows.append(Row("itemgroup_4KiB", "memory buffer, 4 KiB heaps, ItemGroup.update loop", "≥ 2.5×",
                    both("measure_itemgroup_heaps", data=d, kwargs={"n_heaps": n_ig, "size": small}),
                    unit="Mheaps/s"))
    for size, n in ((big, n_big), (small, n_small // 4)):
        label = "1 MiB" if size == big else "4 KiB"
        rows.append(Row(f"inproc_{label.replace(' ', '')}", f"in-process send → receive, {label} heaps",
                        "≥ 2×", both("measure_inproc", kwargs={"n_heaps": n, "heap_size": size,
                                                                "packet_size": p8k}),
                        ceiling_bytes=n * size))
    for size, n, target in ((big, n_big, "≥ 1.2×"), (small, n_small, "≥ 1.5×")):
        label = "1 MiB" if size == big else "4 KiB"
        d = inputs.get("digitiser", n, size, p8k)
        kw = {"n_heaps": n, "heap_size": size, "variant": "numba"}
        rows.append(Row(f"chunk_{label.replace(' ', '')}",
                        f"chunk stream from memory, {label} heaps (numba place)", target,
                        both("measure_chunks", data=d, kwargs=kw), ceiling_bytes=n * size))
        if "spead2gpu" in libs:
            req = both("measure_chunks", data=d, kwargs=kw)
            req["spead2gpu"]["kwargs"] = dict(kw, variant="layout")
            rows.append(Row(f"chunk_{label.replace(' ', '')}_layout",
                            f"chunk stream, {label} heaps: spead2gpu ChunkLayout vs spead2 numba",
                            target, req, ceiling_bytes=n * size))
        rows.append(Row(f"chunk_{label.replace(' ', '')}_nt",
                        f"chunk stream, {label} heaps, MEMCPY_NONTEMPORAL (both)", "—",
                        both("measure_chunks", data=d, kwargs=dict(kw, nontemporal=True)),
                        ceiling_bytes=n * size))
    g_size = 64 * KiB
    g_n = max(64, total // g_size)
    for members in (1, 2):
        paths = inputs.members(members, g_n, g_size, p8k)
        rows.append(Row(f"group_{members}", f"chunk stream group, {members} member(s), 64 KiB heaps, "
                        "pinned pools", "≥ 1.3×; 2 ≥ 1.7× 1" if members == 2 else "—",
                        both("measure_group", member_data=paths,
                             kwargs={"n_heaps": g_n, "heap_size": g_size, "variant": "numba"}),
                        ceiling_bytes=g_n * g_size))
    for size, n, target in ((big, n_big, "≥ 1.2×"), (small, n_small // 4, "≥ 2×")):
        label = "1 MiB" if size == big else "4 KiB"
        rows.append(Row(f"send_{label.replace(' ', '')}", f"BytesStream send, {label} heaps", target,
                        both("measure_send_bytes", kwargs={"n_heaps": n, "heap_size": size,
                                                           "packet_size": p8k}),
                        ceiling_bytes=n * size))
    return rows


def memcpy_rate(nbytes):
    r = wl.measure_memcpy(nbytes)
    return r["bytes"] / r["seconds"]


def run_row(row, workers, repeat, warmup):
    """Warm-up, then rounds of spead2gpu, spead2, memcpy ceiling."""
    figures = {lib: [] for lib in row.requests}
    ceiling = []
    for _ in range(warmup):
        for lib, req in row.requests.items():
            workers[lib].call(**req)
    for _ in range(repeat):
        for lib, req in row.requests.items():
            figures[lib].append(row.figure(workers[lib].call(**req)))
        if row.ceiling_bytes:
            ceiling.append(memcpy_rate(row.ceiling_bytes))
    row.results = {lib: summary(v) for lib, v in figures.items()}
    row.ceiling = summary(ceiling) if ceiling else None


# ---------------------------------------------------------------------------
# UDP: highest lossless rate, spead2gpu / spead2 / raw recvmmsg
# ---------------------------------------------------------------------------

def compile_ceiling(directory):
    for cc in ("cc", "gcc", "clang"):
        if shutil.which(cc):
            exe = pathlib.Path(directory) / "recvmmsg_ceiling"
            subprocess.run([cc, "-O2", "-o", str(exe), str(HERE / "recvmmsg_ceiling.c")], check=True)
            return str(exe)
    raise RuntimeError("no C compiler (cc, gcc or clang) for bench/recvmmsg_ceiling.c")


def probe_raw(exe, rate, udp):
    """One probe of the C receiver: (lossless, achieved sender rate)."""
    n_heaps = max(16, int(rate * udp.duration / udp.heap_size))
    recv = subprocess.Popen([exe, str(udp.rcvbuf), "300", "20000"], stdout=subprocess.PIPE, text=True)
    port = int(recv.stdout.readline().split()[1])
    sender = bench_udp.start_sender(port, rate, n_heaps, udp)
    try:
        out, _ = sender.communicate(timeout=udp.duration * 3 + 20)
    except subprocess.TimeoutExpired:
        sender.kill()
        out = ""
    try:
        line = recv.communicate(timeout=30)[0]
    except subprocess.TimeoutExpired:
        recv.kill()
        line = ""
    achieved, wire = bench_udp.sender_report(out)
    got = int(line.split()[3]) if line.startswith("PACKETS") else 0
    return wire > 0 and got >= wire, achieved


class UdpSearch:
    """Binary search over the rate for one receiver; probes must all be lossless."""

    def __init__(self, name, probe, udp, repeats):
        self.name, self.probe, self.repeats = name, probe, repeats
        self.lo, self.hi = udp.min_rate, udp.max_rate
        #: the rate the sender really achieved in the best lossless step (bytes/s):
        #: a sender that fell short of the requested rate proves only what it sent
        self.best = 0.0

    def step(self):
        mid = (self.lo + self.hi) / 2
        achieved = []
        for _ in range(self.repeats):
            lossless, ach = self.probe(mid)
            if not lossless:
                self.hi = mid
                return
            achieved.append(min(ach, mid) if ach > 0 else mid)
        self.best, self.lo = max(self.best, min(achieved)), mid


def run_udp(args, workers, libs, tmp):
    exe = compile_ceiling(tmp)
    rows = []
    sizes = (4 * KiB,) if args.quick else (MiB, 4 * KiB)
    for size in sizes:
        udp = types.SimpleNamespace(
            duration=args.udp_duration, heap_size=size, rcvbuf=8 << 20, packet=8972,
            sender=args.udp_sender, burst_size=1 << 20,
            min_rate=0.25e9 / 8, max_rate=args.udp_max_gbps * 1e9 / 8)

        def lib_probe(lib, udp=udp):
            def probe(rate):
                r = workers[lib].call(op="udp_probe", rate=rate, args=vars(udp))
                return r["lossless"], r["achieved"]
            return probe

        # Several independent searches per receiver (one kernel drop moves a
        # single search by half its range), all interleaved step by step so
        # that background load hits every receiver alike.
        best = {name: [] for name in [*libs, "raw recvmmsg"]}
        for _ in range(args.udp_searches):
            searches = [UdpSearch(lib, lib_probe(lib), udp, args.udp_repeats) for lib in libs]
            searches.append(UdpSearch("raw recvmmsg", lambda r, udp=udp: probe_raw(exe, r, udp),
                                      udp, args.udp_repeats))
            for _ in range(args.udp_steps):
                for s in searches:
                    s.step()
            for s in searches:
                best[s.name].append(s.best)
        label = "1 MiB" if size == MiB else "4 KiB"
        row = Row(f"udp_{label.replace(' ', '')}", f"UDP loopback, {label} heaps, 8972-byte packets, "
                  "highest lossless rate", "≥ 1.3× at 1 MiB; ≥ 90% raw" if size == MiB else "—", {})
        row.results = {lib: summary(best[lib]) for lib in libs}
        row.ceiling = summary(best["raw recvmmsg"])
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------
# Plot: throughput against heap size
# ---------------------------------------------------------------------------

def run_plot(args, workers, libs, inputs):
    sizes = [4 * KiB << (2 * i) for i in range(9)]  # 4 KiB ... 256 MiB; cut at 64 MiB below
    sizes = [s for s in sizes if s <= 64 * MiB]
    if args.quick:
        sizes = [4 * KiB, MiB, 16 * MiB]
    points = {}
    for packet in (1472, 8972):
        for size in sizes:
            n = max(2, args.plot_bytes // size)
            path = inputs.get("plain", n, size, packet)
            req = dict(op="measure", fn="measure_buffer_heaps", data=path,
                       kwargs={"n_heaps": n, "heap_size": size})
            vals = {lib: [] for lib in libs}
            for lib in libs:  # warm-up (and loads the file)
                workers[lib].call(**req)
            for _ in range(args.plot_repeat):
                for lib in libs:
                    r = workers[lib].call(**req)
                    vals[lib].append(r["bytes"] / r["seconds"])
            for lib in libs:
                points[f"{lib} {packet}-byte packets {size}"] = statistics.median(vals[lib])
            os.unlink(path)  # the biggest inputs are hundreds of MiB
            del inputs.paths[("plain", n, size, packet)]
    ceiling = statistics.median(memcpy_rate(args.plot_bytes) for _ in range(3))
    return sizes, points, ceiling


def draw_plot(path, sizes, points, ceiling, libs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    styles = {"spead2gpu": "-", "spead2": "--"}
    for packet, marker in ((1472, "o"), (8972, "s")):
        for lib in libs:
            ys = [points[f"{lib} {packet}-byte packets {s}"] / 1e9 for s in sizes]
            ax.plot(sizes, ys, styles[lib], marker=marker, label=f"{lib}, {packet}-byte packets")
    ax.axhline(ceiling / 1e9, color="grey", linestyle=":", label="single-core memcpy (same run)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes)
    ax.set_xticklabels([f"{s // MiB} MiB" if s >= MiB else f"{s // KiB} KiB" for s in sizes])
    ax.set_xlabel("heap size")
    ax.set_ylabel("receive throughput from a memory buffer (GB/s of payload)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("recv.Stream from a memory buffer, one receive thread")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

def _show(s, unit):
    """median (min..max) of a summary in the table's unit (UDP rows: bytes/s -> Gb/s)."""
    if s is None:
        return "—"
    scale = 8 if unit == "Gb/s" else 1
    return fmt_rate({k: s[k] * scale for k in ("median", "min", "max")},
                    "GB/s" if unit in ("GB/s", "Gb/s") else unit)


def _fraction(s, ceiling):
    if not s or not ceiling or not ceiling["median"]:
        return "—"
    return f"{s['median'] / ceiling['median']:.0%}"


def table(rows, rss, libs):
    """The Markdown table of every row, then peak RSS."""
    ref = len(libs) == 2
    lines = ["| workload | unit | spead2gpu median (min..max) | "
             + ("spead2 median (min..max) | ratio | " if ref else "")
             + "ceiling | spead2gpu / ceiling | " + ("spead2 / ceiling | " if ref else "") + "target |",
             "|---" * (9 if ref else 6) + "|"]
    for row in rows:
        a = row.results.get("spead2gpu")
        b = row.results.get("spead2")
        unit = "Gb/s" if row.key.startswith("udp") else row.unit
        cells = [row.title, unit, _show(a, unit)]
        if ref:
            cells += [_show(b, unit), f"{a['median'] / b['median']:.2f}×" if a and b and b["median"] else "—"]
        kind = " raw recvmmsg" if row.key.startswith("udp") else " memcpy"
        cells += [_show(row.ceiling, unit) + kind if row.ceiling else "—", _fraction(a, row.ceiling)]
        if ref:
            cells.append(_fraction(b, row.ceiling))
        cells.append(row.target)
        lines.append("| " + " | ".join(cells) + " |")
    rss_cells = [f"{rss['spead2gpu'] / MiB:.0f} MiB" if "spead2gpu" in rss else "—"]
    if ref:
        rss_cells += [f"{rss['spead2'] / MiB:.0f} MiB",
                      f"{rss['spead2gpu'] / rss['spead2']:.2f}× (lower is better)"]
    lines.append("| peak RSS of the worker process | MiB | " + " | ".join(rss_cells) + " | — | — | "
                 + ("— | " if ref else "") + "≤ spead2's |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, one repetition (checks it runs)")
    parser.add_argument("--repeat", type=int, help="rounds per workload (default 5; 1 with --quick)")
    parser.add_argument("--only", help="comma-separated row keys (prefixes) to run, e.g. chunk,group")
    parser.add_argument("--no-udp", action="store_true", help="skip the UDP searches")
    parser.add_argument("--no-plot", action="store_true", help="skip the heap-size sweep and plot")
    parser.add_argument("--no-reference", action="store_true", help="spead2gpu only (no spead2 worker)")
    parser.add_argument("--udp-sender", choices=LIBS, default="spead2gpu",
                        help="library of the common UDP sender process")
    parser.add_argument("--udp-max-gbps", type=float, default=40.0)
    parser.add_argument("--udp-searches", type=int,
                        help="independent rate searches per UDP receiver, medians reported "
                             "(default 3; 1 with --quick)")
    parser.add_argument("--out", default="bench-results", help="directory for results.json and the plot")
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args.worker)
        return 0
    if args.repeat is None:
        args.repeat = 1 if args.quick else 5
    args.total_bytes = 16 * MiB if args.quick else 256 * MiB
    args.plot_bytes = 16 * MiB if args.quick else 128 * MiB
    args.plot_repeat = 1 if args.quick else 3
    args.udp_duration, args.udp_repeats, args.udp_steps = (0.3, 1, 3) if args.quick else (1.0, 2, 7)
    if args.udp_searches is None:
        args.udp_searches = 1 if args.quick else 3
    libs = ["spead2gpu"]
    if not args.no_reference:
        try:
            import spead2  # noqa: F401  (the reference runs in its worker; this only checks it exists)

            libs.append("spead2")
        except ImportError:
            print("spead2 is not installed: measuring spead2gpu alone", file=sys.stderr)
    if "spead2" not in libs and args.udp_sender == "spead2":
        args.udp_sender = "spead2gpu"
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    workers = {lib: Worker(lib) for lib in libs}
    try:
        with tempfile.TemporaryDirectory(prefix="spead2gpu-bench-") as tmp:
            inputs = Inputs(tmp)
            rows = make_rows(args, inputs, libs)
            if args.only:
                keys = args.only.split(",")
                rows = [r for r in rows if any(r.key.startswith(k) for k in keys)]
            for row in rows:
                run_row(row, workers, args.repeat, 0 if args.quick else 1)
                print(f"  {row.key}: " + ", ".join(
                    f"{lib} {row.results[lib]['median'] / (1e6 if row.unit == 'Mheaps/s' else 1e9):.2f}"
                    for lib in row.requests) + f" {row.unit}", file=sys.stderr, flush=True)
            if not args.no_udp and (not args.only or "udp" in args.only):
                rows += run_udp(args, workers, libs, tmp)
            plot = None
            if not args.no_plot and not args.only:
                plot = run_plot(args, workers, libs, inputs)
            rss = {lib: w.call(op="rss")["peak_rss"] for lib, w in workers.items()}
    finally:
        for w in workers.values():
            w.close()
    print(f"\nspead2gpu vs spead2 4.5.1, {os.cpu_count()} CPUs, {'--quick, ' if args.quick else ''}"
          f"{args.repeat} round(s) per row, medians (min..max); ratio = spead2gpu / spead2\n")
    print(table(rows, rss, libs))
    results = {"quick": args.quick, "repeat": args.repeat, "peak_rss": rss,
               "rows": [{"key": r.key, "title": r.title, "unit": r.unit, "target": r.target,
                         "results": r.results, "ceiling": r.ceiling} for r in rows]}
    if plot:
        sizes, points, ceiling = plot
        png = out / "throughput_vs_heap_size.png"
        draw_plot(png, sizes, points, ceiling, libs)
        results["plot"] = {"sizes": sizes, "points": points, "memcpy": ceiling}
        print(f"\nplot: {png}")
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"results: {out / 'results.json'}  ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
