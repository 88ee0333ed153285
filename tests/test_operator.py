"""The operator's and the cluster's vocabulary (issue 15): handlers per release, conditional steps
(``wait_until``) and the ``plan-completes`` invariant.

Scenarios are small variations of conftest's BASE: three engines on r1 (service time 1 s), one
cast ``op`` per second at t = 1, 2, 3 (periodic arrivals, stop 3.5), delivered round robin:
engine-1 takes the one of t=1 (busy 1..2), engine-2 that of t=2 (2..3), engine-3 that of t=3
(3..4). An engine restarted at t=0 joins the tail of the rotation (RabbitMQ's order of consumers):
after ``restart: engine-1`` the ops of t = 1, 2, 3 go to engine-2, engine-3, engine-1. Expected
values below are worked out from that by hand.
"""

from __future__ import annotations

import re
import textwrap

import pytest
from conftest import BASE, SCENARIOS, kinds, scenario

from simroll import run_scenario
from simroll.check.invariants import INVARIANTS, PlanCompletes
from simroll.errors import ScenarioError

# r1 writes props; r2 is the same API, and reads props instead when it handles op (its own handler)
TWO_RELEASES = """
r1:
  rpc: {endpoints: [{version: "1.0", methods: {op: [x], op2: [x]}}]}
  data: {props: {read: resource.properties, write: [resource.properties]}}
  service_time: 1.0
r2:
  rpc: {endpoints: [{version: "1.0", methods: {op: [x], op2: [x]}}]}
  data: {props: {read: resource.properties, write: [resource.properties]}}
  service_time: 1.0
  handlers:
    op: {read: [props]}
"""

WORKLOAD = """
rate: 1.0
arrivals: periodic
stop: 3.5
operations: {op: 1}
kind: cast
handlers:
  op: {write: [props]}
  op2: {write: [props]}
"""


def _two(plan: str = "[]", **more) -> object:
    more.setdefault("workload", WORKLOAD)
    more.setdefault("releases", TWO_RELEASES)
    return scenario(BASE, plan=plan, **more)


def _no_line(message: str) -> str:
    """An error message without its "(line N)": the line is of the YAML the test helper dumps."""
    return re.sub(r" \(line \d+\)", "", message)


# ============================================================================ handlers per release
def test_a_release_handles_a_method_with_its_own_handler():
    # engine-1 moves to r2 at t=0: the ops of t=1, 2 (engine-2, -3, on r1) are written as they end,
    # the op of t=3 (engine-1, on r2) is read as it is taken
    res = run_scenario(_two("[{restart: engine-1, release: r2}]"))
    assert [(r["engine"], r["t"]) for r in kinds(res, "read")] == [("engine-1", 3.0)]
    assert [(r["engine"], r["t"]) for r in kinds(res, "write")] == [("engine-2", 2.0), ("engine-3", 3.0)]


def test_a_method_the_release_leaves_out_is_handled_as_the_workload_says():
    # r2 gives no handler for op2: op2 writes props on r2 too (the workload's handler)
    wl = WORKLOAD.replace("operations: {op: 1}", "operations: {op2: 1}")
    res = run_scenario(scenario(BASE, releases=TWO_RELEASES, workload=wl, plan="[{restart: engine-1, release: r2}]"))
    assert kinds(res, "read") == []
    assert [(r["engine"], r["t"]) for r in kinds(res, "write")] == [
        ("engine-2", 2.0),
        ("engine-3", 3.0),
        ("engine-1", 4.0),
    ]


def test_a_release_handler_like_the_workloads_leaves_the_trace_unchanged():
    same = TWO_RELEASES.replace("op: {read: [props]}", "op: {write: [props]}")
    plan = "[{restart: engine-1, release: r2}]"
    without = TWO_RELEASES.replace("  handlers:\n    op: {read: [props]}\n", "")
    a = run_scenario(scenario(BASE, releases=same, workload=WORKLOAD, plan=plan))
    b = run_scenario(scenario(BASE, releases=without, workload=WORKLOAD, plan=plan))
    assert a.trace_sha256 == b.trace_sha256


def test_a_new_release_casts_a_method_only_it_sends():
    # r2's op casts op2 once; only the op taken by engine-1 (on r2, 3..4) sends it, as it ends
    rel = TWO_RELEASES.replace("op: {read: [props]}", "op: {write: [props], cast: {op2: 1}}")
    res = run_scenario(scenario(BASE, releases=rel, workload=WORKLOAD, plan="[{restart: engine-1, release: r2}]"))
    casts = [r for r in kinds(res, "send") if r["method"] == "op2"]
    assert [(r["engine"], r["t"]) for r in casts] == [("engine-1", 4.0)]


