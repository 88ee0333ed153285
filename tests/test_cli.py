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


def test_the_console_script_answers_version_and_a_closed_pipe(tmp_path):
    """The checks issue 17 names, on the installed `simroll` script itself."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from simroll._version import __version__

    script = shutil.which("simroll", path=str(Path(sys.executable).parent)) or shutil.which("simroll")
    assert script is not None, "the simroll console script is not installed (pip install -e .)"
    out = subprocess.run([script, "--version"], capture_output=True, text=True)
    assert (out.returncode, out.stdout, out.stderr) == (0, f"simroll {__version__}\n", "")
    piped = subprocess.run(
        f"{script} run {SCENARIOS / 'lost_dual_writes.yaml'} | head -1", shell=True, capture_output=True, text=True
    )
    assert (piped.stdout, piped.stderr) == ("scenario lost_dual_writes  seed 1  delivery oslo\n", "")


# colour -------------------------------------------------------------------------------------------

GREEN_HELD = "\x1b[32mheld\x1b[0m"


def test_colour_is_off_when_piped_and_on_when_asked(capsys):
    safe = str(SCENARIOS / "lost_dual_writes_safe.yaml")
    code, out, _ = run(capsys, "run", safe)  # capsys: not a terminal
    assert code == 0 and "\x1b" not in out
    code, out, _ = run(capsys, "run", safe, "--color", "always")
    assert code == 0 and GREEN_HELD in out and "\x1b[32m\x1b[1mOK: every invariant held\x1b[0m" in out
    code, out, _ = run(capsys, "--color", "always", "run", str(SCENARIOS / "lost_dual_writes.yaml"))
    assert code == 1 and "\x1b[31m\x1b[1mFAILED: no-lost-write\x1b[0m" in out
    assert "  no-lost-write        \x1b[31m\x1b[1mVIOLATED (" in out
    code, out, _ = run(capsys, "run", safe, "--color", "never")
    assert "\x1b" not in out
    with pytest.raises(SystemExit):
        main(["run", safe, "--color", "sometimes"])
    assert "invalid choice: 'sometimes'" in capsys.readouterr().err


def _on_a_terminal(argv, env):
    """Run simroll with stdout and stderr on a pseudo-terminal; returns (exit code, what it showed)."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))
    p = subprocess.Popen([sys.executable, "-m", "simroll", *argv], stdout=slave, stderr=slave, env=env)
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    return p.wait(), shown.decode()


def test_colour_on_a_terminal_unless_NO_COLOR():
    import os

    safe = str(SCENARIOS / "lost_dual_writes_safe.yaml")
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM")}
    code, shown = _on_a_terminal(["run", safe], env)
    assert code == 0 and GREEN_HELD in shown
    code, shown = _on_a_terminal(["run", safe], dict(env, NO_COLOR="1"))
    assert code == 0 and "held" in shown and "\x1b[" not in shown
    code, shown = _on_a_terminal(["run", safe], dict(env, TERM="dumb"))
    assert "\x1b[" not in shown
    code, shown = _on_a_terminal(["run", safe, "--color", "never"], env)
    assert "\x1b[" not in shown
    # no-color.org: an empty NO_COLOR is as if unset
    code, shown = _on_a_terminal(["run", safe], dict(env, NO_COLOR=""))
    assert GREEN_HELD in shown


def test_paint_colours_verdicts_only():
    from simroll._console import paint

    text = "\n".join(
        [
            "scenario held_up  seed 1",  # a scenario may be named anything: only the table is read
            "  no-lost-write        VIOLATED (2x)  checked 9",
            "  version-skew         held            checked 6",
            "  operations-complete  vacuous  (nothing to check: no operation)",
            "no-lost-write violated at t=1.000 [engine-1] (x[1])",
            "FAILED: no-lost-write",
        ]
    )
    assert paint(text, on=False) == text
    assert paint(text).split("\n") == [
        "scenario held_up  seed 1",
        "  no-lost-write        \x1b[31m\x1b[1mVIOLATED (2x)\x1b[0m  checked 9",
        "  version-skew         \x1b[32mheld\x1b[0m            checked 6",
        "  operations-complete  \x1b[33mvacuous\x1b[0m  (nothing to check: no operation)",
        "no-lost-write violated at t=1.000 [engine-1] (x[1])",
        "\x1b[31m\x1b[1mFAILED: no-lost-write\x1b[0m",
    ]


# progress -----------------------------------------------------------------------------------------


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_plain_progress_lines_have_total_rate_and_time_left_every_few_seconds():
    import io

    from simroll._console import Progress

    out, clock = io.StringIO(), _Clock()
    show = Progress(10, unit="runs", label="sweep x.yaml", stream=out, tty=False, clock=clock)
    clock.now += 0.5
    show.update(1)  # one run gives no rate worth printing
    assert out.getvalue() == ""
    clock.now += 0.5
    show.update(2)  # 2 runs in 1 s: 2.0 runs/s, 8 left: 4 s
    clock.now += 2.0
    show.update(3)  # 2 s after the last line: too soon
    clock.now += 3.5
    show.update(8, note="closest so far: x 0.5")  # 8 in 6.5 s: 1.23 runs/s, 2 left: 1.6 s
    clock.now += 5.0
    show.update(10, eta=False)
    assert out.getvalue().splitlines() == [
        "simroll: sweep x.yaml: 2 of 10 runs (20%), 2.0 runs/s, 4 s left",
        "simroll: sweep x.yaml: 8 of 10 runs (80%), 1.2 runs/s, 2 s left | closest so far: x 0.5",
        "simroll: sweep x.yaml: 10 of 10 runs (100%), 0.9 runs/s",
    ]
    untotalled = Progress(None, unit="events", label="run", stream=(out := io.StringIO()), tty=False, clock=clock)
    clock.now += 4.0
    untotalled.update(6, phase="replaying")
    assert out.getvalue() == "simroll: replaying: 6 events, 1.5 events/s\n"


