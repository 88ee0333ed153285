"""simroll sweep: a grid of scenario variants, its table and heatmap, on any number of workers.

The small scenario (conftest BASE) sends one cast at t = 1, 2 and 3 (periodic, rate 1, stop
3.5) to engines that each handle one message at a time. The expected waits and times below
are worked out from that by hand.
"""

import json

import pytest
from conftest import scenario

import simroll
from simroll.cli import main
from simroll.errors import ScenarioError, UsageError
from simroll.explore.parallel import make_executor
from simroll.explore.sweep import SweepParam, grid, make_variant, parse_path, percentile, run_sweep, set_path
from simroll.view.plots import sweep_heatmap, write_sweep


# ------------------------------------------------------------------ parameters and the grid
def test_paths_are_keys_and_indices():
    assert parse_path("engines.count") == ("engines", "count")
    assert parse_path("plan[1].after") == ("plan", 1, "after")
    assert parse_path("invariants.bounded-imbalance.max_wait") == ("invariants", "bounded-imbalance", "max_wait")
    assert parse_path('releases["v1.2"].workers') == ("releases", "v1.2", "workers")
    for bad in ("engines..count", "plan[x]", "plan[1]after", ".engines", "engines."):
        with pytest.raises(UsageError, match="cannot read the path"):
            parse_path(bad)


def test_values_are_yaml_split_at_top_level_commas():
    p = SweepParam.parse("engines.count=3, 5,10")
    assert p.key == "engines.count" and p.values == (3, 5, 10) and p.labels == ("3", "5", "10")
    p = SweepParam.parse("plan=[],[{after: 4, stop: engine-1}],'a,b'")
    assert p.values == ([], [{"after": 4, "stop": "engine-1"}], "a,b")
    assert SweepParam.parse("bus.delivery=oslo,version-routed").values == ("oslo", "version-routed")
    assert SweepParam.parse("search=null").values == (None,)


@pytest.mark.parametrize(
    "text, message",
    [
        ("engines.count", "expected KEY=V1,V2"),
        ("=3", "expected KEY=V1,V2"),
        ("engines.count=3,,5", "empty value"),
        ("engines.count=3,5,3", "value '3' given twice"),
        ("engines.count=[3", "is not valid YAML"),
    ],
)
def test_bad_parameter_text_is_a_usage_error(text, message):
    with pytest.raises(UsageError, match=message):
        SweepParam.parse(text)


def test_grid_varies_the_first_parameter_slowest():
    a, b = SweepParam.parse("a=1,2"), SweepParam.parse("b=x,y,z")
    assert grid([a, b]) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert grid([b]) == [(0,), (1,), (2,)]


def test_set_path_sets_in_place_and_opens_an_empty_block():
    doc = {"engines": {"count": 3}, "plan": [{"after": 0}, {"after": 1}], "search": None}
    set_path(doc, ("plan", 1, "after"), 30)
    set_path(doc, ("search", "max_pause"), 5)
    set_path(doc, ("engines", "new"), 1)  # the last key may be new: the loader judges it
    assert doc == {"engines": {"count": 3, "new": 1}, "plan": [{"after": 0}, {"after": 30}], "search": {"max_pause": 5}}


@pytest.mark.parametrize(
    "path, message",
    [
        (("engine", "count"), "the document has no key 'engine' (keys: engines, plan)"),
        (("plan", 2, "after"), "plan has 2 items (indices 0..1), not [2]"),
        (("engines", 0), "engines is a mapping, not a list: [0] does not apply"),
        (("plan", "after"), "plan is a list, not a mapping: .after does not apply (use an index, e.g. [0])"),
        (("engines", "count", "x"), "engines.count is a number, not a mapping: .x does not apply"),
    ],
)
def test_paths_that_do_not_exist_say_where(path, message):
    doc = {"engines": {"count": 3}, "plan": [{"after": 0}, {"after": 1}]}
    with pytest.raises(ValueError) as e:
        set_path(doc, path, 1)
    assert str(e.value) == message


def test_a_variant_is_the_scenario_with_the_values_set():
    s = scenario()
    ps = [
        SweepParam.parse("engines.count=1,5"),
        SweepParam.parse("releases.r1.service_time=0.5,2.0"),
        SweepParam.parse("search.max_pause=7"),
    ]
    v = make_variant(s, [(ps[0], 1), (ps[1], 1), (ps[2], 0)])
    assert [e.name for e in v.engine_list()] == [f"engine-{k}" for k in range(1, 6)]
    assert v.releases["r1"].service_time == 2.0
    assert v.search is not None and v.search.max_pause == 7
    assert v.workload == s.workload and v.database == s.database  # the rest is untouched


def test_a_version_value_keeps_its_text():
    s = scenario()
    v = make_variant(s, [(SweepParam.parse("releases.r1.rpc.cap=1.10"), 0)])
    assert v.releases["r1"].rpc.cap == "1.10"  # not the float 1.1