@pytest.mark.parametrize(
    ("handlers", "message"),
    [
        (
            "nope: {}",
            "<test>: releases.r2.handlers.nope: method 'nope' is not defined by any release (defined: op, op2)",
        ),
        (
            "op: {read: [colour]}",
            "<test>: releases.r2.handlers.op.read[0]: field 'colour' is not in any release's data (fields: props)",
        ),
        (
            "op: {cast: {nope: 1}}",
            "<test>: releases.r2.handlers.op.cast.nope: method 'nope' is not defined by any release (defined: op, op2)",
        ),
    ],
)
def test_a_bad_release_handler_is_refused_naming_the_release(handlers, message):
    rel = TWO_RELEASES.replace("op: {read: [props]}", handlers)
    with pytest.raises(ScenarioError) as e:
        scenario(BASE, releases=rel, workload=WORKLOAD)
    assert _no_line(str(e.value)) == message


# ============================================================================ wait_until
def _steps(res):
    return [(r["index"], r["action"], r["t"]) for r in kinds(res, "step")]


def test_wait_until_idle_waits_for_the_engine_to_finish():
    # engine-1 handles the op of t=1 until t=2; checked at 1.5, 1.75 (busy) and 2.0 (its done comes first:
    # scheduled at t=1, before the check of 2.0 was scheduled at 1.75): waited 0.5 s
    res = run_scenario(
        _two(
            "[{after: 1.5, wait_until: {idle: engine-1}, poll: 0.25}, {stop: engine-1}]",
            invariants="{plan-completes: }",
        )
    )
    [w] = kinds(res, "waited")
    assert (w["t"], w["waited"]) == (2.0, 0.5)
    assert _steps(res) == [(0, "wait_until", 1.5), (1, "stop", 2.0)]
    assert kinds(res, "plan_done") and not kinds(res, "plan_failed")
    [inv] = res.invariants
    assert (inv.name, inv.held, inv.vacuous, inv.checked) == ("plan-completes", True, False, 1)


def test_wait_until_that_holds_at_once_waits_nothing():
    res = run_scenario(_two("[{wait_until: {idle: engine-1, all_on: r1}}]"))
    [w] = kinds(res, "waited")
    assert (w["t"], w["waited"]) == (0.0, 0.0)


def test_wait_until_times_out_as_a_plan_failure_and_the_rest_is_not_run():
    # engine-1 is busy from 1 to 2: a 0.25 s timeout from 1.5 fails at 1.75
    res = run_scenario(
        _two(
            "[{after: 1.5, wait_until: {idle: engine-1}, timeout: 0.25}, {stop: engine-1}]",
            invariants="{plan-completes: }",
        )
    )
    [f] = kinds(res, "plan_failed")
    assert (f["t"], f["why"], f["unmet"]) == (
        1.75,
        "timed out after 0.25 s",
        ["idle engine-1: 1 in flight, 0 prefetched"],
    )
    assert _steps(res) == [(0, "wait_until", 1.5)]  # the stop never ran
    assert not kinds(res, "plan_done") and not kinds(res, "stop")
    assert res.violated == ["plan-completes"]
    [v] = res.violations
    assert (
        v.message
        == "plan step 0 (wait_until) failed: timed out after 0.25 s; unmet: idle engine-1: 1 in flight, 0 prefetched"
    )
    assert v.causes == (kinds(res, "step")[0]["i"],)


def test_wait_until_boundary_a_condition_that_holds_at_the_deadline_is_met():
    # idle at 2.0 exactly, and the timeout ends at 2.0: the check at the deadline sees it idle
    res = run_scenario(_two("[{after: 1.5, wait_until: {idle: engine-1}, timeout: 0.5}]"))
    assert [(w["t"], w["waited"]) for w in kinds(res, "waited")] == [(2.0, 0.5)]
    assert not kinds(res, "plan_failed")


def test_wait_until_combined_conditions_must_all_hold_and_each_unmet_is_named():
    # engines stopped at t=0: the three casts pile up in the queue; engine-1 restarted on r2, so not all on r1
    plan = """[{stop: engine-2}, {stop: engine-3}, {restart: engine-1, release: r2}, {stop: engine-1},
               {wait_until: {queue_empty: engine, all_on: r1}, timeout: 5}]"""
    res = run_scenario(_two(plan, invariants="{plan-completes: }"))
    [f] = kinds(res, "plan_failed")
    # no engine runs: all_on fails as such; three messages (t = 1, 2, 3) wait in the topic queue at t = 5
    assert (f["t"], f["unmet"]) == (5.0, ["queue_empty engine: 3 messages in its queue", "all_on r1: no engine runs"])


