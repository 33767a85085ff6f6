"""The line-aware walk over a composed policy document (pure): every check knows its dotted key
and its node's line, and fails with one :class:`fixup.errors.PolicyError` line ``PATH:LINE:
dotted.key: what is wrong``.  The loader (:mod:`fixup.policy.loader`) and the sections
(:mod:`fixup.policy.aaa`, :mod:`fixup.policy.terminate`) use it; it imports none of them."""
from __future__ import annotations

import difflib
import math
import re
from ipaddress import AddressValueError, IPv4Address
from typing import Any, Callable, NoReturn

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from fixup.errors import PolicyError
from fixup.proto.pat.config import Limits, Timeouts

LOG_LEVELS = ("debug", "info", "warning", "error")
GRE_MODES = ("ebpf", "kernel", "queue")
IFNAMSIZ = 16  # Linux <net/if.h>: names are at most IFNAMSIZ - 1 bytes
UNIX_PATH_MAX = 108  # Linux sockaddr_un.sun_path, NUL terminator included
TIMEOUT_KEYS = ("control_idle", "call_idle", "call_setup", "clearing", "gre_lease")
LIMIT_KEYS = ("calls_per_connection", "calls_per_client", "connections_per_client", "connections")

_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_STR = "tag:yaml.org,2002:str"
_HMS = re.compile(r"(\d+):([0-5]\d):([0-5]\d)")  # PIX "timeout conn 1:00:00"


