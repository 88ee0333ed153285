"""Verify benchmark: how deep does `simroll verify` get in a time budget, and does it agree with fuzz?

Three groups of scenarios (3 engines each, except where a sparse target says otherwise):

* ``bug``: the founding fuzz targets (scenarios/fuzz_*.yaml), each hiding a bug; verify stops at
  the first (shortest) counterexample, so "depth completed" is the level below it;
* ``holds``: founding designs whose invariants hold under the same search space: the founding
  fuzz targets' documented fixes (bench/founding_fixed/) and fuzz_last_legacy searched for the
  invariant it does not break (no-incompatible-delivery). These measure the issue's goal, depth >= 3
  within 60 s: the ``goal`` column says whether it is met;
* ``sparse``: bench/sparse_backfill_race.yaml and every target of bench/targets/.

For each, run `verify` breadth-first until the CPU budget (default 60 s) is spent or a
counterexample is found, then `fuzz` (seed 0, budget 200, for the same invariant). Report the
deepest level explored completely, the schedules and distinct states explored, the depth of
verify's counterexample, and whether the two agree: both find the same invariant, or neither finds
anything (verify up to its depth). "fuzz deeper" means fuzz found a violation that needs more
deviations than verify reached.

    python bench/verify.py [--json] [--seconds 60] [--max-depth 6] [--only NAME ...] [--group G ...]
                           [--order promise|enumeration]

``--order enumeration`` runs each depth's schedules in the order they are enumerated (verify's
``order=False``, as before each depth was ordered by promise), to compare: both cover the same
schedules, so a row that completes a depth gives the same schedules and states either way.

CPU time (time.process_time, the verify process only: it runs every schedule itself, no
subprocess) paces the budget, so a busy machine does not shorten it.
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
# founding designs that hold: (row name, file, the invariant searched for or None for all)
HOLDS = [
    ("fuzz_add_column_two_release", ROOT / "bench" / "founding_fixed" / "fuzz_add_column_two_release.yaml", None),
    ("fuzz_last_legacy_acked", ROOT / "bench" / "founding_fixed" / "fuzz_last_legacy_acked.yaml", None),
    (
        "fuzz_last_legacy/no-incompatible-delivery",
        ROOT / "scenarios" / "fuzz_last_legacy.yaml",
        "no-incompatible-delivery",
    ),
    ("fuzz_backfill_race_guarded", ROOT / "bench" / "founding_fixed" / "fuzz_backfill_race_guarded.yaml", None),
]
GOAL_DEPTH = 3  # issue 19: depth >= 3 within 60 s on the founding scenarios


def targets() -> list[tuple[str, str, Path, str | None]]:
    """(group, row name, file, invariant searched for) of every row, in order."""
    out: list[tuple[str, str, Path, str | None]] = [
        ("bug", name, ROOT / "scenarios" / f"{name}.yaml", None) for name in FOUNDING
    ]
    out += [("holds", name, path, inv) for name, path, inv in HOLDS]
    out.append(("sparse", "sparse_backfill_race", ROOT / "bench" / "sparse_backfill_race.yaml", None))
    out += [("sparse", path.stem, path, None) for path in sorted((ROOT / "bench" / "targets").glob("*.yaml"))]
    return out


def measure(
    group: str, name: str, path: Path, invariant: str | None, seconds: float, max_depth: int, order: bool = True
) -> dict:
    scenario = simroll.load_scenario(path)
    t0 = time.process_time()
    vr = verify(
        scenario, depth=max_depth, invariant=invariant, stop=lambda: time.process_time() - t0 > seconds, order=order
    )
    spent = time.process_time() - t0
    fr = fuzz(scenario, max_examples=200, seed=0, invariant=invariant)
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
        "group": group,
        "scenario": name,
        "depth_done": vr.depth_done,
        "goal": ("met" if vr.depth_done >= GOAL_DEPTH else "not met") if group == "holds" else "-",
        # every schedule of the search space ran: the deepest levels were empty (plan-level spaces end)
        "exhausted": vr.verified and len(vr.levels) > 1 and vr.levels[-1] == 0,
        "found_at_depth": len(vr.levels) - 1 if vr.found else None,
        "invariant": vr.invariant,
        "schedules": vr.schedules,
        "levels": vr.levels,
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
    p.add_argument("--group", nargs="*", choices=["bug", "holds", "sparse"], help="these groups only")
    p.add_argument(
        "--order",
        choices=["promise", "enumeration"],
        default="promise",
        help="the order of the schedules within a depth (default: promise, as simroll verify)",
    )
    args = p.parse_args()
    cols = [
        "group",
        "scenario",
        "depth_done",
        "goal",
        "exhausted",
        "found_at_depth",
        "invariant",
        "schedules",
        "levels",
        "states",
        "cpu_seconds",
        "fuzz_found",
        "fuzz_depth",
        "agree",
    ]
    rows = []
    if not args.json:
        print(" | ".join(cols), flush=True)
    for group, name, path, invariant in targets():
        if args.only and name not in args.only or args.group and group not in args.group:
            continue
        row = measure(group, name, path, invariant, args.seconds, args.max_depth, args.order == "promise")
        rows.append(row)
        if not args.json:
            print(" | ".join(str(row[c]) for c in cols), flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
