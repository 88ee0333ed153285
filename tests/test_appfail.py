"""The application's own failure modes (issue 20): a caller's timeout and retries, idempotency
keys, and ``no-duplicate-effect``, on hand-built traces and on small runs worked out by hand."""

from __future__ import annotations

import pytest
from conftest import kinds, scenario

from simroll import ScenarioError, run_scenario, scenario_json_schema
from simroll.check.invariants import NoDuplicateEffect

# one engine, one call at t=1 (periodic, rate 1, stop 1.5), handled for 3 s; the client waits 2 s
ONE_CALL = """
name: t
seed: 1
bus: {delivery: oslo, call_timeout: 60}
database:
  tables: {servers: [id, host]}
  rows: 4
releases:
  r1:
    rpc:
      endpoints:
        - version: "1.0"
          methods: {create: [name]}
    data:
      server: {write: [servers.host]}
    service_time: 3.0
engines: [{name: e1, release: r1}]
workload:
  rate: 1.0
  arrivals: periodic
  stop: 1.5
  operations: {create: 1}
  timeout: 2
  retry: {count: 1, backoff: 0.5}
  handlers:
    create: {write: [server]}
invariants:
  no-duplicate-effect: {}
"""


def _run(**overrides):
    return run_scenario(scenario(ONE_CALL, **overrides))


# ============================================================================ the checker
class T:
    """A hand-built trace: ``tr(t, kind, **keys)`` appends a record numbered from 0 and returns its number."""

    def __init__(self) -> None:
        self.recs: list[dict] = []

    def __call__(self, t: float, kind: str, **keys) -> int:
        self.recs.append({"i": len(self.recs), "t": t, "kind": kind, **keys})
        return len(self.recs) - 1

    def send(self, t, msg, engine="client", call=True, **retry):
        return self(
            t, "send", engine=engine, msg=msg, method="create", version="1.0", queue="engine", call=call, row=0, **retry
        )

    def done(self, t, engine, msg, ok=True):
        return self(t, "done", engine=engine, msg=msg, ok=ok)


def feed(recs):
    c = NoDuplicateEffect()
    for r in recs:
        if r["kind"] in c.kinds:
            c.observe(r)
    return c


def test_a_call_and_its_retry_both_applied_is_a_violation():
    tr = T()
    s0 = tr.send(0.0, 0)  # #0: the first attempt of operation m0
    tr(2.0, "timeout", engine="client", msg=0, attempt=1, retry_at=2.5)  # #1
    s1 = tr.send(2.5, 1, retry_of=0, attempt=2)  # #2: its retry
    d0 = tr.done(3.0, "e1", 0)  # #3: the first copy was handled after all
    d1 = tr.done(4.0, "e2", 1)  # #4: and so is the retry: applied twice
    c = feed(tr.recs)
    assert c.count == 1 and c.checked == 1 and not c.vacuous
    v = c.violations[0]
    assert (v.event, v.time, v.subject, v.engines) == (d1, 4.0, "m1", ("e1", "e2"))
    assert v.causes == (s0, s1, d0)
    assert "operation m0 (create) was applied twice: attempt m0 by e1 at t=3.000 and attempt m1 by e2" in v.message


def test_a_retry_skipped_by_its_idempotency_key_holds():
    tr = T()
    tr.send(0.0, 0)
    tr.send(2.5, 1, retry_of=0, attempt=2)
    tr.done(3.0, "e1", 0)
    tr(4.0, "dedup", engine="e2", msg=1, key=0, first=0, cause=[])
    tr.done(4.0, "e2", 1)  # replied, but did no work
    c = feed(tr.recs)
    assert c.count == 0 and c.checked == 1 and not c.vacuous


def test_boundary_a_failed_or_lost_first_copy_leaves_one_application():
    tr = T()
    tr.send(0.0, 0)
    tr.send(0.5, 1)  # another operation
    tr.send(2.5, 2, retry_of=0, attempt=2)
    tr.send(2.6, 3, retry_of=1, attempt=2)
    tr.done(3.0, "e1", 0, ok=False)  # m0's handling failed: not applied
    tr.done(4.0, "e2", 2)  # its retry applies it: once
    tr(1.0, "lost", engine="e3", msg=1)  # m1 was lost with its engine
    tr.done(5.0, "e2", 3)  # its retry applies it: once
    c = feed(tr.recs)
    assert c.count == 0 and c.checked == 2


def test_the_third_attempt_counts_against_the_first():
    tr = T()
    tr.send(0.0, 0)
    tr.send(2.5, 1, retry_of=0, attempt=2)
    tr.send(5.0, 2, retry_of=0, attempt=3)  # both retries name the first attempt
    tr.done(5.5, "e1", 0)
    tr.done(6.0, "e1", 2)
    c = feed(tr.recs)
    assert c.count == 1 and c.checked == 1  # one operation, retried twice
    assert c.violations[0].subject == "m2"
    assert c.score() >= 1e6 + 2  # two attempts beyond the first


def test_no_retry_is_vacuous_and_casts_do_not_count():
    tr = T()
    tr.send(0.0, 0)
    tr.done(1.0, "e1", 0)
    tr.send(1.0, 1, engine="e1", call=False)  # an engine's cast
    tr.done(2.0, "e2", 1)
    tr.send(3.0, 2, call=False)  # a client cast
    tr.done(4.0, "e2", 2)
    c = feed(tr.recs)
    assert c.count == 0 and c.checked == 0 and c.vacuous


