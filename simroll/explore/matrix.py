"""The safety matrix: each design under each plan or fault family and both delivery models.

A *family* is a function from a scenario to a variant of its plan (or None when it
does not apply): the plain rolling restart as written, a long pause after the first
engine, the last legacy engine killed, a racing backfill, an early contract, a
switch flipped early, three releases at once. Each cell runs the variant under
``bus.delivery`` ``oslo`` and ``version-routed`` and reports ``holds`` or the violated
invariants; every violated cell comes with a replay scenario (written with
:func:`~simroll.scenario.load.dump_scenario`) that ``simroll run`` reproduces. With
``fuzz=N`` a cell whose default run holds is also searched (:func:`simroll.explore.search.fuzz`).

``simroll matrix DIR [--out PREFIX] [--json] [--fuzz N]`` is :func:`build_matrix`
plus :meth:`Matrix.write`.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simroll._display import html as _display_html
from simroll._io import atomic_write_text, check_new_file
from simroll.errors import UsageError
from simroll.run import run_scenario
from simroll.scenario.load import dump_scenario, load_scenario
from simroll.scenario.spec import (
    AddStep,
    BackfillStep,
    KillStep,
    RemoveStep,
    RestartStep,
    Scenario,
    SetConfigStep,
    StartStep,
    StepSpec,
    WaitStep,
)

DELIVERIES = ("oslo", "version-routed")
PAUSE = 100.0  # seconds the operator waits after the first engine (pause-first)
BACKFILL_GAP = 1.0  # seconds between the backfill's read of a row and its write (backfill-race)

_RESTARTS = ("restart", "start")


# ------------------------------------------------------------------ plan surgery
def _target(step: StepSpec) -> str | None:
    return getattr(step, step.action) if step.action in ("restart", "stop", "kill", "start", "remove") else None


def _release_of(step: StepSpec) -> str:
    assert isinstance(step, (RestartStep, StartStep)), "only restart and start steps name a release"
    return step.release


def _replan(s: Scenario, order: Sequence[int | StepSpec]) -> Scenario:
    """``s`` with a new plan: old step indices (kept, moved) or new steps; at_step faults and the
    search space's step indices follow their steps."""
    plan = [s.plan[x] if isinstance(x, int) else x for x in order]
    moved = {old: new for new, old in enumerate(order) if isinstance(old, int)}
    faults = [
        f.model_copy(update={"at_step": moved[f.at_step]}) if f.at_step is not None else f
        for f in s.faults
        if f.at_step is None or f.at_step in moved
    ]
    search = s.search
    if search is not None:
        kill = search.kill_instead_of_stop
        search = search.model_copy(
            update={
                "reorder": [[moved[i] for i in g if i in moved] for g in search.reorder],
                "kill_instead_of_stop": [moved[i] for i in kill if i in moved] if isinstance(kill, list) else kill,
            }
        )
    return s.model_copy(update={"plan": plan, "faults": faults, "search": search})


def _phases(s: Scenario) -> list[list[int]]:
    """Runs of consecutive restart/start steps onto one release: the rolling restarts."""
    phases: list[list[int]] = []
    last: str | None = None
    for i, step in enumerate(s.plan):
        if isinstance(step, (RestartStep, StartStep)):
            if phases and step.release == last and phases[-1][-1] == i - 1:
                phases[-1].append(i)
            else:
                phases.append([i])
            last = step.release
        else:
            last = None
    return phases


def _move(n: int, src: int, dst: int) -> list[int]:
    """Indices 0..n-1 with ``src`` moved to stand just before the step now at ``dst``."""
    order = [i for i in range(n) if i != src]
    order.insert(order.index(dst) if dst < n else len(order), src)
    return order


# ------------------------------------------------------------------ the families
def rolling(s: Scenario) -> Scenario | None:
    """The plan as written: a plain rolling restart."""
    return s


