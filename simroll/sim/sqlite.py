"""The database as SQL on an embedded, in-memory SQLite (``database: {backend: sqlite}``): the
standard library's ``sqlite3``, nothing to install. What every SQL backend shares is in
:mod:`simroll.sim.sqlbase`; here, SQLite's connection and dialect.

SQLite's ``recursive_triggers`` is off (its default): a trigger never fires itself again while it
runs, so a two-way sync trigger stops after one round, as in the location model; a chain
``a -> b -> c`` cascades (docs/sql.md).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from collections.abc import Mapping
from typing import Any

import simpy

from simroll.scenario.spec import DatabaseSpec, ReleaseSpec
from simroll.sim.chooser import Chooser
from simroll.sim.sqlbase import Result, SqlDatabase
from simroll.sim.trace import Trace


class SqliteDatabase(SqlDatabase):
    """The database of one run on an in-memory SQLite."""

    backend = "sqlite"
    errors = (sqlite3.Error,)

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
        self.folder: str | None = None
        if transactions:
            # a handler's transaction needs a connection of its own beside the main one: a file in
            # WAL mode (a reader never blocks a writer), in a private temporary folder removed at
            # the end. timeout 0: a statement that would wait for a lock fails at once, SQLITE_BUSY
            self.folder = tempfile.mkdtemp(prefix="simroll-sqlite-")
            self.path = os.path.join(self.folder, "run.db")
            self.conn = self._connect()
            self.conn.execute("PRAGMA journal_mode = WAL")
        else:
            self.conn = sqlite3.connect(":memory:", isolation_level=None)  # autocommit: BEGIN only where asked
        super().__init__(env, spec, chooser, trace, releases, initial_release, source, transactions)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=0)
        conn.execute("PRAGMA synchronous = OFF")  # scratch data: nothing to make durable
        return conn

    def txn_connection(self) -> sqlite3.Connection:
        return self._connect()

    def begin_text(self) -> str:
        return "BEGIN  -- deferred: serializable, a snapshot from its first read"

    def message(self, e: BaseException) -> str:
        text = super().message(e)
        name = getattr(e, "sqlite_errorname", None)
        if isinstance(name, str) and name.startswith("SQLITE_BUSY"):  # which busy: SQLITE_BUSY_SNAPSHOT
            return f"{text} ({name})"
        return text

    def x(self, stmt: str, params: Any = None) -> Result:
        return self.conn.execute(stmt, params if params is not None else ())

    def xmany(self, stmt: str, params: list[dict[str, Any]]) -> None:
        self.conn.executemany(stmt, params)

    def refusal(self, e: BaseException) -> bool:
        if isinstance(e, sqlite3.IntegrityError):  # a constraint, RAISE(ABORT | FAIL | ROLLBACK, ...)
            return True
        text = str(e)
        return isinstance(e, sqlite3.OperationalError) and "syntax error" not in text and "incomplete input" not in text

    def table_names(self) -> list[str]:
        rows = self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
        return [r[0] for r in rows]

    def table_columns(self, table: str) -> list[str]:
        return [r[1] for r in self.conn.execute(f"PRAGMA table_info({self.q(table)})")]

    def insert_rows(self, table: str) -> str:
        return f"INSERT OR IGNORE INTO {self.q(table)} ({self.q(self.key)}) VALUES (:row)"

    def trigger_ddl(self, name: str, frm: str, to: str) -> list[str]:
        q, key = self.q, self.q(self.key)
        ft, fc = frm.split(".")
        tt, tc = to.split(".")
        return [
            f"CREATE TRIGGER {q(name)} AFTER UPDATE OF {q(fc)} ON {q(ft)} BEGIN "
            f"UPDATE {q(tt)} SET {q(tc)} = NEW.{q(fc)} WHERE {key} = NEW.{key}; END"
        ]

    def close(self) -> None:
        self.close_transactions()
        conn: sqlite3.Connection = getattr(self, "main", self.conn)
        conn.close()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


__all__ = ["SqliteDatabase"]
