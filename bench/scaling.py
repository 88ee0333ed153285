"""How one run's wall time and peak memory grow with engines and messages.

    python bench/scaling.py [--json] [--quick] [--plot PATH]
    python bench/scaling.py --cell ENGINES MESSAGES     # one cell, one JSON line

The plain workload of ``bench/throughput.py`` (one release, no upgrade, client casts,
Poisson arrivals at half the engines' capacity, all six invariants checked online) for
engines in {10, 100, 1000} x messages in {10^4, 10^5, 10^6} (``--quick``: up to 10^5).
The trace is streamed to a file and not kept (``run_scenario(trace_path=...,
keep_trace=False)``), as a long run would be. Each cell runs in a fresh Python process,
so its peak RSS (``getrusage``) is its own; cells run one after another.

Checks (printed, not asserted as a test would), on CPU time per message (wall time is
printed too, but on a shared machine it also measures the neighbours): cost per message
at the most messages is within 1.5x of that at the fewest, for each engine count; and
cost per message grows at most log-linearly in engines: at E engines at most
1.5 x log10(E) / log10(10) times the cost at 10 engines. A plot (cost per message and peak RSS against messages, one line
per engine count) goes to ``--plot`` (default bench/scaling.png).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ENGINES = (10, 100, 1000)
MESSAGES = (10_000, 100_000, 1_000_000)
QUICK_MESSAGES = (10_000, 100_000)
TOLERANCE = 1.5


def run_cell(engines: int, messages: int) -> dict[str, Any]:
    """One cell in this process: build the plain workload, run it streaming its trace, measure."""
    sys.path.insert(0, str(HERE))
    from throughput import check_complete, plain_scenario, run_simroll

    scenario = plain_scenario(engines, messages)
    with tempfile.TemporaryDirectory(prefix="simroll-scaling-") as tmp:
        path = os.path.join(tmp, "trace.jsonl")
        w0, c0 = time.perf_counter(), time.process_time()
        result = run_simroll(scenario, trace_path=path)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        trace_bytes = os.path.getsize(path)
    check_complete(result)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "engines": engines,
        "messages": messages,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "us_per_msg": round(wall / messages * 1e6, 2),
        "cpu_us_per_msg": round(cpu / messages * 1e6, 2),
        "peak_rss_mb": round(peak_kib / 1024, 1),
        "events": result.events,
        "trace_mb": round(trace_bytes / 2**20, 1),
        "sim_time": round(result.sim_time, 3),
        "trace_sha256": result.trace_sha256,
    }


def run_cell_in_subprocess(engines: int, messages: int) -> dict[str, Any]:
    """One cell in a fresh interpreter, so that its peak RSS is its own."""
    out = subprocess.run([sys.executable, __file__, "--cell", str(engines), str(messages)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def checks(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The two scaling rules, one verdict per engine count (messages) and per larger engine count."""
    by = {(c["engines"], c["messages"]): c["cpu_us_per_msg"] for c in cells}
    engines = sorted({c["engines"] for c in cells})
    messages = sorted({c["messages"] for c in cells})
    out = []
    lo, hi = messages[0], messages[-1]
    for e in engines:
        ratio = by[(e, hi)] / by[(e, lo)]
        out.append({"rule": f"{e} engines: CPU/msg at {hi:,} msgs <= {TOLERANCE} x at {lo:,}",
                    "value": round(ratio, 2), "limit": TOLERANCE, "ok": ratio <= TOLERANCE})
    base = engines[0]
    for e in engines[1:]:
        for n in messages:
            ratio = by[(e, n)] / by[(base, n)]
            limit = TOLERANCE * math.log10(e) / math.log10(base)
            out.append({"rule": f"{n:,} msgs: CPU/msg at {e} engines <= {limit:g} x at {base} (log-linear)",
                        "value": round(ratio, 2), "limit": round(limit, 2), "ok": ratio <= limit})
    return out


def plot(cells: list[dict[str, Any]], path: str) -> None:
    """Time per message (CPU solid, wall dashed) and peak RSS against messages, per engine count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for e in sorted({c["engines"] for c in cells}):
        row = sorted((c for c in cells if c["engines"] == e), key=lambda c: c["messages"])
        xs = [c["messages"] for c in row]
        line, = ax1.plot(xs, [c["cpu_us_per_msg"] for c in row], marker="o", label=f"{e} engines (CPU)")
        ax1.plot(xs, [c["us_per_msg"] for c in row], marker=".", linestyle="--", color=line.get_color(),
                 label=f"{e} engines (wall)")
        ax2.plot(xs, [c["peak_rss_mb"] for c in row], marker="o", label=f"{e} engines")
    for ax, label in ((ax1, "time per message (µs)"), (ax2, "peak RSS (MB)")):
        ax.set_xscale("log")
        ax.set_xlabel("messages")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", loc="lower right")
    fig.suptitle("simroll: one run, trace streamed to a file (plain workload, all invariants online)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quick", action="store_true", help="messages up to 10^5 only")
    p.add_argument("--plot", default=str(HERE / "scaling.png"), help="PNG written (default bench/scaling.png)")
    p.add_argument("--cell", nargs=2, type=int, metavar=("ENGINES", "MESSAGES"),
                   help="run one cell in this process and print it as one JSON line")
    p.add_argument("--load", metavar="JSON", help="check and plot the cells of an earlier --json output instead")
    args = p.parse_args(argv)
    if args.cell:
        print(json.dumps(run_cell(*args.cell)))
        return 0
    cells = []
    if args.load:
        with open(args.load, encoding="utf-8") as f:
            cells = json.load(f)["cells"]
    for n in () if args.load else (QUICK_MESSAGES if args.quick else MESSAGES):
        for e in ENGINES:
            cell = run_cell_in_subprocess(e, n)
            cells.append(cell)
            if not args.json:
                print(f"  {e:>5} engines {n:>9,} msgs  {cell['wall_s']:>8.2f} s  {cell['us_per_msg']:>6.2f} µs/msg (CPU {cell['cpu_us_per_msg']:.2f})  "
                      f"peak RSS {cell['peak_rss_mb']:>6.1f} MB  trace {cell['trace_mb']:.0f} MB", flush=True)
    verdicts = checks(cells)
    plot(cells, args.plot)
    out = {"cells": cells, "checks": verdicts, "ok": all(v["ok"] for v in verdicts), "plot": args.plot,
           "python": platform.python_version(), "cpus": os.cpu_count()}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for v in verdicts:
            print(f"  {'ok  ' if v['ok'] else 'FAIL'} {v['rule']}: {v['value']}")
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
