"""The database as SQL: what every SQL backend shares (``database.backend: sqlite | postgresql | mariadb``).

Every engine read and write, every expand and contract step, trigger and backfill runs as a
SQL statement, in simulated-time order, on one connection (the simulation is one thread: a
statement runs at the simulated instant its engine issues it, so the order is the run's own
and the trace stays deterministic). Without ``database.sql`` every statement is derived from
the locations: a table per table with a hidden row key ``_row``, ``ALTER TABLE ... ADD/DROP
COLUMN`` for expand and contract, a trigger per enabled copy, the backfill as a guarded
``UPDATE``. Each key of ``database.sql`` and of a release's ``sql`` replaces a derived statement
with the user's own (docs/sql.md). A backend (:mod:`simroll.sim.sqlite`,
:mod:`simroll.sim.sqlserver`) supplies the connection and its dialect's few differences.

Which write a cell came from (its record, the cause of a read) is not stored in SQL: after each
statement the row it wrote is read back from every table, and a cell whose value changed (or
that the statement wrote, or that a derived trigger copied into) takes the statement's record.
So the user's own triggers, which know nothing of records, still name their cause.
"""

from __future__ import annotations

import sqlite3  # only its statement splitter: complete_statement
from collections import deque
from collections.abc import Collection, Iterable, Mapping
from typing import Any, Protocol

import simpy

from simroll.errors import ScenarioError
from simroll.scenario.spec import BackfillSpec, DatabaseSpec, ReleaseSpec, TriggerSpec
from simroll.scenario.sqlspec import SCHEMA_FILE, DatabaseSqlSpec
from simroll.sim.chooser import Chooser
from simroll.sim.database import Cell, Database, Txn, WriteRefused
from simroll.sim.trace import Trace

_NO_CELL: Cell = (None, None)
_NO_COLUMN: dict[int, Cell] = {}
DERIVED_KEY = "_row"
_TRIGGER_PREFIX = "_simroll_copy_"
SQL_LOG_LIMIT = 100_000
"""The statements a run's log keeps (the latest; see :attr:`SqlDatabase.sql_log`)."""


class SqlError(ScenarioError):
    """Bad SQL in a scenario, found when it runs: where it came from (the schema file, or the
    scenario), the key, the statement and the database's own message.

    Its ``args`` are the three parts, so that SimPy, which re-raises an error of a process as
    ``type(e)(*e.args)``, gives the same error back."""

    def __init__(self, source: str, where: str, message: str):
        super().__init__(source, where, message)
        self.args = (source, where, message)

    def __str__(self) -> str:
        return f"{self.source}: {self.where}: {self.message}"


def split_sql(text: str) -> list[str]:
    """The statements of ``text``, split at the semicolons that end one (a trigger body's do not)."""
    out, start = [], 0
    for i, ch in enumerate(text):
        if ch == ";" and sqlite3.complete_statement(text[start : i + 1]):
            stmt = text[start : i + 1].strip()
            if stmt.rstrip(";").strip():
                out.append(stmt)
            start = i + 1
    rest = text[start:].strip()
    if rest and not rest.startswith("--"):
        out.append(rest)
    return out


