"""Differential tests: simroll's queue model (:class:`simroll.sim.broker.Queue`) against a real
RabbitMQ, one short script of broker operations per case.

Each script is run twice: through ``pika`` against the private node of ``conftest.py`` and through
the pure queue model; the outcome compared is, per consumer, which messages it received in which
order with which ``redelivered`` flag, and at the end which messages are still ready in the queue
(drained with ``basic.get``; whatever expired or was dropped is missing from both). Operations name
messages symbolically ("the oldest message c holds unacked"), resolved by each side from its own
state, so a divergence shows as a difference, never as an invalid operation.

The tests control every ack, so outcomes are deterministic. Sync: after every operation each open
consumer channel does a passive ``queue.declare``; the queue process answers it only after it has
sent every delivery it decided before, and Erlang keeps the order between two processes, so the
deliveries arrive first. TTL cases use real time: TTLs of 400 ms and waits of 700 ms.
"""

from __future__ import annotations

import itertools
import random
import time
from typing import Any

import pytest

from simroll.sim.broker import Message, Queue

pika = pytest.importorskip("pika", reason="the differential suite needs the 'broker' extra (pika)")

TTL_MS = 400
WAIT = 0.7
Op = tuple[Any, ...]
_ids = itertools.count()


# ----------------------------------------------------------------------------------- the model side
class ModelRun:
    """A script through the pure queue model."""

    def __init__(self, qttl: float | None, fanout: bool) -> None:
        self.fanout = fanout
        self.queue = Queue("q", ttl=qttl)
        self.queues: dict[str, Queue] = {}
        self.now = 0.0
        self.got: dict[str, list[tuple[int, bool]]] = {}
        self.subs: dict[str, Any] = {}
        self.auto: dict[str, bool] = {}
        self.next = 0

    def consume(self, c: str, prefetch: int, auto_ack: bool = False) -> None:
        if c in self.subs:
            return
        self.got.setdefault(c, [])
        q = self.queue
        if self.fanout:
            q = self.queues[c] = Queue(f"f.{c}", auto_delete=True)

        def deliver(m: Message, c: str = c) -> None:
            self.got[c].append((m.id, m.redelivered))

        self.subs[c] = q.consume(c, deliver, 0 if auto_ack else prefetch, self.now)
        self.auto[c] = auto_ack
        if auto_ack:
            for m in list(self.subs[c].unacked.values()):
                q.ack(m, self.now)

    def publish(self, n: int, ttl: bool) -> None:
        for _ in range(n):
            targets = [q for q in self.queues.values() if not q.deleted] if self.fanout else [self.queue]
            for q in targets:
                m = Message(self.next, expires=self.now + TTL_MS / 1000 if ttl else None)
                q.publish(m, self.now)
                self._autoack()
            self.next += 1

    def _autoack(self) -> None:
        for c, sub in self.subs.items():
            if self.auto[c]:
                for m in list(sub.unacked.values()):
                    sub.queue.ack(m, self.now)

    def held(self, c: str) -> list[Message]:
        sub = self.subs.get(c)
        return list(sub.unacked.values()) if sub is not None else []

    def ack(self, c: str, which: int, multiple: bool = False) -> None:
        held = self.held(c)
        if not held:
            return
        m = held[which % len(held)]
        for x in held[: held.index(m) + 1] if multiple else [m]:
            x.queue.ack(x, self.now)  # type: ignore[union-attr]  # a delivered message has its queue

    def reject(self, c: str, which: int, requeue: bool) -> None:
        held = self.held(c)
        if held:
            m = held[which % len(held)]
            m.queue.reject(m, self.now, requeue)  # type: ignore[union-attr]  # as above

    def nack_all(self, c: str, requeue: bool) -> None:
        held = self.held(c)
        if held:
            q = held[0].queue
            assert q is not None
            if requeue:
                q.requeue(held, self.now)
            else:
                for m in held:
                    q.reject(m, self.now, False)

    def cancel(self, c: str) -> None:
        sub = self.subs.get(c)
        if sub is not None and not sub.cancelled:
            sub.queue.cancel(sub, self.now)

    def close(self, c: str) -> None:
        sub = self.subs.pop(c, None)
        if sub is not None:
            sub.queue.close(sub, self.now)
            self._autoack()

    def wait(self) -> None:
        self.now += WAIT

    def remaining(self) -> list[tuple[int, bool]]:
        qs = [q for q in self.queues.values() if not q.deleted] if self.fanout else [self.queue]
        out = []
        for q in qs:
            q.dispatch(self.now)  # drops expired heads, as basic.get does
            out += [(m.id, m.redelivered) for m in q.held if not (m.expires is not None and self.now > m.expires)]
        return out


