"""Human-readable reports of a run: what held, what broke, and the chain of events behind it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from simroll.check.explain import Explanation, Link, describe, explain, format_record

if TYPE_CHECKING:
    from simroll.run import RunResult


def chain_lines(why: Explanation, max_chain: int = 12) -> list[str]:
    """The chain of an explanation as report lines: time, record, role, event; the middle elided
    when longer than ``max_chain``."""
    chain = list(why.chain)
    shown: list[Link | None] = (
        list(chain) if len(chain) <= max_chain else [*chain[:2], None, *chain[-(max_chain - 3) :]]
    )
    width = max((len(link.role) for link in chain), default=0)
    out = [f"  causal chain ({len(chain)} events):"]
    for link in shown:
        if link is None:
            out.append(f"    ... {len(chain) - max_chain + 1} more")
            continue
        r = link.rec
        out.append(f"    t={r['t']:9.3f}  #{r['i']:<6} {link.role:<{width}}  {link.text}")
    return out


def format_text(result: RunResult, max_violations: int = 3, max_chain: int = 12) -> str:
    """The report ``simroll run`` prints."""
    s = result.scenario
    lines = [
        f"scenario {s.name}  seed {result.seed}  delivery {s.bus.delivery}",
        f"{result.events} events, {result.sim_time:.3f} simulated seconds, ended: {result.end_reason}",
        f"trace sha256 {result.trace_sha256}",
        "",
    ]
    if result.limited:
        lines += [
            f"PARTIAL: the run stopped at a limit ({result.end_reason}); raise it with "
            "--max-time / --max-events. Invariants below cover the run so far.",
            "",
        ]
    width = max(len(inv.name) for inv in result.invariants)
    for inv in result.invariants:
        checked = getattr(inv, "checked", None)
        if not inv.held:
            status = f"VIOLATED ({inv.count}x)"
        elif getattr(inv, "vacuous", False):
            status = f"vacuous  (nothing to check: {VACUOUS_WHY.get(inv.name, 'it judged no event')})"
        else:
            status = "held"
        if checked is not None and not (inv.held and getattr(inv, "vacuous", False)):
            status = f"{status:<15} checked {checked}"
        lines.append(f"  {inv.name:<{width}}  {status}")
    lines += _availability_lines(getattr(result, "availability", None))
    lines += _coverage_lines(getattr(result, "coverage", None), len(s.plan))
    have_trace = result.records is not None or result.trace_path is not None
    for inv in result.invariants:
        for v in inv.violations[:max_violations]:
            why = explain(result.trace(), v) if have_trace else None
            lines += [
                "",
                f"{v.invariant} violated at t={v.time:.3f}"
                + (f" [{', '.join(v.engines)}]" if v.engines else "")
                + (f" ({v.subject})" if v.subject else ""),
            ]
            if why is not None:
                lines.append(f"  why: {why.why}")
            lines.append(f"  {v.message}")
            if why is not None and why.chain:
                lines += chain_lines(why, max_chain)
            elif v.causes:
                lines.append(f"  related records: {', '.join(f'#{c}' for c in v.causes)}")
        if inv.count > max_violations:
            lines.append(f"  ... and {inv.count - max_violations} more {inv.name} violations")
    vacuous = list(getattr(result, "vacuous", []))
    if not result.ok:
        lines += ["", f"FAILED: {', '.join(result.violated)}"]
    elif vacuous:
        lines += ["", f"OK: nothing violated, but {', '.join(vacuous)} had nothing to check (vacuous, not held)"]
    else:
        lines += ["", "OK: every invariant held"]
    return "\n".join(lines)


_MAX_STEPS = 20  # plan steps listed one by one in the coverage section

# what makes each invariant vacuous (see each checker's docstring in simroll.check.invariants)
VACUOUS_WHY: dict[str, str] = {
    "no-lost-write": "no written field was read back or left at the end",
    "no-stranded-message": "no message was sent",
    "no-incompatible-delivery": "no engine received a message",
    "bounded-imbalance": "no message was taken while another engine that could take it ran",
    "schema-compatible": "the run touched no table",
    "version-skew": "no more than one release ever ran",
    "no-refused-send": "nothing was sent",
    "operations-complete": "no client operation",
    "no-lost-update": "no handler read and then wrote the same field of a row",
    "no-duplicate-effect": "no call was retried",
    "plan-completes": "no conditional step (wait_until) ended",
}


def _availability_lines(av: dict[str, Any] | None) -> list[str]:
    """The availability line: operations completed, and the longest interval without a completion."""
    if av is None:
        return []
    if not av.get("total"):
        return ["", "availability: no client operation was issued"]
    gap = f"longest interval without a completion {av['longest_gap']:.3f} s"
    if av.get("longest_gap_interval"):
        lo, hi = av["longest_gap_interval"]
        gap += f" (t={lo:.3f} to {hi:.3f})"
    pending = f", {av['pending']} undecided (the run stopped at a limit)" if av.get("pending") else ""
    return [
        "",
        f"availability: {av['completed']} of {av['total']} operations completed "
        f"({100 * av['fraction']:.1f}%){pending}; {gap}",
    ]


def _counts(d: dict[str, int]) -> str:
    return ", ".join(f"{k} x{n}" for k, n in d.items())


def _coverage_lines(cov: dict[str, Any] | None, plan_steps: int) -> list[str]:
    """What the run exercised: per release (and client, backfill, trigger), then the plan steps executed."""
    if cov is None:
        return []
    lines = ["", "coverage (what the run exercised):"]
    labels = (
        ("sent", "sent"),
        ("handled", "handled"),
        ("rejected", "rejected"),
        ("refused", "refused"),
        ("methods", "methods handled"),
        ("read", "read"),
        ("written", "written"),
    )
    for rel, what in cov.get("releases", {}).items():
        parts = [f"{label} {_counts(what[key])}" for key, label in labels if what.get(key)]
        lines.append(f"  {rel}: {'; '.join(parts) if parts else 'nothing'}")
    steps = cov.get("steps", [])
    done = sorted({st["index"] for st in steps})
    missing = [i for i in range(plan_steps) if i not in done]
    text = f"  plan steps executed: {len(done)} of {plan_steps}"
    if steps:
        shown = [f"{st['index']} {st['action']} t={st['t']:.3f}" for st in steps[:_MAX_STEPS]]
        more = f", ... {len(steps) - _MAX_STEPS} more" if len(steps) > _MAX_STEPS else ""
        text += " (" + ", ".join(shown) + more + ")"
    if missing:
        text += f"; not executed: {', '.join(map(str, missing))}"
    lines.append(text)
    return lines


__all__ = ["VACUOUS_WHY", "chain_lines", "describe", "format_record", "format_text"]
