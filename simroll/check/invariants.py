"""The named invariants. Each is a checker that reads trace records as they are emitted.

A checker never looks inside the simulation: it subscribes to record kinds,
keeps the little state it needs, and reports :class:`Violation` objects. Each
also exposes :meth:`Checker.score`, a distance-to-violation that grows as a run
comes closer to breaking it; the search steers towards high scores.

Every checker counts the events it judged (:attr:`Checker.checked`) and says when it
had nothing to judge (:attr:`Checker.vacuous`): a run that never read what was written
holds ``no-lost-write`` only vacuously, and a report must not call that "held".

Names (the contract users' scenarios rely on): ``no-lost-write``,
``no-stranded-message``, ``no-incompatible-delivery``, ``bounded-imbalance``,
``schema-compatible``, ``version-skew``; opt-in: ``no-refused-send``,
``operations-complete``, ``no-lost-update``, ``no-duplicate-effect``, ``plan-completes``.

Besides the invariants, :class:`Coverage` reads a trace and says what the run exercised.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from simroll.scenario.versions import Version
from simroll.sim.trace import Meter, Record

if TYPE_CHECKING:
    from simroll.scenario.spec import Scenario

MAX_KEPT = 20  # violations kept per invariant; the rest are counted
CLIENT = "client"  # the sender name of client operations in ``send`` and ``send_error`` records


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
        return {
            "invariant": self.invariant,
            "time": self.time,
            "message": self.message,
            "event": self.event,
            "engines": list(self.engines),
            "subject": self.subject,
            "causes": list(self.causes),
        }


class Checker:
    """Base class: subscribe to ``kinds``, report through :meth:`violate`, count what was judged
    in :attr:`checked`."""

    name = ""
    kinds: tuple[str, ...] = ()
    # the simulated time of the near miss the score measures (None: the score does not say);
    # the search's ``aim`` strategy places pins near it
    near_t: float | None = None

    def __init__(self) -> None:
        self.violations: list[Violation] = []
        self.count = 0
        self.checked = 0  # events judged (what each counts is in its docstring)
        self._score = 0.0
        # work besides reading records (scans over engines): the runner points this at the run's
        # meter, so that the checks count against the run's work budget (simroll.sim.kernel.WORK_PER_EVENT)
        self.meter = Meter()

    def violate(self, v: Violation) -> None:
        self.count += 1
        if len(self.violations) < MAX_KEPT:
            self.violations.append(v)

    def observe(self, rec: Record) -> None:
        raise NotImplementedError

    @property
    def vacuous(self) -> bool:
        """Held because there was nothing to check: no violation and nothing judged."""
        return self.count == 0 and self.checked == 0

    def score(self) -> float:
        """Distance to violation, larger is closer; violated runs score high."""
        return self._score + (1e6 if self.count else 0.0)


_NO_CELL = object()  # NoLostWrite: a cell it has not seen written
_NO_VERSION: Any = object()  # NoIncompatibleDelivery: a version text it has not parsed yet


NEAR_MISS = 1e4  # a score's part for a run one choice away from the violation (far above any count it adds to)
KILL_NEAR = 1e3  # operations-complete: a kill right after a handling, above any operation's time


def _closeness(seconds: float) -> float:
    """A near miss ``seconds`` away, as a score in (0, 1]: 1 / (1 + seconds)."""
    return 1.0 / (1.0 + max(0.0, seconds))


class NoLostWrite(Checker):
    """Every read returns the latest acknowledged write of its logical field; at the end the
    canonical location holds it. A read that returns anything else -- an empty new column, a
    value a backfill copied over a newer one, a value a whole-row rewrite put back -- is a lost write.

    The initial values (``init``) count as acknowledged writes. ``checked``: reads and final
    cells compared with a latest acknowledged value. Vacuous: no read and no final cell of a
    field that had one (nothing written, or nothing read back)."""

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

    def _near_miss(self, seconds: float, t: float) -> None:
        closeness = _closeness(seconds)
        if closeness > self.near:
            self.near = closeness
            self.near_t = t

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

    def positional(self) -> dict[str, Callable[..., None]]:
        """kind -> the method that reads a record of that kind from its fields, given positionally in
        the record's order without ``kind`` (``i, t, engine, msg, ...``): a trace that builds no record
        for anyone else calls it instead of :meth:`observe` (see :meth:`Trace.subscribe`)."""
        return {"write": self._write, "read": self._read}

    def _write(
        self, i: int, t: float, engine: str, msg: int, fld: str, row: int, value: Any, locs: list[str], trig: list[str]
    ) -> None:
        key = (fld, row)
        self.latest[key] = (value, i)
        self.written_at[key] = t
        copied = self.copied_at.get(key)
        if copied is not None:
            self._near_miss(t - copied, t)
        cells, field_of, stale = self.cells, self.field_of, self.stale
        for loc in locs + trig if trig else locs:
            field_of.setdefault(loc, fld)
            cells[(loc, row)] = value
        for loc, f in field_of.items():  # the new value makes the field's other copies stale
            if f == fld:
                cell = cells.get((loc, row), _NO_CELL)
                if cell is _NO_CELL:
                    continue
                # self._cell(loc, row, cell), inlined: the latest value of (fld, row) is ``value``
                if cell != value:
                    stale.add((loc, row))
                    self._score = max(self._score, float(len(stale)))
                else:
                    stale.discard((loc, row))

    def _read(
        self, i: int, t: float, engine: str, msg: int, fld: str, row: int, loc: str, value: Any, cause: list[int]
    ) -> None:
        latest = self.latest.get((fld, row))
        if latest is None:
            return
        self.checked += 1
        if value != latest[0]:
            got = "nothing (the location is empty)" if value is None else repr(value)
            # the reader's start (the release it reads with), the write it missed, the one it saw
            causes = tuple(
                c
                for c in (
                    self.started.get(engine),
                    latest[1],
                    cause[-1] if len(cause) > 1 else None,
                )
                if c is not None
            )
            self.violate(
                Violation(
                    self.name,
                    t,
                    f"{engine} read {fld} of row {row} from {loc} and got {got}, "
                    f"but the latest acknowledged write is {latest[0]!r} (record {latest[1]})",
                    i,
                    (engine,),
                    f"{fld}[{row}]",
                    causes,
                )
            )

    def observe(self, rec: Record) -> None:
        kind = rec["kind"]
        if kind == "write":  # the two kinds of nearly every record first
            self._write(
                rec["i"],
                rec["t"],
                rec["engine"],
                rec["msg"],
                rec["field"],
                rec["row"],
                rec["value"],
                rec["locs"],
                rec["trig"],
            )
            return
        if kind == "read":
            self._read(
                rec["i"],
                rec["t"],
                rec["engine"],
                rec["msg"],
                rec["field"],
                rec["row"],
                rec["loc"],
                rec["value"],
                rec["cause"],
            )
            return
        if kind == "start":
            self.started[rec["engine"]] = rec["i"]
        elif kind == "init":
            for loc in rec["locs"]:
                self.field_of.setdefault(loc, rec["field"])
            for r in range(rec["rows"]):
                self.latest[(rec["field"], r)] = (f"init{r}", rec["i"])
                for loc in rec["locs"]:
                    self.cells[(loc, r)] = f"init{r}"
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
                read_at = self.copy_read_at.get(rec["row"])
                if read_at is None:
                    read_at = rec["t"]
                if written is not None and written <= read_at:
                    self._near_miss(read_at - written, rec["t"])
            for loc in [rec["loc"]] + rec["trig"]:
                self._cell(loc, rec["row"], rec["value"])
        elif kind == "final":
            fld = rec["field"]
            for row, value in enumerate(rec["values"]):
                latest = self.latest.get((fld, row))
                if latest is None:
                    continue
                self.checked += 1
                if value == latest[0]:
                    continue
                where = rec["loc"] if rec["exists"] else f"{rec['loc']} (dropped)"
                got = "nothing" if value is None else repr(value)
                self.violate(
                    Violation(
                        self.name,
                        rec["t"],
                        f"at the end {where} holds {got} for {fld} of row {row}, "
                        f"but the latest acknowledged write is {latest[0]!r} (record {latest[1]})",
                        rec["i"],
                        (),
                        f"{fld}[{row}]",
                        (latest[1],),
                    )
                )


class NoStrandedMessage(Checker):
    """Every message sent is eventually taken by an engine: none is left in a queue nobody
    serves, none expires unconsumed, none dies in flight with its consumer, none is dropped with
    an auto-delete queue (a fanout cast to an engine that stopped before taking it).

    ``checked``: messages sent. Vacuous: no message was sent."""

    name = "no-stranded-message"
    kinds = ("send", "left", "lost", "expire", "dropped", "recv", "stop", "kill")

    def __init__(self) -> None:
        super().__init__()
        # score, besides 1000 per message in flight when an engine stops gracefully (one kill away
        # from a loss): the slack between the latest arrival of a (queue, version) and the moment
        # the last engine that took that kind of message stops, as 1 / (1 + slack). A message
        # that arrives after that moment is stranded; a delay on the wire moves its arrival
        # towards it. Which engines accept a version is learnt: those that took one.
        self.key_of: dict[int, tuple[str, str]] = {}  # message sent, not yet taken -> (queue, version)
        self.arrived: dict[tuple[str, str], float] = {}  # latest arrival of a message taken, per key
        self.takers: dict[tuple[str, str], set[str]] = {}  # running engines that took one, per key
        self.took: dict[str, set[tuple[str, str]]] = {}  # engine -> keys it took since it started
        self.near = 0.0

    def score(self) -> float:
        return super().score() + self.near

    def _gone(self, engine: str, t: float) -> None:
        for key in self.took.pop(engine, ()):
            takers = self.takers[key]
            takers.discard(engine)
            if not takers:
                closeness = _closeness(t - self.arrived[key])
                if closeness > self.near:
                    self.near = closeness
                    self.near_t = t

    def observe(self, rec: Record) -> None:
        kind = rec["kind"]
        if kind == "send":
            self.checked += 1
            self.key_of[rec["msg"]] = (rec.get("queue", ""), rec.get("version", ""))
            return
        if kind == "recv":
            key = self.key_of.pop(rec["msg"], None)
            if key is not None:
                arrival = rec["t"] - rec["wait"]
                if arrival > self.arrived.get(key, -1.0):
                    self.arrived[key] = arrival
                self.takers.setdefault(key, set()).add(rec["engine"])
                self.took.setdefault(rec["engine"], set()).add(key)
            return
        if kind == "stop":
            self._score = max(self._score, 1000.0 * len(rec["inflight"]))
            self._gone(rec["engine"], rec["t"])
            return
        if kind == "kill":
            self._gone(rec["engine"], rec["t"])
            return
        self.key_of.pop(rec["msg"], None)
        if kind == "left":
            msg = f"message m{rec['msg']} (version {rec['version']}) was never taken: left in {rec['queue']}"
        elif kind == "lost":
            msg = f"message m{rec['msg']} was lost in flight when {rec['engine']} was killed"
        elif kind == "dropped":
            msg = f"message m{rec['msg']} was dropped with {rec['queue']} ({rec['why']})"
        else:
            msg = f"call m{rec['msg']} expired in {rec['queue']} before any engine took it"
        engines = (rec["engine"],) if "engine" in rec else ()
        self.violate(
            Violation(self.name, rec["t"], msg, rec["i"], engines, f"m{rec['msg']}", tuple(rec.get("cause", ())))
        )


class _Releases:
    """Which release each engine runs (``start`` to ``stopped`` or ``kill``), and how many run at once."""

    def __init__(self) -> None:
        self.running: dict[str, str] = {}
        self.engines_on: dict[str, int] = {}  # release -> running engines on it (> 0): O(1) per record

    def run(self, engine: str, release: str | None) -> None:
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

    @property
    def mixed(self) -> bool:
        return len(self.engines_on) > 1


class NoIncompatibleDelivery(Checker):
    """No engine receives a message whose version, method or arguments it cannot handle
    (oslo.messaging: UnsupportedVersion, NoSuchMethod, or a TypeError from the call).

    ``checked``: deliveries (``recv``). Vacuous: no engine received a message.
    Score: messages sent while more than one release ran, plus :data:`NEAR_MISS` once a message
    was handed to one engine while another running engine that shares its queue would have
    rejected its version (a consumer choice away from the violation; ``near_t`` is then its
    time). Which versions a release accepts comes from the releases' endpoints (oslo's rule: same
    major, requested version no higher), which :func:`make_checkers` passes with the scenario;
    on a version-routed bus no such choice exists."""

    name = "no-incompatible-delivery"
    kinds = ("reject", "start", "stopped", "kill", "send", "recv", "begin")

    def __init__(self, endpoints: dict[str, list[str]] | None = None) -> None:
        super().__init__()
        self.releases = _Releases()
        self.accepts = {
            rel: [v for v in map(_version, versions) if v is not None] for rel, versions in (endpoints or {}).items()
        }
        self.sent: dict[int, tuple[str, Version]] = {}  # message -> (queue, version), until taken
        # running engine -> (its release, the topic queue it names: None for the default); and how many
        # running engines each such pair has, so a near miss is O(releases x queues), not O(engines)
        self.taker: dict[str, tuple[str, str | None]] = {}
        self.taking: dict[tuple[str, str | None], int] = {}
        self.parsed: dict[str, Version | None] = {}  # version text -> its Version (None: not one)
        self.rejects: dict[tuple[str, Version], bool] = {}  # (release, version) -> its endpoints reject it
        self.near = 0.0

    def score(self) -> float:
        return super().score() + self.near

    def _near_miss(self, rec: Record) -> None:
        sent = self.sent.pop(rec["msg"], None)
        if sent is None or self.near:
            return
        queue, v = sent
        running, dot = self.releases.running, queue.find(".")
        while dot >= 0:  # one engine's own queue (``<topic>.<engine>``): nobody else could take it
            if queue[dot + 1 :] in running:
                return
            dot = queue.find(".", dot + 1)
        mine = self.taker.get(rec["engine"])
        for key, n in self.taking.items():
            release, named = key
            if named is not None and named != queue:
                continue
            rejects = self.rejects.get((release, v))
            if rejects is None:
                accepts = self.accepts.get(release)
                rejects = self.rejects[(release, v)] = accepts is not None and not any(
                    a.major == v.major and a >= v for a in accepts
                )
            if rejects and (n > 1 or key != mine):
                self.near, self.near_t = NEAR_MISS, rec["t"]
                return

    def _run(self, engine: str, release: str | None, queue: str | None = None) -> None:
        self.releases.run(engine, release)
        old = self.taker.pop(engine, None)
        if old is not None:
            left = self.taking[old] - 1
            if left:
                self.taking[old] = left
            else:
                del self.taking[old]
        if release is not None:
            key = self.taker[engine] = (release, queue)
            self.taking[key] = self.taking.get(key, 0) + 1

    def observe(self, rec: Record) -> None:
        kind = rec["kind"]
        if kind == "recv":
            self.checked += 1
            if self.sent:
                self._near_miss(rec)
        elif kind == "send":
            if self.releases.mixed:  # mixed-version traffic is where this breaks
                self._score += 1.0
            if self.accepts and not self.near:
                text: str | None = rec.get("version")
                v = None
                if text is not None:
                    v = self.parsed.get(text, _NO_VERSION)
                    if v is _NO_VERSION:
                        v = self.parsed[text] = _version(text)
                if v is not None:
                    self.sent[rec["msg"]] = (rec.get("queue", ""), v)
        elif kind == "begin":
            if rec.get("delivery") == "version-routed":
                self.accepts = {}  # each engine is offered only the versions it takes
        elif kind == "start":
            self._run(rec["engine"], rec["release"], rec.get("queue"))
        elif kind in ("stopped", "kill"):
            self._run(rec["engine"], None)
        else:
            what = "cast was consumed and lost" if not rec["call"] else "caller got the error"
            self.violate(
                Violation(
                    self.name,
                    rec["t"],
                    f"{rec['engine']} got {rec['method']} at version {rec['version']} and raised {rec['error']}; "
                    f"the {what}",
                    rec["i"],
                    (rec["engine"],),
                    f"m{rec['msg']}",
                    tuple(rec["cause"]),
                )
            )


def _version(text: str | None) -> Version | None:
    try:
        return None if text is None else Version.parse(text)
    except ValueError:
        return None


class BoundedImbalance(Checker):
    """No message's wait counts more than ``max_wait`` seconds against the design.

    A topic message's wait is the time from its arrival in a queue (``recv``'s ``t - wait``) to
    the moment an engine takes it. Of that wait, only the time during which some *other* engine
    that could have taken it sat idle counts: an engine that was running (``start`` up to its
    ``stop`` or ``kill``), had a free worker (fewer messages taken than ``workers``), and whose
    release accepts the message's version. The counted wait is the length of the union of those
    idle intervals within the wait; it violates when it exceeds ``max_wait`` (exactly
    ``max_wait`` holds). An engine that finishes a message and takes the next from its backlog
    at the same instant is idle for no time, so engines working back to back (overload of
    identical engines, at any load) never violate it: only starvation -- work queued on one
    engine while another that could do it waits -- does.

    Which versions a release accepts: given the releases' endpoint versions (``endpoints``,
    release -> versions; :func:`make_checkers` passes them when it has the scenario), oslo's rule
    (same major, requested minor and revision no higher). Besides, and without them, it is learnt
    from the trace, which carries release names only: a release accepts ``M.m`` once an engine on
    it has taken a message of a version ``M.m'`` >= ``M.m`` of the same major without raising
    UnsupportedVersion (the accepted versions of a major are a down-set); before that, its idle
    time does not count for that version. Messages published to one engine's own queue
    (``<topic>.<engine>``, fanout) could be taken by no other engine and never count. With services
    or vhosts (``start`` records name the topic queue an engine consumes), only the idle time of
    engines consuming the queue the message was sent to counts: an idle worker of another service,
    or an engine on another vhost, could not have taken it.

    ``checked``: topic messages taken while another running engine whose release accepts their
    version existed. Vacuous: none (a single engine, or no traffic a second engine could take).
    Score: the longest counted wait, in seconds."""

    name = "bounded-imbalance"
    kinds = ("send", "recv", "done", "reject", "lost", "expire", "left", "start", "stop", "stopped", "kill", "end")

    def __init__(self, max_wait: float, endpoints: dict[str, list[str]] | None = None) -> None:
        super().__init__()
        self.max_wait = max_wait
        self.workers: dict[str, int] = {}
        self.busy: dict[str, int] = {}
        self.release: dict[str, str] = {}  # taking engines (started, not stopping) -> release
        self.idle_since: dict[str, float] = {}  # taking engines with a free worker -> since when
        # idle intervals (end, start, engine, release, topic queue or None), by end
        self.closed: list[tuple[float, float, str, str, str | None]] = []
        self.queue_of: dict[str, str | None] = {}  # taking engine -> the topic queue it consumes (None: unnamed)
        self._prune_at = 64
        self.msgs: dict[int, tuple[float, str, str]] = {}  # outstanding message -> (sent at, version, queue)
        self.accepted: dict[tuple[str, int], Version] = {}  # (release, major) -> highest version accepted
        self._known: set[tuple[str, str]] = set()  # (release, version text) already learnt
        self._pending: tuple[int, str, str, Version] | None = None  # a take, until the next record shows its outcome
        self._server_queue: dict[str, bool] = {}
        self._versions: dict[str | None, Version | None] = {None: None}
        # (release, topic queue or None) -> taking engines: "another engine could take it" in O(releases)
        self._taking: dict[tuple[str, str | None], int] = {}
        # (version, queue) -> (generation, engines able, the (release, queue) keys of _taking they are under)
        self._able_cache: dict[tuple[Version | None, str], tuple[int, int, frozenset[tuple[str, str | None]]]] = {}
        self._gen = 0  # changes when the taking engines or what their releases accept change
        self._on = {
            "send": self._send,
            "recv": self._recv,
            "done": self._done,
            "reject": self._done,
            "lost": self._gone,
            "expire": self._gone,
            "left": self._gone,
            "start": self._start,
            "stop": self._stop,
            "stopped": self._stop,
            "kill": self._stop,
            "end": self._end,
        }
        for rel, versions in (endpoints or {}).items():
            for text in versions:
                v = _version(text)
                if v is not None:
                    self._learn(rel, v)

    # ---------------------------------------------------------------- what a release accepts
    def _learn(self, release: str, v: Version) -> None:
        key = (release, v.major)
        best = self.accepted.get(key)
        if best is None or v > best:
            self.accepted[key] = v
            self._gen += 1

    def accepts(self, release: str, version: Version | None) -> bool:
        """Is ``release`` known (so far) to accept ``version``? An unknown version: any release."""
        if version is None:
            return True
        best = self.accepted.get((release, version.major))
        return best is not None and version <= best

    def _another_able(self, e: str, version: Version | None, queue: str) -> bool:
        """Is a taking engine other than ``e``, consuming ``queue`` (or a queue the trace does not name),
        on a release known to accept ``version``? O(releases x queues), not O(engines)."""
        cached = self._able_cache.get((version, queue))
        if cached is None or cached[0] != self._gen:
            keys = frozenset(
                (rel, q) for rel, q in self._taking if (q is None or q == queue) and self.accepts(rel, version)
            )
            cached = self._able_cache[(version, queue)] = (self._gen, sum(self._taking[k] for k in keys), keys)
        able = cached[1]
        mine = self.release.get(e)
        if mine is not None and (mine, self.queue_of.get(e)) in cached[2]:
            able -= 1
        return able > 0

    def _untake(self, e: str) -> None:
        """``e`` takes nothing new from now on."""
        rel = self.release.pop(e, None)
        if rel is not None:
            self._gen += 1
            key = (rel, self.queue_of.get(e))
            n = self._taking[key] - 1
            if n:
                self._taking[key] = n
            else:
                del self._taking[key]

    def _is_server_queue(self, queue: str) -> bool:
        """Is ``queue`` some engine's own queue (``<topic>.<engine>``)? O(length of the name), not O(engines)."""
        known = self._server_queue.get(queue)
        if known is None:
            workers, known = self.workers, False
            dot = queue.find(".")
            while dot >= 0:  # some engine e with queue.endswith("." + e)
                if queue[dot + 1 :] in workers:
                    known = True
                    break
                dot = queue.find(".", dot + 1)
            self._server_queue[queue] = known
        return known

    # ---------------------------------------------------------------- idle intervals
    def _close(self, e: str, t: float) -> None:
        since = self.idle_since.pop(e, None)
        if since is not None and t > since:  # an idle instant of no length counts for nothing
            closed = self.closed
            closed.append((t, since, e, self.release[e], self.queue_of.get(e)))
            if len(closed) >= self._prune_at:
                self._prune(t)

    def _prune(self, t: float) -> None:
        """Drop idle intervals that end before every outstanding message was sent: a message
        arrives in a queue no earlier than it is sent, so none of them can count any more."""
        horizon = next(iter(self.msgs.values()))[0] if self.msgs else t  # the oldest (sends come in order)
        closed = self.closed
        k = bisect.bisect_right(closed, horizon, key=_first)
        if k:
            del closed[:k]
        self._prune_at = max(64, 2 * len(closed))

    def counted_wait(
        self, lo: float, hi: float, taker: str, version: Version | None, queue: str = ""
    ) -> tuple[float, list[str]]:
        """Seconds of [lo, hi] (lo < hi) in which some engine other than ``taker`` that accepts
        ``version`` (and consumed ``queue``, where the trace names engines' queues) sat idle, and
        those engines (in the order they were idle)."""
        spans: list[tuple[float, float, str]] = []
        closed = self.closed
        k = len(closed) - 1
        self.meter.work += len(self.idle_since) + 1  # the scans below (the closed intervals: charged as they go)
        while k >= 0 and closed[k][0] > lo:
            end, start, e, rel, q = closed[k]
            if e != taker and start < hi and (q is None or q == queue) and self.accepts(rel, version):
                spans.append((max(start, lo), min(end, hi), e))
            k -= 1
        self.meter.work += len(closed) - 1 - k
        qof = self.queue_of
        for e, since in self.idle_since.items():
            if e != taker and since < hi and qof.get(e) in (None, queue) and self.accepts(self.release[e], version):
                spans.append((max(since, lo), hi, e))
        spans.sort()
        total, reach = 0.0, lo
        who: list[str] = []
        for start, end, e in spans:
            if end > reach:
                total += end - max(start, reach)
                reach = end
            if e not in who:
                who.append(e)
        return total, who

    # ---------------------------------------------------------------- records
    def observe(self, rec: Record) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            # a take teaches its release the version, unless the next record rejects it for the
            # version (the kernel writes a reject right after its recv)
            if not (rec["kind"] == "reject" and rec["msg"] == pending[0] and rec["error"] == "UnsupportedVersion"):
                self._known.add((pending[1], pending[2]))
                self._learn(pending[1], pending[3])
        self._on[rec["kind"]](rec)

    def _send(self, rec: Record) -> None:
        self.msgs[rec["msg"]] = (rec["t"], rec["version"], rec["queue"])

    def _gone(self, rec: Record) -> None:
        self.msgs.pop(rec["msg"], None)

    def _done(self, rec: Record) -> None:  # done or reject: a worker is free again
        e = rec["engine"]
        b = self.busy.get(e, 0) - 1
        self.busy[e] = b if b > 0 else 0
        if e in self.release and e not in self.idle_since and b < self.workers[e]:
            self.idle_since[e] = rec["t"]
        self.msgs.pop(rec["msg"], None)

    def _start(self, rec: Record) -> None:
        e = rec["engine"]
        self.workers[e] = rec["workers"]
        self.busy[e] = 0
        self._untake(e)
        self.release[e] = rel = rec["release"]
        self.queue_of[e] = q = rec.get("queue")
        self._taking[(rel, q)] = self._taking.get((rel, q), 0) + 1
        self._gen += 1
        self.idle_since[e] = rec["t"]
        self._server_queue.clear()

    def _stop(self, rec: Record) -> None:  # stop, stopped, kill: takes nothing new from now on (start resets busy)
        e = rec["engine"]
        if e in self.release:
            self._close(e, rec["t"])
            self._untake(e)

    def _end(self, rec: Record) -> None:
        self._prune(rec["t"])

    def _recv(self, rec: Record) -> None:
        e, m, t, wait = rec["engine"], rec["msg"], rec["t"], rec["wait"]
        info = self.msgs.get(m)
        text, queue = (info[1], info[2]) if info is not None else (None, "")
        v = self._versions.get(text, _UNPARSED)
        if v is _UNPARSED:
            v = self._versions[text] = _version(text)
        if not (queue and self._is_server_queue(queue)):
            if self._another_able(e, v, queue):
                self.checked += 1
            if wait > self._score or wait > self.max_wait:
                counted, idle = self.counted_wait(t - wait, t, e, v, queue)
                if counted > self._score:
                    self._score = counted
                if counted > self.max_wait:
                    what = f" (version {text})" if text is not None else ""
                    self.violate(
                        Violation(
                            self.name,
                            t,
                            f"message m{m}{what} waited {wait:.3f} s for {e}, {counted:.3f} s of it while "
                            f"{', '.join(idle[:5])}{' ...' if len(idle) > 5 else ''}, which could have taken it, "
                            f"sat idle (bound {self.max_wait:g} s)",
                            rec["i"],
                            (e, *idle[:5]),
                            f"m{m}",
                            tuple(rec["cause"]),
                        )
                    )
        b = self.busy.get(e, 0) + 1
        self.busy[e] = b
        if b >= self.workers.get(e, 1):
            self._close(e, t)
        rel = self.release.get(e)
        if rel is not None and text is not None and v is not None and (rel, text) not in self._known:
            self._pending = (m, rel, text, v)


