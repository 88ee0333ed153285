"""What Jupyter shows for simroll's objects: styled HTML fragments, one function a type.

``import simroll`` registers each function in :mod:`simroll._display` under the type it draws;
the type's ``_repr_html_`` asks that registry, so the lower layers never import this module.
Every fragment is one ``<div class="simroll">`` that carries its own ``<style>`` (a notebook
loads no stylesheet of ours): verdicts in green (held), red (violated) and amber (vacuous),
event text left-aligned (Jupyter's own CSS right-aligns table cells), long tables cut short
with a line that says how many rows were left out.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING, Any

from simroll.check.explain import explain
from simroll.scenario.load import dump_scenario
from simroll.view.html import STYLE, chain_table, summary_html

if TYPE_CHECKING:
    from simroll.explore.matrix import Matrix
    from simroll.explore.search import FuzzResult
    from simroll.explore.sweep import Sweep
    from simroll.run import RunResult
    from simroll.scenario.spec import Scenario

MAX_ROWS = 60  # table rows a notebook view shows before "... N more"


def _frame(title: str, badge: str, body: list[str]) -> str:
    return f'<div class="simroll">{STYLE}<h1>{title} {badge}</h1>' + "\n".join(body) + "</div>"


def _badge(kind: str, text: str) -> str:
    return f'<span class="badge {kind}">{escape(text)}</span>'


def _kv(rows: list[tuple[str, str]]) -> str:
    """A two-column table of already escaped values."""
    return '<table class="kv">' + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def _more(n: int, what: str) -> str:
    return f'<p class="more">... and {n} more {what}</p>' if n > 0 else ""


def run_html(result: RunResult) -> str:
    """A :class:`~simroll.run.RunResult`: verdict, figures, invariants, each violation's why and chain."""
    return summary_html(result, style=True)


def fuzz_html(found: FuzzResult) -> str:
    """A :class:`~simroll.explore.search.FuzzResult`: what was searched, what was found, the steps of
    the counterexample, and why it breaks (with its chain)."""
    if found.found:
        badge = _badge("bad", f"found: {found.invariant}")
    elif found.interrupted:
        badge = _badge("vac", "interrupted: nothing found so far")
    else:
        badge = _badge("ok", f"nothing found in {found.examples} simulations")
    rows = [
        ("scenario", escape(found.scenario.name)),
        ("searched for", escape(found.target or "any invariant")),
        ("seed of the search", str(found.seed)),
        ("simulations", f"{found.examples:,}"),
        ("search time", f"{found.search_seconds:.1f} s"),
    ]
    if found.found:
        rows += [
            ("first violation after", f"{found.first_violation_after} simulations"),
            ("shrink time", f"{found.shrink_seconds:.1f} s"),
        ]
        if found.trace_sha256:
            rows.append(("trace sha256", f"<code>{escape(found.trace_sha256)}</code>"))
    if found.out:
        rows.append(("replay", f"<code>simroll run {escape(found.out)}</code>"))
    body = [_kv(rows)]
    body += [f'<p class="warn">{escape(w)}</p>' for w in found.warnings]
    if found.found and found.result is not None:
        body.append("<h2>Counterexample</h2>")
        body.append(
            '<table class="steps"><tr><th>step</th></tr>'
            + "".join(f'<tr><td class="ev">{escape(s)}</td></tr>' for s in found.steps[:MAX_ROWS])
            + "</table>"
            + _more(len(found.steps) - MAX_ROWS, "steps")
        )
        v = next((v for v in found.result.violations if v.invariant == found.invariant), None)
        if v is not None:
            why = explain(found.result.trace(), v)
            body.append(f'<p class="why"><b>why:</b> {escape(why.why)}</p>')
            if why.chain:
                body.append(chain_table(why, v.event, MAX_ROWS))
    return _frame(f"simroll fuzz: {escape(found.scenario.name)}", badge, body)


def _num(x: float | None, unit: str = "") -> str:
    return "–" if x is None else f"{x:,.3f}{unit}" if isinstance(x, float) else f"{x:,}{unit}"


