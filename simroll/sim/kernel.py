"""The discrete-event model: engines, a message bus and a shared database, in SimPy.

One :class:`Simulation` runs one scenario once. Order of events at the same
simulated instant is SimPy's: first scheduled, first run. Every other decision
(which idle consumer takes a message, extra delays) goes through the
:class:`~simroll.sim.chooser.Chooser`; option 0 is the documented default.

Records written to the trace (see :mod:`simroll.sim.trace`) are the only output;
the invariants read them.
"""

from __future__ import annotations

import functools
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import simpy
from simpy.events import Event

from simroll.sim.chooser import Chooser
from simroll.scenario.rpc import Endpoint, Outcome, SendRule, Signature, accepts_version, choose_send_rule, dispatch
from simroll.scenario.spec import BackfillSpec, ReleaseSpec, Scenario, StepSpec, TriggerSpec
from simroll.scenario.versions import Version
from simroll.sim.trace import Trace

_DELAY_LEVELS = 8  # a delay choice takes k/8 of its bound, k in 0..8


@functools.lru_cache(maxsize=None)
def _text(v: Version) -> str:
    """A version as the trace writes it; cached, as every send writes one."""
    return str(v)


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
    def compile(cls, name: str, spec: ReleaseSpec) -> "Release":
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


# ------------------------------------------------------------------ messages and queues
@dataclass(slots=True, eq=False)
class Message:
    id: int
    method: str
    version: Version
    args: frozenset[str]
    namespace: str | None
    row: int
    call: bool
    sender: str
    send_rec: int
    hop: int = 0
    queue: "_Queue | None" = None  # the queue it was published to (requeues go back there)
    enqueued: float = 0.0
    expires: float | None = None
    taken: bool = False
    expired: bool = False


class _Queue:
    """A broker queue: messages held while no consumer may take them."""

    __slots__ = ("name", "held", "owner")

    def __init__(self, name: str, owner: "_Engine | None" = None):
        self.name = name
        self.held: deque[Message] = deque()
        self.owner = owner  # the engine of a per-server queue; None for the topic queue


# ------------------------------------------------------------------ engines
_STOPPED, _RUNNING, _STOPPING = "stopped", "running", "stopping"


@dataclass(slots=True, eq=False)
class _Engine:
    name: str
    index: int
    release: Release | None = None
    state: str = _STOPPED
    generation: int = 0
    procs: list[Any] = field(default_factory=list)
    backlog: deque[Message] = field(default_factory=deque)  # delivered (prefetched), not yet taken
    inflight: dict[int, Message] = field(default_factory=dict)  # worker slot -> message being handled
    wake: Event | None = None  # idle workers wait on this
    cap: Version | None = None
    accepts: dict[Version, bool] = field(default_factory=dict)
    outcomes: dict[tuple[str, Version, frozenset[str], str | None], Outcome] = field(default_factory=dict)
    stopped_event: Event | None = None
    server_queue: _Queue | None = None


