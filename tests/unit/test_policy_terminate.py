"""The terminate section (PIX vpdn group ... accept dialin pptp), issue 4 item 1."""
from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from fixup.errors import PolicyError
from fixup.policy.loader import parse_policy

pytestmark = pytest.mark.unit

BASE = "inside: [br-in]\noutside: gw-out\n"
FULL = BASE + """terminate:
  listen: 198.51.100.1
  authentication: [pap, chap, mschap, mschap-v2]
  encryption: {mppe: auto, required: false}
  pool: 192.168.1.1-192.168.1.50
  dns: [10.1.1.53]
  wins: []
  users: {cisco: cisco, 'DOMAIN\\cisco': cisco}
  max_sessions: 127
"""


def test_the_issue_example_loads():
    t = parse_policy(FULL).terminate
    assert t.listen_address == IPv4Address("198.51.100.1") and t.listen_interface is None
    assert t.authentication == ("pap", "chap", "mschap", "mschap-v2")
    assert (t.encryption.mppe, t.encryption.required) == ("auto", False)
    assert t.pool == (IPv4Address("192.168.1.1"), IPv4Address("192.168.1.50")) and t.pool_size == 50
    assert t.dns == (IPv4Address("10.1.1.53"),) and t.wins == ()
    assert dict(t.users) == {"cisco": "cisco", "DOMAIN\\cisco": "cisco"}
    assert t.max_sessions == 127


def test_defaults_listen_on_an_interface():
    t = parse_policy(BASE + "terminate: {listen: gw-out, pool: 10.0.0.5}\n").terminate
    assert t.listen_interface == "gw-out" and t.pool_size == 1
    assert t.encryption.mppe == "none" and t.max_sessions == 127


@pytest.mark.parametrize("section, key, line, fragment", [
    ("terminate: {listen: 1.2.3.4, pool: 10.0.0.1-10.0.0.9, authentication: [pap], encryption: {mppe: auto}}",
     "terminate.encryption.mppe", 3, "MPPE needs MS-CHAP"),
    ("terminate: {listen: 1.2.3.4}", "terminate.pool", 3, "missing required key"),
    ("terminate: {listen: 1.2.3.4, pool: 10.0.0.9-10.0.0.1}", "terminate.pool", 3, "ends before it starts"),
    ("terminate: {listen: 1.2.3.4, pool: 10.0.0.1, authentication: [eap]}", "terminate.authentication[0]", 3,
     "expected one of"),
    ("terminate: {listen: 1.2.3.4, pool: 10.0.0.1, dns: [1.1.1.1, 1.0.0.1, 8.8.8.8]}", "terminate.dns", 3, "at most 2"),
    ("terminate: {listen: 1.2.3.4, pool: 10.0.0.1, encryption: {required: true}}", "terminate.encryption.required",
     3, "mppe is none"),
    ("terminate: {listen: 1.2.3.4, pool: 10.0.0.1, max_sessions: 0}", "terminate.max_sessions", 3, "expected"),
    ("terminate: {listen: 1.2.3.4, pool: 10.0.0.1, colour: red}", "terminate.colour", 3, "unknown key"),
])
def test_errors_name_key_and_line(section, key, line, fragment):
    with pytest.raises(PolicyError) as info:
        parse_policy(BASE + section + "\n", "t.yaml")
    message = str(info.value)
    assert message.startswith(f"t.yaml:{line}: {key}: ") and fragment in message
