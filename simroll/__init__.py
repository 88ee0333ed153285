"""simroll: a deterministic simulator of mixed-version clusters, for designing rolling upgrades.

The public API, for scripts and notebooks::

    import simroll
    scenario = simroll.load_scenario("scenarios/lost_dual_writes.yaml")
    result = simroll.run_scenario(scenario, seed=1)
    result.ok, result.violations, result.trace_sha256
"""

from simroll.chooser import Chooser
from simroll.errors import LimitExceeded, ScenarioError, SimrollError, UsageError
from simroll.invariants import INVARIANTS, Violation
from simroll.loader import dump_scenario, load_scenario, load_scenario_text, scenario_json_schema
from simroll.model.rpc import Outcome, dispatch
from simroll.model.spec import Scenario
from simroll.model.versions import Version, is_compatible
from simroll.report import format_text
from simroll.runner import RunResult, run_scenario
from simroll.sim.trace import read_trace

__version__ = "0.1.0"

__all__ = [
    "Chooser",
    "INVARIANTS",
    "LimitExceeded",
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
]
