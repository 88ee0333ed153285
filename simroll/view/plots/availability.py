"""Availability: client operations completed over time, and the intervals in which none completed."""

from __future__ import annotations

import statistics
from typing import Any

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from simroll.check.history import Source, run_history
from simroll.check.invariants import OperationsComplete
from simroll.view.plots._style import CHAIN_COLOR, RC, legend_outside, mark_steps, mark_violations

GAP_FACTOR = 10.0  # a gap is marked when it is this many times the median interval between completions
MAX_GAPS = 5  # gaps marked at most (the longest first)


def _within(source: Source) -> float | None:
    """The ``within`` bound of the source's ``operations-complete`` invariant (a run result only)."""
    scenario = getattr(source, "scenario", None)
    spec = getattr(getattr(scenario, "invariants", None), "operations_complete", None)
    return getattr(spec, "within", None)


_FROM_SOURCE: Any = object()


def availability_table(source: Source, within: float | None = _FROM_SOURCE) -> dict[str, Any]:
    """What the availability plot draws, from the trace, as :class:`OperationsComplete` decides it.

    ``issued``, ``completed``, ``failed``: the times at which client operations were issued,
    completed, and failed (one time per operation, when it was decided); ``summary``:
    :meth:`OperationsComplete.availability`; ``gaps``: the intervals ``(start, end)`` without a
    completion that are marked -- the longest, and every other one at least ``GAP_FACTOR`` times
    the median interval between consecutive points (first issue, completions, last issue), at
    most ``MAX_GAPS``, longest first. ``within`` (default: what a run result's scenario sets for
    ``operations-complete``, else none) makes a late operation count as failed, as in the run's report.
    """
    if within is _FROM_SOURCE:
        within = _within(source)
    run = run_history(source)
    ops = OperationsComplete(within=within)
    kinds = set(ops.kinds)
    issued: list[float] = []
    completed: list[float] = []
    failed: list[float] = []
    for r in run.records:
        if r["kind"] not in kinds:
            continue
        before = (ops.total, ops.completed, ops.count)
        ops.observe(r)
        if ops.total > before[0]:
            issued.append(r["t"])
        if ops.completed > before[1]:
            completed.append(r["t"])
        failed += [r["t"]] * (ops.count - before[2])
    summary = ops.availability()
    return {
        "issued": issued,
        "completed": completed,
        "failed": failed,
        "summary": summary,
        "gaps": _gaps(issued, completed, summary),
    }


def _gaps(issued: list[float], completed: list[float], summary: dict[str, Any]) -> list[tuple[float, float]]:
    """The marked intervals without a completion (see :func:`availability_table`)."""
    if not issued:
        return []
    points = [issued[0], *completed]
    if issued[-1] > points[-1]:
        points.append(issued[-1])
    spans = [(a, b) for a, b in zip(points, points[1:], strict=False) if b > a]
    if not spans:
        return []
    median = statistics.median(b - a for a, b in spans)
    longest = summary.get("longest_gap_interval")
    out: list[tuple[float, float]] = [(longest[0], longest[1])] if longest else []
    for a, b in sorted(spans, key=lambda s: (-(s[1] - s[0]), s[0])):
        if len(out) >= MAX_GAPS or b - a < GAP_FACTOR * median:
            break
        if (a, b) not in out:
            out.append((a, b))
    return out


def availability(source: Source, bins: int = 60) -> Figure:
    """Client operations over time: issued, completed and failed (cumulative, top), completions
    per time bin (bottom), with the intervals in which none completed shaded (the longest in
    red, labelled with its length). Operator steps and violations are marked as in the other
    plots. Artists carry gids ``"issued"``, ``"completed"``, ``"failed"`` and ``"gap|START|END"``.
    """
    run = run_history(source)
    tab = availability_table(run, within=_within(source))
    summary = tab["summary"]
    end = max(run.end, 1e-9)
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(12, 6), layout="constrained")
        ax1, ax2 = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
        for name, times, color, style in (
            ("issued", tab["issued"], "#777777", "--"),
            ("completed", tab["completed"], "#1a7f37", "-"),
            ("failed", tab["failed"], CHAIN_COLOR, "-"),
        ):
            if times:
                ax1.step(
                    [0.0, *times, end],
                    [0, *range(1, len(times) + 1), len(times)],
                    where="post",
                    color=color,
                    ls=style,
                    lw=1.4,
                    label=f"{name} ({len(times)})",
                    gid=name,
                )
        width = end / bins
        counts = [0] * bins
        for t in tab["completed"]:
            counts[min(bins - 1, int(t / width))] += 1
        ax2.bar(
            [k * width for k in range(bins)],
            counts,
            width=width,
            align="edge",
            color="#1a7f37",
            alpha=0.8,
            gid="completions",
        )
        for k, (lo, hi) in enumerate(tab["gaps"]):
            for ax in (ax1, ax2):
                ax.axvspan(
                    lo,
                    hi,
                    color=CHAIN_COLOR if k == 0 else "#f4a582",
                    alpha=0.18 if k == 0 else 0.12,
                    zorder=0,
                    gid=f"gap|{lo:.3f}|{hi:.3f}",
                    label=(
                        f"longest interval without a completion ({hi - lo:.3g} s)"
                        if k == 0
                        else "other long intervals without one"
                        if k == 1
                        else None
                    )
                    if ax is ax1
                    else None,
                )
        for ax in (ax1, ax2):
            mark_steps(ax, run, label=ax is ax1)
            mark_violations(ax, run, label=ax is ax1)
            ax.grid(alpha=0.3)
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylim(bottom=0)
        if ax1.get_legend_handles_labels()[0]:
            legend_outside(ax1)
        if summary["total"]:
            head = (
                f"{summary['completed']} of {summary['total']} operations completed ({100 * summary['fraction']:.1f}%)"
            )
        else:
            head = "no client operation"
            ax1.text(0.5, 0.5, "no client operation was issued", transform=ax1.transAxes, ha="center")
        ax1.set_title(f"Availability: {head} - {run.subtitle}")
        ax1.set_ylabel("client operations\n(cumulative)")
        ax2.set_ylabel(f"completed per\n{width:.3g} s")
        ax2.set_xlabel("simulated time (s)")
        ax2.set_xlim(0, end)
    return fig


__all__ = ["availability", "availability_table"]
