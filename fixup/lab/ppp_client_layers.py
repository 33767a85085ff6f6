"""The client's control protocols, pure: LCP (RFC 1661 section 6), IPCP (RFC 1332 with the
DNS options of RFC 1877) and CCP negotiating MPPE (RFC 1962, RFC 3078 section 2), each an
options handler on the same RFC 1661 automaton the server runs
(:class:`fixup.proto.ppp.negotiator.Negotiator`).  Used by :class:`fixup.lab.ppp_client.PppClient`.
"""
from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address

from fixup.proto.ppp.ccp import KEY_LENGTHS, MPPE_H, MPPE_OPTION, mppe_option
from fixup.proto.ppp.fsm import Event, Judgement, Limits, NegotiationFailed, judge_each
from fixup.proto.ppp.ipcp import IpcpOption
from fixup.proto.ppp.lcp import AUTH_PROTOCOLS, LcpOption, auth_method_name
from fixup.proto.ppp.negotiator import ControlProtocol, Negotiator
from fixup.wire.ppp import Code, ControlPacket, Option, Protocol

MPPE_REFUSED = "MPPE required but peer refused"
AUTH_PREFERENCE = ("mschap-v2", "mschap", "chap", "pap")  # strongest first, as pppd suggests them


def _find(options: tuple[Option, ...], kind: int) -> Option | None:
    return next((option for option in options if option.type == kind), None)


# -- LCP (RFC 1661 section 6) -------------------------------------------------------------------


class ClientLcpOptions:
    """The client's LCP :class:`fixup.proto.ppp.fsm.OptionsHandler`: we ask for Magic-Number
    (and MRU), accept MRU, ACCM, Magic-Number, PFC, ACFC and an Authentication-Protocol we
    allow; an Authentication-Protocol we do not allow is nak'd with one we do, or rejected when
    we allow none (RFC 1661 section 6.2)."""

    def __init__(self, auth_methods: tuple[str, ...], mru: int | None, random32: Callable[[], int]) -> None:
        self.auth_methods = auth_methods
        self._random32 = random32
        self.magic = 0
        self.magic = self._new_magic()
        self.mru = mru
        self.auth_refused = False  # we nak'd or rejected the server's Authentication-Protocol
        self._suggested: list[str] = []

    def _new_magic(self) -> int:
        """A non-zero Magic-Number other than the current one (RFC 1661 section 6.4)."""
        magic = 0
        while magic in (0, self.magic):
            magic = self._random32() & 0xFFFFFFFF
        return magic

    def build_request(self) -> tuple[Option, ...]:
        options = [Option(LcpOption.MAGIC_NUMBER, self.magic.to_bytes(4, "big"))]
        if self.mru is not None:
            options.insert(0, Option(LcpOption.MRU, self.mru.to_bytes(2, "big")))
        return tuple(options)

    def judge_request(self, options: tuple[Option, ...]) -> tuple[Judgement, tuple[Option, ...]]:
        return judge_each(options, self._judge_option)

    def _judge_option(self, option: Option) -> tuple[Judgement, Option]:
        if option.type == LcpOption.AUTH_PROTOCOL:
            return self._judge_auth(option)
        sizes = {LcpOption.MRU: 2, LcpOption.ACCM: 4, LcpOption.MAGIC_NUMBER: 4, LcpOption.PFC: 0, LcpOption.ACFC: 0}
        if sizes.get(option.type) != len(option.data):
            return Judgement.REJECT, option
        if option.type == LcpOption.MAGIC_NUMBER and int.from_bytes(option.data, "big") in (0, self.magic):
            # RFC 1661 section 6.4: zero, or our own number (a looped-back link)
            return Judgement.NAK, Option(LcpOption.MAGIC_NUMBER, self._new_magic().to_bytes(4, "big"))
        return Judgement.ACK, option

    def _judge_auth(self, option: Option) -> tuple[Judgement, Option]:
        """RFC 1661 section 6.2: Nak with a protocol we would use, strongest not yet suggested."""
        if auth_method_name(option.data) in self.auth_methods:
            return Judgement.ACK, option
        self.auth_refused = True
        ours = [name for name in AUTH_PREFERENCE if name in self.auth_methods]
        if not ours:
            return Judgement.REJECT, option
        fresh = [name for name in ours if name not in self._suggested] or ours
        self._suggested.append(fresh[0])
        return Judgement.NAK, Option(LcpOption.AUTH_PROTOCOL, AUTH_PROTOCOLS[fresh[0]])

    def on_ack(self, options: tuple[Option, ...]) -> None:
        return None

    def on_nak(self, options: tuple[Option, ...]) -> None:
        for option in options:
            if option.type == LcpOption.MAGIC_NUMBER:
                self.magic = self._new_magic()
            elif option.type == LcpOption.MRU and len(option.data) == 2 and self.mru is not None:
                self.mru = max(64, int.from_bytes(option.data, "big"))

    def on_reject(self, options: tuple[Option, ...]) -> None:
        if _find(options, LcpOption.MRU):
            self.mru = None
        if _find(options, LcpOption.MAGIC_NUMBER):
            raise NegotiationFailed("peer rejected Magic-Number")