def pause_first(s: Scenario) -> Scenario | None:
    """The operator pauses PAUSE s after the first engine is restarted."""
    first = next((i for i, st in enumerate(s.plan) if st.action in _RESTARTS), None)
    if first is None:
        return None
    order: list[int | StepSpec] = list(range(len(s.plan)))
    order.insert(first + 1, WaitStep(wait=PAUSE))
    return _replan(s, order)


def kill_last_legacy(s: Scenario) -> Scenario | None:
    """The last engine still on the initial release is killed, not stopped, while it handles a message."""
    engines = s.engine_list()
    initial = engines[0].release
    running = {e.name: e.release for e in engines}
    for i, step in enumerate(s.plan):
        if isinstance(step, AddStep):  # engines that join run its release
            running.update(dict.fromkeys(step.names(), step.release))
            continue
        name = _target(step)
        if name is None:
            continue
        was = running.pop(name, None)
        if isinstance(step, (RestartStep, StartStep)):
            running[name] = step.release
        if was == initial and initial not in running.values() and step.action in ("restart", "stop", "remove"):
            return _replan(s, [_kill_while_busy(s, i, name) if j == i else j for j in range(len(s.plan))])
    return None


def _kill_while_busy(s: Scenario, i: int, engine: str) -> StepSpec:
    """Step ``i`` as a kill, moved earlier within its pause to half-way through the last message the
    engine takes before the step (found by running the plan once); everything before is unchanged."""
    step = s.plan[i]
    killed: StepSpec = (
        step.model_copy(update={"how": "kill"})
        if isinstance(step, (RestartStep, RemoveStep))
        else KillStep(after=step.after, kill=engine)
    )
    records = run_scenario(s).trace()
    at = next((r["t"] for r in records if r["kind"] == "step" and r["index"] == i), None)
    if at is None or step.after <= 0:
        return killed
    rejected = {r["msg"] for r in records if r["kind"] == "reject"}  # rejected at once: never in flight
    taken = [
        r["t"]
        for r in records
        if r["kind"] == "recv" and r["engine"] == engine and at - step.after < r["t"] < at and r["msg"] not in rejected
    ]
    if not taken:
        return killed
    half = s.releases[s.engine_list()[0].release].service_time / 2
    return killed.model_copy(update={"after": round(step.after - (at - taken[-1]) + half, 6)})


def backfill_race(s: Scenario) -> Scenario | None:
    """Every backfill waits BACKFILL_GAP s between reading a row and writing it, while engines write."""
    steps = [i for i, st in enumerate(s.plan) if st.action == "backfill"]
    if not steps:
        return None
    order: list[int | StepSpec] = []
    for i, st in enumerate(s.plan):
        if isinstance(st, BackfillStep):
            bf = st.backfill.model_copy(update={"gap": max(st.backfill.gap, BACKFILL_GAP)})
            order.append(st.model_copy(update={"backfill": bf}))
        else:
            order.append(i)
    return _replan(s, order)


def contract_early(s: Scenario) -> Scenario | None:
    """The first contract step runs before the restart that precedes it (one engine still on the old release)."""
    for i, st in enumerate(s.plan):
        before = [j for j in range(i) if s.plan[j].action in _RESTARTS]
        if st.action == "contract" and before:
            return _replan(s, _move(len(s.plan), i, before[-1]))
    return None


def flip_early(s: Scenario) -> Scenario | None:
    """The operator flips a switch early: a version pin is raised (set_cap) right after the first
    restart, or the second rolling restart, when it changes only where data is read and written
    (a config flip), starts right after the first engine."""
    first = next((i for i, st in enumerate(s.plan) if st.action in _RESTARTS), None)
    caps = [i for i, st in enumerate(s.plan) if st.action == "set_cap"]
    if caps and first is not None and caps[0] > first + 1:
        return _replan(s, _move(len(s.plan), caps[0], first + 1))
    phases = _phases(s)
    if len(phases) < 2:
        return None
    # a phase starts with a restart or start step, which names its release
    old, new = (s.releases[_release_of(s.plan[ph[0]])] for ph in phases[:2])
    if old.rpc != new.rpc:  # a new RPC API is new code, not a switch
        return None
    return _replan(s, _early(s, phases[1][0], phases[0][0] + 1))


