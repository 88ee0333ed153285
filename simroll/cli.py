# PYTHON_ARGCOMPLETE_OK (shell completion: `eval "$(register-python-argcomplete simroll)"`, docs/cli.md)
"""The ``simroll`` command. It only wires library calls; errors are caught once, in :func:`main`."""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simroll._io import check_new_file
from simroll._version import __version__
from simroll.errors import SimrollError, UsageError
from simroll.explore.metrics import METRICS

if TYPE_CHECKING:
    from simroll._console import RunProgress
    from simroll.run import RunResult
    from simroll.scenario.spec import Scenario

# the commands import the library when they run, not when the module loads, so that
# `simroll --help` and `simroll --version` answer without loading the simulator (bench/startup.py)


EXIT_PARTIAL = 4  # the run stopped at a limit before anything was violated: not a proof that it holds
FUZZ_BUDGET = 200  # simulations a search may run, by default: `simroll fuzz` and the pytest plugin alike


def _with_limits(s: Scenario, args: argparse.Namespace) -> Scenario:
    """``s`` with ``--max-time`` / ``--max-events``. The flags may go past the bounds a file has
    (a plan whose last step is at t=1e9 needs ``--max-time 2e9`` to finish; ``inf`` is no time
    limit): a run stays bounded by its event limit and the work budget."""
    update = {}
    if getattr(args, "max_time", None) is not None:
        update["max_time"] = args.max_time
    if getattr(args, "max_events", None) is not None:
        update["max_events"] = args.max_events
    return s.model_copy(update={"limits": s.limits.model_copy(update=update)}) if update else s


def _check_new_file(path: str | None, overwrite: bool, flag: str) -> None:
    """:func:`simroll._io.check_new_file` for an optional output flag."""
    if path is not None:
        check_new_file(path, overwrite, flag)


def _paint(text: str, args: argparse.Namespace) -> str:
    """``text`` with its verdicts coloured when standard output takes colour (``--color``, ``NO_COLOR``)."""
    from simroll._console import paint, use_color

    return paint(text, use_color(sys.stdout, getattr(args, "color", "auto")))


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
    from simroll.run import first_difference, run_scenario
    from simroll.scenario.load import load_scenario
    from simroll.view.report import format_text

    scenario = _with_limits(load_scenario(args.scenario), args)
    _check_new_file(args.trace, args.force, "--trace")
    _check_new_file(args.html, args.force, "--html")
    if args.plots:  # every output is checked before the run, so a refusal never hides a verdict
        from simroll.view.plots import check_plots_dir

        check_plots_dir(args.plots, args.format, args.force)
    # a long run shows how far it is, on stderr (nothing for a run of a second or two)
    with _run_progress(scenario, f"run {args.scenario}") as show:
        result = run_scenario(scenario, seed=args.seed, trace_path=args.trace, overwrite=args.force, progress=show)
    again = None
    if args.check_determinism:
        with _run_progress(scenario, f"run {args.scenario} again (determinism check)") as show:
            again = run_scenario(scenario, seed=args.seed, progress=show)
    if again is not None:
        if again.trace_sha256 != result.trace_sha256:
            print(
                f"simroll: DETERMINISM CHECK FAILED: two runs of {args.scenario} with seed {result.seed} gave "
                f"different traces ({result.trace_sha256} and {again.trace_sha256}); "
                f"{first_difference(result, again)}. This is a bug in simroll: please report it with the "
                "scenario file.",
                file=sys.stderr,
            )
            return 3
    if args.json:
        out = result.to_json()
        if args.check_determinism:
            out["determinism_checked"] = True
        if args.strict:
            out["strict"] = True
            out["strict_failed"] = bool(result.ok and result.vacuous)
        print(json.dumps(out, indent=2))
    else:
        print(_paint(format_text(result), args))
        if args.check_determinism:
            print("determinism: two runs gave the same trace")
    _write_pictures(result, args)
    if not result.ok:
        return 1
    if args.strict and result.vacuous:
        print(
            f"simroll: --strict: {', '.join(result.vacuous)} had nothing to check (vacuous): exit 1",
            file=sys.stderr if args.json else sys.stdout,
        )
        return 1
    return EXIT_PARTIAL if result.limited else 0


