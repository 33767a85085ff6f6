"""What the tracker keeps per control connection and per call."""
from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import TYPE_CHECKING

from fixup.proto.stream import StreamDirection
from fixup.proto.tables import CallState, ControlState
from fixup.proto.verdict import Direction

if TYPE_CHECKING:
    from fixup.proto.callids import CallIdSpace
    from fixup.proto.framer import MessageFramer

ConnKey = tuple[bytes, int, bytes, int]  # client address, client port, server address, server port


@dataclass(slots=True, eq=False)
class Call:
    """One call.  ``original``: the Call ID the inside client chose (None until the client's
    reply, for a call the server requested); ``translated``: what the server sees instead;
    ``server_id``: the server's own Call ID (None until its request or reply)."""

    conn_id: int
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

    def to_dict(self, now: float) -> dict:
        return {
            "conn": self.conn_id, "client": str(IPv4Address(self.client)), "server": str(IPv4Address(self.server)),
            "call_id": self.original, "translated_id": self.translated, "peer_call_id": self.server_id,
            "state": self.state.value, "initiator": self.initiator,
            "age": round(now - self.created, 3), "idle": round(now - self.last_activity, 3),
            "packets_out": self.packets_out, "bytes_out": self.bytes_out,
            "packets_in": self.packets_in, "bytes_in": self.bytes_in,
        }


@dataclass(slots=True, eq=False)
class Connection:
    """One PPTP control connection (a TCP connection to a control port)."""

    conn_id: int
    key: ConnKey
    space: CallIdSpace
    created: float
    last_seen: float
    state: ControlState = ControlState.IDLE
    changed: float = 0.0
    streams: dict[Direction, StreamDirection] = field(default_factory=dict)
    framers: dict[Direction, MessageFramer] = field(default_factory=dict)
    calls: dict[int, Call] = field(default_factory=dict)  # by original Call ID
    by_server: dict[int, Call] = field(default_factory=dict)  # by server Call ID
    messages: dict[Direction, int] = field(default_factory=lambda: {Direction.OUTBOUND: 0, Direction.INBOUND: 0})

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
            "calls": len(self.calls) + sum(1 for c in self.by_server.values() if c.original is None),
            "messages_out": self.messages[Direction.OUTBOUND], "messages_in": self.messages[Direction.INBOUND],
        }
