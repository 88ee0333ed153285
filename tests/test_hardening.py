"""Issue 18, second round of hardening: each numbered item is a regression test here.

Inputs (2, 5, 9: strict values), outputs (6, 7), processes (8) and the smaller ones (9).
Tests synchronise on what a process prints or on its end, never on sleeps.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT, SCENARIOS

from simroll.cli import main
from simroll.errors import UsageError
from simroll.scenario.load import load_scenario_text

VIOLATING = SCENARIOS / "lost_dual_writes.yaml"  # its own run violates: fuzz finds it at once
PATTERN = (SCENARIOS / "patterns" / "new_arg_default.yaml").read_text(encoding="utf-8")


def _cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "simroll.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )


def _patterns(n: int, engines: int) -> str:
    entries = "".join(
        f"  - {{pattern: new-arg-default, method: check_resource, arg: a{i}, name: n{i}, "
        f"base: {'legacy' if i == 0 else f'n{i - 1}'}}}\n"
        for i in range(n)
    )
    text = PATTERN.replace("engines: {count: 3, release: legacy}", f"engines: {{count: {engines}, release: legacy}}")
    return re.sub(r"patterns:\n(  - .*\n)+", "patterns:\n" + entries, text)


# ---------------------------------------------------------------- item 2: pattern expansion is bounded
@pytest.mark.parametrize(
    "n, engines, message",
    [
        (
            40,
            10_000,
            r"patterns\[10\] \(line \d+\): the plan would have 110,000 steps .* more than the limit of 100,000",
        ),
        (300, 3, r"patterns \(line \d+\): 300 patterns, more than the limit of 100"),
    ],
)
def test_item2_pattern_expansion_is_refused_before_it_grows(tmp_path, n, engines, message):
    path = tmp_path / "big.yaml"
    path.write_text(_patterns(n, engines), encoding="utf-8")
    assert path.stat().st_size < 40_000
    proc = _cli("expand", str(path), cwd=tmp_path, timeout=120)  # was 52 s and 468 MB, or more
    assert proc.returncode == 2, proc.stderr
    assert re.search(message, proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------- item 5 and 9: strict values, placed errors
BASE = VIOLATING.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "old, new, message",
    [
        (
            'version: "1.0"',
            'version: "1.' + "9" * 5000 + '"',
            r"releases\.legacy\.rpc\.endpoints\[0\]\.version \(line \d+\): a version component of 5,000 digits",
        ),
        ("seed: 1", "seed: 0x" + "f" * 5000, r"line \d+, column \d+: not valid YAML: an integer of 5,002 characters"),
        ("count: 3", "count: yes", r"engines\.count \(line \d+\): input should be a valid integer, got True"),
        ("count: 3", "count: 1:30", r"engines\.count \(line \d+\): input should be a valid integer, got '1:30'"),
        ("name: lost_dual_writes", "name: !!binary bG9zdA==", r"name \(line \d+\): expected text, got binary data"),
        (
            "name: lost_dual_writes",
            'name: lost_dual_writes\ndescription: "\\ud800"',
            r"description \(line \d+\): not valid Unicode text: a lone surrogate U\+D800",
        ),
    ],
)
def test_items5_9_strict_values_exit_2_with_a_placed_message(tmp_path, old, new, message):
    assert old in BASE
    path = tmp_path / "s.yaml"
    path.write_text(BASE.replace(old, new, 1), encoding="utf-8", errors="surrogatepass")
    proc = _cli("run", str(path), "--html", str(tmp_path / "r.html"), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr  # was 70 (a crash) or 1 (ran with 1 or 90 engines)
    assert re.fullmatch(rf"simroll: {re.escape(str(path))}: {message}.*\n", proc.stderr), proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["s.yaml"]


def test_item9_yaml12_exponents_still_read_as_numbers():
    text = BASE.replace("  rate: 1.0", "  rate: 2e0", 1)
    assert text != BASE
    assert load_scenario_text(text, "f.yaml").workload.rate == 2.0


# ---------------------------------------------------------------- item 6: a found violation is never thrown away
def test_item6_fuzz_prints_the_counterexample_when_nothing_can_be_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".simroll").write_text("not a directory")  # neither the default place nor its fallback
    code = main(["fuzz", str(VIOLATING), "--json", "--max-examples", "5"])
    out, err = capsys.readouterr()
    assert code == 1, err
    data = json.loads(out)
    assert data["found"] and data["out"] is None
    assert data["counterexample_yaml"].startswith("# Counterexample found by `simroll fuzz")
    assert "the counterexample is printed on standard output" in err


def test_item6_fuzz_out_taken_meanwhile_falls_back_under_dot_simroll(tmp_path, monkeypatch, capsys):
    import simroll.explore.search as search

    monkeypatch.chdir(tmp_path)
    real = search.fuzz

    def fuzz_then_take_the_name(*args, **kwargs):  # another process writes --out during the search
        result = real(*args, **kwargs)
        (tmp_path / "ce.yaml").write_text("someone else's")
        return result

    monkeypatch.setattr(search, "fuzz", fuzz_then_take_the_name)
    code = main(["fuzz", str(VIOLATING), "--out", "ce.yaml", "--max-examples", "5"])
    out, err = capsys.readouterr()
    assert code == 1, err
    assert (tmp_path / "ce.yaml").read_text() == "someone else's"  # not overwritten
    fallback = Path(".simroll/counterexamples/lost_dual_writes.yaml")
    assert fallback.read_text().startswith("# Counterexample")
    assert f"counterexample written to {fallback}" in out


@pytest.mark.parametrize("flag", [["--out", "file/ce.yaml"], ["--db", "file"], ["--db", "file/db"]])
def test_item6_unusable_outputs_are_refused_before_the_search(tmp_path, monkeypatch, capsys, flag):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("x")
    code = main(["fuzz", str(VIOLATING), "--max-examples", "5", *flag])
    out, err = capsys.readouterr()
    assert code == 2, err
    assert "searching" not in err and out == ""
    assert err.startswith(f"simroll: {flag[1]}: ") and err.count("\n") == 1


# ---------------------------------------------------------------- item 7: outputs never overwrite each other
def test_item7_default_counterexample_names_are_taken_exclusively(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert main(["fuzz", str(VIOLATING), "--max-examples", "5"]) == 1
    names = sorted(os.listdir(tmp_path / ".simroll" / "counterexamples"))
    assert names == ["lost_dual_writes.1.yaml", "lost_dual_writes.yaml"]
    assert "counterexample written to .simroll/counterexamples/lost_dual_writes.1.yaml" in capsys.readouterr().out


def test_item7_two_concurrent_fuzz_runs_never_share_a_name(tmp_path):
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "simroll.cli", "fuzz", str(VIOLATING), "--max-examples", "5"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [1, 1], outs
    written = sorted(re.search(r"counterexample written to (\S+);", o).group(1) for o, _ in outs)
    assert len(set(written)) == 2
    assert sorted(os.listdir(tmp_path / ".simroll" / "counterexamples")) == sorted(Path(w).name for w in written)


def test_item7_matrix_replays_of_m_yaml_and_m_yml_are_distinct():
    from simroll.explore.matrix import Cell, Matrix, Row
    from simroll.scenario.load import load_scenario

    s = load_scenario(VIOLATING)
    cell = Cell("as-written", "oslo", "violated", ["no-lost-write"], "run", "0" * 64, s)
    rows = [
        Row("d/m.yaml", s, [cell]),
        Row("d/m.yml", s, [cell]),
        Row("e/m.yaml", s, [cell]),
        Row("d/x.yaml", s, [cell]),
    ]
    m = Matrix("d", ["as-written"], ["oslo"], rows)
    names = [m.replay_name(r, cell) for r in rows]
    assert len(set(names)) == len(names), names
    assert names[3] == "x.as-written.oslo.yaml"


# ---------------------------------------------------------------- item 8: workers die with their parent
def test_item8_workers_die_when_their_parent_is_killed(tmp_path):
    script = textwrap.dedent("""
        import sys, time
        from simroll.explore.parallel import make_executor
        ex = make_executor(2)
        ex.map(abs, [1, 2, 3, 4])  # the workers exist
        print("ready", flush=True)
        ex.map(time.sleep, [3600, 3600])  # busy for an hour
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGKILL)
    # the workers hold the same stdout and stderr: they reach EOF only once every worker is gone
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL


