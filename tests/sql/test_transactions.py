"""A handler's reads and writes as one transaction (``transaction: true``), on the location model and
on SQLite; and the statements each engine ran, shown around a violation (issue 14, items 4 and 6).

The servers' isolation levels are in tests/sql/test_servers.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

import simroll
from simroll.check.explain import Explanation, Link
from simroll.check.invariants import NoLostUpdate, OperationsComplete
from simroll.errors import ScenarioError
from simroll.run import run_scenario
from simroll.view.html import sql_around, summary_html

SQL_SCENARIOS = Path(__file__).resolve().parent.parent.parent / "scenarios" / "sql"
BACKENDS = ["location", "sqlite"]


def counter(backend: str, transaction: bool = True, **database: Any) -> simroll.Scenario:
    d = yaml.safe_load((SQL_SCENARIOS / "counter_transaction.yaml").read_text(encoding="utf-8"))
    d["database"].update(backend=backend, **database)
    d["workload"]["handlers"]["reserve"]["transaction"] = transaction
    return simroll.load_scenario_text(yaml.safe_dump(d, sort_keys=False), f"counter on {backend}")


def handlings(recs: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """(engine, message) -> its read record, and its write or refusal."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for r in recs:
        if r["kind"] in ("read", "write", "write_refused") and r.get("msg") is not None:
            out.setdefault((r["engine"], r["msg"]), {})[r["kind"]] = r
    return out