def test_wait_until_all_on_names_the_engines_on_other_releases():
    res = run_scenario(_two("[{restart: engine-1, release: r2}, {wait_until: {all_on: r2}, timeout: 2}]"))
    [f] = kinds(res, "plan_failed")
    assert f["unmet"] == ["all_on r2: engine-2 on r1, engine-3 on r1"]
    res = run_scenario(
        _two(
            "[{restart: engine-1, release: r2}, {restart: engine-2, release: r2}, {restart: engine-3, release: r2},"
            " {wait_until: {all_on: r2}, timeout: 2}]"
        )
    )
    assert [w["waited"] for w in kinds(res, "waited")] == [0.0]


def test_wait_until_without_timeout_fails_once_nothing_is_left_to_happen():
    # nothing ever moves to r2: the run does not poll on to max_time, it fails when the last work is done
    res = run_scenario(_two("[{wait_until: {all_on: r2}}]", invariants="{plan-completes: }"))
    [f] = kinds(res, "plan_failed")
    assert f["why"] == "waits for good: nothing is left to happen"
    assert 4.0 <= f["t"] <= 5.0  # the last handling ends at 4.0; checks every second from 0
    assert kinds(res, "end")[0]["t"] == f["t"] and not res.limited


def test_wait_until_backfill_done():
    bf = "{backfill: {from: resource.properties, to: resource.id, rate: 100}}"
    res = run_scenario(_two(f"[{bf}, {{wait_until: {{backfill_done: true}}, timeout: 1}}]"))
    assert len(kinds(res, "waited")) == 1 and not kinds(res, "plan_failed")
    res = run_scenario(_two("[{wait_until: {backfill_done: true}, timeout: 1}]"))
    assert [f["unmet"] for f in kinds(res, "plan_failed")] == [["backfill_done: no backfill has run"]]


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (
            "{wait_until: {}}",
            "expected at least one condition of: queue_empty, idle, backfill_done, all_on",
        ),
        ("{wait_until: {idle: engine-9}}", "plan[0].wait_until.idle: undefined engine 'engine-9'"),
        ("{wait_until: {all_on: r9}}", "plan[0].wait_until.all_on: undefined release 'r9'"),
        (
            "{wait_until: {queue_empty: nope}}",
            "plan[0].wait_until.queue_empty: undefined topic 'nope' (topics: engine)",
        ),
        ("{wait_until: {backfill_done: false}}", "backfill_done"),
        ("{wait: 1, timeout: 3}", "timeout"),
        ("{wait_until: {idle: engine-1}, timeout: 0}", "timeout"),
    ],
)
def test_a_bad_wait_until_is_refused(step, message):
    with pytest.raises(ScenarioError) as e:
        _two(f"[{step}]")
    assert message in _no_line(str(e.value))


# ============================================================================ plan-completes on hand-built traces
def _step(i, t, index, timeout=None):
    detail = {"wait_until": {"idle": "engine-1"}} | ({} if timeout is None else {"timeout": timeout})
    return {"i": i, "t": t, "kind": "step", "index": index, "action": "wait_until", "detail": detail}


def test_plan_completes_registered_and_opt_in():
    assert INVARIANTS["plan-completes"] is PlanCompletes
    assert scenario(BASE).invariants.plan_completes is None


def test_plan_completes_a_failed_step_is_a_violation():
    c = PlanCompletes()
    c.observe(_step(4, 10.0, 2, timeout=5))
    c.observe(
        {"i": 9, "t": 15.0, "kind": "plan_failed", "why": "timed out after 5 s", "unmet": ["idle e: x"], "cause": [4]}
    )
    [v] = c.violations
    assert (v.time, v.event, v.causes) == (15.0, 9, (4,))
    assert v.message == "plan step 2 (wait_until) failed: timed out after 5 s; unmet: idle e: x"
    assert c.score() >= 1e6 and not c.vacuous


def test_plan_completes_a_met_step_holds_and_scores_its_share_of_the_timeout():
    c = PlanCompletes()
    c.observe(_step(4, 10.0, 2, timeout=8))
    c.observe({"i": 7, "t": 16.0, "kind": "waited", "waited": 6.0, "cause": [4]})
    assert (c.count, c.checked, c.vacuous) == (0, 1, False)
    assert c.score() == 0.75  # 6 of 8 seconds


def test_plan_completes_boundary_vacuous_without_a_conditional_step():
    c = PlanCompletes()
    c.observe({"i": 0, "t": 0.0, "kind": "step", "index": 0, "action": "wait", "detail": {"wait": 3}})
    assert c.vacuous and c.count == 0
    c.observe(_step(1, 3.0, 1))  # begun, not ended (a run cut at a limit): still nothing judged
    assert c.vacuous


