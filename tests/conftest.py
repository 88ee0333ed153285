from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import simroll

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"

BASE = """
name: t
seed: 1
bus: {delivery: oslo}
database:
  tables: {resource: [id, properties]}
  rows: 4
releases:
  r1:
    rpc:
      endpoints:
        - version: "1.0"
          methods: {op: [x]}
    data:
      props: {read: resource.properties, write: [resource.properties]}
    service_time: 1.0
engines:
  count: 3
  release: r1
workload:
  rate: 1.0
  arrivals: periodic
  stop: 3.5
  operations: {op: 1}
  kind: cast
invariants:
  no-stranded-message: {}
"""


def scenario(text: str = BASE, **overrides) -> simroll.Scenario:
    """A small scenario from YAML text; keyword overrides replace top-level keys (as YAML text)."""
    import yaml

    data = yaml.safe_load(textwrap.dedent(text))
    for k, v in overrides.items():
        data[k] = yaml.safe_load(textwrap.dedent(v)) if isinstance(v, str) else v
    return simroll.load_scenario_text(yaml.safe_dump(data), "<test>")


def kinds(result, kind):
    return [r for r in result.records if r["kind"] == kind]


@pytest.fixture
def bundled():
    return sorted(SCENARIOS.glob("*.yaml"))
