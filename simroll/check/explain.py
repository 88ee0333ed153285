"""Trace records in words, and why a violation happened.

No drawing and no run. :func:`describe` takes one record (a dict, as :func:`simroll.read_trace`
returns them) and returns a line of text. :func:`explain` takes the trace and one
:class:`~simroll.check.invariants.Violation` and returns its :class:`Explanation`: the one chain
of records behind it -- the text report, the JSON report (``chain``), the HTML page and the
sequence diagram all show this same chain -- and a one-line ``why`` built from that chain.

The chain, per invariant family:

* data (``no-lost-write``, ``no-lost-update``): the read/write history of the violated field and
  row, from the write that was lost up to the violation -- who wrote what where and when, the
  record that put the stale value in place (a backfill copy and the read it copied, a row
  rewrite, a newer write computed from an older read), the reader's start (the release it reads
  with) and the message it was handling;
* messages (``no-stranded-message``, ``no-incompatible-delivery``, ``bounded-imbalance``,
  ``operations-complete``): the life of the message -- its send, every hand-over, requeue, loss
  or rejection -- and the lifecycle records (stop, kill) of the engines that held it;
* any other: the violating record, the records it names as its causes and their direct causes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from simroll.sim.trace import Record

if TYPE_CHECKING:
    from simroll.check.invariants import Violation


def describe(rec: Record) -> str:
    """One line a person can read for one trace record."""
    k, e = rec["kind"], rec.get("engine", "")
    m = f"m{rec['msg']}" if "msg" in rec else ""
    if k == "send":
        retry = f", attempt {rec['attempt']} of m{rec['retry_of']}" if "retry_of" in rec else ""
        return f"{e} sends {rec['method']} {m} at version {rec['version']} to {rec['queue']}" + (
            f" (call{retry})" if rec["call"] else " (cast)"
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
    if k == "bf_crash":
        return f"the backfill dies at row {rec['row']} (read, not written)"
    if k == "bf_resume":
        return f"the backfill resumes at row {rec['row']}"
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
    if k == "dropped":
        return f"{m} is dropped with {rec['queue']} ({rec['why']})"
    if k == "schema_error":
        return f"{e} fails to {rec['op']} {', '.join(rec['locs'])}: no such column"
    if k == "fault":
        return f"fault: {rec['action']} {e}"
    if k == "final":
        return f"at the end {rec['field']} is read from {rec['loc']}"
    if k == "send_error":
        return f"{e} cannot send {rec['method']}: {rec['error']}"
    if k == "timeout":
        then = f", retries at t={rec['retry_at']:.3f}" if "retry_at" in rec else ", no retry left"
        return f"{e} gives up waiting for the reply to {m} (attempt {rec['attempt']}){then}"
    if k == "sync":
        if "row" in rec:
            return f"{e} refreshes its copy of {rec['field']}[{rec['row']}] from {rec['loc']} = {rec['value']!r}"
        return f"{e} refreshes its copy of {rec['field']}, every row, from {rec['loc']}"
    if k == "ready":
        return f"{e} has run its start-up actions and takes messages"
    if k == "unknown_value":
        did = {"fail": "fails", "ignore": "ignores it", "default": "reads its default instead"}.get(rec["action"], "")
        return f"{e} ({rec['release']}) does not know {rec['field']}[{rec['row']}] = {rec['value']!r}: {did}"
    if k == "dedup":
        return f"{e} skips {m}: request m{rec['key']} is already recorded (by m{rec['first']})"
    if k == "write_refused":
        what = {"commit": "transaction", "rewrite": "whole-row save", "backfill": "copy"}.get(
            rec["op"], f"write of {rec['field']}"
        )
        return f"the database refuses {e}'s {what} (row {rec['row']}): {rec['error']}"
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


# ------------------------------------------------------------------------------------- explaining
MAX_HISTORY = 8  # history records (besides the key ones) a chain keeps, the latest before the violation

# roles a chain gives its records (the text, JSON and HTML views print them)
VIOLATION = "violation"
LOST = "lost write"
OVERWRITES = "overwrites it"
COPIED = "read it copies"
READER = "reader's release"
CAUSE = "cause"
SUPERSEDED_READ = "read it wrote from"
SEEN = "put the value seen"
HOLDER_STOPS = "an engine that held it stops"
DROPPED_BY = "drops it"
HOLDER_KILLED = "an engine that held it is killed"

_DATA_KINDS = frozenset({"init", "write", "read", "rewrite", "bf_read", "bf_write", "final"})
_MSG_KINDS = frozenset(
    {"send", "recv", "requeue", "lost", "left", "expire", "dropped", "reject", "done", "late", "schema_error"}
)
_SUBJECT = re.compile(r"^(?P<field>\w+)\[(?P<row>\d+)\]$")
_MSG_SUBJECT = re.compile(r"^m(?P<msg>\d+)$")


@dataclass(frozen=True)
class Link:
    """One record of a chain and what it is to the violation (``role``: ``""`` for history)."""

    rec: Record
    role: str = ""
    note: str = ""  # what the record says about this violation, when :func:`describe` says too little

    @property
    def text(self) -> str:
        """The record in words (its note, else :func:`describe`)."""
        return self.note or describe(self.rec)

    def to_json(self) -> dict[str, Any]:
        r = self.rec
        out: dict[str, Any] = {"i": r["i"], "t": r["t"], "kind": r["kind"]}
        if "engine" in r:
            out["engine"] = r["engine"]
        if self.role:
            out["role"] = self.role
        out["text"] = self.text
        return out


@dataclass(frozen=True)
class Explanation:
    """Why a violation happened: ``why`` in one line, and the ``chain`` of records behind it, in
    trace order (the violating record last but for history after it, which is never shown)."""

    why: str
    chain: tuple[Link, ...]

    @property
    def records(self) -> list[Record]:
        return [link.rec for link in self.chain]

    def to_json(self) -> dict[str, Any]:
        """The ``why`` and ``chain`` keys of a violation in ``simroll run --json``."""
        return {"why": self.why, "chain": [link.to_json() for link in self.chain]}


def _t(x: float) -> str:
    return f"t={x:.3f}"


def _value(v: Any) -> str:
    return "nothing" if v is None else repr(v)


def _locs(rec: Record) -> list[str]:
    """The locations a data record puts a value in."""
    k = rec["kind"]
    if k == "write":
        return list(rec["locs"]) + list(rec["trig"])
    if k == "bf_write":
        return [rec["loc"], *rec.get("trig", [])]
    if k == "rewrite":
        return list(rec["cols"])
    if k == "init":
        return list(rec["locs"])
    return []


def _put_value(rec: Record, loc: str, row: int) -> Any:
    if rec["kind"] == "rewrite":
        return rec["cols"][loc]
    if rec["kind"] == "init":
        return f"init{row}"
    return rec["value"]


def _release_of(records: Sequence[Record], engine: str, upto: int) -> Record | None:
    """The ``start`` record of ``engine`` in force at record ``upto``."""
    for r in reversed(records[: upto + 1]):
        if r["kind"] == "start" and r.get("engine") == engine:
            return r
    return None


def _actor(rec: Record) -> str:
    e = rec.get("engine", "")
    if rec["kind"] in ("bf_read", "bf_write") or e == "backfill":
        return "the backfill"
    if rec["kind"] == "init":
        return "the initial data"
    return e or rec["kind"]


def explain(records: Sequence[Record], v: Violation) -> Explanation:
    """The chain of records behind ``v`` and a one-line ``why`` (see the module's docstring)."""
    if v.event >= len(records):  # a trace cut short: name the violation only
        return Explanation(v.message, ())
    m = _SUBJECT.match(v.subject)
    if m is not None and v.invariant in ("no-lost-write", "no-lost-update"):
        return _explain_data(records, v, m["field"], int(m["row"]))
    m = _MSG_SUBJECT.match(v.subject)
    if m is not None:
        return _explain_message(records, v, int(m["msg"]))
    if records[v.event]["kind"] == "schema_error":
        return _explain_schema(records, v)
    return _explain_causes(records, v)


def _chain(
    records: Sequence[Record],
    key: dict[int, str],
    history: Sequence[int],
    upto: int,
    notes: dict[int, str] | None = None,
) -> tuple[Link, ...]:
    """Key records (with their roles) and the latest ``MAX_HISTORY`` history records, in trace order."""
    extra = [i for i in history if i not in key and i <= upto][-MAX_HISTORY:]
    idx = sorted({i for i in key if 0 <= i < len(records)} | set(extra))
    notes = notes or {}
    return tuple(Link(records[i], key.get(i, ""), notes.get(i, "")) for i in idx)


def _direct_causes(rec: Record) -> list[int]:
    return [c for c in rec.get("cause", ()) if isinstance(c, int)]


# ------------------------------------------------------------------------------------- data
def _explain_data(records: Sequence[Record], v: Violation, fld: str, row: int) -> Explanation:
    bad = records[v.event]
    if v.invariant == "no-lost-update":
        return _explain_lost_update(records, v, fld, row)
    # the field's locations, and every record of this field and row up to the violation
    locs: set[str] = set()
    for r in records[: v.event + 1]:
        if r.get("field") == fld:
            locs.update(_locs(r))
            if "loc" in r:
                locs.add(r["loc"])
    history: list[int] = []
    setter: dict[str, int] = {}  # location -> the last record that put a value in it
    latest: int | None = None  # the latest acknowledged write (or init)
    for r in records[: v.event]:
        k = r["kind"]
        if k not in _DATA_KINDS:
            continue
        if k == "init":
            if r["field"] == fld and row < r["rows"]:
                latest = r["i"]
                for loc in r["locs"]:
                    setter[loc] = r["i"]
            continue
        if r.get("row") != row or (k in ("write", "read") and r["field"] != fld):
            continue
        touched = [loc for loc in _locs(r) if loc in locs]
        if k in ("bf_read", "bf_write") and r["loc"] not in locs and not touched:
            continue
        if k == "rewrite" and not touched:
            continue
        history.append(r["i"])
        if k == "write":
            latest = r["i"]
        for loc in touched:
            setter[loc] = r["i"]
    key: dict[int, str] = {v.event: VIOLATION}
    loc = bad.get("loc", "")
    seen = bad["value"] if bad["kind"] == "read" else (bad["values"][row] if bad["kind"] == "final" else None)
    lost = latest if latest is not None else (v.causes[-1] if v.causes else None)
    if lost is not None:
        key[lost] = LOST
    first = lost if lost is not None and records[lost]["kind"] != "init" else v.event
    over = setter.get(loc)
    if over is not None and lost is not None and over > lost and records[over]["kind"] != "init":
        key[over] = OVERWRITES
        first = min(first, over)
        for c in _direct_causes(records[over]):
            if records[c]["kind"] == "bf_read":
                key[c] = COPIED
                first = min(first, c)
    else:
        if over is not None and records[over]["kind"] != "init":
            key.setdefault(over, SEEN)  # an older value than the lost write: who put it there
        over = None
    reader = None
    if bad["kind"] == "read":
        reader = _release_of(records, bad["engine"], v.event)
        if reader is not None:
            key.setdefault(reader["i"], READER)
        for c in _direct_causes(bad):
            if records[c]["kind"] == "recv":
                key.setdefault(c, CAUSE)
    for c in v.causes:
        key.setdefault(c, CAUSE)
    # a final record lists every row: say what this row holds
    notes = {v.event: f"at the end {loc} holds {_value(seen)} for {fld}[{row}]"} if bad["kind"] == "final" else {}
    chain = _chain(records, key, [i for i in history if i >= first], v.event, notes)
    return Explanation(_why_lost_write(records, v, bad, loc, seen, lost, over, reader, row), chain)


def _why_lost_write(
    records: Sequence[Record],
    v: Violation,
    bad: Record,
    loc: str,
    seen: Any,
    lost: int | None,
    over: int | None,
    reader: Record | None,
    row: int,
) -> str:
    if lost is None:
        return v.message
    lw = records[lost]
    if lw["kind"] == "init":
        what = f"the initial value {_value(f'init{row}')}"
        went = f"was in {', '.join(lw['locs'])} only"
    else:
        what = f"the write of {_value(lw['value'])} by {lw['engine']} at {_t(lw['t'])}"
        went = f"went to {', '.join(_locs(lw))} only"
    if bad["kind"] == "read":
        who = bad["engine"] + (f" ({reader['release']})" if reader is not None else "")
        head = f"{who} reads {loc} at {_t(bad['t'])}"
        got = f" and gets {_value(seen)}"
    else:
        head, got = f"at the end {loc} holds {_value(seen)}", ""
    if over is not None:
        o = records[over]
        src = next((records[c] for c in _direct_causes(o) if records[c]["kind"] == "bf_read"), None)
        if src is not None:
            how = (
                f"{_actor(o)} read row {row} ({_value(src['value'])}) at {_t(src['t'])} and copied it to "
                f"{o['loc']} at {_t(o['t'])}, over {what}"
            )
        elif o["kind"] == "rewrite":
            how = f"{o['engine']} rewrote row {row} as it had read it, at {_t(o['t'])}, over {what}"
        else:
            how = f"{describe(o)} at {_t(o['t'])}, over {what}"
        return f"{head}{got}: {how}; that write is lost"
    if loc not in _locs(lw):
        # the lost value never reached the location read: say when (if ever) a copy got there
        later = next(
            (r for r in records[v.event + 1 :] if r["kind"] == "bf_write" and r.get("row") == row and loc in _locs(r)),
            None,
        )
        if later is not None:
            head += f", before the backfill reached row {row} (at {_t(later['t'])}),"
            return f"{head}{got}: {what} {went}; it is lost"
        return f"{head}{got}: {what} {went} and nothing copied it to {loc}; it is lost"
    return f"{head}{got}: {what} is lost"


def _explain_lost_update(records: Sequence[Record], v: Violation, fld: str, row: int) -> Explanation:
    bad = records[v.event]
    read_i, other_i = (v.causes + (None, None))[:2]
    key: dict[int, str] = {v.event: VIOLATION}
    if read_i is not None:
        key[read_i] = SUPERSEDED_READ
    if other_i is not None:
        key[other_i] = LOST
    first = min(key)
    history = [
        r["i"]
        for r in records[first : v.event]
        if r["kind"] in ("read", "write") and r.get("field") == fld and r.get("row") == row
    ]
    chain = _chain(records, key, history, v.event)
    if read_i is None or other_i is None:
        return Explanation(v.message, chain)
    rd, other = records[read_i], records[other_i]
    why = (
        f"{bad['engine']} wrote {fld}[{row}] = {_value(bad['value'])} at {_t(bad['t'])} from what it read at "
        f"{_t(rd['t'])} ({_value(rd['value'])}); the write of {_value(other['value'])} by {other['engine']} at "
        f"{_t(other['t'])} in between is lost"
    )
    return Explanation(why, chain)


# ------------------------------------------------------------------------------------- messages
def _explain_message(records: Sequence[Record], v: Violation, msg: int) -> Explanation:
    bad = records[v.event]
    key: dict[int, str] = {v.event: VIOLATION}
    for c in (*v.causes, *_direct_causes(bad)):
        key.setdefault(c, CAUSE)
    history: list[int] = []
    holders: set[str] = set()
    send: Record | None = None
    for r in records[: v.event]:
        if r.get("msg") == msg and r["kind"] in _MSG_KINDS:
            history.append(r["i"])
            if r["kind"] == "send" and send is None:
                send = r
            elif "engine" in r:
                holders.add(r["engine"])
    if send is not None:
        key.setdefault(send["i"], CAUSE)
        holders.discard(send["engine"])
        # the stops and kills of the engines that held it, while it was out
        for r in records[send["i"] : v.event]:
            if r["kind"] in ("stop", "kill") and r.get("engine") in holders:
                key.setdefault(r["i"], HOLDER_KILLED if r["kind"] == "kill" else HOLDER_STOPS)
    chain = _chain(records, key, sorted(set(history)), v.event)
    if send is None:
        return Explanation(v.message, chain)
    what = f"m{msg} ({send['method']} at version {send['version']}, sent by {send['engine']} at {_t(send['t'])})"
    k = bad["kind"]
    if k == "left":
        why = f"{what} was never taken: still in {bad['queue']} at the end"
        gone = [r for r in records[send["i"] : v.event] if r["kind"] in ("stop", "kill") and r["engine"] in holders]
        if gone:
            why += f", after {gone[-1]['engine']} {'was killed' if gone[-1]['kind'] == 'kill' else 'stopped'}"
            why += f" at {_t(gone[-1]['t'])}"
    elif k == "lost":
        why = f"{what} was lost in flight when {bad['engine']} was killed at {_t(bad['t'])}"
    elif k == "reject":
        rel = _release_of(records, bad["engine"], v.event)
        on = f" ({rel['release']})" if rel is not None else ""
        why = f"{what} reached {bad['engine']}{on} at {_t(bad['t'])}, which raised {bad['error']}"
    elif k == "expire":
        why = f"{what} expired in {bad['queue']} at {_t(bad['t'])}: no engine took it in time"
    elif k == "dropped":
        why = f"{what} was dropped with {bad['queue']} at {_t(bad['t'])} ({bad['why']})"
    elif k == "recv" and v.invariant == "bounded-imbalance":
        idle = ", ".join(v.engines[1:])
        why = f"{what} waited {bad['wait']:.3f} s for {bad['engine']} while {idle} sat idle"
    elif v.invariant == "operations-complete":
        why = f"{what} did not complete: {v.message.partition('did not complete: ')[2] or v.message}"
    else:
        why = f"{what}: {v.message}"
    return Explanation(why, chain)


# ------------------------------------------------------------------------------------- schema
def _explain_schema(records: Sequence[Record], v: Violation) -> Explanation:
    """A table or column touched when it did not exist: the toucher's release, and the schema step
    that dropped it (a contract) or the absence of the one that would create it (an expand)."""
    bad = records[v.event]
    key: dict[int, str] = {v.event: VIOLATION}
    for c in (*v.causes, *_direct_causes(bad)):
        key.setdefault(c, CAUSE)
    locs = list(bad["locs"])

    def touches(r: Record) -> bool:
        items = r["detail"].get(r["action"], [])
        return any(loc == item or loc.split(".")[0] == item for loc in locs for item in items)

    step = next(
        (
            r
            for r in reversed(records[: v.event])
            if r["kind"] == "step" and r.get("action") in ("expand", "contract") and touches(r)
        ),
        None,
    )
    who, on = bad["engine"], ""
    if who != "backfill":
        start = _release_of(records, who, v.event)
        if start is not None:
            key.setdefault(start["i"], READER)
            on = f" ({start['release']})"
    else:
        who = "the backfill"
    head = f"{who}{on} tries to {bad['op']} {', '.join(locs)} at {_t(bad['t'])}"
    if step is not None and step["action"] == "contract":
        key[step["i"]] = DROPPED_BY
        why = f"{head}, after operator step {step['index']} contracted it at {_t(step['t'])}"
    else:
        why = f"{head}, which no expand step had created"
    return Explanation(why, _chain(records, key, (), v.event))


# ------------------------------------------------------------------------------------- others
def _explain_causes(records: Sequence[Record], v: Violation) -> Explanation:
    bad = records[v.event]
    key: dict[int, str] = {v.event: VIOLATION}
    for c in v.causes:
        key.setdefault(c, CAUSE)
        for d in _direct_causes(records[c]) if c < len(records) else ():
            key.setdefault(d, CAUSE)
    for c in _direct_causes(bad):
        key.setdefault(c, CAUSE)
    chain = _chain(records, key, (), v.event)
    k = bad["kind"]
    if k == "send_error":
        start = _release_of(records, bad["engine"], v.event)
        on = "" if start is None else f" ({start['release']}" + (f", cap {start['cap']})" if start.get("cap") else ")")
        who = "the client" if bad["engine"] == "client" else bad["engine"]
        why = f"{who}{on} cannot send {bad['method']} at {_t(bad['t'])}: {bad['error']}"
    elif k == "start" and v.invariant == "version-skew":
        others = sorted(
            {
                records[c]["release"]
                for c in v.causes
                if c < len(records) and records[c]["kind"] == "start" and records[c]["release"] != bad["release"]
            }
        )
        why = f"{bad['engine']} starts on {bad['release']} at {_t(bad['t'])} while {', '.join(others)} still run: "
        why += v.message
    else:
        why = f"{describe(bad)} at {_t(bad['t'])}: {v.message}"
    return Explanation(why, chain)


__all__ = ["Explanation", "Link", "describe", "explain", "format_record", "step_text"]
