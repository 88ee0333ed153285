"""The sequence diagram of a violation's causal chain among the records around it."""

from __future__ import annotations

import matplotlib
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from simroll.check.explain import step_text
from simroll.check.history import Source, run_history, sequence_records
from simroll.check.invariants import Violation
from simroll.sim.trace import Record
from simroll.view.plots._style import CHAIN_COLOR, LEGEND_OUTSIDE, RC

_BUS, _DB, _OP, _BF, _CLIENT = "bus", "database", "operator", "backfill", "client"


def _seq_arrow(r: Record) -> tuple[str, str | None, str]:
    """(from lane, to lane or None for a mark on one lane, label)."""
    k, e = r["kind"], r.get("engine", "")
    m = f"m{r['msg']}" if "msg" in r else ""
    if k == "send":
        method = f"{r['service']}.{r['method']}" if "service" in r else r["method"]
        queue = f" to {r['queue']}" if "service" in r else ""
        return e, _BUS, f"{m} {method} v{r['version']} {'call' if r['call'] else 'cast'}{queue} (row {r['row']})"
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
        return (
            _OP,
            target
            if isinstance(target, str)
            and target.startswith(tuple("abcdefghijklmnopqrstuvwxyz"))
            and r["action"] in ("restart", "stop", "kill", "start")
            else None,
            f"step {r['index']}: {step_text(r)}",
        )
    if k in ("requeue", "lost"):
        return e, _BUS, f"{m} {'goes back to the queue' if k == 'requeue' else 'is lost'}"
    if k in ("left", "expire"):
        return _BUS, None, f"{m} {'left in' if k == 'left' else 'expires in'} {r['queue']}"
    if k == "init":
        return _DB, None, f"{r['field']} rows 0..{r['rows'] - 1} = init* in {', '.join(r['locs'])}"
    if k == "start":
        where = f" (consumes {r['queue']})" if "queue" in r else ""
        return e, None, f"starts on {r['release']}{where}"
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


def sequence_diagram(
    source: Source, violation: Violation | None = None, window: int = 30, max_rows: int = 60
) -> Figure:
    """A sequence diagram: client, operator, bus, engines, database and backfill as lifelines,
    messages and reads/writes as arrows, one row per record (time runs down; each row is labelled
    with its time and record number). The causal chain of the violation is drawn in red; rows where
    records were skipped are marked. Chain arrows carry the gid ``"chain|I"``, others ``"rec|I"``.
    When the trace names services, the engines' lifelines are grouped by service and labelled
    ``ENGINE`` over ``(SERVICE)``, and a send names the service and queue it goes to.
    """
    run = run_history(source)
    shown, on_chain, v = sequence_records(run, violation, window, max_rows)
    arrows = [(r, *_seq_arrow(r)) for r in shown]
    used = {a for _, a, _, _ in arrows} | {b for _, _, b, _ in arrows if b}
    engines = [e for e in run.engines if e in used]
    lanes = [x for x in (_OP, _CLIENT, _BUS) if x in used] + engines + [x for x in (_DB, _BF) if x in used]
    lanes += sorted(x for x in used if x not in lanes)
    x_of = {name: k for k, name in enumerate(lanes)}
    rows = max(1, len(shown))
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(max(11.0, 1.25 * len(lanes) + 5), 1.8 + 0.3 * rows), layout="constrained")
        ax = fig.add_subplot()
        for x in x_of.values():
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
                ann = ax.annotate(
                    "",
                    xy=(xb, y),
                    xytext=(xa, y),
                    arrowprops=dict(arrowstyle="-|>", color=color, lw=2.0 if hot else 0.9, shrinkA=2, shrinkB=2),
                    zorder=3,
                )
                ann.set_gid(gid)
                tx, ha = min(xa, xb) + 0.05, "left"
            else:
                ax.plot([xa], [y], marker="s", ms=6 if hot else 4, color=color, zorder=3, gid=gid)
                tx, ha = xa + 0.12, "left"
            ax.text(
                tx,
                y - 0.12,
                text,
                fontsize=7,
                ha=ha,
                va="bottom",
                color="black" if hot else "#555555",
                fontweight="bold" if hot else "normal",
                zorder=4,
                clip_on=False,
                bbox=dict(facecolor="white", edgecolor="none", pad=0.4, alpha=0.75),
            )
            if v is not None and r["i"] == v.event:
                ax.plot(
                    [xa if b is None else x_of[b]],
                    [y],
                    marker="*",
                    ms=16,
                    color=CHAIN_COLOR,
                    mec="black",
                    zorder=5,
                    gid="violation",
                )
        names = [f"{x}\n({run.services[x]})" if x in run.services else x for x in lanes]
        ax.set_xticks(
            range(len(lanes)), names, rotation=0 if len(lanes) <= 8 else 30, ha="center" if len(lanes) <= 8 else "right"
        )
        ax.xaxis.tick_top()
        ax.set_xlim(-0.5, len(lanes) - 0.5 + 1.5)  # room for labels right of the last lifeline
        ax.set_yticks(range(rows), [f"t={r['t']:.3f} s  #{r['i']}" for r in shown] or [""], fontsize=7)
        ax.set_ylim(rows - 0.5, -0.8)
        ax.set_ylabel("trace records in order (simulated time, record number)")
        ax.set_xlabel("lifelines")
        ax.xaxis.set_label_position("top")
        what = (
            f"causal chain of the first {v.invariant} violation (t={v.time:.3f} s, #{v.event})"
            if v is not None
            else "no violation: the records around the first operator step"
        )
        ax.set_title(f"Sequence diagram - {run.subtitle}\n{what}", fontsize=10)
        if v is not None:
            fig.supxlabel("violation: " + _wrap(v.message, 150), fontsize=8, color=CHAIN_COLOR)
        handles = [
            Line2D([], [], color=CHAIN_COLOR, lw=2, label="on the causal chain"),
            Line2D([], [], color="#6f6f6f", lw=0.9, label="other records (context)"),
            Line2D([], [], color="#dddddd", ls=":", label="records skipped between rows"),
        ]
        if v is not None:
            handles.append(
                Line2D(
                    [],
                    [],
                    ls="",
                    marker="*",
                    ms=12,
                    color=CHAIN_COLOR,
                    mec="black",
                    label=f"the violation ({v.invariant})",
                )
            )
        ax.legend(handles=handles, **LEGEND_OUTSIDE)  # outside the axes: it never covers an arrow
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


__all__ = ["sequence_diagram"]
