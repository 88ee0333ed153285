"""Verify benchmark: how deep does `simroll verify` get in a time budget, and does it agree with fuzz?

For each founding fuzz scenario (3 engines) and each sparse target of bench/targets/, run
`verify` breadth-first until the CPU budget (default 60 s) is spent or a counterexample is
found, then `fuzz` (seed 0, budget 200). Report the deepest level explored completely, the
schedules and distinct states explored, the depth of verify's counterexample, and whether the
two agree: both find the same invariant, or neither finds anything (verify up to its depth).
"fuzz deeper" means fuzz found a violation that needs more deviations than verify reached.

    python bench/verify.py [--json] [--seconds 60] [--max-depth 6] [--only NAME ...]

CPU time (time.process_time) paces the budget, so a busy machine does not shorten it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import simroll  # noqa: E402
from simroll.explore.search import deviations, fuzz  # noqa: E402
from simroll.explore.verify import verify  # noqa: E402

FOUNDING = ["fuzz_add_column_one_release", "fuzz_early_contract", "fuzz_last_legacy", "fuzz_backfill_race"]


def targets() -> dict[str, Path]:
    out = {name: ROOT / "scenarios" / f"{name}.yaml" for name in FOUNDING}
    out["sparse_backfill_race"] = ROOT / "bench" / "sparse_backfill_race.yaml"
    for path in sorted((ROOT / "bench" / "targets").glob("*.yaml")):
        out[path.stem] = path
    return out


def measure(name: str, path: Path, seconds: float, max_depth: int) -> dict:
    scenario = simroll.load_scenario(path)
    t0 = time.process_time()
    vr = verify(scenario, depth=max_depth, stop=lambda: time.process_time() - t0 > seconds)
    spent = time.process_time() - t0
    fr = fuzz(scenario, max_examples=200, seed=0)
    fuzz_depth = deviations(fr.schedule) if fr.schedule is not None else None
    if vr.found and fr.found:
        agree = "yes" if vr.invariant == fr.invariant else f"no ({vr.invariant} vs {fr.invariant})"
    elif vr.found:
        agree = "fuzz missed it"
    elif fr.found:
        agree = "fuzz deeper" if fuzz_depth is not None and fuzz_depth > vr.depth_done else "NO: verify missed it"
    else:
        agree = "yes (neither found)"
    return {
        "scenario": name,
        "depth_done": vr.depth_done,
        "found_at_depth": len(vr.levels) - 1 if vr.found else None,
        "invariant": vr.invariant,
        "schedules": vr.schedules,
        "states": vr.states,
        "cpu_seconds": round(spent, 1),
        "fuzz_found": fr.invariant if fr.found else None,
        "fuzz_depth": fuzz_depth,
        "agree": agree,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--seconds", type=float, default=60.0, help="CPU seconds per scenario")
    p.add_argument("--max-depth", type=int, default=6)
    p.add_argument("--only", nargs="*", help="these scenarios only")
    args = p.parse_args()
    cols = [
        "scenario",
        "depth_done",
        "found_at_depth",
        "invariant",
        "schedules",
        "states",
        "cpu_seconds",
        "fuzz_found",
        "fuzz_depth",
        "agree",
    ]
    rows = []
    if not args.json:
        print(" | ".join(cols), flush=True)
    for name, path in targets().items():
        if args.only and name not in args.only:
            continue
        row = measure(name, path, args.seconds, args.max_depth)
        rows.append(row)
        if not args.json:
            print(" | ".join(str(row[c]) for c in cols), flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
