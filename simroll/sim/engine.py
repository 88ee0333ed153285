"""The engines: compiled releases, and each engine's lifecycle (start, graceful stop, kill)
and workers, which take messages from the broker and read and write the database.

A :class:`Cluster` holds every engine of a run; engines consume from the
:class:`~simroll.sim.broker.Broker` and use the :class:`~simroll.sim.database.Database`.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import simpy
from simpy.events import Event, Process

from simroll.scenario.rpc import Endpoint, Outcome, SendRule, Signature, accepts_version, choose_send_rule, dispatch
from simroll.scenario.spec import DEFAULT_VHOST, HandlerSpec, ReleaseSpec, Scenario, StartupSpec
from simroll.scenario.versions import Version
from simroll.sim.broker import Broker, Message, Queue, Subscription, queue_name
from simroll.sim.chooser import Chooser
from simroll.sim.database import Database, Txn, WriteRefused
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
    read_sql: dict[str, str]  # field -> the release's own SELECT (a SQL backend); empty: derived
    write_sql: dict[str, str]  # field -> its own write statement(s)
    service_time: float
    workers: int
    vhost: str = DEFAULT_VHOST
    # field -> (the named values it knows, what it does with another: fail/ignore/default, the default)
    domains: dict[str, tuple[frozenset[str], str, str | None]] = field(default_factory=dict)
    on_start: StartupSpec | None = None  # start-up actions (issue 20)
    local: frozenset[str] = frozenset()  # fields it keeps a copy of on each engine (issue 20)
    computed: str = "at-start"  # when its auto cap is computed again (issue 15): at-start, on-sighup, live

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
            read_sql=dict(spec.sql.read) if spec.sql else {},
            write_sql=dict(spec.sql.write) if spec.sql else {},
            service_time=spec.service_time,
            workers=spec.workers,
            vhost=spec.vhost,
            domains={
                f: (frozenset(a.values), a.unknown, a.default) for f, a in spec.data.items() if a.values is not None
            },
            on_start=spec.on_start,
            local=frozenset(f for f, a in spec.data.items() if a.local and a.read),
            computed=spec.rpc.computed,
        )


# releases compiled once per release spec (a search runs copies of one scenario that share them):
# (name, id(spec)) -> (spec, its Release); the entry holds the spec, so the id is not reused meanwhile
_COMPILED: dict[tuple[str, int], tuple[ReleaseSpec, Release]] = {}
_COMPILED_MAX = 256


def _compiled(name: str, spec: ReleaseSpec) -> Release:
    """``Release.compile(name, spec)``, cached. A Release is frozen and nothing changes its tables."""
    held = _COMPILED.get((name, id(spec)))
    if held is not None and held[0] is spec:
        return held[1]
    if len(_COMPILED) >= _COMPILED_MAX:
        _COMPILED.clear()
    rel = Release.compile(name, spec)
    _COMPILED[(name, id(spec))] = (spec, rel)
    return rel


# ------------------------------------------------------------------ engines
STOPPED, RUNNING, STOPPING = "stopped", "running", "stopping"


@dataclass(slots=True, eq=False)
class Engine:
    """The state of one engine (a :class:`~simroll.sim.broker.Consumer` of the broker)."""

    name: str
    index: int
    service: str = ""  # the service it belongs to
    topic: str = ""  # that service's topic
    vhost: str = DEFAULT_VHOST  # the vhost of the release it runs (or will first run)
    server_queue: Queue = field(init=False)  # set by the cluster, which asks the broker for it
    release: Release | None = None  # None until it first starts
    state: str = STOPPED
    generation: int = 0
    procs: list[Process] = field(default_factory=list)
    backlog: deque[Message] = field(default_factory=deque)  # delivered (prefetched), not yet taken
    subs: list[Subscription] = field(default_factory=list)  # its consumers on the broker's queues
    inflight: dict[int, Message] = field(default_factory=dict)  # worker slot -> message being handled
    wake: Event | None = None  # idle workers wait on this
    cap: Version | None = None  # the cap of its sends to its own service
    # another service -> the cap of its sends there, resolved at its first send there after a start or set_cap
    caps: dict[str, Version | None] = field(default_factory=dict)
    accepts: dict[Version, bool] = field(default_factory=dict)
    outcomes: dict[tuple[str, Version, frozenset[str], str | None], Outcome] = field(default_factory=dict)
    stopped_event: Event | None = None
    member: bool = True  # False until an add step adds it, and after a remove step
    removed: bool = False  # a remove step took it out of the cluster for good
    config: dict[str, str] | None = None  # the config in force (None: its release declares no option)
    pending: dict[str, str] = field(default_factory=dict)  # set_config's values, in force from the next start
    # issue 20: its local copies, (field, row) -> (value, the record that put it there); they survive restarts
    local: dict[tuple[str, int], tuple[Any, int]] = field(default_factory=dict)
    provisioned: set[str] = field(default_factory=set)  # the fields its local copies were filled for

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


def _probe_draw() -> bool:
    """Does ``getrandbits(n.bit_length())``, drawn again while ``>= n``, give exactly the numbers
    ``random.Random.randrange(n)`` gives (CPython's ``_randbelow``)? Checked on this Python at import,
    on two seeds and a range of sizes; if not, the hot paths call ``randrange`` (same trace, a little slower)."""
    try:
        for seed in (0, 1):
            a, b = random.Random(seed), random.Random(seed)
            for n in (*range(1, 34), 100, 1000, 1_000_000):
                for _ in range(6):
                    k = n.bit_length()
                    r = b.getrandbits(k)
                    while r >= n:
                        r = b.getrandbits(k)
                    if a.randrange(n) != r:
                        return False
            if a.getstate() != b.getstate():
                return False
    except Exception:  # pragma: no cover - depends on the Python
        return False
    return True


INLINE_DRAW = _probe_draw()
"""Whether the engines draw a cast's row (``randrange(rows)``) inline; see :func:`_probe_draw`."""


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
        self.scenario = scenario
        self.releases = {n: _compiled(n, r) for n, r in scenario.releases.items()}
        # services and vhosts: a scenario that declares neither has one service (named after bus.topic)
        # on '/', and writes its records as it always did
        self.explicit = scenario.routing_explicit()
        self.services = list(scenario.service_map())
        self.engines: dict[str, Engine] = {}
        self.members: dict[str, list[Engine]] = {svc: [] for svc in self.services}  # service -> its engines
        default = scenario.default_service()
        for i, e in enumerate(scenario.engine_list()):
            svc = e.service or default
            eng = Engine(name=e.name, index=i, service=svc, topic=scenario.topic_of(svc))
            eng.vhost = self.releases[e.release].vhost
            eng.server_queue = broker.server_queue(eng)
            self.engines[e.name] = eng
            self.members[svc].append(eng)
        for e in scenario.added_engines():  # engines the plan adds: not members until their add step
            svc = e.service or default
            eng = Engine(name=e.name, index=len(self.engines), service=svc, topic=scenario.topic_of(svc))
            eng.vhost = self.releases[e.release].vhost
            eng.server_queue = broker.server_queue(eng)
            eng.member = False
            self.engines[e.name] = eng
            self.members[svc].append(eng)
        self.client_service = scenario.workload.service or default
        self.client_vhost = scenario.workload.vhost
        if self.explicit:
            broker.watch_vhosts(scenario.vhosts())
        self._routes: dict[tuple[str, str], tuple[str, str]] = {}  # (own service, name) -> (service, method)
        self._client_caps: dict[str, Version | None] = {}  # service -> the clients' cap (declared services)
        self._client_caps_of: tuple[Release, int] | None = None  # the client release and cap setting they are for
        self._cap_setting = 0  # counts set_cap steps
        self.handlers = scenario.workload.handlers
        # release -> its handlers: its own per method, the workload's for the rest (issue 15)
        self.handlers_of: dict[str, dict[str, HandlerSpec]] = {
            n: {**self.handlers, **r.handlers} if r.handlers else self.handlers for n, r in scenario.releases.items()
        }
        self.rows = scenario.database.rows
        self.cap_override: Version | str | None = None
        self.cap_overridden = False
        self._next_value = 0
        self._variants: dict[tuple[str, tuple[tuple[str, str], ...]], Release] = {}  # (release, config) -> compiled
        self.live_caps = any(r.rpc.computed == "live" and r.rpc.cap == "auto" for r in scenario.releases.values())
        self.claims: dict[int, tuple[int, int]] = {}  # request id -> (message, recv record) that recorded it
        self.txns: dict[int, Txn] = {}  # message -> the open transaction of its handling (transaction: true)
        # the named values some handler writes ('set'): only these can be unknown to a release's domain
        self.named = {v for hs in self.handlers_of.values() for h in hs.values() for v in h.set.values()}
        # service -> implemented version -> its engines started and not yet stopped: `cap: auto` is the
        # lowest key, kept up to date at each start and stop so that resolving a cap is O(releases), not O(engines)
        self._started: dict[str, dict[Version, int]] = {svc: {} for svc in self.services}
        # database.service_records: `_started` counts the versions registered in the service table instead
        # (an engine registers at its start; stopped or killed, its record stays until a remove)
        self.records = scenario.database.service_records
        self.cap_from: dict[tuple[str, str], str] = {}  # (sender, service) -> where its auto cap came from
        self._origin: str | None = None  # where the auto cap resolve_cap last computed came from

    def _register(self, eng: Engine, rel: Release) -> None:
        """``eng`` starts on ``rel``: its row of the service table (database.service_records)."""
        old = self.db.register(eng.name, eng.service, rel.name, rel.implemented)
        started = self._started[eng.service]
        if old is not None:
            started[old] -= 1
            if not started[old]:
                del started[old]
        started[rel.implemented] = started.get(rel.implemented, 0) + 1

    def _deregister(self, eng: Engine) -> bool:
        """``eng`` was removed: its row is deleted. Did it have one?"""
        old = self.db.deregister(eng.name)
        if old is None:
            return False
        started = self._started[eng.service]
        started[old] -= 1
        if not started[old]:
            del started[old]
        return True

    def _records_origin(self, service: str, low: Version) -> str:
        """Where an auto cap ``low`` for ``service`` comes from: the records that hold it down."""
        self.trace.meter.work += len(self.db.service_table)
        who = sorted(
            f"{name} ({row[1]}, {row[3]})"
            for name, row in self.db.service_table.items()
            if row[0] == service and row[2] == low
        )
        more = f" and {len(who) - 3} more" if len(who) > 3 else ""
        return f"from the service records: {low} registered by {', '.join(who[:3])}{more}"

    def resolve_for(self, who: str, cap: Version | str | None, service: str | None = None) -> Version | None:
        """:meth:`resolve_cap` for the sends of ``who`` (an engine, or ``client``); with service records
        it keeps where an auto cap came from, which a refused send names."""
        if not self.records:
            return self.resolve_cap(cap, service)
        self._origin = None
        v = self.resolve_cap(cap, service)
        key = (who, self.client_service if service is None else service)
        if self._origin is None:
            self.cap_from.pop(key, None)
        else:
            self.cap_from[key] = self._origin
        return v

    def _count(self, eng: Engine, rel: Release, delta: int) -> None:
        started = self._started[eng.service]
        n = started.get(rel.implemented, 0) + delta
        if n:
            started[rel.implemented] = n
        else:
            del started[rel.implemented]

    # -------------------------------------------------------------- caps and sending
    def resolve_cap(self, cap: Version | str | None, service: str | None = None) -> Version | None:
        """The version cap in force for sends to ``service`` (default: the clients') by a release whose
        own cap is ``cap`` (see ``set_cap``); ``auto`` is the lowest version the running engines of that
        service implement (Nova's ``upgrade_levels compute=auto``, per service).

        ``set_cap`` changes the pin of the releases that have one (``upgrade_levels`` is a setting
        of releases that support it); a release that declares no cap stays unpinned."""
        if self.cap_overridden and cap is not None:
            cap = self.cap_override
        if cap == "auto":
            svc = self.client_service if service is None else service
            started = self._started[svc]
            if not started:
                return None
            low = min(started)
            if self.records:
                self._origin = self._records_origin(svc, low)
            return low
        assert not isinstance(cap, str), "the only named cap is 'auto'"
        return cap

    def override_cap(self, cap: Version | str | None) -> None:
        """The operator's ``set_cap``: the cap of every engine whose release declares one becomes ``cap``."""
        self.cap_overridden = True
        self.cap_override = cap
        self._cap_setting += 1
        for eng in self.engines.values():
            if eng.state != STOPPED:
                assert eng.release is not None, "a started engine has a release"
                eng.cap = self.resolve_for(eng.name, eng.release.cap, eng.service)
                eng.caps = {}

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
        retry_of: int | None = None,
        attempt: int = 1,
        cause: int | None = None,
    ) -> Message | None:
        """Send ``method`` as ``rel`` under ``cap``: publish it (returns the message), or record why it
        cannot be sent (returns None). ``retry_of``, ``attempt``, ``cause``: a client's retry of a call.

        ``sender`` is an engine or the clients; ``cap`` is its cap for its own service. With declared
        services or vhosts, a message without ``queue`` goes to the topic queue of the service it
        addresses (``service.method``, else the sender's service) on the sender's vhost."""
        service = None
        if self.explicit:
            if queue is None:
                own, vhost = (
                    (self.client_service, self.client_vhost)
                    if sender not in self.engines
                    else (self.engines[sender].service, self.engines[sender].vhost)
                )
                service, method = self.route(own, method)
                if service != own:
                    cap = self._cap_to(sender, rel, service)
                queue = self.broker.topic_queue(vhost, self.scenario.topic_of(service))
            else:
                assert queue.owner is not None, "a message given its queue goes to an engine's own queue"
                service = queue.owner.service
        rules = rel.send_rules.get(method)
        if not rules:
            self.trace.emit(
                self.env.now, "send_error", engine=sender, method=method, error=f"release {rel.name} has no {method}"
            )
            return None
        rule = rules[0] if cap is None else choose_send_rule(rules, cap)  # no cap: the first rule
        if rule is None:
            origin = ""
            if self.records:  # where the cap came from (the service records that hold it down)
                svc = service or (self.engines[sender].service if sender in self.engines else self.client_service)
                got = self.cap_from.get((sender, svc))
                origin = f"; {got}" if got else ""
            self.trace.emit(
                self.env.now,
                "send_error",
                engine=sender,
                method=method,
                error=f"RPCVersionCapError (cap {cap}{origin})",
            )
            return None
        return self.broker.publish(sender, method, rule, row, call, queue, hop, service, retry_of, attempt, cause)

    def route(self, own: str, name: str) -> tuple[str, str]:
        """(service, method) that ``name`` addresses from a sender of service ``own`` (cached)."""
        key = (own, name)
        r = self._routes.get(key)
        if r is None:
            r = self._routes[key] = self.scenario.route(own, name)
        return r

    def _cap_to(self, sender: str, rel: Release, service: str) -> Version | None:
        """The cap of ``sender``'s sends to another ``service``, resolved at its first send there after
        it started (the clients: after a set_client) or a set_cap, and kept until then (Nova caches
        ``upgrade_levels=auto`` the same way, until a restart or SIGHUP)."""
        eng = self.engines.get(sender)
        if eng is not None:
            caps = eng.caps
        else:
            if self._client_caps_of != (rel, self._cap_setting):
                self._client_caps_of = (rel, self._cap_setting)
                self._client_caps = {}
            caps = self._client_caps
        if service not in caps:
            caps[service] = self.resolve_for(sender, rel.cap, service)
        return caps[service]

    def set_client_vhost(self, vhost: str, cause: int) -> None:
        """The operator's ``set_vhost``: the clients publish on ``vhost`` from now on. Records ``vhost``
        with the depth of every vhost at that moment."""
        self.client_vhost = vhost
        self.trace.emit(self.env.now, "vhost", clients=vhost, depth=self.broker.depths(), cause=[cause])

    def drain(self, vhost: str, cause: int):  # noqa: ANN201 - a SimPy process body
        """The operator's ``drain``: wait until ``vhost`` holds no message, then record ``drained``."""
        ev = self.broker.drained(vhost)
        if ev is not None:
            yield ev
        self.trace.emit(self.env.now, "drained", vhost=vhost, cause=[cause])

    # -------------------------------------------------------------- lifecycle
    def start(self, eng: Engine, rel: Release, cause: int | None) -> None:
        """Start ``eng`` on ``rel``: its workers, then it consumes."""
        if not eng.member:
            why = "start: engine was removed" if eng.removed else "start: engine is not added yet"
            self.trace.emit(self.env.now, "noop", engine=eng.name, why=why, cause=_causes(cause))
            return
        if eng.state != STOPPED:
            self.trace.emit(
                self.env.now, "noop", engine=eng.name, why=f"start: engine is {eng.state}", cause=_causes(cause)
            )
            return
        config: dict[str, Any] = {}
        if self.scenario.releases[rel.name].config:  # a start applies every pending config change
            rel, eng.config = self._configured(eng, rel.name, sighup=False)
            config = {"config": eng.config}
        else:
            eng.config = None
        eng.release = rel
        eng.state = RUNNING
        if self.records:
            self._register(eng, rel)
        else:
            self._count(eng, rel, +1)
        eng.generation += 1
        eng.accepts = {}
        eng.outcomes = {}
        eng.stopped_event = self.env.event()
        eng.cap = self.resolve_for(eng.name, rel.cap, eng.service)
        eng.caps = {}
        if rel.vhost != eng.vhost:  # it connects to another vhost: its own queue is declared there
            eng.vhost = rel.vhost
            eng.server_queue = self.broker.server_queue(eng)
        cap = None if eng.cap is None else str(eng.cap)
        if self.explicit:
            start_rec = self.trace.emit(
                self.env.now,
                "start",
                engine=eng.name,
                release=rel.name,
                workers=rel.workers,
                cap=cap,
                service=eng.service,
                vhost=eng.vhost,
                queue=queue_name(eng.vhost, eng.topic),
                **config,
                cause=_causes(cause),
            )
        else:
            start_rec = self.trace.emit(
                self.env.now,
                "start",
                engine=eng.name,
                release=rel.name,
                workers=rel.workers,
                cap=cap,
                **config,
                cause=_causes(cause),
            )
        origin = self.cap_from.get((eng.name, eng.service)) if self.records else None
        if origin is not None:  # where its auto cap came from
            self.trace.emit(self.env.now, "cap", engine=eng.name, cap=cap, why=f"start; {origin}", cause=[start_rec])
        if self.live_caps:  # the others' live caps follow this start
            self._live(eng.service, start_rec)
        if rel.local:  # issue 20: fill the local copies it has never kept
            resync = rel.on_start.sync if rel.on_start is not None else ()
            for fld in sorted(rel.local - eng.provisioned):
                eng.provisioned.add(fld)
                if fld not in resync:  # on_start fills it anyway
                    self._sync_all(eng, rel, fld, start_rec)
        if rel.on_start is not None:  # its start-up actions first; then it takes messages
            eng.subs = []
            eng.procs = [self.env.process(self._on_start(eng, rel, rel.on_start, eng.generation, start_rec))]
            return
        eng.procs = [self.env.process(self._worker(eng, rel, slot, eng.generation)) for slot in range(rel.workers)]
        self.broker.join(eng)

    def _on_start(self, eng: Engine, rel: Release, spec: StartupSpec, generation: int, start_rec: int):  # noqa: ANN202
        """An engine's start-up actions (``on_start``): writes on its own row, casts, then each call
        awaited; then, unless it was stopped or killed meanwhile, a ``ready`` record, and it takes messages."""
        env, emit, db = self.env, self.trace.emit, self.db
        row = eng.index % self.rows
        for fld in spec.sync:  # issue 20: a full resync of its local copies
            if fld in rel.local:
                self._sync_all(eng, rel, fld, start_rec)
        try:
            for fld in spec.write:
                locs = rel.write.get(fld)
                if not locs:
                    continue
                missing = db.missing(locs)
                if missing:
                    emit(env.now, "schema_error", engine=eng.name, op="write", locs=missing, cause=[start_rec])
                    continue
                value = spec.set.get(fld)
                if value is None:
                    value = f"v{self._next_value}"
                    self._next_value += 1
                rec = self.trace.count
                db.actor = (eng.name, None)
                try:
                    fired = db.write_field(locs, row, value, rec, rel.write_sql.get(fld) if rel.write_sql else None)
                except WriteRefused as e:
                    emit(env.now, "write_refused", engine=eng.name, op="write", field=fld, row=row, error=str(e))
                    continue
                self.trace.write(
                    env.now, engine=eng.name, msg=-1, field=fld, row=row, value=value, locs=list(locs), trig=fired
                )
            for method, n in spec.cast.items():
                for _ in range(n):
                    self.send(eng.name, rel, eng.cap, method, row, call=False)
            for method in spec.call:
                msg = self.send(eng.name, rel, eng.cap, method, row, call=True)
                if msg is None:
                    continue
                assert msg.expires is not None, "a call has a TTL"
                msg.deadline = msg.expires  # an engine waits bus.call_timeout (the clients' timeout is theirs)
                msg.waiter = env.event()
                yield msg.waiter | env.timeout(msg.expires - env.now)
                if not msg.replied:
                    msg.gave_up = True
                    emit(env.now, "timeout", engine=eng.name, msg=msg.id, attempt=1, cause=[msg.send_rec])
        except simpy.Interrupt:
            return  # killed while starting
        if eng.generation != generation:
            return
        if eng.state == STOPPING:  # stopped while starting: it never took a message
            self._stopped(eng, rel)
            return
        emit(env.now, "ready", engine=eng.name, cause=[start_rec])
        eng.procs = [env.process(self._worker(eng, rel, slot, generation)) for slot in range(rel.workers)]
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
        if self.records:
            self.db.mark(eng.name, "stopped")
        else:
            self._count(eng, rel, -1)
        rec = self.trace.emit(self.env.now, "stopped", engine=eng.name, release=rel.name)
        if self.live_caps:
            self._live(eng.service, rec)
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
        if self.records:
            self.db.mark(eng.name, "killed")
        else:
            self._count(eng, eng.release, -1)
        eng.generation += 1  # workers of the old generation never resume
        for p in eng.procs:
            if p.is_alive:
                p.interrupt("kill")
        eng.procs = []
        eng.wake = None
        inflight, eng.inflight = eng.inflight, {}
        if self.claims:  # a handling killed mid-way rolls back the request id it recorded
            for slot in sorted(inflight):
                self._unclaim(inflight[slot])
        if self.txns:  # and its transaction: the engine's connection is gone
            for slot in sorted(inflight):
                txn = self.txns.pop(inflight[slot].id, None)
                if txn is not None:
                    self.db.rollback(txn)
        if not self.broker.ack_after:  # acknowledged before dispatch: the broker has forgotten them
            for slot in sorted(inflight):
                msg = inflight[slot]
                self.trace.emit(now, "lost", engine=eng.name, msg=msg.id, cause=[kill_rec, msg.send_rec])
        self.broker.close(eng, kill_rec)  # the rest was unacked: back to its place in its queue
        if eng.stopped_event is not None and not eng.stopped_event.triggered:
            eng.stopped_event.succeed()
        if self.live_caps:
            self._live(eng.service, kill_rec)

    # -------------------------------------------------------------- configuration (issue 15)
    def _configured(self, eng: Engine, release: str, sighup: bool) -> tuple[Release, dict[str, str]]:
        """The release ``release`` compiled for ``eng``'s config, and that config: at a start every
        pending value (of an option the release declares, and one of its values); at a sighup only
        those of 'applies: sighup' options, the rest as in force."""
        spec = self.scenario.releases[release]
        now = eng.config or {}
        config: dict[str, str] = {}
        for opt, o in spec.config.items():
            want = eng.pending.get(opt)
            if want is not None and want in o.values and (not sighup or o.applies == "sighup"):
                config[opt] = want
            else:
                config[opt] = now.get(opt, o.default) if sighup else o.default
        key = (release, tuple(config.items()))
        rel = self._variants.get(key)
        if rel is None:
            data = dict(spec.data)
            for opt, o in spec.config.items():
                data.update(o.values[config[opt]].data)
            rel = self._variants[key] = Release.compile(release, spec.model_copy(update={"data": data}))
        return rel, config

    def set_config(self, values: dict[str, str], engines: list[str] | None) -> None:
        """The operator's ``set_config``: the engines' pending config (in force from their next start,
        or sighup for 'applies: sighup' options)."""
        for name in engines if engines is not None else list(self.engines):
            self.engines[name].pending.update(values)

    def sighup(self, engines: list[str] | None, cause: int) -> None:
        """The operator's ``sighup``: each running engine named (all, if None) applies its pending changes
        to 'applies: sighup' options; records ``config`` for each whose config changed."""
        targets = [self.engines[n] for n in engines] if engines is not None else list(self.engines.values())
        self.trace.meter.work += len(targets)
        for eng in targets:
            if eng.state == RUNNING and eng.release is not None and eng.release.computed == "on-sighup":
                self._recap(eng, "sighup", cause)
            if eng.state != RUNNING or eng.release is None or eng.config is None:
                continue
            rel, config = self._configured(eng, eng.release.name, sighup=True)
            if config != eng.config:
                eng.config = config
                eng.release = rel  # its workers take it up at their next message
                self.trace.emit(self.env.now, "config", engine=eng.name, release=rel.name, config=config, cause=[cause])

    def _recap(self, eng: Engine, why: str, cause: int | None) -> None:
        """Compute ``eng``'s cap again; record ``cap`` if it changed (its caps to other services are
        resolved again at their next send)."""
        assert eng.release is not None, "a running engine has a release"
        cap = self.resolve_for(eng.name, eng.release.cap, eng.service)
        eng.caps = {}
        if cap != eng.cap:
            eng.cap = cap
            origin = self.cap_from.get((eng.name, eng.service)) if self.records else None
            self.trace.emit(
                self.env.now,
                "cap",
                engine=eng.name,
                cap=None if cap is None else str(cap),
                why=why if origin is None else f"{why}; {origin}",
                cause=_causes(cause),
            )

    def _live(self, service: str, cause: int | None) -> None:
        """An engine of ``service`` started or stopped: the running engines whose release computes its
        cap live compute it again (their caps to other services, at their next send there)."""
        self.trace.meter.work += len(self.engines)
        for eng in self.engines.values():
            if eng.state == RUNNING and eng.release is not None and eng.release.computed == "live":
                if eng.service == service:
                    self._recap(eng, "live", cause)
                else:
                    eng.caps = {}

    def add(self, eng: Engine, rel: Release, cause: int) -> None:
        """The operator's ``add``: ``eng`` joins the cluster and starts on ``rel``."""
        if eng.member or eng.removed:
            why = "add: engine was removed" if eng.removed else "add: engine is a member"
            self.trace.emit(self.env.now, "noop", engine=eng.name, why=why, cause=[cause])
            return
        eng.member = True
        self.start(eng, rel, cause)

    def remove(self, eng: Engine, cause: int) -> None:
        """The operator's ``remove``, once ``eng`` has stopped: it leaves the cluster for good (records ``removed``)."""
        if not eng.member:
            self.trace.emit(self.env.now, "noop", engine=eng.name, why="remove: engine is not a member", cause=[cause])
            return
        eng.member = False
        eng.removed = True
        rec = self.trace.emit(self.env.now, "removed", engine=eng.name, cause=[cause])
        if self.records and self._deregister(eng) and self.live_caps:  # its record is gone: live caps follow
            self._live(eng.service, rec)

    def reads_at_end(self) -> list[dict[str, str]]:
        """Where the releases that count at the end read each field: those of the engines running
        at the end, or every engine's last release if none runs."""
        running = [e.release for e in self.engines.values() if e.state != STOPPED and e.release]
        releases = running or [e.release for e in self.engines.values() if e.release]
        return [rel.read for rel in releases]

    # -------------------------------------------------------------- workers
    def _worker(self, eng: Engine, rel: Release, slot: int, generation: int):
        env, trace, emit, broker = self.env, self.trace, self.trace.emit, self.broker
        ack = broker.ack
        ack_after = self.broker.ack_after
        handlers = self.handlers_of[rel.name]
        backlog = eng.backlog
        outcomes = eng.outcomes
        # a search's trace numbers the recv and done records nobody reads without building them
        # (Trace.emit's rule, inlined: two calls and a list less per message)
        recv_built, done_built = trace.wanted("recv"), trace.wanted("done")
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
                if eng.release is not rel and eng.release is not None:  # a sighup changed its config
                    rel = eng.release
                now = env._now  # SimPy's clock (Environment.now, without the property call)
                if not ack_after and msg.sub is not None:
                    # oslo.messaging's RPC server acknowledges here, before dispatching (Broker.ack, inlined)
                    msg.queue.ack(msg, now)  # type: ignore[union-attr]  # a delivered message has a queue
                    if broker.depth is not None:
                        broker._gone(msg.queue.vhost)  # type: ignore[union-attr]
                eng.inflight[slot] = msg
                if recv_built:
                    recv = trace.recv(now, engine=eng.name, msg=msg.id, wait=now - msg.enqueued, cause=[msg.send_rec])
                else:
                    recv = trace.count
                    trace.count = recv + 1
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
                    msg.replied = True  # a call gets the error as its reply
                    if msg.waiter is not None and not msg.waiter.triggered:
                        msg.waiter.succeed()
                    continue
                handler = handlers.get(msg.method)
                snapshot = None
                ok = True
                if handler is None:
                    yield env.timeout(rel.service_time)
                else:
                    dup = handler.idempotency_key is not None and self._duplicate(eng, msg, recv)
                    if not dup:  # a duplicate's request id is recorded: no work
                        if handler.sync and rel.local:
                            for fld in handler.sync:
                                if fld in rel.local:
                                    self._sync_row(eng, rel, fld, msg, recv)
                        if handler.read or handler.write:
                            if handler.transaction:
                                ok, snapshot = self._reads(eng, rel, handler, msg, recv)
                            else:  # _reads without a transaction: straight to the reads
                                self.db.actor = (eng.name, msg.id)
                                ok, snapshot = self._read_fields(eng, rel, handler, msg, recv)
                        if ok:
                            yield env.timeout(rel.service_time)
                            if msg.id in self.txns:
                                ok = self._writes_and_casts(eng, rel, handler, msg, snapshot)
                            else:  # _writes_and_casts without a transaction, inlined
                                self.db.actor = (eng.name, msg.id)
                                if handler.write:
                                    ok = self._writes(eng, rel, handler, msg, snapshot, None)
                                if ok and (handler.cast or handler.fanout):
                                    self._casts(eng, rel, handler, msg)
                        if handler.idempotency_key is not None and not ok:
                            self._unclaim(msg)  # the handling failed: its transaction, and the request id, roll back
                del eng.inflight[slot]
                if ack_after:
                    ack(msg)
                msg.replied = True
                if msg.waiter is not None and not msg.waiter.triggered:
                    msg.waiter.succeed()
                now = env._now
                if msg.deadline is not None and (now > msg.deadline or msg.gave_up):
                    # the caller timed out before the reply: the work was done for nobody (written
                    # just before the done, so that a reader knows it when the handling ends)
                    emit(now, "late", engine=eng.name, msg=msg.id, deadline=msg.deadline, cause=[msg.send_rec])
                if done_built:
                    trace.done(now, engine=eng.name, msg=msg.id, ok=ok)
                else:
                    trace.count += 1
        except simpy.Interrupt:
            return
        if eng.state == STOPPING and eng.generation == generation and not eng.inflight:
            if not any(p.is_alive and p is not env.active_process for p in eng.procs):
                self._stopped(eng, rel)

    # -------------------------------------------------------------- local copies (issue 20)
    def _sync_all(self, eng: Engine, rel: Release, fld: str, cause: int) -> None:
        """Fill ``eng``'s copy of ``fld``, every row, from where ``rel`` reads it (a ``sync`` record without
        ``row``); a location that does not exist leaves the copy as it was."""
        loc = rel.read[fld]
        if loc not in self.db.columns:
            return
        self.trace.meter.work += self.rows
        rec = self.trace.emit(self.env.now, "sync", engine=eng.name, field=fld, loc=loc, cause=[cause])
        for r in range(self.rows):
            eng.local[(fld, r)] = (self.db.read(loc, r)[0], rec)

    def _sync_row(self, eng: Engine, rel: Release, fld: str, msg: Message, recv: int) -> None:
        """A handler's ``sync``: refresh ``eng``'s copy of ``fld`` for the message's row (a ``sync`` record)."""
        loc = rel.read[fld]
        if loc not in self.db.columns:
            return
        value, src = self.db.read(loc, msg.row)
        rec = self.trace.emit(
            self.env.now,
            "sync",
            engine=eng.name,
            field=fld,
            loc=loc,
            msg=msg.id,
            row=msg.row,
            value=value,
            cause=[recv] if src is None else [recv, src],
        )
        eng.local[(fld, msg.row)] = (value, rec)

    # -------------------------------------------------------------- idempotency keys (issue 20)
    def _duplicate(self, eng: Engine, msg: Message, recv: int) -> bool:
        """A handler with an idempotency key takes ``msg``: record its request id (``msg.op``), as an
        INSERT into a table with a unique key would, or, if a copy of the request already holds it,
        write ``dedup`` and return True (the copy does no work and replies at once)."""
        first = self.claims.get(msg.op)
        if first is None:
            self.claims[msg.op] = (msg.id, recv)
            return False
        self.trace.emit(
            self.env.now, "dedup", engine=eng.name, msg=msg.id, key=msg.op, first=first[0], cause=[recv, first[1]]
        )
        return True

    def _unclaim(self, msg: Message) -> None:
        """The handling of ``msg`` failed or was lost: its request id is no longer recorded."""
        first = self.claims.get(msg.op)
        if first is not None and first[0] == msg.id:
            del self.claims[msg.op]

    def _reads(
        self, eng: Engine, rel: Release, handler: HandlerSpec, msg: Message, recv: int
    ) -> tuple[bool, dict[str, Any] | None]:
        """Reads at the start of handling; returns (ok, row snapshot for row-style updates). A
        transactional handler begins its transaction first (rolled back if the reads fail)."""
        db = self.db
        db.actor = (eng.name, msg.id)
        if not handler.transaction:
            return self._read_fields(eng, rel, handler, msg, recv)
        txn = self.txns[msg.id] = db.begin()
        db.use(txn)
        try:
            ok, snapshot = self._read_fields(eng, rel, handler, msg, recv)
        finally:
            db.use(None)
        if not ok:
            del self.txns[msg.id]
            db.rollback(txn)
        return ok, snapshot

    def _read_fields(
        self, eng: Engine, rel: Release, handler: HandlerSpec, msg: Message, recv: int
    ) -> tuple[bool, dict[str, Any] | None]:
        now, emit, row = self.env._now, self.trace.emit, msg.row  # _now: Environment.now without the property
        columns, read, read_sql = self.db.columns, self.db.read, rel.read_sql
        snapshot: dict[str, Any] | None = None
        defaulted: dict[str, str | None] | None = None  # location -> the default read instead
        for fld in handler.read:
            loc = rel.read.get(fld)
            if loc is None:
                continue
            local = fld in rel.local
            if not local and loc not in columns:
                emit(now, "schema_error", engine=eng.name, msg=msg.id, op="read", locs=[loc], cause=[recv])
                return False, None
            if local:  # issue 20: the engine's own copy, not the database
                value, src = eng.local.get((fld, row), (None, None))
                loc = f"{loc}@{eng.name}"
            else:
                value, src = read(loc, row, read_sql.get(fld)) if read_sql else read(loc, row)
            rd = self.trace.read(
                now,
                engine=eng.name,
                msg=msg.id,
                field=fld,
                row=row,
                loc=loc,
                value=value,
                cause=[recv] if src is None else [recv, src],
            )
            if rel.domains and value in self.named and fld in rel.domains:
                known, unknown, default = rel.domains[fld]
                if value not in known:  # a value this release does not know (issue 20)
                    emit(
                        now,
                        "unknown_value",
                        engine=eng.name,
                        msg=msg.id,
                        field=fld,
                        row=row,
                        value=value,
                        release=rel.name,
                        action=unknown,
                        cause=[rd] if src is None else [rd, src],  # the read, and the write of the value
                    )
                    if unknown == "fail":
                        return False, None
                    if unknown == "default":  # a whole-row save writes back what it read: the default
                        defaulted = {} if defaulted is None else defaulted
                        defaulted[loc] = default
        if rel.update_row and handler.write:
            snapshot = {}
            for fld in handler.write:
                for loc in rel.write.get(fld, ()):
                    for col in rel.known_columns.get(loc.split(".")[0], ()):
                        if col in columns and col not in snapshot:
                            snapshot[col] = read(col, row)[0]
            if defaulted:
                snapshot.update((c, v) for c, v in defaulted.items() if c in snapshot)
        return True, snapshot

    def _writes_and_casts(
        self, eng: Engine, rel: Release, handler: HandlerSpec, msg: Message, snapshot: dict[str, Any] | None
    ) -> bool:
        """Writes at the end of handling, then casts; False if the database refused a write
        (recorded as ``write_refused``: the handling fails and sends nothing).

        A transactional handler's writes run in its transaction, then it commits; their ``write``
        (and ``rewrite``) records are written once it has committed, so a transaction the database
        refuses -- a statement, or the commit (``op: commit``) -- leaves only its ``write_refused``."""
        db = self.db
        db.actor = (eng.name, msg.id)
        txn = self.txns.pop(msg.id, None)
        if txn is None:
            return self._writes(eng, rel, handler, msg, snapshot, None) and self._casts(eng, rel, handler, msg)
        now, row = self.env.now, msg.row
        held: list[tuple[str, int, dict[str, Any]]] = []
        db.use(txn)
        try:
            db.prepare(txn)
            ok = self._writes(eng, rel, handler, msg, snapshot, held)
            if ok:
                db.commit(txn)
            else:
                db.rollback(txn)
        except WriteRefused as e:  # prepare's validation, or the commit (rolled back)
            ok = False
            if txn.conn is None:
                db.rollback(txn)
            self.trace.emit(
                now, "write_refused", engine=eng.name, msg=msg.id, op="commit", field=None, row=row, error=str(e)
            )
        finally:
            db.use(None)
        for kind, rec, fields in held:
            if kind == "write" and ok:
                n = self.trace.write(now, **fields)
                assert n == rec, "a held write keeps the number its cells were given"
            elif kind == "schema_error":  # said whether or not the transaction commits
                f = fields
                self.trace.emit(now, "schema_error", engine=f["engine"], msg=f["msg"], op=f["op"], locs=f["locs"])
            elif kind == "rewrite" and ok:
                f = fields
                self.trace.emit(now, "rewrite", engine=f["engine"], msg=f["msg"], row=f["row"], cols=f["cols"])
        return ok and self._casts(eng, rel, handler, msg)

    def _writes(
        self,
        eng: Engine,
        rel: Release,
        handler: HandlerSpec,
        msg: Message,
        snapshot: dict[str, Any] | None,
        held: list[tuple[str, int, dict[str, Any]]] | None,
    ) -> bool:
        """The writes of a handling; a transaction's records ``held`` until it commits."""
        now, emit, row, db = self.env._now, self.trace.emit, msg.row, self.db  # _now: Environment.now
        written: set[str] = set()
        columns = db.columns
        for fld in handler.write:
            locs = rel.write.get(fld)
            if not locs:
                continue
            missing = None if columns.issuperset(locs) else db.missing(locs)
            if missing:
                if held:  # after a held write: held too, to keep the numbers the writes were given
                    fields = dict(engine=eng.name, msg=msg.id, op="write", locs=missing)
                    held.append(("schema_error", self.trace.count + len(held), fields))
                else:
                    emit(now, "schema_error", engine=eng.name, msg=msg.id, op="write", locs=missing)
                continue
            named = handler.set.get(fld) if handler.set else None
            if named is not None:
                value = named  # a named value (issue 20): a release whose domain lacks it cannot read it
            else:
                value = f"v{self._next_value}"
                self._next_value += 1
            rec = self.trace.count if held is None else self.trace.count + len(held)
            try:
                fired = db.write_field(locs, row, value, rec, rel.write_sql.get(fld) if rel.write_sql else None)
            except WriteRefused as e:
                emit(now, "write_refused", engine=eng.name, msg=msg.id, op="write", field=fld, row=row, error=str(e))
                return False
            if snapshot:  # only a whole-row save reads what was written
                written.update(locs)
            if held is not None:
                fields = dict(engine=eng.name, msg=msg.id, field=fld, row=row, value=value, locs=list(locs), trig=fired)
                held.append(("write", rec, fields))
                continue
            self.trace.write(
                now, engine=eng.name, msg=msg.id, field=fld, row=row, value=value, locs=list(locs), trig=fired
            )
        if snapshot:
            stale = {c: v for c, v in snapshot.items() if c not in written and c in db.columns}
            if stale:
                rec = self.trace.count if held is None else self.trace.count + len(held)
                try:
                    db.rewrite(stale, row, rec)
                except WriteRefused as e:
                    emit(
                        now,
                        "write_refused",
                        engine=eng.name,
                        msg=msg.id,
                        op="rewrite",
                        field=None,
                        row=row,
                        error=str(e),
                    )
                    return False
                if held is not None:
                    held.append(("rewrite", rec, dict(engine=eng.name, msg=msg.id, row=row, cols=stale)))
                else:
                    emit(now, "rewrite", engine=eng.name, msg=msg.id, row=row, cols=stale)
        return True

    def _casts(self, eng: Engine, rel: Release, handler: HandlerSpec, msg: Message) -> bool:
        """The casts a handling sends when it completes; True."""
        row = msg.row
        if handler.depth is not None and msg.hop >= handler.depth:
            return True
        rng, hop, rows = self.chooser.rng, msg.hop + 1, self.rows
        if handler.cast:
            draw = INLINE_DRAW and type(rng) is random.Random
            getrandbits, k = rng.getrandbits, rows.bit_length()
            publish = self.broker.publish
            for method, n in handler.cast.items():
                # Cluster.send's common case, inlined: no routing, no cap (the first send rule)
                rules = None if self.explicit or eng.cap is not None else rel.send_rules.get(method)
                for _ in range(n):
                    if draw:  # rng.randrange(rows), inlined: the same draws (see INLINE_DRAW)
                        r = getrandbits(k)
                        while r >= rows:
                            r = getrandbits(k)
                    else:
                        r = rng.randrange(rows)
                    if rules:
                        publish(eng.name, method, rules[0], r, False, None, hop)
                    else:
                        self.send(eng.name, rel, eng.cap, method, r, call=False, hop=hop)
        for method in handler.fanout:
            self.trace.meter.work += len(self.engines)  # the scan below, charged to the run's work budget
            if self.explicit:  # to the running engines of the service it names, on the sender's vhost
                service, bare = self.route(eng.service, method)
                cap = eng.cap if service == eng.service else self._cap_to(eng.name, rel, service)
                for other in self.members[service]:
                    if other.state == RUNNING and other.vhost == eng.vhost:
                        self.send(eng.name, rel, cap, bare, row, call=False, queue=other.server_queue, hop=hop)
                continue
            for other in self.engines.values():
                if other.state == RUNNING:
                    self.send(eng.name, rel, eng.cap, method, row, call=False, queue=other.server_queue, hop=hop)
        return True


__all__ = ["Cluster", "Engine", "Release", "RUNNING", "STOPPED", "STOPPING"]