_UNPARSED: Any = object()


def _first(x: tuple[float, float, str, str, str | None]) -> float:
    return x[0]


class SchemaCompatible(Checker):
    """No engine (or the backfill) touches a table or column that does not exist at that moment.

    ``checked``: database accesses (reads, writes, row rewrites, backfill reads and writes, and
    the refused ones). Vacuous: the run touched no table.
    Score: how narrowly a contract step missed an access to what it removes, 1 / (1 + seconds
    between the last access to a removed column (or a column of a removed table) and the
    contract); ``near_t`` is the contract's time. A later contract, or an earlier last access,
    is farther from the violation: an access after the contract."""

    name = "schema-compatible"
    kinds = ("schema_error", "read", "write", "rewrite", "bf_read", "bf_write", "step")

    def __init__(self) -> None:
        super().__init__()
        self.last_at: dict[str, float] = {}  # location -> the time it was last accessed
        self.near = 0.0

    def score(self) -> float:
        return super().score() + self.near

    def _contract(self, rec: Record) -> None:
        gone = rec["detail"].get("contract") or ()
        for loc, at in self.last_at.items():
            if loc in gone or loc.split(".", 1)[0] in gone:
                closeness = _closeness(rec["t"] - at)
                if closeness > self.near:
                    self.near, self.near_t = closeness, rec["t"]

    def observe(self, rec: Record) -> None:
        kind = rec["kind"]
        if kind == "step":  # not an access: a contract step, for the score
            if rec["action"] == "contract":
                self._contract(rec)
            return
        self.checked += 1
        if kind != "schema_error":
            last_at, t = self.last_at, rec["t"]
            if "loc" in rec:
                last_at[rec["loc"]] = t
            for loc in rec.get("locs", ()):
                last_at[loc] = t
            for loc in rec.get("cols", ()):
                last_at[loc] = t
            return
        self.violate(
            Violation(
                self.name,
                rec["t"],
                f"{rec['engine']} tried to {rec['op']} {', '.join(rec['locs'])}, which does not exist",
                rec["i"],
                (rec["engine"],),
                ", ".join(rec["locs"]),
                tuple(rec.get("cause", ())),
            )
        )


