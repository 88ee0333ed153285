"""Throughput of the simulator core against bare SimPy loops on the same message pattern.

    python bench/throughput.py [--json] [--quick] [--messages N] [--engines N]
                               [--handler none|light|both] [--repeat R]

The plain workload: ``--engines`` engines (default 10) on one release, no upgrade,
clients casting ``--messages`` messages (default 200,000) at Poisson arrivals to the
topic; the broker pushes each to the next engine round robin; an engine takes
``service_time`` per message. With ``--handler none`` handling a message does nothing
else; ``--handler light`` makes it read and write one field (one read and one write
record per message). All six invariants are checked online; the trace is hashed but
neither kept nor written (``keep_trace=False``). ``--handler both`` (the default) runs both.

Two baselines, the same message pattern in bare SimPy (the same arrival draws from
``random.Random(seed)``: an exponential gap rounded to 1 us, then a row; round robin; the
same service time):

* **lean** (the headline): what a SimPy user who cares about speed writes, and what simroll
  itself does: a ``collections.deque`` per consumer and one wake event, taken only when the
  consumer is idle; one timeout per arrival and one per message served.
* **store**: a ``simpy.Store`` per consumer (a put and a get event per message on top of
  the two timeouts): the baseline of earlier versions of this benchmark, kept as a second column.

With ``--handler light`` both baselines do the equivalent dictionary work per message:
read the row's field from a table of dicts and write it back (a new value), so the
comparison is of simulators, not of "database work" against none.

All three run in this process, alternately, ``--repeat`` times (default 3); the best CPU
time (``time.process_time``) and, separately, the best wall time of each is kept. The
headline ``ratio`` is simroll's rate / the lean loop's rate **on CPU time**: the figures
come from a shared 2-core machine, where wall time also measures the neighbours.
``--quick``: 20,000 messages (finishes in well under 30 s).

A benchmark, not a test: it prints figures and asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import simpy

import simroll

try:  # the house split moved it (simroll.runner before)
    from simroll.run import run_scenario
except ImportError:  # pragma: no cover - older trees, for before/after figures
    from simroll.runner import run_scenario  # type: ignore[no-redef]

SEED = 1
SERVICE_TIME = 0.1  # seconds an engine spends on one message
UTILISATION = 0.5  # arrival rate / total service capacity: queues form, but stay bounded
ROWS = 100


def arrival_rate(engines: int) -> float:
    """Operations per simulated second that keep ``engines`` engines at :data:`UTILISATION`."""
    return UTILISATION * engines / SERVICE_TIME


def stop_time_for(messages: int, rate: float, seed: int = SEED) -> float:
    """The workload's ``stop`` that lets exactly ``messages`` arrivals through.

    Replays the workload's own draws (an exponential gap rounded to 1 us, then a row) and
    puts ``stop`` halfway between the last wanted arrival and the next one.
    """
    rng = random.Random(seed)
    last = following = 0.0
    for _ in range(messages + 1):
        last, following = following, following + round(rng.expovariate(rate), 6)
        rng.randrange(ROWS)
    if following <= last:  # two arrivals at the same microsecond: let one more through
        raise ValueError(f"arrivals {messages} and {messages + 1} coincide; pick another count")
    return (last + following) / 2


def plain_scenario(engines: int, messages: int, handler: str = "none") -> simroll.Scenario:
    """The plain workload as a scenario: one release, no plan, client casts, all invariants."""
    rate = arrival_rate(engines)
    handlers: dict[str, Any] = {}
    if handler == "light":
        handlers = {"check_resource": {"read": ["props"], "write": ["props"]}}
    data = {
        "name": f"plain_{engines}x{messages}",
        "seed": SEED,
        "bus": {"delivery": "oslo"},
        "database": {"tables": {"resource": ["id", "properties"]}, "rows": ROWS},
        "releases": {
            "r1": {
                "rpc": {"endpoints": [{"version": "1.0", "methods": {"check_resource": ["resource_id"]}}]},
                "data": {"props": {"read": "resource.properties", "write": ["resource.properties"]}},
                "service_time": SERVICE_TIME,
            }
        },
        "engines": {"count": engines, "release": "r1"},
        "workload": {
            "rate": rate,
            "stop": stop_time_for(messages, rate),
            "operations": {"check_resource": 1},
            "kind": "cast",
            "handlers": handlers,
        },
        # room for every record: the default max_events would cut a large run short
        "limits": {"max_events": 6 * messages + 10 * engines + 1000},
        "invariants": {
            "no-lost-write": {},
            "no-stranded-message": {},
            "no-incompatible-delivery": {},
            "bounded-imbalance": {"max_wait": 5.0},
            "schema-compatible": {},
            "version-skew": {"max_releases": 1},
        },
    }
    return simroll.load_scenario_text(json.dumps(data), "<plain workload>")


def check_complete(result: simroll.RunResult) -> None:
    """The plain workload must run to its end and hold every invariant, or the figures mean nothing."""
    if result.limited:
        raise AssertionError(f"the plain workload stopped early: {result.end_reason}")
    if not result.ok:
        raise AssertionError(f"the plain workload broke an invariant: {result.violated}")


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds of this process, value) of ``fn()``."""
    w0, c0 = time.perf_counter(), time.process_time()
    value = fn()
    return time.perf_counter() - w0, time.process_time() - c0, value


