"""Scenario files just under, at and just over every load limit (issue 18): `simroll run` exits
0, 1, 2 or 4 (never 70, never a traceback) within a bounded CPU time, and in a subprocess under
an address-space limit for the largest ones.

Each limit is a :class:`Limit`: a builder of the file (or of command-line flags) for an offset
``d`` in {-1, 0, +1} from the limit, and the message expected just over it. At or under a limit
a valid file loads and runs (exit 0, 1 or 4); over it, exit 2 with a message that names the
limit. The grid below tries each limit at each offset; the Hypothesis property then combines
several limits in one file (derandomized, so CI sees the same files every time).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import resource
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import BASE, ROOT, SCENARIOS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simroll.cli import main
from simroll.scenario import load as loader
from simroll.scenario.patterns import MAX_PATTERNS, MAX_STEPS

MAX_EVENTS = "2000"  # every run here stops at this many events at the latest
CPU_BOUND = 20.0  # CPU seconds one file may take, load and run (the slowest, 200,000 nodes, takes about 4)
AS_BOUND = 1 << 30  # address space of a subprocess for the largest files (their VmPeak is under 400 MB)


def _doc() -> dict[str, Any]:
    return yaml.safe_load(textwrap.dedent(BASE))


def _dump(doc: dict[str, Any]) -> bytes:
    return yaml.safe_dump(doc, sort_keys=False, width=10**9).encode("utf-8")


@dataclass
class Limit:
    """A limit of simroll's input, probed at ``limit + d`` by ``build(d)`` (a file) and ``args(d)`` (flags)."""

    name: str
    build: Callable[[int], bytes]
    over: str  # a regex the one-line message just over the limit must match (after "simroll: FILE: ")
    args: Callable[[int], list[str]] = field(default=lambda d: [])
    valid_at: bool = True  # whether a file at the limit is a valid scenario (nesting is never valid)
    heavy: bool = False  # a file at the limit that is worth a subprocess with a memory limit


# ---------------------------------------------------------------- the files, one limit each
def _file_size(d: int) -> bytes:
    text = _dump(_doc())
    pad = loader.MAX_BYTES + d - len(text) - 2
    return text + b"#" + b"x" * pad + b"\n"


def _engines(d: int) -> bytes:
    doc = _doc()
    doc["engines"]["count"] = 10_000 + d
    return _dump(doc)


def _patterns_text(n: int, engines: int, waits: int = 0) -> bytes:
    text = (SCENARIOS / "patterns" / "new_arg_default.yaml").read_text(encoding="utf-8")
    doc = yaml.safe_load(text)
    doc["engines"]["count"] = engines
    doc["patterns"] = [
        {"pattern": "new-arg-default", "method": "check_resource", "arg": f"a{i}", "name": f"n{i}"}
        | {"base": "legacy" if i == 0 else f"n{i - 1}"}
        for i in range(n)
    ]
    if waits:
        doc["plan"] = [{"wait": 1}] * waits
    return _dump(doc)


def _patterns(d: int) -> bytes:
    return _patterns_text(MAX_PATTERNS + d, 3)


def _steps(d: int) -> bytes:
    # 99 patterns restart each of 1,000 engines: 99,000 steps, after the file's own 1,000 + d
    return _patterns_text(99, 1000, waits=MAX_STEPS - 99_000 + d)


def _rows(d: int) -> bytes:
    doc = _doc()
    doc["database"]["rows"] = 1_000_000 + d  # x 2 columns: the cell limit too, at d = 0
    return _dump(doc)


def _cells(d: int) -> bytes:
    doc = _doc()
    doc["database"]["tables"]["resource"] += ["a", "b"]  # 4 columns
    doc["database"]["rows"] = loader.MAX_CELLS // 4 + d  # 4 x (500,000 + d) cells
    return _dump(doc)


def _nesting(d: int) -> bytes:
    # the root mapping is level 0, the value of `search` level 1, the innermost list level 64 + d
    k = loader.MAX_DEPTH + d
    return _dump(_doc()) + b"search: " + b"[" * k + b"]" * k + b"\n"


def _nodes_of(node: yaml.Node) -> int:
    """Nodes once aliases are expanded, as the README counts them: every value and item, and the root."""
    if isinstance(node, yaml.MappingNode):
        return 1 + sum(_nodes_of(v) for _, v in node.value)
    if isinstance(node, yaml.SequenceNode):
        return 1 + sum(_nodes_of(v) for v in node.value)
    return 1


