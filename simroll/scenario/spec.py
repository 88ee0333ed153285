"""The scenario, as typed and frozen objects.

A scenario file is validated once, at the edge (:mod:`simroll.scenario.load`), into a
:class:`Scenario`; everything inside simroll trusts these objects. Field
descriptions double as the documentation of the file format and end up in the
JSON Schema printed by ``simroll schema``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeAlias, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    Tag,
    TypeAdapter,
    model_serializer,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from simroll.scenario.versions import VERSION_PATTERN

VersionStr = Annotated[str, StringConstraints(pattern=VERSION_PATTERN)]
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]*$", max_length=100)]
Location = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_]\w*\.[A-Za-z_]\w*$")]
ParamStr = Annotated[str, StringConstraints(pattern=r"^(\*\*[A-Za-z_]\w*|[A-Za-z_]\w*(\s*=.*)?)$")]
Seconds = Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)]
PositiveSeconds = Annotated[float, Field(gt=0, le=1e9, allow_inf_nan=False)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)


# ---------------------------------------------------------------- releases
class EndpointSpec(_Frozen):
    """One RPC endpoint (an oslo.messaging target with its methods)."""

    version: VersionStr = Field(description="Version this endpoint implements, major.minor.")
    namespace: Name | None = Field(None, description="RPC namespace; none by default.")
    methods: dict[Name, list[ParamStr]] = Field(
        description="Method name -> parameters: 'name' (required), 'name=default', '**kwargs'."
    )


class SendRuleSpec(_Frozen):
    """How a release sends one method: at this version, with these argument names."""

    version: VersionStr
    args: list[Name] | None = Field(
        None, description="Argument names sent; default: the parameters of the release's own method."
    )


class RpcSpec(_Frozen):
    """A release's RPC API."""

    endpoints: list[EndpointSpec] = Field(min_length=1, description="Endpoints, tried in order on dispatch.")
    send_version: VersionStr | None = Field(
        None, description="Version stamped on what this release sends; default: its first endpoint's version."
    )
    sends: dict[Name, list[SendRuleSpec]] = Field(
        default_factory=dict,
        description="Per method, send rules in order of preference; the first the version cap allows is used.",
    )
    cap: VersionStr | Literal["auto"] | None = Field(
        None,
        description="Version cap: a version, 'auto' (lowest version any running engine implements, "
        "computed when the engine starts or on set_cap), or none.",
    )


class AccessSpec(_Frozen):
    """Where a release reads and writes one logical field."""

    read: Location | None = Field(None, description="Location (table.column) read.")
    write: list[Location] = Field(default_factory=list, description="Locations written.")


class ReleaseSpec(_Frozen):
    """One version of the engine software."""

    rpc: RpcSpec
    data: dict[Name, AccessSpec] = Field(default_factory=dict, description="Logical field -> read/write locations.")
    update: Literal["columns", "row"] = Field(
        "columns", description="'columns': write only the columns changed; 'row': rewrite the whole row as read."
    )
    service_time: PositiveSeconds = Field(0.1, description="Seconds an engine spends on one message.")
    workers: int = Field(1, ge=1, le=64, description="Messages an engine handles at once.")


# ---------------------------------------------------------------- cluster
class BusSpec(_Frozen):
    """The message bus."""

    delivery: Literal["oslo", "version-routed"] = Field(
        "oslo",
        description="'oslo': one queue per topic, the receiver checks the version; "
        "'version-routed': a message is only taken by an engine that listens for its version.",
    )
    ack: Literal["before-dispatch", "after-handling", "on-receive", "on-complete"] = Field(
        "before-dispatch",
        description="When an engine acknowledges a message. 'before-dispatch' (oslo.messaging's RPC server; "
        "old name 'on-receive'): a killed engine's in-flight messages are lost; 'after-handling' (old name "
        "'on-complete'): they return to the queue, and count against the prefetch limit while handled.",
    )
    prefetch: int = Field(
        0,
        ge=0,
        le=1_000_000,
        description="Unacknowledged messages a consumer may hold per queue (rabbit_qos_prefetch_count); "
        "0 = unlimited, oslo.messaging's default.",
    )
    topic: Name = "engine"
    call_timeout: PositiveSeconds = Field(60.0, description="A call expires if not consumed within this time.")
    latency: Seconds = Field(0.0, description="Fixed delivery latency of every message.")
    max_delay: Seconds = Field(0.0, description="Upper bound of the extra delay the search may add to a message.")


