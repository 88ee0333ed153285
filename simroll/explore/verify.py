"""Bounded-exhaustive checking (``simroll verify``): every schedule that deviates from the plain
run in at most K places, breadth-first, so the first counterexample found is a shortest one.

A *deviation* is one of the choices :mod:`simroll.explore.search` draws, taken away from its
default:

* plan level (within the scenario's ``search`` space): drop a step, pause before a step (each of
  the 16 pause levels is one deviation), turn a stop, restart or remove into a kill, kill an engine at one
  of the 65 instants of the search's fault grid, and reorder a declared group (a permutation
  costs as many deviations as the swaps it needs: its Cayley distance);
* event level (if ``search.events``): one choice point of the run taken with another option:
  another consumer, a delay level, a backfill gap.

Level d holds the plan variants of cost d, and each level d-1 schedule extended by one event
deviation at a choice point after its last one (in that schedule's own run, which agrees with
its parent's until that point). So every schedule with at most K deviations is met exactly once.

Within a depth the schedules run in order of promise (:func:`_order`), as the ``aim`` strategy of
:mod:`simroll.explore.search` places its pins: first the extensions whose new choice point is
nearest (in simulated time, at or before first) the parent run's near miss of the invariants
searched for (a checker's ``near_t``) or one of its operator steps and kills, from the parents
with the best scores. Every schedule of a depth still runs (or is pruned) before the next depth
starts: the order changes how soon a counterexample is met, not what "verified" covers nor the
depth of a counterexample (which may be another one of the same depth).

State pruning: at each choice point where a schedule would be extended, the explorer takes a
digest of the simulation's state (:func:`simroll.sim.digest.state_digest`). If an earlier
schedule (at this depth or a smaller one, so with at least as much budget left) reached the same
digest, the choices from there on were already explored from that state: this schedule is not
extended at that point or after. The digest's module says what it covers and what it does not;
``prune=False`` explores without it.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from simroll.check.invariants import InvariantResult, make_checkers
from simroll.explore.parallel import Executor
from simroll.explore.search import (
    FAULT_LEVELS,
    PAUSE_LEVELS,
    FuzzResult,
    Schedule,
    _check_target,
    _evaluate,
    _horizon,
    _options,
    _swaps,
    apply_schedule,
    finish_counterexample,
    search_space,
    undo_deviations,
)
from simroll.run import subscribe_checkers
from simroll.scenario.spec import Scenario
from simroll.sim.chooser import Chooser
from simroll.sim.digest import state_digest
from simroll.sim.kernel import Simulation
from simroll.sim.trace import Trace

# (position in the run, kind, number of that kind, options, digest, simulated time)
Point = tuple[int, str, int, int, bytes | None, float]


@dataclass
class VerifyResult:
    """What ``simroll verify`` concluded.

    ``verified``: every schedule up to ``depth`` deviations ran and none violated (the invariant
    searched for, or any). ``found``: ``example`` holds the shortest counterexample, a
    :class:`~simroll.explore.search.FuzzResult` written and replayed like fuzz's. ``levels[d]`` is
    the number of schedules with exactly d deviations that ran; ``states`` the distinct states
    met at choice points where schedules were extended (None without pruning, or when the
    search space has no event-level choices)."""

    scenario: Scenario
    depth: int
    found: bool = False
    invariant: str | None = None
    schedules: int = 0
    states: int | None = None
    levels: list[int] = field(default_factory=list)
    pruned: int = 0  # choice points not extended because their state was met before
    depth_done: int = -1  # the deepest level explored completely
    interrupted: bool = False
    example: FuzzResult | None = None
    target: str | None = None
    vacuous: list[str] = field(default_factory=list)  # invariants with nothing to check in any run
    checked: dict[str, int] = field(default_factory=dict)  # events judged per invariant, over every run

    @property
    def verified(self) -> bool:
        return not self.found and not self.interrupted and self.depth_done >= self.depth

    @property
    def steps(self) -> list[str]:
        return [] if self.example is None else self.example.steps

    @property
    def out(self) -> str | None:
        return None if self.example is None else self.example.out

    @property
    def trace_sha256(self) -> str | None:
        return None if self.example is None else self.example.trace_sha256

    def summary(self) -> str:
        """One line: what was verified, or what was found."""
        if self.found:
            return (
                f"FOUND a violation of {self.invariant} at depth {len(self.levels) - 1} "
                f"after {self.schedules} schedules (a shortest counterexample)"
            )
        states = "" if self.states is None else f", {self.states} distinct states"
        what = "every invariant held" if self.target is None else f"{self.target} held"
        vac = f" (vacuous, nothing to check: {', '.join(self.vacuous)})" if self.vacuous else ""
        if not self.verified:
            return (
                f"interrupted: {self.schedules} schedules, depth {self.depth_done} complete{states}, "
                f"no violation so far{vac}"
            )
        return f"verified: {self.schedules} schedules up to depth {self.depth}{states}, {what}{vac}"

    def to_json(self) -> dict[str, Any]:
        return {
            "verified": self.verified,
            "found": self.found,
            "invariant": self.invariant,
            "searched_for": self.target,
            "depth": self.depth,
            "depth_done": self.depth_done,
            "schedules": self.schedules,
            "states": self.states,
            "levels": self.levels,
            "pruned": self.pruned,
            "vacuous": self.vacuous,
            "checked": self.checked,
            "interrupted": self.interrupted,
            "steps": self.steps,
            "out": self.out,
            "trace_sha256": self.trace_sha256,
            "summary": self.summary(),
        }


@dataclass(frozen=True)
class _Node:
    sched: Schedule
    last: int  # position of its last event deviation (-1: none)
    depth: int


# ------------------------------------------------------------------ plan-level variants
def _plan_variants(scenario: Scenario, cost: int) -> Iterator[Schedule]:
    """Every plan-level variant of the scenario's search space with exactly ``cost`` deviations,
    in a fixed order."""
    space = search_space(scenario)
    n = len(scenario.plan)
    flips = space.kill_instead_of_stop
    dims: list[list[tuple[int, Any]]] = []
    for i, step in enumerate(scenario.plan):
        opts: list[tuple[int, Any]] = [(0, ("step", i, True, 0, False))]
        may_kill = step.action in ("stop", "restart", "remove") and (
            flips is True or (isinstance(flips, list) and i in flips)
        )
        if space.drop_steps:
            opts.append((1, ("step", i, False, 0, False)))
        pauses = range(1, PAUSE_LEVELS + 1) if space.max_pause > 0 else range(0)
        opts += [(1, ("step", i, True, p, False)) for p in pauses]
        if may_kill:
            opts.append((1, ("step", i, True, 0, True)))
            opts += [(2, ("step", i, True, p, True)) for p in pauses]
        dims.append(opts)
    for group in space.reorder:
        slots = sorted(set(group))
        # a permutation costs the swaps it needs: its length minus its cycles
        perms = [
            (_swaps(tuple(slots.index(x) for x in p)), ("order", tuple(slots), p))
            for p in itertools.permutations(slots)
        ]
        dims.append(sorted(perms, key=lambda x: x[0]))
    if space.kill_engines:
        faults: list[tuple[int, Any]] = [(0, ("fault", None))]
        faults += [(1, ("fault", (e, lvl))) for e in space.kill_engines for lvl in range(FAULT_LEVELS + 1)]
        dims.append(faults)

    def combos(k: int, left: int) -> Iterator[list[Any]]:
        if k == len(dims):
            if left == 0:
                yield []
            return
        rest = sum(max(c for c, _ in d) for d in dims[k + 1 :])
        for c, v in dims[k]:
            if c <= left and left - c <= rest:
                for tail in combos(k + 1, left - c):
                    yield [v, *tail]

    for combo in combos(0, cost):
        order, keep, pause, kill = list(range(n)), [True] * n, [0] * n, [False] * n
        fault = None
        for v in combo:
            if v[0] == "step":
                _, i, keep[i], pause[i], kill[i] = v
            elif v[0] == "order":
                for slot, idx in zip(v[1], v[2], strict=True):
                    order[slot] = idx
            else:
                fault = v[1]
        yield Schedule(tuple(order), tuple(keep), tuple(pause), tuple(kill), (), fault)


# ------------------------------------------------------------------ one run
class _Recorder(Chooser):
    """A chooser that notes the choice points after ``after`` (and their state digests)."""

    def __init__(self, seed: int, pinned: dict[tuple[str, int], int], after: int | None, digests: bool, seen: Any):
        super().__init__(seed, pinned)
        self.sim: Simulation | None = None
        self.after = after
        self.digests = digests
        self.seen = seen
        self.log: list[Point] = []
        self.memo: dict[int, tuple[Any, str]] = {}
        self.stopped = after is None

    def pick(self, kind: str, n: int) -> int:
        if not self.stopped and self.points > self.after:  # type: ignore[operator]  # after is set
            d = state_digest(self.sim, kind, n, self.memo) if self.digests else None  # type: ignore[arg-type]
            self.log.append((self.points, kind, self.counts.get(kind, 0), n, d, self.sim.env.now))  # type: ignore[union-attr]
            if d is not None and self.seen is not None and d in self.seen:
                self.stopped = True  # the parent cuts here: no need to note more
        return super().pick(kind, n)


@dataclass(frozen=True)
class _Ran:
    """What one run tells the explorer: the invariants it violates, events judged per invariant,
    the choice points after ``after`` (none if ``after`` is None), and what orders its extensions
    (see :func:`_order`): each invariant's near-miss time (its checker's ``near_t``, if it says) and
    score, the time each plan step first ran, and the times of the operator's steps and injected kills."""

    violated: list[str]
    judged: dict[str, int]
    log: list[Point]
    near: dict[str, float]
    scores: dict[str, float]
    steps: dict[int, float]
    marks: list[float]