def _nodes(d: int) -> bytes:
    # search.kill_engines: [&e engine-1, *e, *e, ...]: each entry one node, four bytes of file
    text = _dump(_doc())
    base = _nodes_of(yaml.compose(text.decode()))
    n = loader.MAX_NODES + d - base - 2  # the `search` mapping and the list
    return text + b"search:\n  kill_engines: [&e engine-1" + b", *e" * (n - 1) + b"]\n"


def _version_digits(d: int) -> bytes:
    doc = _doc()
    doc["releases"]["r1"]["rpc"]["endpoints"][0]["version"] = "1." + "7" * (loader.MAX_VERSION_DIGITS + d)
    return _dump(doc)


def _int_digits(d: int) -> bytes:
    # an octal literal of 100 + d digits whose value is 1: at the limit it is a valid seed
    doc = _doc()
    del doc["seed"]
    return _dump(doc) + b"seed: " + b"0" * (loader.MAX_INT_DIGITS + d - 1) + b"1\n"


def _rate(d: int) -> bytes:
    doc = _doc()
    doc["workload"].update(rate=10_000_000 + d, stop=0.5)  # 5,000,000 operations: under that limit
    return _dump(doc)


def _operations(d: int) -> bytes:
    doc = _doc()
    doc["workload"].update(rate=1.0, stop=loader.MAX_OPERATIONS + d)  # from 0: one a second
    return _dump(doc)


def _seconds(d: int) -> bytes:
    doc = _doc()
    doc["plan"] = [{"wait": 1_000_000_000 + d}]
    return _dump(doc)


def _name_length(d: int) -> bytes:
    doc = _doc()
    name = "r" * (100 + d)
    doc["releases"] = {name: doc["releases"]["r1"]}
    doc["engines"]["release"] = name
    return _dump(doc)


def _casts(d: int) -> bytes:
    doc = _doc()
    doc["workload"]["handlers"] = {"op": {"cast": {"op": 1000 + d}}}
    return _dump(doc)


def _sends(d: int) -> bytes:
    # 1,000 casts plus a fanout to 3 engines, 3,000 + d times: 10,000 + 3d messages per handled op
    doc = _doc()
    doc["workload"]["handlers"] = {"op": {"cast": {"op": 1000}, "fanout": ["op"] * (3000 + d)}}
    return _dump(doc)


def _workers(d: int) -> bytes:
    doc = _doc()
    doc["releases"]["r1"]["workers"] = 64 + d
    return _dump(doc)


def _max_events_in_file(d: int) -> bytes:
    doc = _doc()
    doc["limits"] = {"max_events": 1_000_000_000 + d}
    return _dump(doc)


LIMITS = {
    limit.name: limit
    for limit in [
        Limit("file size", _file_size, rf"document: more than the limit of {loader.MAX_BYTES} bytes", heavy=True),
        Limit(
            "engines", _engines, r"engines\.count \(line \d+\): input should be less than or equal to 10000", heavy=True
        ),
        Limit("patterns", _patterns, rf"patterns \(line \d+\): 101 patterns, more than the limit of {MAX_PATTERNS}"),
        Limit(
            "plan steps once expanded",
            _steps,
            r"patterns\[98\] \(line \d+\): the plan would have 100,001 steps .*more than the limit of 100,000",
            heavy=True,
        ),
        Limit("rows", _rows, r"database\.rows \(line \d+\): input should be less than or equal to 1000000", heavy=True),
        Limit(
            "cells",
            _cells,
            r"database\.rows \(line \d+\): 500001 rows x 4 columns is 2,000,004 cells, more than the limit of 2,000,000",
            heavy=True,
        ),
        Limit("nesting", _nesting, r"line \d+, column 73: nested deeper than 64 levels", valid_at=False),
        Limit(
            "nodes once aliases are expanded",
            _nodes,
            r"document: more than 200000 nodes once aliases are expanded",
            heavy=True,
        ),
        Limit(
            "version component digits",
            _version_digits,
            r"releases\.r1\.rpc\.endpoints\[0\]\.version \(line \d+\): a version component of 10 digits, "
            r"more than the limit of 9",
        ),
        Limit(
            "integer digits",
            _int_digits,
            r"line \d+, column 7: not valid YAML: an integer of 101 characters, more than the limit of 100",
        ),
        Limit("rate", _rate, r"workload\.rate \(line \d+\): input should be less than or equal to 10000000"),
        Limit(
            "client operations",
            _operations,
            r"workload\.rate \(line \d+\): rate 1/s from 0 s to 1e\+07 s is about 10,000,001 client operations, "
            r"more than the limit of 10,000,000",
        ),
        Limit("seconds", _seconds, r"plan\[0\]\.wait \(line \d+\): input should be less than or equal to 1000000000"),
        Limit("name length", _name_length, r"releases\.r{101}.*: string should have at most 100 characters"),
        Limit(
            "casts per method",
            _casts,
            r"workload\.handlers\.op\.cast\.op \(line \d+\): input should be less than or equal to 1000",
        ),
        Limit(
            "messages one message sends",
            _sends,
            r"workload\.handlers\.op \(line \d+\): handling one op sends 10,003 messages .*more than the limit "
            r"of 10,000",
            heavy=True,
        ),
        Limit("workers", _workers, r"releases\.r1\.workers \(line \d+\): input should be less than or equal to 64"),
        Limit(
            "max_events in a file",
            _max_events_in_file,
            r"limits\.max_events \(line \d+\): input should be less than or equal to 1000000000",
        ),
        # the command line's own limits: --max-events and --max-time are positive, --seed below 2**63
        Limit(
            "--max-events",
            lambda d: _dump(_doc()),
            "",
            args=lambda d: ["--max-events", str(1 - d)],  # over the limit = below 1
        ),
        Limit("--max-time", lambda d: _dump(_doc()), "", args=lambda d: ["--max-time", repr(5e-324 * (1 - d))]),
        Limit("--seed", lambda d: _dump(_doc()), "", args=lambda d: ["--seed", str(2**63 - 1 + d)]),
    ]
}


