"""Engine load: each engine's utilisation over time, and the messages each took, by version."""

from __future__ import annotations

import matplotlib
import numpy as np  # matplotlib's own dependency
from matplotlib.figure import Figure

from simroll.check.history import Source, load_table, run_history, version_key
from simroll.view.plots._style import LEGEND_OUTSIDE, RC, engine_colors, mark_violations


def engine_load(source: Source, bins: int = 60) -> Figure:
    """Per-engine utilisation over time (heat map) and messages taken per engine, by version.

    Utilisation is the time an engine spends handling messages over its capacity (workers)
    while it runs; grey where it is stopped. Bars are stacked per message version; the
    number of rejected messages is written after each bar. When the trace names services, the
    engines are grouped by service and each is labelled with its own.
    """
    run = run_history(source)
    tab = load_table(run, bins)
    engines = run.engines
    n = max(1, len(engines))
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(12, 2.4 + 0.42 * n), layout="constrained")
        ax, axb = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [3.2, 1]})
        cmap = matplotlib.colormaps["YlOrRd"].with_extremes(bad="#e0e0e0")
        grid = np.array([[np.nan if u is None else 100 * u for u in tab["util"][e]] for e in engines] or [[np.nan]])
        edges = tab["edges"]
        im = ax.imshow(
            np.ma.masked_invalid(grid),
            aspect="auto",
            cmap=cmap,
            vmin=0,
            vmax=100,
            extent=(edges[0], edges[-1], n - 0.5, -0.5),
            interpolation="nearest",
        )
        im.set_gid("utilisation")
        cb = fig.colorbar(im, ax=ax, location="right", pad=0.01, fraction=0.04)
        cb.set_label("utilisation (% of capacity; grey: stopped)")
        if run.grouped:
            ticks = [f"{e} ({run.services[e]}, {100 * tab['mean_util'][e]:.0f}%)" for e in engines]
        else:
            ticks = [f"{e} ({100 * tab['mean_util'][e]:.0f}%)" for e in engines]
        ax.set_yticks(range(n), ticks or ["(none)"])
        ax.set_xlabel(f"simulated time (s), bins of {edges[1] - edges[0]:.3g} s")
        ax.set_ylabel("engine (service, mean utilisation)" if run.grouped else "engine (mean utilisation)")
        ax.set_title(f"Per-engine load - {run.subtitle}")
        mark_violations(ax, run)
        versions = sorted({v for e in engines for v in tab["taken"][e]}, key=version_key)
        vcolors = engine_colors(versions)
        left = [0] * n
        for v in versions:
            counts = [tab["taken"][e].get(v, 0) for e in engines]
            bars = axb.barh(range(n), counts, left=left, color=vcolors[v], label=f"version {v}", height=0.6)
            for e, p in zip(engines, bars, strict=True):
                p.set_gid(f"taken|{e}|{v}")
            left = [a + b for a, b in zip(left, counts, strict=True)]
        for k, e in enumerate(engines):
            rej = tab["rejects"][e]
            axb.text(left[k], k, f" {left[k]}" + (f" ({rej} rejected)" if rej else ""), va="center", fontsize=7)
        axb.set_xlabel("messages taken (count)")
        axb.set_title("Messages taken, by version")
        axb.set_xlim(0, max(left + [1]) * 1.45)
        axb.grid(axis="x", alpha=0.3)
        # one legend, outside the axes (right of the bars): the versions and the violation marks
        handles, labels = axb.get_legend_handles_labels()
        marks, mark_labels = ax.get_legend_handles_labels()
        if handles or marks:
            axb.legend(handles + marks, labels + mark_labels, **LEGEND_OUTSIDE)
    return fig


__all__ = ["engine_load"]
