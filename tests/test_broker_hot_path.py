"""The broker's hot path (issue 13 item 6, issue 16 item 1): the inlined publish -> hand -> ack path
and the inlined consumer choice point behave as the general ones, and the trace writer's inlined
type checks of the per-message records (send, recv, done) fall back to the encoder as before.

Every expected value below is worked out by hand from the rules in ``simroll/sim/broker.py``'s
docstring: a queue hands a message to the consumer at the head of its rotation, or ``k`` places
after it when the picker says ``k``; a picked consumer without prefetch credit gives way to the head;
a head without credit leaves the rotation (blocked) and the queue asks the picker again.
"""

from __future__ import annotations

import io
import json
import math
from collections import deque
from typing import Any

import pytest
import simpy

from simroll.scenario.spec import BusSpec
from simroll.sim.broker import Broker, Message, Queue, Subscription
from simroll.sim.chooser import Chooser
from simroll.sim.trace import Trace


class _Fake:
    """A consumer: a name and what it received."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.got: list[int] = []

    def deliver(self, m: Message) -> None:
        self.got.append(m.id)


def _scripted(picks: list[int], asked: list[tuple[int, int]]):
    def picker(msg: Message, subs: deque[Subscription]) -> int:
        asked.append((msg.id, len(subs)))
        return picks.pop(0)

    return picker


def test_a_picked_consumer_without_credit_gives_way_to_the_head_and_a_blocked_head_is_picked_again() -> None:
    q = Queue("q")
    asked: list[tuple[int, int]] = []
    # m0: offset 1 -> b; m1: 2 -> b (full) -> head a; m2: 1 -> b (full) -> head c;
    # m3: 0 -> head b (full): b leaves the rotation, asked again over [a, c]: 1 -> c; m4 (after b's ack): 0 -> a
    q.picker = _scripted([1, 2, 1, 0, 1, 0], asked)
    a, b, c = _Fake("a"), _Fake("b"), _Fake("c")
    q.consume(a, a.deliver)
    sb = q.consume(b, b.deliver, prefetch=1)
    q.consume(c, c.deliver)
    msgs = [Message(i) for i in range(5)]
    for m in msgs[:4]:
        q.publish(m, 0.0)
    assert sb.blocked
    assert [s.consumer.name for s in q.subs] == ["a", "c"]
    q.ack(msgs[0], 1.0)  # b has credit again: it rejoins at the tail
    assert not sb.blocked
    assert [s.consumer.name for s in q.subs] == ["a", "c", "b"]
    q.publish(msgs[4], 1.0)
    assert (a.got, b.got, c.got) == ([1, 4], [0], [2, 3])
    # one question per try: m3 was asked twice, the second time of the two consumers left
    assert asked == [(0, 3), (1, 3), (2, 3), (3, 3), (3, 2), (4, 3)]
    assert [s.consumer.name for s in q.subs] == ["c", "b", "a"]
    assert not q.held


def test_a_single_consumer_is_never_a_choice_point() -> None:
    q = Queue("q")
    asked: list[tuple[int, int]] = []
    q.picker = _scripted([], asked)  # would fail if asked
    a = _Fake("a")
    q.consume(a, a.deliver)
    for i in range(3):
        q.publish(Message(i), 0.0)
    assert a.got == [0, 1, 2]
    assert asked == []


def test_the_round_robin_rotation_with_no_picker() -> None:
    q = Queue("q")
    fakes = [_Fake(n) for n in "abc"]
    for f in fakes:
        q.consume(f, f.deliver)
    for i in range(7):
        q.publish(Message(i), 0.0)
    assert [f.got for f in fakes] == [[0, 3, 6], [1, 4], [2, 5]]
    assert [s.consumer.name for s in q.subs] == ["b", "c", "a"]


class _Subclass(Chooser):
    """A chooser whose ``pick`` the broker must call (as simroll verify's recorder is)."""

    def __init__(self, seed: int, pinned: dict[tuple[str, int], int]) -> None:
        super().__init__(seed, pinned)
        self.asked: list[tuple[str, int]] = []

    def pick(self, kind: str, n: int) -> int:
        self.asked.append((kind, n))
        return super().pick(kind, n)


def _broker_run(chooser: Chooser) -> tuple[list[list[int]], list[dict[str, Any]]]:
    """Three consumers of the broker's topic queue; four messages; the choice records written."""
    trace = Trace(keep=True)
    broker = Broker(simpy.Environment(), BusSpec(), chooser, trace)
    fakes = [_Fake(n) for n in ("e0", "e1", "e2")]
    for f in fakes:
        broker.topic.consume(f, f.deliver)
    for i in range(4):
        broker.topic.publish(Message(i), 0.0)
    assert trace.records is not None
    return [f.got for f in fakes], trace.records


def test_the_consumer_choice_point_counts_and_pins_as_chooser_pick_does() -> None:
    # choice point 1 pinned to 5: 5 % 3 = 2 places after the head. Rotation [e0 e1 e2]:
    # m0 -> e0 ([e1 e2 e0]); m1 -> 2 after e1 = e0 ([e1 e2 e0] -> e0 to the tail: same); m2 -> e1; m3 -> e2
    pinned = {("consumer", 1): 5, ("delay", 0): 3}
    sub = _Subclass(0, pinned)
    for chooser in (Chooser(0, pinned), sub):
        got, recs = _broker_run(chooser)
        assert got == [[0, 1], [2], [3]]
        assert chooser.counts == {"consumer": 4}
        assert chooser.points == 4
        choices = [r for r in recs if r["kind"] == "choice"]
        assert [(r["at"], r["what"], r["msg"], r["to"], r["default"]) for r in choices] == [
            (1, "consumer", 1, "e0", "e1")
        ]
    assert sub.asked == [("consumer", 3)] * 4  # the subclass saw every choice point


def test_no_pins_no_choice_records_but_every_point_counted() -> None:
    chooser = Chooser(0)
    got, recs = _broker_run(chooser)
    assert got == [[0, 3], [1], [2]]
    assert chooser.counts == {"consumer": 4}
    assert chooser.points == 4
    assert [r for r in recs if r["kind"] == "choice"] == []


def test_broker_ack_gives_credit_back_once_and_ignores_a_message_no_longer_held() -> None:
    broker = Broker(simpy.Environment(), BusSpec(prefetch=1), Chooser(0), Trace(keep=False))
    a, b = _Fake("a"), _Fake("b")
    sa = broker.topic.consume(a, a.deliver, prefetch=1)
    broker.topic.consume(b, b.deliver, prefetch=1)
    msgs = [Message(i) for i in range(3)]
    for m in msgs:
        broker.topic.publish(m, 0.0)
    # m0 -> a, m1 -> b, m2 held: both are out of credit
    assert (a.got, b.got, [m.id for m in broker.topic.held]) == ([0], [1], [2])
    broker.ack(msgs[0])  # a rejoins and takes m2 at once
    assert (a.got, list(sa.unacked)) == ([0, 2], [2])
    assert msgs[0].sub is None
    broker.ack(msgs[0])  # no longer held: nothing happens
    assert (a.got, list(sa.unacked)) == ([0, 2], [2])


# ------------------------------------------------------------------ the writer's per-message records
def _line(build) -> str:
    out = io.StringIO()
    build(Trace(keep=False, stream=out))
    return out.getvalue()


_SEND = dict(engine="client", msg=0, method="m", version="1.0", queue="engine", call=True, row=3)
_RECV = dict(engine="e", msg=2, wait=0.25, cause=[1])
_DONE = dict(engine="e", msg=2, ok=True)


@pytest.mark.parametrize(
    "kind,t,fields,expected",
    [
        # the fast lines, written out by hand
        (
            "send",
            1.5,
            {},
            '"t":1.5,"kind":"send","engine":"client","msg":0,"method":"m","version":"1.0",'
            '"queue":"engine","call":true,"row":3}',
        ),
        ("recv", 2, {}, '"t":2,"kind":"recv","engine":"e","msg":2,"wait":0.25,"cause":[1]}'),
        (
            "recv",
            2.0,
            {"cause": [1, 4], "wait": 0},
            '"t":2.0,"kind":"recv","engine":"e","msg":2,"wait":0,"cause":[1,4]}',
        ),
        ("done", 0.1 + 0.2, {"ok": False}, '"t":0.30000000000000004,"kind":"done","engine":"e","msg":2,"ok":false}'),
        # a value of another type than the fast line checks for: the encoder's line, as json writes it
        (
            "send",
            True,
            {},
            '"t":true,"kind":"send","engine":"client","msg":0,"method":"m","version":"1.0",'
            '"queue":"engine","call":true,"row":3}',
        ),
        (
            "send",
            1.0,
            {"call": 1},
            '"t":1.0,"kind":"send","engine":"client","msg":0,"method":"m","version":"1.0",'
            '"queue":"engine","call":1,"row":3}',
        ),
        (
            "send",
            1.0,
            {"row": True, "msg": 1.5},
            '"t":1.0,"kind":"send","engine":"client","msg":1.5,"method":"m",'
            '"version":"1.0","queue":"engine","call":true,"row":true}',
        ),
        ("recv", 1.0, {"cause": [True]}, '"t":1.0,"kind":"recv","engine":"e","msg":2,"wait":0.25,"cause":[true]}'),
        ("recv", 1.0, {"cause": [2.0]}, '"t":1.0,"kind":"recv","engine":"e","msg":2,"wait":0.25,"cause":[2.0]}'),
        (
            "recv",
            1.0,
            {"wait": False, "msg": True},
            '"t":1.0,"kind":"recv","engine":"e","msg":true,"wait":false,"cause":[1]}',
        ),
        ("done", 1.0, {"ok": None}, '"t":1.0,"kind":"done","engine":"e","msg":2,"ok":null}'),
        ("done", 1.0, {"ok": 0, "msg": False}, '"t":1.0,"kind":"done","engine":"e","msg":false,"ok":0}'),
    ],
)
def test_the_per_message_records_write_what_json_writes(kind: str, t: Any, fields: dict, expected: str) -> None:
    base = {"send": _SEND, "recv": _RECV, "done": _DONE}[kind]
    fields = {**base, **fields}
    fast = _line(lambda tr: getattr(tr, kind)(t, **fields))
    generic = _line(lambda tr: tr.emit(t, kind, **fields))
    reference = json.dumps({"i": 0, "t": t, "kind": kind, **fields}, ensure_ascii=False, separators=(",", ":"))
    assert fast == generic == reference + "\n" == '{"i":0,' + expected + "\n"


@pytest.mark.parametrize("bad", [math.nan, -math.inf])
@pytest.mark.parametrize("kind", ["send", "recv", "done"])
def test_a_non_finite_time_is_refused_by_the_per_message_records(kind: str, bad: float) -> None:
    fields = {"send": _SEND, "recv": _RECV, "done": _DONE}[kind]
    with pytest.raises(ValueError):
        _line(lambda tr: getattr(tr, kind)(bad, **fields))
