"""Mutation testing of the invariant checkers: do the tests notice a wrong comparison?

    python bench/mutate_invariants.py [--timeout S] [--only LINE[,LINE...]] [--list]

Makes one mutant at a time of ``simroll/check/invariants.py``:

- a comparison operator flipped: ``<`` <-> ``<=``, ``>`` <-> ``>=``, ``==`` <-> ``!=``;
- an integer literal off by one: ``n`` -> ``n + 1`` and ``n`` -> ``n - 1``;
- a boolean operator swapped: ``and`` <-> ``or``.

Operators and literals are found with :mod:`tokenize`, so strings, docstrings and comments
are never touched. Each mutant is written into a copy of the package in a temporary
directory (the working tree is never modified), and ``tests/test_invariants.py`` (with
``tests/conftest.py``; ``scenarios/`` is linked) runs against it with ``PYTHONPATH`` pointing
at the copy. A mutant is *killed* when the tests fail (or time out), and *survives* when they
pass. Mutants listed in :data:`EQUIVALENT` (reviewed by hand: no kernel trace can tell them from
the original, e.g. ``>`` -> ``>=`` in a running maximum, or how often a cache is refreshed) are
left out and listed with their reason. Prints the kill score, the equivalents and every survivor
(line, mutation, source line).

A benchmark of the tests, not a test: it asserts nothing. Exit status 0.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tokenize
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path("simroll/check/invariants.py")
TESTS = ("tests/test_invariants.py", "tests/conftest.py")
FLIP = {"<": "<=", "<=": "<", ">": ">=", ">=": ">", "==": "!=", "!=": "=="}
BOOL = {"and": "or", "or": "and"}

# Equivalent mutants: no trace the kernel can write tells them from the original (reviewed by
# hand). Keyed by the stripped source line and the mutation ("old -> new", or "old -> new #n" for
# the n-th occurrence of ``old`` on the line, or "*": every mutation of the line), so the list
# survives edits elsewhere; a key that no longer matches anything is reported as stale.
EQUIVALENT: dict[tuple[str, str], str] = {
    ("if closeness > self.near:", "> -> >="): "a running maximum: ties store the same value",
    ('if rec["wait"] > self._score:', "> -> >="): "a running maximum",
    ("if counted > self._score:", "> -> >="): "a running maximum",
    ("if took > self._score:", "> -> >="): "a running maximum",
    ("if c > self._score:", "> -> >="): "a running maximum",
    ("if end > reach:", "> -> >="): "adds end - reach = 0",
    ("self._prune_at = 64", "*"): "how often idle intervals are pruned, not which",
    ("self._prune_at = max(64, 2 * len(closed))", "*"): "how often idle intervals are pruned, not which",
    ("if len(closed) >= self._prune_at:", ">= -> >"): "how often idle intervals are pruned, not which",
    (
        "self._gen = 0  # changes when the taking engines or what their releases accept change",
        "*",
    ): "only compared for equality with itself later",
    ("self._gen += 1", "1 -> 2"): "any increase invalidates the cache",
    ("if best is None or v > best:", "> -> >="): "stores the same version again (and drops a cache)",
    ("if cached is not None and cached[0] == self._gen:", "0 -> 1"): "the cache never hits: recomputed, same value",
    ("if cached is not None and cached[0] == self._gen:", "0 -> (-1)"): "the cache never hits: recomputed, same value",
    (
        "if since is not None and t > since:  # an idle instant of no length counts for nothing",
        "> -> >=",
    ): "a zero-length interval ends at a take, so it never overlaps a later wait by more than a point",
    ("self._known.add((pending[1], pending[2]))", "*"): "_known only spares learning a pair twice",
    ("b = self.busy.get(e, 0) - 1", "0 -> 1"): "the default is unused: a done follows its engine's start",
    ("b = self.busy.get(e, 0) - 1", "0 -> (-1)"): "the default is unused: a done follows its engine's start",
    ("b = self.busy.get(e, 0) + 1", "0 -> 1"): "the default is unused: a recv follows its engine's start",
    ("b = self.busy.get(e, 0) + 1", "0 -> (-1)"): "the default is unused: a recv follows its engine's start",
    ("if b >= self.workers.get(e, 1):", "1 -> 2"): "the default is unused: a recv follows its engine's start",
    ("if b >= self.workers.get(e, 1):", "1 -> 0"): "the default is unused: a recv follows its engine's start",
    ("self.busy[e] = b if b > 0 else 0", "> -> >="): "b == 0 stores 0 either way",
    ("self.busy[e] = b if b > 0 else 0", "0 -> (-1) #1"): "b >= -1 always: a done follows its recv",
    (
        "if e != taker and start < hi and self.accepts(rel, version):",
        "< -> <=",
    ): "a closed interval ended by now (hi) and started before it ended",
    (
        "if e in self.release and e not in self.idle_since and b < self.workers[e]:",
        "< -> <=",
    ): "after a done, b <= workers - 1 (an engine never takes more than its workers)",
    (
        "if wait > self._score or wait > self.max_wait:",
        "> -> >=",
    ): "only computes the counted wait more often; counted <= wait, so ties change nothing",
}


@dataclass(frozen=True)
class Mutant:
    line: int
    col: int
    old: str
    new: str
    nth: int = 1  # which occurrence of ``old`` on its line (1-based)

    def apply(self, lines: list[str]) -> list[str]:
        out = list(lines)
        text = out[self.line - 1]
        assert text[self.col : self.col + len(self.old)] == self.old, (self, text)
        out[self.line - 1] = text[: self.col] + self.new + text[self.col + len(self.old) :]
        return out

    def describe(self) -> str:
        return f"line {self.line}: {self.old!r} -> {self.new!r}"

    def equivalent(self, lines: list[str]) -> tuple[tuple[str, str], str] | None:
        """The allow-list entry that says this mutant is equivalent, if any."""
        text = lines[self.line - 1].strip()
        for key in ((text, f"{self.old} -> {self.new} #{self.nth}"), (text, f"{self.old} -> {self.new}"), (text, "*")):
            if key in EQUIVALENT:
                return key, EQUIVALENT[key]
        return None


def _is_int_literal(text: str) -> bool:
    return text.replace("_", "").isdigit()


def mutants(source: str) -> list[Mutant]:
    out: list[Mutant] = []
    seen: dict[tuple[int, str], int] = {}  # (line, token) -> occurrences so far
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        (line, col), text = tok.start, tok.string
        if not (
            tok.type == tokenize.OP
            and text in FLIP
            or tok.type == tokenize.NAME
            and text in BOOL
            or tok.type == tokenize.NUMBER
            and _is_int_literal(text)
        ):
            continue
        nth = seen[(line, text)] = seen.get((line, text), 0) + 1
        if text in FLIP:
            out.append(Mutant(line, col, text, FLIP[text], nth))
        elif text in BOOL:
            out.append(Mutant(line, col, text, BOOL[text], nth))
        else:
            n = int(text.replace("_", ""))
            out.append(Mutant(line, col, text, str(n + 1), nth))
            out.append(Mutant(line, col, text, str(n - 1) if n > 0 else "(-1)", nth))
    return out


def prepare(workdir: Path) -> None:
    """A copy of the package and of the tests the mutants run against."""
    shutil.copytree(ROOT / "simroll", workdir / "simroll", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (workdir / "tests").mkdir()
    for t in TESTS:
        shutil.copy2(ROOT / t, workdir / t)
    (workdir / "scenarios").symlink_to(ROOT / "scenarios")
    shutil.copy2(ROOT / "pyproject.toml", workdir / "pyproject.toml")


def run_tests(workdir: Path, timeout: float) -> tuple[bool, float]:
    """True if the tests pass (the mutant survives)."""
    env = dict(os.environ, PYTHONPATH=str(workdir), PYTHONDONTWRITEBYTECODE="1")
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", TESTS[0]],
            cwd=workdir,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
        )
        passed = proc.returncode == 0
    except subprocess.TimeoutExpired:
        passed = False
    return passed, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per mutant's test run (default 120)")
    ap.add_argument("--only", default="", help="comma-separated line numbers: mutate only these lines")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = ap.parse_args(argv)
    source = (ROOT / TARGET).read_text(encoding="utf-8")
    lines = source.splitlines(keepends=True)
    todo = mutants(source)
    used = {e[0] for e in (m.equivalent(lines) for m in todo) if e is not None}
    if args.only:
        keep = {int(x) for x in args.only.split(",")}
        todo = [m for m in todo if m.line in keep]
    equivalent = [m for m in todo if m.equivalent(lines)]
    todo = [m for m in todo if not m.equivalent(lines)]
    if args.list:
        for m in todo:
            print(m.describe(), "|", lines[m.line - 1].strip())
        print(f"({len(equivalent)} equivalent mutants left out)")
        return 0
    with tempfile.TemporaryDirectory(prefix="simroll-mutants-") as tmp:
        workdir = Path(tmp)
        prepare(workdir)
        target = workdir / TARGET
        ok, secs = run_tests(workdir, args.timeout)
        if not ok:
            print("the tests fail on the unmutated code: nothing to measure", file=sys.stderr)
            return 2
        print(f"{len(todo)} mutants of {TARGET}; the tests take {secs:.1f} s unmutated", flush=True)
        survivors: list[Mutant] = []
        try:
            for k, m in enumerate(todo, 1):
                target.write_text("".join(m.apply(lines)), encoding="utf-8")
                survived, secs = run_tests(workdir, args.timeout)
                if survived:
                    survivors.append(m)
                print(
                    f"[{k}/{len(todo)}] {'SURVIVED' if survived else 'killed  '} {m.describe()} ({secs:.1f} s)",
                    flush=True,
                )
        finally:
            target.write_text(source, encoding="utf-8")
    killed = len(todo) - len(survivors)
    total = len(todo) + len(equivalent)
    print(
        f"\nkill score: {killed}/{len(todo)} = {100.0 * killed / max(1, len(todo)):.1f} % of the mutants "
        f"not known to be equivalent ({killed}/{total} = {100.0 * killed / max(1, total):.1f} % of all {total})"
    )
    print(f"equivalent (left out, see EQUIVALENT): {len(equivalent)}")
    for m in equivalent:
        key, why = m.equivalent(lines)  # type: ignore[misc]
        print(f"  {m.describe():40s} | {key[0][:60]:60s} | {why}")
    stale = [k for k in EQUIVALENT if k not in used]
    if stale:
        print("stale EQUIVALENT entries (match no mutant now):", *stale, sep="\n  ")
    if survivors:
        print("survivors:")
        for m in survivors:
            print(f"  {m.describe():40s} | {lines[m.line - 1].strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
