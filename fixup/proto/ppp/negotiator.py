"""The runner of the RFC 1661 automaton: one :class:`Negotiator` per protocol instance.

It turns received control packets (RFC 1661 section 5) and the Restart timer (RFC 1661
section 4.6) into the events of :data:`fixup.proto.ppp.fsm.TRANSITIONS`, performs the actions
of section 4.4 and queues packets and layer events.  :class:`ControlProtocol` is the shell
LCP, IPCP and CCP build on.  Time is passed in as ``now``; nothing here reads a clock.
"""
from __future__ import annotations

from collections.abc import Callable

from fixup.proto.ppp.fsm import (
    CATASTROPHIC_CODES,
    LAYER_EVENTS,
    TIMER_STATES,
    TRANSITIONS,
    Action,
    Event,
    Judgement,
    Limits,
    NegotiationFailed,
    OptionsHandler,
    State,
)
from fixup.wire.ppp import Code, ControlPacket, Option, Protocol, build_control, build_options, parse_options

_RS, _AR, _AS, _O, _CG, _SG = (State.REQ_SENT, State.ACK_RCVD, State.ACK_SENT, State.OPENED, State.CLOSING,
                               State.STOPPING)
IRC, ZRC, SCR, SCA, SCN, STR, STA, SCJ, SER = (Action.IRC, Action.ZRC, Action.SCR, Action.SCA, Action.SCN,
                                               Action.STR, Action.STA, Action.SCJ, Action.SER)


