"""The pytest plugin, in a fresh project directory (pytester runs pytest there in-process)."""

import pytest
from conftest import SCENARIOS

from simroll.pytest_plugin import _cause

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
    pytester.makepyfile(**{"tests/test_plain": "def test_plain():\n    assert True\n"})
    pytester.makeini("[pytest]\nsimroll_max_examples = 30\n")
    return pytester


def _collected(result):
    return sorted(line for line in result.outlines if "::" in line and not line.startswith(("ERROR", "FAILED")))


def test_items_are_named_after_the_scenario(project):
    result = project.runpytest("--collect-only", "-q", "-p", "no:cacheprovider")
    assert _collected(result) == [
        "tests/contract_design.yaml::fuzz_early_contract",
        "tests/contract_known_bad.yaml::fuzz_early_contract",
        "tests/safe_design.yaml::last_legacy_drain_safe",
        "tests/test_plain.py::test_plain",
    ]


def test_the_simroll_marker_selects_and_deselects_scenario_items(project):
    only = project.runpytest("--collect-only", "-q", "-p", "no:cacheprovider", "-m", "simroll")
    assert [n.split("::")[0] for n in _collected(only)] == [
        "tests/contract_design.yaml",
        "tests/contract_known_bad.yaml",
        "tests/safe_design.yaml",
    ]
    without = project.runpytest("-q", "-p", "no:cacheprovider", "-m", "not simroll")
    without.assert_outcomes(passed=1, deselected=3)
    strict = project.runpytest("--collect-only", "-q", "-p", "no:cacheprovider", "--strict-markers")
    assert strict.ret == 0  # the marker is registered


def test_an_invalid_scenario_is_a_collection_error_naming_the_place(project):
    bad = (SCENARIOS / "last_legacy_drain_safe.yaml").read_text().replace("engines:", "engines_typo:", 1)
    project.makefile(".yaml", **{"tests/broken": bad})
    result = project.runpytest("-p", "no:cacheprovider", "-k", "safe_design or broken")
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert "ERROR collecting tests/broken.yaml" in out
    assert "tests/broken.yaml: engines (line 8): missing required key 'engines'" in out
    assert "Traceback" not in out
    missing = (SCENARIOS / "last_legacy_drain_safe.yaml").read_text().replace("expect: holds", "expect:")
    project.makefile(".yaml", **{"tests/broken": missing})
    assert project.runpytest("-p", "no:cacheprovider", "--collect-only").ret == pytest.ExitCode.INTERRUPTED


def test_replays_and_counterexamples_are_not_collected_unless_asked(project):
    safe = (SCENARIOS / "last_legacy_drain_safe.yaml").read_text()
    files = {
        "tests/out/old.counterexample.yaml": safe,  # by its name
        "tests/m.replays/cell.yaml": safe,  # a matrix replay, by its folder
        "tests/written_by_fuzz.yaml": "# Counterexample found by `simroll fuzz x.yaml --seed 0`.\n" + safe,
        "tests/matrix_cell.yaml": "# Replay of the safety-matrix cell x x rolling x oslo.\n" + safe,
        "tests/sub/.simroll/counterexamples/y.yaml": safe,
    }
    for rel, text in files.items():
        (project.path / rel).parent.mkdir(parents=True, exist_ok=True)
        (project.path / rel).write_text(text)
    names = _collected(project.runpytest("--collect-only", "-q", "-p", "no:cacheprovider"))
    assert [n.split("::")[0] for n in names] == [
        "tests/contract_design.yaml",
        "tests/contract_known_bad.yaml",
        "tests/safe_design.yaml",
        "tests/test_plain.py",
    ]
    project.makeini(
        "[pytest]\nsimroll_collect =\n    *.replays/*\n    tests/written_by_fuzz.yaml\n"
        "simroll_ignore =\n    tests/contract_*\n"
    )
    names = _collected(project.runpytest("--collect-only", "-q", "-p", "no:cacheprovider"))
    assert [n.split("::")[0] for n in names] == [
        "tests/m.replays/cell.yaml",
        "tests/safe_design.yaml",
        "tests/test_plain.py",
        "tests/written_by_fuzz.yaml",
    ]
    # a file named on the command line is what the user asked for
    named = project.runpytest("--collect-only", "-q", "-p", "no:cacheprovider", "tests/out/old.counterexample.yaml")
    assert _collected(named) == ["tests/out/old.counterexample.yaml::last_legacy_drain_safe"]


def test_items_pass_and_fail_by_their_expect_line(project):
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, failed=1)
    out = result.stdout.str()
    assert "expected every invariant to hold, but the search found a violation of schema-compatible" in out
    assert "1. t=10.000  operator step 0: contract=['resource.properties']" in out
    replay = project.path / ".simroll" / "counterexamples" / "contract_design.counterexample.yaml"
    assert replay.exists()
    # the failure ends with the one-line cause, then the command that replays it
    lines = out.split("_ tests/contract_design.yaml::fuzz_early_contract _", 1)[1].splitlines()
    end = lines.index(f"replay: simroll run {replay}")
    assert lines[end - 1].startswith("why: ") and len(lines[end - 1]) > len("why: ")
    import simroll

    assert "schema-compatible" in simroll.run_scenario(simroll.load_scenario(replay)).violated


def test_budget_option(project):
    result = project.runpytest("-p", "no:cacheprovider", "--simroll-max-examples", "5", "-k", "known_bad")
    result.assert_outcomes(passed=1)


SPY = """
import simroll.explore.search as search

real = search.fuzz


def spy(scenario, max_examples, **kw):
    print(f"BUDGET {max_examples}")
    return real(scenario, max_examples=3, **kw)


def pytest_configure(config):
    search.fuzz = spy


def pytest_unconfigure(config):
    search.fuzz = real
"""


def test_the_default_budget_is_the_cli_default(pytester):
    from simroll.cli import build_parser

    cli_default = build_parser().parse_args(["fuzz", "x.yaml"]).max_examples
    assert cli_default == 200
    pytester.makefile(".yaml", **{"tests/safe_design": (SCENARIOS / "last_legacy_drain_safe.yaml").read_text()})
    pytester.makeconftest(SPY)
    result = pytester.runpytest("-p", "no:cacheprovider", "-s")
    result.assert_outcomes(passed=1)
    assert f"BUDGET {cli_default}" in result.stdout.str()


class _FakeResult:
    def __init__(self, violations):
        self.violations = violations

    def to_json(self):
        return {"violations": self.violations}


def test_the_cause_is_the_why_else_the_first_line_of_the_message():
    a = {"invariant": "a", "message": "first line\nsecond line"}
    b = {"invariant": "b", "message": "b's message", "why": "plus2 reads the new table before the backfill at t=70"}
    assert _cause(_FakeResult([a, b]), "b") == "plus2 reads the new table before the backfill at t=70"
    assert _cause(_FakeResult([a, b]), "a") == "first line"
    assert _cause(_FakeResult([]), "a") == "a violated"