def _run(job: tuple[Scenario, Schedule, int | None, bool, Any]) -> _Ran:
    """Run one schedule (in any process): see :class:`_Ran`."""
    scenario, sched, after, digests, seen = job
    sc = apply_schedule(scenario, sched)
    # only the verdicts are read: the trace is neither kept nor hashed (no JSON line is made), and
    # the checks count against the work budget as in run_scenario (a replay gives the same verdicts)
    trace = Trace(keep=False, hashed=False)
    checkers = subscribe_checkers(trace, make_checkers(sc.invariants.enabled(), sc))
    pinned: dict[tuple[str, int], int] = {(c.kind, c.at): c.pick for c in sc.choices}
    steps: dict[int, float] = {}
    marks: list[float] = []

    def step(rec: dict[str, Any]) -> None:
        marks.append(rec["t"])
        if rec["kind"] == "step":
            steps.setdefault(rec["index"], rec["t"])

    trace.subscribe(("step", "fault"), step)
    log: list[Point] = []
    if after is None:  # nothing to note: the plain chooser (the broker inlines its pick)
        sim = Simulation(sc, Chooser(sc.seed, pinned), trace)
        sim.run()
    else:
        chooser = _Recorder(sc.seed, pinned, after, digests, seen)
        sim = Simulation(sc, chooser, trace)
        chooser.sim = sim
        sim.run()
        log = chooser.log
    results = [InvariantResult.of(c) for c in checkers]
    return _Ran(
        [r.name for r in results if not r.held],
        {r.name: r.checked for r in results},
        log,
        {c.name: c.near_t for c in checkers if c.near_t is not None},
        {c.name: c.score() for c in checkers},
        steps,
        marks,
    )


