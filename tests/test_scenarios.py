"""The bundled scenarios give the outcomes their header comments promise, for the reasons they give."""

import pytest
from conftest import SCENARIOS, kinds

from simroll import load_scenario, run_scenario

FOUNDING = {
    "last_legacy_drain": ["no-stranded-message"],
    "last_legacy_drain_safe": [],
    "single_upgraded_starvation": ["bounded-imbalance"],
    "single_upgraded_oslo": ["no-incompatible-delivery"],
    "single_upgraded_pinned": [],
    "lost_dual_writes": ["no-lost-write"],
    "lost_dual_writes_safe": [],
}


@pytest.mark.parametrize("name", sorted(FOUNDING))
def test_founding_scenario_outcome(name):
    s = load_scenario(SCENARIOS / f"{name}.yaml")
    assert len(s.engine_list()) >= 3
    res = run_scenario(s)
    assert res.violated == FOUNDING[name]
    assert not res.limited
    expect = "holds" if not FOUNDING[name] else f"violates {FOUNDING[name][0]}"
    assert s.expect == expect


def test_every_bundled_scenario_meets_its_expect_line(bundled):
    for path in bundled:
        s = load_scenario(path)
        assert s.expect, f"{path.name} has no expect line"
        res = run_scenario(s)
        if s.expect == "holds":
            assert res.ok, (path.name, res.violated)
        else:
            assert s.expect.split()[1] in res.violated, (path.name, res.violated)


def test_last_legacy_drain_strands_old_major_messages_after_the_last_legacy_engine_stops():
    res = run_scenario(load_scenario(SCENARIOS / "last_legacy_drain.yaml"))
    last_stop = [r for r in kinds(res, "stop") if r["engine"] == "engine-3"][0]
    stranded = kinds(res, "left") + kinds(res, "expire")
    assert stranded
    sends = {r["msg"]: r for r in kinds(res, "send")}
    assert {sends[r["msg"]]["version"] for r in stranded} == {"1.3"}  # only old-major messages
    assert all(r["t"] >= last_stop["t"] for r in stranded)
    # the report's causal chain leads from the stop of the last legacy engine
    v = res.violations[0]
    assert last_stop["i"] in v.causes


def test_starvation_is_engine_1_waiting_while_legacy_engines_idle():
    res = run_scenario(load_scenario(SCENARIOS / "single_upgraded_starvation.yaml"))
    vs = [v for v in res.violations if v.invariant == "bounded-imbalance"]
    assert {v.engines[0] for v in vs} == {"engine-1"}
    # engine-1 receives about twice the messages of each legacy engine during the pause
    recv = [r for r in kinds(res, "recv") if 25 <= r["t"] <= 250]
    count = {e: sum(1 for r in recv if r["engine"] == e) for e in ("engine-1", "engine-2", "engine-3")}
    assert count["engine-1"] > 1.4 * max(count["engine-2"], count["engine-3"])


def test_oslo_variant_rejects_at_legacy_engines_only():
    res = run_scenario(load_scenario(SCENARIOS / "single_upgraded_oslo.yaml"))
    rejects = kinds(res, "reject")
    assert {r["engine"] for r in rejects} == {"engine-2", "engine-3"}
    assert {(r["error"], r["version"]) for r in rejects} == {("UnsupportedVersion", "1.1")}


def test_lost_dual_write_is_a_plus2_read_of_the_new_table():
    res = run_scenario(load_scenario(SCENARIOS / "lost_dual_writes.yaml"))
    reads = {r["i"]: r for r in kinds(res, "read")}
    for v in res.violations:
        if v.event in reads:
            assert reads[v.event]["loc"] == "resource_properties_data.data"


# the bus's services and virtual hosts (issue 13): one unsafe/safe pair per concept
BUS = {
    "services_engine_first": ["no-incompatible-delivery", "operations-complete"],
    "services_worker_first": [],
    "vhost_cutover_undrained": ["no-stranded-message", "operations-complete"],
    "vhost_cutover_drained": [],
}


@pytest.mark.parametrize("name", sorted(BUS))
def test_bus_scenario_outcome(name):
    s = load_scenario(SCENARIOS / f"{name}.yaml")
    res = run_scenario(s)
    assert res.violated == BUS[name]
    assert not res.limited
    expect = "holds" if not BUS[name] else f"violates {BUS[name][0]}"
    assert s.expect == expect
    assert not any(r.vacuous for r in res.invariants)