class Parser:
    """Walks the composed node tree; every check knows its dotted key and its node's line."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, message: str, key: str, node: Node) -> NoReturn:
        raise PolicyError(message, key=key, line=line_of(node), path=self.path)

    # -- structure -------------------------------------------------------------------------

    def section(self, node: Node | None, key: str, allowed: tuple[str, ...]) -> dict[str, Node]:
        """A mapping with only ``allowed`` keys, each at most once; absent or null = empty."""
        if node is None or is_null(node):
            return {}
        if not isinstance(node, MappingNode):
            expected = f"expected a mapping with keys {', '.join(allowed)}"
            self.fail(f"{expected}; got {describe(node)}", key, node)
        entries: dict[str, Node] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.fail(f"expected a key name, got {describe(key_node)}", key, key_node)
            name = key_node.value
            dotted = _join(key, name)
            if name in entries:
                self.fail(f"duplicate key (first set on line {first_line[name]})", dotted, key_node)
            if name not in allowed:
                self.fail(_unknown_key_message(name, allowed), dotted, key_node)
            entries[name] = value_node
            first_line[name] = line_of(key_node)
        return entries

    def optional(
        self,
        entries: dict[str, Node],
        name: str,
        parent: str,
        check: Callable[[Node, str], Any],
        default: Any,
    ) -> Any:
        """``check(node, dotted_key)`` of the entry, or ``default`` when it is absent."""
        if name not in entries:
            return default
        return check(entries[name], _join(parent, name))

    def scalar_text(self, node: Node, key: str, expected: str) -> str:
        """The literal text of a plain scalar (so ``on`` stays the word, not a boolean)."""
        if not isinstance(node, ScalarNode) or node.tag not in (_STR, _INT, _FLOAT, _BOOL):
            self.fail(f"expected {expected}, got {describe(node)}", key, node)
        return str(node.value)

    def integer(self, node: Node, key: str, expected: str, low: int, high: int) -> int:
        """A YAML integer (booleans refused) within ``low..high``."""
        value = _construct(node) if isinstance(node, ScalarNode) and node.tag == _INT else None
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            self.fail(f"expected {expected}, got {describe(node)}", key, node)
        return value

    # -- values ----------------------------------------------------------------------------

    def interface(self, node: Node, key: str) -> str:
        """A Linux interface name, as the kernel's dev_valid_name() accepts it."""
        name = self.scalar_text(node, key, "an interface name")
        problem = _interface_name_problem(name)
        if problem:
            self.fail(f"bad interface name {_shorten(name)}: {problem}", key, node)
        return name

    def inside(self, node: Node) -> tuple[str, ...]:
        """``inside: br-in`` or ``inside: [br-in, br-lab]``: at least one, none twice."""
        if isinstance(node, SequenceNode):
            items = node.value
            if not items:
                self.fail("expected at least one interface name, got an empty list", "inside", node)
        else:
            items = [node]
        names: list[str] = []
        for index, item in enumerate(items):
            key = f"inside[{index}]" if isinstance(node, SequenceNode) else "inside"
            name = self.interface(item, key)
            if name in names:
                self.fail(f"interface {name!r} listed twice", key, item)
            names.append(name)
        return tuple(names)

    def pat_address(self, node: Node, key: str) -> IPv4Address:
        """A unicast IPv4 address in dotted-quad form."""
        text = self.scalar_text(node, key, "an IPv4 address")
        try:
            address = IPv4Address(text)
        except (AddressValueError, ValueError):
            self.fail(f"bad IPv4 address {_shorten(text)}", key, node)
        if address.is_unspecified or address.is_multicast or address.is_loopback or address.is_reserved:
            self.fail(f"bad IPv4 address {text!r}: not a usable unicast address", key, node)
        return address

    def ports(self, node: Node, key: str) -> tuple[int, ...]:
        """``fixup protocol pptp PORT``: a list (or one) of TCP ports; ``[]`` turns the fixup off."""
        expected = "a list of TCP ports (1-65535)"
        if isinstance(node, ScalarNode) and node.tag == _INT:
            return (self.integer(node, key, expected, 1, 65535),)
        if not isinstance(node, SequenceNode):
            self.fail(f"expected {expected}, got {describe(node)}", key, node)
        ports: list[int] = []
        for index, item in enumerate(node.value):
            item_key = f"{key}[{index}]"
            port = self.integer(item, item_key, "a TCP port (1-65535)", 1, 65535)
            if port in ports:
                self.fail(f"port {port} listed twice", item_key, item)
            ports.append(port)
        return tuple(ports)

    def timeouts(self, node: Node | None) -> Timeouts:
        """``fixup.pptp.timeouts``: any of the five, each in seconds or H:MM:SS; others default."""
        entries = self.section(node, "fixup.pptp.timeouts", TIMEOUT_KEYS)
        values = {
            name: self.seconds(value, f"fixup.pptp.timeouts.{name}") for name, value in entries.items()
        }
        return Timeouts(**values)

    def limits(self, node: Node | None) -> Limits:
        """``fixup.pptp.limits``: any of the four counts (1-1,000,000); others default."""
        entries = self.section(node, "fixup.pptp.limits", LIMIT_KEYS)
        return Limits(**{name: self.integer(value, f"fixup.pptp.limits.{name}", "a count 1-1000000", 1, 1_000_000)
                         for name, value in entries.items()})

    def seconds(self, node: Node, key: str) -> float:
        """A positive duration: a number of seconds, or PIX-style ``H:MM:SS``."""
        expected = "a positive number of seconds or H:MM:SS"
        if isinstance(node, ScalarNode) and ":" in node.value and node.tag in (_STR, _INT, _FLOAT):
            match = _HMS.fullmatch(node.value)
            if match is None:
                self.fail(f"expected {expected}, got {describe(node)}", key, node)
            hours, minutes, secs = (int(part) for part in match.groups())
            value: float = float(hours * 3600 + minutes * 60 + secs)
        elif isinstance(node, ScalarNode) and node.tag in (_INT, _FLOAT):
            value = float(_construct(node))
        else:
            self.fail(f"expected {expected}, got {describe(node)}", key, node)
        if not math.isfinite(value) or value <= 0:
            self.fail(f"expected {expected}, got {describe(node)}", key, node)
        return value

    def gre_mode(self, node: Node, key: str) -> str:
        """How enhanced GRE (RFC 2637 section 4) is moved: ``ebpf`` (a tc program, the nftables
        maps behind it), ``kernel`` (the nftables maps) or ``queue`` (through the daemon)."""
        return self.choice(node, key, GRE_MODES, lower=False)

    def queue_num(self, node: Node, key: str) -> int:
        """The NFQUEUE number (16 bits)."""
        return self.integer(node, key, "an NFQUEUE number (0-65535)", 0, 65535)

    def socket_path(self, node: Node, key: str) -> str:
        """An absolute path that fits in a unix socket address."""
        text = self.scalar_text(node, key, "an absolute path")
        if not text.startswith("/") or text.endswith("/") or "\0" in text:
            self.fail(f"expected an absolute path to a socket file, got {_shorten(text)}", key, node)
        if len(text.encode()) >= UNIX_PATH_MAX:
            self.fail(f"path too long for a unix socket (max {UNIX_PATH_MAX - 1} bytes)", key, node)
        return text

    def directory(self, node: Node, key: str) -> str:
        """An absolute directory path (it need not exist yet)."""
        text = self.scalar_text(node, key, "an absolute path")
        if not text.startswith("/") or "\0" in text or len(text.encode()) > 1024:
            self.fail(f"expected an absolute path to a directory, got {_shorten(text)}", key, node)
        return text.rstrip("/") or "/"

    def boolean(self, node: Node, key: str) -> bool:
        """YAML ``true`` / ``false`` (and their YAML 1.1 spellings); nothing else."""
        if isinstance(node, ScalarNode) and node.tag == _BOOL:
            return node.value.lower() in ("true", "yes", "on")
        self.fail(f"expected true or false, got {node.value!r}" if isinstance(node, ScalarNode) else "expected true or false",
                  key, node)

    def log_level(self, node: Node, key: str) -> str:
        return self.choice(node, key, LOG_LEVELS, lower=True)

    def choice(self, node: Node, key: str, choices: tuple[str, ...], *, lower: bool) -> str:
        expected = f"one of {', '.join(choices)}"
        text = self.scalar_text(node, key, expected)
        word = text.lower() if lower else text
        if word not in choices:
            self.fail(f"expected {expected}, got {describe(node)}", key, node)
        return word


