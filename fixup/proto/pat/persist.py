"""A control connection and its calls as a saved record, and back (issue 12: a restart keeps the
PAT calls).  Pure: records are plain JSON-ready dicts; the I/O shell stores them.

What the next process needs to carry on, per direction of the TCP stream (RFC 9293 section 3.4):
the sequence number of stream offset 0, the offset of the last PPTP message boundary (RFC 2637
section 2: messages follow one another, each starting with its Length), and the bytes rewritten
before it that the receiver has not acknowledged yet (a retransmission must carry them again).
The next process resumes each direction at that boundary: a segment that starts there or earlier
is parsed afresh from it; one that starts later (a message cut across segments when the old
process stopped) cannot be translated and is dropped, like any segment after a gap.

Per call: the three Call IDs, the state (RFC 2637 section 3.2) and whether its GRE was open.
Times are ``time.monotonic()`` values, which hold across processes of one boot (the store is
discarded on another boot).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any, Callable

from fixup.errors import BadRecord
from fixup.proto.pat.model import Call, ConnKey, Connection
from fixup.proto.pat.stream import SEQ_MOD, StreamDirection
from fixup.proto.pat.tables import CallState, ControlState

RECORD_VERSION = 1
MAX_CALLS = 4096  # far above calls_per_connection's ceiling in practice; a bound for a bad store
MAX_REWRITES = 65536
_RESTORABLE = (ControlState.IDLE, ControlState.WAIT_REPLY, ControlState.ESTABLISHED, ControlState.STOPPING)
_INITIATORS = ("client", "server")


@dataclass(frozen=True, slots=True)
class SavedStream:
    base: int | None
    boundary: int
    rewrites: tuple[tuple[int, int], ...]

    def apply_to(self, stream: StreamDirection) -> None:
        if self.base is None:
            return
        stream.sync(self.base)
        stream.next_offset = self.boundary
        for offset, byte in self.rewrites:
            stream.record(offset, byte)


@dataclass(frozen=True, slots=True)
class SavedCall:
    original: int | None
    translated: int | None
    server_id: int | None
    state: CallState
    initiator: str
    created: float
    changed: float
    gre_open: bool
    counts: tuple[int, int, int, int]  # packets out, bytes out, packets in, bytes in


@dataclass(frozen=True, slots=True)
class SavedConnection:
    conn_id: int
    key: ConnKey
    state: ControlState
    created: float
    changed: float
    messages: tuple[int, int]
    out: SavedStream
    inbound: SavedStream
    calls: tuple[SavedCall, ...]

    def apply_to(self, conn: Connection) -> None:
        """Streams, state and counts onto a fresh connection (framers at a message boundary)."""
        conn.state, conn.created, conn.changed = self.state, self.created, self.changed
        conn.messages_out, conn.messages_in = self.messages
        self.out.apply_to(conn.stream_out)
        self.inbound.apply_to(conn.stream_in)


# -- to a record --------------------------------------------------------------------------------


def connection_record(conn: Connection, gre_open: Callable[[Call], bool]) -> dict[str, Any]:
    client, cport, server, sport = conn.key
    return {
        "v": RECORD_VERSION, "id": conn.conn_id, "client": str(IPv4Address(client)), "client_port": cport,
        "server": str(IPv4Address(server)), "server_port": sport, "state": conn.state.value,
        "created": conn.created, "changed": conn.changed, "messages": [conn.messages_out, conn.messages_in],
        "out": _stream_record(conn.stream_out, conn.framer_out.buffered if conn.framer_out else 0),
        "in": _stream_record(conn.stream_in, conn.framer_in.buffered if conn.framer_in else 0),
        "calls": [_call_record(call, gre_open(call)) for call in conn.all_calls()],
    }


def _stream_record(stream: StreamDirection, buffered: int) -> dict[str, Any]:
    boundary = stream.next_offset - buffered
    rewrites = [[offset, byte] for offset, byte in (stream.rewrites or {}).items() if offset < boundary]
    return {"base": stream.base, "at": boundary, "rewrites": rewrites}


def _call_record(call: Call, gre_open: bool) -> dict[str, Any]:
    return {"original": call.original, "translated": call.translated, "server_id": call.server_id,
            "state": call.state.value, "initiator": call.initiator, "created": call.created,
            "changed": call.changed, "gre": gre_open,
            "counts": [call.packets_out, call.bytes_out, call.packets_in, call.bytes_in]}


# -- from a record ------------------------------------------------------------------------------


def parse_record(record: Any) -> SavedConnection:
    """A record back, every field checked; :class:`BadRecord` names the first one that is wrong."""
    r = _Fields(record, "connection")
    if r.get("v", int) != RECORD_VERSION:
        raise BadRecord(f"record version {r.raw('v')!r} is not {RECORD_VERSION}", where="connection")
    key = (r.address("client"), r.integer("client_port", 0, 0xFFFF), r.address("server"),
           r.integer("server_port", 0, 0xFFFF))
    state = r.choice("state", ControlState)
    if state not in _RESTORABLE:
        raise BadRecord(f"state {state.value} is not kept across a restart", where="connection.state")
    messages = r.sequence("messages", 2, 2)
    calls = r.sequence("calls", 0, MAX_CALLS)
    return SavedConnection(
        conn_id=r.integer("id", 1, 2**62), key=key, state=state, created=r.number("created"),
        changed=r.number("changed"),
        messages=(_Fields.as_int(messages[0], "messages"), _Fields.as_int(messages[1], "messages")),
        out=_parse_stream(r.get("out", dict), "out"), inbound=_parse_stream(r.get("in", dict), "in"),
        calls=tuple(_parse_call(call, f"calls[{i}]") for i, call in enumerate(calls)),
    )


def _parse_stream(record: Mapping[str, Any], where: str) -> SavedStream:
    r = _Fields(record, where)
    base = None if r.raw("base") is None else r.integer("base", 0, SEQ_MOD - 1)
    rewrites = r.sequence("rewrites", 0, MAX_REWRITES)
    pairs = []
    for item in rewrites:
        if not isinstance(item, list) or len(item) != 2:
            raise BadRecord("a rewrite is not an [offset, byte] pair", where=f"{where}.rewrites")
        pairs.append((_Fields.as_int(item[0], f"{where}.rewrites", 0, 2**62), _Fields.as_int(item[1], f"{where}.rewrites", 0, 255)))
    return SavedStream(base, r.integer("at", 0, 2**62), tuple(sorted(pairs)))


def _parse_call(record: Any, where: str) -> SavedCall:
    r = _Fields(record, where)
    counts = r.sequence("counts", 4, 4)
    initiator = r.get("initiator", str)
    if initiator not in _INITIATORS:
        raise BadRecord(f"initiator {initiator!r} is neither client nor server", where=f"{where}.initiator")
    call = SavedCall(
        original=r.optional_id("original"), translated=r.optional_id("translated"),
        server_id=r.optional_id("server_id"), state=r.choice("state", CallState), initiator=initiator,
        created=r.number("created"), changed=r.number("changed"), gre_open=r.get("gre", bool),
        counts=tuple(_Fields.as_int(value, f"{where}.counts", 0, 2**63) for value in counts),  # type: ignore[arg-type]
    )
    if call.state is CallState.RELEASED:
        raise BadRecord("a released call is not kept", where=f"{where}.state")
    if call.gre_open and (call.translated is None or call.server_id is None or call.original is None):
        raise BadRecord("a call with open GRE lacks one of its Call IDs", where=where)
    if (call.original is None) != (call.translated is None):
        raise BadRecord("original and translated Call IDs come together", where=where)
    return call


class _Fields:
    """Typed access to one record's fields; every failure is a :class:`BadRecord` saying where."""

    def __init__(self, record: Any, where: str) -> None:
        if not isinstance(record, Mapping):
            raise BadRecord("not a mapping", where=where)
        self.record, self.where = record, where

    def raw(self, name: str) -> Any:
        return self.record.get(name)

    def get(self, name: str, kind: type) -> Any:
        value = self.record.get(name)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise BadRecord(f"expected {kind.__name__}, got {type(value).__name__}", where=f"{self.where}.{name}")
        return value

    def integer(self, name: str, low: int, high: int) -> int:
        return self.as_int(self.record.get(name), f"{self.where}.{name}", low, high)

    def optional_id(self, name: str) -> int | None:
        value = self.record.get(name)
        return None if value is None else self.as_int(value, f"{self.where}.{name}", 0, 0xFFFF)

    def number(self, name: str) -> float:
        value = self.record.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise BadRecord("expected a number", where=f"{self.where}.{name}")
        return float(value)

    def choice(self, name: str, enum: Any) -> Any:
        try:
            return enum(self.record.get(name))
        except ValueError:
            raise BadRecord(f"{self.record.get(name)!r} is not a {enum.__name__}", where=f"{self.where}.{name}") from None

    def address(self, name: str) -> bytes:
        try:
            return IPv4Address(self.get(name, str)).packed
        except ValueError:
            raise BadRecord("not an IPv4 address", where=f"{self.where}.{name}") from None

    def sequence(self, name: str, shortest: int, longest: int) -> list[Any]:
        value = self.get(name, list)
        if not shortest <= len(value) <= longest:
            raise BadRecord(f"{len(value)} items, expected {shortest}-{longest}", where=f"{self.where}.{name}")
        return value

    @staticmethod
    def as_int(value: Any, where: str, low: int = 0, high: int = 2**63) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise BadRecord(f"expected an integer {low}-{high}, got {value!r}", where=where)
        return value
