"""What happened in a run, as tables computed from its trace records: no drawing.

The plots of :mod:`simroll.view.plots` draw these tables; the HTML report and the text
report use the same causal chains. Every function takes a run result (duck-typed: an
object with ``trace()``, ``scenario``, ``seed`` and ``violations``, such as
:class:`simroll.run.RunResult`), a list of trace records (as :func:`simroll.read_trace`
returns them) or a :class:`RunHistory` already made from one of those.

Given bare records, the violations are recomputed from the trace for the invariants
that need no parameter (no-lost-write, no-stranded-message, no-incompatible-delivery,
schema-compatible); the scenario's bounds are not in the trace.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, cast

from simroll.check.explain import explain
from simroll.check.invariants import INVARIANTS, Violation
from simroll.errors import UsageError
from simroll.sim.trace import Record

if TYPE_CHECKING:
    from simroll.scenario.spec import Scenario

NEVER_TAKEN = "never taken"  # where a message waited that no engine took


class ResultLike(Protocol):
    """What the tables read from a run result (:class:`simroll.run.RunResult` has it)."""

    scenario: Scenario
    seed: int

    @property
    def violations(self) -> list[Violation]: ...

    def trace(self) -> list[Record]: ...


# ---------------------------------------------------------------------------------------- the run
@dataclass
class RunHistory:
    """What every table and plot needs, from a run result or from bare records."""

    records: list[Record]
    violations: list[Violation]
    name: str
    seed: int | None
    releases: list[str]
    max_wait: float | None = None
    engines: list[str] = dataclasses.field(default_factory=list)
    columns: frozenset[str] = frozenset()  # table.column that exist at the start (known from a scenario only)
    # engine -> service, for a trace whose start records name services and vhosts (docs/broker.md);
    # empty for a trace without them, whose plots stay as they always were
    services: dict[str, str] = dataclasses.field(default_factory=dict)
    vhosts: list[str] = dataclasses.field(default_factory=list)  # in order of first use

    @property
    def grouped(self) -> bool:
        """Whether the trace names services and vhosts (a scenario with ``services:`` or vhosts)."""
        return bool(self.services)

    @property
    def end(self) -> float:
        """The time of the last record (0 for no records)."""
        return float(self.records[-1]["t"]) if self.records else 0.0

    @property
    def subtitle(self) -> str:
        """The scenario's name, and the seed when known: what the plots put in their titles."""
        return self.name if self.seed is None else f"{self.name} (seed {self.seed})"


Source = ResultLike | Sequence[Record] | RunHistory


def run_history(source: Source) -> RunHistory:
    """The :class:`RunHistory` of a run result or of bare records (a RunHistory is returned as it is)."""
    if isinstance(source, RunHistory):
        return source
    if callable(getattr(source, "trace", None)):  # a run result
        result = cast(ResultLike, source)
        recs = result.trace()
        s = result.scenario
        bound = s.invariants.bounded_imbalance
        run = RunHistory(
            recs,
            result.violations,
            s.name,
            result.seed,
            list(s.releases),
            None if bound is None else bound.max_wait,
            columns=frozenset(f"{t}.{c}" for t, cols in s.database.tables.items() for c in cols),
        )
    else:
        recs = list(cast(Sequence[Record], source))
        begin = recs[0] if recs and recs[0]["kind"] == "begin" else {}
        run = RunHistory(recs, violations_from_trace(recs), begin.get("scenario", "trace"), None, [])
    for r in run.records:
        if r["kind"] == "start":
            if r["engine"] not in run.engines:
                run.engines.append(r["engine"])
            if r["release"] not in run.releases:
                run.releases.append(r["release"])
            if "service" in r:
                run.services.setdefault(r["engine"], r["service"])
                if r["vhost"] not in run.vhosts:
                    run.vhosts.append(r["vhost"])
        elif r["kind"] == "send" and run.services and queue_vhost(r["queue"]) not in run.vhosts:
            run.vhosts.append(queue_vhost(r["queue"]))
    if run.services:  # lanes grouped by service (services in the order they first start an engine)
        order = {svc: k for k, svc in enumerate(dict.fromkeys(run.services.values()))}
        run.engines.sort(key=lambda e: order[run.services[e]])  # stable: start order within a service
    return run


