"""A run as HTML: a fragment for Jupyter (``RunResult._repr_html_``) and a self-contained report page.

The page (``simroll run --html FILE``) has the summary, the invariants, the operator's
steps, each violation with its causal chain, the plots (embedded as base64 PNG or inline
SVG) and the scenario. It loads nothing from anywhere: no scripts, no fonts, no images
by URL, so a CI job can keep it as an artifact and open it offline.
"""

from __future__ import annotations

import base64
import os
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simroll._io import atomic_write_bytes, check_new_file
from simroll.check.explain import Explanation, Link, describe, explain, step_text
from simroll.errors import UsageError
from simroll.scenario.load import dump_scenario
from simroll.view.plots import availability, explaining_plots, figure_bytes, plot_order
from simroll.view.report import VACUOUS_WHY

if TYPE_CHECKING:
    from simroll.run import RunResult

_CSS = """
div.simroll { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; font-size: 14px;
  color: #1d1d1d; max-width: 1400px; line-height: 1.4; }
div.simroll h1 { font-size: 20px; margin: 0 0 6px 0; } div.simroll h2 { font-size: 16px; margin: 18px 0 6px 0; }
div.simroll h3 { font-size: 14px; margin: 12px 0 4px 0; }
div.simroll table { border-collapse: collapse; margin: 4px 0 8px 0; border: none; font-size: 13px; }
div.simroll td, div.simroll th { border: 1px solid #d0d0d0; padding: 3px 8px; text-align: left;
  vertical-align: top; white-space: normal; }
div.simroll th { background: #f3f3f3; font-weight: 600; }
div.simroll tr:nth-child(odd), div.simroll tr:hover { background: transparent; }
div.simroll td.num { text-align: right; font-variant-numeric: tabular-nums; }
div.simroll td.ev, div.simroll td.role { text-align: left; }
div.simroll td.role { color: #c62828; white-space: nowrap; }
div.simroll .ok { color: #1a7f37; font-weight: 600; } div.simroll .bad { color: #c62828; font-weight: 600; }
div.simroll td.ok { background: #e6f4ea; } div.simroll td.bad { background: #fdecea; }
div.simroll td.na { color: #888; text-align: center; }
div.simroll .badge { display: inline-block; padding: 2px 10px; border-radius: 10px; color: white; font-weight: 600;
  font-size: 13px; vertical-align: middle; }
div.simroll .badge.ok { background: #1a7f37; color: white; }
div.simroll .badge.bad { background: #c62828; color: white; }
div.simroll .vac { color: #9a6700; font-weight: 600; } div.simroll .badge.vac { background: #9a6700; color: white; }
div.simroll .badge.info { background: #44617b; color: white; }
div.simroll code, div.simroll .mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace;
  font-size: 12.5px; }
div.simroll tr.hit td { background: #fdecea; font-weight: 600; }
div.simroll .why { margin: 4px 0; padding: 6px 10px; border-left: 4px solid #c62828; background: #fff6f5; }
div.simroll .msg { margin: 4px 0; color: #444; }
div.simroll .more, div.simroll .warn { color: #666; font-style: italic; }
div.simroll figure { margin: 10px 0 18px 0; }
div.simroll figure img, div.simroll figure svg { max-width: 100%; height: auto; }
div.simroll figcaption { color: #555; font-size: 13px; }
div.simroll pre { background: #f7f7f7; padding: 8px; overflow-x: auto; text-align: left; }
"""
# the CSS as a tag inside a fragment: a notebook loads no stylesheet of ours
STYLE = f"<style>{_CSS}</style>"

_CAPTIONS = {
    "release_timeline": "Which release each engine runs when; graceful stops, kills, operator steps and "
    "violations marked.",
    "queue_depth": "Messages waiting to be taken, per engine backlog and per message version, and the wait "
    "of every message taken.",
    "engine_load": "Utilisation of each engine over time, and the messages each took, by version.",
    "sequence_diagram": "The causal chain of the first violation (red) among the records around it.",
    "field_values": "Where the field of the first lost write lives over time; red crosses are stale reads.",
    "availability": "Client operations issued, completed and failed over time, completions per time bin, and "
    "the intervals in which none completed (the longest in red).",
}


