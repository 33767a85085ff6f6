"""Call tracking: which call a call-management message is about, and what it does to it
(RFC 2637 sections 2.7-2.15, via :data:`fixup.proto.pat.tables.CALL_TRANSITIONS`)."""
from __future__ import annotations

from ipaddress import IPv4Address
from collections.abc import Iterable
from typing import Callable

from fixup.proto.pat.callids import CallIdSpace
from fixup.proto.pat.config import Limits, Timeouts
from fixup.proto.pat.model import Call, Connection
from fixup.proto.pat.persist import SavedCall
from fixup.proto.pat.tables import CALL_TRANSITIONS, CallAction, CallEvent, CallState
from fixup.proto.events import Event
from fixup.proto.pat.verdict import Direction
from fixup.wire import pptp_messages as m
from fixup.wire.pptp import MessageType

Emit = Callable[[Event], None]
Count = Callable[[str], None]

_REQUESTS = (MessageType.OCRQ, MessageType.ICRQ)
_REPLIES = (MessageType.OCRP, MessageType.ICRP)
_OK_RESULT = {MessageType.OCRP: m.OutgoingCallResult.CONNECTED, MessageType.ICRP: m.IncomingCallResult.CONNECT}
_SIMPLE_EVENTS = {
    MessageType.ICCN: CallEvent.CONNECTED, MessageType.SLI: CallEvent.LINK_INFO,
    MessageType.WEN: CallEvent.LINK_INFO, MessageType.CCRQ: CallEvent.CLEAR,
    MessageType.CDN: CallEvent.DISCONNECT,
}


def gre_in_key(server: bytes, translated: int) -> bytes:
    """Inbound GRE lookup key: source address and Call ID exactly as in the packet (IPv4 bytes
    12-16, GRE bytes 6-8), so the per-packet path slices instead of building tuples."""
    return server + translated.to_bytes(2, "big")


def gre_out_key(client: bytes, server: bytes, server_id: int) -> bytes:
    """Outbound GRE lookup key: source and destination address (IPv4 bytes 12-20) and Call ID."""
    return client + server + server_id.to_bytes(2, "big")


def _ip(raw: bytes) -> str:
    return str(IPv4Address(raw))


