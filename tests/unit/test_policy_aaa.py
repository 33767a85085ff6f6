"""The aaa section and terminate.aaa (issue 6 item 1): PIX ``aaa-server AuthInbound protocol
radius``, ``aaa-server AuthInbound (outside) host 172.18.124.99 cisco timeout 5`` and
``vpdn group 1 client authentication aaa AuthInbound`` (seed 001 line 57)."""
from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from fixup.errors import PolicyError
from fixup.policy.loader import parse_policy

pytestmark = pytest.mark.unit

BASE = "inside: [br-in]\noutside: gw-out\n"
GROUPS = """aaa:
  AuthInbound:
    protocol: radius
    hosts:
      - {address: 172.18.124.99, secret: cisco, timeout: 5}
      - {address: 127.0.0.1, port: 11812, accounting_port: 11999, secret: other, retries: 0, timeout: 0.5}
  Tac:
    protocol: TACACS+
    hosts: {address: 10.1.1.5, secret: cisco}
"""
TERMINATE = """terminate:
  listen: 198.51.100.1
  pool: 192.168.1.1-192.168.1.50
"""


def load(text: str):
    return parse_policy(BASE + GROUPS + TERMINATE + text, "t.yaml")


def test_groups_with_defaults():
    groups = load("").aaa
    radius = groups["AuthInbound"]
    assert radius.protocol == "radius" and len(radius.hosts) == 2
    first, second = radius.hosts
    assert (first.address, first.port, first.accounting_port) == (IPv4Address("172.18.124.99"), 1812, 1813)
    assert (first.secret, first.timeout, first.retries) == (b"cisco", 5.0, 3)
    assert (second.port, second.accounting_port, second.retries, second.timeout) == (11812, 11999, 0, 0.5)
    tac = groups["Tac"]
    assert tac.protocol == "tacacs+" and tac.hosts[0].port == 49 and tac.hosts[0].accounting_port == 0


def test_terminate_names_groups_for_authentication_and_accounting():
    t = load("  authentication: [mschap-v2]\n  encryption: {mppe: 128, required: true}\n"
             "  aaa: {authentication: AuthInbound, accounting: AuthInbound, interim_interval: 600}\n").terminate
    assert t.aaa.authentication.name == "AuthInbound" and t.aaa.accounting.name == "AuthInbound"
    assert t.aaa.interim_interval == 600.0


def test_no_aaa_by_default():
    t = load("").terminate
    assert t.aaa.authentication is None and t.aaa.accounting is None and t.aaa.interim_interval is None


def test_tacacs_with_pap_and_chap_and_no_encryption_loads():
    t = load("  authentication: [chap, pap]\n  aaa: {authentication: Tac}\n").terminate
    assert t.aaa.authentication.protocol == "tacacs+"


@pytest.mark.parametrize("extra, key, fragment", [
    ("  authentication: [mschap-v2]\n  encryption: {mppe: auto}\n  aaa: {authentication: Tac}\n",
     "terminate.aaa.authentication", "TACACS+, which cannot return MPPE keys"),
    ("  authentication: [mschap, pap]\n  aaa: {authentication: Tac}\n",
     "terminate.aaa.authentication", "verifies only pap and chap: remove mschap"),
    ("  aaa: {authentication: Nope}\n", "terminate.aaa.authentication",
     "no AAA server group 'Nope' under aaa (groups: AuthInbound, Tac)"),
    ("  aaa: {accounting: Tac}\n", "terminate.aaa.accounting", "accounting is RADIUS only"),
    ("  users: {cisco: cisco}\n  aaa: {authentication: AuthInbound}\n", "terminate.aaa.authentication",
     "exclude each other"),
    ("  aaa: {authentication: AuthInbound, interim_interval: 600}\n", "terminate.aaa.interim_interval",
     "without terminate.aaa.accounting"),
    ("  aaa: {accounting: AuthInbound, interim_interval: 10}\n", "terminate.aaa.interim_interval", "below 60"),
    ("  aaa: {authorization: AuthInbound}\n", "terminate.aaa.authorization", "unknown key"),
])
def test_refused_combinations_name_the_key(extra, key, fragment):
    with pytest.raises(PolicyError) as info:
        load(extra)
    message = str(info.value)
    assert f" {key}: " in message and fragment in message, message


@pytest.mark.parametrize("groups, key, line, fragment", [
    ("aaa: {G: {protocol: diameter, hosts: [{address: 1.2.3.4, secret: s}]}}", "aaa.G.protocol", 3,
     "one of radius, tacacs+"),
    ("aaa: {G: {protocol: radius}}", "aaa.G.hosts", 3, "missing required key"),
    ("aaa: {G: {protocol: radius, hosts: []}}", "aaa.G.hosts", 3, "at least one server"),
    ("aaa: {G: {protocol: radius, hosts: [{address: 1.2.3.4}]}}", "aaa.G.hosts[0].secret", 3, "shared secret"),
    ("aaa: {G: {protocol: radius, hosts: [{address: 1.2.3.4, secret: ''}]}}", "aaa.G.hosts[0].secret", 3, "empty"),
    ("aaa: {G: {protocol: radius, hosts: [{address: 1.2.3, secret: s}]}}", "aaa.G.hosts[0].address", 3,
     "bad IPv4 address"),
    ("aaa: {G: {protocol: radius, hosts: [{address: 1.2.3.4, secret: s, retries: 11}]}}", "aaa.G.hosts[0].retries",
     3, "0-10"),
    ("aaa: {G: {protocol: radius, hosts: [{address: 1.2.3.4, secret: s, timeout: 0}]}}", "aaa.G.hosts[0].timeout",
     3, "positive"),
    ("aaa: {G: {protocol: radius, hosts: [{address: 1.2.3.4, secret: s}, {address: 1.2.3.4, secret: t}]}}",
     "aaa.G.hosts[1]", 3, "listed twice"),
    ("aaa: {G: {protocol: tacacs+, hosts: [{address: 1.2.3.4, secret: s, accounting_port: 5}]}}",
     "aaa.G.hosts[0].accounting_port", 3, "for RADIUS"),
    ("aaa:\n  G: radius\n", "aaa.G", 4, "expected a mapping"),
])
def test_group_errors_name_key_and_line(groups, key, line, fragment):
    with pytest.raises(PolicyError) as info:
        parse_policy(BASE + groups + "\n", "t.yaml")
    message = str(info.value)
    assert message.startswith(f"t.yaml:{line}: {key}: ") and fragment in message, message