def three_releases(s: Scenario) -> Scenario | None:
    """The next rolling restart starts before the current one ends: three releases run at once."""
    phases = _phases(s)
    if len(phases) < 2 or len(phases[0]) < 2:
        return None
    return _replan(s, _early(s, phases[1][0], phases[0][-1]))


def _early(s: Scenario, src: int, dst: int) -> list[int | StepSpec]:
    """The plan with step ``src`` (a restart) moved before the step now at ``dst``. When the operator
    changes the config just before ``src`` (a set_config for every engine, applied by the rolling
    restart that follows), the moved engine takes that change with it: a set_config of that engine
    alone goes before it, and the original stays where it was for the others."""
    order: list[int | StepSpec] = list(_move(len(s.plan), src, dst))
    prev = s.plan[src - 1] if src > 0 else None
    engine = _target(s.plan[src])
    if isinstance(prev, SetConfigStep) and engine is not None and (prev.engines is None or engine in prev.engines):
        order.insert(order.index(src), prev.model_copy(update={"engines": [engine], "after": 0.0}))
    return order


FAMILIES: dict[str, Callable[[Scenario], Scenario | None]] = {
    "rolling": rolling,
    "pause-first": pause_first,
    "kill-last-legacy": kill_last_legacy,
    "backfill-race": backfill_race,
    "contract-early": contract_early,
    "flip-early": flip_early,
    "three-releases": three_releases,
}


# ------------------------------------------------------------------ the matrix
@dataclass
class Cell:
    """One design under one family and delivery model."""

    family: str
    delivery: str
    status: str  # "holds", "violated" or "n/a"
    violated: list[str] = field(default_factory=list)
    by: str | None = None  # "run" (the default run) or "fuzz"
    trace_sha256: str | None = None
    replay: Scenario | None = None
    replay_path: str | None = None

    def text(self) -> str:
        if self.status == "n/a":
            return "–"
        if self.status == "holds":
            return "holds"
        return ", ".join(f"**{v}**" for v in self.violated) + (" (fuzz)" if self.by == "fuzz" else "")

    def to_json(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "delivery": self.delivery,
            "status": self.status,
            "violated": self.violated,
            "by": self.by,
            "trace_sha256": self.trace_sha256,
            "replay": self.replay_path,
        }


@dataclass
class Row:
    path: str
    scenario: Scenario
    cells: list[Cell]

    @property
    def stem(self) -> str:
        return Path(self.path).stem


