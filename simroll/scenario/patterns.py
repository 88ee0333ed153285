"""The founding thread's upgrade patterns, as building blocks of a scenario file.

A scenario may have a top-level ``patterns:`` list. Each entry names a pattern
and a few parameters, and stands for the releases, schema steps, plan steps and
RPC definitions the thread describes::

    patterns:
      - {pattern: move-field, field: resource_props, to: resource_properties_data.data}
      - {pattern: version-cap, release: new, cap: auto}

:func:`expand_patterns` turns the entries into plain scenario data before the
scenario is validated (the loader calls it), so everything downstream sees an
ordinary scenario; ``simroll expand FILE`` prints the result. Patterns apply in
order: a later one may build on releases an earlier one made (``version-cap``
on the release ``new-arg-default`` made). New releases derive from ``base``
(default: the release the engines start on); plan steps are appended after the
file's own ``plan``, each ``after`` seconds after the one before; ``plan: false``
adds the releases only.

Errors name the place in the file, like every loader error:
``FILE: patterns[1].field (line 12): release 'legacy' has no field 'x' ...``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from simroll.errors import ScenarioError
from simroll.scenario._messages import is_tag, path, show
from simroll.scenario.spec import (
    AccessSpec,
    DatabaseSpec,
    EndpointSpec,
    EngineGroupSpec,
    EngineSpec,
    HandlerSpec,
    Location,
    Name,
    ParamStr,
    ReleaseSpec,
    Seconds,
    SendRuleSpec,
    VersionStr,
    WorkloadSpec,
)
from simroll.scenario.versions import VERSION_PATTERN, Version

LineOf = Callable[[tuple[Any, ...]], "int | None"]

# The expanded scenario is bounded, not just the file: 40 patterns over 10,000 engines would be
# 400,000 restart steps from a 4 KB file. Each limit is checked before the expansion that would
# pass it, so the work done before refusing is bounded by one pattern's share.
MAX_PATTERNS = 100  # entries of the patterns list (the bundled scenarios use one or two)
MAX_STEPS = 100_000  # plan steps once patterns are expanded (a rolling restart of 10,000 engines is 10,000)


class _Params(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    base: Name | None = Field(None, description="Release the new releases derive from; default: the engines' release.")
    plan: bool = Field(True, description="Append the pattern's plan steps (false: only add its releases).")
    after: Seconds = Field(10.0, description="Seconds before each plan step the pattern adds.")

    if TYPE_CHECKING:  # each pattern declares it as a Literal field; the base only names it for mypy
        pattern: str


class BackfillParams(BaseModel):
    """How the pattern's data-migration utility runs (see the backfill step)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    rate: Annotated[float, Field(gt=0, le=1e7, allow_inf_nan=False)] = 20.0
    gap: Seconds = 0.0
    max_gap: Seconds = 0.0
    # a compare-and-set (UPDATE ... WHERE from = :value_read): it repairs rows a legacy engine wrote after
    # a +1 engine had filled the new location ('if-empty' keeps those stale), and it cannot lose a race
    # with a concurrent write between its read and its write ('none' can, once that gap is not zero)
    guard: Literal["none", "if-empty", "if-unchanged"] = "if-unchanged"


class _Moves(_Params):
    """A logical field that moves (or is copied) from one location to another."""

    field: Name = Field(description="The logical field (a key of the base release's data).")
    from_: Location | None = Field(None, alias="from", description="Where it lives now; default: where base reads it.")
    to: Location = Field(description="The new location (table.column); expanded first if it does not exist.")
    backfill: BackfillParams | None = Field(
        default_factory=BackfillParams, description="The migration utility's settings; null: no backfill step."
    )


class MoveField(_Moves):
    """Move data in three releases: +1 writes both, reads old; +2 writes both, reads new (after a
    backfill); +3 writes and reads new only; then the old location is contracted."""

    pattern: Literal["move-field"]
    names: Annotated[list[Name], Field(min_length=3, max_length=3)] = ["plus1", "plus2", "plus3"]
    contract: bool = Field(True, description="Drop the old location after the last restart.")