def chain_table(why: Explanation, hit: int, max_rows: int) -> str:
    """The chain of an explanation as an HTML table (time, record, role, event), the violating record
    (``hit``) highlighted, the middle elided past ``max_rows``."""
    chain = list(why.chain)
    shown: list[Link | None] = list(chain)
    if len(chain) > max_rows:
        shown = [*chain[:2], None, *chain[-(max_rows - 3) :]]
    rows = []
    for link in shown:
        if link is None:
            rows.append(f'<tr><td colspan="4">... {len(chain) - max_rows + 1} more events ...</td></tr>')
            continue
        r = link.rec
        cls = ' class="hit"' if r["i"] == hit else ""
        rows.append(
            f'<tr{cls}><td class="mono">{r["t"]:.3f}</td><td class="mono">#{r["i"]}</td>'
            f'<td class="role">{escape(link.role)}</td><td class="ev">{escape(link.text)}</td></tr>'
        )
    return (
        '<table class="chain"><tr><th>t (s)</th><th>record</th><th>role</th><th>event</th></tr>'
        + "".join(rows)
        + "</table>"
    )


def sql_around(
    log: list[dict[str, Any]],
    why: Explanation,
    hit: int,
    engines: tuple[str, ...] | list[str] = (),
    per_engine: int = 12,
) -> list[tuple[str, list[dict[str, Any]], int]]:
    """The statements each engine of a violation ran around its causal chain: per engine named by the
    chain (or the violation), in the order they first appear, the statements it issued from the
    chain's first record up to the violating record ``hit`` (a statement's ``record`` is the trace
    record it precedes), and before that those of the handlings (engine, message) in the chain; the
    last ``per_engine`` of them, and how many earlier ones are left out."""
    first = min((link.rec["i"] for link in why.chain), default=hit)
    handlings = {(link.rec.get("engine"), link.rec.get("msg")) for link in why.chain if "msg" in link.rec}
    who: list[str] = []
    for name in [*(link.rec.get("engine") for link in why.chain), *engines]:
        if isinstance(name, str) and name not in who:
            who.append(name)
    out = []
    for name in who:
        ran = [
            e
            for e in log
            if e["engine"] == name and e["record"] <= hit and (e["record"] >= first or (name, e["msg"]) in handlings)
        ]
        if ran:
            out.append((name, ran[-per_engine:], max(0, len(ran) - per_engine)))
    return out


def sql_html(log: list[dict[str, Any]], why: Explanation, hit: int, engines: tuple[str, ...] | list[str] = ()) -> str:
    """:func:`sql_around` as HTML: a table per engine (time, message, statement, parameters, outcome);
    a statement that made a record of the chain is highlighted."""
    chain = {link.rec["i"]: link.rec for link in why.chain}
    parts = ["<h4>SQL around it, per engine</h4>"]
    around = sql_around(log, why, hit, engines)
    if not around:
        return '<p class="more">No engine of the chain ran a statement between its first record and the violation.</p>'
    for name, ran, earlier in around:
        rows = []
        if earlier:
            rows.append(f'<tr><td colspan="5" class="more">... {earlier} earlier statements ...</td></tr>')
        for e in ran:
            made = chain.get(e["record"])
            mine = made is not None and made.get("engine") == name and e["outcome"] != "ok"
            cls = ' class="hit"' if mine else ""
            params = ", ".join(f"{k}={v!r}" for k, v in (e["params"] or {}).items())
            msg = "" if e["msg"] is None else f"m{e['msg']}"
            rows.append(
                f'<tr{cls}><td class="mono">{e["t"]:.3f}</td><td class="mono">{msg}</td>'
                f'<td><code>{escape(e["sql"])}</code></td><td class="mono">{escape(params)}</td>'
                f"<td>{escape(e['outcome'])}</td></tr>"
            )
        parts.append(
            f'<p><b>{escape(name)}</b></p><table class="sql"><tr><th>t (s)</th><th>message</th><th>statement</th>'
            "<th>parameters</th><th>outcome</th></tr>" + "".join(rows) + "</table>"
        )
    return "\n".join(parts)


