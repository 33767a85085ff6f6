"""The PPTP control connection as the terminating server sees it (RFC 2637 sections 2, 3).

A client (Windows, pppd/pptp-linux) connects to TCP 1723, sends Start-Control-Connection-
Request, then Outgoing-Call-Request for its call; we answer as the side that places calls
(RFC 2637's PAC role for outgoing calls), keep the connection alive with Echo (section 2.5),
and clear calls and the connection on request.  Sans-I/O: stream bytes and ``now`` in,
bytes to send and :class:`ServerEvent` out; the session layer decides about calls.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from fixup.errors import BadInput
from fixup.wire import pptp_messages as m
from fixup.wire.pptp import PREFIX_LENGTH, build_message, parse_header, parse_message
from fixup.wire.pptp_messages import MessageType as T


class ServerState(Enum):
    WAIT_SCCRQ = "wait-sccrq"
    ESTABLISHED = "estabd"  # the word PIX's "show vpdn" uses
    STOPPING = "stopping"  # we sent Stop-Control-Connection-Request
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host_name: bytes = b"fixup"
    vendor: bytes = b"fixup"
    firmware_revision: int = 1
    receive_window: int = 64  # what we announce in OCRP (RFC 2637 section 2.8)
    echo_interval: float = 60.0  # idle this long -> Echo-Request (section 2.5)
    echo_timeout: float = 60.0  # no Echo-Reply this long -> the connection is dead


@dataclass(frozen=True, slots=True)
class ServerEvent:
    """``kind``: "control-up", "call-request", "call-clear", "link-info", "wan-error",
    "control-down", "protocol-error"; ``message``: the parsed message it came with, if any."""

    kind: str
    message: object | None = None
    reason: str = ""


S = ServerState
# (state, message type) -> (handler name, next state).  Pairs not here: protocol error, ignored.
SERVER_TRANSITIONS: dict[tuple[ServerState, T], tuple[str, ServerState]] = {
    (S.WAIT_SCCRQ, T.SCCRQ): ("start", S.ESTABLISHED),
    (S.WAIT_SCCRQ, T.STOPCCRQ): ("stop_reply", S.CLOSED),
    (S.ESTABLISHED, T.ECHORQ): ("echo_reply", S.ESTABLISHED),
    (S.ESTABLISHED, T.ECHORP): ("echo_answered", S.ESTABLISHED),
    (S.ESTABLISHED, T.OCRQ): ("call_request", S.ESTABLISHED),
    (S.ESTABLISHED, T.ICRQ): ("refuse_incoming", S.ESTABLISHED),
    (S.ESTABLISHED, T.CCRQ): ("call_clear", S.ESTABLISHED),
    (S.ESTABLISHED, T.CDN): ("call_clear", S.ESTABLISHED),
    (S.ESTABLISHED, T.SLI): ("link_info", S.ESTABLISHED),
    (S.ESTABLISHED, T.WEN): ("wan_error", S.ESTABLISHED),
    (S.ESTABLISHED, T.STOPCCRQ): ("stop_reply", S.CLOSED),
    (S.STOPPING, T.STOPCCRP): ("stopped", S.CLOSED),
    (S.STOPPING, T.STOPCCRQ): ("stop_reply", S.CLOSED),
    (S.STOPPING, T.ECHORQ): ("echo_reply", S.STOPPING),
}


class PptpServerConnection:
    """One accepted control connection."""

    def __init__(self, config: ServerConfig, now: float) -> None:
        self.config = config
        self.state = ServerState.WAIT_SCCRQ
        self.changed = now
        self.peer_stopped = False  # the client sent Stop-Control-Connection-Request
        self._buffer = b""
        self._out: list[bytes] = []
        self._events: list[ServerEvent] = []
        self.last_heard = now
        self.echo_sent_at: float | None = None
        self._echo_id = 0
        self.peer: m.StartControlConnectionRequest | None = None

    # -- input --------------------------------------------------------------------------------

    def receive(self, data: bytes, now: float) -> None:
        """Bytes from the TCP stream, cut anywhere."""
        self._buffer += data
        self.last_heard = now
        while self.state is not ServerState.CLOSED and len(self._buffer) >= PREFIX_LENGTH:
            try:
                header = parse_header(self._buffer)
            except BadInput as err:
                self._fail(f"bad control message: {err}")
                return
            if len(self._buffer) < header.length:
                return
            raw, self._buffer = self._buffer[:header.length], self._buffer[header.length:]
            try:
                msg = parse_message(raw, strict=False)
            except BadInput as err:
                self._fail(f"bad {header.message_type.long_name}: {err}")
                return
            self._dispatch(msg, now)

    def _dispatch(self, msg: m.Message, now: float) -> None:
        step = SERVER_TRANSITIONS.get((self.state, msg.message_type))
        if step is None:
            self._events.append(ServerEvent("protocol-error", msg, f"unexpected {msg.message_type.name} in {self.state.value}"))
            return
        handler, next_state = step
        getattr(self, "_on_" + handler)(msg, now)
        if self.state is not ServerState.CLOSED:  # a handler may have closed it already
            self._enter(next_state, now)

    def _enter(self, state: ServerState, now: float) -> None:
        if state is not self.state:
            self.state, self.changed = state, now
            if state is ServerState.CLOSED:
                self._events.append(ServerEvent("control-down", None, "closed"))

    # -- handlers (RFC 2637 section 2) ------------------------------------------------------------

    def _on_start(self, msg: m.StartControlConnectionRequest, now: float) -> None:
        if msg.protocol_version != m.PROTOCOL_VERSION:  # section 2.2: result 5, then close
            self._send(m.StartControlConnectionReply(result_code=m.StartControlResult.BAD_PROTOCOL_VERSION,
                                                     host_name=self.config.host_name, vendor_string=self.config.vendor))
            self._fail(f"protocol version 0x{msg.protocol_version:04x}, only 0x0100 is spoken")
            return
        self.peer = msg
        self._send(m.StartControlConnectionReply(
            framing_capabilities=m.FramingCapability.SYNC | m.FramingCapability.ASYNC,
            bearer_capabilities=m.BearerCapability.DIGITAL | m.BearerCapability.ANALOG,
            firmware_revision=self.config.firmware_revision, host_name=self.config.host_name,
            vendor_string=self.config.vendor))
        self._events.append(ServerEvent("control-up", msg))

    def _on_echo_reply(self, msg: m.EchoRequest, now: float) -> None:
        self._send(m.EchoReply(identifier=msg.identifier))

    def _on_echo_answered(self, msg: m.EchoReply, now: float) -> None:
        self.echo_sent_at = None

    def _on_call_request(self, msg: m.OutgoingCallRequest, now: float) -> None:
        self._events.append(ServerEvent("call-request", msg))

    def _on_refuse_incoming(self, msg: m.IncomingCallRequest, now: float) -> None:
        self._send(m.IncomingCallReply(call_id=0, peer_call_id=msg.call_id,
                                       result_code=m.IncomingCallResult.DO_NOT_ACCEPT))

    def _on_call_clear(self, msg: m.Message, now: float) -> None:
        self._events.append(ServerEvent("call-clear", msg, msg.message_type.long_name))

    def _on_link_info(self, msg: m.SetLinkInfo, now: float) -> None:
        self._events.append(ServerEvent("link-info", msg))

    def _on_wan_error(self, msg: m.WanErrorNotify, now: float) -> None:
        self._events.append(ServerEvent("wan-error", msg))

    def _on_stop_reply(self, msg: m.StopControlConnectionRequest, now: float) -> None:
        self.peer_stopped = True  # the client ended it (RFC 2637 section 2.3), not a failure
        self._send(m.StopControlConnectionReply())
        self._enter(ServerState.CLOSED, now)

    def _on_stopped(self, msg: m.StopControlConnectionReply, now: float) -> None:
        """Our StopCCRQ was answered."""

    # -- commands from the session layer --------------------------------------------------------

    def accept_call(self, request: m.OutgoingCallRequest, our_call_id: int) -> None:
        """Outgoing-Call-Reply Connected (RFC 2637 section 2.8)."""
        self._send(m.OutgoingCallReply(call_id=our_call_id, peer_call_id=request.call_id,
                                       connect_speed=request.maximum_bps or 64000,
                                       packet_recv_window_size=self.config.receive_window))

    def refuse_call(self, request: m.OutgoingCallRequest, result: int, error_code: int = 0) -> None:
        """Outgoing-Call-Reply with a failure Result Code (section 2.8), e.g. Busy when full."""
        self._send(m.OutgoingCallReply(call_id=0, peer_call_id=request.call_id, result_code=result,
                                       error_code=error_code))

    def disconnect_call(self, our_call_id: int, result: int = m.DisconnectResult.ADMIN_SHUTDOWN,
                        why: bytes = b"") -> None:
        """Call-Disconnect-Notify (section 2.13), Call Statistics carrying ``why``."""
        self._send(m.CallDisconnectNotify(call_id=our_call_id, result_code=result, call_statistics=why[:128]))

    def stop(self, now: float, reason: int = m.StopReason.STOP_LOCAL_SHUTDOWN) -> None:
        """Stop-Control-Connection-Request (section 2.3)."""
        if self.state is ServerState.ESTABLISHED or self.state is ServerState.WAIT_SCCRQ:
            self._send(m.StopControlConnectionRequest(reason=reason))
            self._enter(ServerState.STOPPING, now)

    # -- time ----------------------------------------------------------------------------------

    def poll(self, now: float) -> None:
        """Echo keepalive (RFC 2637 section 2.5); a STOPPING connection is closed after a while."""
        if self.state is ServerState.STOPPING and now - self.changed > self.config.echo_timeout:
            self._enter(ServerState.CLOSED, now)
        if self.state is not ServerState.ESTABLISHED:
            return
        if self.echo_sent_at is not None:
            if now - self.echo_sent_at > self.config.echo_timeout:
                self._fail("no Echo-Reply: peer not responding")
            return
        if now - self.last_heard >= self.config.echo_interval:
            self._echo_id = (self._echo_id + 1) & 0xFFFFFFFF
            self._send(m.EchoRequest(identifier=self._echo_id))
            self.echo_sent_at = now

    # -- output --------------------------------------------------------------------------------

    def take_output(self) -> bytes:
        out, self._out = b"".join(self._out), []
        return out

    def take_events(self) -> list[ServerEvent]:
        events, self._events = self._events, []
        return events

    def _send(self, msg: m.Message) -> None:
        self._out.append(build_message(msg))

    def _fail(self, reason: str) -> None:
        self._events.append(ServerEvent("protocol-error", None, reason))
        self.state = ServerState.CLOSED
        self._events.append(ServerEvent("control-down", None, reason))

    @property
    def closed(self) -> bool:
        return self.state is ServerState.CLOSED
