"""The public surface is small, listed in the README, and loads lazily."""

import re
import subprocess
import sys
from pathlib import Path

import simroll

README = Path(__file__).resolve().parent.parent / "README.md"


def _readme_api_names() -> set[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    table = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| what")]
    return {name for line in table for name in re.findall(r"`([A-Za-z_]\w*)`", line)}


def test_the_readme_lists_exactly_the_public_names():
    assert _readme_api_names() == set(simroll.__all__)


def test_every_public_name_resolves():
    for name in simroll.__all__:
        assert getattr(simroll, name) is not None, name
    assert set(dir(simroll)) >= set(simroll.__all__)


def test_internals_are_not_exported():
    for name in ("Chooser", "dispatch", "Outcome", "apply_schedule", "Schedule", "INVARIANTS", "Version"):
        assert name not in simroll.__all__
        assert not hasattr(simroll, name), name


def test_importing_simroll_loads_no_simulator_search_or_plotting():
    code = (
        "import sys, simroll; heavy = [m for m in ('simpy', 'hypothesis', 'matplotlib', 'networkx', 'pydantic') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""


def test_every_lazy_name_is_in_all_and_back():
    assert set(simroll._HOME) | {"ScenarioError", "SimrollError", "UsageError", "__version__"} == set(simroll.__all__)
