"""Scenario files: safe YAML in, a validated :class:`~simroll.scenario.spec.Scenario` out.

Validation happens once, here. A bad document raises :class:`ScenarioError` whose
text is ``FILE: where (line N): what was expected``. YAML is loaded without
constructing objects, and its size, nesting and alias expansion are bounded.
"""

from __future__ import annotations

import json
import re
import typing
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Tag, ValidationError

from simroll._io import read_input
from simroll.errors import ScenarioError
from simroll.scenario._messages import is_tag, join, path, short, show
from simroll.scenario.spec import (
    SERVICE_PATTERN,
    STEP_ACTIONS,
    STEP_TAGS,
    VHOST_PATTERN,
    AddStep,
    BackfillStep,
    ContractStep,
    DisableTriggerStep,
    DrainStep,
    EnableTriggerStep,
    ExpandStep,
    HandlerSpec,
    Scenario,
    SetClientStep,
    SetConfigStep,
    SetVhostStep,
    SighupStep,
    WaitUntilStep,
)
from simroll.scenario.sqlspec import check_sql
from simroll.scenario.versions import VERSION_PATTERN

MAX_BYTES = 1_000_000
MAX_NODES = 200_000  # after alias expansion
MAX_DEPTH = 64
MAX_OPERATIONS = 10_000_000  # client operations, rate x (stop - start)
MAX_CELLS = 2_000_000  # database rows x columns (initial, expanded and absent ones)
MAX_ADDED = 10_000  # engines the plan's add steps may bring in, in all
MAX_SENDS = 10_000  # messages one handled message may send (casts + fanout x engines)
MAX_INT_DIGITS = 100  # an integer literal longer than this is no count, time or seed (int() of 4,300+ digits raises)
MAX_VERSION_DIGITS = 9  # digits of one version component: '1.10' yes, a 5,000-digit minor no
_VERSION_KEYS = ("version", "send_version", "cap", "set_cap")


class _Float(float):
    """A YAML float that remembers how it was written, so ``version: 1.10`` stays '1.10'."""

    source: str = ""


