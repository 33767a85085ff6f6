"""AAA for terminated sessions, pure: what the session layer asks a RADIUS (RFC 2865/2866) or
TACACS+ (RFC 8907) server and what comes back, like PIX ``vpdn group 1 client authentication
aaa AuthInbound`` (seed 001).

Shared records live here; the protocol clients are :mod:`fixup.proto.aaa.radius` and
:mod:`fixup.proto.aaa.tacacs` (sans-I/O: datagrams / stream bytes in and out, ``now`` for every
timer), their sockets in :mod:`fixup.io.aaa.radius` and :mod:`fixup.io.aaa.tacacs`.
"""
from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Final

ACCT_START: Final = "start"
ACCT_INTERIM: Final = "interim"
ACCT_STOP: Final = "stop"
ACCT_AUTHENTIC: Final[dict[str, int]] = {"radius": 1, "local": 2, "remote": 3}  # RFC 2866 section 5.6

# RFC 2866 section 5.10, Acct-Terminate-Cause: the causes a PPTP NAS can give.
TERMINATE_CAUSES: Final[dict[str, int]] = {
    "user-request": 1,  # LCP Terminate / CDN / StopCCRQ from the client
    "lost-carrier": 2,  # the control connection or the GRE went away
    "idle-timeout": 4,
    "session-timeout": 5,
    "admin-reset": 6,  # clear vpdn
    "admin-reboot": 7,  # the daemon stops
    "port-error": 8,
    "nas-error": 9,
    "nas-request": 10,
    "service-unavailable": 15,  # e.g. "mppe required but not active"
    "user-error": 17,
}


@dataclass(frozen=True, slots=True)
class NasIdentity:
    """Who we are to the AAA server (RFC 2865 sections 5.4 and 5.32)."""

    address: IPv4Address  # NAS-IP-Address; also the source address of our requests
    identifier: str = "fixup"  # NAS-Identifier


@dataclass(frozen=True, slots=True)
class AuthContext:
    """Where a login comes from, for the AAA server and for accounting.

    ``nas_port``: our call id (NAS-Port, RFC 2865 section 5.5; NAS-Port-Type Virtual).
    ``calling_station``: the client's public address (Calling-Station-Id, section 5.31).
    ``called_station``: the address the client dialled (Called-Station-Id, section 5.30).
    ``session_id``: Acct-Session-Id (RFC 2866 section 5.5), the same in every record of a
    session and in the Access-Request."""

    nas_port: int
    calling_station: str
    called_station: str
    session_id: str


@dataclass(frozen=True, slots=True)
class AccountingRecord:
    """One Accounting-Request's worth (RFC 2866 section 4.1).  ``status``: ``ACCT_START``,
    ``ACCT_INTERIM`` or ``ACCT_STOP``; counters are from the client's point of view as RFC 2866
    section 5.3/5.4 define them (input = from the client to us).  ``authentic``: ``ACCT_AUTHENTIC`` key.  Octets may exceed 2**32: the
    RADIUS client splits them into Acct-*-Gigawords (RFC 2869 section 5.1/5.2).
    ``terminate_cause``: a key of ``TERMINATE_CAUSES``, Stop only.  ``radius_class``: the Class
    attribute of the Access-Accept, echoed (RFC 2865 section 5.25)."""

    status: str
    context: AuthContext
    username: str
    framed_address: IPv4Address
    session_time: int = 0
    input_octets: int = 0
    output_octets: int = 0
    input_packets: int = 0
    output_packets: int = 0
    terminate_cause: str | None = None
    radius_class: bytes | None = None
    authentic: str = "radius"  # who checked the login (Acct-Authentic, RFC 2866 5.6): radius, local, remote