def test_a_bad_value_is_the_loaders_error_naming_the_variant():
    s = scenario()
    with pytest.raises(ScenarioError) as e:
        make_variant(s, [(SweepParam.parse("engines.count=0"), 0)], source="s.yaml")
    assert e.value.source == "s.yaml with engines.count=0"
    assert e.value.where == "engines.count"  # no line number: it would be one of the generated text
    assert "greater than or equal to 1" in e.value.message
    with pytest.raises(ScenarioError, match=r"^s\.yaml with bus\.delivery=rabbit: bus\.delivery: "):
        make_variant(s, [(SweepParam.parse("bus.delivery=rabbit"), 0)], source="s.yaml")
    with pytest.raises(ScenarioError, match=r"^s\.yaml with engines\.cnt=3: engines\.cnt: unknown key 'cnt'"):
        make_variant(s, [(SweepParam.parse("engines.cnt=3"), 0)], source="s.yaml")


def test_a_missing_path_is_a_scenario_error_before_anything_runs():
    with pytest.raises(ScenarioError) as e:
        run_sweep(scenario(), ["plan[0].after=1,2"], source="s.yaml")
    assert str(e.value) == "s.yaml: --param plan[0].after: plan has no items, not [0]"


def test_the_same_path_twice_is_refused():
    with pytest.raises(UsageError, match="swept twice"):
        run_sweep(scenario(), ["engines.count=1,2", "engines['count']=3"])


def test_percentile_is_nearest_rank():
    xs = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert percentile(xs, 99) == 5.0  # ceil(4.95) = 5th smallest
    assert percentile(xs, 50) == 3.0  # ceil(2.5) = 3rd
    assert percentile(xs, 20) == 1.0  # ceil(1.0) = 1st
    assert percentile(list(range(1, 201)), 99) == 198  # ceil(198.0) = 198th of 1..200
    assert percentile([], 99) is None


# ------------------------------------------------------------------ a small sweep, worked by hand
def small_sweep(**kw):
    return run_sweep(scenario(), ["engines.count=1,2", "releases.r1.service_time=1.0,2.0"], **kw)


def test_small_sweep_table():
    sw = small_sweep()
    # one engine, 2 s a message: m0 taken at 1 (waits 0), done 3; m1 (sent 2) taken 3, waits 1, done 5;
    # m2 (sent 3) taken 5, waits 2, done 7. With 1 s a message, or two engines, nothing waits:
    # each message finds its engine free (round robin puts m2 on engine-1, free again at 3).
    # Records: begin, init, one start per engine, plan_done, 3 sends, 3 recvs, 3 dones, final, end.
    expected = {  # (engines, service time): (worst wait, events, end of the last message)
        (1, 1.0): (0.0, 15, 4.0),
        (1, 2.0): (2.0, 15, 7.0),
        (2, 1.0): (0.0, 16, 4.0),
        (2, 2.0): (0.0, 16, 5.0),
    }
    got = {}
    for c in sw.cells:
        (run,) = c.runs
        key = (sw.params[0].values[c.values[0]], sw.params[1].values[c.values[1]])
        got[key] = (run.worst_wait, run.events, run.sim_time)
        assert run.p99_wait == run.worst_wait  # 3 waits: the 99th percentile is the largest
        assert run.violated == [] and run.seed == 1
    assert got == expected
    assert [sw.labels(c) for c in sw.cells] == [["1", "1.0"], ["1", "2.0"], ["2", "1.0"], ["2", "2.0"]]
    md = sw.to_markdown()
    assert "| `engines.count` | `releases.r1.service_time` | violated | worst wait (s) |" in md
    assert "| 1 | 2.0 | holds | 2.000 | 2.000 | 15 | 7.000 | " in md
    data = sw.to_json()
    assert data["params"] == [
        {"key": "engines.count", "values": [1, 2]},
        {"key": "releases.r1.service_time", "values": [1.0, 2.0]},
    ]
    assert data["seeds"] == [1]
    assert data["cells"][1]["params"] == {"engines.count": 1, "releases.r1.service_time": 2.0}
    assert data["cells"][1]["worst_wait"] == 2.0
    rows = sw.to_csv().splitlines()
    assert (
        rows[0] == "engines.count,releases.r1.service_time,seed,violated,worst_wait,p99_wait,events,sim_time,"
        "trace_sha256"
    )
    assert rows[2].startswith("1,2.0,1,,2.0,2.0,15,7.0,")


def test_violations_are_reported_per_cell():
    s = scenario(engines="{count: 1, release: r1}")
    sw = run_sweep(s, ["plan=[],[{after: 4, stop: engine-1}]", "releases.r1.service_time=2.0"])
    held, stopped = sw.cells
    assert held.violated == []
    # stopped at 4: m1 (taken at 3) finishes, m2 (sent 3, waiting behind it) goes back to a topic
    # nobody consumes any more: stranded. The waits are m0's 0 and m1's 1.
    assert stopped.violated == ["no-stranded-message"]
    assert stopped.runs[0].worst_wait == 1.0
    assert "| **no-stranded-message** |" in sw.to_markdown()


