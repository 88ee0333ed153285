"""The release timeline: which release each engine runs when."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import matplotlib
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from simroll.check.explain import step_text
from simroll.check.history import Source, engine_intervals, run_history
from simroll.view.plots._style import CHAIN_COLOR, RC, mark_violations, release_colors


def release_timeline(source: Source) -> Figure:
    """Which release each engine runs when; graceful stops, kills, operator steps and violations marked.

    One lane per engine; a bar per run of a release (hatched while the engine finishes
    in-flight work after a stop). Each bar patch has the gid ``"ENGINE|RELEASE|PHASE"``.
    When the trace has configuration (issue 15: a ``start`` record's ``config``, a ``config``
    record at a sighup), a run is split where its config changes, its label names the config
    (``new [read_from=new]``) and each config after the first seen gets a hatch of its own.
    When the trace names services, the lanes are grouped by service (``ENGINE (SERVICE)``,
    a line between two services); with more than one vhost, a bar names its vhost too.
    """
    run = run_history(source)
    colors = release_colors(run.releases)
    n = max(1, len(run.engines))
    steps = [r for r in run.records if r["kind"] == "step"]
    step_lines = [f"{r['index']:>2}  t={r['t']:8.2f} s  {step_text(r)}" for r in steps]
    cols = 1 if len(step_lines) <= 6 else 2 if len(step_lines) <= 24 else 3
    list_rows = -(-len(step_lines) // cols)
    with matplotlib.rc_context(RC):
        fig = Figure(
            figsize=(12, max(3.0, 1.6 + 0.42 * n) + 0.17 * (list_rows + 2) * bool(steps)), layout="constrained"
        )
        if steps:
            ax, axs = fig.subplots(
                2, 1, gridspec_kw={"height_ratios": [max(3.0, 1.6 + 0.42 * n), 0.17 * (list_rows + 2)]}
            )
        else:
            ax, axs = fig.add_subplot(), None
        lane = {e: k for k, e in enumerate(run.engines)}
        several_vhosts = len(run.vhosts) > 1
        changes = _config_changes(run.records)
        hatches = _config_hatches(changes)
        for e, spans in engine_intervals(run).items():
            for t0, t1, rel, phase, vhost in spans:
                pieces = _by_config(changes.get(e), t0, t1) if phase == "running" else [(t0, t1, "")]
                for a, b, cfg in pieces:
                    width = max(b - a, run.end * 0.002)  # a zero-length stop still shows
                    hatch = "////" if phase == "stopping" else hatches.get(cfg)
                    p = ax.barh(
                        lane[e],
                        width,
                        left=a,
                        height=0.6,
                        color=colors[rel],
                        edgecolor="black" if hatch else colors[rel],
                        lw=0.6,
                        hatch=hatch,
                    )[0]
                    p.set_gid(f"{e}|{rel}|{phase}")
                    if phase == "running" and b - a > run.end * 0.08:
                        text = f"{rel} on vhost {vhost}" if several_vhosts else rel
                        text = f"{text} [{cfg}]" if cfg else text
                        box = dict(boxstyle="round,pad=0.1", facecolor="white", alpha=0.7, lw=0) if hatch else None
                        ax.text(a + (b - a) / 2, lane[e], text, ha="center", va="center", fontsize=8, bbox=box)
        stops = [(r["t"], lane[r["engine"]]) for r in run.records if r["kind"] == "stop"]
        kills = [(r["t"], lane[r["engine"]]) for r in run.records if r["kind"] == "kill"]
        if stops:
            ax.plot(
                *zip(*stops, strict=True),
                ls="",
                marker="|",
                ms=16,
                mew=2.2,
                color="black",
                zorder=4,
                label="graceful stop",
            )
        if kills:
            ax.plot(
                *zip(*kills, strict=True),
                ls="",
                marker="X",
                ms=10,
                color=CHAIN_COLOR,
                mec="black",
                zorder=4,
                label="kill",
            )
        last_t, level = None, 0
        for k, r in enumerate(steps):
            ax.axvline(
                r["t"],
                color="#555555",
                ls=":",
                lw=1,
                zorder=1,
                label="operator step (numbered, listed below)" if k == 0 else None,
            )
            # steps close together get their numbers on alternating heights, so they do not overlap
            level = (level + 1) % 3 if last_t is not None and r["t"] - last_t < run.end * 0.025 else 0
            last_t = r["t"]
            ax.text(
                r["t"],
                1.01 + 0.09 * level,
                str(r["index"]),
                transform=ax.get_xaxis_transform(),
                va="bottom",
                ha="center",
                fontsize=7,
                clip_on=False,
                bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="#555555", lw=0.6),
            )
        mark_violations(ax, run)
        if run.grouped:
            ax.set_yticks(range(n), [f"{e} ({run.services[e]})" for e in run.engines])
            for k in range(1, n):  # a line between two services (lanes are grouped by service)
                if run.services[run.engines[k]] != run.services[run.engines[k - 1]]:
                    ax.axhline(k - 0.5, color="#444444", lw=0.8, zorder=1, gid="service-boundary")
            ax.set_ylabel("engine (service)")
        else:
            ax.set_yticks(range(n), run.engines or ["(no engine)"])
            ax.set_ylabel("engine")
        ax.set_ylim(n - 0.4, -0.6)
        ax.set_xlim(0, max(run.end, 1e-9))
        ax.set_xlabel("simulated time (s)")
        ax.set_title(f"Releases per engine over time - {run.subtitle}", pad=30 if steps else 6)
        ax.grid(axis="x", alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        extra = [Patch(facecolor=colors[r], label=f"release {r}") for r in run.releases]
        extra.append(
            Patch(facecolor="white", edgecolor="black", hatch="////", label="stopping (finishing in-flight work)")
        )
        configs = sorted({c for ch in changes.values() for _, c in ch if c}, key=_first_seen(changes))
        extra += [
            Patch(facecolor="white", edgecolor="black", hatch=hatches.get(c), label=f"config {c}") for c in configs
        ]
        ax.legend(
            extra + handles,
            [h.get_label() for h in extra] + labels,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            borderaxespad=0.0,
            fontsize=8,
        )
        if axs is not None:
            axs.axis("off")
            axs.set_title("operator steps", loc="left", fontsize=9)
            for c in range(cols):
                axs.text(
                    c / cols,
                    1.0,
                    "\n".join(step_lines[c * list_rows : (c + 1) * list_rows]),
                    transform=axs.transAxes,
                    va="top",
                    ha="left",
                    fontsize=8,
                    family="monospace",
                )
    return fig


def _config_changes(records: list[dict[str, Any]]) -> dict[str, list[tuple[float, str]]]:
    """Engine -> when its config in force changed, and to what (``option=value, ...``; "" for a start
    on a release without options); empty when the trace has no configuration."""
    out: dict[str, list[tuple[float, str]]] = {}
    for r in records:
        k = r["kind"]
        if k == "config" or (k == "start" and "config" in r):
            text = ", ".join(f"{o}={v}" for o, v in r["config"].items())
            out.setdefault(r["engine"], []).append((r["t"], text))
        elif k == "start" and r["engine"] in out:
            out[r["engine"]].append((r["t"], ""))
    return out


def _first_seen(changes: dict[str, list[tuple[float, str]]]) -> Callable[[str], tuple[float, str]]:
    """Sort key of a config: when it is first in force anywhere (then by its text)."""
    first: dict[str, float] = {}
    for ch in changes.values():
        for t, c in ch:
            first[c] = min(first.get(c, t), t)
    return lambda c: (first[c], c)


_HATCHES = ("o", "x", "\\", ".", "+", "-", "*")  # sparse, so that the label stays legible


def _config_hatches(changes: dict[str, list[tuple[float, str]]]) -> dict[str, str | None]:
    """A hatch per config: none for the first seen, then one each (cycling)."""
    configs = sorted({c for ch in changes.values() for _, c in ch if c}, key=_first_seen(changes))
    return {c: None if i == 0 else _HATCHES[(i - 1) % len(_HATCHES)] for i, c in enumerate(configs)}


def _by_config(changes: list[tuple[float, str]] | None, t0: float, t1: float) -> list[tuple[float, float, str]]:
    """The run [t0, t1] split where the engine's config changes: (from, to, config) pieces."""
    if not changes:
        return [(t0, t1, "")]
    cfg = ""
    for t, c in changes:
        if t <= t0:
            cfg = c
    pieces: list[tuple[float, float, str]] = []
    a = t0
    for t, c in changes:
        if t0 < t < t1 and c != cfg:
            pieces.append((a, t, cfg))
            a, cfg = t, c
    pieces.append((a, t1, cfg))
    return pieces


__all__ = ["release_timeline"]
