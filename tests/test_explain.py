"""Explanations: the one chain behind a violation, and the one-line why, on hand-built traces.

Each trace below is written by hand; the violation comes from the real checker reading it, and
the expected chain and why are worked out from the records, not copied from output.
"""

import json
import re

import pytest
import yaml
from conftest import SCENARIOS, scenario
from test_plots import LOST

import simroll
from simroll.check.explain import MAX_HISTORY, explain
from simroll.check.invariants import (
    NoLostUpdate,
    NoLostWrite,
    NoRefusedSend,
    NoStrandedMessage,
    SchemaCompatible,
    VersionSkew,
    Violation,
)
from simroll.cli import main
from simroll.view.report import format_text


def _records(*recs):
    """Number the records (``i``) in order."""
    return [dict(r, i=i) for i, r in enumerate(recs)]


def _violations(checker, records):
    for r in records:
        if r["kind"] in checker.kinds:
            checker.observe(r)
    return checker.violations


def _roles(expl):
    return [(link.rec["i"], link.role) for link in expl.chain]


OLD, NEW = "resource.properties", "resource_new.data"


def _backfill_race(gap_write: bool = True):
    """Row 0 moves from OLD to NEW. The backfill reads OLD (v0) at t=1; engine-1 dual-writes v1 at t=2;
    the backfill copies v0 into NEW at t=3 -- over v1. Without ``gap_write`` engine-1 writes before the
    backfill reads, so the copy carries v1 and nothing is lost."""
    write = {"t": 2.0 if gap_write else 0.5, "kind": "write", "engine": "engine-1", "msg": 0, "field": "props"}
    write |= {"row": 0, "value": "v1", "locs": [OLD, NEW], "trig": []}
    bf_read = {"t": 1.0, "kind": "bf_read", "engine": "backfill", "row": 0, "loc": OLD}
    bf_read |= {"value": "v0" if gap_write else "v1", "cause": []}
    recs = [
        {"t": 0.0, "kind": "init", "field": "props", "locs": [OLD], "rows": 2},
        {"t": 0.0, "kind": "start", "engine": "engine-1", "release": "plus1", "cause": []},
        *([write, bf_read] if not gap_write else [bf_read, write]),
        {"t": 1.5, "kind": "write", "engine": "engine-1", "msg": 9, "field": "props", "row": 1, "value": "w"}
        | {"locs": [OLD, NEW], "trig": []},  # another row: not in the chain
        {"t": 3.0, "kind": "bf_write", "engine": "backfill", "row": 0, "loc": NEW, "trig": []}
        | {"value": bf_read["value"], "cause": [3 if gap_write else 3]},
        {"t": 4.0, "kind": "final", "field": "props", "loc": NEW, "exists": True, "values": [bf_read["value"], "w"]},
    ]
    recs = _records(*sorted(recs, key=lambda r: r["t"]))
    for r in recs:  # the copy's cause is the backfill's read, wherever it landed
        if r["kind"] == "bf_write":
            r["cause"] = [next(x["i"] for x in recs if x["kind"] == "bf_read")]
    return recs


def test_backfill_overwrite_names_the_copy_the_lost_write_and_when():
    recs = _backfill_race()
    # 0 init, 1 start, 2 bf_read t=1, 3 write row 1 t=1.5, 4 write row 0 t=2, 5 bf_write t=3, 6 final
    assert [r["kind"] for r in recs] == ["init", "start", "bf_read", "write", "write", "bf_write", "final"]
    (v,) = _violations(NoLostWrite(), recs)
    e = explain(recs, v)
    assert _roles(e) == [(2, "read it copies"), (4, "lost write"), (5, "overwrites it"), (6, "violation")]
    assert e.why == (
        "at the end resource_new.data holds 'v0': the backfill read row 0 ('v0') at t=1.000 and copied it to "
        "resource_new.data at t=3.000, over the write of 'v1' by engine-1 at t=2.000; that write is lost"
    )
    assert e.chain[-1].text == "at the end resource_new.data holds 'v0' for props[0]"  # its row, not every row
    js = e.to_json()
    assert js["why"] == e.why
    assert js["chain"][1] == {
        "i": 4,
        "t": 2.0,
        "kind": "write",
        "engine": "engine-1",
        "role": "lost write",
        "text": "engine-1 writes props[0] = 'v1' to resource.properties, resource_new.data",
    }


