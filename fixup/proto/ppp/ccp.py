"""Server-side CCP (RFC 1962) negotiating MPPE (RFC 3078 section 2, CCP option 18).

The MPPE option carries 32 "Supported Bits": H (stateless) 0x01000000, M (56-bit) 0x80,
S (128-bit) 0x40, L (40-bit) 0x20, D (obsolete) 0x10, C (MPPC compression) 0x01.  As server we
request exactly one strength allowed by the policy (128 preferred, and among those the peer
offers), H as the stateless policy says, never C; a peer request is acked only when it equals
that value, else nak'd with it (RFC 3078 section 2: the Nak carries one strength).  Both
directions end up with the same bits.  Reset-Request is answered with Reset-Ack (RFC 1962
section 2.1) and reported so the MPPE engine re-keys.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from fixup.proto.ppp.fsm import Judgement, Limits, NegotiationFailed, judge_each
from fixup.proto.ppp.negotiator import ControlProtocol, Negotiator
from fixup.errors import BadInput
from fixup.wire.ppp import Code, ControlPacket, Option, Protocol, parse_options

MPPE_OPTION = 18  # RFC 3078 section 2 (CCP option type, RFC 1962 section 3)
MPPE_H = 0x01000000  # stateless mode
MPPE_M = 0x00000080  # 56-bit
MPPE_S = 0x00000040  # 128-bit
MPPE_L = 0x00000020  # 40-bit
MPPE_D = 0x00000010  # obsolete
MPPE_C = 0x00000001  # MPPC compression, RFC 2118
KEY_LENGTHS = {MPPE_S: 128, MPPE_L: 40}
STATELESS_MODES = ("auto", "always", "never")

NO_COMMON_STRENGTH = "no common MPPE strength"
PEER_REFUSED_MPPE = "peer refused MPPE"
MPPE_NOT_ACTIVE = "mppe required but not active"
DIRECTIONS_DIFFER = "MPPE options differ by direction"


@dataclass(frozen=True, slots=True)
class CcpPolicy:
    """Which MPPE strengths we allow, whether the call must be encrypted, and the stateless
    (H bit) policy: ``auto`` asks for H until the peer shows it lacks it, ``always`` /
    ``never`` insist."""

    allow_40: bool = True
    allow_128: bool = True
    required: bool = False
    stateless: str = "auto"
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        if self.stateless not in STATELESS_MODES:
            raise ValueError(f"stateless must be one of {STATELESS_MODES}, not {self.stateless!r}")
        if self.required and not (self.allow_40 or self.allow_128):
            raise ValueError("encryption required but no MPPE strength allowed")

    @property
    def strengths(self) -> tuple[int, ...]:
        """Allowed strength bits, preferred first."""
        return tuple(bit for bit, allowed in ((MPPE_S, self.allow_128), (MPPE_L, self.allow_40)) if allowed)


@dataclass(frozen=True, slots=True)
class MppeResult:
    """What CCP agreed: the option bits, the session key length and stateless mode."""

    bits: int
    key_length: int  # 40 or 128
    stateless: bool


def mppe_option(bits: int) -> Option:
    return Option(MPPE_OPTION, bits.to_bytes(4, "big"))


def mppe_result(bits: int) -> MppeResult | None:
    """The agreement a single-strength bit set stands for, or None if it has not exactly one
    of S and L."""
    strengths = [bit for bit in KEY_LENGTHS if bits & bit]
    if len(strengths) != 1:
        return None
    return MppeResult(bits, KEY_LENGTHS[strengths[0]], bool(bits & MPPE_H))


class CcpServerOptions:
    """The CCP :class:`fixup.proto.ppp.fsm.OptionsHandler`: MPPE only, every other option
    (Stac LZS, MPPC alone ...) rejected."""

    def __init__(self, policy: CcpPolicy) -> None:
        self.policy = policy
        self.chosen: int | None = self._choose(None)  # the bits we request and accept
        self._locked = False  # the peer acked our request: chosen no longer follows its offers

    def _choose(self, offered: int | None) -> int | None:
        """One allowed strength (one the peer offers if any, 128 first) plus H per policy;
        ``auto`` asks for H until the peer's offer or Nak shows it lacks it (stateless mode
        survives GRE loss without Reset-Requests, RFC 3078 section 3.3)."""
        strengths = self.policy.strengths
        if not strengths:
            return None
        strength = next((bit for bit in strengths if offered is not None and offered & bit), strengths[0])
        stateless = self.policy.stateless
        wants_h = stateless == "always" or (stateless == "auto" and (offered is None or bool(offered & MPPE_H)))
        return strength | (MPPE_H if wants_h else 0)

    def build_request(self) -> tuple[Option, ...]:
        return (mppe_option(self.chosen),) if self.chosen is not None else ()

    def judge_request(self, options: tuple[Option, ...]) -> tuple[Judgement, tuple[Option, ...]]:
        """RFC 3078 section 2: the peer lists what it supports; we nak with the one value
        we will use.  A request without MPPE is nak'd with ours when we want MPPE."""
        for option in options:
            if option.type == MPPE_OPTION and len(option.data) == 4 and not self._locked:
                self.chosen = self._choose(int.from_bytes(option.data, "big"))
        asked = any(option.type == MPPE_OPTION for option in options)
        hints = (mppe_option(self.chosen),) if self.chosen is not None and not asked else ()
        return judge_each(options, self._judge_option, hints=hints)

    def _judge_option(self, option: Option) -> tuple[Judgement, Option]:
        if option.type != MPPE_OPTION or len(option.data) != 4 or self.chosen is None:
            return Judgement.REJECT, option
        if int.from_bytes(option.data, "big") != self.chosen:
            return Judgement.NAK, mppe_option(self.chosen)
        return Judgement.ACK, option

    def on_ack(self, options: tuple[Option, ...]) -> None:
        """Our request is agreed: from now on the peer must use the same bits."""
        for option in options:
            if option.type == MPPE_OPTION and len(option.data) == 4:
                self.chosen, self._locked = int.from_bytes(option.data, "big"), True

    def on_nak(self, options: tuple[Option, ...]) -> None:
        """The peer's Nak names what it will do; take an allowed strength from it or fail."""
        for option in options:
            if option.type != MPPE_OPTION or len(option.data) != 4 or self.chosen is None:
                continue
            suggested = int.from_bytes(option.data, "big")
            if not any(suggested & bit for bit in self.policy.strengths):
                raise NegotiationFailed(NO_COMMON_STRENGTH)
            self.chosen = self._choose(suggested)

    def on_reject(self, options: tuple[Option, ...]) -> None:
        if any(option.type == MPPE_OPTION for option in options):
            if self.policy.required:
                raise NegotiationFailed(PEER_REFUSED_MPPE)
            self.chosen, self._locked = None, True


