"""The commented scenario ``simroll init`` writes: a starting point that exercises a new release.

Every template is the founding thread's cluster (three Heat engines on one database, casting
``check_resource`` to each other) plus one way to bring in the new release: written out by
hand (no pattern), or one of the patterns of :mod:`simroll.scenario.patterns`. Each loads and
runs as written (``tests/test_cli.py`` runs every one).
"""

from __future__ import annotations

import re

# what each pattern adds to the file: its comment, then its patterns entries
_PATTERNS: dict[str, tuple[str, list[str]]] = {
    "move-field": (
        "Move resource_props to a new table in three releases: plus1 writes both places and reads\n"
        "the old one; plus2 reads the new one after a backfill copies the old rows; plus3 uses the\n"
        "new place only, and the old column is dropped (contract) after the last restart.",
        ["{pattern: move-field, field: resource_props, to: resource_properties_data.data}"],
    ),
    "add-column": (
        "Add a column in two releases: plus1 writes it but still reads the old place; plus2 reads\n"
        "it too. (releases: 1 goes straight to plus2: unsafe while a legacy engine rewrites rows.)",
        ["{pattern: add-column, field: resource_props, to: resource.properties_v2, releases: 2}"],
    ),
    "trigger-sync": (
        "Keep the old and the new place in sync with database triggers, enabled for the upgrade only.",
        ["{pattern: trigger-sync, field: resource_props, to: resource_properties_data.data}"],
    ),
    "config-switch": (
        "One new release reads where a config switch says; the operator flips it after a full\n"
        "rolling restart (the thread warns that operators flip it in the wrong order).",
        ["{pattern: config-switch, field: resource_props, to: resource_properties_data.data}"],
    ),
    "future-args": (
        "Every method takes a future_args dict: plus1 accepts root_id but sends it inside\n"
        "future_args; plus2 sends it in its own place.",
        ["{pattern: future-args, method: check_resource, arg: root_id}"],
    ),
    "new-arg-default": (
        "check_resource gains root_id=None and its endpoint a minor bump (1.1). Under\n"
        "oslo.messaging a legacy engine may take a 1.1 message it cannot handle: see version-cap.",
        ["{pattern: new-arg-default, method: check_resource, arg: root_id}"],
    ),
    "new-method": (
        "A new method (sync_resource) in a minor version, cast by the update_stack handler.",
        [
            "{pattern: new-method, method: sync_resource, params: [resource_id], caller: update_stack,",
            "   handler: {read: [resource_props]}}",
        ],
    ),
    "major-bump": (
        "A new major version (2.0); the new release keeps listening for 1.x (dual) until every\n"
        "engine is upgraded, and the client (heat-api) is upgraded last.",
        ["{pattern: major-bump}"],
    ),
    "version-cap": (
        "A new argument (new-arg-default) sent under a version cap: the new release sends at most\n"
        "the lowest version any running engine implements (Nova's upgrade_levels=auto), with a\n"
        "backport for legacy engines, and lifts the cap after the last restart.",
        [
            "{pattern: new-arg-default, method: check_resource, arg: root_id}",
            "{pattern: version-cap, release: new, cap: auto}",
        ],
    ),
}

PATTERN_NAMES = tuple(_PATTERNS)

_HEAD = """\
# {name}: a rolling upgrade of three engines, written by `simroll init{flag}`.
#
#   simroll run {path}          one run: which invariants held (exit 0), which broke (exit 1)
#   simroll fuzz {path}         search timings, orderings and crashes for a violation
#   simroll expand {path}       this file with its patterns written out
#
# The cluster is the founding thread's: Heat engines sharing one database, handling
# update_stack from the API and casting check_resource to each other over RPC.
# Edit it to your service: docs/format.md and `simroll schema` describe every key.
name: {name}
seed: 1
bus:
  delivery: oslo          # oslo.messaging: one queue per topic, the version checked on receipt
database:
  tables:                 # table: [columns]
    stack: [id, status]
    resource: [id, stack_id, status, properties]
  rows: 40
releases:
  legacy:                 # the release every engine runs at the start
    rpc:
      endpoints:
        - version: "1.0"
          methods:        # method: [parameters]; "name=None" has a default
            update_stack: [stack_id]
            check_resource: [resource_id, current_traversal]
    data:                 # logical field: where it is read, where it is written
      stack_status: {{read: stack.status, write: [stack.status]}}
      resource_props: {{read: resource.properties, write: [resource.properties]}}
    service_time: 0.3     # seconds an engine spends on one message
"""