# ============================================================================ membership: add, remove, start: false
LATE = """
- {name: engine-1, release: r1}
- {name: engine-2, release: r1}
- {name: engine-3, release: r1, start: false}
"""


def test_an_engine_declared_with_start_false_starts_only_when_a_step_starts_it():
    # ops at t = 1..5. engine-3 is down until t=2.5: the rotation is engine-1, -2 (each goes to its tail
    # as it takes one) until engine-3 joins its tail at 2.5 -> 1: e1, 2: e2, 3: e1, 4: e2, 5: e3
    wl = WORKLOAD.replace("stop: 3.5", "stop: 5.5")
    res = run_scenario(_two("[{after: 2.5, start: engine-3, release: r2}]", engines=LATE, workload=wl))
    assert [(r["engine"], r["t"], r["release"]) for r in kinds(res, "start")] == [
        ("engine-1", 0.0, "r1"),
        ("engine-2", 0.0, "r1"),
        ("engine-3", 2.5, "r2"),
    ]
    assert [r["engine"] for r in kinds(res, "recv")] == ["engine-1", "engine-2", "engine-1", "engine-2", "engine-3"]


def test_add_brings_in_new_engines_that_do_not_exist_before_their_step():
    # a stop of engine-4 before it is added does nothing; added at 1.5 it is the last in the rotation:
    # t=1 engine-1, t=2 engine-2, t=3 engine-3 (the rotation goes on from where it was)
    res = run_scenario(_two("[{stop: new-1}, {after: 1.5, add: new-, count: 2, release: r2}]"))
    [noop] = kinds(res, "noop")
    assert (noop["engine"], noop["why"]) == ("new-1", "stop: engine is stopped")
    assert [(r["engine"], r["t"], r["release"]) for r in kinds(res, "start")][3:] == [
        ("new-1", 1.5, "r2"),
        ("new-2", 1.5, "r2"),
    ]
    res = run_scenario(_two("[{start: new-1, release: r1}, {add: new-, count: 2, release: r2}]"))
    assert [(r["engine"], r["why"]) for r in kinds(res, "noop")] == [("new-1", "start: engine is not added yet")]


def test_remove_stops_for_good_and_no_later_step_starts_the_engine():
    # engine-1 handles the op of t=1 until 2: a graceful remove at 1.5 waits for it, then records removed at 2
    res = run_scenario(_two("[{after: 1.5, remove: engine-1}, {start: engine-1, release: r2}]"))
    [removed] = kinds(res, "removed")
    assert (removed["engine"], removed["t"]) == ("engine-1", 2.0)
    assert [(r["engine"], r["why"]) for r in kinds(res, "noop")] == [("engine-1", "start: engine was removed")]
    assert [r["engine"] for r in kinds(res, "start")] == ["engine-1", "engine-2", "engine-3"]  # only at t=0
    # how: kill removes at once, and the message in hand is lost
    res = run_scenario(_two("[{after: 1.5, remove: engine-1, how: kill}]"))
    assert [(r["engine"], r["t"]) for r in kinds(res, "removed")] == [("engine-1", 1.5)]
    assert [r["engine"] for r in kinds(res, "lost")] == ["engine-1"]


def test_add_and_remove_checks_of_the_loader():
    with pytest.raises(ScenarioError) as e:
        _two("[{add: engine-2, release: r2}]")
    assert _no_line(str(e.value)) == (
        "<test>: plan[0].add: engine 'engine-2' is already defined (engines are added once, by a new name)"
    )
    with pytest.raises(ScenarioError) as e:
        _two("[{add: x, release: r9}]")
    assert "plan[0].release: undefined release 'r9'" in _no_line(str(e.value))
    with pytest.raises(ScenarioError) as e:
        _two("[{add: x, release: r2, service: nope}]")
    assert "plan[0].service: undefined service 'nope'" in _no_line(str(e.value))
    with pytest.raises(ScenarioError) as e:
        _two("[{remove: engine-9}]")
    assert "plan[0].remove: undefined engine 'engine-9'" in _no_line(str(e.value))
    with pytest.raises(ScenarioError) as e:
        _two("[{add: x}]")
    assert "'add' needs 'release'" in str(e.value)
    # an added engine is a defined engine for later steps, faults and conditions
    s = _two("[{add: x, release: r2}, {wait_until: {idle: x}}, {remove: x}]", faults="[{kill: x, at: 9}]")
    assert [st.action for st in s.plan] == ["add", "wait_until", "remove"]


