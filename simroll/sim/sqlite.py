"""The database as SQL on an embedded, in-memory SQLite (``database: {backend: sqlite}``): the
standard library's ``sqlite3``, nothing to install. What every SQL backend shares is in
:mod:`simroll.sim.sqlbase`; here, SQLite's connection and dialect.

SQLite's ``recursive_triggers`` is off (its default): a trigger never fires itself again while it
runs, so a two-way sync trigger stops after one round, as in the location model; a chain
``a -> b -> c`` cascades (docs/sql.md).
"""

from __future__ import annotations

import sqlite3
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
    ):
        self.conn = sqlite3.connect(":memory:", isolation_level=None)  # autocommit: BEGIN only where asked
        super().__init__(env, spec, chooser, trace, releases, initial_release, source)

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
        self.conn.close()


__all__ = ["SqliteDatabase"]
