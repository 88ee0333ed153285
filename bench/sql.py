"""The SQLite backend's cost against the location model, on the same scenarios.

    python bench/sql.py [--json] [--repeat R] [--scale K] [SCENARIO ...]

Each scenario (default: the database-heavy bundled ones, lost_dual_writes_safe.yaml and
trigger_sync.yaml) runs on ``database.backend: location`` and on ``sqlite``, alternately,
``--repeat`` times (default 5), with every invariant checked online and the trace hashed but not
kept; the best CPU time (``time.process_time``) of each is kept, on a shared machine wall time
also measures the neighbours. ``--scale K`` multiplies the workload's stop time (and every
plan step's pause) by K for longer runs. The figure is ``ratio``: SQLite's CPU time / the
location model's (the target: at most 3). Whether the two traces are byte-identical (the
derived SQL reproduces the location model) is printed beside it.

A benchmark, not a test: it prints figures and asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import simroll
from simroll.run import run_scenario

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = [ROOT / "scenarios" / "lost_dual_writes_safe.yaml", ROOT / "scenarios" / "patterns" / "trigger_sync.yaml"]


def _backend(s: simroll.Scenario, backend: str) -> simroll.Scenario:
    return s.model_copy(update={"database": s.database.model_copy(update={"backend": backend})})


def _scaled(s: simroll.Scenario, k: float) -> simroll.Scenario:
    if k == 1:
        return s
    wl = s.workload.model_copy(update={"stop": s.workload.stop * k})
    plan = [step.model_copy(update={"after": step.after * k}) for step in s.plan]
    return s.model_copy(update={"workload": wl, "plan": plan})


def measure(path: Path, repeat: int, scale: float) -> dict[str, Any]:
    base = _scaled(simroll.load_scenario(path), scale)
    runs = {b: _backend(base, b) for b in ("location", "sqlite")}
    best = {b: float("inf") for b in runs}
    sha: dict[str, str] = {}
    events = 0
    for _ in range(repeat):
        for b, s in runs.items():
            t0 = time.process_time()
            r = run_scenario(s, keep_trace=False)
            dt = time.process_time() - t0
            best[b] = min(best[b], dt)
            sha[b] = r.trace_sha256
            events = r.events
    return {
        "scenario": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
        "events": events,
        "location_cpu_s": round(best["location"], 4),
        "sqlite_cpu_s": round(best["sqlite"], 4),
        "ratio": round(best["sqlite"] / best["location"], 2),
        "same_trace": sha["location"] == sha["sqlite"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenarios", nargs="*", type=Path, help="scenario files (default: two bundled ones)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the workload's duration by this")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows = [measure(p.resolve(), args.repeat, args.scale) for p in (args.scenarios or DEFAULT)]
    env = {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version, "repeat": args.repeat}
    if args.json:
        json.dump({"env": env, "results": rows}, sys.stdout, indent=2)
        print()
        return 0
    print(f"python {env['python']}, SQLite {env['sqlite']}, best of {args.repeat} (CPU seconds)")
    for r in rows:
        print(
            f"{r['scenario']:<48} {r['events']:>8} events  location {r['location_cpu_s']:.3f} s  "
            f"sqlite {r['sqlite_cpu_s']:.3f} s  ratio {r['ratio']:.2f}x  same trace: {r['same_trace']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