# ============================================================================ the simulation
def test_a_timed_out_call_is_retried_and_both_copies_are_handled():
    res = _run()
    # m0 sent at 1, taken at once, done at 4; the client gives up at 1 + 2 = 3 and retries at 3.5
    (t0, t1) = kinds(res, "timeout")
    assert (t0["t"], t0["msg"], t0["attempt"], t0["retry_at"]) == (3.0, 0, 1, 3.5)
    sends = kinds(res, "send")
    assert [(s["t"], s["msg"], s.get("retry_of"), s.get("attempt")) for s in sends] == [
        (1.0, 0, None, None),
        (3.5, 1, 0, 2),
    ]
    assert sends[1]["cause"] == [t0["i"]]
    # m1 waits for e1 until 4, is done at 7; its caller gave up at 3.5 + 2 = 5.5, with no retry left
    assert (t1["t"], t1["msg"], t1["attempt"]) == (5.5, 1, 2) and "retry_at" not in t1
    assert [(r["t"], r["msg"]) for r in kinds(res, "late")] == [(4.0, 0), (7.0, 1)]
    assert [(r["t"], r["msg"]) for r in kinds(res, "write")] == [(4.0, 0), (7.0, 1)]
    assert not kinds(res, "expire")  # the TTL (60 s) is not the caller's timeout
    assert res.violated == ["no-duplicate-effect"]


def test_an_idempotency_key_skips_the_retry():
    res = _run(
        workload=scenario(ONE_CALL).workload.model_dump(by_alias=True)
        | {"handlers": {"create": {"write": ["server"], "idempotency_key": "request_id"}}}
    )
    (d,) = kinds(res, "dedup")
    assert (d["t"], d["engine"], d["msg"], d["key"], d["first"]) == (4.0, "e1", 1, 0, 0)
    assert [(r["t"], r["msg"]) for r in kinds(res, "write")] == [(4.0, 0)]  # the work, once
    # the skipped copy replies at once, at 4 < 5.5: in time, so only the first attempt timed out
    assert [r["msg"] for r in kinds(res, "timeout")] == [0]
    assert [(r["t"], r["msg"], r["ok"]) for r in kinds(res, "done")] == [(4.0, 0, True), (4.0, 1, True)]
    assert res.violated == [] and not res.invariants[0].vacuous


def test_a_kill_rolls_back_the_request_id_so_the_retry_does_the_work():
    wl = scenario(ONE_CALL).workload.model_dump(by_alias=True)
    wl["handlers"] = {"create": {"write": ["server"], "idempotency_key": "request_id"}}
    res = _run(
        engines=[{"name": "e1", "release": "r1"}, {"name": "e2", "release": "r1"}],
        workload=wl,
        faults=[{"kill": "e1", "at": 2}],
        releases={
            "r1": {
                "rpc": {"endpoints": [{"version": "1.0", "methods": {"create": ["name"]}}]},
                "data": {"server": {"write": ["servers.host"]}},
                "service_time": 1.5,
            }
        },
    )
    # m0 goes to e1 (first in the rotation), which is killed at 2 before its done at 2.5: lost
    assert [(r["t"], r["msg"]) for r in kinds(res, "lost")] == [(2.0, 0)]
    # the client gives up at 3 and retries at 3.5 on e2, which does the work (done at 5 < 5.5)
    assert not kinds(res, "dedup")
    assert [(r["t"], r["engine"], r["msg"]) for r in kinds(res, "write")] == [(5.0, "e2", 1)]
    assert res.violated == []


def test_a_timeout_without_retry_gives_up_once():
    wl = scenario(ONE_CALL).workload.model_dump(by_alias=True)
    del wl["retry"]
    res = _run(workload=wl)
    (t,) = kinds(res, "timeout")
    assert (t["t"], t["msg"], t["attempt"]) == (3.0, 0, 1) and "retry_at" not in t
    assert len(kinds(res, "send")) == 1
    assert [r["msg"] for r in kinds(res, "late")] == [0]
    assert res.invariants[0].vacuous  # nothing was retried


def test_a_reply_at_the_deadline_is_in_time():
    releases = {
        "r1": {
            "rpc": {"endpoints": [{"version": "1.0", "methods": {"create": ["name"]}}]},
            "data": {"server": {"write": ["servers.host"]}},
            "service_time": 2.0,  # done at 1 + 2 = 3, the caller's deadline
        }
    }
    res = _run(releases=releases)
    assert not kinds(res, "timeout") and not kinds(res, "late") and len(kinds(res, "send")) == 1


# ============================================================================ the format
@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("kind", "cast", "'retry' needs calls ('kind: call')"),
        ("retry", {"count": 0}, "workload.retry.count"),
        ("retry", {"count": 1, "multiplier": 0.5}, "workload.retry.multiplier"),
        ("timeout", 0, "workload.timeout"),
    ],
)
def test_bad_timeouts_and_retries_are_refused(key, value, message):
    wl = scenario(ONE_CALL).workload.model_dump(by_alias=True)
    wl[key] = value
    with pytest.raises(ScenarioError) as exc:
        scenario(ONE_CALL, workload=wl)
    assert message in str(exc.value)


def test_an_unknown_idempotency_key_is_refused():
    wl = scenario(ONE_CALL).workload.model_dump(by_alias=True)
    wl["handlers"] = {"create": {"write": ["server"], "idempotency_key": "row"}}
    with pytest.raises(ScenarioError) as exc:
        scenario(ONE_CALL, workload=wl)
    assert "workload.handlers.create.idempotency_key" in str(exc.value) and "request_id" in str(exc.value)