def test_backfill_before_the_write_loses_nothing():
    # negative: the engine wrote before the backfill read, so the copy carries the latest value
    assert _violations(NoLostWrite(), _backfill_race(gap_write=False)) == []


def _stale_read(reads_between: int):
    """engine-1 (old) writes v1 to OLD only at t=1; engine-2 (new) reads NEW at t=50 and gets nothing.
    In between, ``reads_between`` reads of OLD (history) by engine-1."""
    recs = [
        {"t": 0.0, "kind": "init", "field": "props", "locs": [OLD], "rows": 1},
        {"t": 0.0, "kind": "start", "engine": "engine-1", "release": "old", "cause": []},
        {"t": 0.0, "kind": "start", "engine": "engine-2", "release": "new", "cause": []},
        {"t": 1.0, "kind": "write", "engine": "engine-1", "msg": 0, "field": "props", "row": 0, "value": "v1"}
        | {"locs": [OLD], "trig": []},
    ]
    for k in range(reads_between):
        recs.append(
            {"t": 2.0 + k, "kind": "read", "engine": "engine-1", "msg": 1 + k, "field": "props", "row": 0}
            | {"loc": OLD, "value": "v1", "cause": [3]}
        )
    n = len(recs)
    recs.append({"t": 50.0, "kind": "recv", "engine": "engine-2", "msg": 99, "wait": 0.0, "cause": []})
    recs.append(
        {"t": 50.0, "kind": "read", "engine": "engine-2", "msg": 99, "field": "props", "row": 0, "loc": NEW}
        | {"value": None, "cause": [n]}
    )
    return _records(*recs)


def test_stale_read_names_the_reader_release_and_the_write_that_never_arrived():
    recs = _stale_read(1)
    (v,) = _violations(NoLostWrite(), recs)
    e = explain(recs, v)
    # 2 start engine-2 (new), 3 the write, 4 a good read of OLD (history), 5 recv, 6 the stale read
    assert _roles(e) == [(2, "reader's release"), (3, "lost write"), (4, ""), (5, "cause"), (6, "violation")]
    assert e.why == (
        "engine-2 (new) reads resource_new.data at t=50.000 and gets nothing: the write of 'v1' by engine-1 at "
        "t=1.000 went to resource.properties only and nothing copied it to resource_new.data; it is lost"
    )


def test_a_later_backfill_is_named_in_the_why():
    recs = _stale_read(0)
    recs += _records(
        *[{}] * len(recs),
        {"t": 60.0, "kind": "bf_read", "engine": "backfill", "row": 0, "loc": OLD, "value": "v1", "cause": []},
        {"t": 60.0, "kind": "bf_write", "engine": "backfill", "row": 0, "loc": NEW, "value": "v1", "trig": []},
    )[len(recs) :]
    v = _violations(NoLostWrite(), recs)[0]
    assert explain(recs, v).why.startswith(
        "engine-2 (new) reads resource_new.data at t=50.000, before the backfill reached row 0 (at t=60.000), "
        "and gets nothing: the write of 'v1' by engine-1 at t=1.000 went to resource.properties only; it is lost"
    )


@pytest.mark.parametrize("between", [MAX_HISTORY, MAX_HISTORY + 1, 3 * MAX_HISTORY])
def test_history_keeps_the_key_records_and_the_latest_history(between):
    recs = _stale_read(between)
    v = _violations(NoLostWrite(), recs)[0]
    e = explain(recs, v)
    history = [link.rec["i"] for link in e.chain if not link.role]
    reads = [r["i"] for r in recs if r["kind"] == "read" and r["engine"] == "engine-1"]
    assert history == reads[-MAX_HISTORY:]  # boundary: exactly MAX_HISTORY kept, the latest ones
    assert {link.role for link in e.chain} >= {"lost write", "reader's release", "violation"}


