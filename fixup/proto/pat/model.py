"""What the tracker keeps per control connection and per call."""
from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import TYPE_CHECKING

from fixup.proto.pat.stream import StreamDirection
from fixup.proto.pat.tables import CallState, ControlState
from fixup.proto.pat.verdict import Direction

if TYPE_CHECKING:
    from fixup.proto.pat.callids import CallIdSpace
    from fixup.proto.pat.framer import MessageFramer

ConnKey = tuple[bytes, int, bytes, int]  # client address, client port, server address, server port


@dataclass(slots=True, eq=False)
class Call:
    """One call.  ``original``: the Call ID the inside client chose (None until the client's
    reply, for a call the server requested); ``translated``: what the server sees instead;
    ``server_id``: the server's own Call ID (None until its request or reply)."""

    conn: Connection
    client: bytes
    server: bytes
    original: int | None
    translated: int | None
    server_id: int | None
    state: CallState
    created: float
    changed: float
    last_activity: float
    initiator: str  # "client" or "server"
    packets_out: int = 0
    bytes_out: int = 0
    packets_in: int = 0
    bytes_in: int = 0

    @property
    def conn_id(self) -> int:
        return self.conn.conn_id

    def to_dict(self, now: float) -> dict:
        return {
            "conn": self.conn_id, "client": str(IPv4Address(self.client)), "server": str(IPv4Address(self.server)),
            "call_id": self.original, "translated_id": self.translated, "peer_call_id": self.server_id,
            "state": self.state.value, "initiator": self.initiator,
            "age": round(now - self.created, 3), "idle": round(now - self.last_activity, 3),
            "packets_out": self.packets_out, "bytes_out": self.bytes_out,
            "packets_in": self.packets_in, "bytes_in": self.bytes_in,
        }


class Connection:
    """One PPTP control connection (a TCP connection to a control port)."""

    __slots__ = ("conn_id", "key", "space", "created", "last_seen", "state", "changed", "_index",
                 "stream_out", "stream_in", "framer_out", "framer_in", "messages_out", "messages_in")

    def __init__(self, conn_id: int, key: ConnKey, space: CallIdSpace, now: float) -> None:
        self.conn_id = conn_id
        self.key = key
        self.space = space
        self.created = self.last_seen = self.changed = now
        self.state = ControlState.IDLE
        # a connection has one call, or a few: a list, scanned, is the smallest index
        # (10,000s of connections)
        self._index: list[Call] = []
        self.stream_out, self.stream_in = StreamDirection(), StreamDirection()
        self.framer_out: MessageFramer | None = None  # set by the tracker, which is their sink
        self.framer_in: MessageFramer | None = None
        self.messages_out = self.messages_in = 0

    def by_original(self, original: int) -> Call | None:
        for call in self._index:
            if call.original == original:
                return call
        return None

    def by_server_id(self, server_id: int) -> Call | None:
        for call in self._index:
            if call.server_id == server_id:
                return call
        return None

    def link(self, call: Call) -> None:
        """Keep ``call``; it is found by its original and server Call IDs as they are now."""
        if call not in self._index:
            self._index.append(call)

    def unlink(self, call: Call, *, server_only: bool = False) -> None:
        if not server_only and call in self._index:
            self._index.remove(call)

    def all_calls(self) -> list[Call]:
        return list(self._index)

    def server_ids(self) -> frozenset[int]:
        return frozenset(call.server_id for call in self._index if call.server_id is not None)

    def stream(self, direction: Direction) -> StreamDirection:
        return self.stream_out if direction is Direction.OUTBOUND else self.stream_in

    def framer(self, direction: Direction) -> MessageFramer:
        return self.framer_out if direction is Direction.OUTBOUND else self.framer_in

    @property
    def client(self) -> bytes:
        return self.key[0]

    @property
    def server(self) -> bytes:
        return self.key[2]

    def to_dict(self, now: float) -> dict:
        client, cport, server, sport = self.key
        return {
            "id": self.conn_id, "client": str(IPv4Address(client)), "client_port": cport,
            "server": str(IPv4Address(server)), "server_port": sport, "state": self.state.value,
            "age": round(now - self.created, 3), "idle": round(now - self.last_seen, 3),
            "calls": len(self.all_calls()),
            "messages_out": self.messages_out, "messages_in": self.messages_in,
        }
