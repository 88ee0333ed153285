"""Run a scenario once: simulate, check the invariants online, collect a :class:`RunResult`."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from simroll._display import html as _display_html
from simroll._io import atomic_open
from simroll.check.explain import explain
from simroll.check.invariants import Checker, Coverage, InvariantResult, OperationsComplete, Violation, make_checkers
from simroll.scenario.spec import Scenario
from simroll.sim.kernel import simulate
from simroll.sim.trace import Record, Trace, read_trace

if TYPE_CHECKING:  # networkx (and the modules that use it) load only when a graph or a chain is asked for
    from collections.abc import Callable

    import networkx as nx

PROGRESS_EVERY = 1024  # trace records between two calls of run_scenario's ``progress``


@dataclass
class RunResult:
    """Everything one run produced. ``records`` is None when the trace was not kept in memory.

    Besides the verdicts: ``availability`` (:meth:`OperationsComplete.availability` of the run's
    client operations: ``completed``, ``total``, ``fraction``, ``longest_gap``, ...) and
    ``coverage`` (:meth:`Coverage.result`: per release, RPC versions sent and handled, methods
    handled, locations read and written; the plan steps executed). Both are computed for every
    run, whichever invariants the scenario checks.
    """

    scenario: Scenario
    seed: int
    invariants: list[InvariantResult]
    events: int
    sim_time: float
    trace_sha256: str
    end_reason: str
    choice_points: int
    choice_counts: dict[str, int]
    scores: dict[str, float]
    records: list[Record] | None = None
    trace_path: str | None = None
    availability: dict[str, Any] | None = None
    coverage: dict[str, Any] | None = None
    sql_log: list[dict[str, Any]] | None = field(default=None, repr=False)
    """On a SQL backend, the statements the engines, the operator and the backfill ran, in order (the
    latest 100,000): ``t``, ``engine`` (or ``backfill``, ``operator``, ``init``, ``final``), ``msg``
    (the message handled, or None), ``sql``, ``params``, ``outcome`` (``-> value`` of a read, ``n
    rows`` of a write, ``refused: <the database's message>``) and ``record``: the trace record the
    statement precedes (the read or write it made, or the first after it). None on the location
    model, and on a run without ``report``."""
    _graph: nx.DiGraph | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """Nothing violated. An invariant that held only vacuously is not a violation (see :attr:`vacuous`)."""
        return all(inv.held for inv in self.invariants)

    @property
    def vacuous(self) -> list[str]:
        """The invariants that held only because they had nothing to check (``checked`` 0)."""
        return [inv.name for inv in self.invariants if inv.held and inv.vacuous]

    @staticmethod
    def verdict(inv: InvariantResult) -> str:
        """``"violated"``, ``"vacuous"`` (held with nothing to check) or ``"held"``."""
        if not inv.held:
            return "violated"
        return "vacuous" if inv.vacuous else "held"

    @property
    def violations(self) -> list[Violation]:
        out = [v for inv in self.invariants for v in inv.violations]
        out.sort(key=lambda v: (v.time, v.event))
        return out

    @property
    def violated(self) -> list[str]:
        return [inv.name for inv in self.invariants if not inv.held]

    @property
    def limited(self) -> bool:
        return self.end_reason.startswith("limit")

    def trace(self) -> list[Record]:
        """The trace records (read back from the streamed file if they were not kept)."""
        if self.records is None:
            if self.trace_path is None:
                raise ValueError("the trace was neither kept nor written to a file")
            self.records = read_trace(self.trace_path)
        return self.records

    def graph(self) -> nx.DiGraph:
        """The happens-before graph of the whole trace (networkx)."""
        from simroll.check.causality import happens_before

        if self._graph is None:
            self._graph = happens_before(self.trace())
        return self._graph

    def chains(self, v: Violation) -> list[list[Record]]:
        """The chain of records behind ``v`` (:func:`simroll.check.explain.explain`: the one the text,
        JSON and HTML reports show), as a one-element list; empty when there is none."""
        from simroll.check.history import violation_chains

        return violation_chains(self.trace(), v)

    def dataframe(self):
        """The trace as a pandas DataFrame (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("dataframe() needs pandas: pip install pandas") from e
        return pd.DataFrame.from_records(self.trace())

    def _repr_html_(self) -> str:
        """Jupyter's rich display: invariants held and violated, each violation's causal chain, key figures.

        Drawn by :func:`simroll.view.html.summary_html`, which ``import simroll`` registers in
        :mod:`simroll._display` (the views sit above this module).
        """
        return _display_html(self)

    def __repr__(self) -> str:
        """One line, not the dataclass repr with every trace record (which ran to hundreds of KB)."""
        return (
            f"RunResult({self.scenario.name!r}, seed={self.seed}, ok={self.ok}, violated={self.violated}, "
            f"events={self.events}, sim_time={self.sim_time:.3f}, trace_sha256={self.trace_sha256[:16]}...)"
        )

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        """IPython's plain-text display: the one-line :meth:`__repr__`."""
        p.text(repr(self))

    def to_json(self) -> dict[str, Any]:
        """The machine-readable report (``simroll run --json``)."""
        return {
            "scenario": self.scenario.name,
            "seed": self.seed,
            "ok": self.ok,
            "invariants": {inv.name: self.verdict(inv) for inv in self.invariants},
            "vacuous": self.vacuous,
            "checked": {inv.name: inv.checked for inv in self.invariants},
            "violations": [
                {"why": (e := explain(self.trace(), v)).why, **v.to_json(), "chain": e.to_json()["chain"]}
                for v in self.violations
            ],
            "violation_counts": {inv.name: inv.count for inv in self.invariants},
            "events": self.events,
            "sim_time": self.sim_time,
            "end_reason": self.end_reason,
            "partial": self.limited,
            "trace_sha256": self.trace_sha256,
            "choice_points": self.choice_points,
            "availability": _jsonable(self.availability),
            "coverage": self.coverage,
        }


def _jsonable(d: dict[str, Any] | None) -> dict[str, Any] | None:
    """``availability`` for JSON: the interval as a list."""
    if d is None:
        return None
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def first_difference(a: RunResult, b: RunResult) -> str:
    """Where two runs' traces part (for ``--check-determinism``): the first record that differs."""
    ra, rb = a.trace(), b.trace()
    for x, y in zip(ra, rb, strict=False):
        if x != y:
            return f"they first differ at record #{x['i']}: {str(x)[:300]} vs {str(y)[:300]}"
    return f"one trace has {len(ra)} records, the other {len(rb)}"


def run_scenario(
    scenario: Scenario,
    seed: int | None = None,
    pinned: dict[tuple[str, int], int] | None = None,
    keep_trace: bool = True,
    trace_path: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    report: bool = True,
    progress: Callable[[float, int], None] | None = None,
) -> RunResult:
    """Run ``scenario`` once with ``seed`` (default: the scenario's) and check its invariants.

    ``pinned`` adds to the scenario's own pinned choices. With ``trace_path`` the trace is
    streamed to that file, written atomically (:func:`simroll._io.atomic_open`: an interrupted
    run leaves no partial file; an existing one is refused with a UsageError unless ``overwrite``);
    with ``keep_trace=False`` it is not held in memory. With ``report=False`` only the verdicts
    and scores are computed, not ``coverage`` and ``availability`` (both None), nor, unless the
    trace is written to ``trace_path``, the trace's sha256 (``trace_sha256`` is ""): the inner runs
    of a search need no more, and skip two consumers of every record, the JSON encoding and the
    hashing. The verdicts, scores, events and choice points are those of a full run.

    ``progress(t, records)`` is called about every ``PROGRESS_EVERY`` records (on the first send,
    handling done or operator step past each multiple) with the simulated time and the number
    of records so far; it only watches (the trace is the same with or without it), and costs
    nothing when None.
    """
    seed = scenario.seed if seed is None else seed
    choices: dict[tuple[str, int], int] = {(c.kind, c.at): c.pick for c in scenario.choices}
    choices.update(pinned or {})
    with contextlib.ExitStack() as files:
        stream = None if trace_path is None else files.enter_context(atomic_open(trace_path, overwrite=overwrite))
        # the inner runs of a search read only the verdicts: their trace is not hashed (nor encoded)
        hashed = report or trace_path is not None
        trace = Trace(keep=keep_trace, stream=stream, hashed=hashed)
        checkers = make_checkers(scenario.invariants.enabled(), scenario)
        ops = _operations(checkers, scenario)
        coverage = Coverage() if report else None
        subscribe_checkers(trace, checkers)
        if coverage is not None:
            for kind, fn in coverage.handlers().items():  # straight to the method of each kind
                trace.subscribe((kind,), fn)
        if report and ops not in checkers:
            trace.subscribe(ops.kinds, ops.observe)  # availability only: not a verdict
        if progress is not None:
            trace.subscribe(("send", "done", "step"), _every(PROGRESS_EVERY, progress))
        sim, trace = simulate(scenario, seed, choices, trace)
    return RunResult(
        scenario=scenario,
        seed=seed,
        invariants=[InvariantResult.of(c) for c in checkers],
        events=trace.count,
        sim_time=sim.env.now,
        trace_sha256=trace.sha256 if hashed else "",
        end_reason=sim.end_reason,
        choice_points=sim.chooser.points,
        choice_counts=dict(sorted(sim.chooser.counts.items())),
        scores={c.name: c.score() for c in checkers},
        records=trace.records,
        trace_path=None if trace_path is None else str(trace_path),
        availability=ops.availability() if report else None,
        coverage=None if coverage is None else _with_every_release(coverage.result(), scenario),
        sql_log=_sql_log(sim.db.sql_log) if report else None,
    )


def subscribe_checkers(
    trace: Trace, checkers: list[Checker], wrap: Callable[[Checker], Callable[[Record], None]] | None = None
) -> list[Checker]:
    """Subscribe ``checkers`` to the kinds each reads, their scans charged to ``trace``'s work budget
    (the one way a run, a search's run and a verify run judge a trace). A checker that reads some
    kinds from their fields says so (no record is built for it); ``wrap(checker)``: subscribe that
    instead of its ``observe`` (and of its field readers). Returns ``checkers``."""
    for c in checkers:
        c.meter = trace.meter  # the checks' scans count against the run's work budget
        if wrap is None:
            trace.subscribe(c.kinds, c.observe, getattr(c, "positional", dict)())
        else:
            trace.subscribe(c.kinds, wrap(c))
    return checkers


def _sql_log(log: Any) -> list[dict[str, Any]] | None:
    """A SQL backend's statement log as records (see :attr:`RunResult.sql_log`)."""
    if log is None:
        return None
    keys = ("t", "engine", "msg", "sql", "params", "outcome", "record")
    return [dict(zip(keys, entry, strict=True)) for entry in log]


def _every(k: int, progress: Callable[[float, int], None]) -> Callable[[Record], None]:
    """A trace subscriber that calls ``progress(t, records so far)`` once past each multiple of ``k``."""
    next_at = k

    def watch(rec: Record) -> None:
        nonlocal next_at
        if rec["i"] + 1 >= next_at:
            next_at = (rec["i"] + 1) // k * k + k
            progress(rec["t"], rec["i"] + 1)

    return watch


def _with_every_release(cov: dict[str, Any], scenario: Scenario) -> dict[str, Any]:
    """Coverage with an entry (all counts empty) for each release of the scenario that did nothing:
    a release that never got a message is what a coverage report is for."""
    releases = dict(cov["releases"])
    whats = (
        next(iter(releases.values())).keys()
        if releases
        else ("sent", "handled", "rejected", "refused", "methods", "read", "written")
    )
    for rel in scenario.releases:
        releases.setdefault(rel, {w: {} for w in whats})
    return dict(cov, releases=dict(sorted(releases.items())))


def _operations(checkers: list[Checker], scenario: Scenario) -> OperationsComplete:
    """The run's ``operations-complete`` checker if the scenario enables it (its ``within`` then
    decides what counts as completed), else a fresh one that only measures availability, counting
    a call and its retries as one operation as the checker would."""
    for c in checkers:
        if isinstance(c, OperationsComplete):
            return c
    retry = scenario.workload.retry
    return OperationsComplete(retries=retry.count if retry is not None else 0)
