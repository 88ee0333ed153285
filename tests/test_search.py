"""The search space, its application to a scenario, and `simroll fuzz`."""

import json

import pytest
from conftest import SCENARIOS, kinds

from simroll import load_scenario, load_scenario_text, run_scenario
from simroll.cli import main
from simroll.errors import ScenarioError
from simroll.explore.search import Schedule, apply_schedule, describe_counterexample, fuzz, minimize
from simroll.scenario.load import dump_scenario

LAST_LEGACY = SCENARIOS / "fuzz_last_legacy.yaml"


def test_default_schedule_is_the_scenario_as_written():
    s = load_scenario(LAST_LEGACY)
    concrete = apply_schedule(s, Schedule.default(len(s.plan)))
    assert concrete.plan == s.plan and concrete.faults == s.faults and concrete.choices == []
    assert concrete.search is None
    assert run_scenario(concrete).trace_sha256 == run_scenario(s).trace_sha256


def test_schedule_drops_reorders_pauses_and_kills():
    s = load_scenario(LAST_LEGACY)  # steps: restart engine-1, restart engine-2, stop engine-3 (after 20.7)
    # keep, pause and kill are indexed by the original step; order says who runs first
    sched = Schedule(
        order=(1, 0, 2),
        keep=(False, True, True),
        pause=(3, 16, 8),
        kill=(False, False, True),
        pins=(("consumer", 4, 1),),
        fault=None,
    )
    c = apply_schedule(s, sched)
    assert [st.action for st in c.plan] == ["restart", "kill"]
    # step 1: restart engine-2, after 20 + 16/16 of max_pause (8 s)
    assert (c.plan[0].restart, c.plan[0].after) == ("engine-2", 28.0)
    # step 2: after 20.7 + 8/16 of max_pause (8 s) = 24.7; the stop became a kill
    assert (c.plan[1].kill, c.plan[1].after) == ("engine-3", 24.7)
    assert [(ch.kind, ch.at, ch.pick) for ch in c.choices] == [("consumer", 4, 1)]
    # the concrete scenario survives a round trip through YAML unchanged
    assert load_scenario_text(dump_scenario(c)) == c


def test_pinned_consumer_choice_is_applied_and_recorded():
    s = load_scenario(LAST_LEGACY)
    base = run_scenario(s)
    res = run_scenario(s, pinned={("consumer", 0): 1})
    choice = kinds(res, "choice")
    assert len(choice) == 1 and choice[0]["at"] == 0 and choice[0]["to"] != choice[0]["default"]
    first_send = kinds(base, "send")[0]["msg"]
    assert [r["engine"] for r in kinds(base, "recv") if r["msg"] == first_send] == [choice[0]["default"]]
    assert [r["engine"] for r in kinds(res, "recv") if r["msg"] == first_send] == [choice[0]["to"]]


def test_minimize_keeps_only_what_the_violation_needs():
    s = load_scenario(SCENARIOS / "fuzz_early_contract.yaml")
    everything = Schedule(order=(3, 0, 1, 2), keep=(True,) * 4, pause=(4, 4, 4, 4), kill=(True, False, True, False))
    assert "schema-compatible" in run_scenario(apply_schedule(s, everything)).violated
    small = minimize(s, everything, "schema-compatible")
    assert small.keep == (False, False, False, True)  # only the contract is needed
    assert small.pause == (0, 0, 0, 0) and not any(small.kill)


def test_minimize_undoes_each_swap_the_violation_does_not_need():
    # steps: restart engine-1, engine-2, engine-3, contract. Without dropping steps, the contract
    # before the last restart (swap 2-3) breaks the schema; the swap of the first two restarts
    # is noise. Putting every step back at once fixes the run, so each swap is undone in turn.
    s = load_scenario(SCENARIOS / "fuzz_early_contract.yaml")
    s = s.model_copy(update={"search": s.search.model_copy(update={"drop_steps": False})})
    both = Schedule(order=(1, 0, 3, 2), keep=(True,) * 4, pause=(0,) * 4, kill=(False,) * 4)
    assert "schema-compatible" in run_scenario(apply_schedule(s, both)).violated
    assert run_scenario(apply_schedule(s, Schedule.default(4))).ok
    assert minimize(s, both, "schema-compatible").order == (0, 1, 3, 2)


def test_counterexample_steps_are_in_time_order_and_stop_at_the_violation():
    # contract (step 3) before the last restart (step 2): engine-3, still on plus1, reads the
    # dropped column before its restart at t=40, which comes after the violation and is not listed
    s = load_scenario(SCENARIOS / "fuzz_early_contract.yaml")
    run = run_scenario(apply_schedule(s, Schedule((0, 1, 3, 2), (True,) * 4, (0,) * 4, (False,) * 4)))
    steps = describe_counterexample(run, "schema-compatible")
    times = [float(line.split("t=", 1)[1].split()[0]) for line in steps]
    assert times == sorted(times)
    assert "VIOLATED schema-compatible" in steps[-1] and 30.0 <= times[-1] < 40.0
    assert not any("engine-3" in line and "restart" in line for line in steps)
    assert [line.split("  ", 1)[1] for line in steps[:3]] == [
        "operator step 0: release=plus2, restart=engine-1",
        "operator step 1: release=plus2, restart=engine-2",
        "operator step 2: contract=['resource.properties']",
    ]