def summary_html(result: RunResult, max_violations: int = 3, max_chain: int = 14, style: bool = True) -> str:
    """An HTML fragment: verdict, key figures, the invariants, and each violation with its why and chain.

    This is what Jupyter shows for a :class:`RunResult` (with its CSS inside: ``style``); the report
    page starts with it (its CSS in the page's head).
    """
    s = result.scenario
    vacuous = list(getattr(result, "vacuous", []))
    if not result.ok:
        verdict = f'<span class="badge bad">violated: {escape(", ".join(result.violated))}</span>'
    elif vacuous:
        verdict = f'<span class="badge vac">nothing violated; vacuous: {escape(", ".join(vacuous))}</span>'
    else:
        verdict = '<span class="badge ok">every invariant held</span>'

    out = [f'<div class="simroll">{STYLE if style else ""}<h1>simroll: {escape(s.name)} {verdict}</h1>']
    if s.description:
        out.append(f"<p>{escape(s.description)}</p>")
    figures = [
        ("scenario", escape(s.name)),
        ("seed", str(result.seed)),
        ("delivery", escape(s.bus.delivery)),
        ("events", f"{result.events:,}"),
        ("simulated time", f"{result.sim_time:.3f} s"),
        ("ended", escape(result.end_reason)),
        ("trace sha256", f"<code>{escape(result.trace_sha256)}</code>"),
    ]
    out.append("<table>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in figures) + "</table>")
    if result.limited:
        out.append(
            f'<p class="bad">PARTIAL: the run stopped at a limit ({escape(result.end_reason)}); '
            "the invariants cover the run so far.</p>"
        )
    out.append("<h2>Invariants</h2><table><tr><th>invariant</th><th>verdict</th><th>events checked</th></tr>")
    for inv in result.invariants:
        if not inv.held:
            verdict = f'<span class="bad">VIOLATED ({inv.count}x)</span>'
        elif getattr(inv, "vacuous", False):
            verdict = (
                f'<span class="vac">vacuous</span> (nothing to check: '
                f"{escape(VACUOUS_WHY.get(inv.name, 'it judged no event'))})"
            )
        else:
            verdict = '<span class="ok">held</span>'
        out.append(
            f"<tr><td><code>{escape(inv.name)}</code></td><td>{verdict}</td><td>{getattr(inv, 'checked', '')}</td></tr>"
        )
    out.append("</table>")
    out.append(_availability_html(getattr(result, "availability", None)))
    for inv in result.invariants:
        if inv.held:
            continue
        out.append(f"<h2>{escape(inv.name)}: {inv.count} violation{'s' if inv.count != 1 else ''}</h2>")
        for v in inv.violations[:max_violations]:
            where = f" [{escape(', '.join(v.engines))}]" if v.engines else ""
            subject = f" ({escape(v.subject)})" if v.subject else ""
            out.append(f"<h3>at t={v.time:.3f} s, record #{v.event}{where}{subject}</h3>")
            why = explain(result.trace(), v) if result.records is not None or result.trace_path is not None else None
            if why is not None:
                out.append(f'<p class="why"><b>why:</b> {escape(why.why)}</p>')
            out.append(f'<div class="msg">{escape(v.message)}</div>')
            if why is not None and why.chain:
                out.append(f"<p>Causal chain: {len(why.chain)} events, in time order</p>")
                out.append(chain_table(why, v.event, max_chain))
                sql_log = getattr(result, "sql_log", None)
                if sql_log:
                    out.append(sql_html(sql_log, why, v.event, v.engines))
        if inv.count > max_violations:
            out.append(f"<p>... and {inv.count - max_violations} more {escape(inv.name)} violations.</p>")
    out.append("</div>")
    return "\n".join(out)


def _availability_html(av: dict[str, Any] | None) -> str:
    """Operations completed and the longest interval without a completion, as a short table."""
    if av is None:
        return ""
    if not av.get("total"):
        return "<h2>Availability</h2><p>No client operation was issued.</p>"
    rows = [
        ("operations completed", f"{av['completed']} of {av['total']} ({100 * av['fraction']:.1f}%)"),
        (
            "longest interval without a completion",
            f"{av['longest_gap']:.3f} s"
            + (" (t={:.3f} to {:.3f})".format(*av["longest_gap_interval"]) if av.get("longest_gap_interval") else ""),
        ),
    ]
    if av.get("pending"):
        rows.append(("undecided (the run stopped at a limit)", str(av["pending"])))
    return (
        '<h2>Availability</h2><table id="availability-summary">'
        + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
        + "</table>"
    )


def coverage_html(result: RunResult) -> str:
    """What the run exercised: per release (and client, backfill, trigger) the RPC versions sent,
    handled and rejected, sends refused, methods handled, locations read and written; then the plan
    steps executed (the steps table shows when)."""
    cov = getattr(result, "coverage", None)
    if cov is None:
        return ""
    whats = ("sent", "handled", "rejected", "refused", "methods", "read", "written")
    head = "".join(f"<th>{w}</th>" for w in whats)
    rows = []
    for rel, what in cov.get("releases", {}).items():
        cells = "".join(
            "<td>"
            + "<br>".join(f"<code>{escape(str(k))}</code> &times;{n}" for k, n in what.get(w, {}).items())
            + "</td>"
            for w in whats
        )
        rows.append(f"<tr><td><code>{escape(rel)}</code></td>{cells}</tr>")
    executed = sorted({st["index"] for st in cov.get("steps", [])})
    n = len(result.scenario.plan)
    missing = [i for i in range(n) if i not in executed]
    steps = (
        f"<p>Plan steps executed: {len(executed)} of {n}"
        + (f"; not executed: {', '.join(map(str, missing))}" if missing else "")
        + ".</p>"
    )
    return (
        '<h2>Coverage</h2><table id="coverage"><tr><th>release</th>'
        + head
        + "</tr>"
        + "".join(rows)
        + "</table>"
        + steps
    )


def steps_html(result: RunResult) -> str:
    """The operator's steps as they happened (time, number, what), as an HTML table."""
    rows = [
        f'<tr><td class="mono">{r["t"]:.3f}</td><td>{r.get("index", "fault")}</td>'
        f'<td class="ev">{escape(step_text(r) if r["kind"] == "step" else describe(r))}</td></tr>'
        for r in result.trace()
        if r["kind"] in ("step", "fault")
    ]
    if not rows:
        return "<p>The plan has no steps.</p>"
    return "<table><tr><th>t (s)</th><th>step</th><th>what</th></tr>" + "".join(rows) + "</table>"


def _embed(fig, fmt: str) -> str:
    data = figure_bytes(fig, fmt)
    if fmt == "svg":
        text = data.decode("utf-8")
        return text[text.index("<svg") :]  # drop the XML prolog and doctype: not allowed inside HTML
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}">'


