"""Server-side LCP (RFC 1661 section 6): we are the authenticator of a PPTP dial-in call.

We request the Authentication-Protocol (RFC 1661 section 6.2; CHAP algorithm 5 from RFC 1994,
MS-CHAP 0x80 from RFC 2433, MS-CHAP-v2 0x81 from RFC 2759) and Magic-Number, optionally PFC
and ACFC; from the peer we accept MRU, ACCM, Magic-Number, PFC and ACFC and reject everything
else, including an Authentication-Protocol (the client asking us to authenticate ourselves).
Echo-Request keepalives (RFC 1661 section 5.8) detect a dead peer.
"""
from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

from fixup.errors import BadPpp
from fixup.proto.ppp.fsm import Event, Judgement, Limits, NegotiationFailed, judge_each
from fixup.proto.ppp.negotiator import ControlProtocol, Negotiator
from fixup.wire.ppp import Code, ControlPacket, Option, Protocol, build_control

DEFAULT_MRU = 1500  # RFC 1661 section 6.1
NO_AUTH_OVERLAP = "authentication protocols with no overlap"
PEER_REFUSED_AUTH = "peer refused to authenticate"
PEER_NOT_RESPONDING = "peer not responding"


class LcpOption(IntEnum):
    """LCP configuration option types (RFC 1661 section 6; RFC 1570, RFC 1990 for 13-19)."""

    MRU = 1
    ACCM = 2  # RFC 1662 section 7.1
    AUTH_PROTOCOL = 3
    QUALITY_PROTOCOL = 4
    MAGIC_NUMBER = 5
    PFC = 7
    ACFC = 8
    CALLBACK = 13
    MRRU = 17
    ENDPOINT_DISCRIMINATOR = 19


# Authentication-Protocol option data (RFC 1661 section 6.2) per method name of the policy.
AUTH_PROTOCOLS: dict[str, bytes] = {
    "pap": Protocol.PAP.to_bytes(2, "big"),  # RFC 1334
    "chap": Protocol.CHAP.to_bytes(2, "big") + b"\x05",  # RFC 1994: MD5
    "mschap": Protocol.CHAP.to_bytes(2, "big") + b"\x80",  # RFC 2433
    "mschap-v2": Protocol.CHAP.to_bytes(2, "big") + b"\x81",  # RFC 2759
}
_AUTH_NAMES = {data: name for name, data in AUTH_PROTOCOLS.items()}
_OPTION_LENGTHS: dict[int, int] = {LcpOption.MRU: 2, LcpOption.ACCM: 4, LcpOption.MAGIC_NUMBER: 4, LcpOption.PFC: 0, LcpOption.ACFC: 0}


def auth_method_name(data: bytes) -> str | None:
    """The policy name of an Authentication-Protocol option's data, or None if unknown."""
    return _AUTH_NAMES.get(bytes(data))


def random_magic() -> int:
    """A non-zero 32-bit Magic-Number (RFC 1661 section 6.4: zero is illegal)."""
    return secrets.randbits(32)


@dataclass(frozen=True, slots=True)
class LcpConfig:
    """``auth_methods``: what we ask the client to do, in order of preference (empty: no
    authentication).  ``min_mru``/``max_mru``: the peer MRUs we accept.  ``echo_interval``:
    seconds between keepalive Echo-Requests when Opened (None: off), ``echo_failures``
    unanswered ones end the link.  ``request_pfc``/``request_acfc``: also ask the peer to
    compress (as the PIX does)."""

    auth_methods: tuple[str, ...] = ("mschap-v2",)
    min_mru: int = 64
    max_mru: int = DEFAULT_MRU
    echo_interval: float | None = 10.0
    echo_failures: int = 5
    request_pfc: bool = False
    request_acfc: bool = False
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        unknown = [name for name in self.auth_methods if name not in AUTH_PROTOCOLS]
        if unknown:
            raise ValueError(f"unknown authentication method(s) {unknown}; known: {sorted(AUTH_PROTOCOLS)}")
        if not 64 <= self.min_mru <= self.max_mru <= 0xFFFF:
            raise ValueError(f"MRU range {self.min_mru}..{self.max_mru} is not within 64..65535")


