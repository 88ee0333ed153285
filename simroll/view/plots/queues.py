"""Queue depth: the messages waiting to be taken over time, and the wait of each one taken."""

from __future__ import annotations

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from simroll.check.history import NEVER_TAKEN, Source, queue_table, queue_vhost, run_history, vhost_depths
from simroll.view.plots._style import CHAIN_COLOR, RC, engine_colors, legend_outside, mark_steps, mark_violations


def queue_depth(source: Source) -> Figure:
    """Messages waiting over time, per engine backlog and per message version, and each message's wait.

    Top: messages sent and not yet taken, by the engine whose backlog they sat in (with
    oslo.messaging's unlimited prefetch a topic message goes to a consumer at once), plus
    those never taken. Middle: the same by message version. Bottom: the queue wait of every
    taken message, with the scenario's ``bounded-imbalance`` bound when it has one.
    Lines carry the gid ``"backlog|WHERE"`` / ``"version|V"``.

    A run whose trace names services and vhosts, with more than one queue, gets a panel
    between the second and the third: the same by vhost (gid ``"vhost|V"``; the depths a
    ``set_vhost`` step reported are marked, gid ``"reported|V"``) when there is more than one
    vhost, and by queue (gid ``"queue|Q"``) when a vhost holds more than one queue: the drain
    of an old vhost, or the backlog of one service against another.
    """
    run = run_history(source)
    tab = queue_table(run)
    colors = engine_colors(run.engines)
    by_queue = len(tab.get("queue", {})) > 1
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(12, 11.5 if by_queue else 9), layout="constrained")
        axes = fig.subplots(4 if by_queue else 3, 1, sharex=True)
        ax1, ax2, ax3 = axes[0], axes[1], axes[-1]
        if by_queue:
            _by_queue(axes[2], tab, vhost_depths(run))
        for where, (xs, ys) in tab["backlog"].items():
            ax1.step(
                xs,
                ys,
                where="post",
                lw=1.6 if where == NEVER_TAKEN else 1.1,
                color="black" if where == NEVER_TAKEN else colors[where],
                ls="--" if where == NEVER_TAKEN else "-",
                label=where,
                gid=f"backlog|{where}",
            )
        vcolors = engine_colors(list(tab["version"]))
        for v, (xs, ys) in tab["version"].items():
            ax2.step(xs, ys, where="post", lw=1.2, color=vcolors[v], label=f"version {v}", gid=f"version|{v}")
        for e in run.engines:
            pts = [(r["t"], r["wait"]) for r in run.records if r["kind"] == "recv" and r["engine"] == e]
            if pts:
                ax3.plot(*zip(*pts, strict=True), ls="", marker=".", ms=3, color=colors[e], label=e, gid=f"wait|{e}")
        if run.max_wait is not None:
            ax3.axhline(
                run.max_wait, color=CHAIN_COLOR, ls="--", lw=1, label=f"bounded-imbalance max_wait ({run.max_wait:g} s)"
            )
        for ax in axes:
            mark_steps(ax, run, label=ax is ax1)
            mark_violations(ax, run, label=ax is ax1)
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                legend_outside(ax)
        ax1.set_title(f"Messages waiting to be taken - {run.subtitle}")
        ax1.set_ylabel("waiting, by backlog\n(messages)")
        ax2.set_ylabel("waiting, by version\n(messages)")
        ax3.set_ylabel("queue wait of each\ntaken message (s)")
        ax3.set_xlabel("simulated time (s)")
        ax3.set_xlim(0, max(run.end, 1e-9))
        for ax in axes[:-1]:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylim(bottom=0)
        if not tab["backlog"]:
            ax1.text(0.5, 0.5, "no message was sent", transform=ax1.transAxes, ha="center")
    return fig


def _by_queue(ax, tab, reported: list[tuple[float, dict[str, int]]]) -> None:
    """Messages waiting per vhost (thick) when there are several, per queue (thin, dashed) when a
    vhost holds several; the depths the ``vhost`` records reported as dots."""
    vhosts, queues = tab["vhost"], tab["queue"]
    several = len(vhosts) > 1
    colors = engine_colors(list(vhosts))
    if several:
        for v, (xs, ys) in vhosts.items():
            ax.step(xs, ys, where="post", lw=1.8, color=colors[v], label=f"vhost {v}", gid=f"vhost|{v}")
        for v in vhosts:
            pts = [(t, depth[v]) for t, depth in reported if v in depth]
            if pts:
                ax.plot(
                    *zip(*pts, strict=True),
                    ls="",
                    marker="o",
                    ms=6,
                    mfc="white",
                    color=colors[v],
                    label=f"vhost {v}: depth the set_vhost step saw",
                    gid=f"reported|{v}",
                    zorder=4,
                )
    if not several or len(queues) > len(vhosts):
        qcolors = engine_colors(list(queues))
        for q, (xs, ys) in queues.items():
            ax.step(
                xs,
                ys,
                where="post",
                lw=1.1,
                ls="--" if several else "-",
                color=colors[queue_vhost(q)] if several else qcolors[q],
                label=f"queue {q}",
                gid=f"queue|{q}",
            )
    ax.set_ylabel(f"waiting, by {'vhost' if several else 'queue'}\n(messages)")


__all__ = ["queue_depth"]