def test_max_examples_is_the_whole_budget_default_run_included(capsys):
    s = load_scenario(SCENARIOS / "single_upgraded_pinned.yaml")
    s = s.model_copy(update={"plan": s.plan[:1], "workload": s.workload.model_copy(update={"stop": 30.0})})
    for budget in (1, 7):
        res = fuzz(s, max_examples=budget, seed=2)
        assert not res.found and res.examples == budget


def test_overlapping_reorder_groups_are_refused_at_load():
    text = (SCENARIOS / "fuzz_early_contract.yaml").read_text()
    assert "reorder: [[0, 1, 2, 3]]" in text
    with pytest.raises(ScenarioError) as e:
        load_scenario_text(text.replace("reorder: [[0, 1, 2, 3]]", "reorder: [[0, 1, 2], [2, 3]]"), "x.yaml")
    assert str(e.value).startswith("x.yaml: search.reorder[1][0] (line ")
    assert "step 2 is already in group 0: reorder groups must not overlap" in str(e.value)
    with pytest.raises(ScenarioError, match=r"search.reorder\[0\]\[2\].*step 1 is already earlier in this group"):
        load_scenario_text(text.replace("reorder: [[0, 1, 2, 3]]", "reorder: [[0, 1, 1]]"), "x.yaml")


def test_fuzz_is_deterministic_and_its_counterexample_replays():
    s = load_scenario(SCENARIOS / "fuzz_add_column_one_release.yaml")
    a = fuzz(s, max_examples=60, seed=3)
    b = fuzz(s, max_examples=60, seed=3)
    assert a.found and a.invariant == "no-lost-write"
    assert (a.examples, a.trace_sha256, a.steps) == (b.examples, b.trace_sha256, b.steps)
    replay = load_scenario_text(dump_scenario(a.counterexample))
    assert run_scenario(replay).trace_sha256 == a.trace_sha256
    assert a.counterexample.expect == "violates no-lost-write"
    assert a.steps[-1].split(". ", 1)[1].split("  ", 1)[1].startswith("VIOLATED no-lost-write")


def test_fuzz_reports_nothing_when_nothing_breaks():
    s = load_scenario(SCENARIOS / "single_upgraded_pinned.yaml")
    s = s.model_copy(update={"search": s.search or None, "plan": s.plan[:1]})
    res = fuzz(s.model_copy(update={"workload": s.workload.model_copy(update={"stop": 30.0})}), max_examples=15)
    assert not res.found and res.counterexample is None and res.examples >= 15


def test_cli_fuzz_writes_a_counterexample_that_run_replays(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default output goes to .simroll/counterexamples/ here
    src = tmp_path / "design.yaml"
    src.write_text((SCENARIOS / "fuzz_early_contract.yaml").read_text())
    assert main(["fuzz", str(src), "--max-examples", "40", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= {"found", "invariant", "examples", "steps", "out", "trace_sha256"}
    assert report["found"] and report["invariant"] == "schema-compatible"
    out = tmp_path / ".simroll" / "counterexamples" / "design.yaml"
    assert (tmp_path / report["out"]).resolve() == out.resolve() and out.exists()
    assert main(["run", str(out), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["trace_sha256"] == report["trace_sha256"]
    # a second fuzz never overwrites the first counterexample
    assert main(["fuzz", str(src), "--max-examples", "40", "--json"]) == 1
    second = json.loads(capsys.readouterr().out)["out"]
    assert (tmp_path / second).resolve() == (out.parent / "design.1.yaml").resolve()
    # an explicit --out that exists is refused unless --force
    assert main(["fuzz", str(src), "--out", str(out)]) == 2
    assert "file exists" in capsys.readouterr().err


def test_cli_fuzz_human_output(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default output goes to .simroll/ in the working directory
    src = tmp_path / "d.yaml"
    src.write_text((SCENARIOS / "fuzz_early_contract.yaml").read_text())
    assert main(["fuzz", str(src), "--max-examples", "40"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FOUND a violation of schema-compatible after ")
    assert "  1. t=" in out and "VIOLATED schema-compatible" in out
    assert "replay it with: simroll run .simroll/counterexamples/d.yaml" in out
    assert (tmp_path / ".simroll" / "counterexamples" / "d.yaml").is_file()


@pytest.mark.parametrize("bad", ["--max-examples=0", "--seed=-1"])
def test_cli_fuzz_bad_flags(bad, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fuzz", str(LAST_LEGACY), bad])
    assert exc.value.code == 2
