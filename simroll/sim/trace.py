"""The trace of a run: one JSON object per event, numbered, hashed as it is written.

Every record has ``i`` (its number), ``t`` (simulated seconds) and ``kind``,
then kind-specific keys in a fixed order; ``cause`` lists the numbers of the
records it directly depends on (a receive on its send, a read on the write it
read from). The sha256 of the JSON Lines text is the identity of a run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from typing import IO, Any

from simroll._io import read_input
from simroll.errors import UsageError

Record = dict[str, Any]

MAX_TRACE_BYTES = 1 << 30  # a trace read back (simroll plot, RunResult.trace()); 2M events take about 300 MB
"""One trace record: ``i``, ``t``, ``kind``, then the kind's own keys (the one record type of simroll)."""

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _make_encode() -> Callable[[Any], str]:
    """``_ENCODER.encode``, minus the C encoder it builds afresh for every call.

    ``JSONEncoder.encode`` makes a new ``c_make_encoder`` object per call, a third of
    the cost of encoding a small record. We build that object once, with the settings
    of :data:`_ENCODER`, and check it gives the same text; if the C accelerator is
    missing or its signature differs in this Python, we keep ``_ENCODER.encode``.

    ``json.encoder.c_make_encoder`` is not public API: the json module offers no public way to
    keep its C encoder between calls. It is safe to use here because the fallback is the public
    encoder and the probe below compares the two on every import, so a CPython that changed it
    costs speed, never bytes. ``requires-python`` (>=3.11) is the range the suite proves;
    ``tests/test_trace.py`` checks lines against :mod:`json` on every run.
    """
    try:
        from json.encoder import (  # type: ignore[attr-defined]  # undocumented, see the docstring
            c_make_encoder,
            encode_basestring,
        )

        if c_make_encoder is None:
            return _ENCODER.encode
        c_encode = c_make_encoder(None, _ENCODER.default, encode_basestring, None, ":", ",", False, False, False)

        def encode(rec: Any) -> str:
            return "".join(c_encode(rec, 0))

        probe = {"i": 1, "t": 0.1 + 0.2, "kind": 'é\n"', "x": [None, True, 2, {"k": [1.5e-7]}]}
        if encode(probe) != _ENCODER.encode(probe):
            return _ENCODER.encode
    except (ImportError, TypeError):  # pragma: no cover - depends on the Python build
        return _ENCODER.encode
    return encode


_encode = _make_encode()


# ------------------------------------------------------------------ formatting helpers of the hot kinds
# Each helper writes one value as the encoder would, or raises TypeError for a value of another
# type (the record then goes through the encoder), so a line never differs from the encoder's.
from json.encoder import encode_basestring as _str  # noqa: E402 - a str as a JSON string; TypeError otherwise


def _int(x: Any) -> str:
    if type(x) is int:  # not bool, not an int subclass with its own repr
        return repr(x)
    raise TypeError


def _num(x: Any) -> str:
    if type(x) is float and x - x == 0.0 or type(x) is int:  # finite: json refuses nan and inf
        return repr(x)
    raise TypeError


def _ints(xs: Any) -> str:
    if type(xs) is not list:
        raise TypeError
    if len(xs) == 1:  # most causes are one record
        return f"[{_int(xs[0])}]"
    return "[" + ",".join([_int(x) for x in xs]) + "]"


def _strs(xs: Any) -> str:
    if type(xs) is not list:
        raise TypeError
    return "[" + ",".join([_str(x) for x in xs]) + "]"


def _opt_str(x: Any) -> str:
    return "null" if x is None else _str(x)


class Meter:
    """Units of work a run does besides writing records: the iterations of the per-engine loops of
    operator steps (``set_cap``, fanout, stops and kills) and of the checks (the idle scan of
    ``bounded-imbalance``, ...). The run's limits charge it (:data:`simroll.sim.kernel.WORK_PER_EVENT`),
    so that no input can spend long between two records."""

    __slots__ = ("work",)

    def __init__(self) -> None:
        self.work = 0


HASH_BATCH = 256  # lines hashed at once: one sha256 update per batch, not per record


