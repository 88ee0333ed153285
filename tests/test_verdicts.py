"""Truthful verdicts reach the user (issue 12): vacuous checks, availability, coverage, --strict,
the search for one invariant, and the pytest plugin's allow_vacuous.

Every number asserted here is worked out by hand from the scenario in the test (comments say how).
"""

import json

import pytest
from conftest import SCENARIOS, scenario

import simroll
from simroll.cli import main
from simroll.errors import UsageError
from simroll.explore.search import fuzz, search_target
from simroll.view.html import report_html
from simroll.view.plots import availability_table
from simroll.view.report import format_text

pytest_plugins = ["pytester"]

# One engine on r1 (service 1 s); casts at t = 1, 2, 3 (periodic, rate 1, stop 3.5), each reading
# and writing props of its row. The restart into r2 comes at t = 10, after the last operation: the
# new release never gets a message. bounded-imbalance has only ever one engine running, so no
# message could have waited for another: vacuous.
TINY = """
name: tiny
seed: 1
bus: {delivery: oslo}
database:
  tables: {resource: [id, properties]}
  rows: 2
releases:
  r1:
    rpc: {endpoints: [{version: "1.0", methods: {op: [x]}}]}
    data: {props: {read: resource.properties, write: [resource.properties]}}
    service_time: 1.0
  r2:
    rpc: {endpoints: [{version: "1.0", methods: {op: [x]}}]}
    data: {props: {read: resource.properties, write: [resource.properties]}}
    service_time: 1.0
engines: {count: 1, release: r1}
workload:
  rate: 1.0
  arrivals: periodic
  stop: 3.5
  operations: {op: 1}
  kind: cast
  handlers:
    op: {read: [props], write: [props]}
plan:
  - {after: 10, restart: engine-1, release: r2}
invariants:
  no-stranded-message: {}
  version-skew: {max_releases: 2}
  bounded-imbalance: {max_wait: 5}
expect: holds
"""

# One engine, no data; casts at t = 1, 2, 3, 4, 5 (stop 5.5). Step 0 stops engine-1 at t = 2.5 (or
# kills it); step 1 starts it again 2 s after step 0 completes.
PAUSE = """
name: pause
seed: 1
bus: {delivery: oslo}
database:
  tables: {resource: [id, properties]}
  rows: 2
releases:
  r1:
    rpc: {endpoints: [{version: "1.0", methods: {op: [x]}}]}
    service_time: 1.0
engines: {count: 1, release: r1}
workload:
  rate: 1.0
  arrivals: periodic
  stop: 5.5
  operations: {op: 1}
  kind: cast
plan:
  - {after: 2.5, stop: engine-1}
  - {after: 2, start: engine-1, release: r1}
invariants:
  no-stranded-message: {}
"""


def _tiny(**replace: str) -> simroll.Scenario:
    text = TINY
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    return simroll.load_scenario_text(text, "<tiny>")


@pytest.fixture(scope="module")
def tiny():
    return simroll.run_scenario(_tiny())


# ---------------------------------------------------------------------------------------- vacuity
def test_a_check_with_nothing_to_check_is_vacuous_not_held(tiny):
    assert tiny.ok  # vacuous is not a violation
    assert tiny.violated == [] and tiny.vacuous == ["bounded-imbalance"]
    data = tiny.to_json()
    assert data["invariants"] == {"no-stranded-message": "held", "bounded-imbalance": "vacuous", "version-skew": "held"}
    assert data["vacuous"] == ["bounded-imbalance"]
    # 3 messages sent; 2 engine starts (r1 at 0, r2 at 10); no message taken beside another able engine
    assert data["checked"] == {"no-stranded-message": 3, "bounded-imbalance": 0, "version-skew": 2}


def test_text_report_says_vacuous(tiny):
    text = format_text(tiny)
    assert "  bounded-imbalance    vacuous  (nothing to check: no message was taken while another engine" in text
    assert "  no-stranded-message  held            checked 3" in text
    assert "OK: nothing violated, but bounded-imbalance had nothing to check (vacuous, not held)" in text
    assert "OK: every invariant held" not in text


def test_a_second_engine_makes_it_checked():
    # engine-2 (r1) runs beside engine-1 all along: each of the 3 messages is taken while another
    # engine that accepts 1.0 runs -> checked 3, held
    res = simroll.run_scenario(_tiny(**{"engines: {count: 1, release: r1}": "engines: {count: 2, release: r1}"}))
    assert res.vacuous == [] and res.to_json()["invariants"]["bounded-imbalance"] == "held"
    assert res.to_json()["checked"]["bounded-imbalance"] == 3