class VersionSkew(Checker):
    """Never more than ``max_releases`` releases running at once in one service (counted by release
    name: a configuration change that is modelled as another release counts as one). A scenario
    with services counts each apart (the ``service`` of ``start`` records); one without has one.

    ``checked``: engine starts. Vacuous: no service ever started more than one release (no upgrade)."""

    name = "version-skew"
    kinds = ("start", "stopped", "kill")

    def __init__(self, max_releases: int) -> None:
        super().__init__()
        self.max_releases = max_releases
        self.running: dict[str, tuple[str | None, str]] = {}  # engine -> (its service, its release)
        self.on: dict[str | None, dict[str, int]] = {}  # service -> release -> its running engines (> 0)
        self.started: dict[str, int] = {}
        self.ever: dict[str | None, set[str]] = {}  # service -> releases ever started in it

    def _run(self, engine: str, now: tuple[str | None, str] | None) -> None:
        """``engine`` runs ``now`` (service, release), or nothing: O(1), not O(engines)."""
        old = self.running.pop(engine, None)
        if old is not None:
            counts = self.on[old[0]]
            n = counts[old[1]] - 1
            if n:
                counts[old[1]] = n
            else:
                del counts[old[1]]
        if now is not None:
            self.running[engine] = now
            counts = self.on.setdefault(now[0], {})
            counts[now[1]] = counts.get(now[1], 0) + 1

    @property
    def vacuous(self) -> bool:
        return self.count == 0 and all(len(rels) <= 1 for rels in self.ever.values())

    def observe(self, rec: Record) -> None:
        if rec["kind"] == "start":
            self.checked += 1
            svc = rec.get("service")
            self.ever.setdefault(svc, set()).add(rec["release"])
            self._run(rec["engine"], (svc, rec["release"]))
            self.started[rec["engine"]] = rec["i"]
            releases = sorted(self.on[svc])  # O(releases)
            self._score = max(self._score, float(len(releases)))
            if len(releases) > self.max_releases:
                where = f" in service {svc}" if svc is not None else ""
                self.meter.work += len(self.running)  # the causes: O(engines), charged to the run's work budget
                mine = [e for e, (s, _) in self.running.items() if s == svc]
                self.violate(
                    Violation(
                        self.name,
                        rec["t"],
                        f"{len(releases)} releases running at once{where} ({', '.join(releases)}), "
                        f"more than {self.max_releases}",
                        rec["i"],
                        (rec["engine"],),
                        ", ".join(releases),
                        tuple(sorted(self.started[e] for e in mine)),
                    )
                )
        else:
            self._run(rec["engine"], None)


