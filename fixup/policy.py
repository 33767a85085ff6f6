"""The policy file: YAML text in, one validated, frozen :class:`Policy` out (pure: no sockets).

The file is *composed* (``yaml.compose``), not loaded, so every key and value keeps the line it
was written on; any problem raises :class:`fixup.errors.PolicyError` whose ``str()`` is one line
``PATH:LINE: dotted.key: what is wrong``.  Each key mirrors a Cisco PIX 6.x command (see
README.md, "Policy reference"); the PPTP rules themselves are RFC 2637.
"""
from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from ipaddress import AddressValueError, IPv4Address
from pathlib import Path
from typing import Any, Callable, Mapping, NoReturn

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from fixup.errors import PolicyError
from fixup.policy_aaa import AaaGroup, parse_aaa
from fixup.policy_terminate import TerminatePolicy, parse_terminate
from fixup.proto.config import Timeouts, TrackerConfig

DEFAULT_PPTP_PORTS: tuple[int, ...] = (1723,)  # RFC 2637 section 2: the PPTP control port
DEFAULT_QUEUE_NUM = 1723
DEFAULT_CONTROL_SOCKET = "/run/fixup/fixup.sock"
DEFAULT_LOG_LEVEL = "info"
DEFAULT_GRE_MODE = "kernel"
LOG_LEVELS = ("debug", "info", "warning", "error")
GRE_MODES = ("kernel", "queue")
IFNAMSIZ = 16  # Linux <net/if.h>: names are at most IFNAMSIZ - 1 bytes
UNIX_PATH_MAX = 108  # Linux sockaddr_un.sun_path, NUL terminator included

TOP_KEYS = ("inside", "outside", "pat_address", "fixup", "runtime", "terminate", "aaa")
REQUIRED_KEYS = {
    "inside": "interfaces toward the PPTP clients",
    "outside": "interface toward the servers",
}
FIXUP_KEYS = ("pptp",)
PPTP_KEYS = ("ports", "gre", "timeouts")
TIMEOUT_KEYS = ("control_idle", "call_idle", "call_setup", "clearing")
RUNTIME_KEYS = ("queue", "control_socket", "log_level")

_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_STR = "tag:yaml.org,2002:str"
_HMS = re.compile(r"(\d+):([0-5]\d):([0-5]\d)")  # PIX "timeout conn 1:00:00"


@dataclass(frozen=True, slots=True)
class Policy:
    """A validated policy.  ``pat_address`` None means "the outside interface's primary IPv4
    address", which only the daemon can resolve.  ``pptp_ports`` empty means no PPTP fixup.
    ``terminate``: local PPTP dial-in (:mod:`fixup.policy_terminate`); ``aaa``: named AAA
    server groups (:mod:`fixup.policy_aaa`)."""

    inside: tuple[str, ...]
    outside: str
    pat_address: IPv4Address | None = None
    pptp_ports: tuple[int, ...] = DEFAULT_PPTP_PORTS
    timeouts: Timeouts = field(default_factory=Timeouts)
    gre: str = DEFAULT_GRE_MODE
    queue_num: int = DEFAULT_QUEUE_NUM
    control_socket: str = DEFAULT_CONTROL_SOCKET
    log_level: str = DEFAULT_LOG_LEVEL
    source: str = "<policy>"
    terminate: TerminatePolicy | None = field(default=None, hash=False)
    aaa: Mapping[str, AaaGroup] = field(default_factory=dict, hash=False)

    def tracker_config(self, pat_address: IPv4Address | None = None) -> TrackerConfig:
        """The pure tracker's configuration; ``pat_address`` is the resolved PAT address
        (defaults to the policy's own ``pat_address`` when that is set)."""
        address = pat_address if pat_address is not None else self.pat_address
        if address is None:
            raise ValueError("policy has no pat_address: pass the outside interface's address")
        return TrackerConfig(
            pat_address=address, control_ports=frozenset(self.pptp_ports), timeouts=self.timeouts
        )


