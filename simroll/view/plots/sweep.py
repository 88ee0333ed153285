"""The heatmap of a parameter sweep, and the sweep's files with it (``simroll sweep --out PREFIX``)."""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.figure import Figure

from simroll._io import check_new_file
from simroll.errors import UsageError
from simroll.explore.sweep import METRICS, Sweep, output_paths
from simroll.view.plots.files import figure_bytes


def sweep_heatmap(sweep: Sweep, metric: str = "worst_wait") -> Figure:
    """A matplotlib Figure of ``metric`` (worst over the seeds) over the first two parameters that
    take more than one value (the first on x, the second on y; over any others, the largest
    value). ``!`` marks a cell where an invariant was violated."""
    if metric not in METRICS:
        raise UsageError(f"metric {metric!r}: expected one of {', '.join(METRICS)}")
    # the axes: the first two parameters that take more than one value (a one-value parameter
    # only sets something for the whole sweep)
    axes = [k for k, p in enumerate(sweep.params) if len(p.values) > 1][:2] or [0]
    px = sweep.params[axes[0]]
    py = sweep.params[axes[1]] if len(axes) > 1 else None
    rest = [p for k, p in enumerate(sweep.params) if k not in axes and len(p.values) > 1]
    nx_, ny = len(px.values), (len(py.values) if py else 1)
    grid_v = [[math.nan] * nx_ for _ in range(ny)]
    bad = [[False] * nx_ for _ in range(ny)]
    for c in sweep.cells:
        x, y = c.values[axes[0]], (c.values[axes[1]] if py else 0)
        v = c.worst(metric)
        if v is not None and not v <= grid_v[y][x]:  # nan compares false: the first value replaces it
            grid_v[y][x] = v
        bad[y][x] = bad[y][x] or bool(c.violated)
    fig = Figure(figsize=(max(5.0, 1.1 * nx_ + 3), max(3.0, 0.6 * ny + 2)), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(grid_v, cmap="YlOrRd", aspect="auto", origin="lower")
    finite = [v for row in grid_v for v in row if not math.isnan(v)]
    top = max(finite, default=0.0)
    for y in range(ny):
        for x in range(nx_):
            v = grid_v[y][x]
            text = "–" if math.isnan(v) else (f"{v:.0f}" if metric in ("events", "violated_runs") else f"{v:.2f}")
            ax.text(
                x,
                y,
                text + (" !" if bad[y][x] else ""),
                ha="center",
                va="center",
                color="white" if not math.isnan(v) and top > 0 and v > top / 2 else "black",
            )
    ax.set_xticks(range(nx_), list(px.labels))
    ax.set_xlabel(px.key)
    if py:
        ax.set_yticks(range(ny), list(py.labels))
        ax.set_ylabel(py.key)
    else:
        ax.set_yticks([])
    notes = []
    if len(sweep.seeds) > 1:
        notes.append(f"worst of seeds {sweep.seeds[0]}..{sweep.seeds[-1]}")
    if rest:
        notes.append("max over " + ", ".join(p.key for p in rest))
    notes.append("'!' = an invariant violated")
    ax.set_title(f"{sweep.scenario}: {METRICS[metric]}\n({'; '.join(notes)})", fontsize=10)
    fig.colorbar(im, ax=ax, label=METRICS[metric])
    return fig


def write_sweep(
    sweep: Sweep, prefix: str, overwrite: bool = False, metric: str = "worst_wait", command: str | None = None
) -> list[Path]:
    """Write the table (``PREFIX.md``, ``.json``, ``.csv``) and the heatmap of ``metric``
    (``PREFIX.png``); returns the paths.

    Each file is written atomically; an existing file is refused (UsageError) unless ``overwrite``,
    checked for all of them before anything is drawn or written.
    """
    for p in output_paths(prefix).values():
        check_new_file(p, overwrite)
    png = figure_bytes(sweep_heatmap(sweep, metric))
    return sweep.write(prefix, overwrite=overwrite, command=command, heatmap_png=png)


__all__ = ["sweep_heatmap", "write_sweep"]
