"""The named invariants. Each is a checker that reads trace records as they are emitted.

A checker never looks inside the simulation: it subscribes to record kinds,
keeps the little state it needs, and reports :class:`Violation` objects. Each
also exposes :meth:`Checker.score`, a distance-to-violation that grows as a run
comes closer to breaking it; the search steers towards high scores.

Names (the contract users' scenarios rely on): ``no-lost-write``,
``no-stranded-message``, ``no-incompatible-delivery``, ``bounded-imbalance``,
``schema-compatible``, ``version-skew``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

Record = dict[str, Any]
MAX_KEPT = 20  # violations kept per invariant; the rest are counted


@dataclass(frozen=True)
class Violation:
    """One broken invariant: where, when, what, and the records that led to it."""

    invariant: str
    time: float
    message: str
    event: int  # the record where the violation shows
    engines: tuple[str, ...] = ()
    subject: str = ""  # the message or field involved
    causes: tuple[int, ...] = ()  # records the causal chains start from

    def to_json(self) -> dict[str, Any]:
        return {"invariant": self.invariant, "time": self.time, "message": self.message, "event": self.event,
                "engines": list(self.engines), "subject": self.subject, "causes": list(self.causes)}


class Checker:
    """Base class: subscribe to ``kinds``, report through :meth:`violate`."""

    name = ""
    kinds: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.violations: list[Violation] = []
        self.count = 0
        self._score = 0.0

    def violate(self, v: Violation) -> None:
        self.count += 1
        if len(self.violations) < MAX_KEPT:
            self.violations.append(v)

    def observe(self, rec: Record) -> None:
        raise NotImplementedError

    def score(self) -> float:
        """Distance to violation, larger is closer; violated runs score high."""
        return self._score + (1e6 if self.count else 0.0)


class NoLostWrite(Checker):
    """Every read returns the latest acknowledged write of its logical field; at the end the
    canonical location holds it. A read that returns anything else -- an empty new column, a
    value a backfill copied over a newer one, a value a whole-row rewrite put back -- is a lost write."""

    name = "no-lost-write"
    kinds = ("init", "write", "read", "final", "rewrite", "bf_read", "bf_write", "start")

    def __init__(self) -> None:
        super().__init__()
        self.latest: dict[tuple[str, int], tuple[Any, int]] = {}
        self.field_of: dict[str, str] = {}
        self.cells: dict[tuple[str, int], Any] = {}
        self.stale: set[tuple[str, int]] = set()
        # score, besides the count of stale copies: how narrowly a copy (the backfill) missed a
        # write of the same row, 1 / (1 + seconds between the copy and the nearest write)
        self.written_at: dict[tuple[str, int], float] = {}
        self.copy_read_at: dict[int, float] = {}
        self.copied_at: dict[tuple[str, int], float] = {}
        self.near = 0.0
        self.started: dict[str, int] = {}  # engine -> its start record (which release it reads with)

    def _near_miss(self, seconds: float) -> None:
        closeness = 1.0 / (1.0 + max(0.0, seconds))
        if closeness > self.near:
            self.near = closeness

    def score(self) -> float:
        return super().score() + self.near

    def _cell(self, loc: str, row: int, value: Any) -> None:
        self.cells[(loc, row)] = value
        fld = self.field_of.get(loc)
        if fld is None:
            return
        latest = self.latest.get((fld, row))
        if latest is not None and value != latest[0]:
            self.stale.add((loc, row))
            self._score = max(self._score, float(len(self.stale)))
        else:
            self.stale.discard((loc, row))

    def observe(self, rec: Record) -> None:
        kind = rec["kind"]
        if kind == "start":
            self.started[rec["engine"]] = rec["i"]
        elif kind == "init":
            for loc in rec["locs"]:
                self.field_of.setdefault(loc, rec["field"])
            for r in range(rec["rows"]):
                self.latest[(rec["field"], r)] = (f"init{r}", rec["i"])
                for loc in rec["locs"]:
                    self.cells[(loc, r)] = f"init{r}"
        elif kind == "write":
            fld, row, value = rec["field"], rec["row"], rec["value"]
            self.latest[(fld, row)] = (value, rec["i"])
            self.written_at[(fld, row)] = rec["t"]
            copied = self.copied_at.get((fld, row))
            if copied is not None:
                self._near_miss(rec["t"] - copied)
            for loc in rec["locs"] + rec["trig"]:
                self.field_of.setdefault(loc, fld)
                self.cells[(loc, row)] = value
            for loc, f in self.field_of.items():  # the new value makes the field's other copies stale
                if f == fld and (loc, row) in self.cells:
                    self._cell(loc, row, self.cells[(loc, row)])
        elif kind == "rewrite":
            for loc, value in rec["cols"].items():
                self._cell(loc, rec["row"], value)
        elif kind == "bf_read":
            self.copy_read_at[rec["row"]] = rec["t"]
        elif kind == "bf_write":
            fld = self.field_of.get(rec["loc"])
            if fld is not None:
                self.copied_at[(fld, rec["row"])] = rec["t"]
                written = self.written_at.get((fld, rec["row"]))
                read_at = self.copy_read_at.get(rec["row"], rec["t"])
                if written is not None and written <= read_at:
                    self._near_miss(read_at - written)
            for loc in [rec["loc"]] + rec["trig"]:
                self._cell(loc, rec["row"], rec["value"])
        elif kind == "read":
            fld, row, value = rec["field"], rec["row"], rec["value"]
            latest = self.latest.get((fld, row))
            if latest is not None and value != latest[0]:
                got = "nothing (the location is empty)" if value is None else repr(value)
                # the reader's start (the release it reads with), the write it missed, the one it saw
                causes = tuple(c for c in (self.started.get(rec["engine"]), latest[1],
                                           rec["cause"][-1] if len(rec["cause"]) > 1 else None) if c is not None)
                self.violate(Violation(
                    self.name, rec["t"],
                    f"{rec['engine']} read {fld} of row {row} from {rec['loc']} and got {got}, "
                    f"but the latest acknowledged write is {latest[0]!r} (record {latest[1]})",
                    rec["i"], (rec["engine"],), f"{fld}[{row}]", causes))
        elif kind == "final":
            fld = rec["field"]
            for row, value in enumerate(rec["values"]):
                latest = self.latest.get((fld, row))
                if latest is None or value == latest[0]:
                    continue
                where = rec["loc"] if rec["exists"] else f"{rec['loc']} (dropped)"
                got = "nothing" if value is None else repr(value)
                self.violate(Violation(
                    self.name, rec["t"],
                    f"at the end {where} holds {got} for {fld} of row {row}, "
                    f"but the latest acknowledged write is {latest[0]!r} (record {latest[1]})",
                    rec["i"], (), f"{fld}[{row}]", (latest[1],)))


class NoStrandedMessage(Checker):
    """Every message sent is eventually taken by an engine: none is left in a queue nobody
    serves, none expires unconsumed, none dies in flight with its consumer."""

    name = "no-stranded-message"
    kinds = ("left", "lost", "expire", "recv", "stop")

    def observe(self, rec: Record) -> None:
        # score: work in flight when an engine stops gracefully (one kill away from a loss),
        # else the longest wait (a message nearly left behind)
        kind = rec["kind"]
        if kind == "recv":
            if rec["wait"] > self._score:
                self._score = rec["wait"]
            return
        if kind == "stop":
            self._score = max(self._score, 1000.0 * len(rec["inflight"]))
            return
        if kind == "left":
            msg = f"message m{rec['msg']} (version {rec['version']}) was never taken: left in {rec['queue']}"
        elif kind == "lost":
            msg = f"message m{rec['msg']} was lost in flight when {rec['engine']} was killed"
        else:
            msg = f"call m{rec['msg']} expired in {rec['queue']} before any engine took it"
        engines = (rec["engine"],) if "engine" in rec else ()
        self.violate(Violation(self.name, rec["t"], msg, rec["i"], engines, f"m{rec['msg']}",
                               tuple(rec.get("cause", ()))))


class NoIncompatibleDelivery(Checker):
    """No engine receives a message whose version, method or arguments it cannot handle
    (oslo.messaging: UnsupportedVersion, NoSuchMethod, or a TypeError from the call)."""

    name = "no-incompatible-delivery"
    kinds = ("reject", "start", "stopped", "kill", "send")

    def __init__(self) -> None:
        super().__init__()
        self.running: dict[str, str] = {}
        self.engines_on: dict[str, int] = {}  # release -> running engines on it (> 0): a send costs O(1)

    def _run(self, engine: str, release: str | None) -> None:
        old = self.running.pop(engine, None)
        if old is not None:
            left = self.engines_on[old] - 1
            if left:
                self.engines_on[old] = left
            else:
                del self.engines_on[old]
        if release is not None:
            self.running[engine] = release
            self.engines_on[release] = self.engines_on.get(release, 0) + 1

    def observe(self, rec: Record) -> None:
        kind = rec["kind"]
        if kind == "send":
            if len(self.engines_on) > 1:  # mixed-version traffic is where this breaks
                self._score += 1.0
        elif kind == "start":
            self._run(rec["engine"], rec["release"])
        elif kind in ("stopped", "kill"):
            self._run(rec["engine"], None)
        else:
            what = "cast was consumed and lost" if not rec["call"] else "caller got the error"
            self.violate(Violation(
                self.name, rec["t"],
                f"{rec['engine']} got {rec['method']} at version {rec['version']} and raised {rec['error']}; "
                f"the {what}", rec["i"], (rec["engine"],), f"m{rec['msg']}", tuple(rec["cause"])))


class BoundedImbalance(Checker):
    """No message waits longer than ``max_wait`` for an engine while another running engine has
    capacity (the single-upgraded-engine starvation)."""

    name = "bounded-imbalance"
    kinds = ("recv", "done", "reject", "start", "stopped", "kill")

    def __init__(self, max_wait: float) -> None:
        super().__init__()
        self.max_wait = max_wait
        self.workers: dict[str, int] = {}
        self.busy: dict[str, int] = {}
        self.full_since: dict[str, float | None] = {}  # running engines only

    def observe(self, rec: Record) -> None:
        kind, e = rec["kind"], rec["engine"]
        if kind == "recv":
            wait = rec["wait"]
            if wait > self._score:
                self._score = wait
            if wait > self.max_wait:
                enqueued = rec["t"] - wait
                idle = [o for o, since in self.full_since.items()
                        if o != e and (since is None or since > enqueued)]
                if idle:
                    self.violate(Violation(
                        self.name, rec["t"],
                        f"message m{rec['msg']} waited {wait:.3f} s for {e} (bound {self.max_wait:g} s) while "
                        f"{', '.join(idle[:5])}{' ...' if len(idle) > 5 else ''} had capacity",
                        rec["i"], (e, *idle[:5]), f"m{rec['msg']}", tuple(rec["cause"])))
            b = self.busy.get(e, 0) + 1
            self.busy[e] = b
            if e in self.full_since and b >= self.workers.get(e, 1):
                self.full_since[e] = rec["t"]
        elif kind in ("done", "reject"):
            self.busy[e] = max(0, self.busy.get(e, 0) - 1)
            if e in self.full_since:
                self.full_since[e] = None
        elif kind == "start":
            self.workers[e] = rec["workers"]
            self.busy[e] = 0
            self.full_since[e] = None
        else:
            self.full_since.pop(e, None)


class SchemaCompatible(Checker):
    """No engine (or the backfill) touches a table or column that does not exist at that moment."""

    name = "schema-compatible"
    kinds = ("schema_error",)

    def observe(self, rec: Record) -> None:
        self.violate(Violation(
            self.name, rec["t"],
            f"{rec['engine']} tried to {rec['op']} {', '.join(rec['locs'])}, which does not exist",
            rec["i"], (rec["engine"],), ", ".join(rec["locs"]), tuple(rec.get("cause", ()))))


class VersionSkew(Checker):
    """Never more than ``max_releases`` releases running at once."""

    name = "version-skew"
    kinds = ("start", "stopped", "kill")

    def __init__(self, max_releases: int) -> None:
        super().__init__()
        self.max_releases = max_releases
        self.running: dict[str, str] = {}
        self.started: dict[str, int] = {}

    def observe(self, rec: Record) -> None:
        if rec["kind"] == "start":
            self.running[rec["engine"]] = rec["release"]
            self.started[rec["engine"]] = rec["i"]
            releases = sorted(set(self.running.values()))
            self._score = max(self._score, float(len(releases)))
            if len(releases) > self.max_releases:
                self.violate(Violation(
                    self.name, rec["t"],
                    f"{len(releases)} releases running at once ({', '.join(releases)}), "
                    f"more than {self.max_releases}", rec["i"], (rec["engine"],), ", ".join(releases),
                    tuple(sorted(self.started[e] for e in self.running))))
        else:
            self.running.pop(rec["engine"], None)


INVARIANTS: dict[str, type[Checker]] = {
    c.name: c for c in (NoLostWrite, NoStrandedMessage, NoIncompatibleDelivery, BoundedImbalance,
                        SchemaCompatible, VersionSkew)
}


def make_checkers(enabled: dict[str, BaseModel]) -> list[Checker]:
    """Checkers for the invariants a scenario enables, with their bounds."""
    return [INVARIANTS[name](**params.model_dump()) for name, params in enabled.items()]


@dataclass
class InvariantResult:
    name: str
    held: bool
    count: int
    violations: list[Violation] = field(default_factory=list)
