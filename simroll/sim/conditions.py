"""The operator's conditional step: ``wait_until`` (issue 15).

An operator does not only wait fixed times: they wait until a queue is drained, an engine is
idle, the backfill has finished, or every engine runs the new release, and give up after a
timeout. :func:`wait_until` is that polling loop, as a SimPy process body the kernel runs for
the step; :func:`unmet` says which conditions do not hold now, in words the trace keeps.

Records: ``waited`` (the conditions held; ``waited`` seconds after the step began) or
``plan_failed`` (``why``, and the ``unmet`` conditions as they read at that moment), each caused
by the step's record. A failed step ends the plan: the kernel runs no further step and writes no
``plan_done``.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import simpy
from simpy.core import Infinity

from simroll.scenario.spec import WaitCondition, WaitUntilStep
from simroll.sim.broker import queue_name
from simroll.sim.engine import STOPPED, Cluster
from simroll.sim.trace import Trace


class Backfills:
    """How many backfills run now and how many have run to their end (the kernel counts them)."""

    __slots__ = ("running", "done")

    def __init__(self) -> None:
        self.running = 0
        self.done = 0


def topic_depth(cluster: Cluster, topic: str) -> int:
    """Messages ready or unacknowledged in the queues of ``topic``, on every vhost (a version-routed
    bus splits a topic's queue by version: every part counts)."""
    broker = cluster.broker
    queues = [q for q in broker.queues if q.owner is None and q.name == queue_name(q.vhost, topic)]
    ids = {id(q) for q in queues}
    n = sum(len(q.held) for q in queues)
    for eng in cluster.engines.values():
        for sub in eng.subs:
            if id(sub.queue) in ids:
                n += len(sub.unacked)
    return n


def unmet(cond: WaitCondition, cluster: Cluster, backfills: Backfills) -> list[str]:
    """The conditions of ``cond`` that do not hold now, each with what it found, in the documented order."""
    out: list[str] = []
    cluster.trace.meter.work += len(cluster.engines)  # the scans below, charged to the run's work budget
    for key, value in cond.conditions():
        if key == "queue_empty":
            n = topic_depth(cluster, value)
            if n:
                out.append(f"queue_empty {value}: {n} message{'s' if n != 1 else ''} in its queue")
        elif key == "idle":
            eng = cluster.engines[value]
            if eng.inflight or eng.backlog:
                out.append(f"idle {value}: {len(eng.inflight)} in flight, {len(eng.backlog)} prefetched")
        elif key == "backfill_done":
            if backfills.running:
                out.append(f"backfill_done: {backfills.running} backfill running")
            elif not backfills.done:
                out.append("backfill_done: no backfill has run")
        else:  # all_on
            running = [e for e in cluster.engines.values() if e.state != STOPPED and e.release is not None]
            off = [
                f"{e.name} on {e.release.name}" for e in running if e.release is not None and e.release.name != value
            ]
            if not running:
                out.append(f"all_on {value}: no engine runs")
            elif off:
                shown = ", ".join(off[:5]) + (f", ... {len(off) - 5} more" if len(off) > 5 else "")
                out.append(f"all_on {value}: {shown}")
    return out


def wait_until(
    env: simpy.Environment, trace: Trace, cluster: Cluster, step: WaitUntilStep, rec: int, backfills: Backfills
) -> Generator[Any, Any, bool]:
    """Check the step's conditions now and every ``poll`` seconds until they all hold (True, records
    ``waited``) or its ``timeout`` passes (False, records ``plan_failed``). When nothing is left to
    happen but this loop, nothing can change: a step with a timeout fails at its deadline, one without
    fails at once (it would wait for good)."""
    began = env.now
    deadline = None if step.timeout is None else began + step.timeout
    while True:
        missing = unmet(step.wait_until, cluster, backfills)
        if not missing:
            trace.emit(env.now, "waited", waited=env.now - began, cause=[rec])
            return True
        if deadline is not None and env.now >= deadline - 1e-9:
            why = f"timed out after {step.timeout:g} s"
            trace.emit(env.now, "plan_failed", why=why, unmet=missing, cause=[rec])
            return False
        if env.peek() == Infinity:  # only this loop is left: the conditions never change again
            if deadline is None:
                why = "waits for good: nothing is left to happen"
                trace.emit(env.now, "plan_failed", why=why, unmet=missing, cause=[rec])
                return False
            yield env.timeout(deadline - env.now)
            continue
        gap = step.poll if deadline is None else min(step.poll, deadline - env.now)
        yield env.timeout(gap)


__all__ = ["Backfills", "topic_depth", "unmet", "wait_until"]
