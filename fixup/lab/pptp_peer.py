"""The PPTP test peers' control connection, sans-I/O (RFC 2637 section 2): written once for the
lab's threaded peers (:mod:`fixup.lab.peers_client`, :mod:`fixup.lab.peers_server`) and the
benchmark's asyncio peers (:mod:`fixup.bench.bulk`, :mod:`fixup.bench.latency`).

Bytes go in, whole messages come out (:class:`MessageStream`); a PAC
(:class:`PacConnection`) turns each message it receives into the answers to send, a PNS
(:class:`PnsConnection`) into what happened and the answers it owes (Echo-Reply).  The shells own
the sockets, the clocks and the GRE.  These peers are test tools, not fixup's dial-in server
(:mod:`fixup.proto.vpdn.pptp_server`): they trust the other side and keep no timers.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from fixup.wire.pptp import (
    PREFIX_LENGTH,
    CallClearRequest,
    CallDisconnectNotify,
    DisconnectResult,
    EchoReply,
    EchoRequest,
    Message,
    OutgoingCallReply,
    OutgoingCallRequest,
    StartControlConnectionReply,
    StartControlConnectionRequest,
    StopControlConnectionReply,
    StopControlConnectionRequest,
    parse_header,
    parse_message,
)

SUCCESS = 1  # RFC 2637 sections 2.2 / 2.8 / 2.4: Result Code 1 (connected / OK)


class MessageStream:
    """Bytes of one direction of a control connection in, whole messages out (RFC 2637 section
    1.4: every message states its Length).  :class:`fixup.errors.BadInput` for bytes that are
    not PPTP."""

    def __init__(self, *, strict: bool = True) -> None:
        self.data = bytearray()
        self.strict = strict

    def feed(self, chunk: bytes) -> list[Message]:
        self.data += chunk
        messages = []
        while len(self.data) >= PREFIX_LENGTH:
            length = parse_header(self.data).length
            if len(self.data) < length:
                break
            messages.append(parse_message(bytes(self.data[:length]), strict=self.strict))
            del self.data[:length]
        return messages

    @property
    def pending(self) -> int:
        """Bytes of a message not yet whole."""
        return len(self.data)


class CallIds:
    """A PAC's own Call IDs, unique across all its connections (RFC 2637 section 2.8), handed
    out in order from ``first`` and skipping those in use."""

    def __init__(self, first: int = 1, *, zero: bool = False) -> None:
        self.zero = zero  # whether 0 may be handed out
        self.next = first & 0xFFFF
        self.in_use: set[int] = set()

    def allocate(self) -> int:
        for _ in range(0x10000):
            candidate, self.next = self.next, (self.next + 1) & 0xFFFF
            if (candidate or self.zero) and candidate not in self.in_use:
                self.in_use.add(candidate)
                return candidate
        raise RuntimeError("every Call ID is in use")

    def release(self, call_id: int) -> None:
        self.in_use.discard(call_id)


@dataclass(slots=True)
class PacAnswer:
    """What one received message makes the PAC do: ``replies`` to send in order, a call
    ``opened`` (own Call ID, the PNS's Call ID, the OCRQ), calls ``closed`` (own Call IDs),
    and ``stop`` when the connection ends after the replies (StopCCRQ)."""

    replies: list[Message] = field(default_factory=list)
    opened: tuple[int, int, OutgoingCallRequest] | None = None
    closed: list[int] = field(default_factory=list)
    unknown_clear: int | None = None  # a CCRQ for a Call ID this connection does not have
    stop: bool = False


class PacConnection:
    """The PAC side of one control connection: SCCRQ -> SCCRP, Echo-Request -> Echo-Reply,
    OCRQ -> OCRP (result 1, own Call ID, Peer's Call ID = the OCRQ's), CCRQ -> CDN with the own
    Call ID (section 2.13), StopCCRQ -> StopCCRP.  ``channel_echo``: the OCRP's Physical Channel
    ID (a value the PNS must not interpret, section 2.8) carries the Call ID the OCRQ arrived
    with, so a benchmark client learns its translated Call ID."""

    def __init__(self, ids: CallIds, *, name: bytes = b"fixup-lab", vendor: bytes = b"fixup.lab",
                 channel_echo: bool = False) -> None:
        self.ids = ids
        self.name, self.vendor = name, vendor
        self.channel_echo = channel_echo
        self.calls: dict[int, int] = {}  # own Call ID -> the PNS's Call ID

    def receive(self, msg: Message) -> PacAnswer:
        answer = PacAnswer()
        if isinstance(msg, StartControlConnectionRequest):
            answer.replies.append(StartControlConnectionReply(host_name=self.name, vendor_string=self.vendor))
        elif isinstance(msg, EchoRequest):
            answer.replies.append(EchoReply(identifier=msg.identifier))
        elif isinstance(msg, OutgoingCallRequest):
            own = self.ids.allocate()
            self.calls[own] = msg.call_id
            answer.opened = (own, msg.call_id, msg)
            answer.replies.append(OutgoingCallReply(call_id=own, peer_call_id=msg.call_id,
                                                    physical_channel_id=msg.call_id if self.channel_echo else 0))
        elif isinstance(msg, CallClearRequest):
            own = next((own for own, peer in self.calls.items() if peer == msg.call_id), None)
            if own is None:
                answer.unknown_clear = msg.call_id
            else:
                self._release(own, answer)
                answer.replies.append(CallDisconnectNotify(call_id=own, result_code=DisconnectResult.REQUEST))
        elif isinstance(msg, StopControlConnectionRequest):
            answer.replies.append(StopControlConnectionReply())
            answer.stop = True
        return answer

    def close(self) -> list[int]:
        """The connection is gone: every call of it ends; their own Call IDs."""
        answer = PacAnswer()
        for own in list(self.calls):
            self._release(own, answer)
        return answer.closed

    def _release(self, own: int, answer: PacAnswer) -> None:
        self.calls.pop(own, None)
        self.ids.release(own)
        answer.closed.append(own)


@dataclass(frozen=True, slots=True)
class PnsEvent:
    """What a received message meant to the PNS: ``kind`` is ``established`` / ``refused``
    (SCCRP), ``call-up`` / ``call-refused`` (OCRP), ``call-down`` (CDN), ``stopped`` (StopCCRP),
    ``stop-requested`` (the PAC's StopCCRQ), ``echo`` (an Echo-Reply) or ``other``; ``replies``
    are owed to the PAC (Echo-Reply to its Echo-Request, StopCCRP to its StopCCRQ)."""

    kind: str
    message: Message
    replies: tuple[Message, ...] = ()


class PnsConnection:
    """The PNS side of one control connection: builds the requests, reads the answers and keeps
    each call's server Call ID (``calls``: own Call ID -> the PAC's, from the OCRP)."""

    def __init__(self, *, name: bytes = b"fixup-lab", vendor: bytes = b"fixup.lab") -> None:
        self.name, self.vendor = name, vendor
        self.calls: dict[int, int] = {}

    def start(self) -> StartControlConnectionRequest:
        return StartControlConnectionRequest(host_name=self.name[:63], vendor_string=self.vendor)

    @staticmethod
    def place(call_id: int, serial: int = 0, phone: bytes = b"", window: int | None = None) -> OutgoingCallRequest:
        """An OCRQ (section 2.7); ``window``: the Packet Receive Window Size, else the default."""
        extra = {} if window is None else {"packet_recv_window_size": window}
        return OutgoingCallRequest(call_id=call_id, call_serial_number=serial, phone_number=phone,
                                   phone_number_length=len(phone), **extra)

    @staticmethod
    def clear(call_id: int) -> CallClearRequest:
        return CallClearRequest(call_id=call_id)

    @staticmethod
    def stop() -> StopControlConnectionRequest:
        return StopControlConnectionRequest()

    def receive(self, msg: Message) -> PnsEvent:
        if isinstance(msg, EchoRequest):
            return PnsEvent("other", msg, (EchoReply(identifier=msg.identifier),))
        if isinstance(msg, StartControlConnectionReply):
            return PnsEvent("established" if msg.result_code == SUCCESS else "refused", msg)
        if isinstance(msg, OutgoingCallReply):
            if msg.result_code != SUCCESS:
                return PnsEvent("call-refused", msg)
            self.calls[msg.peer_call_id] = msg.call_id
            return PnsEvent("call-up", msg)
        if isinstance(msg, CallDisconnectNotify):
            for own, server in list(self.calls.items()):
                if server == msg.call_id:
                    del self.calls[own]
            return PnsEvent("call-down", msg)
        if isinstance(msg, StopControlConnectionReply):
            return PnsEvent("stopped", msg)
        if isinstance(msg, StopControlConnectionRequest):
            return PnsEvent("stop-requested", msg, (StopControlConnectionReply(),))
        if isinstance(msg, EchoReply):
            return PnsEvent("echo", msg)
        return PnsEvent("other", msg)
