"""Distance scores along a known path to a violation, on a sparse target: stepping the one
deciding choice towards the bug raises the invariant's score at every step, and the last step
violates it. (Hand-built traces for each score are in tests/test_invariants.py.)"""

from conftest import ROOT

from simroll import load_scenario, run_scenario
from simroll.explore.search import Schedule, apply_schedule


def test_no_stranded_message_score_rises_as_the_last_legacy_message_is_held_back():
    # drain_delayed_legacy_message: the last 1.3 cast, sent just before heat-api switches to 2.0,
    # held on the wire 0, 0.5, ... 4 s (delay levels 0..8): its arrival nears the moment the
    # last engine that takes 1.3 stops, then passes it
    scenario = load_scenario(ROOT / "bench" / "targets" / "drain_delayed_legacy_message.yaml")
    plain = run_scenario(scenario)
    last = max(r["msg"] for r in plain.records if r["kind"] == "send" and r["version"] == "1.3")
    n = len(scenario.plan)
    runs = [
        run_scenario(
            apply_schedule(
                scenario,
                Schedule(tuple(range(n)), (True,) * n, (0,) * n, (False,) * n, (("delay", last, lvl),) if lvl else ()),
            ),
            keep_trace=False,
            report=False,
        )
        for lvl in range(9)
    ]
    scores = [r.scores["no-stranded-message"] for r in runs]
    assert all(a < b for a, b in zip(scores, scores[1:])), scores
    assert [bool(r.violated) for r in runs] == [False] * 8 + [True]
    assert scores[0] < 1.0  # as written: more than 0 s of slack, no work in flight at a stop


def test_bounded_imbalance_score_rises_as_a_request_is_held_back_in_the_mixed_window():
    # slow_first_engine_starved: the request sent at t=1998, while engine-1 (slow, new) and
    # engine-2 (fast, legacy) share the work, held 0, 0.2, ... 1.6 s (delay levels 0..8). From
    # 1 s on (level 5) it arrives after the next request, the turns shift by one and engine-1 gets
    # two requests a second apart: the second waits 0.5 s while engine-2 idles (bound 0.3 s)
    scenario = load_scenario(ROOT / "bench" / "targets" / "slow_first_engine_starved.yaml")
    plain = run_scenario(scenario)
    (msg,) = [r["msg"] for r in plain.records if r["kind"] == "send" and r["t"] == 1998.0]
    n = len(scenario.plan)
    runs = [
        run_scenario(
            apply_schedule(
                scenario,
                Schedule(tuple(range(n)), (True,) * n, (0,) * n, (False,) * n, (("delay", msg, lvl),) if lvl else ()),
            ),
            keep_trace=False,
            report=False,
        )
        for lvl in range(9)
    ]
    scores = [r.scores["bounded-imbalance"] for r in runs]
    assert all(a <= b for a, b in zip(scores[:5], scores[1:5])) and scores[0] < scores[4] < 0.3, scores
    assert [bool(r.violated) for r in runs] == [False] * 5 + [True] * 4
