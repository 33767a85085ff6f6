"""The ``aaa_servers`` policy section: named AAA server groups, like PIX
``aaa-server AuthInbound protocol radius`` / ``aaa-server AuthInbound (outside) host ADDR KEY
timeout 5`` (seed 001).  Pure."""
from __future__ import annotations

from ipaddress import IPv4Address
from types import MappingProxyType
from typing import Mapping

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from fixup.policy.parser import Parser
from fixup.proto.aaa.config import (
    DEFAULT_PORTS,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    PROTOCOLS,
    RADIUS,
    TACACS_PLUS,
    AaaGroup,
    AaaHost,
    TerminateAaa,
)

# -- parsing (the ``aaa`` section and ``terminate.aaa``) ------------------------------------------

AAA_GROUP_KEYS = ("protocol", "hosts")
AAA_HOST_KEYS = ("address", "port", "accounting_port", "secret", "timeout", "retries")
TERMINATE_AAA_KEYS = ("authentication", "accounting", "interim_interval")
TACACS_METHODS = ("pap", "chap")  # RFC 8907 section 5.4.2: what a NAS can hand over for PPP
MAX_RETRIES = 10


def parse_aaa(p: Parser, node: Node | None) -> Mapping[str, AaaGroup]:
    """``aaa: {NAME: {protocol, hosts: [...]}, ...}`` (PIX ``aaa-server NAME protocol ...``)."""
    if node is None or (isinstance(node, ScalarNode) and node.tag.endswith(":null")):
        return MappingProxyType({})
    if not isinstance(node, MappingNode):
        p.fail("expected a mapping of AAA server group names to {protocol, hosts}", "aaa", node)
    names = tuple(str(k.value) for k, _ in node.value)
    entries = p.section(node, "aaa", names)  # duplicates and key shapes
    return MappingProxyType({name: _group(p, name, value) for name, value in entries.items()})


def _group(p: Parser, name: str, node: Node) -> AaaGroup:
    key = f"aaa.{name}"
    g = p.section(node, key, AAA_GROUP_KEYS)
    for required in AAA_GROUP_KEYS:
        if required not in g:
            p.fail(f"missing required key ({'radius or tacacs+' if required == 'protocol' else 'a list of servers'})",
                   f"{key}.{required}", node)
    protocol = p.choice(g["protocol"], f"{key}.protocol", PROTOCOLS, lower=True)
    hosts_node = g["hosts"]
    items = hosts_node.value if isinstance(hosts_node, SequenceNode) else [hosts_node]
    if not items:
        p.fail("expected at least one server", f"{key}.hosts", hosts_node)
    hosts = tuple(_host(p, f"{key}.hosts[{i}]", item, protocol) for i, item in enumerate(items))
    seen: set[tuple[IPv4Address, int]] = set()
    for index, host in enumerate(hosts):
        if (host.address, host.port) in seen:
            p.fail(f"server {host.label} listed twice", f"{key}.hosts[{index}]", items[index])
        seen.add((host.address, host.port))
    return AaaGroup(name, protocol, hosts)


def _host(p: Parser, key: str, node: Node, protocol: str) -> AaaHost:
    """``aaa-server NAME (if) host ADDRESS KEY timeout SECONDS``."""
    h = p.section(node, key, AAA_HOST_KEYS)
    if "address" not in h:
        p.fail("missing required key (the server's IPv4 address)", f"{key}.address", node)
    if "secret" not in h:
        p.fail("missing required key (the shared secret, PIX: the KEY of aaa-server ... host)", f"{key}.secret", node)
    if protocol == TACACS_PLUS and "accounting_port" in h:
        p.fail("accounting_port is for RADIUS (TACACS+ accounting is not offered)", f"{key}.accounting_port",
               h["accounting_port"])
    port = p.optional(h, "port", key, lambda n, k: p.integer(n, k, "a port (1-65535)", 1, 65535),
                      DEFAULT_PORTS[protocol])
    default_accounting = port + 1 if protocol == RADIUS and port < 65535 else 0
    return AaaHost(
        address=_server_address(p, h["address"], f"{key}.address"),
        port=port,
        secret=_secret(p, h["secret"], f"{key}.secret"),
        timeout=p.optional(h, "timeout", key, p.seconds, DEFAULT_TIMEOUT),
        retries=p.optional(h, "retries", key, lambda n, k: p.integer(n, k, f"a count 0-{MAX_RETRIES}", 0, MAX_RETRIES),
                           DEFAULT_RETRIES),
        accounting_port=p.optional(h, "accounting_port", key,
                                   lambda n, k: p.integer(n, k, "a port (1-65535)", 1, 65535), default_accounting),
    )