# ---------------------------------------------------------------------------------------- coverage
def test_coverage_counts_by_hand(tiny):
    cov = tiny.to_json()["coverage"]
    assert list(cov["releases"]) == ["client", "r1", "r2"]
    assert cov["releases"]["client"]["sent"] == {"1.0": 3}
    r1 = cov["releases"]["r1"]
    assert r1["handled"] == {"1.0": 3} and r1["methods"] == {"op": 3} and r1["sent"] == {}
    assert r1["read"] == {"resource.properties": 3} and r1["written"] == {"resource.properties": 3}
    # the new release ran (from t = 10) and was given nothing
    assert all(v == {} for v in cov["releases"]["r2"].values())
    assert cov["steps"] == [{"index": 0, "action": "restart", "t": 10.0}]
    text = format_text(tiny)
    assert "  r2: nothing" in text
    assert (
        "  r1: handled 1.0 x3; methods handled op x3; read resource.properties x3; written "
        "resource.properties x3" in text
    )
    assert "  plan steps executed: 1 of 1 (0 restart t=10.000)" in text


# ---------------------------------------------------------------------------------------- availability
def test_availability_by_hand(tiny):
    # issued at 1, 2, 3; each done 1 s later (2, 3, 4): every interval between points is 1 s
    assert tiny.to_json()["availability"] == {
        "completed": 3,
        "total": 3,
        "fraction": 1.0,
        "longest_gap": 1.0,
        "longest_gap_interval": [1.0, 2.0],
        "pending": 0,
    }


def test_availability_of_a_pause():
    # m0 done at 2; m1 taken at 2, in flight at the stop (2.5), done at 3 (graceful); m2 (t=3), m3 (t=4)
    # wait; the start comes at 3 + 2 = 5: m2 done 6, m3 done 7, m4 (sent 5) done 8.
    # Points 1, 2, 3, 6, 7, 8: the longest interval without a completion is 3 to 6.
    res = simroll.run_scenario(simroll.load_scenario_text(PAUSE, "<pause>"))
    av = res.to_json()["availability"]
    assert av == {
        "completed": 5,
        "total": 5,
        "fraction": 1.0,
        "longest_gap": 3.0,
        "longest_gap_interval": [3.0, 6.0],
        "pending": 0,
    }
    assert (
        "availability: 5 of 5 operations completed (100.0%); longest interval without a completion 3.000 s "
        "(t=3.000 to 6.000)" in format_text(res)
    )
    tab = availability_table(res)
    assert tab["completed"] == [2.0, 3.0, 6.0, 7.0, 8.0] and tab["issued"] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert tab["gaps"][0] == (3.0, 6.0)


def test_availability_counts_lost_work_without_the_invariant():
    # a kill at 2.5 instead of the stop: m1 (acknowledged before dispatch) dies with the engine. The
    # kill step completes at once, so the start is at 4.5: m2 done 5.5, m3 6.5, m4 (sent 5) 7.5.
    # 4 of 5 complete; points 1, 2, 5.5, 6.5, 7.5: the longest interval is 2 to 5.5.
    res = simroll.run_scenario(simroll.load_scenario_text(PAUSE.replace("stop: engine-1", "kill: engine-1"), "<k>"))
    assert [inv.name for inv in res.invariants] == ["no-stranded-message"]  # operations-complete not enabled
    av = res.availability
    assert (av["completed"], av["total"], av["fraction"]) == (4, 5, 0.8)
    assert av["longest_gap"] == pytest.approx(3.5) and av["longest_gap_interval"] == pytest.approx((2.0, 5.5))
    assert availability_table(res)["failed"] == [2.5]


def test_a_reply_after_the_caller_gave_up_is_an_operation_that_did_not_complete():
    # one engine, 0.6 s a message; calls at 0.5, 1.0, 1.5 (periodic, rate 2), each given up after
    # 0.75 s. m0: 0.5 -> 1.1 (deadline 1.25); m1 waits in the engine's buffer, 1.1 -> 1.7 (1.75);
    # m2: 1.7 -> 2.3, after its deadline 2.25: the broker records late, and the operation fails.
    s = scenario(
        bus="{delivery: oslo, call_timeout: 0.75}",
        engines="{count: 1, release: r1}",
        releases='{r1: {rpc: {endpoints: [{version: "1.0", methods: {op: [x]}}]}, service_time: 0.6}}',
        workload="{rate: 2.0, arrivals: periodic, stop: 1.6, operations: {op: 1}, kind: call}",
        invariants="{operations-complete: {}}",
    )
    res = simroll.run_scenario(s)
    [late] = [r for r in res.records if r["kind"] == "late"]
    assert (late["msg"], late["deadline"]) == (2, 2.25)
    assert res.violated == ["operations-complete"]
    [v] = res.violations
    assert v.subject == "m2" and "after its caller gave up at t=2.250" in v.message
    av = res.availability
    assert (av["completed"], av["total"]) == (2, 3)


def test_html_shows_vacuous_availability_and_coverage(tiny):
    page = report_html(tiny, plots=False)
    assert "nothing violated; vacuous: bounded-imbalance" in page and "every invariant held" not in page
    assert '<span class="vac">vacuous</span>' in page
    assert '<table id="availability-summary">' in page and "3 of 3 (100.0%)" in page
    assert '<table id="coverage">' in page and "<code>r2</code>" in page
    full = report_html(tiny, fmt="svg")
    assert '<figure id="availability">' in full


# ---------------------------------------------------------------------------------------- --strict
@pytest.fixture
def tiny_file(tmp_path):
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY)
    return p


