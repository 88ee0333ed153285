"""The terminal side of the command line: colour and progress, for ``simroll.cli`` and the pytest plugin.

Colour follows the usual conventions: on when the stream is a terminal, off when it is piped
or redirected, when ``NO_COLOR`` is set to any non-empty value (https://no-color.org) or when
``TERM=dumb``; ``--color always|never`` overrides all of them.

Progress goes to standard error. On a terminal it is a bar (tqdm) with the total, the rate and
the time left; elsewhere (a CI log, a pipe) it is a plain line when the work has started and
then every few seconds, as TLC does. Every figure carries its unit ("runs", "runs/s", "s left").
The clock only paces the display: it never reaches a simulation or a search.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simroll.explore.parallel import Executor as _Executor
else:  # the runners (and multiprocessing) load only when a command runs many simulations
    _Executor = object

COLOR_MODES = ("auto", "always", "never")
PLAIN_EVERY = 5.0  # seconds between two plain progress lines (not a terminal)
TTY_EVERY = 0.1  # seconds between two redraws of the bar (a terminal)

_RED, _GREEN, _YELLOW, _BOLD, _RESET = "\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[1m", "\x1b[0m"


def is_terminal(stream: IO[str], environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``stream`` is a terminal that redraws a line in place (not ``TERM=dumb``)."""
    env = os.environ if environ is None else environ
    if env.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream: no terminal
        return False


def use_color(stream: IO[str], mode: str = "auto", environ: Mapping[str, str] | None = None) -> bool:
    """Whether to colour what is written to ``stream`` under ``--color mode``."""
    if mode == "always":
        return True
    if mode == "never":
        return False
    env = os.environ if environ is None else environ
    return not env.get("NO_COLOR") and is_terminal(stream, env)


# an invariant's line of the verdict table: "  name   VIOLATED (3x)  checked 12" (simroll.view.report)
_TABLE = re.compile(r"^(  [a-z][a-z0-9-]*\s+)(VIOLATED \(\d+x\)|held|vacuous)(?=\s|$)")
_LINE_COLORS = (
    ("FAILED", _RED + _BOLD),
    ("FOUND a violation", _RED + _BOLD),
    ("PARTIAL:", _YELLOW + _BOLD),
    ("OK: nothing violated, but", _YELLOW + _BOLD),
    ("OK:", _GREEN + _BOLD),
    ("no violation", _GREEN + _BOLD),
)
_WORD_COLORS = {"held": _GREEN, "vacuous": _YELLOW}


def paint(text: str, on: bool = True) -> str:
    """``text`` (a report of simroll's) with its verdicts coloured: violations red, holds green,
    vacuous and partial verdicts yellow. ``on=False`` returns it unchanged."""
    if not on:
        return text
    out = []
    for line in text.split("\n"):
        m = _TABLE.match(line)
        if m:
            word = m.group(2)
            color = _WORD_COLORS.get(word, _RED + _BOLD)
            line = f"{m.group(1)}{color}{word}{_RESET}{line[m.end() :]}"
        else:
            for prefix, color in _LINE_COLORS:
                if line.startswith(prefix):
                    line = f"{color}{line}{_RESET}"
                    break
        out.append(line)
    return "\n".join(out)


def _amount(x: float) -> str:
    """A count as it is (``3``), an amount of simulated time to a tenth (``12.5``)."""
    return f"{x:.1f}" if isinstance(x, float) else str(x)


def _figures(done: float, total: float | None, unit: str, elapsed: float, eta: bool) -> str:
    rate = done / elapsed if elapsed > 0 else 0.0
    text = f"{_amount(done)} of {_amount(total)} {unit}" if total else f"{_amount(done)} {unit}"
    if total:
        text += f" ({100 * min(done, total) / total:.0f}%)"
    text += f", {rate:.1f} {unit}/s"
    if eta and total and rate > 0 and done < total:
        text += f", {(total - done) / rate:.0f} s left"
    return text