def test_engine_first_casts_new_versions_to_old_workers_only():
    res = run_scenario(load_scenario(SCENARIOS / "services_engine_first.yaml"))
    starts = kinds(res, "start")
    release_at = {}  # engine -> its release, as of each reject
    rejects = kinds(res, "reject")
    assert rejects
    for r in rejects:
        release_at = {s["engine"]: s["release"] for s in starts if s["i"] < r["i"]}
        # a 1.1 check_resource sent by a new engine, reaching a worker still on worker-old
        assert (r["method"], r["version"], release_at[r["engine"]]) == ("check_resource", "1.1", "worker-old")
    # the casts went to the worker service's topic; the engines never saw a check_resource
    sends = kinds(res, "send")
    assert {(s["method"], s["service"], s["queue"]) for s in sends} == {
        ("create_stack", "engine", "engine"),
        ("check_resource", "engine_worker", "engine_worker"),
    }
    by_msg = {s["msg"]: s for s in sends}
    assert all(
        (by_msg[r["msg"]]["method"] == "check_resource") == r["engine"].startswith("worker") for r in kinds(res, "recv")
    )
    # four releases run at once, two per service: version-skew holds
    assert "version-skew" not in res.violated


def test_undrained_cutover_strands_messages_on_the_old_vhost():
    res = run_scenario(load_scenario(SCENARIOS / "vhost_cutover_undrained.yaml"))
    [vh] = kinds(res, "vhost")
    assert vh["clients"] == "heat_new" and vh["depth"]["/"] > 0  # '/' was not drained at the cut-over
    left = kinds(res, "left")
    assert left and {r["queue"] for r in left} == {"engine"}  # all on '/', none on heat_new
    # each one's causal chain leads to the stop of an old engine: the last that consumed '/'
    stops = {r["i"] for r in kinds(res, "stop")}
    assert all(set(r["cause"]) & stops for r in left)


def test_drained_cutover_waits_for_the_old_vhost():
    res = run_scenario(load_scenario(SCENARIOS / "vhost_cutover_drained.yaml"))
    [vh] = kinds(res, "vhost")
    drained = kinds(res, "drained")
    assert [d["vhost"] for d in drained] == ["/", "/"]
    assert drained[0]["t"] > vh["t"]  # the first drain waited for the depth it saw at the cut-over
    first_stop = min(r["t"] for r in kinds(res, "stop"))
    assert first_stop >= drained[1]["t"]
    # nothing the old engines sent after the cut-over went to heat_new, nothing the new ones sent went to '/'
    release = {}
    for r in res.records:
        if r["kind"] == "start":
            release[r["engine"]] = r["release"]
        elif r["kind"] == "send" and r["engine"] != "client":
            assert r["queue"] == ("heat_new/engine" if release[r["engine"]] == "new" else "engine")


def test_retries_after_a_caller_timeout_apply_an_operation_twice():
    res = run_scenario(load_scenario(SCENARIOS / "retry_duplicate.yaml"))
    assert res.violated == ["no-duplicate-effect"]
    sends = {r["msg"]: r for r in kinds(res, "send")}
    timeouts = {r["i"]: r for r in kinds(res, "timeout")}
    for v in res.violations:
        first, retry, first_done = (res.records[c] for c in v.causes)
        assert first["kind"] == "send" and "retry_of" not in first
        assert retry["retry_of"] == first["msg"]  # the retry names its first attempt
        assert timeouts[retry["cause"][0]]["msg"] in sends  # it was sent because its caller gave up
        assert first_done["kind"] == "done" and first_done["ok"]
        # the first copy was handled after its caller had given up on it
        assert first_done["t"] >= sends[first["msg"]]["t"] + 5
    assert not kinds(res, "dedup")


def test_an_idempotency_key_applies_each_retried_operation_once():
    res = run_scenario(load_scenario(SCENARIOS / "retry_duplicate_idempotent.yaml"))
    assert res.ok
    inv = {i.name: i for i in res.invariants}["no-duplicate-effect"]
    assert not inv.vacuous  # calls still timed out and were retried
    assert any("retry_of" in r for r in kinds(res, "send")) and kinds(res, "dedup")
    writes_by_op: dict[int, int] = {}
    op = {r["msg"]: r.get("retry_of", r["msg"]) for r in kinds(res, "send") if r["engine"] == "client"}
    for w in kinds(res, "write"):
        writes_by_op[op[w["msg"]]] = writes_by_op.get(op[w["msg"]], 0) + 1
    assert set(writes_by_op.values()) == {1}