def test_schema_describes_timeouts_retries_and_idempotency():
    defs = scenario_json_schema()["$defs"]
    wl = defs["WorkloadSpec"]["properties"]
    assert "rpc_response_timeout" in str(wl["timeout"]) and "retry_of" in str(wl["retry"])
    assert set(defs["RetrySpec"]["properties"]) == {"count", "backoff", "multiplier"}
    assert "request id" in str(defs["HandlerSpec"]["properties"]["idempotency_key"])
    assert "no-duplicate-effect" in defs["InvariantsSpec"]["properties"]
    access = defs["AccessSpec"]["properties"]
    assert "named values" in str(access["values"]) and "'fail'" in str(access["unknown"]) and "default" in access
    assert "named value" in str(defs["HandlerSpec"]["properties"]["set"])


# ============================================================================ value domains
# e1 runs new, e2 runs old; calls at t=1 (to e1, first in the rotation) and t=2 (to e2), row 0.
# new writes the named value X into status; old knows only A.
DOMAINS = """
name: t
seed: 1
bus: {delivery: oslo}
database:
  tables: {stack: [id, status, other]}
  rows: 1
releases:
  old:
    rpc:
      endpoints:
        - version: "1.0"
          methods: {op: [x]}
    data:
      status: {read: stack.status, write: [stack.status], values: [A], unknown: fail}
      other: {read: stack.other, write: [stack.other]}
    service_time: 0.5
  new:
    rpc:
      endpoints:
        - version: "1.0"
          methods: {op: [x]}
    data:
      status: {read: stack.status, write: [stack.status], values: [A, X]}
      other: {read: stack.other, write: [stack.other]}
    handlers:
      op: {read: [status], write: [status], set: {status: X}}
    service_time: 0.5
engines: [{name: e1, release: new}, {name: e2, release: old}]
workload:
  rate: 1.0
  arrivals: periodic
  stop: 2.5
  operations: {op: 1}
  handlers:
    op: {read: [status], write: [status]}
invariants:
  operations-complete: {}
  no-lost-write: {}
"""


def _domains(old_status=None, old_handlers=None, update="columns"):
    s = scenario(DOMAINS)
    releases = s.model_dump(by_alias=True, exclude_none=True)["releases"]
    if old_status is not None:
        releases["old"]["data"]["status"] = old_status
    if old_handlers is not None:
        releases["old"]["handlers"] = old_handlers
    releases["old"]["update"] = update
    return run_scenario(scenario(DOMAINS, releases=releases))


def test_a_value_the_release_does_not_know_fails_the_operation():
    res = _domains()
    # m0 on e1 (new) reads init0 -- an ordinary value, known to every release -- and writes X at 1.5
    assert [(w["t"], w["engine"], w["value"]) for w in kinds(res, "write")] == [(1.5, "e1", "X")]
    (u,) = kinds(res, "unknown_value")
    assert (u["t"], u["engine"], u["msg"], u["field"], u["row"], u["value"], u["release"], u["action"]) == (
        2.0,
        "e2",
        1,
        "status",
        0,
        "X",
        "old",
        "fail",
    )
    (write_x,) = kinds(res, "write")
    assert write_x["i"] in u["cause"]  # its chain leads to the write of the value
    assert [(d["msg"], d["ok"]) for d in kinds(res, "done")] == [(0, True), (1, False)]
    assert res.violated == ["operations-complete"]
    (v,) = res.violations
    assert "e2 runs old, which does not know the value 'X' of status[0]" in v.message
    assert u["i"] in v.causes and write_x["i"] in v.causes


def test_an_ignored_unknown_value_is_recorded_and_the_handling_goes_on():
    res = _domains(old_status={"read": "stack.status", "write": ["stack.status"], "values": ["A"], "unknown": "ignore"})
    (u,) = kinds(res, "unknown_value")
    assert (u["msg"], u["action"]) == (1, "ignore")
    assert [(d["msg"], d["ok"]) for d in kinds(res, "done")] == [(0, True), (1, True)]
    assert [w["value"] for w in kinds(res, "write")] == ["X", "v0"]  # old writes an ordinary value at 2.5
    assert res.violated == []


def test_a_defaulted_value_is_saved_back_by_a_whole_row_update():
    # old reads status as A and, saving the whole row after writing 'other', puts A over X
    res = _domains(
        old_status={
            "read": "stack.status",
            "write": ["stack.status"],
            "values": ["A"],
            "unknown": "default",
            "default": "A",
        },
        old_handlers={"op": {"read": ["status"], "write": ["other"]}},
        update="row",
    )
    (u,) = kinds(res, "unknown_value")
    assert (u["msg"], u["action"]) == (1, "default")
    (rw,) = kinds(res, "rewrite")
    assert (rw["t"], rw["engine"], rw["cols"]["stack.status"]) == (2.5, "e2", "A")
    assert "no-lost-write" in res.violated and "operations-complete" not in res.violated


def test_without_a_domain_every_value_is_known():
    res = _domains(old_status={"read": "stack.status", "write": ["stack.status"]})
    assert not kinds(res, "unknown_value") and res.violated == []


@pytest.mark.parametrize(
    ("status", "message"),
    [
        ({"read": "stack.status", "unknown": "default"}, "'unknown: default' needs 'values' and a 'default'"),
        ({"read": "stack.status", "values": ["A"], "default": "B"}, "'default' ('B') must be one of 'values'"),
        ({"read": "stack.status", "values": ["v3"]}, "'v3' has the shape of a generated value"),
        ({"read": "stack.status", "unknown": "crash"}, "releases.old.data.status.unknown"),
    ],
)
def test_bad_domains_are_refused(status, message):
    releases = scenario(DOMAINS).model_dump(by_alias=True, exclude_none=True)["releases"]
    releases["old"]["data"]["status"] = status
    with pytest.raises(ScenarioError) as exc:
        scenario(DOMAINS, releases=releases)
    assert message in str(exc.value)


