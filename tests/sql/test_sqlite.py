"""The SQLite backend: the user's own SQL (schema, statements, DDL, triggers, backfill), refused
writes, blob saves, and the errors bad SQL gives. Expected values are worked out by hand."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

import simroll
from simroll.check.invariants import OperationsComplete
from simroll.errors import ScenarioError
from simroll.run import run_scenario
from simroll.scenario import sqlspec
from simroll.sim.sqlbase import split_sql

ROOT = Path(__file__).resolve().parent.parent.parent
SQL_SCENARIOS = ROOT / "scenarios" / "sql"

# one engine, periodic calls at t=1, 2, 3 on rows 0..3 (seeded), each reads then writes field f
BASE = """
name: t
seed: 3
database:
  backend: sqlite
  tables: {t: [id, a]}
  rows: 4
releases:
  r1:
    rpc: {endpoints: [{version: "1.0", methods: {op: [x]}}]}
    data:
      f: {read: t.a, write: [t.a]}
    service_time: 0.5
engines: [{name: e1, release: r1}]
workload:
  rate: 1.0
  arrivals: periodic
  stop: 3.5
  operations: {op: 1}
  handlers: {op: {read: [f], write: [f]}}
invariants:
  no-lost-write: {}
  operations-complete: {}
"""


def doc(**changes) -> dict:
    d = yaml.safe_load(BASE)
    for path, value in changes.items():
        node = d
        keys = path.split("__")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return d


def load(d: dict) -> simroll.Scenario:
    return simroll.load_scenario_text(yaml.safe_dump(d, sort_keys=False), "<test>")


def records(result, kind):
    return [r for r in result.trace() if r["kind"] == kind]


# ---------------------------------------------------------------- statements
def test_split_sql_keeps_a_trigger_body_whole():
    text = (
        "CREATE TABLE t (id INTEGER);\nCREATE TRIGGER g AFTER UPDATE ON t BEGIN UPDATE t SET id = 1; SELECT 1; END;\n"
    )
    assert split_sql(text) == [
        "CREATE TABLE t (id INTEGER);",
        "CREATE TRIGGER g AFTER UPDATE ON t BEGIN UPDATE t SET id = 1; SELECT 1; END;",
    ]
    assert split_sql("SELECT 1") == ["SELECT 1"]  # a last statement without its semicolon


def test_a_release_reads_and_writes_with_its_own_statements():
    # the write stores the value in upper case; the read gives it back in lower case
    d = doc(
        releases__r1__sql={
            "read": {"f": "SELECT lower(a) FROM t WHERE _row = :row"},
            "write": {"f": "UPDATE t SET a = upper(:value) WHERE _row = :row"},
        }
    )
    r = run_scenario(load(d))
    reads = records(r, "read")
    writes = records(r, "write")
    assert [w["value"] for w in writes] == ["v0", "v1", "v2"]
    # first read of each row: the initial value ('init<row>', lowered: unchanged); a read of a row
    # written before gives the write back ('V0' lowered is 'v0'); the cause is the write's record
    for rd in reads:
        earlier = [w for w in writes if w["row"] == rd["row"] and w["i"] < rd["i"]]
        if earlier:
            assert rd["value"] == earlier[-1]["value"] and rd["cause"][-1] == earlier[-1]["i"]
        else:
            assert rd["value"] == f"init{rd['row']}"
    assert r.ok


# ---------------------------------------------------------------- refused writes
REFUSE = "CREATE TRIGGER no_a BEFORE UPDATE OF a ON t BEGIN SELECT RAISE(ABORT, 'a is frozen'); END;"


def test_a_schema_whose_trigger_refuses_the_initial_data_is_a_scenario_error():
    # the schema runs first, so the initial values (UPDATE t SET a = 'init' || id) are refused
    d = doc(database__sql={"schema": "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT);\n" + REFUSE})
    with pytest.raises(ScenarioError, match=r"^scenario t: initial data of f: refused: a is frozen$"):
        run_scenario(load(d))


def test_a_trigger_enabled_by_a_step_refuses_every_later_write():
    d = doc(
        database__sql={"triggers": [{"from": "t.a", "to": "t.a", "create": REFUSE}]},
        plan=[{"after": 2.2, "enable_trigger": {"from": "t.a", "to": "t.a"}}],
    )
    r = run_scenario(load(d))
    # calls at t=1, 2, 3; writes at 1.5, 2.5, 3.5: the trigger is in from t=2.2, so two are refused
    refused = records(r, "write_refused")
    assert [(x["t"], x["field"], x["error"]) for x in refused] == [(2.5, "f", "a is frozen"), (3.5, "f", "a is frozen")]
    assert [x["ok"] for x in records(r, "done")] == [True, False, False]
    oc = next(inv for inv in r.invariants if inv.name == "operations-complete")
    assert oc.count == 2 and "the database refused e1's write of f: a is frozen" in oc.violations[0].message
    assert r.availability["completed"] == 1
    # the refused value was never stored: the final value is the one write that landed
    final = records(r, "final")[0]
    w = records(r, "write")[0]
    assert final["values"][w["row"]] == w["value"]


def test_a_write_refused_counts_against_operations_complete_on_a_hand_built_trace():
    def rec(i, kind, **kw):
        return {"i": i, "t": float(i), "kind": kind, **kw}

    trace = [
        rec(0, "send", engine="client", msg=0, method="op", version="1.0", queue="q", call=True, row=0),
        rec(1, "write_refused", engine="e1", msg=0, op="write", field="f", row=0, error="nope"),
        rec(2, "done", engine="e1", msg=0, ok=False),
        rec(3, "send", engine="client", msg=1, method="op", version="1.0", queue="q", call=True, row=0),
        rec(4, "write_refused", engine="backfill", op="backfill", field=None, row=0, error="nope"),  # no operation's
        rec(5, "done", engine="e1", msg=1, ok=True),
        rec(6, "end", reason="quiescent", points=0),
    ]
    c = OperationsComplete()
    for r in trace:
        if r["kind"] in c.kinds:
            c.observe(r)
    flush = getattr(c, "flush", None)
    if flush is not None:
        flush()
    assert c.count == 1 and c.completed == 1
    assert c.violations[0].event == 1 and "refused e1's write of f: nope" in c.violations[0].message


# ---------------------------------------------------------------- blob saves
def test_the_bundled_sql_scenarios_give_their_expected_verdicts():
    expected = {
        "keystone_refusing_trigger.yaml": ["operations-complete"],
        "keystone_sync_trigger.yaml": [],
        "nova_blob_drops_field.yaml": ["no-lost-write"],
        "nova_blob_keeps_field.yaml": [],
        "counter_lost_update.yaml": ["no-lost-update"],
        "counter_transaction.yaml": [],
    }
    assert sorted(p.name for p in SQL_SCENARIOS.glob("*.yaml")) == sorted(expected)
    for name, violated in expected.items():
        s = simroll.load_scenario(SQL_SCENARIOS / name)
        for seed in (None, 2):
            r = run_scenario(s, seed=seed)
            assert r.violated == violated, (name, seed)
            assert not r.vacuous, (name, seed)


def test_a_blob_save_names_the_write_that_dropped_the_field():
    r = run_scenario(simroll.load_scenario(SQL_SCENARIOS / "nova_blob_drops_field.yaml"))
    v = next(inv for inv in r.invariants if inv.name == "no-lost-write").violations[0]
    read = r.trace()[v.event]
    dropper = r.trace()[read["cause"][-1]]  # the read's cause: the last write of the blob column
    assert (
        dropper["kind"] == "write" and dropper["field"] == "cells" and dropper["engine"] in ("compute-1", "compute-2")
    )
    assert read["field"] == "pagesize" and read["value"] is None


# ---------------------------------------------------------------- triggers: what SQL does
CHAIN = """
name: chain
seed: 1
database:
  backend: BACKEND
  tables: {t: [a, b, c]}
  rows: 1
  triggers: [{from: t.a, to: t.b}, {from: t.b, to: t.c}]