def report_html(result: RunResult, plots: bool = True, fmt: str = "png") -> str:
    """One self-contained HTML page for ``result``: summary, invariants, steps, causal chains, plots
    (``fmt`` png: base64 images; svg: inline SVG) and the scenario as YAML. Loads nothing from outside."""
    if fmt not in ("png", "svg"):
        raise UsageError(f"format {fmt!r}: expected png or svg")
    s = result.scenario
    body = [
        summary_html(result, style=False).removesuffix("</div>"),
        coverage_html(result),
        "<h2>Operator steps</h2>",
        steps_html(result),
    ]
    if plots:
        body.append("<h2>Plots</h2>")
        figs = explaining_plots(result)
        figs["availability"] = availability(result)
        order = plot_order(result)  # most relevant to the first violation first
        for name, fig in sorted(figs.items(), key=lambda kv: order.index(kv[0])):
            body.append(
                f'<figure id="{name}">{_embed(fig, fmt)}<figcaption>{escape(_CAPTIONS[name])}</figcaption></figure>'
            )
    body.append(
        f"<h2>Scenario</h2><details><summary>{escape(s.name)} as YAML</summary>"
        f"<pre>{escape(dump_scenario(s))}</pre></details>"
    )
    body.append(
        f'<p class="mono">replay: simroll run SCENARIO --seed {result.seed}  '
        f"(trace sha256 {escape(result.trace_sha256)})</p></div>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        # no network: forbid every fetch except inline styles and data: images
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">"
        f"<title>simroll: {escape(s.name)} ({'ok' if result.ok else 'violated'})</title>"
        f"<style>{_CSS}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_html(
    result: RunResult, path: str | os.PathLike[str], overwrite: bool = False, plots: bool = True, fmt: str = "png"
) -> Path:
    """Write :func:`report_html` to ``path`` atomically; an existing file is an error unless ``overwrite``."""
    check_new_file(path, overwrite)  # before the page (and its plots) are drawn
    return atomic_write_bytes(path, report_html(result, plots=plots, fmt=fmt).encode("utf-8"), overwrite=overwrite)


__all__ = ["STYLE", "chain_table", "coverage_html", "report_html", "steps_html", "summary_html", "write_html"]
