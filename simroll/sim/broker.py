"""The message broker: a topic queue, one queue per server, and the consumers they push to.

Like RabbitMQ with oslo.messaging's default unlimited prefetch, the broker pushes a message
to a consumer as soon as it arrives; a consumer is anything that satisfies :class:`Consumer`
(the engines of :mod:`simroll.sim.engine`). The broker knows nothing of what handling a
message means: it publishes, routes, delivers, requeues and expires.
"""

from __future__ import annotations

import functools
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import simpy
from simpy.events import Event

from simroll.scenario.rpc import Endpoint, SendRule, accepts_version
from simroll.scenario.spec import BusSpec
from simroll.scenario.versions import Version
from simroll.sim.chooser import DELAY_LEVELS, Chooser
from simroll.sim.trace import Trace


@functools.cache
def _text(v: Version) -> str:
    """A version as the trace writes it; cached, as every send writes one."""
    return str(v)


@dataclass(slots=True, eq=False)
class Message:
    """One RPC message, from its publication until it is handled, lost or expires."""

    id: int
    method: str
    version: Version
    args: frozenset[str]
    namespace: str | None
    row: int
    call: bool
    sender: str
    send_rec: int
    hop: int = 0
    queue: Queue | None = None  # the queue it was published to (requeues go back there)
    enqueued: float = 0.0
    expires: float | None = None
    taken: bool = False
    expired: bool = False


class Consumer(Protocol):
    """What the broker needs of a consumer (an engine): where to push, how to wake it."""

    name: str
    backlog: deque[Message]  # delivered (prefetched), not yet taken
    wake: Event | None  # idle workers wait on this
    server_queue: Queue

    @property
    def running(self) -> bool:
        """Does it take messages from its per-server queue now?"""
        ...

    def takes(self, version: Version) -> bool:
        """Does it listen for ``version`` (the version-routed bus's filter)?"""
        ...


class Queue:
    """A broker queue: messages held while no consumer may take them."""

    __slots__ = ("name", "held", "owner")

    def __init__(self, name: str, owner: Consumer | None = None):
        self.name = name
        self.held: deque[Message] = deque()
        self.owner = owner  # the engine of a per-server queue; None for the topic queue