class DatabaseSpec(_Frozen):
    """The shared database at the start of the run."""

    tables: dict[Name, list[Name]] = Field(description="Table -> columns that exist at the start.")
    rows: int = Field(10, ge=1, le=1_000_000, description="Rows per table (one key space shared by all tables).")
    canonical: dict[Name, Location] = Field(
        default_factory=dict,
        description="Logical field -> a location that must hold its latest value at the end, besides "
        "where the engines running at the end read it.",
    )
    triggers: list[TriggerSpec] = Field(default_factory=list, description="Triggers enabled from the start.")
    initial: dict[Name, list[Location]] = Field(
        default_factory=dict,
        description="Logical field -> the locations that hold its initial values; default: where the first "
        "engine's release writes it.",
    )
    absent: list[Location] = Field(
        default_factory=list,
        description="Columns the releases know that do not exist at the start and that no expand step adds "
        "(a counterexample whose expand step was dropped lists them here).",
    )


class EngineSpec(_Frozen):
    name: Name
    release: Name


class EngineGroupSpec(_Frozen):
    count: int = Field(ge=1, le=10_000)
    release: Name
    prefix: Name = "engine-"


class HandlerSpec(_Frozen):
    """What handling one RPC method does, in logical fields (the same for every release)."""

    read: list[Name] = Field(default_factory=list, description="Fields read when the message is taken.")
    write: list[Name] = Field(default_factory=list, description="Fields written when handling completes.")
    cast: dict[Name, Annotated[int, Field(ge=0, le=1000)]] = Field(
        default_factory=dict, description="Method -> number of casts sent to the topic when handling completes."
    )
    fanout: list[Name] = Field(default_factory=list, description="Methods cast to every engine (fanout).")
    depth: int | None = Field(
        None,
        ge=0,
        le=1000,
        description="Casts are sent only while the message is fewer than this many hops from the client "
        "(a traversal of this depth); none: always.",
    )


class WorkloadSpec(_Frozen):
    """Clients issuing operations (RPC calls on the topic) at a rate."""

    rate: Annotated[float, Field(gt=0, le=1e7, allow_inf_nan=False)] = Field(description="Operations per second.")
    start: Seconds = 0.0
    stop: Seconds = Field(description="No operation is issued at or after this time.")
    arrivals: Literal["poisson", "periodic"] = "poisson"
    client: Name | None = Field(
        None, description="Release whose send rules the clients use; default: the first engine's."
    )
    operations: dict[Name, Annotated[float, Field(gt=0, le=1e9, allow_inf_nan=False)]] = Field(
        min_length=1, description="Entry method -> weight; each operation is a call of one of them."
    )
    kind: Literal["call", "cast"] = Field("call", description="Whether client operations are calls or casts.")
    handlers: dict[Name, HandlerSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _window(self) -> WorkloadSpec:
        if self.stop < self.start:
            raise ValueError(f"stop ({self.stop}) must not be before start ({self.start})")
        return self


# ---------------------------------------------------------------- plan
class TriggerSpec(_Frozen):
    """A database trigger that copies every write of ``from`` into ``to`` (same row)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
    from_: Location = Field(alias="from")
    to: Location


class BackfillSpec(_Frozen):
    """The data-migration utility: copy ``from`` into ``to`` row by row, concurrently with engines."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
    from_: Location = Field(alias="from")
    to: Location
    rate: Annotated[float, Field(gt=0, le=1e7, allow_inf_nan=False)] = Field(10.0, description="Rows per second.")
    gap: Seconds = Field(0.0, description="Seconds between reading a row and writing it.")
    max_gap: Seconds = Field(0.0, description="Upper bound of the read-to-write gap the search may choose.")
    guard: Literal["none", "if-empty", "if-unchanged"] = Field(
        "none",
        description="'if-empty': write only if the target is still empty (UPDATE ... WHERE to IS NULL); "
        "'if-unchanged': write only if the source still holds the value read (a compare-and-set: "
        "UPDATE ... WHERE from = :value_read).",
    )


_SchemaItem = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)?$")]  # table or table.column


class _Step(_Frozen):
    """What every plan step has: a pause before its action."""

    action: ClassVar[str]  # the step's one action key, as the scenario file and the trace name it
    after: Seconds = Field(0.0, description="Seconds to pause before this step.")