# ----------------------------------------------------------------------------------- the real side
class RealRun:
    """A script through pika against the real broker."""

    def __init__(self, url: str, qttl: float | None, fanout: bool) -> None:
        self.params = pika.URLParameters(url)
        self.name = f"simroll-case-{next(_ids)}-{time.monotonic_ns()}"
        self.fanout = fanout
        self.pub = pika.BlockingConnection(self.params)
        self.pch = self.pub.channel()
        self.pch.confirm_delivery()
        args = {"x-message-ttl": int(qttl * 1000)} if qttl is not None else None
        if fanout:
            self.pch.exchange_declare(self.name, "fanout")
        else:
            self.pch.queue_declare(self.name, arguments=args)
        self.cons: dict[str, tuple[Any, Any, str, str]] = {}  # c -> connection, channel, tag, queue
        self.got: dict[str, list[tuple[int, bool]]] = {}
        self.unacked: dict[str, list[tuple[int, int]]] = {}  # c -> [(msg, delivery tag)]
        self.auto: dict[str, bool] = {}
        self.next = 0

    def sync(self) -> None:
        for conn, ch, _tag, q in self.cons.values():
            ch.queue_declare(q, passive=True)
            conn.process_data_events(0)
        for conn, _ch, _tag, _q in self.cons.values():
            conn.process_data_events(0)

    def consume(self, c: str, prefetch: int, auto_ack: bool = False) -> None:
        if c in self.cons:
            return
        conn = pika.BlockingConnection(self.params)
        ch = conn.channel()
        q = self.name
        if self.fanout:
            q = ch.queue_declare(f"{self.name}.{c}", auto_delete=True).method.queue
            ch.queue_bind(q, self.name)
        if prefetch and not auto_ack:
            ch.basic_qos(prefetch_count=prefetch)
        self.got.setdefault(c, [])
        self.unacked[c] = []
        self.auto[c] = auto_ack

        def on_msg(_ch: Any, method: Any, _props: Any, body: bytes, c: str = c) -> None:
            m = int(body)
            self.got[c].append((m, bool(method.redelivered)))
            if not self.auto[c]:
                self.unacked[c].append((m, method.delivery_tag))

        tag = ch.basic_consume(q, on_msg, auto_ack=auto_ack)
        self.cons[c] = (conn, ch, tag, q)

    def publish(self, n: int, ttl: bool) -> None:
        props = pika.BasicProperties(expiration=str(TTL_MS)) if ttl else None
        for _ in range(n):
            if self.fanout:
                self.pch.basic_publish(self.name, "", str(self.next).encode(), props)
            else:
                self.pch.basic_publish("", self.name, str(self.next).encode(), props)
            self.next += 1

    def _ch(self, c: str) -> Any:
        return self.cons[c][1] if c in self.cons else None

    def ack(self, c: str, which: int, multiple: bool = False) -> None:
        held = self.unacked.get(c)
        if not held or c not in self.cons:
            return
        k = which % len(held)
        m, tag = held[k]
        self._ch(c).basic_ack(tag, multiple=multiple)
        del held[k - (k if multiple else 0) : k + 1]

    def reject(self, c: str, which: int, requeue: bool) -> None:
        held = self.unacked.get(c)
        if not held or c not in self.cons:
            return
        k = which % len(held)
        self._ch(c).basic_reject(held[k][1], requeue=requeue)
        del held[k]

    def nack_all(self, c: str, requeue: bool) -> None:
        held = self.unacked.get(c)
        if not held or c not in self.cons:
            return
        self._ch(c).basic_nack(held[-1][1], multiple=True, requeue=requeue)
        held.clear()

    def cancel(self, c: str) -> None:
        if c in self.cons:
            conn, ch, tag, q = self.cons[c]
            if tag:
                ch.basic_cancel(tag)
                self.cons[c] = (conn, ch, "", q)

    def close(self, c: str) -> None:
        if c in self.cons:
            conn, _ch, _tag, _q = self.cons.pop(c)
            conn.close()  # the connection (and its channel) goes: the broker requeues what it held
            self.unacked[c] = []

    def wait(self) -> None:
        time.sleep(WAIT)

    def remaining(self) -> list[tuple[int, bool]]:
        out = []
        queues = [q for _c, (_x, _y, _t, q) in sorted(self.cons.items())] if self.fanout else [self.name]
        for q in queues:
            while True:
                method, _props, body = self.pch.basic_get(q, auto_ack=True)
                if method is None:
                    break
                out.append((int(body), bool(method.redelivered)))
        return out

    def finish(self) -> None:
        for conn, _ch, _tag, _q in self.cons.values():
            conn.close()
        if self.fanout:
            self.pch.exchange_delete(self.name)
        else:
            self.pch.queue_delete(self.name)
        self.pub.close()


# ----------------------------------------------------------------------------------- the scripts
def _run(side: Any, script: list[Op]) -> dict[str, Any]:
    for op in script:
        getattr(side, op[0])(*op[1:])
        if isinstance(side, RealRun):
            side.sync()
    # a copy: closing the real connections afterwards requeues and redelivers into the live lists
    return {"got": {c: list(g) for c, g in side.got.items()}, "remaining": side.remaining()}