class Progress:
    """Progress of a long command on ``stream`` (default standard error).

    ``update(done, phase=..., note=...)`` sets how much is done; ``close()`` clears the bar.
    ``total=None`` counts without a total (no percentage, no time left). ``eta=False`` leaves
    the time left out (a search that stops at the first violation has only an upper bound).
    ``label`` names the work in the plain lines (``simroll: sweep: 3 of 40 runs ...``); a
    ``phase`` given to ``update`` replaces it (``simroll: searching: ...``). Amounts may be
    counts (``int``) or amounts such as simulated seconds (``float``, shown to a tenth). Nothing
    is shown before ``after`` seconds (of ``clock``): a short run writes nothing.
    """

    def __init__(
        self,
        total: float | None,
        unit: str = "runs",
        label: str = "",
        stream: IO[str] | None = None,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        after: float = 0.0,
    ):
        self.total, self.unit, self.label = total, unit, label
        self.stream = sys.stderr if stream is None else stream
        self.tty = is_terminal(self.stream) if tty is None else tty
        self._clock = clock
        self._t0 = clock()
        self._after = after
        self._last: float | None = None
        self._bar: Any = None
        self._lock = threading.Lock()

    def update(self, done: float, phase: str | None = None, note: str = "", eta: bool = True) -> None:
        with self._lock:
            now = self._clock()
            if self._last is not None and now - self._last < (TTY_EVERY if self.tty else PLAIN_EVERY):
                return
            if now - self._t0 < self._after:
                return
            if self._last is None and not self.tty and not self._after and done < 2 and self.total != done:
                return  # the first plain line once the work is under way: a rate from two runs, not one
            self._last = now
            figures = _figures(done, self.total, self.unit, now - self._t0, eta)
            label = phase or self.label
            if self.tty:
                self._draw(done, label, figures, note)
            else:
                line = f"simroll: {label}: {figures}" + (f" | {note}" if note else "")
                print(line, file=self.stream, flush=True)

    def _draw(self, done: float, label: str, figures: str, note: str) -> None:
        if self._bar is None:
            from tqdm import tqdm  # type: ignore[import-untyped]  # no stubs; only on a terminal: 70 ms to import

            try:  # a terminal that reports no width (a fresh pty) would get an empty bar
                width = os.get_terminal_size(self.stream.fileno()).columns
            except (OSError, ValueError, AttributeError):
                width = 0
            self._bar = tqdm(
                total=self.total,
                file=self.stream,
                leave=False,
                mininterval=0,
                bar_format="{bar:20} {desc}" if self.total else "{desc}",
                **({"dynamic_ncols": True} if width > 0 else {"ncols": 120, "nrows": 24}),
            )
        self._bar.set_description_str(f"{label}: {figures}" + (f" | {note}" if note else ""), refresh=False)
        self._bar.n = min(done, self.total) if self.total else done
        self._bar.refresh()

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None


class RunProgress(Progress):
    """Progress of one long simulation (``simroll run``) in simulated seconds: called as
    ``progress(t, records)`` (the ``progress`` hook of :func:`simroll.run.run_scenario`). Nothing is
    shown before ``after`` seconds (default 2 on a terminal, 5 elsewhere): a short run adds nothing."""

    def __init__(
        self,
        total: float | None,
        label: str,
        stream: IO[str] | None = None,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        after: float | None = None,
    ):
        super().__init__(total, unit="sim s", label=label, stream=stream, tty=tty, clock=clock)
        self._after = (2.0 if self.tty else PLAIN_EVERY) if after is None else after

    def __call__(self, t: float, records: int) -> None:
        self.update(float(t), note=f"{records:,} trace records")

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class CountingExecutor(_Executor):
    """An executor (``simroll.explore.parallel``; one for the type checker, duck-typed at run time
    so ``simroll run`` does not load the runners) that reports progress as it goes: ``map`` runs
    the items in batches of a few per worker and calls ``progress.update`` after each batch. The
    results, in input order, are those of the wrapped executor."""

    def __init__(self, inner: Any, progress: Progress):
        self.inner, self.progress = inner, progress
        self.workers = inner.workers
        self.done = 0

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        out: list[Any] = []
        step = 1 if self.workers == 1 else 4 * self.workers
        for start in range(0, len(items), step):
            out.extend(self.inner.map(fn, items[start : start + step]))
            self.done += len(items[start : start + step])
            self.progress.update(self.done)
        return out

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> CountingExecutor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