# ============================================================================ configuration as runtime state
def _config_releases(applies: str) -> str:
    """TWO_RELEASES with a read switch on r2: read_from old (resource.properties) or new (resource.id)."""
    return TWO_RELEASES + textwrap.indent(
        textwrap.dedent(
            f"""\
            config:
              read_from:
                default: old
                applies: {applies}
                values:
                  old: {{}}
                  new: {{data: {{props: {{read: resource.id, write: [resource.properties]}}}}}}
            """
        ),
        "  ",
    )


def _reads_of(res, engine):
    return [(r["t"], r["loc"]) for r in kinds(res, "read") if r["engine"] == engine]


def test_sighup_applies_a_sighup_option_to_a_running_engine():
    # ops at t = 1..6; after engine-1's restart at 0 the rotation is e2, e3, e1: engine-1 takes t=3 and t=6.
    # read_from=new is set at 4.5 and applied by the sighup at once: t=3 reads the old place, t=6 the new one
    wl = WORKLOAD.replace("stop: 3.5", "stop: 6.5")
    plan = """[{restart: engine-1, release: r2}, {after: 4.5, set_config: {read_from: new}, engines: [engine-1]},
               {sighup: [engine-1]}]"""
    res = run_scenario(_two(plan, releases=_config_releases("sighup"), workload=wl))
    assert [r.get("config") for r in kinds(res, "start")] == [None, None, None, {"read_from": "old"}]
    [c] = kinds(res, "config")
    assert (c["t"], c["engine"], c["release"], c["config"]) == (4.5, "engine-1", "r2", {"read_from": "new"})
    assert _reads_of(res, "engine-1") == [(3.0, "resource.properties"), (6.0, "resource.id")]
    # the set_config alone changes nothing until the sighup
    plan_no_hup = "[{restart: engine-1, release: r2}, {after: 4.5, set_config: {read_from: new}, engines: [engine-1]}]"
    res = run_scenario(_two(plan_no_hup, releases=_config_releases("sighup"), workload=wl))
    assert _reads_of(res, "engine-1") == [(3.0, "resource.properties"), (6.0, "resource.properties")]
    assert kinds(res, "config") == []


def test_a_restart_option_waits_for_the_next_start():
    # applies: restart -- the sighup does nothing; a restart of engine-1 at 4.5 applies it. Rotation: after
    # t=4 (e2) it is e3, e1, e2; engine-1 rejoins at the tail at 4.5: t=5 e3, t=6 e2, t=7 e1 (new place)
    wl = WORKLOAD.replace("stop: 3.5", "stop: 7.5")
    plan = """[{restart: engine-1, release: r2}, {after: 4.5, set_config: {read_from: new}}, {sighup: all},
               {restart: engine-1, release: r2}]"""
    res = run_scenario(_two(plan, releases=_config_releases("restart"), workload=wl))
    assert kinds(res, "config") == []
    assert _reads_of(res, "engine-1") == [(3.0, "resource.properties"), (7.0, "resource.id")]
    assert [(r["engine"], r["t"], r.get("config")) for r in kinds(res, "start")][3:] == [
        ("engine-1", 0.0, {"read_from": "old"}),
        ("engine-1", 4.5, {"read_from": "new"}),
    ]


def test_version_skew_counts_releases_not_configurations():
    # running at the end: engine-3 on r1, engine-1 on r2 (read_from new), engine-2 on r2 (old): two releases
    plan = """[{set_config: {read_from: new}, engines: [engine-1]}, {restart: engine-1, release: r2},
               {restart: engine-2, release: r2}]"""
    res = run_scenario(_two(plan, releases=_config_releases("restart"), invariants="{version-skew: {max_releases: 2}}"))
    assert [r.get("config") for r in kinds(res, "start")][3:] == [{"read_from": "new"}, {"read_from": "old"}]
    [inv] = res.invariants
    assert (inv.held, inv.vacuous) == (True, False)


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ("[{set_config: {colour: red}}]", "plan[0].set_config.colour: no release declares config option 'colour' "),
        ("[{set_config: {read_from: newest}}]", "plan[0].set_config.read_from: 'newest' is not a value of 'read_from'"),
        ("[{set_config: {read_from: new}, engines: [engine-9]}]", "plan[0].engines[0]: undefined engine 'engine-9'"),
        ("[{sighup: [engine-9]}]", "plan[0].sighup[0]: undefined engine 'engine-9'"),
    ],
)
def test_bad_config_steps_are_refused(plan, message):
    with pytest.raises(ScenarioError) as e:
        _two(plan, releases=_config_releases("sighup"))
    assert message in _no_line(str(e.value))


