"""Field values: where one field of one row lives over time, for a lost write."""

from __future__ import annotations

from typing import Any

import matplotlib
from matplotlib.figure import Figure

from simroll.check.history import DROPPED, FieldHistory, RunHistory, Source, field_history, run_history
from simroll.view.plots._style import CHAIN_COLOR, RC, engine_colors, legend_outside, mark_violations


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
    run = run_history(source)
    h = field_history(run, subject)
    order: list[Any] = [None]
    for seq in [h.latest] + list(h.cells.values()) + [[(rd.t, rd.value) for rd in h.reads]]:
        for _, val in seq:
            if val not in order and val != DROPPED:
                order.append(val)
    order = [None] + sorted(order[1:], key=lambda val: _first_seen(h, val))
    y_of = {val: k for k, val in enumerate(order)}
    end = max(run.end, 1e-9)
    zoom = _zoom_window(run, h, end)
    with matplotlib.rc_context(RC):
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
        mark_violations(ax, run)
        ax.set_xlabel("simulated time (s)")
        ax.set_ylabel("value held (in the order written)")
        ax.set_title(f"Where {h.field}[{h.row}] lives over time - {run.subtitle}")
        ax.grid(alpha=0.3)
        legend_outside(ax)
        if axz is not None and zoom is not None:
            t0, t1 = zoom
            ax.axvspan(t0, t1, color="#ffe9a8", alpha=0.5, zorder=0, label="zoomed below")
            legend_outside(ax)
            _draw_history(axz, h, y_of, end, annotate=zoom)
            seen = [
                y_of[v]
                for seq in h.cells.values()
                for a, b, v in _segments(seq, end)
                if v != DROPPED and a <= t1 and b >= t0
            ]
            seen += [y_of[rd.value] for rd in h.reads if t0 <= rd.t <= t1]
            seen += [y_of[v] for t, v in h.latest if t0 <= t <= t1]
            lo, hi = min(seen, default=0), max(seen, default=len(order) - 1)
            ticks = list(range(lo, hi + 1))[:: max(1, (hi - lo) // 12 + 1)]  # at most a dozen labels
            axz.set_yticks(ticks, [labels[k] for k in ticks])
            axz.set_ylim(lo - 0.6, hi + 0.6)
            axz.set_xlim(t0, t1)
            mark_violations(axz, run, label=False, within=zoom)
            axz.set_xlabel("simulated time (s)")
            axz.set_ylabel("value held")
            axz.set_title(f"Close-up: {t0:.2f} s to {t1:.2f} s, the last changes before the violation", fontsize=9)
            axz.grid(alpha=0.3)
    return fig


def _zoom_window(run: RunHistory, h: FieldHistory, end: float, changes: int = 5) -> tuple[float, float] | None:
    """A window over the last ``changes`` changes before the field's first violation (and the backfill's
    last read of the row), or None when the full history already shows them legibly."""
    subject = f"{h.field}[{h.row}]"
    times = [v.time for v in run.violations if v.invariant == "no-lost-write" and v.subject == subject]
    if not times:
        return None
    tv = min(times)
    events = sorted(
        {t for seq in h.cells.values() for t, _ in seq if t <= tv}
        | {rd.t for rd in h.reads if rd.t <= tv}
        | {t for t, _, _ in h.bf_reads if t <= tv}
    )
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


def _draw_history(ax, h: FieldHistory, y_of: dict[Any, int], end: float, annotate: tuple[float, float] | None) -> None:
    """The lines and markers of :func:`field_values` on one axes; the first stale reads within the
    ``annotate`` time window get a label."""
    colors = engine_colors(list(h.cells))
    offsets = {loc: 0.12 * (k - (len(h.cells) - 1) / 2) for k, loc in enumerate(h.cells)}
    if h.latest:
        xs, ys = _steps(h.latest, end, y_of)
        ax.step(
            xs,
            ys,
            where="post",
            color="#cccccc",
            lw=7,
            solid_capstyle="butt",
            zorder=1,
            label="latest acknowledged write",
            gid="latest",
        )
    styles = ["-", "--", "-.", ":"]
    for k, (loc, seq) in enumerate(h.cells.items()):
        live = _segments(seq, end)
        first = True
        for t0, t1, val in live:
            if val == DROPPED:
                continue
            y = y_of[val] + offsets[loc]
            ax.plot(
                [t0, t1],
                [y, y],
                color=colors[loc],
                lw=2,
                ls=styles[k % 4],
                zorder=3,
                label=f"location {loc}" if first else None,
                gid=f"cell|{loc}",
            )
            first = False
        for (_, _, v0), (t1, _, v1) in zip(live, live[1:], strict=False):  # vertical joins between values
            if v0 != DROPPED and v1 != DROPPED:
                ax.plot(
                    [t1, t1],
                    [y_of[v0] + offsets[loc], y_of[v1] + offsets[loc]],
                    color=colors[loc],
                    lw=1,
                    ls=styles[k % 4],
                    zorder=3,
                )
        drops = [t for t, val in seq if val == DROPPED]
        if drops:
            ax.plot(
                drops,
                [y_of[None] + offsets[loc]] * len(drops),
                ls="",
                marker="v",
                ms=8,
                color=colors[loc],
                mec="black",
                label=f"{loc} dropped (contract)",
            )
    ok = [(rd.t, y_of[rd.value] + offsets.get(rd.loc, 0)) for rd in h.reads if not rd.stale]
    bad = [rd for rd in h.reads if rd.stale]
    if ok:
        ax.plot(
            *zip(*ok, strict=True),
            ls="",
            marker="o",
            ms=6,
            color="#2ca02c",
            mec="black",
            zorder=4,
            label="read returned the latest write",
            gid="reads|ok",
        )
    if bad:
        ax.plot(
            [rd.t for rd in bad],
            [y_of[rd.value] + offsets.get(rd.loc, 0) for rd in bad],
            ls="",
            marker="X",
            ms=11,
            color=CHAIN_COLOR,
            mec="black",
            zorder=5,
            label="stale read (lost write)",
            gid="reads|stale",
        )
        if annotate is not None:
            for rd in [rd for rd in bad if annotate[0] <= rd.t <= annotate[1]][:4]:
                ax.annotate(
                    f"{rd.engine} reads {rd.loc} = {_show(rd.value)}\n(latest write: {_show(rd.expected)})",
                    xy=(rd.t, y_of[rd.value] + offsets.get(rd.loc, 0)),
                    xytext=(8, 14),
                    textcoords="offset points",
                    fontsize=7,
                    color=CHAIN_COLOR,
                    arrowprops=dict(arrowstyle="-", color=CHAIN_COLOR, lw=0.6),
                )
    if h.bf_reads:
        ax.plot(
            [t for t, _, _ in h.bf_reads],
            [y_of[val] + offsets[loc] for t, loc, val in h.bf_reads],
            ls="",
            marker="D",
            ms=6,
            color="#8c564b",
            mec="black",
            zorder=4,
            label="backfill read",
            gid="backfill|read",
        )
    if h.bf_writes:
        ax.plot(
            [t for t, _, _ in h.bf_writes],
            [y_of[val] + offsets[loc] for t, loc, val in h.bf_writes],
            ls="",
            marker="D",
            ms=8,
            mfc="white",
            color="#8c564b",
            mew=2,
            zorder=4,
            label="backfill write",
            gid="backfill|write",
        )


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


__all__ = ["field_values"]