# ------------------------------------------------------------------ the order within a depth
def _near_key(t: float, moments: list[float]) -> tuple[bool, float]:
    """How near ``t`` is to the nearest of ``moments`` (as ``aim``'s pins: at or before it first, since
    a choice changes only what comes after it; then by distance)."""
    return min(((t > m + 1e-9, abs(t - m)) for m in moments), default=(True, float("inf")))


def _ranks(keys: list[Any]) -> list[int]:
    """The rank of each key in ascending order (ties: the earlier first)."""
    out = [0] * len(keys)
    for r, i in enumerate(sorted(range(len(keys)), key=lambda i: (keys[i], i))):
        out[i] = r
    return out


def _point_ranks(times: list[float], near: list[float], marks: list[float]) -> list[int]:
    """The rank of each choice point of a run (``times``: when each was taken, in the run's order) by
    nearness to the run's moments of interest, as ``aim`` places its pins: for each moment, the points
    at or before it, nearest first, then those after it; a point ranks by its best place over the
    moments, a near miss's place counting half (``aim`` searches a near miss twice as deep as an
    operator's step or a kill). Without any moment, the points keep their order."""
    if not near and not marks:
        return list(range(len(times)))
    out = [len(times)] * len(times)
    for moments, half in ((near, True), (marks, False)):
        for m in moments:
            k = bisect.bisect_right(times, m + 1e-9)  # points 0..k-1 come at or before m
            for i in range(len(times)):
                r = k - 1 - i if i < k else i
                r = r // 2 if half else r
                if r < out[i]:
                    out[i] = r
    return out


