"""simroll: a deterministic simulator of mixed-version clusters, for designing rolling upgrades.

The public API, for scripts and notebooks::

    import simroll
    scenario = simroll.load_scenario("scenarios/lost_dual_writes.yaml")
    result = simroll.run_scenario(scenario, seed=1)
    result.ok, result.violations, result.trace_sha256
    found = simroll.fuzz(scenario, max_examples=200, seed=0)   # search for a breaking schedule
    found.found, found.steps, found.counterexample
    matrix = simroll.build_matrix("scenarios/patterns")  # each pattern x plan/fault family x delivery
    table = simroll.run_sweep(scenario, ["engines.count=3,5", "bus.delivery=oslo,version-routed"])
    table.to_markdown(), table.heatmap("worst_wait")   # a grid of variants; see simroll.explore.sweep
    simroll.release_timeline(result)          # a matplotlib Figure; see simroll.view.plots
    simroll.write_html(result, "report.html")  # a self-contained page
"""

from simroll.sim.chooser import Chooser
from simroll.errors import ScenarioError, SimrollError, UsageError
from simroll.check.invariants import INVARIANTS, Violation
from simroll.scenario.load import dump_scenario, load_scenario, load_scenario_text, scenario_json_schema
from simroll.explore.matrix import Matrix, build_matrix
from simroll.scenario.rpc import Outcome, dispatch
from simroll.scenario.spec import Scenario
from simroll.scenario.versions import Version, is_compatible
from simroll.scenario.patterns import expand_patterns
from simroll.view.report import format_text
from simroll.run import RunResult, run_scenario
from simroll.explore.search import FuzzResult, Schedule, apply_schedule, fuzz
from simroll.explore.sweep import Sweep, SweepParam, run_sweep
from simroll.sim.trace import read_trace

__version__ = "0.1.0"

__all__ = [
    "Chooser",
    "FuzzResult",
    "Schedule",
    "apply_schedule",
    "build_matrix",
    "expand_patterns",
    "Matrix",
    "fuzz",
    "INVARIANTS",
    "Outcome",
    "RunResult",
    "Scenario",
    "ScenarioError",
    "SimrollError",
    "UsageError",
    "Version",
    "Violation",
    "dispatch",
    "dump_scenario",
    "format_text",
    "is_compatible",
    "load_scenario",
    "load_scenario_text",
    "read_trace",
    "run_scenario",
    "scenario_json_schema",
    "Sweep",
    "SweepParam",
    "run_sweep",
    # plots and HTML (loaded on first use, see __getattr__)
    "engine_load",
    "field_values",
    "queue_depth",
    "release_timeline",
    "report_html",
    "sequence_diagram",
    "write_html",
    "write_plots",
]

_LAZY = {name: "simroll.view.plots" for name in ("engine_load", "field_values", "queue_depth", "release_timeline",
                                             "sequence_diagram", "write_plots")}
_LAZY.update(report_html="simroll.view.html", write_html="simroll.view.html")


def __getattr__(name: str):
    """Plots and HTML load on first use: matplotlib takes longer to import than the rest of simroll."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'simroll' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
