"""The search space, its application to a scenario, and `simroll fuzz`."""

import json
from dataclasses import replace

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


# ---------------------------------------------------------------- the aim strategy (fuzz's default)
TARGETS = SCENARIOS.parent / "bench" / "targets"


def test_fuzz_methods_are_named_and_aim_is_the_default():
    import inspect

    assert inspect.signature(fuzz).parameters["method"].default == "aim"
    s = load_scenario(SCENARIOS / "fuzz_add_column_one_release.yaml")
    with pytest.raises(ValueError, match=r"method='guided': expected one of 'hypothesis', 'random', 'aim'"):
        fuzz(s, max_examples=5, method="guided")


def test_timed_chooser_notes_each_points_time_and_options_and_changes_nothing():
    from simroll.explore.search import _evaluate, _evaluate_seen

    s = load_scenario(TARGETS / "late_host_takes_new_message.yaml")
    n = len(s.plan)
    for sched in (Schedule.default(n), replace(Schedule.default(n), pins=(("consumer", 398, 3),))):
        violated, scores, seen = _evaluate_seen((s, sched))
        assert (violated, scores) == _evaluate((s, sched))  # the same verdicts and scores as a plain run
    # the periodic workload sends one request a second from t=1: consumer point k comes at t=k+1;
    # engine-4 is back at 398.2, so the last point (t=399) has 4 consumers to choose from, the one before 3
    times = seen.times["consumer"]
    assert len(times) == 399 and times[0] == (1.0, 3) and times[397] == (398.0, 3) and times[398] == (399.0, 4)
    assert seen.marks == (398.2,)  # the one operator step


def test_a_near_miss_says_when_and_aim_places_its_first_pins_there():
    from simroll.explore.search import _Aim, _evaluate_seen

    s = load_scenario(TARGETS / "late_host_takes_new_message.yaml")
    plain = Schedule.default(len(s.plan))
    _, scores, seen = _evaluate_seen((s, plain))
    # as written, the request of t=399 goes to engine-1 while engine-4 (legacy, 1.0 only) could have
    # taken it: a near miss of no-incompatible-delivery, at t=399 (plus 1 message sent while mixed)
    assert scores["no-incompatible-delivery"] == 10_001.0
    assert seen.peaks["no-incompatible-delivery"] == 399.0
    aim = _Aim(s, {"consumer": 399}, seed=0, wanted=lambda name: True)
    aim.tried.add(plain)
    aim.add(plain, scores, seen, None)
    first = [sched.pins for sched, _ in aim.draw(8) if sched.pins and len(sched.pins) == 1]
    # the point nearest t=399 is point 398 (t=399 itself), every other consumer of its 4 first
    assert first[:3] == [(("consumer", 398, 1),), (("consumer", 398, 2),), (("consumer", 398, 3),)]


def test_aim_finds_a_sparse_bug_in_a_few_runs_deterministically():
    s = load_scenario(TARGETS / "late_host_takes_new_message.yaml")
    a = fuzz(s, max_examples=200, seed=0)
    b = fuzz(s, max_examples=200, seed=0)
    assert a.found and a.invariant == "no-incompatible-delivery"
    # the plain run, then (at most) two random or plan draws around the three aimed picks of point 398
    assert a.first_violation_after <= 8
    assert (a.examples, a.schedule, a.trace_sha256) == (b.examples, b.schedule, b.trace_sha256)
    assert len(a.schedule.pins) == 1 and a.schedule.pins[0][:2] == ("consumer", 398)


@pytest.mark.slow
def test_aim_gives_the_same_search_on_two_workers():
    from simroll.explore.parallel import make_executor

    s = load_scenario(TARGETS / "refused_send_runbook_order.yaml")
    serial = fuzz(s, max_examples=60, seed=1)
    with make_executor(workers=2) as ex:
        parallel = fuzz(s, max_examples=60, seed=1, executor=ex)
    assert serial.found
    assert (parallel.examples, parallel.schedule, parallel.trace_sha256) == (
        serial.examples,
        serial.schedule,
        serial.trace_sha256,
    )


@pytest.mark.slow
def test_aim_search_is_the_same_under_any_hash_seed(tmp_path):
    import os
    import subprocess
    import sys

    target = TARGETS / "refused_send_runbook_order.yaml"
    outs = []
    for hashseed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hashseed, "CI": "1"}
        out = tmp_path / f"cx{hashseed}.yaml"
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "simroll",
                "fuzz",
                str(target),
                "--seed",
                "3",
                "--json",
                "--no-db",
                "--out",
                str(out),
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        assert run.returncode == 1, run.stderr  # found
        outs.append((json.loads(run.stdout), out.read_text()))
    (a, file_a), (b, file_b) = outs
    assert (a["examples"], a["trace_sha256"], a["steps"]) == (b["examples"], b["trace_sha256"], b["steps"])
    assert file_a == file_b
