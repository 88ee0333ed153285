"""The pytest plugin, in a fresh project directory (pytester runs pytest there in-process)."""

import pytest
from conftest import SCENARIOS

pytest_plugins = ["pytester"]


@pytest.fixture
def project(pytester):
    contract = (SCENARIOS / "fuzz_early_contract.yaml").read_text()
    pytester.makefile(
        ".yaml",
        **{
            "tests/contract_design": contract,  # expect: holds -> the search finds the early contract
            "tests/contract_known_bad": contract.replace("expect: holds", "expect: violates schema-compatible"),
            "tests/safe_design": (SCENARIOS / "last_legacy_drain_safe.yaml").read_text(),
            "tests/unrelated": "name: not a scenario\nsteps: [1, 2]\n",
        },
    )
    pytester.makeini("[pytest]\nsimroll_max_examples = 30\n")
    return pytester


def test_scenario_files_are_collected_as_items(project):
    result = project.runpytest("--collect-only", "-q", "-p", "no:cacheprovider")
    names = sorted(line for line in result.outlines if ".yaml::" in line)
    assert names == [
        "tests/contract_design.yaml::contract_design.yaml",
        "tests/contract_known_bad.yaml::contract_known_bad.yaml",
        "tests/safe_design.yaml::safe_design.yaml",
    ]


def test_items_pass_and_fail_by_their_expect_line(project):
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    out = result.stdout.str()
    assert "expected every invariant to hold, but the search found a violation of schema-compatible" in out
    assert "1. t=10.000  operator step 0: contract=['resource.properties']" in out
    replay = project.path / ".simroll" / "counterexamples" / "contract_design.counterexample.yaml"
    assert f"replay: simroll run {replay}" in out
    assert replay.exists()
    import simroll

    assert "schema-compatible" in simroll.run_scenario(simroll.load_scenario(replay)).violated


def test_budget_option(project):
    result = project.runpytest("-p", "no:cacheprovider", "--simroll-max-examples", "5", "-k", "known_bad")
    result.assert_outcomes(passed=1)
