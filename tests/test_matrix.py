"""The safety matrix: plan families as transformations, cells, Markdown/JSON, replays that reproduce."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

import simroll
from simroll.cli import main
from simroll.explore.matrix import (
    FAMILIES,
    backfill_race,
    build_matrix,
    contract_early,
    decide,
    flip_early,
    kill_last_legacy,
    pause_first,
    three_releases,
)
from simroll.scenario.spec import FaultSpec

ROOT = Path(__file__).resolve().parent.parent
PATTERNS = ROOT / "scenarios" / "patterns"

MOVE = """
name: m
database:
  tables: {resource: [id, props]}
  rows: 4
releases:
  legacy:
    rpc: {endpoints: [{version: "1.0", methods: {op: [x]}}]}
    data: {f: {read: resource.props, write: [resource.props]}}
engines: {count: 3, release: legacy}
workload:
  rate: 1
  arrivals: periodic
  stop: 120
  operations: {op: 1}
  kind: cast
  handlers: {op: {read: [f], write: [f]}}
invariants: {no-lost-write: {}, schema-compatible: {}, version-skew: {}}
"""


def load(text: str) -> simroll.Scenario:
    return simroll.load_scenario_text(textwrap.dedent(text), "<test>")


def move_field() -> simroll.Scenario:
    # plan: 0 expand; 1-3 restart onto plus1; 4 backfill; 5-7 plus2; 8-10 plus3; 11 contract
    return load(MOVE + "patterns: [{pattern: move-field, field: f, to: t2.d}]\n")


def actions(s: simroll.Scenario) -> list[str]:
    return [
        f"{st.action}:{st.release or getattr(st, st.action)}" if st.action in ("restart", "wait") else st.action
        for st in s.plan
    ]


def same_steps(s: simroll.Scenario, t: simroll.Scenario, order: list[int]) -> bool:
    return list(t.plan) == [s.plan[i] for i in order]


# ------------------------------------------------------------------ the families, one by one
def test_rolling_is_the_plan_as_written():
    s = move_field()
    assert FAMILIES["rolling"](s) is s


def test_pause_first_waits_after_the_first_restart():
    s = move_field()
    t = pause_first(s)
    assert actions(t)[:3] == ["expand", "restart:plus1", "wait:100.0"]
    assert list(t.plan[3:]) == list(s.plan[2:])


def test_kill_last_legacy_kills_the_third_engine_while_it_is_busy():
    s = move_field()
    t = kill_last_legacy(s)
    step = t.plan[3]
    assert (step.restart, step.release, step.how) == ("engine-3", "plus1", "kill")
    # periodic casts every second, service 0.1 s: within the 10 s pause engine-3 takes one; the kill lands
    # half-way through it, so it happens earlier than the step did, and something is in flight
    assert 0 < step.after < 10
    res = simroll.run_scenario(t)
    kill = next(r for r in res.trace() if r["kind"] == "kill")
    assert kill["engine"] == "engine-3" and kill["inflight"]
    assert [st for i, st in enumerate(t.plan) if i != 3] == [st for i, st in enumerate(s.plan) if i != 3]


def test_backfill_race_opens_a_gap_between_read_and_write():
    s = move_field()
    t = backfill_race(s)
    assert t.plan[4].backfill.gap == 1.0
    assert t.plan[4].backfill.guard == s.plan[4].backfill.guard == "if-unchanged"


def test_contract_early_runs_before_the_last_restart():
    s = move_field()
    assert same_steps(s, contract_early(s), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 10])


def test_flip_early_starts_the_read_switch_after_the_first_engine():
    s = move_field()
    assert same_steps(s, flip_early(s), [0, 1, 5, 2, 3, 4, 6, 7, 8, 9, 10, 11])


def test_three_releases_starts_the_next_restart_before_the_last_one():
    s = move_field()
    assert same_steps(s, three_releases(s), [0, 1, 2, 5, 3, 4, 6, 7, 8, 9, 10, 11])


def test_families_that_do_not_apply_say_so():
    s = load(MOVE + "patterns: [{pattern: new-arg-default, method: op, arg: y}]\n")
    assert [f(s) for f in (backfill_race, contract_early, flip_early, three_releases)] == [None] * 4
    assert kill_last_legacy(load(MOVE)) is None  # no plan: nobody leaves the legacy release
    # a new RPC API between two rolling restarts is new code, not a switch an operator flips
    s = load(MOVE + "patterns: [{pattern: future-args, method: op, arg: y}]\n")
    assert flip_early(s) is None and three_releases(s) is not None


def test_flip_early_raises_a_version_pin_right_after_the_first_restart():
    s = load(
        MOVE + "patterns: [{pattern: new-arg-default, method: op, arg: y},\n"
        "           {pattern: version-cap, release: new, cap: '1.0'}]\n"
    )
    t = flip_early(s)
    assert [st.action for st in t.plan] == ["restart", "set_cap", "restart", "restart"]
    assert t.plan[1].set_cap == "1.1"


def test_faults_at_a_step_follow_the_step():
    s = move_field()
    s = s.model_copy(update={"faults": [FaultSpec(kill="engine-2", at_step=4)]})
    assert pause_first(s).faults[0].at_step == 5  # a wait was inserted before it
    assert contract_early(s).faults[0].at_step == 4


# ------------------------------------------------------------------ cells and the matrix
def test_the_threads_minor_bump_breaks_under_oslo_and_holds_under_version_routing():
    s = simroll.load_scenario(PATTERNS / "new_arg_default.yaml")
    oslo, routed = decide(s, "rolling", "oslo"), decide(s, "rolling", "version-routed")
    assert (oslo.status, oslo.violated) == ("violated", ["no-incompatible-delivery"])
    assert (routed.status, routed.violated) == ("holds", [])
    assert decide(s, "contract-early", "oslo").status == "n/a"


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    d = tmp_path_factory.mktemp("patterns")
    for name in ("move_field_three_releases", "new_arg_default"):
        shutil.copy(PATTERNS / f"{name}.yaml", d / f"{name}.yaml")
    m = build_matrix(d, families=["rolling", "contract-early", "three-releases"])
    out = d / "out" / "matrix"
    written = m.write(str(out), command="test")
    return m, out, written


def test_a_small_matrix(small):
    m, out, _ = small
    cell = m.cell
    assert cell("move_field_three_releases", "rolling", "oslo").status == "holds"
    for d in ("oslo", "version-routed"):
        # the old column is dropped while engine-3 still writes it
        assert "schema-compatible" in cell("move_field_three_releases", "contract-early", d).violated
        # legacy, plus1 and plus2 at once
        assert "version-skew" in cell("move_field_three_releases", "three-releases", d).violated
        assert cell("new_arg_default", "three-releases", d).status == "n/a"
    assert cell("new_arg_default", "rolling", "oslo").violated == ["no-incompatible-delivery"]
    assert cell("new_arg_default", "rolling", "version-routed").status == "holds"


def test_markdown_and_json(small):
    m, out, written = small
    md = Path(f"{out}.md").read_text()
    assert "<!-- generated by `test` -->" in md
    assert "| pattern | rolling | contract-early | three-releases |" in md
    assert "| new_arg_default | **no-incompatible-delivery** | – | – |" in md
    data = json.loads(Path(f"{out}.json").read_text())
    assert data["deliveries"] == ["oslo", "version-routed"]
    assert [r["scenario"] for r in data["rows"]] == ["move_field_three_releases", "new_arg_default"]
    assert len(data["rows"][0]["cells"]) == 6
    assert str(out) + ".md" in written


def test_every_violated_cell_has_a_replay_that_reproduces_it(small):
    m, out, _ = small
    violated = [(r, c) for r in m.rows for c in r.cells if c.status == "violated"]
    assert len(violated) >= 5
    for row, c in violated:
        assert c.replay_path == str(Path(f"{out}.replays") / f"{row.stem}.{c.family}.{c.delivery}.yaml")
        replay = simroll.load_scenario(c.replay_path)
        assert replay.bus.delivery == c.delivery and replay.expect == f"violates {c.violated[0]}"
        res = simroll.run_scenario(replay, keep_trace=False)
        assert res.violated == c.violated
        assert res.trace_sha256 == c.trace_sha256
    assert all(c.replay_path is None for r in m.rows for c in r.cells if c.status != "violated")


def test_the_matrix_does_not_overwrite_without_force(small):
    m, out, _ = small
    with pytest.raises(simroll.UsageError, match="file exists; pass --force"):
        m.write(str(out))
    m.write(str(out), overwrite=True)


def test_unknown_family_and_empty_directory(tmp_path):
    with pytest.raises(simroll.UsageError, match="unknown family 'sideways'"):
        build_matrix(PATTERNS, families=["sideways"])
    with pytest.raises(simroll.UsageError, match="no scenario files"):
        build_matrix(tmp_path)


def test_simroll_matrix_command(tmp_path, capsys):
    d = tmp_path / "p"
    d.mkdir()
    shutil.copy(PATTERNS / "version_cap_fixed.yaml", d)
    prefix = str(tmp_path / "m")
    assert main(["matrix", str(d), "--out", prefix]) == 0
    out = capsys.readouterr().out
    assert "| version_cap_fixed | holds |" in out
    # pinned at 1.0, unpinned right after the first engine: legacy engines get 1.1 under oslo only
    data = json.loads(Path(prefix + ".json").read_text())
    cells = {(c["family"], c["delivery"]): c for c in data["rows"][0]["cells"]}
    assert cells["flip-early", "oslo"]["violated"] == ["no-incompatible-delivery"]
    assert cells["flip-early", "version-routed"]["status"] == "holds"
    assert Path(cells["flip-early", "oslo"]["replay"]).exists()
    assert main(["run", cells["flip-early", "oslo"]["replay"]]) == 1
    capsys.readouterr()
    assert main(["matrix", str(d), "--out", prefix]) == 2
    assert "file exists; pass --force" in capsys.readouterr().err
    assert main(["matrix", str(tmp_path / "nowhere")]) == 2
    assert "not a directory" in capsys.readouterr().err


@pytest.mark.slow
def test_fuzz_decides_cells_whose_default_run_holds():
    s = simroll.load_scenario(PATTERNS / "move_field_three_releases.yaml")
    c = decide(s, "rolling", "oslo", fuzz=10)
    assert c.by == "fuzz"
    if c.status == "violated":  # a counterexample must replay as the cell says
        res = simroll.run_scenario(c.replay, keep_trace=False)
        assert res.violated == c.violated


# ------------------------------------------------------------------ the committed matrix (docs/patterns.md)
COMMITTED = PATTERNS / "matrix"


def test_the_readme_shows_the_committed_matrix():
    assert (COMMITTED / "matrix.md").read_text() in (ROOT / "docs" / "patterns.md").read_text()


def test_the_committed_matrix_is_current_and_its_replays_reproduce():
    """Regenerate with the command in docs/patterns.md when the model changes on purpose."""
    data = json.loads((COMMITTED / "matrix.json").read_text())
    fresh = build_matrix(PATTERNS)  # default runs only; the committed one was also fuzzed
    for row in data["rows"]:
        stem = Path(row["file"]).stem
        for c in row["cells"]:
            now = fresh.cell(stem, c["family"], c["delivery"])
            if c["by"] == "fuzz" and c["status"] == "violated":
                assert now.status == "holds"  # its default run held; the search found the violation
            else:
                assert (now.status, now.violated) == (c["status"], c["violated"]), (stem, c)
            if c["status"] == "violated":
                replay = simroll.load_scenario(ROOT / c["replay"])
                assert simroll.run_scenario(replay, keep_trace=False).violated == c["violated"], c["replay"]
