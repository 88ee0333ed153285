"""Trace records in words: what one record says, for reports, counterexamples and plots.

No drawing and no run: each function takes one record (a dict, as
:func:`simroll.read_trace` returns them) and returns a line of text.
"""

from __future__ import annotations

from simroll.sim.trace import Record


def describe(rec: Record) -> str:
    """One line a person can read for one trace record."""
    k, e = rec["kind"], rec.get("engine", "")
    m = f"m{rec['msg']}" if "msg" in rec else ""
    if k == "send":
        return f"{e} sends {rec['method']} {m} at version {rec['version']} to {rec['queue']}" + (
            " (call)" if rec["call"] else " (cast)"
        )
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
    """One trace record on one line: its time, its number and :func:`describe`."""
    return f"t={rec['t']:9.3f}  #{rec['i']:<6} {describe(rec)}"


def step_text(r: Record) -> str:
    """A short description of an operator ``step`` record, e.g. ``restart engine-1 -> plus2``."""
    d = r["detail"]
    a = r["action"]
    if a in ("restart", "start"):
        return f"{a} {d.get(a)} -> {d.get('release')}" + (" (kill)" if d.get("how") == "kill" else "")
    if a in ("expand", "contract"):
        return f"{a} {', '.join(d[a])}"
    if a == "backfill":
        return f"backfill -> {d[a]['to']}"
    v = d.get(a)
    return f"{a} {v}" if isinstance(v, (str, int, float)) else a


__all__ = ["describe", "format_record", "step_text"]
