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

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Guarantees and limits") :]
    section = section[: section.index("\n## ", 1)]
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