class ClientLcp(ControlProtocol):
    """LCP of the client: the automaton plus Echo, Discard, Identification, Time-Remaining and
    Protocol-Reject (RFC 1661 sections 5.7 - 5.9, RFC 1570)."""

    def __init__(self, options: ClientLcpOptions, limits: Limits) -> None:
        self.options = options
        super().__init__(Negotiator(Protocol.LCP, options, limits=limits, echo_responder=self._echo_reply))
        self.rejected_protocols: list[int] = []

    @property
    def auth_method(self) -> str | None:
        """The server's Authentication-Protocol as we acked it."""
        option = _find(self.negotiator.peer_options, LcpOption.AUTH_PROTOCOL)
        return auth_method_name(option.data) if option else None

    @property
    def magic(self) -> int:
        option = _find(self.negotiator.local_options, LcpOption.MAGIC_NUMBER)
        return int.from_bytes(option.data, "big") if option else 0

    def reject_protocol(self, protocol: int, info: bytes) -> None:
        """Queue a Protocol-Reject (RFC 1661 section 5.7); only sent when LCP is Opened."""
        if self.opened:
            data = (protocol & 0xFFFF).to_bytes(2, "big") + info[:1400]
            self.negotiator.send(Code.PROTOCOL_REJECT, self.negotiator.next_identifier(), data)

    def _echo_reply(self, request: ControlPacket) -> bytes:
        """RFC 1661 section 5.8: our Magic-Number, then the request's data."""
        return self.magic.to_bytes(4, "big") + request.data[4:]

    def _receive_extra(self, packet: ControlPacket, now: float) -> bool:
        if packet.code == Code.PROTOCOL_REJECT:
            protocol = int.from_bytes(packet.data[:2], "big") if len(packet.data) >= 2 else Protocol.LCP
            if protocol == Protocol.LCP:
                self.negotiator.receive_reject(True, now, "peer rejected LCP")
            else:
                self.rejected_protocols.append(protocol)
                self.negotiator.receive_reject(False, now)
            return True
        if packet.code in (Code.ECHO_REQUEST, Code.ECHO_REPLY, Code.DISCARD_REQUEST, Code.IDENTIFICATION,
                           Code.TIME_REMAINING):
            self.negotiator.signal(Event.RXR, now, packet)
            return True
        return False


# -- IPCP (RFC 1332, RFC 1877) ------------------------------------------------------------------


class ClientIpcpOptions:
    """Ask for IP-Address 0.0.0.0 and the name servers (RFC 1332 section 3.3, RFC 1877 sections
    1.1 and 1.3) and take what the server's Nak names; ack the server's own address."""

    def __init__(self, request_dns: bool = True) -> None:
        kinds = [IpcpOption.IP_ADDRESS] + ([IpcpOption.PRIMARY_DNS, IpcpOption.SECONDARY_DNS] if request_dns else [])
        self.values: dict[int, IPv4Address] = {kind: IPv4Address(0) for kind in kinds}

    def build_request(self) -> tuple[Option, ...]:
        return tuple(Option(kind, address.packed) for kind, address in self.values.items())

    def judge_request(self, options: tuple[Option, ...]) -> tuple[Judgement, tuple[Option, ...]]:
        def judge(option: Option) -> tuple[Judgement, Option]:
            usable = option.type == IpcpOption.IP_ADDRESS and len(option.data) == 4 and any(option.data)
            return (Judgement.ACK if usable else Judgement.REJECT), option
        return judge_each(options, judge)

    def on_ack(self, options: tuple[Option, ...]) -> None:
        return None

    def on_nak(self, options: tuple[Option, ...]) -> None:
        for option in options:
            if option.type in self.values and len(option.data) == 4:
                self.values[option.type] = IPv4Address(option.data)

    def on_reject(self, options: tuple[Option, ...]) -> None:
        if _find(options, IpcpOption.IP_ADDRESS):
            raise NegotiationFailed("peer refused to assign an address")
        for option in options:
            self.values.pop(option.type, None)