def test_set_must_name_a_written_field():
    wl = scenario(DOMAINS).workload.model_dump(by_alias=True)
    wl["handlers"] = {"op": {"read": ["status"], "set": {"status": "X"}}}
    with pytest.raises(ScenarioError) as exc:
        scenario(DOMAINS, workload=wl)
    assert "'set' names status, not in 'write'" in str(exc.value)


# ============================================================================ start-up actions
# a1 (agent) starts at 0: it writes its record (row = its index 1), calls server.get, which s1
# handles for 1 s, and only then takes messages; a client cast to the agent is sent at 0.5.
STARTUP = """
name: t
seed: 1
bus: {delivery: oslo, call_timeout: 5}
services:
  server: {}
  agent: {}
database:
  tables: {agents: [id, hb]}
  rows: 4
releases:
  srv:
    rpc:
      endpoints:
        - version: "1.0"
          methods: {get: [x]}
    service_time: 1.0
  ag:
    rpc:
      endpoints:
        - version: "1.0"
          methods: {work: [x]}
      sends:
        get: [{version: "1.0", args: [x]}]
    data:
      rec: {write: [agents.hb]}
    on_start: {write: [rec], call: [server.get]}
    service_time: 0.1
engines:
  - {name: s1, release: srv, service: server}
  - {name: a1, release: ag, service: agent}
workload:
  rate: 2.0
  arrivals: periodic
  stop: 0.6
  kind: cast
  client: ag
  service: agent
  operations: {work: 1}
invariants:
  no-incompatible-delivery: {}
"""


def _startup(**overrides):
    return run_scenario(scenario(STARTUP, **overrides))


def test_start_up_actions_run_before_the_engine_takes_messages():
    res = _startup()
    a1 = [r for r in res.records if r.get("engine") == "a1"]
    assert [(r["t"], r["kind"]) for r in a1] == [
        (0.0, "start"),
        (0.0, "write"),  # its record, on its own row
        (0.0, "send"),  # the start-up call
        (1.0, "ready"),  # the reply came at 1.0 (s1's service time)
        (1.0, "recv"),  # the cast sent at 0.5 waited for it
        (1.1, "done"),
    ]
    start, write, call, ready, recv, _ = a1
    assert (write["row"], write["msg"], write["field"]) == (1, -1, "rec")
    assert (call["method"], call["call"], call["service"]) == ("get", True, "server")
    assert ready["cause"] == [start["i"]] and recv["wait"] == 0.5
    done_get = [r for r in kinds(res, "done") if r["msg"] == call["msg"]]
    assert [(d["t"], d["engine"]) for d in done_get] == [(1.0, "s1")]


def test_a_start_up_call_nobody_answers_times_out_and_the_engine_starts_anyway():
    res = _startup(engines=[{"name": "a1", "release": "ag", "service": "agent"}])  # no server engine
    a1 = [r for r in res.records if r.get("engine") == "a1"]
    # the call waits in the server queue; a1 gives up at bus.call_timeout (5 s) and takes messages then
    assert [(r["t"], r["kind"]) for r in a1] == [
        (0.0, "start"),
        (0.0, "write"),
        (0.0, "send"),
        (5.0, "timeout"),
        (5.0, "ready"),
        (5.0, "recv"),
        (5.1, "done"),
    ]
    assert (a1[3]["msg"], a1[3]["attempt"], a1[3]["cause"]) == (a1[2]["msg"], 1, [a1[2]["i"]])


def test_a_kill_during_start_up_leaves_the_engine_stopped_without_ready():
    res = _startup(faults=[{"kill": "a1", "at": 0.5}])
    kinds_a1 = [r["kind"] for r in res.records if r.get("engine") == "a1"]
    assert kinds_a1 == ["start", "write", "send", "fault", "kill"]
    assert not [r for r in kinds(res, "ready") if r["engine"] == "a1"]
    assert not [r for r in kinds(res, "recv") if r["engine"] == "a1"]


def test_a_graceful_stop_during_start_up_waits_for_the_start_up_then_stops():
    res = _startup(plan=[{"after": 0.5, "stop": "a1"}])
    a1 = [(r["t"], r["kind"]) for r in res.records if r.get("engine") == "a1"]
    assert a1 == [(0.0, "start"), (0.0, "write"), (0.0, "send"), (0.5, "stop"), (1.0, "stopped")]


@pytest.mark.parametrize(
    ("on_start", "message"),
    [
        ({"write": ["nope"]}, "field 'nope' is not one release 'ag' writes (it writes: rec)"),
        ({"call": ["server.nope"]}, "method 'server.nope' is not defined by any release"),
        ({"cast": {"nope": 1}}, "method 'nope' is not defined by any release"),
        ({"write": ["rec"], "set": {"other": "X"}}, "'set' names other, not in 'write'"),
    ],
)
def test_bad_start_up_actions_are_refused(on_start, message):
    releases = scenario(STARTUP).model_dump(by_alias=True, exclude_none=True)["releases"]
    releases["ag"]["on_start"] = on_start
    with pytest.raises(ScenarioError) as exc:
        scenario(STARTUP, releases=releases)
    assert message in str(exc.value)