class AddColumn(_Moves):
    """Add a column in two releases (+1 writes it but reads the old place; +2 reads it too), or
    straight to +2 in one release (the thread's a/b/c ordering)."""

    pattern: Literal["add-column"]
    releases: Literal[1, 2] = 2
    names: list[Name] | None = Field(None, description="Default: [plus1, plus2], or [new] with releases: 1.")


class TriggerSync(_Moves):
    """Keep two locations in sync with database triggers enabled for the upgrade window only."""

    pattern: Literal["trigger-sync"]
    name: Name = "new"
    reverse: bool = Field(True, description="Also copy new writes back to the old location (legacy readers).")
    contract: bool = True


class ConfigSwitch(_Moves):
    """One new release that writes both locations and reads where its config option ``read_from``
    says (``old``, the default, or ``new``); the operator flips it (``set_config``) after a full rolling
    restart and the backfill, and a second rolling restart applies it; a later release writes new only."""

    pattern: Literal["config-switch"]
    name: Name = "new"
    final: Name | None = Field("plus2", description="Release that writes the new location only; null: none.")
    contract: bool = True


class FutureArgs(_Params):
    """Every method takes a ``future_args`` dict; +1 accepts the new argument (default None) but
    sends its value inside future_args; +2 sends it in its own place."""

    pattern: Literal["future-args"]
    method: Name
    arg: Name
    carrier: Name = "future_args"
    names: Annotated[list[Name], Field(min_length=2, max_length=2)] = ["plus1", "plus2"]


class NewArgDefault(_Params):
    """A new argument with a default, and a minor bump of the endpoint that has the method."""

    pattern: Literal["new-arg-default"]
    method: Name
    arg: Name
    name: Name = "new"
    version: VersionStr | None = Field(None, description="Default: one minor above the endpoint's.")


class NewMethod(_Params):
    """A new method in a minor version, cast by the handler of an existing method."""

    pattern: Literal["new-method"]
    method: Name
    params: list[ParamStr] = []
    caller: Name = Field(description="Existing method whose handler casts the new one.")
    count: int = Field(1, ge=1, le=1000, description="Casts of the new method per call of the caller.")
    handler: HandlerSpec = Field(default_factory=HandlerSpec, description="What handling the new method does.")
    name: Name = "new"
    version: VersionStr | None = None


class MajorBump(_Params):
    """A new major version; with ``dual`` the new release also keeps listening for the old major."""

    pattern: Literal["major-bump"]
    name: Name = "new"
    version: VersionStr | None = Field(None, description="Default: the next major, e.g. 2.0.")
    dual: bool = True
    methods: dict[Name, list[ParamStr]] = Field(
        default_factory=dict, description="Methods whose parameters change in the new major."
    )
    upgrade_client: bool = Field(True, description="Upgrade the client (heat-api) last: a set_client step.")


class VersionCap(_Params):
    """Pin what a release sends: a fixed cap or ``auto`` (lowest version any running engine
    implements), with backports to an older release's signatures, and the unpin step at the end."""

    pattern: Literal["version-cap"]
    release: Name | None = Field(None, description="Release to cap; default: the last release defined.")
    cap: VersionStr | Literal["auto"] = "auto"
    backport_to: Name | None = Field(
        None, description="Release whose versions and arguments the backports use; default: the engines' release."
    )
    backport: bool = True


PATTERNS: dict[str, type[_Params]] = {
    "move-field": MoveField,
    "add-column": AddColumn,
    "trigger-sync": TriggerSync,
    "config-switch": ConfigSwitch,
    "future-args": FutureArgs,
    "new-arg-default": NewArgDefault,
    "new-method": NewMethod,
    "major-bump": MajorBump,
    "version-cap": VersionCap,
}


class _Invalid(Exception):
    """Something outside the pattern entry is invalid; the scenario's own validation will say where."""


