"""Behaviour of the model, on small scenarios whose traces were worked out by hand.

BASE (conftest): 3 engines of release r1 (RPC 1.0, 1 s per message); periodic client
casts of ``op`` at t = 1, 2, 3; round robin over engine-1, engine-2, engine-3.
"""

from conftest import BASE, kinds, scenario

from simroll import run_scenario

TWO_RELEASES = """
r1:
  rpc: {endpoints: [{version: "1.0", methods: {op: [x]}}]}
  service_time: 1.0
r2:
  rpc: {endpoints: [{version: "1.1", methods: {op: [x]}}], cap: auto}
  service_time: 1.0
"""
MIXED_ENGINES = """
- {name: e1, release: r2}
- {name: e2, release: r1}
- {name: e3, release: r1}
"""


def recv_engines(result):
    return [(r["msg"], r["engine"]) for r in kinds(result, "recv")]


def test_round_robin_over_consumers():
    res = run_scenario(scenario())
    assert recv_engines(res) == [(0, "engine-1"), (1, "engine-2"), (2, "engine-3")]
    assert [r["t"] for r in kinds(res, "done")] == [2.0, 3.0, 4.0]
    assert res.ok


def test_kill_loses_acknowledged_in_flight_work():
    res = run_scenario(scenario(faults="[{kill: engine-1, at: 1.5}]"))
    assert [(r["msg"], r["engine"]) for r in kinds(res, "lost")] == [(0, "engine-1")]
    assert res.violated == ["no-stranded-message"]
    assert "lost in flight" in res.violations[0].message


def test_kill_with_ack_on_complete_requeues():
    res = run_scenario(scenario(faults="[{kill: engine-1, at: 1.5}]", bus="{ack: on-complete}"))
    assert [r["msg"] for r in kinds(res, "requeue")] == [0]
    # m0 goes back to the queue at 1.5; the queue's own rotation (engine-2 next, as m0 went to engine-1)
    # gives it to engine-2, flagged redelivered, then m1 to engine-3 (RabbitMQ: per-queue round robin)
    assert recv_engines(res) == [(0, "engine-1"), (0, "engine-2"), (1, "engine-3"), (2, "engine-2")]
    assert res.ok


def test_graceful_stop_finishes_in_flight_work():
    res = run_scenario(scenario(plan="[{after: 1.5, stop: engine-1}]"))
    stop = kinds(res, "stop")[0]
    assert stop["t"] == 1.5 and stop["inflight"] == [0]
    assert kinds(res, "stopped")[0]["t"] == 2.0
    assert res.ok


def test_oslo_receiver_rejects_newer_minor_and_the_cast_is_lost():
    s = scenario(
        releases=TWO_RELEASES,
        engines=MIXED_ENGINES,
        workload="{rate: 1, arrivals: periodic, stop: 3.5, operations: {op: 1}, kind: cast, client: r2}",
        invariants="{no-incompatible-delivery: {}, no-stranded-message: {}}",
    )
    res = run_scenario(s)
    # the client's auto cap is the lowest running version, 1.0; r2 only knows how to send 1.1: RPCVersionCapError
    assert [r["error"] for r in kinds(res, "send_error")] == ["RPCVersionCapError (cap 1.0)"] * 3
    assert kinds(res, "send") == []
    backport = TWO_RELEASES.replace("cap: auto", 'cap: auto, sends: {op: [{version: "1.1"}, {version: "1.0"}]}')
    res = run_scenario(s.model_copy(update={"releases": scenario(releases=backport).releases}))
    assert [r["version"] for r in kinds(res, "send")] == ["1.0"] * 3
    assert res.ok
    s = scenario(
        releases=TWO_RELEASES.replace("cap: auto", "cap: null"),
        engines=MIXED_ENGINES,
        workload="{rate: 1, arrivals: periodic, stop: 3.5, operations: {op: 1}, kind: cast, client: r2}",
        invariants="{no-incompatible-delivery: {}, no-stranded-message: {}}",
    )
    res = run_scenario(s)
    rejects = kinds(res, "reject")
    assert [(r["msg"], r["engine"], r["error"]) for r in rejects] == [
        (1, "e2", "UnsupportedVersion"),
        (2, "e3", "UnsupportedVersion"),
    ]
    assert res.violated == ["no-incompatible-delivery"]


