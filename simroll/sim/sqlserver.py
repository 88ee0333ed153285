"""The database as SQL on a real server: ``database: {backend: postgresql | mariadb, url: ...}``,
through SQLAlchemy Core (the ``sql`` extra: ``pip install 'simroll[sql]'``). What every SQL
backend shares is in :mod:`simroll.sim.sqlbase`; here, the connection and the two dialects.

Each run works in a scratch namespace of its own on the server -- a schema on PostgreSQL, a
database on MariaDB -- created when the run starts and dropped when it ends, so runs never see
each other's tables. A run on a server is for fidelity, not speed: every statement is a round
trip.

The derived triggers fire one hop, as the location model's do, in each dialect's own way
(docs/sql.md): PostgreSQL triggers recurse, so the derived one fires only for a statement that no
trigger issued (``WHEN (pg_trigger_depth() < 1)``); MariaDB has no ``UPDATE OF column`` trigger
and refuses a trigger that updates its own table, so the derived one fires when the column's value
changed, and a copy within one table is a ``BEFORE UPDATE`` that sets ``NEW.column``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from typing import Any

import simpy

from simroll.scenario.spec import DatabaseSpec, ReleaseSpec
from simroll.sim.chooser import Chooser
from simroll.sim.sqlbase import Result, SqlDatabase, SqlError
from simroll.sim.trace import Trace

try:
    import sqlalchemy
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.pool import NullPool
except ImportError:  # pragma: no cover - depends on the environment
    sqlalchemy = None  # type: ignore[assignment]  # the backend says what to install when asked for
    SQLAlchemyError = Exception  # type: ignore[misc,assignment]  # never raised without sqlalchemy

_scratch = itertools.count()


class ServerDatabase(SqlDatabase):
    """The database of one run on a PostgreSQL or MariaDB server (see the module's docstring)."""

    backend = "server"
    errors = (SQLAlchemyError,)
    namespace_ddl = ""  # CREATE SCHEMA / CREATE DATABASE
    use_ddl = ""
    drop_ddl = ""

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
        if sqlalchemy is None:
            raise SqlError(
                source, "database.backend", f"{self.backend} needs the 'sql' extra: pip install 'simroll[sql]'"
            )
        if not spec.url:
            raise SqlError(source, "database.url", f"backend {self.backend} needs the server's URL")
        self._texts: dict[str, Any] = {}
        self.scratch = f"simroll_{os.getpid()}_{next(_scratch)}"
        try:
            self.engine = sqlalchemy.create_engine(spec.url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
            self.conn = self.engine.connect()
            self.conn.exec_driver_sql(self.namespace_ddl.format(self.scratch))
            self.conn.exec_driver_sql(self.use_ddl.format(self.scratch))
            if transactions:  # never wait for a lock a transaction holds across simulated time: fail
                for stmt in self.no_wait:
                    self.conn.exec_driver_sql(stmt)
        except SQLAlchemyError as e:
            raise SqlError(source, "database.url", f"cannot use the server: {self.message(e)}") from None
        except ValueError as e:  # sqlalchemy.exc.ArgumentError is also one: a URL it cannot parse
            raise SqlError(source, "database.url", f"not a database URL: {e}") from None
        self.closed = False
        try:
            super().__init__(env, spec, chooser, trace, releases, initial_release, source, transactions)
        except BaseException:
            self.close()
            raise

    def x(self, stmt: str, params: Any = None) -> Result:
        t = self._texts.get(stmt)
        if t is None:
            t = self._texts[stmt] = sqlalchemy.text(stmt)
        return self.conn.execute(t, params or {})

    def xmany(self, stmt: str, params: list[dict[str, Any]]) -> None:
        self.conn.execute(sqlalchemy.text(stmt), params)

    def message(self, e: BaseException) -> str:
        orig = getattr(e, "orig", None)
        if orig is not None:
            diag = getattr(orig, "diag", None)  # psycopg: the primary message, without context lines
            if diag is not None and getattr(diag, "message_primary", None):
                return str(diag.message_primary)
            args: tuple[Any, ...] = tuple(getattr(orig, "args", ()))
            if len(args) == 2 and isinstance(args[1], str):  # pymysql: (errno, message)
                return args[1]
            return str(orig).strip().split("\n")[0]
        return str(e).strip().split("\n")[0]

    no_wait: tuple[str, ...] = ()  # the session settings that make a lock wait fail at once

    def txn_connection(self) -> Any:
        conn = self.engine.connect().execution_options(isolation_level=self.isolation.upper())
        conn.exec_driver_sql(self.use_ddl.format(self.scratch))
        for stmt in self.no_wait:
            conn.exec_driver_sql(stmt)
        conn.commit()
        return conn

    def txn_begin(self, conn: Any) -> None:
        """Nothing to send: the connection begins a transaction at its first statement (the read)."""

    def txn_end(self, conn: Any, commit: bool) -> None:
        if commit:
            conn.commit()
            return
        conn.rollback()
        if self.after_error:
            conn.exec_driver_sql(self.after_error)
            conn.commit()

    def begin_text(self) -> str:
        return f"BEGIN ISOLATION LEVEL {self.isolation.upper()}"

    def close(self) -> None:
        if getattr(self, "closed", True):
            return
        self.closed = True
        self.close_transactions()
        self.conn = getattr(self, "main", self.conn)
        try:
            self.conn.exec_driver_sql(self.drop_ddl.format(self.scratch))
        finally:
            self.conn.close()
            self.engine.dispose()


class PostgresDatabase(ServerDatabase):
    """PostgreSQL (tried with 15, psycopg 3)."""

    backend = "postgresql"
    namespace_ddl = 'CREATE SCHEMA "{}"'
    use_ddl = 'SET search_path TO "{}"'
    drop_ddl = 'DROP SCHEMA "{}" CASCADE'
    no_wait = ("SET lock_timeout = '1ms'",)  # 0 would mean: wait for ever

    def refusal(self, e: BaseException) -> bool:
        state = getattr(getattr(e, "orig", None), "sqlstate", None)
        return state not in ("42601", "42883", "08000", "08003", "08006")  # syntax; no such function; connection

    def table_names(self) -> list[str]:
        rows = self.x(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
            "AND table_type = 'BASE TABLE' ORDER BY table_name"
        )
        return [r[0] for r in rows.fetchall()]

    def table_columns(self, table: str) -> list[str]:
        rows = self.x(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = :t ORDER BY ordinal_position",
            {"t": table},
        )
        return [r[0] for r in rows.fetchall()]

    def insert_rows(self, table: str) -> str:
        return f"INSERT INTO {self.q(table)} ({self.q(self.key)}) VALUES (:row) ON CONFLICT DO NOTHING"

    def trigger_ddl(self, name: str, frm: str, to: str) -> list[str]:
        q, key = self.q, self.q(self.key)
        ft, fc = frm.split(".")
        tt, tc = to.split(".")
        return [
            f"CREATE FUNCTION {q(name)}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"UPDATE {q(tt)} SET {q(tc)} = NEW.{q(fc)} WHERE {key} = NEW.{key}; RETURN NULL; END $$",
            f"CREATE TRIGGER {q(name)} AFTER UPDATE OF {q(fc)} ON {q(ft)} FOR EACH ROW "
            f"WHEN (pg_trigger_depth() < 1) EXECUTE FUNCTION {q(name)}()",
        ]

    def drop_trigger_ddl(self, name: str, frm: str) -> list[str]:
        return [f"DROP FUNCTION IF EXISTS {self.q(name)}() CASCADE"]  # CASCADE: its trigger too


class MariaDatabase(ServerDatabase):
    """MariaDB (tried with 10.11, PyMySQL)."""

    backend = "mariadb"
    namespace_ddl = "CREATE DATABASE `{}`"
    use_ddl = "USE `{}`"
    drop_ddl = "DROP DATABASE `{}`"
    begin_sql = "START TRANSACTION"
    cas_in_one_statement = False
    after_error = "SET @simroll_in_trigger = NULL"  # a failed statement leaves the derived triggers' guard set
    no_wait = ("SET SESSION innodb_lock_wait_timeout = 0", "SET SESSION lock_wait_timeout = 0")

    def q(self, name: str) -> str:
        return f"`{name}`"

    def refusal(self, e: BaseException) -> bool:
        args = getattr(getattr(e, "orig", None), "args", ())
        errno = args[0] if args else None
        return errno not in (1064, 1149, 2006, 2013)  # syntax errors; the connection gone

    def init_value(self) -> str:
        return f"CONCAT('init', {self.q(self.key)})"

    def table_names(self) -> list[str]:
        rows = self.x(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() "
            "AND table_type = 'BASE TABLE' ORDER BY table_name"
        )
        return [r[0] for r in rows.fetchall()]

    def table_columns(self, table: str) -> list[str]:
        rows = self.x(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() "
            "AND table_name = :t ORDER BY ordinal_position",
            {"t": table},
        )
        return [r[0] for r in rows.fetchall()]

    def insert_rows(self, table: str) -> str:
        return f"INSERT IGNORE INTO {self.q(table)} ({self.q(self.key)}) VALUES (:row)"

    def trigger_ddl(self, name: str, frm: str, to: str) -> list[str]:
        q, key = self.q, self.q(self.key)
        ft, fc = frm.split(".")
        tt, tc = to.split(".")
        changed = f"NOT (NEW.{q(fc)} <=> OLD.{q(fc)})"
        if ft == tt:  # a trigger may not UPDATE its own table: set the row's new value before it is written
            return [
                f"CREATE TRIGGER {q(name)} BEFORE UPDATE ON {q(ft)} FOR EACH ROW "
                f"IF {changed} THEN SET NEW.{q(tc)} = NEW.{q(fc)}; END IF"
            ]
        return [
            f"CREATE TRIGGER {q(name)} AFTER UPDATE ON {q(ft)} FOR EACH ROW "
            f"IF {changed} AND @simroll_in_trigger IS NULL THEN SET @simroll_in_trigger = 1; "
            f"UPDATE {q(tt)} SET {q(tc)} = NEW.{q(fc)} WHERE {key} = NEW.{key}; "
            f"SET @simroll_in_trigger = NULL; END IF"
        ]

    def drop_trigger_ddl(self, name: str, frm: str) -> list[str]:
        return [f"DROP TRIGGER IF EXISTS {self.q(name)}"]


__all__ = ["MariaDatabase", "PostgresDatabase", "ServerDatabase"]
