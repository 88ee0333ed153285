"""The plots that explain a result, and their bytes and files."""

from __future__ import annotations

import io
import os
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from simroll._io import atomic_write_bytes, check_new_file
from simroll.check.history import Source, run_history
from simroll.errors import UsageError
from simroll.view.plots._style import RC
from simroll.view.plots.fields import field_values
from simroll.view.plots.load import engine_load
from simroll.view.plots.queues import queue_depth
from simroll.view.plots.sequence import sequence_diagram
from simroll.view.plots.timeline import release_timeline

PLOT_NAMES = ("release_timeline", "queue_depth", "engine_load", "sequence_diagram", "field_values")


def figure_bytes(fig: Figure, fmt: str = "png", dpi: int = 110) -> bytes:
    """The figure as PNG or SVG bytes (no timestamps: the same figure gives the same bytes)."""
    if fmt not in ("png", "svg"):
        raise UsageError(f"format {fmt!r}: expected png or svg")
    buf = io.BytesIO()
    with matplotlib.rc_context(RC):
        fig.savefig(buf, format=fmt, dpi=dpi, metadata={"Date": None} if fmt == "svg" else {"Software": None})
    return buf.getvalue()


def explaining_plots(source: Source) -> dict[str, Figure]:
    """The plots that explain a result, by name: always the release timeline, queue depth, engine
    load and sequence diagram; the field values too when a write was lost."""
    run = run_history(source)
    out = {
        "release_timeline": release_timeline(run),
        "queue_depth": queue_depth(run),
        "engine_load": engine_load(run),
        "sequence_diagram": sequence_diagram(run),
    }
    if any(v.invariant == "no-lost-write" for v in run.violations):
        out["field_values"] = field_values(run)
    return out


def plot_paths(out_dir: str | os.PathLike[str], fmt: str = "png") -> list[Path]:
    """Every file :func:`write_plots` may write in ``out_dir`` (which plots depends on the result)."""
    if fmt not in ("png", "svg"):
        raise UsageError(f"--format {fmt!r}: expected png or svg")
    return [Path(out_dir) / f"{name}.{fmt}" for name in PLOT_NAMES]


def check_plots_dir(out_dir: str | os.PathLike[str], fmt: str = "png", overwrite: bool = False) -> None:
    """Raise :class:`UsageError` now, before any work, if :func:`write_plots` would refuse ``out_dir``."""
    out = Path(out_dir)
    if os.path.lexists(out) and not out.is_dir():
        raise UsageError(f"{out}: not a directory")
    for p in plot_paths(out, fmt):
        check_new_file(p, overwrite, make_parents=True)


def write_plots(
    result: Source, out_dir: str | os.PathLike[str], fmt: str = "png", overwrite: bool = False
) -> list[Path]:
    """Write the plots that explain ``result`` to ``out_dir`` (created if needed) as ``NAME.png`` or
    ``NAME.svg``; each file is written atomically. Returns the paths written, in plot order.
    An existing file is refused (before anything is drawn) unless ``overwrite``."""
    check_plots_dir(out_dir, fmt, overwrite)
    out = Path(out_dir)
    figs = explaining_plots(result)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.{fmt}" for name in figs]
    for p, fig in zip(paths, figs.values(), strict=True):
        atomic_write_bytes(p, figure_bytes(fig, fmt), overwrite=overwrite)
    return paths


__all__ = ["PLOT_NAMES", "check_plots_dir", "explaining_plots", "figure_bytes", "plot_paths", "write_plots"]
