"""Flat memory: a run whose trace is not kept holds nothing per message once the message is done.

Counted, not timed: live ``Message`` objects while the run goes on, and the size of every
checker's state at the end, for a run and for one twice as long.
"""

from __future__ import annotations

import gc

from conftest import scenario

from simroll.check.invariants import make_checkers
from simroll.sim.kernel import Message, simulate
from simroll.sim.trace import Trace

# 3 engines, 1 s per message, a cast every 0.5 s: each engine gets one every 1.5 s, so at
# most 3 messages are in flight at once. Handling reads and writes a field (40 rows).
LONG = dict(
    database="{tables: {resource: [id, properties]}, rows: 40}",
    workload="""
      rate: 2.0
      arrivals: periodic
      stop: {stop}
      operations: {op: 1}
      kind: cast
      handlers: {op: {read: [props], write: [props]}}
    """,
    invariants="""
      no-lost-write: {}
      no-stranded-message: {}
      no-incompatible-delivery: {}
      bounded-imbalance: {max_wait: 5}
      schema-compatible: {}
      version-skew: {max_releases: 1}
    """,
)


def run(stop: float, probe_every: int = 0) -> tuple[list[int], int, int]:
    """Run LONG until ``stop`` with the trace neither kept nor written.

    Returns live Message objects counted every ``probe_every`` done records, the total size
    of the checkers' containers at the end, and the number of messages sent.
    """
    s = scenario(**{k: v.replace("{stop}", str(stop)) for k, v in LONG.items()})
    trace = Trace(keep=False)
    checkers = make_checkers(s.invariants.enabled())
    for c in checkers:
        trace.subscribe(c.kinds, c.observe)
    live: list[int] = []
    sent = 0

    def on_send(rec: dict) -> None:
        nonlocal sent
        sent += 1

    def on_done(rec: dict) -> None:
        if probe_every and rec["msg"] % probe_every == probe_every - 1:
            gc.collect()
            live.append(sum(1 for o in gc.get_objects() if type(o) is Message))

    trace.subscribe(("send",), on_send)
    trace.subscribe(("done",), on_done)
    sim, _ = simulate(s, trace=trace)
    assert sim.end_reason == "quiescent"
    assert all(c.count == 0 for c in checkers)
    state = sum(len(v) for c in checkers for v in vars(c).values() if isinstance(v, (dict, set, list)))
    return live, state, sent


def test_messages_are_freed_once_done():
    live, _, sent = run(stop=1500.0, probe_every=500)
    assert sent == 2999  # casts at 0.5, 1.0, ..., 1499.5
    assert len(live) == 5
    assert max(live) <= 6  # at most 3 in flight, and the one each worker just finished


def test_checker_state_does_not_grow_with_the_number_of_messages():
    _, short, sent_short = run(stop=500.0)
    _, long, sent_long = run(stop=1000.0)
    assert sent_long == 2 * sent_short + 1
    assert long == short
