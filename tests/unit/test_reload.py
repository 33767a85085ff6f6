"""Policy reload (issue 12 item 1, used by the VM tier of issue 14): what may change in a running
daemon, and a reloaded ``terminate`` section applied to new sessions while live ones go on."""
from __future__ import annotations

import random
from ipaddress import IPv4Address

import pytest

from fixup.errors import PolicyError
from fixup.lab.ppp_client import PppClient
from fixup.policy.loader import parse_policy
from fixup.policy.reload import plan_reload
from fixup.proto.vpdn.terminate import TerminateServer
from tests.unit.test_terminate import LOCAL, Dialer, dial, policy

pytestmark = pytest.mark.unit

BASE = """\
inside: [br-in]
outside: gw-out
fixup: {pptp: {ports: [1723], gre: kernel, timeouts: {call_idle: 600}}}
runtime: {log_level: info}
terminate:
  listen: 198.51.100.1
  authentication: [mschap-v2, pap]
  encryption: {mppe: auto}
  pool: 192.168.1.1-192.168.1.50
  users: {cisco: cisco}
"""


def reparsed(old: str, new: str) -> tuple:
    return parse_policy(BASE, "p.yaml"), parse_policy(BASE.replace(old, new), "p.yaml")


def test_nothing_changed():
    before, after = reparsed("", "")
    assert plan_reload(before, after).changed == ()
    assert plan_reload(before, after).describe() == "nothing changed"


@pytest.mark.parametrize("old, new, key", [
    ("call_idle: 600", "call_idle: 60", "fixup.pptp.timeouts"),
    ("log_level: info", "log_level: debug", "runtime.log_level"),
    ("mppe: auto", "mppe: 128", "terminate.encryption"),
    ("[mschap-v2, pap]", "[pap, mschap-v2]", "terminate.authentication"),
    ("{cisco: cisco}", "{cisco: other}", "terminate.users"),
    ("192.168.1.50", "192.168.1.90", "terminate.pool"),
    ("ports: [1723]", "ports: [1723, 1724]", "fixup.pptp.ports"),
])
def test_what_a_reload_applies(old, new, key):
    before, after = reparsed(old, new)
    assert plan_reload(before, after).changed == (key,)
    assert plan_reload(before, after).terminate_changed == key.startswith("terminate")


@pytest.mark.parametrize("old, new, key", [
    ("inside: [br-in]", "inside: [br-in, br-x]", "inside"),
    ("outside: gw-out", "outside: gw-wan", "outside"),
    ("gre: kernel", "gre: queue", "fixup.pptp.gre"),
    ("listen: 198.51.100.1", "listen: 198.51.100.2", "terminate.listen"),
    ("runtime: {log_level: info}", "runtime: {log_level: info, queue: 7}", "runtime.queue"),
])
def test_what_needs_a_restart_is_refused_with_the_key(old, new, key):
    before, after = reparsed(old, new)
    with pytest.raises(PolicyError) as err:
        plan_reload(before, after)
    assert str(err.value).startswith(f"p.yaml: {key}: ") and "needs a restart" in str(err.value)


def test_adding_the_dial_in_server_needs_a_restart():
    before = parse_policy(BASE[:BASE.index("terminate:")], "p.yaml")
    with pytest.raises(PolicyError, match="terminate: adding or removing the dial-in server needs a restart"):
        plan_reload(before, parse_policy(BASE, "p.yaml"))


def test_reconfigure_applies_to_new_sessions_and_keeps_the_live_one():
    server = TerminateServer(policy(methods="[pap]", mppe="none"), LOCAL, 0.0, random_bytes=random.Random(1).randbytes)
    first = dial(server, auth_methods=("pap",), mppe="none")
    assert first.client.up
    server.reconfigure(policy(methods="[mschap-v2]", mppe="128", required="true", users="{cisco: cisco, bob: pw}"))
    second = Dialer(server, PppClient("bob", "pw", random_bytes=random.Random(2).randbytes, mppe="require-128"),
                    peer=IPv4Address("203.0.113.8").packed)
    for _ in range(10):
        second.pump()
    assert second.client.up and second.client.key_length == 128, second.client.failure
    assert first.client.up and len(server.calls) == 2  # the PAP session without MPPE goes on
    old_pap = Dialer(server, PppClient("cisco", "cisco", random_bytes=random.Random(3).randbytes,
                                       auth_methods=("pap",), mppe="none"), peer=IPv4Address("203.0.113.9").packed)
    for _ in range(10):
        old_pap.pump()
    assert not old_pap.client.up  # PAP is no longer offered


def test_a_shrunk_pool_never_takes_a_live_address():
    server = TerminateServer(policy(mppe="none"), LOCAL, 0.0, random_bytes=random.Random(1).randbytes)
    live = dial(server, mppe="none")
    assert live.client.address == IPv4Address("192.168.1.1")
    server.take_events()
    server.reconfigure(policy(mppe="none", pool="192.168.1.2-192.168.1.3"))
    (routed,) = [e for e in server.take_events() if e.kind == "address-routed"]
    assert routed.data == {"address": "192.168.1.1", "add": True}
    assert server.pool.in_use == 0 and server.pool.size == 2
    second = dial(server, mppe="none")
    assert second.client.address == IPv4Address("192.168.1.2")
    server.clear(second.now, live.tunnel)
    gone = [e.data for e in server.take_events() if e.kind == "address-routed"]
    assert gone == [{"address": "192.168.1.1", "add": False}]
    assert server.pool.in_use == 1  # 192.168.1.1 was not given back to the smaller pool


def test_a_grown_pool_keeps_live_addresses_taken():
    server = TerminateServer(policy(mppe="none", pool="192.168.1.1-192.168.1.1"), LOCAL, 0.0,
                             random_bytes=random.Random(1).randbytes)
    live = dial(server, mppe="none")
    server.reconfigure(policy(mppe="none", pool="192.168.1.1-192.168.1.4"))
    assert server.pool.in_use == 1 and not [e for e in server.take_events() if e.kind == "address-routed"]
    assert dial(server, mppe="none").client.address == IPv4Address("192.168.1.2")
    assert live.client.up
