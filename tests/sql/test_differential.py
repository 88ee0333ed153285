"""The SQLite backend against the location model: the same scenario on both gives the same
verdicts, the same sequence of values read and the same values at the end.

On every bundled scenario and pattern file (the derived SQL: tables, ALTER TABLE, AFTER UPDATE
triggers, guarded UPDATE backfills) and on generated read/write/trigger/backfill/expand/contract
interleavings. Trigger chains (a -> b -> c) are left out of the generated ones on purpose: the
location model fires one hop, SQL cascades (tests/sql/test_sqlite.py pins that difference).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import yaml

import simroll
from simroll.run import run_scenario

ROOT = Path(__file__).resolve().parent.parent.parent
SCENARIOS = ROOT / "scenarios"
BUNDLED = sorted(SCENARIOS.glob("*.yaml")) + sorted((SCENARIOS / "patterns").glob("*.yaml"))
REPLAYS = sorted((SCENARIOS / "patterns" / "matrix" / "matrix.replays").glob("*.yaml"))
FAST = ["lost_dual_writes.yaml", "lost_dual_writes_safe.yaml", "fuzz_backfill_race.yaml", "trigger_sync.yaml"]


def on_sqlite(s: simroll.Scenario) -> simroll.Scenario:
    return s.model_copy(update={"database": s.database.model_copy(update={"backend": "sqlite"})})


def observed(s: simroll.Scenario, seed: int | None = None) -> dict[str, Any]:
    """What must not differ between backends: verdicts, every value read (in order), the finals."""
    r = run_scenario(s, seed=seed)
    recs = r.trace()
    return {
        "verdicts": {inv.name: r.verdict(inv) for inv in r.invariants},
        "reads": [
            (x["t"], x["kind"], x["engine"], x.get("field"), x["row"], x["loc"], x["value"])
            for x in recs
            if x["kind"] in ("read", "bf_read")
        ],
        "finals": [(x["field"], x["loc"], x["exists"], x["values"]) for x in recs if x["kind"] == "final"],
        "sha": r.trace_sha256,
    }


def assert_same(s: simroll.Scenario, seed: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    a, b = observed(s, seed), observed(on_sqlite(s), seed)
    assert b["verdicts"] == a["verdicts"]
    assert b["reads"] == a["reads"]
    assert b["finals"] == a["finals"]
    return a, b


@pytest.mark.parametrize("name", FAST)
def test_a_bundled_scenario_gives_the_same_trace_on_sqlite(name):
    path = next(p for p in BUNDLED if p.name == name)
    a, b = assert_same(simroll.load_scenario(path))
    assert a["reads"], "the scenario reads the database"
    # the derived SQL reproduces the location model exactly here: the trace is byte for byte the same
    assert b["sha"] == a["sha"]


@pytest.mark.slow
@pytest.mark.parametrize("path", BUNDLED + REPLAYS, ids=lambda p: str(p.relative_to(SCENARIOS)))
def test_every_bundled_scenario_and_pattern_file_gives_the_same_verdicts_and_reads_on_sqlite(path):
    s = simroll.load_scenario(path)
    for seed in (None, 1):
        assert_same(s, seed)


# ---------------------------------------------------------------- generated interleavings
def generated(n: int, rewrites: bool = True) -> dict[str, Any]:
    """A small scenario with reads, dual writes, triggers (one hop: no chains), backfills with
    guards, expand and contract steps and restarts, drawn from seed ``n``. ``rewrites=False``:
    no release saves whole rows (``update: columns`` everywhere; the draws are the same)."""
    rnd = random.Random(n)
    tables = {"a": ["x", "y"], "b": ["z"]}
    extra = ["a.w", "b.v", "c.u"]  # added by expand steps
    locs = [f"{t}.{c}" for t, cs in tables.items() for c in cs] + extra
    # triggers without chains: for an edge x -> y, y's only out-edge may be back to x
    edges: list[tuple[str, str]] = []
    for _ in range(rnd.randint(1, 4)):
        x, y = rnd.sample(locs, 2)
        if any(f == y and t != x for f, t in edges) or any(t == x and f != y for f, t in edges):
            continue
        if (x, y) not in edges:
            edges.append((x, y))

    base = locs[:3]

    def access(i: int) -> dict[str, Any]:  # the first release (every engine's at the start) uses the base columns
        write = rnd.sample(base if i == 0 else locs, rnd.randint(1, 2))
        return {"read": rnd.choice(write + [rnd.choice(base)]), "write": write}

    rpc = {"endpoints": [{"version": "1.0", "methods": {"op": ["k"], "put": ["k"]}}]}
    releases = {
        f"r{i}": {
            "rpc": rpc,
            "data": {"f": access(i), "g": access(i)},
            "update": [rnd.choice(["columns", "row"]), "columns"][not rewrites],  # the same draw either way
            "service_time": rnd.choice([0.1, 0.3]),
        }
        for i in range(3)
    }
    pending = list(extra)
    plan: list[dict[str, Any]] = [{"after": 1.0, "expand": [pending.pop(rnd.randrange(len(pending)))]}]
    for _ in range(rnd.randint(3, 8)):
        kind = rnd.choice(["expand", "contract", "trigger", "untrigger", "backfill", "backfill", "restart", "wait"])
        after = rnd.choice([0, 0.5, 1.5])
        if kind == "expand" and pending:
            plan.append({"after": after, "expand": [pending.pop(rnd.randrange(len(pending)))]})
        elif kind == "contract":
            plan.append({"after": after, "contract": [rnd.choice(locs + ["c"])]})
        elif kind in ("trigger", "untrigger") and edges:
            x, y = rnd.choice(edges)
            key = "enable_trigger" if kind == "trigger" else "disable_trigger"
            plan.append({"after": after, key: {"from": x, "to": y}})
        elif kind == "backfill":
            x, y = rnd.sample(locs, 2)
            plan.append(
                {
                    "after": after,
                    "backfill": {
                        "from": x,
                        "to": y,
                        "rate": 40,
                        "gap": rnd.choice([0, 0.05]),
                        "guard": rnd.choice(["none", "if-empty", "if-unchanged"]),
                    },
                }
            )
        elif kind == "restart":
            plan.append(
                {"after": after, "restart": f"engine-{rnd.randint(1, 2)}", "release": rnd.choice(list(releases))}
            )
        else:
            plan.append({"wait": rnd.choice([0.5, 1.0])})
    doc = {
        "name": f"gen{n}",
        "seed": n,
        "database": {
            "tables": tables,
            "rows": 5,
            "triggers": [{"from": x, "to": y} for x, y in edges if rnd.random() < 0.7],
            "canonical": {"f": rnd.choice(locs)},
            "absent": pending,  # known to the releases, never added
        },
        "releases": releases,
        "engines": {"count": 2, "release": "r0"},
        "workload": {
            "rate": 8.0,
            "stop": 6,
            "operations": {"op": 2, "put": 1},
            "handlers": {"op": {"read": ["f", "g"], "write": ["f"]}, "put": {"write": ["g", "f"]}},
        },
        "plan": plan,
        "invariants": {"no-lost-write": None, "schema-compatible": None, "no-lost-update": None},
    }
    return doc


@pytest.mark.parametrize("n", range(40))
def test_a_generated_interleaving_gives_the_same_reads_and_final_tables_on_sqlite(n):
    s = simroll.load_scenario_text(yaml.safe_dump(generated(n)), f"<generated {n}>")
    a, _ = assert_same(s)
    assert a["reads"], "the interleaving reads the database"