def _option_order(kind: str, n: int) -> list[int]:
    """A choice point's other options in the order ``aim`` tries them."""
    first, rest = _options(kind, n)
    order = [o for o in first + rest if 0 < o < n]
    return order + [o for o in range(1, n) if o not in order]


def _plan_times(sched: Schedule, steps: dict[int, float], horizon: float) -> list[float]:
    """When each plan-level deviation of ``sched`` takes effect, by the plain run's step times (a step
    that did not run there: never; an injected kill: its instant on the fault grid)."""
    never = float("inf")
    out = [
        steps.get(i, never)
        for i in range(len(sched.keep))
        if not sched.keep[i] or sched.pause[i] or sched.kill[i] or sched.order[i] != i
    ]
    if sched.fault is not None:
        out.append(horizon * sched.fault[1] / FAULT_LEVELS)
    return out


def _parent_ranks(scores: list[dict[str, float]]) -> list[int]:
    """Each run's rank by promise: its best rank, over the invariants, among the runs that scored
    above 0 on it (higher first); runs that scored on none after all those, in their order."""
    names = sorted({k for s in scores for k, v in s.items() if v > 0})
    best = [len(scores)] * len(scores)
    for name in names:
        scored = sorted((-s[name], j) for j, s in enumerate(scores) if s.get(name, 0.0) > 0)
        for r, (_, j) in enumerate(scored):
            best[j] = min(best[j], r)
    positive = sum(1 for b in best if b < len(scores))
    rest = [j for j, b in enumerate(best) if b == len(scores)]
    for r, j in enumerate(rest):
        best[j] = positive + r
    return best


