"""Scenario files: what loads, and the exact errors for what does not."""

import json

import pytest
from conftest import BASE, SCENARIOS

from simroll import ScenarioError, load_scenario, load_scenario_text, scenario_json_schema
from simroll.scenario.load import dump_scenario


def error(text: str | bytes) -> str:
    with pytest.raises(ScenarioError) as exc:
        load_scenario_text(text, "f.yaml")
    return str(exc.value)


def test_bundled_scenarios_load_and_round_trip():
    for path in sorted(SCENARIOS.glob("*.yaml")):
        s = load_scenario(path)
        assert load_scenario_text(dump_scenario(s)) == s


def test_unquoted_versions_keep_their_text():
    s = load_scenario_text(BASE.replace('version: "1.0"', "version: 1.10"))
    assert s.releases["r1"].rpc.endpoints[0].version == "1.10"


@pytest.mark.parametrize(
    "old, new, message",
    [
        (
            "delivery: oslo",
            "delivery: rabbit",
            "f.yaml: bus.delivery (line 4): input should be 'oslo' or 'version-routed', got 'rabbit'",
        ),
        (
            'version: "1.0"',
            "version: 1.x",
            "f.yaml: releases.r1.rpc.endpoints[0].version (line 12): expected a version major.minor, e.g. '1.2', got '1.x'",
        ),
        ("release: r1", "release: r9", "f.yaml: engines.release (line 19): undefined release 'r9' (defined: r1)"),
        (
            "stop: 3.5",
            "stop: -1",
            "f.yaml: workload.stop (line 23): input should be greater than or equal to 0, got -1",
        ),
        (
            "  no-stranded-message: {}",
            "  no-stranded-mesage: {}",
            "f.yaml: invariants.no-stranded-mesage (line 27): unknown key 'no-stranded-mesage' (expected one of: "
            "no-lost-write, no-stranded-message, no-incompatible-delivery, bounded-imbalance, schema-compatible, "
            "version-skew, no-refused-send, operations-complete, no-lost-update, no-duplicate-effect, plan-completes)",
        ),
        ("rows: 4", "rows: 4\n  rows: 5", "f.yaml: database.rows (line 8): duplicate key 'rows'"),
        (
            "read: resource.properties",
            "read: resource.nope",
            "f.yaml: releases.r1.data.props.read (line 15): column 'resource.nope' is neither in database.tables "
            "nor added by an expand step (known: resource.id, resource.properties)",
        ),
    ],
)
def test_error_messages_name_file_place_and_expectation(old, new, message):
    text = BASE.replace(old, new)
    assert text != BASE
    assert error(text) == message


def test_plan_step_errors():
    assert error(BASE + "plan: [{restart: engine-9, release: r1}]\n") == (
        "f.yaml: plan[0].restart (line 28): undefined engine 'engine-9' (defined: engine-1, engine-2, engine-3)"
    )
    assert error(BASE + "plan: [{wait: 1, stop: engine-1}]\n").startswith(
        "f.yaml: plan[0] (line 28): expected exactly one action of: restart, stop, kill, start, wait"
    )
    assert error(BASE + "plan: [{restart: engine-1}]\n") == "f.yaml: plan[0] (line 28): 'restart' needs 'release'"


def test_documents_that_are_not_scenarios():
    assert (
        error("") == "f.yaml: document: empty: expected a mapping with name, database, releases, engines, "
        "workload, invariants"
    )
    assert error("- a\n- b\n") == "f.yaml: document: expected a mapping at the top level, got list"
    assert error(b"name: \xff\xfe") == "f.yaml: byte 6: not valid UTF-8 text"
    assert error("a: [1, 2\n").startswith("f.yaml: line 2, column 1: not valid YAML")
    assert error("name: !!python/object:os.system x\n").startswith("f.yaml: line 1")


def test_alias_bomb_and_deep_nesting_are_refused():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefg", "bcdefgh")
    )
    assert "aliases are expanded" in error(bomb)
    assert "nested deeper than 64 levels" in error("a: " + "[" * 100 + "]" * 100 + "\n")


def test_size_limit():
    assert "more than the limit" in error("a: " + "x" * 1_100_000)


def test_json_schema_describes_the_format():
    schema = scenario_json_schema()
    json.dumps(schema)
    assert set(schema["required"]) >= {"name", "database", "releases", "engines", "workload", "invariants"}
    inv = schema["$defs"]["InvariantsSpec"]["properties"]
    assert set(inv) == {
        "no-lost-write",
        "no-stranded-message",
        "no-incompatible-delivery",
        "bounded-imbalance",
        "schema-compatible",
        "version-skew",
        "no-refused-send",
        "operations-complete",
        "no-lost-update",
        "no-duplicate-effect",
        "plan-completes",
    }


def test_a_scenario_error_is_also_a_value_error():
    """``except ValueError`` catches a bad scenario, with the file and place in the message."""
    with pytest.raises(ValueError, match=r"^x\.yaml: "):
        load_scenario_text("name: [", source="x.yaml")