class NoRefusedSend(Checker):
    """No send is refused on the sender's side: every ``send_error`` is a violation, whether the
    sender's version cap allows none of its send rules for the method (``RPCVersionCapError``) or
    its release has no rule for the method at all. The sender is a client (a refused operation)
    or an engine (a cast or call refused while handling a message).

    ``checked``: sends attempted (``send`` and ``send_error``). Vacuous: nothing was sent.
    Score: sends made while more than one release ran (a cap can only refuse in a mixed cluster),
    plus :data:`NEAR_MISS` once a message was handed to one engine while another ran *exposed*:
    with a version cap (at its start, or set by a ``caps`` record) below every send rule its
    release has for some method, so that handling a message that sends it would be refused (a
    consumer choice away from the violation; ``near_t`` is then its time). The send rules come
    from the releases (:func:`make_checkers` passes them with the scenario). A cap the cluster
    lifts later without a ``caps`` record (``computed: live``) is not seen: the exposure then
    lasts, for this score, until the engine stops."""

    name = "no-refused-send"
    kinds = ("send", "send_error", "start", "stopped", "kill", "caps", "recv")

    def __init__(self, sends: dict[str, dict[str, list[str]]] | None = None) -> None:
        super().__init__()
        self.releases = _Releases()
        self.started: dict[str, int] = {}
        self.last_caps: int | None = None
        # release -> the lowest version of each method's send rules
        self.lowest: dict[str, list[Version]] = {}
        for rel, methods in (sends or {}).items():
            lows = [
                min(vs)
                for vs in ([v for v in map(_version, rules) if v is not None] for rules in methods.values())
                if vs
            ]
            if lows:
                self.lowest[rel] = lows
        self.exposed: set[str] = set()  # running engines whose cap refuses some method of theirs
        self.near = 0.0

    def score(self) -> float:
        return super().score() + self.near

    def _cap(self, engine: str, release: str | None, cap: str | None) -> None:
        v = _version(cap)
        lows = self.lowest.get(release or "", ())
        if v is not None and any(low > v for low in lows):
            self.exposed.add(engine)
        else:
            self.exposed.discard(engine)

    def observe(self, rec: Record) -> None:
        kind = rec["kind"]
        if kind == "recv":
            if self.exposed and not self.near and (len(self.exposed) > 1 or rec["engine"] not in self.exposed):
                self.near, self.near_t = NEAR_MISS, rec["t"]
            return
        if kind == "send":
            self.checked += 1
            if self.releases.mixed:
                self._score += 1.0
        elif kind == "send_error":
            self.checked += 1
            sender = rec["engine"]
            who = "the client" if sender == CLIENT else sender
            causes = tuple(c for c in (self.started.get(sender), self.last_caps) if c is not None)
            self.violate(
                Violation(
                    self.name,
                    rec["t"],
                    f"{who} could not send {rec['method']}: {rec['error']}",
                    rec["i"],
                    () if sender == CLIENT else (sender,),
                    rec["method"],
                    causes,
                )
            )
        elif kind == "start":
            self.releases.run(rec["engine"], rec["release"])
            self.started[rec["engine"]] = rec["i"]
            if self.lowest:
                self._cap(rec["engine"], rec["release"], rec.get("cap"))
        elif kind == "caps":
            self.last_caps = rec["i"]
            if self.lowest:
                for engine, cap in rec["caps"].items():
                    self._cap(engine, self.releases.running.get(engine), cap)
        else:
            self.releases.run(rec["engine"], None)
            self.exposed.discard(rec["engine"])


