"""Human-readable reports of a run: what held, what broke, and the chain of events behind it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from simroll.check.explain import describe, format_record
from simroll.sim.trace import Record

if TYPE_CHECKING:
    from simroll.run import RunResult


def format_text(result: RunResult, max_violations: int = 3, max_chain: int = 12) -> str:
    """The report ``simroll run`` prints."""
    s = result.scenario
    lines = [f"scenario {s.name}  seed {result.seed}  delivery {s.bus.delivery}",
             f"{result.events} events, {result.sim_time:.3f} simulated seconds, ended: {result.end_reason}",
             f"trace sha256 {result.trace_sha256}", ""]
    if result.limited:
        lines += [f"PARTIAL: the run stopped at a limit ({result.end_reason}); raise it with "
                  "--max-time / --max-events. Invariants below cover the run so far.", ""]
    width = max(len(inv.name) for inv in result.invariants)
    for inv in result.invariants:
        status = "held" if inv.held else f"VIOLATED ({inv.count}x)"
        lines.append(f"  {inv.name:<{width}}  {status}")
    for inv in result.invariants:
        for v in inv.violations[:max_violations]:
            lines += ["", f"{v.invariant} violated at t={v.time:.3f}"
                          + (f" [{', '.join(v.engines)}]" if v.engines else "")
                          + (f" ({v.subject})" if v.subject else ""),
                      f"  {v.message}"]
            chains = result.chains(v) if result.records is not None or result.trace_path else []
            if chains:
                # the shortest chain in full; the other chains by the record they start from
                chain = chains[0]
                lines.append(f"  causal chain ({len(chain)} events, the shortest of {len(chains)}):")
                shown: list[Record | None] = (list(chain) if len(chain) <= max_chain
                                              else [*chain[:2], None, *chain[-(max_chain - 3):]])
                for rec in shown:
                    lines.append("    ..." if rec is None else f"    {format_record(rec)}")
                starts = {c[0]["i"]: c[0] for c in chains[1:] if c[0]["i"] not in {r["i"] for r in chain}}
                for rec in starts.values():
                    lines.append(f"    also after: {format_record(rec)}")
            elif v.causes:
                lines.append(f"  related records: {', '.join(f'#{c}' for c in v.causes)}")
        if inv.count > max_violations:
            lines.append(f"  ... and {inv.count - max_violations} more {inv.name} violations")
    lines += ["", "OK: every invariant held" if result.ok else
              f"FAILED: {', '.join(result.violated)}"]
    return "\n".join(lines)


__all__ = ["describe", "format_record", "format_text"]
