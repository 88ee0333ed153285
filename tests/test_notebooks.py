"""The notebooks run top to bottom on a fresh kernel, without an error, and still say what they say."""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def _execute(name: str):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    return nb


def _outputs(nb, mime: str) -> list[str]:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream" and mime == "stream":
                out.append(o["text"])
            elif mime in o.get("data", {}):
                out.append(o["data"][mime])
    return out


@pytest.mark.slow
def test_notebooks_are_committed_with_their_outputs():
    for name in ("01_tour.ipynb", "02_fuzz_your_design.ipynb", "03_sweep.ipynb"):
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code and all(c.execution_count for c in code), f"{name} is not executed"
        assert _outputs(nb, "image/png"), f"{name} has no plot"
        # every object shows a short repr and a styled view (its CSS inside the fragment)
        assert all(len(t) < 1024 for t in _outputs(nb, "text/plain")), name
        assert all(h.startswith('<div class="simroll"><style>') for h in _outputs(nb, "text/html")), name


@pytest.mark.slow
def test_01_tour():
    nb = _execute("01_tour.ipynb")
    html = _outputs(nb, "text/html")
    assert any("no-stranded-message" in h and "VIOLATED" in h for h in html)
    text = "".join(_outputs(nb, "stream"))
    assert "bounded-imbalance         VIOLATED" in text
    assert "no-lost-write at t =" in text and "resource_properties_data.data and got nothing" in text
    # the why and the chain of the lost write: the engine write that never reached the new table
    assert "why: engine-1 (plus2) reads resource_properties_data.data at t=20.369" in text
    assert "lost write        engine-1 writes resource_props[22] = 'v27' to resource.properties" in text
    assert len(_outputs(nb, "image/png")) == 6


@pytest.mark.slow
def test_02_fuzz_your_design():
    nb = _execute("02_fuzz_your_design.ipynb")
    text = "".join(_outputs(nb, "stream"))
    assert "found: True - no-lost-write" in text  # the design as written loses a write
    assert "['no-lost-write'] True" in text  # the counterexample replays to the same trace
    assert "found: False" in text  # the fixed design: none within the budget
    html = _outputs(nb, "text/html")
    assert any('<span class="badge bad">found: no-lost-write</span>' in h and '<p class="why">' in h for h in html)
    assert any('<span class="badge ok">nothing found in' in h for h in html)
    assert len(_outputs(nb, "image/png")) == 1


@pytest.mark.slow
def test_03_sweep():
    nb = _execute("03_sweep.ipynb")
    assert len(_outputs(nb, "image/png")) == 2
    assert "worst wait" in "".join(_outputs(nb, "stream"))
    html = _outputs(nb, "text/html")
    assert any("<h1>scenario single_upgraded_starvation" in h for h in html)
    assert any("<h1>simroll sweep: single_upgraded_starvation" in h and "cells violated" in h for h in html)