# the operator's and the cluster's vocabulary (issue 15): one unsafe/safe pair per concept
OPERATOR = {
    "release_handlers_early_cast": ["no-incompatible-delivery", "operations-complete"],
    "release_handlers_two_step": [],
    "drain_wait_guessed": ["no-stranded-message"],
    "drain_wait_until_idle": [],
    "late_host_rejoins_old": ["no-incompatible-delivery"],
    "late_host_replaced": [],
    "config_switch_early": ["no-lost-write"],
    "config_switch_after_backfill": [],
    "cap_cached_late_host": ["no-incompatible-delivery"],
    "cap_live_late_host": [],
    "service_record_stale_cap": ["no-refused-send"],
    "service_record_removed": [],
}


@pytest.mark.parametrize("name", sorted(OPERATOR))
def test_operator_scenario_outcome(name):
    s = load_scenario(SCENARIOS / f"{name}.yaml")
    res = run_scenario(s)
    assert res.violated == OPERATOR[name]
    assert not res.limited
    assert s.expect == ("holds" if not OPERATOR[name] else f"violates {OPERATOR[name][0]}")
    if not OPERATOR[name]:
        assert not any(r.vacuous for r in res.invariants)


def test_early_cast_is_the_new_method_reaching_old_engines():
    res = run_scenario(load_scenario(SCENARIOS / "release_handlers_early_cast.yaml"))
    rejects = kinds(res, "reject")
    assert rejects
    release = {}
    for r in res.records:
        if r["kind"] == "start":
            release[r["engine"]] = r["release"]
        elif r["kind"] == "reject":
            # check_resource 1.5, cast by the new release's own update_stack handler, taken by an old engine
            assert (r["method"], r["version"], r["error"], release[r["engine"]]) == (
                "check_resource",
                "1.5",
                "UnsupportedVersion",
                "old",
            )
    senders = {r["engine"] for r in kinds(res, "send") if r["method"] == "check_resource"}
    assert senders and all(release[e] == "new" for e in senders)  # at the end all run new


def test_two_step_casts_check_resource_only_once_every_engine_implements_it():
    res = run_scenario(load_scenario(SCENARIOS / "release_handlers_two_step.yaml"))
    casts = [r for r in kinds(res, "send") if r["method"] == "check_resource"]
    last_on_new = max(r["t"] for r in kinds(res, "start") if r["release"] == "new")
    assert casts and min(r["t"] for r in casts) > last_on_new
    assert not kinds(res, "reject")


def test_guessed_wait_strands_the_last_legacy_engines_backlog():
    res = run_scenario(load_scenario(SCENARIOS / "drain_wait_guessed.yaml"))
    left = kinds(res, "left")
    assert left and {r["version"] for r in left} == {"1.3"}
    last_stop = [r for r in kinds(res, "stop") if r["engine"] == "engine-3"][-1]
    assert all(last_stop["i"] in v.causes for v in res.violations if v.invariant == "no-stranded-message")


def test_wait_until_idle_restarts_the_last_legacy_engine_only_once_it_is_idle():
    res = run_scenario(load_scenario(SCENARIOS / "drain_wait_until_idle.yaml"))
    [w] = kinds(res, "waited")
    stop = [r for r in kinds(res, "stop") if r["engine"] == "engine-3"][-1]
    assert w["waited"] > 5.0  # longer than the guessed wait of drain_wait_guessed.yaml
    assert stop["t"] == w["t"] and stop["inflight"] == []
    assert not kinds(res, "left") and not kinds(res, "plan_failed")


def test_an_old_release_fails_on_the_status_a_new_one_writes():
    res = run_scenario(load_scenario(SCENARIOS / "unknown_value_early_write.yaml"))
    assert res.violated == ["operations-complete"]
    unknown = kinds(res, "unknown_value")
    assert unknown and {(u["release"], u["value"], u["action"]) for u in unknown} == {
        ("icehouse", "CHECK_COMPLETE", "fail")
    }
    # every violation is one of these failed reads, and names the value and the release
    assert all("runs icehouse, which does not know the value 'CHECK_COMPLETE'" in v.message for v in res.violations)
    by_i = {r["i"]: r for r in res.records}
    assert all(by_i[u["cause"][1]]["kind"] == "write" for u in unknown)  # written by a juno engine


def test_a_value_written_only_once_every_engine_knows_it_holds():
    res = run_scenario(load_scenario(SCENARIOS / "unknown_value_two_step.yaml"))
    assert res.ok and not kinds(res, "unknown_value")
    release = {}
    seen_by_readers = 0
    for r in res.records:
        if r["kind"] == "start":
            release[r["engine"]] = r["release"]
        elif r["kind"] == "read" and r["value"] == "CHECK_COMPLETE":
            assert release[r["engine"]] != "icehouse"
            seen_by_readers += release[r["engine"]] == "juno-reads"
    assert seen_by_readers > 0  # the middle release did meet the new value


