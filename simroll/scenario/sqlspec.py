"""The database on real SQL: the scenario models of ``database.backend``, ``database.sql`` and a
release's ``sql`` (its own statements), and the loader's resolution of a schema file.

Without ``database.sql`` a SQL backend derives every statement from the locations (tables,
``ALTER TABLE`` for expand and contract, one trigger per enabled copy, the backfill as
``UPDATE``). Each key of ``database.sql`` replaces one of those derived statements with the
user's own: the schema, the DDL of an expand or contract item, a trigger, a backfill. A
release's ``sql`` gives the statement it reads or writes one field with, with the named
parameters ``:row`` (the row key) and ``:value`` (the value written, or read by the backfill).
See docs/sql.md.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from simroll._io import read_input
from simroll.errors import ScenarioError

MAX_SCHEMA_BYTES = 1_000_000
"""The largest schema file read (the limit of a scenario file)."""

BACKENDS = ("location", "sqlite", "postgresql", "mariadb")
"""``database.backend``: the location model (the default, fastest), SQL on an embedded SQLite, or
SQL on a PostgreSQL or MariaDB server (``database.url``)."""

Backend = Literal["location", "sqlite", "postgresql", "mariadb"]

ISOLATIONS: dict[str, tuple[str, ...]] = {
    "location": ("serializable",),
    "sqlite": ("serializable",),
    "postgresql": ("read committed", "repeatable read", "serializable"),
    "mariadb": ("read committed", "repeatable read"),
}
"""The isolation levels of a handler's transaction each backend offers (``database.isolation``)."""

ISOLATION_WHY = {
    "location": "the location model validates a transaction's reads at commit",
    "sqlite": "SQLite's transactions are serialisable",
    "mariadb": "InnoDB's serializable locks every row a transaction reads until it commits, across simulated "
    "time, and the simulation cannot wait for a lock",
}

_Loc = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_]\w*\.[A-Za-z_]\w*$")]
_Item = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)?$")]
_Field = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]*$", max_length=100)]
Sql = Annotated[str, StringConstraints(min_length=1, max_length=MAX_SCHEMA_BYTES)]

SCHEMA_FILE = re.compile(r"^[\w.\-/]+\.sql$")
"""A ``schema:`` value that names a file (beside the scenario) rather than giving the SQL inline."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)


class SqlTriggerSpec(_Frozen):
    """The user's own SQL of a trigger that ``enable_trigger`` / ``disable_trigger`` (or
    ``database.triggers``) names by ``from`` and ``to``."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
    from_: _Loc = Field(alias="from")
    to: _Loc
    create: Sql = Field(description="Statement(s) run when the trigger is enabled (CREATE TRIGGER ...).")
    drop: Sql | None = Field(
        None, description="Statement(s) run when it is disabled; default: DROP TRIGGER <the name in 'create'>."
    )


class DatabaseSqlSpec(_Frozen):
    """The user's own SQL; every key left out is derived from the locations."""

    schema_: Sql | None = Field(
        None,
        alias="schema",
        description="The DDL run at the start, inline, or the name of a .sql file in the scenario's folder. "
        "It must create every column of database.tables; 'key' is each table's row key.",
    )
    key: _Field = Field("id", description="With 'schema': the row key column of every table (the :row parameter).")
    expand: dict[_Item, Sql] = Field(
        default_factory=dict, description="Expand item (table or table.column) -> the DDL that adds it."
    )
    contract: dict[_Item, Sql] = Field(
        default_factory=dict, description="Contract item (table or table.column) -> the DDL that drops it."
    )
    triggers: list[SqlTriggerSpec] = Field(default_factory=list, description="Triggers in the dialect's own syntax.")
    backfill: dict[_Loc, Sql] = Field(
        default_factory=dict,
        description="Backfill target location -> the statement that writes one row (:row, and :value, the "
        "value the backfill read); it wrote when it changed a row.",
    )
    source: str | None = Field(
        None, exclude=True, description="Where 'schema' was read from (set by the loader; not written out)."
    )

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class ReleaseSqlSpec(_Frozen):
    """A release's own statements, per logical field (default: derived from its locations)."""

    read: dict[_Field, Sql] = Field(
        default_factory=dict, description="Field -> SELECT returning its value in the first column (:row)."
    )
    write: dict[_Field, Sql] = Field(
        default_factory=dict, description="Field -> the statement(s) writing it (:row, :value)."
    )