@dataclass
class Matrix:
    """Rows (designs) x families x delivery models."""

    source: str
    families: list[str]
    deliveries: list[str]
    rows: list[Row]
    fuzz: int | None = None

    def __repr__(self) -> str:
        """One short line (under 1 KB), not every row's scenario and cells."""
        cells = [c for r in self.rows for c in r.cells]
        bad = sum(1 for c in cells if c.status == "violated")
        source = self.source if len(self.source) <= 200 else self.source[:200] + "..."
        return (
            f"Matrix({source!r}, rows={len(self.rows)}, families={len(self.families)}, "
            f"deliveries={self.deliveries[:4]}, cells={len(cells)}, violated={bad})"
        )

    def _repr_html_(self) -> str:
        """Jupyter's rich display, drawn by :mod:`simroll.view.notebook` (found through :mod:`simroll._display`)."""
        return _display_html(self)

    def cell(self, stem: str, family: str, delivery: str) -> Cell:
        row = next(r for r in self.rows if r.stem == stem)
        return next(c for c in row.cells if c.family == family and c.delivery == delivery)

    def replay_name(self, row: Row, cell: Cell) -> str:
        return f"{self._label(row)}.{cell.family}.{cell.delivery}.yaml"

    def _label(self, row: Row) -> str:
        """The row's name in replay file names: its stem, unless another row has the same stem
        (``m.yaml`` and ``m.yml``), then its file name, and its position if even that is shared
        (two directories' ``m.yaml``), so two rows never write the same replay."""
        if sum(r.stem == row.stem for r in self.rows) == 1:
            return row.stem
        name = Path(row.path).name
        if sum(Path(r.path).name == name for r in self.rows) == 1:
            return name
        return f"{name}.{next(i for i, r in enumerate(self.rows) if r is row)}"

    def to_markdown(self, command: str | None = None) -> str:
        lines = []
        if command:
            lines += [f"<!-- generated by `{command}` -->", ""]
        for d in self.deliveries:
            lines += [
                f"**bus.delivery: {d}**",
                "",
                "| pattern | " + " | ".join(self.families) + " |",
                "|---|" + "---|" * len(self.families),
            ]
            for row in self.rows:
                cells = {c.family: c for c in row.cells if c.delivery == d}
                lines.append(f"| {row.stem} | " + " | ".join(cells[f].text() for f in self.families) + " |")
            lines.append("")
        lines.append("Families: " + "; ".join(f"`{n}`: {_doc(FAMILIES[n])}" for n in self.families))
        lines.append("")
        lines.append(
            "Cells: `holds`, the violated invariants in bold, or – where the family does not apply. "
            + (
                "Cells whose default run holds were also searched with `simroll fuzz` "
                f"({self.fuzz} examples); (fuzz) marks what the search found. "
                if self.fuzz
                else ""
            )
            + "Every violated cell has a replay scenario `<pattern>.<family>.<delivery>.yaml`."
        )
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "families": {n: _doc(FAMILIES[n]) for n in self.families},
            "deliveries": self.deliveries,
            "fuzz": self.fuzz,
            "rows": [
                {"file": r.path, "scenario": r.scenario.name, "cells": [c.to_json() for c in r.cells]}
                for r in self.rows
            ],
        }

    def write(self, prefix: str, overwrite: bool = False, command: str | None = None) -> list[str]:
        """Write ``PREFIX.md``, ``PREFIX.json`` and the replays in ``PREFIX.replays/``; returns the paths.

        Every path is checked before anything is written (:func:`simroll._io.check_new_file`):
        an existing file is refused (UsageError) unless ``overwrite``.
        """
        base = Path(prefix)
        replays = Path(f"{prefix}.replays")
        planned: list[tuple[Path, Row, Cell]] = []
        for row in self.rows:
            for c in row.cells:
                if c.replay is not None:
                    planned.append((replays / self.replay_name(row, c), row, c))
        md, js = base.with_name(base.name + ".md"), base.with_name(base.name + ".json")
        targets = [md, js] + [p for p, _, _ in planned]
        for p in targets:
            check_new_file(p, overwrite, make_parents=True)
        for p, _row, c in planned:
            c.replay_path = str(p)
        if planned:
            replays.mkdir(parents=True, exist_ok=True)
        md.parent.mkdir(parents=True, exist_ok=True)
        for p, row, c in planned:  # atomic: an interrupted matrix leaves no half-written file
            atomic_write_text(p, _replay_text(row, c, command), overwrite=True)
        atomic_write_text(md, self.to_markdown(command), overwrite=True)
        atomic_write_text(js, json.dumps(self.to_json(), indent=2) + "\n", overwrite=True)
        return [str(p) for p in targets]


def _doc(fn: Callable[..., Any]) -> str:
    text = " ".join((fn.__doc__ or "").split())
    return text.replace("PAUSE", f"{PAUSE:g}").replace("BACKFILL_GAP", f"{BACKFILL_GAP:g}")