class Negotiator:
    """One protocol instance running the RFC 1661 automaton.

    Commands :meth:`up`, :meth:`down`, :meth:`open`, :meth:`close`; input :meth:`receive`
    and :meth:`poll`; output :meth:`take_output` (protocol, information) pairs ready for
    :func:`fixup.wire.ppp.build_frame`, and :meth:`take_events` (layer events such as
    ``this-layer-up``).  ``echo_responder`` builds the Echo-Reply data for the ``ser`` action
    (LCP only).
    """

    def __init__(self, protocol: Protocol, handler: OptionsHandler, *, limits: Limits = Limits(),
                 echo_responder: Callable[[ControlPacket], bytes] | None = None) -> None:
        self.protocol = protocol
        self.handler = handler
        self.limits = limits
        self.echo_responder = echo_responder
        self.failure: str | None = None  # why negotiation gave up, when it did
        self.peer_reason: str | None = None  # data of the peer's last Terminate-Request
        self.discarded = 0  # replies silently discarded (RFC 1661 section 5.2 - 5.4)
        self.illegal_events = 0  # '-' cells hit
        self.local_options: tuple[Option, ...] = ()  # our request as the peer last acked it
        self.peer_options: tuple[Option, ...] = ()  # the peer's request as we last acked it
        self._state = State.INITIAL
        self._restart_count = 0
        self._deadline: float | None = None
        self._failures = 0
        self._identifier = 0
        self._request: tuple[int, bytes] | None = None  # (identifier, options) of our last Configure-Request
        self._close_reason = b""
        self._output: list[tuple[Protocol, bytes]] = []
        self._events: list[str] = []
        self._packet: ControlPacket | None = None  # the packet whose event is being run
        self._reply: tuple[Code, tuple[Option, ...]] | None = None  # what scn sends

    # -- state and output ---------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def opened(self) -> bool:
        return self._state is State.OPENED

    def next_deadline(self) -> float | None:
        """When :meth:`poll` has a timeout to fire, or None."""
        return self._deadline

    def take_output(self) -> list[tuple[Protocol, bytes]]:
        out, self._output = self._output, []
        return out

    def take_events(self) -> list[str]:
        events, self._events = self._events, []
        return events

    def emit(self, event: str) -> None:
        self._events.append(event)

    def send(self, code: int, identifier: int, data: bytes = b"") -> None:
        self._output.append((self.protocol, build_control(ControlPacket(code, identifier, data))))

    def next_identifier(self) -> int:
        """A fresh Identifier for a packet we originate (RFC 1661 section 5)."""
        self._identifier = self._identifier % 255 + 1
        return self._identifier

    # -- commands (RFC 1661 section 4.3 administrative and lower-layer events) -------------

    def up(self, now: float) -> None:
        self.signal(Event.UP, now)

    def down(self, now: float) -> None:
        self.signal(Event.DOWN, now)

    def open(self, now: float) -> None:
        self.failure = None
        self.signal(Event.OPEN, now)

    def close(self, now: float, reason: str = "") -> None:
        self._close_reason = reason.encode("utf-8", "replace")
        self.signal(Event.CLOSE, now)

    def fail(self, now: float, reason: str) -> None:
        """Negotiation cannot succeed: remember why and close with that reason."""
        self.failure = reason
        self.close(now, reason)

    def poll(self, now: float) -> None:
        """Fire the Restart timer when its deadline has passed (TO+ or TO-, section 4.3)."""
        if self._deadline is None or now < self._deadline:
            return
        self._deadline = None
        if self._restart_count > 0:
            self.signal(Event.TO_PLUS, now)
        else:
            if self._state in (_RS, _AR, _AS):
                self.failure = f"no answer to {self.limits.max_configure} Configure-Requests"
            self.signal(Event.TO_MINUS, now)

    # -- received packets (RFC 1661 section 5) -------------------------------------------

    def receive(self, packet: ControlPacket, now: float) -> None:
        """Feed one received control packet with a code of RFC 1661 sections 5.1 - 5.6; any
        other code is an unknown code (RUC).  Malformed options raise BadPpp before any
        state changes."""
        code = packet.code
        if code == Code.CONFIGURE_REQUEST:
            self._receive_request(packet, now)
        elif code in (Code.CONFIGURE_ACK, Code.CONFIGURE_NAK, Code.CONFIGURE_REJECT):
            self._receive_reply(packet, now)
        elif code == Code.TERMINATE_REQUEST:
            self.peer_reason = packet.data.decode("utf-8", "replace")
            self.signal(Event.RTR, now, packet)
        elif code == Code.TERMINATE_ACK:
            self.signal(Event.RTA, now, packet)
        elif code == Code.CODE_REJECT:
            catastrophic = bool(packet.data) and packet.data[0] in CATASTROPHIC_CODES
            self.receive_reject(catastrophic, now, f"peer rejected code {packet.data[:1].hex() or 'none'}")
        else:
            self.signal(Event.RUC, now, packet)

    def receive_reject(self, catastrophic: bool, now: float, what: str = "") -> None:
        """RXJ+ or RXJ- (RFC 1661 section 4.3): a Code-Reject or Protocol-Reject arrived."""
        if catastrophic:
            self.failure = what or "peer rejected an essential packet"
            self._close_reason = self.failure.encode("utf-8", "replace")
        self.signal(Event.RXJ_MINUS if catastrophic else Event.RXJ_PLUS, now)

    def _receive_request(self, packet: ControlPacket, now: float) -> None:
        options = parse_options(packet.data)
        if TRANSITIONS.get((self._state, Event.RCR_PLUS)) == TRANSITIONS.get((self._state, Event.RCR_MINUS)):
            self.signal(Event.RCR_PLUS, now, packet)  # the judgement cannot change the outcome
            return
        try:
            judgement, reply = self.handler.judge_request(options)
        except NegotiationFailed as failed:
            self.fail(now, failed.reason)
            return
        if judgement is Judgement.NAK and self._failures >= self.limits.max_failure:
            judgement, reply = self._nak_as_reject(options, reply)
        if judgement is Judgement.ACK:
            self.signal(Event.RCR_PLUS, now, packet)
            return
        code = Code.CONFIGURE_NAK if judgement is Judgement.NAK else Code.CONFIGURE_REJECT
        self._reply = (code, reply)
        self.signal(Event.RCR_MINUS, now, packet)

    @staticmethod
    def _nak_as_reject(options: tuple[Option, ...], naks: tuple[Option, ...]) -> tuple[Judgement, tuple[Option, ...]]:
        """Max-Failure reached: nak'd options the peer sent are rejected instead
        (RFC 1661 section 4.6); when none remain, the request is acceptable."""
        nak_types = {option.type for option in naks}
        rejects = tuple(option for option in options if option.type in nak_types)
        return (Judgement.REJECT, rejects) if rejects else (Judgement.ACK, ())

    def _receive_reply(self, packet: ControlPacket, now: float) -> None:
        options = parse_options(packet.data)
        if not self._reply_matches(packet, options):
            self.discarded += 1
            return
        self._request = None  # answered: a duplicate reply is discarded
        if self._state in (_RS, _AR, _AS, _O):
            try:
                if packet.code == Code.CONFIGURE_ACK:
                    self.local_options = options
                    self.handler.on_ack(options)
                elif packet.code == Code.CONFIGURE_NAK:
                    self.handler.on_nak(options)
                else:
                    self.handler.on_reject(options)
            except NegotiationFailed as failed:
                self.fail(now, failed.reason)
                return
        self.signal(Event.RCA if packet.code == Code.CONFIGURE_ACK else Event.RCN, now, packet)

    def _reply_matches(self, packet: ControlPacket, options: tuple[Option, ...]) -> bool:
        """RFC 1661 sections 5.2 - 5.4: the Identifier must be that of our last request; an
        Ack repeats it exactly, a Reject lists only options we sent."""
        if self._request is None or packet.identifier != self._request[0]:
            return False
        if packet.code == Code.CONFIGURE_ACK:
            return packet.data == self._request[1]
        if packet.code == Code.CONFIGURE_REJECT:
            sent = set(parse_options(self._request[1]))
            return all(option in sent for option in options)
        return True

    # -- the table ------------------------------------------------------------------------

    def signal(self, event: Event, now: float, packet: ControlPacket | None = None) -> None:
        """Run one event through :data:`TRANSITIONS`; an illegal event ('-') is ignored."""
        cell = TRANSITIONS.get((self._state, event))
        if cell is None:
            self.illegal_events += 1
            return
        actions, new_state = cell
        self._packet = packet
        try:
            for action in actions:
                self._perform(action, new_state, now)
        finally:
            self._packet = None
            self._reply = None
        self._state = new_state
        if new_state not in TIMER_STATES:
            self._deadline = None

    def _perform(self, action: Action, new_state: State, now: float) -> None:
        if action in LAYER_EVENTS:
            self.emit(LAYER_EVENTS[action])
        elif action is IRC:
            terminating = new_state in (_CG, _SG)
            self._restart_count = self.limits.max_terminate if terminating else self.limits.max_configure
            if not terminating:
                self._failures = 0
        elif action is ZRC:
            self._restart_count = 0
            self._deadline = now + self.limits.restart
        elif action is SCR:
            self._send_configure_request(now)
        elif action is STR:
            self._restart_count -= 1
            self._deadline = now + self.limits.restart
            self.send(Code.TERMINATE_REQUEST, self.next_identifier(), self._close_reason)
        else:
            self._answer(action)

    def _send_configure_request(self, now: float) -> None:
        """scr: a new Identifier every time (RFC 1661 section 5.1), counter decremented and
        the Restart timer started (section 4.4)."""
        self._restart_count -= 1
        self._deadline = now + self.limits.restart
        identifier = self.next_identifier()
        data = build_options(self.handler.build_request())
        self._request = (identifier, data)
        self.send(Code.CONFIGURE_REQUEST, identifier, data)

    def _answer(self, action: Action) -> None:
        """sca, scn, sta, scj, ser: replies to the packet being processed."""
        packet = self._packet
        identifier = packet.identifier if packet is not None else self.next_identifier()
        if action is SCA and packet is not None:
            self._failures = 0
            self.peer_options = parse_options(packet.data)
            self.send(Code.CONFIGURE_ACK, identifier, packet.data)
        elif action is SCN and self._reply is not None:
            code, options = self._reply
            self._failures += code == Code.CONFIGURE_NAK
            self.send(code, identifier, build_options(options))
        elif action is STA:
            self.send(Code.TERMINATE_ACK, identifier)
        elif action is SCJ and packet is not None:
            rejected = build_control(packet)[:1496]  # keep within the default MRU (RFC 1661 section 5.6)
            self.send(Code.CODE_REJECT, self.next_identifier(), rejected)
        elif action is SER and packet is not None and packet.code == Code.ECHO_REQUEST and self.echo_responder:
            self.send(Code.ECHO_REPLY, identifier, self.echo_responder(packet))


