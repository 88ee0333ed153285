"""Where a run's CPU time goes: the plain workload with parts of simroll switched off one by one.

    python bench/split.py [--messages N] [--handler none|light] [--repeat R]

Runs the plain workload of ``bench/throughput.py`` (10 engines, all six invariants) and the lean
SimPy loop, then simroll with parts of its work switched off: a full run (records encoded and
hashed, six checkers, coverage and availability); the same with no consumer subscribed (records
encoded and hashed, nothing checked); a search's run (``report=False``: six checkers, no encoding,
hash, coverage or availability); and a search's run with no consumer subscribed (no record is
built at all: the model alone -- SimPy, broker, engines). Each line is the best CPU time of
``--repeat`` runs (default 3). Unsubscribing patches ``Trace.subscribe`` in this process only.

A benchmark, not a test: it prints figures and asserts nothing about time.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import plain_scenario, run_lean_simpy  # noqa: E402

from simroll.run import run_scenario  # noqa: E402
from simroll.sim import trace as trace_module  # noqa: E402


def best(fn: Callable[[], Any], repeat: int) -> float:
    out = float("inf")
    for _ in range(repeat):
        c0 = time.process_time()
        fn()
        out = min(out, time.process_time() - c0)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=20_000)
    p.add_argument("--handler", choices=("none", "light"), default="none")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    s = plain_scenario(10, args.messages, args.handler)
    stop = s.workload.stop
    lean = best(lambda: run_lean_simpy(10, args.messages, stop, args.handler), args.repeat)
    rows = [("lean SimPy loop", lean)]
    rows.append(("simroll, full run", best(lambda: run_scenario(s, keep_trace=False), args.repeat)))
    rows.append(
        (
            "  checked, not encoded (report=False)",
            best(lambda: run_scenario(s, keep_trace=False, report=False), args.repeat),
        )
    )
    trace_cls = trace_module.Trace
    orig_subscribe = trace_cls.subscribe
    try:
        trace_cls.subscribe = lambda self, kinds, fn, positional=None: None  # type: ignore[method-assign]
        rows.append(
            ("  encoded and hashed, nothing checked", best(lambda: run_scenario(s, keep_trace=False), args.repeat))
        )
        rows.append(
            (
                "  the model alone (no record built)",
                best(lambda: run_scenario(s, keep_trace=False, report=False), args.repeat),
            )
        )
    finally:
        trace_cls.subscribe = orig_subscribe  # type: ignore[method-assign]
    print(
        f"plain workload, 10 engines, {args.messages:,} messages, handler {args.handler}; best CPU s of {args.repeat}"
    )
    for name, cpu in rows:
        print(f"  {name:40} {cpu:7.3f} s   ratio to lean {lean / cpu:5.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
