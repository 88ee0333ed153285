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


DATA_INVARIANTS = ("no-lost-write", "no-lost-update")

# the plots in order of relevance to the first violation's invariant: what shows its cause first
RELEVANCE: dict[str, tuple[str, ...]] = {
    # a field's value: where it lived and who wrote it, then the chain of events
    "no-lost-write": ("field_values", "sequence_diagram", "release_timeline", "queue_depth", "engine_load"),
    "no-lost-update": ("field_values", "sequence_diagram", "release_timeline", "queue_depth", "engine_load"),
    # a message: where it waited, then who ran what when
    "no-stranded-message": ("queue_depth", "release_timeline", "sequence_diagram", "engine_load"),
    "no-incompatible-delivery": ("sequence_diagram", "release_timeline", "queue_depth", "engine_load"),
    "no-refused-send": ("sequence_diagram", "release_timeline", "queue_depth", "engine_load"),
    "bounded-imbalance": ("queue_depth", "engine_load", "release_timeline", "sequence_diagram"),
    "operations-complete": ("availability", "queue_depth", "sequence_diagram", "release_timeline", "engine_load"),
    # releases and schema: who ran what when
    "version-skew": ("release_timeline", "sequence_diagram", "queue_depth", "engine_load"),
    "schema-compatible": ("release_timeline", "sequence_diagram", "queue_depth", "engine_load"),
}
DEFAULT_ORDER = ("release_timeline", "queue_depth", "engine_load", "sequence_diagram")


def plot_order(source: Source) -> tuple[str, ...]:
    """The names of the plots that explain ``source``, most relevant to its first violation first
    (:data:`RELEVANCE`; with no violation, :data:`DEFAULT_ORDER`), then ``availability``, which
    every report shows (first for ``operations-complete``)."""
    run = run_history(source)
    order = RELEVANCE.get(run.violations[0].invariant, DEFAULT_ORDER) if run.violations else DEFAULT_ORDER
    rest = [n for n in DEFAULT_ORDER if n not in order]
    if any(v.invariant in DATA_INVARIANTS for v in run.violations) and "field_values" not in order:
        rest.append("field_values")  # a lost write, though not the first violation
    full = (*order, *rest)
    return full if "availability" in full else (*full, "availability")


def explaining_plots(source: Source) -> dict[str, Figure]:
    """The plots that explain a result, by name, most relevant first (:func:`plot_order`): the release
    timeline, queue depth, engine load and sequence diagram, and the field values when a write or an
    update was lost (of the first such violation's field and row). Not the availability plot, which
    :func:`simroll.view.plots.availability` draws."""
    run = run_history(source)
    data = next((v for v in run.violations if v.invariant in DATA_INVARIANTS), None)
    draw = {
        "release_timeline": lambda: release_timeline(run),
        "queue_depth": lambda: queue_depth(run),
        "engine_load": lambda: engine_load(run),
        "sequence_diagram": lambda: sequence_diagram(run),
        "field_values": lambda: field_values(run, data.subject if data is not None else None),
    }
    return {name: draw[name]() for name in plot_order(run) if name in draw and (name != "field_values" or data)}


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


__all__ = [
    "PLOT_NAMES",
    "RELEVANCE",
    "check_plots_dir",
    "explaining_plots",
    "figure_bytes",
    "plot_order",
    "plot_paths",
    "write_plots",
]