class _Context:
    """The scenario data being expanded, and where to report errors."""

    def __init__(self, data: dict[str, Any], source: str, line_of: LineOf | None):
        self.data = data
        self.source = source
        self.line_of = line_of
        self.index = 0
        self._engines: list[EngineSpec] | None = None  # patterns never change the engines: validated once

    # ---------------------------------------------------------- errors
    def fail(self, where: tuple[Any, ...], message: str) -> ScenarioError:
        loc = ("patterns", self.index) + where
        return _error(self.source, loc, message, self.line_of)

    # ---------------------------------------------------------- reading the scenario
    def _releases(self) -> dict[str, Any]:
        rels = self.data.get("releases")
        if not isinstance(rels, dict):
            raise _Invalid
        return rels

    def release(self, name: str, where: tuple[Any, ...]) -> ReleaseSpec:
        rels = self._releases()
        if name not in rels:
            raise self.fail(where, f"undefined release {name!r} (defined: {', '.join(map(str, rels))})")
        try:
            return ReleaseSpec.model_validate(rels[name], strict=True)
        except ValidationError:
            raise _Invalid from None

    def last_release(self) -> str | None:
        rels = self._releases()
        return next(reversed(rels), None)

    def engines(self) -> list[EngineSpec]:
        if self._engines is not None:
            return self._engines
        try:
            raw = TypeAdapter(list[EngineSpec] | EngineGroupSpec).validate_python(self.data.get("engines"), strict=True)
        except ValidationError:
            raise _Invalid from None
        if isinstance(raw, EngineGroupSpec):
            raw = [EngineSpec(name=f"{raw.prefix}{i + 1}", release=raw.release) for i in range(raw.count)]
        if not raw:
            raise _Invalid
        self._engines = raw
        return raw

    def initial_release(self) -> str:
        return self.engines()[0].release

    def base(self, p: _Params) -> tuple[str, ReleaseSpec]:
        name = p.base or self.initial_release()
        return name, self.release(name, ("base",))

    def columns(self) -> set[str]:
        """Columns that exist at the start or that a plan step (the file's or a pattern's) expands."""
        try:
            db = DatabaseSpec.model_validate(self.data.get("database"), strict=True)
        except ValidationError:
            raise _Invalid from None
        cols = {f"{t}.{c}" for t, cs in db.tables.items() for c in cs}
        plan = self.data.get("plan")
        for step in plan if isinstance(plan, list) else []:
            if isinstance(step, dict) and isinstance(step.get("expand"), list):
                cols.update(x for x in step["expand"] if isinstance(x, str))
        return cols

    def workload(self) -> WorkloadSpec:
        try:
            return WorkloadSpec.model_validate(self.data.get("workload"), strict=True)
        except ValidationError:
            raise _Invalid from None

    # ---------------------------------------------------------- writing it
    def add_release(self, name: str, spec: ReleaseSpec, where: tuple[Any, ...]) -> None:
        rels = self._releases()
        if name in rels:
            raise self.fail(where, f"release {name!r} is already defined; name the pattern's releases otherwise")
        rels[name] = _dump(spec)

    def replace_release(self, name: str, spec: ReleaseSpec) -> None:
        self._releases()[name] = _dump(spec)

    def add_steps(self, p: _Params, steps: list[dict[str, Any]]) -> None:
        if not p.plan:
            return
        plan = self.data.setdefault("plan", [])
        if not isinstance(plan, list):
            raise _Invalid
        if len(plan) + len(steps) > MAX_STEPS:
            raise self.fail(
                (),
                f"the plan would have {len(plan) + len(steps):,} steps with this pattern "
                f"({len(steps):,} of them its own, for {len(self.engines()):,} engines), more than "
                f"the limit of {MAX_STEPS:,}",
            )
        plan.extend(dict({"after": p.after} if p.after else {}, **s) for s in steps)

    def rolling(self, release: str) -> list[dict[str, Any]]:
        """Restart every engine, in the order they are declared, onto ``release``."""
        return [{"restart": e.name, "release": release} for e in self.engines()]


def _dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(by_alias=True, exclude_defaults=True, mode="json")