class LcpServerOptions:
    """The LCP :class:`fixup.proto.ppp.fsm.OptionsHandler` of the authenticator."""

    def __init__(self, config: LcpConfig, random32: Callable[[], int]) -> None:
        self.config = config
        self._random32 = random32
        self.magic = self.new_magic()
        self.auth_method: str | None = config.auth_methods[0] if config.auth_methods else None
        self._tried = {self.auth_method}
        self._requesting = {LcpOption.MAGIC_NUMBER}  # what we still ask for besides authentication
        if config.request_pfc:
            self._requesting.add(LcpOption.PFC)
        if config.request_acfc:
            self._requesting.add(LcpOption.ACFC)
        self.loopbacks = 0  # Configure-Requests carrying our own Magic-Number

    def new_magic(self) -> int:
        magic = 0
        while magic == 0:
            magic = self._random32() & 0xFFFFFFFF
        return magic

    def build_request(self) -> tuple[Option, ...]:
        options = []
        if self.auth_method is not None:
            options.append(Option(LcpOption.AUTH_PROTOCOL, AUTH_PROTOCOLS[self.auth_method]))
        if LcpOption.MAGIC_NUMBER in self._requesting:
            options.append(Option(LcpOption.MAGIC_NUMBER, self.magic.to_bytes(4, "big")))
        options += [Option(kind) for kind in (LcpOption.PFC, LcpOption.ACFC) if kind in self._requesting]
        return tuple(options)

    def judge_request(self, options: tuple[Option, ...]) -> tuple[Judgement, tuple[Option, ...]]:
        return judge_each(options, self._judge_option)

    def _judge_option(self, option: Option) -> tuple[Judgement, Option]:
        """RFC 1661 sections 6.1 - 6.6 for the options we know; anything else is rejected."""
        expected = _OPTION_LENGTHS.get(option.type)
        if expected is None or len(option.data) != expected:
            return Judgement.REJECT, option
        if option.type == LcpOption.MRU:
            mru = int.from_bytes(option.data, "big")
            clamped = min(max(mru, self.config.min_mru), self.config.max_mru)
            if clamped != mru:
                return Judgement.NAK, Option(LcpOption.MRU, clamped.to_bytes(2, "big"))
        elif option.type == LcpOption.MAGIC_NUMBER:
            return self._judge_magic(option)
        return Judgement.ACK, option

    def _judge_magic(self, option: Option) -> tuple[Judgement, Option]:
        """RFC 1661 section 6.4: zero is always nak'd; our own number means a looped-back
        link, so we pick a new one and nak with a different value."""
        magic = int.from_bytes(option.data, "big")
        if magic != 0 and not (magic == self.magic and LcpOption.MAGIC_NUMBER in self._requesting):
            return Judgement.ACK, option
        if magic != 0:
            self.loopbacks += 1
            self.magic = self.new_magic()
        suggestion = self.new_magic()
        while suggestion == self.magic:
            suggestion = self.new_magic()
        return Judgement.NAK, Option(LcpOption.MAGIC_NUMBER, suggestion.to_bytes(4, "big"))

    def on_ack(self, options: tuple[Option, ...]) -> None:
        return None

    def on_nak(self, options: tuple[Option, ...]) -> None:
        for option in options:
            if option.type == LcpOption.AUTH_PROTOCOL and self.auth_method is not None:
                self._next_auth_method(auth_method_name(option.data))
            elif option.type == LcpOption.MAGIC_NUMBER:
                self.magic = self.new_magic()
            elif option.type in (LcpOption.PFC, LcpOption.ACFC):
                self._requesting.discard(LcpOption(option.type))

    def on_reject(self, options: tuple[Option, ...]) -> None:
        for option in options:
            if option.type == LcpOption.AUTH_PROTOCOL:
                raise NegotiationFailed(PEER_REFUSED_AUTH)
            if option.type in (LcpOption.MAGIC_NUMBER, LcpOption.PFC, LcpOption.ACFC):
                self._requesting.discard(LcpOption(option.type))

    def _next_auth_method(self, suggestion: str | None) -> None:
        """The peer nak'd our Authentication-Protocol (RFC 1661 section 6.2): take its
        suggestion when we allow it and have not tried it, else our next untried method."""
        allowed = self.config.auth_methods
        if suggestion in allowed and suggestion not in self._tried:
            chosen: str | None = suggestion
        else:
            chosen = next((name for name in allowed if name not in self._tried), None)
        if chosen is None:
            raise NegotiationFailed(NO_AUTH_OVERLAP)
        self._tried.add(chosen)
        self.auth_method = chosen


