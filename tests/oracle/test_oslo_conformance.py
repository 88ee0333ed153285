"""Conformance of simroll's RPC model with the real oslo.messaging.

Every case is run twice: once through oslo.messaging's own ``RPCServer`` and
``RPCClient`` over its in-memory ``fake://`` transport (threading executor), and
once through simroll's pure functions (:func:`simroll.scenario.rpc.dispatch`,
:func:`simroll.scenario.rpc.choose_send_rule`, :class:`simroll.scenario.rpc.Signature`).
The two must give the same outcome: handled, ``UnsupportedVersion``,
``NoSuchMethod``, a bad-argument ``TypeError``, or, on the client side,
``RPCVersionCapError``. The endpoints are not written twice: the oslo endpoint
methods are generated from the very parameter strings simroll parses, so a
Python call decides what binds, not simroll's own :meth:`Signature.accepts`.

Delivery over k servers on one topic -- where the fake driver and simroll differ.
simroll models RabbitMQ (``impl_rabbit``) with oslo.messaging's default
``rabbit_qos_prefetch_count = 0``: every server is a consumer of the one topic
queue, and the broker *pushes* each message at once to the next consumer in
round-robin order, where it waits in that consumer's prefetch buffer
(``Broker.arrive``: round robin over the consumers in the order they
started). The fake driver does not do this. ``FakeExchange`` keeps one Python list
per (exchange, topic) that every server shares; each server's ``FakeListener.poll``
thread *pulls* from its head under a lock (``queue.pop(0)``), checking its own
server queue first, and sleeps up to 50 ms whenever both are empty. So there is no
push, no prefetch and no round robin: a message goes to whichever server's thread
polls next, which depends on thread timing (sequential calls tend to alternate
because the server that just answered has just started its 50 ms sleep; a burst
of casts tends to go to whichever thread is awake). Nothing about *which* server
takes a message is deterministic in the fake driver, so that is not compared
here; what both agree on, and what is tested:

- competing consumers: each message on the topic is handled by exactly one server,
  none is lost or duplicated (k = 2, 3);
- messages sent while no server runs wait in the topic queue, and the first server
  started takes all of them (simroll: the first consumer gets the whole held queue);
- a fanout cast reaches every running server exactly once.

A further difference, not tested: the fake driver's server queues outlive their
server (``_server_queues`` is never pruned), so a fanout cast while a server is
stopped waits for it; with RabbitMQ the fanout queues are per-process and simroll
sends fanout casts to running engines only.
"""

from __future__ import annotations

import logging
import textwrap
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

om = pytest.importorskip(
    "oslo_messaging",
    reason="the oslo.messaging conformance oracle needs the 'oracle' extra: pip install -e '.[test,oracle]'",
)
from oslo_config import cfg  # noqa: E402  (after the importorskip on purpose)
from oslo_messaging.rpc.client import RPCVersionCapError  # noqa: E402
from oslo_messaging.rpc.dispatcher import NoSuchMethod, UnsupportedVersion  # noqa: E402

import simroll  # noqa: E402
from simroll.scenario.rpc import Endpoint, Outcome, SendRule, Signature, choose_send_rule, dispatch  # noqa: E402
from simroll.scenario.versions import Version  # noqa: E402

CALL_TIMEOUT = 1.0  # seconds; a reply from the in-memory transport takes a few milliseconds
TIMEOUT = "MessagingTimeout"

# ------------------------------------------------------------------ the grid
# A server: endpoints in order, each (version or None for an endpoint without a target, namespace, methods).
# Parameter strings are simroll's scenario format, which is also Python parameter syntax.
CHECK_10 = {"check": ["resource_id"], "update": ["stack_id"], "_hidden": []}
CHECK_11 = {"check": ["resource_id", "root_id=None"], "update": ["stack_id"]}
CHECK_12 = {"check": ["resource_id", "root_id=None"], "update": ["stack_id"], "adopt": ["stack_id", "data"]}
CHECK_20 = {"check": ["resource_id", "root_id"], "update": ["stack_id", "**future_args"], "adopt": ["stack_id", "data"]}

