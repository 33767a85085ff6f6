"""Rewriting of Call ID fields in control messages, one field at a time, byte by byte.

Which fields (RFC 2637 section 2; offsets in :data:`fixup.wire.pptp.CALL_ID_FIELDS`):

* outbound (client to server), the client's own Call ID: allocated in OCRQ, ICRQ, OCRP, ICRP
  (:class:`Allocate`); translated in CCRQ and CDN (:class:`Forward`);
* inbound (server to client), the Peer Call ID (the client's ID as the server knows it) in
  OCRP, ICRP, ICCN, WEN, SLI: translated back (:class:`Reverse`);
* inbound CDN Call ID: RFC 2637 section 2.13 puts the sender's own ID there, some servers put
  the client's: :class:`DisconnectCallId` tells them apart.

The server's own Call IDs are never changed.  See :mod:`fixup.proto.pat.callids` for why the high
byte can always be decided before the low byte is seen.
"""
from __future__ import annotations

from typing import Callable

from fixup.proto.pat.callids import CallIdSpace
from fixup.proto.pat.framer import DropSegment, FieldRewrite, Plan
from fixup.proto.pat.verdict import Direction
from fixup.wire.pptp import CALL_ID_FIELDS, CallIdRole, MessageType

ALLOCATING = frozenset({MessageType.OCRQ, MessageType.ICRQ, MessageType.OCRP, MessageType.ICRP})

Count = Callable[[str], None]


class _Field:
    def __init__(self, space: CallIdSpace, conn: int, count: Count) -> None:
        self.space = space
        self.conn = conn
        self.count = count
        self.result: int | None = None  # whole output value, once decided
        self.prefix: int | None = None  # mapped high byte decided from the high byte alone

    def low(self, high: int, low: int) -> int:
        if self.result is not None:
            return self.result & 0xFF
        if self.prefix is None:
            return low
        return self._low_from_prefix(high, low)

    def _low_from_prefix(self, high: int, low: int) -> int:
        raise NotImplementedError


class Allocate(_Field):
    """Client's own Call ID in a request or reply it sends: choose the translated ID."""

    def high(self, high: int, low: int | None) -> int:
        if low is not None:
            translated = self.space.allocate(self.conn, high << 8 | low)  # CallIdsExhausted
            self.result = translated
            return translated >> 8
        bucket = self.space.reserve_high(self.conn, high)
        self.prefix = bucket
        return bucket

    def _low_from_prefix(self, high: int, low: int) -> int:
        t_low = self.space.complete(self.conn, self.prefix, low)
        self.result = self.prefix << 8 | t_low
        return t_low


class Forward(_Field):
    """Client's own Call ID referring to an existing call (CCRQ, CDN): original -> translated.
    An ID the connection has no call for is refused (:class:`DropSegment`): sent verbatim it
    could name another client's translated ID toward the same server (issue 11 item 7)."""

    def high(self, high: int, low: int | None) -> int:
        if low is not None:
            translated = self.space.forward(self.conn, high << 8 | low)
            if translated is None:
                raise DropSegment("unknown-call", close=True)
            self.result = translated
            return translated >> 8
        self.prefix = self.space.forward_high(self.conn, high)
        if self.prefix is None:
            raise DropSegment("unknown-call", close=True)
        return self.prefix

    def _low_from_prefix(self, high: int, low: int) -> int:
        translated = self.space.forward(self.conn, high << 8 | low)
        if translated is None:
            raise DropSegment("unknown-call", close=True)
        return translated & 0xFF


class Reverse(_Field):
    """Peer Call ID from the server (a translated ID): translated -> client's original."""

    def high(self, high: int, low: int | None) -> int:
        if low is not None:
            original = self._original(high << 8 | low)
            if original is None:
                self.count("unknown-call")
                return high
            self.result = original
            return original >> 8
        self.prefix = self.space.reverse_high(self.conn, high)
        return high if self.prefix is None else self.prefix

    def _original(self, translated: int) -> int | None:
        owner = self.space.owner(translated)
        return owner[1] if owner is not None and owner[0] == self.conn else None

    def _low_from_prefix(self, high: int, low: int) -> int:
        original = self._original(high << 8 | low)
        if original is not None:
            return original & 0xFF
        self.count("unknown-call")
        return low


class DisconnectCallId(Reverse):
    """Inbound CDN Call ID: the server's own ID (RFC 2637 section 2.13) passes; a translated
    client ID is mapped back.  ``server_ids`` are this connection's server Call IDs."""

    def __init__(self, space: CallIdSpace, conn: int, count: Count, server_ids: frozenset[int]) -> None:
        super().__init__(space, conn, count)
        self.server_ids = server_ids

    def high(self, high: int, low: int | None) -> int:
        if low is not None:
            value = high << 8 | low
            if value in self.server_ids or self._original(value) is None:
                self.result = value
                return high
            self.result = self._original(value)
            return self.result >> 8
        if any(sid >> 8 == high for sid in self.server_ids):
            return high  # most likely the server's own ID: leave both bytes
        return super().high(high, None)


def plan_message(message_type: MessageType, direction: Direction, space: CallIdSpace, conn: int,
                 count: Count, server_ids: frozenset[int]) -> Plan:
    """The field rewrites for one call-management message."""
    plan: list[tuple[int, FieldRewrite]] = []
    for offset, role in CALL_ID_FIELDS[message_type]:
        rewrite = _field_rewrite(message_type, direction, role, space, conn, count, server_ids)
        if rewrite is not None:
            plan.append((offset, rewrite))
    return tuple(plan)


def _field_rewrite(message_type: MessageType, direction: Direction, role: CallIdRole, space: CallIdSpace,
                   conn: int, count: Count, server_ids: frozenset[int]) -> FieldRewrite | None:
    if direction is Direction.OUTBOUND:
        if role is not CallIdRole.OWN:
            return None
        if message_type in ALLOCATING:
            return Allocate(space, conn, count)
        return Forward(space, conn, count)
    if role is CallIdRole.PEER:
        return Reverse(space, conn, count)
    if message_type is MessageType.CDN:
        return DisconnectCallId(space, conn, count, server_ids)
    return None
