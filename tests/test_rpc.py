"""oslo.messaging's version rule and dispatch, checked against cases worked out by hand from its source."""

import pytest

from simroll.scenario.rpc import Endpoint, Outcome, SendRule, Signature, choose_send_rule, dispatch
from simroll.scenario.versions import Version, is_compatible

V = Version.parse


@pytest.mark.parametrize(
    "implemented, requested, ok",
    [
        ("1.0", "1.0", True),
        ("1.1", "1.0", True),  # older minor: fine
        ("1.0", "1.1", False),  # newer minor: UnsupportedVersion
        ("2.0", "1.9", False),  # other major
        ("1.9", "2.0", False),
        ("1.2.3", "1.2.3", True),
        ("1.2.3", "1.2.4", False),  # revision counts on equal minors
        ("1.3", "1.2.9", True),  # ...but not on a lower minor
        ("1.2", "1.2.1", False),
    ],
)
def test_version_is_compatible(implemented, requested, ok):
    assert is_compatible(V(implemented), V(requested)) is ok


def test_version_parse_rejects_garbage():
    with pytest.raises(ValueError, match="1.x"):
        V("1.x")
    assert str(V("1.10")) == "1.10"
    assert V("1.10") > V("1.9")


def ep(version, methods, namespace=None):
    return Endpoint(V(version), {m: Signature.parse(p) for m, p in methods.items()}, namespace)


def test_dispatch_outcomes():
    eps = (ep("1.1", {"check_resource": ["resource_id", "root_id=None"]}),)
    args = frozenset({"resource_id"})
    assert dispatch(eps, "check_resource", V("1.0"), args) is Outcome.HANDLED
    assert dispatch(eps, "check_resource", V("1.1"), args | {"root_id"}) is Outcome.HANDLED
    assert dispatch(eps, "check_resource", V("1.2"), args) is Outcome.UNSUPPORTED_VERSION
    assert dispatch(eps, "other", V("1.0"), args) is Outcome.NO_SUCH_METHOD
    assert dispatch(eps, "check_resource", V("1.0"), frozenset({"root_id"})) is Outcome.BAD_ARGUMENTS
    assert dispatch(eps, "check_resource", V("1.0"), args | {"extra"}) is Outcome.BAD_ARGUMENTS
    assert dispatch(eps, "check_resource", V("1.0"), args, namespace="other") is Outcome.UNSUPPORTED_VERSION


def test_dispatch_tries_endpoints_in_order_and_listens_on_two_majors():
    eps = (ep("2.0", {"a": []}), ep("1.3", {"a": ["old"], "b": []}))
    assert dispatch(eps, "a", V("2.0"), frozenset()) is Outcome.HANDLED
    assert dispatch(eps, "a", V("1.2"), frozenset({"old"})) is Outcome.HANDLED
    # the 2.0 endpoint is compatible but lacks b; the 1.x one is not compatible with 2.0
    assert dispatch(eps, "b", V("2.0"), frozenset()) is Outcome.NO_SUCH_METHOD
    assert dispatch(eps, "b", V("1.0"), frozenset()) is Outcome.HANDLED


def test_kwargs_accept_anything_beyond_required():
    sig = Signature.parse(["resource_id", "**future_args"])
    assert sig.accepts(frozenset({"resource_id", "root_id"}))
    assert not sig.accepts(frozenset({"root_id"}))


def test_send_rule_respects_cap():
    rules = (SendRule(V("1.1"), frozenset({"a", "b"})), SendRule(V("1.0"), frozenset({"a"})))
    assert choose_send_rule(rules, None).version == V("1.1")
    assert choose_send_rule(rules, V("1.0")).version == V("1.0")
    assert choose_send_rule(rules[:1], V("1.0")) is None  # RPCVersionCapError
