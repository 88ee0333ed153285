"""The search: Hypothesis explores operator schedules and event orderings, shrinks a violation,
and the result is written out as a scenario that ``simroll run`` replays byte for byte.

A point of the search space is a :class:`Schedule`:

* plan-level choices, aligned with the scenario's plan: which steps run (the operator may
  skip one), in which order (within the declared reorder groups), how much longer the
  operator pauses before each, whether a graceful stop becomes a kill, and an optional
  extra kill of an engine at some time;
* event-level choices: a few *pinned choice points* of the run's
  :class:`~simroll.sim.chooser.Chooser` (which consumer takes a message, extra message
  delay, the backfill's read-to-write gap).

Every choice shrinks towards the scenario as written: steps dropped (fewer steps),
pauses 0, graceful stops, no pins. Hypothesis' ``target()`` steers generation by each
invariant's distance-to-violation score. After Hypothesis has shrunk a failure, a
deterministic pass makes the counterexample 1-minimal: dropping any remaining step,
or setting any remaining choice back to its default, makes the violation go away.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import hypothesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

from simroll._display import html as _display_html
from simroll._io import atomic_write_text
from simroll.check.invariants import Checker, make_checkers
from simroll.errors import UsageError
from simroll.explore.parallel import Executor
from simroll.run import RunResult, run_scenario, subscribe_checkers
from simroll.scenario.load import dump_scenario
from simroll.scenario.spec import (
    ChoiceSpec,
    ExpandStep,
    FaultSpec,
    KillStep,
    RemoveStep,
    RestartStep,
    Scenario,
    SearchSpec,
    StepSpec,
    StopStep,
)
from simroll.sim.chooser import TimedChooser
from simroll.sim.kernel import Simulation
from simroll.sim.trace import Trace

PAUSE_LEVELS = 16  # a pause choice adds k/16 of max_pause, k in 0..16
FAULT_LEVELS = 64  # an extra kill happens at k/64 of the default run's length
MAX_PINS = 3  # event-level choice points a schedule may pin
METHODS = ("hypothesis", "random", "aim")  # fuzz's search strategies (see fuzz())


@dataclass(frozen=True)
class Schedule:
    """One point of the search space (see the module docstring). Tuples are indexed by the
    scenario's original plan step; ``order`` is a permutation of those indices."""

    order: tuple[int, ...]
    keep: tuple[bool, ...]
    pause: tuple[int, ...]
    kill: tuple[bool, ...]
    pins: tuple[tuple[str, int, int], ...] = ()  # (kind, number, option)
    fault: tuple[str, int] | None = None

    @classmethod
    def default(cls, n: int) -> Schedule:
        return cls(tuple(range(n)), (True,) * n, (0,) * n, (False,) * n)


def search_space(scenario: Scenario) -> SearchSpec:
    """The scenario's declared search space, or the default one derived from its plan."""
    return scenario.search or SearchSpec()


def apply_schedule(scenario: Scenario, sched: Schedule) -> Scenario:
    """The concrete scenario a schedule stands for: every choice pinned, no search space."""
    space = search_space(scenario)
    plan: list[StepSpec] = []
    position: dict[int, int] = {}
    for i in sched.order:
        if not sched.keep[i]:
            continue
        step = scenario.plan[i]
        update: dict[str, Any] = {}
        if sched.pause[i]:
            update["after"] = step.after + space.max_pause * sched.pause[i] / PAUSE_LEVELS
        if sched.kill[i] and isinstance(step, StopStep):  # the stop becomes a kill step
            step = KillStep(after=update.pop("after", step.after), kill=step.stop)
        elif sched.kill[i] and isinstance(step, (RestartStep, RemoveStep)):  # a remove kills, then deregisters
            update["how"] = "kill"
        position[i] = len(plan)
        plan.append(step.model_copy(update=update) if update else step)
    faults = []
    for f in scenario.faults:
        if f.at_step is None:
            faults.append(f)
        elif f.at_step in position:
            faults.append(f.model_copy(update={"at_step": position[f.at_step]}))
    if sched.fault is not None:
        engine, level = sched.fault
        faults.append(FaultSpec(kill=engine, at=_horizon(scenario) * level / FAULT_LEVELS))
    choices = sorted({(kind, at): pick for kind, at, pick in sched.pins}.items())
    # columns that only a dropped expand step added stay declared, so the file still names them
    absent = list(scenario.database.absent)
    for i, step in enumerate(scenario.plan):
        if not sched.keep[i] and isinstance(step, ExpandStep) and step.expand:
            absent += [
                c
                for c in step.expand
                if "." in c and c not in absent and not any(isinstance(s, ExpandStep) and c in s.expand for s in plan)
            ]
    database = scenario.database.model_copy(update={"absent": absent}) if absent else scenario.database
    return scenario.model_copy(
        update={
            "database": database,
            "plan": plan,
            "faults": faults,
            "choices": [ChoiceSpec(kind=k, at=a, pick=p) for (k, a), p in choices],
            # the backfill's crash points stay (issue 20): they number the choices, and a pin needs them
            "search": SearchSpec(backfill_crash=True) if space.backfill_crash else None,
        }
    )


def _horizon(scenario: Scenario) -> float:
    """How long the faults the search injects may wait: to the end of the client workload."""
    return scenario.workload.stop


def _build_schedule(
    scenario: Scenario,
    points: dict[str, int],
    ints: Callable[[int, int], int],
    permute: Callable[[list[int]], list[int]],
) -> Schedule:
    """Draw one schedule with ``ints(lo, hi)`` and ``permute(items)``: Hypothesis' draws for the
    search, a seeded ``random.Random`` for the plain random baseline. Every draw's smallest value
    is the scenario as written, so shrinking moves towards it."""
    space = search_space(scenario)
    n = len(scenario.plan)
    flips = space.kill_instead_of_stop
    order = list(range(n))
    for group in space.reorder:
        slots = sorted(set(group))
        for slot, idx in zip(slots, permute(slots)):
            order[slot] = idx
    # a step is kept unless its draw is 0, so shrinking drops steps while most schedules keep most
    keep = tuple(ints(0, 3) != 0 for _ in range(n)) if space.drop_steps else (True,) * n
    pause = tuple(ints(0, PAUSE_LEVELS) for _ in range(n)) if space.max_pause > 0 else (0,) * n
    kill = tuple(
        bool(ints(0, 1))
        if s.action in ("stop", "restart", "remove") and (flips is True or (isinstance(flips, list) and i in flips))
        else False
        for i, s in enumerate(scenario.plan)
    )
    pins: list[tuple[str, int, int]] = []
    kinds = sorted(k for k, c in points.items() if c > 0)
    if space.events and kinds:
        for _ in range(ints(0, MAX_PINS)):
            kind = kinds[ints(0, len(kinds) - 1)]
            pin = (kind, ints(0, points[kind] - 1), ints(1, 8))
            if all(p[:2] != pin[:2] for p in pins):
                pins.append(pin)
    fault = None
    if space.kill_engines and ints(0, 1):
        fault = (space.kill_engines[ints(0, len(space.kill_engines) - 1)], ints(0, FAULT_LEVELS))
    return Schedule(tuple(order), keep, pause, kill, tuple(pins), fault)


