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


def test_version_and_python_dash_m():
    import subprocess
    import sys

    from simroll._version import __version__

    out = subprocess.run([sys.executable, "-m", "simroll", "--version"], capture_output=True, text=True)
    assert (out.returncode, out.stdout.strip()) == (0, f"simroll {__version__}")
    helped = subprocess.run([sys.executable, "-m", "simroll", "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "usage: simroll" in helped.stdout and "fuzz" in helped.stdout


def test_a_closed_pipe_ends_quietly(tmp_path):
    """`simroll run X | head -1`: the first line, then no traceback whatever the pipe's size."""
    import subprocess
    import sys

    big = subprocess.run(
        f"{sys.executable} -m simroll run {SCENARIOS / 'lost_dual_writes.yaml'} --json | head -1",
        shell=True,
        capture_output=True,
        text=True,
    )
    assert big.stdout == "{\n" and big.stderr == ""
    # a pipe closed before the first byte, whatever the buffer size: the reader is gone at once
    r, w = __import__("os").pipe()
    __import__("os").close(r)
    p = subprocess.run([sys.executable, "-m", "simroll", "schema"], stdout=w, stderr=subprocess.PIPE, text=True)
    __import__("os").close(w)
    assert p.returncode == 141 and p.stderr == ""


def test_an_internal_error_exits_70_with_a_log_never_1(monkeypatch, capsys):
    import simroll.cli

    def broken(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(simroll.cli, "cmd_schema", broken)
    code, out, err = run(capsys, "schema")
    assert code == 70 and out == ""
    assert err.startswith("simroll: internal error: ZeroDivisionError: a bug (the traceback is in ")
    log = err.split("the traceback is in ")[1].split(";")[0]
    assert "ZeroDivisionError: a bug" in open(log).read() and "Traceback" not in err
    __import__("os").unlink(log)


def test_a_full_disk_on_stdout_is_an_io_error(tmp_path):
    import subprocess
    import sys

    with open("/dev/full", "w") as full:
        p = subprocess.run(
            [sys.executable, "-m", "simroll", "run", str(SCENARIOS / "lost_dual_writes.yaml")],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
        )
    assert p.returncode == 74
    assert p.stderr == "simroll: cannot write to standard output: No space left on device\n"