# ---------------------------------------------------------------- running one file, bounded
class CPUBoundExceeded(BaseException):  # noqa: N818 - not an Exception: main() must not turn it into exit 70
    """A file took more than CPU_BOUND seconds of CPU."""


@contextlib.contextmanager
def cpu_bound(seconds: float) -> Iterator[None]:
    """Raise CPUBoundExceeded once this process has used ``seconds`` more CPU time (ITIMER_PROF:
    CPU, not the wall clock, so a loaded machine does not make it fire)."""

    def fire(signum: int, frame: Any) -> None:
        raise CPUBoundExceeded(f"more than {seconds} CPU seconds")

    previous = signal.signal(signal.SIGPROF, fire)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


def run_cli(path: Path, args: list[str]) -> tuple[int, str, str]:
    """`simroll run PATH --max-events 2000 ARGS` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), cpu_bound(CPU_BOUND):
        try:
            code = main(["run", str(path), "--max-events", MAX_EVENTS, *args])
        except SystemExit as e:  # argparse refuses a flag: exit 2 and its usage message
            code = e.code if isinstance(e.code, int) else 2
    return code, out.getvalue(), err.getvalue()


def check_answer(code: int, out: str, err: str, path: Path) -> None:
    """Whatever the file: exit 0, 1, 2 or 4, and never a traceback or an internal error."""
    assert code in (0, 1, 2, 4), (code, err[-2000:])
    assert "Traceback" not in err and "internal error" not in err, err[-2000:]
    if code == 2 and not err.startswith("usage:"):
        assert err.startswith(f"simroll: {path}: ") and err.count("\n") == 1, err[-2000:]
    if code != 2:
        assert out.startswith("scenario t  seed ") or out.startswith("scenario new_arg_default"), out[:200]


# ---------------------------------------------------------------- the grid: every limit, under, at and over
@pytest.mark.parametrize("d", [-1, 0, 1], ids=["under", "at", "over"])
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=[pytest.mark.slow] if LIMITS[n].heavy else []) for n in sorted(LIMITS)]
)
def test_each_limit_just_under_at_and_just_over(tmp_path, name, d):
    limit = LIMITS[name]
    path = tmp_path / "s.yaml"
    path.write_bytes(limit.build(d))
    code, out, err = run_cli(path, limit.args(d))
    check_answer(code, out, err, path)
    if d == 1:
        assert code == 2, (name, out[:300])
        if limit.over:
            assert re.fullmatch(rf"simroll: {re.escape(str(path))}: {limit.over}.*\n", err), err
    elif limit.valid_at:
        assert code in (0, 1, 4), (name, err)
    else:
        assert code == 2 and "nested deeper" not in err, err
    assert sorted(os.listdir(tmp_path)) == ["s.yaml"]  # nothing written beside it


# ---------------------------------------------------------------- the property: several limits in one file
def _merge(doc: dict[str, Any], built: dict[str, Any], base: dict[str, Any]) -> None:
    """Apply to ``doc`` what ``built`` changed from ``base``, key by key, nested mappings included."""
    for key, value in built.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and isinstance(doc.get(key), dict):
            _merge(doc[key], value, base[key])
        elif value != base.get(key):
            doc[key] = value


_APPENDS = ("file size", "nesting", "nodes once aliases are expanded", "integer digits")  # text after the document
# limits that set the same values: one file takes at most one of each group
_GROUP = {"client operations": "rate", "messages one message sends": "casts per method", "cells": "rows"}


def _combine(names: list[str], offsets: list[int]) -> tuple[bytes, list[str]]:
    """One file at several limits at once: each builder's changes applied to one document."""
    base_text = _dump(_doc())
    base = yaml.safe_load(base_text)
    doc = yaml.safe_load(base_text)
    tails, args = [], []
    for name, d in zip(names, offsets, strict=True):
        args += LIMITS[name].args(d)
        text = LIMITS[name].build(d)
        if name in _APPENDS:
            tails.append(text[len(base_text) :])
            if name == "integer digits":
                doc.pop("seed")
        else:
            _merge(doc, yaml.safe_load(text), base)
    return _dump(doc) + b"".join(tails), args


