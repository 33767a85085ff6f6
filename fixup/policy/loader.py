"""The policy file: YAML text in, one validated, frozen :class:`Policy` out (pure: no sockets).

The file is *composed* (``yaml.compose``), not loaded, so every key and value keeps the line it
was written on; any problem raises :class:`fixup.errors.PolicyError` whose ``str()`` is one line
``PATH:LINE: dotted.key: what is wrong``.  Each key mirrors a Cisco PIX 6.x command (see
README.md, "Policy reference"); the PPTP rules themselves are RFC 2637.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Mapping

import yaml
from yaml.nodes import MappingNode

from fixup.errors import PolicyError
from fixup.policy.aaa import parse_aaa
from fixup.policy.parser import (
    Parser,
    describe,
    is_null,
    line_of,
    mark_line,
    one_line,
    yaml_problem,
)
from fixup.policy.terminate import parse_terminate
from fixup.proto.aaa.config import AaaGroup
from fixup.proto.pat.config import Limits, Timeouts, TrackerConfig
from fixup.proto.vpdn.config import TerminatePolicy

DEFAULT_PPTP_PORTS: tuple[int, ...] = (1723,)  # RFC 2637 section 2: the PPTP control port
DEFAULT_QUEUE_NUM = 1723
DEFAULT_CONTROL_SOCKET = "/run/fixup/fixup.sock"
DEFAULT_LOG_LEVEL = "info"
DEFAULT_GRE_MODE = "ebpf"
DEFAULT_BPF_DIR = "/sys/fs/bpf/fixup"
DEFAULT_STATE_DIR = "/var/lib/fixup"

TOP_KEYS = ("inside", "outside", "pat_address", "fixup", "runtime", "terminate", "aaa")
REQUIRED_KEYS = {
    "inside": "interfaces toward the PPTP clients",
    "outside": "interface toward the servers",
}
FIXUP_KEYS = ("pptp",)
PPTP_KEYS = ("ports", "gre", "permit", "timeouts", "limits")
RUNTIME_KEYS = ("queue", "control_socket", "log_level", "metrics_port", "state_dir", "bpf_dir")



@dataclass(frozen=True, slots=True)
class Policy:
    """A validated policy.  ``pat_address`` None means "the outside interface's primary IPv4
    address", which only the daemon can resolve.  ``pptp_ports`` empty means no PPTP fixup.
    ``terminate``: local PPTP dial-in (:mod:`fixup.policy.terminate`); ``aaa``: named AAA
    server groups (:mod:`fixup.policy.aaa`)."""

    inside: tuple[str, ...]
    outside: str
    pat_address: IPv4Address | None = None
    pptp_ports: tuple[int, ...] = DEFAULT_PPTP_PORTS
    timeouts: Timeouts = field(default_factory=Timeouts)
    limits: Limits = field(default_factory=Limits)
    gre: str = DEFAULT_GRE_MODE
    permit: bool = True  # sysopt connection permit-pptp (issue 13)
    queue_num: int = DEFAULT_QUEUE_NUM
    control_socket: str = DEFAULT_CONTROL_SOCKET
    log_level: str = DEFAULT_LOG_LEVEL
    metrics_port: int | None = None  # Prometheus endpoint on 127.0.0.1; None: off
    state_dir: str = DEFAULT_STATE_DIR  # the restart store (issue 12)
    bpf_dir: str = DEFAULT_BPF_DIR  # where the eBPF GRE path pins its maps (issue 13)
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
            pat_address=address, control_ports=frozenset(self.pptp_ports), timeouts=self.timeouts,
            limits=self.limits,
        )


def secrets_of(policy: Policy) -> list[str]:
    """The keys of ``policy`` that hold secrets (local passwords, AAA shared secrets)."""
    keys = [f"aaa.{name}.hosts[].secret" for name in policy.aaa]
    if policy.terminate is not None and policy.terminate.users:
        keys.insert(0, "terminate.users")
    return keys


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
    return build_policy(Parser(path), _compose(text, path))


def _compose(text: str, path: str) -> MappingNode:
    """YAML text to its root node, with YAML errors turned into one-line PolicyErrors."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        raise PolicyError(
            f"YAML syntax error: {yaml_problem(exc)}", line=mark_line(exc), path=path
        ) from exc
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        detail = exc.reason
        if isinstance(exc.character, int):
            detail += f" (U+{exc.character:04X})"
        raise PolicyError(f"YAML syntax error: {one_line(detail)}", line=line, path=path) from exc
    if root is None or is_null(root):
        raise PolicyError(
            "empty policy file: expected at least the keys 'inside' and 'outside'", line=1, path=path
        )
    if not isinstance(root, MappingNode):
        raise PolicyError(
            f"expected a mapping of policy keys ({', '.join(TOP_KEYS)}), got {describe(root)}",
            line=line_of(root),
            path=path,
        )
    return root


def build_policy(p: Parser, root: MappingNode) -> Policy:
    """The top-level keys (inside, outside, pat_address, fixup, runtime) and the sections."""
    top = p.section(root, "", TOP_KEYS)
    for name, what in REQUIRED_KEYS.items():
        if name not in top:
            p.fail(f"missing required key ({what})", name, root)
    fixup = p.section(top.get("fixup"), "fixup", FIXUP_KEYS)
    pptp = p.section(fixup.get("pptp"), "fixup.pptp", PPTP_KEYS)
    runtime = p.section(top.get("runtime"), "runtime", RUNTIME_KEYS)
    inside = p.inside(top["inside"])
    outside = p.interface(top["outside"], "outside")
    if outside in inside:
        p.fail(f"{outside!r} is also listed in 'inside'", "outside", top["outside"])
    aaa = parse_aaa(p, top.get("aaa"))
    return Policy(
        inside=inside,
        outside=outside,
        pat_address=p.optional(top, "pat_address", "", p.pat_address, None),
        pptp_ports=p.optional(pptp, "ports", "fixup.pptp", p.ports, DEFAULT_PPTP_PORTS),
        timeouts=p.timeouts(pptp.get("timeouts")),
        limits=p.limits(pptp.get("limits")),
        gre=p.optional(pptp, "gre", "fixup.pptp", p.gre_mode, DEFAULT_GRE_MODE),
        permit=p.optional(pptp, "permit", "fixup.pptp", p.boolean, True),
        queue_num=p.optional(runtime, "queue", "runtime", p.queue_num, DEFAULT_QUEUE_NUM),
        control_socket=p.optional(
            runtime, "control_socket", "runtime", p.socket_path, DEFAULT_CONTROL_SOCKET
        ),
        log_level=p.optional(runtime, "log_level", "runtime", p.log_level, DEFAULT_LOG_LEVEL),
        metrics_port=p.optional(runtime, "metrics_port", "runtime",
                                lambda n, k: p.integer(n, k, "a TCP port 1-65535", 1, 65535), None),
        state_dir=p.optional(runtime, "state_dir", "runtime", p.directory, DEFAULT_STATE_DIR),
        bpf_dir=p.optional(runtime, "bpf_dir", "runtime", p.directory, DEFAULT_BPF_DIR),
        source=p.path,
        terminate=parse_terminate(p, top.get("terminate"), aaa),
        aaa=aaa,
    )


