"""The ``simroll`` command. It only wires library calls; errors are caught once, in :func:`main`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from simroll.errors import SimrollError, UsageError
from simroll.scenario.load import load_scenario, scenario_json_schema
from simroll.scenario.spec import Scenario
from simroll.view.report import format_text
from simroll.run import first_difference, run_scenario
from simroll.explore.sweep import METRICS


EXIT_PARTIAL = 4  # the run stopped at a limit before anything was violated: not a proof that it holds


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
        if not v > 0:  # also refuses nan
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
    _check_new_file(args.html, args.force, "--html")
    result = run_scenario(scenario, seed=args.seed, trace_path=args.trace, overwrite=args.force)
    if args.check_determinism:
        again = run_scenario(scenario, seed=args.seed)
        if again.trace_sha256 != result.trace_sha256:
            print(f"simroll: DETERMINISM CHECK FAILED: two runs of {args.scenario} with seed {result.seed} gave "
                  f"different traces ({result.trace_sha256} and {again.trace_sha256}); "
                  f"{first_difference(result, again)}. This is a bug in simroll: please report it with the "
                  "scenario file.", file=sys.stderr)
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
    _write_pictures(result, args)
    if not result.ok:
        return 1
    return EXIT_PARTIAL if result.limited else 0


def _write_pictures(result, args: argparse.Namespace) -> None:
    """``--plots DIR`` and ``--html FILE`` of ``simroll run`` (paths written go to stderr: stdout may be JSON)."""
    if args.plots:
        from simroll.view.plots import write_plots  # matplotlib is slow to import: only when asked for

        for p in write_plots(result, args.plots, fmt=args.format, overwrite=args.force):
            print(f"simroll: wrote {p}", file=sys.stderr)
    if args.html:
        from simroll.view.html import write_html

        print(f"simroll: wrote {write_html(result, args.html, overwrite=args.force)}", file=sys.stderr)


def cmd_plot(args: argparse.Namespace) -> int:
    from simroll.view.plots import load_trace, write_plots

    if args.source.endswith(".jsonl"):  # a trace from `simroll run --trace`: plot it as it is
        if args.seed is not None:
            raise UsageError(f"{args.source}: --seed: a trace is one finished run; it takes no seed")
        source = load_trace(args.source)
    else:
        source = run_scenario(load_scenario(args.source), seed=args.seed)
    for p in write_plots(source, args.out, fmt=args.format, overwrite=args.force):
        print(p)
    return 0


def _default_out(scenario_path: str) -> str:
    """``NAME.counterexample.yaml`` beside the scenario, or the first free ``NAME.counterexample.K.yaml``."""
    p = Path(scenario_path)
    stem = p.name[:-5] if p.name.endswith(".yaml") else p.stem
    candidate = p.with_name(f"{stem}.counterexample.yaml")
    k = 1
    while candidate.exists():
        candidate = p.with_name(f"{stem}.counterexample.{k}.yaml")
        k += 1
    return str(candidate)


def _progress_printer():
    """A one-line progress display on a terminal (stderr); nothing when stderr is not a terminal."""
    if not sys.stderr.isatty():
        return None
    import time

    last = [0.0]

    def show(phase: str, examples: int, best: dict[str, float]) -> None:
        now = time.monotonic()  # display throttling only; never reaches the search
        if now - last[0] < 0.1:
            return
        last[0] = now
        top = ", ".join(f"{k} {v:.3g}" for k, v in sorted(best.items()))
        print(f"\r\x1b[K{phase}: {examples} runs | closest so far: {top}"[:200], end="", file=sys.stderr, flush=True)

    return show


def cmd_fuzz(args: argparse.Namespace) -> int:
    import os
    import signal

    from simroll.explore.search import fuzz, save_counterexample

    scenario = load_scenario(args.scenario)
    if args.out is not None:
        _check_new_file(args.out, args.force, "--out")
    out = args.out or _default_out(args.scenario)
    database = None
    if not args.no_db:
        database = args.db or (".simroll/hypothesis" if Path(".simroll/hypothesis").is_dir() and
                               not os.environ.get("CI") else None)

    def on_term(signum, frame):  # SIGTERM: stop like Ctrl-C, keeping what was found
        raise KeyboardInterrupt

    from simroll.explore.parallel import make_executor

    previous = signal.signal(signal.SIGTERM, on_term)
    # a process started in the background inherits SIGINT ignored; Ctrl-C must still stop the search
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    show = _progress_printer()
    executor = make_executor(args.workers, args.dask)
    try:
        fr = fuzz(scenario, max_examples=args.max_examples, seed=args.seed, database=database, progress=show,
                  executor=executor, method=args.method)
    finally:
        executor.close()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        if show is not None:
            print("\r\x1b[K", end="", file=sys.stderr, flush=True)
    if fr.found:
        save_counterexample(fr, out, args.scenario, force=args.force or args.out is None)
    if args.json:
        print(json.dumps(fr.to_json(), indent=2))
    else:
        status = " (interrupted: partial result)" if fr.interrupted else ""
        if fr.found:
            print(f"FOUND a violation of {fr.invariant} after {fr.examples} runs{status}:")
            print("\n".join(f"  {line}" for line in fr.steps))
            print(f"\ncounterexample written to {out}; replay it with: simroll run {out}")
            print(f"trace sha256 {fr.trace_sha256}")
        else:
            print(f"no violation found in {fr.examples} runs (seed {fr.seed}){status}")
    if fr.interrupted and not fr.found:
        return 130
    return 1 if fr.found else 0


def cmd_expand(args: argparse.Namespace) -> int:
    from simroll.scenario.load import dump_scenario

    print(dump_scenario(load_scenario(args.scenario)), end="")
    return 0


def cmd_matrix(args: argparse.Namespace) -> int:
    from simroll.explore.matrix import build_matrix

    matrix = build_matrix(args.dir, fuzz=args.fuzz, seed=args.seed)
    command = " ".join(["simroll matrix", args.dir] + (["--fuzz", str(args.fuzz)] if args.fuzz else [])
                       + (["--out", args.out] if args.out else []))
    if args.out:
        matrix.write(args.out, force=args.force, command=command)
    if args.json:
        print(json.dumps(matrix.to_json(), indent=2))
    else:
        print(matrix.to_markdown(command), end="")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from simroll.explore.parallel import make_executor
    from simroll.explore.sweep import SweepParam, run_sweep

    scenario = load_scenario(args.scenario)
    params = [SweepParam.parse(text) for text in args.param]
    if args.out:  # refuse existing outputs before the long part
        from simroll._io import check_new_file
        from simroll.explore.sweep import output_paths

        for path in output_paths(args.out).values():
            check_new_file(path, args.force)
    with make_executor(args.workers, args.dask) as executor:
        result = run_sweep(scenario, params, seeds=args.seeds, executor=executor, source=args.scenario)
    command = " ".join(["simroll sweep", args.scenario] + [f"--param {t}" for t in args.param]
                       + (["--seeds", str(args.seeds)] if args.seeds else []))
    if args.out:
        for path in result.write(args.out, force=args.force, metric=args.metric, command=command):
            print(f"simroll: wrote {path}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(result.to_markdown(command), end="")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(scenario_json_schema(), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="simroll", description="Deterministic simulator of mixed-version clusters "
                                "for designing rolling upgrades.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="replay a scenario and check its invariants (exit 0 held, 1 violated, 2 bad input, "
                       "4 stopped at a limit with nothing violated so far)")
    r.add_argument("scenario", help="scenario file (YAML)")
    r.add_argument("--seed", type=_seed, default=None, help="seed (default: the scenario's)")
    r.add_argument("--trace", metavar="FILE", help="write the trace as JSON Lines")
    r.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    r.add_argument("--force", action="store_true", help="overwrite output files that exist")
    r.add_argument("--max-time", type=_positive(float), default=None, help="limit of simulated seconds")
    r.add_argument("--max-events", type=_positive(int), default=None, help="limit of trace events")
    r.add_argument("--check-determinism", action="store_true",
                   help="run twice and fail (exit 3) if the traces differ")
    r.add_argument("--plots", metavar="DIR", help="write the plots that explain the result to DIR")
    r.add_argument("--format", choices=("png", "svg"), default="png", help="format of --plots (default png)")
    r.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    r.set_defaults(fn=cmd_run)

    pl = sub.add_parser("plot", help="plot a scenario's run, or a trace (.jsonl) from `simroll run --trace`")
    pl.add_argument("source", metavar="SCENARIO_OR_TRACE", help="scenario file (YAML) or trace file (.jsonl)")
    pl.add_argument("--out", metavar="DIR", required=True, help="directory for the plots (created if needed)")
    pl.add_argument("--format", choices=("png", "svg"), default="png", help="image format (default png)")
    pl.add_argument("--seed", type=_seed, default=None, help="seed of the run (scenarios only)")
    pl.add_argument("--force", action="store_true", help="overwrite plot files that exist")
    pl.set_defaults(fn=cmd_plot)

    s = sub.add_parser("schema", help="print the JSON Schema of scenario files")
    s.set_defaults(fn=cmd_schema)

    f = sub.add_parser("fuzz", help="search orderings, timings and crash points for a violation "
                                    "(exit 1 found, 0 none within the budget, 2 bad input)")
    f.add_argument("scenario", help="scenario file (YAML)")
    f.add_argument("--max-examples", type=_positive(int), default=200, help="simulations Hypothesis may generate")
    f.add_argument("--seed", type=_seed, default=0, help="seed of the search (default 0)")
    f.add_argument("--out", metavar="FILE", help="where to write the counterexample scenario "
                   "(default: NAME.counterexample.yaml beside the scenario, never overwriting)")
    f.add_argument("--json", action="store_true", help="print one JSON object")
    f.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    f.add_argument("--db", metavar="DIR", help="Hypothesis example database: past failures are replayed first "
                   "(default: .simroll/hypothesis if that directory exists and CI is not set)")
    f.add_argument("--no-db", action="store_true", help="use no example database")
    f.add_argument("--workers", type=_positive(int), default=1,
                   help="local processes for the random sweep and the minimisation (same result for any number)")
    f.add_argument("--dask", metavar="ADDRESS", help="run them on this Dask scheduler instead (extra: dask)")
    f.add_argument("--method", choices=("hypothesis", "random"), default="hypothesis",
                   help="hypothesis: a random sweep (a tenth of the budget) then guided generation, which runs in "
                   "one process; random: plain random sampling of the whole budget, all of it on the workers")
    f.set_defaults(fn=cmd_fuzz)

    e = sub.add_parser("expand", help="print a scenario with its patterns expanded (releases, plan steps), as YAML")
    e.add_argument("scenario", help="scenario file (YAML)")
    e.set_defaults(fn=cmd_expand)

    m = sub.add_parser("matrix", help="the safety matrix: each scenario in DIR under each plan or fault family "
                                      "and both delivery models")
    m.add_argument("dir", metavar="DIR", help="directory of scenario files (*.yaml)")
    m.add_argument("--out", metavar="PREFIX", help="write PREFIX.md, PREFIX.json and PREFIX.replays/*.yaml")
    m.add_argument("--json", action="store_true", help="print the matrix as JSON instead of Markdown")
    m.add_argument("--fuzz", type=_positive(int), default=None, metavar="N",
                   help="also search each cell whose default run holds (N examples)")
    m.add_argument("--seed", type=_seed, default=0, help="seed of --fuzz (default 0)")
    m.add_argument("--force", action="store_true", help="overwrite output files that exist")
    m.set_defaults(fn=cmd_matrix)

    sw = sub.add_parser("sweep", help="run a grid of scenario parameters; print a table, write it and a heatmap")
    sw.add_argument("scenario", help="scenario file (YAML)")
    sw.add_argument("--param", action="append", required=True, metavar="KEY=V1,V2,...",
                    help="a path into the scenario and its values, e.g. engines.count=3,5,10 or "
                    "plan[1].wait=0,30,60 (repeat for more parameters; the first varies slowest)")
    sw.add_argument("--seeds", type=_positive(int), default=None, metavar="N",
                    help="run each cell with seeds 0..N-1 and report the worst and the median "
                    "(default: once, with the scenario's seed)")
    sw.add_argument("--metric", default="worst_wait",
                    choices=tuple(METRICS),
                    help="what the heatmap shows over the first two parameters that take more than one "
                    "value (default worst_wait)")
    sw.add_argument("--workers", type=_positive(int), default=1, help="local processes (same table for any number)")
    sw.add_argument("--dask", metavar="ADDRESS", help="run on this Dask scheduler instead (extra: dask)")
    sw.add_argument("--out", metavar="PREFIX", help="write PREFIX.md, PREFIX.json, PREFIX.csv and the heatmap PREFIX.png")
    sw.add_argument("--json", action="store_true", help="print the table as JSON instead of Markdown")
    sw.add_argument("--force", action="store_true", help="overwrite output files that exist")
    sw.set_defaults(fn=cmd_sweep)
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