def _error(source: str, loc: tuple[Any, ...], message: str, line_of: LineOf | None) -> ScenarioError:
    line = line_of(loc) if line_of is not None else None
    where = path(loc) if loc else ""
    return ScenarioError(source, where + (f" (line {line})" if line else ""), message)


_EXPECTED = {
    VERSION_PATTERN: "a version major.minor, e.g. '1.2'",
    r"^[A-Za-z_]\w*\.[A-Za-z_]\w*$": "a location table.column",
    r"^(\*\*[A-Za-z_]\w*|[A-Za-z_]\w*(\s*=.*)?)$": "a parameter 'name', 'name=default' or '**kwargs'",
}


def _parse(entry: Any, ctx: _Context) -> _Params:
    """Validate one ``patterns`` entry into its parameter model."""
    if not isinstance(entry, dict):
        raise ctx.fail((), f"expected a mapping with 'pattern' and its parameters, got {show(entry)}")
    name = entry.get("pattern")
    if name is None:
        raise ctx.fail((), f"missing required key 'pattern' (one of: {', '.join(PATTERNS)})")
    model = PATTERNS.get(name) if isinstance(name, str) else None
    if model is None:
        raise ctx.fail(("pattern",), f"unknown pattern {show(name)} (expected one of: {', '.join(PATTERNS)})")
    try:
        return model.model_validate(entry, strict=True)  # strict like the scenario: no bool count, no bytes name
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        loc = tuple(p for p in err["loc"] if not is_tag(p))
        kind = err["type"]
        if kind == "missing":
            msg = f"missing required key {show(loc[-1])}"
        elif kind == "extra_forbidden" and len(loc) == 1:
            keys = [f.alias or n for n, f in model.model_fields.items()]
            msg = f"unknown key {show(loc[-1])} for pattern {name} (expected one of: {', '.join(keys)})"
        elif kind == "string_pattern_mismatch":
            what = _EXPECTED.get(err.get("ctx", {}).get("pattern", ""), "a name (letters, digits, _ . -)")
            msg = f"expected {what}, got {show(err.get('input'))}"
        else:
            msg = err["msg"].removeprefix("Value error, ")
            msg = msg[:1].lower() + msg[1:]
            if not isinstance(err.get("input"), (dict, list)):
                msg += f", got {show(err.get('input'))}"
        raise ctx.fail(loc, msg) from None


# ------------------------------------------------------------------ helpers on releases
def _send_version(rel: ReleaseSpec) -> str:
    return rel.rpc.send_version or rel.rpc.endpoints[0].version


def _method_endpoint(rel: ReleaseSpec, method: str) -> int | None:
    """Index of the first endpoint that has ``method``."""
    for i, ep in enumerate(rel.rpc.endpoints):
        if method in ep.methods:
            return i
    return None


def _param_names(params: list[str]) -> list[str]:
    return [p.split("=", 1)[0].strip() for p in params if not p.startswith("**")]


def _insert_param(params: list[str], param: str) -> list[str]:
    """Add ``param`` before any ``**kwargs`` (Python's order)."""
    named = [p for p in params if not p.startswith("**")]
    return named + [param] + [p for p in params if p.startswith("**")]


def _with_endpoint(rel: ReleaseSpec, index: int, ep: EndpointSpec, **rpc: Any) -> ReleaseSpec:
    eps = list(rel.rpc.endpoints)
    eps[index] = ep
    return rel.model_copy(update={"rpc": rel.rpc.model_copy(update=dict(rpc, endpoints=eps))})


def _with_access(rel: ReleaseSpec, field: str, read: str, write: list[str]) -> ReleaseSpec:
    return rel.model_copy(update={"data": dict(rel.data, **{field: AccessSpec(read=read, write=write)})})