class Trace:
    """Numbers, serialises, hashes and dispatches records as the simulation emits them.

    ``keep``: hold every record in :attr:`records` (needed for causal chains and plots).
    ``stream``: a text file the JSON Lines are written to as they come.
    ``hashed``: compute :attr:`sha256` (default). A trace neither hashed, kept nor streamed (the inner
    runs of a search, which read only the verdicts) makes no JSON line at all, and no record of a kind
    nobody subscribes to: it only numbers them, so every record keeps its number.
    Subscribers (the invariant checkers) get each record of the kinds they asked for.
    :attr:`meter` counts the work done besides writing records (see :class:`Meter`).
    """

    def __init__(self, keep: bool = True, stream: IO[str] | None = None, hashed: bool = True):
        self.records: list[Record] | None = [] if keep else None
        self._stream = stream
        self._sha = hashlib.sha256()
        self._hashed = hashed
        self._lines = hashed or stream is not None  # make the JSON line of each record
        self._lean = not self._lines and not keep  # records only for their subscribers
        self._pending: list[str] = []  # lines not yet hashed
        self._subscribers: dict[str, list[Callable[[Record], None]]] = {}
        # kind -> its subscribers' positional readers; None: one of them has none (see subscribe)
        self._fast: dict[str, list[Callable[..., None]] | None] = {}
        self.count = 0
        self.meter = Meter()

    def subscribe(
        self,
        kinds: tuple[str, ...],
        fn: Callable[[Record], None],
        positional: dict[str, Callable[..., None]] | None = None,
    ) -> None:
        """``fn`` gets each record of ``kinds``. ``positional``: for some of those kinds (``read``,
        ``write``), a function that takes the record's fields instead, in the record's order without
        ``kind`` (``i, t, engine, msg, ...``, as :meth:`read` and :meth:`write` take them): a trace
        that makes no line and keeps no record calls it instead of ``fn`` and builds no record, as
        long as every subscriber of that kind gave one."""
        for k in kinds:
            self._subscribers.setdefault(k, []).append(fn)
            p = positional.get(k) if positional else None
            fast = self._fast.get(k, [])
            self._fast[k] = None if p is None or fast is None else [*fast, p]

    def wanted(self, kind: str) -> bool:
        """Is a record of ``kind`` built (encoded, kept or read by a subscriber)? If not, a writer may
        only number it: ``i = trace.count; trace.count = i + 1`` (what :meth:`emit` does then).
        Subscriptions are made before a run starts, so the answer holds for the whole run."""
        return not self._lean or kind in self._subscribers

    def emit(self, t: float, kind: str, **fields: Any) -> int:
        """Append one record; returns its number."""
        if self._lean and kind not in self._subscribers:
            i = self.count
            self.count = i + 1
            return i
        return self._append({"i": self.count, "t": t, "kind": kind, **fields}, None)

    def _append(self, rec: Record, line: str | None) -> int:
        """Number, hash, write, keep and dispatch ``rec``; ``line`` is its JSON line if already made."""
        i = rec["i"]
        self.count = i + 1
        if self._lines:
            if line is None:
                line = _encode(rec) + "\n"
            if self._hashed:
                pending = self._pending
                pending.append(line)
                if len(pending) >= HASH_BATCH:
                    self._sha.update("".join(pending).encode())
                    pending.clear()
            if self._stream is not None:
                self._stream.write(line)
        if self.records is not None:
            self.records.append(rec)
        subs = self._subscribers.get(rec["kind"])
        if subs:
            for fn in subs:
                fn(rec)
        return i

    # -------------------------------------------------------------- the hot kinds
    # Every message is sent, received and done, and handlers read and write: these five kinds
    # are nearly all the records of a long run. Each has a method that makes the record and its
    # line directly, without a keyword dict or the general encoder (about twice as fast). The
    # record is the one emit(t, kind, ...) would make, and the line is the encoder's, byte for
    # byte (tests/test_trace.py checks both against the json module).

    def send(
        self, t: float, *, engine: str, msg: int, method: str, version: str, queue: str, call: bool, row: int
    ) -> int:
        i = self.count
        if self._lean and "send" not in self._subscribers:  # wanted by nobody: numbered only
            self.count = i + 1
            return i
        rec = {
            "i": i,
            "t": t,
            "kind": "send",
            "engine": engine,
            "msg": msg,
            "method": method,
            "version": version,
            "queue": queue,
            "call": call,
            "row": row,
        }
        line = None
        # the number and boolean checks inlined (four calls less per record); else the encoder makes the line
        if (
            self._lines
            and (type(t) is float and t - t == 0.0 or type(t) is int)
            and type(msg) is int
            and (call is True or call is False)
            and type(row) is int
        ):
            try:
                line = (
                    f'{{"i":{i},"t":{t!r},"kind":"send","engine":{_str(engine)},"msg":{msg!r},'
                    f'"method":{_str(method)},"version":{_str(version)},"queue":{_str(queue)},'
                    f'"call":{"true" if call else "false"},"row":{row!r}}}\n'
                )
            except TypeError:
                pass  # a value of another type: the encoder makes the line
        return self._append(rec, line)

    def recv(self, t: float, *, engine: str, msg: int, wait: float, cause: list[int]) -> int:
        i = self.count
        if self._lean and "recv" not in self._subscribers:  # wanted by nobody: numbered only
            self.count = i + 1
            return i
        rec = {"i": i, "t": t, "kind": "recv", "engine": engine, "msg": msg, "wait": wait, "cause": cause}
        line = None
        # _num, _int and _ints's checks inlined (five calls less per record); else the encoder makes the line
        if (
            self._lines
            and (type(t) is float and t - t == 0.0 or type(t) is int)
            and type(msg) is int
            and (type(wait) is float and wait - wait == 0.0 or type(wait) is int)
        ):
            try:
                causes = (
                    f"[{cause[0]!r}]"
                    if type(cause) is list and len(cause) == 1 and type(cause[0]) is int
                    else _ints(cause)
                )
                line = (
                    f'{{"i":{i},"t":{t!r},"kind":"recv","engine":{_str(engine)},"msg":{msg!r},'
                    f'"wait":{wait!r},"cause":{causes}}}\n'
                )
            except TypeError:
                pass  # a value of another type: the encoder makes the line
        return self._append(rec, line)

    def done(self, t: float, *, engine: str, msg: int, ok: bool) -> int:
        i = self.count
        if self._lean and "done" not in self._subscribers:  # wanted by nobody: numbered only
            self.count = i + 1
            return i
        rec = {"i": i, "t": t, "kind": "done", "engine": engine, "msg": msg, "ok": ok}
        line = None
        # the number and boolean checks inlined (three calls less per record); else the encoder makes the line
        if (
            self._lines
            and (type(t) is float and t - t == 0.0 or type(t) is int)
            and type(msg) is int
            and (ok is True or ok is False)
        ):
            try:
                line = (
                    f'{{"i":{i},"t":{t!r},"kind":"done","engine":{_str(engine)},"msg":{msg!r},'
                    f'"ok":{"true" if ok else "false"}}}\n'
                )
            except TypeError:
                pass  # a value of another type: the encoder makes the line
        return self._append(rec, line)

    def read(
        self, t: float, *, engine: str, msg: int, field: str, row: int, loc: str, value: str | None, cause: list[int]
    ) -> int:
        i = self.count
        if self._lean:
            if "read" not in self._subscribers:  # wanted by nobody: numbered only
                self.count = i + 1
                return i
            fast = self._fast["read"]
            if fast is not None:  # every subscriber reads the fields: no record is built
                self.count = i + 1
                for fn in fast:
                    fn(i, t, engine, msg, field, row, loc, value, cause)
                return i
        rec = {
            "i": i,
            "t": t,
            "kind": "read",
            "engine": engine,
            "msg": msg,
            "field": field,
            "row": row,
            "loc": loc,
            "value": value,
            "cause": cause,
        }
        if self._lean:  # no line, not kept: straight to its subscribers (what _append does then)
            self.count = i + 1
            for fn in self._subscribers["read"]:
                fn(rec)
            return i
        line = None
        if self._lines:
            try:
                line = (
                    f'{{"i":{i},"t":{_num(t)},"kind":"read","engine":{_str(engine)},"msg":{_int(msg)},'
                    f'"field":{_str(field)},"row":{_int(row)},"loc":{_str(loc)},'
                    f'"value":{_opt_str(value)},"cause":{_ints(cause)}}}\n'
                )
            except TypeError:
                pass  # a value of another type: the encoder makes the line
        return self._append(rec, line)

    def write(
        self, t: float, *, engine: str, msg: int, field: str, row: int, value: str, locs: list[str], trig: list[str]
    ) -> int:
        i = self.count
        if self._lean:
            if "write" not in self._subscribers:  # wanted by nobody: numbered only
                self.count = i + 1
                return i
            fast = self._fast["write"]
            if fast is not None:  # every subscriber reads the fields: no record is built
                self.count = i + 1
                for fn in fast:
                    fn(i, t, engine, msg, field, row, value, locs, trig)
                return i
        rec = {
            "i": i,
            "t": t,
            "kind": "write",
            "engine": engine,
            "msg": msg,
            "field": field,
            "row": row,
            "value": value,
            "locs": locs,
            "trig": trig,
        }
        if self._lean:  # no line, not kept: straight to its subscribers (what _append does then)
            self.count = i + 1
            for fn in self._subscribers["write"]:
                fn(rec)
            return i
        line = None
        if self._lines:
            try:
                line = (
                    f'{{"i":{i},"t":{_num(t)},"kind":"write","engine":{_str(engine)},"msg":{_int(msg)},'
                    f'"field":{_str(field)},"row":{_int(row)},"value":{_str(value)},'
                    f'"locs":{_strs(locs)},"trig":{_strs(trig)}}}\n'
                )
            except TypeError:
                pass  # a value of another type: the encoder makes the line
        return self._append(rec, line)

    @property
    def sha256(self) -> str:
        """The sha256 of the JSON Lines text so far (a trace made with ``hashed=False`` has none)."""
        if not self._hashed:
            raise ValueError("this trace was not hashed (Trace(hashed=False))")
        if self._pending:
            self._sha.update("".join(self._pending).encode())
            self._pending.clear()
        return self._sha.hexdigest()


