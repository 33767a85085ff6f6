"""One direction of a TCP byte stream as a middlebox sees it (RFC 9293 section 3.4).

Segments are mapped from 32-bit sequence numbers to 64-bit stream offsets.  The tracker parses
every byte once, in order; what it changed is remembered by offset until the receiver
acknowledges it, so a retransmitted or overlapping segment is rewritten identically.
"""
from __future__ import annotations

from enum import Enum

SEQ_MOD = 1 << 32
HALF = 1 << 31
WINDOW = 1 << 30  # farther than this from the expected offset: not our business


class Placement(Enum):
    """Where a segment falls relative to the next expected stream offset."""

    NEW = "new"  # starts at or before the next offset and brings new bytes
    OLD = "old"  # entirely already seen (retransmission)
    AHEAD = "ahead"  # starts after a gap: we cannot parse it yet
    OUTSIDE = "outside"  # not within any plausible window


class StreamDirection:
    """Sequence space and rewrite memory of one direction."""

    __slots__ = ("base", "next_offset", "rewrites")

    def __init__(self) -> None:
        self.base: int | None = None  # sequence number of stream offset 0
        self.next_offset = 0
        self.rewrites: dict[int, int] | None = None  # offset -> byte we sent instead (made when needed)

    @property
    def synced(self) -> bool:
        return self.base is not None

    def sync(self, seq: int) -> None:
        """Stream offset 0 is sequence number ``seq`` (the byte after a SYN, or a resync point)."""
        self.base = seq % SEQ_MOD
        self.next_offset = 0

    def offset_of(self, seq: int) -> int:
        """The stream offset of ``seq``, taken as the nearest one to the next expected offset."""
        assert self.base is not None
        rel = (seq - self.base) % SEQ_MOD
        delta = (rel - self.next_offset % SEQ_MOD + HALF) % SEQ_MOD - HALF
        return self.next_offset + delta

    def place(self, start: int, end: int) -> Placement:
        if start > self.next_offset:
            return Placement.AHEAD if start - self.next_offset <= WINDOW else Placement.OUTSIDE
        if end <= self.next_offset:
            return Placement.OLD if self.next_offset - start <= WINDOW else Placement.OUTSIDE
        return Placement.NEW

    def replay(self, payload: bytearray, start: int, end: int) -> bool:
        """Put back into ``payload`` (covering ``[start, end)``) every byte we rewrote there
        before.  Returns whether anything changed."""
        changed = False
        for offset, byte in (self.rewrites or {}).items():
            if start <= offset < end and payload[offset - start] != byte:
                payload[offset - start] = byte
                changed = True
        return changed

    def record(self, offset: int, byte: int) -> None:
        if self.rewrites is None:
            self.rewrites = {}
        self.rewrites[offset] = byte

    def acknowledge(self, ack_seq: int) -> None:
        """The peer acknowledged everything before ``ack_seq``: forget rewrites there."""
        if self.base is None or not self.rewrites:
            return
        acked = self.offset_of(ack_seq)
        rewrites = self.rewrites
        while rewrites:
            first = next(iter(rewrites))
            if first >= acked:
                break
            del rewrites[first]
        if not rewrites:
            self.rewrites = None
