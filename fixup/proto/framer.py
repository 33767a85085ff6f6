"""PPTP control-message framing over a reassembled byte stream (RFC 2637 section 2).

Bytes arrive in order but cut anywhere.  The framer collects each message's header, asks the
tracker for a *plan* (which Call ID fields to rewrite, and how) once the header is known, rewrites
those fields byte by byte as they pass, and hands the complete original message to the tracker.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

from fixup.errors import BadInput
from fixup.wire.pptp import PREFIX_LENGTH, Header, parse_header


class CallIdsExhausted(Exception):
    """No translated Call ID is free: the segment must be dropped (TCP will retransmit it)."""


class FieldRewrite(Protocol):
    """Decides what goes out for one 16-bit Call ID field.  ``high`` sees the original high byte
    and, when it is in the same segment, the low byte; ``low`` is called after ``high``."""

    def high(self, high: int, low: int | None) -> int: ...

    def low(self, high: int, low: int) -> int: ...


Plan = tuple[tuple[int, FieldRewrite], ...]
Planner = Callable[[Header], Plan]
MessageSink = Callable[[Header, bytes], None]
ErrorSink = Callable[[BadInput], None]


@dataclass(slots=True)
class _Progress:
    buf: bytearray = field(default_factory=bytearray)
    header: Header | None = None
    plan: Plan = ()
    desynced: bool = False

    def copy(self) -> _Progress:
        return _Progress(bytearray(self.buf), self.header, self.plan, self.desynced)


class MessageFramer:
    """Feeds one direction's new bytes; returns them with Call ID fields rewritten."""

    def __init__(self, planner: Planner, on_message: MessageSink, on_error: ErrorSink) -> None:
        self._planner = planner
        self._on_message = on_message
        self._on_error = on_error
        self._p = _Progress()

    @property
    def desynced(self) -> bool:
        return self._p.desynced

    @property
    def at_boundary(self) -> bool:
        return not self._p.buf

    def checkpoint(self) -> _Progress:
        return self._p.copy()

    def restore(self, saved: _Progress) -> None:
        self._p = saved

    def resync(self) -> None:
        """Start afresh at a message boundary (the caller saw a valid header at this offset)."""
        self._p = _Progress()

    def feed(self, data: bytes | bytearray | memoryview) -> bytearray:
        out = bytearray(data)
        i, n = 0, len(out)
        while i < n and not self._p.desynced:
            i = self._consume(out, i)
        return out

    def _consume(self, out: bytearray, i: int) -> int:
        p = self._p
        target = p.header.length if p.header else PREFIX_LENGTH
        take = min(target - len(p.buf), len(out) - i)
        pos = len(p.buf)
        p.buf += out[i:i + take]
        if p.header is None:
            if len(p.buf) == PREFIX_LENGTH:
                self._start_message()
            return i + take
        self._rewrite_fields(out, i, pos, take)
        if len(p.buf) == p.header.length:
            header, message = p.header, bytes(p.buf)
            self._p = _Progress()
            self._on_message(header, message)
        return i + take

    def _start_message(self) -> None:
        p = self._p
        try:
            p.header = parse_header(p.buf)
        except BadInput as err:
            p.desynced = True
            self._on_error(err)
            return
        p.plan = self._planner(p.header)

    def _rewrite_fields(self, out: bytearray, i: int, pos: int, take: int) -> None:
        buf, end = self._p.buf, pos + take
        for offset, rewrite in self._p.plan:
            if pos <= offset < end:
                low = buf[offset + 1] if offset + 1 < end else None
                out[i + offset - pos] = rewrite.high(buf[offset], low)
            if pos <= offset + 1 < end:
                out[i + offset + 1 - pos] = rewrite.low(buf[offset], buf[offset + 1])