def _bumped(ctx: _Context, old: str, version: str | None, major: bool = False) -> str:
    v = Version.parse(old)
    if version is None:
        return f"{v.major + 1}.0" if major else f"{v.major}.{v.minor + 1}"
    new = Version.parse(version)
    if major and new.major <= v.major:
        raise ctx.fail(("version",), f"a major bump needs a major above {v.major}, got {version!r}")
    if not major and (new.major != v.major or new <= v):
        raise ctx.fail(("version",), f"a minor bump of {old} needs {v.major}.x above {old}, got {version!r}")
    return version


def _source(ctx: _Context, p: _Moves, base_name: str, base: ReleaseSpec) -> str:
    """Where the field lives now: ``from``, or where the base release reads it."""
    acc = base.data.get(p.field)
    if acc is None:
        raise ctx.fail(
            ("field",), f"release {base_name!r} has no field {p.field!r} (fields: {', '.join(base.data) or 'none'})"
        )
    src = p.from_ or acc.read
    if src is None:
        raise ctx.fail(("from",), f"release {base_name!r} reads {p.field!r} nowhere: say where it lives with 'from'")
    if src not in acc.write:
        raise ctx.fail(
            ("from",),
            f"release {base_name!r} does not write {p.field!r} to {src!r} "
            f"(it writes: {', '.join(acc.write) or 'nothing'})",
        )
    if p.to == src:
        raise ctx.fail(("to",), f"the new location must differ from the old one ({src!r})")
    return src


def _expand_if_missing(ctx: _Context, loc: str) -> list[dict[str, Any]]:
    return [] if loc in ctx.columns() else [{"expand": [loc]}]


def _backfill(p: _Moves, src: str) -> list[dict[str, Any]]:
    if p.backfill is None:
        return []
    return [{"backfill": dict({"from": src, "to": p.to}, **p.backfill.model_dump())}]


# ------------------------------------------------------------------ the patterns
def _moving(ctx: _Context, p: _Moves) -> tuple[ReleaseSpec, str]:
    """The base release of a data pattern and where the field lives now."""
    base_name, base = ctx.base(p)
    return base, _source(ctx, p, base_name, base)


def _stage(
    ctx: _Context,
    p: _Moves,
    base: ReleaseSpec,
    src: str,
    name: str,
    where: tuple[Any, ...],
    read_new: bool,
    write_old: bool,
) -> list[dict[str, Any]]:
    """Add a release that reads the old or the new location and writes the new one (and the old one
    too, with ``write_old``); return the rolling restart onto it."""
    access = _with_access(base, p.field, p.to if read_new else src, ([src] if write_old else []) + [p.to])
    ctx.add_release(name, access, where)
    return ctx.rolling(name)


def _contract(p: MoveField | TriggerSync | ConfigSwitch, src: str) -> list[dict[str, Any]]:
    return [{"contract": [src]}] if p.contract else []


def _move_field(p: MoveField, ctx: _Context) -> None:
    base, src = _moving(ctx, p)
    n1, n2, n3 = p.names
    ctx.add_steps(
        p,
        _expand_if_missing(ctx, p.to)
        + _stage(ctx, p, base, src, n1, ("names", 0), read_new=False, write_old=True)
        + _backfill(p, src)
        + _stage(ctx, p, base, src, n2, ("names", 1), read_new=True, write_old=True)
        + _stage(ctx, p, base, src, n3, ("names", 2), read_new=True, write_old=False)
        + _contract(p, src),
    )


def _add_column(p: AddColumn, ctx: _Context) -> None:
    base, src = _moving(ctx, p)
    names = p.names or (["plus1", "plus2"] if p.releases == 2 else ["new"])
    if len(names) != p.releases:
        raise ctx.fail(("names",), f"expected {p.releases} release name(s), got {len(names)}")
    steps = _expand_if_missing(ctx, p.to)
    if p.releases == 2:
        steps += (
            _stage(ctx, p, base, src, names[0], ("names", 0), read_new=False, write_old=True)
            + _backfill(p, src)
            + _stage(ctx, p, base, src, names[1], ("names", 1), read_new=True, write_old=True)
        )
    else:  # the migration ships with the release and runs before it
        steps += _backfill(p, src) + _stage(ctx, p, base, src, names[0], ("names", 0), read_new=True, write_old=True)
    ctx.add_steps(p, steps)


