"""Plots that explain a run: who ran what when, where messages waited, who did the work,
the chain of events behind a violation, and where a lost write went.

Every function takes a :class:`~simroll.run.RunResult` or a list of trace records
(as :func:`simroll.read_trace` returns them) and returns a matplotlib
:class:`~matplotlib.figure.Figure`. Figures are built with the object API
(``Figure()``), never through ``pyplot``: no global figure registry, no
``plt.show()``, no GUI backend needed. :func:`write_plots` saves the plots that
explain a result as PNG or SVG files.

Given bare records, the violations are recomputed from the trace for the
invariants that need no parameter (no-lost-write, no-stranded-message,
no-incompatible-delivery, schema-compatible); the scenario's bounds are not in
the trace.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import matplotlib
import numpy as np  # matplotlib's own dependency
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from matplotlib.patches import Patch

from simroll.check.causality import causal_chains, happens_before
from simroll.errors import UsageError
from simroll.check.invariants import INVARIANTS, Violation
from simroll.run import RunResult

Record = dict[str, Any]
Source = RunResult | Sequence[Record]

CHAIN_COLOR = "#d62728"  # the causal chain and violations, in every plot
MUTED = "#9a9a9a"
PLOT_NAMES = ("release_timeline", "queue_depth", "engine_load", "sequence_diagram", "field_values")
_NEVER = "never taken"
_RC = {"svg.hashsalt": "simroll", "svg.fonttype": "path", "font.size": 9}  # same bytes for the same figure


# ---------------------------------------------------------------------------------------- the run
@dataclass
class _Run:
    """What every plot needs, from a RunResult or from bare records."""

    records: list[Record]
    violations: list[Violation]
    name: str
    seed: int | None
    releases: list[str]
    max_wait: float | None = None
    engines: list[str] = field(default_factory=list)
    columns: frozenset[str] = frozenset()  # table.column that exist at the start (known from a scenario only)

    @property
    def end(self) -> float:
        return float(self.records[-1]["t"]) if self.records else 0.0

    @property
    def subtitle(self) -> str:
        return self.name if self.seed is None else f"{self.name} (seed {self.seed})"


def _run(source: Source | _Run) -> _Run:
    if isinstance(source, _Run):
        return source
    if isinstance(source, RunResult):
        recs = source.trace()
        s = source.scenario
        bound = s.invariants.bounded_imbalance
        run = _Run(recs, source.violations, s.name, source.seed, list(s.releases),
                   None if bound is None else bound.max_wait,
                   columns=frozenset(f"{t}.{c}" for t, cols in s.database.tables.items() for c in cols))
    else:
        recs = list(source)
        begin = recs[0] if recs and recs[0]["kind"] == "begin" else {}
        run = _Run(recs, violations_from_trace(recs), begin.get("scenario", "trace"), None, [])
    for r in run.records:
        if r["kind"] == "start":
            if r["engine"] not in run.engines:
                run.engines.append(r["engine"])
            if r["release"] not in run.releases:
                run.releases.append(r["release"])
    return run


def violations_from_trace(records: Sequence[Record]) -> list[Violation]:
    """Violations of the parameterless invariants, recomputed from a trace alone, by time."""
    checkers = [INVARIANTS[n]() for n in ("no-lost-write", "no-stranded-message",
                                          "no-incompatible-delivery", "schema-compatible")]
    by_kind: dict[str, list] = {}
    for c in checkers:
        for k in c.kinds:
            by_kind.setdefault(k, []).append(c)
    for r in records:
        for c in by_kind.get(r["kind"], ()):
            c.observe(r)
    out = [v for c in checkers for v in c.violations]
    out.sort(key=lambda v: (v.time, v.event))
    return out


def chain_records(records: Sequence[Record], v: Violation) -> list[Record]:
    """Every record on a causal chain that ends at ``v`` (the union of its shortest chains), plus the
    records the violation names as its causes (a lost write need not happen-before the read that
    misses it) and the violating record itself, in order."""
    g = happens_before(list(records), upto=v.event)
    paths = causal_chains(g, v.event, v.causes)
    idx = sorted({i for path in paths for i in path} | {c for c in v.causes if c < len(records)} | {v.event})
    return [records[i] for i in idx]


def load_trace(path: str | os.PathLike[str]) -> list[Record]:
    """Read a trace written by ``simroll run --trace``; errors name the file and line."""
    records: list[Record] = []
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except ValueError as e:
                    raise UsageError(f"{path}: line {n}: not JSON ({e.msg})") from None
                if not isinstance(rec, dict) or not {"i", "t", "kind"} <= set(rec) or rec["i"] != len(records):
                    raise UsageError(f"{path}: line {n}: not a simroll trace record "
                                     f"(expected an object with i={len(records)}, t and kind)")
                records.append(rec)
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None
    if not records:
        raise UsageError(f"{path}: empty trace")
    return records


def _engine_colors(names: Sequence[str]) -> dict[str, Any]:
    cmap = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {n: cmap(k % cmap.N) for k, n in enumerate(names)}


def _release_colors(releases: Sequence[str]) -> dict[str, Any]:
    cmap = matplotlib.colormaps["Set2"]
    return {r: cmap(k % cmap.N) for k, r in enumerate(releases)}


def _legend_outside(ax, **kw) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=8, **kw)


def _mark_violations(ax, run: _Run, label: bool = True, within: tuple[float, float] | None = None) -> None:
    """A red line at the first violation, red ticks at the others (those that were kept); ``within``
    limits the ticks to a time window (they are drawn outside the clip box, below the axis)."""
    if not run.violations:
        return
    first = run.violations[0]
    ax.axvline(first.time, color=CHAIN_COLOR, lw=1.5, ls="-", zorder=5,
               label=f"first violation ({first.invariant}, t={first.time:.1f} s)" if label else None)
    lo, hi = within if within is not None else (float("-inf"), float("inf"))
    rest = sorted({v.time for v in run.violations[1:] if lo <= v.time <= hi})
    if rest:
        ax.plot(rest, [0.0] * len(rest), ls="", marker="^", ms=5, color=CHAIN_COLOR, zorder=5,
                transform=ax.get_xaxis_transform(), clip_on=False,
                label="later violations" if label else None)


def _mark_steps(ax, run: _Run, label: bool = True) -> None:
    """Faint dotted lines at the operator steps, numbered at the top."""
    for k, r in enumerate(x for x in run.records if x["kind"] == "step"):
        ax.axvline(r["t"], color="#777777", ls=":", lw=0.9, zorder=1,
                   label="operator step" if label and k == 0 else None)


# ---------------------------------------------------------------------------------------- releases
def _release_intervals(run: _Run) -> dict[str, list[tuple[float, float, str, str]]]:
    """Per engine: (from, to, release, phase) with phase 'running' or 'stopping'."""
    out: dict[str, list[tuple[float, float, str, str]]] = {e: [] for e in run.engines}
    open_: dict[str, tuple[float, str, str]] = {}
    for r in run.records:
        k = r["kind"]
        if k == "start":
            open_[r["engine"]] = (r["t"], r["release"], "running")
        elif k in ("stop", "stopped", "kill") and r["engine"] in open_:
            t0, rel, phase = open_.pop(r["engine"])
            out[r["engine"]].append((t0, r["t"], rel, phase))
            if k == "stop":
                open_[r["engine"]] = (r["t"], rel, "stopping")
    for e, (t0, rel, phase) in open_.items():
        out[e].append((t0, run.end, rel, phase))
    return out


def release_timeline(source: Source) -> Figure:
    """Which release each engine runs when; graceful stops, kills, operator steps and violations marked.

    One lane per engine; a bar per run of a release (hatched while the engine finishes
    in-flight work after a stop). Each bar patch has the gid ``"ENGINE|RELEASE|PHASE"``.
    """
    run = _run(source)
    colors = _release_colors(run.releases)
    n = max(1, len(run.engines))
    steps = [r for r in run.records if r["kind"] == "step"]
    step_lines = [f"{r['index']:>2}  t={r['t']:8.2f} s  {step_text(r)}" for r in steps]
    cols = 1 if len(step_lines) <= 6 else 2 if len(step_lines) <= 24 else 3
    list_rows = -(-len(step_lines) // cols)
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(12, max(3.0, 1.6 + 0.42 * n) + 0.17 * (list_rows + 2) * bool(steps)),
                     layout="constrained")
        if steps:
            ax, axs = fig.subplots(2, 1, gridspec_kw={"height_ratios": [max(3.0, 1.6 + 0.42 * n),
                                                                        0.17 * (list_rows + 2)]})
        else:
            ax, axs = fig.add_subplot(), None
        lane = {e: k for k, e in enumerate(run.engines)}
        for e, spans in _release_intervals(run).items():
            for t0, t1, rel, phase in spans:
                width = max(t1 - t0, run.end * 0.002)  # a zero-length stop still shows
                p = ax.barh(lane[e], width, left=t0, height=0.6, color=colors[rel],
                            edgecolor="black" if phase == "stopping" else colors[rel], lw=0.6,
                            hatch="////" if phase == "stopping" else None)[0]
                p.set_gid(f"{e}|{rel}|{phase}")
                if phase == "running" and t1 - t0 > run.end * 0.08:
                    ax.text(t0 + (t1 - t0) / 2, lane[e], rel, ha="center", va="center", fontsize=8)
        stops = [(r["t"], lane[r["engine"]]) for r in run.records if r["kind"] == "stop"]
        kills = [(r["t"], lane[r["engine"]]) for r in run.records if r["kind"] == "kill"]
        if stops:
            ax.plot(*zip(*stops), ls="", marker="|", ms=16, mew=2.2, color="black", zorder=4,
                    label="graceful stop")
        if kills:
            ax.plot(*zip(*kills), ls="", marker="X", ms=10, color=CHAIN_COLOR, mec="black", zorder=4,
                    label="kill")
        last_t, level = None, 0
        for k, r in enumerate(steps):
            ax.axvline(r["t"], color="#555555", ls=":", lw=1, zorder=1,
                       label="operator step (numbered, listed below)" if k == 0 else None)
            # steps close together get their numbers on alternating heights, so they do not overlap
            level = (level + 1) % 3 if last_t is not None and r["t"] - last_t < run.end * 0.025 else 0
            last_t = r["t"]
            ax.text(r["t"], 1.01 + 0.09 * level, str(r["index"]), transform=ax.get_xaxis_transform(),
                    va="bottom", ha="center", fontsize=7, clip_on=False,
                    bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="#555555", lw=0.6))
        _mark_violations(ax, run)
        ax.set_yticks(range(n), run.engines or ["(no engine)"])
        ax.set_ylim(n - 0.4, -0.6)
        ax.set_xlim(0, max(run.end, 1e-9))
        ax.set_xlabel("simulated time (s)")
        ax.set_ylabel("engine")
        ax.set_title(f"Releases per engine over time - {run.subtitle}", pad=30 if steps else 6)
        ax.grid(axis="x", alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        extra = [Patch(facecolor=colors[r], label=f"release {r}") for r in run.releases]
        extra.append(Patch(facecolor="white", edgecolor="black", hatch="////",
                           label="stopping (finishing in-flight work)"))
        ax.legend(extra + handles, [h.get_label() for h in extra] + labels, loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=8)
        if axs is not None:
            axs.axis("off")
            axs.set_title("operator steps", loc="left", fontsize=9)
            for c in range(cols):
                axs.text(c / cols, 1.0, "\n".join(step_lines[c * list_rows:(c + 1) * list_rows]),
                         transform=axs.transAxes, va="top", ha="left", fontsize=8, family="monospace")
    return fig


def step_text(r: Record) -> str:
    """A short description of an operator ``step`` record, e.g. ``restart engine-1 -> plus2``."""
    d = r["detail"]
    a = r["action"]
    if a in ("restart", "start"):
        return f"{a} {d.get(a)} -> {d.get('release')}" + (" (kill)" if d.get("how") == "kill" else "")
    if a in ("expand", "contract"):
        return f"{a} {', '.join(d[a])}"
    if a == "backfill":
        return f"backfill -> {d[a]['to']}"
    v = d.get(a)
    return f"{a} {v}" if isinstance(v, (str, int, float)) else a


# ---------------------------------------------------------------------------------------- queues
def _waiting_segments(run: _Run) -> list[tuple[float, float, str, str]]:
    """(from, to, where, version) for every stretch a message spent sent but not yet taken.

    ``where`` is the engine whose backlog it sat in -- the one that took it, or handed it
    back on a stop or kill -- or ``never taken`` for messages left or expired in a queue.
    """
    open_: dict[int, float] = {}
    version: dict[int, str] = {}
    segs: list[tuple[float, float, str, str]] = []
    for r in run.records:
        k = r["kind"]
        if k == "send":
            open_[r["msg"]] = r["t"]
            version[r["msg"]] = r["version"]
        elif k == "recv":
            m = r["msg"]
            if m in open_:
                segs.append((open_.pop(m), r["t"], r["engine"], version[m]))
        elif k == "requeue":
            m = r["msg"]
            if m in open_:  # handed back from a backlog; otherwise it was in flight (ack on-complete)
                segs.append((open_.pop(m), r["t"], r["engine"], version[m]))
            open_[m] = r["t"]
        elif k in ("left", "expire"):
            m = r["msg"]
            if m in open_:
                q = r["queue"]
                where = q.split("@", 1)[1] if q.startswith("backlog@") else _NEVER
                segs.append((open_.pop(m), r["t"], where, version[m]))
    for m, t0 in open_.items():  # a partial run: still waiting at the end
        segs.append((t0, run.end, _NEVER, version[m]))
    return segs


def _depth_series(segs: list[tuple[float, float, str]]) -> tuple[list[float], list[int]]:
    """Step series of how many segments are open at each time (ties: departures first)."""
    ev = sorted([(t0, 1) for t0, _, _ in segs] + [(t1, -1) for _, t1, _ in segs])
    xs, ys, n = [0.0], [0], 0
    for t, d in ev:
        n += d
        if xs[-1] == t:
            ys[-1] = n
        else:
            xs.append(t)
            ys.append(n)
    keep = [k for k in range(len(xs)) if k == 0 or ys[k] != ys[k - 1]]  # same count again: no change
    return [xs[k] for k in keep], [ys[k] for k in keep]


def queue_table(source: Source) -> dict[str, dict[str, tuple[list[float], list[int]]]]:
    """The series :func:`queue_depth` draws: ``{"backlog": {engine or "never taken": (times, counts)},
    "version": {version: (times, counts)}}``; each count holds from its time to the next one."""
    return _queue_table(_run(source))


def _queue_table(run: _Run) -> dict[str, dict[str, tuple[list[float], list[int]]]]:
    segs = _waiting_segments(run)
    backlog = {}
    for where in run.engines + [_NEVER]:
        mine = [(a, b, w) for a, b, w, _ in segs if w == where]
        if mine:
            backlog[where] = _depth_series(mine)
    versions = sorted({v for *_, v in segs}, key=_version_key)
    return {"backlog": backlog,
            "version": {v: _depth_series([(a, b, v) for a, b, _, vv in segs if vv == v]) for v in versions}}


def queue_depth(source: Source) -> Figure:
    """Messages waiting over time, per engine backlog and per message version, and each message's wait.

    Top: messages sent and not yet taken, by the engine whose backlog they sat in (with
    oslo.messaging's unlimited prefetch a topic message goes to a consumer at once), plus
    those never taken. Middle: the same by message version. Bottom: the queue wait of every
    taken message, with the scenario's ``bounded-imbalance`` bound when it has one.
    Lines carry the gid ``"backlog|WHERE"`` / ``"version|V"``.
    """
    run = _run(source)
    tab = _queue_table(run)
    colors = _engine_colors(run.engines)
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(12, 9), layout="constrained")
        ax1, ax2, ax3 = fig.subplots(3, 1, sharex=True)
        for where, (xs, ys) in tab["backlog"].items():
            ax1.step(xs, ys, where="post", lw=1.6 if where == _NEVER else 1.1,
                     color="black" if where == _NEVER else colors[where],
                     ls="--" if where == _NEVER else "-", label=where, gid=f"backlog|{where}")
        vcolors = _engine_colors(list(tab["version"]))
        for v, (xs, ys) in tab["version"].items():
            ax2.step(xs, ys, where="post", lw=1.2, color=vcolors[v], label=f"version {v}", gid=f"version|{v}")
        for e in run.engines:
            pts = [(r["t"], r["wait"]) for r in run.records if r["kind"] == "recv" and r["engine"] == e]
            if pts:
                ax3.plot(*zip(*pts), ls="", marker=".", ms=3, color=colors[e], label=e, gid=f"wait|{e}")
        if run.max_wait is not None:
            ax3.axhline(run.max_wait, color=CHAIN_COLOR, ls="--", lw=1,
                        label=f"bounded-imbalance max_wait ({run.max_wait:g} s)")
        for ax in (ax1, ax2, ax3):
            _mark_steps(ax, run, label=ax is ax1)
            _mark_violations(ax, run, label=ax is ax1)
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                _legend_outside(ax)
        ax1.set_title(f"Messages waiting to be taken - {run.subtitle}")
        ax1.set_ylabel("waiting, by backlog\n(messages)")
        ax2.set_ylabel("waiting, by version\n(messages)")
        ax3.set_ylabel("queue wait of each\ntaken message (s)")
        ax3.set_xlabel("simulated time (s)")
        ax3.set_xlim(0, max(run.end, 1e-9))
        for ax in (ax1, ax2):
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylim(bottom=0)
        if not tab["backlog"]:
            ax1.text(0.5, 0.5, "no message was sent", transform=ax1.transAxes, ha="center")
    return fig


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) if x.isdigit() else 0 for x in v.split("."))


# ---------------------------------------------------------------------------------------- load
def _busy(run: _Run) -> tuple[dict[str, list[tuple[float, float]]], dict[str, list[tuple[float, float, int]]]]:
    """Per engine: busy intervals (recv to done, or to the kill), and running intervals with workers."""
    busy: dict[str, list[tuple[float, float]]] = {e: [] for e in run.engines}
    running: dict[str, list[tuple[float, float, int]]] = {e: [] for e in run.engines}
    taken: dict[tuple[str, int], float] = {}
    up: dict[str, tuple[float, int]] = {}
    for r in run.records:
        k = r["kind"]
        if k == "recv":
            taken[(r["engine"], r["msg"])] = r["t"]
        elif k in ("done", "reject"):
            t0 = taken.pop((r["engine"], r["msg"]), None)
            if t0 is not None:
                busy[r["engine"]].append((t0, r["t"]))
        elif k == "start":
            up[r["engine"]] = (r["t"], r["workers"])
        elif k in ("stopped", "kill"):
            e = r["engine"]
            if e in up:
                t0, w = up.pop(e)
                running[e].append((t0, r["t"], w))
            for key in [key for key in taken if key[0] == e]:
                busy[e].append((taken.pop(key), r["t"]))
    for (e, _), t0 in taken.items():
        busy[e].append((t0, run.end))
    for e, (t0, w) in up.items():
        running[e].append((t0, run.end, w))
    return busy, running


def _per_bin(intervals, edges: list[float], weight=lambda iv: 1.0) -> list[float]:
    out = [0.0] * (len(edges) - 1)
    width = edges[1] - edges[0]
    for iv in intervals:
        a, b = iv[0], iv[1]
        if b <= a:
            continue
        k0 = min(int(a / width), len(out) - 1)
        k1 = min(int(b / width), len(out) - 1)
        for k in range(k0, k1 + 1):
            lo, hi = max(a, edges[k]), min(b, edges[k + 1])
            if hi > lo:
                out[k] += (hi - lo) * weight(iv)
    return out


def load_table(source: Source, bins: int = 60) -> dict[str, Any]:
    """The numbers :func:`engine_load` draws: bin edges (s), per-engine utilisation per bin
    (busy time / (workers x running time), None while stopped), messages taken by version, rejects."""
    return _load_table(_run(source), bins)


def _load_table(run: _Run, bins: int) -> dict[str, Any]:
    end = max(run.end, 1e-9)
    edges = [end * k / bins for k in range(bins + 1)]
    busy, running = _busy(run)
    util: dict[str, list[float | None]] = {}
    for e in run.engines:
        b = _per_bin(busy[e], edges)
        cap = _per_bin(running[e], edges, weight=lambda iv: iv[2])
        util[e] = [None if c <= 1e-12 else min(1.0, x / c) for x, c in zip(b, cap)]
    version_of = {r["msg"]: r["version"] for r in run.records if r["kind"] == "send"}
    taken: dict[str, dict[str, int]] = {e: {} for e in run.engines}
    rejects = {e: 0 for e in run.engines}
    total_busy = {e: sum(b - a for a, b in busy[e]) for e in run.engines}
    total_cap = {e: sum((b - a) * w for a, b, w in running[e]) for e in run.engines}
    for r in run.records:
        if r["kind"] == "recv":
            v = version_of.get(r["msg"], "?")
            taken[r["engine"]][v] = taken[r["engine"]].get(v, 0) + 1
        elif r["kind"] == "reject":
            rejects[r["engine"]] += 1
    mean = {e: (total_busy[e] / total_cap[e] if total_cap[e] > 0 else 0.0) for e in run.engines}
    return {"edges": edges, "util": util, "taken": taken, "rejects": rejects, "mean_util": mean}


def engine_load(source: Source, bins: int = 60) -> Figure:
    """Per-engine utilisation over time (heat map) and messages taken per engine, by version.

    Utilisation is the time an engine spends handling messages over its capacity (workers)
    while it runs; grey where it is stopped. Bars are stacked per message version; the
    number of rejected messages is written after each bar.
    """
    run = _run(source)
    tab = _load_table(run, bins)
    engines = run.engines
    n = max(1, len(engines))
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(12, 2.4 + 0.42 * n), layout="constrained")
        ax, axb = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [3.2, 1]})
        cmap = matplotlib.colormaps["YlOrRd"].with_extremes(bad="#e0e0e0")
        grid = np.array([[np.nan if u is None else 100 * u for u in tab["util"][e]] for e in engines]
                        or [[np.nan]])
        edges = tab["edges"]
        im = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap=cmap, vmin=0, vmax=100,
                       extent=(edges[0], edges[-1], n - 0.5, -0.5), interpolation="nearest")
        im.set_gid("utilisation")
        cb = fig.colorbar(im, ax=ax, location="right", pad=0.01, fraction=0.04)
        cb.set_label("utilisation (% of capacity; grey: stopped)")
        ax.set_yticks(range(n), [f"{e} ({100 * tab['mean_util'][e]:.0f}%)" for e in engines] or ["(none)"])
        ax.set_xlabel(f"simulated time (s), bins of {edges[1] - edges[0]:.3g} s")
        ax.set_ylabel("engine (mean utilisation)")
        ax.set_title(f"Per-engine load - {run.subtitle}")
        _mark_violations(ax, run)
        if run.violations:
            ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
        versions = sorted({v for e in engines for v in tab["taken"][e]}, key=_version_key)
        vcolors = _engine_colors(versions)
        left = [0] * n
        for v in versions:
            counts = [tab["taken"][e].get(v, 0) for e in engines]
            bars = axb.barh(range(n), counts, left=left, color=vcolors[v], label=f"version {v}", height=0.6)
            for e, p in zip(engines, bars):
                p.set_gid(f"taken|{e}|{v}")
            left = [a + b for a, b in zip(left, counts)]
        for k, e in enumerate(engines):
            rej = tab["rejects"][e]
            axb.text(left[k], k, f" {left[k]}" + (f" ({rej} rejected)" if rej else ""), va="center", fontsize=7)
        axb.set_xlabel("messages taken (count)")
        axb.set_title("Messages taken, by version")
        axb.set_xlim(0, max(left + [1]) * 1.45)
        axb.grid(axis="x", alpha=0.3)
        if versions:
            axb.legend(loc="lower right", fontsize=8)
    return fig


# ---------------------------------------------------------------------------------------- sequence
_SEQ_KINDS = frozenset({"send", "recv", "reject", "read", "write", "rewrite", "bf_read", "bf_write", "step",
                        "start", "stop", "stopped", "kill", "requeue", "lost", "left", "expire",
                        "schema_error", "fault", "init", "send_error", "done"})
_BUS, _DB, _OP, _BF, _CLIENT = "bus", "database", "operator", "backfill", "client"


def sequence_records(source: Source, violation: Violation | None = None, window: int = 30,
                     max_rows: int = 60) -> tuple[list[Record], set[int], Violation | None]:
    """The records :func:`sequence_diagram` shows, the numbers of those on the causal chain, and the
    violation it explains (the first one, unless given).

    The chain (all its records, or its first 3 and last ones when longer than ``max_rows``) plus the
    ``window`` records before the violation; without a violation, ``window`` records from the first
    operator step (or the start).
    """
    return _sequence_records(_run(source), violation, window, max_rows)


def _sequence_records(run: _Run, violation: Violation | None, window: int,
                      max_rows: int) -> tuple[list[Record], set[int], Violation | None]:
    recs = run.records
    v = violation if violation is not None else (run.violations[0] if run.violations else None)
    chain: list[Record] = chain_records(recs, v) if v is not None else []
    if len(chain) > max_rows:
        chain = chain[:3] + chain[-(max_rows - 3):]
    on_chain = {r["i"] for r in chain}
    if v is not None:
        lo, hi = max(0, v.event - window * 10), v.event + 1
    else:
        first = next((r["i"] for r in recs if r["kind"] == "step"), 0)
        lo, hi = first, first + window * 3
    # context: the last `window` records before the violation that concern it (done records are noise)
    ctx = [r for r in recs[lo:hi] if r["kind"] in _SEQ_KINDS and r["kind"] != "done"]
    if v is not None:
        keep = _relevant(v, chain, ctx)
        ctx = [r for r in ctx if keep(r)][-window:]
    else:
        ctx = ctx[:window]
    room = max(0, max_rows - len(on_chain))
    ctx = [r for r in ctx if r["i"] not in on_chain][-room:] if room else []
    shown = sorted(chain + ctx, key=lambda r: r["i"])
    return shown, on_chain, v


def _relevant(v: Violation, chain: list[Record], ctx: list[Record]):
    """A filter for context records: operator and lifecycle events, the engines of the violation and
    of its chain, the same row or message, and the sends of messages those engines took."""
    engines = set(v.engines) | {r["engine"] for r in chain if "engine" in r}
    m = _SUBJECT.match(v.subject)
    row = int(m["row"]) if m else None
    msgs = {r["msg"] for r in chain if "msg" in r}
    if v.subject.startswith("m") and v.subject[1:].isdigit():
        msgs.add(int(v.subject[1:]))
    msgs |= {r["msg"] for r in ctx if r["kind"] == "recv" and r["engine"] in engines}
    lifecycle = {"step", "start", "stop", "stopped", "kill", "fault"}

    def keep(r: Record) -> bool:
        return (r["kind"] in lifecycle or r.get("engine") in engines or r.get("msg") in msgs
                or (row is not None and r.get("row") == row))
    return keep


def _seq_arrow(r: Record) -> tuple[str, str | None, str]:
    """(from lane, to lane or None for a mark on one lane, label)."""
    k, e = r["kind"], r.get("engine", "")
    m = f"m{r['msg']}" if "msg" in r else ""
    if k == "send":
        return e, _BUS, f"{m} {r['method']} v{r['version']} {'call' if r['call'] else 'cast'} (row {r['row']})"
    if k == "recv":
        return _BUS, e, f"takes {m} (waited {r['wait']:.2f} s)"
    if k == "reject":
        return e, _BUS, f"rejects {m}: {r['error']}"
    if k == "read":
        return _DB, e, f"read {r['field']}[{r['row']}] from {r['loc']} = {r['value']!r}"
    if k == "write":
        return e, _DB, f"write {r['field']}[{r['row']}] = {r['value']!r} to {', '.join(r['locs'] + r['trig'])}"
    if k == "rewrite":
        return e, _DB, f"rewrite row {r['row']}: " + ", ".join(f"{c}={v!r}" for c, v in r["cols"].items())
    if k == "bf_read":
        return _DB, _BF, f"backfill read row {r['row']} of {r['loc']} = {r['value']!r}"
    if k == "bf_write":
        return _BF, _DB, f"backfill write row {r['row']} of {r['loc']} = {r['value']!r}"
    if k == "step":
        target = r["detail"].get(r["action"])
        return _OP, target if isinstance(target, str) and target.startswith(tuple("abcdefghijklmnopqrstuvwxyz")) \
            and r["action"] in ("restart", "stop", "kill", "start") else None, f"step {r['index']}: {step_text(r)}"
    if k in ("requeue", "lost"):
        return e, _BUS, f"{m} {'goes back to the queue' if k == 'requeue' else 'is lost'}"
    if k in ("left", "expire"):
        return _BUS, None, f"{m} {'left in' if k == 'left' else 'expires in'} {r['queue']}"
    if k == "init":
        return _DB, None, f"{r['field']} rows 0..{r['rows'] - 1} = init* in {', '.join(r['locs'])}"
    if k == "start":
        return e, None, f"starts on {r['release']}"
    if k == "stop":
        return e, None, "stops taking messages"
    if k == "stopped":
        return e, None, "has stopped"
    if k == "kill":
        return e, None, "killed"
    if k == "fault":
        return e, None, f"fault: {r['action']}"
    if k == "done":
        return e, None, f"finishes {m}"
    if k == "schema_error":
        return e, _DB, f"{r['op']} {', '.join(r['locs'])}: no such column"
    if k == "send_error":
        return e, None, f"cannot send {r['method']}: {r['error']}"
    return e or _BUS, None, k


def sequence_diagram(source: Source, violation: Violation | None = None, window: int = 30,
                     max_rows: int = 60) -> Figure:
    """A sequence diagram: client, operator, bus, engines, database and backfill as lifelines,
    messages and reads/writes as arrows, one row per record (time runs down; each row is labelled
    with its time and record number). The causal chain of the violation is drawn in red; rows where
    records were skipped are marked. Chain arrows carry the gid ``"chain|I"``, others ``"rec|I"``.
    """
    run = _run(source)
    shown, on_chain, v = _sequence_records(run, violation, window, max_rows)
    arrows = [(r, *_seq_arrow(r)) for r in shown]
    used = {a for _, a, _, _ in arrows} | {b for _, _, b, _ in arrows if b}
    engines = [e for e in run.engines if e in used]
    lanes = [x for x in (_OP, _CLIENT, _BUS) if x in used] + engines + [x for x in (_DB, _BF) if x in used]
    lanes += sorted(x for x in used if x not in lanes)
    x_of = {name: k for k, name in enumerate(lanes)}
    rows = max(1, len(shown))
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(max(11.0, 1.25 * len(lanes) + 5), 1.8 + 0.3 * rows), layout="constrained")
        ax = fig.add_subplot()
        for name, x in x_of.items():
            ax.axvline(x, color="#bbbbbb", lw=1, zorder=0)
        prev = None
        for y, (r, a, b, text) in enumerate(arrows):
            hot = r["i"] in on_chain
            color = CHAIN_COLOR if hot else "#6f6f6f"
            gid = f"{'chain' if hot else 'rec'}|{r['i']}"
            if prev is not None and r["i"] - prev > 1:
                ax.axhline(y - 0.5, color="#dddddd", lw=0.8, ls=(0, (1, 2)), zorder=0)
            prev = r["i"]
            xa = x_of[a]
            if b is not None and b != a:
                xb = x_of[b]
                ann = ax.annotate("", xy=(xb, y), xytext=(xa, y),
                                  arrowprops=dict(arrowstyle="-|>", color=color, lw=2.0 if hot else 0.9,
                                                  shrinkA=2, shrinkB=2), zorder=3)
                ann.set_gid(gid)
                tx, ha = min(xa, xb) + 0.05, "left"
            else:
                ax.plot([xa], [y], marker="s", ms=6 if hot else 4, color=color, zorder=3, gid=gid)
                tx, ha = xa + 0.12, "left"
            ax.text(tx, y - 0.12, text, fontsize=7, ha=ha, va="bottom", color="black" if hot else "#555555",
                    fontweight="bold" if hot else "normal", zorder=4, clip_on=False,
                    bbox=dict(facecolor="white", edgecolor="none", pad=0.4, alpha=0.75))
            if v is not None and r["i"] == v.event:
                ax.plot([xa if b is None else x_of[b]], [y], marker="*", ms=16, color=CHAIN_COLOR,
                        mec="black", zorder=5, gid="violation")
        ax.set_xticks(range(len(lanes)), lanes, rotation=0 if len(lanes) <= 8 else 30,
                      ha="center" if len(lanes) <= 8 else "right")
        ax.xaxis.tick_top()
        ax.set_xlim(-0.5, len(lanes) - 0.5 + 1.5)  # room for labels right of the last lifeline
        ax.set_yticks(range(rows), [f"t={r['t']:.3f} s  #{r['i']}" for r in shown] or [""], fontsize=7)
        ax.set_ylim(rows - 0.5, -0.8)
        ax.set_ylabel("trace records in order (simulated time, record number)")
        ax.set_xlabel("lifelines")
        ax.xaxis.set_label_position("top")
        what = (f"causal chain of the first {v.invariant} violation (t={v.time:.3f} s, #{v.event})"
                if v is not None else "no violation: the records around the first operator step")
        ax.set_title(f"Sequence diagram - {run.subtitle}\n{what}", fontsize=10)
        if v is not None:
            fig.supxlabel("violation: " + _wrap(v.message, 150), fontsize=8, color=CHAIN_COLOR)
        handles = [Line2D([], [], color=CHAIN_COLOR, lw=2, label="on the causal chain"),
                   Line2D([], [], color="#6f6f6f", lw=0.9, label="other records (context)"),
                   Line2D([], [], color="#dddddd", ls=":", label="records skipped between rows")]
        if v is not None:
            handles.append(Line2D([], [], ls="", marker="*", ms=12, color=CHAIN_COLOR, mec="black",
                                  label=f"the violation ({v.invariant})"))
        ax.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.95)
        for s in ("right", "bottom"):
            ax.spines[s].set_visible(False)
    return fig


def _wrap(text: str, width: int) -> str:
    words, lines, cur = text.split(" "), [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}" if cur else w
    return "\n".join(lines + [cur])


# ---------------------------------------------------------------------------------------- values
_SUBJECT = re.compile(r"^(?P<field>\w+)\[(?P<row>\d+)\]$")


class Read(NamedTuple):
    """One read of the field and row a :class:`FieldHistory` follows."""

    t: float
    engine: str
    loc: str
    value: Any
    expected: Any  # the latest acknowledged write at that moment

    @property
    def stale(self) -> bool:
        return self.value != self.expected


@dataclass
class FieldHistory:
    """Where one logical field of one row lived over time (what :func:`field_values` draws).

    ``cells``: per location, (time, value) changes; ``None`` is empty, ``"(dropped)"`` a contracted column.
    ``latest``: (time, value) of each acknowledged write (the value every read should return).
    ``reads``: every read, as :class:`Read`; ``bf_reads`` / ``bf_writes``: (time, location, value) of the backfill's reads and writes.
    """

    field: str
    row: int
    cells: dict[str, list[tuple[float, Any]]]
    latest: list[tuple[float, Any]]
    reads: list[Read]
    bf_reads: list[tuple[float, str, Any]]
    bf_writes: list[tuple[float, str, Any]] = field(default_factory=list)


DROPPED = "(dropped)"


def field_history(source: Source, subject: str | None = None) -> FieldHistory:
    """The history of ``subject`` (``"field[row]"``); default: the first no-lost-write violation's
    subject, else the first field with more than one location, row 0."""
    return _field_history(_run(source), subject)


def _field_history(run: _Run, subject: str | None) -> FieldHistory:
    recs = run.records
    if subject is None:
        lost = [v for v in run.violations if v.invariant == "no-lost-write"]
        subject = lost[0].subject if lost else _default_subject(recs)
    m = _SUBJECT.match(subject or "")
    if m is None:
        raise UsageError(f"field_values: subject {subject!r}: expected FIELD[ROW], e.g. resource_props[3]")
    fld, row = m["field"], int(m["row"])
    locs: list[str] = []

    def own(loc: str) -> None:
        if loc not in locs:
            locs.append(loc)

    for r in recs:  # the locations of this field: where it is initialised, written, read or backfilled
        if r.get("field") == fld:
            for loc in r.get("locs", []) + r.get("trig", []) + ([r["loc"]] if "loc" in r else []):
                own(loc)
    for r in recs:
        if r["kind"] in ("bf_read", "bf_write") and (r["loc"] in locs or any(t in locs for t in r.get("trig", []))):
            own(r["loc"])
    # a column that exists from the start holds nothing until someone writes it
    cells: dict[str, list[tuple[float, Any]]] = {loc: [(0.0, None)] if loc in run.columns else [] for loc in locs}
    latest: list[tuple[float, Any]] = []
    reads: list[Read] = []
    bf_reads: list[tuple[float, str, Any]] = []
    bf_writes: list[tuple[float, str, Any]] = []

    def put(loc: str, t: float, value: Any) -> None:
        if loc in cells:
            seq = cells[loc]
            if seq and seq[-1][0] == t:  # two changes at one instant: the cell holds the last
                seq[-1] = (t, value)
            else:
                seq.append((t, value))

    for r in recs:
        k, t = r["kind"], r["t"]
        if k == "init" and r["field"] == fld and row < r["rows"]:
            latest.append((t, f"init{row}"))
            for loc in r["locs"]:
                put(loc, t, f"init{row}")
        elif r.get("row") != row:
            if k == "step" and r["action"] in ("expand", "contract"):
                for item in r["detail"][r["action"]]:
                    for loc in locs:
                        if loc == item or loc.split(".")[0] == item:
                            put(loc, t, None if r["action"] == "expand" else DROPPED)
            continue
        elif k == "write" and r["field"] == fld:
            latest.append((t, r["value"]))
            for loc in r["locs"] + r["trig"]:
                put(loc, t, r["value"])
        elif k == "rewrite":
            for loc, value in r["cols"].items():
                put(loc, t, value)
        elif k == "bf_write":
            for loc in [r["loc"]] + r.get("trig", []):
                put(loc, t, r["value"])
            if r["loc"] in cells:
                bf_writes.append((t, r["loc"], r["value"]))
        elif k == "read" and r["field"] == fld:
            # before any init or write there is nothing to lose: the read counts as up to date
            reads.append(Read(t, r["engine"], r["loc"], r["value"], latest[-1][1] if latest else r["value"]))
        elif k == "bf_read" and r["loc"] in cells:
            bf_reads.append((t, r["loc"], r["value"]))
    return FieldHistory(fld, row, cells, latest, reads, bf_reads, bf_writes)


def _default_subject(recs: Sequence[Record]) -> str | None:
    for r in recs:
        if r["kind"] == "write" and len(r["locs"]) + len(r["trig"]) > 1:
            return f"{r['field']}[{r['row']}]"
    for r in recs:
        if r["kind"] == "read":
            return f"{r['field']}[{r['row']}]"
    return None


def field_values(source: Source, subject: str | None = None) -> Figure:
    """For a lost write: each physical location's value of one field and row over time.

    The y axis lists the values in the order they were first written ("empty" at the bottom);
    each location is a step line, the latest acknowledged write a thick grey line behind them.
    Reads are marked where they read: a green dot when they returned the latest write, a red
    cross when they returned a stale or empty value; the backfill's reads and writes are marked
    too. When the violation comes at the end of a long history, a second panel zooms in on the
    last changes before it. ``subject`` is ``"field[row]"``; by default the first no-lost-write
    violation's.
    """
    run = _run(source)
    h = _field_history(run, subject)
    order: list[Any] = [None]
    for seq in [h.latest] + list(h.cells.values()) + [[(rd.t, rd.value) for rd in h.reads]]:
        for _, val in seq:
            if val not in order and val != DROPPED:
                order.append(val)
    order = [None] + sorted(order[1:], key=lambda val: _first_seen(h, val))
    y_of = {val: k for k, val in enumerate(order)}
    end = max(run.end, 1e-9)
    zoom = _zoom_window(run, h, end)
    with matplotlib.rc_context(_RC):
        height = 2.8 + 0.22 * min(len(order), 40)
        fig = Figure(figsize=(12, height + (3.4 if zoom else 0)), layout="constrained")
        if zoom:
            ax, axz = fig.subplots(2, 1, gridspec_kw={"height_ratios": [height, 3.4]})
        else:
            ax, axz = fig.add_subplot(), None
        _draw_history(ax, h, y_of, end, annotate=None if zoom else (0.0, end))
        labels = ["empty" if val is None else str(val) for val in order]
        step = max(1, len(order) // 30)
        ax.set_yticks(range(0, len(order), step), labels[::step])
        ax.set_ylim(-0.6, len(order) - 0.4)
        ax.set_xlim(0, end)
        _mark_violations(ax, run)
        ax.set_xlabel("simulated time (s)")
        ax.set_ylabel("value held (in the order written)")
        ax.set_title(f"Where {h.field}[{h.row}] lives over time - {run.subtitle}")
        ax.grid(alpha=0.3)
        _legend_outside(ax)
        if axz is not None and zoom is not None:
            t0, t1 = zoom
            ax.axvspan(t0, t1, color="#ffe9a8", alpha=0.5, zorder=0, label="zoomed below")
            _legend_outside(ax)
            _draw_history(axz, h, y_of, end, annotate=zoom)
            seen = [y_of[v] for seq in h.cells.values() for a, b, v in _segments(seq, end)
                    if v != DROPPED and a <= t1 and b >= t0]
            seen += [y_of[rd.value] for rd in h.reads if t0 <= rd.t <= t1]
            seen += [y_of[v] for t, v in h.latest if t0 <= t <= t1]
            lo, hi = min(seen, default=0), max(seen, default=len(order) - 1)
            ticks = list(range(lo, hi + 1))[::max(1, (hi - lo) // 12 + 1)]  # at most a dozen labels
            axz.set_yticks(ticks, [labels[k] for k in ticks])
            axz.set_ylim(lo - 0.6, hi + 0.6)
            axz.set_xlim(t0, t1)
            _mark_violations(axz, run, label=False, within=zoom)
            axz.set_xlabel("simulated time (s)")
            axz.set_ylabel("value held")
            axz.set_title(f"Close-up: {t0:.2f} s to {t1:.2f} s, the last changes before the violation", fontsize=9)
            axz.grid(alpha=0.3)
    return fig


def _zoom_window(run: _Run, h: FieldHistory, end: float, changes: int = 5) -> tuple[float, float] | None:
    """A window over the last ``changes`` changes before the field's first violation (and the backfill's
    last read of the row), or None when the full history already shows them legibly."""
    subject = f"{h.field}[{h.row}]"
    times = [v.time for v in run.violations if v.invariant == "no-lost-write" and v.subject == subject]
    if not times:
        return None
    tv = min(times)
    events = sorted({t for seq in h.cells.values() for t, _ in seq if t <= tv}
                    | {rd.t for rd in h.reads if rd.t <= tv} | {t for t, _, _ in h.bf_reads if t <= tv})
    if len(events) < 2:
        return None
    t0 = events[max(0, len(events) - changes)]
    copies = [t for t, _, _ in h.bf_reads if t <= tv]
    if copies:  # the backfill's last read of the row belongs in the picture: it may be the stale copy
        t0 = min(t0, copies[-1])
    margin = max((tv - t0) * 0.15, end * 0.003)
    window = (max(0.0, t0 - margin), min(end, tv + margin))
    # zoom only where the main panel crowds those changes into less than an eighth of its width
    return window if window[1] - window[0] < 0.125 * end else None


def _draw_history(ax, h: FieldHistory, y_of: dict[Any, int], end: float,
                  annotate: tuple[float, float] | None) -> None:
    """The lines and markers of :func:`field_values` on one axes; the first stale reads within the
    ``annotate`` time window get a label."""
    colors = _engine_colors(list(h.cells))
    offsets = {loc: 0.12 * (k - (len(h.cells) - 1) / 2) for k, loc in enumerate(h.cells)}
    if h.latest:
        xs, ys = _steps(h.latest, end, y_of)
        ax.step(xs, ys, where="post", color="#cccccc", lw=7, solid_capstyle="butt", zorder=1,
                label="latest acknowledged write", gid="latest")
    styles = ["-", "--", "-.", ":"]
    for k, (loc, seq) in enumerate(h.cells.items()):
        live = _segments(seq, end)
        first = True
        for t0, t1, val in live:
            if val == DROPPED:
                continue
            y = y_of[val] + offsets[loc]
            ax.plot([t0, t1], [y, y], color=colors[loc], lw=2, ls=styles[k % 4], zorder=3,
                    label=f"location {loc}" if first else None, gid=f"cell|{loc}")
            first = False
        for (t0, _, v0), (t1, _, v1) in zip(live, live[1:]):  # vertical joins between values
            if v0 != DROPPED and v1 != DROPPED:
                ax.plot([t1, t1], [y_of[v0] + offsets[loc], y_of[v1] + offsets[loc]], color=colors[loc],
                        lw=1, ls=styles[k % 4], zorder=3)
        drops = [t for t, val in seq if val == DROPPED]
        if drops:
            ax.plot(drops, [y_of[None] + offsets[loc]] * len(drops), ls="", marker="v", ms=8,
                    color=colors[loc], mec="black", label=f"{loc} dropped (contract)")
    ok = [(rd.t, y_of[rd.value] + offsets.get(rd.loc, 0)) for rd in h.reads if not rd.stale]
    bad = [rd for rd in h.reads if rd.stale]
    if ok:
        ax.plot(*zip(*ok), ls="", marker="o", ms=6, color="#2ca02c", mec="black", zorder=4,
                label="read returned the latest write", gid="reads|ok")
    if bad:
        ax.plot([rd.t for rd in bad], [y_of[rd.value] + offsets.get(rd.loc, 0) for rd in bad], ls="", marker="X",
                ms=11, color=CHAIN_COLOR, mec="black", zorder=5, label="stale read (lost write)", gid="reads|stale")
        if annotate is not None:
            for rd in [rd for rd in bad if annotate[0] <= rd.t <= annotate[1]][:4]:
                ax.annotate(f"{rd.engine} reads {rd.loc} = {_show(rd.value)}\n(latest write: {_show(rd.expected)})",
                            xy=(rd.t, y_of[rd.value] + offsets.get(rd.loc, 0)), xytext=(8, 14),
                            textcoords="offset points", fontsize=7, color=CHAIN_COLOR,
                            arrowprops=dict(arrowstyle="-", color=CHAIN_COLOR, lw=0.6))
    if h.bf_reads:
        ax.plot([t for t, _, _ in h.bf_reads], [y_of[val] + offsets[loc] for t, loc, val in h.bf_reads],
                ls="", marker="D", ms=6, color="#8c564b", mec="black", zorder=4, label="backfill read",
                gid="backfill|read")
    if h.bf_writes:
        ax.plot([t for t, _, _ in h.bf_writes], [y_of[val] + offsets[loc] for t, loc, val in h.bf_writes],
                ls="", marker="D", ms=8, mfc="white", color="#8c564b", mew=2, zorder=4, label="backfill write",
                gid="backfill|write")


def _first_seen(h: FieldHistory, val: Any) -> float:
    times = [t for seq in [h.latest] + list(h.cells.values()) for t, v in seq if v == val]
    times += [rd.t for rd in h.reads if rd.value == val]
    return min(times) if times else 0.0


def _show(value: Any) -> str:
    return "empty" if value is None else str(value)


def _segments(seq: list[tuple[float, Any]], end: float) -> list[tuple[float, float, Any]]:
    return [(t, seq[k + 1][0] if k + 1 < len(seq) else end, val) for k, (t, val) in enumerate(seq)]


def _steps(seq: list[tuple[float, Any]], end: float, y_of: dict[Any, int]) -> tuple[list[float], list[int]]:
    return [t for t, _ in seq] + [end], [y_of[v] for _, v in seq] + [y_of[seq[-1][1]]]


# ---------------------------------------------------------------------------------------- files
def figure_bytes(fig: Figure, fmt: str = "png", dpi: int = 110) -> bytes:
    """The figure as PNG or SVG bytes (no timestamps: the same figure gives the same bytes)."""
    if fmt not in ("png", "svg"):
        raise UsageError(f"format {fmt!r}: expected png or svg")
    buf = io.BytesIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format=fmt, dpi=dpi, metadata={"Date": None} if fmt == "svg" else {"Software": None})
    return buf.getvalue()


def explaining_plots(source: Source) -> dict[str, Figure]:
    """The plots that explain a result, by name: always the release timeline, queue depth, engine
    load and sequence diagram; the field values too when a write was lost."""
    run = _run(source)
    out = {"release_timeline": release_timeline(run), "queue_depth": queue_depth(run),
           "engine_load": engine_load(run), "sequence_diagram": sequence_diagram(run)}
    if any(v.invariant == "no-lost-write" for v in run.violations):
        out["field_values"] = field_values(run)
    return out


def write_plots(result: Source, out_dir: str | os.PathLike[str], fmt: str = "png",
                overwrite: bool = True) -> list[Path]:
    """Write the plots that explain ``result`` to ``out_dir`` (created if needed) as ``NAME.png`` or
    ``NAME.svg``; each file is written atomically. Returns the paths written, in plot order.
    With ``overwrite=False`` an existing file is an error (before anything is written)."""
    if fmt not in ("png", "svg"):
        raise UsageError(f"--format {fmt!r}: expected png or svg")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: not a directory")
    figs = explaining_plots(result)
    paths = [out / f"{name}.{fmt}" for name in figs]
    if not overwrite:
        for p in paths:
            if p.exists():
                raise UsageError(f"{p}: file exists; pass --force to overwrite it")
    out.mkdir(parents=True, exist_ok=True)
    for p, fig in zip(paths, figs.values()):
        write_atomic(p, figure_bytes(fig, fmt))
    return paths


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and os.replace."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        mask = os.umask(0o022)  # mkstemp makes 0600 files; give the result the usual mode
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


__all__ = ["PLOT_NAMES", "FieldHistory", "Read", "chain_records", "engine_load", "explaining_plots",
           "field_history", "field_values", "figure_bytes", "load_table", "load_trace", "queue_depth",
           "queue_table", "release_timeline", "sequence_diagram", "sequence_records", "step_text", "violations_from_trace",
           "write_atomic", "write_plots"]
