"""The discrete-event model: engines, a message bus and a shared database, in SimPy.

One :class:`Simulation` runs one scenario once. Order of events at the same
simulated instant is SimPy's: first scheduled, first run. Every other decision
(which idle consumer takes a message, extra delays) goes through the
:class:`~simroll.sim.chooser.Chooser`; option 0 is the documented default.

The model is in rooms: the :class:`~simroll.sim.broker.Broker` (queues, delivery),
the :class:`~simroll.sim.database.Database` (schema, values, triggers, backfill) and
the engines (:mod:`simroll.sim.engine`). This module runs them: the client workload,
the operator's plan, faults, and the end of the run.

Records written to the trace (see :mod:`simroll.sim.trace`) are the only output;
the invariants read them.
"""

from __future__ import annotations

import contextlib
from heapq import heappop
from typing import Any

import simpy
from simpy.core import Infinity

from simroll.scenario.spec import (
    BACKFILL,
    AddStep,
    BackfillStep,
    ContractStep,
    DisableTriggerStep,
    DrainStep,
    EnableTriggerStep,
    ExpandStep,
    KillStep,
    RemoveStep,
    RestartStep,
    Scenario,
    SetCapStep,
    SetClientStep,
    SetConfigStep,
    SetVhostStep,
    SighupStep,
    StartStep,
    StepSpec,
    StopStep,
    WaitStep,
    WaitUntilStep,
)
from simroll.scenario.versions import Version
from simroll.sim.broker import Broker, Message
from simroll.sim.chooser import Chooser
from simroll.sim.conditions import Backfills, wait_until
from simroll.sim.engine import STOPPED, Cluster, Release
from simroll.sim.sql import open_database
from simroll.sim.trace import Trace

WORK_PER_EVENT = 16
"""The work budget of a run: at most this many units of work (:class:`~simroll.sim.trace.Meter`) per
event ``max_events`` allows. Records cost nothing from it; it bounds what per-engine loops (caps,
fanout, stops, kills, the checks' scans) do besides writing records, so no input spends long between
two records: a run stops at ``max_events`` records or ``WORK_PER_EVENT * max_events`` units, whichever
comes first (``end_reason`` then says which, like every limit)."""

INLINE_STEP = simpy.__version__.split(".")[:2] == ["4", "1"]
"""Whether :meth:`Simulation._loop` runs SimPy's ``Environment.peek`` and ``step`` inlined: on SimPy 4.1, whose
internals (``_queue``, ``_now``, an event's ``callbacks``, ``_ok``, ``_value``, ``_defused``) it reads."""


