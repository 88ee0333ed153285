"""`simroll run` as a background job (issue 18): no terminal, a terminal it does not own, SIGINT
ignored by the shell that started it, a reader that went away. It completes with the right exit
code and output, never stops on terminal I/O, and a signal still stops it with one message.

Every test synchronises on what a process prints or on its end, never on a sleep; the timeouts
are bounds that turn a hang into a failure.
"""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import textwrap
import threading

import pytest
from conftest import ROOT, SCENARIOS

pytestmark = pytest.mark.slow  # subprocesses

LOST = str(SCENARIOS / "lost_dual_writes.yaml")  # violates no-lost-write: exit 1
ENV = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM", "COLUMNS")}
ENV["PYTHONPATH"] = str(ROOT)


def test_run_in_a_session_of_its_own_with_stdin_from_dev_null():
    """`setsid simroll run X < /dev/null`: no controlling terminal at all."""
    proc = subprocess.run(
        [sys.executable, "-m", "simroll", "run", LOST],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        start_new_session=True,
        cwd=ROOT,
        env=ENV,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.startswith("scenario lost_dual_writes  seed 1")
    assert "FAILED: no-lost-write" in proc.stdout and "\x1b[" not in proc.stdout
    assert "Traceback" not in proc.stderr


# A job-control shell in miniature: it makes a pseudo-terminal its controlling terminal, stays in
# the foreground, starts the command in a process group of its own (a background job, as `cmd &`
# in an interactive shell), waits for it with WUNTRACED (so a job stopped by SIGTTIN or SIGTTOU is
# seen, not waited for forever) and writes how it ended to the file descriptor it is given.
SHELL = textwrap.dedent(
    """
    import fcntl, os, signal, sys, termios
    report, tostop, out, argv = int(sys.argv[1]), sys.argv[2] == "tostop", sys.argv[3], sys.argv[4:]
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    attrs = termios.tcgetattr(0)
    attrs[3] = attrs[3] | termios.TOSTOP if tostop else attrs[3] & ~termios.TOSTOP
    termios.tcsetattr(0, termios.TCSANOW, attrs)
    pid = os.fork()
    if pid == 0:
        os.setpgid(0, 0)
        if out != "-":
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
        os.execv(sys.executable, [sys.executable, *argv])
    try:
        os.setpgid(pid, pid)
    except OSError:  # the child did it first
        pass
    assert os.tcgetpgrp(0) == os.getpgrp() != pid, "the job must not be the foreground group"
    signal.signal(signal.SIGALRM, lambda *_: os.killpg(pid, signal.SIGKILL))
    signal.alarm(300)  # a bound: a job that hangs is killed and reported, never waited for forever
    _, status = os.waitpid(pid, os.WUNTRACED)
    if os.WIFSTOPPED(status):
        result = "stopped by " + signal.Signals(os.WSTOPSIG(status)).name
        os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    elif os.WIFSIGNALED(status):
        result = "killed by " + signal.Signals(os.WTERMSIG(status)).name
    else:
        result = f"exit {os.WEXITSTATUS(status)}"
    os.write(report, result.encode())
    """
)


def _background_job(argv: list[str], tostop: bool, out: str = "-") -> tuple[str, str]:
    """Run ``python ARGV`` as a background job of a terminal; returns (how it ended, what the terminal showed)."""
    master, slave = pty.openpty()
    r, w = os.pipe()
    shell = subprocess.Popen(
        [sys.executable, "-c", SHELL, str(w), "tostop" if tostop else "-", out, *argv],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        pass_fds=(w,),
        cwd=ROOT,
        env=ENV,
    )
    os.close(slave)
    os.close(w)
    shown: list[bytes] = []

    def drain() -> None:  # the terminal's output, read as it comes so that no write ever blocks
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every process let go of the terminal
                return
            if not chunk:
                return
            shown.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    with os.fdopen(r, "rb") as f:
        ended = f.read().decode()  # EOF once the shell is gone
    shell.wait(timeout=60)
    reader.join(timeout=60)
    os.close(master)
    return ended, b"".join(shown).decode(errors="replace")


def test_the_job_harness_sees_a_job_stopped_by_terminal_input():
    """The negative control: a job that reads its terminal is stopped (SIGTTIN), and the harness says so."""
    ended, _ = _background_job(["-c", "input()"], tostop=False)
    assert ended == "stopped by SIGTTIN"
    ended, _ = _background_job(["-c", "print('x', flush=True)"], tostop=True)
    assert ended == "stopped by SIGTTOU"


def test_run_as_a_background_job_writing_to_its_terminal_completes():
    """`simroll run X &` in an interactive shell: stdin, stdout and stderr are the terminal, which
    belongs to the foreground. Writing is allowed (no tostop); reading it, or changing its modes,
    would stop the job for good."""
    ended, shown = _background_job(["-m", "simroll", "run", LOST], tostop=False)
    assert ended == "exit 1", shown
    assert "scenario lost_dual_writes  seed 1" in shown and "FAILED: no-lost-write" in shown
    assert "Traceback" not in shown


def test_run_as_a_background_job_with_tostop_and_output_to_a_file_completes(tmp_path):
    """`stty tostop; simroll run X > out 2>&1 &`: any touch of the terminal would stop the job."""
    out = tmp_path / "out.txt"
    trace = tmp_path / "t.jsonl"
    ended, shown = _background_job(["-m", "simroll", "run", LOST, "--trace", str(trace)], tostop=True, out=str(out))
    assert ended == "exit 1", out.read_text()
    text = out.read_text()
    assert text.startswith("scenario lost_dual_writes  seed 1") and "FAILED: no-lost-write" in text
    assert "\x1b[" not in text and "Traceback" not in text
    assert trace.read_text().startswith('{"i":0,"t":0')
    assert shown == ""


def test_run_whose_stdout_is_a_closed_pipe_exits_141_without_a_traceback():
    """`simroll run X | true &`: the reader is gone before the report is written."""
    r, w = os.pipe()
    os.close(r)  # no reader, before the job even starts: no race with its first write
    proc = subprocess.Popen(
        [sys.executable, "-m", "simroll", "run", LOST],
        stdin=subprocess.DEVNULL,
        stdout=w,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        cwd=ROOT,
        env=ENV,
    )
    os.close(w)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 141, err  # as a shell reports a command ended by SIGPIPE
    assert "Traceback" not in err and "internal error" not in err and "BrokenPipe" not in err, err


# `simroll run` with the run itself announced on stderr: the signal below is sent once the run is
# under way (the handlers are installed before the command starts), never after a sleep.
ANNOUNCED = textwrap.dedent(
    """
    import sys
    import simroll.run
    real = simroll.run.run_scenario
    def announced(*args, **kwargs):
        print("ready", file=sys.stderr, flush=True)
        return real(*args, **kwargs)
    simroll.run.run_scenario = announced
    from simroll.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)

# a run of about 2,000,000 events (the default limit): tens of seconds unless it is stopped
LONG = """
name: long
seed: 1
bus: {delivery: oslo}
database:
  tables: {resource: [id, properties]}
  rows: 4
releases:
  r1:
    rpc:
      endpoints:
        - version: "1.0"
          methods: {op: [x]}
    data:
      props: {read: resource.properties, write: [resource.properties]}
    service_time: 0.01
engines: {count: 3, release: r1}
workload: {rate: 10.0, arrivals: periodic, stop: 1000000, operations: {op: 1}, kind: cast}
invariants:
  no-stranded-message: {}
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_background_run_with_sigint_ignored_still_stops_on_a_signal(tmp_path, sig):
    """`simroll run X &` in a script: the shell starts the job with SIGINT ignored. An explicit
    `kill -INT` (or -TERM) must still stop it: one line, exit 130, no trace file left behind."""
    scenario = tmp_path / "long.yaml"
    scenario.write_text(LONG)
    trace = tmp_path / "t.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-c", ANNOUNCED, "run", str(scenario), "--trace", str(trace)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=ENV,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert proc.stderr.readline() == "ready\n"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert out == ""
    assert err.splitlines()[-1] == "simroll: interrupted" and "Traceback" not in err, err
    assert sorted(os.listdir(tmp_path)) == ["long.yaml"]  # no trace, no temporary file
