"""Parameter sweeps: run a grid of scenario variants and tabulate what each one did.

A parameter is a path into the scenario document and the values it takes, written as
on the command line: ``engines.count=3,5,10``, ``bus.delivery=oslo,version-routed``,
``plan[1].wait=0,30,60``, ``invariants.bounded-imbalance.max_wait=2.5,5``. Each cell of
the grid (every combination of values, the first parameter varying slowest) is the
scenario's document with those values set, validated again by
:func:`~simroll.scenario.load.load_scenario_text`, so a bad value gives the usual
``FILE: where: what`` error before anything runs.

Each cell runs once with the scenario's seed, or with seeds ``0..N-1`` (``seeds=N``), and
reports the invariants violated, the worst and the 99th-percentile queue wait (the ``wait``
of every message an engine took), the events, the simulated time and the trace's sha256;
over several seeds, the worst (max) and the median of each figure. Cells run on an
:class:`~simroll.explore.parallel.Executor` (local processes or a Dask cluster) whose results come
back in input order, so the table never depends on the number of workers.

``simroll sweep SCENARIO --param KEY=V1,V2 ... [--out PREFIX]`` is :func:`run_sweep`
plus :func:`simroll.view.plots.write_sweep` (the table's files and the heatmap, drawn by
:func:`simroll.view.plots.sweep_heatmap`: this module holds the data only, no drawing).
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from simroll._display import html as _display_html
from simroll._io import atomic_write_bytes, atomic_write_text, check_new_file
from simroll.errors import ScenarioError, UsageError
from simroll.explore.metrics import METRICS
from simroll.explore.parallel import Executor
from simroll.run import run_scenario
from simroll.scenario.load import load_scenario_text
from simroll.scenario.spec import Scenario

# metric name -> axis label; each is a number per run, summarised per cell by max and median
_NUMERIC = ("worst_wait", "p99_wait", "events", "sim_time")
MAX_CELLS = 10_000  # variants x seeds: a typo such as engines.count=1,...,1000 x 100 seeds stops here


# ------------------------------------------------------------------ parameters
class _SourceFloat(float):
    """A float value as the user wrote it, so ``rpc.cap=1.10`` reaches the loader as ``1.10``."""

    source: str = ""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_SourceFloat, lambda d, f: d.represent_scalar("tag:yaml.org,2002:float", f.source))

_PATH_TOKEN = re.compile(r"""\.([A-Za-z_][\w\-]*)|\[(\d+)\]|\[(["'])([^"'\]]+)\3\]""")


def parse_path(key: str) -> tuple[str | int, ...]:
    """``plan[1].after`` -> ``("plan", 1, "after")``. Keys with dots go in quotes: ``releases["v1.2"].workers``."""
    parts: list[str | int] = []
    text = key if key.startswith("[") else "." + key
    pos = 0
    while pos < len(text):
        m = _PATH_TOKEN.match(text, pos)
        if m is None:
            raise UsageError(
                f"--param {key}: cannot read the path at {text[pos:][:20]!r} "
                "(expected KEY.KEY[INDEX]..., e.g. engines.count or plan[1].after)"
            )
        if m.group(1) is not None:
            parts.append(m.group(1))
        elif m.group(2) is not None:
            parts.append(int(m.group(2)))
        else:
            parts.append(m.group(4))
        pos = m.end()
    if not parts:
        raise UsageError(f"--param {key!r}: empty path")
    return tuple(parts)


def _split_values(text: str) -> list[str]:
    """Split at commas outside brackets and quotes: ``1,[a, b],'x,y'`` -> ``1``, ``[a, b]``, ``'x,y'``."""
    out, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(text[start:i].strip())
            start = i + 1
    out.append(text[start:].strip())
    return out


def _parse_value(text: str, key: str) -> Any:
    """A value as YAML (``3`` an int, ``oslo`` a string, ``null``, ``[a, b]``), floats keeping their text."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise UsageError(f"--param {key}: value {text!r} is not valid YAML") from None
    if isinstance(value, float):
        value = _SourceFloat(value)
        value.source = text
    return value


@dataclass(frozen=True)
class SweepParam:
    """One swept parameter: a path into the scenario document and its values (``labels`` as written)."""

    key: str
    path: tuple[str | int, ...]
    values: tuple[Any, ...]
    labels: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> SweepParam:
        """``KEY=V1,V2,...`` (the ``--param`` syntax). Raises :class:`UsageError`."""
        key, sep, rest = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--param {text!r}: expected KEY=V1,V2,... (e.g. engines.count=3,5,10)")
        labels = _split_values(rest)
        if any(not v for v in labels):
            raise UsageError(f"--param {text!r}: empty value (expected KEY=V1,V2,...)")
        seen = set()
        for v in labels:
            if v in seen:
                raise UsageError(f"--param {text!r}: value {v!r} given twice")
            seen.add(v)
        return cls(key, parse_path(key), tuple(_parse_value(v, key) for v in labels), tuple(labels))


def _where(path: Sequence[str | int]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f"[{p!r}]" if "." in p else ("." if out else "") + p)
    return out or "the document"


def set_path(data: Any, path: Sequence[str | int], value: Any) -> None:
    """Set ``path`` in a scenario document (plain dicts and lists) to ``value``, in place.

    Every key on the way must exist (a missing one is an error listing the keys there); an
    empty optional block on the way (``search: null``) becomes a mapping. The last key may be
    new: the loader then says whether the scenario format knows it. Raises ``ValueError`` with
    a message naming the path.
    """
    node = data
    for depth, part in enumerate(path):
        here, last = _where(path[:depth]), depth == len(path) - 1
        if isinstance(part, int):
            if not isinstance(node, list):
                raise ValueError(f"{here} is {_kind(node)}, not a list: [{part}] does not apply")
            if part >= len(node):
                has = f"{len(node)} items (indices 0..{len(node) - 1})" if node else "no items"
                raise ValueError(f"{here} has {has}, not [{part}]")
        else:
            if not isinstance(node, dict):
                hint = " (use an index, e.g. [0])" if isinstance(node, list) else ""
                raise ValueError(f"{here} is {_kind(node)}, not a mapping: .{part} does not apply{hint}")
            if part not in node and not last:
                keys = ", ".join(str(k) for k in node) or "none"
                raise ValueError(f"{here} has no key {part!r} (keys: {keys})")
        if last:
            node[part] = value
        else:
            if isinstance(part, str) and node[part] is None:  # an optional block not given: start one
                node[part] = {}
            node = node[part]


def _kind(node: Any) -> str:
    if node is None:
        return "null"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(type(node), "a number")


def make_variant(
    scenario: Scenario, assignment: Sequence[tuple[SweepParam, int]], source: str = "<scenario>"
) -> Scenario:
    """``scenario`` with each parameter set to its ``index``-th value, validated by the loader.

    Raises :class:`ScenarioError`: ``SOURCE: --param KEY: ...`` for a path that does not exist,
    ``SOURCE with KEY=V, ...: where: what`` for a value the scenario format refuses.
    """
    data = scenario.model_dump(by_alias=True, mode="json")
    for p, i in assignment:
        try:
            set_path(data, p.path, p.values[i])
        except ValueError as e:
            raise ScenarioError(source, f"--param {p.key}", str(e)) from None
    text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True)
    label = f"{source} with " + ", ".join(f"{p.key}={p.labels[i]}" for p, i in assignment)
    try:
        return load_scenario_text(text, label)
    except ScenarioError as e:
        # the line numbers would be those of the generated document, not of the user's file
        raise ScenarioError(label, re.sub(r" \(line \d+\)$", "", e.where), e.message) from None


def grid(params: Sequence[SweepParam]) -> list[tuple[int, ...]]:
    """Every combination of value indices, the first parameter varying slowest."""
    return list(itertools.product(*(range(len(p.values)) for p in params)))


# ------------------------------------------------------------------ running
@dataclass(frozen=True)
class RunFigures:
    """What one run of one cell gave."""

    seed: int
    violated: list[str]
    worst_wait: float | None  # None: no message was taken
    p99_wait: float | None
    events: int
    sim_time: float
    trace_sha256: str

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "violated": self.violated,
            "worst_wait": self.worst_wait,
            "p99_wait": self.p99_wait,
            "events": self.events,
            "sim_time": self.sim_time,
            "trace_sha256": self.trace_sha256,
        }


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q``-th percentile (0 < q <= 100): the smallest value with at least q% of
    the values at or below it; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def _run_one(job: tuple[Scenario, int]) -> RunFigures:
    """Run one cell with one seed (in any process) and keep only its figures."""
    scenario, seed = job
    # the waits come from the trace; it is dropped as soon as they are read
    res = run_scenario(scenario, seed=seed, keep_trace=True)
    waits = [r["wait"] for r in res.trace() if r["kind"] == "recv"]
    return RunFigures(
        seed, res.violated, max(waits, default=None), percentile(waits, 99), res.events, res.sim_time, res.trace_sha256
    )


@dataclass
class SweepCell:
    """One combination of parameter values and its runs (one per seed)."""

    values: tuple[int, ...]  # index of each parameter's value
    runs: list[RunFigures]

    @property
    def violated(self) -> list[str]:
        """Invariants violated in any run, in the order they were first seen."""
        return list(dict.fromkeys(v for r in self.runs for v in r.violated))

    @property
    def violated_runs(self) -> int:
        return sum(1 for r in self.runs if r.violated)

    def worst(self, metric: str) -> float | None:
        """The metric's largest value over the runs (None if no run has one)."""
        if metric == "violated_runs":
            return float(self.violated_runs)
        xs = [getattr(r, metric) for r in self.runs if getattr(r, metric) is not None]
        return max(xs) if xs else None

    def median(self, metric: str) -> float | None:
        xs = [getattr(r, metric) for r in self.runs if getattr(r, metric) is not None]
        return statistics.median(xs) if xs else None

    @property
    def trace_digest(self) -> str:
        """The trace's sha256 for one run; for several, the sha256 of their sha256s, one a line."""
        if len(self.runs) == 1:
            return self.runs[0].trace_sha256
        return hashlib.sha256("".join(r.trace_sha256 + "\n" for r in self.runs).encode()).hexdigest()


@dataclass
class Sweep:
    """A grid of scenario variants and what each did. Nothing in it depends on how it was run."""

    scenario: str
    source: str
    params: list[SweepParam]
    seeds: list[int]
    cells: list[SweepCell] = field(default_factory=list)

    def __repr__(self) -> str:
        """One short line (under 1 KB), not every cell's runs."""
        params = [p.key for p in self.params[:6]] + (["..."] if len(self.params) > 6 else [])
        bad = sum(1 for c in self.cells if c.violated)
        return (
            f"Sweep({self.scenario!r}, params={params}, seeds={len(self.seeds)}, cells={len(self.cells)}, "
            f"violated={bad})"
        )

    def _repr_html_(self) -> str:
        """Jupyter's rich display, drawn by :mod:`simroll.view.notebook` (found through :mod:`simroll._display`)."""
        return _display_html(self)

    def labels(self, cell: SweepCell) -> list[str]:
        return [p.labels[i] for p, i in zip(self.params, cell.values)]

    def to_json(self) -> dict[str, Any]:
        """The table as plain data (``simroll sweep --json`` and ``PREFIX.json``)."""
        cells = []
        for c in self.cells:
            row: dict[str, Any] = {
                "params": {p.key: _plain(p.values[i]) for p, i in zip(self.params, c.values)},
                "violated": c.violated,
                "violated_runs": c.violated_runs,
            }
            for m in _NUMERIC:
                row[m] = c.worst(m)
                row[f"{m}_median"] = c.median(m)
            row["trace_sha256"] = c.trace_digest
            row["runs"] = [r.to_json() for r in c.runs]
            cells.append(row)
        return {
            "scenario": self.scenario,
            "source": self.source,
            "params": [{"key": p.key, "values": [_plain(v) for v in p.values]} for p in self.params],
            "seeds": self.seeds,
            "cells": cells,
        }

    def to_markdown(self, command: str | None = None) -> str:
        """The table in Markdown: one row a cell."""
        many = len(self.seeds) > 1
        lines = [f"<!-- generated by `{command}` -->", ""] if command else []
        seeds = (
            f"seeds {self.seeds[0]}..{self.seeds[-1]}: each figure is the worst (max) over the seeds, "
            "the median in brackets"
            if many
            else f"seed {self.seeds[0]}"
        )
        lines += [f"Sweep of `{self.scenario}` ({self.source}); {seeds}.", ""]
        head = [f"`{p.key}`" for p in self.params] + [
            "violated",
            "worst wait (s)",
            "p99 wait (s)",
            "events",
            "sim time (s)",
            "traces sha256" if many else "trace sha256",
        ]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for c in self.cells:
            viol = ", ".join(f"**{v}**" for v in c.violated) or "holds"
            if many and c.violated:
                viol += f" ({c.violated_runs}/{len(c.runs)} seeds)"
            figs = [
                _fig(c, m, many, digits)
                for m, digits in (("worst_wait", 3), ("p99_wait", 3), ("events", 0), ("sim_time", 3))
            ]
            lines.append("| " + " | ".join(self.labels(c) + [viol] + figs + [c.trace_digest[:16]]) + " |")
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        """One row a run (cell x seed), for spreadsheets and pandas; violated invariants joined by ``;``."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(
            [p.key for p in self.params]
            + ["seed", "violated", "worst_wait", "p99_wait", "events", "sim_time", "trace_sha256"]
        )
        for c in self.cells:
            for r in c.runs:
                w.writerow(
                    self.labels(c)
                    + [
                        r.seed,
                        ";".join(r.violated),
                        _csv_num(r.worst_wait),
                        _csv_num(r.p99_wait),
                        r.events,
                        repr(r.sim_time),
                        r.trace_sha256,
                    ]
                )
        return buf.getvalue()

    def write(
        self, prefix: str, overwrite: bool = False, command: str | None = None, heatmap_png: bytes | None = None
    ) -> list[Path]:
        """Write the table (Markdown, JSON, CSV), and the heatmap when given its PNG bytes; returns the paths.

        Each file is written atomically; an existing file is refused (UsageError) unless ``overwrite``,
        checked for all of them before any is written. :func:`simroll.view.plots.write_sweep` draws
        the heatmap and calls this.
        """
        paths = output_paths(prefix)
        if heatmap_png is None:
            del paths["png"]
        for p in paths.values():
            check_new_file(p, overwrite)
        atomic_write_text(paths["md"], self.to_markdown(command), overwrite=overwrite)
        atomic_write_text(paths["json"], json.dumps(self.to_json(), indent=2) + "\n", overwrite=overwrite)
        atomic_write_text(paths["csv"], self.to_csv(), overwrite=overwrite)
        if heatmap_png is not None:
            atomic_write_bytes(paths["png"], heatmap_png, overwrite=overwrite)
        return list(paths.values())


def output_paths(prefix: str) -> dict[str, Path]:
    """The files of a sweep: ``PREFIX.md``, ``.json``, ``.csv`` and the heatmap ``.png`` (see :meth:`Sweep.write`)."""
    base = Path(prefix)
    return {ext: base.with_name(f"{base.name}.{ext}") for ext in ("md", "json", "csv", "png")}


def _plain(v: Any) -> Any:
    return float(v) if isinstance(v, _SourceFloat) else v


def _csv_num(x: float | None) -> str:
    return "" if x is None else repr(x)


def _fig(c: SweepCell, metric: str, many: bool, digits: int) -> str:
    worst = c.worst(metric)
    if worst is None:
        return "–"
    text = f"{worst:.{digits}f}"
    if many:
        text += f" ({c.median(metric):.{digits}f})"
    return text


def run_sweep(
    scenario: Scenario,
    params: Sequence[SweepParam | str],
    seeds: int | None = None,
    executor: Executor | None = None,
    source: str = "<scenario>",
) -> Sweep:
    """Run every cell of the grid of ``params`` (``SweepParam`` or ``"KEY=V1,V2"`` strings).

    ``seeds=N`` runs each cell with seeds ``0..N-1``; None, once with the scenario's seed.
    Every variant is built and validated before anything runs. ``executor`` (see
    :mod:`simroll.explore.parallel`) runs the cells; the result is the same for any executor.
    """
    ps = [p if isinstance(p, SweepParam) else SweepParam.parse(p) for p in params]
    if not ps:
        raise UsageError("a sweep needs at least one --param KEY=V1,V2,...")
    keys = [p.path for p in ps]
    for i, k in enumerate(keys):
        if k in keys[:i]:
            raise UsageError(f"--param {ps[i].key}: the same path is swept twice")
    if seeds is not None and seeds < 1:
        raise UsageError(f"seeds={seeds}: expected a positive number")
    # the size is a product of lengths: checked before the grid or the seed list is built
    n_cells = math.prod(len(p.values) for p in ps)
    n_seeds = seeds if seeds is not None else 1
    if n_cells * n_seeds > MAX_CELLS:
        raise UsageError(
            f"{n_cells:,} cells x {n_seeds:,} seeds = {n_cells * n_seeds:,} runs, more than the limit of {MAX_CELLS:,}"
        )
    seed_list = list(range(seeds)) if seeds is not None else [scenario.seed]
    combos = grid(ps)
    variants = [make_variant(scenario, list(zip(ps, combo)), source) for combo in combos]
    jobs = [(v, s) for v in variants for s in seed_list]
    figures = (executor or Executor()).map(_run_one, jobs)
    n = len(seed_list)
    cells = [SweepCell(combo, figures[k * n : (k + 1) * n]) for k, combo in enumerate(combos)]
    return Sweep(scenario.name, source, ps, seed_list, cells)


__all__ = [
    "METRICS",
    "RunFigures",
    "Sweep",
    "SweepCell",
    "SweepParam",
    "grid",
    "make_variant",
    "output_paths",
    "parse_path",
    "percentile",
    "run_sweep",
    "set_path",
]
