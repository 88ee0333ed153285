"""The work budget: what a run does besides writing records counts against its limits, so no
input spends long between two records (issue 16 item 4, issue 18 item 3).

Counted, not timed: the units of work (``Trace.meter``) and where each run stops.
"""

from __future__ import annotations

from conftest import scenario

from simroll.run import run_scenario
from simroll.sim.kernel import WORK_PER_EVENT, simulate
from simroll.sim.trace import Trace

NO_TRAFFIC = {"rate": 1.0, "arrivals": "periodic", "stop": 0.5, "operations": {"op": 1}, "kind": "cast"}


def caps(engines: int, steps: int, max_events: int):
    """``engines`` engines, no traffic, ``steps`` set_cap steps all at t=0 (one operator burst)."""
    return scenario(
        engines={"count": engines, "release": "r1"},
        workload=NO_TRAFFIC,
        plan=[{"set_cap": "auto"}] * steps,
        limits={"max_events": max_events},
    )


def test_two_thousand_set_caps_at_ten_thousand_engines_stop_at_the_work_budget():
    # each set_cap charges 2 units per engine (every engine's cap, then the caps record): 20,000;
    # the budget is 16 x 20,000 = 320,000, passed after 17 steps (340,000), so the 18th never runs.
    # The records stay far below max_events: 1 begin + 1 init + 10,000 starts + 2 per step.
    assert WORK_PER_EVENT == 16
    result = run_scenario(caps(10_000, 2_000, 20_000))
    assert result.end_reason == "limit: work reached 320000 units (16 per event of max_events=20000)"
    assert result.limited
    steps = [r for r in result.records if r["kind"] == "step"]
    assert len(steps) == 17
    assert result.events == 2 + 10_000 + 2 * 17 + 1  # and the end record
    assert result.records[-1]["kind"] == "end"


def test_a_burst_of_steps_at_one_instant_stops_at_max_events():
    # 10 engines: 12 records before the plan, 2 per step; past 100 after 45 steps (102)
    result = run_scenario(caps(10, 1_000, 100))
    assert result.end_reason == "limit: trace reached max_events=100 events"
    assert sum(1 for r in result.records if r["kind"] == "step") == 45
    assert not any(r["kind"] == "plan_done" for r in result.records)


def test_a_plan_within_the_limits_is_not_cut():
    result = run_scenario(caps(10, 43, 100))  # 12 + 86 + plan_done = 99 records: within the limit
    assert result.end_reason == "quiescent"
    assert sum(1 for r in result.records if r["kind"] == "step") == 43


def test_a_fanout_charges_one_unit_per_engine_it_scans():
    s = scenario(
        releases={
            "r1": {
                "rpc": {"endpoints": [{"version": "1.0", "methods": {"op": ["x"], "note": ["x"]}}]},
                "service_time": 1.0,
            }
        },
        engines={"count": 5, "release": "r1"},
        workload={
            "rate": 1.0,
            "arrivals": "periodic",
            "stop": 1.5,  # one operation, at t=1
            "operations": {"op": 1},
            "kind": "cast",
            "handlers": {"op": {"fanout": ["note"]}},
        },
    )
    _, trace = simulate(s, trace=Trace())
    assert [r["kind"] for r in trace.records or [] if r["kind"] == "send"] == ["send"] * 6  # 1 + a note to each
    assert trace.meter.work == 5


def test_a_check_charges_its_scans_to_the_run_meter():
    """bounded-imbalance's idle scan, on a hand-built trace: one unit per idle engine it looks at, plus one."""
    from simroll.check.invariants import BoundedImbalance
    from simroll.sim.trace import Meter

    c = BoundedImbalance(max_wait=5.0)
    c.meter = meter = Meter()
    trace = [
        {"i": 0, "t": 0.0, "kind": "start", "engine": "e1", "release": "r1", "workers": 1, "cap": None},
        {"i": 1, "t": 0.0, "kind": "start", "engine": "e2", "release": "r1", "workers": 1, "cap": None},
        {
            "i": 2,
            "t": 0.0,
            "kind": "send",
            "engine": "client",
            "msg": 0,
            "method": "op",
            "version": "1.0",
            "queue": "engine",
            "call": False,
            "row": 0,
        },
    ]
    for rec in trace:
        c.observe(rec)
    assert meter.work == 0  # no scan yet
    # e1 takes m0 after 2 s: the scan looks at both idle engines (e1, e2) and no closed interval
    c.observe({"i": 3, "t": 2.0, "kind": "recv", "engine": "e1", "msg": 0, "wait": 2.0, "cause": [2]})
    assert meter.work == 2 + 1


def test_run_scenario_points_the_checks_at_the_trace_meter(monkeypatch):
    import simroll.run

    seen = []
    real = simroll.run.simulate

    def spy(scenario, seed, choices, trace):
        seen.append(trace.meter)
        return real(scenario, seed, choices, trace)

    monkeypatch.setattr(simroll.run, "simulate", spy)
    made = []
    real_make = simroll.run.make_checkers
    monkeypatch.setattr(simroll.run, "make_checkers", lambda *a: made.extend(real_make(*a)) or made)
    run_scenario(scenario(invariants={"bounded-imbalance": {"max_wait": 5}}))
    assert made and all(c.meter is seen[0] for c in made)