class Lcp(ControlProtocol):
    """The LCP of one PPTP call, server side.  Beyond the automaton it answers Echo-Request,
    sends keepalives, records Protocol-Rejects (:meth:`take_rejected_protocols`) and builds
    our own Protocol-Rejects (:meth:`reject_protocol`)."""

    def __init__(self, config: LcpConfig | None = None, *, random32: Callable[[], int] = random_magic) -> None:
        self.config = config or LcpConfig()
        self.options = LcpServerOptions(self.config, random32)
        super().__init__(Negotiator(Protocol.LCP, self.options, limits=self.config.limits,
                                    echo_responder=self._echo_reply_data))
        self.peer_identification: str | None = None  # RFC 1570 Identification text
        self._echo_deadline: float | None = None
        self._unanswered = 0
        self._rejected_protocols: list[int] = []

    # -- what was agreed ------------------------------------------------------------------

    def _local(self, kind: LcpOption) -> Option | None:
        return next((o for o in self.negotiator.local_options if o.type == kind), None)

    def _peer(self, kind: LcpOption) -> Option | None:
        return next((o for o in self.negotiator.peer_options if o.type == kind), None)

    @property
    def auth_method(self) -> str | None:
        """The authentication method the peer acked (``pap``, ``chap``, ``mschap``,
        ``mschap-v2``), or None."""
        option = self._local(LcpOption.AUTH_PROTOCOL)
        return auth_method_name(option.data) if option else None

    @property
    def magic(self) -> int:
        """Our Magic-Number as acked by the peer; 0 when not negotiated (RFC 1661 section 6.4)."""
        option = self._local(LcpOption.MAGIC_NUMBER)
        return int.from_bytes(option.data, "big") if option else 0

    @property
    def peer_magic(self) -> int:
        option = self._peer(LcpOption.MAGIC_NUMBER)
        return int.from_bytes(option.data, "big") if option else 0

    @property
    def peer_mru(self) -> int:
        """The largest packet we may send (RFC 1661 section 6.1)."""
        option = self._peer(LcpOption.MRU)
        return int.from_bytes(option.data, "big") if option else DEFAULT_MRU

    @property
    def send_pfc(self) -> bool:
        """We may compress the Protocol field of non-LCP frames we send (RFC 1661 section 6.5)."""
        return self._peer(LcpOption.PFC) is not None

    @property
    def send_acfc(self) -> bool:
        """We may omit Address and Control in non-LCP frames we send (RFC 1661 section 6.6)."""
        return self._peer(LcpOption.ACFC) is not None

    # -- the codes beyond the automaton (RFC 1661 sections 5.7 - 5.9, RFC 1570) -------------

    def take_rejected_protocols(self) -> list[int]:
        """Protocols the peer Protocol-Rejected since the last call (e.g. 0x80FD: CCP)."""
        rejected, self._rejected_protocols = self._rejected_protocols, []
        return rejected

    def reject_protocol(self, protocol: int, info: bytes) -> bytes:
        """An LCP Protocol-Reject (RFC 1661 section 5.7) of a received ``protocol`` frame, as
        LCP information ready for build_frame; truncated to the peer's MRU.  Only to be sent
        while LCP is Opened; not queued on :meth:`take_output`."""
        data = (protocol & 0xFFFF).to_bytes(2, "big") + bytes(info)
        data = data[:self.peer_mru - 4]
        return build_control(ControlPacket(Code.PROTOCOL_REJECT, self.negotiator.next_identifier(), data))

    def _receive_extra(self, packet: ControlPacket, now: float) -> bool:
        code = packet.code
        if code == Code.PROTOCOL_REJECT:
            self._receive_protocol_reject(packet, now)
        elif code == Code.ECHO_REPLY:
            if packet.data[:4] != self.magic.to_bytes(4, "big") or self.magic == 0:
                self._unanswered = 0  # else our own echo looped back (RFC 1661 section 5.8)
            self.negotiator.signal(Event.RXR, now, packet)
        elif code == Code.IDENTIFICATION:
            self.peer_identification = packet.data[4:].decode("utf-8", "replace")
            self.negotiator.signal(Event.RXR, now, packet)
        elif code in (Code.ECHO_REQUEST, Code.DISCARD_REQUEST, Code.TIME_REMAINING):
            self.negotiator.signal(Event.RXR, now, packet)
        else:
            return False
        return True

    def _receive_protocol_reject(self, packet: ControlPacket, now: float) -> None:
        """RFC 1661 section 5.7: a rejected LCP is catastrophic (RXJ-); any other protocol
        is recorded for the session to stop it (RXJ+)."""
        if len(packet.data) < 2:
            raise BadPpp("Protocol-Reject without Rejected-Protocol", where="LCP Protocol-Reject", offset=4)
        protocol = int.from_bytes(packet.data[:2], "big")
        if protocol == Protocol.LCP:
            self.negotiator.receive_reject(True, now, "peer rejected LCP")
            return
        self._rejected_protocols.append(protocol)
        self.negotiator.emit("protocol-rejected")
        self.negotiator.receive_reject(False, now)

    def _echo_reply_data(self, request: ControlPacket) -> bytes:
        """Echo-Reply: our Magic-Number, then the request's data (RFC 1661 section 5.8)."""
        return self.magic.to_bytes(4, "big") + request.data[4:]

    # -- keepalive ------------------------------------------------------------------------

    def poll(self, now: float) -> None:
        self.negotiator.poll(now)
        if self.opened and self._echo_deadline is not None and now >= self._echo_deadline:
            self._keepalive(now)
        self._after(now)

    def _keepalive(self, now: float) -> None:
        if self._unanswered >= self.config.echo_failures:
            self.negotiator.fail(now, PEER_NOT_RESPONDING)
            return
        self._unanswered += 1
        self.negotiator.send(Code.ECHO_REQUEST, self.negotiator.next_identifier(), self.magic.to_bytes(4, "big"))
        self._echo_deadline = now + (self.config.echo_interval or 0.0)

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (self.negotiator.next_deadline(), self._echo_deadline) if d is not None]
        return min(deadlines, default=None)

    def _after(self, now: float) -> None:
        if not self.opened or self.config.echo_interval is None:
            self._echo_deadline = None
            self._unanswered = 0
        elif self._echo_deadline is None:
            self._echo_deadline = now + self.config.echo_interval
