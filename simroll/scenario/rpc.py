"""The RPC side of a release, compiled for the simulator, and oslo.messaging's dispatch rule.

Everything here is pure: no SimPy, no I/O. :func:`dispatch` is the function the
conformance test compares against the real oslo.messaging RPC server.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from simroll.scenario.versions import Version, is_compatible


class Outcome(str, Enum):
    """What a server does with one incoming message."""

    HANDLED = "handled"
    UNSUPPORTED_VERSION = "UnsupportedVersion"
    NO_SUCH_METHOD = "NoSuchMethod"
    BAD_ARGUMENTS = "TypeError"


@dataclass(frozen=True, slots=True)
class Signature:
    """A method's parameters: required names, names with a default, and ``**kwargs``."""

    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    var_kwargs: bool = False

    @classmethod
    def parse(cls, params: list[str] | tuple[str, ...]) -> Signature:
        """Parse ``["resource_id", "root_id=None", "**kwargs"]``."""
        required: list[str] = []
        optional: list[str] = []
        var_kwargs = False
        for p in params:
            if p.startswith("**"):
                var_kwargs = True
            elif "=" in p:
                optional.append(p.split("=", 1)[0].strip())
            else:
                required.append(p.strip())
        return cls(tuple(required), tuple(optional), var_kwargs)

    @property
    def names(self) -> tuple[str, ...]:
        return self.required + self.optional

    def accepts(self, args: frozenset[str]) -> bool:
        """Would ``method(**{a: ... for a in args})`` bind, as a Python call would?"""
        for r in self.required:
            if r not in args:
                return False
        if self.var_kwargs:
            return True
        known = self.required + self.optional
        for a in args:
            if a not in known:
                return False
        return True


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One RPC endpoint: a target (namespace, version) and the methods it has."""

    version: Version
    methods: dict[str, Signature]
    namespace: str | None = None


def dispatch(
    endpoints: tuple[Endpoint, ...],
    method: str,
    version: Version,
    args: frozenset[str],
    namespace: str | None = None,
) -> Outcome:
    """oslo.messaging's ``RPCDispatcher._dispatch``, reduced to its outcome.

    Endpoints are tried in order; one whose namespace differs or whose version is
    not compatible is skipped; the first compatible one that has the method
    handles it (a Python call: bad arguments give ``TypeError``). A compatible
    endpoint without the method gives ``NoSuchMethod``; no compatible endpoint
    gives ``UnsupportedVersion``. Methods named ``_...`` are not exposed (oslo's
    default access policy): they give ``NoSuchMethod`` too.
    """
    found_compatible = False
    # oslo's DefaultRPCAccessPolicy: a method whose name starts with '_' is never dispatched
    private = method.startswith("_")
    for ep in endpoints:
        if ep.namespace != namespace or not is_compatible(ep.version, version):
            continue
        sig = None if private else ep.methods.get(method)
        if sig is not None:
            return Outcome.HANDLED if sig.accepts(args) else Outcome.BAD_ARGUMENTS
        found_compatible = True
    return Outcome.NO_SUCH_METHOD if found_compatible else Outcome.UNSUPPORTED_VERSION


def accepts_version(endpoints: tuple[Endpoint, ...], version: Version, namespace: str | None = None) -> bool:
    """Does some endpoint listen for this version (the version-routed bus's filter)?"""
    for ep in endpoints:
        if ep.namespace == namespace and is_compatible(ep.version, version):
            return True
    return False


@dataclass(frozen=True, slots=True)
class SendRule:
    """One way a release sends a method: at ``version`` with argument names ``args``.

    A release lists these per method in order of preference; the first one the
    version cap allows is used (Nova's ``can_send_version`` backport pattern).
    """

    version: Version
    args: frozenset[str]
    namespace: str | None = None


def choose_send_rule(rules: tuple[SendRule, ...], cap: Version | None) -> SendRule | None:
    """The first rule the cap allows, or None (``RPCVersionCapError``).

    oslo's client checks ``version_is_compatible(version_cap, version)``: a cap allows
    only its own major, so a 2.0 cap refuses a 1.x message.
    """
    for rule in rules:
        if cap is None or is_compatible(cap, rule.version):
            return rule
    return None
