"""Small runs: simulations per CPU second for each scenario, and where a run's time goes.

    python bench/runs.py [--json] [--quick] [--min-cpu S] [--repeat R] [--single N] [SCENARIO ...]

For each scenario file (default: every ``scenarios/*.yaml``, the founding scenarios and the
``fuzz_*`` targets; ``scenarios/patterns/`` is not included) the scenario is loaded once and
then run again and again, as a search does, with ``run_scenario(scenario, keep_trace=False)``
(what ``simroll fuzz`` calls per example, less ``apply_schedule``). A batch runs until it has
used ``--min-cpu`` CPU seconds (default 1.0; ``--quick`` 0.3) and at least 3 runs; ``--repeat``
batches (default 3; ``--quick`` 2), the best kept. Figures are CPU time
(``time.process_time``), on a shared 2-core machine.

Columns: ``runs/cpu-s`` (runs per CPU second of a full run: hashed, with coverage and
availability), ``search`` (runs per CPU second as ``simroll fuzz`` runs each example:
``run_scenario(report=False)``, verdicts and scores only, the trace neither hashed nor encoded;
the target of issue 16 is on this column), ``events`` (trace records per
run), ``ms/run``, and the split of a run: ``sim ms`` is ``Simulation.run()`` (the event loop:
starting the engines, the workload, the plan, online checking, hashing, the final records)
and ``setup ms`` is the rest of ``run_scenario``: building the trace and the checkers, building
the ``Simulation`` (SimPy environment, broker, database, cluster, compiling the releases)
and assembling the ``RunResult``. The split is measured in-process by wrapping
``Simulation.run`` with a CPU timer for the duration of the benchmark (simroll's code is
not changed); ``setup share`` = setup / total. ``load ms`` (YAML parse + validation, once
per file, not per run) is shown for reference. ``us/event`` = total / events.
``--single N`` also times N single runs of each kind, alternated, and reports 1 / the fastest
(the target line then uses it): on a loaded machine the fastest run moves less than a batch's mean.

A benchmark, not a test: it prints figures and asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

import simroll  # noqa: E402

try:  # the house split moved these (simroll.runner, simroll.sim.cluster before)
    from simroll.run import run_scenario
    from simroll.sim import kernel as _kernel_module
except ImportError:  # pragma: no cover - older trees, for before/after figures
    from simroll.runner import run_scenario  # type: ignore[no-redef]

    from simroll.sim import cluster as _kernel_module  # type: ignore[no-redef]

Simulation = _kernel_module.Simulation
_HAS_REPORT = "report" in run_scenario.__code__.co_varnames  # older trees have no search mode
TARGET = ("fuzz_backfill_race", 200)  # issue 16: >= 200 runs per CPU second


class _RunClock:
    """Wraps ``Simulation.run`` to add up the CPU time spent in it."""

    def __init__(self) -> None:
        self.cpu = 0.0
        self._orig = Simulation.run

    def __enter__(self) -> _RunClock:
        orig, clock = self._orig, self

        def run(sim: Any, *a: Any, **kw: Any) -> Any:
            c0 = time.process_time()
            try:
                return orig(sim, *a, **kw)
            finally:
                clock.cpu += time.process_time() - c0

        Simulation.run = run  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        Simulation.run = self._orig  # type: ignore[method-assign]


def batch(scenario: Any, min_cpu: float, **kw: Any) -> dict[str, float]:
    """Run ``scenario`` until ``min_cpu`` CPU seconds (and 3 runs) are used: runs, total CPU, CPU in run()."""
    n = 0
    with _RunClock() as clock:
        c0 = time.process_time()
        while True:
            run_scenario(scenario, keep_trace=False, **kw)
            n += 1
            used = time.process_time() - c0
            if used >= min_cpu and n >= 3:
                break
    return {"runs": n, "cpu": used, "sim": clock.cpu}


def fastest(scenario: Any, n: int) -> tuple[float, float]:
    """The smallest CPU time of one full run and of one search run, of ``n`` each, alternated: on a
    loaded machine the fastest single run moves less than a batch's mean."""
    full = search = float("inf")
    for _ in range(n):
        c0 = time.process_time()
        run_scenario(scenario, keep_trace=False)
        full = min(full, time.process_time() - c0)
        if _HAS_REPORT:
            c0 = time.process_time()
            run_scenario(scenario, keep_trace=False, report=False)
            search = min(search, time.process_time() - c0)
    return full, search