class Simulation:
    """One run of one scenario. Build it, call :meth:`run`, read the trace."""

    def __init__(self, scenario: Scenario, chooser: Chooser, trace: Trace):
        self.scenario = scenario
        self.chooser = chooser
        self.trace = trace
        self.env = simpy.Environment()
        self.broker = Broker(self.env, scenario.bus, chooser, trace)
        self.db = open_database(self.env, scenario, chooser, trace)
        self.cluster = Cluster(self.env, scenario, self.broker, self.db, chooser, trace)
        self.engines = self.cluster.engines
        self.releases = self.cluster.releases
        self._initial = {e.name: e.release for e in scenario.engine_list()}
        self.client: Release = self.releases[scenario.workload.client or self._initial_release_name()]
        self.client_cap: Version | None = None
        self._step_faults: dict[int, list[str]] = {}
        for f in scenario.faults:
            if f.at_step is not None:
                self._step_faults.setdefault(f.at_step, []).append(f.kill)
        self.end_reason = "quiescent"
        self.backfills = Backfills()  # for wait_until's backfill_done
        # issue 20: the backfill killed by a fault at a row, and by the search's choice at any row
        self.db.row_faults = sorted(f.at_row for f in scenario.faults if f.at_row is not None)
        self.db.crash_choices = scenario.search is not None and scenario.search.backfill_crash
        self._operator_proc: simpy.Process | None = None

    def _initial_release_name(self) -> str:
        return next(iter(self._initial.values()))

    # -------------------------------------------------------------- run
    def run(self) -> None:
        """Run to quiescence (nothing left to happen) or to a limit."""
        env, trace = self.env, self.trace
        limits = self.scenario.limits
        trace.emit(0.0, "begin", scenario=self.scenario.name, delivery=self.scenario.bus.delivery)
        self.db.init_data(self.releases[self._initial_release_name()].write)
        late = {e.name for e in self.scenario.engine_list() if not e.start}  # started later by a start step
        for name, rel in self._initial.items():
            if name in late:
                continue
            self.cluster.start(self.engines[name], self.releases[rel], cause=None)
        self.client_cap = self.cluster.resolve_for("client", self.client.cap)
        self.broker.caller_timeout = self.scenario.workload.timeout
        env.process(self._workload())
        self._operator_proc = env.process(self._operator())
        for f in self.scenario.faults:
            if f.at is not None:
                env.process(self._fault_at(f.at, f.kill))
        try:
            self._loop(limits.max_time, limits.max_events)
            self._finish()
        except BaseException:
            # a run that fails midway (a statement the server refuses outright, Ctrl-C) still drops a
            # server's scratch schema; the failure, not a second one while closing, is what is raised
            with contextlib.suppress(Exception):
                self.db.close()
            raise
        self.db.close()  # a SQL backend's connection, and a server's scratch schema

    def _loop(self, max_time: float, max_events: int) -> None:
        """SimPy's ``Environment.step`` until nothing is left to happen or a limit is reached, with
        ``peek`` and ``step`` inlined (two calls less per event) on the SimPy it was written against
        (:data:`INLINE_STEP`; else it calls them). It runs each event's callbacks as ``step`` does;
        ``tests/test_trace.py`` checks that both loops give the same traces. Its locals are no state of
        the model (simroll verify's digest reads the frames of a choice point): the event queue is
        read from the environment each time."""
        env, trace = self.env, self.trace
        max_work = WORK_PER_EVENT * max_events
        meter = trace.meter
        step = None if INLINE_STEP else env.step
        while True:
            if step is None:  # Environment.peek, inlined
                at = env._queue[0][0] if env._queue else Infinity
            else:
                at = env.peek()
            if at == Infinity:
                break  # quiescent, unless the operator stopped at a limit (it set end_reason)
            if at > max_time:
                if self.end_reason == "quiescent":
                    self.end_reason = f"limit: simulated time reached max_time={max_time:g} s"
                break
            if trace.count > max_events or meter.work > max_work:
                self.end_reason = self._over_limits() or self.end_reason
                break
            if step is not None:
                step()
                continue
            # Environment.step, inlined
            env._now, _, _, event = heappop(env._queue)
            callbacks, event.callbacks = event.callbacks, None  # type: ignore[assignment]  # as SimPy does
            for callback in callbacks:
                callback(event)
            if not event._ok and not hasattr(event, "_defused"):
                # the event failed and nobody handled it: crash as SimPy does
                exc = type(event._value)(*event._value.args)
                exc.__cause__ = event._value
                raise exc

    def _over_limits(self) -> str | None:
        """The end reason if the trace has passed ``max_events`` or the work its budget, else None."""
        max_events = self.scenario.limits.max_events
        if self.trace.count > max_events:
            return f"limit: trace reached max_events={max_events} events"
        max_work = WORK_PER_EVENT * max_events
        if self.trace.meter.work > max_work:
            return f"limit: work reached {max_work} units ({WORK_PER_EVENT} per event of max_events={max_events})"
        return None

    def _finish(self) -> None:
        now = self.env.now
        emit = self.trace.emit
        if self.end_reason != "quiescent":  # a partial run: what is queued now may still be taken later
            emit(now, "end", reason=self.end_reason, points=self.chooser.points)
            return
        broker = self.broker
        leftovers: list[tuple[Message, str]] = []
        for q in broker.queues:
            leftovers += [(m, q.name) for m in q.held]
        for eng in self.engines.values():
            leftovers += [(m, f"backlog@{eng.name}") for m in eng.backlog]
            leftovers += [(m, f"in-flight@{eng.name}") for m in eng.inflight.values()]
        leftovers.sort(key=lambda x: x[0].id)
        for m, where in leftovers:
            if where.startswith("in-flight") or not m.taken and not broker.expired(m):
                emit(
                    now,
                    "left",
                    msg=m.id,
                    queue=where,
                    version=str(m.version),
                    cause=[m.send_rec] + broker.last_stops_accepting(m),
                )
        self.db.emit_finals(now, self.cluster.reads_at_end())
        emit(now, "end", reason=self.end_reason, points=self.chooser.points)

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
        rows = self.db.rows
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
                for m, w in zip(methods, weights, strict=True):
                    acc += w
                    if x < acc:
                        method = m
                        break
            if self.client.computed == "live" and self.client.cap == "auto":
                self._client_recap("live", None)
            msg = self.cluster.send("client", self.client, self.client_cap, method, rng.randrange(rows), call=call)
            if msg is not None and call and (wl.timeout is not None or wl.retry is not None):
                env.process(self._caller(msg, 1))

    def _caller(self, msg: Message, attempt: int):
        """The client waits for the reply to call ``msg`` (attempt number ``attempt``) until its timeout;
        without one it gives up (a ``timeout`` record) and, while ``workload.retry`` allows, sends the
        call again after the backoff, naming the first attempt (``retry_of``)."""
        env, wl = self.env, self.scenario.workload
        assert msg.deadline is not None, "a call has a deadline"
        yield env.timeout(msg.deadline - env.now)
        if not msg.replied:  # a reply at the deadline itself is in time: let what is due now run first
            yield env.timeout(0)
        if msg.replied:
            return
        msg.gave_up = True  # a reply from now on is late
        retry = wl.retry
        more = retry is not None and attempt <= retry.count
        wait = retry.backoff * retry.multiplier ** (attempt - 1) if retry is not None and more else 0.0
        then: dict[str, float] = {"retry_at": env.now + wait} if more else {}
        rec = self.trace.emit(
            env.now, "timeout", engine="client", msg=msg.id, attempt=attempt, **then, cause=[msg.send_rec]
        )
        if not more:
            return
        if wait > 0:
            yield env.timeout(wait)
        again = self.cluster.send(
            "client",
            self.client,
            self.client_cap,
            msg.method,
            msg.row,
            call=True,
            retry_of=msg.op,
            attempt=attempt + 1,
            cause=rec,
        )
        if again is not None:
            yield from self._caller(again, attempt + 1)

    def _client_recap(self, why: str, cause: int | None) -> None:
        """Compute the clients' cap again (a sighup, or live); record ``cap`` for ``client`` if it changed."""
        cap = self.cluster.resolve_for("client", self.client.cap)
        origin = self.cluster.cap_from.get(("client", self.cluster.client_service))
        if cap != self.client_cap:
            self.client_cap = cap
            self.trace.emit(
                self.env.now,
                "cap",
                engine="client",
                cap=None if cap is None else str(cap),
                why=why if origin is None else f"{why}; {origin}",
                cause=[] if cause is None else [cause],
            )

    def _fault_at(self, at: float, engine: str):
        yield self.env.timeout(at)
        rec = self.trace.emit(self.env.now, "fault", action="kill", engine=engine)
        if engine == BACKFILL:  # issue 20: the running pass dies (see Database.backfill); none: no effect
            if self.backfills.running and self._operator_proc is not None:
                self._operator_proc.interrupt(rec)  # the operator is inside the backfill step
            return
        self.cluster.kill(self.engines[engine], rec)

    def _operator(self):
        env, emit = self.env, self.trace.emit
        for i, step in enumerate(self.scenario.plan):
            if step.after > 0:
                yield env.timeout(step.after)
            # steps at one instant run without returning to the run loop: check its limits here too,
            # or a plan of thousands of steps would run to its end past them
            over = self._over_limits()
            if over is not None:
                self.end_reason = over
                return
            rec = emit(env.now, "step", index=i, action=step.action, detail=_step_detail(step))
            for name in self._step_faults.get(i, ()):
                fault = emit(env.now, "fault", action="kill", engine=name, cause=[rec])
                self.cluster.kill(self.engines[name], fault)
            if (yield from self._do_step(step, rec)) is False:
                return  # a plan failure (a wait_until that timed out): the rest of the plan is not run
        emit(env.now, "plan_done")

    def _do_step(self, step: StepSpec, rec: int):
        env, cluster, engines, releases = self.env, self.cluster, self.engines, self.releases
        match step:
            case WaitStep():
                yield env.timeout(step.wait)
            case StopStep() | RestartStep(how="graceful"):
                eng = engines[step.stop if isinstance(step, StopStep) else step.restart]
                ev = cluster.stop(eng, rec)
                if ev is not None:
                    yield ev
                if isinstance(step, RestartStep):
                    cluster.start(eng, releases[step.release], rec)
            case KillStep() | RestartStep():  # a restart here is one with how: kill
                eng = engines[step.kill if isinstance(step, KillStep) else step.restart]
                cluster.kill(eng, rec)
                if isinstance(step, RestartStep):
                    cluster.start(eng, releases[step.release], rec)
            case StartStep():
                cluster.start(engines[step.start], releases[step.release], rec)
            case ExpandStep():
                self.db.expand(step.expand)
            case ContractStep():
                self.db.contract(step.contract)
            case BackfillStep():
                self.backfills.running += 1
                yield from self.db.backfill(step.backfill, rec)
                self.backfills.running -= 1
                self.backfills.done += 1
            case SetCapStep():
                self.trace.meter.work += 2 * len(engines)  # every engine's cap, then the caps record
                cap = step.set_cap
                cluster.override_cap(None if cap == "none" else ("auto" if cap == "auto" else Version.parse(cap)))
                self.client_cap = cluster.resolve_for("client", self.client.cap)
                self.trace.emit(
                    env.now,
                    "caps",
                    caps={
                        e.name: None if e.cap is None else str(e.cap) for e in engines.values() if e.state != STOPPED
                    },
                    client=None if self.client_cap is None else str(self.client_cap),
                )
            case EnableTriggerStep():
                self.db.set_trigger(step.enable_trigger, True)
            case DisableTriggerStep():
                self.db.set_trigger(step.disable_trigger, False)
            case SetClientStep():
                self.client = releases[step.set_client]
                self.client_cap = cluster.resolve_for("client", self.client.cap)
            case SetVhostStep():
                cluster.set_client_vhost(step.set_vhost, rec)
            case DrainStep():
                yield from cluster.drain(step.drain, rec)
            case WaitUntilStep():
                return (yield from wait_until(env, self.trace, cluster, step, rec, self.backfills))
            case SetConfigStep():
                cluster.set_config(step.set_config, step.engines)
            case SighupStep():
                cluster.sighup(None if step.sighup == "all" else step.sighup, rec)
                if step.sighup == "all" and self.client.computed == "on-sighup":
                    self._client_recap("sighup", rec)
            case AddStep():
                for name in step.names():
                    cluster.add(engines[name], releases[step.release], rec)
            case RemoveStep():
                eng = engines[step.remove]
                if not eng.member:  # not added yet, or removed already: nothing to stop
                    cluster.remove(eng, rec)
                elif step.how == "kill":
                    cluster.kill(eng, rec)
                    cluster.remove(eng, rec)
                else:
                    ev = cluster.stop(eng, rec)
                    if ev is not None:
                        yield ev
                    cluster.remove(eng, rec)
        return None


def _step_detail(step: StepSpec) -> dict[str, Any]:
    d = step.model_dump(by_alias=True, exclude_defaults=True, exclude={"after"})
    return {k: d[k] for k in sorted(d)}


def simulate(
    scenario: Scenario,
    seed: int | None = None,
    pinned: dict[tuple[str, int], int] | None = None,
    trace: Trace | None = None,
) -> tuple[Simulation, Trace]:
    """Run ``scenario`` once; returns the finished simulation and its trace."""
    trace = trace if trace is not None else Trace()
    sim = Simulation(scenario, Chooser(scenario.seed if seed is None else seed, pinned), trace)
    sim.run()
    return sim, trace


__all__ = ["Simulation", "simulate", "Release", "Message"]