def load_policy(path: str) -> Policy:
    """Read and validate the policy file at ``path``."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise PolicyError(f"cannot read policy file: {exc.strerror or exc}", path=path) from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise PolicyError("not UTF-8 text", line=line, path=path) from exc
    return parse_policy(text, path)


def parse_policy(text: str, path: str = "<policy>") -> Policy:
    """Validate policy YAML ``text``; ``path`` only names the source in error messages."""
    return _Parser(path).policy(_compose(text, path))


def _compose(text: str, path: str) -> MappingNode:
    """YAML text to its root node, with YAML errors turned into one-line PolicyErrors."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        raise PolicyError(
            f"YAML syntax error: {_yaml_problem(exc)}", line=_mark_line(exc), path=path
        ) from exc
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        detail = exc.reason
        if isinstance(exc.character, int):
            detail += f" (U+{exc.character:04X})"
        raise PolicyError(f"YAML syntax error: {_one_line(detail)}", line=line, path=path) from exc
    if root is None or _is_null(root):
        raise PolicyError(
            "empty policy file: expected at least the keys 'inside' and 'outside'", line=1, path=path
        )
    if not isinstance(root, MappingNode):
        raise PolicyError(
            f"expected a mapping of policy keys ({', '.join(TOP_KEYS)}), got {_describe(root)}",
            line=_line(root),
            path=path,
        )
    return root