def _run_progress(scenario: Scenario, label: str) -> RunProgress:
    """The progress display of one run (:class:`simroll._console.RunProgress`), in simulated
    seconds out of the workload's end, or ``limits.max_time`` (``--max-time``) when sooner."""
    from simroll._console import RunProgress

    end = scenario.workload.stop
    if "max_time" in scenario.limits.model_fields_set:
        end = min(end, scenario.limits.max_time)
    return RunProgress(float(end) if end > 0 else None, label)


def _write_pictures(result, args: argparse.Namespace) -> None:
    """``--plots DIR`` and ``--html FILE`` of ``simroll run`` (paths written go to stderr: stdout may be JSON)."""
    if args.plots:
        from simroll.view.plots import write_plots  # matplotlib is slow to import: only when asked for

        for p in write_plots(result, args.plots, fmt=args.format, overwrite=args.force):
            print(_one_line(f"simroll: wrote {p}"), file=sys.stderr)
    if args.html:
        from simroll.view.html import write_html

        print(_one_line(f"simroll: wrote {write_html(result, args.html, overwrite=args.force)}"), file=sys.stderr)


def cmd_plot(args: argparse.Namespace) -> int:
    from simroll.run import run_scenario
    from simroll.scenario.load import load_scenario
    from simroll.sim.trace import read_trace
    from simroll.view.plots import write_plots

    source: list[dict[str, Any]] | RunResult
    if args.source.endswith(".jsonl"):  # a trace from `simroll run --trace`: plot it as it is
        if args.seed is not None:
            raise UsageError(f"{args.source}: --seed: a trace is one finished run; it takes no seed")
        source = read_trace(args.source)
        try:
            paths = write_plots(source, args.out, fmt=args.format, overwrite=args.force)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            # read_trace checks every record's fields by kind; a trace that passes them and still
            # breaks a plot is a corrupted input (exit 2) all the same, not a bug of simroll
            raise UsageError(
                f"{args.source}: not a trace written by simroll run --trace ({type(e).__name__}: {str(e)[:100]})"
            ) from None
        for p in paths:
            print(p)
        return 0
    else:
        source = run_scenario(load_scenario(args.source), seed=args.seed)
    for p in write_plots(source, args.out, fmt=args.format, overwrite=args.force):
        print(p)
    return 0


def _check_db_dir(path: str) -> None:
    """``--db DIR`` must be a directory, or creatable as one, before the search starts."""
    p = Path(path)
    if os.path.lexists(p):
        if not p.is_dir():
            raise UsageError(f"{path}: --db: not a directory")
        return
    parent = p.parent
    while not os.path.lexists(parent) and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{path}: --db: {os.fspath(parent)!r} is not a directory")


def _write_counterexample(fr: Any, args: argparse.Namespace) -> str | None:
    """Write a found counterexample where asked (``--out``), else to ``.simroll/counterexamples/``
    under a name taken exclusively. A write that fails never loses the result: ``--out`` falls
    back to ``.simroll/counterexamples/``, and if that fails too the caller prints the scenario
    itself. Returns why nothing could be written, or None."""
    from simroll.explore.search import save_counterexample, save_new_counterexample

    if args.out is not None:
        try:
            save_counterexample(fr, args.out, args.scenario, overwrite=args.force)
            return None
        except (UsageError, OSError) as e:
            print(
                f"simroll: {_one_line(_reason(e))}; writing the counterexample under .simroll/counterexamples/ instead",
                file=sys.stderr,
            )
    try:
        save_new_counterexample(fr, args.scenario)
        return None
    except (UsageError, OSError) as e:
        return _one_line(_reason(e))


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.filename is not None:
        return f"{e.filename}: cannot write: {e.strerror or e}"
    return str(e)