def test_version_routed_bus_only_offers_a_message_to_engines_that_listen_for_it():
    wl = "{rate: 1, arrivals: periodic, stop: 3.5, operations: {op: 1}, kind: cast, client: r2}"
    res = run_scenario(
        scenario(
            bus="{delivery: version-routed}",
            releases=TWO_RELEASES.replace("cap: auto", "cap: null"),
            engines=MIXED_ENGINES,
            workload=wl,
        )
    )
    assert recv_engines(res) == [(0, "e1"), (1, "e1"), (2, "e1")]
    # with no engine listening for 1.1, the messages stay in the queue: stranded
    res = run_scenario(
        scenario(
            bus="{delivery: version-routed}",
            releases=TWO_RELEASES.replace("cap: auto", "cap: null"),
            engines="{count: 2, release: r1}",
            workload=wl,
        )
    )
    assert [r["msg"] for r in kinds(res, "left")] == [0, 1, 2]
    assert res.violated == ["no-stranded-message"]


BACKFILL = """
name: bf
seed: 1
database:
  tables: {resource: [id, properties, props_new]}
  rows: 1
  canonical: {props: resource.props_new}
releases:
  r1:
    rpc: {endpoints: [{version: "1.0", methods: {op: [x]}}]}
    data: {props: {read: resource.properties, write: [resource.properties, resource.props_new]}}
    service_time: 1.0
engines: {count: 1, release: r1}
workload: {rate: 1, arrivals: periodic, stop: 1.5, operations: {op: 1}, kind: cast,
           handlers: {op: {write: [props]}}}
invariants: {no-lost-write: {}}
"""


def test_backfill_that_reads_before_and_writes_after_a_dual_write_loses_it():
    # backfill reads row 0 at t=1 (init0); engine dual-writes v0 at t=2; backfill writes init0 at t=2.5
    plan = "[{backfill: {from: resource.properties, to: resource.props_new, rate: 1, gap: 1.5}}]"
    res = run_scenario(scenario(BACKFILL, plan=plan))
    assert [(r["t"], r["value"]) for r in kinds(res, "bf_write")] == [(2.5, "init0")]
    assert res.violated == ["no-lost-write"]
    assert "holds 'init0'" in res.violations[0].message and "'v0'" in res.violations[0].message


def test_guarded_or_instant_backfill_does_not_lose_the_write():
    guarded = "[{backfill: {from: resource.properties, to: resource.props_new, rate: 1, gap: 1.5, guard: if-empty}}]"
    assert run_scenario(scenario(BACKFILL, plan=guarded)).ok
    instant = "[{backfill: {from: resource.properties, to: resource.props_new, rate: 1}}]"
    assert run_scenario(scenario(BACKFILL, plan=instant)).ok


ROW_REWRITE = """
name: rw
seed: 1
database: {tables: {t: [id, a, b]}, rows: 1}
releases:
  r1:
    rpc: {endpoints: [{version: "1.0", methods: {opA: [], opB: [], check: []}}]}
    data: {a: {read: t.a, write: [t.a]}, b: {read: t.b, write: [t.b]}}
    update: row
    service_time: 1.0
engines: {count: 3, release: r1}
workload:
  rate: 2
  arrivals: periodic
  stop: 1.2
  operations: {opA: 1}
  kind: cast
  handlers:
    opA: {write: [a], cast: {opB: 1}}
    opB: {write: [b], cast: {check: 1}}
    check: {read: [a]}
invariants: {no-lost-write: {}}
"""


def test_whole_row_rewrite_puts_back_a_stale_column():
    # m2 (opB on engine-3) snapshots the row at 1.5 (a=v0); m1 writes a=v1 at 2.0; m2 rewrites a=v0 at 2.5;
    # check m4 on engine-2 reads a at 2.5 and gets v0 while the latest write is v1.
    res = run_scenario(scenario(ROW_REWRITE))
    rewrites = [(r["t"], r["msg"], r["cols"]) for r in kinds(res, "rewrite")]
    assert (2.5, 2, {"t.a": "v0"}) in rewrites
    assert res.violated == ["no-lost-write"]
    v = res.violations[0]
    assert (v.time, v.engines) == (2.5, ("engine-2",)) and "got 'v0'" in v.message and "'v1'" in v.message
    # writing only the changed columns keeps both writes
    assert run_scenario(scenario(ROW_REWRITE.replace("update: row", "update: columns"))).ok


