"""The happens-before graph of a trace, and the causal chains that lead to a violation.

Edges: each record's ``cause`` (a receive after its send, a read after the write it
read, a stop after the operator step that ordered it), plus program order: the
records of one engine (or of the operator, the client, the backfill) in the
order they happened.
"""

from __future__ import annotations

import networkx as nx

from simroll.sim.trace import Record

_OPERATOR_KINDS = frozenset({"step", "plan_done"})


def happens_before(records: list[Record], upto: int | None = None) -> nx.DiGraph:
    """The happens-before graph over records ``0..upto`` (all when None)."""
    g = nx.DiGraph()
    last: dict[str, int] = {}
    end = len(records) if upto is None else min(len(records), upto + 1)
    for rec in records[:end]:
        i = rec["i"]
        g.add_node(i)
        for c in rec.get("cause", ()):
            g.add_edge(c, i)
        actor = "operator" if rec["kind"] in _OPERATOR_KINDS else rec.get("engine")
        if actor is not None:
            prev = last.get(actor)
            if prev is not None:
                g.add_edge(prev, i)
            last[actor] = i
    return g