class _TooDeep(Exception):
    def __init__(self, mark: Any):
        self.mark = mark


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader (no object construction), keeping float source text.

    It also refuses nesting deeper than ``MAX_DEPTH`` while composing, so a file of
    ``[[[[...`` stops at the 65th bracket instead of scanning (quadratically, in PyYAML's
    scanner) and recursing until Python's recursion limit.
    """

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: D102 - PyYAML's hook
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH + 1:  # the root is depth 0 for _check_shape, 1 here
                raise _TooDeep(self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _construct_float(loader: _Loader, node: yaml.ScalarNode) -> float | str:
    if ":" in node.value:  # YAML 1.1 sexagesimal (1:30 is 90.0): read as the text it looks like
        return str(node.value)
    f = _Float(yaml.SafeLoader.construct_yaml_float(loader, node))
    f.source = node.value
    return f


def _construct_int(loader: _Loader, node: yaml.ScalarNode) -> int | str:
    """Integers strictly: a sexagesimal ``1:30`` stays the text (YAML 1.2 reads it so; 1.1 made it 90),
    and a literal of more than ``MAX_INT_DIGITS`` digits is refused where it stands, before ``int()``
    (Python refuses to convert 4,300+ digits, and no count, time or seed needs a hundred)."""
    if ":" in node.value:
        return str(node.value)
    digits = len(node.value.lstrip("+-").replace("_", ""))
    if digits > MAX_INT_DIGITS:
        raise yaml.constructor.ConstructorError(
            None, None, f"an integer of {digits:,} characters, more than the limit of {MAX_INT_DIGITS}", node.start_mark
        )
    return int(yaml.SafeLoader.construct_yaml_int(loader, node))


_Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)
_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
# YAML 1.2 exponents (1e6, 1.0e7): YAML 1.1 wants a dot and a signed exponent and reads these as strings,
# which strict validation would refuse as numbers
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _check_shape(node: yaml.Node, source: str) -> None:
    """Bound nesting and alias expansion; refuse duplicate keys (PyYAML keeps the last silently)."""
    count = 0
    stack: list[tuple[yaml.Node, int, str]] = [(node, 0, "")]
    while stack:
        n, depth, where = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise ScenarioError(
                source, "document", f"more than {MAX_NODES} nodes once aliases are expanded (an alias bomb?)"
            )
        if depth > MAX_DEPTH:
            raise ScenarioError(source, where or "document", f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(n, yaml.MappingNode):
            seen: set[str] = set()
            for k, v in n.value:
                key = k.value if isinstance(k, yaml.ScalarNode) else "?"
                if isinstance(k, yaml.ScalarNode) and key in seen:
                    raise ScenarioError(
                        source, f"{join(where, key)} (line {k.start_mark.line + 1})", f"duplicate key {show(key)}"
                    )
                seen.add(key)
                stack.append((v, depth + 1, join(where, key)))
        elif isinstance(n, yaml.SequenceNode):
            for i, v in enumerate(n.value):
                stack.append((v, depth + 1, f"{where}[{i}]"))


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The line (1-based) where the node at ``loc`` starts, as far as the path goes."""
    node, line = root, None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                    nxt = v
                    line = k.start_mark.line + 1
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
        else:
            node = None
    if node is not None:
        line = node.start_mark.line + 1
    return line


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class whose field sits at ``loc`` (best effort), to list the valid keys. ``loc`` is
    pydantic's, tags included: a tag of a tagged union (a step's kind) picks the member."""
    tp: Any = Scenario
    for part in loc:
        if is_tag(part, STEP_TAGS):
            tp = _tagged(tp, part)
            continue
        tp = _unwrap(tp, part)
        if tp is None:
            return None
    tp = _unwrap_container(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _tagged(tp: Any, tag: str) -> Any:
    """The member of the tagged union ``tp`` whose ``Tag`` is ``tag``; ``tp`` for any other tag."""
    union = typing.get_args(tp)[0] if typing.get_origin(tp) is typing.Annotated else tp
    for member in typing.get_args(union):
        if typing.get_origin(member) is typing.Annotated and Tag(tag) in typing.get_args(member)[1:]:
            return member
    return tp


def _unwrap_container(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            models = [a for a in typing.get_args(tp) if isinstance(a, type) and issubclass(a, BaseModel)]
            if len(models) != 1:
                return None
            tp = models[0]
        else:
            return tp


def _unwrap(tp: Any, part: Any) -> Any:
    tp = _unwrap_container(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        for name, f in tp.model_fields.items():
            if part in (name, f.alias):
                return f.annotation
        return None
    origin = typing.get_origin(tp)
    if origin is list and isinstance(part, int):
        return typing.get_args(tp)[0]
    if origin is dict:
        return typing.get_args(tp)[1]
    return None


def _first_error(errors: list[Any]) -> Any:
    """The error to report: the first, unless it only says a union's other member had the wrong type.

    ``engines: {count: 100001, ...}`` fails both as a list ("input should be a valid list") and as
    a group (count too large); the second is the one that helps.
    """
    first = errors[0]
    place = [p for p in first["loc"] if not is_tag(p, STEP_TAGS)]
    if first["type"].endswith("_type"):
        for err in errors[1:]:
            loc = [p for p in err["loc"] if not is_tag(p, STEP_TAGS)]
            # another member's error inside the value (engines.count of a group), or not about the type
            if loc[: len(place)] == place and (len(loc) > len(place) or not err["type"].endswith("_type")):
                return err
    return first


def _message(err: dict[str, Any], loc: tuple[Any, ...]) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "missing":
        return f"missing required key {show(loc[-1])}" if loc else "missing required key"
    if kind == "extra_forbidden":
        model = _model_at(tuple(err["loc"])[:-1])
        valid = ""
        if model is not None:
            names = [f.alias or n for n, f in model.model_fields.items()]
            valid = f" (expected one of: {', '.join(names)})"
        return f"unknown key {show(loc[-1])}{valid}"
    if kind == "string_pattern_mismatch":
        pattern = err.get("ctx", {}).get("pattern", "")
        what = {
            VERSION_PATTERN: "a version major.minor, e.g. '1.2'",
            r"^[A-Za-z_]\w*\.[A-Za-z_]\w*$": "a location table.column",
            SERVICE_PATTERN: "a service name (a letter or _, then letters, digits, _ or -; no dot)",
            VHOST_PATTERN: "a vhost: '/' or a name (a letter or _, then letters, digits, _, . or -)",
        }.get(pattern, f"a string matching {pattern}")
        return f"expected {what}, got {show(err.get('input'))}"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    inp = err.get("input")
    shown = "" if isinstance(inp, (dict, list)) else f", got {show(inp)}"
    return f"{msg[0].lower()}{msg[1:]}{shown}"


class _BadValue(Exception):
    """A value refused before validation, at ``loc`` (a key path) for ``message``."""

    def __init__(self, loc: tuple[Any, ...], message: str):
        self.loc, self.message = loc, message


_VERSION_TEXT = re.compile(r"\d+(\.\d+)+")


def _check_text(text: str | bytes, loc: tuple[Any, ...]) -> None:
    """Strings are text: no bytes (``!!binary``) and no lone surrogate (``"\\ud800"``), which no
    report, trace or HTML page could encode."""
    if isinstance(text, bytes):
        raise _BadValue(loc, "expected text, got binary data (!!binary)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise _BadValue(loc, f"not valid Unicode text: a lone surrogate U+{ord(text[e.start]):04X}") from None


def _fix_versions(data: Any, path: tuple[Any, ...] = ()) -> Any:
    """``version: 1.10`` arrives as a float; version-valued keys get their source text back.

    A version component is an ``int`` in the simulator: one of more than ``MAX_VERSION_DIGITS``
    digits is refused here, with its place, instead of failing inside the run."""
    if isinstance(data, str) or isinstance(data, bytes):
        _check_text(data, path)
        return data
    if isinstance(data, dict):
        out = {}
        for k, v in data.items():
            if isinstance(k, (str, bytes)):
                _check_text(k, path + (k,))
            if isinstance(v, _Float) and k in _VERSION_KEYS:
                v = v.source
            if k in _VERSION_KEYS and isinstance(v, str) and _VERSION_TEXT.fullmatch(v):
                longest = max(len(part) for part in v.split("."))
                if longest > MAX_VERSION_DIGITS:
                    raise _BadValue(
                        path + (k,),
                        f"a version component of {longest:,} digits, more than the limit of {MAX_VERSION_DIGITS}",
                    )
            out[k] = _fix_versions(v, path + (k,))
        return out
    if isinstance(data, list):
        return [_fix_versions(v, path + (i,)) for i, v in enumerate(data)]
    return data


def _yaml_error(e: yaml.YAMLError, source: str, text: str) -> ScenarioError:
    mark = getattr(e, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "document"
    if isinstance(e, yaml.reader.ReaderError):  # a control character: it has a position, not a mark
        before = text[: e.position]
        where = f"line {before.count(chr(10)) + 1}, column {e.position - before.rfind(chr(10))}"
        return ScenarioError(source, where, f"not valid YAML: control character U+{e.character:04X} is not allowed")
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    if "constructor for the tag" in problem:
        problem += " (only plain YAML is read: no tags that build objects)"
    return ScenarioError(source, where, f"not valid YAML: {problem}")


def load_scenario_text(text: str | bytes, source: str = "<string>", *, folder: str | Path | None = None) -> Scenario:
    """Parse and validate a scenario document. Raises :class:`ScenarioError`.

    ``folder``: where a file the scenario names (``database.sql.schema: x.sql``) is read from;
    :func:`load_scenario` passes the scenario file's folder. Without it such a name is refused."""
    if isinstance(text, bytes):
        if len(text) > MAX_BYTES:
            raise ScenarioError(source, "document", f"{len(text)} bytes, more than the limit of {MAX_BYTES}")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ScenarioError(source, f"byte {e.start}", "not valid UTF-8 text") from None
    if len(text) > MAX_BYTES:
        raise ScenarioError(source, "document", f"{len(text)} characters, more than the limit of {MAX_BYTES}")
    try:
        loader = _Loader(text)  # the reader refuses control characters here, before any parsing
    except yaml.YAMLError as e:
        raise _yaml_error(e, source, text) from None
    try:
        try:
            root = loader.get_single_node()
        except yaml.YAMLError as e:
            raise _yaml_error(e, source, text) from None
        except _TooDeep as e:
            raise ScenarioError(
                source, f"line {e.mark.line + 1}, column {e.mark.column + 1}", f"nested deeper than {MAX_DEPTH} levels"
            ) from None
        if root is None:
            raise ScenarioError(
                source,
                "document",
                "empty: expected a mapping with name, database, releases, engines, workload, invariants",
            )
        _check_shape(root, source)
        try:
            data = loader.construct_document(root)
        except yaml.YAMLError as e:
            raise _yaml_error(e, source, text) from None
        except (RecursionError, ValueError, OverflowError) as e:  # e.g. !!timestamp 2001-13-45
            raise ScenarioError(source, "document", f"not valid YAML: {short(str(e))}") from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ScenarioError(source, "document", f"expected a mapping at the top level, got {type(data).__name__}")
    if any(not isinstance(k, str) for k in data):
        raise ScenarioError(source, "document", "every top-level key must be a string")
    try:
        data = _fix_versions(data)
    except _BadValue as e:
        line = _line_of(root, e.loc)
        raise ScenarioError(source, path(e.loc) + (f" (line {line})" if line else ""), e.message) from None
    if "patterns" in data:  # the founding thread's patterns (their module loads only when used)
        from simroll.scenario.patterns import expand_patterns

        data = expand_patterns(data, source, lambda loc: _line_of(root, loc))
    try:
        # strict: a boolean is no count (count: yes is not 1 engine), bytes (!!binary) are no name
        scenario = Scenario.model_validate(data, strict=True)
    except ValidationError as e:
        err = _first_error(e.errors(include_url=False))
        loc = tuple(p for p in err["loc"] if not is_tag(p, STEP_TAGS))
        line = _line_of(root, loc)
        where = path(loc) + (f" (line {line})" if line else "")
        raise ScenarioError(source, where, _message(err, loc)) from None
    except RecursionError:
        raise ScenarioError(source, "document", "nested too deeply") from None
    _check_references(scenario, source, root)
    db = scenario.database
    # the SQL keys: a schema file read from ``folder``, SQLite's statements checked (docs/sql.md)
    base = None if folder is None else Path(folder)
    sql = check_sql(db, {n: r.sql for n, r in scenario.releases.items()}, source, base)
    if sql is not db.sql:
        scenario = scenario.model_copy(update={"database": db.model_copy(update={"sql": sql})})
    return scenario


def load_scenario(path: str | Path) -> Scenario:
    """Load and validate a scenario file. Raises :class:`ScenarioError`."""
    p = Path(path)
    try:
        raw = read_input(p, MAX_BYTES)
    except ValueError as e:
        where = "document" if "limit" in str(e) else "file"
        raise ScenarioError(str(p), where, f"{e}, expected a scenario file" if where == "file" else str(e)) from None
    except IsADirectoryError:
        raise ScenarioError(str(p), "file", "is a directory, expected a scenario file") from None
    except OSError as e:
        raise ScenarioError(str(p), "file", f"cannot read: {e.strerror or e}") from None
    return load_scenario_text(raw, str(p), folder=p.parent)


def _check_references(s: Scenario, source: str, root: yaml.Node) -> None:
    """Names that must refer to something defined elsewhere in the file."""

    def fail(loc: tuple[Any, ...], message: str) -> typing.NoReturn:
        line = _line_of(root, loc)
        raise ScenarioError(source, path(loc) + (f" (line {line})" if line else ""), message)

    def choices(names: typing.Iterable[str]) -> str:
        names = list(names)
        return ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")

    releases = list(s.releases)
    engine_order = [e.name for e in s.engine_list()]
    engines = dict.fromkeys(engine_order)  # ordered for messages, a hash lookup for 10,000 engines x steps
    if len(engines) != len(engine_order):
        dup = next(n for n, k in Counter(engine_order).items() if k > 1)
        fail(("engines",), f"engine {dup!r} is defined twice")
    if len(s.plan) > 10_000:  # the limit is higher; its module (the patterns) loads only for a plan this long
        from simroll.scenario.patterns import MAX_STEPS

        if len(s.plan) > MAX_STEPS:
            fail(("plan",), f"{len(s.plan):,} plan steps, more than the limit of {MAX_STEPS:,}")
    if isinstance(s.engines, list):
        for i, e in enumerate(s.engines):
            if e.release not in s.releases:
                fail(("engines", i, "release"), f"undefined release {e.release!r} (defined: {choices(releases)})")
    elif s.engines.release not in s.releases:
        fail(("engines", "release"), f"undefined release {s.engines.release!r} (defined: {choices(releases)})")
    service_of = _check_services(s, fail, choices)
    _check_added(s, engines, service_of, fail, choices)  # engines added by the plan count as defined from here

    # every table and column a release, trigger or step names must exist at the start or be expanded
    known_cols = {f"{t}.{c}" for t, cols in s.database.tables.items() for c in cols} | set(s.database.absent)
    known_tables = set(s.database.tables) | {loc.split(".")[0] for loc in s.database.absent}
    for _i, step in enumerate(s.plan):
        for item in step.expand if isinstance(step, ExpandStep) else []:
            if "." in item:
                known_cols.add(item)
                known_tables.add(item.split(".")[0])
            else:
                known_tables.add(item)

    def check_loc(loc: str, where: tuple[Any, ...]) -> None:
        if loc not in known_cols:
            fail(
                where,
                f"column {loc!r} is neither in database.tables nor added by an expand step "
                f"(known: {choices(sorted(known_cols))})",
            )

    fields: set[str] = set()
    methods: set[str] = set()
    for rn, rel in s.releases.items():
        for fn, acc in rel.data.items():
            fields.add(fn)
            if acc.read:
                check_loc(acc.read, ("releases", rn, "data", fn, "read"))
            for j, loc in enumerate(acc.write):
                check_loc(loc, ("releases", rn, "data", fn, "write", j))
        for opt, o in rel.config.items():  # what each config value changes: its own read/write locations
            for val, v in o.values.items():
                for fn, acc in v.data.items():
                    at = ("releases", rn, "config", opt, "values", val, "data", fn)
                    fields.add(fn)
                    if acc.read:
                        check_loc(acc.read, (*at, "read"))
                    for j, loc in enumerate(acc.write):
                        check_loc(loc, (*at, "write", j))
        for ep in rel.rpc.endpoints:
            methods.update(ep.methods)
        methods.update(rel.rpc.sends)
    for j, t in enumerate(s.database.triggers):
        check_loc(t.from_, ("database", "triggers", j, "from"))
        check_loc(t.to, ("database", "triggers", j, "to"))
    for fn, locs in s.database.initial.items():
        if fn not in fields:
            fail(("database", "initial", fn), f"undefined field {fn!r} (fields: {choices(sorted(fields))})")
        for j, loc in enumerate(locs):
            check_loc(loc, ("database", "initial", fn, j))
    for fn, loc in s.database.canonical.items():
        if fn not in fields:
            fail(("database", "canonical", fn), f"undefined field {fn!r} (fields: {choices(sorted(fields))})")
        check_loc(loc, ("database", "canonical", fn))
    for fn, locs in s.database.initial.items():
        for j, loc in enumerate(locs):
            check_loc(loc, ("database", "initial", fn, j))

    wl = s.workload
    if wl.client is not None and wl.client not in s.releases:
        fail(("workload", "client"), f"undefined release {wl.client!r} (defined: {choices(releases)})")
    for m in wl.operations:
        if s.route(wl.service or s.default_service(), m)[1] not in methods:
            fail(
                ("workload", "operations", m),
                f"method {m!r} is not defined by any release (defined: {choices(sorted(methods))})",
            )
    handler_sets: list[tuple[tuple[Any, ...], dict[str, HandlerSpec]]] = [(("workload", "handlers"), wl.handlers)]
    handler_sets += [(("releases", rn, "handlers"), r.handlers) for rn, r in s.releases.items() if r.handlers]
    for where, handlers in handler_sets:
        for hn, h in handlers.items():
            if hn not in methods:
                fail(
                    (*where, hn),
                    f"method {hn!r} is not defined by any release (defined: {choices(sorted(methods))})",
                )
            for key, names in (("read", h.read), ("write", h.write), ("sync", h.sync)):
                for j, fn in enumerate(names):
                    if fn not in fields:
                        fail(
                            (*where, hn, key, j),
                            f"field {fn!r} is not in any release's data (fields: {choices(sorted(fields))})",
                        )
            for m in list(h.cast) + list(h.fanout):
                if s.route("", m)[1] not in methods:
                    fail(
                        (*where, hn, "cast" if m in h.cast else "fanout", m),
                        f"method {m!r} is not defined by any release (defined: {choices(sorted(methods))})",
                    )
    for rn, r in s.releases.items():  # start-up actions (issue 20)
        if r.on_start is None:
            continue
        writes = sorted(f for f, acc in r.data.items() if acc.write)
        kept = sorted(f for f, acc in r.data.items() if acc.local and acc.read)
        for j, fn in enumerate(r.on_start.sync):
            if fn not in kept:
                fail(
                    ("releases", rn, "on_start", "sync", j),
                    f"field {fn!r} is not one release {rn!r} keeps a local copy of "
                    f"(local: true, with read; it keeps: {choices(kept) or 'none'})",
                )
        for j, fn in enumerate(r.on_start.write):
            if fn not in writes:
                fail(
                    ("releases", rn, "on_start", "write", j),
                    f"field {fn!r} is not one release {rn!r} writes (it writes: {choices(writes) or 'nothing'})",
                )
        for key, ms in (("cast", list(r.on_start.cast)), ("call", r.on_start.call)):
            for m in ms:
                if s.route("", m)[1] not in methods:
                    fail(
                        ("releases", rn, "on_start", key, m),
                        f"method {m!r} is not defined by any release (defined: {choices(sorted(methods))})",
                    )
    for i, step in enumerate(s.plan):  # issue 20: the target-comparing guard is the location model's for now
        if (
            isinstance(step, BackfillStep)
            and step.backfill.guard == "if-unchanged-both"
            and s.database.backend != "location"
        ):
            fail(
                ("plan", i, "backfill", "guard"),
                f"guard 'if-unchanged-both' runs on the location backend only, not on {s.database.backend!r} "
                "(use 'if-unchanged' or 'if-empty' there)",
            )

    for i, step in enumerate(s.plan):
        a = step.action
        target = getattr(step, a) if a in ("restart", "stop", "kill", "start", "remove") else None
        if target is not None and target not in engines:
            fail(("plan", i, a), f"undefined engine {target!r} (defined: {choices(engines)})")
        if step.release is not None and step.release not in s.releases:
            fail(("plan", i, "release"), f"undefined release {step.release!r} (defined: {choices(releases)})")
        if step.release is not None and target is not None:
            history = s.service_map()[service_of[target]].releases
            if history is not None and step.release not in history:
                fail(
                    ("plan", i, "release"),
                    f"release {step.release!r} is not in the history of service {service_of[target]!r}, "
                    f"which {target} belongs to (releases: {choices(history)})",
                )
        if isinstance(step, (SetVhostStep, DrainStep)):
            vhost = step.set_vhost if isinstance(step, SetVhostStep) else step.drain
            used = dict.fromkeys([wl.vhost, *(r.vhost for r in s.releases.values())])
            if vhost not in used:
                fail(
                    ("plan", i, a),
                    f"vhost {vhost!r} is used by no release and not by the clients (vhosts: {choices(used)})",
                )
        if isinstance(step, WaitUntilStep):
            _check_wait_until(s, step, ("plan", i, "wait_until"), engines, fail, choices)
        if isinstance(step, (SetConfigStep, SighupStep)):
            _check_config_step(s, step, i, engines, fail, choices)
        if isinstance(step, SetClientStep) and step.set_client not in s.releases:
            fail(("plan", i, "set_client"), f"undefined release {step.set_client!r} (defined: {choices(releases)})")
        if isinstance(step, BackfillStep):
            check_loc(step.backfill.from_, ("plan", i, "backfill", "from"))
            check_loc(step.backfill.to, ("plan", i, "backfill", "to"))
        if isinstance(step, (EnableTriggerStep, DisableTriggerStep)):
            t = step.enable_trigger if isinstance(step, EnableTriggerStep) else step.disable_trigger
            check_loc(t.from_, ("plan", i, a, "from"))
            check_loc(t.to, ("plan", i, a, "to"))
        if isinstance(step, ContractStep):
            for j, item in enumerate(step.contract):
                if item not in known_cols and item not in known_tables:
                    fail(("plan", i, "contract", j), f"{item!r} is not a known table or column")
    for i, f in enumerate(s.faults):
        if f.kill == "backfill" and f.kill in engines:  # issue 20: 'backfill' names the backfill utility
            fail(("faults", i, "kill"), "'backfill' names both an engine and the backfill utility: rename the engine")
        if f.kill != "backfill" and f.kill not in engines:
            fail(("faults", i, "kill"), f"undefined engine {f.kill!r} (defined: {choices(engines)}, or 'backfill')")
        if f.at_row is not None and f.at_row >= s.database.rows:
            fail(("faults", i, "at_row"), f"row {f.at_row} does not exist (the database has {s.database.rows} rows)")
        if f.at_step is not None and f.at_step >= len(s.plan):
            fail(("faults", i, "at_step"), f"step {f.at_step} does not exist (the plan has {len(s.plan)} steps)")
    if s.search is not None and isinstance(s.search.kill_instead_of_stop, list):
        for j, idx in enumerate(s.search.kill_instead_of_stop):
            if not 0 <= idx < len(s.plan):
                fail(
                    ("search", "kill_instead_of_stop", j),
                    f"step {idx} does not exist (the plan has {len(s.plan)} steps)",
                )
    if s.search is not None:
        claimed: dict[int, int] = {}  # step -> the reorder group that has it (groups permute apart)
        for i, group in enumerate(s.search.reorder):
            for j, idx in enumerate(group):
                if not 0 <= idx < len(s.plan):
                    fail(("search", "reorder", i, j), f"step {idx} does not exist (the plan has {len(s.plan)} steps)")
                elif idx in claimed:
                    owner = "earlier in this group" if claimed[idx] == i else f"in group {claimed[idx]}"
                    fail(
                        ("search", "reorder", i, j),
                        f"step {idx} is already {owner}: reorder groups must not overlap "
                        "(merge them into one group to let their steps trade places)",
                    )
                claimed.setdefault(idx, i)
        for j, victim in enumerate(s.search.kill_engines):
            if victim not in engines:
                fail(("search", "kill_engines", j), f"undefined engine {victim!r} (defined: {choices(engines)})")
        if isinstance(s.search.kill_instead_of_stop, list):
            for j, idx in enumerate(s.search.kill_instead_of_stop):
                if not 0 <= idx < len(s.plan):
                    fail(
                        ("search", "kill_instead_of_stop", j),
                        f"step {idx} does not exist (the plan has {len(s.plan)} steps)",
                    )
    if s.expect is not None and s.expect != "holds":
        inv = s.expect.split(" ", 1)[1]
        enabled = list(s.invariants.enabled())
        if inv not in enabled:
            fail(("expect",), f"{inv!r} is not among the invariants checked (checked: {choices(enabled)})")
    if not s.invariants.enabled():
        fail(
            ("invariants",),
            "no invariant is checked: list at least one of "
            "no-lost-write, no-stranded-message, no-incompatible-delivery, bounded-imbalance, "
            "schema-compatible, version-skew",
        )

    # sizes a run can afford: refused here, with the numbers, rather than a run that never ends
    # or exhausts memory (the run limits, limits.max_time and max_events, bound the rest)
    wl = s.workload
    ops = wl.rate * (wl.stop - wl.start)
    if ops > MAX_OPERATIONS:
        fail(
            ("workload", "rate"),
            f"rate {wl.rate:g}/s from {wl.start:g} s to {wl.stop:g} s is about {ops:,.0f} "
            f"client operations, more than the limit of {MAX_OPERATIONS:,}; lower rate or stop",
        )
    cells = s.database.rows * len(known_cols)
    if cells > MAX_CELLS:
        fail(
            ("database", "rows"),
            f"{s.database.rows} rows x {len(known_cols)} columns is {cells:,} cells, more than "
            f"the limit of {MAX_CELLS:,}",
        )
    for where, handlers in handler_sets:
        for hn, h in handlers.items():
            sends = sum(h.cast.values()) + len(h.fanout) * len(engines)
            if sends > MAX_SENDS:
                fail(
                    (*where, hn),
                    f"handling one {hn} sends {sends:,} messages (casts, plus fanout to "
                    f"{len(engines)} engines), more than the limit of {MAX_SENDS:,}",
                )


def _check_added(
    s: Scenario,
    engines: dict[str, None],
    service_of: dict[str, str],
    fail: typing.Callable[..., typing.NoReturn],
    choices: typing.Callable[..., str],
) -> None:
    """The plan's ``add`` steps: new names, a defined service whose history has the release. Adds
    each engine to ``engines`` and ``service_of``."""
    services = s.service_map()
    total = 0
    for i, step in enumerate(s.plan):
        if not isinstance(step, AddStep):
            continue
        svc = step.service or s.default_service()
        if svc not in services:
            fail(("plan", i, "service"), f"undefined service {svc!r} (defined: {choices(services)})")
        if step.release not in s.releases:
            fail(("plan", i, "release"), f"undefined release {step.release!r} (defined: {choices(s.releases)})")
        history = services[svc].releases
        if history is not None and step.release not in history:
            fail(
                ("plan", i, "release"),
                f"release {step.release!r} is not in the history of service {svc!r} (releases: {choices(history)})",
            )
        total += step.count or 1
        if total > MAX_ADDED:
            fail(("plan", i, "count"), f"the plan adds more than {MAX_ADDED:,} engines")
        for name in step.names():
            if name in engines:
                fail(("plan", i, "add"), f"engine {name!r} is already defined (engines are added once, by a new name)")
            engines[name] = None
            service_of[name] = svc


def _check_config_step(
    s: Scenario,
    step: SetConfigStep | SighupStep,
    i: int,
    engines: dict[str, None],
    fail: typing.Callable[..., typing.NoReturn],
    choices: typing.Callable[..., str],
) -> None:
    """A ``set_config`` names options some release declares, with one of their values, and engines
    that are defined; a ``sighup`` names defined engines."""
    names = step.engines if isinstance(step, SetConfigStep) else step.sighup
    for j, e in enumerate(names if isinstance(names, list) else []):
        if e not in engines:
            key = "engines" if isinstance(step, SetConfigStep) else "sighup"
            fail(("plan", i, key, j), f"undefined engine {e!r} (defined: {choices(engines)})")
    if not isinstance(step, SetConfigStep):
        return
    for opt, val in step.set_config.items():
        declared = [r.config[opt] for r in s.releases.values() if opt in r.config]
        if not declared:
            options = sorted({o for r in s.releases.values() for o in r.config})
            fail(
                ("plan", i, "set_config", opt),
                f"no release declares config option {opt!r} (options: {choices(options) or 'none'})",
            )
        values = list(dict.fromkeys(v for o in declared for v in o.values))
        if val not in values:
            fail(("plan", i, "set_config", opt), f"{val!r} is not a value of {opt!r} (values: {choices(values)})")


def _check_wait_until(
    s: Scenario,
    step: WaitUntilStep,
    where: tuple[Any, ...],
    engines: dict[str, None],
    fail: typing.Callable[..., typing.NoReturn],
    choices: typing.Callable[..., str],
) -> None:
    """The names a ``wait_until`` step waits on: a topic, an engine, a release."""
    c = step.wait_until
    topics = list(dict.fromkeys(s.topic_of(svc) for svc in s.service_map()))
    if c.queue_empty is not None and c.queue_empty not in topics:
        fail((*where, "queue_empty"), f"undefined topic {c.queue_empty!r} (topics: {choices(topics)})")
    if c.idle is not None and c.idle not in engines:
        fail((*where, "idle"), f"undefined engine {c.idle!r} (defined: {choices(engines)})")
    if c.all_on is not None and c.all_on not in s.releases:
        fail((*where, "all_on"), f"undefined release {c.all_on!r} (defined: {choices(s.releases)})")


def _check_services(
    s: Scenario, fail: typing.Callable[..., typing.NoReturn], choices: typing.Callable[..., str]
) -> dict[str, str]:
    """The services: defined where named, one topic each, engines on releases of their history.
    Returns engine -> its service."""
    services = s.service_map()
    names = list(services)
    if s.services and "topic" in s.bus.model_fields_set:
        fail(
            ("bus", "topic"),
            "with 'services', each service names its own topic (services.NAME.topic); "
            "bus.topic names the one implicit service of a scenario without them",
        )
    topics: dict[str, str] = {}
    for name, svc in s.services.items():
        topic = svc.topic or name
        if topic in topics:
            fail(
                ("services", name, "topic"),
                f"topic {topic!r} is also the topic of service {topics[topic]!r}: each service has its own",
            )
        topics[topic] = name
        for j, rel in enumerate(svc.releases or []):
            if rel not in s.releases:
                fail(("services", name, "releases", j), f"undefined release {rel!r} (defined: {choices(s.releases)})")
    service_of: dict[str, str] = {}
    where: list[tuple[Any, ...]] = (
        [("engines", i) for i in range(len(s.engines))] if isinstance(s.engines, list) else []
    )
    for k, e in enumerate(s.engine_list()):
        at = where[k] if where else ("engines",)
        svc_name = e.service or names[0]
        if svc_name not in services:
            fail((*at, "service"), f"undefined service {svc_name!r} (defined: {choices(names)})")
        history = services[svc_name].releases
        if history is not None and e.release not in history:
            fail(
                (*at, "release"),
                f"release {e.release!r} is not in the history of service {svc_name!r} (releases: {choices(history)})",
            )
        service_of[e.name] = svc_name
    if s.workload.service is not None and s.workload.service not in services:
        fail(("workload", "service"), f"undefined service {s.workload.service!r} (defined: {choices(names)})")
    return service_of


def scenario_json_schema() -> dict[str, Any]:
    """The JSON Schema of scenario files (what ``simroll schema`` prints)."""
    schema = Scenario.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "simroll scenario"
    from simroll.scenario.patterns import add_patterns_schema

    add_patterns_schema(schema)
    return schema


def dump_scenario(s: Scenario) -> str:
    """A scenario as YAML text that :func:`load_scenario_text` reads back to an equal scenario."""
    data = s.model_dump(by_alias=True, exclude_defaults=True, mode="json")
    return yaml.safe_dump(json.loads(json.dumps(data)), sort_keys=False, default_flow_style=None, width=100)


__all__ = ["load_scenario", "load_scenario_text", "scenario_json_schema", "dump_scenario", "STEP_ACTIONS"]
