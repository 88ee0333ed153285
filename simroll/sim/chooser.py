"""The one seam through which every nondeterministic decision of a run passes.

A run draws two kinds of things:

* *choice points* (:meth:`Chooser.pick`): which idle consumer takes a message,
  how much extra delay a message or a backfill row gets. Option 0 is always the
  default (round robin, no extra delay), so a run with no pinned choices is the
  plain, documented behaviour, and a counterexample deviates from it only where
  it must. Choice points are numbered per kind (``consumer``, ``delay``,
  ``backfill_gap``) in the order they occur; ``pinned`` maps ``(kind, number)``
  to the option taken there.
* *jitter* (:attr:`Chooser.rng`): arrival times, rows and operation mix of the
  workload, drawn from ``random.Random(seed)``.

The search supplies ``pinned`` (drawn by Hypothesis) and the seed; replay pins
the same. Nothing else in simroll is random.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping

DELAY_LEVELS = 8  # a delay choice (message delay, backfill gap) takes k/8 of its bound, k in 0..8


class Chooser:
    """Seeded, FIFO-by-default chooser; ``pinned`` overrides individual choice points."""

    __slots__ = ("rng", "pinned", "points", "counts")

    def __init__(self, seed: int, pinned: Mapping[tuple[str, int], int] | None = None):
        self.rng = random.Random(seed)
        self.pinned: dict[tuple[str, int], int] = dict(pinned or {})
        self.points = 0
        self.counts: dict[str, int] = {}  # choice points seen so far, per kind

    def pick(self, kind: str, n: int) -> int:
        """Choose one of ``n`` >= 2 options; 0 unless this choice point is pinned."""
        i = self.counts.get(kind, 0)
        self.counts[kind] = i + 1
        self.points += 1
        if not self.pinned:
            return 0
        p = self.pinned.get((kind, i))
        if p is None:
            return 0
        return p % n


class TimedChooser(Chooser):
    """A chooser that also notes, for every choice point, the simulated time it came at and how
    many options it had (``times[kind][number] = (t, n)``): the search's ``aim`` strategy places
    pins near the moments a run came close to a violation. A plain run never uses it (the broker
    inlines :meth:`Chooser.pick` for the plain chooser only), so it costs nothing when nobody asks.
    ``clock`` is set once the simulation exists (its environment's ``now``)."""

    __slots__ = ("clock", "times")

    def __init__(self, seed: int, pinned: Mapping[tuple[str, int], int] | None = None):
        super().__init__(seed, pinned)
        self.clock: Callable[[], float] = _zero
        self.times: dict[str, list[tuple[float, int]]] = {}

    def pick(self, kind: str, n: int) -> int:
        seen = self.times.get(kind)
        if seen is None:
            seen = self.times[kind] = []
        seen.append((self.clock(), n))
        return super().pick(kind, n)


def _zero() -> float:
    return 0.0
