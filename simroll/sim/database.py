"""The shared database: which tables and columns exist, the value of every cell, triggers,
schema changes (expand, contract) and the backfill utility that copies data row by row.

:class:`Database` is the interface every backend implements, with what they share (the
schema as sets of locations, the enabled triggers, the backfill process, the end-of-run
records); :class:`LocationDatabase` is the location model, the default and fastest backend;
:mod:`simroll.sim.sqlite` runs the same calls as SQL.

A cell holds ``(value, record)``: the value and the number of the trace record that wrote
it, so a read can name the write it saw as its cause.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import simpy

from simroll.scenario.spec import BackfillSpec, DatabaseSpec, TriggerSpec
from simroll.sim.chooser import DELAY_LEVELS, Chooser
from simroll.sim.trace import Trace

Cell = tuple[Any, int | None]
_NO_CELL: Cell = (None, None)
_NO_COLUMN: dict[int, Cell] = {}


class WriteRefused(Exception):
    """The database refused a statement (a trigger raised, a constraint failed); the message is
    the database's own. The handler's operation fails (a ``write_refused`` record)."""


DEFAULT_ISOLATION = {
    "location": "serializable",
    "sqlite": "serializable",
    "postgresql": "read committed",
    "mariadb": "repeatable read",
}
"""The isolation level of a handler's transaction (``transaction: true``) when ``database.isolation``
is not given: the backend's own default (docs/sql.md, Transactions)."""


class Txn:
    """One handling's transaction (``transaction: true``): begun when the message is taken, before
    its reads; committed after its writes, or rolled back.

    ``reads``: the location model's read set, (location, row) -> the record of the write it read;
    ``conn``: a SQL backend's connection of its own."""

    __slots__ = ("conn", "pending", "reads")

    def __init__(self, conn: Any = None):
        self.conn = conn
        self.reads: dict[tuple[str, int], int | None] = {}
        # a SQL backend's writes, observed once committed: (row, record, locations written, trigger targets out)
        self.pending: list[tuple[int, int, list[str], list[str]]] = []