def _schedules(scenario: Scenario, points: dict[str, int]) -> st.SearchStrategy[Schedule]:
    @st.composite
    def build(draw: Callable[[st.SearchStrategy[Any]], Any]) -> Schedule:
        return _build_schedule(
            scenario, points, lambda lo, hi: draw(st.integers(lo, hi)), lambda items: draw(st.permutations(items))
        )

    return build()


def _random_schedule(scenario: Scenario, points: dict[str, int], seed: int, index: int) -> Schedule:
    """The ``index``-th schedule of the random sweep: its own seeded generator, so any worker can
    draw it and the sweep's outcome does not depend on who evaluated what."""
    rng = random.Random(f"simroll-sweep/{seed}/{index}")

    def permute(items: list[int]) -> list[int]:
        out = list(items)
        rng.shuffle(out)
        return out

    return _build_schedule(scenario, points, rng.randint, permute)


def _evaluate(job: tuple[Scenario, Schedule]) -> tuple[list[str], dict[str, float]]:
    """Run one schedule (in any process): the invariants it violates, and the scores."""
    res = run_scenario(apply_schedule(*job), keep_trace=False, report=False)
    return res.violated, res.scores


@dataclass(frozen=True)
class _Seen:
    """What the ``aim`` strategy reads from a run besides its verdicts and scores: each choice
    point's time and number of options (per kind, by number), the times of the operator's steps
    and injected kills, the time of each invariant's near miss (its checker's ``near_t``, else the
    moment its score last rose), and each engine's handling intervals (a kill is interesting while
    an engine holds work)."""

    times: dict[str, list[tuple[float, int]]]
    marks: tuple[float, ...]
    peaks: dict[str, float]
    busy: dict[str, list[tuple[float, float]]]


def _evaluate_seen(job: tuple[Scenario, Schedule]) -> tuple[list[str], dict[str, float], _Seen]:
    """Run one schedule as :func:`_evaluate` does (same verdicts, same scores), noting what the
    ``aim`` strategy needs (:class:`_Seen`)."""
    sc = apply_schedule(*job)
    trace = Trace(keep=False, hashed=False)
    peaks: dict[str, float] = {}
    checkers = subscribe_checkers(trace, make_checkers(sc.invariants.enabled(), sc), lambda c: _watch(c, peaks))
    marks: list[float] = []
    busy: dict[str, list[tuple[float, float]]] = {}
    taken: dict[tuple[str, int], float] = {}

    def note(rec: dict[str, Any]) -> None:
        kind = rec["kind"]
        if kind == "recv":
            taken[(rec["engine"], rec["msg"])] = rec["t"]
        elif kind in ("done", "reject"):
            began = taken.pop((rec["engine"], rec["msg"]), None)
            if began is not None:
                busy.setdefault(rec["engine"], []).append((began, rec["t"]))
        else:  # step, fault
            marks.append(rec["t"])

    trace.subscribe(("recv", "done", "reject", "step", "fault"), note)
    chooser = TimedChooser(sc.seed, {(c.kind, c.at): c.pick for c in sc.choices})
    sim = Simulation(sc, chooser, trace)
    env = sim.env
    chooser.clock = lambda: env.now
    sim.run()
    violated = [c.name for c in checkers if c.count]
    for checker in checkers:  # a score that says when its near miss was knows better than its last rise
        if checker.near_t is not None:
            peaks[checker.name] = checker.near_t
    return violated, {c.name: c.score() for c in checkers}, _Seen(chooser.times, tuple(marks), peaks, busy)


def _watch(checker: Checker, peaks: dict[str, float]) -> Callable[[dict[str, Any]], None]:
    """``checker.observe``, noting in ``peaks`` the time of the record at which its score last rose."""
    observe, score, name = checker.observe, checker.score, checker.name
    best = [score()]

    def watched(rec: dict[str, Any]) -> None:
        observe(rec)
        s = score()
        if s > best[0]:
            best[0] = s
            peaks[name] = rec["t"]

    return watched


@dataclass
class FuzzResult:
    """What ``simroll fuzz`` found. ``counterexample`` is the scenario to replay."""

    scenario: Scenario
    seed: int
    found: bool
    examples: int  # simulations the budget paid for: up to the first violation, or all (<= max_examples)
    invariant: str | None = None
    schedule: Schedule | None = None
    counterexample: Scenario | None = None
    result: RunResult | None = None
    interrupted: bool = False
    search_seconds: float = 0.0  # wall time to the first violation (or of the whole search)
    shrink_seconds: float = 0.0  # wall time from the first violation to the 1-minimal one
    first_violation_after: int | None = None  # simulations run when the first violation showed
    shrink_runs: int = 0  # simulations run after it, to shrink and minimise
    out: str | None = None
    warnings: list[str] = field(default_factory=list)  # e.g. a corrupted failure store, started afresh
    target: str | None = None  # the invariant searched for (None: any)
    command: str = ""  # the command that found it, as the written file's header names it ("": fuzz --seed N)

    def __repr__(self) -> str:
        """One short line (under 1 KB), not the scenario, counterexample and run it holds."""
        what = f"found={self.invariant!r}" if self.found else "found=None"
        out = f", out={self.out!r}" if self.out else ""
        return (
            f"FuzzResult({self.scenario.name!r}, {what}, examples={self.examples}, seed={self.seed}"
            f"{', interrupted' if self.interrupted else ''}{out})"
        )

    def _repr_html_(self) -> str:
        """Jupyter's rich display, drawn by :mod:`simroll.view.notebook` (found through :mod:`simroll._display`)."""
        return _display_html(self)

    @property
    def steps(self) -> list[str]:
        """The counterexample as numbered steps a person can read, the violation last."""
        if self.result is None:
            return []
        return describe_counterexample(self.result, self.invariant)

    @property
    def trace_sha256(self) -> str | None:
        return None if self.result is None else self.result.trace_sha256

    def to_json(self) -> dict[str, Any]:
        return {
            "found": self.found,
            "invariant": self.invariant,
            "examples": self.examples,
            "steps": self.steps,
            "out": self.out,
            "trace_sha256": self.trace_sha256,
            "seed": self.seed,
            "interrupted": self.interrupted,
            "first_violation_after": self.first_violation_after,
            "shrink_runs": self.shrink_runs,
            "searched_for": self.target,
        }


