"""Distance scores along a known path to a violation, on a sparse target: stepping the one
deciding choice towards the bug raises the invariant's score at every step, and the last step
violates it. (Hand-built traces for each score are in tests/test_invariants.py.)"""

from dataclasses import replace

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
    # slow_first_engine_starved: the request sent 1.5 s after engine-1 (slow, new) is restarted,
    # while it and engine-2 (fast, legacy) share the work, held 0, 0.2, ... 1.6 s (delay levels
    # 0..8). Held long enough, it arrives after the next request, the turns shift by one and
    # engine-1 gets two requests a second apart: the second waits while engine-2 idles (bound 0.3 s)
    scenario = load_scenario(ROOT / "bench" / "targets" / "slow_first_engine_starved.yaml")
    plain = run_scenario(scenario)
    sent_at = scenario.plan[0].after + 1.5
    (msg,) = [r["msg"] for r in plain.records if r["kind"] == "send" and r["t"] == sent_at]
    base = Schedule.default(len(scenario.plan))
    runs = _runs(scenario, [replace(base, pins=(("delay", msg, lvl),) if lvl else ()) for lvl in range(9)])
    scores = [r.scores["bounded-imbalance"] for r in runs]
    broken = [bool(r.violated) for r in runs]
    first = broken.index(True)  # from this level on, held long enough
    assert 2 <= first <= 6 and all(broken[first:]), broken
    below = scores[:first]
    assert all(a <= b for a, b in zip(below, below[1:])) and below[0] < below[-1] < 0.3, scores


def _runs(scenario, schedules):
    return [run_scenario(apply_schedule(scenario, s), keep_trace=False, report=False) for s in schedules]


def test_no_lost_write_score_rises_as_the_backfill_waits_longer_between_read_and_write():
    # sparse_backfill_race with the utility started 11/16 of max_pause later: the backfill reads row 0
    # shortly before an engine writes it; the longer it waits before writing its copy (gap levels
    # 0, 1, 2 of max_gap 0.4 s), the nearer its write comes to the engine's, until (level 3) it
    # writes after it and puts the old value back
    scenario = load_scenario(ROOT / "bench" / "sparse_backfill_race.yaml")
    base = Schedule((0,), (True,), (11,), (False,))
    runs = _runs(scenario, [base] + [replace(base, pins=(("backfill_gap", 0, lvl),)) for lvl in (1, 2, 3)])
    scores = [r.scores["no-lost-write"] for r in runs]
    assert all(a < b for a, b in zip(scores, scores[1:])), scores
    assert [bool(r.violated) for r in runs] == [False, False, False, True]


def test_no_lost_update_score_rises_as_a_request_is_held_back_towards_the_next_update():
    # lost_update_delayed_request: the request of t=139 held 0, 0.25, 0.5, 0.75 s (delay levels 0..3):
    # its read-modify-write nears the next update of the same row, then overlaps it
    scenario = load_scenario(ROOT / "bench" / "targets" / "lost_update_delayed_request.yaml")
    plain = run_scenario(scenario)
    (msg,) = [r["msg"] for r in plain.records if r["kind"] == "send" and r["t"] == 139.0]
    n = len(scenario.plan)
    base = Schedule.default(n)
    runs = _runs(scenario, [base] + [replace(base, pins=(("delay", msg, lvl),)) for lvl in (1, 2, 3)])
    scores = [r.scores["no-lost-update"] for r in runs]
    assert all(a < b for a, b in zip(scores, scores[1:])), scores
    assert [bool(r.violated) for r in runs] == [False, False, False, True]


def test_no_incompatible_delivery_score_rises_from_no_legacy_host_to_one_a_pick_away():
    # late_host_takes_new_message: without the late host (its start dropped) nothing is mixed (0); as
    # written, engine-4 (legacy) is up when the request of t=399 is handed to another engine: a near
    # miss, one consumer choice away; handing it to engine-4 (the 3rd other consumer) violates
    scenario = load_scenario(ROOT / "bench" / "targets" / "late_host_takes_new_message.yaml")
    plain = Schedule.default(len(scenario.plan))
    runs = _runs(scenario, [replace(plain, keep=(False,)), plain, replace(plain, pins=(("consumer", 398, 3),))])
    scores = [r.scores["no-incompatible-delivery"] for r in runs]
    assert scores[0] == 0.0 and scores[1] == 10_001.0 and scores[2] > 1e6, scores
    assert [bool(r.violated) for r in runs] == [False, False, True]


def test_no_refused_send_score_rises_with_the_swapped_runbook_steps_then_the_pick():
    # refused_send_runbook_order: as written, 8 sends while mixed; with the two steps swapped,
    # engine-1 runs newer capped at 1.0 (no rule for check_resource) and the request of t=63 goes to
    # another engine: a near miss; handed to engine-1 (option 2), the send is refused
    scenario = load_scenario(ROOT / "bench" / "targets" / "refused_send_runbook_order.yaml")
    plain = Schedule.default(len(scenario.plan))
    swapped = replace(plain, order=(0, 1, 3, 2, 4, 5))
    runs = _runs(scenario, [plain, swapped, replace(swapped, pins=(("consumer", 124, 2),))])
    scores = [r.scores["no-refused-send"] for r in runs]
    assert scores[0] == 8.0 and 10_000.0 < scores[1] < 1e6 < scores[2], scores
    assert [bool(r.violated) for r in runs] == [False, False, True]