def test_trigger_copies_writes_while_enabled():
    s = scenario(
        BACKFILL.replace("write: [resource.properties, resource.props_new]", "write: [resource.properties]"),
        plan="[{enable_trigger: {from: resource.properties, to: resource.props_new}}]",
    )
    res = run_scenario(s)
    assert [r["trig"] for r in kinds(res, "write")] == [["resource.props_new"]]
    assert res.ok  # the canonical (new) location holds the latest write, copied by the trigger


def test_contract_while_an_engine_still_reads_the_column_is_a_schema_violation():
    s = scenario(
        BASE.replace("kind: cast", "kind: cast\n  handlers: {op: {read: [props]}}"),
        plan="[{after: 1.5, contract: [resource.properties]}]",
        invariants="{schema-compatible: {}}",
    )
    res = run_scenario(s)
    errors = kinds(res, "schema_error")
    assert [(r["t"], r["engine"], r["locs"]) for r in errors] == [
        (2.0, "engine-2", ["resource.properties"]),
        (3.0, "engine-3", ["resource.properties"]),
    ]
    assert res.violated == ["schema-compatible"]


def test_version_skew_counts_releases_running_at_once():
    rel = (
        TWO_RELEASES
        + """
r3:
  rpc: {endpoints: [{version: "1.2", methods: {op: [x]}}]}
"""
    )
    s = scenario(
        releases=rel,
        engines=MIXED_ENGINES,
        plan="[{restart: e3, release: r3}]",
        invariants="{version-skew: {max_releases: 2}}",
    )
    res = run_scenario(s)
    assert res.violated == ["version-skew"]
    assert "3 releases running at once (r1, r2, r3)" in res.violations[0].message


def test_cast_depth_bounds_a_traversal():
    s = scenario(BASE.replace("kind: cast", "kind: cast\n  handlers: {op: {cast: {op: 2}, depth: 2}}"))
    res = run_scenario(s)
    # each client op: 1 + 2 + 4 messages (hops 0, 1, 2); 3 client ops
    assert len(kinds(res, "send")) == 3 * 7
    assert res.ok


def test_runaway_run_stops_at_the_time_limit_with_a_partial_report():
    s = scenario(
        workload="{rate: 1, arrivals: periodic, stop: 1000000, operations: {op: 1}, kind: cast}",
        limits="{max_time: 50}",
    )
    res = run_scenario(s)
    assert res.limited and "max_time=50" in res.end_reason
    assert res.sim_time <= 50


def test_if_empty_guard_misses_a_stale_copy_that_if_unchanged_repairs():
    # both columns start with init0; the engine writes v0 to the old column only at t=2;
    # the backfill reads row 0 at t=3 (after 2 s, 1 row/s)
    text = BACKFILL.replace("write: [resource.properties, resource.props_new]", "write: [resource.properties]").replace(
        "  canonical:", "  initial: {props: [resource.properties, resource.props_new]}\n  canonical:"
    )
    plan = "[{after: 2, backfill: {from: resource.properties, to: resource.props_new, rate: 1, guard: %s}}]"
    res = run_scenario(scenario(text, plan=plan % "if-empty"))
    assert kinds(res, "bf_write") == []  # the new column is not empty: skipped, and stays init0
    assert res.violated == ["no-lost-write"]
    res = run_scenario(scenario(text, plan=plan % "if-unchanged"))
    assert [(r["t"], r["value"]) for r in kinds(res, "bf_write")] == [(3.0, "v0")]
    assert res.ok


def test_if_unchanged_guard_does_not_lose_a_concurrent_dual_write():
    # as in the race above: read init0 at t=1, dual write v0 at t=2, the old column changed: no write at 2.5
    plan = "[{backfill: {from: resource.properties, to: resource.props_new, rate: 1, gap: 1.5, guard: if-unchanged}}]"
    res = run_scenario(scenario(BACKFILL, plan=plan))
    assert kinds(res, "bf_write") == [] and res.ok


def test_set_cap_pins_only_the_releases_that_declare_a_cap():
    """Issue 12: `set_cap` used to pin every release, a release without a cap included. Worked by
    hand: e1 runs r2 (cap auto), e2 and e3 run r1 (no cap); `set_cap: "1.0"` at t=0.5 pins e1 to
    1.0 and leaves e2, e3 unpinned (None), as they were."""
    res = run_scenario(scenario(releases=TWO_RELEASES, engines=MIXED_ENGINES, plan='[{after: 0.5, set_cap: "1.0"}]'))
    caps = kinds(res, "caps")[0]["caps"]
    assert caps == {"e1": "1.0", "e2": None, "e3": None}