class CallBook:
    """Every call of every connection, and the GRE lookups of the established ones."""

    def __init__(self, emit: Emit, count: Count, randbelow: Callable[[int], int] | None = None,
                 limits: Limits = Limits()) -> None:
        self.emit = emit
        self.count = count
        self.randbelow = randbelow  # for the translated IDs; None: the secrets module's
        self.limits = limits
        self.spaces: dict[bytes, CallIdSpace] = {}
        self.gre_in: dict[bytes, Call] = {}  # gre_in_key(server, translated) -> call
        self.gre_out: dict[bytes, Call] = {}  # gre_out_key(client, server, server id) -> call
        self.total = 0

    def space_for(self, server: bytes) -> CallIdSpace:
        space = self.spaces.get(server)
        if space is None:
            space = self.spaces[server] = (CallIdSpace(limits=self.limits) if self.randbelow is None
                                           else CallIdSpace(self.randbelow, self.limits))
        return space

    def set_limits(self, limits: Limits) -> None:
        """A reloaded policy: every space takes the new quotas at its next allocation."""
        self.limits = limits
        for space in self.spaces.values():
            space.limits = limits

    def forget_space_if_idle(self, server: bytes) -> None:
        """A server's space with no call and no connection left goes (86 KiB each, issue 11)."""
        space = self.spaces.get(server)
        if space is not None and space.idle:
            del self.spaces[server]

    # -- messages ----------------------------------------------------------------------------

    def on_message(self, conn: Connection, direction: Direction, msg: m.Message, now: float) -> None:
        """A complete call-management message (original bytes, parsed)."""
        kind = msg.message_type
        if kind in _REQUESTS:
            self._on_request(conn, direction, msg, now)
        elif kind in _REPLIES:
            self._on_reply(conn, direction, msg, now)
        else:
            call = self._find(conn, direction, kind, msg)
            if call is None:
                self.count("unknown-call")
                return
            self.apply(call, _SIMPLE_EVENTS[kind], now, f"{kind.name} {'from client' if direction is Direction.OUTBOUND else 'from server'}")

    def _on_request(self, conn: Connection, direction: Direction, msg: m.Message, now: float) -> None:
        if direction is Direction.INBOUND:  # the server asks the client to place/accept a call
            call = conn.by_server_id(msg.call_id)
            if call is None:
                call = self._new_call(conn, None, msg.call_id, now, "server")
            else:
                self.apply(call, CallEvent.REQUEST, now, "request retransmitted")
            return
        call = conn.by_original(msg.call_id)
        if call is None:
            self._new_call(conn, msg.call_id, None, now, "client")
        else:
            self.apply(call, CallEvent.REQUEST, now, "request retransmitted")

    def _on_reply(self, conn: Connection, direction: Direction, msg: m.Message, now: float) -> None:
        ok = msg.result_code == _OK_RESULT[msg.message_type]
        if direction is Direction.INBOUND:
            owner = conn.space.owner(msg.peer_call_id)
            call = conn.by_original(owner[1]) if owner and owner[0] == conn.conn_id else None
            if call is None:
                self.count("unknown-call")
                return
            self._set_server_id(conn, call, msg.call_id)
        else:
            call = conn.by_server_id(msg.peer_call_id)
            if call is None or call.original is not None and call.original != msg.call_id:
                self.count("unknown-call")
                if conn.by_original(msg.call_id) is None:  # the ID allocated while it passed: no call keeps it
                    conn.space.release(conn.conn_id, msg.call_id)
                return
            call.original = msg.call_id
            call.translated = conn.space.forward(conn.conn_id, msg.call_id)
            conn.link(call)
        self.apply(call, CallEvent.REPLY_OK if ok else CallEvent.REPLY_FAIL, now,
                   f"{msg.message_type.name} result {msg.result_code}")

    def _find(self, conn: Connection, direction: Direction, kind: MessageType, msg: m.Message) -> Call | None:
        """The call a CCRQ/CDN/ICCN/SLI/WEN names.  From the client: its own ID (CCRQ, CDN) or the
        server's (Peer Call ID).  From the server: its own ID (CCRQ, CDN) or the translated one."""
        own = kind in (MessageType.CCRQ, MessageType.CDN)
        value = msg.call_id if own else msg.peer_call_id
        if direction is Direction.OUTBOUND:
            return (conn.by_original(value) or conn.by_server_id(value)) if own else conn.by_server_id(value)
        call = conn.by_server_id(value) if own else None
        if call is None:
            owner = conn.space.owner(value)
            if owner is not None and owner[0] == conn.conn_id:
                call = conn.by_original(owner[1])
        return call

    # -- transitions -------------------------------------------------------------------------

    def apply(self, call: Call, event: CallEvent, now: float, why: str) -> None:
        """Run ``event`` through :data:`CALL_TRANSITIONS`."""
        step = CALL_TRANSITIONS.get((call.state, event))
        if step is None:
            self.count("unexpected-message")
            return
        action, next_state = step
        if next_state is not call.state or action is not CallAction.NONE:
            call.changed = now  # a retransmitted request does not restart the setup timer
        call.state = next_state
        call.last_activity = now
        if action is CallAction.OPEN:
            self._open(call)
        elif action is CallAction.CLOSE_GRE:
            self._close_gre(call)
            self.emit(Event("call-reset", f"PPTP call back to setup ({why}): {_describe(call)}",
                            {**_event_data(call), "gre_open": True}))
        elif action is CallAction.RELEASE:
            self._release(call, why)

    def _new_call(self, conn: Connection, original: int | None, server_id: int | None, now: float,
                  initiator: str) -> Call:
        translated = None if original is None else conn.space.forward(conn.conn_id, original)
        call = Call(conn, conn.client, conn.server, original, translated, server_id,
                    CallState.SETUP, now, now, now, initiator)
        conn.link(call)
        self.total += 1
        self.emit(Event("call-setup", f"PPTP call setup on control connection {conn.conn_id}: "
                        f"{_describe(call)}", {"conn": conn.conn_id, "call_id": original, "server_call_id": server_id}))
        return call

    def _set_server_id(self, conn: Connection, call: Call, server_id: int) -> None:
        conn.unlink(call, server_only=True)
        call.server_id = server_id
        conn.link(call)

    def _open(self, call: Call) -> None:
        self.gre_in[gre_in_key(call.server, call.translated)] = call
        self.gre_out[gre_out_key(call.client, call.server, call.server_id)] = call
        self.emit(Event("call-up", f"PPTP call up: {_describe(call)}", _event_data(call)))

    def _close_gre(self, call: Call) -> bool:
        """Remove the call's GRE lookups; whether it had any.  A call still waiting for its reply
        has no translated ID (incoming) or no server ID (outgoing) yet, and no lookups."""
        had = False
        if call.translated is not None:
            key = gre_in_key(call.server, call.translated)
            if self.gre_in.get(key) is call:
                del self.gre_in[key]
                had = True
        if call.server_id is not None:
            key = gre_out_key(call.client, call.server, call.server_id)
            if self.gre_out.get(key) is call:
                del self.gre_out[key]
        return had

    def _release(self, call: Call, why: str) -> None:
        gre_open = self._close_gre(call)
        conn = call.conn
        conn.unlink(call)
        if call.original is not None:
            conn.space.release(conn.conn_id, call.original)
        self.emit(Event("call-down", f"PPTP call down ({why}): {_describe(call)}",
                        {**_event_data(call), "reason": why, "gre_open": gre_open}))

    # -- restart (issue 12) ----------------------------------------------------------------------

    def is_gre_open(self, call: Call) -> bool:
        return call.translated is not None and self.gre_in.get(gre_in_key(call.server, call.translated)) is call

    def adopt(self, conn: Connection, saved: Iterable[SavedCall], now: float) -> list[Call]:
        """The calls of a restored connection, with the translated IDs the old process chose;
        returns those whose GRE is open.  ValueError (nothing kept) when they contradict each
        other or a call already held.  Idle timers restart now: GRE may have flowed meanwhile."""
        calls = []
        try:
            for s in saved:
                if s.original is not None and s.translated is not None:
                    conn.space.adopt(conn.conn_id, s.original, s.translated)
                call = Call(conn, conn.client, conn.server, s.original, s.translated, s.server_id, s.state,
                            s.created, s.changed, now, s.initiator, *s.counts)
                calls.append((call, s.gre_open))
            opened = [call for call, gre_open in calls if gre_open]
            for call in opened:
                if gre_in_key(call.server, call.translated) in self.gre_in \
                        or gre_out_key(call.client, call.server, call.server_id) in self.gre_out:
                    raise ValueError(f"GRE of {_describe(call)} is held by another call")
        except ValueError:
            conn.space.release_connection(conn.conn_id)
            raise
        for call, _open in calls:
            conn.link(call)
        for call in opened:
            self.gre_in[gre_in_key(call.server, call.translated)] = call
            self.gre_out[gre_out_key(call.client, call.server, call.server_id)] = call
        self.total += len(calls)
        return opened

    # -- whole connections and time ------------------------------------------------------------

    def calls_of(self, conn: Connection) -> list[Call]:
        return conn.all_calls()

    def release_all(self, conn: Connection, now: float, why: str) -> None:
        for call in self.calls_of(conn):
            self.apply(call, CallEvent.CONTROL_GONE, now, why)
        conn.space.release_connection(conn.conn_id)

    def clear_all(self, conn: Connection, now: float) -> None:
        for call in self.calls_of(conn):
            self.apply(call, CallEvent.CLEAR, now, "StopCCRQ")

    def expire(self, conn: Connection, now: float, timeouts: Timeouts) -> None:
        for call in self.calls_of(conn):
            limit, since = {
                CallState.SETUP: (timeouts.call_setup, call.changed),
                CallState.ESTABLISHED: (timeouts.call_idle, call.last_activity),
                CallState.CLEARING: (timeouts.clearing, call.changed),
            }.get(call.state, (None, 0.0))
            if limit is not None and now - since > limit:
                self.apply(call, CallEvent.TIMEOUT, now, f"{call.state.value} timeout {limit:g}s")


def _describe(call: Call) -> str:
    def hx(v: int | None) -> str:
        return "-" if v is None else f"{v} (0x{v:04x})"
    return (f"client {_ip(call.client)} call id {hx(call.original)} as {hx(call.translated)} "
            f"to server {_ip(call.server)} call id {hx(call.server_id)}")


def _event_data(call: Call) -> dict:
    return {"conn": call.conn_id, "client": _ip(call.client), "server": _ip(call.server),
            "call_id": call.original, "translated_id": call.translated, "server_call_id": call.server_id}