def test_a_config_default_must_be_one_of_its_values():
    bad = _config_releases("sighup").replace("default: old", "default: middle")
    with pytest.raises(ScenarioError) as e:
        _two("[]", releases=bad)
    # (the test helper dumps its YAML with sorted keys: the values read back as new, old)
    assert "releases.r2.config.read_from: default 'middle' is not one of the values (new, old)" in _no_line(
        str(e.value)
    )


# ============================================================================ cap policy: computed
def _caps_releases(computed: str) -> str:
    """r1 implements 1.0; r2 implements 1.1 and pins 'cap: auto', computed as given."""
    return TWO_RELEASES.replace(
        """r2:
  rpc: {endpoints: [{version: "1.0", methods: {op: [x], op2: [x]}}]}""",
        f"""r2:
  rpc: {{endpoints: [{{version: "1.1", methods: {{op: [x], op2: [x]}}}}], cap: auto, computed: {computed}}}""",
    )


ROLL = "[{restart: engine-1, release: r2}, {restart: engine-2, release: r2}, {restart: engine-3, release: r2}"


def _caps(res):
    return [(r["engine"], r["cap"], r["why"]) for r in kinds(res, "cap")]


def test_an_auto_cap_computed_at_start_stays_until_a_restart():
    # engine-1 and engine-2 start on r2 while r1 engines run: 1.0, cached; engine-3 starts last: 1.1
    res = run_scenario(_two(ROLL + ", {sighup: all}]", releases=_caps_releases("at-start")))
    assert [(r["engine"], r["cap"]) for r in kinds(res, "start")][3:] == [
        ("engine-1", "1.0"),
        ("engine-2", "1.0"),
        ("engine-3", "1.1"),
    ]
    assert _caps(res) == []  # the sighup does not touch an at-start cap


def test_an_on_sighup_cap_is_computed_again_at_the_sighup():
    res = run_scenario(_two(ROLL + ", {sighup: [engine-1]}, {sighup: all}]", releases=_caps_releases("on-sighup")))
    assert _caps(res) == [("engine-1", "1.1", "sighup"), ("engine-2", "1.1", "sighup")]
    sighups = [r["i"] for r in kinds(res, "step") if r["action"] == "sighup"]
    assert [r["cause"] for r in kinds(res, "cap")] == [[sighups[0]], [sighups[1]]]


def test_a_live_cap_follows_every_start_and_stop():
    # engine-3's stop (the last r1 engine) lifts engine-1 and engine-2 to 1.1 at once; the clients (on r2,
    # live) compute theirs at their next send: 1.1 at t=1
    wl = WORKLOAD + "client: r2\n"
    res = run_scenario(_two(ROLL + "]", releases=_caps_releases("live"), workload=wl))
    [stopped3] = [r for r in kinds(res, "stopped") if r["engine"] == "engine-3"]
    caps = kinds(res, "cap")
    assert _caps(res) == [("engine-1", "1.1", "live"), ("engine-2", "1.1", "live"), ("client", "1.1", "live")]
    assert [r["cause"] for r in caps[:2]] == [[stopped3["i"]], [stopped3["i"]]]
    assert caps[2]["t"] == 1.0
    # and a new r1 engine brings them back down at its start
    res = run_scenario(_two(ROLL + ", {add: old-1, release: r1}]", releases=_caps_releases("live"), workload=wl))
    assert _caps(res)[2:5] == [("engine-1", "1.0", "live"), ("engine-2", "1.0", "live"), ("engine-3", "1.0", "live")]


# ============================================================================ service records (database.service_records)
RECORDS_DB = "{tables: {resource: [id, properties]}, rows: 4, service_records: true}"


def _records(plan: str, computed: str = "at-start", records: bool = True, **more):
    db = RECORDS_DB if records else RECORDS_DB.replace(", service_records: true", "")
    return run_scenario(_two(plan, releases=_caps_releases(computed), database=db, **more))


def _start_caps(res):
    return [(r["engine"], r["release"], r["cap"]) for r in kinds(res, "start")][3:]


def test_a_killed_engines_record_stays_and_holds_the_auto_cap_down():
    # engine-3 dies on r1 (1.0); engine-1 then engine-2 restart on r2 (1.1). engine-2's start: the records say
    # engine-1 1.1, engine-2 1.1, engine-3 1.0 (killed) -> 1.0; reading the running engines it would be 1.1
    plan = "[{kill: engine-3}, {restart: engine-1, release: r2}, {restart: engine-2, release: r2}]"
    res = _records(plan)
    assert _start_caps(res) == [("engine-1", "r2", "1.0"), ("engine-2", "r2", "1.0")]
    assert _start_caps(_records(plan, records=False)) == [("engine-1", "r2", "1.0"), ("engine-2", "r2", "1.1")]
    # where each cap came from: a cap record caused by the start
    starts = {r["engine"]: r["i"] for r in kinds(res, "start") if r["release"] == "r2"}
    assert [(r["engine"], r["cap"], r["why"], r["cause"]) for r in kinds(res, "cap")] == [
        (
            e,
            "1.0",
            "start; from the service records: 1.0 registered by engine-2 (r1, running), engine-3 (r1, killed)"
            if e == "engine-1"
            else "start; from the service records: 1.0 registered by engine-3 (r1, killed)",
            [starts[e]],
        )
        for e in ("engine-1", "engine-2")
    ]