# ------------------------------------------------------------------ services and virtual hosts
# An engine service (engine-1, release e1: takes ``op``) and a worker service on the topic
# "workers" (worker-1, worker-2, release w1: take ``work``). Clients cast op at t = 1, 2, 3.
SERVICES = "{engine: {}, worker: {topic: workers}}"
SVC_RELEASES = """
e1:
  rpc:
    endpoints: [{version: "1.0", methods: {op: [x]}}]
    sends: {work: [{version: "1.0", args: [y]}]}
  service_time: 1.0
w1:
  rpc: {endpoints: [{version: "1.0", methods: {work: [y]}}]}
  service_time: 1.0
"""
SVC_ENGINES = """
- {name: engine-1, release: e1}
- {name: worker-1, release: w1, service: worker}
- {name: worker-2, release: w1, service: worker}
"""


def svc_workload(handler: str) -> str:
    return f"""
rate: 1.0
arrivals: periodic
stop: 3.5
operations: {{op: 1}}
kind: cast
handlers: {{op: {handler}}}
"""


def services_scenario(handler: str = "{cast: {worker.work: 1}}", **more):
    return scenario(
        services=SERVICES, releases=SVC_RELEASES, engines=SVC_ENGINES, workload=svc_workload(handler), **more
    )


def test_each_service_consumes_its_own_topic():
    res = run_scenario(services_scenario())
    sends = {r["msg"]: r for r in kinds(res, "send")}
    got = [(sends[r["msg"]]["method"], r["engine"]) for r in kinds(res, "recv")]
    # every op goes to the only engine of "engine"; the work casts go round robin over the workers
    assert [e for m, e in got if m == "op"] == ["engine-1"] * 3
    assert [e for m, e in got if m == "work"] == ["worker-1", "worker-2", "worker-1"]
    # send records name the service and the topic queue; start records the service, vhost and queue
    assert {(r["method"], r["queue"], r["service"]) for r in sends.values()} == {
        ("op", "engine", "engine"),
        ("work", "workers", "worker"),
    }
    assert [(r["engine"], r["service"], r["vhost"], r["queue"]) for r in kinds(res, "start")] == [
        ("engine-1", "engine", "/", "engine"),
        ("worker-1", "worker", "/", "workers"),
        ("worker-2", "worker", "/", "workers"),
    ]
    assert res.ok


def test_a_scenario_without_services_writes_the_records_it_always_did():
    res = run_scenario(scenario())
    assert {tuple(r) for r in kinds(res, "start")} == {
        ("i", "t", "kind", "engine", "release", "workers", "cap", "cause")
    }
    assert {tuple(r) for r in kinds(res, "send")} == {
        ("i", "t", "kind", "engine", "msg", "method", "version", "queue", "call", "row")
    }


def test_fanout_reaches_the_running_engines_of_the_named_service_only():
    res = run_scenario(services_scenario("{fanout: [worker.work]}"))
    fan = [r for r in kinds(res, "send") if r["method"] == "work"]
    assert [r["queue"] for r in fan] == ["workers.worker-1", "workers.worker-2"] * 3
    assert {r["engine"] for r in kinds(res, "recv") if r["msg"] in {f["msg"] for f in fan}} == {
        "worker-1",
        "worker-2",
    }


def test_auto_caps_are_per_service():
    # e1 implements op 2.0 and sends work at 1.1 if it may, else 1.0; the workers implement work 1.0.
    # auto is per service: the engines' (and clients') cap for "engine" is 2.0, for "worker" 1.0.
    # One cap over every engine would be 1.0 and refuse the clients' op at 2.0.
    releases = """
e1:
  rpc:
    endpoints: [{version: "2.0", methods: {op: [x]}}]
    sends: {work: [{version: "1.1", args: [y]}, {version: "1.0", args: [y]}]}
    cap: auto
  service_time: 1.0
w1:
  rpc: {endpoints: [{version: "1.0", methods: {work: [y]}}]}
  service_time: 1.0
"""
    res = run_scenario(
        scenario(
            services=SERVICES,
            releases=releases,
            engines=SVC_ENGINES,
            workload=svc_workload("{cast: {worker.work: 1}}"),
        )
    )
    assert kinds(res, "start")[0]["cap"] == "2.0"
    assert not kinds(res, "send_error")
    assert {(r["method"], r["version"]) for r in kinds(res, "send")} == {("op", "2.0"), ("work", "1.0")}
    assert res.ok


