"""Patterns expand into the releases, steps and RPC definitions the founding thread describes.

Every expectation below is written out by hand from the thread's description of the
pattern (and simroll's scenario format), not taken from the expander's output.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

import simroll
from simroll.cli import main
from simroll.scenario.patterns import PATTERNS, expand_patterns

ROOT = Path(__file__).resolve().parent.parent
PATTERN_FILES = sorted((ROOT / "scenarios" / "patterns").glob("*.yaml"))

BASE = """
name: p
database:
  tables: {resource: [id, props]}
  rows: 4
releases:
  legacy:
    rpc:
      endpoints:
        - version: "1.2"
          methods: {check: [rid], update: [sid]}
    data:
      f: {read: resource.props, write: [resource.props]}
engines: {count: 2, release: legacy}
workload:
  rate: 1
  stop: 5
  operations: {update: 1}
  handlers:
    update: {cast: {check: 1}}
    check: {read: [f], write: [f]}
invariants: {no-lost-write: {}}
"""


def load(patterns: str, base: str = BASE, plan: str | None = None) -> simroll.Scenario:
    text = textwrap.dedent(base) + "patterns:\n" + textwrap.indent(textwrap.dedent(patterns), "  ")
    if plan is not None:
        text += "plan:\n" + textwrap.indent(textwrap.dedent(plan), "  ")
    return simroll.load_scenario_text(text, "<test>")


def access(s: simroll.Scenario, release: str, field: str = "f") -> tuple[str | None, list[str]]:
    acc = s.releases[release].data[field]
    return acc.read, list(acc.write)


def steps(s: simroll.Scenario) -> list[dict]:
    return [st.model_dump(by_alias=True, exclude_defaults=True, mode="json") for st in s.plan]


def rolling(release: str, after: float = 10.0) -> list[dict]:
    return [{"after": after, "restart": f"engine-{i}", "release": release} for i in (1, 2)]


NEW = "t2.data"


# ------------------------------------------------------------------ database patterns
def test_move_field_in_three_releases():
    s = load(f"- {{pattern: move-field, field: f, to: {NEW}}}\n")
    assert list(s.releases) == ["legacy", "plus1", "plus2", "plus3"]
    assert access(s, "plus1") == ("resource.props", ["resource.props", NEW])  # write both, read old
    assert access(s, "plus2") == (NEW, ["resource.props", NEW])  # write both, read new
    assert access(s, "plus3") == (NEW, [NEW])  # new only
    backfill = {"from": "resource.props", "to": NEW, "rate": 20.0, "guard": "if-unchanged"}
    assert steps(s) == (
        [{"after": 10.0, "expand": [NEW]}]
        + rolling("plus1")
        + [{"after": 10.0, "backfill": backfill}]
        + rolling("plus2")
        + rolling("plus3")
        + [{"after": 10.0, "contract": ["resource.props"]}]
    )
    # the RPC side of the derived releases is the base's
    assert s.releases["plus3"].rpc == s.releases["legacy"].rpc


def test_move_field_options_names_no_contract_no_backfill_and_existing_column():
    s = load(
        "- {pattern: move-field, field: f, to: resource.props2, names: [a, b, c], contract: false,\n"
        "   backfill: null, after: 0}\n",
        base=BASE.replace("[id, props]", "[id, props, props2]"),
    )
    assert list(s.releases)[1:] == ["a", "b", "c"]
    # the column exists: no expand step; no backfill, no contract; no pauses
    assert [st.action for st in s.plan] == ["restart"] * 6
    assert s.plan[0].after == 0


def test_add_column_in_two_releases():
    s = load(f"- {{pattern: add-column, field: f, to: {NEW}}}\n")
    assert list(s.releases) == ["legacy", "plus1", "plus2"]
    assert access(s, "plus1") == ("resource.props", ["resource.props", NEW])  # write it, ignore it on read
    assert access(s, "plus2") == (NEW, ["resource.props", NEW])  # read and write it
    assert [st.action for st in s.plan] == ["expand", "restart", "restart", "backfill", "restart", "restart"]
    assert [st.release for st in s.plan if st.action == "restart"] == ["plus1", "plus1", "plus2", "plus2"]


def test_add_column_in_one_release_runs_the_migration_before_the_restarts():
    s = load(f"- {{pattern: add-column, field: f, to: {NEW}, releases: 1}}\n")
    assert list(s.releases) == ["legacy", "new"]
    assert access(s, "new") == (NEW, ["resource.props", NEW])
    assert [st.action for st in s.plan] == ["expand", "backfill", "restart", "restart"]


def test_trigger_sync_is_enabled_for_the_upgrade_window_only():
    s = load(f"- {{pattern: trigger-sync, field: f, to: {NEW}}}\n")
    assert access(s, "new") == (NEW, [NEW])
    forward = {"from": "resource.props", "to": NEW}
    back = {"from": NEW, "to": "resource.props"}
    got = steps(s)
    assert [next(k for k in st if k != "after") for st in got] == [
        "expand",
        "enable_trigger",
        "enable_trigger",
        "backfill",
        "restart",
        "restart",
        "disable_trigger",
        "disable_trigger",
        "contract",
    ]
    assert got[1]["enable_trigger"] == forward and got[2]["enable_trigger"] == back
    assert got[6]["disable_trigger"] == forward and got[7]["disable_trigger"] == back
    one_way = load(f"- {{pattern: trigger-sync, field: f, to: {NEW}, reverse: false, contract: false}}\n")
    assert [st.action for st in one_way.plan].count("enable_trigger") == 1
    assert "contract" not in [st.action for st in one_way.plan]


def test_config_switch_flips_the_read_location_with_set_config_and_a_restart():
    s = load(f"- {{pattern: config-switch, field: f, to: {NEW}}}\n")
    assert list(s.releases) == ["legacy", "new", "plus2"]  # the switch is config, not a release
    assert access(s, "new") == ("resource.props", ["resource.props", NEW])  # read_from: old, the default
    [option] = s.releases["new"].config.values()
    assert list(s.releases["new"].config) == ["read_from"]
    assert (option.default, option.applies, list(option.values)) == ("old", "restart", ["old", "new"])
    assert option.values["old"].data == {}
    new_data = option.values["new"].data["f"]
    assert (new_data.read, list(new_data.write)) == (NEW, ["resource.props", NEW])
    assert access(s, "plus2") == (NEW, [NEW])
    actions = [st.action for st in s.plan]
    flip = actions.index("set_config")
    assert s.plan[flip].set_config == {"read_from": "new"} and s.plan[flip].engines is None  # every engine
    assert actions.index("backfill") < flip  # after the backfill; then a rolling restart applies it
    assert [(st.restart, st.release) for st in s.plan[flip + 1 : flip + 3]] == [
        ("engine-1", "new"),
        ("engine-2", "new"),
    ]
    assert [st.release for st in s.plan if st.action == "restart"] == ["new"] * 4 + ["plus2"] * 2
    no_final = load(f"- {{pattern: config-switch, field: f, to: {NEW}, final: null}}\n")
    assert list(no_final.releases) == ["legacy", "new"]
    assert "contract" not in [st.action for st in no_final.plan]


def test_config_switch_reads_the_new_location_only_after_the_flip():
    s = load(f"- {{pattern: config-switch, field: f, to: {NEW}, final: null}}\n")
    res = simroll.run_scenario(s)
    flip = next(r["t"] for r in res.records if r["kind"] == "step" and r["action"] == "set_config")
    starts = [(r["t"] > flip, r["config"]) for r in res.records if r["kind"] == "start" and r["release"] == "new"]
    assert starts == [(False, {"read_from": "old"})] * 2 + [(True, {"read_from": "new"})] * 2


# ------------------------------------------------------------------ RPC patterns
def rpc(s: simroll.Scenario, release: str):
    return s.releases[release].rpc


def test_future_args_carries_the_new_argument_in_the_dict_for_one_release():
    s = load("- {pattern: future-args, method: check, arg: root}\n")
    # legacy accepts future_args on every method (and does nothing with it)
    assert rpc(s, "legacy").endpoints[0].methods == {
        "check": ["rid", "future_args=None"],
        "update": ["sid", "future_args=None"],
    }
    # plus1 accepts root with a default, but sends what legacy takes (root's value rides in future_args)
    assert rpc(s, "plus1").endpoints[0].methods["check"] == ["rid", "future_args=None", "root=None"]
    sends = rpc(s, "plus1").sends["check"]
    assert [(r.version, sorted(r.args)) for r in sends] == [("1.2", ["future_args", "rid"])]
    # plus2 sends root in its own place: its default rule, every parameter
    assert rpc(s, "plus2").endpoints[0].methods["check"] == ["rid", "future_args=None", "root=None"]
    assert "check" not in rpc(s, "plus2").sends
    assert all(ep.version == "1.2" for r in ("plus1", "plus2") for ep in rpc(s, r).endpoints)  # no bump
    assert [st.release for st in s.plan] == ["plus1", "plus1", "plus2", "plus2"]


def test_future_args_keeps_kwargs_last():
    base = BASE.replace("check: [rid]", 'check: [rid, "**kw"]')
    s = load("- {pattern: future-args, method: check, arg: root}\n", base=base)
    assert rpc(s, "plus2").endpoints[0].methods["check"] == ["rid", "future_args=None", "root=None", "**kw"]


def test_new_argument_with_a_default_and_a_minor_bump():
    s = load("- {pattern: new-arg-default, method: check, arg: root}\n")
    ep = rpc(s, "new").endpoints[0]
    assert (ep.version, ep.methods["check"], ep.methods["update"]) == ("1.3", ["rid", "root=None"], ["sid"])
    # only the changed method is sent at the new version (Heat's rpcapi stamps each call)
    assert rpc(s, "new").send_version == "1.2"
    assert [r.version for r in rpc(s, "new").sends["check"]] == ["1.3"]
    assert [st.release for st in s.plan] == ["new", "new"]
    assert (
        rpc(load("- {pattern: new-arg-default, method: check, arg: root, version: '1.7'}\n"), "new")
        .endpoints[0]
        .version
        == "1.7"
    )


def test_new_method_in_a_minor_version_is_cast_by_its_caller():
    s = load(
        "- {pattern: new-method, method: sync, params: [rid, 'deep=False'], caller: update, count: 2,\n"
        "   handler: {read: [f]}}\n"
    )
    ep = rpc(s, "new").endpoints[0]
    assert ep.version == "1.3" and ep.methods["sync"] == ["rid", "deep=False"]
    assert "sync" not in rpc(s, "legacy").endpoints[0].methods
    assert [r.version for r in rpc(s, "new").sends["sync"]] == ["1.3"]
    assert s.workload.handlers["update"].cast == {"check": 1, "sync": 2}
    assert s.workload.handlers["sync"].read == ["f"]


def test_major_bump_listens_on_both_majors_and_upgrades_the_client_last():
    s = load("- {pattern: major-bump, methods: {check: [rid, root]}}\n")
    eps = rpc(s, "new").endpoints
    assert [(e.version, e.methods) for e in eps] == [
        ("2.0", {"check": ["rid", "root"], "update": ["sid"]}),
        ("1.2", {"check": ["rid"], "update": ["sid"]}),
    ]
    assert rpc(s, "new").send_version == "2.0"
    assert steps(s)[-1] == {"after": 10.0, "set_client": "new"}
    single = load("- {pattern: major-bump, dual: false, upgrade_client: false, version: '3.0'}\n")
    assert [e.version for e in rpc(single, "new").endpoints] == ["3.0"]
    assert [st.action for st in single.plan] == ["restart", "restart"]


def test_version_cap_auto_backports_to_the_legacy_signature_and_rereads_caps_at_the_end():
    s = load(
        "- {pattern: new-arg-default, method: check, arg: root}\n- {pattern: version-cap, release: new, cap: auto}\n"
    )
    new = rpc(s, "new")
    assert new.cap == "auto"
    assert [(r.version, r.args) for r in new.sends["check"]] == [("1.3", None), ("1.2", ["rid"])]
    assert "update" not in new.sends  # sent at 1.2 anyway: nothing to backport
    assert steps(s)[-1] == {"after": 10.0, "set_cap": "auto"}


def test_version_cap_fixed_raises_the_pin_after_the_last_restart():
    s = load("- {pattern: major-bump}\n- {pattern: version-cap, cap: '1.2', after: 5}\n")
    new = rpc(s, "new")  # the last release defined
    assert new.cap == "1.2"
    assert [(r.version, r.args) for r in new.sends["check"]] == [("2.0", None), ("1.2", ["rid"])]
    assert steps(s)[-2:] == [{"after": 10.0, "set_client": "new"}, {"after": 5.0, "set_cap": "2.0"}]


def test_version_cap_of_a_method_the_old_release_lacks_has_no_backport():
    s = load("- {pattern: new-method, method: sync, caller: update}\n- {pattern: version-cap, cap: auto}\n")
    assert [r.version for r in rpc(s, "new").sends["sync"]] == ["1.3"]  # capped at 1.2: not sent


# ------------------------------------------------------------------ composition and the file's own plan
def test_patterns_append_after_the_files_own_plan_and_plan_false_adds_releases_only():
    s = load("- {pattern: new-arg-default, method: check, arg: root, plan: false}\n", plan="- {wait: 3}\n")
    assert "new" in s.releases
    assert steps(s) == [{"wait": 3.0}]
    s = load(f"- {{pattern: add-column, field: f, to: {NEW}}}\n", plan=f"- {{expand: [{NEW}]}}\n")
    assert [st.action for st in s.plan][:2] == ["expand", "restart"]  # the file already expands it


def test_expansion_does_not_change_its_input():
    data = yaml.safe_load(textwrap.dedent(BASE) + "patterns: [{pattern: future-args, method: check, arg: r}]\n")
    before = yaml.safe_dump(data)
    out = expand_patterns(data)
    assert yaml.safe_dump(data) == before
    assert (
        "patterns" not in out
        and "future_args=None" in out["releases"]["legacy"]["rpc"]["endpoints"][0]["methods"]["check"]
    )


def test_a_scenario_without_patterns_is_untouched():
    data = {"name": "x"}
    assert expand_patterns(data) is data


# ------------------------------------------------------------------ errors name the place
@pytest.mark.parametrize(
    "patterns, where, message",
    [
        (
            "- {pattern: move-feld, field: f, to: t2.data}\n",
            "patterns[0].pattern (line 24)",
            "unknown pattern 'move-feld' (expected one of: move-field, add-column,",
        ),
        ("- {field: f}\n", "patterns[0] (line 24)", "missing required key 'pattern'"),
        ("- {pattern: move-field, to: t2.data}\n", "patterns[0].field (line 24)", "missing required key 'field'"),
        (
            "- {pattern: move-field, field: f, to: t2.data, colour: red}\n",
            "patterns[0].colour (line 24)",
            "unknown key 'colour' for pattern move-field (expected one of: base, plan, after, field, from, to,",
        ),
        (
            "- {pattern: move-field, field: f, to: nodot}\n",
            "patterns[0].to (line 24)",
            "expected a location table.column, got 'nodot'",
        ),
        (
            "- {pattern: new-arg-default, method: check, arg: r}\n- {pattern: move-field, field: g, to: t2.data}\n",
            "patterns[1].field (line 25)",
            "release 'legacy' has no field 'g' (fields: f)",
        ),
        (
            "- {pattern: move-field, field: f, to: t2.data, base: old}\n",
            "patterns[0].base (line 24)",
            "undefined release 'old' (defined: legacy)",
        ),
        (
            "- {pattern: move-field, field: f, from: t2.x, to: t2.data}\n",
            "patterns[0].from (line 24)",
            "release 'legacy' does not write 'f' to 't2.x' (it writes: resource.props)",
        ),
        (
            "- {pattern: move-field, field: f, to: resource.props}\n",
            "patterns[0].to (line 24)",
            "the new location must differ from the old one ('resource.props')",
        ),
        (
            "- {pattern: move-field, field: f, to: t2.data, names: [a, legacy, c]}\n",
            "patterns[0].names[1] (line 24)",
            "release 'legacy' is already defined",
        ),
        (
            "- {pattern: add-column, field: f, to: t2.data, names: [a]}\n",
            "patterns[0].names (line 24)",
            "expected 2 release name(s), got 1",
        ),
        (
            "- {pattern: future-args, method: delete, arg: r}\n",
            "patterns[0].method (line 24)",
            "release 'legacy' has no method 'delete'",
        ),
        (
            "- {pattern: new-arg-default, method: check, arg: rid}\n",
            "patterns[0].arg (line 24)",
            "method 'check' of release 'legacy' already takes 'rid'",
        ),
        (
            "- {pattern: new-arg-default, method: check, arg: r, version: '2.0'}\n",
            "patterns[0].version (line 24)",
            "a minor bump of 1.2 needs 1.x above 1.2, got '2.0'",
        ),
        (
            "- {pattern: major-bump, version: '1.9'}\n",
            "patterns[0].version (line 24)",
            "a major bump needs a major above 1, got '1.9'",
        ),
        (
            "- {pattern: major-bump, methods: {gone: []}}\n",
            "patterns[0].methods.gone (line 24)",
            "release 'legacy' has no method 'gone'",
        ),
        (
            "- {pattern: new-method, method: check, caller: update}\n",
            "patterns[0].method (line 24)",
            "release 'legacy' already has a method 'check'",
        ),
        (
            "- {pattern: new-method, method: sync, caller: nobody}\n",
            "patterns[0].caller (line 24)",
            "release 'legacy' has no method 'nobody'",
        ),
        (
            "- {pattern: version-cap, cap: 'one'}\n",
            "patterns[0].cap (line 24)",
            "expected a version major.minor, e.g. '1.2', got 'one'",
        ),
        ("- 7\n", "patterns[0] (line 24)", "expected a mapping with 'pattern' and its parameters, got 7"),
    ],
)
def test_errors_name_the_pattern_entry_and_key(patterns, where, message):
    with pytest.raises(simroll.ScenarioError) as e:
        load(patterns)
    assert e.value.source == "<test>"
    assert e.value.where == where
    assert message in e.value.message


def test_patterns_must_be_a_list():
    with pytest.raises(simroll.ScenarioError) as e:
        simroll.load_scenario_text(textwrap.dedent(BASE) + "patterns: {pattern: move-field}\n", "<t>")
    assert e.value.where == "patterns (line 23)" and "expected a list of patterns" in e.value.message


def test_an_invalid_base_release_is_reported_where_it_is_not_in_the_pattern():
    with pytest.raises(simroll.ScenarioError) as e:
        load(f"- {{pattern: move-field, field: f, to: {NEW}}}\n", base=BASE.replace('"1.2"', '"one"'))
    assert e.value.where.startswith("releases.legacy.rpc.endpoints[0].version")


def test_the_json_schema_describes_patterns():
    schema = simroll.scenario_json_schema()
    items = schema["properties"]["patterns"]["items"]
    assert sorted(items["discriminator"]["mapping"]) == sorted(PATTERNS)
    assert "MoveField" in schema["$defs"] and "BackfillParams" in schema["$defs"]


# ------------------------------------------------------------------ simroll expand and the pattern files
def test_simroll_expand_prints_a_scenario_that_loads_back_equal(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(BASE) + f"patterns: [{{pattern: trigger-sync, field: f, to: {NEW}}}]\n")
    assert main(["expand", str(path)]) == 0
    out = capsys.readouterr().out
    assert "patterns" not in out and "enable_trigger" in out
    assert simroll.load_scenario_text(out, "<expanded>") == simroll.load_scenario(path)


def test_simroll_expand_reports_pattern_errors_without_a_traceback(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(BASE) + "patterns: [{pattern: nope}]\n")
    assert main(["expand", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"simroll: {path}: patterns[0].pattern (line 23): unknown pattern 'nope'")


def test_every_pattern_has_a_file():
    used = set()
    for path in PATTERN_FILES:
        used.update(p["pattern"] for p in yaml.safe_load(path.read_text())["patterns"])
    assert used == set(PATTERNS)


@pytest.mark.parametrize("path", PATTERN_FILES, ids=lambda p: p.stem)
def test_pattern_files_meet_their_expect_line(path):
    s = simroll.load_scenario(path)
    res = simroll.run_scenario(s, keep_trace=False)
    if s.expect == "holds":
        assert res.ok, res.violated
    else:
        assert s.expect.split()[1] in res.violated