def test_lost_update_names_the_read_and_the_write_in_between():
    cell = {"field": "props", "row": 0}
    recs = _records(
        {"t": 1.0, "kind": "read", "engine": "engine-1", "msg": 1, "loc": OLD, "value": "v0", "cause": []} | cell,
        {"t": 1.5, "kind": "write", "engine": "engine-2", "msg": 2, "value": "v2", "locs": [OLD], "trig": []} | cell,
        {"t": 2.0, "kind": "write", "engine": "engine-1", "msg": 1, "value": "v1", "locs": [OLD], "trig": []} | cell,
    )
    (v,) = _violations(NoLostUpdate(), recs)
    e = explain(recs, v)
    assert _roles(e) == [(0, "read it wrote from"), (1, "lost write"), (2, "violation")]
    assert e.why == (
        "engine-1 wrote props[0] = 'v1' at t=2.000 from what it read at t=1.000 ('v0'); the write of 'v2' by "
        "engine-2 at t=1.500 in between is lost"
    )
    # negative: the other write before the read is no lost update
    recs[0]["t"], recs[1]["t"] = 1.5, 1.0
    assert _violations(NoLostUpdate(), _records(recs[1], recs[0], recs[2])) == []


def test_stranded_message_names_the_send_and_the_engine_that_left():
    recs = _records(
        {"t": 0.0, "kind": "start", "engine": "engine-3", "release": "legacy", "cause": []},
        {"t": 1.0, "kind": "send", "engine": "client", "msg": 7, "method": "op", "version": "1.3", "queue": "engine"}
        | {"call": False, "row": 0},
        {"t": 1.0, "kind": "send", "engine": "client", "msg": 8, "method": "op", "version": "1.3", "queue": "engine"}
        | {"call": False, "row": 0},  # another message: not in the chain
        {"t": 1.0, "kind": "recv", "engine": "engine-3", "msg": 7, "wait": 0.0, "cause": [1]},
        {"t": 2.0, "kind": "stop", "engine": "engine-3", "inflight": [], "cause": []},
        {"t": 2.0, "kind": "requeue", "engine": "engine-3", "msg": 7, "cause": [4, 1]},
        {"t": 9.0, "kind": "left", "msg": 7, "version": "1.3", "queue": "engine", "cause": [1]},
    )
    v = _violations(NoStrandedMessage(), recs)[0]
    e = explain(recs, v)
    assert _roles(e) == [(1, "cause"), (3, ""), (4, "an engine that held it stops"), (5, ""), (6, "violation")]
    assert e.why == (
        "m7 (op at version 1.3, sent by client at t=1.000) was never taken: still in engine at the end, "
        "after engine-3 stopped at t=2.000"
    )


def test_other_invariants_fall_back_to_the_record_and_its_causes():
    recs = _records(
        {"t": 0.0, "kind": "start", "engine": "engine-1", "release": "r1", "cause": []},
        {"t": 1.0, "kind": "start", "engine": "engine-2", "release": "r2", "cause": []},
        {"t": 2.0, "kind": "start", "engine": "engine-3", "release": "r3", "cause": []},
    )
    (v,) = _violations(VersionSkew(2), recs)
    e = explain(recs, v)
    assert _roles(e) == [(0, "cause"), (1, "cause"), (2, "violation")]
    assert e.why == (
        "engine-3 starts on r3 at t=2.000 while r1, r2 still run: 3 releases running at once (r1, r2, r3), more than 2"
    )
    # a violation past the end of a trace cut short: its message, no chain
    late = Violation("x", 1.0, "what the checker said", 99)
    assert explain(recs, late).why == "what the checker said" and explain(recs, late).chain == ()


def _schema(contract_first: bool):
    contract = {"t": 10.0, "kind": "step", "index": 0, "action": "contract", "detail": {"contract": [OLD]}}
    recs = [
        {"t": 0.0, "kind": "start", "engine": "engine-1", "release": "plus1", "cause": []},
        {"t": 13.0, "kind": "recv", "engine": "engine-1", "msg": 5, "wait": 0.0, "cause": []},
        {"t": 13.0, "kind": "schema_error", "engine": "engine-1", "msg": 5, "op": "read", "locs": [OLD], "cause": [2]},
    ]
    if contract_first:
        recs.insert(1, contract)
    else:
        recs[2]["cause"] = [1]
    return _records(*recs)


