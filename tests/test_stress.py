"""Determinism under stress: one trace per (scenario, seed), whatever the process and its hash seed.

Every bundled scenario (``scenarios/**/*.yaml``) runs with 3 seeds in one fresh process per
``PYTHONHASHSEED`` value (3 values); a process prints ``{scenario: {seed: trace_sha256}}``. The
three answers must be equal. Then ``simroll run --check-determinism``: exit 0 when two runs
agree, exit 3 and a loud message when nondeterminism is injected into the model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, SCENARIOS

import simroll.sim.cluster
from simroll.chooser import Chooser
from simroll.cli import main

SEEDS = (1, 2, 1234567)
HASH_SEEDS = ("0", "1", "987654321")

SCRIPT = """
import json, sys
import simroll
seeds = [int(s) for s in sys.argv[1].split(",")]
out = {}
for path in sys.argv[2:]:
    scenario = simroll.load_scenario(path)
    out[path] = {str(seed): simroll.run_scenario(scenario, seed=seed, keep_trace=False).trace_sha256 for seed in seeds}
print(json.dumps(out))
"""


def _shas(hashseed: str, paths: list[str]) -> dict[str, dict[str, str]]:
    env = dict(os.environ, PYTHONHASHSEED=hashseed)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, ",".join(map(str, SEEDS)), *paths], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.slow
def test_every_bundled_scenario_gives_one_trace_per_seed_under_three_hash_seeds():
    paths = sorted(str(p.relative_to(ROOT)) for p in SCENARIOS.glob("**/*.yaml"))
    assert len(paths) >= 7
    runs = {h: _shas(h, paths) for h in HASH_SEEDS}
    first = runs[HASH_SEEDS[0]]
    assert set(first) == set(paths)
    for h in HASH_SEEDS[1:]:
        for path in paths:
            assert runs[h][path] == first[path], (path, h)
    # the seeds matter: a scenario whose workload draws from the seed gives a different trace per seed
    varied = [p for p in paths if len(set(first[p].values())) == len(SEEDS)]
    assert len(varied) >= len(paths) // 2
    print(f"\ndeterminism: {len(paths)} scenarios x {len(SEEDS)} seeds x {len(HASH_SEEDS)} hash seeds = "
          f"{len(paths) * len(SEEDS) * len(HASH_SEEDS)} runs in {len(HASH_SEEDS)} processes; "
          f"{len(paths) * len(SEEDS)} distinct (scenario, seed) traces, each identical across processes")


def test_check_determinism_passes_on_a_deterministic_model(capsys):
    assert main(["run", str(SCENARIOS / "single_upgraded_pinned.yaml"), "--check-determinism"]) == 0
    assert "determinism: two runs gave the same trace" in capsys.readouterr().out


def test_check_determinism_fails_loudly_when_the_model_is_not(monkeypatch, capsys):
    """Inject nondeterminism: every Chooser gets a different seed, as a wall-clock seed would."""
    runs = []

    class Drifting(Chooser):
        def __init__(self, seed, pinned=None):
            runs.append(seed)
            super().__init__(seed + len(runs), pinned)

    monkeypatch.setattr(simroll.sim.cluster, "Chooser", Drifting)
    path = str(SCENARIOS / "single_upgraded_pinned.yaml")
    assert main(["run", path, "--check-determinism"]) == 3
    out, err = capsys.readouterr()
    assert len(runs) == 2
    assert err.startswith(f"simroll: DETERMINISM CHECK FAILED: two runs of {path} with seed 1 gave different traces")
    assert "they first differ at record #" in err
    assert out == ""  # no report that could be mistaken for a result