def describe_counterexample(result: RunResult, invariant: str | None) -> list[str]:
    """Operator steps, injected faults and pinned choices of a run, in time order, up to its first
    violation (of ``invariant``, or of any), which comes last: what happens after it is left out."""
    from simroll.check.explain import describe  # a record in words; check sits below search

    violations = [v for v in result.violations if invariant is None or v.invariant == invariant]
    until = violations[0].event if violations else None
    lines = []
    for rec in result.trace():  # records are in the order they happened
        if until is not None and rec["i"] > until:
            break
        if rec["kind"] == "step":
            lines.append(f"t={rec['t']:.3f}  {describe(rec)}")
        elif rec["kind"] == "fault":
            lines.append(f"t={rec['t']:.3f}  fault: kill {rec['engine']}")
        elif rec["kind"] == "choice":
            if rec["what"] == "consumer":
                text = f"m{rec['msg']} is delivered to {rec['to']} (round robin: {rec['default']})"
            elif rec["what"] == "delay":
                text = f"m{rec['msg']} is delayed {rec['delay']:.3f} s"
            elif rec["what"] == "backfill_crash":
                text = f"the backfill dies after reading row {rec['row']}"
            else:
                text = f"the backfill waits {rec['gap']:.3f} s between reading and writing row {rec['row']}"
            lines.append(f"t={rec['t']:.3f}  choice point {rec['at']}: {text}")
    if violations:
        v = violations[0]
        lines.append(f"t={v.time:.3f}  VIOLATED {v.invariant}: {v.message}")
    return [f"{n}. {line}" for n, line in enumerate(lines, 1)]


class _Violation(Exception):
    """Raised inside the Hypothesis test when a run breaks an invariant."""


_VIOLATION_TYPES: dict[str, type[_Violation]] = {}


def _violation_type(name: str) -> type[_Violation]:
    # one exception class per invariant, so that Hypothesis shrinks a failure into the same failure
    t = _VIOLATION_TYPES.get(name)
    if t is None:
        t = _VIOLATION_TYPES[name] = type(f"Violated_{name.replace('-', '_')}", (_Violation,), {})
    return t


def deviations(sched: Schedule) -> int:
    """How many places ``sched`` deviates from the scenario as written: each dropped step, pause,
    kill, pinned choice, extra fault, and each swap its reordering needs (``simroll verify``'s depth)."""
    kept = [i for i in range(len(sched.keep)) if sched.keep[i]]
    n = len(sched.keep) - len(kept) + len(sched.pins) + (sched.fault is not None)
    n += sum(1 for i in kept if sched.pause[i]) + sum(1 for i in kept if sched.kill[i])
    return n + _swaps(sched.order)


def _swaps(order: tuple[int, ...]) -> int:
    """Swaps that turn ``order`` back into the plan's order: its length minus its cycles."""
    seen = [False] * len(order)
    cycles = 0
    for k in range(len(order)):
        if not seen[k]:
            cycles += 1
            j = k
            while not seen[j]:
                seen[j] = True
                j = order[j]
    return len(order) - cycles