SERVERS: dict[str, list[tuple[str | None, str | None, dict[str, list[str]]]]] = {
    "v1.0": [("1.0", None, CHECK_10)],
    "untargeted": [(None, None, CHECK_10)],  # oslo: an endpoint without a target implements 1.0
    "v1.1": [("1.1", None, CHECK_11)],
    "v1.2": [("1.2", None, CHECK_12)],
    "v1.2.1": [("1.2.1", None, CHECK_12)],
    "v2.0": [("2.0", None, CHECK_20)],
    "v2.0+v1.2": [("2.0", None, CHECK_20), ("1.2", None, CHECK_12)],  # a major bump, listening on both
    "v1.0,v1.2": [("1.0", None, {"check": ["resource_id"]}), ("1.2", None, {"adopt": ["stack_id", "data"]})],
    "ns+v1.1": [("1.0", "convergence", {"sync": ["resource_id"]}), ("1.1", None, CHECK_11)],
}

SEND_VERSIONS = ["1.0", "1.1", "1.2", "1.2.1", "1.3", "2.0", "2.1"]
CALLS: list[tuple[str | None, str, tuple[str, ...]]] = [  # (namespace, method, argument names)
    (None, "check", ("resource_id",)),
    (None, "check", ("resource_id", "root_id")),
    (None, "check", ("root_id",)),
    (None, "check", ("resource_id", "extra")),
    (None, "update", ("stack_id",)),
    (None, "update", ("stack_id", "traversal")),
    (None, "adopt", ("stack_id", "data")),
    (None, "missing", ()),
    (None, "_hidden", ()),
    ("convergence", "sync", ("resource_id",)),
]

CAPS = [None, "1.0", "1.1", "1.2", "1.3", "2.0", "2.1"]
RULE_LISTS: dict[str, list[tuple[str, tuple[str, ...]]]] = {  # client send rules, in order of preference
    "backport-1.0": [("1.1", ("resource_id", "root_id")), ("1.0", ("resource_id",))],
    "major-with-1.2": [("2.0", ("resource_id", "root_id")), ("1.2", ("resource_id", "root_id"))],
    "only-1.2": [("1.2", ("resource_id", "root_id"))],
    "only-2.0": [("2.0", ("resource_id", "root_id"))],
    "only-1.2.1": [("1.2.1", ("resource_id",))],
}


# ------------------------------------------------------------------ oslo side
def _endpoint_class(index: int, methods: dict[str, list[str]]) -> type:
    """A class whose methods have exactly these Python parameters (after ``self, ctxt``)."""
    src = [f"class Endpoint{index}:"]
    for name, params in methods.items():
        sig = ", ".join(["self", "ctxt"] + params)
        src.append(f"    def {name}({sig}):\n        return {name!r}")
    namespace: dict = {}
    exec(compile("\n".join(src), f"<endpoint {index}>", "exec"), namespace)  # noqa: S102 - test-generated code
    return namespace[f"Endpoint{index}"]


def _oslo_endpoints(spec) -> list:
    out = []
    for i, (version, ns, methods) in enumerate(spec):
        ep = _endpoint_class(i, methods)()
        if version is not None or ns is not None:
            ep.target = om.Target(version=version, namespace=ns)
        out.append(ep)
    return out


def _outcome_of(fn) -> str:
    try:
        fn()
    except UnsupportedVersion:
        return Outcome.UNSUPPORTED_VERSION.value
    except NoSuchMethod:
        return Outcome.NO_SUCH_METHOD.value
    except TypeError:
        return Outcome.BAD_ARGUMENTS.value
    except RPCVersionCapError:
        return "RPCVersionCapError"
    except om.MessagingTimeout:
        return TIMEOUT
    return Outcome.HANDLED.value