class ClientIpcp(ControlProtocol):
    def __init__(self, limits: Limits, request_dns: bool = True) -> None:
        self.options = ClientIpcpOptions(request_dns)
        super().__init__(Negotiator(Protocol.IPCP, self.options, limits=limits))

    def _acked(self, options: tuple[Option, ...], kind: int) -> IPv4Address | None:
        option = _find(options, kind) if self.opened else None
        return IPv4Address(option.data) if option is not None else None

    @property
    def address(self) -> IPv4Address | None:
        """Our address, once IPCP is Opened."""
        return self._acked(self.negotiator.local_options, IpcpOption.IP_ADDRESS)

    @property
    def peer_address(self) -> IPv4Address | None:
        return self._acked(self.negotiator.peer_options, IpcpOption.IP_ADDRESS)

    @property
    def dns(self) -> tuple[IPv4Address, ...]:
        kinds = (IpcpOption.PRIMARY_DNS, IpcpOption.SECONDARY_DNS)
        found = (self._acked(self.negotiator.local_options, kind) for kind in kinds)
        return tuple(address for address in found if address is not None)


# -- CCP / MPPE (RFC 1962, RFC 3078 section 2) ------------------------------------------------


class ClientCcpOptions:
    """Offer every MPPE strength we allow (RFC 3078 section 2: the client lists what it
    supports), then take the server's single choice when we allow it.  ``stateless``: True
    offers and insists on H, False refuses it, None follows the server."""

    def __init__(self, strengths: tuple[int, ...], required: bool, stateless: bool | None) -> None:
        self.strengths = strengths
        self.required = required
        self.stateless = stateless
        bits = 0
        for bit in strengths:
            bits |= bit
        self.offer: int | None = (bits | (0 if stateless is False else MPPE_H)) if strengths else None

    def acceptable(self, bits: int) -> bool:
        """One strength we allow, nothing but H besides, H as ``stateless`` says."""
        strengths = [bit for bit in KEY_LENGTHS if bits & bit]
        if len(strengths) != 1 or strengths[0] not in self.strengths or bits & ~(MPPE_H | strengths[0]):
            return False
        return self.stateless is None or self.stateless == bool(bits & MPPE_H)

    def _counter_offer(self, bits: int) -> int:
        strength = next((bit for bit in self.strengths if bits & bit), self.strengths[0])
        wants_h = bool(bits & MPPE_H) if self.stateless is None else self.stateless
        return strength | (MPPE_H if wants_h else 0)

    def build_request(self) -> tuple[Option, ...]:
        return (mppe_option(self.offer),) if self.offer is not None else ()

    def judge_request(self, options: tuple[Option, ...]) -> tuple[Judgement, tuple[Option, ...]]:
        def judge(option: Option) -> tuple[Judgement, Option]:
            if option.type != MPPE_OPTION or len(option.data) != 4 or self.offer is None:
                return Judgement.REJECT, option
            bits = int.from_bytes(option.data, "big")
            if self.acceptable(bits):
                return Judgement.ACK, option
            return Judgement.NAK, mppe_option(self._counter_offer(bits))
        asked = _find(options, MPPE_OPTION) is not None
        hints = (mppe_option(self._counter_offer(0)),) if self.required and self.offer is not None and not asked else ()
        return judge_each(options, judge, hints=hints)

    def on_ack(self, options: tuple[Option, ...]) -> None:
        return None

    def on_nak(self, options: tuple[Option, ...]) -> None:
        option = _find(options, MPPE_OPTION)
        if option is None or len(option.data) != 4 or self.offer is None:
            return
        suggested = int.from_bytes(option.data, "big")
        if self.acceptable(suggested):
            self.offer = suggested
        else:
            self._give_up()

    def on_reject(self, options: tuple[Option, ...]) -> None:
        if _find(options, MPPE_OPTION) is not None:
            self._give_up()

    def _give_up(self) -> None:
        if self.required:
            raise NegotiationFailed(MPPE_REFUSED)
        self.offer = None


class ClientCcp(ControlProtocol):
    """CCP of the client; Reset-Request / Reset-Ack (RFC 1962 section 2.1) for the MPPE engine."""

    def __init__(self, options: ClientCcpOptions, limits: Limits) -> None:
        self.options = options
        super().__init__(Negotiator(Protocol.CCP, options, limits=limits))
        self.reset_requests = 0

    def agreed_bits(self) -> tuple[int | None, int | None]:
        """(our MPPE bits, the server's) as acked; None where no MPPE option was agreed."""
        def bits(options: tuple[Option, ...]) -> int | None:
            option = _find(options, MPPE_OPTION)
            return int.from_bytes(option.data, "big") if option is not None and len(option.data) == 4 else None
        return bits(self.negotiator.local_options), bits(self.negotiator.peer_options)

    def request_reset(self) -> None:
        if self.opened:
            self.negotiator.send(Code.RESET_REQUEST, self.negotiator.next_identifier())

    def _receive_extra(self, packet: ControlPacket, now: float) -> bool:
        if packet.code == Code.RESET_REQUEST:
            if self.opened:
                self.reset_requests += 1
                self.negotiator.send(Code.RESET_ACK, packet.identifier)
                self.negotiator.emit("reset-request")
            return True
        return packet.code == Code.RESET_ACK
