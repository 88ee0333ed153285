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
        line = _encode(rec) + "\n"
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
