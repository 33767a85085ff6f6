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

    @property
    def pool_size(self) -> int:
        return int(self.pool[1]) - int(self.pool[0]) + 1
