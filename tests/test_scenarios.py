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