class _Progress:
    """Progress of a search on stderr (:class:`simroll._console.Progress`): a bar with the total,
    the rate and the time left on a terminal; elsewhere (a CI log, a pipe) a plain line once the
    work has started and then every few seconds, as TLC does. Called as ``progress(phase, runs,
    best)`` (the callback of :func:`simroll.fuzz`); ``best`` are the distance scores so far.

    The clock only paces the display; it never reaches the search.
    """

    def __init__(self, total: int, what: str = "runs"):
        from simroll._console import Progress

        self._show = Progress(total, unit=what)
        self.total, self.what, self.tty = total, what, self._show.tty

    def __call__(self, phase: str, done: int, best: dict[str, float]) -> None:
        top = ", ".join(f"{k} {v:.3g}" for k, v in sorted(best.items()))
        note = f"closest so far (distance scores, higher is closer): {top}" if top else ""
        # "at most": a search stops at its first violation; minimising has no known end
        self._show.update(done, phase=phase, note=note, eta=phase == "searching")

    def close(self) -> None:
        self._show.close()


def cmd_fuzz(args: argparse.Namespace) -> int:
    import signal

    from simroll.explore.search import fuzz, search_target
    from simroll.scenario.load import load_scenario

    scenario = load_scenario(args.scenario)
    if args.out is not None:  # every output is checked before the search, so a refusal never costs one
        check_new_file(args.out, args.force, "--out", make_parents=True)
    if args.db is not None and not args.no_db:
        _check_db_dir(args.db)
    database = None
    if not args.no_db:
        database = args.db or (
            ".simroll/hypothesis" if Path(".simroll/hypothesis").is_dir() and not os.environ.get("CI") else None
        )

    on_term = _term_handler()  # SIGTERM: stop like Ctrl-C, keeping what was found

    from simroll.explore.parallel import make_executor

    previous = signal.signal(signal.SIGTERM, on_term)
    # a process started in the background inherits SIGINT ignored; Ctrl-C must still stop the search
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    show = _Progress(args.max_examples)
    # the line a script (or a test) can wait for: the handlers are installed, the search begins
    print(
        f"simroll: fuzz {args.scenario}: searching up to {args.max_examples} simulations "
        "(Ctrl-C stops and keeps what was found)",
        file=sys.stderr,
        flush=True,
    )
    executor = make_executor(args.workers, args.dask)
    try:
        fr = fuzz(
            scenario,
            max_examples=args.max_examples,
            seed=args.seed,
            database=database,
            progress=show,
            executor=executor,
            method=args.method,
            invariant=search_target(scenario, args.invariant),
        )
    finally:
        executor.close()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        show.close()
    for warning in fr.warnings:
        print(f"simroll: warning: {_one_line(warning)}", file=sys.stderr)
    unwritten = _write_counterexample(fr, args) if fr.found else None
    out = fr.out
    if unwritten is not None:  # nowhere to write: the result is printed whole, never lost
        from simroll.explore.search import counterexample_text

        print(f"simroll: {unwritten}; the counterexample is printed on standard output", file=sys.stderr)
    if args.json:
        data = fr.to_json()
        if unwritten is not None:
            data["counterexample_yaml"] = counterexample_text(fr, args.scenario)
        print(json.dumps(data, indent=2))
    else:
        status = " (interrupted: partial result)" if fr.interrupted else ""
        if fr.found:
            print(_paint(f"FOUND a violation of {fr.invariant} after {fr.examples} runs{status}:", args))
            print("\n".join(f"  {line}" for line in fr.steps))
            if unwritten is None:
                print(f"\ncounterexample written to {out}; replay it with: simroll run {out}")
            else:
                print("\ncounterexample (not written to a file; save it and replay it with simroll run):\n")
                print(counterexample_text(fr, args.scenario), end="")
            print(f"trace sha256 {fr.trace_sha256}")
        else:
            what = "" if fr.target is None else f" of {fr.target}"
            print(_paint(f"no violation{what} found in {fr.examples} runs (seed {fr.seed}){status}", args))
    if fr.interrupted and not fr.found:
        return 130
    return 1 if fr.found else 0


