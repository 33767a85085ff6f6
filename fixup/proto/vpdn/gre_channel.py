"""One call's enhanced-GRE data channel at a PPTP endpoint (RFC 2637 section 4).

Sequence numbers on every payload packet, acknowledgments piggybacked on payload packets or
sent alone after a short delay (section 4.2), the peer's receive window respected on sending
(section 4.3, "Packet Recv. Window Size" from its call request), and on receiving: duplicates
and stale packets dropped, a few packets held to restore order, a gap given up on after a
short time (PPP above copes with loss; section 4.4 leaves the policy to the implementation).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from fixup.wire.gre import GreHeader, build_gre

SEQ_MOD = 1 << 32


def _after(a: int, b: int) -> bool:
    """``a`` comes after ``b`` in 32-bit sequence space (RFC 1982 style)."""
    return 0 < (a - b) % SEQ_MOD < SEQ_MOD // 2


@dataclass(slots=True)
class ChannelStats:
    sent: int = 0
    received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    out_of_order: int = 0
    duplicates: int = 0
    lost: int = 0
    window_drops: int = 0
    outside_window: int = 0  # sequence numbers too far ahead to be the peer's (spoofed, issue 11)


class GreChannel:
    """Sans-I/O: GRE packets (header + payload, no IP header) in and out, PPP payloads delivered."""

    def __init__(self, peer_call_id: int, peer_window: int, now: float, *, reorder_slots: int = 16,
                 reorder_timeout: float = 0.1, ack_delay: float = 0.05, backlog: int = 64,
                 accept_ahead: int = 1024) -> None:
        self.peer_call_id = peer_call_id  # goes in the Key of what we send
        self.peer_window = max(1, peer_window)
        self.next_send = 0  # our next sequence number
        self.peer_acked = SEQ_MOD - 1  # highest of our numbers the peer acknowledged
        self.expected = None  # next sequence number we want from the peer (first one sets it)
        self.owed_ack: int | None = None  # highest peer sequence number delivered, not yet acked
        self.owed_since = 0.0
        self.held: dict[int, bytes] = {}  # out-of-order packets by sequence number
        self.held_since = 0.0
        self.queue: deque[bytes] = deque()  # payloads waiting for window space
        self.reorder_slots, self.reorder_timeout, self.ack_delay, self.backlog = (
            reorder_slots, reorder_timeout, ack_delay, backlog)
        self.stats = ChannelStats()
        # how far ahead of the next expected number a packet may be: our announced window (64)
        # with room for lost packets and acknowledgments, not 2**31 (RFC 2637 section 4.4)
        self.accept_ahead = accept_ahead
        self.last_received = now

    # -- sending ------------------------------------------------------------------------------

    def send(self, payload: bytes, now: float) -> list[bytes]:
        """Queue a PPP payload; return the GRE packets the window lets out now."""
        if len(self.queue) >= self.backlog:
            self.stats.window_drops += 1
            return []
        self.queue.append(payload)
        return self._flush()

    def _in_flight(self) -> int:
        return (self.next_send - 1 - self.peer_acked) % SEQ_MOD

    def _flush(self) -> list[bytes]:
        out = []
        while self.queue and self._in_flight() < self.peer_window:
            payload = self.queue.popleft()
            ack, self.owed_ack = self.owed_ack, None
            header = GreHeader(self.peer_call_id, len(payload), self.next_send, ack)
            self.next_send = (self.next_send + 1) % SEQ_MOD
            self.stats.sent += 1
            self.stats.bytes_sent += len(payload)
            out.append(build_gre(header, payload))
        return out

    # -- receiving ----------------------------------------------------------------------------

    def receive(self, header: GreHeader, payload: bytes, now: float) -> tuple[list[bytes], list[bytes]]:
        """A GRE packet for this call: (PPP payloads to deliver in order, GRE packets to send)."""
        self.last_received = now
        if header.acknowledgment is not None and _after(header.acknowledgment, self.peer_acked) \
                and not _after(header.acknowledgment, (self.next_send - 1) % SEQ_MOD):
            self.peer_acked = header.acknowledgment
        delivered: list[bytes] = []
        if header.sequence is not None:
            delivered = self._accept(header.sequence, payload[:header.payload_length], now)
        return delivered, self._flush()

    def _accept(self, seq: int, payload: bytes, now: float) -> list[bytes]:
        self.stats.bytes_received += len(payload)
        if self.expected is None:
            self.expected = seq
        if seq != self.expected and not _after(seq, self.expected):
            self.stats.duplicates += 1
            return []
        if seq in self.held:
            self.stats.duplicates += 1
            return []
        if (seq - self.expected) % SEQ_MOD > self.accept_ahead:
            self.stats.outside_window += 1
            return []
        if seq != self.expected:
            self.stats.out_of_order += 1
            if not self.held:
                self.held_since = now
            self.held[seq] = payload
            return self._skip_gap(now) if len(self.held) > self.reorder_slots else []
        return self._deliver_from(seq, payload, now)

    def _deliver_from(self, seq: int, payload: bytes, now: float) -> list[bytes]:
        delivered = [payload]
        self._note_delivered(seq, now)
        while self.expected in self.held:
            seq = self.expected
            delivered.append(self.held.pop(seq))
            self._note_delivered(seq, now)
        if self.held:
            self.held_since = now
        return delivered

    def _note_delivered(self, seq: int, now: float) -> None:
        self.stats.received += 1  # bytes are counted in _accept
        if self.owed_ack is None:
            self.owed_since = now
        self.owed_ack = seq
        self.expected = (seq + 1) % SEQ_MOD

    def _skip_gap(self, now: float) -> list[bytes]:
        """Give up on the missing packets: deliver what is held, in order."""
        first = min(self.held, key=lambda s: (s - self.expected) % SEQ_MOD)
        self.stats.lost += (first - self.expected) % SEQ_MOD
        self.expected = first
        return self._deliver_from(first, self.held.pop(first), now)

    # -- time -----------------------------------------------------------------------------------

    def poll(self, now: float) -> tuple[list[bytes], list[bytes]]:
        """(payloads released by a gap timeout, GRE packets: an ack-only one when one is owed)."""
        delivered = []
        if self.held and now - self.held_since >= self.reorder_timeout:
            delivered = self._skip_gap(now)
        out = self._flush()
        if self.owed_ack is not None and now - self.owed_since >= self.ack_delay:
            out.append(build_gre(GreHeader(self.peer_call_id, 0, None, self.owed_ack)))
            self.owed_ack = None
        return delivered, out

    def next_deadline(self) -> float | None:
        deadlines = []
        if self.held:
            deadlines.append(self.held_since + self.reorder_timeout)
        if self.owed_ack is not None:
            deadlines.append(self.owed_since + self.ack_delay)
        return min(deadlines, default=None)