def test_schema_error_names_the_contract_that_dropped_the_column():
    recs = _schema(contract_first=True)
    (v,) = _violations(SchemaCompatible(), recs)
    e = explain(recs, v)
    assert _roles(e) == [(0, "reader's release"), (1, "drops it"), (2, "cause"), (3, "violation")]
    assert e.why == (
        "engine-1 (plus1) tries to read resource.properties at t=13.000, after operator step 0 contracted it at t=10.000"
    )
    # without a contract: the column was never created
    recs = _schema(contract_first=False)
    (v,) = _violations(SchemaCompatible(), recs)
    assert explain(recs, v).why == (
        "engine-1 (plus1) tries to read resource.properties at t=13.000, which no expand step had created"
    )


def test_refused_send_names_the_sender_release_and_cap():
    recs = _records(
        {"t": 0.0, "kind": "start", "engine": "engine-1", "release": "plus1", "cap": "1.0", "cause": []},
        {
            "t": 3.0,
            "kind": "send_error",
            "engine": "engine-1",
            "method": "check",
            "error": "RPCVersionCapError (cap 1.0)",
        },
    )
    (v,) = _violations(NoRefusedSend(), recs)
    e = explain(recs, v)
    assert _roles(e) == [(0, "cause"), (1, "violation")]
    assert e.why == "engine-1 (plus1, cap 1.0) cannot send check at t=3.000: RPCVersionCapError (cap 1.0)"


@pytest.fixture(scope="module")
def lost():
    return simroll.run_scenario(scenario(LOST))


def test_text_json_and_chains_show_the_same_chain(lost):
    v = lost.violations[0]
    js = lost.to_json()["violations"][0]
    assert list(js)[0] == "why" and {"invariant", "time", "message", "event", "causes", "chain"} <= set(js)
    assert [c["i"] for c in js["chain"]] == [3, 9, 11, 12] == [r["i"] for r in lost.chains(v)[0]]
    text = format_text(lost).splitlines()
    at = text.index("no-lost-write violated at t=2.000 [engine-2] (props[0])")
    assert text[at + 1] == f"  why: {js['why']}"  # the why first
    assert [re.search(r"#\d+", line)[0] for line in text[at + 4 : at + 8]] == ["#3", "#9", "#11", "#12"]


def test_cli_replay_of_the_backfill_race_explains_the_lost_write(tmp_path, capsys):
    # the counterexample `simroll fuzz` writes for fuzz_backfill_race: the backfill waits between its
    # read and its write of row 2 (pinned choice), and an engine's dual write lands in that gap
    data = yaml.safe_load((SCENARIOS / "fuzz_backfill_race.yaml").read_text())
    del data["search"]
    data["plan"][0]["after"] = 57.25
    data["choices"] = [{"kind": "backfill_gap", "at": 2, "pick": 1}]
    data["expect"] = "violates no-lost-write"
    path = tmp_path / "race.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["run", str(path), "--json"]) == 1
    (v,) = json.loads(capsys.readouterr().out)["violations"]
    roles = {c["role"]: c for c in v["chain"] if "role" in c}
    assert roles["lost write"]["kind"] == "write" and roles["lost write"]["engine"].startswith("engine-")
    assert roles["overwrites it"]["kind"] == "bf_write" and roles["read it copies"]["kind"] == "bf_read"
    assert roles["read it copies"]["t"] < roles["lost write"]["t"] < roles["overwrites it"]["t"]
    assert v["why"].startswith("at the end resource_properties_data.data holds ")
    assert f"over the write of {roles['lost write']['text'].split(' = ')[1].split(' ')[0]}" in v["why"]
    assert main(["run", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"  why: {v['why']}" in out and "related records" not in out
    assert f"#{roles['lost write']['i']}" in out  # the lost engine write is in the text