# ============================================================================ backfill as a process
# five rows, the backfill copies t.a into t.b at 10 rows/s: row r is read (and written) at step start + 0.1 * (r + 1)
BACKFILL = """
name: t
seed: 1
bus: {delivery: oslo}
database:
  tables: {t: [id, a, b]}
  rows: 5
  initial: {f: [t.a]}
releases:
  r1:
    rpc:
      endpoints:
        - version: "1.0"
          methods: {op: [x]}
    data:
      f: {read: t.a, write: [t.a]}
    service_time: 0.1
engines: {count: 1, release: r1}
workload:
  rate: 1.0
  arrivals: periodic
  start: 100
  stop: 100
  operations: {op: 1}
invariants:
  no-lost-write: {}
"""


def _bf(*steps):
    return run_scenario(scenario(BACKFILL, plan=list(steps)))


def test_a_crashed_pass_stops_at_its_row_and_a_resumed_pass_starts_there():
    bf = {"from": "t.a", "to": "t.b", "rate": 10}
    res = _bf({"backfill": {**bf, "crash_at_row": 2}}, {"backfill": {**bf, "start": "resume"}})
    (crash,) = kinds(res, "bf_crash")
    assert (crash["t"], crash["row"]) == (pytest.approx(0.3), 2)
    assert res.records[crash["cause"][0]]["kind"] == "bf_read"  # it died after reading row 2
    (resume,) = kinds(res, "bf_resume")
    assert (resume["t"], resume["row"]) == (pytest.approx(0.3), 2)
    # rows 0 and 1 by the first pass, 2..4 by the second, each once; row 2 read by both
    assert [w["row"] for w in kinds(res, "bf_write")] == [0, 1, 2, 3, 4]
    assert [r["row"] for r in kinds(res, "bf_read")] == [0, 1, 2, 2, 3, 4]
    assert [round(w["t"], 3) for w in kinds(res, "bf_write")] == [0.1, 0.2, 0.4, 0.5, 0.6]


def test_a_pass_from_the_start_after_a_crash_reads_every_row_again():
    bf = {"from": "t.a", "to": "t.b", "rate": 10}
    res = _bf({"backfill": {**bf, "crash_at_row": 2}}, {"backfill": bf})
    assert not kinds(res, "bf_resume")
    assert [r["row"] for r in kinds(res, "bf_read")] == [0, 1, 2, 0, 1, 2, 3, 4]


def test_resume_without_a_crash_starts_at_row_0():
    res = _bf({"backfill": {"from": "t.a", "to": "t.b", "rate": 10, "start": "resume"}})
    assert [r["row"] for r in kinds(res, "bf_resume")] == [0]
    assert [w["row"] for w in kinds(res, "bf_write")] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(("guard", "lost"), [("if-unchanged", True), ("if-unchanged-both", False)])
def test_if_unchanged_both_also_compares_the_target(guard, lost):
    # one row; the backfill reads it at 0.1 (a = init0, b empty) and writes at 1.1; meanwhile a call at
    # 0.5 is handled by an engine that writes the target only, b = v0 at 0.6. The source is unchanged, so
    # 'if-unchanged' copies init0 over v0; 'if-unchanged-both' sees the target moved and skips the row.
    releases = scenario(BACKFILL).model_dump(by_alias=True, exclude_none=True)["releases"]
    releases["r1"]["data"]["f"] = {"read": "t.b", "write": ["t.b"]}
    wl = {
        "rate": 2.0,
        "arrivals": "periodic",
        "stop": 0.6,
        "operations": {"op": 1},
        "handlers": {"op": {"write": ["f"]}},
    }
    res = run_scenario(
        scenario(
            BACKFILL,
            database={"tables": {"t": ["id", "a", "b"]}, "rows": 1, "initial": {"f": ["t.a"]}},
            releases=releases,
            workload=wl,
            plan=[{"backfill": {"from": "t.a", "to": "t.b", "rate": 10, "gap": 1.0, "guard": guard}}],
        )
    )
    assert [(round(w["t"], 3), w["value"]) for w in kinds(res, "write")] == [(0.6, "v0")]
    copies = [(round(w["t"], 3), w["value"]) for w in kinds(res, "bf_write")]
    assert copies == ([(1.1, "init0")] if lost else [])
    assert ("no-lost-write" in res.violated) == lost


def test_the_target_guard_is_refused_on_a_sql_backend():
    with pytest.raises(ScenarioError) as exc:
        scenario(
            BACKFILL,
            database={"backend": "sqlite", "tables": {"t": ["id", "a", "b"]}, "rows": 5, "initial": {"f": ["t.a"]}},
            plan=[{"backfill": {"from": "t.a", "to": "t.b", "guard": "if-unchanged-both"}}],
        )
    assert "plan[0].backfill.guard" in str(exc.value) and "location backend only" in str(exc.value)


# ============================================================================ engine-local state
# one engine; one cast w at t=1: it writes f = v0 (at 1.1) and casts s, which casts r, which reads f
LOCAL = """
name: t
seed: 1
bus: {delivery: oslo}
database:
  tables: {t: [id, a]}
  rows: 1
releases:
  r1:
    rpc:
      endpoints:
        - version: "1.0"
          methods: {w: [x], s: [x], r: [x]}
    data:
      f: {read: t.a, write: [t.a], local: true}
    service_time: 0.1
engines: [{name: e1, release: r1}]
workload:
  rate: 1.0
  arrivals: periodic
  stop: 1.5
  kind: cast
  operations: {w: 1}
  handlers:
    w: {write: [f], cast: {s: 1}}
    s: {sync: [f], cast: {r: 1}}
    r: {read: [f]}
invariants:
  no-lost-write: {}
"""


def _local(**overrides):
    return run_scenario(scenario(LOCAL, **overrides))