class _Op:
    """One client operation and the messages it caused."""

    __slots__ = ("root", "issued", "rec", "method", "outstanding", "failed", "call", "gave_up")

    def __init__(self, root: int, issued: float, rec: int, method: str, call: _Call | None = None) -> None:
        self.root = root
        self.issued = issued
        self.rec = rec
        self.method = method
        self.outstanding = 1
        self.failed = False
        self.call = call  # the logical operation this attempt belongs to (a call the client may retry)
        self.gave_up = False  # the client's timeout record for this attempt was seen


class _Call:
    """A call the client may retry (issue 20): one logical operation, its attempts each an :class:`_Op`."""

    __slots__ = ("first", "attempts", "open", "waiting", "more", "decided", "last")

    def __init__(self, first: _Op, more: bool) -> None:
        self.first = first
        self.attempts = 1
        self.open = 1  # attempts neither completed nor failed
        self.waiting = False  # a timeout announced a retry (retry_at) not sent yet
        self.more = more  # the latest attempt may still be followed by a retry
        self.decided = False
        self.last: tuple[Record, str, tuple[int, ...]] | None = None  # the latest attempt's failure


class OperationsComplete(Checker):
    """Liveness: every client operation, with the work it causes, completes -- within ``within``
    seconds of being issued if that is set, else before the run ends.

    An operation is a ``send`` by the client (its root message) or a ``send_error`` by the client
    (refused at once). Its work is the root message and, recursively, every message an engine
    sends while handling one of its messages (the casts and fanout casts written between that
    handling's reads and its ``done``: the trace emits them just before the ``done`` of the message
    being handled, by the same engine). It completes at the ``done`` of the last of them, if every
    one was handled (``done`` with ``ok``). It fails -- one violation per operation, at the first
    record that decides it -- when any of its messages is rejected (``reject``), lost with a killed
    engine (``lost``), expires unconsumed (``expire``), is left at the end (``left``), is dropped
    with an auto-delete queue (``dropped``), is a call answered after its caller gave up (``late``,
    written just before the call's ``done``: the work was done, but not for the caller), or fails in
    handling (``schema_error``, a write the database refused: ``write_refused``, a value the release
    does not know: ``unknown_value`` with ``action: fail``, ``done`` without ``ok``), when a send of its work is refused
    (``send_error``), when ``within`` seconds have passed without completing it (noticed at the
    first record after the deadline; completing exactly at the deadline is in time), or when it
    is still incomplete when the run ends quiescent. A run stopped at a limit leaves its
    incomplete operations undecided (``pending``), not failed.

    ``checked``: operations decided (completed or failed). Vacuous: no client operation.
    :meth:`availability` reports the completed fraction and the longest interval without a
    completion. Score: the longest time an operation took to complete, in seconds, plus how
    narrowly a kill missed a handling: :data:`KILL_NEAR` / (1 + seconds from the killed engine's
    last handling's end to the kill), the larger part (a kill inside a handling loses its message,
    ``lost``: the violation, whatever the operations' times); ``near_t`` is the kill's time."""

    name = "operations-complete"
    kinds = (
        "send",
        "send_error",
        "done",
        "reject",
        "lost",
        "expire",
        "left",
        "dropped",
        "late",
        "schema_error",
        "write_refused",
        "unknown_value",
        "timeout",
        "end",
        "kill",
    )

    def __init__(self, within: float | None = None, retries: int = 0) -> None:
        super().__init__()
        # score, besides the longest time an operation took: how narrowly a kill missed a handling,
        # KILL_NEAR / (1 + seconds from the killed engine's last handling done to the kill)
        self.done_at: dict[str, float] = {}
        self.near = 0.0
        self.within = within
        # issue 20: with a client retry policy (workload.retry.count > 0), a call and its retries are
        # one logical operation, decided as a whole
        self.retries = retries
        self.calls: dict[int, _Call] = {}  # first attempt's message -> its logical operation
        self.ops: dict[int, _Op] = {}  # root message -> operation not yet decided or with messages out
        self.op_of: dict[int, _Op] = {}  # outstanding message -> its operation
        self.sent_by: dict[str, list[int]] = {}  # engine -> messages it sent in the handling under way
        self.refused_by: dict[str, list[int]] = {}  # engine -> its refused sends (records) in that handling
        self.deadlines: list[tuple[float, int]] = []  # (deadline, root), a heap
        self.total = 0
        self.completed = 0
        self.first_issue: float | None = None
        self.last_issue: float | None = None
        self.last_completion: float | None = None
        self.gap = 0.0
        self.gap_at: tuple[float, float] | None = None
        self.ended = False

    # ---------------------------------------------------------------- availability
    def availability(self) -> dict[str, Any]:
        """Operations completed (in time), of all issued, and the longest interval without a completion.

        The interval runs over the points: the first operation's issue, every completion, and the
        last operation's issue if no completion came after it. ``longest_gap`` is 0.0 and
        ``longest_gap_interval`` None when there are fewer than two points; ``fraction`` is None
        without operations. ``pending``: operations undecided (a run stopped at a limit)."""
        gap, at = self.gap, self.gap_at
        prev = self.last_completion if self.last_completion is not None else self.first_issue
        if self.last_issue is not None and prev is not None and self.last_issue - prev > gap:
            gap, at = self.last_issue - prev, (prev, self.last_issue)
        return {
            "completed": self.completed,
            "total": self.total,
            "fraction": self.completed / self.total if self.total else None,
            "longest_gap": gap,
            "longest_gap_interval": at,
            "pending": sum(1 for op in self.ops.values() if not op.failed),
        }

    def _issue(self, t: float) -> None:
        self.total += 1
        if self.first_issue is None:
            self.first_issue = t
        self.last_issue = t

    # ---------------------------------------------------------------- deciding
    def _fail(self, op: _Op, rec: Record, why: str, causes: tuple[int, ...] = ()) -> None:
        if op.failed:
            return
        op.failed = True
        call = op.call
        if call is not None:  # one attempt failed: the operation fails when every attempt has
            call.open -= 1
            call.last = (rec, why, causes)
            if rec["kind"] == "reject" and not op.gave_up:
                call.more = False  # the caller got an error reply: it does not retry
            self._settle(call, rec)
            return
        self.checked += 1
        engines = (rec["engine"],) if rec.get("engine") not in (None, CLIENT, "backfill") else ()
        self.violate(
            Violation(
                self.name,
                rec["t"],
                f"operation m{op.root} ({op.method}, issued at t={op.issued:.3f}) did not complete: {why}",
                rec["i"],
                engines,
                f"m{op.root}",
                tuple(dict.fromkeys((op.rec, *causes))),
            )
        )

    def _settle(self, call: _Call, rec: Record) -> None:
        """Fail the logical operation ``call`` if every attempt failed and none is to come."""
        if call.decided or call.open > 0 or call.waiting or call.more or call.last is None:
            return
        call.decided = True
        self.checked += 1
        last, why, causes = call.last
        op = call.first
        n = call.attempts
        engines = (last["engine"],) if last.get("engine") not in (None, CLIENT, "backfill") else ()
        tries = f" (every one of its {n} attempts failed; the last: {why})" if n > 1 else f": {why}"
        self.violate(
            Violation(
                self.name,
                rec["t"],
                f"operation m{op.root} ({op.method}, issued at t={op.issued:.3f}) did not complete{tries}",
                rec["i"],
                engines,
                f"m{op.root}",
                tuple(dict.fromkeys((op.rec, *causes))),
            )
        )

    def _release(self, msg: int) -> _Op | None:
        """One message of an operation is finished with; forget the operation when it has none left."""
        op = self.op_of.pop(msg, None)
        if op is not None:
            op.outstanding -= 1
            if op.outstanding == 0 and op.failed:
                del self.ops[op.root]
        return op

    def _deadlines(self, rec: Record) -> None:
        t, heap = rec["t"], self.deadlines
        while heap and heap[0][0] < t:
            deadline, root = heapq.heappop(heap)
            call = self.calls.get(root)
            if call is not None:  # a logical operation: late however its attempts fare
                if not call.decided:
                    why = f"not complete {self.within:g} s after it was issued (deadline t={deadline:.3f})"
                    call.last = (rec, why, ())
                    call.open = 0
                    call.waiting = call.more = False
                    self._settle(call, rec)
                continue
            op = self.ops.get(root)
            if op is not None and not op.failed:
                self._fail(op, rec, f"not complete {self.within:g} s after it was issued (deadline t={deadline:.3f})")

    def observe(self, rec: Record) -> None:
        kind = rec["kind"]
        if self.deadlines:
            self._deadlines(rec)
        if kind == "send":
            m = rec["msg"]
            if rec["engine"] == CLIENT:
                first = rec.get("retry_of")
                call = self.calls.get(first) if first is not None else None
                if call is not None:  # a retry: an attempt of the operation its first attempt began
                    attempt = rec.get("attempt", call.attempts + 1)
                    self.ops[m] = self.op_of[m] = _Op(m, rec["t"], rec["i"], rec["method"], call)
                    call.attempts += 1
                    call.open += 1
                    call.waiting = False
                    call.more = attempt <= self.retries
                    return
                self._issue(rec["t"])
                new = self.ops[m] = self.op_of[m] = _Op(m, rec["t"], rec["i"], rec["method"])
                if self.retries > 0 and rec["call"]:
                    new.call = self.calls[m] = _Call(new, more=True)
                if self.within is not None:
                    heapq.heappush(self.deadlines, (rec["t"] + self.within, m))
            else:
                self.sent_by.setdefault(rec["engine"], []).append(m)
        elif kind == "send_error":
            if rec["engine"] == CLIENT:
                self._issue(rec["t"])
                self.checked += 1
                self.violate(
                    Violation(
                        self.name,
                        rec["t"],
                        f"operation {rec['method']} (issued at t={rec['t']:.3f}) was refused: {rec['error']}",
                        rec["i"],
                        (),
                        rec["method"],
                        (),
                    )
                )
            else:
                self.refused_by.setdefault(rec["engine"], []).append(rec["i"])
        elif kind == "done":
            self._done(rec)
        elif kind == "kill":
            done = self.done_at.get(rec["engine"])
            if done is not None and KILL_NEAR * _closeness(rec["t"] - done) > self.near:
                self.near, self.near_t = KILL_NEAR * _closeness(rec["t"] - done), rec["t"]
        elif kind == "timeout":
            self._timeout(rec)
        elif kind == "end":
            self._end(rec)
        elif kind == "late":
            op = self.op_of.get(rec["msg"])
            if op is not None:  # its done follows, and releases the message
                self._fail(
                    op,
                    rec,
                    f"the reply to m{rec['msg']} came at t={rec['t']:.3f}, after its caller gave up at "
                    f"t={rec['deadline']:.3f} (the work was done for nobody)",
                    tuple(rec.get("cause", ())),
                )
        else:
            m = rec.get("msg")
            failing = self.op_of.get(m) if m is not None else None
            if failing is None:
                return
            if kind == "schema_error":
                self._fail(
                    failing,
                    rec,
                    f"handling m{m} failed: {rec['engine']} could not {rec['op']} {', '.join(rec['locs'])}",
                    (rec["i"],),
                )
                return
            if kind == "unknown_value":  # issue 20: only a release that fails on it fails the handling
                if rec["action"] == "fail":
                    self._fail(
                        failing,
                        rec,
                        f"handling m{m} failed: {rec['engine']} runs {rec['release']}, which does not know the "
                        f"value {rec['value']!r} of {rec['field']}[{rec['row']}]",
                        (rec["i"], *rec.get("cause", ())),
                    )
                return
            if kind == "write_refused":
                what = (
                    f"write of {rec['field']}"
                    if rec.get("field")
                    else "transaction"
                    if rec.get("op") == "commit"
                    else "whole-row save"
                )
                self._fail(
                    failing,
                    rec,
                    f"handling m{m} failed: the database refused {rec['engine']}'s {what}: {rec['error']}",
                    (rec["i"],),
                )
                return
            why = {
                "reject": lambda: f"m{m} was rejected by {rec['engine']} ({rec['error']})",
                "lost": lambda: f"m{m} was lost with {rec['engine']}",
                "expire": lambda: f"call m{m} expired unconsumed in {rec['queue']}",
                "left": lambda: f"m{m} was never taken (left in {rec['queue']})",
                "dropped": lambda: f"m{m} was dropped with {rec['queue']}",
            }[kind]()
            self._fail(failing, rec, why, tuple(rec.get("cause", ())))
            self._release(rec["msg"])

    def score(self) -> float:
        return super().score() + self.near

    def _done(self, rec: Record) -> None:
        e, m, t = rec["engine"], rec["msg"], rec["t"]
        self.done_at[e] = t
        children = self.sent_by.pop(e, None)
        refused = self.refused_by.pop(e, None)
        op = self.op_of.get(m)
        if op is None:
            return
        if children:
            for c in children:
                self.op_of[c] = op
            op.outstanding += len(children)
        if refused:
            self._fail(op, rec, f"{e} could not send while handling m{m} (record {refused[0]})", (refused[0],))
        if not rec["ok"]:
            self._fail(op, rec, f"handling m{m} on {e} failed")
        self._release(m)
        if op.outstanding == 0 and not op.failed:
            self._complete(op, t)

    def _timeout(self, rec: Record) -> None:
        """The client gave up on an attempt: a retry follows (``retry_at``) or none does."""
        if rec.get("engine") != CLIENT:
            return
        op = self.ops.get(rec["msg"])
        if op is None or op.call is None:
            return
        op.gave_up = True
        call = op.call
        call.waiting = "retry_at" in rec
        call.more = False  # a further attempt is announced now (waiting), or never
        self._settle(call, rec)

    def _complete(self, op: _Op, t: float) -> None:
        del self.ops[op.root]
        call = op.call
        t0 = op.issued
        if call is not None:  # an attempt completed in time: the operation completes, once
            call.open -= 1
            if call.decided:
                return
            call.decided = True
            t0 = call.first.issued  # the operation's time runs from its first attempt
        self.checked += 1
        self.completed += 1
        took = t - t0
        if took > self._score:
            self._score = took
        prev = self.last_completion if self.last_completion is not None else self.first_issue
        if prev is not None and t - prev > self.gap:
            self.gap, self.gap_at = t - prev, (prev, t)
        self.last_completion = t

    def _end(self, rec: Record) -> None:
        self.ended = True
        if not rec.get("reason", "quiescent").startswith("quiescent"):
            return  # a partial run: what is under way may still complete
        for op in list(self.ops.values()):
            if not op.failed:
                self._fail(op, rec, "still under way when the run ended")
        for call in self.calls.values():  # a retry that was announced but never sent
            if not call.decided and call.open == 0:
                call.waiting = call.more = False
                self._settle(call, rec)


