"""A pytest plugin: scenario files in a project's tests become test items.

A YAML file whose top level has both ``releases:`` and ``expect:`` is collected. Its
item fuzzes the design (``simroll.fuzz``) and passes when the outcome matches the
``expect`` line: ``holds`` (nothing found within the budget) or ``violates
<invariant>`` (that invariant is broken: the search looks for that one only, and a
violation of another is not an answer). A failing item shows the counterexample's
steps and the path of the replay file it wrote (``simroll run PATH`` replays it).

``expect: holds`` also fails when an invariant held only vacuously in the scenario's
own run (it had nothing to check: a safe verdict that proves nothing), unless the
scenario says ``allow_vacuous: true``.

Options: ``--simroll-max-examples N`` (ini ``simroll_max_examples``, default 100),
``--simroll-seed S`` (default 0), ``--simroll-out DIR`` (default
``.simroll/counterexamples`` under the rootdir; simroll's own output, replaced on
every run).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

_TOP_KEY = re.compile(r"^(releases|expect):", re.MULTILINE)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("simroll", "simroll scenario files")
    group.addoption(
        "--simroll-max-examples", type=int, default=None, help="simulations the search may generate per scenario file"
    )
    group.addoption("--simroll-seed", type=int, default=0, help="seed of the search")
    group.addoption("--simroll-out", default=None, help="directory for counterexample replay files")
    parser.addini("simroll_max_examples", "simulations the search may generate per scenario file", default="100")


def _looks_like_scenario(path: Path) -> bool:
    if path.suffix not in (".yaml", ".yml") or path.name.endswith(".counterexample.yaml"):
        return False
    try:
        head = path.read_text(encoding="utf-8", errors="replace")[:1_000_000]
    except OSError:
        return False
    return {m.group(1) for m in _TOP_KEY.finditer(head)} == {"releases", "expect"}


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    if _looks_like_scenario(file_path):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioFile(pytest.File):
    """A scenario file: one item."""

    def collect(self):
        yield ScenarioItem.from_parent(self, name=self.path.name)


class ScenarioFailure(Exception):
    """The design did not meet its ``expect`` line."""


class ScenarioItem(pytest.Item):
    """Fuzz one scenario file and compare with its ``expect`` line."""

    def runtest(self) -> None:
        from simroll.errors import SimrollError
        from simroll.explore.search import fuzz, save_counterexample, search_target
        from simroll.run import run_scenario
        from simroll.scenario.load import load_scenario

        config = self.config
        budget = config.getoption("--simroll-max-examples") or int(config.getini("simroll_max_examples"))
        seed = config.getoption("--simroll-seed")
        out_dir = Path(config.getoption("--simroll-out") or Path(config.rootpath) / ".simroll" / "counterexamples")
        try:
            scenario = load_scenario(self.path)
        except SimrollError as e:
            raise ScenarioFailure(str(e)) from None
        if scenario.expect is None:
            raise ScenarioFailure(
                f"{self.path}: expect: missing: add 'expect: holds' or 'expect: violates <invariant>'"
            )
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
                + [f"replay: simroll run {replay}"]
            )
        )

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ScenarioFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, f"scenario {self.name}"
