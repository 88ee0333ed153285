"""What every plot shares: colours, the rc settings that make the bytes reproducible, legends
and the marks for violations and operator steps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import matplotlib

from simroll.check.history import RunHistory

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

CHAIN_COLOR = "#d62728"  # the causal chain and violations, in every plot
# same bytes for the same figure: a fixed salt for SVG ids, text as paths (no font lookup)
RC: dict[RcKeyType, Any] = {"svg.hashsalt": "simroll", "svg.fonttype": "path", "font.size": 9}


def engine_colors(names: Sequence[str]) -> dict[str, Any]:
    """A distinct colour per name (tab10, or tab20 past ten names)."""
    cmap = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {n: cmap(k % cmap.N) for k, n in enumerate(names)}


def release_colors(releases: Sequence[str]) -> dict[str, Any]:
    """A colour per release (Set2)."""
    cmap = matplotlib.colormaps["Set2"]
    return {r: cmap(k % cmap.N) for k, r in enumerate(releases)}


# a legend to the right of its axes, outside them: it never covers data (constrained layout makes room)
LEGEND_OUTSIDE: dict[str, Any] = {
    "loc": "upper left",
    "bbox_to_anchor": (1.01, 1.0),
    "borderaxespad": 0.0,
    "fontsize": 8,
}


def legend_outside(ax, **kw) -> None:
    """The legend to the right of the axes, outside them."""
    ax.legend(**LEGEND_OUTSIDE, **kw)


def mark_violations(ax, run: RunHistory, label: bool = True, within: tuple[float, float] | None = None) -> None:
    """A red line at the first violation, red ticks at the others (those that were kept); ``within``
    limits the ticks to a time window (they are drawn outside the clip box, below the axis)."""
    if not run.violations:
        return
    first = run.violations[0]
    ax.axvline(
        first.time,
        color=CHAIN_COLOR,
        lw=1.5,
        ls="-",
        zorder=5,
        label=f"first violation ({first.invariant}, t={first.time:.1f} s)" if label else None,
    )
    lo, hi = within if within is not None else (float("-inf"), float("inf"))
    rest = sorted({v.time for v in run.violations[1:] if lo <= v.time <= hi})
    if rest:
        ax.plot(
            rest,
            [0.0] * len(rest),
            ls="",
            marker="^",
            ms=5,
            color=CHAIN_COLOR,
            zorder=5,
            transform=ax.get_xaxis_transform(),
            clip_on=False,
            label="later violations" if label else None,
        )


def mark_steps(ax, run: RunHistory, label: bool = True) -> None:
    """Faint dotted lines at the operator steps, numbered at the top."""
    for k, r in enumerate(x for x in run.records if x["kind"] == "step"):
        ax.axvline(
            r["t"], color="#777777", ls=":", lw=0.9, zorder=1, label="operator step" if label and k == 0 else None
        )