class Result(Protocol):
    """What a statement gives back, as a DB-API cursor and SQLAlchemy's result both do."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> Any: ...


class SqlDatabase(Database):
    """The database of one run on SQL; see the module's docstring. A subclass opens
    :attr:`conn` before calling this constructor, and gives its dialect's hooks (below)."""

    backend = "sql"
    conn: Any  # the connection statements run on now (a subclass opens it; a transaction's while in one)
    errors: tuple[type[BaseException], ...] = ()  # the exceptions a statement may raise

    def __init__(
        self,
        env: simpy.Environment,
        spec: DatabaseSpec,
        chooser: Chooser,
        trace: Trace,
        releases: Mapping[str, ReleaseSpec] | None = None,
        initial_release: str | None = None,
        source: str = "<scenario>",
        transactions: bool = False,
    ):
        super().__init__(env, spec, chooser, trace)
        self.source = source
        self.transactions = transactions  # some handler runs in a transaction: connections of their own
        self.main = self.conn  # the connection every statement outside a transaction runs on
        self._idle: list[Any] = []  # transactions' connections not in use, reused last in, first out
        self._opened: list[Any] = []  # every transaction connection opened
        # the statements the engines, the operator and the backfill ran (not simroll's own reads of a
        # row after a write): (t, actor, message, statement, parameters, outcome, next record number)
        self.sql_log: deque[tuple[Any, ...]] = deque(maxlen=SQL_LOG_LIMIT)
        self.sql: DatabaseSqlSpec = spec.sql or DatabaseSqlSpec()
        self.user_schema = self.sql.schema_ is not None
        self.key = self.sql.key if self.user_schema else DERIVED_KEY
        self.releases = dict(releases or {})
        self.initial_release = initial_release
        self.shadow: dict[str, dict[int, Cell]] = {}  # location -> row -> (value, record that wrote it)
        # triggers: derived ones in self.triggers (their copies are known ahead, as in the location
        # model); the user's own by (from, to), run as the user wrote them, their effects observed
        self.user_trigger_sql = {(t.from_, t.to): t for t in self.sql.triggers}
        self.user_triggers: list[tuple[str, str]] = []  # enabled, in the order enabled
        for trig in spec.triggers:
            if (trig.from_, trig.to) in self.user_trigger_sql:
                self._enable(trig, False)
                self.user_triggers.append((trig.from_, trig.to))
        self._derived_triggers: list[tuple[str, str]] = []  # (name, source location)
        self._user_created: set[tuple[str, str]] = set()
        self._ready = False  # triggers are created once the initial data is in
        self._selects: dict[str, str] = {}
        self._row_selects: list[tuple[str, str, list[str]]] = []  # per table: (table, its SELECT of a row, locations)
        self._row_select = ""  # one SELECT of a row across every table (a join on the row key)
        self._observed: list[str] = []  # the locations those SELECTs give, in order
        self._finals: dict[tuple[str, str], str] = {}
        for rel in reversed(list(self.releases.values())):  # the newest release's statement wins
            if rel.sql is not None:
                for fld, stmt in rel.sql.read.items():
                    acc = rel.data.get(fld)
                    if acc is not None and acc.read:
                        self._finals.setdefault((fld, acc.read), stmt)
        if self.user_schema:
            schema = self.sql.schema_ or ""
            if SCHEMA_FILE.match(schema):
                raise SqlError(
                    source,
                    "database.sql.schema",
                    f"{schema!r} names a schema file: load the scenario from its file (load_scenario) to read it",
                )
            self._script(schema, self.sql.source or source, "database.sql.schema")
            self._introspect()
            for t, cols in spec.tables.items():
                if t not in self.tables:
                    raise SqlError(
                        self.sql.source or source,
                        "database.sql.schema",
                        f"does not create table {t!r} (database.tables)",
                    )
                for c in cols:
                    if f"{t}.{c}" not in self.columns:
                        raise SqlError(
                            self.sql.source or source,
                            "database.sql.schema",
                            f"does not create column {t}.{c} (database.tables)",
                        )
                self._add_rows(t)
        else:
            for t, cols in spec.tables.items():
                self._create_table(t, cols)
        self._introspect()

    # -------------------------------------------------------------- the dialect (each backend's)
    def x(self, stmt: str, params: Any = None) -> Result:
        """Run one statement with named parameters (``:row``); raises one of :attr:`errors`."""
        raise NotImplementedError

    def xmany(self, stmt: str, params: list[dict[str, Any]]) -> None:
        """Run one statement once per parameter set."""
        raise NotImplementedError

    def q(self, name: str) -> str:
        """``name`` quoted as an identifier."""
        return f'"{name}"'

    def refusal(self, e: BaseException) -> bool:
        """Is ``e`` the database refusing a statement as it runs (a constraint, a trigger's error, a
        column a trigger names that is gone), rather than a statement that can never run (syntax)?"""
        raise NotImplementedError

    def message(self, e: BaseException) -> str:
        """The database's own message of ``e``, on one line."""
        return str(e).strip().split("\n")[0]

    def table_names(self) -> list[str]:
        """The tables that exist now, sorted."""
        raise NotImplementedError

    def table_columns(self, table: str) -> list[str]:
        """The columns of ``table``, in order."""
        raise NotImplementedError

    def insert_rows(self, table: str) -> str:
        """A statement adding the row ``:row`` to ``table`` unless it is there."""
        raise NotImplementedError

    def init_value(self) -> str:
        """The expression of a row's initial value, ``'init'`` followed by its key."""
        return f"'init' || {self.q(self.key)}"

    def trigger_ddl(self, name: str, frm: str, to: str) -> list[str]:
        """The statements creating the derived trigger ``name`` that copies every write of ``frm``
        into ``to`` (same row), firing one hop as the location model does."""
        raise NotImplementedError

    def drop_trigger_ddl(self, name: str, frm: str) -> list[str]:
        """The statements dropping the derived trigger ``name`` (on ``frm``'s table)."""
        return [f"DROP TRIGGER IF EXISTS {self.q(name)}"]

    def txn_connection(self) -> Any:
        """A new connection for transactions, at :attr:`isolation`, in this run's namespace."""
        raise NotImplementedError

    def txn_begin(self, conn: Any) -> None:
        """Begin a transaction on ``conn`` (its first read takes the snapshot)."""
        conn.execute("BEGIN")

    def txn_end(self, conn: Any, commit: bool) -> None:
        """COMMIT (raises one of :attr:`errors`) or ROLLBACK the transaction on ``conn``."""
        conn.execute("COMMIT" if commit else "ROLLBACK")

    def txn_close(self, conn: Any) -> None:
        """Close a transaction's connection."""
        conn.close()

    begin_sql = "BEGIN"
    # the if-unchanged backfill as one UPDATE ... WHERE (SELECT source) = :value; False: a SELECT ...
    # FOR UPDATE then the UPDATE, in a transaction (MariaDB refuses the one statement when a trigger
    # of the UPDATE writes the table its subquery reads)
    cas_in_one_statement = True
    after_error = ""  # a statement that resets the session after a statement failed (MariaDB's trigger guard)

    # -------------------------------------------------------------- statements
    def log(self, stmt: str, params: Any, outcome: str, rec: int | None = None) -> None:
        """Add a statement to :attr:`sql_log`, issued now by :attr:`actor`, before trace record ``rec``
        (default: the next one)."""
        who, msg = self.actor
        self.sql_log.append((self.env.now, who, msg, stmt, params, outcome, self.trace.count if rec is None else rec))

    def _exec(self, stmt: str, params: Any, where: str, origin: str | None = None) -> Result:
        """Run one statement (a read); any database error is the scenario's error."""
        try:
            got = self.x(stmt, params)
        except self.errors as e:
            self.log(stmt, params, f"error: {self.message(e)}")
            raise SqlError(origin or self.source, where, f"statement {stmt!r}: {self.message(e)}") from None
        self.log(stmt, params, "ok")
        return got

    def _script(self, text: str, origin: str, where: str) -> None:
        """Run every statement of ``text`` (DDL); any error, a refusal too, is the scenario's error."""
        for stmt in split_sql(text):
            self._exec(stmt, None, where, origin)

    def _create_table(self, table: str, cols: Iterable[str]) -> None:
        q = self.q
        defs = ", ".join([f"{q(self.key)} INTEGER PRIMARY KEY"] + [f"{q(c)} TEXT" for c in cols])
        self._exec(f"CREATE TABLE {q(table)} ({defs})", None, f"create table {table}")
        self._add_rows(table)

    def _add_rows(self, table: str) -> None:
        stmt = self.insert_rows(table)
        try:
            self.xmany(stmt, [{"row": r} for r in range(self.rows)])
        except self.errors as e:
            raise SqlError(self.source, f"the rows of {table}", f"statement {stmt!r}: {self.message(e)}") from None

    def _observe_all(self, rec: int, forced: Iterable[str]) -> None:
        """:meth:`_observe` of every row at once (a SELECT of each whole table)."""
        forced = set(forced)
        q, shadow = self.q, self.shadow
        for t, _stmt, locs in self._row_selects:
            cols = ", ".join(q(loc.split(".")[1]) for loc in locs)
            got = {r[0]: r[1:] for r in self.x(f"SELECT {q(self.key)}, {cols} FROM {q(t)}").fetchall()}
            for i, loc in enumerate(locs):
                col = shadow.setdefault(loc, {})
                for row in range(self.rows):
                    values = got.get(row)
                    v = values[i] if values is not None else None
                    if loc in forced or v != col.get(row, _NO_CELL)[0]:
                        col[row] = (v, rec)

    def _introspect(self) -> None:
        """The tables and columns that exist now, as the database says, and the statements that read them."""
        names = self.table_names()
        q = self.q
        self.tables = set(names)
        self.columns = set()
        self._row_selects = []
        for t in names:
            cols = self.table_columns(t)
            data = [c for c in cols if c != DERIVED_KEY]
            self.columns.update(f"{t}.{c}" for c in data)
            if data and self.key in cols:  # a table of the user's without the row key is not observed
                self._row_selects.append(
                    (
                        t,
                        f"SELECT {', '.join(q(c) for c in data)} FROM {q(t)} WHERE {q(self.key)} = :row",
                        [f"{t}.{c}" for c in data],
                    )
                )
        self._observed = [loc for _t, _s, locs in self._row_selects for loc in locs]
        key = q(self.key)
        tables = [t for t, _s, _l in self._row_selects]
        self._row_select = ""
        if tables:
            what = ", ".join(f"{q(loc.split('.')[0])}.{q(loc.split('.')[1])}" for loc in self._observed)
            joined = " AND ".join(f"{q(t)}.{key} = :row" for t in tables)
            self._row_select = f"SELECT {what} FROM {', '.join(q(t) for t in tables)} WHERE {joined}"
        self._selects = {}
        for loc in list(self.shadow):
            if loc not in self.columns:
                del self.shadow[loc]

    def _select(self, loc: str) -> str:
        stmt = self._selects.get(loc)
        if stmt is None:
            t, c = loc.split(".")
            q = self.q
            stmt = self._selects[loc] = f"SELECT {q(c)} FROM {q(t)} WHERE {q(self.key)} = :row"
        return stmt

    def _update(self, loc: str) -> str:
        t, c = loc.split(".")
        q = self.q
        return f"UPDATE {q(t)} SET {q(c)} = :value WHERE {q(self.key)} = :row"

    def _observe(self, row: int, rec: int, forced: Iterable[str], later: Collection[str] = ()) -> list[str]:
        """Read ``row`` back from every table: a cell the statement wrote (``forced``) or whose
        value changed takes ``rec``; returns the changed cells not forced, in table and column order.
        ``later``: cells a later write of the same transaction wrote (observed with that one)."""
        forced = set(forced)
        changed = []
        shadow = self.shadow
        values: list[Any] = []
        got = self.x(self._row_select, {"row": row}).fetchone() if self._row_select else None
        if got is not None:  # every table has the row: one statement
            values = list(got)
        else:
            for _t, stmt, locs in self._row_selects:
                one = self.x(stmt, {"row": row}).fetchone()
                values += one if one is not None else [None] * len(locs)
        for loc, v in zip(self._observed, values, strict=True):
            col = shadow.get(loc)
            if col is None:
                col = shadow[loc] = {}
            old = col.get(row, _NO_CELL)
            if loc in forced:
                col[row] = (v, rec)
            elif v != old[0] and loc not in later:
                col[row] = (v, rec)
                changed.append(loc)
        return changed

    def _fired(self, locs: Iterable[str]) -> list[str]:
        """The derived triggers' targets a write of ``locs`` copies into (one hop, as the location model)."""
        fired: list[str] = []
        for loc in locs:
            fired += [to for to in self.triggers.get(loc, ()) if to in self.columns]
        return fired

    def _run_write(self, stmts: list[tuple[str, Any]], where: str, rec: int | None = None) -> int:
        """Run a write's statements all or nothing (a transaction if several); the rows they changed.

        Raises :class:`WriteRefused` with the database's message when the database refuses it at
        run time (a constraint, a trigger's RAISE, a trigger naming a column a contract dropped),
        and :class:`SqlError` for a statement that could never run (a syntax error, a parameter)."""
        many = len(stmts) > 1 and self.txn is None  # in a transaction, the transaction is the unit
        if many:
            self.x(self.begin_sql)
        changed = 0
        stmt, params = "", None
        try:
            for stmt, params in stmts:
                n = self.x(stmt, params).rowcount
                self.log(stmt, params, f"{n} row{'' if n == 1 else 's'}", rec)
                changed += n
        except self.errors as e:
            self.log(stmt, params, f"refused: {self.message(e)}", rec)
            if many:
                self.x("ROLLBACK")
            if self.after_error and self.txn is None:  # a transaction's connection: reset at rollback
                self.x(self.after_error)
            if self.refusal(e):
                raise WriteRefused(self.message(e)) from None
            raise SqlError(self.source, where, f"statement {stmt!r}: {self.message(e)}") from None
        if many:
            self.x("COMMIT")
        return changed

    # -------------------------------------------------------------- the interface
    def read(self, loc: str, row: int, sql: str | None = None) -> Cell:
        params = {"row": row}
        if sql is None:
            stmt = self._select(loc)
            got = self.x(stmt, params).fetchone()
        else:
            stmt = sql
            try:
                got = self.x(stmt, params).fetchone()
            except self.errors as e:
                self.log(stmt, params, f"error: {self.message(e)}")
                raise SqlError(
                    self.source, f"the read statement of {loc}", f"statement {stmt!r}: {self.message(e)}"
                ) from None
        value = got[0] if got is not None else None
        self.log(stmt, params, f"-> {value!r}")
        return value, self.shadow.get(loc, _NO_COLUMN).get(row, _NO_CELL)[1]

    def write_field(self, locs: Iterable[str], row: int, value: Any, rec: int, sql: str | None = None) -> list[str]:
        locs = list(locs)
        params = {"row": row, "value": value}
        if sql is None:
            stmts: list[tuple[str, Any]] = [(self._update(loc), params) for loc in locs]
        else:
            stmts = [(s, params) for s in split_sql(sql)]
        self._run_write(stmts, f"the write statement of {', '.join(locs)}", rec)
        fired = self._fired(locs)
        if self.txn is not None:  # observed once committed (see commit), into this list
            out = list(fired)
            self.txn.pending.append((row, rec, locs + fired, out))
            return out
        return fired + self._observe(row, rec, locs + fired)

    def rewrite(self, cols: Mapping[str, Any], row: int, rec: int) -> None:
        stmts = [(self._update(c), {"row": row, "value": v}) for c, v in cols.items()]
        self._run_write(stmts, "a whole-row save", rec)
        if self.txn is not None:
            self.txn.pending.append((row, rec, list(cols) + self._fired(cols), []))
            return
        self._observe(row, rec, list(cols) + self._fired(cols))

    # -------------------------------------------------------------- transactions
    def use(self, txn: Txn | None) -> None:
        super().use(txn)
        self.conn = self.main if txn is None else txn.conn

    def begin(self) -> Txn:
        if self._idle:
            conn = self._idle.pop()
        else:
            conn = self.txn_connection()
            self._opened.append(conn)
        self.txn_begin(conn)
        self.log(self.begin_text(), None, "ok")
        return Txn(conn)

    def begin_text(self) -> str:
        """How the log shows a transaction's start."""
        return f"BEGIN  -- {self.isolation}"

    def commit(self, txn: Txn) -> None:
        """COMMIT; then the rows the transaction wrote are read back on the main connection (the
        committed state: a snapshot would show another's newer commit as older values)."""
        try:
            self.txn_end(txn.conn, True)
        except self.errors as e:
            self.log("COMMIT", None, f"refused: {self.message(e)}")
            self.rollback(txn, logged=False)
            if self.refusal(e):
                raise WriteRefused(self.message(e)) from None
            raise SqlError(self.source, "commit", self.message(e)) from None
        self.log("COMMIT", None, "ok")
        self._idle.append(txn.conn)
        conn, self.conn = self.conn, self.main
        try:
            pending = txn.pending
            for k, (row, rec, forced, out) in enumerate(pending):
                later = {loc for r, _rec, locs, _out in pending[k + 1 :] if r == row for loc in locs}
                out += self._observe(row, rec, forced, later)
        finally:
            self.conn = conn
        txn.pending = []

    def rollback(self, txn: Txn, logged: bool = True) -> None:
        try:
            self.txn_end(txn.conn, False)
        except self.errors:  # the connection is unusable: do not reuse it
            pass
        else:
            self._idle.append(txn.conn)
        if logged:
            self.log("ROLLBACK", None, "ok")
        txn.pending = []

    def close_transactions(self) -> None:
        """Close every transaction's connection (a transaction still open rolls back)."""
        for conn in getattr(self, "_opened", ()):
            try:
                self.txn_close(conn)
            except self.errors:
                pass
        self._opened, self._idle = [], []

    def _put(self, loc: str, row: int, value: Any, rec: int) -> list[str]:
        return self.write_field([loc], row, value, rec)

    def backfill_write(self, spec: BackfillSpec, row: int, value: Any, rec: int) -> list[str] | None:
        user = self.sql.backfill.get(spec.to)
        if user is not None:
            params: Any = {"row": row, "value": value}
            stmts = [(s, params) for s in split_sql(user)]
        else:
            q = self.q
            t, c = spec.to.split(".")
            stmt = f"UPDATE {q(t)} SET {q(c)} = :value WHERE {q(self.key)} = :row"
            if spec.guard == "if-empty":
                stmt += f" AND {q(c)} IS NULL"
            elif spec.guard == "if-unchanged":
                if spec.from_ not in self.columns:
                    return None
                ft, fc = spec.from_.split(".")
                if self.cas_in_one_statement:
                    stmt += f" AND (SELECT {q(fc)} FROM {q(ft)} WHERE {q(self.key)} = :row) = :value"
                else:  # read the source under a row lock, then write: one transaction
                    select = f"SELECT {q(fc)} FROM {q(ft)} WHERE {q(self.key)} = :row FOR UPDATE"
                    return self._cas_backfill(spec, select, stmt, row, value, rec)
            stmts = [(stmt, {"row": row, "value": value})]
        try:
            changed = self._run_write(stmts, f"the backfill of {spec.to}", rec)
        except WriteRefused as e:
            self.trace.emit(
                self.env.now, "write_refused", engine="backfill", op="backfill", field=None, row=row, error=str(e)
            )
            return None
        if not changed:
            return None
        fired = self._fired([spec.to])
        return fired + self._observe(row, rec, [spec.to] + fired)

    def _cas_backfill(
        self, spec: BackfillSpec, select: str, update: str, row: int, value: Any, rec: int
    ) -> list[str] | None:
        """The ``if-unchanged`` backfill as two statements in a transaction (see :attr:`cas_in_one_statement`)."""
        params = {"row": row, "value": value}
        self.x(self.begin_sql)
        try:
            got = self.x(select, params).fetchone()
            changed = 0 if got is None or got[0] != value else self.x(update, params).rowcount
        except self.errors as e:
            self.x("ROLLBACK")
            if self.after_error:
                self.x(self.after_error)
            if not self.refusal(e):
                raise SqlError(self.source, f"the backfill of {spec.to}", self.message(e)) from None
            self.trace.emit(
                self.env.now,
                "write_refused",
                engine="backfill",
                op="backfill",
                field=None,
                row=row,
                error=self.message(e),
            )
            return None
        self.x("COMMIT")
        if not changed:
            return None
        fired = self._fired([spec.to])
        return fired + self._observe(row, rec, [spec.to] + fired)

    def init_data(self, write: Mapping[str, tuple[str, ...]]) -> None:
        declared = self.spec.initial
        own = self.releases.get(self.initial_release or "")
        own_sql = own.sql.write if own is not None and own.sql is not None else {}
        for fld in sorted(set(write) | set(declared)):
            locs = [loc for loc in declared.get(fld, write.get(fld, ())) if loc in self.columns]
            rec = self.trace.emit(0.0, "init", field=fld, locs=locs, rows=self.rows)
            stmt = own_sql.get(fld) if fld not in declared else None
            if stmt is not None and locs:
                for r in range(self.rows):
                    try:
                        self._run_write(
                            [(s, {"row": r, "value": f"init{r}"}) for s in split_sql(stmt)], f"the write of {fld}"
                        )
                    except WriteRefused as e:
                        raise SqlError(self.source, f"initial data of {fld}", f"refused: {e}") from None
            else:
                for loc in locs:
                    t, c = loc.split(".")
                    try:
                        self._run_write(
                            [(f"UPDATE {self.q(t)} SET {self.q(c)} = {self.init_value()}", None)], f"the write of {fld}"
                        )
                    except WriteRefused as e:
                        raise SqlError(self.source, f"initial data of {fld}", f"refused: {e}") from None
            self._observe_all(rec, locs)
        self._ready = True
        self._create_triggers()

    # -------------------------------------------------------------- triggers
    def _drop_derived_triggers(self) -> None:
        for name, frm in self._derived_triggers:
            for stmt in self.drop_trigger_ddl(name, frm):
                self._exec(stmt, None, f"drop trigger {name}")
        self._derived_triggers = []

    def _create_triggers(self) -> None:
        """The derived triggers: one per enabled copy whose two columns exist (else it copies nothing)."""
        self._drop_derived_triggers()
        if not self._ready:
            return
        for frm in sorted(self.triggers):
            for to in self.triggers[frm]:
                if frm not in self.columns or to not in self.columns:
                    continue
                name = f"{_TRIGGER_PREFIX}{len(self._derived_triggers)}"
                for stmt in self.trigger_ddl(name, frm, to):
                    self._exec(stmt, None, f"the trigger {frm} -> {to}")
                self._derived_triggers.append((name, frm))
        for pair in self.user_triggers:
            if pair not in self._user_created:
                self._user_trigger(pair, True)

    def _user_trigger(self, pair: tuple[str, str], create: bool) -> None:
        spec = self.user_trigger_sql[pair]
        where = f"database.sql.triggers ({pair[0]} -> {pair[1]})"
        if create:
            self._script(spec.create, self.source, where)
            self._user_created.add(pair)
        else:
            drop = spec.drop
            if drop is None:
                words = spec.create.split()
                up = [w.upper() for w in words]
                at = up.index("TRIGGER") + 1 if "TRIGGER" in up else len(words)
                if at + 2 < len(words) and up[at : at + 3] == ["IF", "NOT", "EXISTS"]:
                    at += 3
                if at >= len(words):
                    raise SqlError(self.source, where, "cannot find the trigger's name in 'create': give 'drop'")
                drop = f"DROP TRIGGER IF EXISTS {words[at]}"
            self._script(drop, self.source, where)
            self._user_created.discard(pair)

    def set_trigger(self, trig: TriggerSpec, enabled: bool) -> None:
        self.actor = ("operator", None)
        pair = (trig.from_, trig.to)
        if pair in self.user_trigger_sql:
            if enabled and pair not in self.user_triggers:
                self.user_triggers.append(pair)
                if self._ready:
                    self._user_trigger(pair, True)
            elif not enabled and pair in self.user_triggers:
                self.user_triggers.remove(pair)
                if pair in self._user_created:
                    self._user_trigger(pair, False)
            return
        self._enable(trig, enabled)
        self._create_triggers()

    # -------------------------------------------------------------- schema changes
    def expand(self, items: Iterable[str]) -> None:
        self.actor = ("operator", None)
        self._drop_derived_triggers()
        for item in items:
            user = self.sql.expand.get(item)
            if user is not None:
                self._script(user, self.source, f"database.sql.expand[{item!r}]")
            elif "." in item:
                t, c = item.split(".")
                if t not in self.tables:
                    self._create_table(t, [c])
                elif item not in self.columns:
                    self._exec(f"ALTER TABLE {self.q(t)} ADD COLUMN {self.q(c)} TEXT", None, f"expand {item}")
            elif item not in self.tables:
                self._create_table(item, [])
            self._introspect()
        self._create_triggers()

    def contract(self, items: Iterable[str]) -> None:
        self.actor = ("operator", None)
        self._drop_derived_triggers()
        for item in items:
            user = self.sql.contract.get(item)
            if user is not None:
                self._script(user, self.source, f"database.sql.contract[{item!r}]")
            elif "." in item:
                if item in self.columns:
                    t, c = item.split(".")
                    # refused by SQLite while one of the user's triggers fires on the column
                    self._exec(f"ALTER TABLE {self.q(t)} DROP COLUMN {self.q(c)}", None, f"contract {item}")
            elif item in self.tables:
                self._exec(f"DROP TABLE {self.q(item)}", None, f"contract {item}")
            self._introspect()
        self._create_triggers()

    # -------------------------------------------------------------- the end of the run
    def column_values(self, loc: str, field: str) -> list[Any]:
        self.actor = ("final", None)
        stmt = self._finals.get((field, loc))
        if stmt is not None:
            out = []
            for r in range(self.rows):
                got = self._exec(stmt, {"row": r}, f"the read statement of {field}").fetchone()
                out.append(got[0] if got is not None else None)
            return out
        t, c = loc.split(".")
        q = self.q
        values = dict(self._exec(f"SELECT {q(self.key)}, {q(c)} FROM {q(t)}", None, f"the values of {loc}").fetchall())
        return [values.get(r) for r in range(self.rows)]


__all__ = ["DERIVED_KEY", "Result", "SqlDatabase", "SqlError", "split_sql"]