def test_a_handler_refreshes_the_local_copy_that_later_reads_use():
    res = _local()
    provision, refresh = kinds(res, "sync")
    assert (provision["t"], provision["engine"], provision["field"], provision["loc"]) == (0.0, "e1", "f", "t.a")
    assert "row" not in provision  # every row, at the engine's first start
    assert (refresh["t"], refresh["msg"], refresh["row"], refresh["value"]) == (pytest.approx(1.1), 1, 0, "v0")
    (read,) = kinds(res, "read")
    assert (read["t"], read["loc"], read["value"]) == (pytest.approx(1.2), "t.a@e1", "v0")
    assert refresh["i"] in read["cause"]
    assert res.violated == [] and not res.invariants[0].vacuous


def test_a_local_copy_nobody_refreshed_is_a_lost_write():
    wl = scenario(LOCAL).workload.model_dump(by_alias=True)
    wl["handlers"]["s"] = {"cast": {"r": 1}}  # no sync
    res = _local(workload=wl)
    (read,) = kinds(res, "read")
    assert (read["loc"], read["value"]) == ("t.a@e1", "init0")  # the copy filled at the start
    assert res.violated == ["no-lost-write"]
    assert "from t.a@e1 and got 'init0', but the latest acknowledged write is 'v0'" in res.violations[0].message


def test_local_copies_survive_a_restart_and_on_start_resyncs_them():
    wl = scenario(LOCAL).workload.model_dump(by_alias=True)
    wl["handlers"]["s"] = {"cast": {"r": 1}}
    wl["handlers"]["w"] = {"write": ["f"]}  # w writes v0 at 1.1; nothing reads
    wl["operations"] = {"w": 1}
    plan = [{"after": 2, "restart": "e1", "release": "r1"}]
    res = _local(workload=wl, plan=plan)
    assert len(kinds(res, "sync")) == 1  # filled once; the restart keeps the copy (no second fill)
    releases = scenario(LOCAL).model_dump(by_alias=True, exclude_none=True)["releases"]
    releases["r1"]["on_start"] = {"sync": ["f"]}
    res = _local(workload=wl, plan=plan, releases=releases)
    # the first start's resync fills it (once); the restart at 2 resyncs every row
    assert [(s["t"], "row" in s) for s in kinds(res, "sync")] == [(0.0, False), (2.0, False)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"data": {"f": {"write": ["t.a"], "local": True}}}, "'local: true' needs 'read'"),
        (
            {"data": {"f": {"read": "t.a", "write": ["t.a"]}}, "on_start": {"sync": ["f"]}},
            "field 'f' is not one release 'r1' keeps a local copy of",
        ),
    ],
)
def test_bad_local_state_is_refused(change, message):
    releases = scenario(LOCAL).model_dump(by_alias=True, exclude_none=True)["releases"]
    releases["r1"] |= change
    with pytest.raises(ScenarioError) as exc:
        scenario(LOCAL, releases=releases)
    assert message in str(exc.value)


# ============================================================================ backfill kills beyond the plan
BF = {"from": "t.a", "to": "t.b", "rate": 10}


def test_a_fault_kills_the_first_pass_to_read_its_row_once():
    res = run_scenario(
        scenario(
            BACKFILL,
            plan=[{"backfill": BF}, {"backfill": {**BF, "start": "resume"}}],
            faults=[{"kill": "backfill", "at_row": 2}],
        )
    )
    (fault,) = kinds(res, "fault")
    (crash,) = kinds(res, "bf_crash")
    read2 = [r for r in kinds(res, "bf_read") if r["row"] == 2][0]
    assert (round(fault["t"], 3), fault["engine"], fault["cause"]) == (0.3, "backfill", [read2["i"]])
    assert (round(crash["t"], 3), crash["row"], crash["cause"]) == (0.3, 2, [read2["i"], fault["i"]])
    # the resumed pass reads row 2 again and is not killed: the fault happens once
    assert [r["row"] for r in kinds(res, "bf_resume")] == [2]
    assert [w["row"] for w in kinds(res, "bf_write")] == [0, 1, 2, 3, 4]


def test_a_fault_at_a_time_kills_the_pass_between_its_read_and_its_write():
    # gap 0.5: row 0 read at 0.1, written at 0.6; row 1 read at 0.7, due at 1.2 -- the kill at 1.0 comes first
    res = run_scenario(
        scenario(
            BACKFILL,
            plan=[{"backfill": {**BF, "gap": 0.5}}, {"backfill": {**BF, "gap": 0.5, "start": "resume"}}],
            faults=[{"kill": "backfill", "at": 1.0}],
        )
    )
    (fault,) = kinds(res, "fault")
    (crash,) = kinds(res, "bf_crash")
    read1 = [r for r in kinds(res, "bf_read") if r["row"] == 1][0]
    assert (crash["t"], crash["row"], crash["cause"]) == (1.0, 1, [read1["i"], fault["i"]])
    assert [r["row"] for r in kinds(res, "bf_resume")] == [1]
    writes = [(w["row"], round(w["t"], 3)) for w in kinds(res, "bf_write")]
    assert writes == [(0, 0.6), (1, 1.6), (2, 2.2), (3, 2.8), (4, 3.4)]  # row 1 once, by the resumed pass


def test_boundary_a_kill_before_the_row_is_read_names_only_the_fault():
    # the pass waits 0.1 s before each read: killed at 0.25, it was waiting for row 2, which it never read
    res = run_scenario(
        scenario(
            BACKFILL,
            plan=[{"backfill": BF}, {"backfill": {**BF, "start": "resume"}}],
            faults=[{"kill": "backfill", "at": 0.25}],
        )
    )
    (fault,) = kinds(res, "fault")
    (crash,) = kinds(res, "bf_crash")
    assert (crash["t"], crash["row"], crash["cause"]) == (0.25, 2, [fault["i"]])
    assert [r["row"] for r in kinds(res, "bf_read")] == [0, 1, 2, 3, 4]
    assert [r["row"] for r in kinds(res, "bf_resume")] == [2]