# ------------------------------------------------------------------ reading a trace back
# What each kind of record holds, as the simulator writes it (tests/test_hostile.py checks this table
# against every emit() call in simroll/sim, so a new kind or field cannot be forgotten here). A trace
# read back is checked against it, so a corrupted or hand-edited file is refused with its line
# instead of failing deep inside a plot. Keys not listed are allowed (they are not read).


def _is_int(x: Any) -> bool:
    return type(x) is int  # not bool


def _is_num(x: Any) -> bool:
    return (type(x) is float or type(x) is int) and math.isfinite(x)  # json.loads reads NaN and Infinity


def _is_str(x: Any) -> bool:
    return type(x) is str


def _is_opt_str(x: Any) -> bool:
    return x is None or type(x) is str


def _is_bool(x: Any) -> bool:
    return type(x) is bool


def _is_strs(x: Any) -> bool:
    return type(x) is list and all(type(v) is str for v in x)


def _is_opt_strs(x: Any) -> bool:
    return type(x) is list and all(v is None or type(v) is str for v in x)


def _is_ints(x: Any) -> bool:
    return type(x) is list and all(type(v) is int for v in x)


def _is_dict(x: Any) -> bool:
    return type(x) is dict


_Check = tuple[Callable[[Any], bool], str]
_INT: _Check = (_is_int, "an integer")
_NUM: _Check = (_is_num, "a finite number")
_STR: _Check = (_is_str, "a string")
_OPT_STR: _Check = (_is_opt_str, "a string or null")
_BOOL: _Check = (_is_bool, "true or false")
_STRS: _Check = (_is_strs, "a list of strings")
_OPT_STRS: _Check = (_is_opt_strs, "a list of strings or nulls")
_INTS: _Check = (_is_ints, "a list of integers")
_DICT: _Check = (_is_dict, "an object")