class _StartsNoEngine(_Step):
    """A step that starts no engine, so takes no ``release``."""

    @model_validator(mode="before")
    @classmethod
    def _no_release(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("release") is not None:
            raise ValueError("'release' only goes with 'restart' or 'start'")
        return data

    @property
    def release(self) -> None:
        """The release this step starts engines on: none."""
        return None


class _StartsEngine(_Step):
    """A step that starts an engine: it needs ``release``. Each declares the field itself, after its
    action key, so that a dumped step keeps the order ``restart: ..., release: ...``."""

    @model_validator(mode="before")
    @classmethod
    def _needs_release(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("release") is None:
            raise ValueError(f"'{cls.action}' needs 'release'")
        return data


class RestartStep(_StartsEngine):
    """Stop an engine (see ``how``) and start it again on ``release``."""

    action: ClassVar[str] = "restart"
    restart: Name = Field(description="Engine to stop (see 'how') and start again on 'release'.")
    release: Name
    how: Literal["graceful", "kill"] = Field("graceful", description="How 'restart' stops the engine.")


class StopStep(_StartsNoEngine):
    """Stop an engine gracefully."""

    action: ClassVar[str] = "stop"
    stop: Name = Field(description="Engine to stop gracefully (finishes in-flight work).")


class KillStep(_StartsNoEngine):
    """Kill an engine."""

    action: ClassVar[str] = "kill"
    kill: Name = Field(description="Engine to kill.")


class StartStep(_StartsEngine):
    """Start a stopped engine on ``release``."""

    action: ClassVar[str] = "start"
    start: Name = Field(description="Engine to start on 'release'.")
    release: Name


class WaitStep(_StartsNoEngine):
    """Let time pass."""

    action: ClassVar[str] = "wait"
    wait: Seconds


class ExpandStep(_StartsNoEngine):
    """Add tables and columns to the database."""

    action: ClassVar[str] = "expand"
    expand: list[_SchemaItem]


class ContractStep(_StartsNoEngine):
    """Drop tables and columns from the database."""

    action: ClassVar[str] = "contract"
    contract: list[_SchemaItem]


class BackfillStep(_StartsNoEngine):
    """Run the data-migration utility; the step ends when it has done every row."""

    action: ClassVar[str] = "backfill"
    backfill: BackfillSpec


class SetCapStep(_StartsNoEngine):
    """Override the version cap of every release that declares one (a release without a cap stays unpinned)."""

    action: ClassVar[str] = "set_cap"
    set_cap: VersionStr | Literal["auto", "none"]


class EnableTriggerStep(_StartsNoEngine):
    """Enable a database trigger."""

    action: ClassVar[str] = "enable_trigger"
    enable_trigger: TriggerSpec


class DisableTriggerStep(_StartsNoEngine):
    """Disable a database trigger."""

    action: ClassVar[str] = "disable_trigger"
    disable_trigger: TriggerSpec


class SetClientStep(_StartsNoEngine):
    """Switch the clients to another release's send rules."""

    action: ClassVar[str] = "set_client"
    set_client: Name


# action -> its step model, in the documented order of actions
STEP_TYPES: dict[str, type[_Step]] = {
    t.action: t
    for t in (
        RestartStep,
        StopStep,
        KillStep,
        StartStep,
        WaitStep,
        ExpandStep,
        ContractStep,
        BackfillStep,
        SetCapStep,
        EnableTriggerStep,
        DisableTriggerStep,
        SetClientStep,
    )
}
STEP_ACTIONS = tuple(STEP_TYPES)


class _NotOneAction(_Frozen):
    """Validation only, never a value: a step without exactly one action. It takes every key a step
    may have, so an unknown key or a bad value is reported as such, then refuses the step."""

    after: Seconds = 0.0
    restart: Name | None = None
    stop: Name | None = None
    kill: Name | None = None
    start: Name | None = None
    release: Name | None = None
    how: Literal["graceful", "kill"] = "graceful"
    wait: Seconds | None = None
    expand: list[_SchemaItem] | None = None
    contract: list[_SchemaItem] | None = None
    backfill: BackfillSpec | None = None
    set_cap: VersionStr | Literal["auto", "none"] | None = None
    enable_trigger: TriggerSpec | None = None
    disable_trigger: TriggerSpec | None = None
    set_client: Name | None = None

    @model_validator(mode="after")
    def _one_action(self) -> _NotOneAction:
        present = [a for a in STEP_ACTIONS if getattr(self, a) is not None]
        got = ", ".join(present) if present else "none"
        raise ValueError(f"expected exactly one action of: {', '.join(STEP_ACTIONS)} (got {got})")


# the tags of the step union: class names, which appear in pydantic's error locations (the loader drops them)
STEP_TAGS = frozenset([t.__name__ for t in STEP_TYPES.values()] + [_NotOneAction.__name__])


def _step_tag(value: Any) -> str | None:
    """The union member that validates ``value``: a step picks its model by the one action key it has
    (a key with a null value counts as absent); none or several go to :class:`_NotOneAction`."""
    if isinstance(value, _Step):
        return type(value).__name__
    if not isinstance(value, dict):
        return None  # not a step at all: the union's own error
    present = [a for a in STEP_ACTIONS if value.get(a) is not None]
    return STEP_TYPES[present[0]].__name__ if len(present) == 1 else _NotOneAction.__name__


if TYPE_CHECKING:
    StepSpec: TypeAlias = (
        RestartStep
        | StopStep
        | KillStep
        | StartStep
        | WaitStep
        | ExpandStep
        | ContractStep
        | BackfillStep
        | SetCapStep
        | EnableTriggerStep
        | DisableTriggerStep
        | SetClientStep
    )
else:
    # what validates: the member named by the step's action key; _NotOneAction only ever fails, so it
    # is neither in the static type nor in the JSON Schema
    StepSpec = Annotated[
        Union[  # noqa: UP007 - a union built at run time from STEP_TYPES
            tuple(Annotated[t, Tag(t.__name__)] for t in STEP_TYPES.values())
            + (Annotated[_NotOneAction, Tag(_NotOneAction.__name__), SkipJsonSchema()],)
        ],
        Discriminator(
            _step_tag,
            custom_error_type="step_type",
            custom_error_message=f"Input should be a step: a mapping with one action key of: {', '.join(STEP_ACTIONS)}",
        ),
    ]
"""One operator step: one model per action, told apart by the action key present (``restart: engine-1``
is a :class:`RestartStep`). Every step has ``after`` and ``action``; :func:`parse_step` builds one."""

_STEP_ADAPTER: TypeAdapter[StepSpec] = TypeAdapter(StepSpec)


def parse_step(data: Any) -> StepSpec:
    """A step from its mapping, as a scenario file writes it (``{"restart": "engine-1", "release": "new"}``)."""
    return _STEP_ADAPTER.validate_python(data)


class FaultSpec(_Frozen):
    """Kill an engine at a simulated time or when a plan step begins."""

    kill: Name
    at: Seconds | None = None
    at_step: int | None = Field(None, ge=0, description="Index of the plan step at whose start the kill happens.")

    @model_validator(mode="after")
    def _when(self) -> FaultSpec:
        if (self.at is None) == (self.at_step is None):
            raise ValueError("expected exactly one of 'at' (seconds) or 'at_step' (plan step index)")
        return self


# ---------------------------------------------------------------- invariants
class ImbalanceSpec(_Frozen):
    max_wait: PositiveSeconds = Field(description="Longest a message may wait while another engine is idle.")


class SkewSpec(_Frozen):
    max_releases: int = Field(2, ge=1, le=1000, description="Most releases running at once.")


class CompleteSpec(_Frozen):
    within: PositiveSeconds | None = Field(
        None,
        description="Seconds within which every client operation, with the work it causes, must complete; "
        "none: before the run ends.",
    )


class _NoParams(_Frozen):
    pass


def _or_false(schema: dict) -> None:
    """JSON Schema of an invariant's value: its parameters, null (enabled with its defaults) or false (off)."""
    schema.setdefault("anyOf", []).append({"const": False})


def _inv(alias: str):  # noqa: ANN202 - a pydantic FieldInfo
    return Field(None, alias=alias, json_schema_extra=_or_false)


class InvariantsSpec(_Frozen):
    """The invariants a scenario checks, with their bounds. Leave one out, or give it ``false``, to
    not check it; an empty value (``no-lost-write:``, ``null`` or ``true``) checks it with its defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
    no_lost_write: _NoParams | None = _inv("no-lost-write")
    no_stranded_message: _NoParams | None = _inv("no-stranded-message")
    no_incompatible_delivery: _NoParams | None = _inv("no-incompatible-delivery")
    bounded_imbalance: ImbalanceSpec | None = _inv("bounded-imbalance")
    schema_compatible: _NoParams | None = _inv("schema-compatible")
    version_skew: SkewSpec | None = _inv("version-skew")
    # opt-in (not in the bundled scenarios' sets): a scenario names them to check them
    no_refused_send: _NoParams | None = _inv("no-refused-send")
    operations_complete: CompleteSpec | None = _inv("operations-complete")
    no_lost_update: _NoParams | None = _inv("no-lost-update")

    @model_validator(mode="before")
    @classmethod
    def _empty_means_defaults(cls, data: object) -> object:
        """``name:`` with no value (YAML null) or ``true`` enables an invariant with its defaults;
        ``false`` disables it. Any other value is validated against the invariant's parameters."""
        if not isinstance(data, dict):
            return data
        out: dict[object, object] = {}
        for key, value in data.items():
            if value is None or value is True:
                out[key] = {}
            elif value is False:
                continue
            else:
                out[key] = value
        return out

    @model_serializer(mode="wrap")
    def _leave_out_the_unchecked(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """An invariant that is not checked is left out of a dump: ``name: null`` would read back
        as "checked with its defaults" (see above)."""
        return {k: v for k, v in handler(self).items() if v is not None}

    def enabled(self) -> dict[str, BaseModel]:
        """Invariant name -> its parameters, in the documented order."""
        out: dict[str, BaseModel] = {}
        for attr, field in type(self).model_fields.items():
            value = getattr(self, attr)
            if value is not None:
                out[field.alias or attr] = value
        return out


# ---------------------------------------------------------------- search
class ChoiceSpec(_Frozen):
    """A pinned event-level choice: the ``at``-th choice point of ``kind`` (counting from 0) takes
    option ``pick`` instead of the default 0."""

    kind: Literal["consumer", "delay", "backfill_gap"] = Field(
        description="'consumer': which engine a topic message is pushed to (option k = k places after the "
        "round-robin one); 'delay': a message's extra delay (k/8 of bus.max_delay); 'backfill_gap': the "
        "backfill's read-to-write gap for a row (k/8 of max_gap)."
    )
    at: int = Field(ge=0)
    pick: int = Field(ge=0)


class SearchSpec(_Frozen):
    """What ``simroll fuzz`` may vary. Absent, or for keys left out: the timing of every plan step
    (a pause of up to ``max_pause`` before each) and the event-level choices. Skipping steps,
    reordering them, turning stops into kills and extra kills are opt-in."""

    drop_steps: bool = Field(False, description="The operator may skip plan steps (shrinking then removes steps).")
    reorder: list[list[int]] = Field(
        default_factory=list, description="Groups of plan step indices whose order may be permuted."
    )
    max_pause: Seconds = Field(30.0, description="Upper bound of the pause the search may add before a step.")
    kill_instead_of_stop: bool | list[int] = Field(
        False,
        description="A graceful stop or restart may become a kill: every one (true), none (false), or "
        "those of the listed plan step indices.",
    )
    kill_engines: list[Name] = Field(default_factory=list, description="Engines the search may kill at any time.")
    events: bool = Field(True, description="Vary event-level choices: consumer picks and message delays.")


class LimitsSpec(_Frozen):
    """A run stops at these bounds with a partial report."""

    max_time: PositiveSeconds = Field(1e6, description="Simulated seconds.")
    # 2 million events take tens of seconds and about 1 GB while `simroll run` keeps the trace in
    # memory (~500 bytes a record); more is asked for explicitly (--max-events or this key).
    max_events: int = Field(2_000_000, ge=1, le=1_000_000_000, description="Trace events.")


class Scenario(_Frozen):
    """A whole scenario file."""

    name: Name
    description: str = ""
    seed: int = Field(0, ge=0, lt=2**63, description="Default seed of the run (overridden by --seed).")
    bus: BusSpec = Field(default_factory=BusSpec)
    database: DatabaseSpec
    releases: dict[Name, ReleaseSpec] = Field(min_length=1)
    engines: Annotated[list[EngineSpec], Field(min_length=1)] | EngineGroupSpec
    workload: WorkloadSpec
    plan: list[StepSpec] = Field(default_factory=list)
    faults: list[FaultSpec] = Field(default_factory=list)
    invariants: InvariantsSpec = Field(description="The invariants checked and their bounds.")
    expect: Annotated[str, StringConstraints(pattern=r"^(holds|violates [a-z\-]+)$")] | None = Field(
        None, description="'holds' or 'violates <invariant>': what the pytest plugin asserts."
    )
    allow_vacuous: bool = Field(
        False,
        description="With 'expect: holds', accept invariants that held only vacuously (had nothing to "
        "check); by default the pytest plugin fails such a scenario. Set it only where the vacuity is by design.",
    )
    search: SearchSpec | None = None
    choices: list[ChoiceSpec] = Field(default_factory=list, description="Pinned event-level choices (replay).")
    limits: LimitsSpec = Field(default_factory=LimitsSpec)

    def engine_list(self) -> list[EngineSpec]:
        """Engines in declaration order (a group expands to prefix1..prefixN)."""
        if isinstance(self.engines, EngineGroupSpec):
            g = self.engines
            return [EngineSpec(name=f"{g.prefix}{i + 1}", release=g.release) for i in range(g.count)]
        return list(self.engines)


DatabaseSpec.model_rebuild()