class Database:
    """The database of one run, from the scenario's initial schema: what every backend shares.

    A backend implements the storage: :meth:`read`, :meth:`write_field`, :meth:`rewrite`,
    :meth:`_put`, :meth:`init_data`, :meth:`expand`, :meth:`contract`, :meth:`set_trigger`,
    :meth:`column_values`; and keeps :attr:`columns` and :attr:`tables` (the locations that
    exist now) up to date, which the engines test before they touch a location.
    """

    backend = "abstract"
    txn: Txn | None = None
    """The transaction the engine's statements run in now (set around a transactional handler's
    reads and writes), None: each statement on its own."""
    actor: tuple[str, int | None] = ("init", None)
    """Who issues the statements now (engine and message; ``backfill``, ``operator``): a SQL
    backend's statement log names it."""

    def __init__(self, env: simpy.Environment, spec: DatabaseSpec, chooser: Chooser, trace: Trace):
        self.env = env
        self.spec = spec
        self.chooser = chooser
        self.trace = trace
        self.rows = spec.rows
        self.isolation = spec.isolation or DEFAULT_ISOLATION.get(spec.backend, "serializable")
        self.sql_log: deque[tuple[Any, ...]] | None = None  # a SQL backend's statement log (see sqlbase)
        self.markers: dict[tuple[str, str], int] = {}  # (from, to) -> the row a crashed backfill pass died at
        # the service table (database.service_records, issue 15): engine -> [service, release, RPC version,
        # state]; a plain internal table on every backend (not SQL): only the engines' auto caps read it
        self.service_table: dict[str, list[Any]] = {}
        # issue 20: kills of the backfill beyond a plan's crash_at_row (the kernel sets them)
        self.row_faults: list[int] = []  # rows at which the first pass to read them dies (faults: at_row)
        self.fault_cause: list[int] = []  # the fault record of each of those, as emitted
        self.crash_choices = False  # search: {backfill_crash: true}: every row read is a choice point
        self.bf_read = -1  # the running pass's bf_read record of the row it is copying (-1: none yet)
        # existing columns and tables
        self.columns: set[str] = set()
        self.tables: set[str] = set()
        for t, cols in spec.tables.items():
            self.tables.add(t)
            for c in cols:
                self.columns.add(f"{t}.{c}")
        # enabled triggers: source location -> target locations, in the order enabled
        self.triggers: dict[str, list[str]] = {}
        for trig in spec.triggers:
            self._enable(trig, True)

    def _enable(self, trig: TriggerSpec, enabled: bool) -> None:
        targets = self.triggers.setdefault(trig.from_, [])
        if enabled and trig.to not in targets:
            targets.append(trig.to)
        elif not enabled and trig.to in targets:
            targets.remove(trig.to)

    def missing(self, locs: Iterable[str]) -> list[str]:
        """The locations of ``locs`` that are not columns (now)."""
        cols = self.columns
        return [loc for loc in locs if loc not in cols]

    # -------------------------------------------------------------- the storage (each backend's)
    def init_data(self, write: Mapping[str, tuple[str, ...]]) -> None:
        """Initial values of every field, where the scenario declares them or else where the
        first engine's release writes them (``write``)."""
        raise NotImplementedError

    def set_trigger(self, trig: TriggerSpec, enabled: bool) -> None:
        """Enable or disable the trigger copying writes of ``trig.from_`` into ``trig.to``."""
        raise NotImplementedError

    def read(self, loc: str, row: int, sql: str | None = None) -> Cell:
        """The value of ``loc`` at ``row`` and the record that wrote it; ``sql``: the reader's own statement."""
        raise NotImplementedError

    def write_field(self, locs: Iterable[str], row: int, value: Any, rec: int, sql: str | None = None) -> list[str]:
        """Write one field's ``locs`` (with the writer's own statement ``sql``, if it has one), as
        one statement or savepoint: all or nothing. Returns the locations its triggers wrote;
        raises :class:`WriteRefused`."""
        raise NotImplementedError

    def rewrite(self, cols: Mapping[str, Any], row: int, rec: int) -> None:
        """A whole-row save: put back ``cols`` (location -> value), all or nothing; raises :class:`WriteRefused`."""
        raise NotImplementedError

    def _put(self, loc: str, row: int, value: Any, rec: int) -> list[str]:
        """The backfill's write of one cell; returns the trigger targets written."""
        raise NotImplementedError

    def expand(self, items: Iterable[str]) -> None:
        """Add tables and columns (``table`` or ``table.column``)."""
        raise NotImplementedError

    def contract(self, items: Iterable[str]) -> None:
        """Drop columns, or whole tables, with their values."""
        raise NotImplementedError

    def column_values(self, loc: str, field: str) -> list[Any]:
        """The values of ``loc`` (which exists), row by row, as ``field`` is read at the end."""
        raise NotImplementedError

    def backfill_write(self, spec: BackfillSpec, row: int, value: Any, rec: int) -> list[str] | None:
        """The backfill's copy of ``value`` into ``spec.to`` at ``row``, under its guard; None if
        it wrote nothing, else the trigger targets written."""
        if spec.guard == "if-empty" and self.read(spec.to, row)[0] is not None:
            return None
        if spec.guard == "if-unchanged" and (spec.from_ not in self.columns or self.read(spec.from_, row)[0] != value):
            return None
        if spec.guard == "if-unchanged-both" and (  # the source part; the pass compares the target (issue 20)
            spec.from_ not in self.columns or self.read(spec.from_, row)[0] != value
        ):
            return None
        return self._put(spec.to, row, value, rec)

    def close(self) -> None:
        """Release what the backend holds (a connection); the location model holds nothing."""

    # -------------------------------------------------------------- transactions
    def use(self, txn: Txn | None) -> None:
        """Run the statements from now on in ``txn`` (None: each on its own)."""
        self.txn = txn

    def begin(self) -> Txn:
        """A transaction for one handling, begun now (when its message is taken, before its reads)."""
        return Txn()

    def prepare(self, txn: Txn) -> None:
        """Before the transaction's writes: raises :class:`WriteRefused` if it may not commit (the
        location model's validation); a SQL backend leaves that to the database."""

    def commit(self, txn: Txn) -> None:
        """After the transaction's writes: make them durable; raises :class:`WriteRefused` (then it
        is rolled back) if the database refuses the commit."""

    def rollback(self, txn: Txn) -> None:
        """Undo the transaction (a refused statement, a failed read, a killed engine)."""

    # -------------------------------------------------------------- the backfill utility
    def backfill(self, spec: BackfillSpec, step_rec: int):
        """The process copying ``spec.from_`` into ``spec.to``, one row after the other."""
        env, emit = self.env, self.trace.emit
        per_row = 1.0 / spec.rate
        first = 0
        if spec.start == "resume":  # issue 20: begin at the marker of the last crashed pass
            first = self.markers.get((spec.from_, spec.to), 0)
            emit(env.now, "bf_resume", engine="backfill", row=first, cause=[step_rec])
        row = first
        try:
            for row in range(first, self.rows):
                self.bf_read = -1  # the bf_read record of the row being copied, once read
                yield env.timeout(per_row)
                if (yield from self._backfill_row(spec, row, step_rec)) is None:
                    return  # a schema error, or the pass died at this row
        except simpy.Interrupt as killed:  # issue 20: a 'kill: backfill' fault at a time (see the kernel)
            self.markers[(spec.from_, spec.to)] = row  # the row being copied was not written
            read = self.bf_read
            emit(
                env.now,
                "bf_crash",
                engine="backfill",
                row=row,
                cause=[read, killed.cause] if read >= 0 else [killed.cause],
            )
            return
        self.markers[(spec.from_, spec.to)] = self.rows  # done: a resumed pass has nothing left

    def _backfill_row(self, spec: BackfillSpec, row: int, step_rec: int):
        """One row of a backfill pass: read, maybe die, wait the gap, write under the guard. Returns
        the row's ``bf_read`` record, or None when the pass ends here."""
        env, emit, chooser = self.env, self.trace.emit, self.chooser
        self.actor = ("backfill", None)
        missing = self.missing([spec.from_, spec.to])
        if missing:
            emit(env.now, "schema_error", engine="backfill", op="backfill", locs=missing, cause=[step_rec])
            return None
        value, src = self.read(spec.from_, row)
        read = emit(
            env.now,
            "bf_read",
            engine="backfill",
            row=row,
            loc=spec.from_,
            value=value,
            cause=[step_rec] if src is None else [step_rec, src],
        )
        self.bf_read = read
        killer = None  # issue 20: what kills the pass at this row, after its read and before its write
        if row == spec.crash_at_row:  # a plan's crash_at_row
            killer = read
        elif row in self.row_faults:  # a fault 'kill: backfill, at_row: N', once
            self.row_faults.remove(row)
            killer = emit(env.now, "fault", action="kill", engine="backfill", cause=[read])
        elif self.crash_choices and chooser.pick("backfill_crash", 2):  # the search's choice
            killer = emit(env.now, "choice", at=chooser.counts["backfill_crash"] - 1, what="backfill_crash", row=row)
        if killer is not None:  # a resumed pass starts at this row
            self.markers[(spec.from_, spec.to)] = row
            emit(env.now, "bf_crash", engine="backfill", row=row, cause=[read] if killer == read else [read, killer])
            return None
        both = spec.guard == "if-unchanged-both"
        target_read = self.read(spec.to, row)[0] if both else None  # compared again before the write
        gap = spec.gap
        if spec.max_gap > 0:
            level = chooser.pick("backfill_gap", DELAY_LEVELS + 1)
            if level:
                gap += spec.max_gap * level / DELAY_LEVELS
                emit(env.now, "choice", at=chooser.counts["backfill_gap"] - 1, what="backfill_gap", row=row, gap=gap)
        if gap > 0:
            yield env.timeout(gap)
        if value is None or spec.to not in self.columns:
            return read
        if both and self.read(spec.to, row)[0] != target_read:
            return read  # the target changed since the read: the compare-and-set on it fails
        rec = self.trace.count
        self.actor = ("backfill", None)
        fired = self.backfill_write(spec, row, value, rec)
        if fired is None:
            return read
        emit(env.now, "bf_write", engine="backfill", row=row, loc=spec.to, value=value, trig=fired, cause=[read])
        return read

    # -------------------------------------------------------------- the service table
    def register(self, engine: str, service: str, release: str, version: Any) -> Any:
        """``engine`` (re)starts: its row of the service table says (service, release, version), up.
        Returns the version its row held before (None: it had none)."""
        row = self.service_table.get(engine)
        self.service_table[engine] = [service, release, version, "running"]
        return None if row is None else row[2]

    def mark(self, engine: str, state: str) -> None:
        """``engine`` stopped or was killed: its row stays (a stale record), with ``state``."""
        row = self.service_table.get(engine)
        if row is not None:
            row[3] = state

    def deregister(self, engine: str) -> Any:
        """``engine`` was removed: its row is deleted. Returns the version it held (None: no row)."""
        row = self.service_table.pop(engine, None)
        return None if row is None else row[2]

    # -------------------------------------------------------------- the end of the run
    def canonical(self, reads: Iterable[Mapping[str, str]]) -> list[tuple[str, str]]:
        """(field, location) pairs that must hold the latest value at the end: where ``reads``
        (the read maps of the releases that count at the end) read each field, and the
        scenario's declared canonical locations."""
        out = {(f, loc) for read in reads for f, loc in read.items()}
        out.update(self.spec.canonical.items())
        return sorted(out)

    def emit_finals(self, now: float, reads: Collection[Mapping[str, str]]) -> None:
        """A ``final`` record of every canonical location's values (see :meth:`canonical`)."""
        for fld, loc in self.canonical(reads):
            exists = loc in self.columns
            self.trace.emit(
                now,
                "final",
                field=fld,
                loc=loc,
                exists=exists,
                values=self.column_values(loc, fld) if exists else [None] * self.rows,
            )


