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
            "version-skew, no-refused-send, operations-complete, no-lost-update)",
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
    }


def test_a_scenario_error_is_also_a_value_error():
    """``except ValueError`` catches a bad scenario, with the file and place in the message."""
    with pytest.raises(ValueError, match=r"^x\.yaml: "):
        load_scenario_text("name: [", source="x.yaml")