def test_the_bar_on_a_terminal_shows_total_rate_and_time_left():
    import os
    import re

    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM")}
    code, shown = _on_a_terminal(
        ["sweep", str(SCENARIOS / "single_upgraded_pinned.yaml"), "--param", "engines.count=3,4,5"], env
    )
    assert code == 0, shown
    frames = shown.replace("\r", "\n")
    assert re.search(
        r"[█▏▎▍▌▋▊▉]+ +sweep \S+single_upgraded_pinned.yaml: 1 of 3 runs \(33%\), [\d.]+ runs/s, \d+ s left", frames
    )
    assert "3 of 3 runs (100%)" in frames
    assert "simroll: sweep" not in frames  # the plain lines are for logs, not for a terminal


def test_sweep_and_matrix_log_progress_when_not_a_terminal(capsys, tmp_path):
    import re
    import shutil

    code, out, err = run(
        capsys, "sweep", str(SCENARIOS / "single_upgraded_pinned.yaml"), "--param", "engines.count=3,4,5"
    )
    assert code == 0
    assert re.search(r"^simroll: sweep \S+: 2 of 3 runs \(67%\), [\d.]+ runs/s, \d+ s left$", err, re.M), err
    shutil.copy(SCENARIOS / "patterns" / "new_arg_default.yaml", tmp_path)
    code, out, err = run(capsys, "matrix", str(tmp_path), "--json")
    assert code == 0
    # 1 file x 7 families x 2 delivery models
    assert re.search(r"^simroll: matrix \S+: 2 of 14 cells \(14%\), [\d.]+ cells/s, \d+ s left$", err, re.M), err
    import json

    from simroll.explore.matrix import build_matrix

    assert json.loads(out) == build_matrix(str(tmp_path)).to_json()  # the same matrix, cell by cell


def test_shell_completion_through_argcomplete(tmp_path):
    import os
    import subprocess
    import sys

    answer = tmp_path / "completions"

    def complete(line):
        env = dict(
            os.environ,
            _ARGCOMPLETE="1",
            _ARGCOMPLETE_IFS="\n",
            COMP_LINE=line,
            COMP_POINT=str(len(line)),
            _ARGCOMPLETE_STDOUT_FILENAME=str(answer),
        )
        p = subprocess.run([sys.executable, "-m", "simroll"], env=env, capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        return answer.read_text().split()

    assert complete("simroll fu") == ["fuzz"]
    assert complete("simroll run x.yaml --col") == ["--color"]
    assert complete("simroll run x.yaml --color ") == ["auto", "always", "never"]


# simroll init -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    [
        None,
        "move-field",
        "add-column",
        "trigger-sync",
        "config-switch",
        "future-args",
        "new-arg-default",
        "new-method",
        "major-bump",
        "version-cap",
    ],
)
def test_init_writes_a_commented_scenario_that_runs(capsys, tmp_path, monkeypatch, pattern):
    from simroll.scenario.load import load_scenario

    monkeypatch.chdir(tmp_path)
    flags = [] if pattern is None else ["--pattern", pattern]
    code, out, err = run(capsys, "init", *flags)
    assert code == 0 and err == ""
    assert out.startswith("wrote scenario.yaml (")
    text = (tmp_path / "scenario.yaml").read_text()
    assert text.startswith(
        f"# scenario: a rolling upgrade of three engines, written by `simroll init{' --pattern ' + pattern if pattern else ''}`."
    )
    scenario = load_scenario(tmp_path / "scenario.yaml")
    assert scenario.name == "scenario" and scenario.expect == "holds"
    assert len(scenario.releases) >= 2  # the legacy release and at least one new one
    assert any("restart" in step.model_dump(exclude_none=True) for step in scenario.plan)
    code, out, _ = run(capsys, "run", "scenario.yaml")
    assert code in (0, 1), out  # a verdict, never bad input (2)
    assert "plan steps executed" in out


def test_init_refuses_to_overwrite_without_force(capsys, tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("my own work\n")
    code, out, err = run(capsys, "init", str(path))
    assert (code, out) == (2, "")
    assert err == f"simroll: {path}: file exists; pass --force to overwrite it\n"
    assert path.read_text() == "my own work\n"
    code, out, err = run(capsys, "init", "--pattern", "move-field", str(path), "--force")
    assert code == 0 and "pattern: move-field" in path.read_text()
    with pytest.raises(SystemExit):
        main(["init", "--pattern", "no-such-pattern", str(tmp_path / "x.yaml")])
    assert "invalid choice: 'no-such-pattern'" in capsys.readouterr().err


def test_init_knows_every_pattern():
    from simroll.scenario.patterns import PATTERNS
    from simroll.scenario.template import PATTERN_NAMES

    assert sorted(PATTERN_NAMES) == sorted(PATTERNS)


@pytest.mark.slow
def test_workers_end_quietly_when_the_command_is_done():
    """The pool ends its workers with SIGTERM; they inherit the command's SIGTERM handler, which
    must not print a KeyboardInterrupt traceback per worker."""
    import subprocess
    import sys

    p = subprocess.run(
        [sys.executable, "-m", "simroll", "sweep", str(SCENARIOS / "single_upgraded_pinned.yaml")]
        + ["--param", "engines.count=3,4", "--workers", "2"],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr and "KeyboardInterrupt" not in p.stderr, p.stderr