def cmd_verify(args: argparse.Namespace) -> int:
    """``simroll verify``: every schedule up to ``--depth`` deviations (:func:`simroll.explore.verify.verify`)."""
    import signal

    from simroll._console import Progress
    from simroll.explore.parallel import make_executor
    from simroll.explore.search import counterexample_text, search_target
    from simroll.explore.verify import verify
    from simroll.scenario.load import load_scenario

    scenario = load_scenario(args.scenario)
    if args.out is not None:
        check_new_file(args.out, args.force, "--out", make_parents=True)

    on_term = _term_handler()  # SIGTERM: stop like Ctrl-C

    bars: dict[int, Progress] = {}

    def show(level: int, done: int, size: int, schedules: int, states: int | None, queued: int) -> None:
        bar = bars.get(level)
        if bar is None:
            for old in bars.values():
                old.close()
            bars.clear()
            bar = bars[level] = Progress(size, unit="schedules", label=f"verify: depth {level}")
        seen = "" if states is None else f"{states} distinct states, "
        nxt = f"{queued} schedules queued for depth {level + 1}" if level < args.depth else "last depth"
        bar.update(done, phase=f"depth {level} of {args.depth}", note=f"{seen}{schedules} run in all; {nxt}")

    previous = signal.signal(signal.SIGTERM, on_term)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    print(
        f"simroll: verify {args.scenario}: every schedule up to {args.depth} deviations (Ctrl-C stops)",
        file=sys.stderr,
        flush=True,
    )
    executor = make_executor(args.workers, args.dask)
    try:
        vr = verify(
            scenario,
            depth=args.depth,
            invariant=search_target(scenario, args.invariant),
            executor=executor,
            progress=show,
            prune=not args.no_prune,
        )
    finally:
        executor.close()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        for bar in bars.values():
            bar.close()
    fr = vr.example
    unwritten = _write_counterexample(fr, args) if fr is not None else None
    if unwritten is not None:
        print(f"simroll: {unwritten}; the counterexample is printed on standard output", file=sys.stderr)
    if args.json:
        data = vr.to_json()
        if unwritten is not None and fr is not None:
            data["counterexample_yaml"] = counterexample_text(fr, args.scenario)
        print(json.dumps(data, indent=2))
    else:
        print(_paint(vr.summary() + (":" if fr is not None else ""), args))
        if fr is not None:
            print("\n".join(f"  {line}" for line in fr.steps))
            if unwritten is None:
                print(f"\ncounterexample written to {fr.out}; replay it with: simroll run {fr.out}")
            else:
                print("\ncounterexample (not written to a file; save it and replay it with simroll run):\n")
                print(counterexample_text(fr, args.scenario), end="")
            print(f"trace sha256 {fr.trace_sha256}")
    if vr.interrupted and not vr.found:
        return 130
    return 1 if vr.found else 0


def cmd_expand(args: argparse.Namespace) -> int:
    from simroll.scenario.load import dump_scenario, load_scenario

    print(dump_scenario(load_scenario(args.scenario)), end="")
    return 0


