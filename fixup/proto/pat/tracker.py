"""The PPTP fixup tracker: packets and ``now`` in, verdicts and events out (no I/O).

Control connections (RFC 2637 section 2) are followed byte by byte in both directions; Call IDs
are translated so every client may share one PAT address (:mod:`fixup.proto.pat.callids`); GRE
(RFC 2637 section 4) of established calls is translated, all other GRE is dropped.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import struct
from collections import Counter

from ipaddress import IPv4Address

from fixup.errors import BadInput, BadRecord, BadReserved, NotPptpGre
from fixup.proto.pat.calls import CallBook, gre_in_key, gre_out_key
from fixup.proto.pat.config import Timeouts, TrackerConfig
from fixup.proto.pat.callids import CallIdsExhausted
from fixup.proto.pat.framer import DropSegment, MessageFramer, Plan
from fixup.proto.pat.model import Call, ConnKey, Connection
from fixup.proto.pat.persist import connection_record, parse_record
from fixup.proto.pat.rewrites import ALLOCATING, plan_message
from fixup.proto.pat.stream import Placement, StreamDirection
from fixup.proto.pat.tables import CONTROL_TRANSITIONS, ControlAction, ControlEvent, ControlState
from fixup.proto.events import Event
from fixup.proto.pat.verdict import ACCEPT, Direction, Verdict, drop
from fixup.wire import ip as ipw
from fixup.wire.gre import CALL_ID_OFFSET, FIXED_WORD_MASK, FIXED_WORD_VALUE, WORD_A, WORD_S, check_payload, parse_gre
from fixup.wire.pptp import CALL_ID_FIELDS, CallIdRole, Header, MessageType, parse_message
from fixup.wire.pptp_messages import StartControlResult

OUT, IN = Direction.OUTBOUND, Direction.INBOUND
_CONTROL_EVENTS = {
    MessageType.SCCRQ: ControlEvent.SCCRQ, MessageType.STOPCCRQ: ControlEvent.STOPCCRQ,
    MessageType.STOPCCRP: ControlEvent.STOPCCRP, MessageType.ECHORQ: ControlEvent.ECHO,
    MessageType.ECHORP: ControlEvent.ECHO,
}


def _control_event(header_type: MessageType, result_code: int | None = None) -> ControlEvent:
    if header_type is MessageType.SCCRP:
        if result_code is None or result_code == StartControlResult.SUCCESS:
            return ControlEvent.SCCRP_OK
        return ControlEvent.SCCRP_FAIL
    return _CONTROL_EVENTS.get(header_type, ControlEvent.CALL)


@dataclass(slots=True)
class Restored:
    """What :meth:`Tracker.restore` took back: counts, the calls whose GRE is open (for the kernel
    path's translations) and one line per record skipped."""

    connections: int = 0
    calls: int = 0
    gre_calls: list[Call] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class Tracker:
    """See module docstring.  One instance per gateway; not thread-safe."""

    def __init__(self, config: TrackerConfig, randbelow: Callable[[int], int] | None = None) -> None:
        """``randbelow``: where translated Call IDs come from (tests pass a seeded one)."""
        self._config = config
        self.pat = config.pat_address.packed
        pat = int(config.pat_address)
        self._pat_sum = (pat >> 16) + (pat & 0xFFFF)  # one's-complement pieces for RFC 1624
        self._pat_complement = (~pat >> 16 & 0xFFFF) + (~pat & 0xFFFF)
        self.gre_in = self.gre_out = 0  # GRE this process translated (the queue path)
        self.kernel_gre = (0, 0)  # (in, out) packets of the live calls, as the kernel path last counted
        self.local_gre: set[bytes] = set()  # source + Call ID of calls this host terminates itself
        self.connections: dict[ConnKey, Connection] = {}
        self._per_client: dict[bytes, int] = {}  # inside address -> tracked connections
        self.counters: Counter[str] = Counter()
        self.drops: Counter[str] = Counter()
        self.anomalies: Counter[str] = Counter()
        self.kernel_drops: Counter[str] = Counter()  # drops counted by the kernel path, as last read
        self._events: list[Event] = []
        self._changed: dict[int, Connection | None] = {}  # conn id -> to save (None: to forget)
        self._next_id = 1
        self._now = 0.0
        self.calls = CallBook(self._events.append, self._anomaly, randbelow, config.limits)

    @property
    def config(self) -> TrackerConfig:
        return self._config

    @config.setter
    def config(self, config: TrackerConfig) -> None:
        """A reload: timeouts, limits and ports apply from now on (the PAT address does not
        change).  Connections on a port no longer inspected are released with their calls."""
        removed = self._config.control_ports - config.control_ports
        self._config = config
        self.calls.set_limits(config.limits)
        for conn in list(self.connections.values()):
            if conn.key[3] in removed:
                self._control(conn, ControlEvent.TCP_CLOSE, self._now, f"port {conn.key[3]} no longer inspected")
                self._forget(conn)

    # -- public API --------------------------------------------------------------------------

    def handle_packet(self, packet: bytes, direction: Direction, now: float) -> Verdict:
        """One IPv4 packet from the queue (see README "How it works" for which ones)."""
        self._now = now
        if packet[9:10] == b"\x2f" and packet[0:1] == b"\x45":  # GRE, 20-byte IPv4 header
            verdict = self._gre_fast(packet, direction, now)
            if verdict is not None:
                return verdict
        try:
            ip = ipw.parse_ipv4(packet)
            if ip.protocol == ipw.IPPROTO_GRE:
                return self._gre(packet, ip, direction, now)
            if ip.protocol == ipw.IPPROTO_TCP:
                return self._tcp(packet, ip, direction, now)
            self.anomalies["not-tcp-or-gre"] += 1
            return ACCEPT
        except BadInput as err:
            return self._drop(err.reason)

    def poll(self, now: float) -> list[Event]:
        """Run the timeouts; return the events since the last poll."""
        t = self.config.timeouts
        for conn in list(self.connections.values()):
            before = len(self._events)
            self._expire(conn, now, t)
            if len(self._events) != before and conn.key in self.connections:
                self._changed[conn.conn_id] = conn
        return self.take_events()

    def _expire(self, conn: Connection, now: float, t: Timeouts) -> None:
        """One connection's timeouts (RFC 2637 leaves them to the implementation)."""
        if conn.state is ControlState.CLOSED:
            if now - conn.changed > t.clearing:
                self._forget(conn)
            return
        idle_limit = t.control_idle if conn.state is not ControlState.IDLE \
            and conn.state is not ControlState.WAIT_REPLY else t.call_setup  # no SCCRP yet: short
        if now - conn.last_seen > idle_limit:
            self._control(conn, ControlEvent.TCP_CLOSE, now, "control connection idle")
            self._forget(conn)
            return
        if conn.state is ControlState.STOPPING and now - conn.changed > t.clearing:
            self._control(conn, ControlEvent.TCP_CLOSE, now, "StopCCRP timeout")
        self.calls.expire(conn, now, t)

    def take_events(self) -> list[Event]:
        """The events since the last call, without running timeouts (the I/O shell calls this
        after every packet, so GRE translation can be programmed before the verdict)."""
        if not self._events:
            return []
        events, self._events[:] = list(self._events), []
        return events

    def note_gre_counts(self, inbound: dict[tuple[bytes, int], tuple[int, int]],
                        outbound: dict[tuple[bytes, bytes, int], tuple[int, int]],
                        unknown: int, now: float) -> None:
        """Counters of GRE forwarded outside the tracker (the kernel path): packets and bytes per
        (server, translated ID) inbound and per (client, server, server ID) outbound, cumulative;
        ``unknown``: GRE of no call dropped there.  A call whose counters moved was active."""
        for (server, translated), (packets, octets) in inbound.items():
            call = self.calls.gre_in.get(gre_in_key(server, translated))
            if call is not None and packets != call.packets_in:
                call.packets_in, call.bytes_in, call.last_activity = packets, octets, now
        for (client, server, server_id), (packets, octets) in outbound.items():
            call = self.calls.gre_out.get(gre_out_key(client, server, server_id))
            if call is not None and packets != call.packets_out:
                call.packets_out, call.bytes_out, call.last_activity = packets, octets, now
        self.kernel_drops["unknown-call"] = unknown
        self.kernel_gre = (sum(p for p, _ in inbound.values()), sum(p for p, _ in outbound.values()))

    # -- saved state (issue 12: a restart keeps the calls) ---------------------------------------

    @property
    def has_changes(self) -> bool:
        """Connections changed since the last :meth:`take_changes` (cheap: per packet)."""
        return bool(self._changed)

    def take_changes(self) -> tuple[list[tuple[int, dict[str, Any]]], list[int]]:
        """Records of the connections changed since the last call, and the ids of those gone:
        the I/O shell stores them before the verdict of the segment that changed them."""
        if not self._changed:
            return [], []
        saves, gone = [], []
        for conn_id, conn in self._changed.items():
            if conn is None or conn.state is ControlState.CLOSED:
                gone.append(conn_id)
            else:
                saves.append((conn_id, connection_record(conn, self.calls.is_gre_open)))
        self._changed.clear()
        return saves, gone

    def export(self) -> list[dict[str, Any]]:
        """Every live connection's record (a full save)."""
        return [connection_record(conn, self.calls.is_gre_open) for conn in self.connections.values()
                if conn.state is not ControlState.CLOSED]

    def restore(self, records: list[Any], now: float) -> Restored:
        """Connections and calls of an earlier process.  A record that does not parse, or
        contradicts one restored before it, is skipped (and said why); nothing is half kept."""
        result = Restored()
        held = {conn.conn_id for conn in self.connections.values()}
        for record in records:
            try:
                saved = parse_record(record)
                if saved.key in self.connections or saved.conn_id in held:
                    raise BadRecord("held twice", where=f"connection {saved.conn_id}")
            except BadRecord as err:
                self.anomalies["restore-bad-record"] += 1
                result.skipped.append(str(err))
                continue
            conn = self._open_connection(saved.key, now, conn_id=saved.conn_id)
            held.add(saved.conn_id)
            saved.apply_to(conn)
            try:
                result.gre_calls += self.calls.adopt(conn, saved.calls, now)
            except ValueError as err:
                self._forget(conn)
                self.anomalies["restore-bad-record"] += 1
                result.skipped.append(f"connection {saved.conn_id}: {err}")
                continue
            result.connections += 1
            result.calls += len(saved.calls)
        self._changed.clear()  # what was restored is what is stored
        return result

    def snapshot(self, now: float) -> dict:
        calls = [c for conn in self.connections.values() for c in self.calls.calls_of(conn)]
        return {
            "pat_address": str(self.config.pat_address),
            "control_ports": sorted(self.config.control_ports),
            "connections": [conn.to_dict(now) for conn in self.connections.values()],
            "calls": [call.to_dict(now) for call in calls],
            "counters": {**self.counters, "gre_in": self.gre_in, "gre_out": self.gre_out,
                         "gre_in_kernel": self.kernel_gre[0], "gre_out_kernel": self.kernel_gre[1],
                         "calls_total": self.calls.total, "calls_active": len(calls),
                         "connections_active": len(self.connections)},
            "drops": dict(self.drops + self.kernel_drops),
            "anomalies": dict(self.anomalies),
        }

    def count(self, reason: str) -> None:
        """A drop decided outside the tracker (the I/O shell's own failures)."""
        self.drops[reason] += 1

    def clear(self, now: float, conn_id: int | None = None) -> int:
        """Forget one or every control connection and its calls (``clear`` command)."""
        conns = [c for c in self.connections.values() if conn_id is None or c.conn_id == conn_id]
        released = 0
        for conn in conns:
            released += len(self.calls.calls_of(conn))
            self._control(conn, ControlEvent.TCP_CLOSE, now, "cleared by operator")
            self._forget(conn)
        return released

    # -- GRE (RFC 2637 section 4.1) ---------------------------------------------------------------

    def _gre_fast(self, packet: bytes, direction: Direction, now: float) -> Verdict | None:
        """The per-packet path for well-formed GRE behind a 20-byte IPv4 header: one unpack, one
        dict lookup on bytes sliced from the packet, the IPv4 checksum adjusted incrementally
        (RFC 1624 eqn. 3).  None: not that simple, take the general path (which names the fault)."""
        total = len(packet)
        if total < 28:
            return None
        length, frag, csum, gre_word, payload = _GRE_FAST.unpack_from(packet)
        header = 8 + (4 if gre_word & WORD_S else 0) + (4 if gre_word & WORD_A else 0)
        if length != total or frag & 0x3FFF or gre_word & FIXED_WORD_MASK != FIXED_WORD_VALUE \
                or 20 + header + payload > total:
            return None
        if direction is OUT:
            call = self.calls.gre_out.get(packet[12:20] + packet[26:28])
            if call is None:
                return self._drop("unknown-call")
            self._account(call, OUT, total, now)
            client = int.from_bytes(call.client, "big")
            change = (~client >> 16 & 0xFFFF) + (~client & 0xFFFF) + self._pat_sum
            return Verdict(True, packet[:10] + _checksum(csum, change) + self.pat + packet[16:])
        if packet[16:20] != self.pat:
            return self._drop("not-for-pat")
        call = self.calls.gre_in.get(packet[12:16] + packet[26:28])
        if call is None:
            return ACCEPT if packet[12:16] + packet[26:28] in self.local_gre else self._drop("unknown-call")
        self._account(call, IN, total, now)
        client = int.from_bytes(call.client, "big")
        change = self._pat_complement + (client >> 16) + (client & 0xFFFF)
        return Verdict(True, b"".join((packet[:10], _checksum(csum, change), packet[12:16], call.client,
                                       packet[20:26], call.original.to_bytes(2, "big"), packet[28:])))

    def _gre(self, packet: bytes, ip: ipw.Ipv4Header, direction: Direction, now: float) -> Verdict:
        start = ip.header_length
        try:
            header = parse_gre(packet, start)
        except NotPptpGre:
            if direction is OUT:  # forwarded from the inside: it would leave without NAT
                return self._drop("gre-not-pptp")
            self.counters["gre_not_pptp"] += 1  # to the router itself (its own GRE tunnels)
            return ACCEPT
        check_payload(header, ip.total_length - start - header.header_length)
        call_id = packet[start + CALL_ID_OFFSET:start + CALL_ID_OFFSET + 2]
        if direction is OUT:
            call = self.calls.gre_out.get(packet[12:20] + call_id)
        elif ip.dst != self.pat:
            return self._drop("not-for-pat")
        else:
            call = self.calls.gre_in.get(packet[12:16] + call_id)
            if call is None and packet[12:16] + call_id in self.local_gre:
                return ACCEPT
        if call is None:
            return self._drop("unknown-call")
        return Verdict(True, self._translate_gre(packet, ip, call, direction, now))

    def _account(self, call: Call, direction: Direction, size: int, now: float) -> None:
        """Per-call and global GRE counters; the call was active now (idle timeout)."""
        call.last_activity = now
        if direction is OUT:
            call.packets_out += 1
            call.bytes_out += size
            self.gre_out += 1
        else:
            call.packets_in += 1
            call.bytes_in += size
            self.gre_in += 1

    def _translate_gre(self, packet: bytes, ip: ipw.Ipv4Header, call: Call, direction: Direction,
                       now: float) -> bytes:
        out = bytearray(packet)
        self._account(call, direction, ip.total_length, now)
        if direction is OUT:
            ipw.rewrite_addresses(out, ip, src=self.pat)
        else:
            at = ip.header_length + CALL_ID_OFFSET
            out[at:at + 2] = call.original.to_bytes(2, "big")
            ipw.rewrite_addresses(out, ip, dst=call.client)
        return bytes(out)

    # -- TCP control connection ------------------------------------------------------------------

    def _tcp(self, packet: bytes, ip: ipw.Ipv4Header, direction: Direction, now: float) -> Verdict:
        tcp = ipw.parse_tcp(packet, ip)
        if direction is OUT:
            key, port = (ip.src, tcp.src_port, ip.dst, tcp.dst_port), tcp.dst_port
        else:
            key, port = (ip.dst, tcp.dst_port, ip.src, tcp.src_port), tcp.src_port
        if port not in self.config.control_ports:
            self.anomalies["not-control-port"] += 1
            return ACCEPT
        self.counters["control_segments"] += 1
        conn = self.connections.get(key)
        opening = direction is OUT and tcp.flags & (ipw.TCP_SYN | ipw.TCP_ACK) == ipw.TCP_SYN
        if conn is None or (conn.state is ControlState.CLOSED and opening):
            if not opening:  # state only from a SYN the inside sent: never from one packet of anyone
                return self._drop("no-connection")
            if conn is not None:
                self._forget(conn)
            refusal = self._connection_refusal(key[0])
            if refusal is not None:
                return self._drop(refusal)
            conn = self._open_connection(key, now)
        conn.last_seen = now
        if tcp.flags & (ipw.TCP_SYN | ipw.TCP_FIN | ipw.TCP_RST) or ip.total_length > tcp.payload_offset:
            self._changed[conn.conn_id] = conn  # a bare ACK changes nothing a restart needs
        stream, other = conn.stream(direction), conn.stream(IN if direction is OUT else OUT)
        if tcp.flags & ipw.TCP_ACK:
            other.acknowledge(tcp.ack)
        if tcp.flags & ipw.TCP_SYN:
            if stream.synced and stream.base != (tcp.seq + 1) % 2**32:
                return self._drop("syn-mid-stream")  # never a resync of a live stream
            if not stream.synced:
                stream.sync(tcp.seq + 1)
                conn.framer(direction).resync()
        verdict = ACCEPT
        payload = packet[tcp.payload_offset:ip.total_length]
        if payload and not tcp.flags & ipw.TCP_SYN:
            verdict = self._payload(conn, direction, packet, ip, tcp, payload, now)
        if tcp.flags & (ipw.TCP_FIN | ipw.TCP_RST) and verdict.accept:
            self._control(conn, ControlEvent.TCP_CLOSE, now, "TCP RST" if tcp.flags & ipw.TCP_RST else "TCP FIN")
        return verdict

    def _connection_refusal(self, client: bytes) -> str | None:
        limits = self.config.limits
        if len(self.connections) >= limits.connections:
            return "connection-quota"
        if self._per_client.get(client, 0) >= limits.connections_per_client:
            return "connection-quota-client"
        return None

    def _open_connection(self, key: ConnKey, now: float, conn_id: int | None = None) -> Connection:
        self._per_client[key[0]] = self._per_client.get(key[0], 0) + 1
        if conn_id is None:  # a new connection (else one restored: counted by the process that saw its SYN)
            conn_id = self._next_id
            self.counters["connections_total"] += 1
        self._next_id = max(self._next_id, conn_id + 1)
        conn = Connection(conn_id, key, self.calls.space_for(key[2]), now)
        conn.space.register(conn_id, key[0])
        conn.framer_out = MessageFramer(self, conn, OUT)
        conn.framer_in = MessageFramer(self, conn, IN)
        self.connections[key] = conn
        return conn

    def _payload(self, conn: Connection, direction: Direction, packet: bytes, ip: ipw.Ipv4Header,
                 tcp: ipw.TcpHeader, payload: bytes, now: float) -> Verdict:
        stream, framer = conn.stream(direction), conn.framer(direction)
        if conn.state is ControlState.CLOSED:
            return self._drop("closed-connection")  # after StopCCRP, FIN, RST or a refusal
        if not stream.synced:
            return self._drop("unsynced-stream")  # its SYN was not seen: nothing to translate by
        start = stream.offset_of(tcp.seq)
        end = start + len(payload)
        placement = stream.place(start, end)
        if placement is Placement.OUTSIDE:
            return self._drop("outside-window")
        if placement is Placement.AHEAD:
            return self._drop("out-of-order")
        data = bytearray(payload)
        changed = stream.replay(data, start, min(end, stream.next_offset))
        if placement is Placement.NEW:
            fresh = stream.next_offset - start
            saved = framer.checkpoint()
            try:
                rewritten = framer.feed(data[fresh:])
            except DropSegment as refused:
                framer.restore(saved)
                return self._refuse(conn, refused, now)
            if framer.desynced:  # a header that does not parse: nothing after it can be translated
                return self._refuse(conn, DropSegment("malformed-message", close=True), now)
            changed |= self._remember(stream, data, fresh, rewritten)
            stream.next_offset = end
        if not changed:
            return ACCEPT
        out = bytearray(packet)
        out[tcp.payload_offset:ip.total_length] = data
        ipw.set_tcp_checksum(out, ip)
        return Verdict(True, bytes(out))

    def _refuse(self, conn: Connection, refused: DropSegment, now: float) -> Verdict:
        """Drop the segment; count it; close the connection when it cannot be trusted any more."""
        if isinstance(refused, CallIdsExhausted):
            self._events.append(Event("no-call-id", f"{_REFUSALS[refused.reason]} toward server "
                                      f"{IPv4Address(conn.server)} (client {IPv4Address(conn.client)}): segment "
                                      "dropped", {"conn": conn.conn_id, "reason": refused.reason}))
        if refused.close:
            self._control(conn, ControlEvent.TCP_CLOSE, now, refused.reason)
        return self._drop(refused.reason)

    @staticmethod
    def _remember(stream: StreamDirection, data: bytearray, fresh: int, rewritten: bytearray) -> bool:
        """Record the bytes the framer changed, by stream offset, and put them in ``data``."""
        if data[fresh:] == rewritten:
            return False
        base = stream.next_offset
        for i, (before, after) in enumerate(zip(data[fresh:], rewritten)):
            if before != after:
                stream.record(base + i, after)
        data[fresh:] = rewritten
        return True

    # -- messages --------------------------------------------------------------------------------

    def plan_message(self, conn: Connection, direction: Direction, header: Header) -> Plan:
        """Framer callback: the Call ID rewrites of a message whose header just arrived."""
        event = _control_event(header.message_type)
        step = CONTROL_TRANSITIONS.get((conn.state, event))
        if step is None or step[0] is not ControlAction.TRACK_CALL:
            if event is ControlEvent.CALL:  # a call message before SCCRP: nothing to translate it by
                raise DropSegment("call-before-established", close=True)
            return ()
        return plan_message(header.message_type, direction, conn.space, conn.conn_id,
                            self._anomaly, conn.server_ids())

    def message_complete(self, conn: Connection, direction: Direction, header: Header, raw: bytes) -> None:
        """Framer callback: a whole message (original bytes) has passed."""
        self.counters["control_messages"] += 1
        if direction is OUT:
            conn.messages_out += 1
        else:
            conn.messages_in += 1
        try:
            msg = parse_message(raw)
        except BadReserved:
            self.anomalies["bad-reserved"] += 1
            try:
                msg = parse_message(raw, strict=False)
            except BadInput as err:  # Reserved0 (RFC 2637 section 1.4) is checked even so
                self._release_unclaimed(conn, direction, header, raw)
                self.message_malformed(conn, err)
                return
        event = _control_event(header.message_type, getattr(msg, "result_code", None))
        action = self._control(conn, event, self._now, header.message_type.name)
        if action is ControlAction.TRACK_CALL:
            self.calls.on_message(conn, direction, msg, self._now)

    def _release_unclaimed(self, conn: Connection, direction: Direction, header: Header, raw: bytes) -> None:
        """A request or reply the client sent was allocated a translated ID as it streamed
        through, but does not parse: no call claims the ID, so it goes back."""
        if direction is not OUT or header.message_type not in ALLOCATING:
            return
        for offset, role in CALL_ID_FIELDS[header.message_type]:
            if role is CallIdRole.OWN and len(raw) >= offset + 2:
                original = int.from_bytes(raw[offset:offset + 2], "big")
                if conn.by_original(original) is None:
                    conn.space.release(conn.conn_id, original)

    def message_malformed(self, conn: Connection, err: BadInput) -> None:
        """Framer callback: a header that does not parse; the stream is passed untouched until a
        segment starts with a valid header."""
        self.anomalies[err.reason] += 1
        self._events.append(Event("protocol-error", f"control connection {conn.conn_id}: {err}; "
                                  "segment dropped, connection closed",
                                  {"conn": conn.conn_id, "reason": err.reason}))

    def _control(self, conn: Connection, event: ControlEvent, now: float, why: str) -> ControlAction | None:
        """Run ``event`` through :data:`CONTROL_TRANSITIONS`."""
        step = CONTROL_TRANSITIONS.get((conn.state, event))
        if step is None:
            self.anomalies["unexpected-message"] += 1
            return None
        action, next_state = step
        if action is ControlAction.RELEASE_ALL:
            self.calls.release_all(conn, now, why)
        elif action is ControlAction.CLEARING_ALL:
            self.calls.clear_all(conn, now)
        if next_state is not conn.state:
            conn.state, conn.changed = next_state, now
            self._events.append(Event(f"control-{next_state.value}", f"PPTP control connection {conn.conn_id} "
                                      f"{_endpoints(conn)}: {next_state.value} ({why})", {"conn": conn.conn_id}))
        return action

    def _forget(self, conn: Connection) -> None:
        if self.connections.pop(conn.key, None) is None:
            return
        self._changed[conn.conn_id] = None
        left = self._per_client.get(conn.client, 1) - 1
        if left > 0:
            self._per_client[conn.client] = left
        else:
            self._per_client.pop(conn.client, None)
        conn.space.release_connection(conn.conn_id)  # no-op when its calls were released already
        conn.space.unregister(conn.conn_id)
        self.calls.forget_space_if_idle(conn.server)

    def _drop(self, reason: str) -> Verdict:
        self.drops[reason] += 1
        return drop(reason)

    def _anomaly(self, reason: str) -> None:
        self.anomalies[reason] += 1


_REFUSALS = {"no-free-call-id": "no free Call ID",
             "call-quota-connection": "calls_per_connection reached on this control connection",
             "call-quota-client": "calls_per_client reached by this inside host"}
_GRE_FAST = struct.Struct("!2xH2xH2xH8xIH")  # IPv4 total length, flags+fragment, checksum; GRE word, length


def _checksum(checksum: int, change: int) -> bytes:
    """RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'): ``change`` sums the removed words complemented
    and the added words (at most a few 16-bit words, so two folds suffice)."""
    total = (~checksum & 0xFFFF) + change
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return (~total & 0xFFFF).to_bytes(2, "big")


def _endpoints(conn: Connection) -> str:
    client, cport, server, sport = conn.key
    return f"{IPv4Address(client)}:{cport} -> {IPv4Address(server)}:{sport}"