def _replay_text(row: Row, c: Cell, command: str | None) -> str:
    assert c.replay is not None
    text = (
        f"Replay of the safety-matrix cell {row.stem} x {c.family} x {c.delivery}"
        + (f" (`{command}`)." if command else ".")
        + f" Made from {row.path}: {_doc(FAMILIES[c.family])}"
        + f" `simroll run` on this file violates {', '.join(c.violated)}"
        + (" (found by simroll fuzz)." if c.by == "fuzz" else ".")
    )
    head = textwrap.wrap(text, width=98, break_on_hyphens=False, break_long_words=False)
    return "".join(f"# {line}\n" for line in head) + dump_scenario(c.replay)


def _with_delivery(s: Scenario, delivery: str) -> Scenario:
    return s.model_copy(update={"bus": s.bus.model_copy(update={"delivery": delivery})})


def decide(s: Scenario, family: str, delivery: str, fuzz: int | None = None, seed: int = 0) -> Cell:
    """One cell: apply the family, set the delivery model, run (and search, with ``fuzz``)."""
    variant = FAMILIES[family](_with_delivery(s, delivery))  # a family may run the plan: deliver first
    if variant is None:
        return Cell(family, delivery, "n/a")
    variant = variant.model_copy(update={"name": f"{s.name}.{family}.{delivery}"})
    res = run_scenario(variant, keep_trace=False)
    if not res.ok:
        replay = variant.model_copy(update={"expect": f"violates {res.violated[0]}"})
        return Cell(family, delivery, "violated", list(res.violated), "run", res.trace_sha256, replay)
    if fuzz:
        from simroll.explore.search import fuzz as _fuzz  # search is optional at this layer: imported when asked

        fr = _fuzz(variant, max_examples=fuzz, seed=seed)
        if fr.found and fr.counterexample is not None:
            again = run_scenario(fr.counterexample, keep_trace=False)
            return Cell(
                family,
                delivery,
                "violated",
                list(again.violated),
                "fuzz",
                again.trace_sha256,
                fr.counterexample.model_copy(update={"expect": f"violates {again.violated[0]}"})
                if again.violated
                else None,
            )
    return Cell(family, delivery, "holds", [], "fuzz" if fuzz else "run", res.trace_sha256)


def pattern_files(directory: str | Path) -> list[Path]:
    """The scenario files of a directory (``*.yaml``, not recursive), sorted by name."""
    d = Path(directory)
    if not d.is_dir():
        raise UsageError(f"{d}: not a directory")
    files = sorted(p for p in d.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    if not files:
        raise UsageError(f"{d}: no scenario files (*.yaml)")
    return files


def build_matrix(
    source: str | Path | Sequence[str | Path],
    families: Sequence[str] | None = None,
    deliveries: Sequence[str] = DELIVERIES,
    fuzz: int | None = None,
    seed: int = 0,
    progress: Callable[[int], object] | None = None,
) -> Matrix:
    """The safety matrix of a directory of scenario files (or a list of files). Every file is
    loaded (and so validated) before the first cell runs; ``progress``, if given, is called with
    the number of cells decided so far after each one."""
    if isinstance(source, (str, Path)):
        paths, name = pattern_files(source), str(source)
    else:
        paths, name = [Path(p) for p in source], ", ".join(str(p) for p in source)
    fams = list(families or FAMILIES)
    for f in fams:
        if f not in FAMILIES:
            raise UsageError(f"unknown family {f!r} (families: {', '.join(FAMILIES)})")
    for d in deliveries:
        if d not in DELIVERIES:
            raise UsageError(f"unknown delivery model {d!r} (expected one of: {', '.join(DELIVERIES)})")
    scenarios = [load_scenario(p) for p in paths]
    rows, done = [], 0
    for p, s in zip(paths, scenarios):
        cells = []
        for d in deliveries:
            for f in fams:
                cells.append(decide(s, f, d, fuzz, seed))
                done += 1
                if progress is not None:
                    progress(done)
        rows.append(Row(str(p), s, cells))
    return Matrix(name, fams, list(deliveries), rows, fuzz)


__all__ = ["FAMILIES", "DELIVERIES", "Matrix", "Cell", "build_matrix", "decide", "pattern_files"]