def _trigger_sync(p: TriggerSync, ctx: _Context) -> None:
    base, src = _moving(ctx, p)
    triggers = [{"from": src, "to": p.to}] + ([{"from": p.to, "to": src}] if p.reverse else [])
    ctx.add_steps(
        p,
        _expand_if_missing(ctx, p.to)
        + [{"enable_trigger": t} for t in triggers]
        + _backfill(p, src)
        + _stage(ctx, p, base, src, p.name, ("name",), read_new=True, write_old=False)
        + [{"disable_trigger": t} for t in triggers]
        + _contract(p, src),
    )


def _config_switch(p: ConfigSwitch, ctx: _Context) -> None:
    base, src = _moving(ctx, p)
    # one release, writing both; where it reads is its config option read_from (old: its own data), which
    # set_config flips after the backfill and a second rolling restart applies (a restart option)
    spec = _with_access(base, p.field, src, [src, p.to])
    read_new = {"data": {p.field: {"read": p.to, "write": [src, p.to]}}}
    option = {"default": "old", "applies": "restart", "values": {"old": {}, "new": read_new}}
    ctx.add_release(p.name, ReleaseSpec.model_validate({**_dump(spec), "config": {"read_from": option}}), ("name",))
    steps = (
        _expand_if_missing(ctx, p.to)
        + ctx.rolling(p.name)
        + _backfill(p, src)
        + [{"set_config": {"read_from": "new"}}]
        + ctx.rolling(p.name)
    )
    if p.final is not None:
        steps += _stage(ctx, p, base, src, p.final, ("final",), read_new=True, write_old=False) + _contract(p, src)
    ctx.add_steps(p, steps)


def _future_args(p: FutureArgs, ctx: _Context) -> None:
    base_name, base = ctx.base(p)
    at = _method_endpoint(base, p.method)
    if at is None:
        raise ctx.fail(("method",), f"release {base_name!r} has no method {p.method!r}")
    if p.arg in _param_names(base.rpc.endpoints[at].methods[p.method]):
        raise ctx.fail(("arg",), f"method {p.method!r} of release {base_name!r} already takes {p.arg!r}")
    # the legacy release: every method accepts the carrier (and does nothing with it)
    eps = []
    for ep in base.rpc.endpoints:
        methods = {
            m: ps if p.carrier in _param_names(ps) else _insert_param(ps, f"{p.carrier}=None")
            for m, ps in ep.methods.items()
        }
        eps.append(ep.model_copy(update={"methods": methods}))
    base = base.model_copy(update={"rpc": base.rpc.model_copy(update={"endpoints": eps})})
    ctx.replace_release(base_name, base)
    old_args = _param_names(base.rpc.endpoints[at].methods[p.method])
    ep = base.rpc.endpoints[at]
    new_ep = ep.model_copy(
        update={"methods": dict(ep.methods, **{p.method: _insert_param(ep.methods[p.method], f"{p.arg}=None")})}
    )
    sends = {m: r for m, r in base.rpc.sends.items() if m != p.method}
    plus1 = _with_endpoint(
        base, at, new_ep, sends=dict(sends, **{p.method: [SendRuleSpec(version=_send_version(base), args=old_args)]})
    )  # the value rides in the carrier
    plus2 = _with_endpoint(base, at, new_ep, sends=sends)  # the argument in its own place
    ctx.add_release(p.names[0], plus1, ("names", 0))
    ctx.add_release(p.names[1], plus2, ("names", 1))
    ctx.add_steps(p, ctx.rolling(p.names[0]) + ctx.rolling(p.names[1]))


