"""The engines: compiled releases, and each engine's lifecycle (start, graceful stop, kill)
and workers, which take messages from the broker and read and write the database.

A :class:`Cluster` holds every engine of a run; engines consume from the
:class:`~simroll.sim.broker.Broker` and use the :class:`~simroll.sim.database.Database`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import simpy
from simpy.events import Event, Process

from simroll.scenario.rpc import Endpoint, Outcome, SendRule, Signature, accepts_version, choose_send_rule, dispatch
from simroll.scenario.spec import HandlerSpec, ReleaseSpec, Scenario
from simroll.scenario.versions import Version
from simroll.sim.broker import Broker, Message, Queue, Subscription
from simroll.sim.chooser import Chooser
from simroll.sim.database import Database
from simroll.sim.trace import Trace


# ------------------------------------------------------------------ compiled releases
@dataclass(frozen=True, slots=True)
class Release:
    """A release compiled from its spec: what the hot path needs, precomputed."""

    name: str
    endpoints: tuple[Endpoint, ...]
    implemented: Version  # highest version of the default namespace (for auto caps)
    send_rules: dict[str, tuple[SendRule, ...]]
    cap: Version | str | None
    read: dict[str, str]  # field -> location
    write: dict[str, tuple[str, ...]]  # field -> locations
    known_columns: dict[str, tuple[str, ...]]  # table -> locations this release knows
    update_row: bool
    service_time: float
    workers: int

    @classmethod
    def compile(cls, name: str, spec: ReleaseSpec) -> Release:
        """Compile the release ``name`` from its spec."""
        endpoints = tuple(
            Endpoint(
                version=Version.parse(ep.version),
                methods={m: Signature.parse(p) for m, p in ep.methods.items()},
                namespace=ep.namespace,
            )
            for ep in spec.rpc.endpoints
        )
        default_ns = [ep.version for ep in endpoints if ep.namespace is None] or [endpoints[0].version]
        send_version = Version.parse(spec.rpc.send_version) if spec.rpc.send_version else endpoints[0].version
        rules: dict[str, tuple[SendRule, ...]] = {}
        for ep in endpoints:  # default rule per method: the release's own signature
            for m, sig in ep.methods.items():
                if m not in rules:
                    rules[m] = (SendRule(send_version, frozenset(sig.names), ep.namespace),)
        for m, specs in spec.rpc.sends.items():
            own = rules.get(m)
            rules[m] = tuple(
                SendRule(
                    Version.parse(r.version),
                    frozenset(r.args) if r.args is not None else (own[0].args if own else frozenset()),
                    own[0].namespace if own else None,
                )
                for r in specs
            )
        cap = spec.rpc.cap
        known: dict[str, list[str]] = {}
        for acc in spec.data.values():
            for loc in ([acc.read] if acc.read else []) + list(acc.write):
                cols = known.setdefault(loc.split(".")[0], [])
                if loc not in cols:
                    cols.append(loc)
        return cls(
            name=name,
            endpoints=endpoints,
            implemented=max(default_ns),
            send_rules=rules,
            cap=cap if cap in (None, "auto") else Version.parse(cap),
            read={f: a.read for f, a in spec.data.items() if a.read},
            write={f: tuple(a.write) for f, a in spec.data.items() if a.write},
            known_columns={t: tuple(c) for t, c in known.items()},
            update_row=spec.update == "row",
            service_time=spec.service_time,
            workers=spec.workers,
        )


# ------------------------------------------------------------------ engines
STOPPED, RUNNING, STOPPING = "stopped", "running", "stopping"


@dataclass(slots=True, eq=False)
class Engine:
    """The state of one engine (a :class:`~simroll.sim.broker.Consumer` of the broker)."""

    name: str
    index: int
    server_queue: Queue = field(init=False)  # set by the cluster, which asks the broker for it
    release: Release | None = None  # None until it first starts
    state: str = STOPPED
    generation: int = 0
    procs: list[Process] = field(default_factory=list)
    backlog: deque[Message] = field(default_factory=deque)  # delivered (prefetched), not yet taken
    subs: list[Subscription] = field(default_factory=list)  # its consumers on the broker's queues
    inflight: dict[int, Message] = field(default_factory=dict)  # worker slot -> message being handled
    wake: Event | None = None  # idle workers wait on this
    cap: Version | None = None
    accepts: dict[Version, bool] = field(default_factory=dict)
    outcomes: dict[tuple[str, Version, frozenset[str], str | None], Outcome] = field(default_factory=dict)
    stopped_event: Event | None = None

    @property
    def running(self) -> bool:
        """Does it take messages now?"""
        return self.state == RUNNING

    def takes(self, version: Version) -> bool:
        """Does its release listen for ``version``? Cached per start."""
        ok = self.accepts.get(version)
        if ok is None:
            assert self.release is not None, "the broker only asks engines that started"
            ok = self.accepts[version] = accepts_version(self.release.endpoints, version)
        return ok


def _causes(cause: int | None) -> list[int]:
    return [] if cause is None else [cause]


class Cluster:
    """Every engine of a run, their caps, and what they send, read and write."""

    def __init__(
        self, env: simpy.Environment, scenario: Scenario, broker: Broker, db: Database, chooser: Chooser, trace: Trace
    ):
        self.env = env
        self.broker = broker
        self.db = db
        self.chooser = chooser
        self.trace = trace
        self.releases = {n: Release.compile(n, r) for n, r in scenario.releases.items()}
        self.engines: dict[str, Engine] = {}
        for i, e in enumerate(scenario.engine_list()):
            eng = Engine(name=e.name, index=i)
            eng.server_queue = broker.server_queue(eng)
            self.engines[e.name] = eng
        self.handlers = scenario.workload.handlers
        self.rows = scenario.database.rows
        self.cap_override: Version | str | None = None
        self.cap_overridden = False
        self._next_value = 0
        # implemented version -> engines started and not yet stopped: `cap: auto` is the lowest
        # key, kept up to date at each start and stop so that resolving a cap is O(releases), not O(engines)
        self._started: dict[Version, int] = {}

    def _count(self, rel: Release, delta: int) -> None:
        n = self._started.get(rel.implemented, 0) + delta
        if n:
            self._started[rel.implemented] = n
        else:
            del self._started[rel.implemented]

    # -------------------------------------------------------------- caps and sending
    def resolve_cap(self, cap: Version | str | None) -> Version | None:
        """The version cap in force for a release whose own cap is ``cap`` (see ``set_cap``).

        ``set_cap`` changes the pin of the releases that have one (``upgrade_levels`` is a setting
        of releases that support it); a release that declares no cap stays unpinned."""
        if self.cap_overridden and cap is not None:
            cap = self.cap_override
        if cap == "auto":
            return min(self._started) if self._started else None
        assert not isinstance(cap, str), "the only named cap is 'auto'"
        return cap

    def override_cap(self, cap: Version | str | None) -> None:
        """The operator's ``set_cap``: the cap of every engine whose release declares one becomes ``cap``."""
        self.cap_overridden = True
        self.cap_override = cap
        for eng in self.engines.values():
            if eng.state != STOPPED:
                assert eng.release is not None, "a started engine has a release"
                eng.cap = self.resolve_cap(eng.release.cap)

    def send(
        self,
        sender: str,
        rel: Release,
        cap: Version | None,
        method: str,
        row: int,
        call: bool,
        queue: Queue | None = None,
        hop: int = 0,
    ) -> None:
        """Send ``method`` as ``rel`` under ``cap``: publish it, or record why it cannot be sent."""
        rules = rel.send_rules.get(method)
        if not rules:
            self.trace.emit(
                self.env.now, "send_error", engine=sender, method=method, error=f"release {rel.name} has no {method}"
            )
            return
        rule = choose_send_rule(rules, cap)
        if rule is None:
            self.trace.emit(
                self.env.now, "send_error", engine=sender, method=method, error=f"RPCVersionCapError (cap {cap})"
            )
            return
        self.broker.publish(sender, method, rule, row, call, queue, hop)

    # -------------------------------------------------------------- lifecycle
    def start(self, eng: Engine, rel: Release, cause: int | None) -> None:
        """Start ``eng`` on ``rel``: its workers, then it consumes."""
        if eng.state != STOPPED:
            self.trace.emit(
                self.env.now, "noop", engine=eng.name, why=f"start: engine is {eng.state}", cause=_causes(cause)
            )
            return
        eng.release = rel
        eng.state = RUNNING
        self._count(rel, +1)
        eng.generation += 1
        eng.accepts = {}
        eng.outcomes = {}
        eng.stopped_event = self.env.event()
        eng.cap = self.resolve_cap(rel.cap)
        self.trace.emit(
            self.env.now,
            "start",
            engine=eng.name,
            release=rel.name,
            workers=rel.workers,
            cap=None if eng.cap is None else str(eng.cap),
            cause=_causes(cause),
        )
        eng.procs = [self.env.process(self._worker(eng, rel, slot, eng.generation)) for slot in range(rel.workers)]
        self.broker.join(eng)

    def stop(self, eng: Engine, cause: int | None = None) -> Event | None:
        """Graceful stop: take nothing new, finish in-flight work. Returns the stopped event."""
        if eng.state != RUNNING:
            self.trace.emit(
                self.env.now, "noop", engine=eng.name, why=f"stop: engine is {eng.state}", cause=_causes(cause)
            )
            return None
        assert eng.release is not None, "a running engine has a release"
        eng.state = STOPPING
        rec = self.trace.emit(
            self.env.now,
            "stop",
            engine=eng.name,
            inflight=sorted(m.id for m in eng.inflight.values()),
            cause=_causes(cause),
        )
        self.broker.leave(eng, rec, eng.release.endpoints)
        self.broker.requeue_backlog(eng, rec)  # in-flight work finishes, and is acked, as it ends
        if eng.wake is not None:
            ev, eng.wake = eng.wake, None
            ev.succeed()
        if not eng.inflight and not any(p.is_alive for p in eng.procs):
            self._stopped(eng, eng.release)
        return eng.stopped_event

    def _stopped(self, eng: Engine, rel: Release) -> None:
        eng.state = STOPPED
        self._count(rel, -1)
        self.trace.emit(self.env.now, "stopped", engine=eng.name, release=rel.name)
        if eng.stopped_event is not None and not eng.stopped_event.triggered:
            eng.stopped_event.succeed()

    def kill(self, eng: Engine, cause: int | None = None) -> None:
        """Kill ``eng``: its workers die at once and its connection with them: in-flight messages
        are lost (or requeued, if the bus acknowledges after handling), prefetched ones requeued."""
        if eng.state == STOPPED:
            self.trace.emit(self.env.now, "noop", engine=eng.name, why="kill: engine is stopped", cause=_causes(cause))
            return
        assert eng.release is not None, "a started engine has a release"
        now = self.env.now
        kill_rec = self.trace.emit(
            now, "kill", engine=eng.name, inflight=sorted(m.id for m in eng.inflight.values()), cause=_causes(cause)
        )
        self.broker.leave(eng, kill_rec, eng.release.endpoints)
        eng.state = STOPPED
        self._count(eng.release, -1)
        eng.generation += 1  # workers of the old generation never resume
        for p in eng.procs:
            if p.is_alive:
                p.interrupt("kill")
        eng.procs = []
        eng.wake = None
        inflight, eng.inflight = eng.inflight, {}
        if not self.broker.ack_after:  # acknowledged before dispatch: the broker has forgotten them
            for slot in sorted(inflight):
                msg = inflight[slot]
                self.trace.emit(now, "lost", engine=eng.name, msg=msg.id, cause=[kill_rec, msg.send_rec])
        self.broker.close(eng, kill_rec)  # the rest was unacked: back to its place in its queue
        if eng.stopped_event is not None and not eng.stopped_event.triggered:
            eng.stopped_event.succeed()

    def reads_at_end(self) -> list[dict[str, str]]:
        """Where the releases that count at the end read each field: those of the engines running
        at the end, or every engine's last release if none runs."""
        running = [e.release for e in self.engines.values() if e.state != STOPPED and e.release]
        releases = running or [e.release for e in self.engines.values() if e.release]
        return [rel.read for rel in releases]

    # -------------------------------------------------------------- workers
    def _worker(self, eng: Engine, rel: Release, slot: int, generation: int):
        env, trace, emit = self.env, self.trace, self.trace.emit
        ack = self.broker.ack
        ack_after = self.broker.ack_after
        handlers = self.handlers
        backlog = eng.backlog
        outcomes = eng.outcomes
        try:
            while eng.state == RUNNING and eng.generation == generation:
                backlog = eng.backlog
                if not backlog:
                    if eng.wake is None:
                        eng.wake = env.event()
                    yield eng.wake
                    continue
                # a prefetched message does not expire (RabbitMQ's TTL applies in the queue only):
                # a late call is handled, and its caller may have given up (recorded as ``late``)
                msg = backlog.popleft()
                msg.taken = True
                if not ack_after:
                    ack(msg)  # oslo.messaging's RPC server acknowledges here, before dispatching
                eng.inflight[slot] = msg
                now = env.now
                recv = trace.recv(now, engine=eng.name, msg=msg.id, wait=now - msg.enqueued, cause=[msg.send_rec])
                # dispatch is pure: cache its outcome per kind of message, for this start of the engine
                version = msg.version
                assert version is not None, "every message a sender publishes carries its version"
                key = (msg.method, version, msg.args, msg.namespace)
                outcome = outcomes.get(key)
                if outcome is None:
                    outcome = outcomes[key] = dispatch(rel.endpoints, *key)
                if outcome is not Outcome.HANDLED:
                    del eng.inflight[slot]
                    if ack_after:
                        ack(msg)
                    emit(
                        now,
                        "reject",
                        engine=eng.name,
                        msg=msg.id,
                        error=outcome.value,
                        method=msg.method,
                        version=str(msg.version),
                        call=msg.call,
                        cause=[recv, msg.send_rec],
                    )
                    continue
                handler = handlers.get(msg.method)
                snapshot = None
                ok = True
                if handler is not None and (handler.read or handler.write):
                    ok, snapshot = self._reads(eng, rel, handler, msg, recv)
                if ok:
                    yield env.timeout(rel.service_time)
                    if handler is not None:
                        self._writes_and_casts(eng, rel, handler, msg, snapshot)
                del eng.inflight[slot]
                if ack_after:
                    ack(msg)
                trace.done(env.now, engine=eng.name, msg=msg.id, ok=ok)
                if msg.deadline is not None and env.now > msg.deadline:
                    # the caller timed out before the reply: the work was done for nobody
                    emit(env.now, "late", engine=eng.name, msg=msg.id, deadline=msg.deadline, cause=[msg.send_rec])
        except simpy.Interrupt:
            return
        if eng.state == STOPPING and eng.generation == generation and not eng.inflight:
            if not any(p.is_alive and p is not env.active_process for p in eng.procs):
                self._stopped(eng, rel)

    def _reads(
        self, eng: Engine, rel: Release, handler: HandlerSpec, msg: Message, recv: int
    ) -> tuple[bool, dict[str, Any] | None]:
        """Reads at the start of handling; returns (ok, row snapshot for row-style updates)."""
        now, emit, row = self.env.now, self.trace.emit, msg.row
        columns, values = self.db.columns, self.db.values
        snapshot: dict[str, Any] | None = None
        for fld in handler.read:
            loc = rel.read.get(fld)
            if loc is None:
                continue
            if loc not in columns:
                emit(now, "schema_error", engine=eng.name, msg=msg.id, op="read", locs=[loc], cause=[recv])
                return False, None
            value, src = values.get(loc, {}).get(row, (None, None))
            self.trace.read(
                now,
                engine=eng.name,
                msg=msg.id,
                field=fld,
                row=row,
                loc=loc,
                value=value,
                cause=[recv] if src is None else [recv, src],
            )
        if rel.update_row and handler.write:
            snapshot = {}
            for fld in handler.write:
                for loc in rel.write.get(fld, ()):
                    for col in rel.known_columns.get(loc.split(".")[0], ()):
                        if col in columns and col not in snapshot:
                            snapshot[col] = values.get(col, {}).get(row, (None, None))[0]
        return True, snapshot

    def _writes_and_casts(
        self, eng: Engine, rel: Release, handler: HandlerSpec, msg: Message, snapshot: dict[str, Any] | None
    ) -> None:
        now, emit, row, db = self.env.now, self.trace.emit, msg.row, self.db
        written: set[str] = set()
        for fld in handler.write:
            locs = rel.write.get(fld)
            if not locs:
                continue
            missing = db.missing(locs)
            if missing:
                emit(now, "schema_error", engine=eng.name, msg=msg.id, op="write", locs=missing)
                continue
            value = f"v{self._next_value}"
            self._next_value += 1
            rec = self.trace.count
            fired: list[str] = []
            for loc in locs:
                fired += db.write(loc, row, value, rec)
                written.add(loc)
            self.trace.write(
                now, engine=eng.name, msg=msg.id, field=fld, row=row, value=value, locs=list(locs), trig=fired
            )
        if snapshot:
            stale = {c: v for c, v in snapshot.items() if c not in written and c in db.columns}
            if stale:
                rec = self.trace.count
                for c, v in stale.items():
                    db.write(c, row, v, rec)
                emit(now, "rewrite", engine=eng.name, msg=msg.id, row=row, cols=stale)
        if handler.depth is not None and msg.hop >= handler.depth:
            return
        rng, hop = self.chooser.rng, msg.hop + 1
        for method, n in handler.cast.items():
            for _ in range(n):
                self.send(eng.name, rel, eng.cap, method, rng.randrange(self.rows), call=False, hop=hop)
        for method in handler.fanout:
            for other in self.engines.values():
                if other.state == RUNNING:
                    self.send(eng.name, rel, eng.cap, method, row, call=False, queue=other.server_queue, hop=hop)


__all__ = ["Cluster", "Engine", "Release", "RUNNING", "STOPPED", "STOPPING"]