def queue_vhost(queue: str) -> str:
    """The vhost of a queue named in the trace: the prefix before ``/`` (``heat_new/engine``), else ``/``."""
    vhost, sep, _ = queue.partition("/")
    return vhost if sep else "/"


def violations_from_trace(records: Sequence[Record]) -> list[Violation]:
    """Violations of the parameterless invariants, recomputed from a trace alone, by time."""
    checkers = [
        INVARIANTS[n]()
        for n in ("no-lost-write", "no-stranded-message", "no-incompatible-delivery", "schema-compatible")
    ]
    by_kind: dict[str, list] = {}
    for c in checkers:
        for k in c.kinds:
            by_kind.setdefault(k, []).append(c)
    for r in records:
        for c in by_kind.get(r["kind"], ()):
            c.observe(r)
    out = [v for c in checkers for v in c.violations]
    out.sort(key=lambda v: (v.time, v.event))
    return out


# ---------------------------------------------------------------------------------------- chains
def violation_chains(records: Sequence[Record], v: Violation) -> list[list[Record]]:
    """The chain of records behind ``v`` (:func:`simroll.check.explain.explain`), as a one-element
    list (none when the chain is empty)."""
    chain = explain(records, v).records
    return [chain] if chain else []


def chain_records(records: Sequence[Record], v: Violation) -> list[Record]:
    """The records behind ``v``, in trace order: the chain of :func:`simroll.check.explain.explain`,
    which the text report, the JSON report and the HTML page show too."""
    return explain(records, v).records


# ---------------------------------------------------------------------------------------- releases
class Interval(NamedTuple):
    """One stretch of an engine's life: a release it runs, ``running`` or ``stopping`` (finishing
    in-flight work after a graceful stop), with the vhost it is on (``None`` when the trace does
    not say: a scenario without services or vhosts)."""

    t0: float
    t1: float
    release: str
    phase: str
    vhost: str | None = None


def engine_intervals(source: Source) -> dict[str, list[Interval]]:
    """Per engine, in lane order: its :class:`Interval` s (what the release timeline draws)."""
    run = run_history(source)
    out: dict[str, list[Interval]] = {e: [] for e in run.engines}
    open_: dict[str, tuple[float, str, str, str | None]] = {}
    for r in run.records:
        k = r["kind"]
        if k == "start":
            open_[r["engine"]] = (r["t"], r["release"], "running", r.get("vhost"))
        elif k in ("stop", "stopped", "kill") and r["engine"] in open_:
            t0, rel, phase, vhost = open_.pop(r["engine"])
            out[r["engine"]].append(Interval(t0, r["t"], rel, phase, vhost))
            if k == "stop":
                open_[r["engine"]] = (r["t"], rel, "stopping", vhost)
    for e, (t0, rel, phase, vhost) in open_.items():
        out[e].append(Interval(t0, run.end, rel, phase, vhost))
    return out


def release_intervals(source: Source) -> dict[str, list[tuple[float, float, str, str]]]:
    """Per engine: (from, to, release, phase) with phase 'running' or 'stopping' (the
    :class:`Interval` s of :func:`engine_intervals` without their vhost)."""
    return {e: [iv[:4] for iv in ivs] for e, ivs in engine_intervals(source).items()}


# ---------------------------------------------------------------------------------------- queues
class _Wait(NamedTuple):
    t0: float
    t1: float
    where: str
    version: str
    queue: str


