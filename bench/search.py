"""Search benchmark: how fast does `simroll fuzz` find each fuzz target, guided vs plain random?

For each fuzz scenario and each of 20 seeds, run the search once per method with the same
budget: `aim` (fuzz's default: pins aimed at the moments a run came close, mutation of the
best schedules), Hypothesis-guided (`guided`: generation steered by each invariant's
distance-to-violation score) and plain random sampling of the same space. Report, per method,
found/seeds and the median number of simulations to the first violation; for aim and guided
the median wall time, the shrink time and the length of the final counterexample (its
numbered steps, the violation included).

    python bench/search.py [--json] [--seeds 20] [--budget 200] [--only NAME ...] [--no-sweep]
                           [--methods aim,hypothesis,random]

A search that finds nothing within the budget counts as budget+1 simulations. The sparse targets
of bench/targets/ are meant to be found by plain random sampling in under 30 % of the seeds:
the `sparse` column says whether that held in this run. `--no-sweep` measures the guided search
without its opening random sweep (Hypothesis' generation alone).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import simroll  # noqa: E402
from simroll.explore.search import fuzz  # noqa: E402

SCENARIOS = ["fuzz_backfill_race", "fuzz_last_legacy", "fuzz_early_contract", "fuzz_add_column_one_release"]
# the sparse targets: random sampling rarely finds the bug, and target() has to steer
EXTRA = {"sparse_backfill_race": ROOT / "bench" / "sparse_backfill_race.yaml"}
EXTRA.update({path.stem: path for path in sorted((ROOT / "bench" / "targets").glob("*.yaml"))})


KEYS = {"aim": "aim", "hypothesis": "guided", "random": "random"}


def measure(name: str, seeds: int, budget: int, sweep: bool = True, methods: tuple[str, ...] = tuple(KEYS)) -> dict:
    scenario = simroll.load_scenario(EXTRA.get(name, ROOT / "scenarios" / f"{name}.yaml"))
    row: dict = {"scenario": name}
    for method in methods:
        key = KEYS[method]
        sims, secs, shrink, steps, found = [], [], [], [], 0
        for seed in range(seeds):
            r = fuzz(scenario, max_examples=budget, seed=seed, method=method, opening_sweep=sweep)
            if r.found:
                found += 1
                sims.append(r.first_violation_after)
                secs.append(r.search_seconds)
                shrink.append(r.shrink_seconds)
                steps.append(len(r.steps))
            else:
                sims.append(budget + 1)
                secs.append(r.search_seconds)
        row[f"{key}_median_simulations"] = statistics.median(sims)
        row[f"{key}_median_seconds"] = round(statistics.median(secs), 3)
        row[f"{key}_found"] = f"{found}/{seeds}"
        if key == "random":
            row["sparse"] = found < 0.3 * seeds
        else:
            row[f"{key}_shrink_seconds"] = round(statistics.median(shrink), 3) if shrink else None
            row[f"{key}_shrink_seconds_max"] = round(max(shrink), 3) if shrink else None
            row[f"{key}_counterexample_steps"] = statistics.median(steps) if steps else None
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--budget", type=int, default=200)
    p.add_argument("--only", nargs="*", help="these scenarios only")
    p.add_argument("--no-sweep", action="store_true", help="guided search without its opening random sweep")
    p.add_argument("--methods", default="aim,hypothesis,random", help="comma-separated: aim, hypothesis, random")
    args = p.parse_args()
    methods = tuple(m for m in args.methods.split(",") if m)
    bad = [m for m in methods if m not in KEYS]
    if bad:
        p.error(f"--methods: unknown {', '.join(bad)} (expected some of {', '.join(KEYS)})")
    names = [n for n in SCENARIOS + list(EXTRA) if not args.only or n in args.only]
    rows = []
    for name in names:
        rows.append(measure(name, args.seeds, args.budget, not args.no_sweep, methods))
        if not args.json:  # one row at a time: a long run shows its progress
            if len(rows) == 1:
                print(" | ".join(_columns(rows[0])), flush=True)
            print(" | ".join(str(rows[-1][c]) for c in _columns(rows[0])), flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))


def _columns(row: dict) -> list[str]:
    cols = ["scenario"]
    for suffix in ("found", "median_simulations"):
        cols += [f"{k}_{suffix}" for k in ("aim", "guided", "random") if f"{k}_{suffix}" in row]
    cols += [c for c in ("sparse",) if c in row]
    for k in ("aim", "guided"):
        cols += [
            f"{k}_{c}" for c in ("shrink_seconds", "shrink_seconds_max", "counterexample_steps") if f"{k}_{c}" in row
        ]
    return cols


if __name__ == "__main__":
    main()