def sweep_html(sweep: Sweep) -> str:
    """A :class:`~simroll.explore.sweep.Sweep`: one row a cell, its parameter values, what it violated
    (red) or that it held (green), and its worst figures over the seeds."""
    bad = sum(1 for c in sweep.cells if c.violated)
    badge = (
        _badge("bad", f"{bad} of {len(sweep.cells)} cells violated")
        if bad
        else _badge("ok", f"all {len(sweep.cells)} cells held")
    )
    seeds = f"{len(sweep.seeds)} seed{'s' if len(sweep.seeds) != 1 else ''}"
    head = "".join(f"<th>{escape(p.key)}</th>" for p in sweep.params)
    rows = []
    for c in sweep.cells[:MAX_ROWS]:
        labels = "".join(f"<td><code>{escape(x)}</code></td>" for x in sweep.labels(c))
        verdict = (
            f'<td class="bad">{escape(", ".join(c.violated))} ({c.violated_runs}/{len(c.runs)} runs)</td>'
            if c.violated
            else '<td class="ok">held</td>'
        )
        figures = "".join(
            f'<td class="num">{_num(c.worst(m), " s" if m.endswith(("wait", "time")) else "")}</td>'
            for m in ("worst_wait", "p99_wait", "events", "sim_time")
        )
        rows.append(f"<tr>{labels}{verdict}{figures}</tr>")
    table = (
        f"<table><tr>{head}<th>verdict</th><th>worst wait</th><th>p99 wait</th><th>events</th>"
        "<th>simulated time</th></tr>" + "".join(rows) + "</table>"
    )
    body = [
        f"<p>{len(sweep.cells)} cells x {seeds}; figures are the worst over the seeds. "
        f"Source: <code>{escape(sweep.source)}</code></p>",
        table,
        _more(len(sweep.cells) - MAX_ROWS, "cells"),
    ]
    return _frame(f"simroll sweep: {escape(sweep.scenario)}", badge, body)


def matrix_html(matrix: Matrix) -> str:
    """A :class:`~simroll.explore.matrix.Matrix`: per delivery model, designs x families, each cell
    green (holds), red (the invariants violated; "(fuzz)" when the search found it) or grey (n/a)."""
    cells = [c for r in matrix.rows for c in r.cells]
    bad = sum(1 for c in cells if c.status == "violated")
    badge = _badge("bad", f"{bad} of {len(cells)} cells violated") if bad else _badge("ok", "every cell holds")
    body = [f"<p>Source: <code>{escape(matrix.source)}</code></p>"]
    for d in matrix.deliveries:
        head = "".join(f"<th>{escape(f)}</th>" for f in matrix.families)
        rows = []
        for row in matrix.rows[:MAX_ROWS]:
            by_family = {c.family: c for c in row.cells if c.delivery == d}
            tds = []
            for f in matrix.families:
                c = by_family.get(f)
                if c is None or c.status == "n/a":
                    tds.append('<td class="na">–</td>')
                elif c.status == "holds":
                    tds.append('<td class="ok">holds</td>')
                else:
                    tds.append(
                        f'<td class="bad">{escape(", ".join(c.violated))}{" (fuzz)" if c.by == "fuzz" else ""}</td>'
                    )
            rows.append(f"<tr><th><code>{escape(row.stem)}</code></th>{''.join(tds)}</tr>")
        body.append(f"<h2>bus.delivery: {escape(d)}</h2>")
        body.append(f"<table><tr><th>design</th>{head}</tr>" + "".join(rows) + "</table>")
        body.append(_more(len(matrix.rows) - MAX_ROWS, "designs"))
    return _frame("simroll matrix", badge, body)


def _plan_step(step: Any) -> str:
    data = step.model_dump(mode="json", exclude_defaults=True, by_alias=True)
    return ", ".join(f"{k}: {v}" for k, v in data.items())


def scenario_html(s: Scenario) -> str:
    """A :class:`~simroll.scenario.spec.Scenario`: its releases, engines, plan and invariants, and the
    whole scenario as YAML (folded)."""
    invariants = list(s.invariants.enabled())
    engines = s.engine_list()
    engine_text = ", ".join(f"{escape(e.name)} ({escape(e.release)})" for e in engines[:MAX_ROWS]) + (
        f", ... {len(engines) - MAX_ROWS} more" if len(engines) > MAX_ROWS else ""
    )
    rows = [
        ("seed", str(s.seed)),
        ("delivery", escape(s.bus.delivery)),
        ("releases", ", ".join(f"<code>{escape(r)}</code>" for r in s.releases)),
        ("engines", engine_text),
        ("invariants", ", ".join(f"<code>{escape(n)}</code>" for n in invariants) or "none"),
    ]
    plan = "".join(
        f'<tr><td class="num">{k}</td><td class="ev">{escape(_plan_step(st))}</td></tr>'
        for k, st in enumerate(s.plan[:MAX_ROWS])
    )
    body = []
    if s.description:
        body.append(f"<p>{escape(s.description)}</p>")
    body.append(_kv(rows))
    body.append("<h2>Plan</h2>")
    body.append(
        f'<table class="steps"><tr><th>step</th><th>what</th></tr>{plan}</table>'
        if s.plan
        else "<p>The plan has no steps.</p>"
    )
    body.append(_more(len(s.plan) - MAX_ROWS, "steps"))
    body.append(f"<details><summary>as YAML</summary><pre>{escape(dump_scenario(s))}</pre></details>")
    size = f"{len(s.releases)} release{'s' if len(s.releases) != 1 else ''}, {len(s.plan)} plan steps"
    return _frame(f"scenario {escape(s.name)}", _badge("info", size), body)


__all__ = ["MAX_ROWS", "fuzz_html", "matrix_html", "run_html", "scenario_html", "sweep_html"]