def run_simroll(scenario: simroll.Scenario, trace_path: str | None = None) -> simroll.RunResult:
    """One run of a loaded scenario, the trace hashed (and streamed to ``trace_path``), not kept."""
    return run_scenario(scenario, keep_trace=False, trace_path=trace_path)


def _table() -> list[dict[str, Any]]:
    """The baselines' stand-in for the database: one dict per row, as simroll's ``resource`` table."""
    return [{"id": row, "properties": 0} for row in range(ROWS)]


def run_lean_simpy(engines: int, messages: int, stop: float, handler: str = "none") -> int:
    """The same message pattern in lean SimPy (a deque per consumer, one wake event); messages handled."""
    rate = arrival_rate(engines)
    env = simpy.Environment()
    rng = random.Random(SEED)
    queues: list[deque[tuple[int, int]]] = [deque() for _ in range(engines)]
    wakes: list[simpy.Event | None] = [None] * engines
    table = _table()
    light = handler == "light"
    handled = 0

    def producer():
        timeout, expovariate, randrange = env.timeout, rng.expovariate, rng.randrange
        sent = 0
        while True:
            d = round(expovariate(rate), 6)
            if env.now + d >= stop:
                return
            yield timeout(d)
            k = sent % engines
            queues[k].append((sent, randrange(ROWS)))
            wake = wakes[k]
            if wake is not None:
                wakes[k] = None
                wake.succeed()
            sent += 1

    def consumer(k: int):
        nonlocal handled
        queue, timeout = queues[k], env.timeout
        while True:
            if not queue:
                wake = wakes[k] = env.event()
                yield wake
                continue
            msg_id, row = queue.popleft()
            if light:  # read the field, write it back (a new value): one read and one write
                rec = table[row]
                rec["properties"] = rec["properties"] + msg_id
            yield timeout(SERVICE_TIME)
            handled += 1

    env.process(producer())
    for k in range(engines):
        env.process(consumer(k))
    env.run()
    return handled


def run_store_simpy(engines: int, messages: int, stop: float, handler: str = "none") -> int:
    """The same message pattern with a ``simpy.Store`` per consumer (the old baseline); messages handled."""
    rate = arrival_rate(engines)
    env = simpy.Environment()
    rng = random.Random(SEED)
    stores = [simpy.Store(env) for _ in range(engines)]
    table = _table()
    light = handler == "light"
    handled = 0

    def producer():
        sent = 0
        while True:
            d = round(rng.expovariate(rate), 6)
            if env.now + d >= stop:
                return
            yield env.timeout(d)
            stores[sent % engines].put((sent, rng.randrange(ROWS)))
            sent += 1

    def consumer(store: simpy.Store):
        nonlocal handled
        while True:
            msg_id, row = yield store.get()
            if light:
                rec = table[row]
                rec["properties"] = rec["properties"] + msg_id
            yield env.timeout(SERVICE_TIME)
            handled += 1

    env.process(producer())
    for s in stores:
        env.process(consumer(s))
    env.run()
    return handled


