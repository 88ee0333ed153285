"""The one seam through which every nondeterministic decision of a run passes.

A run draws two kinds of things:

* *choice points* (:meth:`Chooser.pick`): which idle consumer takes a message,
  how much extra delay a message or a backfill row gets. Option 0 is always the
  default (the FIFO / longest-idle / no-delay behaviour), so a run with no pinned
  choices is the plain, documented behaviour, and a counterexample deviates
  from it only where it must. Choice points are numbered in the order they occur;
  ``pinned`` maps a number to the option taken there.
* *jitter* (:attr:`Chooser.rng`): arrival times, rows and operation mix of the
  workload, drawn from ``random.Random(seed)``.

The search supplies ``pinned`` (drawn by Hypothesis) and the seed; replay pins
the same. Nothing else in simroll is random.
"""

from __future__ import annotations

import random
from collections.abc import Mapping


class Chooser:
    """Seeded, FIFO-by-default chooser; ``pinned`` overrides individual choice points."""

    __slots__ = ("rng", "pinned", "points", "overridden")

    def __init__(self, seed: int, pinned: Mapping[int, int] | None = None):
        self.rng = random.Random(seed)
        self.pinned: dict[int, int] = dict(pinned or {})
        self.points = 0
        # (choice point, kind, options, option taken) for every pinned point that was reached
        self.overridden: list[tuple[int, str, int, int]] = []

    def pick(self, kind: str, n: int) -> int:
        """Choose one of ``n`` >= 2 options; 0 unless this choice point is pinned."""
        i = self.points
        self.points = i + 1
        p = self.pinned.get(i)
        if p is None:
            return 0
        choice = p % n
        self.overridden.append((i, kind, n, choice))
        return choice