def test_strict_exits_1_on_vacuous(tiny_file, capsys):
    assert main(["run", str(tiny_file)]) == 0  # vacuous is not a violation
    capsys.readouterr()
    assert main(["run", str(tiny_file), "--strict"]) == 1
    out = capsys.readouterr().out
    assert "simroll: --strict: bounded-imbalance had nothing to check (vacuous): exit 1" in out
    assert main(["run", str(tiny_file), "--strict", "--json"]) == 1
    cap = capsys.readouterr()
    data = json.loads(cap.out)
    assert data["strict"] is True and data["strict_failed"] is True and data["vacuous"] == ["bounded-imbalance"]
    assert "--strict: bounded-imbalance" in cap.err


def test_strict_passes_when_nothing_is_vacuous(tmp_path, capsys):
    p = tmp_path / "two.yaml"
    p.write_text(TINY.replace("engines: {count: 1, release: r1}", "engines: {count: 2, release: r1}"))
    assert main(["run", str(p), "--strict"]) == 0


def test_strict_keeps_exit_1_for_a_violation(capsys):
    assert main(["run", str(SCENARIOS / "last_legacy_drain.yaml"), "--strict", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["strict_failed"] is False  # violated, not vacuous


# ---------------------------------------------------------------------------------------- search for one
def test_fuzz_for_one_invariant_ignores_the_others():
    # last_legacy_drain violates no-stranded-message in its own run; version-skew (2 releases at most,
    # a plain upgrade to one new release) cannot be broken by pauses: a search for it finds nothing
    s = simroll.load_scenario(SCENARIOS / "last_legacy_drain.yaml")
    anything = fuzz(s.model_copy(update={"expect": None}), max_examples=3, seed=0)
    assert anything.found and anything.invariant == "no-stranded-message" and anything.first_violation_after == 1
    skew = fuzz(s, max_examples=3, seed=0, invariant="version-skew")
    assert not skew.found and skew.invariant is None and skew.target == "version-skew"
    assert (
        skew.examples == 3
    )  # the budget: the default run and 2 schedules; the other invariant's violations did not stop it
    assert skew.to_json()["searched_for"] == "version-skew"
    with pytest.raises(UsageError, match="the scenario does not check it"):
        fuzz(s, max_examples=1, invariant="no-lost-write")


def test_expect_violates_names_the_invariant_searched_for():
    s = simroll.load_scenario(SCENARIOS / "last_legacy_drain.yaml")
    assert search_target(s) == "no-stranded-message"  # expect: violates no-stranded-message
    assert search_target(s, "version-skew") == "version-skew"
    assert search_target(s.model_copy(update={"expect": "holds"})) is None


def test_cli_fuzz_invariant(tmp_path, capsys):
    src = tmp_path / "drain.yaml"
    src.write_text(
        (SCENARIOS / "last_legacy_drain.yaml")
        .read_text()
        .replace("expect: violates no-stranded-message", "expect: violates version-skew")
    )
    # expect: violates version-skew -> that is what is searched for; no-stranded-message is ignored
    assert main(["fuzz", str(src), "--max-examples", "3", "--no-db", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["found"] is False and data["searched_for"] == "version-skew"
    assert (
        main(
            [
                "fuzz",
                str(src),
                "--max-examples",
                "3",
                "--no-db",
                "--invariant",
                "no-stranded-message",
                "--out",
                str(tmp_path / "ce.yaml"),
            ]
        )
        == 1
    )
    out = capsys.readouterr().out
    assert "FOUND a violation of no-stranded-message after" in out
    ce = simroll.load_scenario(tmp_path / "ce.yaml")
    assert ce.expect == "violates no-stranded-message"
    assert main(["fuzz", str(src), "--max-examples", "1", "--no-db", "--invariant", "no-such"]) == 2


# ---------------------------------------------------------------------------------------- the plugin
def test_plugin_fails_a_vacuous_holds_unless_allowed(pytester):
    pytester.makefile(
        ".yaml",
        **{
            "tests/vacuous": TINY,
            "tests/allowed": TINY.replace(
                "expect: holds", "# by design: one engine, nothing to balance\nallow_vacuous: true\nexpect: holds"
            ),
        },
    )
    pytester.makeini("[pytest]\nsimroll_max_examples = 3\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "expected every invariant to hold, but bounded-imbalance had nothing to check" in out
    assert "allow_vacuous: true" in out
    assert "vacuous.yaml F" in out.replace("tests/", "") or "FAILED tests/vacuous.yaml" in out


def test_plugin_expect_violates_searches_that_invariant(pytester):
    drain = (SCENARIOS / "last_legacy_drain.yaml").read_text()
    pytester.makefile(
        ".yaml",
        **{
            "tests/drain": drain,  # expect: violates no-stranded-message: found in the scenario's own run
            "tests/skew": drain.replace("expect: violates no-stranded-message", "expect: violates version-skew"),
        },
    )
    pytester.makeini("[pytest]\nsimroll_max_examples = 3\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    # the no-stranded-message violation does not answer "violates version-skew"
    assert (
        "expected version-skew to be violated, but the search found no violation of it in 3 runs" in result.stdout.str()
    )