class ControlProtocol:
    """The shell shared by LCP, IPCP and CCP: a :class:`Negotiator` plus the protocol's own
    codes (``_receive_extra``) and bookkeeping after every input (``_after``)."""

    def __init__(self, negotiator: Negotiator) -> None:
        self.negotiator = negotiator

    @property
    def state(self) -> State:
        return self.negotiator.state

    @property
    def opened(self) -> bool:
        return self.negotiator.opened

    @property
    def failure(self) -> str | None:
        """Why negotiation gave up (e.g. ``authentication protocols with no overlap``)."""
        return self.negotiator.failure

    @property
    def peer_reason(self) -> str | None:
        """Text of the peer's Terminate-Request, when it sent one."""
        return self.negotiator.peer_reason

    def up(self, now: float) -> None:
        self.negotiator.up(now)
        self._after(now)

    def down(self, now: float) -> None:
        self.negotiator.down(now)
        self._after(now)

    def open(self, now: float) -> None:
        self.negotiator.open(now)
        self._after(now)

    def close(self, now: float, reason: str = "") -> None:
        self.negotiator.close(now, reason)
        self._after(now)

    def receive(self, packet: ControlPacket, now: float) -> None:
        """One received control packet of this protocol (parsed with
        :func:`fixup.wire.ppp.parse_control`)."""
        if not self._receive_extra(packet, now):
            self.negotiator.receive(packet, now)
        self._after(now)

    def poll(self, now: float) -> None:
        self.negotiator.poll(now)
        self._after(now)

    def next_deadline(self) -> float | None:
        return self.negotiator.next_deadline()

    def protocol_rejected(self, now: float) -> None:
        """The peer sent an LCP Protocol-Reject for this protocol: RXJ- (RFC 1661 section 5.7)."""
        self.negotiator.receive_reject(True, now, f"peer rejected protocol 0x{self.negotiator.protocol:04x}")
        self._after(now)

    def take_output(self) -> list[tuple[Protocol, bytes]]:
        return self.negotiator.take_output()

    def take_events(self) -> list[str]:
        return self.negotiator.take_events()

    def _receive_extra(self, packet: ControlPacket, now: float) -> bool:
        return False

    def _after(self, now: float) -> None:
        return None