def test_schema_compatible_score_rises_as_the_contract_comes_sooner_after_the_last_legacy_access():
    # fuzz_early_contract: the contract step of resource.properties paused 10, 5, 0 s (levels 16, 8,
    # 0), then taken before engine-3's restart: the contract nears the last read of the old column
    # by a legacy engine, then comes before one (engine-3 reads a column that is gone)
    scenario = load_scenario(ROOT / "scenarios" / "fuzz_early_contract.yaml")
    plain = Schedule.default(len(scenario.plan))
    paused = [replace(plain, pause=(0, 0, 0, lvl)) for lvl in (16, 8, 0)]
    runs = _runs(scenario, paused + [replace(plain, order=(0, 1, 3, 2))])
    scores = [r.scores["schema-compatible"] for r in runs]
    assert all(a < b for a, b in zip(scores, scores[1:])), scores
    assert [bool(r.violated) for r in runs] == [False, False, False, True]


def test_operations_complete_score_rises_as_a_kill_nears_a_handling():
    # crash_during_call: engine-3 handles a call from 17.808 to 17.848; killed 0.3, 0.1, 0.01 s after
    # that handling ends, then in the middle of it (the call is lost with it)
    from simroll.scenario.spec import FaultSpec

    scenario = load_scenario(ROOT / "bench" / "targets" / "crash_during_call.yaml")
    plain = run_scenario(scenario)
    handled = [(r["t"], r["msg"]) for r in plain.records if r["kind"] == "recv" and r["engine"] == "engine-3"]
    began, msg = handled[2]
    (ended,) = [r["t"] for r in plain.records if r["kind"] == "done" and r["msg"] == msg]
    kills = [ended + 0.3, ended + 0.1, ended + 0.01, (began + ended) / 2]
    runs = [
        run_scenario(
            scenario.model_copy(update={"faults": [FaultSpec(kill="engine-3", at=at)]}), keep_trace=False, report=False
        )
        for at in kills
    ]
    scores = [r.scores["operations-complete"] for r in runs]
    assert all(a < b for a, b in zip(scores, scores[1:])), scores
    assert [bool(r.violated) for r in runs] == [False, False, False, True]


def test_version_skew_score_rises_with_the_releases_running_at_once():
    # backfill_crash_once: only its expand step (1 release), as written (2 at once during each
    # round of restarts), then engine-1's restart onto plus2 taken before engine-3's onto plus1:
    # engine-3's first release, plus1 and plus2 run at once (3 > max_releases 2)
    scenario = load_scenario(ROOT / "scenarios" / "backfill_crash_once.yaml")
    plain = Schedule.default(len(scenario.plan))
    n = len(scenario.plan)
    runs = _runs(
        scenario,
        [
            replace(plain, keep=(True,) + (False,) * (n - 1)),
            plain,
            replace(plain, order=(0, 1, 2, 5, 4, 3) + tuple(range(6, n))),
        ],
    )
    scores = [r.scores["version-skew"] for r in runs]
    assert scores[0] == 1.0 and scores[1] == 2.0 and scores[2] > 1e6, scores
    assert ["version-skew" in r.violated for r in runs] == [False, False, True]


def test_no_duplicate_effect_score_rises_as_the_client_timeout_nears_the_handling_time():
    # retry_duplicate with only engine-1's stop: the client's timeout 60, 30, 20, 15 s, then 12 s;
    # the slowest first attempt's handling ends nearer and nearer the moment the client would
    # retry, then after it: the retry is handled too, and the operation applied twice
    scenario = load_scenario(ROOT / "scenarios" / "retry_duplicate.yaml")
    n = len(scenario.plan)
    one_stop = apply_schedule(scenario, replace(Schedule.default(n), keep=(True,) + (False,) * (n - 1)))
    runs = [
        run_scenario(
            one_stop.model_copy(update={"workload": one_stop.workload.model_copy(update={"timeout": float(to)})}),
            keep_trace=False,
            report=False,
        )
        for to in (60, 30, 20, 15, 12)
    ]
    scores = [r.scores["no-duplicate-effect"] for r in runs]
    assert all(a < b for a, b in zip(scores, scores[1:])), scores
    assert [bool(r.violated) for r in runs] == [False, False, False, False, True]


def test_plan_completes_score_rises_as_the_wait_nears_its_timeout():
    # drain_wait_until_idle: the wait for engine-3 to be idle takes 17 s; its timeout 120, 60, 30,
    # then 15 s: the share of the timeout it waited grows, then the wait times out
    scenario = load_scenario(ROOT / "scenarios" / "drain_wait_until_idle.yaml")
    runs = []
    for to in (120, 60, 30, 15):
        plan = list(scenario.plan)
        plan[3] = plan[3].model_copy(update={"timeout": float(to)})
        runs.append(run_scenario(scenario.model_copy(update={"plan": plan}), keep_trace=False, report=False))
    scores = [r.scores["plan-completes"] for r in runs]
    assert all(a < b for a, b in zip(scores, scores[1:])), scores
    assert ["plan-completes" in r.violated for r in runs] == [False, False, False, True]
