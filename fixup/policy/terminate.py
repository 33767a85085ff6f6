"""The ``terminate`` policy section: local PPTP dial-in, like PIX ``vpdn group 1 accept dialin pptp``.

Parsed with the same line-aware checks as the rest of the policy (:mod:`fixup.policy.loader`); pure.
"""
from __future__ import annotations

from ipaddress import IPv4Address
from types import MappingProxyType
from typing import Mapping

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from fixup.policy.aaa import parse_terminate_aaa
from fixup.policy.parser import Parser
from fixup.proto.aaa.config import AaaGroup
from fixup.proto.vpdn.config import DEFAULT_MAX_SESSIONS, DialInLimits, Encryption, TerminatePolicy

AUTH_METHODS = ("pap", "chap", "mschap", "mschap-v2")  # vpdn group 1 ppp authentication ...
MSCHAP_METHODS = frozenset({"mschap", "mschap-v2"})
MPPE_MODES = ("none", "40", "128", "auto")  # vpdn group 1 ppp encryption mppe 40|128|auto
TERMINATE_KEYS = ("listen", "local_address", "authentication", "encryption", "pool", "dns", "wins", "users",
                  "max_sessions", "aaa", "limits")
LIMIT_COUNTS = ("tunnels", "tunnels_per_peer", "calls_per_tunnel", "auth_failures")
LIMIT_TIMES = ("sccrq_timeout", "call_timeout", "setup_timeout", "auth_hold_down")
ENCRYPTION_KEYS = ("mppe", "required", "stateless")
STATELESS_MODES = ("auto", "always", "never")


def parse_terminate(p: Parser, node: Node | None, groups: Mapping[str, AaaGroup]) -> TerminatePolicy | None:
    """``terminate:``; absent or empty = no local termination.  ``groups``: the ``aaa`` section."""
    if node is None or (isinstance(node, ScalarNode) and node.tag.endswith(":null")):
        return None
    t = p.section(node, "terminate", TERMINATE_KEYS)
    for required in ("listen", "pool"):
        if required not in t:
            p.fail(f"missing required key ({'address or interface to accept PPTP on' if required == 'listen' else 'ip local pool, first-last'})",
                   f"terminate.{required}", node)
    listen_address, listen_interface = _listen(p, t["listen"])
    authentication = p.optional(t, "authentication", "terminate", lambda n, k: _methods(p, n, k), AUTH_METHODS)
    encryption = _encryption(p, t.get("encryption"), authentication)
    users = p.optional(t, "users", "terminate", lambda n, k: _users(p, n, k), {})
    aaa = parse_terminate_aaa(p, t.get("aaa"), groups, authentication, encryption.mppe, bool(users))
    return TerminatePolicy(
        listen_address=listen_address,
        listen_interface=listen_interface,
        local_address=p.optional(t, "local_address", "terminate", p.pat_address, None),
        authentication=authentication,
        encryption=encryption,
        pool=_pool(p, t["pool"], "terminate.pool"),
        dns=p.optional(t, "dns", "terminate", lambda n, k: _addresses(p, n, k, 2), ()),
        wins=p.optional(t, "wins", "terminate", lambda n, k: _addresses(p, n, k, 2), ()),
        users=MappingProxyType(users),
        max_sessions=p.optional(t, "max_sessions", "terminate",
                                lambda n, k: p.integer(n, k, "a session count 1-65535", 1, 65535), DEFAULT_MAX_SESSIONS),
        aaa=aaa,
        limits=_limits(p, t.get("limits")),
    )


def _limits(p: Parser, node: Node | None) -> DialInLimits:
    """``terminate.limits``: counts 1-65535 and timeouts in seconds; others default."""
    entries = p.section(node, "terminate.limits", LIMIT_COUNTS + LIMIT_TIMES)
    values: dict[str, float] = {}
    for name, value in entries.items():
        key = f"terminate.limits.{name}"
        values[name] = p.integer(value, key, "a count 1-65535", 1, 65535) if name in LIMIT_COUNTS else p.seconds(value, key)
    return DialInLimits(**values)  # type: ignore[arg-type]


def _listen(p: Parser, node: Node) -> tuple[IPv4Address | None, str | None]:
    text = p.scalar_text(node, "terminate.listen", "an IPv4 address or an interface name")
    if text[:1].isdigit():
        return p.pat_address(node, "terminate.listen"), None
    return None, p.interface(node, "terminate.listen")


def _methods(p: Parser, node: Node, key: str) -> tuple[str, ...]:
    items = node.value if isinstance(node, SequenceNode) else [node]
    methods: list[str] = []
    for index, item in enumerate(items):
        name = p.choice(item, f"{key}[{index}]", AUTH_METHODS, lower=True)
        if name in methods:
            p.fail(f"{name} listed twice", f"{key}[{index}]", item)
        methods.append(name)
    if not methods:
        p.fail(f"expected at least one of {', '.join(AUTH_METHODS)}", key, node)
    return tuple(methods)


def _encryption(p: Parser, node: Node | None, methods: tuple[str, ...]) -> Encryption:
    e = p.section(node, "terminate.encryption", ENCRYPTION_KEYS)
    mppe = p.optional(e, "mppe", "terminate.encryption", lambda n, k: p.choice(n, k, MPPE_MODES, lower=True), "none")
    required = p.optional(e, "required", "terminate.encryption", p.boolean, False)
    if mppe != "none" and not MSCHAP_METHODS & set(methods):
        p.fail("MPPE needs MS-CHAP keys (RFC 3079): add mschap or mschap-v2 to terminate.authentication, "
               "or set mppe: none", "terminate.encryption.mppe", e.get("mppe", node))
    if required and mppe == "none":
        p.fail("encryption required but mppe is none", "terminate.encryption.required", e["required"])
    return Encryption(mppe=mppe, required=required,
                      stateless=p.optional(e, "stateless", "terminate.encryption",
                                           lambda n, k: p.choice(n, k, STATELESS_MODES, lower=True), "auto"))


def _pool(p: Parser, node: Node, key: str) -> tuple[IPv4Address, IPv4Address]:
    """``ip local pool NAME first-last``."""
    text = p.scalar_text(node, key, "an address range first-last")
    first_text, _, last_text = text.partition("-")
    first = p.pat_address(ScalarNode(node.tag, first_text.strip(), node.start_mark, node.end_mark), key)
    last = p.pat_address(ScalarNode(node.tag, (last_text or first_text).strip(), node.start_mark, node.end_mark), key)
    if int(last) < int(first):
        p.fail(f"pool {text!r} ends before it starts", key, node)
    if int(last) - int(first) >= 65536:
        p.fail("pool larger than 65536 addresses", key, node)
    return first, last


def _addresses(p: Parser, node: Node, key: str, most: int) -> tuple[IPv4Address, ...]:
    items = node.value if isinstance(node, SequenceNode) else [node]
    if len(items) > most:
        p.fail(f"at most {most} addresses (primary, secondary: RFC 1877)", key, node)
    return tuple(p.pat_address(item, f"{key}[{i}]") for i, item in enumerate(items))


def _users(p: Parser, node: Node, key: str) -> dict[str, str]:
    """``vpdn username NAME password SECRET``, as a mapping."""
    if not isinstance(node, MappingNode):
        p.fail("expected a mapping of user name to password", key, node)
    users: dict[str, str] = {}
    for name_node, secret_node in node.value:
        name = p.scalar_text(name_node, key, "a user name")
        if name in users:
            p.fail(f"user {name!r} defined twice", f"{key}.{name}", name_node)
        users[name] = p.scalar_text(secret_node, f"{key}.{name}", "a password")
    return users
