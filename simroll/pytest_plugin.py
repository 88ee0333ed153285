"""A pytest plugin: scenario files in a project's tests become test items.

A YAML file whose top level has both ``releases:`` and ``expect:`` is collected, as one item
named after the scenario's ``name`` (``tests/x.yaml::lost_dual_writes``) and marked ``simroll``
(``-m simroll`` selects scenario items only, ``-m "not simroll"`` leaves them out). A file that
is not a valid scenario is a collection error naming the file, the place and what was expected.

The item fuzzes the design (``simroll.fuzz``) and passes when the outcome matches the
``expect`` line: ``holds`` (nothing found within the budget) or ``violates <invariant>``
(that invariant is broken: the search looks for that one only, and a violation of another is
not an answer). A failing item shows the counterexample's steps, then the one-line cause and
the command that replays the file it wrote.

``expect: holds`` also fails when an invariant held only vacuously in the scenario's
own run (it had nothing to check: a safe verdict that proves nothing), unless the
scenario says ``allow_vacuous: true``.

What simroll wrote is not collected: replays of counterexamples (``simroll fuzz``, this plugin)
and of the safety matrix (``simroll matrix --out``), known by their first line, and the files
matching the globs ``.simroll/*``, ``*.counterexample.yaml`` and ``*.replays/*``. The ini option
``simroll_ignore`` adds globs; ``simroll_collect`` names globs collected all the same. A glob
matches a path relative to the rootdir, at any depth (``*.replays/*`` matches
``a/m.replays/x.yaml``). A file named on the command line is always collected.

Options: ``--simroll-max-examples N`` (ini ``simroll_max_examples``; default 200, the budget of
``simroll fuzz``), ``--simroll-seed S`` (default 0), ``--simroll-out DIR`` (default
``.simroll/counterexamples`` under the rootdir; simroll's own output, replaced on every run).
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any

import pytest

_TOP_KEY = re.compile(r"^(releases|expect):", re.MULTILINE)
# the first line of the files simroll writes: replays, never designs (simroll.explore.search, .matrix)
_GENERATED = ("# Counterexample found by `simroll fuzz", "# Replay of the safety-matrix cell")
DEFAULT_IGNORE = (".simroll/*", "*.counterexample.yaml", "*.replays/*")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("simroll", "simroll scenario files")
    group.addoption(
        "--simroll-max-examples",
        type=int,
        default=None,
        help="simulations the search may generate per scenario file (default 200, as simroll fuzz)",
    )
    group.addoption("--simroll-seed", type=int, default=0, help="seed of the search")
    group.addoption("--simroll-out", default=None, help="directory for counterexample replay files")
    parser.addini(
        "simroll_max_examples", "simulations the search may generate per scenario file (default: simroll fuzz's)"
    )
    parser.addini(
        "simroll_ignore",
        "globs of scenario files not to collect, besides " + ", ".join(DEFAULT_IGNORE) + " and simroll's replays",
        type="linelist",
    )
    parser.addini(
        "simroll_collect", "globs of files to collect even if ignored (replays, counterexamples)", type="linelist"
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "simroll: a scenario file collected by simroll's plugin (fuzzed per expect:)")


def _matches(rel: str, globs: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(rel, g) or fnmatch.fnmatchcase(rel, "*/" + g) for g in globs)


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def _named_on_command_line(path: Path, config: pytest.Config) -> bool:
    here = path.resolve()
    base = Path(config.invocation_params.dir)
    return any((base / arg.split("::", 1)[0]).resolve() == here for arg in config.args)


def _looks_like_scenario(path: Path) -> bool:
    if path.suffix not in (".yaml", ".yml"):
        return False
    try:
        head = path.read_text(encoding="utf-8", errors="replace")[:1_000_000]
    except OSError:
        return False
    return {m.group(1) for m in _TOP_KEY.finditer(head)} == {"releases", "expect"}


def _is_generated(path: Path) -> bool:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.readline().startswith(_GENERATED)


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    if not _looks_like_scenario(file_path):
        return None
    config = parent.config
    rel = _relative(file_path, config.rootpath)
    wanted = _matches(rel, config.getini("simroll_collect")) or _named_on_command_line(file_path, config)
    if not wanted:
        if _matches(rel, [*DEFAULT_IGNORE, *config.getini("simroll_ignore")]) or _is_generated(file_path):
            return None
    return ScenarioFile.from_parent(parent, path=file_path)


class ScenarioFile(pytest.File):
    """A scenario file: one item, named after the scenario. An invalid file fails collection."""

    def collect(self):
        from simroll.errors import SimrollError
        from simroll.scenario.load import load_scenario

        try:
            scenario = load_scenario(self.path)
        except SimrollError as e:
            raise self.CollectError(f"simroll: {e}") from None
        if scenario.expect is None:
            raise self.CollectError(
                f"simroll: {self.path}: expect: missing: add 'expect: holds' or 'expect: violates <invariant>'"
            )
        item = ScenarioItem.from_parent(self, name=scenario.name)
        item.scenario = scenario
        item.add_marker("simroll")
        yield item


class ScenarioFailure(Exception):
    """The design did not meet its ``expect`` line."""


def _cause(result: Any, invariant: str | None) -> str:
    """The one-line cause of the first violation of ``invariant`` in ``result`` (a RunResult):
    its ``why`` where the report gives one, else the first line of its message."""
    violations = result.to_json().get("violations", [])
    first = next((v for v in violations if v.get("invariant") == invariant), violations[0] if violations else None)
    if first is None:
        return f"{invariant} violated"
    text = first.get("why") or str(first.get("message", "")).split("\n", 1)[0]
    return " ".join(text.split())


class ScenarioItem(pytest.Item):
    """Fuzz one scenario file and compare with its ``expect`` line."""

    scenario: Any = None

    def runtest(self) -> None:
        from simroll.cli import FUZZ_BUDGET
        from simroll.explore.search import fuzz, save_counterexample, search_target
        from simroll.run import run_scenario

        config = self.config
        budget = (
            config.getoption("--simroll-max-examples") or int(config.getini("simroll_max_examples") or 0) or FUZZ_BUDGET
        )
        seed = config.getoption("--simroll-seed")
        out_dir = Path(config.getoption("--simroll-out") or Path(config.rootpath) / ".simroll" / "counterexamples")
        scenario = self.scenario
        wanted = search_target(scenario)  # None for holds
        if wanted is None and not scenario.allow_vacuous:
            vacuous = run_scenario(scenario, keep_trace=False).vacuous
            if vacuous:
                raise ScenarioFailure(
                    f"expected every invariant to hold, but {', '.join(vacuous)} had nothing to check in the "
                    f"scenario's own run (vacuous: a verdict that proves nothing; `simroll run {self.path}` shows "
                    "what the run exercised). Make the scenario exercise it, or add 'allow_vacuous: true' "
                    "if that is by design"
                )
        found = fuzz(scenario, max_examples=budget, seed=seed, invariant=wanted)
        if found.found == (wanted is not None) and found.invariant == wanted:
            return  # holds and nothing found, or the expected invariant broken
        if not found.found:
            raise ScenarioFailure(
                f"expected {wanted} to be violated, but the search found no violation of it in "
                f"{found.examples} runs (seed {seed}; raise --simroll-max-examples to search longer)"
            )
        stem = self.path.name.rsplit(".", 1)[0]
        replay = save_counterexample(found, out_dir / f"{stem}.counterexample.yaml", str(self.path), overwrite=True)
        expected = "every invariant to hold" if wanted is None else f"{wanted} to be violated"
        raise ScenarioFailure(
            "\n".join(
                [
                    f"expected {expected}, but the search found a violation of {found.invariant} "
                    f"after {found.examples} runs:"
                ]
                + [f"  {line}" for line in found.steps]
                + [f"why: {_cause(found.result, found.invariant)}", f"replay: simroll run {replay}"]
            )
        )

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ScenarioFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, self.nodeid  # the failure's header: two files may share a scenario name
