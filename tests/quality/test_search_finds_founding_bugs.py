"""The search finds each bug we claim it finds, within budget, and shrinks it to a 1-minimal
counterexample: dropping any remaining plan step, or setting any remaining choice back to its
default, makes the run pass."""

import pytest
from conftest import SCENARIOS

from simroll import load_scenario, run_scenario
from simroll.explore.search import fuzz
from simroll.scenario.load import dump_scenario, load_scenario_text

BUGS = {
    "fuzz_backfill_race": "no-lost-write",
    "fuzz_last_legacy": "no-stranded-message",
    "fuzz_early_contract": "schema-compatible",
    "fuzz_add_column_one_release": "no-lost-write",
}
BUDGET = 200  # simulations Hypothesis may generate


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BUGS))
def test_search_finds_shrinks_and_replays(name):
    scenario = load_scenario(SCENARIOS / f"{name}.yaml")
    assert run_scenario(scenario).ok, "the default run of a fuzz target must hold"
    found = fuzz(scenario, max_examples=BUDGET, seed=0)
    assert found.found and found.invariant == BUGS[name]
    ce = found.counterexample
    # the file written out replays the same trace
    replay = load_scenario_text(dump_scenario(ce), f"{name}.counterexample.yaml")
    assert run_scenario(replay).trace_sha256 == found.trace_sha256
    assert BUGS[name] in run_scenario(replay).violated
    # 1-minimal: remove each plan step in turn
    for i in range(len(ce.plan)):
        smaller = ce.model_copy(update={"plan": ce.plan[:i] + ce.plan[i + 1 :], "faults": []})
        assert run_scenario(smaller).ok, f"{name}: the counterexample still fails without step {i}"
    # ... and set each pinned choice back to its default
    for i in range(len(ce.choices)):
        smaller = ce.model_copy(update={"choices": ce.choices[:i] + ce.choices[i + 1 :]})
        assert run_scenario(smaller).ok, f"{name}: the counterexample still fails without choice {i}"
