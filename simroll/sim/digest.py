"""A canonical digest of a running simulation's state, for ``simroll verify``'s state pruning.

:func:`state_digest` is taken at a choice point (inside :meth:`Chooser.pick`). Two runs whose
digests are equal at a choice point are treated as having the same future: the explorer then
explores the choices after that point in one of them only. What the digest reads:

* the simulated time (absolute: the workload stops at an absolute time) and the choice point's
  kind and number of options;
* the call stack from the model's code that asked for the choice down to SimPy's loop: each
  frame's function, its position in the bytecode and its local variables (which message is
  being routed, which row the backfill is at);
* every pending event of SimPy's queue, in the order it will run (time relative to now,
  priority, insertion order; not SimPy's event ids), with what it will resume: a process's
  generator (function, position, locals, and the generator it delegates to) or a callback's
  function and the values it closes over;
* each engine: state, release, version cap, its workers (as processes), prefetched backlog,
  in-flight messages per worker slot, subscriptions, whether idle workers wait, the processes
  waiting for it to stop;
* each queue, in the broker's order: ready messages in order, the consumer rotation, each
  consumer's unacknowledged messages in order, credit, TTL and deletion; the version-routed
  queues; who consumes; the version pins in force;
* the database: tables, columns, enabled triggers, the value of every cell;
* the state of the workload's random generator;
* the plan still to come: the steps after the operator's current one (and kills bound to them).

Naming is left out, so that runs differing only in it meet: message ids are renamed in the
order the digest first meets them, written values (``v17``) likewise, and trace record
numbers (locals ``rec``, ``recv``, ``src``, ``cause``...; the record a cell value came from)
are dropped; so are the chooser's counters and the engines' restart generation.

What it does not read (the gaps): the invariant checkers' memory of the past (a lost write's
acknowledged value, waits already measured) -- two runs that meet at one state may have
different pasts, so a continuation explored from one is judged against that one's past only;
objects of types it does not know, which it names by type only; the trace's length (so a run
ending at ``max_events`` may be judged on a continuation of another length).
"""

from __future__ import annotations

import hashlib
import re
import sys
import types
from collections import deque
from typing import TYPE_CHECKING, Any

from simpy.events import Event, Process

from simroll.scenario.versions import Version
from simroll.sim.broker import Message, Queue, Subscription
from simroll.sim.engine import Engine, Release

if TYPE_CHECKING:
    from simroll.sim.kernel import Simulation

# locals that hold trace record numbers or plumbing: naming, not state
# locals that hold trace record numbers, plumbing, the scenario's fixed data or aliases of state
# the digest reads elsewhere (a worker's ``backlog`` is its engine's)
_SKIP_LOCALS = frozenset(
    {
        *("self", "rec", "recv", "src", "cause", "kill_rec", "fault", "emit", "trace", "env", "ack", "arrive", "peek"),
        *("handlers", "outcomes", "backlog", "ack_after"),
        # more naming: a message's id (the message itself is read, renamed), the record numbers of a
        # backfill's step and row read (``read`` elsewhere is the database's read function), and an
        # engine's restart generation
        *("mid", "step_rec", "read", "generation"),
    }
)
_NAMES: dict[types.CodeType, tuple[str, ...]] = {}  # code -> the locals its frames are read for
_VALUE = re.compile(r"v\d+")
_MAX_DEPTH = 8