# -- helpers ---------------------------------------------------------------------------------


def _interface_name_problem(name: str) -> str | None:
    """Why Linux would refuse ``name`` as an interface name (net/core/dev.c dev_valid_name)."""
    if not name:
        return "empty"
    if len(name.encode()) > IFNAMSIZ - 1:
        return f"longer than {IFNAMSIZ - 1} bytes"
    if name in (".", ".."):
        return "not allowed"
    if any(ch in "/:\0" or ch.isspace() for ch in name):
        return "must not contain '/', ':' or whitespace"
    return None


def _construct(node: Node) -> Any:
    """The Python value of a scalar node (YAML 1.1 core schema, as yaml.safe_load would)."""
    try:
        return yaml.constructor.SafeConstructor().construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError):
        return None


def yaml_problem(exc: yaml.MarkedYAMLError) -> str:
    """PyYAML's problem text; a problem starting with "but" continues its context."""
    problem = exc.problem or ""
    if exc.context and (not problem or problem.startswith("but ")):
        problem = f"{exc.context}, {problem}" if problem else exc.context
    return one_line(problem or "invalid YAML")


def mark_line(exc: yaml.MarkedYAMLError) -> int | None:
    mark = exc.problem_mark or exc.context_mark
    return mark.line + 1 if mark is not None else None


def _unknown_key_message(name: str, allowed: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(name, allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key{hint}; allowed here: {', '.join(allowed)}"


def is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _NULL


def line_of(node: Node) -> int:
    return node.start_mark.line + 1


def _join(parent: str, name: str) -> str:
    name = name if name.isprintable() else repr(name)
    return f"{parent}.{name}" if parent else name


def describe(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if is_null(node):
        return "nothing (null)"
    shown = _shorten(str(node.value))
    if not str(node.tag).startswith("tag:yaml.org,2002:"):
        shown += f" tagged {node.tag}"
    return shown


def _shorten(text: str, limit: int = 40) -> str:
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 4] + "...'"


def one_line(text: str) -> str:
    return " ".join(str(text).split())
