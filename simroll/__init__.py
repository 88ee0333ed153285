"""simroll: a deterministic simulator of mixed-version clusters, for designing rolling upgrades.

The public API, for scripts and notebooks (README: "Python API")::

    import simroll
    scenario = simroll.load_scenario("scenarios/lost_dual_writes.yaml")
    result = simroll.run_scenario(scenario, seed=1)
    result.ok, result.violations, result.trace_sha256
    found = simroll.fuzz(scenario, max_examples=200, seed=0)   # search for a breaking schedule
    checked = simroll.verify(scenario, depth=2)                # every schedule within 2 deviations
    found.found, found.steps, found.counterexample
    matrix = simroll.build_matrix("scenarios/patterns")  # each pattern x plan/fault family x delivery
    table = simroll.run_sweep(scenario, ["engines.count=3,5", "bus.delivery=oslo,version-routed"])
    simroll.sweep_heatmap(table, "worst_wait")  # a matplotlib Figure
    simroll.release_timeline(result)            # also queue_depth, engine_load, sequence_diagram, field_values
    simroll.write_html(result, "report.html")   # a self-contained page

Everything else stays importable from its own module (``simroll.scenario``, ``simroll.sim``,
``simroll.check``, ``simroll.run``, ``simroll.explore``, ``simroll.view``) but is not part of
the promise. Names load on first use, so ``import simroll`` (and the pytest plugin) stays
cheap: the simulator, Hypothesis and matplotlib are imported only when asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from simroll import _display
from simroll._version import __version__
from simroll.errors import ScenarioError, SimrollError, UsageError

# public name -> the module that defines it
_HOME = {
    # scenarios
    "Scenario": "simroll.scenario.spec",
    "load_scenario": "simroll.scenario.load",
    "load_scenario_text": "simroll.scenario.load",
    "dump_scenario": "simroll.scenario.load",
    "scenario_json_schema": "simroll.scenario.load",
    # running, and what a run gives
    "run_scenario": "simroll.run",
    "RunResult": "simroll.run",
    "InvariantResult": "simroll.check.invariants",
    "Violation": "simroll.check.invariants",
    "read_trace": "simroll.sim.trace",
    "format_text": "simroll.view.report",
    # exploring
    "fuzz": "simroll.explore.search",
    "FuzzResult": "simroll.explore.search",
    "verify": "simroll.explore.verify",
    "VerifyResult": "simroll.explore.verify",
    "build_matrix": "simroll.explore.matrix",
    "Matrix": "simroll.explore.matrix",
    "run_sweep": "simroll.explore.sweep",
    "Sweep": "simroll.explore.sweep",
    "SweepParam": "simroll.explore.sweep",
    # seeing
    "release_timeline": "simroll.view.plots",
    "queue_depth": "simroll.view.plots",
    "engine_load": "simroll.view.plots",
    "sequence_diagram": "simroll.view.plots",
    "field_values": "simroll.view.plots",
    "availability": "simroll.view.plots",
    "sweep_heatmap": "simroll.view.plots",
    "write_plots": "simroll.view.plots",
    "report_html": "simroll.view.html",
    "write_html": "simroll.view.html",
}

__all__ = [
    "FuzzResult",
    "InvariantResult",
    "Matrix",
    "RunResult",
    "Scenario",
    "ScenarioError",
    "SimrollError",
    "Sweep",
    "SweepParam",
    "UsageError",
    "VerifyResult",
    "Violation",
    "__version__",
    "availability",
    "build_matrix",
    "dump_scenario",
    "engine_load",
    "field_values",
    "format_text",
    "fuzz",
    "load_scenario",
    "load_scenario_text",
    "queue_depth",
    "read_trace",
    "release_timeline",
    "report_html",
    "run_scenario",
    "run_sweep",
    "scenario_json_schema",
    "sequence_diagram",
    "sweep_heatmap",
    "verify",
    "write_html",
    "write_plots",
]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load on first use
    from simroll.check.invariants import InvariantResult, Violation
    from simroll.explore.matrix import Matrix, build_matrix
    from simroll.explore.search import FuzzResult, fuzz
    from simroll.explore.sweep import Sweep, SweepParam, run_sweep
    from simroll.explore.verify import VerifyResult, verify
    from simroll.run import RunResult, run_scenario
    from simroll.scenario.load import dump_scenario, load_scenario, load_scenario_text, scenario_json_schema
    from simroll.scenario.spec import Scenario
    from simroll.sim.trace import read_trace
    from simroll.view.html import report_html, write_html
    from simroll.view.plots import (
        availability,
        engine_load,
        field_values,
        queue_depth,
        release_timeline,
        sequence_diagram,
        sweep_heatmap,
        write_plots,
    )
    from simroll.view.report import format_text


def _view(module: str, function: str) -> Any:
    """A display function that imports its view module on first call."""
    return lambda obj: getattr(importlib.import_module(module), function)(obj)


# what Jupyter shows for each result type (its _repr_html_ asks simroll._display): simroll.view.notebook
for _type, _function in (
    ("simroll.run.RunResult", "run_html"),
    ("simroll.explore.search.FuzzResult", "fuzz_html"),
    ("simroll.explore.sweep.Sweep", "sweep_html"),
    ("simroll.explore.matrix.Matrix", "matrix_html"),
    ("simroll.scenario.spec.Scenario", "scenario_html"),
):
    _display.register(_type, _view("simroll.view.notebook", _function))


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first use (PEP 562)."""
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'simroll' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))
