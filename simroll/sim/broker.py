"""The message broker, modelled on RabbitMQ: queues, their consumers, prefetch, acks, requeues, TTL.

Two layers. :class:`Queue` and :class:`Subscription` are a small, pure model of one RabbitMQ
queue and its consumers -- no SimPy, no trace -- that ``tests/broker`` drives operation by
operation against a real ``rabbitmq-server`` and compares. :class:`Broker` is the bus of one
simulated run: it owns the queues (the topic queue, or one per version on the version-routed
bus, and one fanout queue per engine), publishes after the bus latency, and writes the trace.
A consumer is anything that satisfies :class:`Consumer` (the engines of :mod:`simroll.sim.engine`).

What the queue model follows (RabbitMQ 3.10 classic queues, checked by ``tests/broker``):

* each queue has its own consumers, in the order they registered, and hands each message to
  the consumer at the head of its rotation, which then goes to the tail (round robin per queue);
* a consumer with a finite prefetch (``basic.qos``) that holds that many unacknowledged
  messages leaves the rotation, and rejoins at its tail when an ack frees credit;
* an unacknowledged message that comes back (reject or nack with requeue, or its consumer's
  channel closes) goes back to its original position, flagged ``redelivered``;
* a message's TTL applies while it is in the queue only; an expired message is dropped when
  it reaches the head (and at the end of a run), never while a consumer holds it;
* ``basic.cancel`` stops deliveries but leaves the consumer holding its unacked messages.
"""

from __future__ import annotations

import bisect
import functools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import simpy
from simpy.events import Event

from simroll.scenario.rpc import Endpoint, SendRule, accepts_version
from simroll.scenario.spec import DEFAULT_VHOST, BusSpec
from simroll.scenario.versions import Version
from simroll.sim.chooser import DELAY_LEVELS, Chooser
from simroll.sim.trace import Trace


@functools.cache
def _text(v: Version) -> str:
    """A version as the trace writes it; cached, as every send writes one."""
    return str(v)


@dataclass(slots=True, eq=False)
class Message:
    """One message, from its publication until it is acknowledged, lost or expires."""

    id: int
    method: str = ""
    version: Version | None = None
    args: frozenset[str] = frozenset()
    namespace: str | None = None
    row: int = 0
    call: bool = False
    sender: str = ""
    send_rec: int = -1
    hop: int = 0
    # issue 20: a call's request id (the message id of its first attempt; -1: its own id)
    op: int = -1
    queue: Queue | None = None  # the queue it was published to (requeues go back there)
    pos: int = 0  # its position in that queue, kept when it is requeued
    enqueued: float = 0.0  # when it first reached the queue (a requeue keeps it)
    expires: float | None = None  # per-message TTL: dropped if still queued after this time
    deadline: float | None = None  # a call's caller gives up at this time
    sub: Subscription | None = None  # the consumer holding it unacknowledged
    redelivered: bool = False
    taken: bool = False  # acknowledged (oslo: before dispatch) or being handled
    expired: bool = False
    # issue 20: whether the caller has its reply, and whether it gave up waiting (then a reply is late)
    replied: bool = False
    gave_up: bool = False
    waiter: Event | None = None  # succeeds at the reply (an engine's start-up call waits on it)


class Subscription:
    """One consumer of one queue (``basic.consume``) and the messages it holds unacknowledged."""

    __slots__ = ("consumer", "queue", "prefetch", "unacked", "blocked", "cancelled", "deliver")

    def __init__(self, consumer: Any, queue: Queue, prefetch: int, deliver: Callable[[Message], None]):
        self.consumer = consumer
        self.queue = queue
        self.prefetch = prefetch  # 0: unlimited
        self.unacked: dict[int, Message] = {}  # id -> message, in delivery order
        self.blocked = False  # out of the rotation: no prefetch credit left
        self.cancelled = False
        self.deliver = deliver