# ---------------------------------------------------------------- the scenario pair, end to end
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_read_modify_write_without_a_transaction_loses_updates(backend):
    r = run_scenario(counter(backend, transaction=False))
    assert r.violated == ["no-lost-update"]
    assert not [x for x in r.trace() if x["kind"] == "write_refused"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_in_a_transaction_the_database_refuses_the_save_that_would_lose_an_update(backend):
    r = run_scenario(counter(backend))
    inv = next(i for i in r.invariants if i.name == "no-lost-update")
    assert r.violated == [] and inv.checked > 10  # held, and not vacuously
    recs = r.trace()
    refused = [x for x in recs if x["kind"] == "write_refused"]
    assert len(refused) > 3
    done = {(x["engine"], x["msg"]): x["ok"] for x in recs if x["kind"] == "done"}
    for h, seen in handlings(recs).items():
        if "write_refused" in seen:
            assert "write" not in seen, f"{h}: an aborted transaction left a write in the trace"
            assert done[h] is False
        elif "write" in seen:
            assert done[h] is True


def test_the_location_model_aborts_exactly_when_a_cell_it_read_was_written_since():
    # optimistic validation at commit, cell by cell: worked out from the trace, handling by handling
    recs = run_scenario(counter("location")).trace()
    writes = [(x["i"], x["loc"] if "loc" in x else x["locs"][0], x["row"]) for x in recs if x["kind"] == "write"]
    aborted = 0
    for _h, seen in handlings(recs).items():
        rd = seen["read"]
        end = seen.get("write", seen.get("write_refused"))
        if end is None:
            continue  # still in flight at the end
        between = [w for w in writes if rd["i"] < w[0] < end["i"] and (w[1], w[2]) == (rd["loc"], rd["row"])]
        assert ("write_refused" in seen) == bool(between)
        if "write_refused" in seen:
            aborted += 1
            assert seen["write_refused"]["op"] == "commit"
            assert (
                f"{rd['loc']} of row {rd['row']} was written (record {between[-1][0]})"
                in seen["write_refused"]["error"]
            )
    assert aborted > 3


def test_sqlite_aborts_when_anything_was_committed_since_the_snapshot():
    # a deferred transaction reads a snapshot of the whole database; its first write fails with
    # SQLITE_BUSY_SNAPSHOT if any other write committed since, whatever its row: coarser than the
    # location model's cell, so it refuses more
    sqlite, location = run_scenario(counter("sqlite")).trace(), run_scenario(counter("location")).trace()
    writes = [x["i"] for x in sqlite if x["kind"] == "write"]
    for _h, seen in handlings(sqlite).items():
        rd, end = seen["read"], seen.get("write", seen.get("write_refused"))
        if end is None:
            continue
        between = [w for w in writes if rd["i"] < w < end["i"]]
        assert ("write_refused" in seen) == bool(between)
        if "write_refused" in seen:
            assert seen["write_refused"]["error"] == "database is locked (SQLITE_BUSY_SNAPSHOT)"
            assert seen["write_refused"]["op"] == "write"
    count = [sum(x["kind"] == "write_refused" for x in t) for t in (sqlite, location)]
    assert count[0] > count[1]


def test_a_transaction_is_deterministic():
    a, b = run_scenario(counter("sqlite")), run_scenario(counter("sqlite"))
    assert a.trace_sha256 == b.trace_sha256


# ---------------------------------------------------------------- all or nothing
TWO_FIELDS = """
name: two_fields
seed: 1
database:
  backend: sqlite
  tables: {t: [id, a, b]}
  rows: 1
  sql:
    schema: |
      CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b TEXT);
      CREATE TRIGGER b_is_read_only BEFORE UPDATE OF b ON t WHEN NEW.b = 'v1' BEGIN SELECT RAISE(ABORT, 'b is read-only'); END;
releases:
  r1:
    rpc: {endpoints: [{version: "1.0", methods: {save: [x], show: [x]}}]}
    data:
      fa: {read: t.a, write: [t.a]}
      fb: {read: t.b, write: [t.b]}
engines:
  - {name: e1, release: r1}
workload:
  arrivals: periodic
  rate: 1.0
  stop: 1.5
  operations: {save: 1}
  handlers:
    save: {write: [fa, fb], transaction: TXN}
invariants:
  operations-complete: {}
"""


@pytest.mark.parametrize("transaction", [True, False])
def test_a_refused_statement_rolls_back_the_whole_transaction(transaction):
    # the one save writes fa = v0, then fb = v1, which the trigger refuses
    s = simroll.load_scenario_text(TWO_FIELDS.replace("TXN", str(transaction).lower()), "two_fields.yaml")
    recs = run_scenario(s).trace()
    writes = [(x["field"], x["value"]) for x in recs if x["kind"] == "write"]
    refused = [(x["field"], x["error"]) for x in recs if x["kind"] == "write_refused"]
    assert refused == [("fb", "b is read-only")]
    final = {x["field"]: x["values"] for x in recs if x["kind"] == "final"}
    if transaction:  # fa's write went with the transaction: no record of it, and its value is gone
        assert writes == []
        assert final == {"fa": ["init0"], "fb": ["init0"]}
    else:  # each field's write is its own: fa's stays
        assert writes == [("fa", "v0")]
        assert final == {"fa": ["v0"], "fb": ["init0"]}


def test_a_transactions_writes_are_each_recorded_with_what_they_wrote():
    # two fields committed together: each write record names its own cells, not the other's
    s = simroll.load_scenario_text(
        TWO_FIELDS.replace("TXN", "true").replace("stop: 1.5", "stop: 2.5"), "two_fields.yaml"
    )
    recs = run_scenario(s).trace()
    writes = [(x["field"], x["value"], x["trig"]) for x in recs if x["kind"] == "write"]
    assert writes == [("fa", "v2", []), ("fb", "v3", [])]
    final = {x["field"]: x["values"] for x in recs if x["kind"] == "final"}
    assert final == {"fa": ["v2"], "fb": ["v3"]}


def test_a_killed_engine_rolls_its_transaction_back_and_its_connection_is_used_again():
    d = yaml.safe_load((SQL_SCENARIOS / "counter_transaction.yaml").read_text(encoding="utf-8"))
    taken = [
        x["t"]
        for x in run_scenario(counter("sqlite")).trace()
        if x["kind"] == "recv" and x["t"] > 1 and x["engine"] == "conductor-1"
    ]
    d["plan"] = [{"after": round(taken[0] + 0.1, 3), "restart": "conductor-1", "release": "ocata", "how": "kill"}]
    d["invariants"] = {"no-lost-update": {}, "operations-complete": {}}
    s = simroll.load_scenario_text(yaml.safe_dump(d, sort_keys=False), "killed.yaml")
    from simroll.sim.kernel import simulate

    sim, trace = simulate(s)
    recs = trace.records
    kill = next(x for x in recs if x["kind"] == "kill")
    assert kill["inflight"], "the kill lands mid-handling"
    assert sim.cluster.txns == {}
    # the killed handling's BEGIN is followed by a ROLLBACK, and later transactions commit
    log = list(sim.db.sql_log)
    rolled = [e for e in log if e[3] == "ROLLBACK" and e[0] == kill["t"]]
    assert len(rolled) == len(kill["inflight"])
    assert any(e[3] == "COMMIT" and e[0] > kill["t"] for e in log)


# ---------------------------------------------------------------- the isolation levels a backend takes
@pytest.mark.parametrize(
    ("backend", "isolation", "message"),
    [
        ("sqlite", "repeatable read", "expected serializable (SQLite's transactions are serialisable)"),
        ("location", "read committed", "expected serializable (the location model validates"),
    ],
)
def test_an_isolation_level_the_backend_does_not_have_is_a_load_error(backend, isolation, message):
    with pytest.raises(ScenarioError) as e:
        counter(backend, isolation=isolation)
    assert f"database.isolation: {isolation!r} is not a level of backend {backend}: {message}" in str(e.value)


def test_an_unknown_isolation_level_is_a_load_error():
    with pytest.raises(ScenarioError, match=r"database.isolation"):
        counter("sqlite", isolation="snapshot")


# ---------------------------------------------------------------- no-lost-update on hand-built traces
def rec(i: int, t: float, kind: str, engine: str, msg: int, **kw: Any) -> dict[str, Any]:
    return {"i": i, "t": t, "kind": kind, "engine": engine, "msg": msg, **kw}


def read(i, t, engine, msg):
    return rec(i, t, "read", engine, msg, field="f", row=0, loc="t.f", value="v", cause=[])


def write(i, t, engine, msg, value):
    return rec(i, t, "write", engine, msg, field="f", row=0, value=value, locs=["t.f"], trig=[])


def refused(i, t, engine, msg):
    return rec(i, t, "write_refused", engine, msg, op="commit", field=None, row=0, error="could not serialize access")


def done(i, t, engine, msg, ok=True):
    return rec(i, t, "done", engine, msg, ok=ok)


def check(trace: list[dict[str, Any]]) -> NoLostUpdate:
    c = NoLostUpdate()
    for r in trace:
        if r["kind"] in c.kinds:
            c.observe(r)
    return c


def test_no_lost_update_reports_the_update_an_isolation_level_allowed():
    # read committed: e1 reads, e2's save commits, e1's save commits over it
    c = check(
        [read(0, 0.0, "e1", 1), write(1, 0.5, "e2", 2, "v2"), write(2, 1.0, "e1", 1, "v1"), done(3, 1.0, "e1", 1)]
    )
    assert c.checked == 1 and len(c.violations) == 1
    assert c.violations[0].event == 2 and c.violations[0].causes == (0, 1)


def test_no_lost_update_does_not_report_the_update_the_database_refused():
    # repeatable read: e1's save is refused (no write record), its handling fails; e3's read-modify-write is whole
    c = check(
        [
            read(0, 0.0, "e1", 1),
            write(1, 0.5, "e2", 2, "v2"),
            refused(2, 1.0, "e1", 1),
            done(3, 1.0, "e1", 1, ok=False),
            read(4, 1.1, "e3", 3),
            write(5, 1.4, "e3", 3, "v3"),
            done(6, 1.4, "e3", 3),
        ]
    )
    assert c.violations == [] and c.checked == 1


def test_no_lost_update_at_one_instant_goes_by_record_order():
    # two transactions committing at the same instant: the one whose save is recorded first is not lost
    first = check(
        [read(0, 0.0, "e1", 1), read(1, 0.0, "e2", 2), write(2, 1.0, "e2", 2, "v2"), write(3, 1.0, "e1", 1, "v1")]
    )
    assert [v.event for v in first.violations] == [3]
    # the other save at the read's instant, recorded before it: read afterwards, nothing lost
    before = check([write(0, 0.0, "e2", 2, "v2"), read(1, 0.0, "e1", 1), write(2, 1.0, "e1", 1, "v1")])
    assert before.violations == [] and before.checked == 1


def test_operations_complete_names_a_refused_transaction():
    trace = [
        {
            "i": 0,
            "t": 0.0,
            "kind": "send",
            "engine": "client",
            "msg": 1,
            "method": "m",
            "version": "1.0",
            "queue": "q",
            "call": True,
            "op": 1,
            "cause": [],
        },
        refused(1, 1.0, "e1", 1),
        done(2, 1.0, "e1", 1, ok=False),
    ]
    c = OperationsComplete()
    for r in trace:
        if r["kind"] in c.kinds:
            c.observe(r)
    flush = getattr(c, "flush", None)
    if flush is not None:
        flush()
    assert len(c.violations) == 1
    assert "the database refused e1's transaction: could not serialize access" in c.violations[0].message


# ---------------------------------------------------------------- the statements around a violation
def test_the_statement_log_links_each_read_to_its_trace_record():
    r = run_scenario(counter("sqlite"))
    recs = r.trace()
    assert r.sql_log
    reads = [e for e in r.sql_log if e["sql"].startswith("SELECT") and e["msg"] is not None]
    assert reads
    for e in reads:
        x = recs[e["record"]]
        assert (x["kind"], x["engine"], x["msg"], x["row"]) == ("read", e["engine"], e["msg"], e["params"]["row"])
        assert e["outcome"] == f"-> {x['value']!r}"
    begins = [e for e in r.sql_log if e["sql"].startswith("BEGIN")]
    ends = [e for e in r.sql_log if e["sql"] in ("COMMIT", "ROLLBACK")]
    assert len(begins) >= len(ends) > 0
    busy = [e for e in r.sql_log if e["outcome"].startswith("refused:")]
    assert busy and all(e["outcome"] == "refused: database is locked (SQLITE_BUSY_SNAPSHOT)" for e in busy)


def test_the_location_model_has_no_statement_log():
    assert run_scenario(counter("location")).sql_log is None


def test_the_html_report_shows_the_sql_each_engine_ran_around_a_lost_update():
    r = run_scenario(simroll.load_scenario(SQL_SCENARIOS / "counter_lost_update.yaml"))
    v = r.violations[0]
    html = summary_html(r, max_violations=1)
    section = html[html.index("SQL around it") :]
    section = section[: section.index("</table>", section.index(f"<b>{v.engines[1]}</b>"))]
    # both engines of the chain, each with its save of the row and the value it wrote
    for engine in v.engines:
        assert f"<b>{engine}</b>" in section
    written = [x for x in r.trace() if x["kind"] == "write" and x["i"] in v.causes + (v.event,)]
    for w in written:
        assert f"value=&#x27;{w['value']}&#x27;" in section
    assert "UPDATE &quot;quota&quot; SET &quot;in_use&quot; = :value" in section
    assert "SQL around it" not in summary_html(run_scenario(counter("location", transaction=False)), max_violations=1)


def log_entry(t: float, engine: str, msg: int | None, record: int, sql: str = "SELECT 1") -> dict[str, Any]:
    return {"t": t, "engine": engine, "msg": msg, "sql": sql, "params": None, "outcome": "ok", "record": record}


def test_sql_around_takes_the_chains_engines_from_its_first_record_to_the_violation():
    chain = Explanation(
        "why",
        (
            Link({"i": 5, "t": 1.0, "kind": "read", "engine": "e1", "msg": 1}),
            Link({"i": 7, "t": 1.5, "kind": "write", "engine": "e2", "msg": 2}),
            Link({"i": 9, "t": 2.0, "kind": "write", "engine": "e1", "msg": 1}, "violation"),
        ),
    )
    log = [
        log_entry(0.9, "e1", 1, 4, "BEGIN"),  # before the chain, but e1's handling of m1: in
        log_entry(0.9, "e1", 0, 4),  # before the chain, another message: out
        log_entry(1.0, "e1", 1, 5),  # the chain's first record: in
        log_entry(1.2, "e3", 3, 6),  # an engine not in the chain: out
        log_entry(1.5, "e2", 2, 7),
        log_entry(2.0, "e1", 1, 9),  # the violating record: in
        log_entry(2.0, "e1", 1, 10, "COMMIT"),  # after it: out
    ]
    got = sql_around(log, chain, 9)
    assert [(name, [(e["record"], e["sql"]) for e in ran], earlier) for name, ran, earlier in got] == [
        ("e1", [(4, "BEGIN"), (5, "SELECT 1"), (9, "SELECT 1")], 0),
        ("e2", [(7, "SELECT 1")], 0),
    ]
    # at most per_engine statements each, the latest, and how many earlier ones were left out
    assert [(n, len(ran), earlier) for n, ran, earlier in sql_around(log, chain, 9, per_engine=2)] == [
        ("e1", 2, 1),
        ("e2", 1, 0),
    ]
