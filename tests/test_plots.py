"""Plots show what happened: their data series, labels and highlighted events, worked out by hand.

The small scenarios below are periodic (operations at t = 1/rate, 2/rate, ...), so every
time in them can be worked out with a pencil; the comments give the reasoning.
"""

import numpy as np
import pytest
from conftest import BASE, SCENARIOS, scenario

import simroll
from simroll.cli import main
from simroll.errors import UsageError
from simroll.view import plots

# Two engines share row 0. engine-1 runs "old" (reads and writes resource.properties); engine-2
# runs "new" (reads resource_new.data, writes both). Casts at t=1, 2, 3, round robin from engine-1,
# 1 s of service each:
#   t=1 engine-1 reads properties = init0;  t=2 it writes v0 to properties only;
#   t=2 engine-2 reads resource_new.data: empty, but the latest write is v0 -> lost write (1st violation);
#   t=3 engine-2 writes v1 to both;  t=3 engine-1 reads properties = v1;  t=4 it writes v2 to properties.
LOST = """
name: lost
seed: 1
bus: {delivery: oslo}
database:
  tables: {resource: [id, properties], resource_new: [id, data]}
  rows: 1
releases:
  old:
    rpc: &rpc
      endpoints:
        - version: "1.0"
          methods: {op: [x]}
    data:
      props: {read: resource.properties, write: [resource.properties]}
    service_time: 1.0
  new:
    rpc: *rpc
    data:
      props: {read: resource_new.data, write: [resource.properties, resource_new.data]}
    service_time: 1.0
engines: [{name: engine-1, release: old}, {name: engine-2, release: new}]
workload:
  rate: 1.0
  arrivals: periodic
  stop: 3.5
  operations: {op: 1}
  kind: cast
  handlers:
    op: {read: [props], write: [props]}
invariants:
  no-lost-write: {}
"""

R2 = """
r1: {rpc: {endpoints: [{version: "1.0", methods: {op: [x]}}]}, service_time: 1.0}
r2: {rpc: {endpoints: [{version: "1.0", methods: {op: [x]}}]}, service_time: 1.0}
"""


@pytest.fixture(scope="module")
def lost():
    return simroll.run_scenario(scenario(LOST))


@pytest.fixture(scope="module")
def restart():
    # engine-3 is killed idle at t=0.5; engine-1 takes the cast of t=1 (busy until 2), is told to
    # restart at t=1.5, finishes in-flight work until t=2, then starts on r2.
    return simroll.run_scenario(
        scenario(
            BASE,
            releases=R2,
            plan="[{after: 1.5, restart: engine-1, release: r2}]",
            faults="[{kill: engine-3, at: 0.5}]",
        )
    )


def _gid(ax, prefix):
    return [a for a in ax.get_children() if (a.get_gid() or "").startswith(prefix)]


def test_release_timeline_bars_markers_and_labels(restart):
    end = restart.records[-1]["t"]
    fig = plots.release_timeline(restart)
    ax = fig.axes[0]
    bars = {
        p.get_gid(): (p.get_x(), p.get_x() + p.get_width(), p.get_y() + p.get_height() / 2)
        for p in ax.patches
        if p.get_gid()
    }
    assert bars["engine-1|r1|running"][:2] == pytest.approx((0.0, 1.5))
    assert bars["engine-1|r1|stopping"][:2] == pytest.approx((1.5, 2.0))
    assert bars["engine-1|r2|running"][:2] == pytest.approx((2.0, end))
    assert bars["engine-2|r1|running"][:2] == pytest.approx((0.0, end))
    assert bars["engine-3|r1|running"][:2] == pytest.approx((0.0, 0.5))
    assert not [g for g in bars if g.startswith("engine-3|") and "running" not in g]  # killed: no stopping phase
    assert [t.get_text() for t in ax.get_yticklabels()] == ["engine-1", "engine-2", "engine-3"]
    lane = {e: bars[f"{e}|r1|running"][2] for e in ("engine-1", "engine-2", "engine-3")}
    marks = {ln.get_label(): list(zip(ln.get_xdata(), ln.get_ydata())) for ln in ax.lines}
    assert marks["graceful stop"] == [(1.5, lane["engine-1"])]
    assert marks["kill"] == [(0.5, lane["engine-3"])]
    step_line = marks["operator step (numbered, listed below)"]
    assert step_line[0][0] == 1.5
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"release r1", "release r2", "graceful stop", "kill"} <= set(legend)
    assert ax.get_xlabel() == "simulated time (s)" and "Releases per engine" in ax.get_title()
    steps_text = " ".join(t.get_text() for t in fig.axes[1].texts)
    assert "restart engine-1 -> r2" in steps_text and "1.50 s" in steps_text