_NEW_RELEASE = """\
  new:                    # the new release: check_resource gains root_id (a minor bump, 1.1)
    rpc:
      endpoints:
        - version: "1.1"
          methods:
            update_stack: [stack_id]
            check_resource: [resource_id, current_traversal, "root_id=None"]
      cap: auto           # send at most the lowest version a running engine implements
      sends:
        check_resource:
          - {version: "1.1"}                                          # with root_id
          - {version: "1.0", args: [resource_id, current_traversal]}  # backport for legacy
    data:
      stack_status: {read: stack.status, write: [stack.status]}
      resource_props: {read: resource.properties, write: [resource.properties]}
    service_time: 0.3
"""

_CLUSTER = """\
engines: {count: 3, release: legacy}
workload:
  rate: 2.0               # operations per second from the API
  arrivals: periodic
  stop: 200               # seconds of simulated time the clients send
  operations: {update_stack: 1}
  handlers:               # what handling each method does: fields read and written, RPC cast
    update_stack: {write: [stack_status], cast: {check_resource: 3}}
    check_resource: {read: [resource_props], write: [resource_props]}
"""

_PLAN = """\
plan:                     # the operator's steps, in order (after: seconds after the step before)
  - {after: 20, restart: engine-1, release: new}
  - {after: 10, restart: engine-2, release: new}
  - {after: 10, restart: engine-3, release: new}
  - {after: 10, set_cap: auto}    # SIGHUP: the engines recompute the cap, now 1.1
"""

_TAIL = """\
invariants:               # what must hold; `simroll run` says what each one checked
  no-lost-write: {}
  no-stranded-message: {}
  no-incompatible-delivery: {}
  bounded-imbalance: {max_wait: 5}   # seconds a message may wait while another engine is idle
  schema-compatible: {}
  version-skew: {max_releases: 2}
# what you claim: `holds`, or `violates NAME` for a known-bad design (the pytest plugin checks it)
expect: holds
"""


def scenario_template(pattern: str | None = None, name: str = "my_upgrade", path: str = "scenario.yaml") -> str:
    """The text of a commented scenario: the cluster, then the new release by hand (``pattern``
    None) or through ``pattern`` (one of :data:`PATTERN_NAMES`). ``name`` is the scenario's name
    (anything that is not a valid one is replaced); ``path`` is shown in the comments."""
    if pattern is not None and pattern not in _PATTERNS:
        raise ValueError(f"pattern={pattern!r}: expected one of {', '.join(PATTERN_NAMES)}")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]{0,99}", name):
        name = "my_upgrade"
    flag = "" if pattern is None else f" --pattern {pattern}"
    shown = path if re.fullmatch(r"[\w./-]+", path) else repr(path)
    text = _HEAD.format(name=name, flag=flag, path=shown)
    if pattern is None:
        return text + _NEW_RELEASE + _CLUSTER + _PLAN + _TAIL
    comment, entries = _PATTERNS[pattern]
    block = "".join(f"# {line}\n" for line in comment.split("\n"))
    block += "# The pattern adds the new releases and the plan steps (restarts, expand, backfill, contract).\n"
    block += "patterns:\n" + "".join(("  - " if e.startswith("{") else "  ") + e + "\n" for e in entries)
    return text + _CLUSTER + block + _TAIL


__all__ = ["PATTERN_NAMES", "scenario_template"]