class LocationDatabase(Database):
    """The location model: cells in dictionaries, triggers one hop, no write ever refused."""

    backend = "location"

    def __init__(self, env: simpy.Environment, spec: DatabaseSpec, chooser: Chooser, trace: Trace):
        super().__init__(env, spec, chooser, trace)
        self.values: dict[str, dict[int, Cell]] = {}

    def init_data(self, write: Mapping[str, tuple[str, ...]]) -> None:
        declared = self.spec.initial
        for fld in sorted(set(write) | set(declared)):
            locs = [loc for loc in declared.get(fld, write.get(fld, ())) if loc in self.columns]
            rec = self.trace.emit(0.0, "init", field=fld, locs=locs, rows=self.rows)
            for loc in locs:
                self.values[loc] = {r: (f"init{r}", rec) for r in range(self.rows)}

    def set_trigger(self, trig: TriggerSpec, enabled: bool) -> None:
        self._enable(trig, enabled)

    def read(self, loc: str, row: int, sql: str | None = None) -> Cell:
        cell = self.values.get(loc, _NO_COLUMN).get(row, _NO_CELL)
        if self.txn is not None:
            self.txn.reads.setdefault((loc, row), cell[1])
        return cell

    def prepare(self, txn: Txn) -> None:
        """Optimistic validation at commit: refused if a cell the transaction read has been written
        since (by another handling, a trigger, the backfill). The writes and the commit happen at
        one instant, so validating first is validating at commit. This is what an application's
        compare-and-set on a version column does (``UPDATE ... WHERE atomic_key = :read``, Heat's
        convergence), at the granularity of a cell: the histories it lets commit are serialisable."""
        for (loc, row), rec in txn.reads.items():
            now = self.values.get(loc, _NO_COLUMN).get(row, _NO_CELL)[1]
            if now != rec:
                raise WriteRefused(
                    f"transaction aborted: {loc} of row {row} was written (record {now}) after this "
                    f"transaction read it (record {rec})"
                )

    def _put(self, loc: str, row: int, value: Any, rec: int) -> list[str]:
        """Write one cell and fire triggers (one hop); returns the trigger targets written."""
        self.values.setdefault(loc, {})[row] = (value, rec)
        fired = []
        for to in self.triggers.get(loc, ()):
            if to in self.columns:
                self.values.setdefault(to, {})[row] = (value, rec)
                fired.append(to)
        return fired

    def write_field(self, locs: Iterable[str], row: int, value: Any, rec: int, sql: str | None = None) -> list[str]:
        fired: list[str] = []
        values, triggers, columns = self.values, self.triggers, self.columns
        cell = (value, rec)
        for loc in locs:  # _put, inlined (one call less per location written)
            col = values.get(loc)
            if col is None:
                col = values[loc] = {}
            col[row] = cell
            targets = triggers.get(loc)
            if targets:
                for to in targets:
                    if to in columns:
                        values.setdefault(to, {})[row] = cell
                        fired.append(to)
        return fired

    def rewrite(self, cols: Mapping[str, Any], row: int, rec: int) -> None:
        for c, v in cols.items():
            self._put(c, row, v, rec)

    def expand(self, items: Iterable[str]) -> None:
        for item in items:
            if "." in item:
                self.tables.add(item.split(".")[0])
                self.columns.add(item)
            else:
                self.tables.add(item)

    def contract(self, items: Iterable[str]) -> None:
        for item in items:
            drop = [c for c in self.columns if c == item or c.split(".")[0] == item]
            for c in sorted(drop):
                self.columns.discard(c)
                self.values.pop(c, None)
            if "." not in item:
                self.tables.discard(item)

    def column_values(self, loc: str, field: str) -> list[Any]:
        col = self.values.get(loc, _NO_COLUMN)
        return [col.get(r, _NO_CELL)[0] for r in range(self.rows)]


__all__ = ["DEFAULT_ISOLATION", "Cell", "Database", "LocationDatabase", "Txn", "WriteRefused"]
