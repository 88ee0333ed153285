"""The scenario, as typed and frozen objects.

A scenario file is validated once, at the edge (:mod:`simroll.scenario.load`), into a
:class:`Scenario`; everything inside simroll trusts these objects. Field
descriptions double as the documentation of the file format and end up in the
JSON Schema printed by ``simroll schema``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeAlias, Union

from pydantic import (
    AfterValidator,
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

from simroll._display import html as _display_html
from simroll.scenario.sqlspec import Backend, DatabaseSqlSpec, ReleaseSqlSpec
from simroll.scenario.versions import VERSION_PATTERN

VersionStr = Annotated[str, StringConstraints(pattern=VERSION_PATTERN)]
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]*$", max_length=100)]
# a service name has no dot: ``service.method`` names a method of another service
SERVICE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_\-]*$"
ServiceName = Annotated[str, StringConstraints(pattern=SERVICE_PATTERN, max_length=100)]
# a RabbitMQ virtual host: "/" (the default one) or a name
VHOST_PATTERN = r"^(/|[A-Za-z_][A-Za-z0-9_.\-]*)$"
VhostName = Annotated[str, StringConstraints(pattern=VHOST_PATTERN, max_length=100)]
DEFAULT_VHOST = "/"
Location = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_]\w*\.[A-Za-z_]\w*$")]
# a named value of a field (an enum member, a key): not the shape of the generated ones (v12, init3)
_GENERATED = re.compile(r"^(v|init)\d+$")


def _named_value(v: str) -> str:
    if _GENERATED.match(v):
        raise ValueError(f"{v!r} has the shape of a generated value (v12, init3); name the value otherwise")
    return v


ValueName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]*$", max_length=100), AfterValidator(_named_value)
]
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
        description="Version cap: a version, 'auto' (lowest version any running engine of the service "
        "implements, or with database.service_records any registered one; computed when the engine starts, "
        "on set_cap, and as 'computed' says), or none.",
    )
    computed: Literal["at-start", "on-sighup", "live"] = Field(
        "at-start",
        description="When 'cap: auto' is computed: when the engine starts (and at set_cap); 'on-sighup': "
        "also at each sighup step that names it (Nova's upgrade_levels=auto, cached until a restart or "
        "SIGHUP); 'live': whenever an engine of the service starts or stops. Records 'cap' when it changes.",
    )


class AccessSpec(_Frozen):
    """Where a release reads and writes one logical field."""

    read: Location | None = Field(None, description="Location (table.column) read.")
    write: list[Location] = Field(default_factory=list, description="Locations written.")
    # issue 20: value domains
    values: list[ValueName] | None = Field(
        None,
        max_length=1000,
        description="The named values of this field this release knows (an enum's members, a serialised "
        "field's keys). A read of a named value (one some handler writes with 'set') outside this list is "
        "an unknown value (see 'unknown'); the field's ordinary values (initial, and written without 'set') "
        "are known to every release. None: every value is known.",
    )
    unknown: Literal["fail", "ignore", "default"] = Field(
        "fail",
        description="What this release does when it reads a value it does not know: 'fail' (the handling "
        "fails, and with it the operation), 'ignore' (skips it and goes on), 'default' (reads it as "
        "'default'). Each writes an 'unknown_value' record.",
    )
    default: ValueName | None = Field(None, description="With unknown: default, the value read instead.")
    # issue 20: engine-local state
    local: bool = Field(
        False,
        description="This release keeps its own copy of the field on each engine (an agent's cache, the flows "
        "an OVS agent programs): its handlers read the copy, not the database. The copy is filled from the "
        "database when an engine first runs a release that keeps it, refreshed by 'sync' (a handler's, for "
        "its row; on_start's, every row), and survives restarts; writes still go to the database.",
    )

    @model_validator(mode="after")
    def _domain(self) -> AccessSpec:
        if self.local and self.read is None:
            raise ValueError("'local: true' needs 'read': the copy is of what the release reads")
        if self.unknown == "default" and (self.default is None or self.values is None):
            raise ValueError("'unknown: default' needs 'values' and a 'default' among them")
        if self.default is not None and (self.values is None or self.default not in self.values):
            raise ValueError(f"'default' ({self.default!r}) must be one of 'values' ({self.values})")
        return self


class ConfigValueSpec(_Frozen):
    """What one value of a config option changes in its release (issue 15)."""

    data: dict[Name, AccessSpec] = Field(
        default_factory=dict, description="Logical field -> where it is read and written with this value."
    )


class ConfigOptionSpec(_Frozen):
    """A config option of a release: runtime state, not code (a read-location switch, say)."""

    default: Name = Field(description="The value in force until a set_config step changes it.")
    values: dict[Name, ConfigValueSpec] = Field(
        min_length=1, description="Value -> what it changes ({} for nothing: the release's own 'data')."
    )
    applies: Literal["restart", "sighup"] = Field(
        "restart",
        description="When a set_config change takes effect on an engine: at its next start ('restart'), or "
        "at the next sighup step or start ('sighup').",
    )

    @model_validator(mode="after")
    def _default_is_a_value(self) -> ConfigOptionSpec:
        if self.default not in self.values:
            raise ValueError(f"default {self.default!r} is not one of the values ({', '.join(self.values)})")
        return self


class ReleaseSpec(_Frozen):
    """One version of the engine software."""

    rpc: RpcSpec
    data: dict[Name, AccessSpec] = Field(default_factory=dict, description="Logical field -> read/write locations.")
    update: Literal["columns", "row"] = Field(
        "columns", description="'columns': write only the columns changed; 'row': rewrite the whole row as read."
    )
    service_time: PositiveSeconds = Field(0.1, description="Seconds an engine spends on one message.")
    workers: int = Field(1, ge=1, le=64, description="Messages an engine handles at once.")
    sql: ReleaseSqlSpec | None = Field(
        None, description="Its own SQL statements per field (a SQL backend); default: derived from 'data'."
    )
    vhost: VhostName = Field(
        DEFAULT_VHOST,
        description="RabbitMQ virtual host the engines on this release connect to (Heat's upgrade guide puts "
        "each release on its own); messages on one vhost are never seen on another. Default: '/'.",
    )
    handlers: dict[Name, HandlerSpec] | None = Field(
        None,
        description="Method -> what handling it does on this release (new casts and methods, new fields read "
        "or written); a method it leaves out is handled as workload.handlers says. Default: the workload's.",
    )
    config: dict[Name, ConfigOptionSpec] = Field(
        default_factory=dict,
        description="Config options -> their values and default (set_config changes them per engine; "
        "version-skew counts releases, not configurations).",
    )
    on_start: StartupSpec | None = Field(
        None,
        description="What an engine on this release does when it starts, before it takes any message: "
        "writes, casts and calls (a resync, re-registering its service record); issue 20.",
    )


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
    topic: Name = Field(
        "engine",
        description="The topic of the one implicit service of a scenario without 'services' (that service is "
        "named after it); with 'services', each service names its own topic.",
    )
    call_timeout: PositiveSeconds = Field(60.0, description="A call expires if not consumed within this time.")
    latency: Seconds = Field(0.0, description="Fixed delivery latency of every message.")
    max_delay: Seconds = Field(0.0, description="Upper bound of the extra delay the search may add to a message.")


class DatabaseSpec(_Frozen):
    """The shared database at the start of the run."""

    backend: Backend = Field(
        "location",
        description="'location': the location model (fastest); 'sqlite': every read, write, schema step, trigger "
        "and backfill runs as SQL on an embedded in-memory SQLite; 'postgresql', 'mariadb': on that server "
        "(database.url), for fidelity, not speed (docs/sql.md).",
    )
    sql: DatabaseSqlSpec | None = Field(
        None, description="The user's own SQL (schema, DDL, triggers, backfill); default: derived from the locations."
    )
    url: Annotated[str, StringConstraints(max_length=2000)] | None = Field(
        None,
        description="With backend postgresql or mariadb: the server's SQLAlchemy URL "
        "(postgresql+psycopg://user@host:port/db, mysql+pymysql://user@host:port/db); each run works in a "
        "scratch schema (database) of its own there, dropped at the end.",
    )
    isolation: Literal["serializable", "repeatable read", "read committed"] | None = Field(
        None,
        description="The isolation level of a handler's transaction (transaction: true); default: the "
        "backend's own (location, sqlite: serializable; postgresql: read committed; mariadb: repeatable "
        "read). location and sqlite take serializable only, mariadb not serializable (docs/sql.md).",
    )
    tables: dict[Name, list[Name]] = Field(description="Table -> columns that exist at the start.")
    service_records: bool = Field(
        False,
        description="Each engine registers (service, release, RPC version) in the database's service table "
        "when it starts, and 'cap: auto' is the lowest version registered for the service (Nova's "
        "upgrade_levels=auto): a stopped or killed engine's record stays (stale) until a remove step "
        "deregisters it. Default: 'cap: auto' reads the running engines (docs/operator.md).",
    )
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


class ServiceSpec(_Frozen):
    """One service: engines that consume one topic, with their own release history (heat-engine
    and its workers, nova-conductor and nova-compute, a server and its agents)."""

    topic: Name | None = Field(None, description="RPC topic its engines consume; default: the service's name.")
    releases: list[Name] | None = Field(
        None,
        description="Its release history, oldest first: the releases its engines may run (checked for the "
        "engines and every start or restart step); default: any release.",
    )


class EngineSpec(_Frozen):
    name: Name
    release: Name
    service: ServiceName | None = Field(None, description="The service it belongs to; default: the first service.")
    start: bool = Field(
        True, description="Start at t=0; false: declared stopped, started later by a 'start' step (a late host)."
    )


class EngineGroupSpec(_Frozen):
    count: int = Field(ge=1, le=10_000)
    release: Name
    prefix: Name = "engine-"
    service: ServiceName | None = Field(None, description="The service they belong to; default: the first service.")


class HandlerSpec(_Frozen):
    """What handling one RPC method does, in logical fields (workload.handlers, or a release's own handlers)."""

    read: list[Name] = Field(default_factory=list, description="Fields read when the message is taken.")
    write: list[Name] = Field(default_factory=list, description="Fields written when handling completes.")
    cast: dict[Name, Annotated[int, Field(ge=0, le=1000)]] = Field(
        default_factory=dict,
        description="Method -> number of casts sent to the topic when handling completes. With 'services', "
        "'service.method' casts to that service's topic; a bare method goes to the handling engine's service.",
    )
    fanout: list[Name] = Field(
        default_factory=list,
        description="Methods cast to every running engine of the service (fanout), on the sender's vhost; "
        "'service.method' as in 'cast'.",
    )
    depth: int | None = Field(
        None,
        ge=0,
        le=1000,
        description="Casts are sent only while the message is fewer than this many hops from the client "
        "(a traversal of this depth); none: always.",
    )
    # issue 20 (the application's failure modes): duplicate requests
    idempotency_key: Literal["request_id"] | None = Field(
        None,
        description="'request_id': the handler records the call's request id (the same in a call and its "
        "retries) in the database when it takes the message, and a copy whose request id is already recorded "
        "does no work and replies at once (a 'dedup' record); the record is rolled back if the handling is "
        "lost or fails. None: every copy does the work.",
    )
    sync: list[Name] = Field(
        default_factory=list,
        description="Fields whose local copy ('local: true' in the handling release) the handler refreshes "
        "from the database, for the message's row, when it takes the message and before its reads (a fanout "
        "cast's handler applying an update); issue 20.",
    )
    set: dict[Name, ValueName] = Field(
        default_factory=dict,
        description="Field -> the named value the handler writes there (a status, a resource type), instead "
        "of a fresh ordinary value; each field must be in 'write'. A release whose 'values' for the field "
        "lack it does not know it (issue 20).",
    )
    transaction: bool = Field(
        False,
        description="Run the reads (when the message is taken) and the writes (when handling completes) as "
        "one database transaction at database.isolation; where the isolation forbids what happened in "
        "between, the database refuses it (a 'write_refused', the operation fails). docs/sql.md.",
    )

    @model_validator(mode="after")
    def _set_is_written(self) -> HandlerSpec:
        extra = [f for f in self.set if f not in self.write]
        if extra:
            raise ValueError(f"'set' names {', '.join(extra)}, not in 'write' ({self.write})")
        return self


class StartupSpec(_Frozen):
    """Start-up actions (a release's ``on_start``), in this order: the syncs, the writes, the casts, then the calls,
    one at a time, each awaited; then the engine takes messages (a ``ready`` record)."""

    sync: list[Name] = Field(
        default_factory=list,
        description="Fields whose local copy ('local: true') is refreshed from the database, every row, first "
        "(a full resync).",
    )
    write: list[Name] = Field(
        default_factory=list,
        description="Fields written on the engine's own row (its service record: row = its index among the "
        "engines, modulo database.rows), where the release writes them.",
    )
    set: dict[Name, ValueName] = Field(
        default_factory=dict, description="Field -> the named value written there (each field must be in 'write')."
    )
    cast: dict[Name, Annotated[int, Field(ge=0, le=1000)]] = Field(
        default_factory=dict,
        description="Method -> number of casts sent ('service.method' addresses another service), on the own row.",
    )
    call: list[Name] = Field(
        default_factory=list,
        description="Methods called in turn ('service.method' as in 'cast'); the engine waits for each reply, "
        "or until bus.call_timeout (a 'timeout' record), before the next, and takes no message meanwhile.",
    )

    @model_validator(mode="after")
    def _set_is_written(self) -> StartupSpec:
        extra = [f for f in self.set if f not in self.write]
        if extra:
            raise ValueError(f"'set' names {', '.join(extra)}, not in 'write' ({self.write})")
        return self


# ---------------------------------------------------------------- the caller (issue 20)
class RetrySpec(_Frozen):
    """The clients' retry policy: after a call times out (``workload.timeout``), send it again."""

    count: int = Field(ge=1, le=100, description="Retries after the first attempt (attempts = count + 1).")
    backoff: Seconds = Field(
        0.0, description="Seconds between giving up on an attempt and sending the next (the first wait)."
    )
    multiplier: Annotated[float, Field(ge=1, le=100, allow_inf_nan=False)] = Field(
        1.0, description="Each further wait is the previous one times this (1: constant, 2: exponential backoff)."
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
    service: ServiceName | None = Field(
        None,
        description="Service whose topic client operations go to (an operation may also name 'service.method'); "
        "default: the first service.",
    )
    vhost: VhostName = Field(
        DEFAULT_VHOST, description="Virtual host the clients publish on at the start (a set_vhost step moves them)."
    )
    handlers: dict[Name, HandlerSpec] = Field(
        default_factory=dict,
        description="Method -> what handling it does, in every service and release (a release's own "
        "'handlers' override it per method).",
    )
    # issue 20: the caller's own timeout and retries
    timeout: PositiveSeconds | None = Field(
        None,
        description="Seconds a client waits for a call's reply before it gives up (oslo.messaging's "
        "rpc_response_timeout; a 'timeout' record). The message's TTL in the queue stays bus.call_timeout. "
        "Default: bus.call_timeout (then a 'timeout' record only with 'retry').",
    )
    retry: RetrySpec | None = Field(
        None,
        description="After a call times out, the client sends it again (a new message whose 'send' record "
        "names the first attempt in 'retry_of'); the first copy may still be queued, prefetched or handled. "
        "None: no retries.",
    )

    @model_validator(mode="after")
    def _window(self) -> WorkloadSpec:
        if self.stop < self.start:
            raise ValueError(f"stop ({self.stop}) must not be before start ({self.start})")
        if self.retry is not None and self.kind != "call":
            raise ValueError("'retry' needs calls ('kind: call'): a cast has no reply to wait for")
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
    guard: Literal["none", "if-empty", "if-unchanged", "if-unchanged-both"] = Field(
        "none",
        description="'if-empty': write only if the target is still empty (UPDATE ... WHERE to IS NULL); "
        "'if-unchanged': write only if the source still holds the value read (a compare-and-set: "
        "UPDATE ... WHERE from = :value_read); 'if-unchanged-both' (location backend): that, and the target "
        "still holds what it held when the row was read, so a value written into the target between the "
        "read and the write is never overwritten (UPDATE ... WHERE from = :from_read AND to = :to_read).",
    )
    # issue 20: the backfill as a process that can die and be run again
    crash_at_row: int | None = Field(
        None,
        ge=0,
        description="The pass dies at this row, after reading it and before writing it (a 'bf_crash' record); "
        "the step ends there, and the row is the marker a later pass with 'start: resume' begins at. A pass "
        "that reaches the end leaves the marker past the last row.",
    )
    start: Literal["from-start", "resume"] = Field(
        "from-start",
        description="Where the pass begins: row 0, or ('resume') at the marker the last pass of the same "
        "from/to left: the row it died at, or past the last row if it finished (a 'bf_resume' record; row 0 "
        "if no pass ran).",
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
            raise ValueError("'release' only goes with 'restart', 'start' or 'add'")
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


class SetVhostStep(_StartsNoEngine):
    """Move the clients to another virtual host: what they send from now on goes there (Heat's
    upgrade guide: the new release's API on the new vhost). Records ``vhost`` with the depth of every vhost."""

    action: ClassVar[str] = "set_vhost"
    set_vhost: VhostName = Field(description="Virtual host the clients publish on from now on.")


class DrainStep(_StartsNoEngine):
    """Wait until a virtual host is drained: none of its queues holds a message ready or unacknowledged
    (``rabbitmqctl list_queues messages`` reads 0). Records ``drained``. A vhost that never drains
    (nobody consumes it) holds the plan here for good."""

    action: ClassVar[str] = "drain"
    drain: VhostName = Field(description="Virtual host to wait for.")


# ---------------------------------------------------------------- operator steps of issue 15
class WaitCondition(_Frozen):
    """What a ``wait_until`` step waits for: every condition it gives holds at the same moment."""

    queue_empty: Name | None = Field(
        None,
        description="A topic whose queue holds no message, ready or unacknowledged, on any vhost "
        "(rabbitmqctl list_queues messages reads 0).",
    )
    idle: Name | None = Field(
        None, description="An engine that handles nothing: no message in flight or prefetched (a stopped one is idle)."
    )
    backfill_done: Literal[True] | None = Field(
        None, description="true: a backfill step has run to its end and no backfill is running."
    )
    all_on: Name | None = Field(None, description="A release that every running engine runs (at least one runs).")

    @model_validator(mode="after")
    def _some(self) -> WaitCondition:
        if all(getattr(self, k) is None for k in type(self).model_fields):
            raise ValueError(f"expected at least one condition of: {', '.join(type(self).model_fields)}")
        return self

    def conditions(self) -> list[tuple[str, Any]]:
        """(condition, its value) for each condition given, in the documented order."""
        return [(k, getattr(self, k)) for k in type(self).model_fields if getattr(self, k) is not None]


class WaitUntilStep(_StartsNoEngine):
    """Wait until every condition of ``wait_until`` holds, checking every ``poll`` seconds; records
    ``waited``. After ``timeout`` seconds it fails instead: it records ``plan_failed``, the rest of the
    plan is not run, and ``plan-completes`` is violated. Without ``timeout`` it waits for good, and
    fails only once nothing is left to happen that could make the conditions hold."""

    action: ClassVar[str] = "wait_until"
    wait_until: WaitCondition = Field(description="The conditions, all of which must hold.")
    timeout: PositiveSeconds | None = Field(None, description="Seconds after which the step fails; none: no limit.")
    poll: PositiveSeconds = Field(1.0, description="Seconds between two checks of the conditions.")


class AddStep(_StartsEngine):
    """Add a new engine to the cluster and start it on ``release`` (a host joins; a service scales out).
    Until its add step runs, the engine does not exist: a step that names it finds no engine (``noop``)."""

    action: ClassVar[str] = "add"
    add: Name = Field(description="Name of the new engine; with 'count', the prefix of NAME1..NAMEcount.")
    release: Name
    count: int | None = Field(None, ge=1, le=10_000, description="Add this many engines (named add+1..add+count).")
    service: ServiceName | None = Field(None, description="The service it joins; default: the first service.")

    def names(self) -> list[str]:
        """The engines' names, in order."""
        return [self.add] if self.count is None else [f"{self.add}{k + 1}" for k in range(self.count)]


class RemoveStep(_StartsNoEngine):
    """Stop an engine for good (see ``how``) and deregister it: no later step starts it again.
    Records ``removed``."""

    action: ClassVar[str] = "remove"
    remove: Name = Field(description="Engine to stop (see 'how') and remove from the cluster.")
    how: Literal["graceful", "kill"] = Field("graceful", description="How 'remove' stops the engine.")


class SetConfigStep(_StartsNoEngine):
    """Change config options on chosen engines (their config files): each change takes effect as its
    option's 'applies' says -- at the engine's next start, or at the next sighup step. An option the
    engine's release does not declare waits for a release that does. Records nothing itself; the
    config in force is in ``start`` and ``config`` records."""

    action: ClassVar[str] = "set_config"
    set_config: dict[Name, Name] = Field(min_length=1, description="Option -> its new value.")
    engines: list[Name] | None = Field(None, description="Engines whose config changes; default: every engine.")


class SighupStep(_StartsNoEngine):
    """Send SIGHUP to running engines: each applies its pending changes to 'applies: sighup' options
    (records ``config`` with the config now in force, when it changed) and, if its release says
    ``computed: on-sighup``, computes its auto cap again (records ``cap`` when it changed); with
    'all', so do the clients."""

    action: ClassVar[str] = "sighup"
    sighup: list[Name] | Literal["all"] = Field(description="Engines to signal, or 'all' (every running engine).")


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
        SetVhostStep,
        DrainStep,
        WaitUntilStep,
        AddStep,
        RemoveStep,
        SetConfigStep,
        SighupStep,
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
    set_vhost: VhostName | None = None
    drain: VhostName | None = None
    wait_until: WaitCondition | None = None
    timeout: PositiveSeconds | None = None
    poll: PositiveSeconds | None = None
    add: Name | None = None
    count: int | None = None
    service: ServiceName | None = None
    remove: Name | None = None
    set_config: dict[Name, Name] | None = None
    engines: list[Name] | None = None
    sighup: list[Name] | Literal["all"] | None = None

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
        | SetVhostStep
        | DrainStep
        | WaitUntilStep
        | AddStep
        | RemoveStep
        | SetConfigStep
        | SighupStep
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
    """Kill an engine at a simulated time or when a plan step begins; or kill the running backfill
    (``kill: backfill``) at a time or when a pass reaches a row."""

    kill: Name = Field(description="The engine killed, or 'backfill': the running backfill pass (issue 20).")
    at: Seconds | None = None
    at_step: int | None = Field(None, ge=0, description="Index of the plan step at whose start the kill happens.")
    at_row: int | None = Field(
        None,
        ge=0,
        description="With 'kill: backfill': the first pass to read this row dies there, before writing it.",
    )

    @model_validator(mode="after")
    def _when(self) -> FaultSpec:
        if self.kill == BACKFILL:
            if (self.at is None) == (self.at_row is None) or self.at_step is not None:
                raise ValueError("'kill: backfill' expects exactly one of 'at' (seconds) or 'at_row' (row index)")
        elif self.at_row is not None:
            raise ValueError("'at_row' needs 'kill: backfill' (an engine is killed 'at' a time or 'at_step')")
        elif (self.at is None) == (self.at_step is None):
            raise ValueError("expected exactly one of 'at' (seconds) or 'at_step' (plan step index)")
        return self


BACKFILL = "backfill"  # a fault's 'kill' naming the backfill utility rather than an engine


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
    no_duplicate_effect: _NoParams | None = _inv("no-duplicate-effect")
    plan_completes: _NoParams | None = _inv("plan-completes")

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

    kind: Literal["consumer", "delay", "backfill_gap", "backfill_crash"] = Field(
        description="'consumer': which engine a topic message is pushed to (option k = k places after the "
        "round-robin one); 'delay': a message's extra delay (k/8 of bus.max_delay); 'backfill_gap': the "
        "backfill's read-to-write gap for a row (k/8 of max_gap); 'backfill_crash' (with search: "
        "{backfill_crash: true}): an odd pick kills the backfill pass at the row it has just read."
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
        description="A graceful stop, restart or remove may become a kill: every one (true), none (false), or "
        "those of the listed plan step indices.",
    )
    kill_engines: list[Name] = Field(default_factory=list, description="Engines the search may kill at any time.")
    events: bool = Field(True, description="Vary event-level choices: consumer picks and message delays.")
    backfill_crash: bool = Field(
        False,
        description="Every backfill row read is a choice point ('backfill_crash'): the search and verify may "
        "kill the pass there, before it writes the row (issue 20). Off: no such choice points.",
    )


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
    services: dict[ServiceName, ServiceSpec] = Field(
        default_factory=dict,
        description="Service name -> its topic and release history. Absent: one service named after bus.topic "
        "('engine'), which every engine belongs to. The first service is the default of engines and clients.",
    )
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

    def __repr__(self) -> str:
        """One short line (under 1 KB): the name, releases, engines, plan and invariants; not every field."""
        releases = list(self.releases)
        shown = releases[:6] + ([f"... {len(releases) - 6} more"] if len(releases) > 6 else [])
        invariants = list(self.invariants.enabled())
        return (
            f"Scenario({self.name!r}, releases={shown}, engines={len(self.engine_list())}, "
            f"plan={len(self.plan)} steps, invariants={invariants}, seed={self.seed})"
        )

    __str__ = __repr__

    def _repr_html_(self) -> str:
        """Jupyter's rich display, drawn by :mod:`simroll.view.notebook` (found through :mod:`simroll._display`)."""
        return _display_html(self)

    def engine_list(self) -> list[EngineSpec]:
        """Engines in declaration order (a group expands to prefix1..prefixN)."""
        if isinstance(self.engines, EngineGroupSpec):
            g = self.engines
            held = _EXPANDED.get(id(g))  # the group's engines, built once (frozen objects, shared)
            if held is None or held[0] is not g:
                if len(_EXPANDED) >= 64:
                    _EXPANDED.clear()
                engines = [
                    EngineSpec(name=f"{g.prefix}{i + 1}", release=g.release, service=g.service) for i in range(g.count)
                ]
                held = _EXPANDED[id(g)] = (g, engines)
            return list(held[1])
        return list(self.engines)

    def added_engines(self) -> list[EngineSpec]:
        """Engines the plan's ``add`` steps bring in, in plan order (they do not exist before their step)."""
        return [
            EngineSpec(name=n, release=step.release, service=step.service)
            for step in self.plan
            if isinstance(step, AddStep)
            for n in step.names()
        ]

    def service_map(self) -> dict[str, ServiceSpec]:
        """Service name -> its spec, in order: the declared ones, or the implicit one named after ``bus.topic``."""
        if self.services:
            return dict(self.services)
        topic = self.bus.topic
        implicit = _IMPLICIT.get(topic)  # a frozen object: made once per topic
        if implicit is None:
            if len(_IMPLICIT) >= 64:
                _IMPLICIT.clear()
            implicit = _IMPLICIT[topic] = ServiceSpec(topic=topic)
        return {topic: implicit}

    def topic_of(self, service: str) -> str:
        """The topic of ``service``."""
        return self.service_map()[service].topic or service

    def default_service(self) -> str:
        """The service of an engine or a client that names none: the first."""
        return next(iter(self.service_map()))

    def route(self, own: str, method: str) -> tuple[str, str]:
        """(service, method) that ``method`` addresses from a sender of service ``own``: with declared
        services, ``service.method`` names a method of that service; any other name is a method of ``own``."""
        if self.services and "." in method:
            head, rest = method.split(".", 1)
            if head in self.services:
                return head, rest
        return own, method

    def routing_explicit(self) -> bool:
        """Does the scenario declare services or virtual hosts? Then ``start`` and ``send`` records carry
        the service (and ``start`` the vhost and the topic queue); a scenario without either writes the
        records it always did."""
        return bool(
            self.services
            or self.workload.vhost != DEFAULT_VHOST
            or any(r.vhost != DEFAULT_VHOST for r in self.releases.values())
            or any(isinstance(s, (SetVhostStep, DrainStep)) for s in self.plan)
        )

    def vhosts(self) -> list[str]:
        """Every virtual host the scenario names (releases, clients, plan steps), '/' first, then by name."""
        named = {self.workload.vhost} | {r.vhost for r in self.releases.values()}
        named |= {s.set_vhost for s in self.plan if isinstance(s, SetVhostStep)}
        named |= {s.drain for s in self.plan if isinstance(s, DrainStep)}
        return sorted(named, key=lambda v: (v != DEFAULT_VHOST, v))


# caches of Scenario's derived objects, outside the (frozen, model_copy'd) models: an engine group's
# expansion, keyed by the group object's id (the entry holds the group, so the id is not reused while
# it is cached), and the implicit service of a topic
_EXPANDED: dict[int, tuple[EngineGroupSpec, list[EngineSpec]]] = {}
_IMPLICIT: dict[str, ServiceSpec] = {}

DatabaseSpec.model_rebuild()
ReleaseSpec.model_rebuild()  # its handlers name HandlerSpec, defined below it