# kind -> (required fields, optional fields), each field -> what its value must be
_SCHEMA: dict[str, tuple[dict[str, _Check], dict[str, _Check]]] = {
    "begin": ({}, {"scenario": _STR, "delivery": _STR}),
    "bf_read": ({"engine": _STR, "row": _INT, "loc": _STR, "value": _OPT_STR}, {}),
    "bf_crash": ({"engine": _STR, "row": _INT}, {}),
    "bf_resume": ({"engine": _STR, "row": _INT}, {}),
    "bf_write": ({"engine": _STR, "row": _INT, "loc": _STR, "value": _OPT_STR, "trig": _STRS}, {}),
    "cap": ({"engine": _STR, "cap": _OPT_STR, "why": _STR}, {}),
    "caps": ({"caps": _DICT, "client": _OPT_STR}, {}),
    "config": ({"engine": _STR, "release": _STR, "config": _DICT}, {}),
    "choice": (
        {"at": _INT, "what": _STR},
        {"msg": _INT, "to": _STR, "default": _STR, "delay": _NUM, "row": _INT, "gap": _NUM},
    ),
    "done": ({"engine": _STR, "msg": _INT, "ok": _BOOL}, {}),
    "dedup": ({"engine": _STR, "msg": _INT, "key": _INT, "first": _INT}, {}),
    "drained": ({"vhost": _STR}, {}),
    "dropped": ({"msg": _INT, "queue": _STR, "why": _STR}, {}),
    "end": ({"reason": _STR, "points": _INT}, {}),
    "expire": ({"msg": _INT, "queue": _STR, "expired_at": _NUM}, {}),
    "fault": ({"action": _STR, "engine": _STR}, {}),
    "final": ({"field": _STR, "loc": _STR, "exists": _BOOL, "values": _OPT_STRS}, {}),
    "init": ({"field": _STR, "locs": _STRS, "rows": _INT}, {}),
    "kill": ({"engine": _STR, "inflight": _INTS}, {}),
    "late": ({"engine": _STR, "msg": _INT, "deadline": _NUM}, {}),
    "left": ({"msg": _INT, "queue": _STR, "version": _STR}, {}),
    "lost": ({"engine": _STR, "msg": _INT}, {}),
    "noop": ({"engine": _STR, "why": _STR}, {}),
    "plan_done": ({}, {}),
    "plan_failed": ({"why": _STR, "unmet": _STRS}, {}),
    "ready": ({"engine": _STR}, {}),
    "read": (
        {"engine": _STR, "msg": _INT, "field": _STR, "row": _INT, "loc": _STR, "value": _OPT_STR},
        {},
    ),
    "recv": ({"engine": _STR, "msg": _INT, "wait": _NUM}, {}),
    "reject": (
        {"engine": _STR, "msg": _INT, "error": _STR, "method": _STR, "version": _STR, "call": _BOOL},
        {},
    ),
    "removed": ({"engine": _STR}, {}),
    "requeue": ({"engine": _STR, "msg": _INT}, {}),
    "rewrite": ({"engine": _STR, "msg": _INT, "row": _INT, "cols": _DICT}, {}),
    "schema_error": ({"engine": _STR, "op": _STR, "locs": _STRS}, {"msg": _INT}),
    "send": (
        {"engine": _STR, "msg": _INT, "method": _STR, "version": _STR, "queue": _STR, "call": _BOOL, "row": _INT},
        {"service": _STR, "retry_of": _INT, "attempt": _INT},
    ),
    "send_error": ({"engine": _STR, "method": _STR, "error": _STR}, {}),
    "start": (
        {"engine": _STR, "release": _STR, "workers": _INT, "cap": _OPT_STR},
        {"service": _STR, "vhost": _STR, "queue": _STR, "config": _DICT},
    ),
    "step": ({"index": _INT, "action": _STR, "detail": _DICT}, {}),
    "stop": ({"engine": _STR, "inflight": _INTS}, {}),
    "stopped": ({"engine": _STR, "release": _STR}, {}),
    "sync": ({"engine": _STR, "field": _STR, "loc": _STR}, {"msg": _INT, "row": _INT, "value": _OPT_STR}),
    "timeout": ({"engine": _STR, "msg": _INT, "attempt": _INT}, {"retry_at": _NUM}),
    "unknown_value": (
        {"engine": _STR, "msg": _INT, "field": _STR, "row": _INT, "value": _STR, "release": _STR, "action": _STR},
        {},
    ),
    "vhost": ({"clients": _STR, "depth": _DICT}, {}),
    "waited": ({"waited": _NUM}, {}),
    "write": (
        {
            "engine": _STR,
            "msg": _INT,
            "field": _STR,
            "row": _INT,
            "value": _OPT_STR,
            "locs": _STRS,
            "trig": _STRS,
        },
        {},
    ),
    "write_refused": ({"engine": _STR, "op": _STR, "field": _OPT_STR, "row": _INT, "error": _STR}, {"msg": _INT}),
}
# every kind may say which earlier records it depends on
_FIELDS = {
    kind: ([(k, *c) for k, c in req.items()], [(k, *c) for k, c in opt.items()] + [("cause", *_INTS)])
    for kind, (req, opt) in _SCHEMA.items()
}