def _minor_bump(
    ctx: _Context, p: NewArgDefault | NewMethod, base: ReleaseSpec, at: int, methods: dict[str, list[str]], method: str
) -> ReleaseSpec:
    """The base release with endpoint ``at`` bumped one minor and given ``methods``; ``method`` is
    sent at the new version, every other method at the version the base sends it (Heat's rpcapi
    stamps each call with the version its signature last changed in)."""
    ep = base.rpc.endpoints[at]
    version = _bumped(ctx, ep.version, p.version)
    sends = {m: r for m, r in base.rpc.sends.items() if m != method}
    sends[method] = [SendRuleSpec(version=version)]
    return _with_endpoint(
        base,
        at,
        ep.model_copy(update={"version": version, "methods": methods}),
        send_version=_send_version(base),
        sends=sends,
    )


def _new_arg_default(p: NewArgDefault, ctx: _Context) -> None:
    base_name, base = ctx.base(p)
    at = _method_endpoint(base, p.method)
    if at is None:
        raise ctx.fail(("method",), f"release {base_name!r} has no method {p.method!r}")
    ep = base.rpc.endpoints[at]
    if p.arg in _param_names(ep.methods[p.method]):
        raise ctx.fail(("arg",), f"method {p.method!r} of release {base_name!r} already takes {p.arg!r}")
    methods = dict(ep.methods, **{p.method: _insert_param(ep.methods[p.method], f"{p.arg}=None")})
    ctx.add_release(p.name, _minor_bump(ctx, p, base, at, methods, p.method), ("name",))
    ctx.add_steps(p, ctx.rolling(p.name))


def _new_method(p: NewMethod, ctx: _Context) -> None:
    base_name, base = ctx.base(p)
    if _method_endpoint(base, p.method) is not None:
        raise ctx.fail(("method",), f"release {base_name!r} already has a method {p.method!r}")
    at = _method_endpoint(base, p.caller)
    if at is None:
        raise ctx.fail(("caller",), f"release {base_name!r} has no method {p.caller!r}")
    ep = base.rpc.endpoints[at]
    ctx.add_release(
        p.name, _minor_bump(ctx, p, base, at, dict(ep.methods, **{p.method: list(p.params)}), p.method), ("name",)
    )
    wl = ctx.workload()
    caller = wl.handlers.get(p.caller, HandlerSpec())
    handlers = dict(
        wl.handlers,
        **{
            p.caller: caller.model_copy(update={"cast": dict(caller.cast, **{p.method: p.count})}),
            p.method: p.handler,
        },
    )
    ctx.data["workload"] = _dump(wl.model_copy(update={"handlers": handlers}))
    ctx.add_steps(p, ctx.rolling(p.name))


def _major_bump(p: MajorBump, ctx: _Context) -> None:
    base_name, base = ctx.base(p)
    default = [ep for ep in base.rpc.endpoints if ep.namespace is None] or list(base.rpc.endpoints[:1])
    version = _bumped(ctx, max((ep.version for ep in default), key=Version.parse), p.version, major=True)
    methods: dict[str, list[str]] = {}
    for ep in default:
        for m, ps in ep.methods.items():
            methods.setdefault(m, ps)
    for m in p.methods:
        if m not in methods:
            raise ctx.fail(("methods", m), f"release {base_name!r} has no method {m!r} (methods: {', '.join(methods)})")
    methods.update(p.methods)
    new_ep = EndpointSpec(version=version, methods=methods)
    others = list(base.rpc.endpoints) if p.dual else [ep for ep in base.rpc.endpoints if ep.namespace is not None]
    rpc = base.rpc.model_copy(update={"endpoints": [new_ep] + others, "send_version": version, "sends": {}})
    ctx.add_release(p.name, base.model_copy(update={"rpc": rpc}), ("name",))
    ctx.add_steps(p, ctx.rolling(p.name) + ([{"set_client": p.name}] if p.upgrade_client else []))


