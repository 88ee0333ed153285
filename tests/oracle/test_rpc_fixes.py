"""Two rules the oslo.messaging conformance test found simroll had wrong, pinned without the extra.

Worked out from oslo.messaging 18.3.1's source: ``RPCClient._check_version_cap`` calls
``version_is_compatible(version_cap, version)`` (same major, minor <= the cap's), and
``RPCDispatcher.dispatch`` asks ``DefaultRPCAccessPolicy.is_allowed``, which refuses
method names starting with ``_`` (the endpoint then counts as compatible: NoSuchMethod).
"""

from simroll.scenario.rpc import Endpoint, Outcome, SendRule, Signature, choose_send_rule, dispatch
from simroll.scenario.versions import Version

V = Version.parse


def test_a_cap_only_allows_its_own_major():
    rules = (SendRule(V("1.3"), frozenset()),)
    assert choose_send_rule(rules, V("2.0")) is None  # RPCVersionCapError, although 1.3 < 2.0
    assert choose_send_rule(rules, V("1.4")) == rules[0]
    both = (SendRule(V("2.0"), frozenset()), SendRule(V("1.3"), frozenset()))
    assert choose_send_rule(both, V("1.3")).version == V("1.3")
    assert choose_send_rule(both, V("2.1")).version == V("2.0")


def test_private_methods_are_not_dispatched():
    eps = (Endpoint(V("1.0"), {"_hidden": Signature.parse([]), "shown": Signature.parse([])}),)
    assert dispatch(eps, "_hidden", V("1.0"), frozenset()) is Outcome.NO_SUCH_METHOD
    assert dispatch(eps, "shown", V("1.0"), frozenset()) is Outcome.HANDLED
    assert dispatch(eps, "_hidden", V("2.0"), frozenset()) is Outcome.UNSUPPORTED_VERSION
