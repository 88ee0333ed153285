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

from typing import Any

import simpy
from simpy.core import Infinity

from simroll.scenario.spec import (
    BackfillStep,
    ContractStep,
    DisableTriggerStep,
    EnableTriggerStep,
    ExpandStep,
    KillStep,
    RestartStep,
    Scenario,
    SetCapStep,
    SetClientStep,
    StartStep,
    StepSpec,
    StopStep,
    WaitStep,
)
from simroll.scenario.versions import Version
from simroll.sim.broker import Broker, Message
from simroll.sim.chooser import Chooser
from simroll.sim.database import Database
from simroll.sim.engine import STOPPED, Cluster, Release
from simroll.sim.trace import Trace


class Simulation:
    """One run of one scenario. Build it, call :meth:`run`, read the trace."""

    def __init__(self, scenario: Scenario, chooser: Chooser, trace: Trace):
        self.scenario = scenario
        self.chooser = chooser
        self.trace = trace
        self.env = simpy.Environment()
        self.broker = Broker(self.env, scenario.bus, chooser, trace)
        self.db = Database(self.env, scenario.database, chooser, trace)
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

    def _initial_release_name(self) -> str:
        return next(iter(self._initial.values()))

    # -------------------------------------------------------------- run
    def run(self) -> None:
        """Run to quiescence (nothing left to happen) or to a limit."""
        env, trace = self.env, self.trace
        limits = self.scenario.limits
        trace.emit(0.0, "begin", scenario=self.scenario.name, delivery=self.scenario.bus.delivery)
        self.db.init_data(self.releases[self._initial_release_name()].write)
        for name, rel in self._initial.items():
            self.cluster.start(self.engines[name], self.releases[rel], cause=None)
        self.client_cap = self.cluster.resolve_cap(self.client.cap)
        env.process(self._workload())
        env.process(self._operator())
        for f in self.scenario.faults:
            if f.at is not None:
                env.process(self._fault_at(f.at, f.kill))
        max_time, max_events = limits.max_time, limits.max_events
        peek, step = env.peek, env.step
        while True:
            at = peek()  # the time of the next event; Infinity when none is left
            if at == Infinity:
                break
            if at > max_time:
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
            self.cluster.send("client", self.client, self.client_cap, method, rng.randrange(rows), call=call)

    def _fault_at(self, at: float, engine: str):
        yield self.env.timeout(at)
        rec = self.trace.emit(self.env.now, "fault", action="kill", engine=engine)
        self.cluster.kill(self.engines[engine], rec)

    def _operator(self):
        env, emit = self.env, self.trace.emit
        for i, step in enumerate(self.scenario.plan):
            if step.after > 0:
                yield env.timeout(step.after)
            rec = emit(env.now, "step", index=i, action=step.action, detail=_step_detail(step))
            for name in self._step_faults.get(i, ()):
                fault = emit(env.now, "fault", action="kill", engine=name, cause=[rec])
                self.cluster.kill(self.engines[name], fault)
            yield from self._do_step(step, rec)
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
                yield from self.db.backfill(step.backfill, rec)
            case SetCapStep():
                cap = step.set_cap
                cluster.override_cap(None if cap == "none" else ("auto" if cap == "auto" else Version.parse(cap)))
                self.client_cap = cluster.resolve_cap(self.client.cap)
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
                self.client_cap = cluster.resolve_cap(self.client.cap)


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