def resolve_schema_file(sql: DatabaseSqlSpec | None, folder: Path | None, source: str) -> DatabaseSqlSpec | None:
    """``sql`` with a schema file name replaced by the file's text, read from ``folder`` (the scenario's).

    Refused (:class:`ScenarioError`): no folder (a scenario given as text), a file outside the
    folder, not a regular file, over :data:`MAX_SCHEMA_BYTES`, not UTF-8, or empty."""
    if sql is None or sql.schema_ is None or not SCHEMA_FILE.match(sql.schema_):
        return sql
    where = "database.sql.schema"
    name = sql.schema_
    if folder is None:
        raise ScenarioError(
            source, where, f"{name!r} names a schema file, but a scenario given as text has no folder to read it from"
        )
    folder = folder.resolve()
    target = (folder / name).resolve()
    if not target.is_relative_to(folder):
        raise ScenarioError(source, where, f"{name!r} is outside the scenario's folder {str(folder)!r}")
    try:
        raw = read_input(target, MAX_SCHEMA_BYTES)
    except ValueError as e:
        raise ScenarioError(source, where, f"{name!r}: {e}, expected a .sql file") from None
    except OSError as e:
        raise ScenarioError(source, where, f"{name!r}: cannot read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ScenarioError(source, where, f"{name!r}: not UTF-8 text") from None
    if not text.strip():
        raise ScenarioError(source, where, f"{name!r}: empty, expected DDL")
    return sql.model_copy(update={"schema_": text, "source": str(target)})


def check_sql(db: Any, release_sql: dict[str, ReleaseSqlSpec | None], source: str, folder: Path | None) -> Any:
    """The SQL keys of a scenario at load time; returns ``db.sql`` with a schema file read.

    ``db``: the scenario's DatabaseSpec; ``release_sql``: release name -> its ``sql``. The user's SQL
    needs a SQL backend, a server backend its URL and only a server backend takes one. On SQLite the
    statements are checked too: the schema must run on an empty database and create every column of
    ``database.tables`` (and each table's row key), and every other statement must parse."""
    backend, url, sql = db.backend, db.url, db.sql
    isolation = getattr(db, "isolation", None)
    if isolation is not None and isolation not in ISOLATIONS[backend]:
        raise ScenarioError(
            source,
            "database.isolation",
            f"{isolation!r} is not a level of backend {backend}: expected {' or '.join(ISOLATIONS[backend])}"
            + (f" ({ISOLATION_WHY[backend]})" if backend in ISOLATION_WHY else ""),
        )
    if backend in ("postgresql", "mariadb") and not url:
        raise ScenarioError(source, "database.url", f"backend {backend} needs the server's URL (database.url)")
    if url and backend not in ("postgresql", "mariadb"):
        raise ScenarioError(source, "database.url", f"a URL goes with backend postgresql or mariadb, not {backend}")
    if backend == "location":
        if sql is not None:
            raise ScenarioError(source, "database.sql", "the user's SQL needs a SQL backend: add 'backend: sqlite'")
        for name, rs in release_sql.items():
            if rs is not None:
                raise ScenarioError(
                    source, f"releases.{name}.sql", "the user's SQL needs a SQL backend: add database.backend: sqlite"
                )
        return sql
    sql = resolve_schema_file(sql, folder, source)
    if backend == "sqlite":
        _check_sqlite(db.tables, sql, release_sql, source)
    return sql


_SYNTAX = ("syntax error", "incomplete input", "unrecognized token")


def _statements(text: str) -> list[str]:
    """``text`` split at the semicolons that end a statement (a trigger body's do not), by SQLite's rules."""
    out, start = [], 0
    for i, ch in enumerate(text):
        if ch == ";" and sqlite3.complete_statement(text[start : i + 1]):
            if text[start : i + 1].strip().rstrip(";").strip():
                out.append(text[start : i + 1].strip())
            start = i + 1
    rest = text[start:].strip()
    if rest and not rest.startswith("--"):
        out.append(rest)
    return out


def _check_sqlite(
    tables: dict[str, list[str]],
    sql: DatabaseSqlSpec | None,
    release_sql: dict[str, ReleaseSqlSpec | None],
    source: str,
) -> None:
    """SQLite's statements, checked on a scratch in-memory database (see :func:`check_sql`)."""
    conn = sqlite3.connect(":memory:")
    try:
        if sql is not None and sql.schema_ is not None:
            origin = sql.source or source
            for stmt in _statements(sql.schema_):
                try:
                    conn.execute(stmt)
                except sqlite3.Error as e:
                    raise ScenarioError(origin, "database.sql.schema", f"statement {stmt!r}: {e}") from None
            for t, cols in tables.items():
                have = [r[1] for r in conn.execute(f'PRAGMA table_info("{t}")')]
                if not have:
                    raise ScenarioError(origin, "database.sql.schema", f"does not create table {t!r} (database.tables)")
                for c in [sql.key, *cols]:
                    if c not in have:
                        what = "the row key column" if c == sql.key else "column"
                        raise ScenarioError(
                            origin, "database.sql.schema", f"does not create {what} {t}.{c} (database.tables)"
                        )

        def parses(text: str, where: str) -> None:
            for stmt in _statements(text):
                try:
                    conn.execute(f"EXPLAIN {stmt}", {"row": 0, "value": ""})
                except sqlite3.Error as e:
                    if any(s in str(e) for s in _SYNTAX):
                        raise ScenarioError(source, where, f"statement {stmt!r}: {e}") from None

        if sql is not None:
            for item, text in sql.expand.items():
                parses(text, f"database.sql.expand.{item}")
            for item, text in sql.contract.items():
                parses(text, f"database.sql.contract.{item}")
            for j, trig in enumerate(sql.triggers):
                parses(trig.create, f"database.sql.triggers[{j}].create")
                if trig.drop is not None:
                    parses(trig.drop, f"database.sql.triggers[{j}].drop")
            for loc, text in sql.backfill.items():
                parses(text, f"database.sql.backfill.{loc}")
        for name, rs in release_sql.items():
            if rs is None:
                continue
            for key, stmts in (("read", rs.read), ("write", rs.write)):
                for fld, text in stmts.items():
                    parses(text, f"releases.{name}.sql.{key}.{fld}")
    finally:
        conn.close()


__all__ = [
    "BACKENDS",
    "Backend",
    "DatabaseSqlSpec",
    "ISOLATIONS",
    "MAX_SCHEMA_BYTES",
    "ReleaseSqlSpec",
    "SqlTriggerSpec",
    "check_sql",
    "resolve_schema_file",
]