def measure(engines: int, messages: int, handler: str, repeat: int) -> dict[str, Any]:
    """Best-of-``repeat`` rates of simroll and the two bare SimPy loops on the same pattern, and ratios.

    The three alternate, so that a busy spell of the machine slows them alike; the best CPU
    time (and, separately, the best wall time) of each is kept. ``ratio`` (the headline) is
    simroll's rate / the lean loop's on CPU time; ``ratio_store`` the same against the Store
    loop; ``wall_ratio`` / ``wall_ratio_store`` the same on wall time.
    """
    scenario = plain_scenario(engines, messages, handler)
    stop = scenario.workload.stop
    inf = float("inf")
    best = {k: [inf, inf] for k in ("simroll", "lean", "store")}  # [wall, cpu]
    result = None

    def keep(key: str, wall: float, cpu: float) -> None:
        best[key][0], best[key][1] = min(best[key][0], wall), min(best[key][1], cpu)

    for _ in range(repeat):
        wall, cpu, result = timed(lambda: run_simroll(scenario))
        keep("simroll", wall, cpu)
        for key, fn in (("lean", run_lean_simpy), ("store", run_store_simpy)):
            wall, cpu, handled = timed(lambda fn=fn: fn(engines, messages, stop, handler))
            if handled != messages:
                raise AssertionError(f"{key} SimPy handled {handled} messages, expected {messages}")
            keep(key, wall, cpu)
    assert result is not None
    check_complete(result)
    (sw, sc), (lw, lc), (tw, tc) = best["simroll"], best["lean"], best["store"]
    return {
        "engines": engines,
        "messages": messages,
        "handler": handler,
        "repeat": repeat,
        "simroll_cpu_s": round(sc, 3),
        "lean_cpu_s": round(lc, 3),
        "store_cpu_s": round(tc, 3),
        "simroll_msgs_per_cpu_s": round(messages / sc),
        "lean_msgs_per_cpu_s": round(messages / lc),
        "store_msgs_per_cpu_s": round(messages / tc),
        "ratio": round(lc / sc, 3),
        "ratio_store": round(tc / sc, 3),
        "simroll_wall_s": round(sw, 3),
        "lean_wall_s": round(lw, 3),
        "store_wall_s": round(tw, 3),
        "wall_ratio": round(lw / sw, 3),
        "wall_ratio_store": round(tw / sw, 3),
        "trace_events": result.events,
        "trace_sha256": result.trace_sha256,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quick", action="store_true", help="20,000 messages (unless --messages is given)")
    p.add_argument("--messages", type=int, default=None, help="messages sent (default 200000; --quick 20000)")
    p.add_argument("--engines", type=int, default=10, help="engines (default 10)")
    p.add_argument(
        "--handler",
        choices=("none", "light", "both"),
        default="both",
        help="what handling a message does: nothing, read and write one field, or both in turn",
    )
    p.add_argument("--repeat", type=int, default=3, help="runs of each, best kept (default 3)")
    args = p.parse_args(argv)
    messages = args.messages or (20_000 if args.quick else 200_000)
    handlers = ("none", "light") if args.handler == "both" else (args.handler,)
    rows = [measure(args.engines, messages, h, args.repeat) for h in handlers]
    info = {
        "python": platform.python_version(),
        "simpy": getattr(simpy, "__version__", ""),
        "simroll": getattr(simroll, "__file__", ""),
        "cpus": os.cpu_count(),
        "note": "CPU time (time.process_time), best of repeat, on a shared 2-core machine",
    }
    if args.json:
        print(json.dumps({"machine": info, "rows": rows}, indent=2))
        return 0
    print(
        f"plain workload: {args.engines} engines, {messages:,} messages, best of {args.repeat}; "
        f"messages per CPU second (figures from a shared 2-core machine)"
    )
    print(
        f"  {'handler':8} {'simroll':>10} {'lean SimPy':>11} {'Store SimPy':>12} {'ratio (lean)':>13} "
        f"{'ratio (Store)':>14} {'wall ratio (lean)':>18} {'events':>9}"
    )
    for r in rows:
        print(
            f"  {r['handler']:8} {r['simroll_msgs_per_cpu_s']:>10,} {r['lean_msgs_per_cpu_s']:>11,} "
            f"{r['store_msgs_per_cpu_s']:>12,} {r['ratio']:>13} {r['ratio_store']:>14} {r['wall_ratio']:>18} "
            f"{r['trace_events']:>9,}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