class NoLostUpdate(Checker):
    """No read-modify-write loses a concurrent update.

    In the model a handler reads its fields when it takes a message and writes after the
    service time. A *read-modify-write* is a handling (one engine, one message) that reads field
    ``f`` of row ``r`` (a ``read`` record) and later writes ``f`` of row ``r`` (a ``write`` record
    of the same engine and message). It loses an update when another handling's ``write`` of
    ``f`` row ``r`` lands between the two, in trace order (a write at the same instant counts by
    its record number: after the read and before the write is in between). Its value was computed
    from a read that the other write superseded, and it overwrites that write. This differs from
    ``no-lost-write``, which flags a read that does not return the latest write (a stale read):
    here the read was current when made. Backfill copies and whole-row rewrites are not
    acknowledged writes of the field and do not count (``no-lost-write`` judges them).

    ``checked``: read-modify-writes completed. Vacuous: none (no handler reads and writes the same
    field). Score: how narrowly another write of the same cell missed a read-modify-write window,
    1 / (1 + seconds)."""

    name = "no-lost-update"
    kinds = ("read", "write", "done", "kill")

    def __init__(self) -> None:
        super().__init__()
        # (field, row) -> handling (engine, msg) -> [read record, read time, superseding write record or None]
        self.reads: dict[tuple[str, int], dict[tuple[str, int], list[Any]]] = {}
        self.by_handling: dict[tuple[str, int], list[tuple[str, int]]] = {}
        self.last_write: dict[tuple[str, int], float] = {}
        self.last_rmw: dict[tuple[str, int], float] = {}

    def _near(self, seconds: float, t: float) -> None:
        c = _closeness(seconds)
        if c > self._score:
            self._score = c
            self.near_t = t

    def _drop(self, h: tuple[str, int]) -> None:
        for cell in self.by_handling.pop(h, ()):
            entries = self.reads.get(cell)
            if entries is not None:
                entries.pop(h, None)
                if not entries:
                    del self.reads[cell]

    def observe(self, rec: Record) -> None:
        kind = rec["kind"]
        if kind == "done":
            self._drop((rec["engine"], rec["msg"]))
            return
        if kind == "kill":
            self.meter.work += len(self.by_handling)  # the scan below, charged to the run's work budget
            for h in [h for h in self.by_handling if h[0] == rec["engine"]]:
                self._drop(h)
            return
        cell, h, t = (rec["field"], rec["row"]), (rec["engine"], rec["msg"]), rec["t"]
        if kind == "read":
            entries = self.reads.setdefault(cell, {})
            if h not in entries:
                self.by_handling.setdefault(h, []).append(cell)
            entries[h] = [rec["i"], t, None]
            written = self.last_write.get(cell)
            if written is not None:
                self._near(t - written, t)
            return
        # a write
        entries = self.reads.get(cell, {})
        mine = entries.pop(h, None)
        if mine is not None:
            self.checked += 1
            other = mine[2]
            if other is not None:
                self.violate(
                    Violation(
                        self.name,
                        t,
                        f"{h[0]} wrote {cell[0]} of row {cell[1]} ({rec['value']!r}) from what it read at "
                        f"t={mine[1]:.3f} (record {mine[0]}), but {other['engine']} wrote {other['value']!r} "
                        f"(record {other['i']}, m{other['msg']}) in between: that update is lost",
                        rec["i"],
                        (h[0], other["engine"]),
                        f"{cell[0]}[{cell[1]}]",
                        (mine[0], other["i"]),
                    )
                )
            self.last_rmw[cell] = t
        else:
            rmw = self.last_rmw.get(cell)
            if rmw is not None:
                self._near(t - rmw, t)
        if entries:
            for entry in entries.values():
                if entry[2] is None:
                    entry[2] = rec
        self.last_write[cell] = t