def test_a_kill_when_no_backfill_runs_does_nothing():
    res = run_scenario(
        scenario(BACKFILL, plan=[{"after": 1.0, "backfill": BF}], faults=[{"kill": "backfill", "at": 0.5}])
    )
    assert [f["t"] for f in kinds(res, "fault")] == [0.5]
    assert not kinds(res, "bf_crash")
    assert [w["row"] for w in kinds(res, "bf_write")] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("faults", "message"),
    [
        ([{"kill": "backfill"}], "'kill: backfill' expects exactly one of 'at' (seconds) or 'at_row'"),
        ([{"kill": "backfill", "at": 1, "at_row": 1}], "'kill: backfill' expects exactly one of"),
        ([{"kill": "backfill", "at_step": 0}], "'kill: backfill' expects exactly one of"),
        ([{"kill": "engine-1", "at_row": 1}], "'at_row' needs 'kill: backfill'"),
        ([{"kill": "backfill", "at_row": 5}], "row 5 does not exist (the database has 5 rows)"),
        ([{"kill": "nobody", "at": 1}], "undefined engine 'nobody' (defined: engine-1, or 'backfill')"),
    ],
)
def test_bad_backfill_faults_are_refused(faults, message):
    with pytest.raises(ScenarioError) as exc:
        scenario(BACKFILL, plan=[{"backfill": BF}], faults=faults)
    assert message in str(exc.value)


def test_an_engine_named_backfill_is_refused_where_a_fault_kills_the_backfill():
    with pytest.raises(ScenarioError) as exc:
        scenario(
            BACKFILL,
            engines=[{"name": "backfill", "release": "r1"}],
            plan=[{"backfill": BF}],
            faults=[{"kill": "backfill", "at": 1}],
        )
    assert "faults[0].kill" in str(exc.value) and "names both an engine and the backfill utility" in str(exc.value)


def test_crash_choice_points_exist_only_when_the_scenario_opts_in():
    plain = run_scenario(scenario(BACKFILL, plan=[{"backfill": BF}]))
    opted = run_scenario(scenario(BACKFILL, plan=[{"backfill": BF}], search={"backfill_crash": True}))
    assert "backfill_crash" not in plain.choice_counts
    assert opted.choice_counts["backfill_crash"] == 5  # one per row read
    # option 0, the default: no crash, the same run; only the end record counts the 5 choice points
    assert opted.records[:-1] == plain.records[:-1]
    assert (plain.records[-1]["points"], opted.records[-1]["points"]) == (0, 5)


@pytest.mark.parametrize(("pick", "crashed"), [(1, True), (2, False)])
def test_a_pinned_crash_choice_kills_the_pass_at_its_row(pick, crashed):
    res = run_scenario(
        scenario(
            BACKFILL,
            plan=[{"backfill": BF}],
            search={"backfill_crash": True},
            choices=[{"kind": "backfill_crash", "at": 3, "pick": pick}],  # the 4th row read: row 3
        )
    )
    crashes = kinds(res, "bf_crash")
    if not crashed:  # an even pick is option 0 of two: no crash
        assert not crashes and len(kinds(res, "bf_write")) == 5
        return
    (crash,) = crashes
    (choice,) = kinds(res, "choice")
    assert (choice["what"], choice["at"], choice["row"]) == ("backfill_crash", 3, 3)
    assert crash["row"] == 3 and crash["cause"][1] == choice["i"]
    assert [w["row"] for w in kinds(res, "bf_write")] == [0, 1, 2]


def test_a_schedule_keeps_the_crash_choice_points_and_replays():
    from simroll.explore.search import Schedule, apply_schedule, describe_counterexample

    sc = scenario(BACKFILL, plan=[{"backfill": BF}], search={"backfill_crash": True})
    sched = Schedule.default(1)
    concrete = apply_schedule(
        sc, Schedule(*[getattr(sched, f) for f in ("order", "keep", "pause", "kill")], pins=(("backfill_crash", 1, 1),))
    )
    assert concrete.search is not None and concrete.search.backfill_crash
    res = run_scenario(concrete)
    assert [c["row"] for c in kinds(res, "bf_crash")] == [1]
    assert any("the backfill dies after reading row 1" in line for line in describe_counterexample(res, None))


def test_the_bundled_crash_pair_under_one_crash_choice():
    import simroll
    from simroll.scenario.spec import ChoiceSpec

    pin = [ChoiceSpec(kind="backfill_crash", at=5, pick=1)]  # the first pass dies at row 5 of 40
    unsafe = simroll.load_scenario("scenarios/backfill_crash_once.yaml")
    fixed = simroll.load_scenario("scenarios/backfill_crash_resumed.yaml")
    assert run_scenario(unsafe).violated == [] and run_scenario(fixed).violated == []  # as written
    assert "no-lost-write" in run_scenario(unsafe.model_copy(update={"choices": pin})).violated
    res = run_scenario(fixed.model_copy(update={"choices": pin}))
    assert res.violated == [] and [c["row"] for c in kinds(res, "bf_crash")] == [5]


# ============================================================================ operations-complete with retries
def _oc(recs, **kw):
    from simroll.check.invariants import OperationsComplete

    c = OperationsComplete(**kw)
    for r in recs:
        if r["kind"] in c.kinds:
            c.observe(r)
    return c