def test_late_host_is_the_only_engine_that_rejects_and_only_after_it_starts():
    res = run_scenario(load_scenario(SCENARIOS / "late_host_rejoins_old.yaml"))
    [late] = [r for r in kinds(res, "start") if r["engine"] == "engine-4"]
    assert late["release"] == "legacy" and late["t"] > 50  # not at t=0: declared with start: false
    rejects = kinds(res, "reject")
    assert rejects and {(r["engine"], r["version"]) for r in rejects} == {("engine-4", "1.1")}
    assert min(r["t"] for r in rejects) >= late["t"]


def test_late_host_replaced_removes_engine_4_and_adds_engine_5_on_new():
    res = run_scenario(load_scenario(SCENARIOS / "late_host_replaced.yaml"))
    assert [r["engine"] for r in kinds(res, "removed")] == ["engine-4"]
    assert [(r["engine"], r["release"]) for r in kinds(res, "start") if r["engine"] in ("engine-4", "engine-5")] == [
        ("engine-5", "new")
    ]
    assert any(r["engine"] == "engine-5" for r in kinds(res, "recv"))


def test_agents_upgraded_first_have_their_start_up_call_rejected():
    res = run_scenario(load_scenario(SCENARIOS / "startup_sync_agent_first.yaml"))
    assert res.violated == ["no-incompatible-delivery"]
    sends = {r["msg"]: r for r in kinds(res, "send")}
    rejected = [sends[r["msg"]] for r in kinds(res, "reject")]
    # every rejection is a restarted agent's start-up call at 1.1, sent right at its start, before its ready
    assert {(s["method"], s["version"]) for s in rejected} == {("get_devices", "1.1")}
    assert {s["engine"] for s in rejected} == {"agent-1", "agent-2", "agent-3"}
    starts = {(r["engine"], r["t"]) for r in kinds(res, "start") if r["release"] == "agent-new"}
    assert {(s["engine"], s["t"]) for s in rejected} == starts
    assert (
        len(kinds(res, "ready")) == 3 + 3
    )  # each agent start (initial, restart) became ready; servers have no on_start


def test_the_server_upgraded_first_answers_every_start_up_call():
    res = run_scenario(load_scenario(SCENARIOS / "startup_sync_server_first.yaml"))
    assert res.ok and not kinds(res, "reject")
    new_calls = [r for r in kinds(res, "send") if r["method"] == "get_devices" and r["version"] == "1.1"]
    assert len(new_calls) == 3


def test_early_config_switch_loses_what_legacy_engines_and_the_initial_rows_hold():
    res = run_scenario(load_scenario(SCENARIOS / "config_switch_early.yaml"))
    [hup] = kinds(res, "config")
    assert (hup["engine"], hup["release"], hup["config"]) == ("engine-1", "plus1", {"read_from": "new"})
    lost = [v for v in res.violations if v.invariant == "no-lost-write"]
    # every lost read is engine-1 reading the new table after the switch, before the backfill ended
    backfill_end = max(r["t"] for r in kinds(res, "bf_write"))
    assert lost and all(v.engines == ("engine-1",) and hup["t"] <= v.time < backfill_end for v in lost)


def test_config_switch_after_backfill_flips_every_engine_by_sighup_without_a_restart():
    res = run_scenario(load_scenario(SCENARIOS / "config_switch_after_backfill.yaml"))
    hups = kinds(res, "config")
    assert [h["engine"] for h in hups] == ["engine-1", "engine-2", "engine-3"]
    assert all(h["t"] > max(r["t"] for r in kinds(res, "bf_write")) for h in hups)
    assert len(kinds(res, "start")) == 6  # three at t=0, three restarts onto plus1: none for the config


def test_cached_cap_is_engine_3s_1_1_reaching_the_late_legacy_host():
    res = run_scenario(load_scenario(SCENARIOS / "cap_cached_late_host.yaml"))
    caps = {r["engine"]: r["cap"] for r in kinds(res, "start") if r["release"] == "new"}
    assert caps == {"engine-1": "1.0", "engine-2": "1.0", "engine-3": "1.1"}  # cached at each start
    assert kinds(res, "cap") == []
    sends = {r["msg"]: r for r in kinds(res, "send")}
    rejects = kinds(res, "reject")
    assert rejects and {(r["engine"], sends[r["msg"]]["engine"], r["version"]) for r in rejects} == {
        ("engine-4", "engine-3", "1.1")
    }


