"""Each invariant on small hand-built traces: violated, held, and the boundary.

Records are the dicts the kernel writes (``i``, ``t``, ``kind`` and the kind's keys; see
simroll/sim/kernel.py), in the kernel's order: a ``reject`` follows its ``recv`` at once,
and the casts a handling sends come just before its ``done``. Expected values are worked
out by hand in the comments.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import simroll
from simroll.check.invariants import (
    INVARIANTS,
    BoundedImbalance,
    Coverage,
    InvariantResult,
    NoIncompatibleDelivery,
    NoLostUpdate,
    NoLostWrite,
    NoRefusedSend,
    NoStrandedMessage,
    OperationsComplete,
    SchemaCompatible,
    VersionSkew,
    Violation,
    make_checkers,
)
from simroll.errors import ScenarioError
from simroll.run import run_scenario
from simroll.scenario.spec import ImbalanceSpec
from simroll.scenario.versions import Version, is_compatible

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


class T:
    """A hand-built trace: ``tr(t, kind, **keys)`` appends a record numbered from 0 and returns its number."""

    def __init__(self) -> None:
        self.recs: list[dict] = []

    def __call__(self, t: float, kind: str, **keys) -> int:
        self.recs.append({"i": len(self.recs), "t": t, "kind": kind, **keys})
        return len(self.recs) - 1

    # the kernel's records, with its keys
    def start(self, t, engine, release="r1", workers=1, cap=None):
        return self(t, "start", engine=engine, release=release, workers=workers, cap=cap, cause=[])

    def send(self, t, msg, engine="client", method="op", version="1.0", queue="engine", call=False, row=0):
        return self(t, "send", engine=engine, msg=msg, method=method, version=version, queue=queue, call=call, row=row)

    def recv(self, t, engine, msg, wait=0.0, cause=()):
        return self(t, "recv", engine=engine, msg=msg, wait=wait, cause=list(cause))

    def done(self, t, engine, msg, ok=True):
        return self(t, "done", engine=engine, msg=msg, ok=ok)

    def reject(self, t, engine, msg, error="UnsupportedVersion", method="op", version="1.1", call=False):
        return self(
            t, "reject", engine=engine, msg=msg, error=error, method=method, version=version, call=call, cause=[]
        )

    def read(self, t, engine, msg, field="f", row=0, loc="a.x", value=None, cause=()):
        return self(t, "read", engine=engine, msg=msg, field=field, row=row, loc=loc, value=value, cause=list(cause))

    def write(self, t, engine, msg, field="f", row=0, value="v", locs=("a.x",), trig=()):
        return self(
            t, "write", engine=engine, msg=msg, field=field, row=row, value=value, locs=list(locs), trig=list(trig)
        )

    def end(self, t, reason="quiescent"):
        return self(t, "end", reason=reason, points=0)


def feed(checker, recs):
    """Give ``checker`` the records of the kinds it subscribes to, as the trace does."""
    for r in recs:
        if r["kind"] in checker.kinds:
            checker.observe(r)
    return checker


def test_registry_names_and_opt_in_defaults():
    assert list(INVARIANTS) == [
        "no-lost-write",
        "no-stranded-message",
        "no-incompatible-delivery",
        "bounded-imbalance",
        "schema-compatible",
        "version-skew",
        "no-refused-send",
        "operations-complete",
        "no-lost-update",
        "no-duplicate-effect",
        "plan-completes",
    ]
    for name, cls in INVARIANTS.items():
        assert cls.name == name and cls.kinds


# ============================================================================ no-lost-write
def _nlw_base():
    tr = T()
    tr(0.0, "init", field="f", locs=["a.x"], rows=1)  # #0: latest f[0] = 'init0'
    tr.write(1.0, "e1", 0, value="v1")  # #1: latest f[0] = 'v1'
    return tr


def test_no_lost_write_stale_read_is_violated():
    tr = _nlw_base()
    tr.read(2.0, "e2", 1, value="init0", loc="a.x")  # #2: got init0, latest is v1
    c = feed(NoLostWrite(), tr.recs)
    assert c.count == 1 and c.checked == 1 and not c.vacuous
    v = c.violations[0]
    assert (v.event, v.subject, v.time) == (2, "f[0]", 2.0)
    assert "latest acknowledged write is 'v1' (record 1)" in v.message
    assert 1 in v.causes
    assert c.score() >= 1e6


def test_no_lost_write_read_of_the_latest_holds():
    tr = _nlw_base()
    tr.read(2.0, "e2", 1, value="v1")
    c = feed(NoLostWrite(), tr.recs)
    assert (c.count, c.checked, c.vacuous) == (0, 1, False)
    assert c.score() < 1e6


def test_no_lost_write_boundary_same_instant_by_record_order():
    # the read just before the write (same t, lower number) sees init0: held;
    # the read just after it (same t, higher number) must see v1
    tr = T()
    tr(0.0, "init", field="f", locs=["a.x"], rows=1)
    tr.read(1.0, "e2", 5, value="init0")  # #1, before the write
    tr.write(1.0, "e1", 0, value="v1")  # #2
    tr.read(1.0, "e3", 6, value="init0")  # #3, after it: stale
    c = feed(NoLostWrite(), tr.recs)
    assert c.count == 1 and c.violations[0].event == 3 and c.checked == 2


def test_no_lost_write_final_state():
    tr = _nlw_base()
    tr(3.0, "final", field="f", loc="a.x", exists=True, values=["v1"])  # held
    tr(3.0, "final", field="f", loc="b.y", exists=False, values=[None])  # violated: dropped, holds nothing
    c = feed(NoLostWrite(), tr.recs)
    assert c.count == 1 and c.checked == 2
    assert "b.y (dropped) holds nothing" in c.violations[0].message


def test_no_lost_write_vacuous_without_reads():
    c = feed(NoLostWrite(), _nlw_base().recs)  # written, never read back, no final state
    assert (c.count, c.checked, c.vacuous) == (0, 0, True)
    tr = T()
    tr.read(1.0, "e1", 0, field="g", value=None)  # a field nobody initialised or wrote: nothing to compare
    assert feed(NoLostWrite(), tr.recs).vacuous


def test_no_lost_write_backfill_copy_over_newer_value_and_near_miss():
    tr = T()
    tr(0.0, "init", field="f", locs=["a.x"], rows=1)
    tr(1.0, "bf_read", engine="backfill", row=0, loc="a.x", value="init0", cause=[])
    tr.write(1.5, "e1", 0, value="v1", locs=["a.x", "b.y"])  # in the copy's gap; b.y is a copy of f
    tr(2.0, "bf_write", engine="backfill", row=0, loc="b.y", value="init0", trig=[], cause=[1])
    c2 = feed(NoLostWrite(), tr.recs)
    assert c2.score() == 1.0  # one stale copy (b.y row 0), before anyone reads it
    tr.read(3.0, "e2", 1, loc="b.y", value="init0")
    c = feed(NoLostWrite(), tr.recs)
    assert c.count == 1
    # near misses: a write 0.5 s before the copy's read (it got v1, nothing stale): 1 / (1 + 0.5);
    # a write 0.25 s after the copy was written: 1 / (1 + 0.25)
    tr = T()
    tr(0.0, "init", field="f", locs=["a.x"], rows=1)
    tr.write(0.5, "e1", 0, value="v1", locs=["a.x", "b.y"])
    tr(1.0, "bf_read", engine="backfill", row=0, loc="a.x", value="v1", cause=[])
    tr(2.0, "bf_write", engine="backfill", row=0, loc="b.y", value="v1", trig=[], cause=[1])
    c = feed(NoLostWrite(), tr.recs)
    assert c.count == 0 and c.score() == pytest.approx(1 / 1.5)
    tr(2.25, "write", engine="e1", msg=1, field="f", row=0, value="v2", locs=["a.x", "b.y"], trig=[])
    assert feed(NoLostWrite(), tr.recs).score() == pytest.approx(1 / 1.25)


# ============================================================================ no-stranded-message
def test_no_stranded_message_left_lost_expired_are_violations():
    tr = T()
    tr.send(0.0, 0)
    tr.send(0.0, 1, call=True)
    tr.send(0.0, 2)
    tr(1.0, "lost", engine="e1", msg=0, cause=[0])
    tr(61.0, "expire", msg=1, queue="engine", expired_at=60.0, cause=[1])
    tr(62.0, "left", msg=2, queue="engine", version="1.0", cause=[2])
    c = feed(NoStrandedMessage(), tr.recs)
    assert c.count == 3 and c.checked == 3
    assert [
        "lost in flight" in c.violations[0].message,
        "expired" in c.violations[1].message,
        "never taken" in c.violations[2].message,
    ] == [True] * 3
    assert c.violations[0].engines == ("e1",) and c.violations[1].engines == ()


def test_no_stranded_message_taken_holds_and_vacuous_without_messages():
    tr = T()
    tr.send(0.0, 0)
    tr.recv(2.5, "e1", 0, wait=2.5)
    tr.done(3.0, "e1", 0)
    c = feed(NoStrandedMessage(), tr.recs)
    assert (c.count, c.checked, c.vacuous) == (0, 1, False)
    assert c.score() == 0.0  # a long wait is not a near miss: no engine that took it left
    assert feed(NoStrandedMessage(), [])
    assert NoStrandedMessage().vacuous


def test_no_stranded_message_score_counts_work_in_flight_at_a_stop():
    tr = T()
    tr(1.0, "stop", engine="e1", inflight=[3, 4], cause=[])
    assert feed(NoStrandedMessage(), tr.recs).score() == 2000.0


def _last_taker_leaves(arrival: float, also_e2: bool = False, kill: bool = False) -> T:
    """e1 takes two 1.0 messages, the second arriving at ``arrival`` (sent at 2.0, held on the
    wire), then leaves at 5.0; ``also_e2``: e2 took a 1.0 message too and stays."""
    tr = T()
    tr.start(0.0, "e1")
    tr.start(0.0, "e2")
    tr.send(1.0, 0)
    tr.recv(1.0, "e2" if also_e2 else "e1", 0)
    tr.send(2.0, 1)
    tr.recv(max(arrival, 2.0) + 0.5, "e1", 1, wait=0.5)  # arrived at `arrival`, taken 0.5 s later
    tr.send(3.0, 2, version="2.0")  # another version: its own key
    tr.recv(3.0, "e2", 2)
    if kill:
        tr(5.0, "kill", engine="e1", inflight=[], cause=[])
    else:
        tr(5.0, "stop", engine="e1", inflight=[], cause=[])
    return tr


def test_no_stranded_message_score_is_the_slack_before_the_last_taker_leaves():
    # the path of a delay on the wire: message 1 arrives later and later, then after e1 is gone
    scores = [feed(NoStrandedMessage(), _last_taker_leaves(a).recs).score() for a in (2.0, 3.0, 4.0, 5.0)]
    assert scores == pytest.approx([1 / 4, 1 / 3, 1 / 2, 1.0])  # 1 / (1 + slack): slack 3, 2, 1, 0 s
    assert feed(NoStrandedMessage(), _last_taker_leaves(3.0, kill=True).recs).score() == pytest.approx(1 / 3)
    # e2, which took a 1.0 message too, is still there: e1 was not the last, no near miss
    assert feed(NoStrandedMessage(), _last_taker_leaves(4.0, also_e2=True).recs).score() == 0.0


# ============================================================================ no-incompatible-delivery
def test_no_incompatible_delivery_reject_is_a_violation():
    tr = T()
    tr.start(0.0, "e1")
    tr.send(1.0, 0, version="1.1", call=True)
    tr.recv(1.0, "e1", 0)
    tr.reject(1.0, "e1", 0, call=True)
    c = feed(NoIncompatibleDelivery(), tr.recs)
    assert c.count == 1 and c.checked == 1
    assert "raised UnsupportedVersion; the caller got the error" in c.violations[0].message


def test_no_incompatible_delivery_held_vacuous_and_mixed_traffic_score():
    tr = T()
    tr.start(0.0, "e1", "r1")
    tr.send(0.5, 0)  # one release: no score
    tr.start(1.0, "e2", "r2")
    tr.send(1.5, 1)  # two releases: +1
    tr(2.0, "stopped", engine="e2", release="r2")
    tr.send(2.5, 2)  # one again: no score
    c = feed(NoIncompatibleDelivery(), tr.recs)
    assert c.score() == 1.0 and c.vacuous  # nothing was delivered
    tr.recv(3.0, "e1", 2)
    c = feed(NoIncompatibleDelivery(), tr.recs)
    assert (c.count, c.checked, c.vacuous) == (0, 1, False)
    tr2 = T()
    tr2.start(0.0, "e1", "r1")
    tr2.start(0.0, "e2", "r2")
    tr2(1.0, "kill", engine="e2", inflight=[], cause=[])
    tr2.send(1.5, 0)
    assert feed(NoIncompatibleDelivery(), tr2.recs).score() == 0.0  # a kill ends mixing too


# ============================================================================ bounded-imbalance
def _starved(bound: float, e2_idle_from: float = 0.5):
    """engine-1 holds m2 in its backlog from t=1 to t=10 while engine-2 (same release, accepts 1.0,
    as its handling of m1 showed) is idle from ``e2_idle_from`` on. Counted wait of m2:
    [1, 10] intersected with [e2_idle_from, 10] = 10 - max(1, e2_idle_from)."""
    tr = T()
    tr.start(0.0, "engine-1")
    tr.start(0.0, "engine-2")
    tr.send(0.0, 0)
    tr.recv(0.0, "engine-1", 0)
    tr.send(0.0, 1)
    tr.recv(0.0, "engine-2", 1)
    tr.send(1.0, 2)  # pushed to engine-1's backlog at t=1
    tr.done(e2_idle_from, "engine-2", 1)
    tr.done(10.0, "engine-1", 0)
    tr.recv(10.0, "engine-1", 2, wait=9.0)
    tr.done(10.5, "engine-1", 2)
    return tr, feed(BoundedImbalance(bound), tr.recs)


def test_bounded_imbalance_starvation_is_violated():
    tr, c = _starved(5.0)  # counted 10 - 1 = 9 > 5
    assert c.count == 1
    v = c.violations[0]
    assert v.event == 9 and v.subject == "m2" and v.engines == ("engine-1", "engine-2")
    assert "waited 9.000 s for engine-1, 9.000 s of it while engine-2" in v.message
    # m1 and m2 had another engine of r1 running when taken; m0 did not count: nobody had yet
    # been seen taking a 1.0 (r1 learns it from m0's take, once the next record shows no rejection)
    assert c.checked == 2
    assert c.score() == pytest.approx(1e6 + 9.0)


def test_bounded_imbalance_boundary_exactly_at_the_bound():
    assert _starved(9.0)[1].count == 0  # counted 9 == bound: held
    assert _starved(8.999)[1].count == 1  # just under 9: violated
    # engine-2 idle from 5.0 on: counted = 10 - 5 = 5, exactly the bound of 5 -> held; from 4.999 -> violated
    assert _starved(5.0, e2_idle_from=5.0)[1].count == 0
    c = _starved(5.0, e2_idle_from=4.999)[1]
    assert c.count == 1 and c.score() == pytest.approx(1e6 + 5.001)


def test_bounded_imbalance_overload_of_identical_engines_holds():
    # the false red, by hand: engine-2 finishes a message and takes the next at the same
    # instant (t=2, 4, ...), so it is never idle for a positive time; m9 waits 6 s for engine-1.
    tr = T()
    tr.start(0.0, "engine-1")
    tr.start(0.0, "engine-2")
    tr.send(0.0, 0)
    tr.recv(0.0, "engine-1", 0)
    tr.send(0.0, 1)
    tr.recv(0.0, "engine-2", 1)
    tr.send(0.0, 9)  # to engine-1's backlog
    prev = 1
    for k, t in enumerate((2.0, 4.0, 6.0)):  # engine-2 works back to back
        tr.send(t, 10 + k)
        tr.done(t, "engine-2", prev)
        tr.recv(t, "engine-2", 10 + k, wait=0.0)
        prev = 10 + k
    tr.done(6.0, "engine-1", 0)
    tr.recv(6.0, "engine-1", 9, wait=6.0)
    c = feed(BoundedImbalance(5.0), tr.recs)
    assert c.count == 0 and c.score() == 0.0 and not c.vacuous
    assert c.counted_wait(0.0, 6.0, "engine-1", None) == (0.0, [])


def test_bounded_imbalance_other_engine_that_cannot_take_the_version_does_not_count():
    # engine-1 on "new" (1.1) takes 1.1 work; engine-2 on "old" showed it takes 1.0 and rejected 1.1
    # (UnsupportedVersion): its idle time does not count against a 1.1 message (counted 0), but does
    # against a 1.0 message, since "new" took a 1.1 (the accepted minors of a major are a down-set).
    tr = T()
    tr.start(0.0, "engine-1", "new")
    tr.start(0.0, "engine-2", "old")
    tr.send(0.0, 0, version="1.1")
    tr.recv(0.0, "engine-1", 0)  # new takes 1.1
    tr.send(0.0, 1, version="1.0")
    tr.recv(0.0, "engine-2", 1)
    tr.done(0.1, "engine-2", 1)  # old takes 1.0
    tr.send(0.1, 2, version="1.1")
    tr.recv(0.1, "engine-2", 2)
    tr.reject(0.1, "engine-2", 2)  # old refuses 1.1; idle from 0.1
    tr.send(1.0, 3, version="1.1")  # waits for engine-1
    tr.done(10.0, "engine-1", 0)
    tr.recv(10.0, "engine-1", 3, wait=9.0)
    c = feed(BoundedImbalance(5.0), tr.recs)
    assert c.count == 0
    assert c.accepts("old", Version(1, 0)) and not c.accepts("old", Version(1, 1))
    assert c.accepts("new", Version(1, 0)) and c.accepts("new", Version(1, 1))
    assert not c.accepts("new", Version(2, 0))
    # now a 1.0 message waiting for engine-2 while engine-1 ("new", which took 1.1) is idle from 10.5
    tr.done(10.5, "engine-1", 3)
    tr.send(11.0, 4, version="1.0")
    tr.recv(11.0, "engine-2", 5)  # engine-2 busy with something from 11 to 20
    tr.done(20.0, "engine-2", 5)
    tr.recv(20.0, "engine-2", 4, wait=9.0)  # counted [11, 20] = 9
    c = feed(BoundedImbalance(5.0), tr.recs)
    assert c.count == 1 and "9.000 s of it while engine-1" in c.violations[0].message


def test_bounded_imbalance_other_rejections_teach_the_version():
    # a NoSuchMethod (or TypeError) rejection still shows the release accepts the version
    tr = T()
    tr.start(0.0, "engine-1")
    tr.start(0.0, "engine-2")
    tr.send(0.0, 0)
    tr.recv(0.0, "engine-2", 0)
    tr.reject(0.0, "engine-2", 0, error="NoSuchMethod", version="1.0")
    c = feed(
        BoundedImbalance(5.0),
        tr.recs
        + [
            {
                "i": 99,
                "t": 0.0,
                "kind": "send",
                "engine": "client",
                "msg": 1,
                "method": "op",
                "version": "1.0",
                "queue": "engine",
                "call": False,
                "row": 0,
            }
        ],
    )
    assert c.accepts("r1", Version(1, 0))


def test_bounded_imbalance_own_queue_stopped_engines_and_workers():
    # m2 sits in engine-1's own queue (fanout): nobody else could take it -> neither checked nor counted
    tr = T()
    tr.start(0.0, "engine-1")
    tr.start(0.0, "engine-2")
    tr.send(0.0, 0)
    tr.recv(0.0, "engine-1", 0)
    tr.send(0.0, 1)
    tr.recv(0.0, "engine-2", 1)
    tr.done(0.5, "engine-2", 1)
    tr.send(1.0, 2, engine="engine-2", queue="engine.engine-1")
    tr.done(10.0, "engine-1", 0)
    tr.recv(10.0, "engine-1", 2, wait=9.0)
    c = feed(BoundedImbalance(5.0), tr.recs)
    assert c.count == 0 and c.checked == 1  # m1 only (m0: r1 not yet known to take 1.0; m2: own queue)
    # engine-2 stops at t=3 (idle [0.5, 3]), so a topic message waiting [1, 10] counts 2 s only
    tr, c = _starved(5.0)
    recs = [r for r in tr.recs if r["i"] < 8]
    recs.append({"i": 8, "t": 3.0, "kind": "stop", "engine": "engine-2", "inflight": [], "cause": []})
    recs.append({"i": 9, "t": 10.0, "kind": "done", "engine": "engine-1", "msg": 0, "ok": True})
    recs.append({"i": 10, "t": 10.0, "kind": "recv", "engine": "engine-1", "msg": 2, "wait": 9.0, "cause": []})
    c = feed(BoundedImbalance(1.9), recs)
    assert c.count == 1 and "2.000 s of it" in c.violations[0].message
    assert feed(BoundedImbalance(2.0), recs).count == 0
    # two workers: engine-2 busy with one message still has a free worker, so it counts as idle
    tr = T()
    tr.start(0.0, "engine-1")
    tr.start(0.0, "engine-2", workers=2)
    tr.send(0.0, 0)
    tr.recv(0.0, "engine-1", 0)
    tr.send(0.0, 1)
    tr.recv(0.0, "engine-2", 1)  # 1 of 2 workers busy until 20
    tr.send(1.0, 2)
    tr.done(10.0, "engine-1", 0)
    tr.recv(10.0, "engine-1", 2, wait=9.0)  # engine-2 had a free worker all of [1, 10]: 9 s
    assert feed(BoundedImbalance(5.0), tr.recs).count == 1


def test_bounded_imbalance_kill_and_restart():
    # engine-2 killed at 2 (was idle from 0.5): counts [1, 2]; restarted at 6 on r1: counts [6, 10]
    tr = T()
    tr.start(0.0, "engine-1")
    tr.start(0.0, "engine-2")
    tr.send(0.0, 0)
    tr.recv(0.0, "engine-1", 0)
    tr.send(0.0, 1)
    tr.recv(0.0, "engine-2", 1)
    tr.done(0.5, "engine-2", 1)
    tr.send(1.0, 2)
    tr(2.0, "kill", engine="engine-2", inflight=[], cause=[])
    tr.start(6.0, "engine-2")
    tr.done(10.0, "engine-1", 0)
    tr.recv(10.0, "engine-1", 2, wait=9.0)  # counted 1 + 4 = 5
    assert feed(BoundedImbalance(5.0), tr.recs).count == 0
    c = feed(BoundedImbalance(4.99), tr.recs)
    assert c.count == 1 and "5.000 s of it" in c.violations[0].message


def test_bounded_imbalance_vacuous_with_one_engine():
    tr = T()
    tr.start(0.0, "engine-1")
    tr.send(0.0, 0)
    tr.recv(0.0, "engine-1", 0)
    tr.send(0.0, 1)
    tr.done(9.0, "engine-1", 0)
    tr.recv(9.0, "engine-1", 1, wait=9.0)
    c = feed(BoundedImbalance(5.0), tr.recs)
    assert (c.count, c.checked, c.vacuous) == (0, 0, True)


def test_bounded_imbalance_forgets_idle_time_no_message_can_count():
    tr, c = _starved(5.0)
    tr.end(11.0)
    c = feed(BoundedImbalance(5.0), tr.recs)
    assert c.closed == [] and c.msgs == {}


OVERLOAD = """
name: overload
seed: 1
bus: {{delivery: oslo}}
database: {{tables: {{t: [c]}}, rows: 4}}
releases:
  r1:
    rpc: {{endpoints: [{{version: "1.0", methods: {{op: [x]}}}}]}}
    service_time: 0.3