def _version_cap(p: VersionCap, ctx: _Context) -> None:
    name = p.release or ctx.last_release()
    if name is None:
        raise _Invalid
    rel = ctx.release(name, ("release",))
    sends = dict(rel.rpc.sends)
    if p.backport:
        like_name = p.backport_to or ctx.initial_release()
        like = ctx.release(like_name, ("backport_to",))
        for ep in rel.rpc.endpoints:
            for m in ep.methods:
                at = _method_endpoint(like, m)
                if at is None:  # a method the older release lacks cannot be backported: capped, it is not sent
                    continue
                own = sends.get(m) or [SendRuleSpec(version=_send_version(rel))]
                like_rules = like.rpc.sends.get(m)
                old = SendRuleSpec(
                    version=like_rules[0].version if like_rules else _send_version(like),
                    args=_param_names(like.rpc.endpoints[at].methods[m]),
                )
                if all(r.version != old.version for r in own):
                    sends[m] = own + [old]
    rpc = rel.rpc.model_copy(update={"cap": p.cap, "sends": sends})
    ctx.replace_release(name, rel.model_copy(update={"rpc": rpc}))
    # unpin once every engine runs the new release: re-read auto caps (SIGHUP), or raise the fixed pin
    top = max((ep.version for ep in rel.rpc.endpoints if ep.namespace is None), key=Version.parse, default=None)
    ctx.add_steps(p, [{"set_cap": "auto" if p.cap == "auto" else (top or _send_version(rel))}])


_EXPANDERS: dict[str, Callable[[Any, _Context], None]] = {
    "move-field": _move_field,
    "add-column": _add_column,
    "trigger-sync": _trigger_sync,
    "config-switch": _config_switch,
    "future-args": _future_args,
    "new-arg-default": _new_arg_default,
    "new-method": _new_method,
    "major-bump": _major_bump,
    "version-cap": _version_cap,
}


def expand_patterns(data: dict[str, Any], source: str = "<string>", line_of: LineOf | None = None) -> dict[str, Any]:
    """Scenario data with its ``patterns`` list expanded into releases, plan steps and handlers.

    ``data`` is the parsed document (not changed); the result has no ``patterns`` key. Raises
    :class:`ScenarioError` naming ``patterns[i].key`` (and its line, through ``line_of``).
    When something the patterns build on is itself invalid (a release, the engines), the
    patterns are left out so that the scenario's own validation reports that error.
    """
    if "patterns" not in data:
        return data
    raw = data["patterns"]
    out = {k: copy.deepcopy(v) for k, v in data.items() if k != "patterns"}
    if raw is None:
        return out
    if not isinstance(raw, list):
        raise _error(source, ("patterns",), f"expected a list of patterns, got {show(raw)}", line_of)
    if len(raw) > MAX_PATTERNS:
        raise _error(source, ("patterns",), f"{len(raw):,} patterns, more than the limit of {MAX_PATTERNS:,}", line_of)
    ctx = _Context(out, source, line_of)
    for i, entry in enumerate(raw):
        ctx.index = i
        params = _parse(entry, ctx)
        try:
            _EXPANDERS[params.pattern](params, ctx)
        except _Invalid:
            return {k: v for k, v in data.items() if k != "patterns"}
    return out


def patterns_json_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    """The JSON Schema of the ``patterns`` key, and the definitions it refers to."""
    # a type built at run time from PATTERNS: no static type to give it
    entry: Any = Annotated[Union[tuple(PATTERNS.values())], Field(discriminator="pattern")]  # noqa: UP007
    union: Any = Annotated[
        list[entry],
        Field(
            description="Patterns of the founding thread, expanded into releases and plan steps (see `simroll expand`)."
        ),
    ]
    schema = TypeAdapter(union).json_schema(by_alias=True, ref_template="#/$defs/{model}")
    defs = schema.pop("$defs", {})
    return schema, defs


def add_patterns_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the ``patterns`` key to a scenario JSON Schema (in place; returned for chaining)."""
    patterns, defs = patterns_json_schema()
    schema.setdefault("properties", {})["patterns"] = patterns
    schema.setdefault("$defs", {}).update(defs)
    return schema


__all__ = [
    "MAX_PATTERNS",
    "MAX_STEPS",
    "PATTERNS",
    "expand_patterns",
    "patterns_json_schema",
    "add_patterns_schema",
    "BackfillParams",
]