releases:
  r1:
    rpc: {endpoints: [{version: "1.0", methods: {op: [x]}}]}
    data:
      f: {read: t.a, write: [t.a]}
engines: [{name: e1, release: r1}]
workload: {rate: 1.0, arrivals: periodic, stop: 1.5, operations: {op: 1}, handlers: {op: {write: [f]}}}
invariants: {schema-compatible: {}}
"""


def test_a_trigger_chain_fires_one_hop_in_the_location_model_and_cascades_in_sqlite():
    by = {}
    for backend in ("location", "sqlite"):
        s = simroll.load_scenario_text(CHAIN.replace("BACKEND", backend), "<chain>")
        by[backend] = records(run_scenario(s), "write")[0]["trig"]
    assert by["location"] == ["t.b"]
    assert by["sqlite"] == ["t.b", "t.c"]  # t.b's own trigger fires for the trigger's UPDATE


def test_a_two_way_sync_trigger_stops_after_one_round_in_sqlite():
    s = simroll.load_scenario_text(
        CHAIN.replace("BACKEND", "sqlite").replace("{from: t.b, to: t.c}", "{from: t.b, to: t.a}"), "<sync>"
    )
    r = run_scenario(s)
    w = records(r, "write")[0]
    assert w["trig"] == ["t.b"]  # t.b -> t.a writes the value t.a already holds; a -> b does not fire again
    assert r.ok


A_TO_B = {
    "from": "t.a",
    "to": "t.b",
    "create": "CREATE TRIGGER a_to_b AFTER UPDATE OF a ON t BEGIN UPDATE t SET b = NEW.a WHERE _row = NEW._row; END;",
}


def test_sqlite_refuses_to_drop_the_column_a_users_trigger_fires_on():
    d = doc(
        database__tables={"t": ["id", "a", "b"]},
        database__sql={"triggers": [A_TO_B]},
        plan=[{"after": 1.2, "enable_trigger": {"from": "t.a", "to": "t.b"}}, {"contract": ["t.a"]}],
    )
    with pytest.raises(ScenarioError) as e:
        run_scenario(load(d))
    assert str(e.value) == (
        'scenario t: contract t.a: statement \'ALTER TABLE "t" DROP COLUMN "a"\': '
        "error in trigger a_to_b after drop column: no such column: NEW.a"
    )


def test_sqlite_drops_the_column_a_users_trigger_writes_and_then_refuses_every_write_that_fires_it():
    d = doc(
        database__tables={"t": ["id", "a", "b"]},
        database__sql={"triggers": [A_TO_B]},
        plan=[{"after": 1.2, "enable_trigger": {"from": "t.a", "to": "t.b"}}, {"contract": ["t.b"]}],
    )
    r = run_scenario(load(d))
    # the trigger is created and t.b dropped at t=1.2, before the first write (1.5): every write of
    # t.a, at 1.5, 2.5 and 3.5, fires the trigger, whose UPDATE names the dropped column
    assert [(x["t"], x["error"]) for x in records(r, "write_refused")] == [
        (t, "no such column: b") for t in (1.5, 2.5, 3.5)
    ]
    assert r.violated == ["operations-complete"]


def test_disabling_a_users_trigger_drops_it_by_the_name_in_its_create():
    create = A_TO_B["create"].replace("TRIGGER a_to_b", "TRIGGER IF NOT EXISTS a_to_b")
    d = doc(
        database__tables={"t": ["id", "a", "b"]},
        database__sql={"triggers": [dict(A_TO_B, create=create)]},
        database__triggers=[{"from": "t.a", "to": "t.b"}],
        plan=[{"after": 2.2, "disable_trigger": {"from": "t.a", "to": "t.b"}}],
    )
    r = run_scenario(load(d))
    assert [w["trig"] for w in records(r, "write")] == [["t.b"], [], []]  # 1.5 copied; 2.5 and 3.5 not


# ---------------------------------------------------------------- the user's DDL and backfill
def test_an_expand_step_runs_the_users_ddl_and_a_backfill_its_statement():
    d = doc(
        releases__r1__data={"f": {"read": "t.a", "write": ["t.a"]}},
        database__sql={
            "expand": {"t.b": "ALTER TABLE t ADD COLUMN b TEXT DEFAULT 'dflt';"},
            # copies the value read, marked, only into rows whose b still has the default
            "backfill": {"t.b": "UPDATE t SET b = 'copy-' || :value WHERE _row = :row AND b = 'dflt'"},
        },
        database__canonical={"f": "t.a"},
        plan=[{"expand": ["t.b"]}, {"backfill": {"from": "t.a", "to": "t.b", "rate": 100}}],
        workload__stop=0.5,  # no client operation: the backfill alone
    )
    r = run_scenario(load(d))
    assert [(x["row"], x["value"]) for x in records(r, "bf_write")] == [(i, f"init{i}") for i in range(4)]
    assert r.trace()[-1]["kind"] == "end"


# ---------------------------------------------------------------- schema files and bad SQL
def write_scenario(folder: Path, schema: str, name: str = "s.yaml") -> Path:
    d = doc(database__sql={"schema": schema})
    p = folder / name
    p.write_text(yaml.safe_dump(d, sort_keys=False), encoding="utf-8")
    return p


def test_a_schema_file_is_read_from_beside_the_scenario(tmp_path):
    (tmp_path / "db.sql").write_text("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT);\n", encoding="utf-8")
    s = simroll.load_scenario(write_scenario(tmp_path, "db.sql"))
    assert s.database.sql.schema_.startswith("CREATE TABLE t") and s.database.sql.source == str(tmp_path / "db.sql")
    assert run_scenario(s).ok


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: None, r"'db\.sql': cannot read: No such file or directory"),
        (lambda d: (d / "db.sql").mkdir(), r"'db\.sql': a directory, not a regular file, expected a \.sql file"),
        (lambda d: os.mkfifo(d / "db.sql"), r"'db\.sql': a FIFO, not a regular file, expected a \.sql file"),
        (lambda d: (d / "db.sql").write_bytes(b"\xff\xfe"), r"'db\.sql': not UTF-8 text"),
        (lambda d: (d / "db.sql").write_text("-- nothing\n  \n"[:0] + "   \n"), r"'db\.sql': empty, expected DDL"),
    ],
    ids=["missing", "directory", "fifo", "not-utf8", "empty"],
)
def test_a_schema_file_that_is_not_a_readable_sql_file_is_refused(tmp_path, setup, message):
    setup(tmp_path)
    p = write_scenario(tmp_path, "db.sql")
    with pytest.raises(ScenarioError, match=rf"^{p}: database\.sql\.schema: {message}"):
        simroll.load_scenario(p)


def test_a_schema_file_outside_the_scenarios_folder_is_refused(tmp_path):
    (tmp_path / "db.sql").write_text("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT);\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    p = write_scenario(tmp_path / "sub", "../db.sql")
    with pytest.raises(ScenarioError, match=r"database\.sql\.schema: '\.\./db\.sql' is outside the scenario's folder"):
        simroll.load_scenario(p)


def test_a_schema_file_over_the_size_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlspec, "MAX_SCHEMA_BYTES", 40)
    (tmp_path / "db.sql").write_text("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT);\n", encoding="utf-8")  # 50 bytes
    with pytest.raises(ScenarioError, match="more than the limit of 40 bytes"):
        simroll.load_scenario(write_scenario(tmp_path, "db.sql"))


def test_a_schema_file_named_in_a_scenario_text_is_refused_at_load():
    with pytest.raises(
        ScenarioError, match=r"database\.sql\.schema: 'db\.sql' names a schema file, but a scenario given as text"
    ):
        load(doc(database__sql={"schema": "db.sql"}))


def test_bad_sql_in_the_schema_names_the_file_the_statement_and_sqlites_message(tmp_path):
    (tmp_path / "db.sql").write_text("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT);\nCREAT TABLE u (x);\n")
    with pytest.raises(ScenarioError) as e:
        simroll.load_scenario(write_scenario(tmp_path, "db.sql"))
    assert str(e.value) == (
        f"{tmp_path / 'db.sql'}: database.sql.schema: statement 'CREAT TABLE u (x);': near \"CREAT\": syntax error"
    )


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ("CREATE TABLE t (id INTEGER PRIMARY KEY);", r"does not create column t\.a"),
        ("CREATE TABLE u (id INTEGER PRIMARY KEY);", r"does not create table 't'"),
        ("CREATE TABLE t (k INTEGER PRIMARY KEY, a TEXT);", r"does not create the row key column t\.id"),
    ],
)
def test_a_schema_that_does_not_create_what_the_scenario_declares_is_refused_at_load(schema, message):
    with pytest.raises(ScenarioError, match=rf"^<test>: database\.sql\.schema: {message}"):
        load(doc(database__sql={"schema": schema}))


def test_a_statement_that_does_not_parse_is_refused_at_load_naming_its_key():
    with pytest.raises(ScenarioError) as e:
        load(doc(releases__r1__sql={"read": {"f": "SELEC a FROM t WHERE _row = :row"}}))
    assert str(e.value) == (
        "<test>: releases.r1.sql.read.f: statement 'SELEC a FROM t WHERE _row = :row': near \"SELEC\": syntax error"
    )
    # a statement naming a table that does not exist yet parses: it is checked when it runs
    load(doc(releases__r1__sql={"read": {"f": "SELECT b FROM later WHERE _row = :row"}}))


def test_a_statement_that_parses_but_fails_when_it_runs_names_the_statement_and_sqlites_message():
    s = load(doc(releases__r1__sql={"read": {"f": "SELECT missing FROM t WHERE _row = :row"}}))
    with pytest.raises(
        ScenarioError,
        match=r"^scenario t: the read statement of t\.a: statement 'SELECT missing FROM t WHERE _row = :row': "
        r"no such column: missing$",
    ):
        run_scenario(s)


def test_the_users_sql_on_the_location_model_is_a_load_error():
    d = doc(database__sql={"schema": "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT);"})
    del d["database"]["backend"]
    with pytest.raises(ScenarioError, match=r"<test>: database\.sql: the user's SQL needs a SQL backend"):
        load(d)
    d = doc(releases__r1__sql={"read": {"f": "SELECT a FROM t WHERE _row = :row"}})
    del d["database"]["backend"]
    with pytest.raises(ScenarioError, match=r"releases\.r1\.sql: the user's SQL needs a SQL backend"):
        load(d)


def test_the_cli_prints_bad_sql_as_one_placed_line(tmp_path, capsys):
    from simroll.cli import main

    (tmp_path / "db.sql").write_text("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT);\nCREAT TABLE u (x);\n")
    p = write_scenario(tmp_path, "db.sql")
    assert main(["run", str(p)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1
    assert "database.sql.schema: statement 'CREAT TABLE u (x);'" in err
    # and a statement that fails only when it runs
    d = doc(releases__r1__sql={"read": {"f": "SELECT missing FROM t WHERE _row = :row"}})
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(d), encoding="utf-8")
    assert main(["run", str(tmp_path / "run.yaml")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1 and "no such column: missing" in err


def test_a_run_on_sqlite_is_deterministic():
    s = simroll.load_scenario(SQL_SCENARIOS / "nova_blob_drops_field.yaml")
    assert run_scenario(s, keep_trace=False).trace_sha256 == run_scenario(s, keep_trace=False).trace_sha256
