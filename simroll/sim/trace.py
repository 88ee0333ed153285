"""The trace of a run: one JSON object per event, numbered, hashed as it is written.

Every record has ``i`` (its number), ``t`` (simulated seconds) and ``kind``,
then kind-specific keys in a fixed order; ``cause`` lists the numbers of the
records it directly depends on (a receive on its send, a read on the write it
read from). The sha256 of the JSON Lines text is the identity of a run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import IO, Any

Record = dict[str, Any]

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _make_encode() -> Callable[[Any], str]:
    """``_ENCODER.encode``, minus the C encoder it builds afresh for every call.

    ``JSONEncoder.encode`` makes a new ``c_make_encoder`` object per call, a third of
    the cost of encoding a small record. We build that object once, with the settings
    of :data:`_ENCODER`, and check it gives the same text; if the C accelerator is
    missing or its signature differs in this Python, we keep ``_ENCODER.encode``.
    """
    try:
        from json.encoder import c_make_encoder, encode_basestring

        if c_make_encoder is None:
            return _ENCODER.encode
        c_encode = c_make_encoder(None, _ENCODER.default, encode_basestring, None, ":", ",", False, False, False)

        def encode(rec: Any) -> str:
            return "".join(c_encode(rec, 0))

        probe = {"i": 1, "t": 0.1 + 0.2, "kind": "é\n\"", "x": [None, True, 2, {"k": [1.5e-7]}]}
        if encode(probe) != _ENCODER.encode(probe):
            return _ENCODER.encode
    except (ImportError, TypeError):  # pragma: no cover - depends on the Python build
        return _ENCODER.encode
    return encode


_encode = _make_encode()


# ------------------------------------------------------------------ fast lines for hot kinds
# Five kinds make up nearly all the records of a long run (each message is sent, received
# and done; handlers read and write). For them the JSON line is written with an f-string,
# about three times faster than the encoder. A fast line is used only when the record has
# exactly the keys listed, in that order, with values of the types the formatter checks;
# anything else raises TypeError and goes through the encoder, so the bytes never differ
# (tests/test_trace.py checks the fast lines against the json module).
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


def _send_line(r: Record) -> str:
    return (f'{{"i":{r["i"]},"t":{_num(r["t"])},"kind":"send","engine":{_str(r["engine"])},"msg":{_int(r["msg"])},'
            f'"method":{_str(r["method"])},"version":{_str(r["version"])},"queue":{_str(r["queue"])},'
            f'"call":{_bool(r["call"])},"row":{_int(r["row"])}}}')


def _recv_line(r: Record) -> str:
    return (f'{{"i":{r["i"]},"t":{_num(r["t"])},"kind":"recv","engine":{_str(r["engine"])},"msg":{_int(r["msg"])},'
            f'"wait":{_num(r["wait"])},"cause":{_ints(r["cause"])}}}')


def _done_line(r: Record) -> str:
    return (f'{{"i":{r["i"]},"t":{_num(r["t"])},"kind":"done","engine":{_str(r["engine"])},"msg":{_int(r["msg"])},'
            f'"ok":{_bool(r["ok"])}}}')


def _read_line(r: Record) -> str:
    return (f'{{"i":{r["i"]},"t":{_num(r["t"])},"kind":"read","engine":{_str(r["engine"])},"msg":{_int(r["msg"])},'
            f'"field":{_str(r["field"])},"row":{_int(r["row"])},"loc":{_str(r["loc"])},'
            f'"value":{_opt_str(r["value"])},"cause":{_ints(r["cause"])}}}')


def _write_line(r: Record) -> str:
    return (f'{{"i":{r["i"]},"t":{_num(r["t"])},"kind":"write","engine":{_str(r["engine"])},"msg":{_int(r["msg"])},'
            f'"field":{_str(r["field"])},"row":{_int(r["row"])},"value":{_str(r["value"])},'
            f'"locs":{_strs(r["locs"])},"trig":{_strs(r["trig"])}}}')


_BASE = ("i", "t", "kind")
_FAST: dict[str, tuple[tuple[str, ...], Callable[[Record], str]]] = {
    "send": (_BASE + ("engine", "msg", "method", "version", "queue", "call", "row"), _send_line),
    "recv": (_BASE + ("engine", "msg", "wait", "cause"), _recv_line),
    "done": (_BASE + ("engine", "msg", "ok"), _done_line),
    "read": (_BASE + ("engine", "msg", "field", "row", "loc", "value", "cause"), _read_line),
    "write": (_BASE + ("engine", "msg", "field", "row", "value", "locs", "trig"), _write_line),
}


def encode_record(rec: Record) -> str:
    """One record as its JSON line (without the newline): compact, keys in insertion order."""
    fast = _FAST.get(rec["kind"])
    if fast is not None and tuple(rec) == fast[0]:
        try:
            return fast[1](rec)
        except TypeError:
            pass
    return _encode(rec)


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
        i = self.count
        self.count = i + 1
        rec = {"i": i, "t": t, "kind": kind, **fields}
        line = encode_record(rec) + "\n"
        self._sha.update(line.encode())
        if self._stream is not None:
            self._stream.write(line)
        if self.records is not None:
            self.records.append(rec)
        subs = self._subscribers.get(kind)
        if subs:
            for fn in subs:
                fn(rec)
        return i

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()


def read_trace(path: str) -> list[Record]:
    """Load a JSON Lines trace written by ``simroll run --trace``."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