def test_a_gracefully_stopped_engines_record_stays_too():
    plan = "[{stop: engine-3}, {restart: engine-1, release: r2}, {restart: engine-2, release: r2}]"
    res = _records(plan)
    assert _start_caps(res)[-1] == ("engine-2", "r2", "1.0")
    assert kinds(res, "cap")[-1]["why"].endswith("1.0 registered by engine-3 (r1, stopped)")


def test_a_restart_replaces_the_engines_record_it_does_not_add_one():
    # boundary: every engine re-registers on r2, so the last one's start finds 1.1 only (a second record per
    # engine would keep 1.0)
    res = _records(ROLL + "]")
    assert _start_caps(res) == [("engine-1", "r2", "1.0"), ("engine-2", "r2", "1.0"), ("engine-3", "r2", "1.1")]
    assert kinds(res, "cap")[-1]["why"] == (
        "start; from the service records: 1.1 registered by engine-1 (r2, running), engine-2 (r2, running), "
        "engine-3 (r2, running)"
    )


def test_remove_deregisters_and_live_caps_rise_at_once():
    plan = "[{kill: engine-3}, {restart: engine-1, release: r2}, {restart: engine-2, release: r2}, {remove: engine-3}]"
    res = _records(plan, computed="live")
    [removed] = kinds(res, "removed")
    up = [(r["engine"], r["cap"], r["why"]) for r in kinds(res, "cap") if r["cause"] == [removed["i"]]]
    origin = "from the service records: 1.1 registered by engine-1 (r2, running), engine-2 (r2, running)"
    assert up == [("engine-1", "1.1", f"live; {origin}"), ("engine-2", "1.1", f"live; {origin}")]
    # without the remove nothing lifts them: the stale record stays to the end
    res = _records(plan.replace(", {remove: engine-3}", ""), computed="live")
    assert all(r["cap"] == "1.0" for r in kinds(res, "cap"))


def test_an_on_sighup_cap_reads_the_records_at_the_sighup():
    # engine-3 removed after the roll: the records hold 1.1 only, but an on-sighup cap waits for the sighup
    plan = (
        "[{kill: engine-3}, {restart: engine-1, release: r2}, {restart: engine-2, release: r2}, "
        "{remove: engine-3}, {sighup: [engine-1]}]"
    )
    res = _records(plan, computed="on-sighup")
    [hup] = [r for r in kinds(res, "step") if r["action"] == "sighup"]
    assert [(r["engine"], r["cap"]) for r in kinds(res, "cap") if r["cause"] == [hup["i"]]] == [("engine-1", "1.1")]
    assert [r["cap"] for r in kinds(res, "cap") if r["engine"] == "engine-2"] == ["1.0"]  # its start's only


def test_without_service_records_no_cap_record_is_written_at_a_start():
    res = _records(ROLL + "]", records=False)
    assert kinds(res, "cap") == []


# ============================================================================ the search and the matrix on the new steps
def test_the_search_may_turn_a_remove_into_a_kill():
    from simroll.explore.search import Schedule, apply_schedule

    s = _two(
        "[{restart: engine-1, release: r2}, {remove: engine-3}]",
        search="{kill_instead_of_stop: true, max_pause: 0}",
    )
    killed = apply_schedule(s, Schedule((0, 1), (True, True), (0, 0), (False, True)))
    assert [(st.action, getattr(st, "how", None)) for st in killed.plan] == [
        ("restart", "graceful"),
        ("remove", "kill"),
    ]
    res = run_scenario(killed)
    assert [r["engine"] for r in kinds(res, "kill")] == ["engine-3"]
    assert [r["engine"] for r in kinds(res, "removed")] == ["engine-3"]


def test_kill_last_legacy_follows_added_engines_and_kills_at_a_remove():
    from simroll.explore.matrix import kill_last_legacy

    # spare-1 joins on r1 (the initial release): engine-3's remove leaves it running r1, so the last legacy
    # engine to leave is spare-1, at step 4
    plan = (
        "[{add: spare-, count: 1, release: r1}, {restart: engine-1, release: r2}, {restart: engine-2, release: r2}, "
        "{remove: engine-3}, {remove: spare-1}]"
    )
    t = kill_last_legacy(_two(plan))
    assert t is not None
    assert [(st.action, getattr(st, "how", None)) for st in t.plan][3:] == [("remove", "graceful"), ("remove", "kill")]