def test_queue_depth_series_by_hand():
    # One engine, 1 s per message, casts at t=0.5, 1.0, 1.5, 2.0: each waits for the previous one.
    # m0 taken at 0.5 (wait 0), m1 at 1.5 (0.5), m2 at 2.5 (1.0), m3 at 3.5 (1.5).
    # Waiting: 1 from t=1.0 (m1), still 1 at 1.5 (m1 out, m2 in), 2 from 2.0, 1 from 2.5, 0 from 3.5.
    s = scenario(
        BASE,
        engines="{count: 1, release: r1}",
        workload="{rate: 2.0, arrivals: periodic, stop: 2.1, operations: {op: 1}, kind: cast}",
    )
    res = simroll.run_scenario(s)
    tab = plots.queue_table(res)
    assert tab["backlog"] == {"engine-1": ([0.0, 1.0, 2.0, 2.5, 3.5], [0, 1, 2, 1, 0])}
    assert tab["version"] == {"1.0": ([0.0, 1.0, 2.0, 2.5, 3.5], [0, 1, 2, 1, 0])}
    fig = plots.queue_depth(res)
    ax1, ax2, ax3 = fig.axes[:3]
    (line,) = _gid(ax1, "backlog|")
    assert line.get_gid() == "backlog|engine-1" and list(line.get_xdata()) == [0.0, 1.0, 2.0, 2.5, 3.5]
    assert line.get_drawstyle() == "steps-post"
    (vline,) = _gid(ax2, "version|")
    assert vline.get_label() == "version 1.0"
    (waits,) = _gid(ax3, "wait|")
    assert list(waits.get_xdata()) == pytest.approx([0.5, 1.5, 2.5, 3.5])
    assert list(waits.get_ydata()) == pytest.approx([0.0, 0.5, 1.0, 1.5])
    assert "(messages)" in ax1.get_ylabel() and "(s)" in ax3.get_ylabel() and ax3.get_xlabel() == "simulated time (s)"


def test_queue_depth_counts_messages_nobody_takes():
    # The only engine stops at t=1.5 (busy with the cast of t=1 until 2). The casts of t=2 and t=3
    # find no consumer: one waiting from 2, two from 3 -- and at t=3 the run ends and both are left.
    s = scenario(BASE, engines="{count: 1, release: r1}", plan="[{after: 1.5, stop: engine-1}]")
    res = simroll.run_scenario(s)
    assert res.violated == ["no-stranded-message"]
    tab = plots.queue_table(res)
    assert tab["backlog"]["engine-1"] == ([0.0], [0])  # it took m0 at once
    left_at = [r["t"] for r in res.records if r["kind"] == "left"]
    assert left_at == [3.0, 3.0]
    assert tab["backlog"]["never taken"] == ([0.0, 2.0, 3.0], [0, 1, 0])
    fig = plots.queue_depth(res)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert "never taken" in labels and any(lbl.startswith("first violation (no-stranded-message") for lbl in labels)


def test_engine_load_utilisation_by_hand(restart):
    # end = 4 s, 8 bins of 0.5 s. engine-1 is busy 1..2 (m0); engine-2 2..3 and 3..4 (m1, m2);
    # engine-3 runs 0..0.5 and is idle, then stopped (no utilisation: None).
    tab = plots.load_table(restart, bins=8)
    assert tab["edges"] == pytest.approx([0.5 * k for k in range(9)])
    assert tab["util"]["engine-1"] == pytest.approx([0, 0, 1, 1, 0, 0, 0, 0])
    assert tab["util"]["engine-2"] == pytest.approx([0, 0, 0, 0, 1, 1, 1, 1])
    assert tab["util"]["engine-3"] == [0.0] + [None] * 7
    assert tab["taken"] == {"engine-1": {"1.0": 1}, "engine-2": {"1.0": 2}, "engine-3": {}}
    assert tab["mean_util"] == pytest.approx({"engine-1": 0.25, "engine-2": 0.5, "engine-3": 0.0})
    fig = plots.engine_load(restart, bins=8)
    ax, axb = fig.axes[0], fig.axes[1]
    grid = _gid(ax, "utilisation")[0].get_array()
    assert grid.shape == (3, 8)
    assert np.ma.getmaskarray(grid)[2].tolist() == [False] + [True] * 7  # grey while stopped
    assert grid[1].tolist() == [0, 0, 0, 0, 100, 100, 100, 100]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["engine-1 (25%)", "engine-2 (50%)", "engine-3 (0%)"]
    widths = {p.get_gid(): p.get_width() for p in axb.patches if p.get_gid()}
    assert widths == {"taken|engine-1|1.0": 1, "taken|engine-2|1.0": 2, "taken|engine-3|1.0": 0}
    assert axb.get_xlabel() == "messages taken (count)"
    assert "utilisation (%" in fig.axes[2].get_ylabel()  # the colour bar


