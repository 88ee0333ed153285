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
pass. Prints the kill score and every survivor (line, mutation, source line).

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


@dataclass(frozen=True)
class Mutant:
    line: int
    col: int
    old: str
    new: str

    def apply(self, lines: list[str]) -> list[str]:
        out = list(lines)
        text = out[self.line - 1]
        assert text[self.col:self.col + len(self.old)] == self.old, (self, text)
        out[self.line - 1] = text[:self.col] + self.new + text[self.col + len(self.old):]
        return out

    def describe(self) -> str:
        return f"line {self.line}: {self.old!r} -> {self.new!r}"


def _is_int_literal(text: str) -> bool:
    return text.replace("_", "").isdigit()


def mutants(source: str) -> list[Mutant]:
    out: list[Mutant] = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        (line, col), text = tok.start, tok.string
        if tok.type == tokenize.OP and text in FLIP:
            out.append(Mutant(line, col, text, FLIP[text]))
        elif tok.type == tokenize.NAME and text in BOOL:
            out.append(Mutant(line, col, text, BOOL[text]))
        elif tok.type == tokenize.NUMBER and _is_int_literal(text):
            n = int(text.replace("_", ""))
            out.append(Mutant(line, col, text, str(n + 1)))
            out.append(Mutant(line, col, text, str(n - 1) if n > 0 else "(-1)"))
    return out


def prepare(workdir: Path) -> None:
    """A copy of the package and of the tests the mutants run against."""
    shutil.copytree(ROOT / "simroll", workdir / "simroll",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
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
            cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout)
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
    if args.only:
        keep = {int(x) for x in args.only.split(",")}
        todo = [m for m in todo if m.line in keep]
    if args.list:
        for m in todo:
            print(m.describe(), "|", lines[m.line - 1].strip())
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
                print(f"[{k}/{len(todo)}] {'SURVIVED' if survived else 'killed  '} {m.describe()} ({secs:.1f} s)",
                      flush=True)
        finally:
            target.write_text(source, encoding="utf-8")
    killed = len(todo) - len(survivors)
    print(f"\nkill score: {killed}/{len(todo)} = {100.0 * killed / max(1, len(todo)):.1f} %")
    if survivors:
        print("survivors:")
        for m in survivors:
            print(f"  {m.describe():40s} | {lines[m.line - 1].strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
