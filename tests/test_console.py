"""Progress of one long run: ``run_scenario``'s ``progress`` hook and ``simroll run``'s display of it.

The display is paced by a clock; these tests give it a fake one (no sleeps), and the hook is
checked against the trace it watched.
"""

import io
import re

from conftest import SCENARIOS

import simroll
from simroll.cli import main


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_run_progress_lines_in_simulated_seconds_after_five_seconds():
    from simroll._console import RunProgress

    out, clock = io.StringIO(), _Clock()
    show = RunProgress(80.0, "run x.yaml", stream=out, tty=False, clock=clock)
    clock.now += 4.0
    show(10.0, 2048)  # a log gets nothing in the first 5 s: a short run adds no line
    assert out.getvalue() == ""
    clock.now += 1.0
    show(12.5, 3072)  # 12.5 sim s in 5 s: 2.5 sim s/s; 67.5 left: 27 s
    clock.now += 2.0
    show(20.0, 4096)  # 2 s after the last line: too soon
    clock.now += 3.0
    show(40.0, 10240)  # 40 in 10 s: 4.0 sim s/s; 40 left: 10 s
    clock.now += 10.0
    show(85.0, 20480)  # past the workload's end (draining): 100%, nothing left to estimate
    assert out.getvalue().splitlines() == [
        "simroll: run x.yaml: 12.5 of 80.0 sim s (16%), 2.5 sim s/s, 27 s left | 3,072 trace records",
        "simroll: run x.yaml: 40.0 of 80.0 sim s (50%), 4.0 sim s/s, 10 s left | 10,240 trace records",
        "simroll: run x.yaml: 85.0 of 80.0 sim s (100%), 4.2 sim s/s | 20,480 trace records",
    ]


def test_run_progress_on_a_terminal_is_a_bar_after_two_seconds():
    from simroll._console import RunProgress

    out, clock = io.StringIO(), _Clock()
    with RunProgress(80.0, "run x.yaml", stream=out, tty=True, clock=clock) as show:
        clock.now += 1.5
        show(5.0, 1024)
        assert out.getvalue() == ""  # a terminal waits 2 s
        clock.now += 0.5
        show(20.0, 4096)  # 20 in 2 s: 10.0 sim s/s, 60 left: 6 s
        shown = out.getvalue()
    assert re.search(
        r"run x\.yaml: 20\.0 of 80\.0 sim s \(25%\), 10\.0 sim s/s, 6 s left \| 4,096 trace records", shown
    )
    assert "simroll: run" not in shown  # the plain lines are for logs


def test_the_progress_hook_reports_time_and_records_and_changes_nothing():
    from simroll.run import PROGRESS_EVERY

    s = simroll.load_scenario(SCENARIOS / "fuzz_backfill_race.yaml")
    calls: list[tuple[float, int]] = []
    res = simroll.run_scenario(s, progress=lambda t, n: calls.append((t, n)))
    plain = simroll.run_scenario(s)
    assert res.trace_sha256 == plain.trace_sha256 and res.events == plain.events
    assert res.events > 2 * PROGRESS_EVERY  # the scenario is long enough to report twice
    # one call past each multiple of PROGRESS_EVERY records, on the send, done or step record that
    # crossed it, with that record's time
    assert len(calls) == res.events // PROGRESS_EVERY
    for k, (t, n) in enumerate(calls, start=1):
        assert k * PROGRESS_EVERY <= n < (k + 1) * PROGRESS_EVERY
        rec = res.records[n - 1]
        assert rec["kind"] in ("send", "done", "step") and rec["t"] == t
        between = res.records[k * PROGRESS_EVERY - 1 : n - 1]  # no earlier record could have reported
        assert all(r["kind"] not in ("send", "done", "step") for r in between)


def test_simroll_run_logs_its_progress_when_not_a_terminal(capsys, monkeypatch):
    import simroll._console as console

    monkeypatch.setattr(console, "PLAIN_EVERY", 0.0)  # a line at every report, not every 5 s
    code = main(["run", str(SCENARIOS / "fuzz_backfill_race.yaml")])
    err = capsys.readouterr().err
    assert code == 0  # the scenario's own seed misses the race the search finds
    lines = [ln for ln in err.splitlines() if ln.startswith("simroll: run ")]
    assert len(lines) >= 2, err
    pattern = r"simroll: run \S+fuzz_backfill_race\.yaml: [\d.]+ of 60\.0 sim s \(\d+%\), [\d.]+ sim s/s(, \d+ s left)? \| [\d,]+ trace records"
    assert all(re.fullmatch(pattern, ln) for ln in lines), lines


def test_max_time_is_the_total_when_sooner(capsys, monkeypatch):
    import simroll._console as console

    monkeypatch.setattr(console, "PLAIN_EVERY", 0.0)
    main(["run", str(SCENARIOS / "fuzz_backfill_race.yaml"), "--max-time", "50"])
    err = capsys.readouterr().err
    assert re.search(r"of 50\.0 sim s", err) and "of 60.0" not in err


def test_a_run_without_a_total_counts_only():
    from simroll._console import RunProgress

    out, clock = io.StringIO(), _Clock()
    show = RunProgress(None, "run y.yaml", stream=out, tty=False, clock=clock, after=0.0)
    clock.now += 2.0
    show(3.0, 1024)
    assert out.getvalue() == "simroll: run y.yaml: 3.0 sim s, 1.5 sim s/s | 1,024 trace records\n"