class _Parser:
    """Walks the composed node tree; every check knows its dotted key and its node's line."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, message: str, key: str, node: Node) -> NoReturn:
        raise PolicyError(message, key=key, line=_line(node), path=self.path)

    def policy(self, root: MappingNode) -> Policy:
        top = self.section(root, "", TOP_KEYS)
        for name, what in REQUIRED_KEYS.items():
            if name not in top:
                self.fail(f"missing required key ({what})", name, root)
        fixup = self.section(top.get("fixup"), "fixup", FIXUP_KEYS)
        pptp = self.section(fixup.get("pptp"), "fixup.pptp", PPTP_KEYS)
        runtime = self.section(top.get("runtime"), "runtime", RUNTIME_KEYS)
        inside = self.inside(top["inside"])
        outside = self.interface(top["outside"], "outside")
        if outside in inside:
            self.fail(f"{outside!r} is also listed in 'inside'", "outside", top["outside"])
        aaa = parse_aaa(self, top.get("aaa"))
        return Policy(
            inside=inside,
            outside=outside,
            pat_address=self.optional(top, "pat_address", "", self.pat_address, None),
            pptp_ports=self.optional(pptp, "ports", "fixup.pptp", self.ports, DEFAULT_PPTP_PORTS),
            timeouts=self.timeouts(pptp.get("timeouts")),
            gre=self.optional(pptp, "gre", "fixup.pptp", self.gre_mode, DEFAULT_GRE_MODE),
            queue_num=self.optional(runtime, "queue", "runtime", self.queue_num, DEFAULT_QUEUE_NUM),
            control_socket=self.optional(
                runtime, "control_socket", "runtime", self.socket_path, DEFAULT_CONTROL_SOCKET
            ),
            log_level=self.optional(runtime, "log_level", "runtime", self.log_level, DEFAULT_LOG_LEVEL),
            source=self.path,
            terminate=parse_terminate(self, top.get("terminate"), aaa),
            aaa=aaa,
        )

    # -- structure -------------------------------------------------------------------------

    def section(self, node: Node | None, key: str, allowed: tuple[str, ...]) -> dict[str, Node]:
        """A mapping with only ``allowed`` keys, each at most once; absent or null = empty."""
        if node is None or _is_null(node):
            return {}
        if not isinstance(node, MappingNode):
            expected = f"expected a mapping with keys {', '.join(allowed)}"
            self.fail(f"{expected}; got {_describe(node)}", key, node)
        entries: dict[str, Node] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.fail(f"expected a key name, got {_describe(key_node)}", key, key_node)
            name = key_node.value
            dotted = _join(key, name)
            if name in entries:
                self.fail(f"duplicate key (first set on line {first_line[name]})", dotted, key_node)
            if name not in allowed:
                self.fail(_unknown_key_message(name, allowed), dotted, key_node)
            entries[name] = value_node
            first_line[name] = _line(key_node)
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
            self.fail(f"expected {expected}, got {_describe(node)}", key, node)
        return str(node.value)

    def integer(self, node: Node, key: str, expected: str, low: int, high: int) -> int:
        """A YAML integer (booleans refused) within ``low..high``."""
        value = _construct(node) if isinstance(node, ScalarNode) and node.tag == _INT else None
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            self.fail(f"expected {expected}, got {_describe(node)}", key, node)
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
            self.fail(f"expected {expected}, got {_describe(node)}", key, node)
        ports: list[int] = []
        for index, item in enumerate(node.value):
            item_key = f"{key}[{index}]"
            port = self.integer(item, item_key, "a TCP port (1-65535)", 1, 65535)
            if port in ports:
                self.fail(f"port {port} listed twice", item_key, item)
            ports.append(port)
        return tuple(ports)

    def timeouts(self, node: Node | None) -> Timeouts:
        """``fixup.pptp.timeouts``: any of the four, each in seconds or H:MM:SS; others default."""
        entries = self.section(node, "fixup.pptp.timeouts", TIMEOUT_KEYS)
        values = {
            name: self.seconds(value, f"fixup.pptp.timeouts.{name}") for name, value in entries.items()
        }
        return Timeouts(**values)

    def seconds(self, node: Node, key: str) -> float:
        """A positive duration: a number of seconds, or PIX-style ``H:MM:SS``."""
        expected = "a positive number of seconds or H:MM:SS"
        if isinstance(node, ScalarNode) and ":" in node.value and node.tag in (_STR, _INT, _FLOAT):
            match = _HMS.fullmatch(node.value)
            if match is None:
                self.fail(f"expected {expected}, got {_describe(node)}", key, node)
            hours, minutes, secs = (int(part) for part in match.groups())
            value: float = float(hours * 3600 + minutes * 60 + secs)
        elif isinstance(node, ScalarNode) and node.tag in (_INT, _FLOAT):
            value = float(_construct(node))
        else:
            self.fail(f"expected {expected}, got {_describe(node)}", key, node)
        if not math.isfinite(value) or value <= 0:
            self.fail(f"expected {expected}, got {_describe(node)}", key, node)
        return value

    def gre_mode(self, node: Node, key: str) -> str:
        """How enhanced GRE (RFC 2637 section 4) is handled: ``queue`` (through the daemon) or
        ``kernel`` (reserved for a later issue; accepted, not yet used)."""
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

    def log_level(self, node: Node, key: str) -> str:
        return self.choice(node, key, LOG_LEVELS, lower=True)

    def choice(self, node: Node, key: str, choices: tuple[str, ...], *, lower: bool) -> str:
        expected = f"one of {', '.join(choices)}"
        text = self.scalar_text(node, key, expected)
        word = text.lower() if lower else text
        if word not in choices:
            self.fail(f"expected {expected}, got {_describe(node)}", key, node)
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


def _yaml_problem(exc: yaml.MarkedYAMLError) -> str:
    """PyYAML's problem text; a problem starting with "but" continues its context."""
    problem = exc.problem or ""
    if exc.context and (not problem or problem.startswith("but ")):
        problem = f"{exc.context}, {problem}" if problem else exc.context
    return _one_line(problem or "invalid YAML")


def _mark_line(exc: yaml.MarkedYAMLError) -> int | None:
    mark = exc.problem_mark or exc.context_mark
    return mark.line + 1 if mark is not None else None


def _unknown_key_message(name: str, allowed: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(name, allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key{hint}; allowed here: {', '.join(allowed)}"


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _NULL


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def _join(parent: str, name: str) -> str:
    name = name if name.isprintable() else repr(name)
    return f"{parent}.{name}" if parent else name


def _describe(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if _is_null(node):
        return "nothing (null)"
    shown = _shorten(str(node.value))
    if not str(node.tag).startswith("tag:yaml.org,2002:"):
        shown += f" tagged {node.tag}"
    return shown


def _shorten(text: str, limit: int = 40) -> str:
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 4] + "...'"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())