def test_item8_9_ctrl_c_stops_workers_with_one_message(tmp_path):
    script = textwrap.dedent("""
        import os, signal, time
        from simroll.explore.parallel import make_executor
        ex = make_executor(2)
        try:
            ex.map(abs, [1, 2, 3, 4])
            print("ready", flush=True)
            ex.map(time.sleep, [3600, 3600])
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        finally:
            ex.close()
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout.readline() == "ready\n"
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: the whole process group
    out, err = proc.communicate(timeout=120)
    assert out == "interrupted\n"
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err


# ---------------------------------------------------------------- item 9: the smaller ones
def test_item9_sweep_cell_limit_is_checked_before_the_grid():
    from simroll.explore.sweep import run_sweep
    from simroll.scenario.load import load_scenario

    with pytest.raises(UsageError, match=r"2 cells x 1,000,000,000 seeds = 2,000,000,000 runs, more than the limit"):
        run_sweep(load_scenario(VIOLATING), ["engines.count=2,3"], seeds=1_000_000_000)


@pytest.mark.parametrize(
    "content",
    [
        "{",
        "[1, 2]",
        '{"a": 1}',
        '[{"order": [7]}]',
        '[{"order": [0], "keep": [1], "pause": [0], "kill": [0], "pins": [], "fault": null}]',
        '[{"order": "ab", "keep": [], "pause": [], "kill": [], "pins": 5, "fault": [1]}]',
        "\xff\xfe",
    ],
)
def test_item9_a_corrupted_failure_store_starts_afresh_with_a_warning(tmp_path, content):
    from simroll.explore.search import _failures_file, fuzz
    from simroll.scenario.load import load_scenario

    s = load_scenario(SCENARIOS / "fuzz_early_contract.yaml")
    path = _failures_file(str(tmp_path), s)
    path.parent.mkdir(parents=True)
    path.write_bytes(content.encode("latin-1"))
    result = fuzz(s, max_examples=5, seed=0, database=str(tmp_path))
    assert any(str(path) in w for w in result.warnings), result.warnings


def test_item9_plot_of_a_corrupted_trace_is_exit_2(tmp_path, capsys):
    trace = tmp_path / "t.jsonl"
    assert main(["run", str(SCENARIOS / "single_upgraded_oslo.yaml"), "--trace", str(trace)]) in (0, 1, 4)
    lines = trace.read_text().splitlines()
    broken = [json.dumps({k: v for k, v in json.loads(line).items() if k not in ("t", "engine")}) for line in lines]
    trace.write_text("\n".join(broken) + "\n")
    capsys.readouterr()
    code = main(["plot", str(trace), "--out", str(tmp_path / "plots")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "internal error" not in err and err.count("\n") == 1
