"""What the AAA clients are configured with: server groups (PIX ``aaa-server NAME protocol
radius|tacacs+`` / ``aaa-server NAME (if) host ADDR KEY timeout 5``, seed 001) and what the
dial-in server asks of them (``vpdn group 1 client authentication|accounting aaa NAME``).
Built by the policy loader (:mod:`fixup.policy.aaa`); pure."""
from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Final

RADIUS: Final = "radius"
TACACS_PLUS: Final = "tacacs+"
PROTOCOLS: Final = (RADIUS, TACACS_PLUS)
DEFAULT_PORTS: Final = {RADIUS: 1812, TACACS_PLUS: 49}  # RFC 2865 section 3, RFC 8907 section 4.1
DEFAULT_TIMEOUT: Final = 5.0  # seconds per try (PIX default)
DEFAULT_RETRIES: Final = 3  # tries per host after the first


@dataclass(frozen=True, slots=True)
class AaaHost:
    """One server of a group.  ``timeout``: seconds to wait for each answer; ``retries``: how
    many times a request is sent again to this host before the next host is tried.
    ``accounting_port``: RADIUS accounting (RFC 2866 section 3: 1813, default port + 1)."""

    address: IPv4Address
    port: int
    secret: bytes = field(repr=False)  # never in a log line or a traceback
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    accounting_port: int = 0  # 0 for TACACS+

    @property
    def label(self) -> str:
        return f"{self.address}:{self.port}"


@dataclass(frozen=True, slots=True)
class AaaGroup:
    """A named group; hosts are tried in order (failover), the first that answers wins."""

    name: str
    protocol: str  # RADIUS or TACACS_PLUS
    hosts: tuple[AaaHost, ...]


@dataclass(frozen=True, slots=True)
class TerminateAaa:
    """``terminate.aaa``: PIX ``vpdn group 1 client authentication aaa GROUP`` and
    ``vpdn group 1 client accounting GROUP``; ``interim_interval``: seconds between
    Interim-Update records when the server sends no Acct-Interim-Interval (None: none)."""

    authentication: AaaGroup | None = None
    accounting: AaaGroup | None = None
    interim_interval: float | None = None