def test_field_history_and_plot_of_a_lost_write(lost):
    v = lost.violations[0]
    assert (v.invariant, v.time, v.subject, v.engines) == ("no-lost-write", 2.0, "props[0]", ("engine-2",))
    h = plots.field_history(lost)
    assert (h.field, h.row) == ("props", 0)
    assert h.cells == {
        "resource.properties": [(0.0, "init0"), (2.0, "v0"), (3.0, "v1"), (4.0, "v2")],
        "resource_new.data": [(0.0, None), (3.0, "v1")],
    }
    assert h.latest == [(0.0, "init0"), (2.0, "v0"), (3.0, "v1"), (4.0, "v2")]
    assert [(r.t, r.engine, r.value, r.stale) for r in h.reads] == [
        (1.0, "engine-1", "init0", False),
        (2.0, "engine-2", None, True),
        (3.0, "engine-1", "v1", False),
    ]
    fig = plots.field_values(lost)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["empty", "init0", "v0", "v1", "v2"]
    (stale,) = _gid(ax, "reads|stale")
    assert list(stale.get_xdata()) == [2.0]
    assert round(stale.get_ydata()[0]) == 0  # on the "empty" row: it read nothing
    (ok,) = _gid(ax, "reads|ok")
    assert list(ok.get_xdata()) == [1.0, 3.0]
    labels = ax.get_legend_handles_labels()[1]
    assert {
        "location resource.properties",
        "location resource_new.data",
        "latest acknowledged write",
        "stale read (lost write)",
    } <= set(labels)
    assert "engine-2 reads resource_new.data = empty" in " ".join(t.get_text() for t in ax.texts)


def test_sequence_diagram_highlights_the_chain(lost):
    shown, chain, v = plots.sequence_records(lost)
    # engine-2 starts on "new" (#3), takes m1 (#11) and reads the new column (#12); the write it
    # missed is #9 (by engine-1)
    assert v.event == 12 and chain == {3, 9, 11, 12}
    fig = plots.sequence_diagram(lost)
    ax = fig.axes[0]
    lanes = [t.get_text() for t in ax.get_xticklabels()]
    assert lanes == ["client", "bus", "engine-1", "engine-2", "database"]
    hot = {a.get_gid(): a for a in _gid(ax, "chain|")}
    assert set(hot) == {"chain|3", "chain|9", "chain|11", "chain|12"}
    rows = [t.get_text() for t in ax.get_yticklabels()]
    row12 = rows.index("t=2.000 s  #12")
    # the read goes from the database lifeline to engine-2's, on record 12's row
    assert hot["chain|12"].xy == (lanes.index("engine-2"), row12)
    assert hot["chain|12"].xyann == (lanes.index("database"), row12)
    assert hot["chain|9"].xy[0] == lanes.index("database") and hot["chain|9"].xyann[0] == lanes.index("engine-1")
    (star,) = _gid(ax, "violation")
    assert (star.get_xdata()[0], star.get_ydata()[0]) == (lanes.index("engine-2"), row12)
    assert "no-lost-write" in ax.get_title() and "#12" in ax.get_title()
    greys = {a.get_gid() for a in _gid(ax, "rec|")}
    assert "rec|7" in greys and "rec|10" not in greys  # context without the noise of `done` records


def test_sequence_diagram_of_the_founding_lost_write_shows_a_window():
    res = simroll.run_scenario(simroll.load_scenario(SCENARIOS / "lost_dual_writes.yaml"))
    v = res.violations[0]
    # engine-1 is the first engine restarted onto plus2 (t=20), and plus2 reads the new table
    assert v.invariant == "no-lost-write" and v.engines == ("engine-1",) and v.time >= 20.0
    shown, chain, _ = plots.sequence_records(res, window=30, max_rows=60)
    assert v.event in chain and set(v.causes) <= chain
    assert len(shown) <= 60 and shown[-1]["i"] == v.event and len(res.records) > 10 * len(shown)
    fig = plots.sequence_diagram(res)
    assert {a.get_gid() for a in _gid(fig.axes[0], "chain|")} == {f"chain|{i}" for i in chain}