def test_flip_early_takes_a_config_flip_with_the_engine_it_moves():
    from simroll import load_scenario
    from simroll.explore.matrix import flip_early, three_releases

    s = load_scenario(SCENARIOS / "patterns" / "config_switch.yaml")
    # 0 expand, 1-3 restart onto new, 4 backfill, 5 set_config (every engine), 6-8 restart onto new, 9-11 plus2,
    # 12 contract: engine-1's second restart (6) moves after its first (1), its own set_config just before it
    t = flip_early(s)
    assert t is not None
    got = [(st.action, getattr(st, st.action), getattr(st, "engines", None)) for st in t.plan][:10]
    assert got == [
        ("expand", ["resource_properties_data.data"], None),
        ("restart", "engine-1", None),
        ("set_config", {"read_from": "new"}, ["engine-1"]),
        ("restart", "engine-1", None),
        ("restart", "engine-2", None),
        ("restart", "engine-3", None),
        ("backfill", s.plan[4].backfill, None),
        ("set_config", {"read_from": "new"}, None),
        ("restart", "engine-2", None),
        ("restart", "engine-3", None),
    ]
    res = run_scenario(t)
    assert "no-lost-write" in res.violated and "version-skew" not in res.violated  # a flip is not a release
    # three-releases: engine-1's flip moves before engine-3's first restart, with its set_config
    t3 = three_releases(s)
    assert t3 is not None
    assert [(st.action, getattr(st, "engines", None)) for st in t3.plan][2:6] == [
        ("restart", None),
        ("set_config", ["engine-1"]),
        ("restart", None),
        ("restart", None),
    ]


# ============================================================================ the config on the release timeline
def test_by_config_splits_a_run_where_the_config_changes():
    from simroll.view.plots.timeline import _by_config, _config_changes

    records = [
        {"kind": "start", "t": 0.0, "engine": "e1", "config": {"read_from": "old"}},
        {"kind": "config", "t": 5.0, "engine": "e1", "config": {"read_from": "new"}},
        {"kind": "start", "t": 9.0, "engine": "e1"},  # a release without options
        {"kind": "start", "t": 0.0, "engine": "e2"},  # no config ever: not listed
    ]
    changes = _config_changes(records)
    assert changes == {"e1": [(0.0, "read_from=old"), (5.0, "read_from=new"), (9.0, "")]}
    assert _by_config(changes["e1"], 0.0, 8.0) == [(0.0, 5.0, "read_from=old"), (5.0, 8.0, "read_from=new")]
    # boundaries: a change at the run's start is in force from it; one at its end splits nothing
    assert _by_config(changes["e1"], 5.0, 9.0) == [(5.0, 9.0, "read_from=new")]
    assert _by_config(changes["e1"], 9.0, 12.0) == [(9.0, 12.0, "")]
    assert _by_config(changes.get("e2"), 0.0, 3.0) == [(0.0, 3.0, "")]


def test_the_release_timeline_names_and_hatches_the_config_in_force():
    from simroll import load_scenario
    from simroll.view.plots.timeline import release_timeline

    res = run_scenario(load_scenario(SCENARIOS / "config_switch_after_backfill.yaml"))
    ax = release_timeline(res).axes[0]
    labels = sorted(t.get_text() for t in ax.texts if "[" in t.get_text())
    # each engine: plus1 with read_from=old until the sighup at t=52, then read_from=new
    assert labels == ["plus1 [read_from=new]"] * 3 + ["plus1 [read_from=old]"] * 3
    hatched = [p for p in ax.patches if p.get_gid() and p.get_hatch() == "o"]
    assert sorted(p.get_gid() for p in hatched) == [f"engine-{k}|plus1|running" for k in (1, 2, 3)]
    assert [p.get_x() for p in hatched] == [pytest.approx(52.0)] * 3  # the sighup (t=52, less a rounding)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "config read_from=old" in legend and "config read_from=new" in legend


def test_the_release_timeline_without_config_has_no_config_label_or_hatch():
    from simroll import load_scenario
    from simroll.view.plots.timeline import release_timeline

    ax = release_timeline(run_scenario(load_scenario(SCENARIOS / "late_host_replaced.yaml"))).axes[0]
    assert not [t for t in ax.texts if "[" in t.get_text()]
    assert {p.get_hatch() for p in ax.patches if p.get_gid()} <= {None, "////"}
    assert not [t for t in ax.get_legend().get_texts() if t.get_text().startswith("config")]
