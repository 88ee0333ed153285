"""The trace's JSON lines: the fast methods of the hot record kinds write what the json module writes."""

from __future__ import annotations

import hashlib
import io
import json
import math

import pytest

import simroll
from simroll.sim.trace import Trace


def reference(rec: dict) -> str:
    """The trace format as documented: compact JSON, keys in insertion order, no NaN."""
    return json.dumps(rec, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def lines_of(build) -> tuple[list[str], list[dict], str]:
    """Run ``build(trace)`` on a kept, streamed trace; returns its lines, records and sha256."""
    out = io.StringIO()
    trace = Trace(keep=True, stream=out)
    build(trace)
    return out.getvalue().split("\n")[:-1], trace.records, trace.sha256


def test_every_line_of_every_bundled_scenario_is_the_json_of_its_record(bundled, tmp_path):
    seen = set()
    for n, path in enumerate(bundled):
        trace_path = tmp_path / f"{n}.jsonl"
        result = simroll.run_scenario(simroll.load_scenario(path), seed=7, trace_path=trace_path)
        data = trace_path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == result.trace_sha256
        lines = data.decode().split("\n")[:-1]
        assert lines == [reference(r) for r in result.records]
        seen.update(r["kind"] for r in result.records)
    assert {"send", "recv", "done", "read", "write"} <= seen


HOT = [
    ("send", dict(t=0, engine="client", msg=0, method="m", version="1.0", queue="engine", call=True, row=3)),
    ("recv", dict(t=0.1 + 0.2, engine="e-1", msg=2, wait=0, cause=[1])),
    ("recv", dict(t=1e-7, engine="e-1", msg=2, wait=2.5e16, cause=[1, 4])),
    ("done", dict(t=-0.0, engine="e-1", msg=2, ok=False)),
    ("read", dict(t=3.0, engine="e-1", msg=2, field="f", row=0, loc="a.b", value=None, cause=[])),
    ("read", dict(t=3.0, engine="e-1", msg=2, field="f", row=0, loc="a.b", value="v1", cause=[7])),
    ("write", dict(t=3.0, engine='é"\\\n\u2028', msg=2, field="f", row=0, value="v1", locs=["a.b", "c.d"], trig=[])),
]


def _emit_both(kind: str, fields: dict):
    fields = dict(fields)
    t = fields.pop("t")
    fast = lines_of(lambda tr: getattr(tr, kind)(t, **fields))
    generic = lines_of(lambda tr: tr.emit(t, kind, **fields))
    return fast, generic


@pytest.mark.parametrize("kind,fields", HOT, ids=[k for k, _ in HOT])
def test_hot_kinds_write_the_record_emit_writes_and_json_would(kind, fields):
    (fast_lines, fast_recs, fast_sha), (lines, recs, sha) = _emit_both(kind, fields)
    assert fast_recs == recs == [dict(i=0, t=fields["t"], kind=kind, **{k: v for k, v in fields.items() if k != "t"})]
    assert list(fast_recs[0]) == list(recs[0])  # same key order
    assert fast_lines == lines == [reference(recs[0])]
    assert fast_sha == sha


def test_integer_times_stay_integers():
    (lines, _, _), _ = _emit_both("done", dict(t=0, engine="e", msg=1, ok=True))
    assert lines == ['{"i":0,"t":0,"kind":"done","engine":"e","msg":1,"ok":true}']


@pytest.mark.parametrize(
    "kind,change",
    [
        ("send", {"msg": True}),  # a bool where an int belongs: json writes true
        ("send", {"row": 2.0}),  # a float where an int belongs
        ("send", {"engine": None}),  # not a string
        ("recv", {"cause": (1, 2)}),  # a tuple: json writes a list
        ("write", {"locs": ["a.b", 3]}),
    ],
)
def test_values_of_other_types_still_encode_as_json_does(kind, change):
    fields = dict(next(f for k, f in HOT if k == kind), **change)
    (fast_lines, fast_recs, _), (lines, recs, _) = _emit_both(kind, fields)
    assert fast_lines == lines == [reference(recs[0])]


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_numbers_are_refused_as_json_refuses_them(bad):
    with pytest.raises(ValueError):
        lines_of(lambda tr: tr.recv(bad, engine="e", msg=1, wait=0.0, cause=[0]))
    with pytest.raises(ValueError):
        lines_of(lambda tr: tr.recv(1.0, engine="e", msg=1, wait=bad, cause=[0]))


def test_records_are_numbered_in_order_and_dispatched_to_subscribers():
    got = []

    def build(tr: Trace) -> None:
        tr.subscribe(("recv", "step"), got.append)
        tr.emit(0.0, "begin")
        tr.recv(1.0, engine="e", msg=0, wait=0.5, cause=[0])
        tr.emit(2.0, "step", index=0)

    lines, recs, _ = lines_of(build)
    assert [json.loads(line)["i"] for line in lines] == [0, 1, 2]
    assert [r["kind"] for r in got] == ["recv", "step"] and got[0] is recs[1]


def test_reading_a_trace_refuses_special_files_and_keeps_line_separators_inside_values(tmp_path):
    """Issue 18: a FIFO named like a trace would hang `simroll plot`; and a value may hold U+2028,
    which must not split a record (the encoder writes it raw, ensure_ascii=False)."""
    import os

    import pytest

    from simroll.errors import UsageError
    from simroll.sim.trace import read_trace

    fifo = tmp_path / "t.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="a FIFO, not a regular file, expected a trace file"):
        read_trace(fifo)
    path = tmp_path / "u.jsonl"
    path.write_text('{"i":0,"t":0.0,"kind":"begin","scenario":"a\u2028b"}\n', encoding="utf-8")
    assert read_trace(path) == [{"i": 0, "t": 0.0, "kind": "begin", "scenario": "a\u2028b"}]


def test_hashing_in_batches_gives_the_sha256_of_the_whole_text():
    """Lines are hashed in batches of HASH_BATCH: the digest is that of the text, at any length."""
    from simroll.sim.trace import HASH_BATCH

    for n in (0, 1, HASH_BATCH - 1, HASH_BATCH, HASH_BATCH + 1, 3 * HASH_BATCH + 7):
        lines, _, sha = lines_of(lambda tr, n=n: [tr.done(float(k), engine="e", msg=k, ok=True) for k in range(n)])
        assert sha == hashlib.sha256("".join(line + "\n" for line in lines).encode()).hexdigest()


def test_a_lean_trace_numbers_every_record_and_makes_only_the_wanted_ones():
    """Neither hashed, kept nor streamed (a search's inner runs): records of kinds nobody subscribes
    to are only numbered, so the ones made keep the numbers a full trace gives them."""
    got: list[dict] = []
    tr = Trace(keep=False, hashed=False)
    tr.subscribe(("recv", "step"), got.append)
    assert tr.send(0.0, engine="c", msg=0, method="m", version="1.0", queue="q", call=False, row=0) == 0
    assert tr.recv(1.0, engine="e", msg=0, wait=0.5, cause=[0]) == 1
    assert tr.done(1.5, engine="e", msg=0, ok=True) == 2
    assert tr.emit(2.0, "begin") == 3
    assert tr.emit(2.0, "step", index=0) == 4
    assert tr.count == 5
    assert got == [
        {"i": 1, "t": 1.0, "kind": "recv", "engine": "e", "msg": 0, "wait": 0.5, "cause": [0]},
        {"i": 4, "t": 2.0, "kind": "step", "index": 0},
    ]
    with pytest.raises(ValueError, match="not hashed"):
        _ = tr.sha256


def test_search_runs_give_the_verdicts_scores_and_counts_of_full_runs(bundled):
    """run_scenario(report=False) (what a search runs per example) skips the hash, the encoding and
    the records nobody reads; everything it returns but the hash is the full run's."""
    for path in bundled:
        s = simroll.load_scenario(path)
        full = simroll.run_scenario(s, keep_trace=False)
        lean = simroll.run_scenario(s, keep_trace=False, report=False)
        assert lean.trace_sha256 == "" and full.trace_sha256
        assert [(i.name, i.held, i.count, i.checked, i.violations) for i in lean.invariants] == [
            (i.name, i.held, i.count, i.checked, i.violations) for i in full.invariants
        ], path.name
        assert (lean.scores, lean.events, lean.end_reason, lean.choice_counts) == (
            full.scores,
            full.events,
            full.end_reason,
            full.choice_counts,
        ), path.name


def test_wanted_says_which_records_a_lean_trace_builds():
    """A writer that numbers a record itself (the worker's recv and done, the broker's send) asks
    ``wanted``: a lean trace builds only what a subscriber reads; any other trace builds everything."""
    lean = Trace(keep=False, hashed=False)
    lean.subscribe(("recv",), lambda rec: None)
    assert lean.wanted("recv") and not lean.wanted("send") and not lean.wanted("done")
    for full in (
        Trace(keep=False),
        Trace(keep=True, hashed=False),
        Trace(keep=False, hashed=False, stream=io.StringIO()),
    ):
        assert full.wanted("send") and full.wanted("done")


def test_positional_subscribers_get_the_fields_and_no_record_is_built():
    """A lean trace whose every subscriber of ``read`` (``write``) reads its fields calls them with the
    fields in the record's order; one subscriber that wants the record makes every one get it."""
    calls: list[tuple] = []
    records: list[dict] = []

    def fields(*args: object) -> None:
        calls.append(args)

    tr = Trace(keep=False, hashed=False)
    tr.subscribe(("read", "write", "begin"), records.append, {"read": fields, "write": fields})
    tr.emit(0.0, "begin")
    tr.read(1.0, engine="e", msg=3, field="f", row=2, loc="t.c", value="v0", cause=[0])
    tr.write(2.0, engine="e", msg=3, field="f", row=2, value="v1", locs=["t.c"], trig=["u.d"])
    assert tr.count == 3
    assert calls == [
        (1, 1.0, "e", 3, "f", 2, "t.c", "v0", [0]),
        (2, 2.0, "e", 3, "f", 2, "v1", ["t.c"], ["u.d"]),
    ]
    assert records == [{"i": 0, "t": 0.0, "kind": "begin"}]  # begin has no positional reader

    calls.clear()
    records.clear()
    mixed = Trace(keep=False, hashed=False)
    mixed.subscribe(("read",), records.append, {"read": fields})
    mixed.subscribe(("read",), records.append)  # wants the record: both get it
    mixed.read(1.0, engine="e", msg=3, field="f", row=2, loc="t.c", value=None, cause=[])
    assert calls == [] and len(records) == 2 and records[0]["value"] is None

    kept = Trace(keep=True, hashed=False)  # a kept trace builds every record: its subscribers get them
    kept.subscribe(("write",), records.append, {"write": fields})
    kept.write(0.5, engine="e", msg=1, field="f", row=0, value="v2", locs=["t.c"], trig=[])
    assert calls == [] and records[-1] is kept.records[0]


def test_no_lost_write_reads_fields_as_it_reads_records():
    """NoLostWrite's positional readers (a search's runs) and observe (full runs) judge alike."""
    from simroll.check.invariants import NoLostWrite

    recs = [
        {"i": 0, "t": 0.0, "kind": "init", "field": "f", "locs": ["a.x"], "rows": 2},
        {"i": 1, "t": 1.0, "kind": "write", "engine": "e", "msg": 0, "field": "f", "row": 1, "value": "v0",
         "locs": ["a.x", "b.y"], "trig": []},
        {"i": 2, "t": 2.0, "kind": "bf_write", "engine": "backfill", "row": 1, "loc": "b.y", "value": "init1",
         "trig": []},
        {"i": 3, "t": 3.0, "kind": "read", "engine": "e", "msg": 1, "field": "f", "row": 1, "loc": "b.y",
         "value": "init1", "cause": [2, 2]},
        {"i": 4, "t": 4.0, "kind": "read", "engine": "e", "msg": 2, "field": "f", "row": 0, "loc": "a.x",
         "value": "init0", "cause": [3, 0]},
    ]  # fmt: skip
    by_record, by_fields = NoLostWrite(), NoLostWrite()
    fast = by_fields.positional()
    for rec in recs:
        by_record.observe(rec)
        if rec["kind"] in fast:
            fast[rec["kind"]](*[v for k, v in rec.items() if k != "kind"])
        else:
            by_fields.observe(rec)
    assert by_record.checked == by_fields.checked == 2  # both reads compared
    assert [v.event for v in by_record.violations] == [v.event for v in by_fields.violations] == [3]  # the stale copy
    assert by_record.violations[0].message == by_fields.violations[0].message
    assert by_record.score() == by_fields.score() > 1e6
    assert by_record.stale == by_fields.stale == {("b.y", 1)}


@pytest.mark.parametrize("name", ["fuzz_backfill_race", "lost_dual_writes", "single_upgraded_starvation"])
def test_the_inlined_event_loop_and_row_draws_give_the_traces_of_simpys_step_and_randrange(name, monkeypatch):
    """Simulation._loop runs SimPy's step inlined (kernel.INLINE_STEP) and the engines draw a cast's row
    inline (engine.INLINE_DRAW): with either switched off (SimPy's own step, random.randrange) every
    record is the same."""
    from pathlib import Path

    from simroll.sim import engine, kernel

    path = Path(__file__).resolve().parent.parent / "scenarios" / f"{name}.yaml"
    s = simroll.load_scenario(path)
    assert kernel.INLINE_STEP and engine.INLINE_DRAW  # on the SimPy and Python the suite runs on
    fast = simroll.run_scenario(s, keep_trace=False)
    monkeypatch.setattr(kernel, "INLINE_STEP", False)
    monkeypatch.setattr(engine, "INLINE_DRAW", False)
    slow = simroll.run_scenario(s, keep_trace=False)
    assert (fast.trace_sha256, fast.events, fast.end_reason) == (slow.trace_sha256, slow.events, slow.end_reason)


@pytest.mark.parametrize("inline", [True, False])
def test_an_event_that_fails_unhandled_stops_the_run_as_simpy_does(inline, monkeypatch):
    from pathlib import Path

    from simroll.sim import kernel
    from simroll.sim.chooser import Chooser

    monkeypatch.setattr(kernel, "INLINE_STEP", inline)
    s = simroll.load_scenario(Path(__file__).resolve().parent.parent / "scenarios" / "fuzz_backfill_race.yaml")
    sim = kernel.Simulation(s, Chooser(s.seed), Trace(keep=False))
    sim.env.timeout(1.5).callbacks.append(lambda ev: sim.env.event().fail(KeyError("boom")))
    with pytest.raises(KeyError, match="boom") as info:
        sim.run()
    assert isinstance(info.value.__cause__, KeyError)  # SimPy raises a copy, caused by the original
    assert sim.env.now == 1.5


def test_releases_and_engine_groups_are_built_once_per_spec():
    """Compiled releases and an engine group's expansion are cached per spec object (a search's
    copies of one scenario share them); another spec gets its own, and callers get fresh lists."""
    from pathlib import Path

    from simroll.sim.engine import _compiled

    s = simroll.load_scenario(Path(__file__).resolve().parent.parent / "scenarios" / "fuzz_backfill_race.yaml")
    spec = s.releases["plus1"]
    assert _compiled("plus1", spec) is _compiled("plus1", s.model_copy().releases["plus1"])
    slower = spec.model_copy(update={"service_time": 0.5})
    assert _compiled("plus1", slower).service_time == 0.5 and _compiled("plus1", spec).service_time == 0.1
    first = s.engine_list()
    first.append(first[0])  # the caller's list: the next call does not see it
    assert [e.name for e in s.engine_list()] == ["engine-1", "engine-2", "engine-3"]
    more = s.model_copy(update={"engines": s.engines.model_copy(update={"count": 4})})
    assert [e.name for e in more.engine_list()] == ["engine-1", "engine-2", "engine-3", "engine-4"]
    assert s.engine_list()[0] is s.engine_list()[0]
    assert list(s.service_map()) == [s.bus.topic] and s.service_map() is not s.service_map()