class Queue:
    """A RabbitMQ queue: ready messages in position order, and its consumers' rotation."""

    __slots__ = (
        "name",
        "owner",
        "held",
        "subs",
        "ttl",
        "auto_delete",
        "deleted",
        "on_expire",
        "on_drop",
        "picker",
        "vhost",
        "_pos",
    )

    def __init__(
        self,
        name: str,
        owner: Any = None,
        *,
        ttl: float | None = None,
        auto_delete: bool = False,
        vhost: str = DEFAULT_VHOST,
    ):
        self.name = name
        self.vhost = vhost  # the virtual host it lives on (its name is only unique there)
        self.owner = owner  # the engine of a per-server (fanout) queue; None for a topic queue
        self.held: deque[Message] = deque()  # ready messages, by position
        self.subs: deque[Subscription] = deque()  # consumers with credit, head = next to receive
        self.ttl = ttl  # x-message-ttl
        self.auto_delete = auto_delete
        self.deleted = False
        self.on_expire: Callable[[Message], None] | None = None
        self.on_drop: Callable[[Message], None] | None = None  # a message deleted with its queue
        # picks which consumer takes a message, as an offset into the rotation (0: its head)
        self.picker: Callable[[Message, deque[Subscription]], int] | None = None
        self._pos = 0

    # -------------------------------------------------------------- the operations
    def consume(
        self, consumer: Any, deliver: Callable[[Message], None], prefetch: int = 0, now: float = 0.0
    ) -> Subscription:
        """``basic.consume``: ``consumer`` joins the tail of the rotation and gets what is ready."""
        sub = Subscription(consumer, self, prefetch, deliver)
        self.deleted = False  # an auto-delete queue declared again
        self.subs.append(sub)
        if self.held:
            self.dispatch(now)
        return sub

    def publish(self, msg: Message, now: float) -> None:
        """A message arrives: it takes the next position and is handed out at once if it can be."""
        msg.queue = self
        msg.pos = self._pos
        self._pos += 1
        msg.enqueued = now
        if self.ttl is not None:
            exp = now + self.ttl
            if msg.expires is None or exp < msg.expires:
                msg.expires = exp
        if self.deleted:
            if self.on_drop is not None:
                self.on_drop(msg)
            return
        subs = self.subs
        if subs and not self.held:
            # the hot path, :meth:`_hand` inlined: straight to the consumer the rotation (or the picker)
            # names, if it has credit; else the general loop carries on from that pick
            picker = self.picker
            k = picker(msg, subs) if picker is not None and len(subs) > 1 else 0
            sub = subs[k]
            prefetch = sub.prefetch
            if prefetch and len(sub.unacked) >= prefetch:
                self._hand(msg, False, k)
                return
            if k:
                del subs[k]
                subs.append(sub)
            else:
                subs.rotate(-1)  # the head goes to the tail
            sub.unacked[msg.id] = msg
            msg.sub = sub
            sub.deliver(msg)
        else:
            self.held.append(msg)
            self.dispatch(now)

    def dispatch(self, now: float) -> None:
        """Hand ready messages, head first, to consumers with credit; drop expired heads."""
        held = self.held
        while held:
            msg = held[0]
            if msg.expires is not None and now > msg.expires:
                held.popleft()
                self._expire(msg)
                continue
            if not self.subs:
                return
            if not self._hand(msg, True):
                return

    def _hand(self, msg: Message, queued: bool = False, picked: int = -1) -> bool:
        """Give ``msg`` to the consumer at the head of the rotation (or the one the picker names),
        which goes to the tail; False if no consumer has credit. ``picked``: the offset the picker
        already chose for the first try (-1: none yet; each try is one choice point).

        Like RabbitMQ, a consumer out of prefetch credit keeps its place until the queue tries it:
        only then does it leave the rotation (blocked), to rejoin at the tail when an ack frees credit.
        """
        subs = self.subs
        picker = self.picker
        while subs:
            if picked >= 0:
                k, picked = picked, -1
            else:
                k = picker(msg, subs) if picker is not None and len(subs) > 1 else 0
            sub = subs[k]
            if sub.prefetch and len(sub.unacked) >= sub.prefetch:
                if k:  # the picked consumer has no credit: the head is tried instead
                    sub = subs[0]
                    k = 0
                    if sub.prefetch and len(sub.unacked) >= sub.prefetch:
                        subs.popleft()
                        sub.blocked = True
                        continue
                else:
                    subs.popleft()
                    sub.blocked = True
                    continue
            if k:
                del subs[k]
            else:
                subs.popleft()
            subs.append(sub)
            if queued:
                self.held.popleft()
            sub.unacked[msg.id] = msg
            msg.sub = sub
            sub.deliver(msg)
            return True
        if not queued:
            self.held.append(msg)
        return False

    def _expire(self, msg: Message) -> None:
        msg.expired = True
        if self.on_expire is not None:
            self.on_expire(msg)

    def ack(self, msg: Message, now: float) -> None:
        """``basic.ack``: the consumer is done with ``msg``, which gives it credit back."""
        sub = msg.sub
        assert sub is not None, "only a delivered message is acknowledged"
        del sub.unacked[msg.id]
        msg.sub = None
        if sub.blocked and not sub.cancelled:
            sub.blocked = False
            self.subs.append(sub)  # RabbitMQ re-adds an unblocked consumer at the tail
        if self.held:
            self.dispatch(now)

    def reject(self, msg: Message, now: float, requeue: bool = True) -> None:
        """``basic.reject`` / ``basic.nack``: drop ``msg`` or return it to its position."""
        sub = msg.sub
        assert sub is not None, "only a delivered message is rejected"
        del sub.unacked[msg.id]
        msg.sub = None
        if requeue:
            self._return(msg)
        if sub.blocked and not sub.cancelled:
            sub.blocked = False
            self.subs.append(sub)
        self.dispatch(now)

    def cancel(self, sub: Subscription, now: float) -> None:
        """``basic.cancel``: no more deliveries; the consumer keeps (and may ack) what it holds.
        An auto-delete queue goes with its last consumer."""
        if sub.cancelled:
            return
        sub.cancelled = True
        if not sub.blocked:
            self.subs.remove(sub)
        if self.auto_delete and not self.subs:
            self.delete()

    def requeue(self, msgs: list[Message], now: float) -> None:
        """``basic.nack(multiple, requeue)``: every one of ``msgs`` goes back to its original
        position at once, flagged redelivered, before any is handed out again."""
        unblocked = []
        for msg in msgs:
            sub = msg.sub
            assert sub is not None, "only a delivered message is requeued"
            del sub.unacked[msg.id]
            msg.sub = None
            if sub.blocked and not sub.cancelled:
                sub.blocked = False
                unblocked.append(sub)
            if self.deleted:
                if self.on_drop is not None:
                    self.on_drop(msg)
            else:
                self._return(msg)
        self.subs.extend(unblocked)
        self.dispatch(now)

    def close(self, sub: Subscription, now: float) -> list[Message]:
        """The consumer's channel closes (or its connection dies): it stops consuming and every
        message it held unacknowledged returns to its original position, flagged redelivered.
        Returns those messages, in delivery order."""
        if not sub.cancelled:
            sub.cancelled = True
            if not sub.blocked:
                self.subs.remove(sub)
        back = list(sub.unacked.values())
        sub.unacked.clear()
        for msg in back:
            msg.sub = None
        if self.auto_delete and not self.subs:
            self.delete()
        if self.deleted:
            if self.on_drop is not None:
                for msg in back:
                    self.on_drop(msg)
            return back
        for msg in back:
            self._return(msg)
        self.dispatch(now)
        return back

    def _return(self, msg: Message) -> None:
        msg.redelivered = True
        msg.taken = False
        held = self.held
        if not held or held[-1].pos < msg.pos:
            held.append(msg)
        else:
            held.insert(bisect.bisect_left(held, msg.pos, key=_pos), msg)

    def delete(self) -> None:
        """The queue goes (auto-delete: its last consumer left): its ready messages are dropped."""
        self.deleted = True
        dropped, self.held = self.held, deque()
        if self.on_drop is not None:
            for msg in dropped:
                self.on_drop(msg)


