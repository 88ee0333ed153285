"""How one run's wall time and peak memory grow with engines and messages.

    python bench/scaling.py [--json] [--quick] [--plot PATH]
    python bench/scaling.py --cell ENGINES MESSAGES     # one cell, one JSON line
    python bench/scaling.py --real [--json] [--quick] [--messages N]   # the real paths
    python bench/scaling.py --real-cell ENGINES MESSAGES                # one real cell

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
1.5 x log10(E) / log10(10) times the cost at 10 engines. A plot (cost per message and peak RSS
against messages, one line per engine count) goes to ``--plot`` (default bench/scaling.png).

``--real``: the plain workload exercises only the trivial path (one release, no handlers, no
upgrade), so the per-engine loops (cap resolution, fanout, the idle scan of the imbalance
checker, "last engine accepting" checks) never run. The real grid does, at 10, 100, 1,000 and
10,000 engines (``--quick``: 10 to 1,000), with the same number of messages in every cell
(``--messages``, default 30,000: 3 per engine at 10,000; ``--quick`` 10,000), so CPU per
message compares cells directly:

* three releases: ``r1`` (RPC 1.0), ``r2`` (1.1 with a new argument, still listening on 1.0,
  sends 1.1 or falls back to 1.0, ``cap: auto``), ``r3`` (1.2, listening on 1.1 and 1.0,
  ``cap: auto``); engines start on ``r1``, clients send as ``r1``;
* handlers that read, write and fan out: a client ``update_stack`` writes ``stack_status`` and
  casts two ``check_resource`` (3 messages per operation), which read and write ``resource_props``;
  Poisson arrivals at half the engines' capacity; oslo delivery;
* a plan spread over the run: a rolling restart of ``min(engines - 1, 20)`` engines onto ``r2``, a
  ``kill`` of the next engine and its ``start`` on ``r2``, ``set_cap: auto``, a rolling restart
  of ``min(engines, 5)`` engines onto ``r3``, ``set_cap: auto`` again (18 steps at 10 engines, 29 from 21 up; the number
  of steps does not grow with engines, so each step's per-engine loops are what grows);
* all six invariants online (``version-skew`` allows 3 releases); a kill may break an
  invariant: the run still counts, the verdicts are printed.

Messages are the ``send`` records of the streamed trace (counted after timing). The check:
CPU per message at the most engines <= 2 x that at 10 engines (issue 16).
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
REAL_ENGINES = (10, 100, 1000, 10_000)
REAL_QUICK_ENGINES = (10, 100, 1000)
REAL_MESSAGES, REAL_QUICK_MESSAGES = 30_000, 10_000
REAL_LIMIT = 2.0  # issue 16: per-message cost at 10,000 engines <= 2x the cost at 10
REAL_SERVICE = 0.1
REAL_FANOUT = 2  # check_resource casts per update_stack


def real_scenario(engines: int, messages: int) -> Any:
    """The real-path workload (see the module docstring) for ``engines`` engines, about ``messages`` messages."""
    import simroll

    per_op = 1 + REAL_FANOUT
    rate = 0.5 * engines / REAL_SERVICE / per_op  # operations per second at half capacity
    stop = messages / per_op / rate
    methods_10 = {"update_stack": ["stack_id"], "check_resource": ["resource_id", "current_traversal"]}
    methods_11 = {"update_stack": ["stack_id"], "check_resource": ["resource_id", "current_traversal", "root_id=None"]}
    data = {
        "stack_status": {"read": "stack.status", "write": ["stack.status"]},
        "resource_props": {"read": "resource.properties", "write": ["resource.properties"]},
    }
    fallback = {
        "check_resource": [{"version": "1.1"}, {"version": "1.0", "args": ["resource_id", "current_traversal"]}]
    }
    releases = {
        "r1": {
            "rpc": {"endpoints": [{"version": "1.0", "methods": methods_10}]},
            "data": data,
            "service_time": REAL_SERVICE,
        },
        "r2": {
            "rpc": {
                "endpoints": [{"version": "1.1", "methods": methods_11}, {"version": "1.0", "methods": methods_10}],
                "send_version": "1.0",
                "sends": fallback,
                "cap": "auto",
            },
            "data": data,
            "service_time": REAL_SERVICE,
        },
        "r3": {
            "rpc": {
                "endpoints": [
                    {"version": "1.2", "methods": methods_11},
                    {"version": "1.1", "methods": methods_11},
                    {"version": "1.0", "methods": methods_10},
                ],
                "send_version": "1.0",
                "sends": fallback,
                "cap": "auto",
            },
            "data": data,
            "service_time": REAL_SERVICE,
        },
    }
    wave2, wave3 = min(engines - 1, 20), min(engines, 5)  # always one engine left to kill
    steps: list[dict[str, Any]] = [{"restart": f"engine-{k}", "release": "r2"} for k in range(1, wave2 + 1)]
    if engines > wave2:
        victim = f"engine-{wave2 + 1}"
        steps += [{"kill": victim}, {"start": victim, "release": "r2"}]
    steps.append({"set_cap": "auto"})
    steps += [{"restart": f"engine-{k}", "release": "r3"} for k in range(1, wave3 + 1)]
    steps.append({"set_cap": "auto"})
    gap = stop * 0.8 / (len(steps) + 1)  # spread over the first 80 % of the traffic
    plan = [dict(s, after=gap) for s in steps]
    spec = {
        "name": f"real_{engines}x{messages}",
        "seed": 1,
        "bus": {"delivery": "oslo"},
        "database": {
            "tables": {"stack": ["id", "status"], "resource": ["id", "stack_id", "status", "properties"]},
            "rows": 100,
        },
        "releases": releases,
        "engines": {"count": engines, "release": "r1"},
        "workload": {
            "rate": rate,
            "stop": stop,
            "client": "r1",
            "operations": {"update_stack": 1},
            "handlers": {
                "update_stack": {"write": ["stack_status"], "cast": {"check_resource": REAL_FANOUT}},
                "check_resource": {"read": ["resource_props"], "write": ["resource_props"]},
            },
        },
        "plan": plan,
        "limits": {"max_events": 20 * messages + 50 * engines + 10_000, "max_time": 100 * stop + 1000},
        "invariants": {
            "no-lost-write": {},
            "no-stranded-message": {},
            "no-incompatible-delivery": {},
            "bounded-imbalance": {"max_wait": 5.0},
            "schema-compatible": {},
            "version-skew": {"max_releases": 3},
        },
    }
    return simroll.load_scenario_text(json.dumps(spec), "<real workload>")


def run_real_cell(engines: int, messages: int) -> dict[str, Any]:
    """One real-path cell in this process: CPU and wall time of one run, streamed trace, messages counted after."""
    sys.path.insert(0, str(HERE))
    from throughput import run_simroll

    scenario = real_scenario(engines, messages)
    with tempfile.TemporaryDirectory(prefix="simroll-scaling-") as tmp:
        path = os.path.join(tmp, "trace.jsonl")
        w0, c0 = time.perf_counter(), time.process_time()
        result = run_simroll(scenario, trace_path=path)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        sent = steps = 0
        with open(path, encoding="utf-8") as f:
            for line in f:
                if '"kind":"send"' in line:
                    sent += 1
                elif '"kind":"step"' in line:
                    steps += 1
        trace_bytes = os.path.getsize(path)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "engines": engines,
        "messages": sent,
        "plan_steps": len(scenario.plan),
        "step_records": steps,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "cpu_us_per_msg": round(cpu / max(1, sent) * 1e6, 2),
        "us_per_msg": round(wall / max(1, sent) * 1e6, 2),
        "events": result.events,
        "peak_rss_mb": round(peak_kib / 1024, 1),
        "trace_mb": round(trace_bytes / 2**20, 1),
        "end_reason": result.end_reason,
        "violated": result.violated,
        "trace_sha256": result.trace_sha256,
    }


def real_main(args: argparse.Namespace) -> int:
    messages = args.messages or (REAL_QUICK_MESSAGES if args.quick else REAL_MESSAGES)
    engines = REAL_QUICK_ENGINES if args.quick else REAL_ENGINES
    cells = []
    if not args.json:
        print(
            f"real paths: 3 releases, handlers that read/write/fan out, cap auto, rolling restarts, a kill; "
            f"~{messages:,} messages per cell; CPU time of one run in a fresh process, on a shared 2-core machine"
        )
    for e in engines:
        out = subprocess.run(
            [sys.executable, __file__, "--real-cell", str(e), str(messages)], check=True, capture_output=True, text=True
        )
        cell = json.loads(out.stdout.strip().splitlines()[-1])
        cells.append(cell)
        if not args.json:
            print(
                f"  {e:>6} engines {cell['messages']:>7,} msgs {cell['plan_steps']:>3} steps  "
                f"CPU {cell['cpu_s']:>8.2f} s  {cell['cpu_us_per_msg']:>8.2f} CPU µs/msg  "
                f"(wall {cell['wall_s']:.2f} s)  {cell['events']:>8,} events  "
                f"peak RSS {cell['peak_rss_mb']:.0f} MB  {cell['end_reason']}; violated: {cell['violated'] or '-'}",
                flush=True,
            )
    base, top = cells[0], cells[-1]
    ratio = top["cpu_us_per_msg"] / base["cpu_us_per_msg"]
    verdict = {
        "rule": f"CPU/msg at {top['engines']:,} engines <= {REAL_LIMIT:g} x at {base['engines']}",
        "value": round(ratio, 2),
        "limit": REAL_LIMIT,
        "ok": ratio <= REAL_LIMIT,
    }
    if args.json:
        print(
            json.dumps(
                {
                    "cells": cells,
                    "checks": [verdict],
                    "ok": verdict["ok"],
                    "python": platform.python_version(),
                    "cpus": os.cpu_count(),
                    "note": "CPU time, one run per cell, on a shared 2-core machine",
                },
                indent=2,
            )
        )
    else:
        print(f"  {'ok  ' if verdict['ok'] else 'FAIL'} {verdict['rule']}: {verdict['value']}")
    return 0


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
    out = subprocess.run(
        [sys.executable, __file__, "--cell", str(engines), str(messages)], check=True, capture_output=True, text=True
    )
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
        out.append(
            {
                "rule": f"{e} engines: CPU/msg at {hi:,} msgs <= {TOLERANCE} x at {lo:,}",
                "value": round(ratio, 2),
                "limit": TOLERANCE,
                "ok": ratio <= TOLERANCE,
            }
        )
    base = engines[0]
    for e in engines[1:]:
        for n in messages:
            ratio = by[(e, n)] / by[(base, n)]
            limit = TOLERANCE * math.log10(e) / math.log10(base)
            out.append(
                {
                    "rule": f"{n:,} msgs: CPU/msg at {e} engines <= {limit:g} x at {base} (log-linear)",
                    "value": round(ratio, 2),
                    "limit": round(limit, 2),
                    "ok": ratio <= limit,
                }
            )
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
        (line,) = ax1.plot(xs, [c["cpu_us_per_msg"] for c in row], marker="o", label=f"{e} engines (CPU)")
        ax1.plot(
            xs,
            [c["us_per_msg"] for c in row],
            marker=".",
            linestyle="--",
            color=line.get_color(),
            label=f"{e} engines (wall)",
        )
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
    p.add_argument(
        "--cell",
        nargs=2,
        type=int,
        metavar=("ENGINES", "MESSAGES"),
        help="run one cell in this process and print it as one JSON line",
    )
    p.add_argument("--real", action="store_true", help="the real-path grid (releases, handlers, caps, restarts)")
    p.add_argument(
        "--real-cell",
        nargs=2,
        type=int,
        metavar=("ENGINES", "MESSAGES"),
        help="run one real-path cell in this process and print it as one JSON line",
    )
    p.add_argument("--messages", type=int, default=None, help="--real: messages per cell (default 30000)")
    p.add_argument("--load", metavar="JSON", help="check and plot the cells of an earlier --json output instead")
    args = p.parse_args(argv)
    if args.cell:
        print(json.dumps(run_cell(*args.cell)))
        return 0
    if args.real_cell:
        print(json.dumps(run_real_cell(*args.real_cell)))
        return 0
    if args.real:
        return real_main(args)
    cells = []
    if args.load:
        with open(args.load, encoding="utf-8") as f:
            cells = json.load(f)["cells"]
    for n in () if args.load else (QUICK_MESSAGES if args.quick else MESSAGES):
        for e in ENGINES:
            cell = run_cell_in_subprocess(e, n)
            cells.append(cell)
            if not args.json:
                print(
                    f"  {e:>5} engines {n:>9,} msgs  {cell['wall_s']:>8.2f} s  {cell['us_per_msg']:>6.2f} µs/msg "
                    f"(CPU {cell['cpu_us_per_msg']:.2f})  "
                    f"peak RSS {cell['peak_rss_mb']:>6.1f} MB  trace {cell['trace_mb']:.0f} MB",
                    flush=True,
                )
    verdicts = checks(cells)
    plot(cells, args.plot)
    out = {
        "cells": cells,
        "checks": verdicts,
        "ok": all(v["ok"] for v in verdicts),
        "plot": args.plot,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for v in verdicts:
            print(f"  {'ok  ' if v['ok'] else 'FAIL'} {v['rule']}: {v['value']}")
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