def _random_script(rng: random.Random, ttl: bool, fanout: bool) -> list[Op]:
    consumers = ["a", "b", "c", "d"][: rng.randint(1, 4)]
    script: list[Op] = []
    for c in consumers[: rng.randint(0, len(consumers))]:
        script.append(("consume", c, rng.choice([0, 1, 1, 2, 3])))
    for _ in range(rng.randint(4, 10)):
        kind = rng.choice(
            ["publish", "publish", "consume", "ack", "ack", "ack_multi", "reject", "nack_all", "cancel", "close"]
            + (["wait"] if ttl else [])
        )
        c = rng.choice(consumers)
        if kind == "publish":
            script.append(("publish", rng.randint(1, 4), ttl and rng.random() < 0.6))
        elif kind == "consume":
            script.append(("consume", c, rng.choice([0, 1, 2, 3])))
        elif kind == "ack":
            script.append(("ack", c, rng.choice([0, -1, 1])))
        elif kind == "ack_multi":
            script.append(("ack", c, rng.choice([0, -1, 1]), True))
        elif kind == "reject":
            script.append(("reject", c, rng.choice([0, -1]), rng.random() < 0.7))
        elif kind == "nack_all":
            script.append(("nack_all", c, rng.random() < 0.8))
        elif kind == "wait":
            script.append(("wait",))
        else:
            script.append((kind, c))
    script.append(("consume", consumers[-1], 0))
    return script


# hand-written cases: the behaviours the issue names, one each
HAND: dict[str, tuple[list[Op], float | None, bool]] = {
    "round-robin-two-consumers": ([("consume", "a", 0), ("consume", "b", 0), ("publish", 6, False)], None, False),
    "held-messages-go-to-first-consumer": (
        [("publish", 5, False), ("consume", "a", 0), ("consume", "b", 0), ("publish", 2, False)],
        None,
        False,
    ),
    "prefetch-1-alternates-with-acks": (
        [
            ("consume", "a", 1),
            ("consume", "b", 1),
            ("publish", 5, False),
            ("ack", "b", 0),
            ("ack", "a", 0),
            ("ack", "b", 0),
        ],
        None,
        False,
    ),
    "close-requeues-to-original-position": (
        [("consume", "a", 2), ("publish", 5, False), ("close", "a"), ("consume", "b", 0)],
        None,
        False,
    ),
    "cancel-keeps-unacked": (
        [
            ("consume", "a", 0),
            ("publish", 3, False),
            ("cancel", "a"),
            ("consume", "b", 0),
            ("publish", 2, False),
            ("ack", "a", 0),
            ("close", "a"),
        ],
        None,
        False,
    ),
    "reject-requeue-goes-back-to-head": (
        [("consume", "a", 1), ("publish", 3, False), ("reject", "a", 0, True), ("consume", "b", 1)],
        None,
        False,
    ),
    "per-message-ttl-while-queued": (
        [("publish", 3, True), ("publish", 2, False), ("wait",), ("consume", "a", 0)],
        None,
        False,
    ),
    "prefetched-message-does-not-expire": (
        [("consume", "a", 1), ("publish", 3, True), ("wait",), ("close", "a"), ("consume", "b", 0)],
        None,
        False,
    ),
    "queue-ttl": ([("publish", 3, False), ("wait",), ("publish", 2, False), ("consume", "a", 0)], 0.4, False),
    "fanout-stopped-consumer-misses": (
        [
            ("consume", "a", 0),
            ("consume", "b", 0),
            ("publish", 2, False),
            ("close", "b"),
            ("publish", 2, False),
            ("consume", "b", 0),
            ("publish", 1, False),
        ],
        None,
        True,
    ),
    "auto-ack-consumer": (
        [
            ("consume", "a", 0, True),
            ("consume", "b", 1),
            ("publish", 5, False),
            ("close", "a"),
            ("close", "b"),
            ("consume", "c", 0),
        ],
        None,
        False,
    ),
}


def _cases() -> list[Any]:
    cases = [pytest.param(s, qttl, fan, id=name) for name, (s, qttl, fan) in HAND.items()]
    rng = random.Random(13)
    for i in range(120):
        cases.append(pytest.param(_random_script(rng, False, False), None, False, id=f"random-{i}"))
    for i in range(18):
        cases.append(pytest.param(_random_script(rng, True, False), None, False, id=f"random-ttl-{i}"))
    for i in range(6):
        cases.append(pytest.param(_random_script(rng, True, False), 0.4, False, id=f"random-queue-ttl-{i}"))
    for i in range(10):
        s = [op for op in _random_script(rng, False, True) if op[0] in ("consume", "publish", "close", "ack")]
        cases.append(pytest.param(s, None, True, id=f"random-fanout-{i}"))
    return cases


@pytest.mark.parametrize("script,qttl,fanout", _cases())
def test_model_matches_rabbitmq(amqp_url: str, script: list[Op], qttl: float | None, fanout: bool) -> None:
    real = RealRun(amqp_url, qttl, fanout)
    try:
        want = _run(real, script)
    finally:
        real.finish()
    got = _run(ModelRun(qttl, fanout), script)
    assert got == want, f"script {script}"
