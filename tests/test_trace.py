"""The trace's JSON lines: the fast formatters of hot record kinds write what the json module writes."""

from __future__ import annotations

import hashlib
import json
import math

import pytest

import simroll
from simroll.sim.trace import Trace, encode_record


def reference(rec: dict) -> str:
    """The trace format as documented: compact JSON, keys in insertion order, no NaN."""
    return json.dumps(rec, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def test_every_record_of_every_bundled_scenario_encodes_as_json_does(bundled):
    seen = set()
    for path in bundled:
        result = simroll.run_scenario(simroll.load_scenario(path), seed=7)
        text = "".join(encode_record(r) + "\n" for r in result.records)
        assert text == "".join(reference(r) + "\n" for r in result.records)
        assert hashlib.sha256(text.encode()).hexdigest() == result.trace_sha256
        seen.update(r["kind"] for r in result.records)
    assert {"send", "recv", "done", "read", "write"} <= seen


HOT = [
    {"i": 0, "t": 0, "kind": "send", "engine": "client", "msg": 0, "method": "m", "version": "1.0",
     "queue": "engine", "call": True, "row": 3},
    {"i": 5, "t": 0.1 + 0.2, "kind": "recv", "engine": "e-1", "msg": 2, "wait": 0, "cause": [1]},
    {"i": 6, "t": 1e-7, "kind": "recv", "engine": "e-1", "msg": 2, "wait": 2.5e16, "cause": [1, 4]},
    {"i": 7, "t": -0.0, "kind": "done", "engine": "e-1", "msg": 2, "ok": False},
    {"i": 8, "t": 3.0, "kind": "read", "engine": "e-1", "msg": 2, "field": "f", "row": 0, "loc": "a.b",
     "value": None, "cause": []},
    {"i": 9, "t": 3.0, "kind": "write", "engine": "é\"\\\n\u2028", "msg": 2, "field": "f", "row": 0,
     "value": "v1", "locs": ["a.b", "c.d"], "trig": []},
]


@pytest.mark.parametrize("rec", HOT, ids=lambda r: r["kind"])
def test_hot_kinds_match_json_including_ints_for_times_and_escapes(rec):
    assert encode_record(rec) == reference(rec)


@pytest.mark.parametrize("change", [
    {"msg": True},  # a bool where an int belongs: json writes true
    {"row": 2.0},  # a float where an int belongs
    {"extra": [1, {"x": None}]},  # an unexpected key
    {"engine": None},  # not a string
])
def test_records_off_the_expected_shape_still_encode_as_json_does(change):
    rec = dict(HOT[0], **change)
    assert encode_record(rec) == reference(rec)


def test_keys_in_another_order_keep_their_order():
    rec = {"i": 1, "t": 2.0, "kind": "done", "msg": 3, "engine": "e", "ok": True}
    assert encode_record(rec) == reference(rec) == '{"i":1,"t":2.0,"kind":"done","msg":3,"engine":"e","ok":true}'


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_numbers_are_refused_as_json_refuses_them(bad):
    with pytest.raises(ValueError):
        encode_record(dict(HOT[1], wait=bad))


def test_streamed_text_is_what_is_hashed(tmp_path):
    path = tmp_path / "t.jsonl"
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        trace = Trace(keep=False, stream=f)
        for rec in HOT:
            fields = {k: v for k, v in rec.items() if k not in ("i", "t", "kind")}
            trace.emit(rec["t"], rec["kind"], **fields)
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == trace.sha256
    assert [json.loads(line)["i"] for line in data.decode().split("\n")[:-1]] == list(range(len(HOT)))
