"""The shared database: which tables and columns exist, the value of every cell, triggers,
schema changes (expand, contract) and the backfill utility that copies data row by row.

A cell holds ``(value, record)``: the value and the number of the trace record that wrote
it, so a read can name the write it saw as its cause.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

import simpy

from simroll.scenario.spec import BackfillSpec, DatabaseSpec, TriggerSpec
from simroll.sim.chooser import DELAY_LEVELS, Chooser
from simroll.sim.trace import Trace


class Database:
    """The database of one run, from the scenario's initial schema."""

    def __init__(self, env: simpy.Environment, spec: DatabaseSpec, chooser: Chooser, trace: Trace):
        self.env = env
        self.spec = spec
        self.chooser = chooser
        self.trace = trace
        self.rows = spec.rows
        # existing columns and tables, values per location and row
        self.columns: set[str] = set()
        self.tables: set[str] = set()
        for t, cols in spec.tables.items():
            self.tables.add(t)
            for c in cols:
                self.columns.add(f"{t}.{c}")
        self.values: dict[str, dict[int, tuple[Any, int]]] = {}
        self.triggers: dict[str, list[str]] = {}
        for trig in spec.triggers:
            self.set_trigger(trig, True)

    def init_data(self, write: Mapping[str, tuple[str, ...]]) -> None:
        """Initial values of every field, where the scenario declares them or else where the
        first engine's release writes them (``write``)."""
        declared = self.spec.initial
        for fld in sorted(set(write) | set(declared)):
            locs = [loc for loc in declared.get(fld, write.get(fld, ())) if loc in self.columns]
            rec = self.trace.emit(0.0, "init", field=fld, locs=locs, rows=self.rows)
            for loc in locs:
                self.values[loc] = {r: (f"init{r}", rec) for r in range(self.rows)}

    def set_trigger(self, trig: TriggerSpec, enabled: bool) -> None:
        """Enable or disable the trigger copying writes of ``trig.from_`` into ``trig.to``."""
        targets = self.triggers.setdefault(trig.from_, [])
        if enabled and trig.to not in targets:
            targets.append(trig.to)
        elif not enabled and trig.to in targets:
            targets.remove(trig.to)

    def write(self, loc: str, row: int, value: Any, rec: int) -> list[str]:
        """Write one cell and fire triggers; returns the trigger targets written."""
        self.values.setdefault(loc, {})[row] = (value, rec)
        fired = []
        for to in self.triggers.get(loc, ()):
            if to in self.columns:
                self.values.setdefault(to, {})[row] = (value, rec)
                fired.append(to)
        return fired

    def missing(self, locs: Iterable[str]) -> list[str]:
        """The locations of ``locs`` that are not columns (now)."""
        cols = self.columns
        return [loc for loc in locs if loc not in cols]

    # -------------------------------------------------------------- schema changes
    def expand(self, items: Iterable[str]) -> None:
        """Add tables and columns (``table`` or ``table.column``)."""
        for item in items:
            if "." in item:
                self.tables.add(item.split(".")[0])
                self.columns.add(item)
            else:
                self.tables.add(item)

    def contract(self, items: Iterable[str]) -> None:
        """Drop columns, or whole tables, with their values."""
        for item in items:
            drop = [c for c in self.columns if c == item or c.split(".")[0] == item]
            for c in sorted(drop):
                self.columns.discard(c)
                self.values.pop(c, None)
            if "." not in item:
                self.tables.discard(item)

    # -------------------------------------------------------------- the backfill utility
    def backfill(self, spec: BackfillSpec, step_rec: int):
        """The process copying ``spec.from_`` into ``spec.to``, one row after the other."""
        env, emit, chooser = self.env, self.trace.emit, self.chooser
        per_row = 1.0 / spec.rate
        for row in range(self.rows):
            yield env.timeout(per_row)
            missing = self.missing([spec.from_, spec.to])
            if missing:
                emit(env.now, "schema_error", engine="backfill", op="backfill", locs=missing, cause=[step_rec])
                return
            value, src = self.values.get(spec.from_, {}).get(row, (None, None))
            read = emit(
                env.now,
                "bf_read",
                engine="backfill",
                row=row,
                loc=spec.from_,
                value=value,
                cause=[step_rec] if src is None else [step_rec, src],
            )
            gap = spec.gap
            if spec.max_gap > 0:
                level = chooser.pick("backfill_gap", DELAY_LEVELS + 1)
                if level:
                    gap += spec.max_gap * level / DELAY_LEVELS
                    emit(
                        env.now, "choice", at=chooser.counts["backfill_gap"] - 1, what="backfill_gap", row=row, gap=gap
                    )
            if gap > 0:
                yield env.timeout(gap)
            if value is None or spec.to not in self.columns:
                continue
            if spec.guard == "if-empty" and self.values.get(spec.to, {}).get(row, (None, None))[0] is not None:
                continue
            if spec.guard == "if-unchanged" and (
                spec.from_ not in self.columns or self.values.get(spec.from_, {}).get(row, (None, None))[0] != value
            ):
                continue
            rec = self.trace.count
            fired = self.write(spec.to, row, value, rec)
            emit(env.now, "bf_write", engine="backfill", row=row, loc=spec.to, value=value, trig=fired, cause=[read])

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
            col = self.values.get(loc, {}) if loc in self.columns else {}
            self.trace.emit(
                now,
                "final",
                field=fld,
                loc=loc,
                exists=loc in self.columns,
                values=[col.get(r, (None, None))[0] for r in range(self.rows)],
            )


__all__ = ["Database"]
