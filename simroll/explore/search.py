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
from simroll.errors import UsageError
from simroll.explore.parallel import Executor
from simroll.run import RunResult, run_scenario
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

PAUSE_LEVELS = 16  # a pause choice adds k/16 of max_pause, k in 0..16
FAULT_LEVELS = 64  # an extra kill happens at k/64 of the default run's length
MAX_PINS = 3  # event-level choice points a schedule may pin


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


def _digest(scenario: Scenario) -> bytes:
    return hashlib.sha256(dump_scenario(scenario).encode()).digest()


def fuzz(
    scenario: Scenario,
    max_examples: int = 200,
    seed: int = 0,
    database: str | None = None,
    progress: Callable[[str, int, dict[str, float]], None] | None = None,
    method: str = "hypothesis",
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

    ``method="hypothesis"``: after a random sweep of a tenth of the budget (none with
    ``opening_sweep=False``: the quality suite's way to test the guided phase alone), Hypothesis
    generates schedules, steered by each invariant's distance-to-violation score
    (``target()``), and shrinks a failure; ``"random"``: plain random sampling of the same
    space with the same budget (the benchmark's baseline). Either way the failure is then
    made 1-minimal (:func:`minimize`).

    Deterministic for a given ``seed`` when ``database`` is None. With a database directory,
    past failures of this scenario (the minimal schedules simroll saved, and Hypothesis' own
    example database) are replayed first. ``progress(phase, runs, best)`` is
    called after every simulation. Ctrl-C returns what was found so far, with ``interrupted``.

    ``executor`` (see :mod:`simroll.explore.parallel`) runs the random sweep and the minimisation on
    many workers; the Hypothesis phase runs here. The first violation of the sweep is the one
    with the lowest index, so the counterexample does not depend on the number of workers.
    """
    executor = executor or Executor()
    if method not in ("hypothesis", "random"):
        raise ValueError(f"method={method!r}: expected 'hypothesis' or 'random'")
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
