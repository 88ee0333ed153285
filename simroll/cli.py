"""The ``simroll`` command. It only wires library calls; errors are caught once, in :func:`main`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from simroll.errors import SimrollError, UsageError
from simroll.loader import load_scenario, scenario_json_schema
from simroll.model.spec import Scenario
from simroll.report import format_text
from simroll.runner import run_scenario


def _with_limits(s: Scenario, args: argparse.Namespace) -> Scenario:
    update = {}
    if getattr(args, "max_time", None) is not None:
        update["max_time"] = args.max_time
    if getattr(args, "max_events", None) is not None:
        update["max_events"] = args.max_events
    return s.model_copy(update={"limits": s.limits.model_copy(update=update)}) if update else s


def _check_new_file(path: str | None, force: bool, flag: str) -> None:
    if path is not None and Path(path).exists() and not force:
        raise UsageError(f"{path}: {flag}: file exists; pass --force to overwrite it")


def _positive(kind):
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if v <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return v
    return parse


def _seed(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if not 0 <= v < 2**63:
        raise argparse.ArgumentTypeError(f"expected 0 <= seed < 2**63, got {text!r}")
    return v


def cmd_run(args: argparse.Namespace) -> int:
    scenario = _with_limits(load_scenario(args.scenario), args)
    _check_new_file(args.trace, args.force, "--trace")
    result = run_scenario(scenario, seed=args.seed, trace_path=args.trace)
    if args.check_determinism:
        again = run_scenario(scenario, seed=args.seed)
        if again.trace_sha256 != result.trace_sha256:
            print(f"simroll: determinism check FAILED: two runs of {args.scenario} with seed {result.seed} gave "
                  f"traces {result.trace_sha256} and {again.trace_sha256}", file=sys.stderr)
            return 3
    if args.json:
        out = result.to_json()
        if args.check_determinism:
            out["determinism_checked"] = True
        print(json.dumps(out, indent=2))
    else:
        print(format_text(result))
        if args.check_determinism:
            print("determinism: two runs gave the same trace")
    return 0 if result.ok else 1


def cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(scenario_json_schema(), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="simroll", description="Deterministic simulator of mixed-version clusters "
                                "for designing rolling upgrades.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="replay a scenario and check its invariants (exit 0 held, 1 violated, 2 bad input)")
    r.add_argument("scenario", help="scenario file (YAML)")
    r.add_argument("--seed", type=_seed, default=None, help="seed (default: the scenario's)")
    r.add_argument("--trace", metavar="FILE", help="write the trace as JSON Lines")
    r.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    r.add_argument("--force", action="store_true", help="overwrite output files that exist")
    r.add_argument("--max-time", type=_positive(float), default=None, help="limit of simulated seconds")
    r.add_argument("--max-events", type=_positive(int), default=None, help="limit of trace events")
    r.add_argument("--check-determinism", action="store_true",
                   help="run twice and fail (exit 3) if the traces differ")
    r.set_defaults(fn=cmd_run)

    s = sub.add_parser("schema", help="print the JSON Schema of scenario files")
    s.set_defaults(fn=cmd_schema)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except SimrollError as e:
        print(f"simroll: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("simroll: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