def test_seeds_give_worst_and_median():
    s = scenario(
        workload="""
        rate: 2.0
        arrivals: poisson
        stop: 10
        operations: {op: 1}
        kind: cast
    """
    )
    sw = run_sweep(s, ["engines.count=1"], seeds=3)
    (cell,) = sw.cells
    assert [r.seed for r in cell.runs] == [0, 1, 2]
    # each seed run on its own, its worst wait read straight from the trace
    direct = []
    for seed in range(3):
        res = simroll.run_scenario(
            s.model_copy(update={"engines": s.engines.model_copy(update={"count": 1})}), seed=seed
        )
        direct.append(max(r["wait"] for r in res.records if r["kind"] == "recv"))
        assert cell.runs[seed].trace_sha256 == res.trace_sha256
    assert len(set(direct)) > 1  # the seeds really differ
    assert cell.worst("worst_wait") == max(direct)
    assert cell.median("worst_wait") == sorted(direct)[1]
    md = sw.to_markdown()
    assert "seeds 0..2" in md and f"| {max(direct):.3f} ({sorted(direct)[1]:.3f}) |" in md


# ------------------------------------------------------------------ the heatmap and the files
def test_heatmap_shows_the_metric_over_the_first_two_parameters():
    sw = small_sweep()
    fig = sweep_heatmap(sw, "worst_wait")
    ax = fig.axes[0]
    # x: engines.count, y: service time; only (1 engine, 2.0 s) waits (2 s)
    assert ax.images[0].get_array().tolist() == [[0.0, 0.0], [2.0, 0.0]]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["1.0", "2.0"]
    assert ax.get_xlabel() == "engines.count" and ax.get_ylabel() == "releases.r1.service_time"
    with pytest.raises(UsageError, match="metric 'speed'"):
        sweep_heatmap(sw, "speed")


def test_write_refuses_existing_files_without_force(tmp_path):
    sw = small_sweep()
    paths = write_sweep(sw, str(tmp_path / "grid"))
    assert [p.name for p in paths] == ["grid.md", "grid.json", "grid.csv", "grid.png"]
    assert (tmp_path / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "grid.json").read_text()) == sw.to_json()
    (tmp_path / "grid.md").write_text("mine")
    with pytest.raises(UsageError, match="grid.md: file exists; pass --force"):
        write_sweep(sw, str(tmp_path / "grid"))
    assert (tmp_path / "grid.md").read_text() == "mine"
    write_sweep(sw, str(tmp_path / "grid"), overwrite=True)
    assert (tmp_path / "grid.md").read_text() == sw.to_markdown()


# ------------------------------------------------------------------ the command
@pytest.fixture
def scenario_file(tmp_path):
    from conftest import BASE

    p = tmp_path / "s.yaml"
    p.write_text(BASE)
    return p


def test_cli_sweep_prints_the_table_and_writes_the_files(scenario_file, tmp_path, capsys):
    out = tmp_path / "res"
    args = [
        "sweep",
        str(scenario_file),
        "--param",
        "engines.count=1,2",
        "--param",
        "releases.r1.service_time=1.0,2.0",
        "--out",
        str(out),
        "--json",
    ]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((tmp_path / "res.json").read_text())
    assert [c["worst_wait"] for c in printed["cells"]] == [0.0, 2.0, 0.0, 0.0]
    assert (tmp_path / "res.png").exists() and (tmp_path / "res.csv").exists()
    assert main(args) == 2
    assert "res.md: --out: file exists; pass --force to overwrite it" in capsys.readouterr().err
    assert main(args + ["--force"]) == 0


def test_cli_sweep_errors_exit_2(scenario_file, capsys):
    assert main(["sweep", str(scenario_file), "--param", "engines.count=0,1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"simroll: {scenario_file} with engines.count=0: engines.count: ")
    assert main(["sweep", str(scenario_file), "--param", "engines.cnt.x=1"]) == 2
    assert capsys.readouterr().err == (
        f"simroll: {scenario_file}: --param engines.cnt.x: engines has no key 'cnt' (keys: count, release, prefix, service)\n"
    )
    assert main(["sweep", str(scenario_file), "--param", "engines.count"]) == 2
    assert "expected KEY=V1,V2" in capsys.readouterr().err


# ------------------------------------------------------------------ workers
def poisson_sweep(executor=None):
    s = scenario(
        workload="""
        rate: 3.0
        arrivals: poisson
        stop: 8
        operations: {op: 1}
        kind: cast
    """
    )
    return run_sweep(s, ["engines.count=1,2", "bus.delivery=oslo,version-routed"], seeds=2, executor=executor).to_json()


def test_the_table_does_not_depend_on_the_number_of_local_workers():
    one = poisson_sweep()
    with make_executor(workers=2) as ex:
        two = poisson_sweep(ex)
    assert two == one
    assert len({r["trace_sha256"] for c in one["cells"] for r in c["runs"]}) == 8  # every run its own


@pytest.mark.slow
def test_the_table_is_the_same_on_a_dask_cluster():
    distributed = pytest.importorskip(
        "distributed", reason="the dask extra is not installed (pip install 'simroll[dask]')"
    )
    one = poisson_sweep()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with make_executor(dask=cluster.scheduler_address) as ex:
            assert ex.workers == 2
            on_dask = poisson_sweep(ex)
    assert on_dask == one
