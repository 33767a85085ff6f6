"""Configuration of the pure tracker (no I/O): what the policy hands to the protocol layer."""
from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Idle timeouts in seconds.

    ``control_idle``: a control connection with no segment for this long is forgotten and its
    calls released (PIX ``timeout conn 1:00:00``).  ``call_idle``: an established call with no
    GRE and no control message for this long is released.  ``call_setup``: a call whose
    request got no reply (OCRQ without OCRP, ICRQ without ICRP) is released after this long.
    ``clearing``: after a Call-Clear-Request or Stop-Control-Connection-Request the IDs stay
    translated this long so the answering CDN / StopCCRP reaches the client.
    ``gre_lease``: the kernel path's GRE translation of a call expires this long after the
    daemon last refreshed it (issue 12 item 3): GRE of live calls flows across a restart, and a
    dead daemon leaves no translation behind for longer than this.
    """

    control_idle: float = 3600.0
    call_idle: float = 600.0
    call_setup: float = 60.0
    clearing: float = 10.0
    gre_lease: float = 120.0


@dataclass(frozen=True, slots=True)
class Limits:
    """What one inside host, and all of them, may hold (issue 11, our ``floodguard``):
    ``calls_per_connection`` translated Call IDs on one control connection, ``calls_per_client``
    toward one server from one inside address: past them the segment that would take one more is
    dropped (TCP retransmits it) and counted (``call-quota-connection`` / ``call-quota-client``).
    ``connections_per_client`` and ``connections`` (in all) tracked control connections: past
    them a new connection's SYN is dropped (``connection-quota-client`` / ``connection-quota``)."""

    calls_per_connection: int = 64
    calls_per_client: int = 1024
    connections_per_client: int = 256
    connections: int = 16384


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    """``pat_address``: the one address all inside clients share toward the servers.
    ``control_ports``: TCP ports inspected as PPTP control connections (``fixup protocol pptp``)."""

    pat_address: IPv4Address
    control_ports: frozenset[int] = frozenset({1723})
    timeouts: Timeouts = field(default_factory=Timeouts)
    limits: Limits = field(default_factory=Limits)
