"""Start-up: how long whole processes take, from exec to exit.

    python bench/startup.py [--json] [--quick] [--runs N]

Each command runs ``--runs`` times (default 7; ``--quick`` 2) as a fresh process, interleaved
(one of each in turn, so a busy spell of the machine hits all alike); the minimum and the
median wall time are printed, and the child's CPU time (user + system, ``getrusage``) as
the minimum. The figures come from a shared 2-core machine: wall time also measures the
neighbours, so the minimum is the figure to compare with the targets of issue 16.

* ``import simroll``: ``python -c "import simroll"``
* ``simroll --help``: the console script (``python -m simroll`` when the tree has no
  ``__main__``-less script; see ``--simroll``)
* ``simroll run``: ``simroll run scenarios/fuzz_backfill_race.yaml`` (exit 1 is fine: it reports
  a violation), output to /dev/null
* ``pytest (plugin)`` / ``pytest -p no:simroll``: ``python -m pytest -q`` in an empty
  temporary directory (collects nothing; exit 5), with and without simroll's plugin; the
  difference is what the plugin adds to a session that collects no scenario file.
* ``python -c pass``: the interpreter alone, for reference.

Commands run with this interpreter (``sys.executable``) and the current ``PYTHONPATH``, from
the directory given by ``--cwd`` (default: the repository root), so
``cd /old/tree && PYTHONPATH=. python /path/to/bench/startup.py --cwd .`` measures another tree.

Bytecode: as an installed package has it, cached. The children write and read their ``.pyc``
files in a private temporary ``PYTHONPYCACHEPREFIX`` (the tree is not touched), filled by one
untimed run of each command, even where the environment sets ``PYTHONDONTWRITEBYTECODE`` (as
these sessions do: every process would then compile simroll's sources again, ~0.1 s of CPU).
``--no-bytecode-cache`` measures that way instead (the environment as it is).

``--baseline DIR`` adds the three simroll commands run on another tree (``PYTHONPATH=DIR``, from
DIR, with its own bytecode cache), interleaved with this one's: on a busy machine only figures
taken side by side compare (e.g. ``git archive OLD | tar -x -C /tmp/old`` and
``--baseline /tmp/old``).

A benchmark, not a test: it prints figures and asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"import simroll": 0.15, "simroll --help": 0.3, "simroll run": 0.6}  # seconds of wall time
PLUGIN_TARGET = 0.05


def commands(cwd: Path, empty: Path, script: list[str]) -> dict[str, tuple[list[str], Path]]:
    py = sys.executable
    return {
        "python -c pass": ([py, "-c", "pass"], cwd),
        "import simroll": ([py, "-c", "import simroll"], cwd),
        "simroll --help": ([*script, "--help"], cwd),
        "simroll run": ([*script, "run", "scenarios/fuzz_backfill_race.yaml"], cwd),
        "pytest (plugin)": ([py, "-m", "pytest", "-q", "-p", "no:cacheprovider"], empty),
        "pytest -p no:simroll": ([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:simroll"], empty),
    }


def once(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, float, int]:
    """(wall seconds, child CPU seconds, exit status) of one process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode not in (0, 1, 5):  # 1: a run that found a violation; 5: pytest collected nothing
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.decode()[-2000:]}")
    return wall, cpu, proc.returncode


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quick", action="store_true", help="2 runs of each")
    p.add_argument("--runs", type=int, default=None, help="runs of each command (default 7; quick 2)")
    p.add_argument("--cwd", default=str(ROOT), help="directory the simroll commands run in (default: the repo)")
    p.add_argument(
        "--simroll",
        default=None,
        help="how to start the CLI (default: the simroll script next to this python, else "
        "python -c 'from simroll.cli import main; main()')",
    )
    p.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="run the children in this environment as it is (default: a private, warmed .pyc cache)",
    )
    p.add_argument("--baseline", default=None, help="another tree whose simroll commands run interleaved with these")
    args = p.parse_args(argv)
    runs = args.runs or (2 if args.quick else 7)
    cwd = Path(args.cwd).resolve()
    if args.simroll:
        script = args.simroll.split()
    else:
        exe = Path(sys.executable).parent / "simroll"
        script = [str(exe)] if exe.exists() else [sys.executable, "-c", "from simroll.cli import main; main()"]
    with tempfile.TemporaryDirectory(prefix="simroll-startup-") as tmp:
        empty = Path(tmp) / "empty"
        empty.mkdir()
        env = None
        if not args.no_bytecode_cache:
            env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
            env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        envs = {k: env for k in commands(cwd, empty, script)}
        cmds = commands(cwd, empty, script)
        if args.baseline:
            base = Path(args.baseline).resolve()
            base_env = dict(os.environ if env is None else env)
            base_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(base), os.environ.get("PYTHONPATH")]))
            if env is not None:
                base_env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache-baseline")
            for k, (cmd, _where) in commands(base, empty, script).items():
                if k in TARGETS:
                    cmds[f"{k} [baseline]"] = (cmd, base)
                    envs[f"{k} [baseline]"] = base_env
        walls: dict[str, list[float]] = {k: [] for k in cmds}
        cpus: dict[str, list[float]] = {k: [] for k in cmds}
        for k, (cmd, where) in cmds.items():  # warm the file cache and the bytecode once, untimed
            once(cmd, where, envs[k])
        for _ in range(runs):
            for k, (cmd, where) in cmds.items():
                wall, cpu, _status = once(cmd, where, envs[k])
                walls[k].append(wall)
                cpus[k].append(cpu)
                for leftover in (empty / ".pytest_cache", empty / "__pycache__"):
                    shutil.rmtree(leftover, ignore_errors=True)
    rows = []
    for k, (cmd, _where) in cmds.items():
        rows.append(
            {
                "command": k,
                "argv": " ".join(Path(cmd[0]).name if i == 0 else c for i, c in enumerate(cmd)),
                "min_s": round(min(walls[k]), 3),
                "median_s": round(statistics.median(walls[k]), 3),
                "cpu_min_s": round(min(cpus[k]), 3),
                "target_s": TARGETS.get(k),
            }
        )
    by = {r["command"]: r for r in rows}
    plugin = {
        "min_s": round(by["pytest (plugin)"]["min_s"] - by["pytest -p no:simroll"]["min_s"], 3),
        "median_s": round(by["pytest (plugin)"]["median_s"] - by["pytest -p no:simroll"]["median_s"], 3),
        "cpu_min_s": round(by["pytest (plugin)"]["cpu_min_s"] - by["pytest -p no:simroll"]["cpu_min_s"], 3),
        "target_s": PLUGIN_TARGET,
    }
    verdicts = [
        {"rule": f"{r['command']}: min wall < {r['target_s']} s", "value": r["min_s"], "ok": r["min_s"] < r["target_s"]}
        for r in rows
        if r["target_s"] is not None
    ]
    verdicts.append(
        {
            "rule": f"pytest plugin adds < {PLUGIN_TARGET} s (min wall)",
            "value": plugin["min_s"],
            "ok": plugin["min_s"] < PLUGIN_TARGET,
        }
    )
    info = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "runs": runs,
        "cwd": str(cwd),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "bytecode": "as the environment has it" if args.no_bytecode_cache else "cached (private, warmed)",
        "note": "whole processes, wall time (min and median) and child CPU time, on a shared 2-core machine",
    }
    if args.json:
        print(json.dumps({"machine": info, "rows": rows, "plugin_adds": plugin, "checks": verdicts}, indent=2))
        return 0
    print(
        f"start-up, {runs} runs of each, whole processes, on a shared 2-core machine "
        f"(load average {info['load_average']}; bytecode {info['bytecode']})"
    )
    w = max(22, *(len(r["command"]) for r in rows))
    print(f"  {'command':{w}} {'min s':>7} {'median s':>9} {'CPU min s':>10} {'target':>7}")
    for r in rows:
        t = "" if r["target_s"] is None else f"< {r['target_s']}"
        print(f"  {r['command']:{w}} {r['min_s']:>7.3f} {r['median_s']:>9.3f} {r['cpu_min_s']:>10.3f} {t:>7}")
    print(
        f"  {'plugin adds':{w}} {plugin['min_s']:>7.3f} {plugin['median_s']:>9.3f} {plugin['cpu_min_s']:>10.3f} "
        f"{'< ' + str(PLUGIN_TARGET):>7}"
    )
    for v in verdicts:
        print(f"  {'ok  ' if v['ok'] else 'FAIL'} {v['rule']}: {v['value']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