def _waiting_segments(run: RunHistory) -> list[_Wait]:
    """(from, to, where, version, queue) for every stretch a message spent sent but not yet taken.

    ``where`` is the engine whose backlog it sat in -- the one that took it, or handed it
    back on a stop or kill -- or ``never taken`` for messages left or expired in a queue;
    ``queue`` is the queue it was sent to (a requeued message goes back to the same one).
    """
    open_: dict[int, float] = {}
    version: dict[int, str] = {}
    queue: dict[int, str] = {}
    segs: list[_Wait] = []
    for r in run.records:
        k = r["kind"]
        if k == "send":
            m = r["msg"]
            open_[m] = r["t"]
            version[m] = r["version"]
            queue[m] = r["queue"]
        elif k == "recv":
            m = r["msg"]
            if m in open_:
                segs.append(_Wait(open_.pop(m), r["t"], r["engine"], version[m], queue[m]))
        elif k == "requeue":
            m = r["msg"]
            if m in open_:  # handed back from a backlog; otherwise it was in flight (ack on-complete)
                segs.append(_Wait(open_.pop(m), r["t"], r["engine"], version[m], queue[m]))
            open_[m] = r["t"]
        elif k in ("left", "expire"):
            m = r["msg"]
            if m in open_:
                q = r["queue"]
                where = q.split("@", 1)[1] if q.startswith("backlog@") else NEVER_TAKEN
                segs.append(_Wait(open_.pop(m), r["t"], where, version[m], queue[m]))
    for m, t0 in open_.items():  # a partial run: still waiting at the end
        segs.append(_Wait(t0, run.end, NEVER_TAKEN, version[m], queue[m]))
    return segs


def _depth_series(segs: list[tuple[float, float, str]]) -> tuple[list[float], list[int]]:
    """Step series of how many segments are open at each time (ties: departures first)."""
    ev = sorted([(t0, 1) for t0, _, _ in segs] + [(t1, -1) for _, t1, _ in segs])
    xs, ys, n = [0.0], [0], 0
    for t, d in ev:
        n += d
        if xs[-1] == t:
            ys[-1] = n
        else:
            xs.append(t)
            ys.append(n)
    keep = [k for k in range(len(xs)) if k == 0 or ys[k] != ys[k - 1]]  # same count again: no change
    return [xs[k] for k in keep], [ys[k] for k in keep]


def queue_table(source: Source) -> dict[str, dict[str, tuple[list[float], list[int]]]]:
    """The series the queue-depth plot draws: ``{"backlog": {engine or "never taken": (times, counts)},
    "version": {version: (times, counts)}}``; each count holds from its time to the next one.

    A trace that names services and vhosts (:attr:`RunHistory.grouped`) adds ``"queue"``: the same
    by the queue each message was sent to (``heat_new/engine``: queue ``engine`` on vhost
    ``heat_new``), and ``"vhost"``: summed per vhost (:func:`queue_vhost`), so the drain of an old
    vhost shows; with ``ack: before-dispatch`` this is RabbitMQ's count of messages ready or
    unacknowledged, what a ``vhost`` record's ``depth`` says (:func:`vhost_depths`).
    """
    run = run_history(source)
    segs = _waiting_segments(run)
    backlog = {}
    for where in run.engines + [NEVER_TAKEN]:
        mine = [(w.t0, w.t1, w.where) for w in segs if w.where == where]
        if mine:
            backlog[where] = _depth_series(mine)
    versions = sorted({w.version for w in segs}, key=version_key)
    out = {
        "backlog": backlog,
        "version": {v: _depth_series([(w.t0, w.t1, v) for w in segs if w.version == v]) for v in versions},
    }
    if run.grouped:
        queues = list(dict.fromkeys(w.queue for w in sorted(segs, key=lambda w: w.t0)))  # first used first
        out["queue"] = {q: _depth_series([(w.t0, w.t1, q) for w in segs if w.queue == q]) for q in queues}
        vhosts = [v for v in run.vhosts if any(queue_vhost(q) == v for q in queues)]
        out["vhost"] = {v: _depth_series([(w.t0, w.t1, v) for w in segs if queue_vhost(w.queue) == v]) for v in vhosts}
    return out


def vhost_depths(source: Source) -> list[tuple[float, dict[str, int]]]:
    """(time, depth per vhost) of every ``vhost`` record (a ``set_vhost`` step): the depths the
    broker reported when the clients moved, which the queue-depth plot marks."""
    return [(r["t"], dict(r["depth"])) for r in run_history(source).records if r["kind"] == "vhost"]