@dataclass
class Oslo:
    transport: object
    servers: dict[str, object]

    def client(self, server: str, cap: str | None = None):
        return om.get_rpc_client(
            self.transport, om.Target(topic=f"conf-{server}"), timeout=CALL_TIMEOUT, version_cap=cap
        )


def _conf():
    conf = cfg.CONF  # oslo.messaging registers some options (tracing) on the global CONF only
    conf(args=[], project="simroll-oracle", default_config_files=[], default_config_dirs=[])
    return conf


@pytest.fixture(scope="module")
def oslo():
    logging.getLogger("oslo_messaging").setLevel(logging.CRITICAL)  # servers log every failed dispatch
    transport = om.get_rpc_transport(_conf(), url="fake://")
    servers = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "the 'executor' argument is deprecated"
        for name, spec in SERVERS.items():
            s = om.get_rpc_server(
                transport, om.Target(topic=f"conf-{name}", server=name), _oslo_endpoints(spec), executor="threading"
            )
            s.start()
            servers[name] = s
    yield Oslo(transport, servers)
    _stop(list(servers.values()))
    transport.cleanup()


# ------------------------------------------------------------------ simroll side
def _simroll_endpoints(spec) -> tuple[Endpoint, ...]:
    return tuple(
        Endpoint(Version.parse(v or "1.0"), {m: Signature.parse(p) for m, p in methods.items()}, ns)
        for v, ns, methods in spec
    )


def _simroll_outcome(server: str, version: str, namespace, method: str, args) -> str:
    return dispatch(
        _simroll_endpoints(SERVERS[server]), method, Version.parse(version), frozenset(args), namespace
    ).value


def _run_parallel(jobs):
    """Run the oslo calls of many cases at once: each waits up to CALL_TIMEOUT for its reply."""
    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(lambda job: job(), jobs))


# ------------------------------------------------------------------ the tests
DISPATCH_CASES = [(s, v, ns, m, a) for s in SERVERS for v in SEND_VERSIONS for ns, m, a in CALLS]


def test_the_grid_is_large_enough():
    assert len(DISPATCH_CASES) >= 200
    assert len(CAPS) * len(SEND_VERSIONS) + len(CAPS) * len(RULE_LISTS) * (1 + len(SERVERS)) >= 200


def test_dispatch_outcomes_match_oslo(oslo):
    def job(case):
        server, version, ns, method, args = case
        client = oslo.client(server).prepare(version=version, namespace=ns)
        return _outcome_of(lambda: client.call({}, method, **{a: 1 for a in args}))

    got = _run_parallel([lambda c=c: job(c) for c in DISPATCH_CASES])
    mismatches = []
    for case, real in zip(DISPATCH_CASES, got):
        model = _simroll_outcome(*case)
        if real != model:
            mismatches.append(
                f"server {case[0]}, send {case[1]} ns={case[2]} {case[3]}({', '.join(case[4])}): "
                f"oslo.messaging {real}, simroll {model}"
            )
    assert not mismatches, f"{len(mismatches)} of {len(DISPATCH_CASES)} cases differ:\n" + "\n".join(mismatches)
    # the grid exercises every outcome, or it proves little
    assert {o.value for o in Outcome} <= set(got)


@pytest.mark.parametrize("cap", CAPS)
def test_client_refuses_above_its_cap_exactly_when_no_send_rule_fits(oslo, cap):
    client = oslo.client("v1.0", cap)
    for version in SEND_VERSIONS:
        # a cast raises RPCVersionCapError before anything is sent, or goes to the server (which may reject it)
        real = _outcome_of(lambda v=version: client.prepare(version=v).cast({}, "update", stack_id=1))
        refused = (
            choose_send_rule(
                (SendRule(Version.parse(version), frozenset({"stack_id"})),),
                None if cap is None else Version.parse(cap),
            )
            is None
        )
        assert (real == "RPCVersionCapError") is refused, f"cap {cap}, send {version}: oslo.messaging {real}"
        assert client.can_send_version(version) is not refused


