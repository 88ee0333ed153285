"""The simroll command: exit codes, JSON report, trace file."""

import hashlib
import json

import pytest

from conftest import SCENARIOS

from simroll.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_run_exit_codes(capsys, tmp_path):
    assert run(capsys, "run", str(SCENARIOS / "lost_dual_writes_safe.yaml"))[0] == 0
    code, out, _ = run(capsys, "run", str(SCENARIOS / "lost_dual_writes.yaml"))
    assert code == 1
    assert "no-lost-write        VIOLATED" in out and "causal chain" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [\n")
    code, out, err = run(capsys, "run", str(bad))
    assert code == 2 and out == ""
    assert err.startswith(f"simroll: {bad}: line 2, column 1: not valid YAML")
    assert "Traceback" not in err
    code, _, err = run(capsys, "run", str(tmp_path / "missing.yaml"))
    assert code == 2 and "cannot read" in err


def test_json_report_and_trace_file(capsys, tmp_path):
    trace = tmp_path / "t.jsonl"
    code, out, _ = run(capsys, "run", str(SCENARIOS / "single_upgraded_oslo.yaml"), "--json", "--trace", str(trace))
    report = json.loads(out)
    assert code == 1
    assert {"ok", "violations", "events", "sim_time", "trace_sha256"} <= set(report)
    assert report["ok"] is False
    assert {"invariant", "time", "message"} <= set(report["violations"][0])
    assert report["violations"][0]["invariant"] == "no-incompatible-delivery"
    data = trace.read_bytes()
    assert hashlib.sha256(data).hexdigest() == report["trace_sha256"]
    assert len(data.splitlines()) == report["events"]
    # an existing file is not overwritten without --force
    code, _, err = run(capsys, "run", str(SCENARIOS / "single_upgraded_oslo.yaml"), "--trace", str(trace))
    assert code == 2 and "file exists" in err
    assert trace.read_bytes() == data


def test_seed_changes_the_run_and_the_same_seed_repeats_it(capsys):
    path = str(SCENARIOS / "lost_dual_writes.yaml")
    shas = []
    for seed in ("1", "2", "1"):
        _, out, _ = run(capsys, "run", path, "--seed", seed, "--json")
        shas.append(json.loads(out)["trace_sha256"])
    assert shas[0] == shas[2] != shas[1]


def test_check_determinism_flag(capsys):
    code, out, _ = run(capsys, "run", str(SCENARIOS / "last_legacy_drain_safe.yaml"), "--check-determinism")
    assert code == 0 and "determinism: two runs gave the same trace" in out


def test_limits_from_the_command_line(capsys):
    code, out, _ = run(capsys, "run", str(SCENARIOS / "lost_dual_writes_safe.yaml"), "--max-time", "30")
    assert "PARTIAL" in out and "max_time=30" in out
    assert code == 4  # the part that ran held, but a partial run proves nothing: not 0
    with pytest.raises(SystemExit) as exc:
        main(["run", str(SCENARIOS / "lost_dual_writes_safe.yaml"), "--max-time", "-3"])
    assert exc.value.code == 2
    assert "expected a positive number, got '-3'" in capsys.readouterr().err


def test_schema_command(capsys):
    code, out, _ = run(capsys, "schema")
    assert code == 0 and json.loads(out)["title"] == "simroll scenario"