def version_key(v: str) -> tuple[int, ...]:
    """A sort key for a message version: ``"1.10"`` after ``"1.9"``."""
    return tuple(int(x) if x.isdigit() else 0 for x in v.split("."))


# ---------------------------------------------------------------------------------------- load
def _busy(run: RunHistory) -> tuple[dict[str, list[tuple[float, float]]], dict[str, list[tuple[float, float, int]]]]:
    """Per engine: busy intervals (recv to done, or to the kill), and running intervals with workers."""
    busy: dict[str, list[tuple[float, float]]] = {e: [] for e in run.engines}
    running: dict[str, list[tuple[float, float, int]]] = {e: [] for e in run.engines}
    taken: dict[tuple[str, int], float] = {}
    up: dict[str, tuple[float, int]] = {}
    for r in run.records:
        k = r["kind"]
        if k == "recv":
            taken[(r["engine"], r["msg"])] = r["t"]
        elif k in ("done", "reject"):
            t0 = taken.pop((r["engine"], r["msg"]), None)
            if t0 is not None:
                busy[r["engine"]].append((t0, r["t"]))
        elif k == "start":
            up[r["engine"]] = (r["t"], r["workers"])
        elif k in ("stopped", "kill"):
            e = r["engine"]
            if e in up:
                t0, w = up.pop(e)
                running[e].append((t0, r["t"], w))
            for key in [key for key in taken if key[0] == e]:
                busy[e].append((taken.pop(key), r["t"]))
    for (e, _), t0 in taken.items():
        busy[e].append((t0, run.end))
    for e, (t0, w) in up.items():
        running[e].append((t0, run.end, w))
    return busy, running


def _per_bin(intervals, edges: list[float], weight=lambda iv: 1.0) -> list[float]:
    out = [0.0] * (len(edges) - 1)
    width = edges[1] - edges[0]
    for iv in intervals:
        a, b = iv[0], iv[1]
        if b <= a:
            continue
        k0 = min(int(a / width), len(out) - 1)
        k1 = min(int(b / width), len(out) - 1)
        for k in range(k0, k1 + 1):
            lo, hi = max(a, edges[k]), min(b, edges[k + 1])
            if hi > lo:
                out[k] += (hi - lo) * weight(iv)
    return out


def load_table(source: Source, bins: int = 60) -> dict[str, Any]:
    """The numbers the engine-load plot draws: bin edges (s), per-engine utilisation per bin
    (busy time / (workers x running time), None while stopped), messages taken by version, rejects."""
    run = run_history(source)
    end = max(run.end, 1e-9)
    edges = [end * k / bins for k in range(bins + 1)]
    busy, running = _busy(run)
    util: dict[str, list[float | None]] = {}
    for e in run.engines:
        b = _per_bin(busy[e], edges)
        cap = _per_bin(running[e], edges, weight=lambda iv: iv[2])
        util[e] = [None if c <= 1e-12 else min(1.0, x / c) for x, c in zip(b, cap, strict=True)]
    version_of = {r["msg"]: r["version"] for r in run.records if r["kind"] == "send"}
    taken: dict[str, dict[str, int]] = {e: {} for e in run.engines}
    rejects = {e: 0 for e in run.engines}
    total_busy = {e: sum(b - a for a, b in busy[e]) for e in run.engines}
    total_cap = {e: sum((b - a) * w for a, b, w in running[e]) for e in run.engines}
    for r in run.records:
        if r["kind"] == "recv":
            v = version_of.get(r["msg"], "?")
            taken[r["engine"]][v] = taken[r["engine"]].get(v, 0) + 1
        elif r["kind"] == "reject":
            rejects[r["engine"]] += 1
    mean = {e: (total_busy[e] / total_cap[e] if total_cap[e] > 0 else 0.0) for e in run.engines}
    return {"edges": edges, "util": util, "taken": taken, "rejects": rejects, "mean_util": mean}


# ---------------------------------------------------------------------------------------- sequence
_SEQ_KINDS = frozenset(
    {
        "send",
        "recv",
        "reject",
        "read",
        "write",
        "rewrite",
        "bf_read",
        "bf_write",
        "step",
        "start",
        "stop",
        "stopped",
        "kill",
        "requeue",
        "lost",
        "left",
        "expire",
        "schema_error",
        "fault",
        "init",
        "send_error",
        "done",
    }
)


