"""Interrupted work: SIGINT or SIGTERM during `simroll fuzz` leaves a valid partial result, the
example database stays usable, and the next run replays the failures it holds."""

import json
import os
import signal
import subprocess
import sys

import pytest
from conftest import ROOT, SCENARIOS

pytestmark = pytest.mark.slow


def fuzz_cmd(*args):
    return [sys.executable, "-c", "import sys; from simroll.cli import main; sys.exit(main())", "fuzz", *args]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_the_search_gives_a_partial_result(tmp_path, sig):
    # the pinned design holds, so the search runs until its (large) budget is spent or it is stopped
    src = tmp_path / "pinned.yaml"
    src.write_text((SCENARIOS / "single_upgraded_pinned.yaml").read_text())
    db = tmp_path / "db"
    proc = subprocess.Popen(
        fuzz_cmd(str(src), "--max-examples", "100000", "--json", "--db", str(db)),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, CI=""),
    )
    # synchronise on what the process prints, never on a sleep: the handlers are installed when
    # it says it is searching, and its first progress line comes once two simulations have run
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("simroll: searching: "):
            break
    assert proc.poll() is None, "".join(seen)
    assert any(s.startswith("simroll: fuzz ") for s in seen), seen
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    report = json.loads(out)
    assert report["found"] is False and report["interrupted"] is True and report["examples"] > 1
    assert not list(tmp_path.glob("*.counterexample*.yaml"))  # nothing half-written
    assert not list(tmp_path.glob(".*.tmp"))


def test_the_example_database_replays_a_past_failure_first(tmp_path):
    src = tmp_path / "race.yaml"
    src.write_text((SCENARIOS / "fuzz_backfill_race.yaml").read_text())
    db = tmp_path / "db"
    first = subprocess.run(
        fuzz_cmd(str(src), "--json", "--db", str(db), "--out", str(tmp_path / "a.yaml")),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert first.returncode == 1, first.stderr
    assert any(db.rglob("*")), "the failure was saved"
    # another seed would take a while to find it; the database hands it over at once
    second = subprocess.run(
        fuzz_cmd(str(src), "--json", "--db", str(db), "--seed", "99", "--out", str(tmp_path / "b.yaml")),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert second.returncode == 1, second.stderr
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    assert b["invariant"] == a["invariant"] == "no-lost-write"
    fresh = subprocess.run(
        fuzz_cmd(str(src), "--json", "--no-db", "--seed", "99", "--out", str(tmp_path / "c.yaml")),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    c = json.loads(fresh.stdout)
    assert b["first_violation_after"] < c["first_violation_after"]