engines: {{count: 2, release: r1}}
workload: {{rate: {rate}, arrivals: {arrivals}, stop: 40, operations: {{op: 1}}, kind: cast}}
invariants:
  bounded-imbalance: {{max_wait: 5}}
"""


@pytest.mark.parametrize("rate, arrivals", [(8, "periodic"), (10, "periodic"), (20, "periodic"), (8, "poisson")])
def test_bounded_imbalance_regression_overload_is_not_imbalance(rate, arrivals):
    # issue 12: two identical engines, 0.3 s a message, 8/s arrive (capacity 6.67/s): m202 waited
    # 5.05 s and the old checker said engine-2 "had capacity" although it never idled
    res = run_scenario(simroll.load_scenario_text(OVERLOAD.format(rate=rate, arrivals=arrivals)))
    waits = [r["wait"] for r in res.records if r["kind"] == "recv"]
    assert max(waits) > 5.0  # overloaded: messages wait longer than the bound
    assert res.ok, [v.message for v in res.violations][:3]
    assert res.scores["bounded-imbalance"] < 5.0


def _counted_waits_by_brute_force(scenario, recs):
    """Every topic message's counted wait, recomputed the slow way: each engine's idle intervals
    (running, a free worker) from the whole trace, and which versions a release accepts from the
    scenario's endpoints (oslo's rule), not learnt."""
    eps = {n: [Version.parse(ep.version) for ep in r.rpc.endpoints] for n, r in scenario.releases.items()}
    sent = {r["msg"]: r for r in recs if r["kind"] == "send"}
    intervals, rel, busy, workers, idle, out = {}, {}, {}, {}, {}, []

    def accepts(release, v):
        return any(is_compatible(x, v) for x in eps[release])

    for r in recs:
        k, e = r["kind"], r.get("engine")
        if k == "start":
            rel[e], busy[e], workers[e], idle[e] = r["release"], 0, r["workers"], r["t"]
        elif k in ("stop", "kill"):
            if e in idle:
                intervals.setdefault(e, []).append((idle.pop(e), r["t"], rel[e]))
            rel.pop(e, None)
            busy[e] = 0 if k == "kill" else busy[e]
        elif k == "recv":
            v, lo, hi = Version.parse(sent[r["msg"]]["version"]), r["t"] - r["wait"], r["t"]
            if not sent[r["msg"]]["queue"].endswith("." + e):
                spans = [
                    (max(a, lo), min(b, hi))
                    for o, iv in intervals.items()
                    if o != e
                    for a, b, rr in iv
                    if b > lo and a < hi and accepts(rr, v)
                ]
                spans += [(max(a, lo), hi) for o, a in idle.items() if o != e and a < hi and accepts(rel[o], v)]
                total, reach = 0.0, lo
                for a, b in sorted(spans):
                    if b > reach:
                        total, reach = total + b - max(a, reach), b
                out.append(total)
            busy[e] += 1
            if busy[e] >= workers[e] and e in idle:
                intervals.setdefault(e, []).append((idle.pop(e), r["t"], rel[e]))
        elif k in ("done", "reject"):
            busy[e] = max(0, busy[e] - 1)
            if e in rel and e not in idle and busy[e] < workers[e]:
                idle[e] = r["t"]
    return out


@pytest.mark.parametrize("name", ["single_upgraded_starvation", "patterns/add_column_one_release"])
def test_bounded_imbalance_agrees_with_a_brute_force_oracle(name):
    # the founding starvation scenario (violated: engine-1 takes all 1.1 work plus its share of 1.0)
    # and a pattern whose new release takes a while to show what it accepts
    s = simroll.load_scenario(SCENARIOS / f"{name}.yaml")
    res = run_scenario(s)
    slow = _counted_waits_by_brute_force(s, res.records)
    bound = 15.0
    [known] = make_checkers({"bounded-imbalance": ImbalanceSpec(max_wait=bound)}, s)  # endpoints given
    learnt = BoundedImbalance(bound)  # what a release accepts learnt from the trace
    feed(known, res.records)
    feed(learnt, res.records)
    assert known._score == pytest.approx(max(slow), abs=1e-9)
    assert known.count == sum(1 for w in slow if w > bound)
    assert learnt._score <= known._score and learnt.count <= known.count
    if name == "single_upgraded_starvation":
        assert known.count == learnt.count > 0 and max(slow) > 2 * bound
    else:
        assert learnt._score < known._score  # a release not yet seen taking 1.x: its idle time not counted yet


def test_bounded_imbalance_endpoints_given():
    c = BoundedImbalance(5.0, endpoints={"old": ["1.3"], "new": ["2.0", "1.3"], "odd": ["x"]})
    assert c.accepts("old", Version(1, 2)) and c.accepts("old", Version(1, 3))
    assert not c.accepts("old", Version(1, 4)) and not c.accepts("old", Version(2, 0))
    assert c.accepts("new", Version(2, 0)) and c.accepts("new", Version(1, 0)) and not c.accepts("odd", Version(1, 0))
    assert c.accepts("anything", None)  # a message whose version the trace does not give: any release


# ============================================================================ schema-compatible
def test_schema_compatible():
    tr = T()
    tr.read(1.0, "e1", 0, value="init0")
    tr.write(2.0, "e1", 0)
    c = feed(SchemaCompatible(), tr.recs)
    assert (c.count, c.checked, c.vacuous) == (0, 2, False)
    tr(3.0, "schema_error", engine="e2", msg=1, op="read", locs=["a.gone"], cause=[0])
    c = feed(SchemaCompatible(), tr.recs)
    assert c.count == 1 and c.checked == 3
    assert c.violations[0].message == "e2 tried to read a.gone, which does not exist"
    assert c.violations[0].causes == (0,)
    assert SchemaCompatible().vacuous


# ============================================================================ version-skew
def test_version_skew_boundary_and_violation():
    tr = T()
    tr.start(0.0, "e1", "r1")
    tr.start(0.0, "e2", "r1")
    tr.start(1.0, "e3", "r2")  # 2 releases: exactly the bound of 2, held
    c = feed(VersionSkew(2), tr.recs)
    assert (c.count, c.checked, c.vacuous) == (0, 3, False) and c.score() == 2.0
    tr.start(2.0, "e4", "r3")  # 3 releases running: violated
    c = feed(VersionSkew(2), tr.recs)
    assert c.count == 1 and c.violations[0].message.startswith("3 releases running at once (r1, r2, r3)")
    assert c.violations[0].causes == (0, 1, 2, 3)


def test_version_skew_a_stop_or_kill_just_before_holds():
    tr = T()
    tr.start(0.0, "e1", "r1")
    tr.start(1.0, "e3", "r2")
    tr(2.0, "stopped", engine="e1", release="r1")
    tr.start(2.0, "e4", "r3")  # r1 gone just before: 2 releases
    assert feed(VersionSkew(2), tr.recs).count == 0
    tr2 = T()
    tr2.start(0.0, "e1", "r1")
    tr2.start(1.0, "e3", "r2")
    tr2(2.0, "kill", engine="e3", inflight=[], cause=[])
    tr2.start(2.0, "e4", "r3")
    assert feed(VersionSkew(2), tr2.recs).count == 0


def test_version_skew_vacuous_without_a_second_release():
    tr = T()
    tr.start(0.0, "e1", "r1")
    tr.start(0.0, "e2", "r1")
    c = feed(VersionSkew(1), tr.recs)
    assert (c.count, c.checked, c.vacuous) == (0, 2, True)
    tr.start(1.0, "e3", "r2")
    c = feed(VersionSkew(1), tr.recs)
    assert c.count == 1 and not c.vacuous


# ============================================================================ no-refused-send
def test_no_refused_send_client_and_engine():
    tr = T()
    tr.start(0.0, "e1", "r2", cap="1.0")
    tr.send(1.0, 0)
    tr(2.0, "send_error", engine="client", method="op", error="RPCVersionCapError (cap 1.0)")
    tr(3.0, "caps", caps={"e1": "1.0"}, client="1.0")
    tr(4.0, "send_error", engine="e1", method="check", error="release r2 has no check")
    c = feed(NoRefusedSend(), tr.recs)
    assert (c.count, c.checked) == (2, 3)
    a, b = c.violations
    assert a.message == "the client could not send op: RPCVersionCapError (cap 1.0)" and a.engines == ()
    assert a.causes == ()  # no set_cap yet; the client's release is not in the trace
    assert b.message == "e1 could not send check: release r2 has no check" and b.engines == ("e1",)
    assert b.causes == (0, 3)  # e1's start (its release and cap), the last set_cap


def test_no_refused_send_held_vacuous_and_score():
    tr = T()
    tr.start(0.0, "e1", "r1")
    tr.send(1.0, 0)  # one release: no score
    tr.start(2.0, "e2", "r2")
    tr.send(3.0, 1)  # two releases: 1
    tr.send(3.0, 2)  # 2
    tr(4.0, "stopped", engine="e2", release="r2")
    tr.send(5.0, 3)  # one release again
    c = feed(NoRefusedSend(), tr.recs)
    assert (c.count, c.checked, c.vacuous, c.score()) == (0, 4, False, 2.0)
    assert NoRefusedSend().vacuous


# ============================================================================ operations-complete
def _op_tree(t_child_done: float = 2.0):
    """Operation m0 issued at 0; engine-1 handles it 0..1 and casts m1 (sent just before its done);
    engine-2 handles m1 until ``t_child_done``: the operation completes then."""
    tr = T()
    tr.send(0.0, 0, method="update")  # #0
    tr.recv(0.0, "e1", 0)
    tr.send(1.0, 1, engine="e1", method="check")  # the cast, before m0's done
    tr.done(1.0, "e1", 0)
    tr.recv(1.0, "e2", 1)
    tr.done(t_child_done, "e2", 1)
    return tr


def test_operations_complete_held_exactly_at_the_bound():
    tr = _op_tree(2.0)
    tr.end(3.0)
    c = feed(OperationsComplete(within=2.0), tr.recs)  # took 2.0 == within: held
    assert (c.count, c.checked, c.vacuous) == (0, 1, False)
    assert c.score() == 2.0
    assert c.availability() == {
        "completed": 1,
        "total": 1,
        "fraction": 1.0,
        "longest_gap": 2.0,
        "longest_gap_interval": (0.0, 2.0),
        "pending": 0,
    }
    assert feed(OperationsComplete(), tr.recs).count == 0  # no bound: before the end is enough


def test_operations_complete_late_just_after_the_bound():
    tr = _op_tree(2.0)
    c = feed(OperationsComplete(within=1.999), tr.recs)  # deadline 1.999, the done at 2.0 notices it
    assert c.count == 1 and c.availability()["completed"] == 0
    v = c.violations[0]
    assert v.event == 5 and v.subject == "m0" and "not complete 1.999 s after it was issued" in v.message
    assert v.causes == (0,)
    # the child finishing at 1.5 makes it in time
    assert feed(OperationsComplete(within=1.999), _op_tree(1.5).recs).count == 0


@pytest.mark.parametrize(
    "kind, keys, why",
    [
        ("lost", {"engine": "e2", "cause": [0]}, "m1 was lost with e2"),
        (
            "reject",
            {
                "engine": "e2",
                "error": "UnsupportedVersion",
                "method": "check",
                "version": "1.1",
                "call": False,
                "cause": [],
            },
            "m1 was rejected by e2 (UnsupportedVersion)",
        ),
        ("expire", {"queue": "engine", "expired_at": 1.5, "cause": [2]}, "call m1 expired unconsumed in engine"),
        ("left", {"queue": "engine", "version": "1.0", "cause": [2]}, "m1 was never taken (left in engine)"),
        (
            "schema_error",
            {"engine": "e2", "op": "write", "locs": ["a.x"]},
            "handling m1 failed: e2 could not write a.x",
        ),
    ],
)
def test_operations_complete_failed_work_is_not_completed(kind, keys, why):
    tr = _op_tree()
    tr.recs = tr.recs[:4]  # m1 cast, not yet taken
    if kind == "schema_error":  # a failed handling goes on to its done
        tr.recv(1.5, "e2", 1)
    tr(1.5, kind, msg=1, **keys)
    if kind == "schema_error":
        tr.done(2.0, "e2", 1)
    tr.end(3.0)
    c = feed(OperationsComplete(), tr.recs)
    assert c.count == 1 and why in c.violations[0].message
    assert c.availability()["completed"] == 0 and c.availability()["fraction"] == 0.0
    assert c.ops == {} and c.op_of == {}


def test_operations_complete_refused_operation_and_refused_cast():
    tr = T()
    tr(0.5, "send_error", engine="client", method="update", error="RPCVersionCapError (cap 1.0)")
    c = feed(OperationsComplete(), tr.recs)
    assert c.count == 1 and "was refused: RPCVersionCapError" in c.violations[0].message
    assert c.availability()["total"] == 1 and c.availability()["fraction"] == 0.0
    tr = T()
    tr.send(0.0, 0)
    tr.recv(0.0, "e1", 0)
    tr(1.0, "send_error", engine="e1", method="check", error="RPCVersionCapError (cap 1.0)")
    tr.done(1.0, "e1", 0)
    c = feed(OperationsComplete(), tr.recs)
    assert c.count == 1 and "e1 could not send while handling m0 (record 2)" in c.violations[0].message
    assert c.violations[0].causes == (0, 2)


def test_operations_complete_failed_handling_and_end_states():
    tr = T()
    tr.send(0.0, 0)
    tr.recv(0.0, "e1", 0)
    tr.done(1.0, "e1", 0, ok=False)
    assert feed(OperationsComplete(), tr.recs).count == 1
    # still under way when a quiescent run ends: violated; when a limit stopped it: undecided
    tr = _op_tree()
    tr.recs = tr.recs[:5]
    quiet = feed(OperationsComplete(), tr.recs + [{"i": 5, "t": 9.0, "kind": "end", "reason": "quiescent"}])
    assert quiet.count == 1 and "still under way" in quiet.violations[0].message
    limited = feed(
        OperationsComplete(),
        tr.recs + [{"i": 5, "t": 9.0, "kind": "end", "reason": "limit: simulated time reached max_time=9 s"}],
    )
    assert limited.count == 0 and limited.availability()["pending"] == 1 and limited.checked == 0


def test_operations_complete_availability_longest_gap():
    # operations issued at 0, 1, 2, 3, 4 (0.5 s each); the ones at 1 and 2 are lost.
    # completions at 0.5, 3.5, 4.5 -> points 0, 0.5, 3.5, 4.5: longest gap 3.0 from 0.5 to 3.5
    tr = T()
    for k in range(5):
        tr.send(float(k), k)
        if k in (1, 2):
            tr(float(k) + 0.25, "lost", engine="e1", msg=k, cause=[])
        else:
            tr.recv(float(k), "e1", k)
            tr.done(k + 0.5, "e1", k)
    c = feed(OperationsComplete(), tr.recs)
    a = c.availability()
    assert (a["completed"], a["total"], a["fraction"]) == (3, 5, 0.6)
    assert a["longest_gap"] == 3.0 and a["longest_gap_interval"] == (0.5, 3.5)
    assert c.count == 2 and c.checked == 5
    # the last operations lost: the tail from the last completion to the last issue counts
    tr = T()
    for k in range(4):
        tr.send(float(k), k)
        if k == 0:
            tr.recv(0.0, "e1", 0)
            tr.done(0.5, "e1", 0)
        else:
            tr(float(k), "lost", engine="e1", msg=k, cause=[])
    a = feed(OperationsComplete(), tr.recs).availability()
    assert a["longest_gap"] == 2.5 and a["longest_gap_interval"] == (0.5, 3.0)


def test_operations_complete_vacuous_without_operations():
    tr = T()
    tr.send(0.0, 0, engine="e1")  # an engine's cast outside any operation
    tr.done(1.0, "e1", 5)
    c = feed(OperationsComplete(), tr.recs)
    assert c.vacuous and c.availability() == {
        "completed": 0,
        "total": 0,
        "fraction": None,
        "longest_gap": 0.0,
        "longest_gap_interval": None,
        "pending": 0,
    }


# ============================================================================ no-lost-update
def _rmw(other_at: float, other_before_read: bool = False, other_after_write: bool = False):
    """e1 handles m0: reads f[0] at 0, writes it at 1. e2 (m1) writes f[0] at ``other_at``, placed
    before e1's read, between, or after e1's write in record order."""
    tr = T()
    if other_before_read:
        tr.write(other_at, "e2", 1, value="w2")
    tr.read(0.0, "e1", 0, value="init0")
    if not other_before_read and not other_after_write:
        tr.write(other_at, "e2", 1, value="w2")
    tr.write(1.0, "e1", 0, value="w1")
    if other_after_write:
        tr.write(other_at, "e2", 1, value="w2")
    tr.done(1.0, "e1", 0)
    return tr


def test_no_lost_update_write_between_read_and_write_is_violated():
    c = feed(NoLostUpdate(), _rmw(0.5).recs)
    assert (c.count, c.checked) == (1, 1)
    v = c.violations[0]
    assert v.event == 2 and v.subject == "f[0]" and v.engines == ("e1", "e2") and v.causes == (0, 1)
    assert "but e2 wrote 'w2' (record 1, m1) in between" in v.message


def test_no_lost_update_boundaries_in_record_order():
    # same instant as the read but after it: in between -> violated
    assert feed(NoLostUpdate(), _rmw(0.0).recs).count == 1
    # same instant as the write but before it: in between -> violated
    assert feed(NoLostUpdate(), _rmw(1.0).recs).count == 1
    # same instant as the read, before it: the read saw it -> held, and a near miss of 0 s scores 1
    c = feed(NoLostUpdate(), _rmw(0.0, other_before_read=True).recs)
    assert (c.count, c.checked, c.vacuous) == (0, 1, False) and c.score() == 1.0
    # same instant as the write, after it: overwrites it afterwards, not a lost update
    c = feed(NoLostUpdate(), _rmw(1.0, other_after_write=True).recs)
    assert c.count == 0 and c.score() == 1.0
    # 3 s after the write: a near miss of 1 / (1 + 3)
    assert feed(NoLostUpdate(), _rmw(4.0, other_after_write=True).recs).score() == 0.25


def test_no_lost_update_other_cells_blind_writes_and_vacuity():
    tr = T()
    tr.read(0.0, "e1", 0, row=0)
    tr.write(0.5, "e2", 1, row=1)  # another row
    tr.write(0.6, "e2", 1, field="g", row=0)  # another field
    tr.write(1.0, "e1", 0, row=0)
    c = feed(NoLostUpdate(), tr.recs)
    assert (c.count, c.checked) == (0, 1)
    tr = T()
    tr.write(0.5, "e2", 1)
    tr.write(1.0, "e1", 0)  # blind writes: nothing read, nothing to lose
    c = feed(NoLostUpdate(), tr.recs)
    assert (c.count, c.checked, c.vacuous) == (0, 0, True)


def test_no_lost_update_a_handling_ends_at_done_or_kill():
    tr = T()
    tr.read(0.0, "e1", 0)
    tr.done(0.2, "e1", 0)  # read only (its write failed): over
    tr.write(0.5, "e2", 1)
    tr.read(1.0, "e1", 2)
    tr(1.2, "kill", engine="e1", inflight=[2], cause=[])  # killed mid-handling: over
    tr.write(1.5, "e2", 3)
    c = feed(NoLostUpdate(), tr.recs)
    assert c.count == 0 and c.reads == {} and c.by_handling == {}
    # the same message handled again later (requeued) by the same engine is a new handling
    tr.read(2.0, "e1", 2)
    tr.write(3.0, "e1", 2)
    c = feed(NoLostUpdate(), tr.recs)
    assert (c.count, c.checked) == (0, 1)


# ============================================================================ results, coverage, config
def test_invariant_result_vacuous_default_and_of():
    r = InvariantResult("no-lost-write", True, 0)
    assert r.vacuous is False and r.checked == 0 and r.violations == []
    c = feed(NoLostWrite(), _nlw_base().recs)
    assert InvariantResult.of(c) == InvariantResult("no-lost-write", True, 0, [], True, 0)
    tr = _nlw_base()
    tr.read(2.0, "e2", 1, value="init0")
    r = InvariantResult.of(feed(NoLostWrite(), tr.recs))
    assert (r.held, r.count, r.vacuous, r.checked) == (False, 1, False, 1)
    assert isinstance(r.violations[0], Violation)


def test_coverage():
    tr = T()
    tr.start(0.0, "e1", "old")
    tr.start(0.0, "e2", "new")
    tr.send(1.0, 0, version="1.0", method="update")
    tr.recv(1.0, "e1", 0)
    tr.read(1.0, "e1", 0, loc="a.x")
    tr.write(2.0, "e1", 0, locs=["a.x"], trig=["b.y"])
    tr.send(2.0, 1, engine="e1", version="1.0", method="check")
    tr.done(2.0, "e1", 0)
    tr.send(3.0, 2, version="1.1", method="update")
    tr.recv(3.0, "e1", 2)
    tr.reject(3.0, "e1", 2)
    tr(4.0, "send_error", engine="client", method="update", error="RPCVersionCapError (cap 1.0)")
    tr(5.0, "step", index=0, action="backfill", detail={})
    tr(5.5, "bf_read", engine="backfill", row=0, loc="a.x", value="v", cause=[])
    tr(6.0, "bf_write", engine="backfill", row=0, loc="b.y", value="v", trig=[], cause=[])
    tr(6.0, "rewrite", engine="e2", msg=7, row=0, cols={"a.z": "v"})
    cov = feed(Coverage(), tr.recs)
    empty = {"sent": {}, "handled": {}, "rejected": {}, "refused": {}, "methods": {}, "read": {}, "written": {}}
    assert cov.result() == {
        "releases": {
            "backfill": dict(empty, read={"a.x": 1}, written={"b.y": 1}),
            "client": dict(empty, sent={"1.0": 1, "1.1": 1}, refused={"update": 1}),
            "new": dict(empty, written={"a.z": 1}),
            "old": dict(
                empty,
                sent={"1.0": 1},
                handled={"1.0": 1},
                rejected={"1.1": 1},
                methods={"update": 1},
                read={"a.x": 1},
                written={"a.x": 1},
            ),
            "trigger": dict(empty, written={"b.y": 1}),
        },
        "steps": [{"index": 0, "action": "backfill", "t": 5.0}],
    }
    assert cov.msgs == {1: ("check", "1.0")}  # m1 still out


BASE = """
name: t
database: {tables: {t: [c]}, rows: 1}
releases: {r1: {rpc: {endpoints: [{version: "1.0", methods: {op: [x]}}]}}}
engines: {count: 1, release: r1}
workload: {rate: 1, stop: 2, operations: {op: 1}}
invariants:
"""


def _enabled(invariants: str):
    return simroll.load_scenario_text(BASE + textwrap.indent(invariants, "  "), "f.yaml").invariants.enabled()


def test_config_empty_value_enables_with_defaults():
    # issue 12: `no-lost-write:` (YAML null) used to turn the invariant off silently
    assert list(_enabled("no-lost-write:\nno-stranded-message: {}\n")) == ["no-lost-write", "no-stranded-message"]
    assert list(_enabled("no-lost-write: null\n")) == ["no-lost-write"]
    assert list(_enabled("no-lost-write: true\n")) == ["no-lost-write"]
    assert list(_enabled("version-skew:\n")) == ["version-skew"]
    assert _enabled("version-skew:\n")["version-skew"].max_releases == 2
    assert _enabled("operations-complete:\n")["operations-complete"].within is None
    assert list(_enabled("no-lost-write: false\nschema-compatible:\n")) == ["schema-compatible"]
    checkers = make_checkers(_enabled("no-lost-update:\nno-refused-send:\noperations-complete: {within: 3}\n"))
    assert [c.name for c in checkers] == ["no-refused-send", "operations-complete", "no-lost-update"]
    assert checkers[1].within == 3.0


@pytest.mark.parametrize(
    "text, where",
    [
        ("no-lost-write: yes-please\n", "f.yaml: invariants.no-lost-write (line 8): "),
        ("no-lost-write: 0\n", "f.yaml: invariants.no-lost-write (line 8): "),
        ("bounded-imbalance:\n", "f.yaml: invariants.bounded-imbalance.max_wait (line 8): missing required key"),
        ("operations-complete: {within: 0}\n", "f.yaml: invariants.operations-complete.within (line 8): "),
        ("no-lost-updates:\n", "f.yaml: invariants.no-lost-updates (line 8): unknown key 'no-lost-updates'"),
    ],
)
def test_config_unknown_values_are_errors_naming_the_place(text, where):
    with pytest.raises(ScenarioError) as e:
        _enabled(text)
    assert str(e.value).startswith(where), str(e.value)


def test_config_default_set_unchanged():
    s = simroll.load_scenario_text(BASE + "  no-lost-write: {}\n", "f.yaml")
    assert s.invariants.no_refused_send is None and s.invariants.operations_complete is None
    assert s.invariants.no_lost_update is None


# ============================================================================ gaps the mutation run found
def test_violations_kept_are_capped_and_the_rest_counted():
    for n, kept in ((19, 19), (20, 20), (21, 20), (25, 20)):
        tr = T()
        for k in range(n):
            tr(float(k), "schema_error", engine="e1", msg=k, op="read", locs=["a.gone"])
        c = feed(SchemaCompatible(), tr.recs)
        assert (c.count, len(c.violations)) == (n, kept)


def test_no_lost_write_a_write_makes_the_fields_other_copies_stale():
    # f lives in a.x and b.y; a write of a.x only leaves b.y holding init0: one stale copy (score 1)
    tr = T()
    tr(0.0, "init", field="f", locs=["a.x", "b.y"], rows=2)
    tr(0.0, "init", field="g", locs=["c.z"], rows=2)
    tr.write(1.0, "e1", 0, field="f", row=0, value="v1", locs=["a.x"])
    assert feed(NoLostWrite(), tr.recs).score() == 1.0
    tr.write(2.0, "e1", 1, field="g", row=0, value="g1", locs=["c.z"])  # another field: f's copies unchanged
    assert feed(NoLostWrite(), tr.recs).score() == 1.0 and feed(NoLostWrite(), tr.recs).stale == {("b.y", 0)}
    tr.write(3.0, "e1", 2, field="f", row=0, value="v2", locs=["a.x", "b.y"])  # both copies current again
    assert feed(NoLostWrite(), tr.recs).stale == set()
    # a location of f that holds no value for the row written is skipped, not an error
    tr2 = T()
    tr2.write(1.0, "e1", 0, field="f", row=1, value="v1", locs=["a.x", "d.w"])
    tr2.write(2.0, "e1", 1, field="f", row=0, value="v2", locs=["a.x"])
    assert feed(NoLostWrite(), tr2.recs).stale == set()


def test_no_lost_write_near_miss_of_a_write_at_the_instant_of_the_copy_read():
    tr = T()
    tr(0.0, "init", field="f", locs=["a.x", "b.y"], rows=1)
    tr.write(1.0, "e1", 0, value="v1", locs=["a.x", "b.y"])
    tr(1.0, "bf_read", engine="backfill", row=0, loc="a.x", value="v1", cause=[])  # just after: got v1
    tr(2.0, "bf_write", engine="backfill", row=0, loc="b.y", value="v1", trig=[], cause=[2])
    assert feed(NoLostWrite(), tr.recs).score() == 1.0  # 0 s from a miss: 1 / (1 + 0)


def test_no_lost_write_violation_causes():
    tr = T()
    tr(0.0, "init", field="f", locs=["a.x"], rows=1)  # #0
    tr.start(0.0, "e2")  # #1: the reader's start
    tr.write(1.0, "e1", 0, value="v1")  # #2: the write it missed
    tr.read(2.0, "e2", 1, value="init0", cause=[9])  # only its recv as cause: no write it saw
    tr.read(3.0, "e2", 2, value="init0", cause=[9, 0])  # read from the init record #0
    tr(4.0, "final", field="f", loc="a.x", exists=True, values=["init0"])
    c = feed(NoLostWrite(), tr.recs)
    assert [v.causes for v in c.violations] == [(1, 2), (1, 2, 0), (2,)]


def _two_worker_engine(second_done_at: float | None):
    """engine-2 has 2 workers, both busy from t=0; one finishes at 2 and takes the next at 2
    (full again); the other finishes at ``second_done_at`` (or never). m9 waits at engine-1 [1, 10]."""
    tr = T()
    tr.start(0.0, "engine-1")
    tr.start(0.0, "engine-2", workers=2)
    for m, e in ((0, "engine-1"), (1, "engine-2"), (2, "engine-2")):
        tr.send(0.0, m)
        tr.recv(0.0, e, m)
    tr.send(1.0, 9)
    tr.send(2.0, 3)
    tr.done(2.0, "engine-2", 1)
    tr.recv(2.0, "engine-2", 3)
    if second_done_at is not None:
        tr.done(second_done_at, "engine-2", 2)
    tr.done(10.0, "engine-1", 0)
    tr.recv(10.0, "engine-1", 9, wait=9.0)
    return tr


def test_bounded_imbalance_workers_count_free_slots():
    # both workers busy all the time: never idle (the free instant at 2 has no length)
    assert feed(BoundedImbalance(0.1), _two_worker_engine(None).recs).count == 0
    # one worker free from 4 on: idle [4, 10] = 6 s; bound 6 holds, 5.99 does not
    assert feed(BoundedImbalance(6.0), _two_worker_engine(4.0).recs).count == 0
    c = feed(BoundedImbalance(5.99), _two_worker_engine(4.0).recs)
    assert c.count == 1 and "6.000 s of it" in c.violations[0].message


def test_bounded_imbalance_an_engine_idle_with_a_free_worker_stays_idle_since_then():
    # engine-2 (2 workers) has a free worker from 0.5; finishing another message at 3 does not
    # restart its idle time: m9 counts [1, 10] = 9 s
    tr = T()
    tr.start(0.0, "engine-1")
    tr.start(0.0, "engine-2", workers=2)
    for m, e in ((0, "engine-1"), (1, "engine-2"), (2, "engine-2")):
        tr.send(0.0, m)
        tr.recv(0.0, e, m)
    tr.done(0.5, "engine-2", 1)
    tr.send(1.0, 9)
    tr.done(3.0, "engine-2", 2)
    tr.done(10.0, "engine-1", 0)
    tr.recv(10.0, "engine-1", 9, wait=9.0)
    c = feed(BoundedImbalance(8.99), tr.recs)
    assert c.count == 1 and "9.000 s of it" in c.violations[0].message


def test_bounded_imbalance_sequential_work_then_idle():
    # engine-2 handles m1 (0..0.5) and m3 (0.5..1.0) back to back, then idles: m2 counts [1, 10] = 9 s
    tr = T()
    tr.start(0.0, "engine-1")
    tr.start(0.0, "engine-2")
    tr.send(0.0, 0)
    tr.recv(0.0, "engine-1", 0)
    tr.send(0.0, 1)
    tr.recv(0.0, "engine-2", 1)
    tr.send(0.5, 3)
    tr.done(0.5, "engine-2", 1)
    tr.recv(0.5, "engine-2", 3)
    tr.send(1.0, 2)
    tr.done(1.0, "engine-2", 3)
    tr.done(10.0, "engine-1", 0)
    tr.recv(10.0, "engine-1", 2, wait=9.0)
    c = feed(BoundedImbalance(8.99), tr.recs)
    assert c.count == 1 and "9.000 s of it" in c.violations[0].message
    assert feed(BoundedImbalance(9.0), tr.recs).count == 0


def test_bounded_imbalance_a_stopping_engine_finishing_its_work_is_not_idle():
    # engine-2 is told to stop at 0.2 while handling m1, finishes it at 0.5 and stops: never idle
    tr = T()
    tr.start(0.0, "engine-1")
    tr.start(0.0, "engine-2")
    tr.send(0.0, 0)
    tr.recv(0.0, "engine-1", 0)
    tr.send(0.0, 1)
    tr.recv(0.0, "engine-2", 1)
    tr(0.2, "stop", engine="engine-2", inflight=[1], cause=[])
    tr.done(0.5, "engine-2", 1)
    tr(0.5, "stopped", engine="engine-2", release="r1")
    tr.send(1.0, 2)
    tr.done(10.0, "engine-1", 0)
    tr.recv(10.0, "engine-1", 2, wait=9.0)
    c = feed(BoundedImbalance(0.1), tr.recs)
    assert c.count == 0 and c.idle_since == {}


def test_bounded_imbalance_checked_follows_engines_starting_and_stopping():
    # what counts as "another engine could have taken it" changes with starts and stops
    tr = T()
    tr.start(0.0, "engine-1")
    tr.send(0.0, 0)
    tr.recv(0.0, "engine-1", 0)
    tr.done(0.1, "engine-1", 0)  # r1 takes 1.0 (learnt); engine-1 alone: not checked
    tr.send(1.0, 1)
    tr.recv(1.0, "engine-1", 1)  # alone: not checked
    tr.start(2.0, "engine-2")
    tr.send(2.0, 2)
    tr.recv(2.0, "engine-1", 2)  # engine-2 runs r1 now: checked
    tr(3.0, "kill", engine="engine-2", inflight=[], cause=[])
    tr.send(3.0, 3)
    tr.recv(3.0, "engine-1", 3)  # alone again: not checked
    assert feed(BoundedImbalance(5.0), tr.recs).checked == 1


def test_bounded_imbalance_names_at_most_five_idle_engines():
    tr = T()
    names = [f"engine-{k}" for k in range(1, 9)]
    for e in names:
        tr.start(0.0, e)
    tr.send(0.0, 0)
    tr.recv(0.0, "engine-1", 0)
    tr.send(1.0, 1)
    tr.done(10.0, "engine-1", 0)
    tr.recv(10.0, "engine-1", 1, wait=9.0)
    # r1 accepts 1.0 only once m0's take is followed by a record that is not its rejection (the send at 1)
    c = feed(BoundedImbalance(5.0), tr.recs)
    v = c.violations[0]
    assert v.engines == ("engine-1", "engine-2", "engine-3", "engine-4", "engine-5", "engine-6")
    assert "engine-2, engine-3, engine-4, engine-5, engine-6 ..., which could have taken it" in v.message


def test_bounded_imbalance_pruning_keeps_intervals_an_outstanding_message_can_count():
    # engine-1 is busy with mX (sent at 0.5) until 10; m100 waits for it [1, 10]. engine-2 is idle
    # [0.5, 5]; engine-3 starts at 5.5 and does 70 short jobs from 6 (0.02 s each, 0.02 s apart),
    # so more than 64 idle intervals close and the oldest are pruned -- but not engine-2's, which
    # ends after mX was sent. Counted for m100: engine-2 [1, 5] = 4, engine-3 [5.5, 6] = 0.5,
    # 69 gaps of 0.02 = 1.38 and [8.78, 10] = 1.22: 7.1 s.
    tr = T()
    tr.start(0.0, "engine-1")
    tr.start(0.0, "engine-2")
    tr.send(0.0, 0)
    tr.recv(0.0, "engine-1", 0)
    tr.send(0.0, 1)
    tr.recv(0.0, "engine-2", 1)
    tr.done(0.2, "engine-1", 0)
    tr.send(0.5, 50)
    tr.recv(0.5, "engine-1", 50)  # mX, until 10
    tr.done(0.5, "engine-2", 1)
    tr.send(1.0, 100)
    tr.send(5.0, 2)
    tr.recv(5.0, "engine-2", 2)  # busy until 12
    tr.start(5.5, "engine-3")
    for k in range(70):
        t0 = 6.0 + 0.04 * k
        tr.send(t0, 200 + k)
        tr.recv(t0, "engine-3", 200 + k)
        tr.done(t0 + 0.02, "engine-3", 200 + k)
    tr.done(10.0, "engine-1", 50)
    tr.recv(10.0, "engine-1", 100, wait=9.0)
    c = feed(BoundedImbalance(7.09), tr.recs)
    # 72 intervals closed; engine-1's [0.2, 0.5] ended when mX (the oldest outstanding) was sent: pruned
    assert len(c.closed) == 71 and c.closed[0][2] == "engine-2"
    assert c.count == 1 and "7.100 s of it" in c.violations[0].message
    assert feed(BoundedImbalance(7.11), tr.recs).count == 0


def test_operations_complete_ties_keep_the_first_longest_gap():
    # issued at 0 and 1, completed at 1 and 2: gaps 0..1 and 1..2 of 1 s each: the first is reported
    tr = T()
    for k in range(2):
        tr.send(float(k), 500 + k)
        tr.recv(float(k), "e1", 500 + k)
        tr.done(k + 1.0, "e1", 500 + k)
    assert feed(OperationsComplete(), tr.recs).availability()["longest_gap_interval"] == (0.0, 1.0)
    # completed at 1, then one issued at 2 and lost: the tail 1..2 ties with 0..1: the first is reported
    tr = T()
    tr.send(0.0, 500)
    tr.recv(0.0, "e1", 500)
    tr.done(1.0, "e1", 500)
    tr.send(2.0, 501)
    tr(2.5, "lost", engine="e1", msg=501, cause=[])
    a = feed(OperationsComplete(), tr.recs).availability()
    assert (a["longest_gap"], a["longest_gap_interval"]) == (1.0, (0.0, 1.0))


def test_operations_complete_deadline_with_large_message_numbers():
    tr = T()
    tr.send(0.0, 700)
    tr.recv(0.0, "e1", 700)
    tr.send(0.5, 701)  # another operation, its record comes after the deadline of the first
    tr.done(1.5, "e1", 700)
    c = feed(OperationsComplete(within=0.25), tr.recs)
    # m700's deadline 0.25 is noticed at the send at 0.5 (#2); m701's (0.75) at the done at 1.5 (#3)
    assert [(v.event, v.subject) for v in c.violations] == [(2, "m700"), (3, "m701")]


def test_operations_complete_refusals_are_decided_and_the_first_is_named():
    tr = T()
    tr(0.5, "send_error", engine="client", method="update", error="RPCVersionCapError (cap 1.0)")
    c = feed(OperationsComplete(), tr.recs)
    assert (c.count, c.checked, c.total) == (1, 1, 1)
    tr = T()
    tr.send(0.0, 0)
    tr.recv(0.0, "e1", 0)
    tr(1.0, "send_error", engine="e1", method="check", error="RPCVersionCapError (cap 1.0)")  # #2
    tr(1.0, "send_error", engine="e1", method="check", error="RPCVersionCapError (cap 1.0)")  # #3
    tr.done(1.0, "e1", 0)
    c = feed(OperationsComplete(), tr.recs)
    assert c.count == 1 and "(record 2)" in c.violations[0].message and c.violations[0].causes == (0, 2)


def test_no_lost_update_violation_causes_are_record_numbers():
    tr = T()
    tr.start(0.0, "e1")  # #0
    tr.start(0.0, "e2")  # #1
    tr.read(0.5, "e1", 0, value="init0")  # #2
    tr.write(0.7, "e2", 1, value="w2")  # #3
    tr.write(1.0, "e1", 0, value="w1")  # #4
    c = feed(NoLostUpdate(), tr.recs)
    assert c.violations[0].causes == (2, 3) and c.violations[0].event == 4


def test_bounded_imbalance_names_only_engines_idle_for_part_of_the_wait():
    # engine-2 was idle [0.5, 1] and took work at 1, the instant m2 arrived: no overlap with the
    # wait [1, 10]; engine-4 becomes idle at 10, the instant engine-1 takes m2: no overlap either.
    # engine-3 idles through [1, 10]: it alone is named, with 9 s.
    tr = T()
    for e in ("engine-1", "engine-2", "engine-3", "engine-4"):
        tr.start(0.0, e)
    tr.send(0.0, 0)
    tr.recv(0.0, "engine-1", 0)
    tr.send(0.0, 1)
    tr.recv(0.0, "engine-2", 1)
    tr.send(0.0, 4)
    tr.recv(0.0, "engine-4", 4)
    tr.done(0.5, "engine-2", 1)
    tr.send(1.0, 3)
    tr.recv(1.0, "engine-2", 3)  # engine-2 busy from 1 on
    tr.send(1.0, 2)  # m2 for engine-1's backlog
    tr.done(10.0, "engine-4", 4)
    tr.done(10.0, "engine-1", 0)
    tr.recv(10.0, "engine-1", 2, wait=9.0)
    c = feed(BoundedImbalance(5.0), tr.recs)
    v = c.violations[0]
    assert v.engines == ("engine-1", "engine-3") and "9.000 s of it while engine-3, which" in v.message


def test_operations_complete_deadlines_fire_in_deadline_order():
    # deadlines 1.0 (m0) and 1.1 (m1): a record at 1.05 notices m0 only; the one at 1.2 notices m1
    tr = T()
    tr.send(0.0, 0)
    tr.send(0.1, 1)
    tr.send(1.05, 2)  # #2
    tr.send(1.2, 3)  # #3
    c = feed(OperationsComplete(within=1.0), tr.recs)
    assert [(v.event, v.subject) for v in c.violations] == [(2, "m0"), (3, "m1")]


def test_a_fanout_cast_dropped_with_its_auto_delete_queue_is_stranded_and_fails_its_operation():
    """The broker (issue 13) drops a fanout cast whose engine stopped before taking it (RabbitMQ
    deletes the auto-delete queue). Worked by hand: the client's m0 is handled by e1 (recv #2,
    done #4), whose handling cast m1 to e2's fanout queue (send #3, just before the done); e2 stops
    and m1 is dropped (#5). One stranded message; the operation (root m0) never completes."""
    tr = T()
    tr.send(0.0, 0)  # 0
    tr.start(0.0, "e1")  # 1
    tr.recv(1.0, "e1", 0, cause=[0])  # 2
    tr.send(2.0, 1, engine="e1", method="note", queue="engine_fanout.e2")  # 3: sent while handling m0
    tr.done(2.0, "e1", 0)  # 4
    tr(3.0, "dropped", msg=1, queue="engine_fanout.e2", why="auto-delete queue deleted", cause=[3])  # 5
    tr.end(4.0)  # 6
    stranded = feed(NoStrandedMessage(), tr.recs)
    assert stranded.count == 1 and stranded.violations[0].event == 5
    assert "dropped with engine_fanout.e2" in stranded.violations[0].message
    ops = feed(OperationsComplete(), tr.recs)
    assert ops.count == 1 and ops.completed == 0
    assert "m1 was dropped with engine_fanout.e2" in ops.violations[0].message


# ============================================================================ the broker's late record
def _late_call(children: bool = False):
    """The client calls m0 at 0 (its caller gives up at 1.0); e1 takes it at 0.5 and is done at 1.5,
    after the deadline: the kernel writes ``late`` just before the ``done``. With ``children``, e1
    casts m1 while handling m0, and e2 handles m1 from 1.5 to 2.0."""
    tr = T()
    tr.send(0.0, 0, call=True)
    tr.recv(0.5, "e1", 0, wait=0.5)
    if children:
        tr.send(1.5, 1, engine="e1", method="check")
    tr(1.5, "late", engine="e1", msg=0, deadline=1.0, cause=[0])
    tr.done(1.5, "e1", 0)
    if children:
        tr.recv(1.5, "e2", 1)
        tr.done(2.0, "e2", 1)
    tr.end(3.0)
    return tr


def test_operations_complete_a_late_reply_is_an_operation_that_did_not_complete():
    tr = _late_call()
    c = feed(OperationsComplete(), tr.recs)
    assert (c.count, c.checked, c.completed) == (1, 1, 0)
    v = c.violations[0]
    assert v.event == 2 and v.subject == "m0" and v.causes == (0,)
    assert "the reply to m0 came at t=1.500, after its caller gave up at t=1.000" in v.message
    assert c.availability()["fraction"] == 0.0 and c.ops == {} and c.op_of == {}
    # the same run without the late record: the operation completed at 1.5
    on_time = [r for r in tr.recs if r["kind"] != "late"]
    c = feed(OperationsComplete(), on_time)
    assert (c.count, c.checked, c.completed) == (0, 1, 1) and c.score() == 1.5


def test_operations_complete_a_late_reply_fails_an_operation_with_work_still_out():
    c = feed(OperationsComplete(), _late_call(children=True).recs)
    # m0's reply was late: the operation fails then, although its cast m1 is handled later
    assert (c.count, c.checked, c.completed) == (1, 1, 0)
    assert c.violations[0].event == 3 and c.ops == {} and c.op_of == {}


def test_operations_complete_a_late_record_of_no_operation_changes_nothing():
    # boundary: a late record for a message that belongs to no client operation is not judged;
    # the operation completed at its done
    tr = T()
    tr.send(0.0, 0, call=True)
    tr.recv(0.5, "e1", 0)
    tr(1.5, "late", engine="e1", msg=7, deadline=1.0, cause=[])
    tr.done(1.5, "e1", 0)
    tr.end(3.0)
    c = feed(OperationsComplete(), tr.recs)
    assert (c.count, c.completed) == (0, 1)


# ============================================================================ services and vhosts
def test_version_skew_counts_releases_per_service():
    # two services, two releases each: four releases run at once, but two per service
    tr = T()
    for e, svc, rel in (("e1", "engine", "e-old"), ("e2", "engine", "e-new"), ("w1", "worker", "w-old")):
        tr(0.0, "start", engine=e, release=rel, workers=1, cap=None, service=svc, vhost="/", queue=svc, cause=[])
    tr(1.0, "start", engine="w2", release="w-new", workers=1, cap=None, service="worker", vhost="/", queue="worker")
    c = feed(VersionSkew(2), tr.recs)
    assert (c.count, c.checked, c.vacuous, c.score()) == (0, 4, False, 2.0)
    # a third release in one service violates, and says which service
    tr(2.0, "start", engine="w3", release="w-newer", workers=1, cap=None, service="worker", vhost="/", queue="worker")
    c = feed(VersionSkew(2), tr.recs)
    assert c.count == 1
    v = c.violations[0]
    assert v.message.startswith("3 releases running at once in service worker (w-new, w-newer, w-old)")
    assert v.causes == (2, 3, 4)  # the starts of that service's engines only
    # without service keys (a scenario without services) the same starts are one pool: the third,
    # fourth and fifth starts bring 3, 4 and 5 releases
    plain = [{k: x for k, x in r.items() if k not in ("service", "vhost", "queue")} for r in tr.recs]
    c = feed(VersionSkew(2), plain)
    assert [m.message.split(" (")[0] for m in c.violations] == [f"{n} releases running at once" for n in (3, 4, 5)]


def test_version_skew_vacuous_when_no_service_changes_release():
    tr = T()
    tr(0.0, "start", engine="e1", release="a", workers=1, cap=None, service="engine", vhost="/", queue="engine")
    tr(0.0, "start", engine="w1", release="b", workers=1, cap=None, service="worker", vhost="/", queue="worker")
    c = feed(VersionSkew(1), tr.recs)
    assert (c.count, c.vacuous) == (0, True)  # one release per service: no upgrade to judge


def _imbalance_two_queues(other_queue: str):
    """e1 (topic queue 'engine') holds m1 from 1 to 10 while e2, consuming ``other_queue``, idles
    from 0 on. Both run r1, which accepts 1.0 (from the endpoints given)."""
    tr = T()
    tr(0.0, "start", engine="e1", release="r1", workers=1, cap=None, queue="engine", cause=[])
    tr(0.0, "start", engine="e2", release="r1", workers=1, cap=None, queue=other_queue, cause=[])
    tr.send(0.0, 0)
    tr.recv(0.0, "e1", 0)
    tr.send(1.0, 1)
    tr.done(10.0, "e1", 0)
    tr.recv(10.0, "e1", 1, wait=9.0)
    return feed(BoundedImbalance(5.0, endpoints={"r1": ["1.0"]}), tr.recs)


def test_bounded_imbalance_counts_only_engines_on_the_message_queue():
    same = _imbalance_two_queues("engine")
    assert same.count == 1 and same.violations[0].engines == ("e1", "e2")
    # e2 consumes another service's topic (or the same topic on another vhost): it could not
    # have taken m1, so its idle time does not count, and no message had a second taker
    for other in ("engine_worker", "heat_new/engine"):
        c = _imbalance_two_queues(other)
        assert (c.count, c.checked, c.vacuous) == (0, 0, True)


# ============================================================================ near misses a consumer choice away
def _late_host(second_release_takes: str = "1.0", e2_queue: str | None = None, stop_e2_at: float | None = None):
    """e1 runs r-new (1.1), e2 runs r-old (endpoints: ``second_release_takes``). m0, version 1.1, is
    sent at 2.0 to the topic queue 'engine' and handed to e1, while e2 is up: had the broker
    picked e2, e2 would have raised UnsupportedVersion unless its release takes 1.1."""
    tr = T()
    tr(0.0, "begin", scenario="s", delivery="oslo")
    tr.start(0.0, "e1", "r-new")
    if e2_queue is None:
        tr.start(1.0, "e2", "r-old")
    else:
        tr(1.0, "start", engine="e2", release="r-old", workers=1, cap=None, queue=e2_queue, cause=[])
    if stop_e2_at is not None:
        tr(stop_e2_at, "stopped", engine="e2", release="r-old")
    tr.send(2.0, 0, version="1.1")
    tr.recv(2.0, "e1", 0)
    tr.done(2.1, "e1", 0)
    return tr, {"r-new": ["1.1"], "r-old": [second_release_takes]}


def test_no_incompatible_delivery_near_miss_a_consumer_choice_away():
    from simroll.check.invariants import NEAR_MISS

    tr, endpoints = _late_host()
    c = feed(NoIncompatibleDelivery(endpoints=endpoints), tr.recs)
    # positive: one message sent while mixed (1) and the near miss, at the delivery's time
    assert (c.count, c.score(), c.near_t) == (0, NEAR_MISS + 1.0, 2.0)
    # without the endpoints (no scenario), the score is the mixed traffic only, and says no time
    c = feed(NoIncompatibleDelivery(), tr.recs)
    assert (c.score(), c.near_t) == (1.0, None)


def test_no_incompatible_delivery_no_near_miss_when_the_other_engine_could_take_it():
    # e2's release takes 1.1 too (same major, higher minor: oslo's rule): no near miss
    tr, endpoints = _late_host(second_release_takes="1.2")
    assert feed(NoIncompatibleDelivery(endpoints=endpoints), tr.recs).score() == 1.0
    # e2 takes 1.0 only but consumes another queue: it could not have been offered m0
    tr, endpoints = _late_host(e2_queue="engine_worker")
    assert feed(NoIncompatibleDelivery(endpoints=endpoints), tr.recs).score() == 1.0
    # e2 stopped just before m0 was sent (boundary: gone at the send's instant)
    tr, endpoints = _late_host(stop_e2_at=2.0)
    c = feed(NoIncompatibleDelivery(endpoints=endpoints), tr.recs)
    assert (c.score(), c.near_t) == (0.0, None)  # nothing mixed when m0 was sent
    # a version-routed bus offers each engine only the versions it takes
    tr, endpoints = _late_host()
    tr.recs[0]["delivery"] = "version-routed"
    assert feed(NoIncompatibleDelivery(endpoints=endpoints), tr.recs).score() == 1.0


def _exposed(cap: str = "1.0", lowest_rule: str = "1.1", caps_at: float | None = None, recv_by: str = "e2"):
    """e1 starts on r-newer with ``cap``; r-newer sends check at ``lowest_rule`` at the lowest. m0 is
    handed to ``recv_by`` at 2.0. With ``caps_at``, a set_cap step lifts e1's cap to 1.1 then."""
    tr = T()
    tr.start(0.0, "e2", "r-legacy")
    tr.start(1.0, "e1", "r-newer", cap=cap)
    if caps_at is not None:
        tr(caps_at, "caps", caps={"e1": "1.1", "e2": None}, client=None)
    tr.send(2.0, 0, method="update")
    tr.recv(2.0, recv_by, 0)
    sends = {"r-newer": {"check": [lowest_rule, "1.2"]}, "r-legacy": {"check": ["1.0"]}}
    return feed(NoRefusedSend(sends=sends), tr.recs)


def test_no_refused_send_near_miss_while_an_engine_runs_exposed():
    from simroll.check.invariants import NEAR_MISS

    # positive: e1's cap 1.0 allows none of r-newer's rules for check (1.1, 1.2), and m0 went to e2
    c = _exposed()
    assert (c.count, c.score(), c.near_t) == (0, NEAR_MISS + 1.0, 2.0)  # + the one send while mixed
    # negative: a rule at 1.0 (the backport kept), or no cap at all: e1 could have sent check
    assert _exposed(lowest_rule="1.0").score() == 1.0
    assert _exposed(cap=None).near_t is None
    # boundary: a rule exactly at the cap is allowed
    assert _exposed(cap="1.1").score() == 1.0
    # the exposed engine took it itself: that is the violation's path, not a choice away from it
    assert _exposed(recv_by="e1").near_t is None
    # a caps record lifting e1's cap before m0 ends the exposure
    assert _exposed(caps_at=1.5).score() == 1.0
    # without the send rules (no scenario), the score is the mixed traffic only
    tr = T()
    assert feed(NoRefusedSend(), tr.recs).near_t is None


def test_closeness_scores_say_when_their_near_miss_was():
    # no-stranded-message: e1, the last taker of (engine, 1.0), stops at 5.0, 1 s after the last arrival
    assert feed(NoStrandedMessage(), _last_taker_leaves(4.0).recs).near_t == 5.0
    # no-lost-write: the backfill's copy of row 0 (read at 2, written at 3) 0.5 s before a write at 3.5
    tr = T()
    tr(0.0, "init", field="f", locs=["a.x", "b.y"], rows=1)
    tr(2.0, "bf_read", row=0)
    tr(3.0, "bf_write", loc="b.y", row=0, value="init0", trig=[])
    tr.write(3.5, "e1", 0, value="v1", locs=("a.x",))
    c = feed(NoLostWrite(), tr.recs)
    # (plus 1: the write went to a.x only, so b.y is a stale copy until someone copies it again)
    assert c.score() == pytest.approx(1 + 1 / 1.5) and c.near_t == 3.5
    # a checker whose score says no time leaves it None (the search then uses its score's last rise)
    assert OperationsComplete().near_t is None


def _contract_after(last_read: float, contract: str = "a.x", action: str = "contract"):
    """e1 reads a.x at ``last_read``, then a contract step removes ``contract`` at 5.0."""
    tr = T()
    tr.read(last_read, "e1", 0, loc="a.x", value="init0")
    tr.write(1.0, "e1", 0, locs=("b.y",))
    tr(5.0, "step", index=0, action=action, detail={action: [contract]})
    return feed(SchemaCompatible(), tr.recs)


def test_schema_compatible_score_is_how_narrowly_a_contract_missed_an_access():
    # positive: the last access to a.x 1 s before its contract: 1 / (1 + 1); closer, higher
    c = _contract_after(4.0)
    assert (c.count, c.score(), c.near_t) == (0, pytest.approx(0.5), 5.0)
    assert _contract_after(4.5).score() == pytest.approx(1 / 1.5)
    assert _contract_after(0.5, contract="a").score() == pytest.approx(1 / 5.5)  # the whole table
    # boundary: an access at the contract's very instant (before it) is as close as it gets
    assert _contract_after(5.0).score() == pytest.approx(1.0)
    # negative: a contract of something nobody touched, or a step that removes nothing
    assert _contract_after(4.0, contract="c.z").score() == 0.0
    assert _contract_after(4.0, action="expand").near_t is None
    # the step is not an access: checked counts the read and the write only
    assert _contract_after(4.0).checked == 2


def _killed_after(kill_at: float, engine: str = "e1"):
    """e1 handles operation m0 from 1.0 to 1.04; ``engine`` is killed at ``kill_at``."""
    tr = T()
    tr.send(1.0, 0, call=True)
    tr.recv(1.0, "e1", 0)
    tr.done(1.04, "e1", 0)
    tr(kill_at, "kill", engine=engine, inflight=[], cause=[])
    tr.end(3.0)
    return feed(OperationsComplete(), tr.recs)


def test_operations_complete_score_is_how_narrowly_a_kill_missed_a_handling():
    from simroll.check.invariants import KILL_NEAR

    took = 0.04  # the operation's time, the score's other part
    # positive: killed 0.06 s after its handling ended; nearer, higher
    c = _killed_after(1.1)
    assert (c.count, c.score(), c.near_t) == (0, pytest.approx(took + KILL_NEAR / 1.06), 1.1)
    assert _killed_after(2.0).score() == pytest.approx(took + KILL_NEAR / 1.96)
    # boundary: killed at the instant the handling ended (after its done): as near as it gets, held
    assert _killed_after(1.04).score() == pytest.approx(took + KILL_NEAR)
    # negative: another engine, which never handled anything, killed: no near miss
    c = _killed_after(1.1, engine="e2")
    assert (c.score(), c.near_t) == (pytest.approx(took), None)


def _call_done_at(done: float, timeout: float | None = 5.0, ok: bool = True):
    """The client calls m0 at 1.0; e1 handles it and is done at ``done``; the client's timeout is ``timeout``."""
    tr = T()
    tr.send(1.0, 0, call=True)
    tr.recv(1.0, "e1", 0)
    tr.done(done, "e1", 0, ok=ok)
    from simroll.check.invariants import NoDuplicateEffect

    return feed(NoDuplicateEffect(timeout=timeout), tr.recs)


def test_no_duplicate_effect_score_is_how_narrowly_a_call_beat_its_timeout():
    # positive: done at 4.0, the client would have retried at 1 + 5 = 6.0: 2 s to spare; nearer, higher
    c = _call_done_at(4.0)
    assert (c.count, c.score(), c.near_t) == (0, pytest.approx(1 / 3), 4.0)
    assert _call_done_at(5.5).score() == pytest.approx(1 / 1.5)
    # boundary: done at the deadline's very instant
    assert _call_done_at(6.0).score() == pytest.approx(1.0)
    # negative: a failed handling, or no timeout known (no scenario): no near miss
    assert _call_done_at(4.0, ok=False).near_t is None
    assert _call_done_at(4.0, timeout=None).score() == 0.0