class NoDuplicateEffect(Checker):
    """No logical operation is applied twice: a call and its retries (``send`` records by the client
    whose ``retry_of`` names the first attempt) are one operation, and at most one of its attempts may
    be applied -- handled to its end (``done`` with ``ok``) without a ``dedup`` record (the handler's
    idempotency key found the request already recorded and did no work).

    The shape it catches: a client's call times out while its first copy is still queued, prefetched
    or being handled by a stopping engine; the retry is handled too, and the operation's effect (a
    stack, an instance, a charge) happens twice. ``no-lost-update`` does not see it: the two copies
    write different values one after the other, and neither loses the other's write.

    ``checked``: operations retried at least once (the only ones that could be applied twice).
    Vacuous: no call was retried. Score: attempts sent beyond the first, over all operations, plus
    how narrowly a call's first attempt beat the client's timeout (``timeout``, which
    :func:`make_checkers` passes with the scenario): 1 / (1 + seconds between its handling's end
    and the moment the client would have given up and retried); ``near_t`` is that handling's end."""

    name = "no-duplicate-effect"
    kinds = ("send", "dedup", "done")

    def __init__(self, timeout: float | None = None) -> None:
        super().__init__()
        self.timeout = timeout
        self.sent_at: dict[int, float] = {}  # a first attempt, until handled -> when it was sent
        self.near = 0.0
        self.op_of: dict[int, int] = {}  # a client call's message -> its operation (the first attempt)
        self.sends: dict[int, int] = {}  # message -> its send record
        self.method: dict[int, str] = {}  # operation -> method
        self.skipped: set[int] = set()  # messages that found their request id recorded
        self.applied: dict[int, tuple[int, int, str, float]] = {}  # operation -> (msg, done record, engine, t)
        self.retried: set[int] = set()  # operations with a retry

    def score(self) -> float:
        return super().score() + self.near

    def observe(self, rec: Record) -> None:
        kind = rec["kind"]
        if kind == "send":
            if rec["engine"] != CLIENT or not rec["call"]:
                return
            m: int = rec["msg"]
            op: int = rec.get("retry_of", m)
            self.op_of[m] = op
            self.sends[m] = rec["i"]
            self.method.setdefault(op, rec["method"])
            if self.timeout is not None and op == m:
                self.sent_at[m] = rec["t"]
            if op != m:
                if op not in self.retried:
                    self.checked += 1
                self.retried.add(op)
                self._score += 1.0
        elif kind == "dedup":
            self.skipped.add(rec["msg"])
        elif kind == "done":
            m = rec["msg"]
            of = self.op_of.get(m)
            if of is None or not rec["ok"] or m in self.skipped:
                return
            sent = self.sent_at.pop(m, None)
            if sent is not None and self.timeout is not None:
                closeness = _closeness(sent + self.timeout - rec["t"])
                if closeness > self.near:
                    self.near, self.near_t = closeness, rec["t"]
            op = of
            first = self.applied.get(op)
            if first is None:
                self.applied[op] = (m, rec["i"], rec["engine"], rec["t"])
                return
            fm, frec, feng, ft = first
            self.violate(
                Violation(
                    self.name,
                    rec["t"],
                    f"operation m{op} ({self.method[op]}) was applied twice: attempt m{fm} by {feng} at "
                    f"t={ft:.3f} and attempt m{m} by {rec['engine']} at t={rec['t']:.3f} (a retry of a call "
                    "whose first copy was still handled; an idempotency key would have skipped one)",
                    rec["i"],
                    tuple(dict.fromkeys((feng, rec["engine"]))),
                    f"m{m}",
                    (self.sends[fm], self.sends[m], frec),
                )
            )