# r1 on vhost '/' (engine e1), r2 on vhost v2 (engine e2), the same RPC. Clients cast op every
# 0.25 s from 0.25 to 2.0 on '/', and move to v2 at 1.1.
VHOST_RELEASES = """
r1:
  rpc: {endpoints: [{version: "1.0", methods: {op: [x]}}]}
  service_time: 1.0
r2:
  vhost: v2
  rpc: {endpoints: [{version: "1.0", methods: {op: [x]}}]}
  service_time: 1.0
"""
VHOST_ENGINES = "[{name: e1, release: r1}, {name: e2, release: r2}]"
VHOST_WORKLOAD = "{rate: 4.0, arrivals: periodic, stop: 2.1, operations: {op: 1}, kind: cast}"


def test_vhosts_isolate_and_set_vhost_moves_the_clients():
    res = run_scenario(
        scenario(
            releases=VHOST_RELEASES,
            engines=VHOST_ENGINES,
            workload=VHOST_WORKLOAD,
            plan="[{after: 1.1, set_vhost: v2}, {drain: /}]",
        )
    )
    sends = kinds(res, "send")
    # m0..m3 (t = 0.25 .. 1.0) on '/', m4..m7 (t = 1.25 .. 2.0) on v2; each vhost's engine takes its own
    assert [(r["msg"], r["queue"]) for r in sends] == [(m, "engine") for m in range(4)] + [
        (m, "v2/engine") for m in range(4, 8)
    ]
    taken = {r["msg"]: r["engine"] for r in kinds(res, "recv")}
    assert taken == {**dict.fromkeys(range(4), "e1"), **dict.fromkeys(range(4, 8), "e2")}
    # at 1.1 e1 handles m0 (acknowledged before dispatch) and holds m1..m3 prefetched: '/' holds 3
    [vh] = kinds(res, "vhost")
    assert (vh["t"], vh["clients"], vh["depth"]) == (1.1, "v2", {"/": 3, "v2": 0})
    # the drain ends when e1 takes (and acknowledges) m3, at 3.25
    [dr] = kinds(res, "drained")
    assert (dr["t"], dr["vhost"]) == (3.25, "/")
    assert [(r["engine"], r["vhost"], r["queue"]) for r in kinds(res, "start")] == [
        ("e1", "/", "engine"),
        ("e2", "v2", "v2/engine"),
    ]
    assert res.ok


def test_a_message_left_on_an_abandoned_vhost_is_stranded():
    # the operator stops e1 right after moving the clients: m1..m3 go back to '/', which nobody consumes
    res = run_scenario(
        scenario(
            releases=VHOST_RELEASES,
            engines=VHOST_ENGINES,
            workload=VHOST_WORKLOAD,
            plan="[{after: 1.1, set_vhost: v2}, {stop: e1}]",
        )
    )
    assert [(r["msg"], r["queue"]) for r in kinds(res, "left")] == [(1, "engine"), (2, "engine"), (3, "engine")]
    stop = kinds(res, "stop")[0]
    assert all(stop["i"] in r["cause"] for r in kinds(res, "left"))  # e1 was the last to consume '/'
    assert res.violated == ["no-stranded-message"]


def test_an_engine_restarted_on_another_vhosts_release_moves_there():
    res = run_scenario(
        scenario(
            releases=VHOST_RELEASES,
            engines="[{name: e1, release: r1}]",
            workload="{rate: 1.0, arrivals: periodic, stop: 3.5, operations: {op: 1}, kind: cast, vhost: v2}",
            plan="[{after: 0.5, restart: e1, release: r2}]",
        )
    )
    # the clients publish on v2 from the start; e1 consumes there once it runs r2
    assert [(r["vhost"], r["queue"]) for r in kinds(res, "start")] == [("/", "engine"), ("v2", "v2/engine")]
    assert [r["engine"] for r in kinds(res, "recv")] == ["e1"] * 3
    assert res.ok


def test_a_client_operation_may_name_another_service():
    # the clients' service is "engine" (the first); an operation written worker.work goes to "workers"
    wl = "{rate: 1.0, arrivals: periodic, stop: 3.5, operations: {worker.work: 1}, kind: cast, client: e1}"
    res = run_scenario(scenario(services=SERVICES, releases=SVC_RELEASES, engines=SVC_ENGINES, workload=wl))
    assert [(r["method"], r["queue"], r["service"]) for r in kinds(res, "send")] == [("work", "workers", "worker")] * 3
    assert [r["engine"] for r in kinds(res, "recv")] == ["worker-1", "worker-2", "worker-1"]