def _unswaps(order: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
    """Each order one swap closer to the plan's: for each step out of place, the order in which it
    goes back to its place (trading places with the step there)."""
    for slot, idx in enumerate(order):
        if idx != slot:
            back = list(order)
            other = back.index(slot)
            back[slot], back[other] = slot, idx
            yield tuple(back)


def undo_deviations(s: Schedule) -> Iterator[Schedule]:
    """Every schedule with one deviation of ``s`` undone (see :func:`deviations`), in a fixed order:
    the extra fault, each dropped step, each pinned choice, each kill, each pause, each swap."""
    if s.fault is not None:
        yield replace(s, fault=None)
    for i in range(len(s.keep)):
        if not s.keep[i]:
            yield replace(s, keep=s.keep[:i] + (True,) + s.keep[i + 1 :])
    for pin in s.pins:
        yield replace(s, pins=tuple(p for p in s.pins if p != pin))
    for i in range(len(s.kill)):
        if s.keep[i] and s.kill[i]:
            yield replace(s, kill=s.kill[:i] + (False,) + s.kill[i + 1 :])
    for i in range(len(s.pause)):
        if s.keep[i] and s.pause[i]:
            yield replace(s, pause=s.pause[:i] + (0,) + s.pause[i + 1 :])
    for order in _unswaps(s.order):
        yield replace(s, order=order)


def minimize(
    scenario: Scenario,
    sched: Schedule,
    invariant: str,
    on_run: Callable[[], None] | None = None,
    executor: Executor | None = None,
) -> Schedule:
    """Greedy 1-minimisation within the scenario's search space: drop steps (if the space allows
    it), zero pauses, undo kills, unpin choices, undo the extra fault and the reordering, one at
    a time, while ``invariant`` stays violated. Each round takes the first candidate, in a fixed
    order, that still fails; with an executor, candidates are run a batch at a time in parallel
    and the result is the same."""
    executor = executor or Executor()
    batch = 1 if executor.workers == 1 else 2 * executor.workers

    may_drop = search_space(scenario).drop_steps

    def candidates(s: Schedule):
        if s.fault is not None:
            yield replace(s, fault=None)
        for i in s.order:
            if s.keep[i] and may_drop:  # a dropped step carries no pause and no kill
                yield replace(
                    s,
                    keep=s.keep[:i] + (False,) + s.keep[i + 1 :],
                    pause=s.pause[:i] + (0,) + s.pause[i + 1 :],
                    kill=s.kill[:i] + (False,) + s.kill[i + 1 :],
                )
        for pin in s.pins:
            yield replace(s, pins=tuple(p for p in s.pins if p != pin))
        for i in range(len(s.pause)):
            if s.keep[i] and s.kill[i]:
                yield replace(s, kill=s.kill[:i] + (False,) + s.kill[i + 1 :])
        for i in range(len(s.pause)):
            if s.keep[i] and s.pause[i]:
                yield replace(s, pause=s.pause[:i] + (0,) + s.pause[i + 1 :])
                if s.pause[i] > 1:
                    yield replace(s, pause=s.pause[:i] + (s.pause[i] // 2,) + s.pause[i + 1 :])
        if list(s.order) != sorted(s.order):
            yield replace(s, order=tuple(sorted(s.order)))
            # then each swap in turn: only the swaps the violation needs stay
            for order in _unswaps(s.order):
                yield replace(s, order=order)

    # normalise: dropped steps carry no pause or kill
    sched = replace(
        sched,
        pause=tuple(p if k else 0 for p, k in zip(sched.pause, sched.keep)),
        kill=tuple(x and k for x, k in zip(sched.kill, sched.keep)),
    )
    improved = True
    while improved:
        improved = False
        pending = list(candidates(sched))
        for start in range(0, len(pending), batch):
            chunk = pending[start : start + batch]
            outcomes = executor.map(_evaluate, [(scenario, c) for c in chunk])
            for cand, (violated, _) in zip(chunk, outcomes):
                if on_run is not None:
                    on_run()
                if invariant in violated:
                    sched, improved = cand, True
                    break
            if improved:
                break
    return sched


AIM_BATCH = 4  # schedules the aim strategy draws before it reads their outcomes (any number of workers)
AIM_RANKS = 16  # choice points tried around each moment of interest, nearest first
AIM_ELITE = 4  # best-scoring schedules kept per invariant, as bases and for mutation


class _Aim:
    """The ``aim`` strategy: pins placed where a run came close, then mutation of the best.

    Random sampling spreads a schedule's few pins over hundreds of choice points; a bug that one
    pin on one point triggers is then found by luck. ``aim`` reads, from each run it keeps as a
    *base* (the plain run first, then each plan-level variant that sets a new best score, its pins
    left out), the moments that matter -- each invariant's near miss (:class:`_Seen`) and the
    times of the operator's steps and injected kills -- and the simulated time of every choice
    point. It then tries pins on the choice points nearest those moments, those at or before a
    moment first (a choice changes only what comes after it; a near miss is searched twice as
    deep as a step), a delay's middle and largest level first, every other consumer; and extra
    kills while an engine holds work. Draws take turns: a neighbour of a schedule that set a new
    best score (the same point's other options, the points next to it) or else an aimed one; an
    aimed one; a plan-level change (each pause level, drop, kill and swap of the plain run, in a
    seeded order, then mutations of the best schedules); a plain random draw. The best schedule
    of each plan is kept (up to :data:`AIM_ELITE` plans per invariant), so a plan whose score is
    a local optimum does not crowd out the others.

    Deterministic: every draw comes from ``random.Random`` seeded with the search's seed, and the
    outcomes are read a batch of :data:`AIM_BATCH` schedules at a time, in order, so the search
    is the same for any number of workers."""

    def __init__(self, scenario: Scenario, points: dict[str, int], seed: int, wanted: Callable[[str], bool]) -> None:
        self.scenario = scenario
        self.points = points
        self.seed = seed
        self.wanted = wanted
        self.space = search_space(scenario)
        self.rng = random.Random(f"simroll-aim/{seed}")
        self.tried: set[Schedule] = set()
        # per invariant, the best schedule of each plan (its plan-level choices), best and simplest
        # first: (score, deviations, when, schedule, what its run showed). Keeping one per plan keeps
        # the bases diverse: a plan whose score is a local optimum does not crowd out the others.
        self.elite: dict[str, list[tuple[float, int, int, Schedule, _Seen]]] = {}
        self.floor: dict[str, float] = {}  # the plain run's scores: a base must beat one of them
        self.bases: list[tuple[Schedule, Iterator[Schedule]]] = []  # aimed schedules per base, in turn
        self.plain: Schedule | None = None
        self.climb: list[Schedule] = []  # neighbours of schedules that set a new best, first in, first out
        self.parent_of: dict[Schedule, Schedule] = {}  # a derived schedule -> the one it came from
        self.plans: Iterator[Schedule] | None = None  # the plain run with one plan-level change, in a seeded order
        self.count = 0  # outcomes read
        self.sweep = 0  # random draws so far

    # ------------------------------------------------------------------ reading outcomes
    def add(self, sched: Schedule, scores: dict[str, float], seen: _Seen, parent: Schedule | None) -> None:
        """Note one run's outcome: a base if it is among the best, its neighbours if it set a new best."""
        self.count += 1
        scores = {k: v for k, v in scores.items() if self.wanted(k)}
        if self.plain is None:
            self.plain, self.floor = sched, scores
            self.bases.append((sched, self._aimed(sched, seen)))
            self.plans = self._plan_changes(sched)
            return
        record = any(
            v > max([self.floor.get(k, 0.0)] + [e[0] for e in self.elite.get(k, ())]) for k, v in scores.items()
        )
        if record and parent is not None:  # a new best, one change away from a base: try what is next to it
            self.climb.extend(self._neighbours(sched, parent))
        plan = _plan_of(sched)
        entered = False
        for name, score in scores.items():
            if score <= self.floor.get(name, 0.0):
                continue
            best = self.elite.setdefault(name, [])
            entry = (score, deviations(sched), self.count, sched, seen)
            same = [e for e in best if _plan_of(e[3]) == plan]
            if same and (same[0][0], -same[0][1]) >= (score, -entry[1]):
                continue
            best[:] = sorted([e for e in best if _plan_of(e[3]) != plan] + [entry], key=lambda e: (-e[0], e[1], e[2]))
            del best[AIM_ELITE:]
            entered = entered or entry in best
        if entered:
            # a plan new among the best: aim from it (its pins left out: what a pin adds to a plan
            # is found by aiming at that plan's moments), next; a plan that stays keeps its turn
            plans = {_plan_of(e[3]) for best in self.elite.values() for e in best} | {_plan_of(self.plain)}
            self.bases = [(b, g) for b, g in self.bases if _plan_of(b) in plans]
            if all(_plan_of(b) != plan for b, _ in self.bases):
                bare = replace(sched, pins=())
                self.bases.insert(0, (bare, self._aimed(bare, seen)))
                if sched.pins:
                    self.climb.append(self._child(bare, sched))

    # ------------------------------------------------------------------ drawing schedules
    def draw(self, n: int) -> list[tuple[Schedule, Schedule | None]]:
        """The next ``n`` schedules (each with the base it was derived from, if any), none tried
        before. In turn: a neighbour of a new best (or, if none is waiting, one aimed at a base's
        moments), one aimed, one plan-level change (of the plain run, then of the best), one random
        draw."""
        out: list[tuple[Schedule, Schedule | None]] = []
        for _ in range(50 * n):
            if len(out) == n:
                break
            turn = (self.count + len(out)) % 4
            sched: Schedule | None
            if turn == 0 and self.climb:
                sched = self.climb.pop(0)
            elif turn == 3:
                sched = self._random()
            elif turn == 2:
                sched = next(self.plans, None) if self.plans is not None else None
                if sched is None:
                    sched = self._mutant()
            else:
                sched = self._next_aimed()
            if sched is None or sched in self.tried:
                continue
            self.tried.add(sched)
            out.append((sched, self.parent_of.get(sched)))
        return out

    def _random(self) -> Schedule:
        self.sweep += 1
        return _random_schedule(self.scenario, self.points, self.seed, self.sweep - 1)

    def _next_aimed(self) -> Schedule | None:
        # the bases in turn, the newest first, one aimed schedule each
        while self.bases:
            base, gen = self.bases[0]
            nxt = next(gen, None)
            if nxt is None:
                self.bases.pop(0)
                continue
            self.bases.append(self.bases.pop(0))
            return nxt
        return self._mutant()

    def _plan_changes(self, plain: Schedule) -> Iterator[Schedule]:
        """The plain schedule with one plan-level change each (a pause level, a dropped step, a kill,
        a swap within a reorder group), in an order drawn from the seed."""
        space, n = self.space, len(plain.order)
        changes: list[Schedule] = []
        for i in range(n):
            if space.max_pause > 0:
                changes += [
                    replace(plain, pause=plain.pause[:i] + (k,) + plain.pause[i + 1 :])
                    for k in range(1, PAUSE_LEVELS + 1)
                ]
            if space.drop_steps:
                changes.append(replace(plain, keep=plain.keep[:i] + (False,) + plain.keep[i + 1 :]))
            if _flippable(self.scenario, i):
                changes.append(replace(plain, kill=plain.kill[:i] + (True,) + plain.kill[i + 1 :]))
        for group in space.reorder:
            slots = sorted(set(group))
            for x in range(len(slots)):
                for y in range(x + 1, len(slots)):
                    order = list(plain.order)
                    order[slots[x]], order[slots[y]] = order[slots[y]], order[slots[x]]
                    changes.append(replace(plain, order=tuple(order)))
        self.rng.shuffle(changes)
        return iter(changes)

    def _aimed(self, base: Schedule, seen: _Seen) -> Iterator[Schedule]:
        """Schedules that add one deviation to ``base`` near its moments of interest, nearest first."""
        space = self.space
        moments: list[float] = []
        for name in sorted(seen.peaks):
            if self.wanted(name):
                moments.append(seen.peaks[name])
        moments += [t for t in seen.marks if all(abs(t - m) > 1e-6 for m in moments)]
        # extra kills while an engine holds work (a kill of an idle engine loses nothing)
        if space.kill_engines and base.fault is None:
            horizon = _horizon(self.scenario)
            for level in range(FAULT_LEVELS + 1):
                at = horizon * level / FAULT_LEVELS
                for engine in space.kill_engines:
                    if any(a <= at < b for a, b in seen.busy.get(engine, ())):
                        yield self._child(replace(base, fault=(engine, level)), base)
        if not (space.events and moments):
            return
        kinds = sorted(k for k, c in self.points.items() if c > 0 and k in seen.times)
        pinned = {p[:2] for p in base.pins}
        if len(base.pins) >= MAX_PINS:
            return
        order = {kind: [_nearest(seen.times[kind], t) for t in moments] for kind in kinds}
        peaks = sum(1 for name in seen.peaks if self.wanted(name))
        used: set[tuple[str, int]] = set()
        later: list[tuple[str, int, int]] = []
        for rank in range(AIM_RANKS):
            for m in range(len(moments)):
                # a near miss's moment is searched twice as deep as an operator step's
                for r in (2 * rank, 2 * rank + 1) if m < peaks else (rank,):
                    yield from self._pins_at(base, kinds, order, m, r, used, pinned, seen, later)
        for pin in later:
            yield self._child(replace(base, pins=base.pins + (pin,)), base)

    def _pins_at(
        self,
        base: Schedule,
        kinds: list[str],
        order: dict[str, list[list[int]]],
        m: int,
        rank: int,
        used: set[tuple[str, int]],
        pinned: set[tuple[str, int]],
        seen: _Seen,
        later: list[tuple[str, int, int]],
    ) -> Iterator[Schedule]:
        """One pin on the ``rank``-th choice point of each kind nearest moment ``m`` (its first options;
        the rest are noted in ``later``)."""
        for kind in kinds:
            near = order[kind][m]
            if rank < len(near):
                at = near[rank]
                if (kind, at) in used or (kind, at) in pinned or at >= self.points[kind]:
                    continue
                used.add((kind, at))
                options = seen.times[kind][at][1]
                first, rest = _options(kind, options)
                for option in first:
                    yield self._child(replace(base, pins=base.pins + ((kind, at, option),)), base)
                later += [(kind, at, o) for o in rest]

    def _child(self, sched: Schedule, parent: Schedule) -> Schedule:
        self.parent_of.setdefault(sched, parent)
        return sched

    def _neighbours(self, sched: Schedule, parent: Schedule) -> list[Schedule]:
        """The schedules next to one that raised a score: its new pin's other options, then the
        same option on the points next to it."""
        new = [p for p in sched.pins if p not in parent.pins]
        out: list[Schedule] = []
        for kind, at, option in new:
            rest = tuple(p for p in sched.pins if p != (kind, at, option))
            for o in range(8, 0, -1):
                if o != option:
                    out.append(replace(sched, pins=rest + ((kind, at, o),)))
            for d in (1, -1, 2, -2):
                if 0 <= at + d < self.points.get(kind, 0) and all(p[:2] != (kind, at + d) for p in rest):
                    out.append(replace(sched, pins=rest + ((kind, at + d, option),)))
        if sched.fault is not None and sched.fault != parent.fault:
            engine, level = sched.fault
            for d in (1, -1, 2, -2):
                if 0 <= level + d <= FAULT_LEVELS:
                    out.append(replace(sched, fault=(engine, level + d)))
        for child in out:
            self._child(child, sched)
        return out

    def _mutant(self) -> Schedule:
        """One or two random changes to one of the best schedules (a random draw while there is none)."""
        pool = [e[3] for name in sorted(self.elite) for e in self.elite[name]]
        if not pool:
            return self._random()
        rng = self.rng
        base = pool[rng.randrange(len(pool))]
        sched = base
        for _ in range(1 + rng.randrange(2)):
            sched = self._mutate(sched)
        return self._child(sched, base)

    def _mutate(self, s: Schedule) -> Schedule:
        rng, space, n = self.rng, self.space, len(s.order)
        moves: list[str] = []
        if space.max_pause > 0 and n:
            moves.append("pause")
        if space.drop_steps and n:
            moves.append("keep")
        if any(len(set(g)) > 1 for g in space.reorder):
            moves.append("order")
        if space.kill_engines:
            moves.append("fault")
        kinds = sorted(k for k, c in self.points.items() if c > 0)
        if space.events and kinds:
            moves += ["pin", "pin"]
        flips = [i for i in range(n) if _flippable(self.scenario, i)]
        if flips:
            moves.append("kill")
        if not moves:
            return s
        move = moves[rng.randrange(len(moves))]
        if move == "pause":
            i = rng.randrange(n)
            level = (
                min(PAUSE_LEVELS, max(0, s.pause[i] + rng.choice((-3, -2, -1, 1, 2, 3))))
                if rng.random() < 0.6
                else rng.randint(0, PAUSE_LEVELS)
            )
            return replace(s, pause=s.pause[:i] + (level,) + s.pause[i + 1 :])
        if move == "keep":
            i = rng.randrange(n)
            return replace(s, keep=s.keep[:i] + (not s.keep[i],) + s.keep[i + 1 :])
        if move == "kill":
            i = flips[rng.randrange(len(flips))]
            return replace(s, kill=s.kill[:i] + (not s.kill[i],) + s.kill[i + 1 :])
        if move == "order":
            groups = [sorted(set(g)) for g in space.reorder if len(set(g)) > 1]
            slots = groups[rng.randrange(len(groups))]
            a, b = rng.sample(slots, 2)
            order = list(s.order)
            order[a], order[b] = order[b], order[a]
            return replace(s, order=tuple(order))
        if move == "fault":
            if s.fault is not None and rng.random() < 0.7:
                engine, level = s.fault
                if rng.random() < 0.5:
                    return replace(s, fault=(engine, min(FAULT_LEVELS, max(0, level + rng.choice((-2, -1, 1, 2))))))
                return replace(s, fault=(space.kill_engines[rng.randrange(len(space.kill_engines))], level))
            if s.fault is not None:
                return replace(s, fault=None)
            engines = space.kill_engines
            return replace(s, fault=(engines[rng.randrange(len(engines))], rng.randint(0, FAULT_LEVELS)))
        # a pin: move one to a point nearby, change its option, drop it, or add one anywhere
        pins = list(s.pins)
        what = rng.randrange(4) if pins else 3
        if what == 3 and len(pins) < MAX_PINS:
            kind = kinds[rng.randrange(len(kinds))]
            pin = (kind, rng.randrange(self.points[kind]), rng.randint(1, 8))
            if all(p[:2] != pin[:2] for p in pins):
                pins.append(pin)
        elif pins:
            k = rng.randrange(len(pins))
            kind, at, option = pins[k]
            if what == 0:
                at = min(self.points[kind] - 1, max(0, at + rng.choice((-3, -2, -1, 1, 2, 3))))
                if all(p[:2] != (kind, at) for j, p in enumerate(pins) if j != k):
                    pins[k] = (kind, at, option)
            elif what == 1:
                pins[k] = (kind, at, rng.randint(1, 8))
            else:
                del pins[k]
        return replace(s, pins=tuple(pins))


def _plan_of(s: Schedule) -> tuple[Any, ...]:
    """A schedule's plan-level choices (all but its pins)."""
    return (s.order, s.keep, s.pause, s.kill, s.fault)


def _nearest(times: list[tuple[float, int]], t: float) -> list[int]:
    """Choice point numbers nearest ``t`` first: those at or before it (a choice changes only what
    comes after it), then those after; the earlier number first on a tie."""
    return sorted(range(len(times)), key=lambda i: (times[i][0] > t + 1e-9, abs(times[i][0] - t), i))


def _flippable(scenario: Scenario, i: int) -> bool:
    flips = search_space(scenario).kill_instead_of_stop
    return scenario.plan[i].action in ("stop", "restart", "remove") and (
        flips is True or (isinstance(flips, list) and i in flips)
    )


def _options(kind: str, n: int) -> tuple[list[int], list[int]]:
    """A choice point's options to try first and later: every other consumer at once; a delay or
    gap's middle and largest level first (a near miss in time is usually closed by a longer wait
    or a shorter one), the rest later."""
    if kind == "consumer":
        return list(range(1, n)), []
    return [4, 8], [6, 2, 7, 5, 3, 1]


def _run_aim(
    scenario: Scenario,
    points: dict[str, int],
    baseline: tuple[Schedule, dict[str, float], _Seen],
    test: Callable[[Schedule, tuple[list[str], dict[str, float]]], None],
    budget: int,
    seed: int,
    executor: Executor,
    wanted: Callable[[str], bool],
) -> None:
    """The ``aim`` strategy (:class:`_Aim`) for ``budget`` simulations; ``test`` raises at a violation."""
    aim = _Aim(scenario, points, seed, wanted)
    aim.tried.add(baseline[0])
    aim.add(*baseline, None)
    spent = 0
    while spent < budget:
        batch = aim.draw(min(AIM_BATCH, budget - spent))
        if not batch:
            return
        jobs = [(scenario, sched) for sched, _ in batch]
        outcomes = executor.map(_evaluate_seen, jobs) if executor.workers > 1 else map(_evaluate_seen, jobs)
        for (sched, parent), (violated, scores, seen) in zip(batch, outcomes):
            spent += 1
            test(sched, (violated, scores))  # raises at a violation
            aim.add(sched, scores, seen, parent)


def _digest(scenario: Scenario) -> bytes:
    return hashlib.sha256(dump_scenario(scenario).encode()).digest()


def fuzz(
    scenario: Scenario,
    max_examples: int = 200,
    seed: int = 0,
    database: str | None = None,
    progress: Callable[[str, int, dict[str, float]], None] | None = None,
    method: str = "aim",
    executor: Executor | None = None,
    invariant: str | None = None,
    opening_sweep: bool = True,
) -> FuzzResult:
    """Search ``scenario``'s space for a schedule that violates one of its invariants.

    ``invariant``: search for that one only; a run that violates only others does not count
    (the search goes on), and Hypothesis is steered by that invariant's score alone. None: any
    invariant the scenario checks (:func:`search_target` gives the one ``expect: violates NAME``
    names, as ``simroll fuzz`` and the pytest plugin use). A name the scenario does not check is a
    :class:`UsageError`.

    ``method="aim"`` (the default): pins aimed at the moments where runs came close to a
    violation, and mutation of the best-scoring schedules, interleaved with random draws (see
    :class:`_Aim`; it has no separate opening sweep). ``"hypothesis"``: after a random sweep of a
    tenth of the budget (none with ``opening_sweep=False``: the quality suite's way to test the
    guided phase alone), Hypothesis generates schedules, steered by each invariant's
    distance-to-violation score (``target()``), and shrinks a failure; ``"random"``: plain random
    sampling of the same space with the same budget (the benchmark's baseline). Either way the
    failure is then made 1-minimal (:func:`minimize`).

    Deterministic for a given ``seed`` when ``database`` is None. With a database directory,
    past failures of this scenario (the minimal schedules simroll saved, and Hypothesis' own
    example database) are replayed first. ``progress(phase, runs, best)`` is
    called after every simulation. Ctrl-C returns what was found so far, with ``interrupted``.

    ``executor`` (see :mod:`simroll.explore.parallel`) runs the random sweep, the aim strategy's
    batches and the minimisation on many workers; the Hypothesis phase runs here. The first
    violation of a sweep or batch is the one with the lowest index, so the counterexample does not
    depend on the number of workers.
    """
    executor = executor or Executor()
    if method not in METHODS:
        raise ValueError(f"method={method!r}: expected one of {', '.join(map(repr, METHODS))}")
    _check_target(scenario, invariant)
    t0 = time.perf_counter()
    baseline = run_scenario(scenario, keep_trace=False)
    points = baseline.choice_counts
    state: dict[str, Any] = {"examples": 1, "failure": None, "phase": "searching", "best": dict(baseline.scores)}
    result = FuzzResult(scenario=scenario, seed=seed, found=False, examples=1, target=invariant)

    def tick() -> None:
        if progress is not None:
            progress(state["phase"], state["examples"], state["best"])

    def test(sched: Schedule, outcome: tuple[list[str], dict[str, float]] | None = None) -> None:
        if state["failure"] is None and state["examples"] >= max_examples:
            # the budget is spent (Hypothesis may ask for more than it was allowed, e.g. replaying
            # its database): the rest of the search generates nothing, and runs nothing
            hypothesis.reject()
        state["examples"] += 1
        violated, scores = outcome if outcome is not None else _evaluate((scenario, sched))
        if invariant is not None:  # only the invariant searched for counts, and steers
            violated = [name for name in violated if name == invariant]
            scores = {name: score for name, score in scores.items() if name == invariant}
        for name, score in scores.items():
            if score > state["best"].get(name, 0.0):
                state["best"][name] = score
            if hypothesis.currently_in_test_context():  # Hypothesis is generating (not the random sweep)
                hypothesis.target(score, label=name)
        tick()
        if violated:
            inv = violated[0]
            if state["failure"] is None:
                result.first_violation_after = state["examples"]
                result.search_seconds = time.perf_counter() - t0
            if state["failure"] is None or state["failure"][1] == inv:
                state["failure"] = (sched, inv)
                state["phase"] = "shrinking"
            raise _violation_type(inv)(inv)

    if invariant is not None:
        state["best"] = {k: v for k, v in state["best"].items() if k == invariant}
    wanted_at_once = [name for name in baseline.violated if invariant is None or name == invariant]
    if wanted_at_once:
        state["failure"] = (Schedule.default(len(scenario.plan)), wanted_at_once[0])
        result.first_violation_after = 1
    else:
        try:  # past failures of this scenario first, then a random sweep, then Hypothesis
            for sched in _saved_failures(database, scenario, points, result.warnings)[: max_examples - 1]:
                test(sched)
        except _Violation:
            pass
        # "hypothesis" starts with a short random sweep (a tenth of the budget): a dense bug is then
        # found as fast as by random sampling, and Hypothesis' guided generation gets the rest
        sweep = max_examples if method == "random" else max(1, max_examples // 10) if opening_sweep else 0
        if method == "aim":  # its own random draws are interleaved with the aimed ones
            sweep = 0
        sweep = min(sweep, max_examples - state["examples"])  # the budget counts the default run too
        try:
            if state["failure"] is not None:
                raise _Violation
            batch = 1 if executor.workers == 1 else 4 * executor.workers
            for start in range(0, sweep, batch):
                scheds = [_random_schedule(scenario, points, seed, i) for i in range(start, min(sweep, start + batch))]
                for sched, outcome in zip(scheds, executor.map(_evaluate, [(scenario, x) for x in scheds])):
                    test(sched, outcome)
            if method == "hypothesis" and state["examples"] < max_examples:
                _run_hypothesis(scenario, points, test, max_examples - state["examples"], seed, database)
            if method == "aim" and state["examples"] < max_examples:
                plain = Schedule.default(len(scenario.plan))
                _, plain_scores, plain_seen = _evaluate_seen((scenario, plain))  # the default run again, noted
                _run_aim(
                    scenario,
                    points,
                    (plain, plain_scores, plain_seen),
                    test,
                    max_examples - state["examples"],
                    seed,
                    executor,
                    lambda name: invariant is None or name == invariant,
                )
        except _Violation:
            pass
        except KeyboardInterrupt:
            result.interrupted = True
    if state["failure"] is None:
        result.search_seconds = time.perf_counter() - t0
    else:
        sched, inv = state["failure"]
        state["phase"] = "minimising"

        def count() -> None:
            state["examples"] += 1
            tick()

        try:
            sched = minimize(scenario, sched, inv, count, executor)
        except KeyboardInterrupt:
            result.interrupted = True
        result.shrink_seconds = time.perf_counter() - t0 - result.search_seconds
        if database:
            _save_failure(database, scenario, sched, points, result.warnings)
        finish_counterexample(result, sched, inv, f"simroll fuzz (seed {seed})")
    # what the budget paid for: the runs up to the first violation (or all of them); shrinking after
    result.examples = state["examples"] if result.first_violation_after is None else result.first_violation_after
    result.shrink_runs = state["examples"] - result.examples
    return result


def finish_counterexample(result: FuzzResult, sched: Schedule, inv: str, origin: str) -> None:
    """Fill ``result`` with the counterexample ``sched`` stands for (every choice pinned,
    ``expect: violates INV``, a description naming ``origin``) and its checked run."""
    scenario = result.scenario
    ce = apply_schedule(scenario, sched).model_copy(
        update={
            "expect": f"violates {inv}",
            "description": f"Counterexample found by {origin} from scenario {scenario.name}. " + scenario.description,
        }
    )
    result.found, result.invariant, result.schedule, result.counterexample = True, inv, sched, ce
    result.result = run_scenario(ce)


def search_target(scenario: Scenario, invariant: str | None = None) -> str | None:
    """The invariant a search of ``scenario`` is for: ``invariant`` if given, else the one its
    ``expect: violates NAME`` names, else None (any)."""
    if invariant is None and scenario.expect is not None and scenario.expect.startswith("violates "):
        invariant = scenario.expect.split(" ", 1)[1]
    return invariant


def _check_target(scenario: Scenario, invariant: str | None) -> None:
    """A search for ``invariant`` needs a scenario that checks it."""
    if invariant is not None:
        checked = list(scenario.invariants.enabled())
        if invariant not in checked:
            raise UsageError(
                f"--invariant {invariant}: the scenario does not check it "
                f"(it checks: {', '.join(checked) or 'nothing'})"
            )


def _failures_file(database: str, scenario: Scenario) -> Path:
    return Path(database) / "simroll-failures" / f"{_digest(scenario).hex()[:32]}.json"


def _saved_failures(
    database: str | None, scenario: Scenario, points: dict[str, int] | None = None, warnings: list[str] | None = None
) -> list[Schedule]:
    """Minimal failing schedules saved by earlier searches of this very scenario.

    The store is a cache: a file that is not what simroll writes (corrupted, truncated, edited)
    is ignored with a warning in ``warnings``, and the search starts afresh; only schedules that
    fit this scenario's search space are replayed."""
    if not database:
        return []
    path = _failures_file(database, scenario)
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as e:  # unreadable, not UTF-8, not JSON
        _warn(warnings, f"{path}: failure store ignored ({type(e).__name__}: {str(e)[:100]}); starting afresh")
        return []
    out = [
        sched
        for sched in map(lambda d: _schedule_from_json(d, scenario, points), saved if isinstance(saved, list) else [])
        if sched is not None
    ]
    if not isinstance(saved, list) or len(out) != len(saved):
        _warn(warnings, f"{path}: failure store partly unreadable; kept {len(out)} saved schedule(s), ignored the rest")
    return out


def _warn(warnings: list[str] | None, text: str) -> None:
    if warnings is not None:
        warnings.append(text)


def _schedule_from_json(d: Any, scenario: Scenario, points: dict[str, int] | None) -> Schedule | None:
    """A saved schedule if it is one of this scenario's search space, else None."""
    n = len(scenario.plan)
    engines = {e.name for e in scenario.engine_list()}
    try:
        order, keep, pause, kill = (tuple(d[k]) for k in ("order", "keep", "pause", "kill"))
        pins = tuple(tuple(p) for p in d["pins"])
        fault = None if d["fault"] is None else tuple(d["fault"])
    except (KeyError, TypeError, ValueError):
        return None
    if sorted(order) != list(range(n)) or any(type(i) is not int for i in order):
        return None
    if len(keep) != n or len(kill) != n or any(type(b) is not bool for b in keep + kill):
        return None
    if len(pause) != n or any(type(x) is not int or not 0 <= x <= PAUSE_LEVELS for x in pause):
        return None
    for pin in pins:
        if (
            len(pin) != 3
            or not isinstance(pin[0], str)
            or any(type(x) is not int for x in pin[1:])
            or (points is not None and not 0 <= pin[1] < points.get(pin[0], 0))
            or not 1 <= pin[2] <= 8
        ):
            return None
    if fault is not None and (
        len(fault) != 2 or fault[0] not in engines or type(fault[1]) is not int or not 0 <= fault[1] <= FAULT_LEVELS
    ):
        return None
    return Schedule(order, keep, pause, kill, pins, fault)


def _save_failure(
    database: str,
    scenario: Scenario,
    sched: Schedule,
    points: dict[str, int] | None = None,
    warnings: list[str] | None = None,
) -> None:
    """Remember ``sched`` for the next search. The store is a cache: failing to write it is a warning."""
    path = _failures_file(database, scenario)
    saved = [s for s in _saved_failures(database, scenario, points) if s != sched]
    saved.insert(0, sched)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # atomic: an interrupted save leaves the previous file whole
        atomic_write_text(path, json.dumps([asdict(s) for s in saved[:20]]), overwrite=True)
    except (OSError, UsageError) as e:
        _warn(warnings, f"{path}: could not save the failure for the next search ({_reason(e)})")


def _reason(e: BaseException) -> str:
    return (e.strerror or str(e)) if isinstance(e, OSError) else str(e)


def _run_hypothesis(
    scenario: Scenario,
    points: dict[str, int],
    test: Callable[[Schedule], None],
    max_examples: int,
    seed: int,
    database: str | None,
) -> None:
    # one example database per scenario (keyed by the scenario's digest), so that the failures of
    # one design are never replayed against another: Hypothesis keys examples by the test
    # function, which is the same wrapper for every scenario, and has no public way to set the key
    db = (
        DirectoryBasedExampleDatabase(str(Path(database) / "examples" / _digest(scenario).hex()[:32]))
        if database
        else None
    )
    wrapped = hypothesis.seed(seed)(
        settings(
            max_examples=max_examples,
            deadline=None,
            database=db,
            derandomize=False,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
            report_multiple_bugs=False,
            verbosity=hypothesis.Verbosity.quiet,
            print_blob=False,
        )(hypothesis.given(_schedules(scenario, points))(lambda sched: test(sched)))
    )
    try:
        wrapped()
    except hypothesis.errors.Unsatisfiable:  # every example it asked for was past the budget
        pass


def counterexample_text(fr: FuzzResult, source: str) -> str:
    """The counterexample as a scenario file: a header comment with the steps, then the YAML."""
    assert fr.counterexample is not None
    header = [
        f"# Counterexample found by `simroll {fr.command or 'fuzz'} {source}"
        + ("" if fr.command else f" --seed {fr.seed}")
        + "`.",
        f"# It violates {fr.invariant}; `simroll run` on this file replays it (trace sha256 {fr.trace_sha256}).",
        "#",
    ]
    header += [f"# {line}" for line in fr.steps]
    return "\n".join(header) + "\n" + dump_scenario(fr.counterexample)


COUNTEREXAMPLES = Path(".simroll") / "counterexamples"  # the default place, under the working directory


def save_new_counterexample(
    fr: FuzzResult, source: str, directory: str | Path = COUNTEREXAMPLES, name: str | None = None
) -> Path:
    """Write the counterexample as ``DIRECTORY/NAME.yaml``, or ``NAME.1.yaml``, ``NAME.2.yaml``... : the
    first name nobody has, taken exclusively (a hard link, like O_EXCL), so two searches running at
    once never write the same file. ``NAME`` defaults to the scenario file's name without ``.yaml``.
    Raises :class:`UsageError` or OSError if the directory cannot be written."""
    base = name or _stem(source)
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    text = counterexample_text(fr, source)
    for k in range(100_000):
        target = d / (f"{base}.yaml" if k == 0 else f"{base}.{k}.yaml")
        try:
            atomic_write_text(target, text, overwrite=False)
        except UsageError:
            if os.path.lexists(target):  # taken, by an earlier search or one running now: the next name
                continue
            raise
        fr.out = str(target)
        return target
    raise UsageError(f"{d}: no free name for {base}.yaml")


def _stem(source: str) -> str:
    name = Path(source).name
    for suffix in (".yaml", ".yml"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name or "scenario"


def save_counterexample(fr: FuzzResult, path: str | Path, source: str, overwrite: bool = False) -> Path:
    """Write the counterexample scenario atomically; an existing file is replaced only if ``overwrite``."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    target = atomic_write_text(path, counterexample_text(fr, source), overwrite=overwrite)
    fr.out = str(target)
    return target