def measure(path: Path, min_cpu: float, repeat: int, single: int = 0) -> dict[str, Any]:
    c0 = time.process_time()
    scenario = simroll.load_scenario(path)
    load = time.process_time() - c0
    first = run_scenario(scenario, keep_trace=False)  # warm-up (imports, caches); also the event count
    best: dict[str, float] | None = None
    for _ in range(repeat):
        b = batch(scenario, min_cpu)
        if best is None or b["cpu"] / b["runs"] < best["cpu"] / best["runs"]:
            best = b
    assert best is not None
    search_per = None  # what a search runs per example: verdicts and scores only (report=False)
    if _HAS_REPORT:
        for _ in range(repeat):
            b = batch(scenario, min_cpu, report=False)
            per_run = b["cpu"] / b["runs"]
            search_per = per_run if search_per is None else min(search_per, per_run)
    per = best["cpu"] / best["runs"]
    sim = best["sim"] / best["runs"]
    full1, search1 = fastest(scenario, single) if single else (float("inf"), float("inf"))
    return {
        "fastest_full_per_cpu_s": round(1 / full1, 1) if single else None,
        "fastest_search_per_cpu_s": round(1 / search1, 1) if single and _HAS_REPORT else None,
        "scenario": path.stem,
        "runs_per_cpu_s": round(1 / per, 1),
        "search_runs_per_cpu_s": None if search_per is None else round(1 / search_per, 1),
        "events": first.events,
        "ms_per_run": round(per * 1e3, 3),
        "setup_ms": round((per - sim) * 1e3, 3),
        "sim_ms": round(sim * 1e3, 3),
        "setup_share": round((per - sim) / per, 3),
        "us_per_event": round(per / max(1, first.events) * 1e6, 2),
        "load_ms": round(load * 1e3, 2),
        "runs_timed": best["runs"],
        "ok": first.ok,
        "trace_sha256": first.trace_sha256,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("scenarios", nargs="*", help="scenario files (default: scenarios/*.yaml)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quick", action="store_true", help="0.3 CPU s per batch, 2 batches")
    p.add_argument("--min-cpu", type=float, default=None, help="CPU seconds per batch (default 1.0; quick 0.3)")
    p.add_argument("--repeat", type=int, default=None, help="batches per scenario, best kept (default 3; quick 2)")
    p.add_argument(
        "--single",
        type=int,
        default=0,
        metavar="N",
        help="also time N single runs of each kind and report 1 / the fastest (steadier under load)",
    )
    args = p.parse_args(argv)
    min_cpu = args.min_cpu if args.min_cpu is not None else (0.3 if args.quick else 1.0)
    repeat = args.repeat if args.repeat is not None else (2 if args.quick else 3)
    paths = [Path(s) for s in args.scenarios] or sorted((ROOT / "scenarios").glob("*.yaml"))
    rows = []
    for path in paths:
        row = measure(path, min_cpu, repeat, args.single)
        rows.append(row)
        if not args.json and len(rows) == 1:
            print(
                f"runs of one scenario, run_scenario(keep_trace=False); CPU time, best of {repeat} batches of "
                f">= {min_cpu:g} CPU s, on a shared 2-core machine"
            )
            print(
                f"  {'scenario':30} {'runs/cpu-s':>10} {'search':>7} {'events':>7} {'ms/run':>8} {'setup ms':>9} "
                f"{'sim ms':>8} {'setup share':>11} {'us/event':>9} {'load ms':>8}"
            )
        if not args.json:
            print(
                f"  {row['scenario']:30} {row['runs_per_cpu_s']:>10} {row['search_runs_per_cpu_s'] or '-':>7} "
                f"{row['events']:>7} {row['ms_per_run']:>8.2f} "
                f"{row['setup_ms']:>9.2f} {row['sim_ms']:>8.2f} {row['setup_share']:>11.0%} "
                f"{row['us_per_event']:>9.1f} {row['load_ms']:>8.1f}",
                flush=True,
            )
            if args.single:
                print(
                    f"  {'':30} fastest of {args.single} single runs: full {row['fastest_full_per_cpu_s']}, "
                    f"search {row['fastest_search_per_cpu_s'] or '-'} per CPU s",
                    flush=True,
                )
    target = next((r for r in rows if r["scenario"] == TARGET[0]), None)
    verdict = None
    if target is not None:
        value = target["fastest_search_per_cpu_s"] or target["search_runs_per_cpu_s"] or target["runs_per_cpu_s"]
        verdict = {
            "rule": f"{TARGET[0]}: >= {TARGET[1]} runs per CPU second (as a search runs them)",
            "value": value,
            "ok": value >= TARGET[1],
        }
    info = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "simroll": simroll.__file__,
        "min_cpu": min_cpu,
        "repeat": repeat,
        "note": "CPU time (time.process_time), best batch, on a shared 2-core machine",
    }
    if args.json:
        print(json.dumps({"machine": info, "rows": rows, "target": verdict}, indent=2))
    elif verdict is not None:
        print(f"  {'ok  ' if verdict['ok'] else 'FAIL'} {verdict['rule']}: {verdict['value']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