# ------------------------------------------------------------------ the simulation
class Simulation:
    """One run of one scenario. Build it, call :meth:`run`, read the trace."""

    def __init__(self, scenario: Scenario, chooser: Chooser, trace: Trace):
        self.scenario = scenario
        self.chooser = chooser
        self.trace = trace
        self.env = simpy.Environment()
        self.releases = {n: Release.compile(n, r) for n, r in scenario.releases.items()}
        bus = scenario.bus
        self.version_routed = bus.delivery == "version-routed"
        self.ack_on_complete = bus.ack == "on-complete"
        self.latency = bus.latency
        self.max_delay = bus.max_delay
        self.call_timeout = bus.call_timeout
        self.topic = _Queue(bus.topic)
        self.consumers: list[_Engine] = []  # running engines consuming the topic, in the order they started
        self.rr = 0  # the broker's round-robin position
        # version-routed bus: the consumers of each version, in consumer order; rebuilt when consumers change
        self.routed: dict[Version, list[_Engine]] = {}
        self.engines: dict[str, _Engine] = {}
        for i, e in enumerate(scenario.engine_list()):
            eng = _Engine(name=e.name, index=i)
            eng.server_queue = _Queue(f"{bus.topic}.{e.name}", eng)
            self.engines[e.name] = eng
        self._initial = {e.name: e.release for e in scenario.engine_list()}
        self.handlers = scenario.workload.handlers
        self.rows = scenario.database.rows
        # database: existing columns and tables, values per location and row
        self.columns: set[str] = set()
        self.tables: set[str] = set()
        for t, cols in scenario.database.tables.items():
            self.tables.add(t)
            for c in cols:
                self.columns.add(f"{t}.{c}")
        self.values: dict[str, dict[int, tuple[Any, int]]] = {}
        self.triggers: dict[str, list[str]] = {}
        for trig in scenario.database.triggers:
            self._set_trigger(trig, True)
        self.cap_override: Version | str | None = None
        self.cap_overridden = False
        self.client: Release = self.releases[scenario.workload.client or self._initial_release_name()]
        self.client_cap: Version | None = None
        self._next_msg = 0
        self._next_value = 0
        self._step_faults: dict[int, list[str]] = {}
        for f in scenario.faults:
            if f.at_step is not None:
                self._step_faults.setdefault(f.at_step, []).append(f.kill)
        self.end_reason = "quiescent"
        self.last_stop: dict[str, tuple[int, Release]] = {}  # engine -> its last stop or kill record, release

    def _initial_release_name(self) -> str:
        return next(iter(self._initial.values()))

    # -------------------------------------------------------------- run
    def run(self) -> None:
        """Run to quiescence (nothing left to happen) or to a limit."""
        env, trace = self.env, self.trace
        limits = self.scenario.limits
        trace.emit(0.0, "begin", scenario=self.scenario.name, delivery=self.scenario.bus.delivery)
        self._init_data()
        for name, rel in self._initial.items():
            self._start(self.engines[name], self.releases[rel], cause=None)
        self.client_cap = self._resolve_cap(self.client.cap)
        env.process(self._workload())
        env.process(self._operator())
        for f in self.scenario.faults:
            if f.at is not None:
                env.process(self._fault_at(f.at, f.kill))
        max_time, max_events = limits.max_time, limits.max_events
        queue = env._queue  # SimPy's heap of (time, priority, id, event)
        step = env.step
        while queue:
            if queue[0][0] > max_time:
                self.end_reason = f"limit: simulated time reached max_time={max_time:g} s"
                break
            if trace.count > max_events:
                self.end_reason = f"limit: trace reached max_events={max_events} events"
                break
            step()
        self._finish()

    def _finish(self) -> None:
        now = self.env.now
        emit = self.trace.emit
        if self.end_reason != "quiescent":  # a partial run: what is queued now may still be taken later
            emit(now, "end", reason=self.end_reason, points=self.chooser.points)
            return
        leftovers: list[tuple[Message, str]] = []
        for q in [self.topic] + [e.server_queue for e in self.engines.values()]:
            leftovers += [(m, q.name) for m in q.held]  # type: ignore[union-attr]
        for eng in self.engines.values():
            leftovers += [(m, f"backlog@{eng.name}") for m in eng.backlog]
            leftovers += [(m, f"in-flight@{eng.name}") for m in eng.inflight.values()]
        leftovers.sort(key=lambda x: x[0].id)
        for m, where in leftovers:
            if where.startswith("in-flight") or not m.taken and not self._expired(m):
                emit(now, "left", msg=m.id, queue=where, version=str(m.version),
                     cause=[m.send_rec] + self._last_stops_accepting(m))
        for fld, loc in self._canonical():
            col = self.values.get(loc, {}) if loc in self.columns else {}
            emit(now, "final", field=fld, loc=loc, exists=loc in self.columns,
                 values=[col.get(r, (None, None))[0] for r in range(self.rows)])
        emit(now, "end", reason=self.end_reason, points=self.chooser.points)

    def _last_stops_accepting(self, m: Message) -> list[int]:
        """The stop or kill of the last engine that could have taken ``m``."""
        best: int | None = None
        q = m.queue
        for eng in self.engines.values():
            if q is not None and q.owner is not None and q.owner is not eng:
                continue
            last = self.last_stop.get(eng.name)
            if last is not None and accepts_version(last[1].endpoints, m.version):
                best = last[0] if best is None else max(best, last[0])
        return [] if best is None else [best]

    def _canonical(self) -> list[tuple[str, str]]:
        """(field, location) pairs that must hold the latest value at the end: where the engines
        running at the end read each field (every engine's last release if none runs), and the
        scenario's declared canonical locations."""
        running = [e.release for e in self.engines.values() if e.state != _STOPPED and e.release]
        releases = running or [e.release for e in self.engines.values() if e.release]
        out = {(f, loc) for rel in releases for f, loc in rel.read.items()}  # type: ignore[union-attr]
        out.update(self.scenario.database.canonical.items())
        return sorted(out)

    # -------------------------------------------------------------- database
    def _init_data(self) -> None:
        rel = self.releases[self._initial_release_name()]
        declared = self.scenario.database.initial
        for fld in sorted(set(rel.write) | set(declared)):
            locs = [loc for loc in declared.get(fld, rel.write.get(fld, ())) if loc in self.columns]
            rec = self.trace.emit(0.0, "init", field=fld, locs=locs, rows=self.rows)
            for loc in locs:
                self.values[loc] = {r: (f"init{r}", rec) for r in range(self.rows)}

    def _set_trigger(self, trig: TriggerSpec, enabled: bool) -> None:
        targets = self.triggers.setdefault(trig.from_, [])
        if enabled and trig.to not in targets:
            targets.append(trig.to)
        elif not enabled and trig.to in targets:
            targets.remove(trig.to)

    def _db_write(self, loc: str, row: int, value: Any, rec: int) -> list[str]:
        """Write one cell and fire triggers; returns the trigger targets written."""
        self.values.setdefault(loc, {})[row] = (value, rec)
        fired = []
        for to in self.triggers.get(loc, ()):
            if to in self.columns:
                self.values.setdefault(to, {})[row] = (value, rec)
                fired.append(to)
        return fired

    def _missing(self, locs) -> list[str]:
        cols = self.columns
        return [loc for loc in locs if loc not in cols]

    # -------------------------------------------------------------- caps and sending
    def _resolve_cap(self, cap: Version | str | None) -> Version | None:
        if self.cap_overridden:
            cap = self.cap_override
        if cap == "auto":
            running = [e.release.implemented for e in self.engines.values() if e.state != _STOPPED and e.release]
            return min(running) if running else None
        return cap  # type: ignore[return-value]

    def _send(self, sender: str, rel: Release, cap: Version | None, method: str, row: int,
              call: bool, queue: _Queue | None = None, hop: int = 0) -> None:
        now = self.env.now
        rules = rel.send_rules.get(method)
        if not rules:
            self.trace.emit(now, "send_error", engine=sender, method=method, error=f"release {rel.name} has no {method}")
            return
        rule = choose_send_rule(rules, cap)
        if rule is None:
            self.trace.emit(now, "send_error", engine=sender, method=method, error=f"RPCVersionCapError (cap {cap})")
            return
        mid = self._next_msg
        self._next_msg = mid + 1
        q = queue if queue is not None else self.topic
        rec = self.trace.send(now, engine=sender, msg=mid, method=method, version=_text(rule.version),
                              queue=q.name, call=call, row=row)
        msg = Message(mid, method, rule.version, rule.args, rule.namespace, row, call, sender, rec, hop)
        delay = self.latency
        if self.max_delay > 0:
            level = self.chooser.pick("delay", _DELAY_LEVELS + 1)
            if level:  # a pinned deviation from the default: say so in the trace
                extra = self.max_delay * level / _DELAY_LEVELS
                delay += extra
                self.trace.emit(now, "choice", at=self.chooser.counts["delay"] - 1, what="delay", msg=mid, delay=extra)
        if call:
            msg.expires = now + self.call_timeout
        if delay > 0:
            self.env.timeout(delay).callbacks.append(lambda _ev, m=msg, q=q: self._arrive(m, q))
        else:
            self._arrive(msg, q)

    def _arrive(self, msg: Message, q: _Queue) -> None:
        """The broker receives ``msg`` on ``q`` and pushes it to a consumer, or holds it.

        Like RabbitMQ with oslo.messaging's default unlimited prefetch, a topic message is
        pushed at once to the next consumer in round-robin order (busy or not) and waits in
        that engine's backlog; under version routing only engines that listen for its version
        are consumers of it. A per-server message goes to its engine while it runs.
        """
        msg.queue = q
        msg.enqueued = self.env.now
        if q.owner is not None:
            eng = q.owner
            if eng.state == _RUNNING:
                self._deliver(eng, msg)
            else:
                q.held.append(msg)
            return
        consumers = self.consumers
        if self.version_routed:
            routed = self.routed.get(msg.version)
            if routed is None:
                routed = self.routed[msg.version] = [e for e in consumers if self._accepts(e, msg.version)]
            consumers = routed
        n = len(consumers)
        if n == 0:
            q.held.append(msg)
            return
        k = self.rr
        self.rr = k + 1
        if n > 1:
            p = self.chooser.pick("consumer", n)
            if p:
                self.trace.emit(self.env.now, "choice", at=self.chooser.counts["consumer"] - 1, what="consumer", msg=msg.id,
                                to=consumers[(k + p) % n].name, default=consumers[k % n].name)
                k += p
        self._deliver(consumers[k % n], msg)

    def _deliver(self, eng: _Engine, msg: Message) -> None:
        eng.backlog.append(msg)
        if eng.wake is not None:
            ev, eng.wake = eng.wake, None
            ev.succeed()

    def _expired(self, msg: Message) -> bool:
        """Has ``msg`` expired? Like RabbitMQ, an expired call is noticed when it would be handed
        out (or at the end of the run), and discarded then; the record says when it expired."""
        if msg.expired:
            return True
        if msg.expires is None or self.env.now <= msg.expires:
            return False
        msg.expired = True
        self.trace.emit(self.env.now, "expire", msg=msg.id, queue=msg.queue.name,  # type: ignore[union-attr]
                        expired_at=msg.expires, cause=[msg.send_rec] + self._last_stops_accepting(msg))
        return True

    def _accepts(self, eng: _Engine, version: Version) -> bool:
        ok = eng.accepts.get(version)
        if ok is None:
            ok = eng.accepts[version] = accepts_version(eng.release.endpoints, version)  # type: ignore[union-attr]
        return ok

    def _requeue_backlog(self, eng: _Engine, cause: int) -> None:
        """Prefetched but unacknowledged messages go back to their queues (the broker's rule)."""
        backlog, eng.backlog = eng.backlog, deque()
        for msg in backlog:
            if self._expired(msg):
                continue
            self.trace.emit(self.env.now, "requeue", engine=eng.name, msg=msg.id, cause=[cause, msg.send_rec])
            self._arrive(msg, msg.queue)  # type: ignore[arg-type]

    # -------------------------------------------------------------- engines
    def _start(self, eng: _Engine, rel: Release, cause: int | None) -> None:
        if eng.state != _STOPPED:
            self.trace.emit(self.env.now, "noop", engine=eng.name, why=f"start: engine is {eng.state}",
                            cause=[] if cause is None else [cause])
            return
        eng.release = rel
        eng.state = _RUNNING
        eng.generation += 1
        eng.accepts = {}
        eng.outcomes = {}
        eng.stopped_event = self.env.event()
        eng.cap = self._resolve_cap(rel.cap)
        self.trace.emit(self.env.now, "start", engine=eng.name, release=rel.name, workers=rel.workers,
                        cap=None if eng.cap is None else str(eng.cap), cause=[] if cause is None else [cause])
        eng.procs = [self.env.process(self._worker(eng, slot, eng.generation)) for slot in range(rel.workers)]
        self.consumers.append(eng)
        self.routed.clear()
        # a new consumer gets what its queues hold (with unlimited prefetch, all of it)
        own, eng.server_queue.held = eng.server_queue.held, deque()  # type: ignore[union-attr]
        for msg in own:
            self._deliver(eng, msg)
        held = self.topic.held
        if held:
            keep: deque[Message] = deque()
            for msg in held:
                if self._expired(msg):
                    continue
                if not self.version_routed or self._accepts(eng, msg.version):
                    self._deliver(eng, msg)
                else:
                    keep.append(msg)
            self.topic.held = keep

    def _leave(self, eng: _Engine) -> None:
        if eng in self.consumers:
            self.consumers.remove(eng)
            self.routed.clear()

    def _stop(self, eng: _Engine, cause: int | None = None) -> Event | None:
        """Graceful stop: take nothing new, finish in-flight work. Returns the stopped event."""
        if eng.state != _RUNNING:
            self.trace.emit(self.env.now, "noop", engine=eng.name, why=f"stop: engine is {eng.state}",
                            cause=[] if cause is None else [cause])
            return None
        eng.state = _STOPPING
        rec = self.trace.emit(self.env.now, "stop", engine=eng.name, inflight=sorted(m.id for m in eng.inflight.values()),
                              cause=[] if cause is None else [cause])
        self.last_stop[eng.name] = (rec, eng.release)  # type: ignore[assignment]
        self._leave(eng)
        self._requeue_backlog(eng, rec)
        if eng.wake is not None:
            ev, eng.wake = eng.wake, None
            ev.succeed()
        if not eng.inflight and not any(p.is_alive for p in eng.procs):
            self._stopped(eng)
        return eng.stopped_event

    def _stopped(self, eng: _Engine) -> None:
        eng.state = _STOPPED
        self.trace.emit(self.env.now, "stopped", engine=eng.name, release=eng.release.name)  # type: ignore[union-attr]
        if eng.stopped_event is not None and not eng.stopped_event.triggered:
            eng.stopped_event.succeed()

    def _kill(self, eng: _Engine, cause: int | None = None) -> None:
        if eng.state == _STOPPED:
            self.trace.emit(self.env.now, "noop", engine=eng.name, why="kill: engine is stopped",
                            cause=[] if cause is None else [cause])
            return
        now = self.env.now
        kill_rec = self.trace.emit(now, "kill", engine=eng.name, inflight=sorted(m.id for m in eng.inflight.values()),
                                   cause=[] if cause is None else [cause])
        self.last_stop[eng.name] = (kill_rec, eng.release)  # type: ignore[assignment]
        self._leave(eng)
        eng.state = _STOPPED
        eng.generation += 1  # workers of the old generation never resume
        for p in eng.procs:
            if p.is_alive:
                p.interrupt("kill")
        eng.procs = []
        eng.wake = None
        inflight, eng.inflight = eng.inflight, {}
        for slot in sorted(inflight):
            msg = inflight[slot]
            if self.ack_on_complete:
                self.trace.emit(now, "requeue", engine=eng.name, msg=msg.id, cause=[kill_rec, msg.send_rec])
                msg.taken = False
                self._arrive(msg, msg.queue)  # type: ignore[arg-type]
            else:
                self.trace.emit(now, "lost", engine=eng.name, msg=msg.id, cause=[kill_rec, msg.send_rec])
        self._requeue_backlog(eng, kill_rec)
        if eng.stopped_event is not None and not eng.stopped_event.triggered:
            eng.stopped_event.succeed()

    def _worker(self, eng: _Engine, slot: int, generation: int):
        env, trace, emit = self.env, self.trace, self.trace.emit
        rel: Release = eng.release  # type: ignore[assignment]
        handlers = self.handlers
        backlog = eng.backlog
        outcomes = eng.outcomes
        try:
            while eng.state == _RUNNING and eng.generation == generation:
                backlog = eng.backlog
                msg = None
                while backlog:
                    m = backlog.popleft()
                    if m.expires is None or not self._expired(m):
                        msg = m
                        break
                if msg is None:
                    if eng.wake is None:
                        eng.wake = env.event()
                    yield eng.wake
                    continue
                msg.taken = True  # oslo.messaging acknowledges here, before dispatching
                eng.inflight[slot] = msg
                now = env.now
                recv = trace.recv(now, engine=eng.name, msg=msg.id, wait=now - msg.enqueued, cause=[msg.send_rec])
                # dispatch is pure: cache its outcome per kind of message, for this start of the engine
                key = (msg.method, msg.version, msg.args, msg.namespace)
                outcome = outcomes.get(key)
                if outcome is None:
                    outcome = outcomes[key] = dispatch(rel.endpoints, *key)
                if outcome is not Outcome.HANDLED:
                    del eng.inflight[slot]
                    emit(now, "reject", engine=eng.name, msg=msg.id, error=outcome.value, method=msg.method,
                         version=str(msg.version), call=msg.call, cause=[recv, msg.send_rec])
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
                trace.done(env.now, engine=eng.name, msg=msg.id, ok=ok)
        except simpy.Interrupt:
            return
        if eng.state == _STOPPING and eng.generation == generation and not eng.inflight:
            if not any(p.is_alive and p is not env.active_process for p in eng.procs):
                self._stopped(eng)

    def _reads(self, eng: _Engine, rel: Release, handler, msg: Message, recv: int):
        """Reads at the start of handling; returns (ok, row snapshot for row-style updates)."""
        now, emit, row = self.env.now, self.trace.emit, msg.row
        snapshot: dict[str, Any] | None = None
        for fld in handler.read:
            loc = rel.read.get(fld)
            if loc is None:
                continue
            if loc not in self.columns:
                emit(now, "schema_error", engine=eng.name, msg=msg.id, op="read", locs=[loc], cause=[recv])
                return False, None
            value, src = self.values.get(loc, {}).get(row, (None, None))
            self.trace.read(now, engine=eng.name, msg=msg.id, field=fld, row=row, loc=loc, value=value,
                            cause=[recv] if src is None else [recv, src])
        if rel.update_row and handler.write:
            snapshot = {}
            for fld in handler.write:
                for loc in rel.write.get(fld, ()):
                    for col in rel.known_columns.get(loc.split(".")[0], ()):
                        if col in self.columns and col not in snapshot:
                            snapshot[col] = self.values.get(col, {}).get(row, (None, None))[0]
        return True, snapshot

    def _writes_and_casts(self, eng: _Engine, rel: Release, handler, msg: Message, snapshot) -> None:
        now, emit, row = self.env.now, self.trace.emit, msg.row
        written: set[str] = set()
        for fld in handler.write:
            locs = rel.write.get(fld)
            if not locs:
                continue
            missing = self._missing(locs)
            if missing:
                emit(now, "schema_error", engine=eng.name, msg=msg.id, op="write", locs=missing)
                continue
            value = f"v{self._next_value}"
            self._next_value += 1
            rec = self.trace.count
            fired: list[str] = []
            for loc in locs:
                fired += self._db_write(loc, row, value, rec)
                written.add(loc)
            self.trace.write(now, engine=eng.name, msg=msg.id, field=fld, row=row, value=value, locs=list(locs),
                             trig=fired)
        if snapshot:
            stale = {c: v for c, v in snapshot.items() if c not in written and c in self.columns}
            if stale:
                rec = self.trace.count
                for c, v in stale.items():
                    self._db_write(c, row, v, rec)
                emit(now, "rewrite", engine=eng.name, msg=msg.id, row=row, cols=stale)
        if handler.depth is not None and msg.hop >= handler.depth:
            return
        rng, hop = self.chooser.rng, msg.hop + 1
        for method, n in handler.cast.items():
            for _ in range(n):
                self._send(eng.name, rel, eng.cap, method, rng.randrange(self.rows), call=False, hop=hop)
        for method in handler.fanout:
            for other in self.engines.values():
                if other.state == _RUNNING:
                    self._send(eng.name, rel, eng.cap, method, row, call=False, queue=other.server_queue, hop=hop)

    # -------------------------------------------------------------- workload, operator, faults
    def _workload(self):
        wl = self.scenario.workload
        env, rng = self.env, self.chooser.rng
        methods = list(wl.operations)
        weights = [wl.operations[m] for m in methods]
        total = sum(weights)
        single = len(methods) == 1
        call = wl.kind == "call"
        rate, stop, poisson = wl.rate, wl.stop, wl.arrivals == "poisson"
        gap = 1.0 / rate
        if wl.start > 0:
            yield env.timeout(wl.start)
        while True:
            d = round(rng.expovariate(rate), 6) if poisson else gap
            if env.now + d >= stop:
                return
            yield env.timeout(d)
            if single:
                method = methods[0]
            else:
                x, acc, method = rng.random() * total, 0.0, methods[-1]
                for m, w in zip(methods, weights):
                    acc += w
                    if x < acc:
                        method = m
                        break
            self._send("client", self.client, self.client_cap, method, rng.randrange(self.rows), call=call)

    def _fault_at(self, at: float, engine: str):
        yield self.env.timeout(at)
        rec = self.trace.emit(self.env.now, "fault", action="kill", engine=engine)
        self._kill(self.engines[engine], rec)

    def _operator(self):
        env, emit = self.env, self.trace.emit
        for i, step in enumerate(self.scenario.plan):
            if step.after > 0:
                yield env.timeout(step.after)
            rec = emit(env.now, "step", index=i, action=step.action, detail=_step_detail(step))
            for name in self._step_faults.get(i, ()):
                fault = emit(env.now, "fault", action="kill", engine=name, cause=[rec])
                self._kill(self.engines[name], fault)
            yield from self._do_step(step, rec)
        emit(env.now, "plan_done")

    def _do_step(self, step: StepSpec, rec: int):
        env, a = self.env, step.action
        if a == "wait":
            yield env.timeout(step.wait)
        elif a in ("stop", "restart") and not (a == "restart" and step.how == "kill"):
            eng = self.engines[step.stop or step.restart]  # type: ignore[index]
            ev = self._stop(eng, rec)
            if ev is not None:
                yield ev
            if a == "restart":
                self._start(eng, self.releases[step.release], rec)  # type: ignore[index]
        elif a in ("kill", "restart"):
            eng = self.engines[step.kill or step.restart]  # type: ignore[index]
            self._kill(eng, rec)
            if a == "restart":
                self._start(eng, self.releases[step.release], rec)  # type: ignore[index]
        elif a == "start":
            self._start(self.engines[step.start], self.releases[step.release], rec)  # type: ignore[index]
        elif a == "expand":
            for item in step.expand:  # type: ignore[union-attr]
                if "." in item:
                    self.tables.add(item.split(".")[0])
                    self.columns.add(item)
                else:
                    self.tables.add(item)
        elif a == "contract":
            for item in step.contract:  # type: ignore[union-attr]
                drop = [c for c in self.columns if c == item or c.split(".")[0] == item]
                for c in sorted(drop):
                    self.columns.discard(c)
                    self.values.pop(c, None)
                if "." not in item:
                    self.tables.discard(item)
        elif a == "backfill":
            yield from self._backfill(step.backfill, rec)  # type: ignore[arg-type]
        elif a == "set_cap":
            self.cap_overridden = True
            self.cap_override = None if step.set_cap == "none" else (
                "auto" if step.set_cap == "auto" else Version.parse(step.set_cap))  # type: ignore[arg-type]
            for eng in self.engines.values():
                if eng.state != _STOPPED:
                    eng.cap = self._resolve_cap(eng.release.cap)  # type: ignore[union-attr]
            self.client_cap = self._resolve_cap(self.client.cap)
            self.trace.emit(env.now, "caps", caps={e.name: None if e.cap is None else str(e.cap)
                                                    for e in self.engines.values() if e.state != _STOPPED},
                            client=None if self.client_cap is None else str(self.client_cap))
        elif a in ("enable_trigger", "disable_trigger"):
            self._set_trigger(step.enable_trigger or step.disable_trigger, a == "enable_trigger")  # type: ignore[arg-type]
        elif a == "set_client":
            self.client = self.releases[step.set_client]  # type: ignore[index]
            self.client_cap = self._resolve_cap(self.client.cap)

    def _backfill(self, spec: BackfillSpec, step_rec: int):
        env, emit, chooser = self.env, self.trace.emit, self.chooser
        per_row = 1.0 / spec.rate
        for row in range(self.rows):
            yield env.timeout(per_row)
            missing = self._missing([spec.from_, spec.to])
            if missing:
                emit(env.now, "schema_error", engine="backfill", op="backfill", locs=missing, cause=[step_rec])
                return
            value, src = self.values.get(spec.from_, {}).get(row, (None, None))
            read = emit(env.now, "bf_read", engine="backfill", row=row, loc=spec.from_, value=value,
                        cause=[step_rec] if src is None else [step_rec, src])
            gap = spec.gap
            if spec.max_gap > 0:
                level = chooser.pick("backfill_gap", _DELAY_LEVELS + 1)
                if level:
                    gap += spec.max_gap * level / _DELAY_LEVELS
                    emit(env.now, "choice", at=chooser.counts["backfill_gap"] - 1, what="backfill_gap", row=row, gap=gap)
            if gap > 0:
                yield env.timeout(gap)
            if value is None or spec.to not in self.columns:
                continue
            if spec.guard == "if-empty" and self.values.get(spec.to, {}).get(row, (None, None))[0] is not None:
                continue
            if spec.guard == "if-unchanged" and (spec.from_ not in self.columns or
                                                 self.values.get(spec.from_, {}).get(row, (None, None))[0] != value):
                continue
            rec = self.trace.count
            fired = self._db_write(spec.to, row, value, rec)
            emit(env.now, "bf_write", engine="backfill", row=row, loc=spec.to, value=value, trig=fired, cause=[read])


def _step_detail(step: StepSpec) -> dict[str, Any]:
    d = step.model_dump(by_alias=True, exclude_defaults=True, exclude={"after"})
    return {k: d[k] for k in sorted(d)}


def simulate(scenario: Scenario, seed: int | None = None, pinned: dict[tuple[str, int], int] | None = None,
             trace: Trace | None = None) -> tuple[Simulation, Trace]:
    """Run ``scenario`` once; returns the finished simulation and its trace."""
    trace = trace if trace is not None else Trace()
    sim = Simulation(scenario, Chooser(scenario.seed if seed is None else seed, pinned), trace)
    sim.run()
    return sim, trace


__all__ = ["Simulation", "simulate", "Release"]
