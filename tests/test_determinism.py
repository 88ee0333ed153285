"""Same scenario and seed -> the same trace, in fresh processes under different PYTHONHASHSEED values."""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, SCENARIOS

SCRIPT = """
import json, sys
import simroll
out = {}
for path in sys.argv[2:]:
    out[path] = simroll.run_scenario(simroll.load_scenario(path), seed=int(sys.argv[1])).trace_sha256
print(json.dumps(out))
"""


def shas(hashseed: str, seed: int, paths: list[str]) -> dict[str, str]:
    env = dict(os.environ, PYTHONHASHSEED=hashseed)
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(seed), *paths], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out)


@pytest.mark.slow
def test_bundled_scenarios_give_one_trace_per_seed_across_processes_and_hash_seeds():
    paths = [str(p) for p in sorted(SCENARIOS.glob("*.yaml"))]
    for seed in (1, 7):
        runs = [shas(h, seed, paths) for h in ("0", "1", "12345")]
        assert runs[0] == runs[1] == runs[2]
        assert len(set(runs[0].values())) == len(paths)  # and the scenarios differ from each other