def _order(
    plan: list[_Node],
    extensions: list[_Node],
    origin: list[tuple[int, int, int]],
    scores: list[dict[str, float]],
    root_near: list[float],
    root_steps: dict[int, float],
    horizon: float,
) -> list[_Node]:
    """One depth's schedules (its plan-level variants, then the previous depth's schedules extended
    by one choice), most promising first, as the ``aim`` strategy of :mod:`simroll.explore.search`
    places its pins: an extension ranks by how near (in simulated time, at or before first) its new
    choice point is to its parent run's near misses of the invariants searched for, or to its
    operator steps and injected kills (:func:`_point_ranks`), and by its
    parent's rank among the previous depth's runs by score; a plan-level variant by how near the
    steps it changes ran, in the plain run, to the plain run's near misses (its parent, the plain run,
    ranks first). The two ranks combine as their product (each parent's nearest point, the best
    parent's next points, ...), then the option (in ``aim``'s order). Every rank is computed from
    results taken in a fixed order, and ties keep the enumeration order: the order is deterministic
    and is a permutation of ``plan + extensions``."""
    parent_rank = _parent_ranks(scores)
    plan_rank = _ranks(
        [
            (min((_near_key(t, root_near) for t in _plan_times(n.sched, root_steps, horizon)), default=(True, 0.0)), i)
            if root_near
            else (False, 0.0, i)
            for i, n in enumerate(plan)
        ]
    )
    keys: list[tuple[int, int, int, int, int]] = [(r + 1, r, 0, 0, i) for i, r in enumerate(plan_rank)]
    keys += [
        ((parent_rank[j] + 1) * (rank + 1), rank, parent_rank[j], o_rank, len(plan) + k)
        for k, (j, rank, o_rank) in enumerate(origin)
    ]
    nodes = plan + extensions
    return [nodes[k[-1]] for k in sorted(keys)]


# ------------------------------------------------------------------ the search
def reduce(scenario: Scenario, sched: Schedule, invariant: str, executor: Executor | None = None) -> Schedule:
    """Undo deviations of ``sched`` one at a time while ``invariant`` stays violated, until undoing
    any one of them makes it hold (1-minimal). Unlike :func:`~simroll.explore.search.minimize` it
    never adds one (fuzz's minimisation also drops steps, which is a deviation here), so a
    shortest counterexample stays as short. Candidates are tried in a fixed order, a batch at a
    time; the result does not depend on the executor."""
    executor = executor or Executor()
    batch = 1 if executor.workers == 1 else 2 * executor.workers
    improved = True
    while improved:
        improved = False
        pending = list(undo_deviations(sched))
        for start in range(0, len(pending), batch):
            chunk = pending[start : start + batch]
            for cand, (violated, _) in zip(chunk, executor.map(_evaluate, [(scenario, c) for c in chunk]), strict=True):
                if invariant in violated:
                    sched, improved = cand, True
                    break
            if improved:
                break
    return sched


