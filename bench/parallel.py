"""Parallel benchmark: fuzz examples per second and sweep cells per second on 1 and 2 workers.

    python bench/parallel.py [--json] [--budget 200] [--dask]

Three workloads, each with 1 local process and with 2 (``--dask``: also on a
``distributed.LocalCluster`` of 2 worker processes):

* ``fuzz``: what ``simroll fuzz scenarios/single_upgraded_pinned.yaml --max-examples N
  --no-db --workers W`` does (the scenario holds, so the whole budget runs). Only the random
  sweep (a tenth of the budget) and the minimisation run on the workers; Hypothesis'
  guided phase runs in the calling process, so this figure barely moves with workers.
* ``random``: ``simroll.explore.search.fuzz(..., method="random")``, the same budget all random,
  every run on the workers: the figure that shows what the executor gives.
* ``sweep``: ``simroll sweep`` of pause length x engine count on the same scenario with the
  version pin removed under version routing (the worst queue wait in each cell).

Wall time includes starting the local workers, as the command does (a Dask cluster is
started once, before timing). Each setting is measured ``--repeat`` times, interleaved, and
the fastest is kept. The results (counterexample, table) must be the same for every worker
count; the benchmark checks that and says so. Figures depend on the machine and on what else
runs on it: the load average is printed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import simroll  # noqa: E402
from simroll.explore.parallel import make_executor  # noqa: E402
from simroll.explore.search import fuzz  # noqa: E402
from simroll.explore.sweep import run_sweep  # noqa: E402

SCENARIO = ROOT / "scenarios" / "single_upgraded_pinned.yaml"
SWEEP = [
    "plan[1].wait=0,15,30,60,90,120,160,200",
    "engines.count=3,4,5,6",
    "releases.new.rpc.cap=null",
    "bus.delivery=version-routed",
]
SWEEP_SEEDS = 3  # 8 x 4 cells x 3 seeds = 96 runs


def _executor(workers: int, cluster):
    return make_executor(dask=cluster.scheduler_address) if cluster is not None else make_executor(workers)


def measure(kind: str, workers: int, budget: int, cluster=None) -> dict:
    """One workload on ``workers`` local processes (or on ``cluster``): runs, seconds, runs per second."""
    scenario = simroll.load_scenario(SCENARIO)
    cpu0 = _cpu()
    t0 = time.perf_counter()
    with _executor(workers, cluster) as ex:
        if kind == "sweep":
            table = run_sweep(
                scenario, SWEEP, seeds=SWEEP_SEEDS, executor=ex, source=str(SCENARIO.relative_to(ROOT))
            ).to_json()
            runs = sum(len(c["runs"]) for c in table["cells"])
            identity = json.dumps(table, sort_keys=True)
        else:
            r = fuzz(
                scenario,
                max_examples=budget,
                seed=0,
                method="random" if kind == "random" else "hypothesis",
                executor=ex,
            )
            runs = r.examples
            identity = json.dumps([r.found, r.invariant, r.examples, r.trace_sha256])
    secs = time.perf_counter() - t0
    cpu1 = _cpu()
    row = {
        "workload": kind,
        "workers": "dask-local-2" if cluster is not None else workers,
        "runs": runs,
        "seconds": round(secs, 2),
        "runs_per_second": round(runs / secs, 1),
        "result_sha256": hashlib.sha256(identity.encode()).hexdigest()[:16],
        # CPU seconds of this process and of the local worker processes (reaped when the pool
        # closes); unlike wall time they hardly depend on other jobs. Dask workers are not counted.
        "cpu_main": round(cpu1[0] - cpu0[0], 2),
        "cpu_workers": None if cluster is not None else round(cpu1[1] - cpu0[1], 2),
    }
    return row


def _cpu() -> tuple[float, float]:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--budget", type=int, default=200, help="examples per fuzz run (default 200)")
    p.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="measure each this many times, keep the fastest "
        "(other jobs on the machine only ever slow a run down; default 3)",
    )
    p.add_argument(
        "--dask",
        action="store_true",
        help="also run on a local Dask cluster of 2 workers "
        "(started once, before timing: as an existing cluster would be)",
    )
    args = p.parse_args()
    load_before = os.getloadavg()
    best: dict[tuple[str, str], dict] = {}

    def keep(row: dict) -> None:
        key = (row["workload"], str(row["workers"]))
        if key not in best or row["seconds"] < best[key]["seconds"]:
            if key in best and best[key]["result_sha256"] != row["result_sha256"]:
                row["result_sha256"] = "DIFFERS between repeats"
            best[key] = row

    for _ in range(args.repeat):  # interleaved, so a busy spell of the machine hits every setting alike
        for kind in ("fuzz", "random", "sweep"):
            for workers in (1, 2):
                keep(measure(kind, workers, args.budget))
    if args.dask:
        from distributed import LocalCluster

        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            for _ in range(args.repeat):
                for kind in ("fuzz", "random", "sweep"):
                    keep(measure(kind, 2, args.budget, cluster))
    rows = list(best.values())
    for kind in ("fuzz", "random", "sweep"):
        same = {r["result_sha256"] for r in rows if r["workload"] == kind}
        base = next(r for r in rows if r["workload"] == kind and r["workers"] == 1)
        for r in rows:
            if r["workload"] == kind:
                r["speedup"] = round(r["runs_per_second"] / base["runs_per_second"], 2)
                r["same_result"] = len(same) == 1
    info = {
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "budget": args.budget,
        "repeat": args.repeat,
    }
    if args.json:
        print(json.dumps({"machine": info, "rows": rows}, indent=2))
        return
    print(
        f"cpus {info['cpus']}, load average before {info['load_average_before']}, "
        f"after {info['load_average_after']}; fastest of {args.repeat}"
    )
    cols = [
        "workload",
        "workers",
        "runs",
        "seconds",
        "runs_per_second",
        "speedup",
        "cpu_main",
        "cpu_workers",
        "same_result",
    ]
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r[c]) for c in cols))


if __name__ == "__main__":
    main()
