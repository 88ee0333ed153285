"""Which database a run uses: ``database.backend`` -> the backend's class (see
:class:`~simroll.sim.database.Database`)."""

from __future__ import annotations

import simpy

from simroll.scenario.spec import Scenario
from simroll.sim.chooser import Chooser
from simroll.sim.database import Database, LocationDatabase
from simroll.sim.sqlbase import SqlDatabase
from simroll.sim.trace import Trace


def _sql_backend(name: str) -> type[SqlDatabase] | None:
    """The class of SQL backend ``name``, or None for the location model. Imported on demand:
    the server backends pull in SQLAlchemy, which every ``simroll run`` would otherwise pay for."""
    if name == "sqlite":
        from simroll.sim.sqlite import SqliteDatabase

        return SqliteDatabase
    if name == "postgresql":
        from simroll.sim.sqlserver import PostgresDatabase

        return PostgresDatabase
    if name == "mariadb":
        from simroll.sim.sqlserver import MariaDatabase

        return MariaDatabase
    return None


def open_database(env: simpy.Environment, scenario: Scenario, chooser: Chooser, trace: Trace) -> Database:
    """The database of one run of ``scenario``, on its backend."""
    spec = scenario.database
    sql = _sql_backend(spec.backend)
    if sql is None:
        return LocationDatabase(env, spec, chooser, trace)
    return sql(
        env,
        spec,
        chooser,
        trace,
        releases=scenario.releases,
        initial_release=scenario.engine_list()[0].release,
        source=f"scenario {scenario.name}",
        transactions=uses_transactions(scenario),
    )


def uses_transactions(scenario: Scenario) -> bool:
    """Does some handler of ``scenario`` (the workload's, a release's own) run in a transaction?"""
    handlers = [*scenario.workload.handlers.values()]
    for rel in scenario.releases.values():
        handlers += (getattr(rel, "handlers", None) or {}).values()
    return any(h.transaction for h in handlers)


__all__ = ["open_database", "uses_transactions"]
