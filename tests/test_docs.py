"""Every sample output in README.md and docs/*.md is the output of its command today.

A sample is a fenced block after a directive comment::

    <!-- sample: simroll run scenarios/x.yaml | lines 1-8 | cut 100 -->
    ```
    $ simroll run scenarios/x.yaml
    ...what the command prints...
    ```

The test runs the command in a scratch directory that holds the repository's ``scenarios/``
(``simroll ...`` in-process through ``simroll.cli.main``; ``pytest ...`` as a process), keeps the
standard output, applies the selectors and compares the block with ``$ COMMAND`` and the result.
Selectors, applied in order: ``lines 1-8,20-22`` keeps those lines (1-based), with ``...`` where
lines were left out; ``from REGEX`` drops the lines before the first match, ``upto REGEX`` those
after it; ``cut N`` shortens longer lines to N characters, ending in `` ...``. A directive may
start with ``[given DEST=SRC, ...]``: files copied into the scratch directory first.

When a sample is stale because the output changed on purpose, regenerate every block with
``SIMROLL_REGEN_DOCS=1 python -m pytest -q tests/test_docs.py`` and review the diff.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SAMPLE = re.compile(
    r"<!-- sample(?: \[given (?P<given>[^\]]+)\])?: (?P<cmd>[^|]+?)(?: \| (?P<sel>.+?))? -->\n"
    r"(?P<fence>```[a-z]*\n)(?P<body>.*?)```",
    re.DOTALL,
)
REGEN = bool(os.environ.get("SIMROLL_REGEN_DOCS"))


def samples() -> list[tuple[Path, re.Match[str]]]:
    return [(doc, m) for doc in DOCS for m in SAMPLE.finditer(doc.read_text(encoding="utf-8"))]


def select(text: str, selectors: str | None) -> str:
    lines = text.rstrip("\n").split("\n")
    for sel in (s.strip() for s in (selectors or "").split(" | ") if s.strip()):
        op, _, arg = sel.partition(" ")
        if op == "lines":
            kept: list[str] = []
            last = 0
            for part in arg.split(","):
                a, _, b = part.partition("-")
                first, end = int(a), int(b or a)
                if first > last + 1:
                    kept.append("...")
                kept += lines[first - 1 : end]
                last = end
            if last < len(lines):
                kept.append("...")
            lines = kept
        elif op == "from":
            at = next(i for i, line in enumerate(lines) if re.search(arg, line))
            lines = lines[at:]
        elif op == "upto":
            at = next(i for i, line in enumerate(lines) if re.search(arg, line))
            lines = lines[: at + 1]
        elif op == "cut":
            n = int(arg)
            lines = [line if len(line) <= n else line[: n - 4] + " ..." for line in lines]
        else:
            raise AssertionError(f"unknown selector {sel!r}")
    return "\n".join(lines) + "\n"


def run_sample(cmd: str, given: str | None, scratch: Path) -> str:
    (scratch / "scenarios").symlink_to(ROOT / "scenarios")
    for pair in (given or "").split(","):
        if pair.strip():
            dest, src = (p.strip() for p in pair.split("="))
            (scratch / dest).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / src, scratch / dest)
    argv = shlex.split(cmd)
    here = Path.cwd()
    os.chdir(scratch)
    try:
        if argv[0] == "simroll":
            from simroll.cli import main

            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                main(argv[1:])
            return out.getvalue()
        if argv[0] == "pytest":
            env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
            p = subprocess.run(
                [sys.executable, "-m", *argv, "-p", "no:cacheprovider"], capture_output=True, text=True, env=env
            )
            return p.stdout.replace(str(scratch.resolve()), "/repo").replace(str(scratch), "/repo")
        raise AssertionError(f"a sample runs simroll or pytest, not {argv[0]!r}")
    finally:
        os.chdir(here)


ALL = samples()


@pytest.mark.slow
@pytest.mark.parametrize("doc,match", ALL, ids=[f"{d.relative_to(ROOT)}:{m['cmd'].strip()}"[:80] for d, m in ALL])
def test_a_sample_is_what_its_command_prints(doc, match, tmp_path, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("CI", "")  # no example database: a fresh search, as in a clean checkout
    cmd = match["cmd"].strip()
    shown = f"$ {cmd}\n" + select(run_sample(cmd, match["given"], tmp_path), match["sel"])
    if REGEN and shown != match["body"]:
        text = doc.read_text(encoding="utf-8")
        # the blocks of one file are regenerated one test at a time: find this one again by its directive
        again = next(
            m for m in SAMPLE.finditer(text) if m.group(0).split("\n", 1)[0] == match.group(0).split("\n", 1)[0]
        )
        start, end = again.span("body")
        doc.write_text(text[:start] + shown + text[end:], encoding="utf-8")
        return
    assert shown == match["body"], (
        f"{doc.relative_to(ROOT)}: the sample of `{cmd}` is stale; regenerate it with "
        "SIMROLL_REGEN_DOCS=1 python -m pytest -q tests/test_docs.py"
    )


def test_the_selectors():
    text = "\n".join(f"l{i}" for i in range(1, 11)) + "\n"
    assert select(text, "lines 1-2,5") == "l1\nl2\n...\nl5\n...\n"
    assert select(text, "lines 1-10") == text
    assert select(text, "from ^l4 | upto l6") == "l4\nl5\nl6\n"
    assert select("abcdefghij\nabc\n", "cut 8") == "abcd ...\nabc\n"
    with pytest.raises(AssertionError):
        select(text, "grep x")


def test_every_directive_is_well_formed():
    """A directive whose block does not parse would be skipped silently: count them instead."""
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        assert text.count("<!-- sample") == len(list(SAMPLE.finditer(text))), doc


def test_the_docs_link_to_files_that_exist():
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text(encoding="utf-8")):
            if not target.startswith("http"):
                assert (doc.parent / target).exists(), f"{doc.relative_to(ROOT)}: link to {target}"


README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    return README.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_readme_opens_with_the_two_commands_ci_runs():
    block = README.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line for line in block.splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2
    assert commands[0] == "pip install -e . && simroll run scenarios/lost_dual_writes.yaml"
    assert commands[1].startswith("pip install -e '.[test") and commands[1].endswith(" && python -m pytest -q")
    assert commands[1] in (ROOT / ".ci" / "run").read_text().splitlines()  # CI runs the README's command
    assert README.index("```sh") < README.index("\n## ")  # before any section


def test_the_quick_start_is_short_and_shows_a_run_a_fuzz_and_ci():
    quick = _section("Quick start")
    assert len(quick.splitlines()) < 80
    for shown in ("$ simroll run ", "$ simroll fuzz ", "$ simroll init ", "pytest tests/upgrade"):
        assert shown in quick, shown


def test_the_glossary_defines_the_words_the_docs_use():
    glossary = _section("Glossary")
    terms = re.findall(r"^- \*\*([^*]+)\*\*:", glossary, re.M)
    assert terms == ["release", "engine", "service", "pattern", "invariant", "choice point", "the founding thread"]