class _Encoder:
    """Turns model objects into plain, ordered tuples, renaming messages and values."""

    def __init__(self, memo: dict[int, tuple[Any, str]]) -> None:
        self.msgs: dict[int, int] = {}
        self.values: dict[str, int] = {}
        self.memo = memo  # id -> (scenario object, a digest of its repr): they live as long as the run

    def value(self, v: Any) -> Any:
        if isinstance(v, str) and v[:1] == "v" and _VALUE.fullmatch(v):
            return ("v", self.values.setdefault(v, len(self.values)))
        return v

    def msg(self, m: Message) -> tuple[Any, ...]:
        k = self.msgs.get(m.id)
        if k is not None:
            return ("m", k)
        k = self.msgs[m.id] = len(self.msgs)
        return (
            "m",
            k,
            m.method,
            None if m.version is None else str(m.version),
            tuple(sorted(m.args)),
            m.namespace,
            m.row,
            m.call,
            m.sender,
            m.hop,
            None if m.queue is None else m.queue.name,
            m.enqueued,
            m.expires,
            m.deadline,
            None if m.sub is None else m.sub.consumer.name,
            m.redelivered,
            m.taken,
            m.expired,
        )

    def event(self, ev: Event) -> tuple[Any, ...]:
        """An event as something waited for: its type and whether it fired (not what waits on it)."""
        return ("ev", type(ev).__name__, ev.triggered)

    def frame(self, f: types.FrameType) -> tuple[Any, ...]:
        code = f.f_code
        local = f.f_locals
        names = _NAMES.get(code)
        if names is None:  # the locals a frame of this code may have, sorted, naming left out
            every = {*code.co_varnames, *code.co_cellvars, *code.co_freevars}
            names = _NAMES[code] = tuple(sorted(k for k in every if k not in _SKIP_LOCALS))
        enc = self.any
        return (code.co_qualname, f.f_lasti, tuple([(k, enc(local[k], 1)) for k in names if k in local]))

    def process(self, p: Process) -> tuple[Any, ...]:
        out: list[Any] = ["proc"]
        gen: Any = p._generator
        while gen is not None:
            f = getattr(gen, "gi_frame", None)
            if f is None:
                out.append(("done",))
                break
            out.append(self.frame(f))
            gen = getattr(gen, "gi_yieldfrom", None)
        return tuple(out)

    def callback(self, cb: Any) -> Any:
        if isinstance(cb, types.MethodType):
            owner = cb.__self__
            if isinstance(owner, Process):
                return self.process(owner)
            return ("method", cb.__func__.__qualname__, type(owner).__name__)
        if isinstance(cb, types.FunctionType):
            cells = tuple(self.any(c.cell_contents, 1) for c in (cb.__closure__ or ()))
            return ("fn", cb.__qualname__, cells)
        return ("callable", type(cb).__name__)

    def any(self, v: Any, depth: int = 0) -> Any:
        """A value met in a local variable or a closure."""
        t = type(v)
        if t is int or t is float or t is bool or v is None:  # the common cases first, by exact type
            return v
        if t is str:
            return v if v[:1] != "v" else self.value(v)
        if t is Message:
            return self.msg(v)
        if v is None or isinstance(v, bool | int | float):
            return v
        if isinstance(v, str):
            return self.value(v)
        if depth > _MAX_DEPTH:
            return ("deep", type(v).__name__)
        d = depth + 1
        if isinstance(v, Message):
            return self.msg(v)
        if isinstance(v, Version):
            return ("ver", str(v))
        if isinstance(v, Engine):
            return ("E", v.name)
        if isinstance(v, Release):
            return ("R", v.name)
        if isinstance(v, Queue):
            return ("Q", v.name)
        if isinstance(v, Subscription):
            return ("S", getattr(v.consumer, "name", ""), v.queue.name)
        if isinstance(v, Process):
            return ("P", v.name)  # a process met in a local: named only, it is encoded where it waits
        if isinstance(v, Event):
            return self.event(v)
        if isinstance(v, list | tuple | deque):
            return tuple(self.any(x, d) for x in v)
        if isinstance(v, dict):
            return ("dict", tuple((self.any(k, d), self.any(x, d)) for k, x in v.items()))
        if isinstance(v, set | frozenset):
            return ("set", tuple(sorted((self.any(x, d) for x in v), key=repr)))
        if hasattr(v, "model_dump"):  # a scenario object (a plan step, a handler): frozen, its repr is its value
            held = self.memo.get(id(v))
            if held is None or held[0] is not v:  # its repr can be long: 12 bytes of its digest stand for it
                held = self.memo[id(v)] = (v, hashlib.blake2b(repr(v).encode(), digest_size=12).hexdigest())
            return ("spec", held[1])
        if isinstance(v, types.FunctionType | types.MethodType | types.BuiltinFunctionType):
            return ("fn", getattr(v, "__qualname__", type(v).__name__))
        return ("obj", type(v).__name__)