@pytest.mark.parametrize("rules", list(RULE_LISTS))
def test_backports_choose_the_rule_oslo_allows_and_the_server_agrees(oslo, rules):
    """Nova's pattern: send at the first version ``can_send_version`` allows; then dispatch it."""
    spec = RULE_LISTS[rules]
    model_rules = tuple(SendRule(Version.parse(v), frozenset(a)) for v, a in spec)
    cases, jobs = [], []
    for cap in CAPS:
        probe = oslo.client("v1.0", cap)
        chosen = next(((v, a) for v, a in spec if probe.can_send_version(v)), None)
        rule = choose_send_rule(model_rules, None if cap is None else Version.parse(cap))
        assert (None if rule is None else str(rule.version)) == (None if chosen is None else chosen[0]), (
            f"cap {cap}, rules {rules}"
        )
        for server in SERVERS:
            # send what oslo's client allows (or the first rule, to see it refused)
            v, a = chosen or spec[0]
            client = oslo.client(server, cap).prepare(version=v)
            jobs.append(lambda c=client, a=a: _outcome_of(lambda: c.call({}, "check", **{x: 1 for x in a})))
            model = (
                "RPCVersionCapError"
                if rule is None
                else _simroll_outcome(server, str(rule.version), None, "check", rule.args)
            )
            cases.append((cap, server, model))
    got = _run_parallel(jobs)
    mismatches = [
        f"cap {cap}, server {server}: oslo.messaging {real}, simroll {model}"
        for (cap, server, model), real in zip(cases, got)
        if real != model
    ]
    assert not mismatches, "\n".join(mismatches)


# ------------------------------------------------------------------ delivery over k servers
class _Recorder:
    """Endpoint methods that record which server handled which message."""

    def __init__(self, server: str, log: list, lock: threading.Lock, done: threading.Condition):
        self.server, self.log, self.lock, self.done = server, log, lock, done

    def op(self, ctxt, n):
        with self.done:
            self.log.append((self.server, n))
            self.done.notify_all()

    def note(self, ctxt, n):
        self.op(ctxt, n)


def _start_servers(transport, topic: str, names: list[str], log, lock, done) -> list:
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for name in names:
            s = om.get_rpc_server(
                transport, om.Target(topic=topic, server=name), [_Recorder(name, log, lock, done)], executor="threading"
            )
            s.start()
            out.append(s)
    return out


def _wait_for(done: threading.Condition, log: list, n: int) -> None:
    with done:
        done.wait_for(lambda: len(log) >= n, timeout=10 * CALL_TIMEOUT)


def _stop(servers) -> None:
    for s in servers:
        s.stop()
    # wait() joins the executor's idle worker threads, each of which notices within a second: wait in parallel
    with ThreadPoolExecutor(max_workers=max(1, len(servers))) as pool:
        list(pool.map(lambda s: s.wait(), servers))


def _simulated(k: int, n: int, *, held: bool = False, fanout: bool = False) -> list[tuple[str, str, int]]:
    """(engine, method, row) of every message simroll's engines take, with k engines and n client casts."""
    plan = ""
    if held:  # no engine runs while the client sends; then they start one after the other
        plan = "\n".join(
            [f"  - {{stop: engine-{i + 1}}}" for i in range(k)]
            + [f"  - {{after: {n + 5}, start: engine-1, release: r}}"]
            + [f"  - {{after: 5, start: engine-{i + 1}, release: r}}" for i in range(1, k)]
        )
    text = (
        textwrap.dedent(f"""
        name: delivery
        database: {{tables: {{t: [id, v]}}, rows: {n}}}
        releases:
          r:
            rpc: {{endpoints: [{{version: "1.0", methods: {{op: [n], note: [n]}}}}]}}
            service_time: 0.01
        engines: {{count: {k}, release: r}}
        workload:
          rate: 1.0
          arrivals: periodic
          stop: {n + 0.5}
          operations: {{op: 1}}
          kind: cast
          handlers: {{op: {{fanout: [note]}}}}
        invariants: {{no-stranded-message: {{}}}}
        plan:
        """)
        + plan
        + "\n"
    )
    if not fanout:
        text = text.replace("handlers: {op: {fanout: [note]}}", "handlers: {}")
    if not plan:
        text = text.replace("plan:\n", "")
    result = simroll.run_scenario(simroll.load_scenario_text(text, "<delivery>"))
    sends = {r["msg"]: r for r in result.records if r["kind"] == "send"}
    return [
        (r["engine"], sends[r["msg"]]["method"], sends[r["msg"]]["row"]) for r in result.records if r["kind"] == "recv"
    ]


