"""Plots that explain a run: who ran what when, where messages waited, who did the work,
the chain of events behind a violation, and where a lost write went; and a sweep's heatmap.

Every plot takes a :class:`~simroll.run.RunResult` or a list of trace records (as
:func:`simroll.read_trace` returns them) and returns a matplotlib
:class:`~matplotlib.figure.Figure`. Figures are built with the object API (``Figure()``),
never through ``pyplot``: no global figure registry, no ``plt.show()``, no GUI backend
needed. :func:`write_plots` saves the plots that explain a result as PNG or SVG files.

One module a figure (:mod:`.timeline`, :mod:`.queues`, :mod:`.load`, :mod:`.sequence`,
:mod:`.fields`, :mod:`.availability`, :mod:`.sweep`); the tables they draw are computed, without
matplotlib, by :mod:`simroll.check.history` (re-exported here; the availability table by
:func:`.availability.availability_table`, from the ``operations-complete`` checker). Given bare
records, the violations are recomputed from the trace for the invariants that need no parameter;
the scenario's bounds are not in the trace.
"""

from __future__ import annotations

from simroll.check.explain import step_text
from simroll.check.history import (
    FieldHistory,
    Read,
    chain_records,
    field_history,
    load_table,
    queue_table,
    sequence_records,
    violations_from_trace,
)
from simroll.view.plots.availability import availability, availability_table
from simroll.view.plots.fields import field_values
from simroll.view.plots.files import (
    PLOT_NAMES,
    check_plots_dir,
    explaining_plots,
    figure_bytes,
    plot_order,
    plot_paths,
    write_plots,
)
from simroll.view.plots.load import engine_load
from simroll.view.plots.queues import queue_depth
from simroll.view.plots.sequence import sequence_diagram
from simroll.view.plots.sweep import sweep_heatmap, write_sweep
from simroll.view.plots.timeline import release_timeline

__all__ = [
    "PLOT_NAMES",
    "FieldHistory",
    "Read",
    "availability",
    "availability_table",
    "chain_records",
    "engine_load",
    "explaining_plots",
    "field_history",
    "field_values",
    "figure_bytes",
    "plot_order",
    "load_table",
    "queue_depth",
    "queue_table",
    "release_timeline",
    "sequence_diagram",
    "sequence_records",
    "step_text",
    "sweep_heatmap",
    "violations_from_trace",
    "check_plots_dir",
    "plot_paths",
    "write_plots",
    "write_sweep",
]
