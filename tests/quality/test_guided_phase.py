"""The guided phases on their own: with the opening random sweep disabled, every schedule the
search runs after the default one comes from its guided generation, its shrinking and simroll's
minimisation. The search must still find the bug, shrink it to a 1-minimal counterexample and
write a file that replays byte for byte.

Hypothesis' phase (``method="hypothesis"``, steered by target()) on the founding targets;
fuzz_last_legacy is left out: Hypothesis alone does not find it within 200 simulations at seed 0
(the random sweep does, in a few runs); see docs/search.md. The aim strategy (fuzz's default,
which has no opening sweep) on every sparse target of bench/targets/ and the sparse backfill
race, each found within 60 simulations at seed 0 (bench/search.py measures 20 seeds)."""

import pytest
from conftest import ROOT, SCENARIOS

from simroll import load_scenario, run_scenario
from simroll.explore.search import _saved_failures, apply_schedule, fuzz, undo_deviations
from simroll.scenario.load import dump_scenario, load_scenario_text

GUIDED = {
    "fuzz_backfill_race": "no-lost-write",
    "fuzz_early_contract": "schema-compatible",
    "fuzz_add_column_one_release": "no-lost-write",
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(GUIDED))
def test_guided_phase_alone_finds_shrinks_and_replays(name):
    scenario = load_scenario(SCENARIOS / f"{name}.yaml")
    assert run_scenario(scenario).ok
    found = fuzz(scenario, max_examples=200, seed=0, opening_sweep=False, method="hypothesis")
    assert found.found and found.invariant == GUIDED[name]
    assert 2 <= found.first_violation_after <= 200  # not the default run: a schedule Hypothesis generated
    _replays_and_is_one_minimal(scenario, found, name)
    # ... and so does removing any remaining plan step
    ce = found.counterexample
    for i in range(len(ce.plan)):
        smaller = ce.model_copy(update={"plan": ce.plan[:i] + ce.plan[i + 1 :], "faults": []})
        assert run_scenario(smaller).ok, f"{name}: the counterexample still fails without step {i}"


@pytest.mark.slow
def test_a_saved_failure_is_replayed_first_for_that_scenario_only(tmp_path):
    db = str(tmp_path / "db")
    race = load_scenario(SCENARIOS / "fuzz_backfill_race.yaml")
    first = fuzz(race, max_examples=200, seed=0, database=db, opening_sweep=False, method="hypothesis")
    assert first.found
    again = fuzz(race, max_examples=200, seed=5, database=db, opening_sweep=False, method="hypothesis")
    # the default run, then the saved minimal schedule: found at the second simulation
    assert again.found and again.first_violation_after == 2 and again.schedule == first.schedule
    # another design does not see it: its store is keyed by its own digest
    assert _saved_failures(db, race) == [first.schedule]
    assert _saved_failures(db, race.model_copy(update={"name": "another_design"})) == []


def _replays_and_is_one_minimal(scenario, found, name):
    replay = load_scenario_text(dump_scenario(found.counterexample), f"{name}.counterexample.yaml")
    assert run_scenario(replay).trace_sha256 == found.trace_sha256
    # 1-minimal: undoing any one remaining choice (pause, kill, pin, fault, swap) makes it hold
    for smaller in undo_deviations(found.schedule):
        if smaller.keep == found.schedule.keep:  # a dropped step put back is a longer plan, not a smaller one
            assert found.invariant not in run_scenario(apply_schedule(scenario, smaller)).violated, smaller


SPARSE = sorted((ROOT / "bench" / "targets").glob("*.yaml")) + [ROOT / "bench" / "sparse_backfill_race.yaml"]


@pytest.mark.slow
@pytest.mark.parametrize("path", SPARSE, ids=lambda p: p.stem)
def test_aim_alone_finds_each_sparse_bug_shrinks_and_replays(path):
    scenario = load_scenario(path)
    (invariant,) = scenario.invariants.enabled()  # each target checks the one invariant it is about
    found = fuzz(scenario, max_examples=200, seed=0, opening_sweep=False)
    assert found.found and found.invariant == invariant
    assert 2 <= found.first_violation_after <= 60
    _replays_and_is_one_minimal(scenario, found, path.stem)