@pytest.mark.parametrize("k", [2, 3])
def test_each_message_goes_to_exactly_one_of_k_servers(k):
    n = 12 * k
    # simroll: competing consumers, pushed round robin in start order
    taken = _simulated(k, n)
    assert len(taken) == n
    assert [e for e, _, _ in taken] == [f"engine-{i % k + 1}" for i in range(n)]
    # oslo.messaging's fake driver: competing consumers too, but who takes what is thread timing
    transport = om.get_rpc_transport(_conf(), url="fake://")
    log, lock = [], threading.Lock()
    done = threading.Condition(lock)
    servers = _start_servers(transport, f"dist-{k}", [f"s{i + 1}" for i in range(k)], log, lock, done)
    try:
        client = om.get_rpc_client(transport, om.Target(topic=f"dist-{k}"), timeout=CALL_TIMEOUT)
        for i in range(n):
            client.call({}, "op", n=i)
        _wait_for(done, log, n)
    finally:
        _stop(servers)
    assert sorted(i for _, i in log) == list(range(n))  # each exactly once
    assert {s for s, _ in log} <= {f"s{i + 1}" for i in range(k)}


@pytest.mark.parametrize("k", [2, 3])
def test_messages_sent_while_no_server_runs_all_go_to_the_first_server_started(k):
    n = 10
    taken = _simulated(k, n, held=True)
    assert sorted(e for e, _, _ in taken) == ["engine-1"] * n
    transport = om.get_rpc_transport(_conf(), url="fake://")
    topic = f"held-{k}"
    client = om.get_rpc_client(transport, om.Target(topic=topic), timeout=CALL_TIMEOUT)
    for i in range(n):
        client.cast({}, "op", n=i)  # nobody listens yet: the fake topic queue holds them
    log, lock = [], threading.Lock()
    done = threading.Condition(lock)
    servers = _start_servers(transport, topic, ["s1"], log, lock, done)
    try:
        _wait_for(done, log, n)
        servers += _start_servers(transport, topic, [f"s{i + 1}" for i in range(1, k)], log, lock, done)
    finally:
        _stop(servers)
    assert sorted(log) == [("s1", i) for i in range(n)]


@pytest.mark.parametrize("k", [2, 3])
def test_a_fanout_cast_reaches_every_running_server_once(k):
    n = 4
    taken = _simulated(k, n, fanout=True)
    notes = sorted(e for e, m, _ in taken if m == "note")
    assert notes == sorted([f"engine-{i + 1}" for i in range(k)] * n)
    transport = om.get_rpc_transport(_conf(), url="fake://")
    log, lock = [], threading.Lock()
    done = threading.Condition(lock)
    topic = f"fan-{k}"
    servers = _start_servers(transport, topic, [f"s{i + 1}" for i in range(k)], log, lock, done)
    try:
        client = om.get_rpc_client(transport, om.Target(topic=topic, fanout=True))
        for i in range(n):
            client.cast({}, "note", n=i)
        _wait_for(done, log, n * k)
    finally:
        _stop(servers)
    assert sorted(log) == sorted((f"s{j + 1}", i) for j in range(k) for i in range(n))
