"""Hostile scenario files: whatever the bytes, ``simroll run`` answers exit 2 and one placed message.

The documents are mutations of the bundled scenarios (so most of each file is still a
plausible scenario and the loader gets deep before it trips), drawn by Hypothesis with a
fixed derandomized seed. A mutation that happens to give a valid scenario is skipped; the
malformed ones are counted, and the test asserts that at least ``MIN_MALFORMED`` were tried.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import re
import signal
import stat
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, SCENARIOS
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from simroll.cli import main
from simroll.errors import ScenarioError
from simroll.scenario.load import MAX_BYTES, load_scenario_text

MIN_MALFORMED = 2000

BUNDLED = sorted(SCENARIOS.glob("**/*.yaml"))
BASE_DOCS = [yaml.safe_load(p.read_text(encoding="utf-8")) for p in BUNDLED]

# ---------------------------------------------------------------- what a message must look like
_QUOTED = r"""\['(?:[^'\\]|\\.)*'\]|\["(?:[^"\\]|\\.)*"\]"""  # a key that is not a plain word, as repr
_SEG = rf"(?:[\w\-]+|\[\d+\]|{_QUOTED})"
_KEYPATH = rf"{_SEG}(?:\.[\w\-]+|\[\d+\]|{_QUOTED})*"
PLACE = rf"(?:document|file|byte \d+|line \d+, column \d+|{_KEYPATH}(?: \(line \d+\))?)"


def assert_placed_error(err: str, path: str) -> None:
    """``simroll: PATH: PLACE: MESSAGE`` on one line, and nothing else."""
    assert "Traceback" not in err, err
    assert err.endswith("\n") and err.count("\n") == 1, err
    m = re.fullmatch(rf"simroll: {re.escape(path)}: ({PLACE}): (\S.*)\n", err)
    assert m is not None, err


# ---------------------------------------------------------------- the mutations
HOSTILE_VALUES = [
    None,
    True,
    False,
    0,
    -1,
    -0.5,
    1e308,
    -1e308,
    10**20,
    -(10**20),
    2**63,
    2**64 + 1,
    float("inf"),
    float("-inf"),
    float("nan"),
    "",
    "1.x",
    "x.1",
    "1.0.0.0",
    "1.",
    "auto",
    "none",
    "holds",
    "violates",
    "violates no-such-invariant",
    "engine-999",
    "no_such_release",
    "no_table.no_column",
    "notalocation",
    "a b",
    "\u00fc\u00df",
    "\x00",
    "x" * 3000,
    "1e308",
    "-1",
    [],
    {},
    [None],
    [[[[1]]]],
    {"x": 1},
    {"": None},
    [1, "a", None],
    {"version": "1.x"},
    [{"kill": "engine-999", "at": -1}],
]
UNKNOWN_KEYS = [
    "nmae",
    "Name",
    "extra",
    "rate_",
    "versoin",
    "",
    "a b",
    "x:y",
    "release ",
    "enginess",
    "1",
    "methods",
    "after",
    "count",
    "\u00e9",
]
TAGGED = [
    "!!python/object/apply:os.system ['touch pwned']",
    "!!python/name:os.system",
    "!!python/object:object {}",
    "!!python/object/new:builtins.dict {}",
    "!ruby/object x",
    "!custom 1",
    "!!set {a, b}",
    "!!binary aGk=",
    "!!timestamp 2001-01-01",
    "!!omap [a: 1]",
    "!!float abc",
    "!!int 0x",
    "!!null x",
    "!!map [1]",
]
SNIPPETS = [
    b"\xff",
    b"\xc3",
    b"\x00",
    b"\x07",
    b"\t",
    b"{",
    b"[",
    b"]",
    b": ",
    b"&a ",
    b"*a",
    b"*nope ",
    b"? ",
    b"- ",
    b"%YAML 1.1\n---\n",
    b"---\n",
    b"\n...\n",
    b"'",
    b'"',
    b"\n  ",
    b"!!python/object:os.system ",
    b"<<: *a\n",
    b"\xef\xbb\xbf",
    b"\r",
    b"|\n",
    b"#",
]