def cmd_matrix(args: argparse.Namespace) -> int:
    from simroll._console import Progress
    from simroll.explore.matrix import DELIVERIES, FAMILIES, build_matrix, pattern_files

    n_cells = len(pattern_files(args.dir)) * len(FAMILIES) * len(DELIVERIES)
    show = Progress(n_cells, unit="cells", label=f"matrix {args.dir}")
    try:
        matrix = build_matrix(args.dir, fuzz=args.fuzz, seed=args.seed, progress=show.update)
    finally:
        show.close()
    command = " ".join(
        ["simroll matrix", args.dir]
        + (["--fuzz", str(args.fuzz)] if args.fuzz else [])
        + (["--out", args.out] if args.out else [])
    )
    if args.out:
        matrix.write(args.out, overwrite=args.force, command=command)
    if args.json:
        print(json.dumps(matrix.to_json(), indent=2))
    else:
        print(matrix.to_markdown(command), end="")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from simroll.explore.parallel import make_executor
    from simroll.explore.sweep import SweepParam, run_sweep
    from simroll.scenario.load import load_scenario

    scenario = load_scenario(args.scenario)
    params = [SweepParam.parse(text) for text in args.param]
    if args.out:  # refuse existing outputs before the long part
        from simroll.explore.sweep import output_paths

        for path in output_paths(args.out).values():
            check_new_file(path, args.force, "--out")
    from simroll._console import CountingExecutor, Progress

    n_runs = math.prod(len(p.values) for p in params) * (args.seeds or 1)
    show = Progress(n_runs, unit="runs", label=f"sweep {args.scenario}")
    try:
        with CountingExecutor(make_executor(args.workers, args.dask), show) as executor:
            result = run_sweep(scenario, params, seeds=args.seeds, executor=executor, source=args.scenario)
    finally:
        show.close()
    command = " ".join(
        ["simroll sweep", args.scenario]
        + [f"--param {t}" for t in args.param]
        + (["--seeds", str(args.seeds)] if args.seeds else [])
    )
    if args.out:
        from simroll.view.plots import write_sweep  # matplotlib is slow to import: only when asked for

        for path in write_sweep(result, args.out, overwrite=args.force, metric=args.metric, command=command):
            print(_one_line(f"simroll: wrote {path}"), file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(result.to_markdown(command), end="")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from simroll._io import atomic_write_text
    from simroll.scenario.template import scenario_template

    check_new_file(args.path, args.force)
    text = scenario_template(args.pattern, name=Path(args.path).stem.replace("-", "_"), path=args.path)
    atomic_write_text(args.path, text, overwrite=args.force)
    what = "the new release written out" if args.pattern is None else f"pattern {args.pattern}"
    print(f"wrote {args.path} ({what}); run it with: simroll run {args.path}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from simroll.scenario.load import scenario_json_schema

    print(json.dumps(scenario_json_schema(), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="simroll", description="Deterministic simulator of mixed-version clusters for designing rolling upgrades."
    )
    p.add_argument("--version", action="version", version=f"simroll {__version__}")
    p.add_argument("--color", choices=COLOR_MODES, default="auto", help=COLOR_HELP)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser(
        "run",
        help="replay a scenario and check its invariants (exit 0 held, 1 violated, 2 bad input, "
        "4 stopped at a limit with nothing violated so far; with --strict, 1 also when one was "
        "vacuous)",
    )
    r.add_argument("scenario", help="scenario file (YAML)")
    r.add_argument("--seed", type=_seed, default=None, help="seed (default: the scenario's)")
    r.add_argument("--trace", metavar="FILE", help="write the trace as JSON Lines")
    r.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    r.add_argument("--force", action="store_true", help="overwrite output files that exist")
    r.add_argument("--max-time", type=_positive(float), default=None, help="limit of simulated seconds")
    r.add_argument("--max-events", type=_positive(int), default=None, help="limit of trace events")
    r.add_argument("--check-determinism", action="store_true", help="run twice and fail (exit 3) if the traces differ")
    r.add_argument("--plots", metavar="DIR", help="write the plots that explain the result to DIR")
    r.add_argument("--format", choices=("png", "svg"), default="png", help="format of --plots (default png)")
    r.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    r.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 also when an invariant held only vacuously (it had nothing to check)",
    )
    r.set_defaults(fn=cmd_run)

    pl = sub.add_parser("plot", help="plot a scenario's run, or a trace (.jsonl) from `simroll run --trace`")
    pl.add_argument("source", metavar="SCENARIO_OR_TRACE", help="scenario file (YAML) or trace file (.jsonl)")
    pl.add_argument("--out", metavar="DIR", required=True, help="directory for the plots (created if needed)")
    pl.add_argument("--format", choices=("png", "svg"), default="png", help="image format (default png)")
    pl.add_argument("--seed", type=_seed, default=None, help="seed of the run (scenarios only)")
    pl.add_argument("--force", action="store_true", help="overwrite plot files that exist")
    pl.set_defaults(fn=cmd_plot)

    from simroll.scenario.template import PATTERN_NAMES  # plain data: no pydantic, no simulator

    i = sub.add_parser("init", help="write a commented scenario that exercises a new release, to start from")
    i.add_argument(
        "path", metavar="PATH", nargs="?", default="scenario.yaml", help="file to write (default scenario.yaml)"
    )
    i.add_argument(
        "--pattern",
        metavar="NAME",
        choices=PATTERN_NAMES,
        default=None,
        help=f"bring the new release in through this pattern ({', '.join(PATTERN_NAMES)}); "
        "default: the release and the plan written out",
    )
    i.add_argument("--force", action="store_true", help="overwrite PATH if it exists")
    i.set_defaults(fn=cmd_init)

    s = sub.add_parser("schema", help="print the JSON Schema of scenario files")
    s.set_defaults(fn=cmd_schema)

    f = sub.add_parser(
        "fuzz",
        help="search orderings, timings and crash points for a violation "
        "(exit 1 found, 0 none within the budget, 2 bad input)",
    )
    f.add_argument("scenario", help="scenario file (YAML)")
    f.add_argument(
        "--max-examples",
        type=_positive(int),
        default=FUZZ_BUDGET,
        help=f"simulations Hypothesis may generate (default {FUZZ_BUDGET})",
    )
    f.add_argument("--seed", type=_seed, default=0, help="seed of the search (default 0)")
    f.add_argument(
        "--out",
        metavar="FILE",
        help="where to write the counterexample scenario "
        "(default: .simroll/counterexamples/NAME.yaml, or NAME.1.yaml, ...: a new file, never overwriting)",
    )
    f.add_argument("--json", action="store_true", help="print one JSON object")
    f.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    f.add_argument(
        "--db",
        metavar="DIR",
        help="Hypothesis example database: past failures are replayed first "
        "(default: .simroll/hypothesis if that directory exists and CI is not set)",
    )
    f.add_argument("--no-db", action="store_true", help="use no example database")
    f.add_argument(
        "--workers",
        type=_positive(int),
        default=1,
        help="local processes for the random sweep and the minimisation (same result for any number)",
    )
    f.add_argument("--dask", metavar="ADDRESS", help="run them on this Dask scheduler instead (extra: dask)")
    f.add_argument(
        "--method",
        choices=("aim", "hypothesis", "random"),
        default="aim",
        help="aim (default): pins aimed where runs came close to a violation, and mutation of the best "
        "schedules, a batch at a time on the workers; hypothesis: a random sweep (a tenth of the budget) "
        "then Hypothesis' guided generation, which runs in one process; random: plain random sampling "
        "of the whole budget, all of it on the workers",
    )
    f.add_argument(
        "--invariant",
        metavar="NAME",
        default=None,
        help="search for a violation of this invariant only (violations of others are ignored); "
        "default: the scenario's 'expect: violates NAME', else any invariant",
    )
    f.set_defaults(fn=cmd_fuzz)

    v = sub.add_parser(
        "verify",
        help="run every schedule that deviates from the plain run in at most --depth places, shortest first "
        "(exit 1 found, 0 verified, 2 bad input)",
    )
    v.add_argument("scenario", help="scenario file (YAML)")
    v.add_argument(
        "--depth", type=_positive(int), default=2, help="deviations a schedule may make (default 2; docs/search.md)"
    )
    v.add_argument("--json", action="store_true", help="print one JSON object")
    v.add_argument(
        "--out",
        metavar="FILE",
        help="where to write the counterexample scenario (default: .simroll/counterexamples/NAME.yaml, ...)",
    )
    v.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    v.add_argument(
        "--invariant",
        metavar="NAME",
        default=None,
        help="look for a violation of this invariant only; default: the scenario's 'expect: violates NAME', else any",
    )
    v.add_argument("--workers", type=_positive(int), default=1, help="local processes (same result for any number)")
    v.add_argument("--dask", metavar="ADDRESS", help="run the schedules on this Dask scheduler (extra: dask)")
    v.add_argument(
        "--no-prune",
        action="store_true",
        help="run every schedule, even those that reach a state already explored (slower; same verdict expected)",
    )
    v.set_defaults(fn=cmd_verify)

    e = sub.add_parser("expand", help="print a scenario with its patterns expanded (releases, plan steps), as YAML")
    e.add_argument("scenario", help="scenario file (YAML)")
    e.set_defaults(fn=cmd_expand)

    m = sub.add_parser(
        "matrix",
        help="the safety matrix: each scenario in DIR under each plan or fault family and both delivery models",
    )
    m.add_argument("dir", metavar="DIR", help="directory of scenario files (*.yaml)")
    m.add_argument("--out", metavar="PREFIX", help="write PREFIX.md, PREFIX.json and PREFIX.replays/*.yaml")
    m.add_argument("--json", action="store_true", help="print the matrix as JSON instead of Markdown")
    m.add_argument(
        "--fuzz",
        type=_positive(int),
        default=None,
        metavar="N",
        help="also search each cell whose default run holds (N examples)",
    )
    m.add_argument("--seed", type=_seed, default=0, help="seed of --fuzz (default 0)")
    m.add_argument("--force", action="store_true", help="overwrite output files that exist")
    m.set_defaults(fn=cmd_matrix)

    sw = sub.add_parser("sweep", help="run a grid of scenario parameters; print a table, write it and a heatmap")
    sw.add_argument("scenario", help="scenario file (YAML)")
    sw.add_argument(
        "--param",
        action="append",
        required=True,
        metavar="KEY=V1,V2,...",
        help="a path into the scenario and its values, e.g. engines.count=3,5,10 or "
        "plan[1].wait=0,30,60 (repeat for more parameters; the first varies slowest)",
    )
    sw.add_argument(
        "--seeds",
        type=_positive(int),
        default=None,
        metavar="N",
        help="run each cell with seeds 0..N-1 and report the worst and the median "
        "(default: once, with the scenario's seed)",
    )
    sw.add_argument(
        "--metric",
        default="worst_wait",
        choices=tuple(METRICS),
        help="what the heatmap shows over the first two parameters that take more than one value (default worst_wait)",
    )
    sw.add_argument("--workers", type=_positive(int), default=1, help="local processes (same table for any number)")
    sw.add_argument("--dask", metavar="ADDRESS", help="run on this Dask scheduler instead (extra: dask)")
    sw.add_argument(
        "--out", metavar="PREFIX", help="write PREFIX.md, PREFIX.json, PREFIX.csv and the heatmap PREFIX.png"
    )
    sw.add_argument("--json", action="store_true", help="print the table as JSON instead of Markdown")
    sw.add_argument("--force", action="store_true", help="overwrite output files that exist")
    sw.set_defaults(fn=cmd_sweep)
    for command in sub.choices.values():  # `simroll run X --color never` as well as `simroll --color never run X`
        command.add_argument("--color", choices=COLOR_MODES, default=argparse.SUPPRESS, help=COLOR_HELP)
    return p


COLOR_MODES = ("auto", "always", "never")
COLOR_HELP = "colour the verdicts: auto (default: on a terminal, unless NO_COLOR is set), always, never"


EXIT_SOFTWARE = 70  # an internal error (sysexits' EX_SOFTWARE): a bug in simroll, never "violated"
EXIT_IOERR = 74  # standard output could not be written (a full disk, a closed terminal)
EXIT_SIGPIPE = 141  # the reader of our output went away (`simroll run X | head -1`), as a shell reports SIGPIPE


def _crash_log(exc: BaseException) -> str:
    """Write the traceback of an internal error to a new file; returns its path."""
    import tempfile
    import traceback

    fd, path = tempfile.mkstemp(prefix="simroll-crash-", suffix=".log")
    with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
        f.write(f"simroll {__version__}, python {sys.version.split()[0]}, argv {sys.argv!r}\n")
        f.write("".join(traceback.format_exception(exc)))
    return path


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's own flush at exit raises nothing."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is no real file (a test's capture): nothing to flush at exit
        pass
    finally:
        os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (docs/cli.md: Conventions)."""
    parser = build_parser()
    if "_ARGCOMPLETE" in os.environ:  # the shell asks for completions (docs/cli.md); argcomplete exits
        import argcomplete

        argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    restore = _interruptible()
    try:
        code = args.fn(args)
        try:
            sys.stdout.flush()  # a write error of buffered output is ours to report, not the interpreter's at exit
        except OSError as e:
            if isinstance(e, BrokenPipeError):
                raise
            return _stdout_error(e)
        return code
    except SimrollError as e:
        print(f"simroll: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("simroll: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_SIGPIPE
    except OSError as e:
        # a file simroll reads or writes fails as a UsageError, naming the file; what is left
        # without a file name and with an output errno is the standard output
        if e.filename is None and e.errno in (errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG):
            return _stdout_error(e)
        return _internal_error(e)
    except Exception as e:  # noqa: BLE001 - the one place that turns a bug into exit 70 and a log
        return _internal_error(e)
    finally:
        restore()


def _interruptible() -> Any:
    """Make Ctrl-C and SIGTERM stop any command the same way (KeyboardInterrupt: outputs being written
    are removed, workers are ended, one message, exit 130); returns the function that restores them.

    A command started as a background job (``simroll run x &`` in a script) inherits SIGINT
    ignored; an explicit ``kill -INT`` must still stop it."""
    import signal

    on_term = _term_handler()
    try:
        previous = (signal.signal(signal.SIGINT, signal.default_int_handler), signal.signal(signal.SIGTERM, on_term))
    except ValueError:  # not the main thread (main() called from a library's worker thread): leave them
        return lambda: None

    def restore() -> None:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])

    return restore


def _term_handler() -> Any:
    """A SIGTERM handler that stops this process like Ctrl-C (KeyboardInterrupt). A worker forked
    while it is installed inherits it: there SIGTERM is the pool ending its workers, and the worker
    exits at once and quietly (a traceback per worker on stderr was the old behaviour)."""
    owner = os.getpid()

    def on_term(signum: int, frame: Any) -> None:
        if os.getpid() != owner:
            os._exit(128 + signum)
        raise KeyboardInterrupt

    return on_term


def _stdout_error(e: OSError) -> int:
    _quiet_stdout()
    print(f"simroll: cannot write to standard output: {e.strerror or e}", file=sys.stderr)
    return EXIT_IOERR


def _internal_error(e: BaseException) -> int:
    try:
        where = f"the traceback is in {_crash_log(e)}"
    except OSError:
        where = "and the traceback could not be written to a log file"
    print(
        f"simroll: internal error: {type(e).__name__}: {_one_line(str(e))[:300]} ({where}; "
        "please report it with the scenario file)",
        file=sys.stderr,
    )
    return EXIT_SOFTWARE


def _one_line(text: str) -> str:
    """A message on one line: a newline in a file name must not split it (shown as \\n)."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