def test_plots_of_a_trace_file_match_the_run(lost, tmp_path):
    path = tmp_path / "t.jsonl"
    simroll.run_scenario(scenario(LOST), trace_path=path)
    recs = simroll.read_trace(path)
    assert plots.violations_from_trace(recs) == lost.violations
    assert plots.field_history(recs).reads == plots.field_history(lost).reads
    assert plots.queue_table(recs) == plots.queue_table(lost)


def test_ten_engines_get_ten_lanes_and_distinct_colours():
    s = scenario(
        BASE,
        engines="{count: 10, release: r1}",
        workload="{rate: 5.0, arrivals: periodic, stop: 4, operations: {op: 1}, kind: cast}",
    )
    res = simroll.run_scenario(s)
    fig = plots.release_timeline(res)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [f"engine-{k}" for k in range(1, 11)]
    qfig = plots.queue_depth(res)
    waits = _gid(qfig.axes[2], "wait|")
    assert len(waits) == 10 and len({tuple(w.get_color()) for w in waits}) == 10


def test_write_plots_files_and_refusals(lost, tmp_path):
    paths = plots.write_plots(lost, tmp_path / "out")
    assert [p.name for p in paths] == [  # most relevant to the lost write first
        "field_values.png",
        "sequence_diagram.png",
        "release_timeline.png",
        "queue_depth.png",
        "engine_load.png",
    ]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
    svgs = plots.write_plots(lost, tmp_path / "out", fmt="svg")
    assert all(b"<svg" in p.read_bytes()[:2000] for p in svgs)
    again = plots.write_plots(lost, tmp_path / "again", fmt="svg")
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in svgs]  # no timestamps
    with pytest.raises(UsageError, match="file exists"):
        plots.write_plots(lost, tmp_path / "out", overwrite=False)
    with pytest.raises(UsageError, match="expected png or svg"):
        plots.write_plots(lost, tmp_path / "x", fmt="gif")
    held = simroll.run_scenario(scenario())
    assert held.ok
    assert [p.stem for p in plots.write_plots(held, tmp_path / "held")] == [
        "release_timeline",
        "queue_depth",
        "engine_load",
        "sequence_diagram",
    ]  # nothing was lost