def _paths(node, prefix=()):
    """Every place in a document: () for the root, then keys and indexes."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def _get(doc, path):
    for p in path:
        doc = doc[p]
    return doc


@st.composite
def _data_mutation(draw, doc):
    """Change one place of ``doc`` (in place); return a label for the counts, or the new root."""
    paths = list(_paths(doc))
    path = draw(st.sampled_from(paths))
    op = draw(
        st.sampled_from(
            ["replace", "replace", "delete", "delete", "add_key", "rename", "empty", "undefined", "duplicate", "root"]
        )
    )
    node = _get(doc, path)
    parent = _get(doc, path[:-1]) if path else None
    if op == "root" or not path and op in ("replace", "delete"):
        return "root", draw(st.sampled_from([[], [doc], 42, "scenario", None, [1, 2], {}, {"name": "x"}]))
    if op == "replace" and path:
        # a copy: a later mutation must not change the pool itself (that made the strategy flaky)
        parent[path[-1]] = copy.deepcopy(
            draw(st.sampled_from(HOSTILE_VALUES) | st.integers() | st.floats() | st.text(max_size=8))
        )
    elif op == "delete" and path:
        del parent[path[-1]]
    elif op == "add_key":
        target = node if isinstance(node, dict) else parent if isinstance(parent, dict) else doc
        target[draw(st.sampled_from(UNKNOWN_KEYS))] = copy.deepcopy(draw(st.sampled_from(HOSTILE_VALUES)))
    elif op == "rename" and isinstance(parent, dict):
        key = path[-1]
        new = draw(
            st.sampled_from([key.upper(), key[:-1], key + "s", key.replace("_", "-"), key.replace("-", "_"), " " + key])
        )
        parent[new] = parent.pop(key)
    elif op == "empty":
        if isinstance(node, (dict, list)):
            node.clear()
        elif path:
            parent[path[-1]] = draw(st.sampled_from([[], {}, ""]))
    elif op == "undefined" and path:
        parent[path[-1]] = draw(
            st.sampled_from(
                ["engine-999", "no_such_release", "ghost.column", "ghost", "no_such_method", "no_such_field"]
            )
        )
    elif op == "duplicate" and isinstance(node, list) and node:
        node.append(copy.deepcopy(node[0]))
    else:
        return "noop", doc
    return op, doc


def _replace_a_value(text: str, draw) -> str:
    lines = text.splitlines()
    spots = [i for i, line in enumerate(lines) if re.match(r"^\s*(- )?[\w\-]+: \S", line)]
    if not spots:
        return text + "\nname: " + draw(st.sampled_from(TAGGED)) + "\n"
    i = draw(st.sampled_from(spots))
    key = lines[i].split(": ", 1)[0]
    lines[i] = f"{key}: {draw(st.sampled_from(TAGGED))}"
    return "\n".join(lines) + "\n"


@st.composite
def documents(draw) -> tuple[str, bytes]:
    """(kind, bytes of a scenario file): a bundled scenario, mutated at the data level and/or as text."""
    doc = copy.deepcopy(draw(st.sampled_from(BASE_DOCS)))
    kind = "data"
    for _ in range(draw(st.integers(1, 3))):
        label, doc = draw(_data_mutation(doc))
        kind = label if label == "root" else kind
        if label == "root":
            break
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    how = draw(
        st.sampled_from(
            ["none"] * 6
            + ["truncate", "insert", "insert", "tag", "tag", "indent", "whole", "whole", "whole", "encoding"]
        )
    )
    if how == "none":
        return kind, text.encode("utf-8")
    data = text.encode("utf-8")
    if how == "truncate":
        return "truncate", data[: draw(st.integers(0, max(0, len(data) - 1)))]
    if how == "insert":
        at = draw(st.integers(0, len(data)))
        return "insert", data[:at] + draw(st.sampled_from(SNIPPETS)) + data[at:]
    if how == "tag":
        return "tag", _replace_a_value(text, draw).encode("utf-8")
    if how == "indent":
        lines = text.splitlines(keepends=True)
        i = draw(st.integers(0, len(lines) - 1))
        lines[i] = draw(st.sampled_from([" ", "\t", "   "])) + lines[i]
        return "indent", "".join(lines).encode("utf-8")
    if how == "encoding":
        enc = draw(st.sampled_from(["utf-16", "utf-32", "latin-1", "random"]))
        if enc == "random":
            return "encoding", draw(st.binary(min_size=1, max_size=200))
        return "encoding", ("description: caf\u00e9 \u00fc\u00df\n" + text).encode(enc, errors="replace")
    # a whole document built to hurt
    special = draw(
        st.sampled_from(
            [
                "deep_flow",
                "deep_map",
                "deep_block",
                "alias_bomb",
                "recursive_alias",
                "huge",
                "multi",
                "scalar_root",
                "empty",
            ]
        )
    )
    n = draw(st.integers(65, 3000))
    if special == "deep_flow":
        body = "search: " + "[" * n + "]" * n + "\n"
    elif special == "deep_map":
        body = "search: " + "{a: " * n + "1" + "}" * n + "\n"
    elif special == "deep_block":
        body = "search:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(min(n, 400))) + " " * 401 + "x: 1\n"
    elif special == "alias_bomb":
        fan, levels = draw(st.integers(2, 10)), draw(st.integers(2, 12))
        body = "a0: &a0 [x]\n" + "".join(
            f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * fan)}]\n" for i in range(1, levels + 1)
        )
    elif special == "recursive_alias":
        body = "search: &r [*r, *r]\n"
    elif special == "huge":
        return special, text.encode("utf-8") + b"#" * (MAX_BYTES + 1 - len(text)) + b"\n"
    elif special == "multi":
        body = text + "---\n" + text
    elif special == "scalar_root":
        body = draw(st.sampled_from(["42\n", "'x'\n", "null\n", "~\n", "- a\n- b\n", "...\n", "[1, 2]\n", "true\n"]))
    else:
        body = draw(st.sampled_from(["", " ", "\n\n", "# only a comment\n", "---\n", "{}\n"]))
    return special, (text + body if special.startswith(("deep", "alias", "recursive")) else body).encode("utf-8")


def _loads(data: bytes) -> bool:
    try:
        load_scenario_text(data, "x.yaml")
    except ScenarioError:
        return False
    return True


# ---------------------------------------------------------------- the tests
@pytest.mark.slow
def test_hostile_documents_exit_2_with_a_placed_message_and_write_nothing(tmp_path):
    counts: Counter[str] = Counter()
    work = tmp_path / "work"
    work.mkdir()

    @settings(
        max_examples=MIN_MALFORMED,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    @given(documents())
    def check(case: tuple[str, bytes]) -> None:
        kind, data = case
        if _loads(data):
            counts["valid (skipped)"] += 1
            assume(False)
        counts["malformed"] += 1
        counts[f"malformed/{kind}"] += 1
        path = work / "scenario.yaml"
        path.write_bytes(data)
        before = sorted(os.listdir(work))
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["run", str(path), "--trace", str(work / "trace.jsonl")])
        assert code == 2, (code, err.getvalue())
        assert out.getvalue() == ""
        assert_placed_error(err.getvalue(), str(path))
        assert sorted(os.listdir(work)) == before  # no trace, no temporary file left behind
        path.unlink()

    check()
    print("\nhostile documents:", dict(sorted(counts.items())))
    assert counts["malformed"] >= MIN_MALFORMED


# A few of them through a real process: what reaches the terminal is the one line, never a traceback.
SUBPROCESS_CASES = {
    "non_utf8.yaml": b"name: caf\xe9\n",
    "tag.yaml": b"name: !!python/object/apply:os.system ['echo pwned']\n",
    "bomb.yaml": (
        "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9))
    ).encode(),
    "deep.yaml": b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "list_root.yaml": b"- 1\n- 2\n",
    "bad_version.yaml": (SCENARIOS / "lost_dual_writes.yaml")
    .read_bytes()
    .replace(b'version: "1.0"', b"version: 1.x", 1),
    "huge.yaml": b"name: x\n" + b"#" * (MAX_BYTES + 10) + b"\n",
}


@pytest.mark.parametrize("name", sorted(SUBPROCESS_CASES))
def test_no_traceback_reaches_the_terminal(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(SUBPROCESS_CASES[name])
    before = sorted(os.listdir(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-m", "simroll.cli", "run", str(path), "--trace", str(tmp_path / "t.jsonl")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert_placed_error(proc.stderr, str(path))
    assert sorted(os.listdir(tmp_path)) == before
    assert not Path(ROOT / "pwned").exists()


# ---------------------------------------------------------------- absurd but valid: refused or run, never a crash
EXTREMES = [
    0,
    1,
    2,
    1e-9,
    1e-300,
    0.5,
    64,
    65,
    1000,
    1001,
    10_000,
    10_001,
    999_999,
    1_000_000,
    1e7,
    1e9,
    1e9 + 1,
    2**63 - 1,
    "1.0",
    "2.0",
    "9.99",
    "auto",
    "none",
    "kill",
    "row",
    "cast",
    "periodic",
    "version-routed",
    "on-complete",
    [],
    {},
]
# valid absurd scenarios run per test run; SIMROLL_ABSURD_EXAMPLES=1500 makes a deeper hunt (~5 min)
ABSURD_EXAMPLES = int(os.environ.get("SIMROLL_ABSURD_EXAMPLES", "150"))


@st.composite
def absurd_scenarios(draw) -> bytes:
    """A bundled scenario with 1-4 leaves set to extreme values that may still be within bounds."""
    doc = copy.deepcopy(draw(st.sampled_from(BASE_DOCS)))
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(doc) if p and not isinstance(_get(doc, p), (dict, list))]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        _get(doc, path[:-1])[path[-1]] = copy.deepcopy(draw(st.sampled_from(EXTREMES)))
    return yaml.safe_dump(doc, sort_keys=False).encode("utf-8")


@pytest.mark.slow
def test_absurd_values_are_refused_at_load_or_run_to_a_limit():
    """What loads must run to its end or to a limit without an exception (here a low limit of events)."""
    from simroll.run import run_scenario

    counts: Counter[str] = Counter()

    @settings(
        max_examples=ABSURD_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(absurd_scenarios())
    def check(data: bytes) -> None:
        try:
            s = load_scenario_text(data, "absurd.yaml")
        except ScenarioError as e:
            counts["refused"] += 1
            assert str(e).startswith("absurd.yaml: ")
            assume(False)
        counts["ran"] += 1
        s = s.model_copy(update={"limits": s.limits.model_copy(update={"max_events": 3000})})
        result = run_scenario(s, keep_trace=False)
        assert result.end_reason == "quiescent" or result.limited
        assert result.events >= 2

    check()
    print("\nabsurd scenarios:", dict(counts))
    assert counts["ran"] >= ABSURD_EXAMPLES


# ---------------------------------------------------------------- absurd sizes: refused at load, with the numbers
@pytest.mark.parametrize(
    "override, message",
    [
        (
            {"workload": "{rate: 1.0e7, stop: 1.0e9, operations: {op: 1}}"},
            "workload.rate: rate 1e+07/s from 0 s to 1e+09 s is about 10,000,000,000,000,000 client operations, more than the "
            "limit of 10,000,000; lower rate or stop",
        ),
        (
            {"workload": "{rate: 10, start: 5, stop: 1000006, operations: {op: 1}}"},
            "workload.rate: rate 10/s from 5 s to 1.00001e+06 s is about 10,000,010 client operations, more than the "
            "limit of 10,000,000; lower rate or stop",
        ),
        (
            {"database": "{tables: {resource: [id, properties, a]}, rows: 1000000}"},
            "database.rows: 1000000 rows x 3 columns is 3,000,000 cells, more than the limit of 2,000,000",
        ),
        (
            {
                "engines": "{count: 200, release: r1}",
                "workload": "{rate: 1, stop: 5, operations: {op: 1}, handlers: {op: {fanout: [op, op, op, op, op, op, op, op, "
                "op, op, op, op, op, op, op, op, op, op, op, op, op, op, op, op, op, op, op, op, op, op, op, op, op, "
                "op, op, op, op, op, op, op, op, op, op, op, op, op, op, op, op, op, op]}}}",
            },
            "workload.handlers.op: handling one op sends 10,200 messages (casts, plus fanout to 200 engines), "
            "more than the limit of 10,000",
        ),
        ({"engines": "[]"}, "engines: list should have at least 1 item after validation, not 0"),
        (
            {"engines": "{count: 10001, release: r1}"},
            "engines.count: input should be less than or equal to 10000, got 10001",
        ),
        (
            {"workload": "{rate: 1, stop: 5, operations: {op: .inf}}"},
            "workload.operations.op: input should be a finite number, got inf",
        ),
        (
            {"limits": "{max_events: 100000000000000000000}"},
            "limits.max_events: input should be less than or equal to 1000000000, got 100000000000000000000",
        ),
        (
            {"plan": "[{wait: 1}]", "search": "{kill_instead_of_stop: [0, 3]}"},
            "search.kill_instead_of_stop[1]: step 3 does not exist (the plan has 1 steps)",
        ),
        (
            {"database": "{tables: {resource: [id, properties]}, initial: {props: [resource.nope]}}"},
            "database.initial.props[0]: column 'resource.nope' is neither in database.tables nor added by an "
            "expand step (known: resource.id, resource.properties)",
        ),
    ],
)
def test_absurd_sizes_are_refused_with_the_numbers(override, message):
    import textwrap

    from conftest import BASE

    data = yaml.safe_load(textwrap.dedent(BASE))
    data.update({k: yaml.safe_load(v) for k, v in override.items()})
    with pytest.raises(ScenarioError) as exc:
        load_scenario_text(yaml.safe_dump(data, sort_keys=False, width=1000), "f.yaml")
    place, text = message.split(": ", 1)
    # the line number is the loader's business (tests/test_loader.py); here: the place and the numbers
    assert re.fullmatch(rf"f\.yaml: {re.escape(place)} \(line \d+\): {re.escape(text)}", str(exc.value)), str(exc.value)


def test_the_readme_states_the_limits_the_code_enforces():
    from simroll.scenario import load as loader
    from simroll.scenario.spec import LimitsSpec

    section = (ROOT / "docs" / "guarantees.md").read_text(encoding="utf-8")
    for stated in (
        f"{loader.MAX_BYTES:,} bytes",
        f"{loader.MAX_DEPTH} levels",
        f"| {loader.MAX_NODES:,} |",
        f"| {loader.MAX_OPERATIONS:,} |",
        f"| {loader.MAX_CELLS:,} |",
        f"| {loader.MAX_SENDS:,} |",
        f"`max_time: {LimitsSpec().max_time:.0f}` s",
        f"`max_events: {LimitsSpec().max_events}`",
        f"{MIN_MALFORMED:,} malformed documents",
    ):
        assert stated in section, stated


def test_every_guarantee_names_tests_that_exist():
    """docs/guarantees.md: each promise is one line naming at least one test, and each test it names exists."""
    text = (ROOT / "docs" / "guarantees.md").read_text(encoding="utf-8")
    promises = [line for line in text.splitlines() if line.startswith("- **")]
    assert len(promises) >= 20
    for line in promises:
        named = re.findall(r"`tests/(\w+\.py)::(test_\w+)`", line)
        assert named, f"a promise that names no test: {line[:80]}"
        for module, test in named:
            source = (ROOT / "tests" / module).read_text(encoding="utf-8")
            assert re.search(rf"^def {test}\(", source, re.M), f"tests/{module}::{test} does not exist"


# ---------------------------------------------------------------- corrupted traces (issue 18, item 9)
def _emits() -> dict[str, list[set[str]]]:
    """Every record the simulator can write: kind -> the keyword sets of its emit() calls, read from
    the syntax of simroll/sim (the hot kinds from the keyword-only parameters of Trace's methods)."""
    import ast

    from simroll.sim.trace import Trace

    found: dict[str, list[set[str]]] = {}
    for path in sorted((ROOT / "simroll" / "sim").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or len(node.args) < 2:
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", None))
            if name == "emit":
                kind = node.args[1]
                assert isinstance(kind, ast.Constant), f"{path.name}:{node.lineno}: a kind that is not a literal"
                # a **mapping adds optional fields that must be among those named elsewhere
                found.setdefault(kind.value, []).append({kw.arg for kw in node.keywords if kw.arg})
    import inspect

    for kind in ("send", "recv", "done", "read", "write"):
        params = inspect.signature(getattr(Trace, kind)).parameters.values()
        found.setdefault(kind, []).append({p.name for p in params if p.kind is p.KEYWORD_ONLY})
    return found


def test_the_trace_reader_knows_every_kind_and_field_the_simulator_writes():
    """A kind or field added to the simulator without the reader would make `simroll plot` refuse
    good traces; one the reader requires but some emit() leaves out, the same."""
    from simroll.sim.trace import _SCHEMA

    emits = _emits()
    assert sorted(emits) == sorted(_SCHEMA), "kinds written and kinds read differ"
    for kind, calls in emits.items():
        required, optional = _SCHEMA[kind]
        for keys in calls:
            assert set(required) <= keys, (kind, set(required) - keys)
            assert keys <= set(required) | set(optional) | {"cause"}, (kind, keys - set(required) - set(optional))


@pytest.fixture(scope="module")
def real_traces(tmp_path_factory) -> list[list[str]]:
    """The JSON lines of the traces of the bundled scenarios, written by `simroll run --trace`."""
    out = []
    work = tmp_path_factory.mktemp("traces")
    for n, src in enumerate(sorted(SCENARIOS.glob("*.yaml")) + sorted((SCENARIOS / "patterns").glob("*.yaml"))):
        trace = work / f"{n}.jsonl"
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert main(["run", str(src), "--trace", str(trace)]) in (0, 1, 4), src
        out.append(trace.read_text(encoding="utf-8").splitlines())
    return out


@pytest.mark.slow
def test_every_bundled_trace_reads_back_as_it_was_written(real_traces, tmp_path):
    import json

    from simroll.sim.trace import read_trace

    kinds: set[str] = set()
    for n, lines in enumerate(real_traces):
        path = tmp_path / f"{n}.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        records = read_trace(path)
        assert records == [json.loads(line) for line in lines]
        kinds.update(r["kind"] for r in records)
    assert len(kinds) >= 20, sorted(kinds)  # the corpus below corrupts records of each of these


_WRONG = {  # a value of another type, for a value of each JSON type
    str: [1, ["x"], {}],  # not null: some strings may be null (a value never written)
    int: ["1", 1.5, True, None],
    float: ["1.0", None, True, "NaN"],
    bool: [1, "true", None],
    list: ["x", {}, None, [{}]],
    dict: [[], "x", None],
    type(None): [],  # null is allowed where it appears (a value not yet written): nothing to corrupt
}


def _samples(traces: list[list[str]]) -> list[str]:
    """One record of each kind and shape (its set of keys) in ``traces``, as record 1 of a trace
    (``i`` 1, its causes pointing at record 0), so that each corruption below is a two-line file."""
    import json

    seen, out = set(), []
    for lines in traces:
        for line in lines[1:]:
            rec = json.loads(line)
            shape = (rec["kind"], tuple(rec))
            if shape not in seen:
                seen.add(shape)
                out.append(json.dumps({**rec, "i": 1, **({"cause": [0]} if "cause" in rec else {})}))
    return out


def _corruptions(head: str, samples: list[str]):
    """(label, trace lines, the line number read_trace must name): each field of each sample
    removed (where the reader needs it) or given a value of a wrong type, a kind nobody writes,
    causes that are not earlier records, times and numbers out of order, lines that are no record."""
    import json

    from simroll.sim.trace import _SCHEMA

    for line in samples:
        rec = json.loads(line)
        kind = rec["kind"]
        required, _ = _SCHEMA[kind]
        for key, value in rec.items():
            if key in required or key in ("i", "t", "kind"):
                yield f"{kind} without {key}", [head, json.dumps({a: b for a, b in rec.items() if a != key})], 2
            for wrong in _WRONG[float if key == "t" else type(value)]:  # t may be written 0
                yield f"{kind}.{key}={wrong!r}", [head, json.dumps({**rec, key: wrong})], 2
            if type(value) is list and value:
                yield f"{kind}.{key}[0] wrong", [head, json.dumps({**rec, key: [{"x": 1}]})], 2
        yield f"{kind} unknown kind", [head, json.dumps({**rec, "kind": kind + "_x"})], 2
        for c in (1, 8, -1):
            yield f"{kind}.cause=[{c}]", [head, json.dumps({**rec, "cause": [c]})], 2
        later = json.dumps({**json.loads(head), "i": 1, "t": rec["t"] + 5.0})
        yield f"{kind} after a later record", [head, later, json.dumps({**rec, "i": 2})], 3
    second = samples[0]
    for label, text in [
        ("i repeated", head),
        ("i skipped", json.dumps({**json.loads(second), "i": 2})),
        ("t negative", json.dumps({**json.loads(second), "t": -1})),
        ("t NaN", second.replace('"t": ', '"t": NaN, "u": ', 1)),
        ("t Infinity", second.replace('"t": ', '"t": Infinity, "u": ', 1)),
        ("i 1.0", second.replace('"i": 1,', '"i": 1.0,', 1)),
        ("i true", second.replace('"i": 1,', '"i": true,', 1)),
        ("i 1e400", second.replace('"i": 1,', '"i": 1e400,', 1)),
        ("i of 5000 digits", second.replace('"i": 1,', '"i": ' + "1" * 5000 + ",", 1)),
        ("truncated", second[: len(second) // 2]),
        ("a list", "[1, 2]"),
        ("a string", '"begin"'),
        ("null", "null"),
        ("deep", "[" * 100_000 + "]" * 100_000),
        ("garbage", "\x00\x01binary"),
    ]:
        assert text != second, label
        yield label, [head, text], 2


@pytest.mark.slow
def test_a_corrupted_trace_is_refused_with_its_file_and_line(real_traces, tmp_path):
    """Issue 18: `simroll plot` of a corrupted trace failed inside a plot (7 of 14 with a traceback).
    Every record is checked as it is read: each corruption names the file, the line and what was
    expected, and `simroll plot` exits 2 with that one line and writes nothing."""
    from simroll.errors import UsageError
    from simroll.sim.trace import read_trace

    head = real_traces[0][0]
    samples = _samples(real_traces)
    path = tmp_path / "t.jsonl"
    for line in samples:  # each sample, as it is, is a good trace: what fails below is the corruption
        path.write_text(f"{head}\n{line}\n", encoding="utf-8")
        assert len(read_trace(path)) == 2
    counts: Counter[str] = Counter()
    out_dir = tmp_path / "plots"
    for label, broken, line in _corruptions(head, samples):
        path.write_text("\n".join(broken) + "\n", encoding="utf-8")
        try:
            read_trace(path)
        except UsageError as e:
            assert str(e).startswith(f"{path}: line {line}: "), (label, str(e))
        else:
            raise AssertionError(f"read_trace took a corrupted trace: {label}")
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["plot", str(path), "--out", str(out_dir)])
        assert code == 2, (label, err.getvalue())
        assert re.fullmatch(rf"simroll: {re.escape(str(path))}: line {line}: \S[^\n]*\n", err.getvalue()), label
        assert out.getvalue() == "" and not out_dir.exists(), label
        counts["corrupted traces"] += 1
    print(f"\ncorrupted traces: {dict(counts)} from {len(samples)} sample records")
    assert counts["corrupted traces"] >= 500


# ---------------------------------------------------------------- hostile paths: inputs and outputs of every command
class Hang(BaseException):  # noqa: N818 - not an Exception: main() must not turn it into exit 70
    """A command still blocked after HANG_BOUND seconds (a FIFO opened with no peer, say)."""


HANG_BOUND = 120  # seconds of wall time: a bound that turns a hang into a failure, not a synchronisation


def _call(argv: list[str]) -> tuple[int, str, str]:
    """`simroll ARGV` in this process, bounded in wall time: (exit code, stdout, stderr)."""

    def fire(signum, frame):
        raise Hang(" ".join(argv))

    out, err = io.StringIO(), io.StringIO()
    previous = signal.signal(signal.SIGALRM, fire)
    signal.alarm(HANG_BOUND)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as e:  # argparse
                code = e.code if isinstance(e.code, int) else 2
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return code, out.getvalue(), err.getvalue()


def _snapshot(path: Path) -> tuple:
    """What is at ``path`` (not following a link): its kind, and its content or link target."""
    try:
        st_ = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return ("missing",)
    mode = st_.st_mode
    if stat.S_ISLNK(mode):
        target = os.readlink(path)
        return ("link", target, _snapshot(path.parent / target) if not os.path.isabs(target) else target)
    if stat.S_ISREG(mode):
        return ("file", path.read_bytes())
    if stat.S_ISDIR(mode):
        return ("dir", sorted((p.name, _snapshot(p)) for p in path.iterdir()))
    return (stat.S_IFMT(mode), st_.st_rdev)


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _make(kind: str, where: Path) -> Path:
    """A hostile path named ``where`` (or a device): what it is, before the command runs."""
    if kind == "regular file":
        where.write_text("precious\n")
    elif kind == "directory":
        where.mkdir()
        (where / "keep.txt").write_text("keep\n")
    elif kind == "fifo":
        os.mkfifo(where)
    elif kind == "symlink to a file":
        (where.parent / "victim.txt").write_text("victim\n")
        where.symlink_to("victim.txt")
    elif kind == "symlink to /dev/null":
        where.symlink_to("/dev/null")
    elif kind == "dangling symlink":
        where.symlink_to("nowhere.txt")
    elif kind == "/dev/null":
        return Path("/dev/null")
    elif kind == "inside a regular file":
        (where.parent / "afile").write_text("afile\n")
        return where.parent / "afile" / where.name
    elif kind == "in a missing directory with a newline in its name":
        return where.parent / "no\ndir" / where.name
    else:
        raise AssertionError(kind)
    return where


TARGETS = [
    "regular file",
    "directory",
    "fifo",
    "symlink to a file",
    "symlink to /dev/null",
    "dangling symlink",
    "/dev/null",
    "inside a regular file",
    "in a missing directory with a newline in its name",
]
# (label, argv with {T} for the hostile path, whether the flag names a directory)
OUTPUT_FLAGS = [
    ("run --trace", ["run", str(SCENARIOS / "lost_dual_writes.yaml"), "--trace", "{T}"], False),
    ("run --html", ["run", str(SCENARIOS / "lost_dual_writes.yaml"), "--html", "{T}"], False),
    ("run --plots", ["run", str(SCENARIOS / "lost_dual_writes.yaml"), "--plots", "{T}"], True),
    ("plot --out", ["plot", str(SCENARIOS / "lost_dual_writes.yaml"), "--out", "{T}"], True),
    ("fuzz --out", ["fuzz", str(SCENARIOS / "lost_dual_writes.yaml"), "--max-examples", "5", "--out", "{T}"], False),
    ("fuzz --db", ["fuzz", str(SCENARIOS / "lost_dual_writes.yaml"), "--max-examples", "5", "--db", "{T}"], True),
    ("verify --out", ["verify", str(SCENARIOS / "lost_dual_writes.yaml"), "--depth", "1", "--out", "{T}"], False),
    ("init", ["init", "{T}"], False),
]
# kinds never replaced or written through, --force or not
ALWAYS_REFUSED = {"fifo", "symlink to a file", "symlink to /dev/null", "dangling symlink", "/dev/null"}
ALWAYS_REFUSED |= {"inside a regular file", "in a missing directory with a newline in its name"}


@pytest.mark.slow
def test_hostile_output_paths_are_refused_and_left_as_they_were(tmp_path, monkeypatch):
    """Issue 18, items 4, 6 and 9: every output flag of every command, at a FIFO, a device, a
    symbolic link (to a file, to a device, to nothing), a directory, a regular file, a path
    through a file and a missing directory with a newline in its name; with and without --force.
    Whatever it is: exit 0, 1, 2 or 4, no traceback, no hang, and the thing at the path is
    unchanged unless replacing it was asked for (a regular file with --force, a directory where
    a directory is wanted)."""
    counts: Counter[str] = Counter()
    n = 0
    for label, template, wants_dir in OUTPUT_FLAGS:
        for kind in TARGETS:
            for force in (False, True):
                n += 1
                work = tmp_path / f"w{n}"
                work.mkdir()
                monkeypatch.chdir(work)
                target = _make(kind, work / "out")
                before_target, before = _snapshot(target), _snapshot(work)
                dev_null = os.stat("/dev/null")
                argv = [a.replace("{T}", str(target)) for a in template] + (["--force"] if force else [])
                counts["tried"] += 1
                try:
                    code, out, err = _call(argv)
                except Hang:
                    counts["hangs"] += 1
                    continue
                if code not in (0, 1, 2, 4) or "Traceback" in err or "internal error" in err:
                    counts["tracebacks"] += 1
                    print(f"\n{label} at {kind} (force={force}): exit {code}\n{err[-1500:]}")
                    continue
                # a missing directory may be made (mkdir -p: --plots, plot --out, fuzz --out) or refused
                created = kind == "in a missing directory with a newline in its name" and code != 2
                may_change = created or (kind == "directory" and wants_dir) or (kind == "regular file" and force)
                if not created and (
                    kind in ALWAYS_REFUSED
                    or (kind == "regular file" and (wants_dir or not force))
                    or (kind == "directory" and not wants_dir)
                ):
                    assert code == 2, (label, kind, force, out, err)
                    assert re.fullmatch(r"simroll: [^\n]+\n", err), (label, kind, force, err)
                    assert _snapshot(work) == before, (label, kind, force, _tree(work))
                if not may_change and _snapshot(target) != before_target:
                    counts["overwritten or lost"] += 1
                    print(f"\n{label} at {kind} (force={force}): {target} changed")
                if kind == "directory" and (work / "out" / "keep.txt").read_text() != "keep\n":
                    counts["overwritten or lost"] += 1
                if kind == "inside a regular file" and (work / "afile").read_text() != "afile\n":
                    counts["overwritten or lost"] += 1
                st_ = os.stat("/dev/null")
                assert stat.S_ISCHR(st_.st_mode) and st_.st_rdev == dev_null.st_rdev
                counts[f"exit {code}"] += 1
    print(f"\nhostile output paths: {dict(sorted(counts.items()))}")
    assert counts["tried"] == len(OUTPUT_FLAGS) * len(TARGETS) * 2
    assert (counts["tracebacks"], counts["hangs"], counts["overwritten or lost"]) == (0, 0, 0)


INPUT_KINDS = [
    "/dev/zero",
    "/dev/null",
    "fifo",
    "directory",
    "dangling symlink",
    "symlink to /dev/zero",
    "socket",
    "empty file",
    "sparse 10 GB file",
    "missing",
    "newline in the name",
]


def _input(kind: str, where: Path) -> Path:
    import socket

    if kind in ("/dev/zero", "/dev/null"):
        return Path(kind)
    if kind == "fifo":
        os.mkfifo(where)
    elif kind == "directory":
        where.mkdir()
    elif kind == "dangling symlink":
        where.symlink_to("nowhere.yaml")
    elif kind == "symlink to /dev/zero":
        where.symlink_to("/dev/zero")
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(where))
        s.close()
    elif kind == "empty file":
        where.write_bytes(b"")
    elif kind == "sparse 10 GB file":
        with open(where, "wb") as f:
            f.truncate(10 << 30)
    elif kind == "newline in the name":
        where = where.with_name("a\nb" + where.suffix)
        where.write_bytes(b"name: [unclosed\n")
    elif kind != "missing":
        raise AssertionError(kind)
    return where


INPUT_COMMANDS = [
    ("run", ["run", "{I}"], ".yaml"),
    ("plot a trace", ["plot", "{I}", "--out", "plots"], ".jsonl"),
    ("plot a scenario", ["plot", "{I}", "--out", "plots"], ".yaml"),
    ("fuzz", ["fuzz", "{I}", "--max-examples", "5"], ".yaml"),
    ("verify", ["verify", "{I}", "--depth", "1"], ".yaml"),
    ("expand", ["expand", "{I}"], ".yaml"),
    ("sweep", ["sweep", "{I}", "--param", "engines.count=2,3"], ".yaml"),
    ("matrix", ["matrix", "{I}"], ""),
]


@pytest.mark.slow
def test_hostile_input_paths_exit_2_without_reading_them(tmp_path, monkeypatch):
    """Issue 18, item 1: `/dev/zero` grew until memory ran out and a FIFO hung. Every command that
    reads a file, given a device, a FIFO with no writer, a socket, a directory, links to nothing
    or to a device, an empty or a sparse 10 GB file, a missing path or a newline in the name:
    exit 2 at once with one line, no hang, nothing written."""
    counts: Counter[str] = Counter()
    n = 0
    for label, template, suffix in INPUT_COMMANDS:
        for kind in INPUT_KINDS:
            if label == "matrix" and kind in ("directory", "empty file"):
                continue  # a directory is what matrix reads; an empty one is tried below
            n += 1
            work = tmp_path / f"w{n}"
            work.mkdir()
            monkeypatch.chdir(work)
            path = _input(kind, work / f"in{suffix}")
            before = _tree(work)
            counts["tried"] += 1
            try:
                code, out, err = _call([a.replace("{I}", str(path)) for a in template])
            except Hang:
                counts["hangs"] += 1
                continue
            if code != 2 or "Traceback" in err or "internal error" in err:
                counts["tracebacks" if code == 70 or "Traceback" in err else "not exit 2"] += 1
                print(f"\n{label} of {kind}: exit {code}\n{err[-1500:]}")
                continue
            assert re.fullmatch(r"simroll: [^\n]+\n", err), (label, kind, err)
            assert out == "" and _tree(work) == before, (label, kind, out, _tree(work))
    # a directory for matrix with hostile members: each is refused or reported, nothing hangs
    work = tmp_path / "m"
    work.mkdir()
    monkeypatch.chdir(work)
    os.mkfifo(work / "f.yaml")
    (work / "z.yaml").symlink_to("/dev/zero")
    (work / "e.yaml").write_bytes(b"")
    counts["tried"] += 1
    try:
        code, out, err = _call(["matrix", str(work)])
        assert code in (0, 1, 2, 4) and "Traceback" not in err and "internal error" not in err, err
    except Hang:
        counts["hangs"] += 1
    print(f"\nhostile input paths: {dict(sorted(counts.items()))}")
    assert (counts["tracebacks"], counts["hangs"], counts["not exit 2"]) == (0, 0, 0)
