"""Notebook display: every result type has a short repr and a styled HTML view of its own.

``repr()`` of a run once printed every trace record (324 KB) and a fuzz result its scenario,
counterexample and run (329 KB); each must now stay under 1 KB, however big the object.
"""

import re

import pytest
from conftest import SCENARIOS, scenario
from test_html import _parse
from test_plots import LOST

import simroll
from simroll.explore.matrix import Cell, Matrix, Row
from simroll.explore.sweep import RunFigures, Sweep, SweepCell, SweepParam

KB = 1024


@pytest.fixture(scope="module")
def lost():
    return simroll.run_scenario(scenario(LOST))


@pytest.fixture(scope="module")
def big():
    """A long run with many violations: what made the old reprs huge."""
    return simroll.run_scenario(simroll.load_scenario(SCENARIOS / "lost_dual_writes.yaml"))


@pytest.fixture(scope="module")
def found():
    return simroll.fuzz(
        simroll.load_scenario(SCENARIOS / "fuzz_backfill_race.yaml"), max_examples=60, seed=0, method="hypothesis"
    )


def _sweep(n_cells: int) -> Sweep:
    p = SweepParam("engines.count", ("engines", "count"), tuple(range(n_cells)), tuple(map(str, range(n_cells))))
    cells = [
        SweepCell((k,), [RunFigures(0, ["bounded-imbalance"] if k % 2 else [], 1.5 * k, 1.0, 100, 10.0, "ab" * 32)])
        for k in range(n_cells)
    ]
    return Sweep("starve", "<test>", [p], [0], cells)


def _matrix(n_rows: int, s) -> Matrix:
    rows = [
        Row(
            f"d/design{k}.yaml",
            s,
            [Cell("rolling", "oslo", "violated", ["no-lost-write"], "fuzz"), Cell("pause-first", "oslo", "holds")],
        )
        for k in range(n_rows)
    ]
    return Matrix("d", ["rolling", "pause-first", "three-releases"], ["oslo"], rows)


def _styled(html: str) -> None:
    """One fragment with its own CSS, which left-aligns event text and colours verdicts."""
    assert html.startswith('<div class="simroll"><style>') and html.endswith("</div>")
    css = html[html.index("<style>") : html.index("</style>")]
    assert "div.simroll td.ev, div.simroll td.role { text-align: left; }" in css
    assert ".badge.ok { background: #1a7f37" in css and ".badge.bad { background: #c62828" in css
    _parse(html)


def test_run_result(lost, big):
    assert len(repr(big)) < KB and len(repr(lost)) < KB
    assert repr(big).startswith("RunResult('lost_dual_writes', seed=")
    html = big._repr_html_()
    _styled(html)
    assert '<span class="badge bad">violated: no-lost-write</span>' in html
    assert html.count('<p class="why"><b>why:</b>') == 3  # the first three violations, each with its why
    assert re.search(r'<td class="role">lost write</td><td class="ev">engine-1 writes resource_props\[22\]', html)


def test_held_run_is_green():
    res = simroll.run_scenario(simroll.load_scenario(SCENARIOS / "lost_dual_writes_safe.yaml"))
    assert res.ok and '<span class="badge ok">every invariant held</span>' in res._repr_html_()


def test_fuzz_result(found):
    assert found.found
    assert len(repr(found)) < KB and repr(found).startswith("FuzzResult('fuzz_backfill_race', found='no-lost-write'")
    html = found._repr_html_()
    _styled(html)
    assert '<span class="badge bad">found: no-lost-write</span>' in html
    assert "<h2>Counterexample</h2>" in html and "VIOLATED no-lost-write" in html
    # the why and the chain of the counterexample: the backfill's read, the lost write, the copy over it
    assert '<p class="why"><b>why:</b> at the end resource_properties_data.data holds' in html
    roles = re.findall(r'<td class="role">([^<]*)</td>', html)
    assert roles == ["read it copies", "lost write", "overwrites it", "violation"]


def test_fuzz_that_found_nothing_is_green(found):
    from dataclasses import replace

    none = replace(found, found=False, invariant=None, result=None, counterexample=None, examples=60)
    assert repr(none).startswith("FuzzResult('fuzz_backfill_race', found=None, examples=60")
    html = none._repr_html_()
    _styled(html)
    assert '<span class="badge ok">nothing found in 60 simulations</span>' in html and "Counterexample" not in html


@pytest.mark.parametrize("n", [1, 5000])
def test_sweep(n):
    sw = _sweep(n)
    assert len(repr(sw)) < KB
    assert repr(sw) == f"Sweep('starve', params=['engines.count'], seeds=1, cells={n}, violated={n // 2})"
    html = sw._repr_html_()
    _styled(html)
    assert html.count("<tr>") == 1 + min(n, 60)  # the head and at most 60 cells
    if n == 1:
        assert '<td class="ok">held</td><td class="num">0.000 s</td>' in html
        assert '<span class="badge ok">all 1 cells held</span>' in html
    else:
        assert '<td class="bad">bounded-imbalance (1/1 runs)</td><td class="num">1.500 s</td>' in html
        assert f"... and {n - 60} more cells" in html


@pytest.mark.parametrize("n", [1, 500])
def test_matrix(n, lost):
    m = _matrix(n, lost.scenario)
    assert len(repr(m)) < KB
    assert repr(m) == f"Matrix('d', rows={n}, families=3, deliveries=['oslo'], cells={2 * n}, violated={n})"
    html = m._repr_html_()
    _styled(html)
    row = (
        '<tr><th><code>design0</code></th><td class="bad">no-lost-write (fuzz)</td><td class="ok">holds</td>'
        '<td class="na">–</td></tr>'
    )
    assert row in html and f'<span class="badge bad">{n} of {2 * n} cells violated</span>' in html


def test_scenario(lost):
    s = simroll.load_scenario(SCENARIOS / "last_legacy_drain.yaml")
    for sc in (s, lost.scenario):
        assert len(repr(sc)) < KB and str(sc) == repr(sc)
    # (conftest's scenario() dumps the YAML with sorted keys: new before old)
    assert repr(lost.scenario) == (
        "Scenario('lost', releases=['new', 'old'], engines=2, plan=0 steps, invariants=['no-lost-write'], seed=1)"
    )
    many = s.model_copy(update={"releases": {f"r{k}": next(iter(s.releases.values())) for k in range(500)}})
    assert len(repr(many)) < KB and "... 494 more" in repr(many)
    html = s._repr_html_()
    _styled(html)
    assert "<h2>Plan</h2>" in html and "<summary>as YAML</summary>" in html
    assert "name: last_legacy_drain" in html  # the YAML, folded