def verify(
    scenario: Scenario,
    depth: int = 2,
    invariant: str | None = None,
    executor: Executor | None = None,
    progress: Callable[[int, int, int, int, int | None, int], None] | None = None,
    prune: bool = True,
    stop: Callable[[], bool] | None = None,
    order: bool = True,
) -> VerifyResult:
    """Run every schedule of ``scenario``'s search space that deviates from the plain run in at
    most ``depth`` places (see the module docstring), breadth-first; stop at the first violation
    (of ``invariant``, or of any invariant the scenario checks), which is then a shortest one,
    made 1-minimal by :func:`reduce` (undoing any one of its deviations makes it hold) and
    replayable like fuzz's.

    ``progress(level, done, level_size, schedules, states, queued)`` is called after every run
    (``states``: None without pruning; ``queued``: schedules of the next level found so far).
    ``stop()``, if given, is asked between runs; True ends the search with ``interrupted`` (as
    Ctrl-C does). The result does not depend on ``executor``'s workers.

    ``order``: run each depth's schedules in order of promise (:func:`_order`); False runs them in
    the order they are enumerated. Either way every schedule of a depth runs (or is pruned) before
    the next depth starts, so what a "verified" answer covers, and the depth of a counterexample,
    do not depend on it.
    """
    if depth < 0:
        raise ValueError(f"depth={depth}: expected 0 or more")
    executor = executor or Executor()
    _check_target(scenario, invariant)
    space = search_space(scenario)
    prune = prune and space.events  # states are compared at event choice points only
    result = VerifyResult(scenario=scenario, depth=depth, target=invariant, states=0 if prune else None)
    seen: set[bytes] = set()
    one_process = executor.workers == 1
    batch = 1 if one_process else 4 * executor.workers
    level: list[_Node] = [_Node(Schedule.default(len(scenario.plan)), -1, 0)]
    failure: tuple[Schedule, str] | None = None
    checked: dict[str, int] = {}
    horizon = _horizon(scenario)
    root_near: list[float] = []  # the plain run's near misses (of the invariants searched for)
    root_steps: dict[int, float] = {}  # and when each of its steps ran
    # per schedule of the next level: (its parent's place in this level, its point's rank in the
    # parent's run by nearness to the parent's near misses, its option's rank)
    origin: list[tuple[int, int, int]] = []
    scores: list[dict[str, float]] = []  # per schedule of this level, in the order run
    try:
        for d in range(depth + 1):
            if d > 0:
                plan = [_Node(s, -1, d) for s in _plan_variants(scenario, d)]
                if order:
                    level = _order(plan, level, origin, scores, root_near, root_steps, horizon)
                else:
                    level = plan + level
            result.levels.append(0)
            following: list[_Node] = []
            origin, scores = [], []
            extend = d < depth
            for start in range(0, len(level), batch):
                if stop is not None and stop():
                    raise KeyboardInterrupt
                chunk = level[start : start + batch]
                jobs = [
                    (
                        scenario,
                        node.sched,
                        node.last if extend and space.events else None,
                        prune,
                        seen if one_process and prune else None,
                    )
                    for node in chunk
                ]
                for node, ran in zip(chunk, executor.map(_run, jobs), strict=True):
                    result.schedules += 1
                    result.levels[d] += 1
                    for name, k in ran.judged.items():
                        checked[name] = checked.get(name, 0) + k
                    wanted = [v for v in ran.violated if invariant is None or v == invariant]
                    if wanted:
                        failure = (node.sched, wanted[0])
                        break
                    near = sorted(t for name, t in ran.near.items() if invariant is None or name == invariant)
                    if d == 0:
                        root_near, root_steps = near, ran.steps
                    parent = len(scores)
                    scores.append({k: v for k, v in ran.scores.items() if invariant is None or k == invariant})
                    points: list[Point] = []
                    for point in ran.log:
                        digest = point[4]
                        if digest is not None:
                            if digest in seen:
                                result.pruned += 1
                                break
                            seen.add(digest)
                        points.append(point)
                    ranks = _point_ranks([p[5] for p in points], near, ran.marks) if order else [0] * len(points)
                    for (pos, kind, i, n, _, _), rank in zip(points, ranks, strict=True):
                        for o_rank, o in enumerate(_option_order(kind, n) if order else range(1, n)):
                            following.append(
                                _Node(replace(node.sched, pins=(*node.sched.pins, (kind, i, o))), pos, d + 1)
                            )
                            origin.append((parent, rank, o_rank))
                    if progress is not None:
                        progress(
                            d,
                            result.levels[d],
                            len(level),
                            result.schedules,
                            len(seen) if prune else None,
                            len(following),
                        )
                if failure is not None:
                    break
            if failure is not None:
                break
            result.depth_done = d
            level = following
    except KeyboardInterrupt:
        result.interrupted = True
    if prune:
        result.states = len(seen)
    result.checked = dict(sorted(checked.items()))
    result.vacuous = [name for name, k in result.checked.items() if k == 0]
    if failure is not None:
        sched, inv = failure
        try:
            sched = reduce(scenario, sched, inv, executor)
        except KeyboardInterrupt:
            result.interrupted = True
        example = FuzzResult(scenario=scenario, seed=0, found=True, examples=result.schedules, target=invariant)
        example.command = f"verify --depth {depth}"
        finish_counterexample(example, sched, inv, f"simroll verify (depth {depth})")
        result.found, result.invariant, result.example = True, inv, example
    return result


__all__ = ["VerifyResult", "verify"]
