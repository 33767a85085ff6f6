"""What the dial-in server is configured with: a validated ``terminate`` section (PIX ``vpdn group
1 accept dialin pptp`` and its ``ppp authentication``, ``ppp encryption mppe``, ``client
configuration`` lines).  Built by the policy loader (:mod:`fixup.policy.terminate`); pure."""
from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address
from types import MappingProxyType
from typing import Mapping

from fixup.proto.aaa.config import TerminateAaa

DEFAULT_MAX_SESSIONS = 127  # PIX 6.x: 128 sockets, one of them the listener


@dataclass(frozen=True, slots=True)
class DialInLimits:
    """What a dial-in peer may hold before it has authenticated (issue 11 item 5): tunnels in
    all and per peer address, calls per tunnel; and how long each step may take: SCCRQ after the
    TCP connect, the first OCRQ after SCCRP, PPP up (authentication included) after the OCRP.
    Past them the connection is refused or ended, with a log line and a count.  A peer that fails
    ``auth_failures`` logins in ``auth_hold_down`` seconds is refused calls for that long."""

    tunnels: int = 256
    tunnels_per_peer: int = 8
    calls_per_tunnel: int = 4
    sccrq_timeout: float = 10.0
    call_timeout: float = 30.0
    setup_timeout: float = 60.0
    auth_failures: int = 5  # this many failed logins from one peer address within auth_hold_down ...
    auth_hold_down: float = 60.0  # ... and its new calls are refused until this long after the last


@dataclass(frozen=True, slots=True)
class Encryption:
    """``mppe``: none | 40 | 128 | auto; ``required``: end the call when the client will not
    encrypt (seed: "mppe required but not active"); ``stateless``: RFC 3078 H bit policy."""

    mppe: str = "none"
    required: bool = False
    stateless: str = "auto"


@dataclass(frozen=True, slots=True)
class TerminatePolicy:
    """A validated ``terminate`` section."""

    listen_address: IPv4Address | None
    listen_interface: str | None
    local_address: IPv4Address | None  # our end of every PPP link; default: the listen address
    authentication: tuple[str, ...]
    encryption: Encryption
    pool: tuple[IPv4Address, IPv4Address]
    dns: tuple[IPv4Address, ...] = ()
    wins: tuple[IPv4Address, ...] = ()
    users: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    max_sessions: int = DEFAULT_MAX_SESSIONS
    aaa: TerminateAaa = TerminateAaa()
    limits: DialInLimits = DialInLimits()

    @property
    def pool_size(self) -> int:
        return int(self.pool[1]) - int(self.pool[0]) + 1
