"""PPTP control-message framing over a reassembled byte stream (RFC 2637 section 2).

Bytes arrive in order but cut anywhere.  The framer collects each message's header, asks the
tracker for a *plan* (which Call ID fields to rewrite, and how) once the header is known, rewrites
those fields byte by byte as they pass, and hands the complete original message to the tracker.
"""
from __future__ import annotations

from typing import Any, Protocol

from fixup.errors import BadInput
from fixup.wire.pptp import PREFIX_LENGTH, Header, parse_header


class DropSegment(Exception):
    """The segment being fed cannot be forwarded as it is: the tracker restores the framer to
    before it and drops it (``reason`` is the drop counter).  ``close``: the connection is not to
    be trusted any more (its calls are released, later segments dropped)."""

    def __init__(self, reason: str, *, close: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.close = close


class FieldRewrite(Protocol):
    """Decides what goes out for one 16-bit Call ID field.  ``high`` sees the original high byte
    and, when it is in the same segment, the low byte; ``low`` is called after ``high``."""

    def high(self, high: int, low: int | None) -> int: ...

    def low(self, high: int, low: int) -> int: ...


Plan = tuple[tuple[int, FieldRewrite], ...]


class FramerSink(Protocol):
    """Who the framer reports to (the tracker); ``owner`` and ``direction`` are passed back."""

    def plan_message(self, owner: Any, direction: Any, header: Header) -> Plan: ...

    def message_complete(self, owner: Any, direction: Any, header: Header, raw: bytes) -> None: ...

    def message_malformed(self, owner: Any, err: BadInput) -> None: ...


Checkpoint = tuple[bytes, "Header | None", Plan, bool]


class MessageFramer:
    """Feeds one direction's new bytes; returns them with Call ID fields rewritten."""

    __slots__ = ("_sink", "_owner", "_direction", "_buf", "_header", "_plan", "desynced")

    def __init__(self, sink: FramerSink, owner: Any, direction: Any) -> None:
        self._sink = sink
        self._owner = owner
        self._direction = direction
        self._buf = b""  # the current message so far (bytes: the empty one is shared)
        self._header: Header | None = None
        self._plan: Plan = ()
        self.desynced = False

    @property
    def buffered(self) -> int:
        """Bytes of the current message seen so far (0 at a message boundary)."""
        return len(self._buf)

    def checkpoint(self) -> Checkpoint:
        return self._buf, self._header, self._plan, self.desynced

    def restore(self, saved: Checkpoint) -> None:
        self._buf, self._header, self._plan, self.desynced = saved

    def resync(self) -> None:
        """Start afresh at a message boundary (the caller saw a valid header at this offset)."""
        self._next_message()
        self.desynced = False

    def _next_message(self) -> None:
        self._buf = b""
        self._header = None
        self._plan = ()

    def feed(self, data: bytes | bytearray | memoryview) -> bytearray:
        out = bytearray(data)
        i, n = 0, len(out)
        while i < n and not self.desynced:
            i = self._consume(out, i)
        return out

    def _consume(self, out: bytearray, i: int) -> int:
        header = self._header
        target = header.length if header else PREFIX_LENGTH
        take = min(target - len(self._buf), len(out) - i)
        pos = len(self._buf)
        self._buf += bytes(out[i:i + take])
        if header is None:
            if len(self._buf) == PREFIX_LENGTH:
                self._start_message()
            return i + take
        self._rewrite_fields(out, i, pos, take)
        if len(self._buf) == header.length:
            message = self._buf
            self._next_message()
            self._sink.message_complete(self._owner, self._direction, header, message)
        return i + take

    def _start_message(self) -> None:
        try:
            self._header = parse_header(self._buf)
        except BadInput as err:
            self.desynced = True
            self._sink.message_malformed(self._owner, err)
            return
        self._plan = self._sink.plan_message(self._owner, self._direction, self._header)

    def _rewrite_fields(self, out: bytearray, i: int, pos: int, take: int) -> None:
        buf, end = self._buf, pos + take
        for offset, rewrite in self._plan:
            if pos <= offset < end:
                low = buf[offset + 1] if offset + 1 < end else None
                out[i + offset - pos] = rewrite.high(buf[offset], low)
            if pos <= offset + 1 < end:
                out[i + offset + 1 - pos] = rewrite.low(buf[offset], buf[offset + 1])