def _server_address(p: Parser, node: Node, key: str) -> IPv4Address:
    """A unicast IPv4 address; loopback allowed (a server on the router itself)."""
    text = p.scalar_text(node, key, "an IPv4 address")
    try:
        address = IPv4Address(text)
    except ValueError:
        p.fail(f"bad IPv4 address {text!r}", key, node)
    if address.is_unspecified or address.is_multicast or address.is_reserved:
        p.fail(f"bad IPv4 address {text!r}: not a usable unicast address", key, node)
    return address


def _secret(p: Parser, node: Node, key: str) -> bytes:
    text = p.scalar_text(node, key, "the shared secret as text")
    if not text:
        p.fail("the shared secret is empty", key, node)
    return text.encode("utf-8")


def parse_terminate_aaa(p: Parser, node: Node | None, groups: Mapping[str, AaaGroup], methods: tuple[str, ...],
                        mppe: str, has_users: bool) -> TerminateAaa:
    """``terminate.aaa``; the combinations a PIX refuses are refused here, at load time."""
    t = p.section(node, "terminate.aaa", TERMINATE_AAA_KEYS)
    authentication = p.optional(t, "authentication", "terminate.aaa", lambda n, k: _group_ref(p, n, k, groups), None)
    accounting = p.optional(t, "accounting", "terminate.aaa", lambda n, k: _group_ref(p, n, k, groups), None)
    if authentication is not None:
        _check_authentication(p, t["authentication"], authentication, methods, mppe, has_users)
    if accounting is not None and accounting.protocol != RADIUS:
        p.fail(f"group {accounting.name!r} is {accounting.protocol}: accounting is RADIUS only (RFC 2866)",
               "terminate.aaa.accounting", t["accounting"])
    interim = p.optional(t, "interim_interval", "terminate.aaa", p.seconds, None)
    if interim is not None and accounting is None:
        p.fail("interim_interval without terminate.aaa.accounting", "terminate.aaa.interim_interval",
               t["interim_interval"])
    if interim is not None and interim < 60:
        p.fail("interim_interval below 60 seconds (RFC 2869 section 5.16)", "terminate.aaa.interim_interval",
               t["interim_interval"])
    return TerminateAaa(authentication, accounting, interim)


def _group_ref(p: Parser, node: Node, key: str, groups: Mapping[str, AaaGroup]) -> AaaGroup:
    name = p.scalar_text(node, key, "the name of a group under aaa")
    if name not in groups:
        known = ", ".join(sorted(groups)) or "none defined"
        p.fail(f"no AAA server group {name!r} under aaa (groups: {known})", key, node)
    return groups[name]


def _check_authentication(p: Parser, node: Node, group: AaaGroup, methods: tuple[str, ...], mppe: str,
                          has_users: bool) -> None:
    key = "terminate.aaa.authentication"
    if has_users:
        p.fail("terminate.users and terminate.aaa.authentication exclude each other "
               "(PIX: client authentication local | aaa)", key, node)
    if group.protocol != TACACS_PLUS:
        return
    if mppe != "none":
        p.fail(f"group {group.name!r} is TACACS+, which cannot return MPPE keys (seed 001): "
               "use a RADIUS group or set terminate.encryption.mppe: none", key, node)
    other = [method for method in methods if method not in TACACS_METHODS]
    if other:
        p.fail(f"group {group.name!r} is TACACS+, which verifies only pap and chap: "
               f"remove {', '.join(other)} from terminate.authentication", key, node)
