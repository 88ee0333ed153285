"""The trace of a run: one JSON object per event, numbered, hashed as it is written.

Every record has ``i`` (its number), ``t`` (simulated seconds) and ``kind``,
then kind-specific keys in a fixed order; ``cause`` lists the numbers of the
records it directly depends on (a receive on its send, a read on the write it
read from). The sha256 of the JSON Lines text is the identity of a run.
"""

from __future__ import annotations

import hashlib
import json
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


def _bool(x: Any) -> str:
    if x is True:
        return "true"
    if x is False:
        return "false"
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


class Trace:
    """Numbers, serialises, hashes and dispatches records as the simulation emits them.

    ``keep``: hold every record in :attr:`records` (needed for causal chains and plots).
    ``stream``: a text file the JSON Lines are written to as they come.
    Subscribers (the invariant checkers) get each record of the kinds they asked for.
    """

    def __init__(self, keep: bool = True, stream: IO[str] | None = None):
        self.records: list[Record] | None = [] if keep else None
        self._stream = stream
        self._sha = hashlib.sha256()
        self._subscribers: dict[str, list[Callable[[Record], None]]] = {}
        self.count = 0

    def subscribe(self, kinds: tuple[str, ...], fn: Callable[[Record], None]) -> None:
        for k in kinds:
            self._subscribers.setdefault(k, []).append(fn)

    def emit(self, t: float, kind: str, **fields: Any) -> int:
        """Append one record; returns its number."""
        return self._append({"i": self.count, "t": t, "kind": kind, **fields}, None)

    def _append(self, rec: Record, line: str | None) -> int:
        """Number, hash, write, keep and dispatch ``rec``; ``line`` is its JSON line if already made."""
        i = rec["i"]
        self.count = i + 1
        if line is None:
            line = _encode(rec) + "\n"
        self._sha.update(line.encode())
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
        try:
            line = (
                f'{{"i":{i},"t":{_num(t)},"kind":"send","engine":{_str(engine)},"msg":{_int(msg)},'
                f'"method":{_str(method)},"version":{_str(version)},"queue":{_str(queue)},'
                f'"call":{_bool(call)},"row":{_int(row)}}}\n'
            )
        except TypeError:
            line = None
        return self._append(rec, line)

    def recv(self, t: float, *, engine: str, msg: int, wait: float, cause: list[int]) -> int:
        i = self.count
        rec = {"i": i, "t": t, "kind": "recv", "engine": engine, "msg": msg, "wait": wait, "cause": cause}
        try:
            line = (
                f'{{"i":{i},"t":{_num(t)},"kind":"recv","engine":{_str(engine)},"msg":{_int(msg)},'
                f'"wait":{_num(wait)},"cause":{_ints(cause)}}}\n'
            )
        except TypeError:
            line = None
        return self._append(rec, line)

    def done(self, t: float, *, engine: str, msg: int, ok: bool) -> int:
        i = self.count
        rec = {"i": i, "t": t, "kind": "done", "engine": engine, "msg": msg, "ok": ok}
        try:
            line = (
                f'{{"i":{i},"t":{_num(t)},"kind":"done","engine":{_str(engine)},"msg":{_int(msg)},"ok":{_bool(ok)}}}\n'
            )
        except TypeError:
            line = None
        return self._append(rec, line)

    def read(
        self, t: float, *, engine: str, msg: int, field: str, row: int, loc: str, value: str | None, cause: list[int]
    ) -> int:
        i = self.count
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
        try:
            line = (
                f'{{"i":{i},"t":{_num(t)},"kind":"read","engine":{_str(engine)},"msg":{_int(msg)},'
                f'"field":{_str(field)},"row":{_int(row)},"loc":{_str(loc)},'
                f'"value":{_opt_str(value)},"cause":{_ints(cause)}}}\n'
            )
        except TypeError:
            line = None
        return self._append(rec, line)

    def write(
        self, t: float, *, engine: str, msg: int, field: str, row: int, value: str, locs: list[str], trig: list[str]
    ) -> int:
        i = self.count
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
        try:
            line = (
                f'{{"i":{i},"t":{_num(t)},"kind":"write","engine":{_str(engine)},"msg":{_int(msg)},'
                f'"field":{_str(field)},"row":{_int(row)},"value":{_str(value)},'
                f'"locs":{_strs(locs)},"trig":{_strs(trig)}}}\n'
            )
        except TypeError:
            line = None
        return self._append(rec, line)

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()


def read_trace(path: str | os.PathLike[str]) -> list[Record]:
    """Load a JSON Lines trace written by ``simroll run --trace`` (or ``run_scenario(trace_path=...)``).

    Raises :class:`~simroll.errors.UsageError` naming the file, and the line for a line that is
    not JSON or not the next record (``i`` counting from 0, with ``t`` and ``kind``).
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
    # split on newlines only: a value may hold U+2028 and friends, which str.splitlines would cut at
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as e:  # a JSONDecodeError, or a number too long to convert
            why = e.msg if isinstance(e, json.JSONDecodeError) else str(e)
            raise UsageError(f"{path}: line {n}: not JSON ({why})") from None
        if not isinstance(rec, dict) or not {"i", "t", "kind"} <= set(rec) or rec["i"] != len(records):
            raise UsageError(
                f"{path}: line {n}: not a simroll trace record (expected an object with i={len(records)}, t and kind)"
            )
        records.append(rec)
    if not records:
        raise UsageError(f"{path}: empty trace")
    return records