def state_digest(sim: Simulation, kind: str, n: int, memo: dict[int, tuple[Any, str]] | None = None) -> bytes:
    """The digest (16 bytes) of ``sim``'s state at the choice point being made now: ``kind`` with
    ``n`` options. Call it from inside :meth:`Chooser.pick` (it reads the caller's stack).
    ``memo``: a dictionary kept across the digests of one run (it caches the scenario's objects)."""
    enc = _Encoder({} if memo is None else memo)
    env = sim.env
    now = env.now
    parts: list[Any] = [("now", now, kind, n)]
    # the stack of the code that asks for the choice, down to SimPy's loop
    stack = []
    f = sys._getframe(1)
    while f is not None and not f.f_globals.get("__name__", "").startswith("simpy"):
        if f.f_globals.get("__name__", "").startswith("simroll.sim") and f.f_code.co_name not in (
            "pick",
            "state_digest",
        ):
            stack.append(enc.frame(f))
        f = f.f_back  # type: ignore[assignment]  # None at the bottom of the stack
    parts.append(("stack", tuple(stack)))
    # pending events, in the order SimPy will run them
    queue = sorted(env._queue, key=lambda e: (e[0], e[1], e[2]))  # SimPy's heap: (time, priority, id, event)
    parts.append(
        (
            "queue",
            tuple(
                (t - now, prio, type(ev).__name__, tuple(enc.callback(cb) for cb in (ev.callbacks or ())))
                for t, prio, _eid, ev in queue
            ),
        )
    )
    for eng in sim.engines.values():
        parts.append(
            (
                "engine",
                eng.name,
                eng.state,
                None if eng.release is None else eng.release.name,
                None if eng.cap is None else str(eng.cap),
                tuple(enc.process(p) for p in eng.procs),
                tuple(enc.msg(m) for m in eng.backlog),
                tuple((slot, enc.msg(m)) for slot, m in sorted(eng.inflight.items())),
                tuple(
                    (s.queue.name, s.prefetch, s.blocked, s.cancelled, tuple(enc.msg(m) for m in s.unacked.values()))
                    for s in eng.subs
                ),
                eng.wake is not None,
                # membership and configuration (issue 15): another config on one release is another state
                (
                    eng.member,
                    eng.removed,
                    tuple(sorted((eng.config or {}).items())),
                    tuple(sorted(eng.pending.items())),
                ),
                None
                if eng.stopped_event is None
                else (eng.stopped_event.triggered, tuple(enc.callback(cb) for cb in eng.stopped_event.callbacks or ())),
            )
        )
    broker = sim.broker
    for q in broker.queues:
        parts.append(
            (
                "q",
                q.name,
                None if q.owner is None else q.owner.name,
                q.ttl,
                q.auto_delete,
                q.deleted,
                tuple(enc.msg(m) for m in q.held),
                tuple(getattr(s.consumer, "name", "") for s in q.subs),
                _order_of_positions(q, sim),
            )
        )
    parts.append(("routed", tuple(str(v) for v in broker.routed)))
    parts.append(("consumers", tuple(c.name for c in broker.consumers)))
    parts.append(("stops", tuple((k, repr(v[1])) for k, v in sorted(broker.last_stop.items()))))
    cluster = sim.cluster
    parts.append(
        (
            "caps",
            cluster.cap_overridden,
            str(cluster.cap_override),
            tuple(sorted((str(v), c) for v, c in cluster._started.items())),
            sim.client.name,
            str(sim.client_cap),
        )
    )
    parts.append(("backfills", sim.backfills.running, sim.backfills.done))  # what wait_until's backfill_done reads
    if cluster.records:  # the service table and where each auto cap came from (database.service_records)
        parts.append(
            (
                "services",
                tuple((e, tuple(str(x) for x in row)) for e, row in sorted(sim.db.service_table.items())),
                tuple(sorted(cluster.cap_from.items())),
            )
        )
    db = sim.db
    parts.append(
        (
            "db",
            tuple(sorted(db.tables)),
            tuple(sorted(db.columns)),
            tuple((k, tuple(v)) for k, v in sorted(db.triggers.items())),
            _cells(db, enc),
            tuple(sorted(db.markers.items())),  # where a resumed backfill begins (issue 20)
            tuple(db.row_faults),  # the backfill kills at a row still to come
        )
    )
    parts.append(("plan", _plan_to_come(sim, enc)))
    # hash() of a tuple of ints does not depend on PYTHONHASHSEED (str and bytes do, and None's
    # hash is its address before Python 3.12): the generator's words only, the rest by value
    version, words, gauss = sim.chooser.rng.getstate()
    parts.append(("rng", version, hash(words), gauss))
    return hashlib.blake2b(repr(parts).encode(), digest_size=16).digest()


def _cells(db: Any, enc: _Encoder) -> tuple[Any, ...]:
    """Every cell's value (not the record that wrote it), location by location: the location
    backend's dictionaries if it has them, else through the backend's ``read``."""
    values = getattr(db, "values", None)
    if isinstance(values, dict):
        return tuple(
            (loc, tuple((row, enc.value(cell[0])) for row, cell in sorted(cells.items())))
            for loc, cells in sorted(values.items())
        )
    return tuple(
        (loc, tuple((row, enc.value(db.read(loc, row)[0])) for row in range(db.rows))) for loc in sorted(db.columns)
    )


def _plan_to_come(sim: Simulation, enc: _Encoder) -> tuple[Any, ...]:
    """The operator's steps after the one under way, and the kills bound to steps: the future of
    the plan. The operator's frame holds only its current step (the iterator over the rest is not
    a local), so without this two schedules that differ in a later step (a swap, a pause, a kill, a
    dropped step) would look alike until that step begins, and the later one would be cut there."""
    plan = sim.scenario.plan
    gen = getattr(getattr(sim, "_operator_proc", None), "_generator", None)
    start = 0
    if gen is not None:
        frame = gen.gi_frame
        if frame is None:  # the plan is done (or failed): nothing is to come
            return ()
        i = frame.f_locals.get("i")
        start = 0 if i is None else i + 1
    faults = tuple(sorted((k, tuple(v)) for k, v in getattr(sim, "_step_faults", {}).items() if k >= start))
    return (tuple(enc.any(step, 1) for step in plan[start:]), faults)


def _order_of_positions(q: Queue, sim: Simulation) -> tuple[int, ...]:
    """Where the queue's unacknowledged messages go back to when requeued, relative to the ready
    ones: the rank of each message's position, ready messages first, then each engine's
    unacknowledged ones (in engine order)."""
    msgs = list(q.held) + [
        m for eng in sim.engines.values() for s in eng.subs if s.queue is q for m in s.unacked.values()
    ]
    ranks = sorted(range(len(msgs)), key=lambda i: msgs[i].pos)
    return tuple(ranks)


__all__ = ["state_digest"]