def sequence_records(
    source: Source, violation: Violation | None = None, window: int = 30, max_rows: int = 60
) -> tuple[list[Record], set[int], Violation | None]:
    """The records the sequence diagram shows, the numbers of those on the causal chain, and the
    violation it explains (the first one, unless given).

    The chain (all its records, or its first 3 and last ones when longer than ``max_rows``) plus the
    ``window`` records before the violation; without a violation, ``window`` records from the first
    operator step (or the start).
    """
    run = run_history(source)
    recs = run.records
    v = violation if violation is not None else (run.violations[0] if run.violations else None)
    chain: list[Record] = chain_records(recs, v) if v is not None else []
    if len(chain) > max_rows:
        chain = chain[:3] + chain[-(max_rows - 3) :]
    on_chain = {r["i"] for r in chain}
    if v is not None:
        lo, hi = max(0, v.event - window * 10), v.event + 1
    else:
        first = next((r["i"] for r in recs if r["kind"] == "step"), 0)
        lo, hi = first, first + window * 3
    # context: the last `window` records before the violation that concern it (done records are noise)
    ctx = [r for r in recs[lo:hi] if r["kind"] in _SEQ_KINDS and r["kind"] != "done"]
    if v is not None:
        keep = _relevant(v, chain, ctx)
        ctx = [r for r in ctx if keep(r)][-window:]
    else:
        ctx = ctx[:window]
    room = max(0, max_rows - len(on_chain))
    ctx = [r for r in ctx if r["i"] not in on_chain][-room:] if room else []
    shown = sorted(chain + ctx, key=lambda r: r["i"])
    return shown, on_chain, v


def _relevant(v: Violation, chain: list[Record], ctx: list[Record]) -> Callable[[Record], bool]:
    """A filter for context records: operator and lifecycle events, the engines of the violation and
    of its chain, the same row or message, and the sends of messages those engines took."""
    engines = set(v.engines) | {r["engine"] for r in chain if "engine" in r}
    m = _SUBJECT.match(v.subject)
    row = int(m["row"]) if m else None
    msgs = {r["msg"] for r in chain if "msg" in r}
    if v.subject.startswith("m") and v.subject[1:].isdigit():
        msgs.add(int(v.subject[1:]))
    msgs |= {r["msg"] for r in ctx if r["kind"] == "recv" and r["engine"] in engines}
    lifecycle = {"step", "start", "stop", "stopped", "kill", "fault"}

    def keep(r: Record) -> bool:
        return (
            r["kind"] in lifecycle
            or r.get("engine") in engines
            or r.get("msg") in msgs
            or (row is not None and r.get("row") == row)
        )

    return keep


# ---------------------------------------------------------------------------------------- values
_SUBJECT = re.compile(r"^(?P<field>\w+)\[(?P<row>\d+)\]$")


class Read(NamedTuple):
    """One read of the field and row a :class:`FieldHistory` follows."""

    t: float
    engine: str
    loc: str
    value: Any
    expected: Any  # the latest acknowledged write at that moment

    @property
    def stale(self) -> bool:
        return self.value != self.expected


@dataclass
class FieldHistory:
    """Where one logical field of one row lived over time (what the field-values plot draws).

    ``cells``: per location, (time, value) changes; ``None`` is empty, ``"(dropped)"`` a contracted column.
    ``latest``: (time, value) of each acknowledged write (the value every read should return).
    ``reads``: every read, as :class:`Read`; ``bf_reads`` / ``bf_writes``: (time, location, value) of the
    backfill's reads and writes.
    """

    field: str
    row: int
    cells: dict[str, list[tuple[float, Any]]]
    latest: list[tuple[float, Any]]
    reads: list[Read]
    bf_reads: list[tuple[float, str, Any]]
    bf_writes: list[tuple[float, str, Any]] = dataclasses.field(default_factory=list)


DROPPED = "(dropped)"


