"""Server-side IPCP (RFC 1332, with the Microsoft DNS/NBNS options of RFC 1877).

We request IP-Address = our local address (RFC 1332 section 3.3) and hand the peer the address
the session assigned it: an IP-Address of 0.0.0.0 or any other address is nak'd with the
assigned one.  Primary/secondary DNS (129/131) and NBNS (130/132, WINS) are nak'd with the
configured servers, or rejected when none is configured (RFC 1877 sections 1.1 - 1.4).
IP-Compression-Protocol (RFC 1332 section 3.2, Van Jacobson), the deprecated IP-Addresses and
anything unknown are rejected.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from ipaddress import IPv4Address

from fixup.proto.ppp.fsm import Judgement, Limits, judge_each
from fixup.proto.ppp.negotiator import ControlProtocol, Negotiator
from fixup.wire.ppp import Option, Protocol


class IpcpOption(IntEnum):
    """IPCP configuration option types (RFC 1332 section 3, RFC 1877 section 1)."""

    IP_ADDRESSES = 1  # deprecated, RFC 1172
    IP_COMPRESSION_PROTOCOL = 2
    IP_ADDRESS = 3
    PRIMARY_DNS = 129
    PRIMARY_NBNS = 130
    SECONDARY_DNS = 131
    SECONDARY_NBNS = 132


@dataclass(frozen=True, slots=True)
class IpcpConfig:
    """``local``: our end of every link; the name servers handed to clients (None: reject
    the client's request for it)."""

    local: IPv4Address
    primary_dns: IPv4Address | None = None
    secondary_dns: IPv4Address | None = None
    primary_nbns: IPv4Address | None = None
    secondary_nbns: IPv4Address | None = None
    limits: Limits = field(default_factory=Limits)


def address_option(kind: int, address: IPv4Address) -> Option:
    return Option(kind, address.packed)


class IpcpServerOptions:
    """The IPCP :class:`fixup.proto.ppp.fsm.OptionsHandler` of the address assigner."""

    def __init__(self, config: IpcpConfig, assigned: IPv4Address) -> None:
        self.config = config
        self.assigned = assigned
        self.servers: dict[int, IPv4Address | None] = {
            IpcpOption.PRIMARY_DNS: config.primary_dns,
            IpcpOption.SECONDARY_DNS: config.secondary_dns,
            IpcpOption.PRIMARY_NBNS: config.primary_nbns,
            IpcpOption.SECONDARY_NBNS: config.secondary_nbns,
        }
        self._request_address = True

    def build_request(self) -> tuple[Option, ...]:
        if not self._request_address:
            return ()
        return (address_option(IpcpOption.IP_ADDRESS, self.config.local),)

    def judge_request(self, options: tuple[Option, ...]) -> tuple[Judgement, tuple[Option, ...]]:
        """RFC 1332 section 3.3: a peer that does not ask for an address is told the
        assigned one in the Nak (a hint), as RFC 1661 section 5.3 allows."""
        asked = any(option.type == IpcpOption.IP_ADDRESS for option in options)
        hints = () if asked else (address_option(IpcpOption.IP_ADDRESS, self.assigned),)
        return judge_each(options, self._judge_option, hints=hints)

    def _judge_option(self, option: Option) -> tuple[Judgement, Option]:
        if len(option.data) != 4:
            return Judgement.REJECT, option
        if option.type == IpcpOption.IP_ADDRESS:
            wanted: IPv4Address | None = self.assigned
        elif option.type in self.servers:
            wanted = self.servers[option.type]
        else:
            return Judgement.REJECT, option
        if wanted is None:
            return Judgement.REJECT, option
        if option.data != wanted.packed:
            return Judgement.NAK, address_option(option.type, wanted)
        return Judgement.ACK, option

    def on_ack(self, options: tuple[Option, ...]) -> None:
        return None

    def on_nak(self, options: tuple[Option, ...]) -> None:
        """Our local address is ours to choose: a Nak suggesting another is ignored and the
        same request repeated (Max-Configure ends a peer that insists)."""
        return None

    def on_reject(self, options: tuple[Option, ...]) -> None:
        if any(option.type == IpcpOption.IP_ADDRESS for option in options):
            self._request_address = False


class Ipcp(ControlProtocol):
    """The IPCP of one call, server side; ``assigned`` is the client's address from the pool."""

    def __init__(self, config: IpcpConfig, assigned: IPv4Address) -> None:
        self.config = config
        self.options = IpcpServerOptions(config, assigned)
        super().__init__(Negotiator(Protocol.IPCP, self.options, limits=config.limits))

    @property
    def peer_address(self) -> IPv4Address | None:
        """The client's address once IPCP is Opened (what we acked), else None."""
        if not self.opened:
            return None
        for option in self.negotiator.peer_options:
            if option.type == IpcpOption.IP_ADDRESS:
                return IPv4Address(option.data)
        return None

    @property
    def local_address(self) -> IPv4Address | None:
        """Our address as the peer acked it, once Opened."""
        if not self.opened:
            return None
        for option in self.negotiator.local_options:
            if option.type == IpcpOption.IP_ADDRESS:
                return IPv4Address(option.data)
        return None