class PlanCompletes(Checker):
    """The operator's plan runs to its end: no conditional step (``wait_until``) fails. A step that
    times out, or that waits for conditions nothing is left to make true, writes ``plan_failed``;
    each is a violation, caused by the step's record (the rest of that plan never ran).

    ``checked``: conditional steps that ended (``waited`` or ``plan_failed``). Vacuous: the plan
    ran no conditional step to its end. Score: the largest share of its timeout a step waited."""

    name = "plan-completes"
    kinds = ("step", "waited", "plan_failed")

    def __init__(self) -> None:
        super().__init__()
        self.steps: dict[int, Record] = {}  # record number -> a conditional step's record

    def observe(self, rec: Record) -> None:
        kind = rec["kind"]
        if kind == "step":
            if rec["action"] == "wait_until":
                self.steps[rec["i"]] = rec
            return
        self.checked += 1
        causes = tuple(rec.get("cause", ()))
        step = self.steps.get(causes[0]) if causes else None
        if kind == "waited":
            timeout = step["detail"].get("timeout") if step is not None else None
            if timeout:
                self._score = max(self._score, rec["waited"] / timeout)
            return
        what = f"plan step {step['index']} (wait_until)" if step is not None else "a plan step"
        self.violate(
            Violation(
                self.name,
                rec["t"],
                f"{what} failed: {rec['why']}; unmet: {'; '.join(rec['unmet'])}",
                rec["i"],
                (),
                what,
                causes,
            )
        )


INVARIANTS: dict[str, type[Checker]] = {
    c.name: c
    for c in (
        NoLostWrite,
        NoStrandedMessage,
        NoIncompatibleDelivery,
        BoundedImbalance,
        SchemaCompatible,
        VersionSkew,
        NoRefusedSend,
        OperationsComplete,
        NoLostUpdate,
        NoDuplicateEffect,
        PlanCompletes,
    )
}


def make_checkers(enabled: dict[str, BaseModel], scenario: Scenario | None = None) -> list[Checker]:
    """Checkers for the invariants a scenario enables, with their bounds.

    With ``scenario``, ``bounded-imbalance`` and ``no-incompatible-delivery`` know each release's
    endpoint versions (which versions it accepts) from the start, and ``no-refused-send`` each
    release's send rules (their scores use them)."""
    out = []
    for name, params in enabled.items():
        kw = params.model_dump()
        if name == OperationsComplete.name and scenario is not None and scenario.workload.retry is not None:
            kw["retries"] = scenario.workload.retry.count  # a call and its retries: one operation (issue 20)
        if name in (BoundedImbalance.name, NoIncompatibleDelivery.name) and scenario is not None:
            kw["endpoints"] = {
                rel: [ep.version for ep in spec.rpc.endpoints] for rel, spec in scenario.releases.items()
            }
        if name == NoDuplicateEffect.name and scenario is not None:
            kw["timeout"] = scenario.workload.timeout or scenario.bus.call_timeout
        if name == NoRefusedSend.name and scenario is not None:
            kw["sends"] = {
                rel: {m: [r.version for r in rules] for m, rules in spec.rpc.sends.items()}
                for rel, spec in scenario.releases.items()
            }
        out.append(INVARIANTS[name](**kw))
    return out


@dataclass
class InvariantResult:
    name: str
    held: bool
    count: int
    violations: list[Violation] = field(default_factory=list)
    vacuous: bool = False  # held because there was nothing to check (see each checker's docstring)
    checked: int = 0  # events the checker judged

    @classmethod
    def of(cls, checker: Checker) -> InvariantResult:
        """The result of a checker that has read a whole trace."""
        return cls(
            checker.name, checker.count == 0, checker.count, checker.violations, checker.vacuous, checker.checked
        )


class Coverage:
    """What a run exercised, per release: RPC versions sent, handled and rejected, sends refused,
    methods handled, locations read and written; and the operator steps executed.

    A trace consumer like a checker (``kinds``, :meth:`observe`), not an invariant: it judges
    nothing. :meth:`result` returns a plain dict::

        {"releases": {release: {"sent": {version: n}, "handled": {version: n}, "rejected": {version: n},
                                "refused": {method: n}, "methods": {method: n},
                                "read": {location: n}, "written": {location: n}}},
         "steps": [{"index": i, "action": a, "t": t}, ...]}

    Senders and accessors that are not engines appear under their own names: ``client`` (the
    release the clients send with is not in the trace), ``backfill``, and ``trigger`` (locations a
    database trigger wrote). Keys are sorted; counts are of records."""

    kinds = (
        "start",
        "send",
        "send_error",
        "done",
        "reject",
        "lost",
        "expire",
        "left",
        "read",
        "write",
        "rewrite",
        "bf_read",
        "bf_write",
        "step",
    )

    def __init__(self) -> None:
        self.release_of: dict[str, str] = {}
        self.msgs: dict[int, tuple[str, str]] = {}  # outstanding message -> (method, version)
        # (who, what, key) -> count: one flat dict (a read of a hot record costs one get and one set),
        # folded into the nested table by result()
        self.counts: dict[tuple[str, str, str], int] = {}
        self.steps: list[dict[str, Any]] = []
        self._on = {
            "start": self._start,
            "send": self._send,
            "send_error": self._send_error,
            "done": self._done,
            "reject": self._reject,
            "lost": self._gone,
            "expire": self._gone,
            "left": self._gone,
            "read": self._read,
            "bf_read": self._read,
            "write": self._write,
            "rewrite": self._rewrite,
            "bf_write": self._bf_write,
            "step": self._step,
        }

    def handlers(self) -> dict[str, Callable[[Record], None]]:
        """kind -> the method that reads it (the runner subscribes these directly: one call less per record)."""
        return dict(self._on)

    def _add(self, who: str, what: str, key: str) -> None:
        k = (who, what, key)
        self.counts[k] = self.counts.get(k, 0) + 1

    def observe(self, rec: Record) -> None:
        self._on[rec["kind"]](rec)

    def _start(self, rec: Record) -> None:
        self.release_of[rec["engine"]] = rec["release"]

    def _send(self, rec: Record) -> None:
        e: str = rec["engine"]
        version = rec["version"]
        self.msgs[rec["msg"]] = (rec["method"], version)
        k = (self.release_of.get(e, e), "sent", version)
        counts = self.counts
        counts[k] = counts.get(k, 0) + 1

    def _send_error(self, rec: Record) -> None:
        e: str = rec["engine"]
        self._add(self.release_of.get(e, e), "refused", rec["method"])

    def _done(self, rec: Record) -> None:
        info = self.msgs.pop(rec["msg"], None)
        if info is not None:
            e: str = rec["engine"]
            rel = self.release_of.get(e, e)
            counts = self.counts
            k = (rel, "handled", info[1])
            counts[k] = counts.get(k, 0) + 1
            k = (rel, "methods", info[0])
            counts[k] = counts.get(k, 0) + 1

    def _reject(self, rec: Record) -> None:
        info = self.msgs.pop(rec["msg"], None)
        if info is not None:
            e: str = rec["engine"]
            self._add(self.release_of.get(e, e), "rejected", info[1])

    def _gone(self, rec: Record) -> None:
        self.msgs.pop(rec["msg"], None)

    def _read(self, rec: Record) -> None:
        e: str = rec["engine"]
        k = (self.release_of.get(e, e), "read", rec["loc"])
        counts = self.counts
        counts[k] = counts.get(k, 0) + 1

    def _write(self, rec: Record) -> None:
        e: str = rec["engine"]
        rel = self.release_of.get(e, e)
        counts = self.counts
        for loc in rec["locs"]:
            k = (rel, "written", loc)
            counts[k] = counts.get(k, 0) + 1
        for loc in rec["trig"]:
            self._add("trigger", "written", loc)

    def _bf_write(self, rec: Record) -> None:
        self._add("backfill", "written", rec["loc"])
        for loc in rec["trig"]:
            self._add("trigger", "written", loc)

    def _rewrite(self, rec: Record) -> None:
        e: str = rec["engine"]
        rel = self.release_of.get(e, e)
        for loc in rec["cols"]:
            self._add(rel, "written", loc)

    def _step(self, rec: Record) -> None:
        self.steps.append({"index": rec["index"], "action": rec["action"], "t": rec["t"]})

    def result(self) -> dict[str, Any]:
        whats = ("sent", "handled", "rejected", "refused", "methods", "read", "written")
        table: dict[str, dict[str, dict[str, int]]] = {}
        for (who, what, key), n in self.counts.items():
            table.setdefault(who, {}).setdefault(what, {})[key] = n
        return {
            "releases": {rel: {w: dict(sorted(table[rel].get(w, {}).items())) for w in whats} for rel in sorted(table)},
            "steps": list(self.steps),
        }