def _late(tr, t, msg, deadline):
    tr(t, "late", engine="e1", msg=msg, deadline=deadline, cause=[])
    return tr.done(t, "e1", msg)


def test_a_retried_call_that_completes_is_one_completed_operation():
    tr = T()
    tr.send(0.0, 0)  # the client's timeout is 2 s
    tr(2.0, "timeout", engine="client", msg=0, attempt=1, retry_at=2.5)
    tr.send(2.5, 1, retry_of=0, attempt=2)
    tr.done(3.0, "e2", 1)  # the retry is answered in time
    _late(tr, 3.5, 0, 2.0)  # the first copy is answered late, after the caller gave up on it
    tr(4.0, "end", reason="quiescent", points=0)
    c = _oc(tr.recs, retries=2)
    assert (c.count, c.checked, c.vacuous) == (0, 1, False)
    assert c.availability()["completed"] == 1 and c.availability()["total"] == 1
    assert c.score() == 3.0  # from the first attempt's issue
    old = _oc(tr.recs)  # no retry policy known: each attempt is an operation, the late one fails
    assert (old.count, old.checked) == (1, 2)


def test_a_retried_call_whose_every_attempt_fails_is_one_violation():
    tr = T()
    s0 = tr.send(0.0, 0)
    tr(2.0, "timeout", engine="client", msg=0, attempt=1, retry_at=2.5)
    tr.send(2.5, 1, retry_of=0, attempt=2)
    _late(tr, 3.0, 0, 2.0)
    tr(4.5, "timeout", engine="client", msg=1, attempt=2, retry_at=5.5)
    tr.send(5.5, 2, retry_of=0, attempt=3)
    _late(tr, 6.0, 1, 4.5)
    tr(7.5, "timeout", engine="client", msg=2, attempt=3)  # the last: no retry_at
    last = tr(8.0, "late", engine="e1", msg=2, deadline=7.5, cause=[])
    tr.done(8.0, "e1", 2)
    tr(9.0, "end", reason="quiescent", points=0)
    c = _oc(tr.recs, retries=2)
    assert (c.count, c.checked) == (1, 1)
    v = c.violations[0]
    assert (v.event, v.subject, v.causes) == (last, "m0", (s0,))
    assert (
        "did not complete (every one of its 3 attempts failed; the last: the reply to m2 came at t=8.000" in v.message
    )


def test_a_lost_first_attempt_waits_for_the_retry_a_rejected_one_does_not():
    tr = T()
    tr.send(0.0, 0)
    tr(1.0, "lost", engine="e1", msg=0)  # the caller does not know yet: it times out at 2 and retries
    tr(2.0, "timeout", engine="client", msg=0, attempt=1, retry_at=2.5)
    tr.send(2.5, 1, retry_of=0, attempt=2)
    tr.done(3.0, "e2", 1)
    assert (_oc(tr.recs, retries=2).count, _oc(tr.recs, retries=2).checked) == (0, 1)
    tr = T()
    tr.send(0.0, 0)
    rej = tr(1.0, "reject", engine="e1", msg=0, error="UnsupportedVersion", method="create", version="1.0", call=True)
    c = _oc(tr.recs, retries=2)  # an error reply is not retried: failed at once
    assert (c.count, c.checked, c.violations[0].event) == (1, 1, rej)
    assert "did not complete: m0 was rejected by e1" in c.violations[0].message


@pytest.mark.parametrize(("within", "held"), [(7.5, True), (7.499, False)])
def test_boundary_the_last_retry_completes_exactly_at_the_deadline(within, held):
    tr = T()
    tr.send(0.0, 0)
    tr(2.0, "timeout", engine="client", msg=0, attempt=1, retry_at=2.5)
    tr.send(2.5, 1, retry_of=0, attempt=2)
    tr(4.5, "timeout", engine="client", msg=1, attempt=2, retry_at=5.5)
    tr.send(5.5, 2, retry_of=0, attempt=3)
    done = tr.done(7.5, "e1", 2)  # the last attempt answered at its caller's deadline: in time (no late)
    tr(8.0, "end", reason="quiescent", points=0)
    c = _oc(tr.recs, retries=2, within=within)
    assert c.checked == 1 and (c.count == 0) == held
    if not held:
        assert c.violations[0].event == done and "not complete 7.499 s after it was issued" in c.violations[0].message


def test_the_retry_policy_reaches_the_checker():
    from simroll.check.invariants import make_checkers

    sc = scenario(ONE_CALL, invariants={"operations-complete": {}})
    wl = sc.workload.model_dump(by_alias=True, exclude_none=True)
    wl.pop("retry")
    plain = scenario(ONE_CALL, invariants={"operations-complete": {}}, workload=wl)
    assert [c.retries for c in make_checkers(sc.invariants.enabled(), sc)] == [1]
    assert [c.retries for c in make_checkers(plain.invariants.enabled(), plain)] == [0]


def test_a_run_whose_call_and_retry_both_come_late_fails_one_operation():
    # the call at t=1 is handled 1..4 (reply late: the caller gave up at 3); its retry, sent at 3.5, is
    # handled 4..7 (reply late: the caller gave up at 5.5). One operation, both attempts failed.
    res = _run(invariants={"operations-complete": {}})
    (oc,) = [r for r in res.invariants if r.name == "operations-complete"]
    assert (oc.count, oc.checked) == (1, 1)
    v = oc.violations[0]
    assert v.subject == "m0" and round(v.time, 3) == 7.0
    assert "every one of its 2 attempts failed; the last: the reply to m1 came at t=7.000" in v.message