_CHEAP = sorted(n for n, limit in LIMITS.items() if not limit.heavy)
EXTRA_ARGS = [[], ["--max-time", "inf"], ["--max-time", "nan"], ["--max-events", str(10**30)], ["--seed", "-1"]]


@pytest.mark.slow
def test_files_at_several_limits_at_once_exit_0_1_2_or_4(tmp_path):
    tried: list[int] = []

    @settings(
        max_examples=60,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        st.lists(st.sampled_from(_CHEAP), min_size=2, max_size=4, unique_by=lambda n: _GROUP.get(n, n)).flatmap(
            lambda names: st.tuples(
                st.just(names),
                st.lists(st.sampled_from([-1, 0, 1]), min_size=len(names), max_size=len(names)),
                st.sampled_from(EXTRA_ARGS),
            )
        )
    )
    def check(case: tuple[list[str], list[int], list[str]]) -> None:
        names, offsets, extra = case
        data, args = _combine(names, offsets)
        path = tmp_path / "s.yaml"
        path.write_bytes(data)
        code, out, err = run_cli(path, args + extra)
        check_answer(code, out, err, path)
        if any(d == 1 for d in offsets):
            assert code == 2, (names, offsets, out[:300])
        tried.append(code)

    check()
    print(f"\nfiles at several limits: {len(tried)}, exits {sorted(set(tried))}")
    assert len(tried) >= 60 and 2 in tried and set(tried) & {0, 1, 4}


# ---------------------------------------------------------------- memory: the largest files under an address-space limit
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(n for n, limit in LIMITS.items() if limit.heavy))
def test_the_largest_files_load_and_run_within_a_memory_limit(tmp_path, name):
    """At the limit, in a process whose address space is capped (RLIMIT_AS) and whose CPU time is
    capped (RLIMIT_CPU): a file that needed more would die of MemoryError or SIGXCPU, not pass."""
    path = tmp_path / "s.yaml"
    path.write_bytes(LIMITS[name].build(0))

    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (AS_BOUND, AS_BOUND))
        resource.setrlimit(resource.RLIMIT_CPU, (int(CPU_BOUND), int(CPU_BOUND) + 5))

    proc = subprocess.run(
        [sys.executable, "-m", "simroll", "run", str(path), "--max-events", MAX_EVENTS],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        preexec_fn=limits,
        timeout=600,
    )
    check_answer(proc.returncode, proc.stdout, proc.stderr, path)
    assert proc.returncode in (0, 1, 4), proc.stderr[-2000:]


# ---------------------------------------------------------------- the readers' byte limits
@pytest.mark.parametrize("d", [-1, 0, 1], ids=["under", "at", "over"])
def test_read_input_reads_up_to_its_limit_and_refuses_one_byte_more(tmp_path, d):
    from simroll._io import read_input

    path = tmp_path / "f"
    path.write_bytes(b"x" * (1000 + d))
    if d <= 0:
        assert read_input(path, 1000) == b"x" * (1000 + d)
    else:
        with pytest.raises(ValueError, match=r"^more than the limit of 1000 bytes$"):
            read_input(path, 1000)


@pytest.mark.parametrize("d", [-1, 0, 1], ids=["under", "at", "over"])
def test_a_trace_is_read_up_to_its_limit(tmp_path, monkeypatch, d):
    import simroll.sim.trace as trace
    from simroll.errors import UsageError

    line = b'{"i":0,"t":0.0,"kind":"begin","scenario":"t"}\n'
    monkeypatch.setattr(trace, "MAX_TRACE_BYTES", 1000)
    path = tmp_path / "t.jsonl"
    path.write_bytes(line + b"\n" * (1000 + d - len(line)))  # blank lines are skipped
    if d <= 0:
        assert trace.read_trace(path) == [{"i": 0, "t": 0.0, "kind": "begin", "scenario": "t"}]
    else:
        with pytest.raises(UsageError, match=r": more than the limit of 1000 bytes, expected a trace file$"):
            trace.read_trace(path)