# ------------------------------------------------------------------ services and virtual hosts
SVC = """
name: t
bus: {delivery: oslo}
services:
  engine: {releases: [e1]}
  worker: {topic: workers, releases: [w1, w2]}
database:
  tables: {resource: [id]}
releases:
  e1:
    rpc:
      endpoints: [{version: "1.0", methods: {op: [x]}}]
      sends: {work: [{version: "1.0", args: [y]}]}
  w1:
    rpc: {endpoints: [{version: "1.0", methods: {work: [y]}}]}
  w2:
    vhost: v2
    rpc: {endpoints: [{version: "1.1", methods: {work: [y]}}]}
engines:
  - {name: engine-1, release: e1}
  - {name: worker-1, release: w1, service: worker}
workload:
  rate: 1.0
  stop: 3.0
  operations: {op: 1}
  handlers:
    op: {cast: {worker.work: 1}}
plan:
  - {restart: worker-1, release: w2}
  - {set_vhost: v2}
  - {drain: /}
invariants:
  no-stranded-message: {}
"""


def test_services_and_vhosts_load_and_round_trip():
    s = load_scenario_text(SVC)
    assert list(s.service_map()) == ["engine", "worker"]
    assert [s.topic_of(n) for n in s.service_map()] == ["engine", "workers"]
    assert [e.service for e in s.engine_list()] == [None, "worker"]
    assert s.route("engine", "worker.work") == ("worker", "work")
    assert s.route("engine", "op") == ("engine", "op")
    assert s.routing_explicit() and s.vhosts() == ["/", "v2"]
    assert load_scenario_text(dump_scenario(s)) == s


def test_without_services_one_implicit_service_is_named_after_the_topic():
    s = load_scenario_text(BASE)
    assert list(s.service_map()) == ["engine"] and s.default_service() == "engine"
    assert s.route("engine", "engine.op") == ("engine", "engine.op")  # no declared service: a plain name
    assert not s.routing_explicit() and s.vhosts() == ["/"]
    s = load_scenario_text(BASE.replace("bus: {delivery: oslo}", "bus: {delivery: oslo, topic: heat}"))
    assert list(s.service_map()) == ["heat"] and s.topic_of("heat") == "heat"


@pytest.mark.parametrize(
    "old, new, message",
    [
        (
            "service: worker}",
            "service: wrker}",
            "f.yaml: engines[1].service (line 21): undefined service 'wrker' (defined: engine, worker)",
        ),
        (
            "{name: worker-1, release: w1, service: worker}",
            "{name: worker-1, release: e1, service: worker}",
            "f.yaml: engines[1].release (line 21): release 'e1' is not in the history of service 'worker' "
            "(releases: w1, w2)",
        ),
        (
            "{restart: worker-1, release: w2}",
            "{restart: worker-1, release: e1}",
            "f.yaml: plan[0].release (line 29): release 'e1' is not in the history of service 'worker', "
            "which worker-1 belongs to (releases: w1, w2)",
        ),
        (
            "{topic: workers, releases: [w1, w2]}",
            "{topic: engine, releases: [w1, w2]}",
            "f.yaml: services.worker.topic (line 6): topic 'engine' is also the topic of service 'engine': "
            "each service has its own",
        ),
        (
            "engine: {releases: [e1]}",
            "engine: {releases: [e9]}",
            "f.yaml: services.engine.releases[0] (line 5): undefined release 'e9' (defined: e1, w1, w2)",
        ),
        (
            "bus: {delivery: oslo}",
            "bus: {delivery: oslo, topic: heat}",
            "f.yaml: bus.topic (line 3): with 'services', each service names its own topic "
            "(services.NAME.topic); bus.topic names the one implicit service of a scenario without them",
        ),
        (
            "operations: {op: 1}",
            "operations: {op: 1}\n  service: wrker",
            "f.yaml: workload.service (line 26): undefined service 'wrker' (defined: engine, worker)",
        ),
        (
            "{cast: {worker.work: 1}}",
            "{cast: {worker.wrk: 1}}",
            "f.yaml: workload.handlers.op.cast['worker.wrk'] (line 27): method 'worker.wrk' is not defined by any "
            "release (defined: op, work)",
        ),
        (
            "{set_vhost: v2}",
            "{set_vhost: v3}",
            "f.yaml: plan[1].set_vhost (line 30): vhost 'v3' is used by no release and not by the clients "
            "(vhosts: /, v2)",
        ),
        (
            "{drain: /}",
            "{drain: 'a b'}",
            "f.yaml: plan[2].drain (line 31): expected a vhost: '/' or a name (a letter or _, then letters, "
            "digits, _, . or -), got 'a b'",
        ),
        (
            "  worker: {topic",
            "  work.er: {topic",
            "f.yaml: services['work.er'] (line 6): expected a service name (a letter or _, then letters, digits, _ "
            "or -; no dot), got 'work.er'",
        ),
    ],
)
def test_services_and_vhosts_errors(old, new, message):
    assert old in SVC
    assert error(SVC.replace(old, new)) == message


def test_schema_describes_services_vhosts_and_the_bus():
    schema = scenario_json_schema()
    defs = schema["$defs"]
    assert "release history" in schema["properties"]["services"]["description"]
    assert set(defs["ServiceSpec"]["properties"]) == {"topic", "releases"}
    described = {
        ("ServiceSpec", "topic"),
        ("ServiceSpec", "releases"),
        ("EngineSpec", "service"),
        ("EngineGroupSpec", "service"),
        ("WorkloadSpec", "service"),
        ("WorkloadSpec", "vhost"),
        ("ReleaseSpec", "vhost"),
        ("SetVhostStep", "set_vhost"),
        ("DrainStep", "drain"),
        ("BusSpec", "prefetch"),
        ("BusSpec", "ack"),
        ("BusSpec", "topic"),
    }
    for model, key in described:
        assert defs[model]["properties"][key].get("description"), (model, key)
