"""The sparse benchmark targets (bench/targets/, bench/sparse_backfill_race.yaml): each holds as
written, each names the real failure it is shaped after, and `verify` finds each bug at depth 1
(one deviation) with a counterexample that replays byte for byte, except the sparse backfill
race, which needs two. How rarely plain random
sampling finds them, and how the guided search does, is measured by bench/search.py, not here."""

import pytest
from conftest import ROOT

from simroll import load_scenario, run_scenario
from simroll.explore.search import Schedule, apply_schedule, deviations, undo_deviations
from simroll.explore.verify import verify
from simroll.scenario.load import dump_scenario, load_scenario_text

# the utility started 11/16 of max_pause later, and one read-to-write gap of 3/8 of max_gap
TWO_DEVIATIONS = {"sparse_backfill_race": Schedule((0,), (True,), (11,), (False,), (("backfill_gap", 0, 3),))}
TARGETS = sorted((ROOT / "bench" / "targets").glob("*.yaml")) + [ROOT / "bench" / "sparse_backfill_race.yaml"]


def test_the_suite_is_there():
    assert len(TARGETS) >= 5


@pytest.mark.slow
@pytest.mark.parametrize("path", TARGETS, ids=lambda p: p.stem)
def test_verify_finds_each_sparse_bug_with_one_deviation(path):
    assert path.read_text().startswith("# "), "a target says, first, which real failure it is shaped after"
    scenario = load_scenario(path)
    assert run_scenario(scenario).ok, "a target holds as written"
    (invariant,) = scenario.invariants.enabled()  # each target checks the one invariant it is about
    if path.stem in TWO_DEVIATIONS:
        # no single deviation breaks it; this pair does (verify at depth 2 takes tens of thousands of runs)
        assert verify(scenario, depth=1).verified
        assert invariant in run_scenario(apply_schedule(scenario, TWO_DEVIATIONS[path.stem])).violated
        return
    vr = verify(scenario, depth=1)
    assert vr.found and vr.invariant == invariant
    sched = vr.example.schedule
    assert deviations(sched) == 1
    for smaller in undo_deviations(sched):
        assert run_scenario(apply_schedule(scenario, smaller)).ok
    replay = load_scenario_text(dump_scenario(vr.example.counterexample), f"{path.stem}.counterexample.yaml")
    assert run_scenario(replay).trace_sha256 == vr.example.trace_sha256