def test_cli_plot_and_run_plots(capsys, tmp_path):
    src = SCENARIOS / "lost_dual_writes.yaml"
    trace = tmp_path / "t.jsonl"
    assert main(["run", str(src), "--trace", str(trace), "--plots", str(tmp_path / "p"), "--format", "svg"]) == 1
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == [
        "engine_load.svg",
        "field_values.svg",
        "queue_depth.svg",
        "release_timeline.svg",
        "sequence_diagram.svg",
    ]
    capsys.readouterr()
    assert main(["plot", str(trace), "--out", str(tmp_path / "q")]) == 0
    out = capsys.readouterr().out.split()
    assert len(out) == 5 and all(p.endswith(".png") for p in out)
    assert main(["plot", str(trace), "--out", str(tmp_path / "q")]) == 2
    assert "file exists; pass --force" in capsys.readouterr().err
    assert main(["plot", str(trace), "--out", str(tmp_path / "q"), "--seed", "3"]) == 2
    assert "takes no seed" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"i": 0, "t": 0, "kind": "begin"}\nnot json\n')
    assert main(["plot", str(bad), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"simroll: {bad}: line 2: not JSON") and "Traceback" not in err
    assert main(["plot", str(src), "--out", str(tmp_path / "s"), "--seed", "2"]) == 0


def test_field_values_marks_the_backfill_that_copies_a_stale_value():
    # One plus1 engine (reads the old column, writes both); casts at t=1 and t=2, 0.1 s each:
    # it writes v0 at 1.1 and v1 at 2.1. The backfill starts at 1.2, reads row 0 at 1.7 (v0),
    # waits 1 s and writes v0 into the new column at 2.7 -- over the newer v1.
    s = scenario(
        LOST,
        database="""
        tables: {resource: [id, properties], resource_new: [id, data]}
        rows: 1
        initial: {props: [resource.properties]}
        canonical: {props: resource_new.data}
        """,
        engines="{count: 1, release: new}",
        releases="""
        new:
          rpc: {endpoints: [{version: "1.0", methods: {op: [x]}}]}
          data: {props: {read: resource.properties, write: [resource.properties, resource_new.data]}}
          service_time: 0.1
        """,
        workload="""
        {rate: 1.0, arrivals: periodic, stop: 2.5, operations: {op: 1}, kind: cast,
         handlers: {op: {read: [props], write: [props]}}}
        """,
        plan="[{after: 1.2, backfill: {from: resource.properties, to: resource_new.data, rate: 2, gap: 1.0}}]",
    )
    res = simroll.run_scenario(s)
    assert [(v.time, v.subject) for v in res.violations] == [(pytest.approx(2.7), "props[0]")]
    h = plots.field_history(res)
    cell = h.cells["resource_new.data"]
    assert [v for _, v in cell] == [None, "v0", "v1", "v0"]
    assert [t for t, _ in cell] == pytest.approx([0.0, 1.1, 2.1, 2.7])
    assert [(round(t, 6), loc, v) for t, loc, v in h.bf_reads] == [(1.7, "resource.properties", "v0")]
    assert [(round(t, 6), loc, v) for t, loc, v in h.bf_writes] == [(2.7, "resource_new.data", "v0")]
    ax = plots.field_values(res).axes[0]
    (bf_read,) = _gid(ax, "backfill|read")
    (bf_write,) = _gid(ax, "backfill|write")
    assert list(bf_read.get_xdata()) == pytest.approx([1.7]) and list(bf_write.get_xdata()) == pytest.approx([2.7])
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["empty", "init0", "v0", "v1"]
    assert round(bf_write.get_ydata()[0]) == labels.index("v0")  # the new column falls back to v0


# ---------------------------------------------------------------------------------------- legible
def _figure_problems(fig):
    """What makes a figure hard to read: an axis with tick labels but no label, or a legend drawn over
    data (a line's points, a bar, an image, a scatter point or an annotation inside the legend box
    and inside the axes). Computed in display coordinates after drawing."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import Collection
    from matplotlib.image import AxesImage
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle
    from matplotlib.text import Annotation

    FigureCanvasAgg(fig).draw()
    r = fig.canvas.get_renderer()
    out = []
    for ax in fig.axes:
        if not ax.axison:
            continue
        name = ax.get_title() or ax.get_label()
        for which, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            if ax.get_label() == "<colorbar>" and axis is not ax._colorbar.long_axis:  # noqa: SLF001
                continue
            if any(t.get_visible() and t.get_text() for t in axis.get_ticklabels()) and not axis.get_label_text():
                out.append(f"{name}: {which} axis has tick labels but no label")
        leg = ax.get_legend()
        if leg is None:
            continue
        box, clip = leg.get_window_extent(r), ax.get_window_extent(r)

        def covers(q, box=box, clip=clip):
            inter = q.intersection(q, box)
            return inter is not None and inter.width > 1 and inter.height > 1 and clip.overlaps(q)

        for art in ax.get_children():
            if art is leg or art is ax.patch or not art.get_visible():
                continue
            if isinstance(art, Line2D) and len(art.get_xydata()):
                p = art.get_transform().transform(np.asarray(art.get_xydata(), float))
                inside = (p[:, 0] > box.x0) & (p[:, 0] < box.x1) & (p[:, 1] > box.y0) & (p[:, 1] < box.y1)
                inside &= (p[:, 0] >= clip.x0) & (p[:, 0] <= clip.x1) & (p[:, 1] >= clip.y0) & (p[:, 1] <= clip.y1)
                if inside.any():
                    out.append(f"{name}: the legend covers the line {art.get_label()}")
            elif isinstance(art, Collection) and len(art.get_offsets()):
                p = art.get_offset_transform().transform(np.asarray(art.get_offsets(), float))
                if any(covers(type(box).from_bounds(x, y, 2, 2)) for x, y in p):
                    out.append(f"{name}: the legend covers points {art.get_label()}")
            elif isinstance(art, Rectangle) and art.get_gid() and not str(art.get_gid()).startswith("gap"):
                if covers(art.get_window_extent(r)):
                    out.append(f"{name}: the legend covers the bar {art.get_gid()}")
            elif isinstance(art, AxesImage) and covers(art.get_window_extent(r)):
                out.append(f"{name}: the legend covers the image {art.get_gid()}")
            elif isinstance(art, Annotation):
                boxes = [art.get_window_extent(r)] + ([art.arrow_patch.get_window_extent(r)] if art.arrow_patch else [])
                if any(q.width > 0 and covers(q) for q in boxes):
                    out.append(f"{name}: the legend covers the annotation {art.get_text()[:30]!r}")
    return out


def test_the_legibility_check_finds_a_legend_over_data_and_an_unlabelled_axis():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 3))
    ax = fig.add_subplot()
    ax.plot([0, 1, 2], [1, 1, 1], label="flat")  # the middle point sits under a centred legend
    ax.legend(loc="center")
    ax.set_xlabel("time (s)")
    assert _figure_problems(fig) == [
        ": y axis has tick labels but no label",
        ": the legend covers the line flat",
    ]
    ax.set_ylabel("value")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: covers nothing
    assert _figure_problems(fig) == []


@pytest.mark.parametrize(
    "which", ["lost", "last_legacy_drain.yaml", "single_upgraded_oslo.yaml", "single_upgraded_starvation.yaml"]
)
def test_every_axis_is_labelled_and_no_legend_covers_data(which, lost):
    res = lost if which == "lost" else simroll.run_scenario(simroll.load_scenario(SCENARIOS / which))
    figs = plots.explaining_plots(res)
    figs["availability"] = plots.availability(res)
    for name, fig in figs.items():
        assert _figure_problems(fig) == [], name


def test_the_sweep_heatmap_is_labelled():
    sweep = simroll.run_sweep(scenario(BASE), ["engines.count=1,2", "workload.rate=1.0,2.0"])
    assert _figure_problems(plots.sweep_heatmap(sweep, "worst_wait")) == []


def _history(*invariants):
    from simroll.check.history import RunHistory
    from simroll.check.invariants import Violation

    vs = [Violation(name, float(k), "", k) for k, name in enumerate(invariants)]
    return RunHistory([], vs, "x", None, [])


@pytest.mark.parametrize(
    ("violated", "first"),
    [
        ((), ("release_timeline", "queue_depth", "engine_load", "sequence_diagram", "availability")),
        (("no-lost-write",), ("field_values", "sequence_diagram", "release_timeline", "queue_depth", "engine_load")),
        (("no-lost-update",), ("field_values", "sequence_diagram")),
        (("no-stranded-message",), ("queue_depth", "release_timeline")),
        (("bounded-imbalance",), ("queue_depth", "engine_load")),
        (("operations-complete",), ("availability", "queue_depth")),
        (("version-skew",), ("release_timeline",)),
        # the first violation decides; a lost write after it still gets its field plot, before availability
        (("no-stranded-message", "no-lost-write"), ("queue_depth", "release_timeline", "sequence_diagram")),
    ],
)
def test_plots_are_ordered_by_relevance_to_the_first_violation(violated, first):
    order = plots.plot_order(_history(*violated))
    assert order[: len(first)] == first
    assert order[-1] == "availability" or violated == ("operations-complete",)
    assert len(set(order)) == len(order)
    assert ("field_values" in order) == any(v in ("no-lost-write", "no-lost-update") for v in violated)
    if violated == ("no-stranded-message", "no-lost-write"):
        assert order[-2:] == ("field_values", "availability")


# services and vhosts ------------------------------------------------------------------------------
# A hand-built trace with two services (engine, worker) and two vhosts ('/' and 'new'):
#   e-1 (engine, old) and w-1 (worker) consume 'engine' and 'worker' on '/'; e-2 (engine, new)
#   consumes 'new/engine'. m0, m1 go to 'engine' at t=1; e-1 takes m0 at t=2 and casts m2 to the
#   worker; at t=3 the clients move to 'new' (m1 and m2 wait on '/': depth 2); m3 goes to
#   'new/engine' at t=4; w-1 takes m2 at 5, e-2 takes m3 at 6; m1 is left on '/' at the end (t=7).
def _start(i, engine, release, service, vhost, queue):
    return {
        "i": i,
        "t": 0.0,
        "kind": "start",
        "engine": engine,
        "release": release,
        "workers": 1,
        "cap": None,
        "service": service,
        "vhost": vhost,
        "queue": queue,
        "cause": [],
    }


def _send(i, t, engine, msg, method, queue, service):
    return {
        "i": i,
        "t": t,
        "kind": "send",
        "engine": engine,
        "msg": msg,
        "method": method,
        "version": "1.0",
        "queue": queue,
        "call": False,
        "row": 0,
        "service": service,
    }


def _recv(i, t, engine, msg, wait, cause):
    return {"i": i, "t": t, "kind": "recv", "engine": engine, "msg": msg, "wait": wait, "cause": [cause]}


GROUPED = [
    {"i": 0, "t": 0.0, "kind": "begin", "scenario": "grouped", "delivery": "oslo"},
    _start(1, "e-1", "old", "engine", "/", "engine"),
    _start(2, "w-1", "wold", "worker", "/", "worker"),
    _start(3, "e-2", "new", "engine", "new", "new/engine"),
    _send(4, 1.0, "client", 0, "op", "engine", "engine"),
    _send(5, 1.0, "client", 1, "op", "engine", "engine"),
    _recv(6, 2.0, "e-1", 0, 1.0, 4),
    _send(7, 2.0, "e-1", 2, "check", "worker", "worker"),
    {"i": 8, "t": 3.0, "kind": "step", "index": 0, "action": "set_vhost", "detail": {"set_vhost": "new"}},
    {"i": 9, "t": 3.0, "kind": "vhost", "clients": "new", "depth": {"/": 2, "new": 0}, "cause": [8]},
    _send(10, 4.0, "client", 3, "op", "new/engine", "engine"),
    _recv(11, 5.0, "w-1", 2, 3.0, 7),
    _recv(12, 6.0, "e-2", 3, 2.0, 10),
    {"i": 13, "t": 7.0, "kind": "left", "msg": 1, "queue": "engine", "version": "1.0", "cause": [5]},
    {"i": 14, "t": 7.0, "kind": "end", "reason": "quiescent", "points": 0},
]


def _plain(records):
    """The same records without the keys of services and vhosts (a scenario without them)."""
    drop = {"start": ("service", "vhost", "queue"), "send": ("service",)}
    return [{k: v for k, v in r.items() if k not in drop.get(r["kind"], ())} for r in records if r["kind"] != "vhost"]


def test_grouped_history_orders_engines_by_service_and_knows_the_vhosts():
    from simroll.check.history import queue_vhost, run_history

    run = run_history(GROUPED)
    # services in the order they first start an engine (engine, then worker); start order within one
    assert run.engines == ["e-1", "e-2", "w-1"]
    assert run.services == {"e-1": "engine", "w-1": "worker", "e-2": "engine"}
    assert run.vhosts == ["/", "new"] and run.grouped
    assert [queue_vhost(q) for q in ("engine", "new/engine", "engine.e-1", "new/engine.e-2")] == [
        "/",
        "new",
        "/",
        "new",
    ]
    plain = run_history(_plain(GROUPED))
    assert plain.engines == ["e-1", "w-1", "e-2"] and plain.services == {} and not plain.grouped


def test_queue_table_by_queue_and_by_vhost_by_hand():
    tab = plots.queue_table(GROUPED)
    # engine: m0 and m1 from 1, m0 out at 2, m1 left at 7; worker: m2 2..5; new/engine: m3 4..6
    assert tab["queue"] == {
        "engine": ([0.0, 1.0, 2.0, 7.0], [0, 2, 1, 0]),
        "worker": ([0.0, 2.0, 5.0], [0, 1, 0]),
        "new/engine": ([0.0, 4.0, 6.0], [0, 1, 0]),
    }
    # '/': 2 from 1 (at 2 m0 leaves as m2 arrives: still 2), 1 from 5, 0 from 7 -- and 2 at the
    # set_vhost of t=3, as the vhost record says
    assert tab["vhost"] == {"/": ([0.0, 1.0, 5.0, 7.0], [0, 2, 1, 0]), "new": ([0.0, 4.0, 6.0], [0, 1, 0])}
    from simroll.check.history import vhost_depths

    assert vhost_depths(GROUPED) == [(3.0, {"/": 2, "new": 0})]
    plain = plots.queue_table(_plain(GROUPED))
    assert set(plain) == {"backlog", "version"}  # a trace without services draws as it always did
    assert plain["backlog"] == tab["backlog"] and plain["version"] == tab["version"]


def test_queue_depth_draws_the_vhosts_and_the_depth_the_cutover_saw():
    fig = plots.queue_depth(GROUPED)
    assert len(fig.axes) == 4
    ax = fig.axes[2]
    lines = {ln.get_gid(): ln for ln in ax.lines if ln.get_gid()}
    assert list(lines["vhost|/"].get_ydata()) == [0, 2, 1, 0]
    assert list(lines["vhost|new"].get_xdata()) == [0.0, 4.0, 6.0]
    # three queues on two vhosts: the queues are drawn too, dashed, in their vhost's colour
    assert lines["queue|worker"].get_linestyle() == "--"
    assert lines["queue|worker"].get_color() == lines["vhost|/"].get_color()
    assert list(zip(lines["reported|/"].get_xdata(), lines["reported|/"].get_ydata())) == [(3.0, 2)]
    assert list(zip(lines["reported|new"].get_xdata(), lines["reported|new"].get_ydata())) == [(3.0, 0)]
    assert ax.get_ylabel() == "waiting, by vhost\n(messages)"
    assert "vhost /" in ax.get_legend_handles_labels()[1]
    assert _figure_problems(fig) == []
    assert len(plots.queue_depth(_plain(GROUPED)).axes) == 3


def test_one_vhost_several_services_draw_by_queue():
    one = [r for r in GROUPED if r["kind"] != "vhost" and r.get("msg") != 3 and r["i"] != 3]
    fig = plots.queue_depth(one)
    ax = fig.axes[2]
    assert sorted(ln.get_gid() for ln in ax.lines if (ln.get_gid() or "").startswith(("queue|", "vhost|"))) == [
        "queue|engine",
        "queue|worker",
    ]
    assert ax.get_ylabel() == "waiting, by queue\n(messages)"


def test_timeline_load_and_sequence_group_by_service():
    fig = plots.release_timeline(GROUPED)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["e-1 (engine)", "e-2 (engine)", "w-1 (worker)"]
    assert [ln.get_ydata()[0] for ln in ax.lines if ln.get_gid() == "service-boundary"] == [1.5]
    assert ax.get_ylabel() == "engine (service)"
    assert {"old on vhost /", "new on vhost new", "wold on vhost /"} <= {t.get_text() for t in ax.texts}
    load = plots.engine_load(GROUPED)
    ticks = [t.get_text() for t in load.axes[0].get_yticklabels()]
    assert [t.split(",")[0] for t in ticks] == ["e-1 (engine", "e-2 (engine", "w-1 (worker"]
    seq = plots.sequence_diagram(GROUPED)
    sax = seq.axes[0]
    lanes = [t.get_text() for t in sax.get_xticklabels()]
    assert lanes.index("e-1\n(engine)") < lanes.index("e-2\n(engine)") < lanes.index("w-1\n(worker)")
    texts = {t.get_text() for t in sax.texts}
    assert "m1 engine.op v1.0 cast to engine (row 0)" in texts  # the message left on '/' (the violation)
    assert "starts on new (consumes new/engine)" in texts
    for f in (fig, load, seq):
        assert _figure_problems(f) == []
    plain = plots.release_timeline(_plain(GROUPED)).axes[0]
    assert [t.get_text() for t in plain.get_yticklabels()] == ["e-1", "w-1", "e-2"]
    assert "old" in {t.get_text() for t in plain.texts} and not [ln for ln in plain.lines if ln.get_gid()]


@pytest.mark.parametrize(("name", "left"), [("vhost_cutover_undrained", 7), ("vhost_cutover_drained", 0)])
def test_the_drain_of_the_old_vhost_shows(name, left):
    res = simroll.run_scenario(simroll.load_scenario(SCENARIOS / f"{name}.yaml"))
    tab = plots.queue_table(res)
    (t_cut, depth), *_ = [(r["t"], r["depth"]) for r in res.records if r["kind"] == "vhost"]
    for vhost, (xs, ys) in tab["vhost"].items():  # the plot agrees with the broker at the cut-over
        assert ys[max(k for k, x in enumerate(xs) if x <= t_cut)] == depth[vhost]
    stops = [r["t"] for r in res.records if r["kind"] == "stopped"]
    xs, ys = tab["vhost"]["/"]
    end = res.records[-1]["t"]
    # undrained: what the old engines handed back stays on '/' from their stop to the end of the run
    # (the 7 'left' records); drained: '/' is empty when the last old engine has stopped, and stays so
    assert [y for x, y in zip(xs, ys, strict=True) if max(stops) < x < end] == []
    assert ys[max(k for k, x in enumerate(xs) if x <= max(stops))] == left
    assert len([r for r in res.records if r["kind"] == "left"]) == left