def _shown(x: Any) -> str:
    text = json.dumps(x, ensure_ascii=True, allow_nan=True)
    return text if len(text) <= 40 else text[:37] + "..."


def _record_error(rec: Any, expected_i: int, last_t: float) -> str | None:
    """What is wrong with ``rec`` as record number ``expected_i`` after a record at ``last_t``; None if nothing."""
    if not isinstance(rec, dict) or not {"i", "t", "kind"} <= rec.keys() or not _is_int(rec["i"]):
        return f"not a simroll trace record (expected an object with i={expected_i}, t and kind)"
    if rec["i"] != expected_i:
        return f"not a simroll trace record (expected an object with i={expected_i}, t and kind)"
    t, kind = rec["t"], rec["kind"]
    if not _is_num(t) or t < 0:
        return f"t is {_shown(t)}, expected a finite number of seconds >= 0"
    if t < last_t:
        return f"t={t!r} is earlier than the previous record's t={last_t!r} (expected times that never decrease)"
    fields = _FIELDS.get(kind) if type(kind) is str else None
    if fields is None:
        return f"unknown record kind {_shown(kind)} (expected one of: {', '.join(sorted(_SCHEMA))})"
    required, optional = fields
    for key, ok, what in required:
        if key not in rec:
            return f"a {kind!r} record without {key!r} (expected {what})"
        if not ok(rec[key]):
            return f"{key!r} of a {kind!r} record is {_shown(rec[key])}, expected {what}"
    for key, ok, what in optional:
        if key in rec and not ok(rec[key]):
            return f"{key!r} of a {kind!r} record is {_shown(rec[key])}, expected {what}"
    for c in rec.get("cause", ()):
        if not 0 <= c < expected_i:
            return f"cause {c} of record {expected_i} is not an earlier record (expected numbers below {expected_i})"
    return None