def _pos(m: Message) -> int:
    return m.pos


def queue_name(vhost: str, name: str) -> str:
    """A queue's name as the trace writes it: ``name`` on the default vhost '/', else ``vhost/name``."""
    return name if vhost == DEFAULT_VHOST else f"{vhost}/{name}"


class Consumer(Protocol):
    """What the broker needs of a consumer (an engine): where to push, how to wake it."""

    name: str
    topic: str  # the topic of its service
    vhost: str  # the virtual host it connects to
    backlog: deque[Message]  # delivered (prefetched), not yet taken
    wake: Event | None  # idle workers wait on this
    subs: list[Subscription]  # its subscriptions while it consumes
    server_queue: Queue  # its own (fanout) queue

    @property
    def running(self) -> bool:
        """Does it take messages now?"""
        ...

    def takes(self, version: Version) -> bool:
        """Does it listen for ``version`` (the version-routed bus's filter)?"""
        ...


class Broker:
    """The bus of one run: its queues and consumers, publishing, acks, requeues and expiry."""

    def __init__(self, env: simpy.Environment, bus: BusSpec, chooser: Chooser, trace: Trace):
        self.env = env
        self.chooser = chooser
        # Chooser.pick is inlined in _pick (one call less per delivery) for the plain chooser only:
        # a subclass (simroll verify's recorder) sees every choice point through its own pick
        self._plain_chooser = type(chooser) is Chooser
        self.trace = trace
        # a search's trace only numbers the send records nobody reads (Trace.wanted): the broker
        # numbers them itself (subscriptions are made before the model is built)
        self._send_built = trace.wanted("send")
        self.version_routed = bus.delivery == "version-routed"
        self.ack_after = bus.ack in ("after-handling", "on-complete")
        self.prefetch = bus.prefetch
        self.latency = bus.latency
        self.max_delay = bus.max_delay
        self.call_timeout = bus.call_timeout
        self.caller_timeout: float | None = None  # the clients' own timeout (workload.timeout), if set
        self.topic = self._queue(Queue(bus.topic))  # the default topic queue (of the implicit service)
        self.queues: list[Queue] = [self.topic]  # topic queues, per-server queues, in the order declared
        self.topics: dict[str, Queue] = {self.topic.name: self.topic}  # queue name -> topic queue
        self.consumers: list[Consumer] = []  # running engines, in the order they started
        # version-routed bus: one queue per topic queue and version, consumed by the engines that listen for it
        self.routed: dict[tuple[str, Version], Queue] = {}
        # engine -> its last stop or kill record, the endpoints it listened on then and its topic queue
        self.last_stop: dict[str, tuple[int, tuple[Endpoint, ...], str]] = {}
        self._next_msg = 0
        # per-vhost depth (messages ready or unacknowledged), kept only when the scenario names vhosts
        self.depth: dict[str, int] | None = None
        self._drain_waiters: dict[str, Event] = {}

    def _queue(self, q: Queue) -> Queue:
        q.on_expire = self._expired
        q.picker = self._pick
        q.on_drop = self._dropped
        return q

    def _dropped(self, msg: Message) -> None:
        assert msg.queue is not None, "a dropped message was published to a queue"
        if self.depth is not None:
            self._gone(msg.queue.vhost)
        self.trace.emit(
            self.env.now,
            "dropped",
            msg=msg.id,
            queue=msg.queue.name,
            why="auto-delete queue deleted",
            cause=[msg.send_rec],
        )

    def server_queue(self, owner: Consumer) -> Queue:
        """The per-server queue of ``owner`` on its vhost (for fanout casts)."""
        # oslo declares its fanout queues auto-delete: one per running server, gone when it stops
        name = queue_name(owner.vhost, f"{owner.topic}.{owner.name}")
        q = self._queue(Queue(name, owner, auto_delete=True, vhost=owner.vhost))
        self.queues.append(q)
        return q

    def topic_queue(self, vhost: str, topic: str) -> Queue:
        """The queue of ``topic`` on ``vhost`` (declared at first use)."""
        name = queue_name(vhost, topic)
        q = self.topics.get(name)
        if q is None:
            q = self.topics[name] = self._queue(Queue(name, vhost=vhost))
            self.queues.append(q)
        return q

    def _routed(self, base: Queue, version: Version) -> Queue:
        key = (base.name, version)
        q = self.routed.get(key)
        if q is None:
            q = self.routed[key] = self._queue(Queue(base.name, vhost=base.vhost))
            self.queues.append(q)
            for eng in self.consumers:  # existing consumers of this version, in start order
                if queue_name(eng.vhost, eng.topic) == base.name and eng.takes(version):
                    eng.subs.append(q.consume(eng, self._deliver_to(eng), self.prefetch, self.env.now))
        return q

    def _pick(self, msg: Message, subs: deque[Subscription]) -> int:
        """The consumer choice point (a queue asks only when it has two consumers or more)."""
        ch = self.chooser
        if self._plain_chooser:  # Chooser.pick("consumer", n), inlined
            counts = ch.counts
            i = counts.get("consumer", 0)
            counts["consumer"] = i + 1
            ch.points += 1
            if not ch.pinned:
                return 0
            p = ch.pinned.get(("consumer", i), 0) % len(subs)
        else:
            p = ch.pick("consumer", len(subs))
            i = ch.counts["consumer"] - 1
        if p:  # a pinned deviation from round robin: say so in the trace
            self.trace.emit(
                self.env.now,
                "choice",
                at=i,
                what="consumer",
                msg=msg.id,
                to=subs[p].consumer.name,
                default=subs[0].consumer.name,
            )
        return p

    # -------------------------------------------------------------- publishing
    def publish(
        self,
        sender: str,
        method: str,
        rule: SendRule,
        row: int,
        call: bool,
        queue: Queue | None = None,
        hop: int = 0,
        service: str | None = None,
        retry_of: int | None = None,
        attempt: int = 1,
        cause: int | None = None,
    ) -> Message:
        """Publish a message sent by ``rule`` to ``queue`` (default: the topic), after the bus latency
        and any extra delay the chooser picks. ``service``: the service it is sent to, written in the
        ``send`` record (a scenario that declares services or vhosts); None writes the record without it.
        ``retry_of``: a call's retry names its first attempt (written with ``attempt``, caused by ``cause``,
        the caller's ``timeout`` record)."""
        now = self.env._now  # Environment.now, without the property call
        mid = self._next_msg
        self._next_msg = mid + 1
        q = queue if queue is not None else self.topic
        if retry_of is None and service is None and not self._send_built:  # a search's: numbered only
            rec = self.trace.count
            self.trace.count = rec + 1
        elif retry_of is None and service is None:  # the common case: the trace's fast writer
            rec = self.trace.send(
                now,
                engine=sender,
                msg=mid,
                method=method,
                version=_text(rule.version),
                queue=q.name,
                call=call,
                row=row,
            )
        else:  # the optional keys, in the order the trace has them: service, then the retry's
            optional: dict[str, Any] = {} if service is None else {"service": service}
            if retry_of is not None:
                optional.update(retry_of=retry_of, attempt=attempt, cause=[] if cause is None else [cause])
            rec = self.trace.emit(
                now,
                "send",
                engine=sender,
                msg=mid,
                method=method,
                version=_text(rule.version),
                queue=q.name,
                call=call,
                row=row,
                **optional,
            )
        msg = Message(
            mid,
            method,
            rule.version,
            rule.args,
            rule.namespace,
            row,
            call,
            sender,
            rec,
            hop,
            mid if retry_of is None else retry_of,
        )
        delay = self.latency
        if self.max_delay > 0:
            level = self.chooser.pick("delay", DELAY_LEVELS + 1)
            if level:  # a pinned deviation from the default: say so in the trace
                extra = self.max_delay * level / DELAY_LEVELS
                delay += extra
                self.trace.emit(now, "choice", at=self.chooser.counts["delay"] - 1, what="delay", msg=mid, delay=extra)
        if call:
            # oslo.messaging sets the call's timeout as the message's TTL; the caller gives up then too
            msg.expires = msg.deadline = now + self.call_timeout
            if self.caller_timeout is not None:  # the caller's own timeout, apart from the TTL
                msg.deadline = now + self.caller_timeout
        if delay > 0:
            arrive = self.arrive
            self.env.timeout(delay).callbacks.append(lambda _ev: arrive(msg, q))
            return msg
        # it arrives now: :meth:`arrive`, inlined
        if self.version_routed and q.owner is None:
            assert msg.version is not None, "a sent message has a version"
            q = self._routed(q, msg.version)
        if self.depth is not None:
            self.depth[q.vhost] = self.depth.get(q.vhost, 0) + 1
        q.publish(msg, now)
        return msg

    def arrive(self, msg: Message, q: Queue) -> None:
        """The broker receives ``msg`` on ``q``: the queue hands it to a consumer or holds it."""
        if self.version_routed and q.owner is None:
            assert msg.version is not None, "a sent message has a version"
            q = self._routed(q, msg.version)
        if self.depth is not None:
            self.depth[q.vhost] = self.depth.get(q.vhost, 0) + 1
        q.publish(msg, self.env.now)

    def _deliver_to(self, eng: Consumer) -> Callable[[Message], None]:
        def deliver(msg: Message) -> None:
            # push into the engine's prefetch backlog and wake an idle worker
            eng.backlog.append(msg)
            if eng.wake is not None:
                ev, eng.wake = eng.wake, None
                ev.succeed()

        return deliver

    def ack(self, msg: Message, now: float | None = None) -> None:
        """The engine acknowledges ``msg`` (before dispatch or after handling, per ``bus.ack``), at
        ``now`` if the caller has the time at hand (else the broker reads the clock)."""
        if msg.sub is not None:  # else it was requeued, or its consumer's channel closed
            q = msg.queue
            assert q is not None, "a delivered message has a queue"
            q.ack(msg, self.env.now if now is None else now)
            if self.depth is not None:
                self._gone(q.vhost)

    # -------------------------------------------------------------- virtual hosts
    def watch_vhosts(self, vhosts: list[str]) -> None:
        """Keep the depth of every vhost (messages ready or unacknowledged in its queues), from now on."""
        self.depth = dict.fromkeys(vhosts, 0)

    def _gone(self, vhost: str) -> None:
        """A message left ``vhost`` (acknowledged, expired or dropped): wake a drain waiting for it."""
        assert self.depth is not None, "depths are kept"
        n = self.depth[vhost] = self.depth[vhost] - 1
        if n == 0 and vhost in self._drain_waiters:
            self._drain_waiters.pop(vhost).succeed()

    def depths(self) -> dict[str, int]:
        """Messages ready or unacknowledged per vhost, as ``rabbitmqctl list_queues`` would sum them."""
        return dict(self.depth or {})

    def drained(self, vhost: str) -> Event | None:
        """None if ``vhost`` holds no message now, else an event that fires when it holds none."""
        if self.depth is None or self.depth.get(vhost, 0) == 0:
            return None
        ev = self._drain_waiters.get(vhost)
        if ev is None:
            ev = self._drain_waiters[vhost] = self.env.event()
        return ev

    def requeue_backlog(self, eng: Consumer, cause: int) -> None:
        """A stopping engine hands back what it prefetched and has not taken (a multiple nack):
        each message returns to its original position (records ``requeue``)."""
        backlog, eng.backlog = eng.backlog, deque()
        by_queue: dict[int, tuple[Queue, list[Message]]] = {}
        for msg in backlog:
            q = msg.queue
            assert q is not None, "a delivered message has a queue"
            by_queue.setdefault(id(q), (q, []))[1].append(msg)
        now = self.env.now
        for q, msgs in by_queue.values():
            for msg in sorted(msgs, key=_pos):
                if not q.deleted:
                    self.trace.emit(now, "requeue", engine=eng.name, msg=msg.id, cause=[cause, msg.send_rec])
            q.requeue(msgs, now)

    def close(self, eng: Consumer, cause: int) -> None:
        """``eng``'s channel closes: what it holds unacknowledged goes back to its original position
        in its queue (records ``requeue``), or is dropped with an auto-delete queue."""
        subs, eng.subs = eng.subs, []
        eng.backlog = deque()
        now = self.env.now
        for sub in subs:
            q = sub.queue
            back = q.close(sub, now)
            for msg in sorted(back, key=_pos):
                if not q.deleted:
                    self.trace.emit(now, "requeue", engine=eng.name, msg=msg.id, cause=[cause, msg.send_rec])

    def expired(self, msg: Message) -> bool:
        """Has ``msg`` expired in its queue? Like RabbitMQ, a message expires only while queued:
        noticed when it would be handed out (or at the end of the run)."""
        if msg.expired:
            return True
        if msg.expires is None or self.env.now <= msg.expires or msg.sub is not None:
            return False
        msg.expired = True
        self._expired(msg)
        return True

    def _expired(self, msg: Message) -> None:
        assert msg.queue is not None, "a message expires in the queue it arrived on"
        if self.depth is not None:
            self._gone(msg.queue.vhost)
        self.trace.emit(
            self.env.now,
            "expire",
            msg=msg.id,
            queue=msg.queue.name,
            expired_at=msg.expires,
            cause=[msg.send_rec] + self.last_stops_accepting(msg),
        )

    # -------------------------------------------------------------- consumers
    def join(self, eng: Consumer) -> None:
        """``eng`` starts consuming its server queue and the topic (or the version queues it takes)."""
        self.consumers.append(eng)
        now, deliver, pf = self.env.now, self._deliver_to(eng), self.prefetch
        eng.subs = []
        eng.subs.append(eng.server_queue.consume(eng, deliver, pf, now))
        topic = self.topic_queue(eng.vhost, eng.topic)
        if self.version_routed:
            for (name, v), q in self.routed.items():
                if name == topic.name and eng.takes(v):
                    eng.subs.append(q.consume(eng, deliver, pf, now))
        else:
            eng.subs.append(topic.consume(eng, deliver, pf, now))

    def leave(self, eng: Consumer, rec: int, endpoints: tuple[Endpoint, ...]) -> None:
        """``eng`` stops consuming (``basic.cancel``), by the stop or kill record ``rec``, having listened
        on ``endpoints``; it still holds what was delivered to it."""
        self.last_stop[eng.name] = (rec, endpoints, queue_name(eng.vhost, eng.topic))
        self.trace.meter.work += len(self.consumers)  # C-level scans of the consumers and the rotation
        if eng in self.consumers:
            self.consumers.remove(eng)
        now = self.env.now
        for sub in eng.subs:
            sub.queue.cancel(sub, now)

    def last_stops_accepting(self, m: Message) -> list[int]:
        """The stop or kill of the last engine that could have taken ``m``: its own queue's engine, or
        one that consumed the topic queue (same service, same vhost) ``m`` was published to."""
        best: int | None = None
        q = m.queue
        owner = q.owner if q is not None else None
        self.trace.meter.work += len(self.last_stop)  # the scan below, charged to the run's work budget
        for name, (rec, endpoints, topic) in self.last_stop.items():
            if owner is not None and owner.name != name:
                continue
            if owner is None and q is not None and topic != q.name:
                continue
            if m.version is not None and accepts_version(endpoints, m.version):
                best = rec if best is None else max(best, rec)
        return [] if best is None else [best]


__all__ = ["Broker", "Consumer", "Message", "Queue", "Subscription", "queue_name"]