def field_history(source: Source, subject: str | None = None) -> FieldHistory:
    """The history of ``subject`` (``"field[row]"``); default: the first no-lost-write violation's
    subject, else the first field with more than one location, row 0."""
    run = run_history(source)
    recs = run.records
    if subject is None:
        lost = [v for v in run.violations if v.invariant == "no-lost-write"]
        subject = lost[0].subject if lost else _default_subject(recs)
    m = _SUBJECT.match(subject or "")
    if m is None:
        raise UsageError(f"field_values: subject {subject!r}: expected FIELD[ROW], e.g. resource_props[3]")
    fld, row = m["field"], int(m["row"])
    locs: list[str] = []

    def own(loc: str) -> None:
        if loc not in locs:
            locs.append(loc)

    for r in recs:  # the locations of this field: where it is initialised, written, read or backfilled
        if r.get("field") == fld:
            for loc in r.get("locs", []) + r.get("trig", []) + ([r["loc"]] if "loc" in r else []):
                own(loc)
    for r in recs:
        if r["kind"] in ("bf_read", "bf_write") and (r["loc"] in locs or any(t in locs for t in r.get("trig", []))):
            own(r["loc"])
    # a column that exists from the start holds nothing until someone writes it
    cells: dict[str, list[tuple[float, Any]]] = {loc: [(0.0, None)] if loc in run.columns else [] for loc in locs}
    latest: list[tuple[float, Any]] = []
    reads: list[Read] = []
    bf_reads: list[tuple[float, str, Any]] = []
    bf_writes: list[tuple[float, str, Any]] = []

    def put(loc: str, t: float, value: Any) -> None:
        if loc in cells:
            seq = cells[loc]
            if seq and seq[-1][0] == t:  # two changes at one instant: the cell holds the last
                seq[-1] = (t, value)
            else:
                seq.append((t, value))

    for r in recs:
        k, t = r["kind"], r["t"]
        if k == "init" and r["field"] == fld and row < r["rows"]:
            latest.append((t, f"init{row}"))
            for loc in r["locs"]:
                put(loc, t, f"init{row}")
        elif r.get("row") != row:
            if k == "step" and r["action"] in ("expand", "contract"):
                for item in r["detail"][r["action"]]:
                    for loc in locs:
                        if loc == item or loc.split(".")[0] == item:
                            put(loc, t, None if r["action"] == "expand" else DROPPED)
            continue
        elif k == "write" and r["field"] == fld:
            latest.append((t, r["value"]))
            for loc in r["locs"] + r["trig"]:
                put(loc, t, r["value"])
        elif k == "rewrite":
            for loc, value in r["cols"].items():
                put(loc, t, value)
        elif k == "bf_write":
            for loc in [r["loc"]] + r.get("trig", []):
                put(loc, t, r["value"])
            if r["loc"] in cells:
                bf_writes.append((t, r["loc"], r["value"]))
        elif k == "read" and r["field"] == fld:
            # before any init or write there is nothing to lose: the read counts as up to date
            reads.append(Read(t, r["engine"], r["loc"], r["value"], latest[-1][1] if latest else r["value"]))
        elif k == "bf_read" and r["loc"] in cells:
            bf_reads.append((t, r["loc"], r["value"]))
    return FieldHistory(fld, row, cells, latest, reads, bf_reads, bf_writes)


def _default_subject(recs: Sequence[Record]) -> str | None:
    for r in recs:
        if r["kind"] == "write" and len(r["locs"]) + len(r["trig"]) > 1:
            return f"{r['field']}[{r['row']}]"
    for r in recs:
        if r["kind"] == "read":
            return f"{r['field']}[{r['row']}]"
    return None


__all__ = [
    "DROPPED",
    "NEVER_TAKEN",
    "FieldHistory",
    "Interval",
    "Read",
    "ResultLike",
    "RunHistory",
    "Source",
    "chain_records",
    "engine_intervals",
    "field_history",
    "load_table",
    "queue_table",
    "queue_vhost",
    "release_intervals",
    "run_history",
    "sequence_records",
    "version_key",
    "violation_chains",
    "vhost_depths",
    "violations_from_trace",
]