def read_trace(path: str | os.PathLike[str]) -> list[Record]:
    """Load a JSON Lines trace written by ``simroll run --trace`` (or ``run_scenario(trace_path=...)``).

    Every record is checked: ``i`` counting from 0, ``t`` a finite number that never decreases,
    a known ``kind`` with its own fields present and of the right type, and ``cause`` naming
    earlier records only. Raises :class:`~simroll.errors.UsageError` naming the file, the line
    and what was expected.
    """
    try:
        raw = read_input(path, MAX_TRACE_BYTES)  # a regular file only: a FIFO or a device never hangs
    except ValueError as e:
        raise UsageError(f"{path}: {e}, expected a trace file") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None
    records: list[Record] = []
    last_t: float = 0.0
    # split on newlines only: a value may hold U+2028 and friends, which str.splitlines would cut at
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError) as e:  # a JSONDecodeError, a number too long, nesting too deep
            why = e.msg if isinstance(e, json.JSONDecodeError) else str(e) or type(e).__name__
            raise UsageError(f"{path}: line {n}: not JSON ({why})") from None
        problem = _record_error(rec, len(records), last_t)
        if problem is not None:
            raise UsageError(f"{path}: line {n}: {problem}")
        last_t = rec["t"]
        records.append(rec)
    if not records:
        raise UsageError(f"{path}: empty trace")
    return records