class Ccp(ControlProtocol):
    """The CCP of one call, server side.  Events beyond the layer events: ``reset-request``
    (the peer asks the MPPE engine to re-key / flush), ``reset-ack``, ``ccp-rejected`` (the
    peer Protocol-Rejected CCP: it will not encrypt)."""

    def __init__(self, policy: CcpPolicy | None = None) -> None:
        self.policy = policy or CcpPolicy()
        self.options = CcpServerOptions(self.policy)
        super().__init__(Negotiator(Protocol.CCP, self.options, limits=self.policy.limits))

    @property
    def mppe(self) -> MppeResult | None:
        """The MPPE agreement once Opened with the same bits in both directions, else None."""
        if not self.opened:
            return None
        ours, theirs = self._agreed_bits()
        return mppe_result(ours) if ours is not None and ours == theirs else None

    def _agreed_bits(self) -> tuple[int | None, int | None]:
        def bits(options: tuple[Option, ...]) -> int | None:
            found = [o for o in options if o.type == MPPE_OPTION and len(o.data) == 4]
            return int.from_bytes(found[0].data, "big") if found else None
        return bits(self.negotiator.local_options), bits(self.negotiator.peer_options)

    def open_for_peer(self, packet: ControlPacket, now: float) -> None:
        """Start CCP on the client's first packet, choosing our MPPE bits from its offer before
        our own Configure-Request goes out (as the PIX in the seed does): pppd refuses outright a
        request for a strength it does not allow instead of Nak'ing it."""
        if packet.code == Code.CONFIGURE_REQUEST and not self.options._locked:
            try:
                offered = [o for o in parse_options(packet.data) if o.type == MPPE_OPTION and len(o.data) == 4]
            except BadInput:
                offered = []
            if offered:
                self.options.chosen = self.options._choose(int.from_bytes(offered[0].data, "big"))
        self.up(now)
        self.open(now)

    def request_reset(self) -> None:
        """Send a Reset-Request (RFC 1962 section 2.1), for the MPPE engine when a stateful
        decryptor lost sync (RFC 3078 section 3.3)."""
        if self.opened:
            self.negotiator.send(Code.RESET_REQUEST, self.negotiator.next_identifier())

    def protocol_rejected(self, now: float) -> None:
        self.negotiator.emit("ccp-rejected")
        super().protocol_rejected(now)

    def _receive_extra(self, packet: ControlPacket, now: float) -> bool:
        """Reset-Request / Reset-Ack are meaningful only when Opened; otherwise discarded."""
        if packet.code == Code.RESET_REQUEST:
            if self.opened:
                self.negotiator.send(Code.RESET_ACK, packet.identifier)
                self.negotiator.emit("reset-request")
            return True
        if packet.code == Code.RESET_ACK:
            if self.opened:
                self.negotiator.emit("reset-ack")
            return True
        return False

    def _after(self, now: float) -> None:
        """Once Opened, MPPE must be the same both ways, and present when required."""
        if not self.opened:
            return
        ours, theirs = self._agreed_bits()
        if ours != theirs:
            self.negotiator.fail(now, DIRECTIONS_DIFFER)
        elif self.policy.required and (ours is None or mppe_result(ours) is None):
            self.negotiator.fail(now, MPPE_NOT_ACTIVE)