class Broker:
    """The bus of one run: its queues, its consumers in the order they joined, round robin."""

    def __init__(self, env: simpy.Environment, bus: BusSpec, chooser: Chooser, trace: Trace):
        self.env = env
        self.chooser = chooser
        self.trace = trace
        self.version_routed = bus.delivery == "version-routed"
        self.ack_on_complete = bus.ack == "on-complete"
        self.latency = bus.latency
        self.max_delay = bus.max_delay
        self.call_timeout = bus.call_timeout
        self.topic = Queue(bus.topic)
        self.queues: list[Queue] = [self.topic]  # the topic queue, then the per-server queues
        self.consumers: list[Consumer] = []  # running engines consuming the topic, in the order they started
        self.rr = 0  # the broker's round-robin position
        # version-routed bus: the consumers of each version, in consumer order; rebuilt when consumers change
        self.routed: dict[Version, list[Consumer]] = {}
        # engine -> its last stop or kill record and the endpoints it listened on then
        self.last_stop: dict[str, tuple[int, tuple[Endpoint, ...]]] = {}
        self._next_msg = 0

    def server_queue(self, owner: Consumer) -> Queue:
        """A new per-server queue of ``owner`` (one per engine, for fanout casts)."""
        q = Queue(f"{self.topic.name}.{owner.name}", owner)
        self.queues.append(q)
        return q

    # -------------------------------------------------------------- publishing
    def publish(self, sender: str, method: str, rule: SendRule, row: int, call: bool,
                queue: Queue | None = None, hop: int = 0) -> None:
        """Publish a message sent by ``rule`` to ``queue`` (default: the topic), after the bus latency
        and any extra delay the chooser picks."""
        now = self.env.now
        mid = self._next_msg
        self._next_msg = mid + 1
        q = queue if queue is not None else self.topic
        rec = self.trace.send(now, engine=sender, msg=mid, method=method, version=_text(rule.version),
                              queue=q.name, call=call, row=row)
        msg = Message(mid, method, rule.version, rule.args, rule.namespace, row, call, sender, rec, hop)
        delay = self.latency
        if self.max_delay > 0:
            level = self.chooser.pick("delay", DELAY_LEVELS + 1)
            if level:  # a pinned deviation from the default: say so in the trace
                extra = self.max_delay * level / DELAY_LEVELS
                delay += extra
                self.trace.emit(now, "choice", at=self.chooser.counts["delay"] - 1, what="delay", msg=mid, delay=extra)
        if call:
            msg.expires = now + self.call_timeout
        if delay > 0:
            arrive = self.arrive
            self.env.timeout(delay).callbacks.append(lambda _ev: arrive(msg, q))
        else:
            self.arrive(msg, q)

    def arrive(self, msg: Message, q: Queue) -> None:
        """The broker receives ``msg`` on ``q`` and pushes it to a consumer, or holds it.

        Like RabbitMQ with oslo.messaging's default unlimited prefetch, a topic message is
        pushed at once to the next consumer in round-robin order (busy or not) and waits in
        that engine's backlog; under version routing only engines that listen for its version
        are consumers of it. A per-server message goes to its engine while it runs.
        """
        msg.queue = q
        msg.enqueued = self.env.now
        if q.owner is not None:
            eng = q.owner
            if eng.running:
                self.deliver(eng, msg)
            else:
                q.held.append(msg)
            return
        consumers = self.consumers
        if self.version_routed:
            routed = self.routed.get(msg.version)
            if routed is None:
                routed = self.routed[msg.version] = [e for e in consumers if e.takes(msg.version)]
            consumers = routed
        n = len(consumers)
        if n == 0:
            q.held.append(msg)
            return
        k = self.rr
        self.rr = k + 1
        if n > 1:
            p = self.chooser.pick("consumer", n)
            if p:
                self.trace.emit(self.env.now, "choice", at=self.chooser.counts["consumer"] - 1, what="consumer",
                                msg=msg.id, to=consumers[(k + p) % n].name, default=consumers[k % n].name)
                k += p
        self.deliver(consumers[k % n], msg)

    def deliver(self, eng: Consumer, msg: Message) -> None:
        """Push ``msg`` into ``eng``'s backlog and wake an idle worker."""
        eng.backlog.append(msg)
        if eng.wake is not None:
            ev, eng.wake = eng.wake, None
            ev.succeed()

    def requeue(self, engine: str, msg: Message, cause: int) -> None:
        """``msg``, unacknowledged by ``engine``, goes back to the queue it was published to."""
        self.trace.emit(self.env.now, "requeue", engine=engine, msg=msg.id, cause=[cause, msg.send_rec])
        assert msg.queue is not None, "only a message that arrived is requeued"
        self.arrive(msg, msg.queue)

    def requeue_backlog(self, eng: Consumer, cause: int) -> None:
        """Prefetched but unacknowledged messages go back to their queues (the broker's rule)."""
        backlog, eng.backlog = eng.backlog, deque()
        for msg in backlog:
            if self.expired(msg):
                continue
            self.requeue(eng.name, msg, cause)

    def expired(self, msg: Message) -> bool:
        """Has ``msg`` expired? Like RabbitMQ, an expired call is noticed when it would be handed
        out (or at the end of the run), and discarded then; the record says when it expired."""
        if msg.expired:
            return True
        if msg.expires is None or self.env.now <= msg.expires:
            return False
        msg.expired = True
        assert msg.queue is not None, "a message expires in the queue it arrived on"
        self.trace.emit(self.env.now, "expire", msg=msg.id, queue=msg.queue.name,
                        expired_at=msg.expires, cause=[msg.send_rec] + self.last_stops_accepting(msg))
        return True

    # -------------------------------------------------------------- consumers
    def join(self, eng: Consumer) -> None:
        """``eng`` starts consuming: it gets what its queues hold (with unlimited prefetch, all of it)."""
        self.consumers.append(eng)
        self.routed.clear()
        own, eng.server_queue.held = eng.server_queue.held, deque()
        for msg in own:
            self.deliver(eng, msg)
        held = self.topic.held
        if held:
            keep: deque[Message] = deque()
            for msg in held:
                if self.expired(msg):
                    continue
                if not self.version_routed or eng.takes(msg.version):
                    self.deliver(eng, msg)
                else:
                    keep.append(msg)
            self.topic.held = keep

    def leave(self, eng: Consumer, rec: int, endpoints: tuple[Endpoint, ...]) -> None:
        """``eng`` stops consuming, by the stop or kill record ``rec``, having listened on ``endpoints``."""
        self.last_stop[eng.name] = (rec, endpoints)
        if eng in self.consumers:
            self.consumers.remove(eng)
            self.routed.clear()

    def last_stops_accepting(self, m: Message) -> list[int]:
        """The stop or kill of the last engine that could have taken ``m``."""
        best: int | None = None
        q = m.queue
        owner = q.owner if q is not None else None
        for name, (rec, endpoints) in self.last_stop.items():
            if owner is not None and owner.name != name:
                continue
            if accepts_version(endpoints, m.version):
                best = rec if best is None else max(best, rec)
        return [] if best is None else [best]


__all__ = ["Broker", "Consumer", "Message", "Queue"]