def test_stale_service_record_of_dead_engine_4_pins_the_newer_engines_cap():
    s = load_scenario(SCENARIOS / "service_record_stale_cap.yaml")
    res = run_scenario(s)
    caps = {r["engine"]: r["cap"] for r in kinds(res, "start") if r["release"] == "newer"}
    assert caps == {"engine-1": "1.4", "engine-2": "1.4", "engine-3": "1.4"}  # every running engine has 1.5
    errors = {r["error"] for r in kinds(res, "send_error")}
    assert errors == {
        "RPCVersionCapError (cap 1.4; from the service records: 1.4 registered by engine-4 (old, killed))"
    }
    # read from the running engines instead, the dead engine does not count and nothing is refused
    db = s.database.model_copy(update={"service_records": False})
    assert run_scenario(s.model_copy(update={"database": db})).violated == []


def test_live_cap_drops_to_1_0_when_the_late_host_starts():
    res = run_scenario(load_scenario(SCENARIOS / "cap_live_late_host.yaml"))
    [late] = [r for r in kinds(res, "start") if r["engine"] == "engine-4"]
    down = [(r["engine"], r["cap"]) for r in kinds(res, "cap") if r["cause"] == [late["i"]]]
    assert down == [("engine-1", "1.0"), ("engine-2", "1.0"), ("engine-3", "1.0")]
    assert all(r["version"] == "1.0" for r in kinds(res, "send") if r["t"] > late["t"])


def test_a_routine_backfill_rerun_overwrites_newer_values_in_the_new_column():
    res = run_scenario(load_scenario(SCENARIOS / "backfill_rerun_clobbers.yaml"))
    assert res.violated == ["no-lost-write"]
    assert [c["row"] for c in kinds(res, "bf_crash")] == [15] and [r["row"] for r in kinds(res, "bf_resume")] == [15]
    last_pass = max(r["t"] for r in kinds(res, "step") if r["action"] == "backfill")
    by_i = {r["i"]: r for r in res.records}
    for v in res.violations:
        # each lost write was overwritten by the last pass (from the start, once plus3 wrote only the new column)
        overwrites = [by_i[c] for c in v.causes if by_i[c]["kind"] == "bf_write"]
        assert overwrites and all(w["t"] >= last_pass for w in overwrites), v.message


def test_a_rerun_that_resumes_at_the_marker_copies_nothing_again():
    res = run_scenario(load_scenario(SCENARIOS / "backfill_rerun_resumed.yaml"))
    assert res.ok
    assert [c["row"] for c in kinds(res, "bf_crash")] == [15]
    # the second pass resumes at the crash; the third at the marker past the last row (40 rows)
    assert [r["row"] for r in kinds(res, "bf_resume")] == [15, 40]
    last_pass = max(r["t"] for r in kinds(res, "step") if r["action"] == "backfill")
    assert not [w for w in kinds(res, "bf_write") if w["t"] > last_pass]
    assert len(kinds(res, "bf_write")) == 40  # rows 0..14 by the first pass, 15..39 by the second


def test_an_agent_back_from_a_reboot_serves_a_stale_local_copy():
    res = run_scenario(load_scenario(SCENARIOS / "local_state_stale_agent.yaml"))
    assert res.violated == ["no-lost-write"]
    stop = next(r["t"] for r in kinds(res, "stop") if r["engine"] == "agent-1")
    back = next(r["t"] for r in kinds(res, "start") if r["engine"] == "agent-1" and r["release"] == "agent-new")
    by_i = {r["i"]: r for r in res.records}
    for v in res.violations:
        read = by_i[v.event]
        assert read["engine"] == "agent-1" and read["loc"] == "ports.status@agent-1"
        missed = next(by_i[c] for c in v.causes if by_i[c]["kind"] == "write")
        assert stop <= missed["t"] <= back  # the write whose fanout it missed while it was down


def test_an_agent_that_resyncs_at_start_serves_current_state():
    res = run_scenario(load_scenario(SCENARIOS / "local_state_resync.yaml"))
    assert res.ok and not res.invariants[0].vacuous
    resyncs = [r for r in kinds(res, "sync") if "row" not in r]
    # each agent fills its copy at its first start (0), then resyncs at each start on agent-new
    assert [(r["engine"], r["t"]) for r in resyncs] == [
        ("agent-1", 0.0),
        ("agent-2", 0.0),
        ("agent-1", 35.0),
        ("agent-2", 50.0),
    ]
