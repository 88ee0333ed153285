"""Human-readable reports of a run: what held, what broke, and the chain of events behind it."""

from __future__ import annotations

from typing import Any

from simroll.run import RunResult

Record = dict[str, Any]


def describe(rec: Record) -> str:
    """One line a person can read for one trace record."""
    k, e = rec["kind"], rec.get("engine", "")
    m = f"m{rec['msg']}" if "msg" in rec else ""
    if k == "send":
        return f"{e} sends {rec['method']} {m} at version {rec['version']} to {rec['queue']}" + \
            (" (call)" if rec["call"] else " (cast)")
    if k == "recv":
        return f"{e} takes {m} (waited {rec['wait']:.3f} s)"
    if k == "reject":
        return f"{e} rejects {m}: {rec['error']} ({rec['method']} {rec['version']})"
    if k == "done":
        return f"{e} finishes {m}" + ("" if rec["ok"] else " with an error")
    if k == "read":
        return f"{e} reads {rec['field']}[{rec['row']}] from {rec['loc']} = {rec['value']!r}"
    if k == "write":
        extra = f" (+ trigger {', '.join(rec['trig'])})" if rec["trig"] else ""
        return f"{e} writes {rec['field']}[{rec['row']}] = {rec['value']!r} to {', '.join(rec['locs'])}{extra}"
    if k == "rewrite":
        cols = ", ".join(f"{c}={v!r}" for c, v in rec["cols"].items())
        return f"{e} rewrites row {rec['row']} as it read it: {cols}"
    if k == "bf_read":
        return f"backfill reads row {rec['row']} of {rec['loc']} = {rec['value']!r}"
    if k == "bf_write":
        return f"backfill writes row {rec['row']} of {rec['loc']} = {rec['value']!r}"
    if k == "step":
        detail = ", ".join(f"{a}={b}" for a, b in rec["detail"].items())
        return f"operator step {rec['index']}: {detail}"
    if k == "start":
        cap = f", cap {rec['cap']}" if rec.get("cap") else ""
        return f"{e} starts on {rec['release']}{cap}"
    if k == "stop":
        return f"{e} stops taking messages (in flight: {', '.join(f'm{i}' for i in rec['inflight']) or 'none'})"
    if k == "stopped":
        return f"{e} has stopped ({rec['release']})"
    if k == "kill":
        return f"{e} is killed (in flight: {', '.join(f'm{i}' for i in rec['inflight']) or 'none'})"
    if k == "lost":
        return f"{m} is lost with {e}"
    if k == "requeue":
        return f"{m} goes back to its queue after {e} dies"
    if k == "left":
        return f"{m} (version {rec['version']}) is still in {rec['queue']} at the end"
    if k == "expire":
        return f"call {m} expires in {rec['queue']}"
    if k == "schema_error":
        return f"{e} fails to {rec['op']} {', '.join(rec['locs'])}: no such column"
    if k == "fault":
        return f"fault: {rec['action']} {e}"
    if k == "final":
        return f"at the end {rec['field']} is read from {rec['loc']}"
    if k == "send_error":
        return f"{e} cannot send {rec['method']}: {rec['error']}"
    if k == "init":
        return f"rows 0..{rec['rows'] - 1} of {rec['field']} hold their initial values in {', '.join(rec['locs'])}"
    return k


def format_record(rec: Record) -> str:
    return f"t={rec['t']:9.3f}  #{rec['i']:<6} {describe(rec)}"


def format_text(result: RunResult, max_violations: int = 3, max_chain: int = 12) -> str:
    """The report ``simroll run`` prints."""
    s = result.scenario
    lines = [f"scenario {s.name}  seed {result.seed}  delivery {s.bus.delivery}",
             f"{result.events} events, {result.sim_time:.3f} simulated seconds, ended: {result.end_reason}",
             f"trace sha256 {result.trace_sha256}", ""]
    if result.limited:
        lines += [f"PARTIAL: the run stopped at a limit ({result.end_reason}); raise it with "
                  "--max-time / --max-events. Invariants below cover the run so far.", ""]
    width = max(len(inv.name) for inv in result.invariants)
    for inv in result.invariants:
        status = "held" if inv.held else f"VIOLATED ({inv.count}x)"
        lines.append(f"  {inv.name:<{width}}  {status}")
    for inv in result.invariants:
        for n, v in enumerate(inv.violations[:max_violations]):
            lines += ["", f"{v.invariant} violated at t={v.time:.3f}"
                          + (f" [{', '.join(v.engines)}]" if v.engines else "")
                          + (f" ({v.subject})" if v.subject else ""),
                      f"  {v.message}"]
            chains = result.chains(v) if result.records is not None or result.trace_path else []
            if chains:
                # the shortest chain in full; the other chains by the record they start from
                chain = chains[0]
                lines.append(f"  causal chain ({len(chain)} events, the shortest of {len(chains)}):")
                shown = chain if len(chain) <= max_chain else chain[:2] + [None] + chain[-(max_chain - 3):]
                for rec in shown:
                    lines.append("    ..." if rec is None else f"    {format_record(rec)}")
                starts = {c[0]["i"]: c[0] for c in chains[1:] if c[0]["i"] not in {r["i"] for r in chain}}
                for rec in starts.values():
                    lines.append(f"    also after: {format_record(rec)}")
            elif v.causes:
                lines.append(f"  related records: {', '.join(f'#{c}' for c in v.causes)}")
        if inv.count > max_violations:
            lines.append(f"  ... and {inv.count - max_violations} more {inv.name} violations")
    lines += ["", "OK: every invariant held" if result.ok else
              f"FAILED: {', '.join(result.violated)}"]
    return "\n".join(lines)
