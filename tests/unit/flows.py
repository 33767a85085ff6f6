"""Test helpers: IPv4/TCP/GRE packets and a PPTP control conversation driven through a Tracker."""
from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from fixup.proto.pat.config import Timeouts, TrackerConfig
from fixup.proto.pat.tracker import Tracker
from fixup.proto.pat.verdict import Direction, Verdict
from fixup.wire.gre import GreHeader, build_gre
from fixup.wire.ip import internet_checksum  # noqa: F401 (tests use it)
from fixup.wire.pptp import build_message

OUT, IN = Direction.OUTBOUND, Direction.INBOUND
PAT = IPv4Address("192.0.2.1")
SERVER = IPv4Address("192.0.2.10")
SYN, ACK, FIN, RST, PSH = 0x02, 0x10, 0x01, 0x04, 0x08


def ipv4(src: IPv4Address, dst: IPv4Address, proto: int, payload: bytes) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto, 0,
                         src.packed, dst.packed)
    header = header[:10] + struct.pack("!H", internet_checksum(header)) + header[12:]
    return header + payload


def tcp(src: IPv4Address, sport: int, dst: IPv4Address, dport: int, seq: int, ack: int, flags: int,
        payload: bytes = b"") -> bytes:
    segment = struct.pack("!HHIIBBHHH", sport, dport, seq % 2**32, ack % 2**32, 5 << 4, flags, 65535, 0, 0)
    return ipv4(src, dst, 6, segment + payload)


def gre(src: IPv4Address, dst: IPv4Address, call_id: int, payload: bytes = b"ppp", seq: int | None = 1) -> bytes:
    return ipv4(src, dst, 47, build_gre(GreHeader(call_id, len(payload), seq, None), payload))


def tcp_payload(packet: bytes) -> bytes:
    ihl = (packet[0] & 15) * 4
    return packet[ihl + (packet[ihl + 12] >> 4) * 4:]


def tracker(seed: int = 1723, **timeouts: float) -> Tracker:
    """A tracker whose translated Call IDs are random but repeatable (``seed``)."""
    return Tracker(TrackerConfig(pat_address=PAT, control_ports=frozenset({1723}), timeouts=Timeouts(**timeouts)),
                   randbelow=random.Random(seed).randrange)


@dataclass
class Flow:
    """One client's control connection through the tracker; keeps both sequence spaces."""

    t: Tracker
    client: IPv4Address
    port: int = 40000
    server: IPv4Address = SERVER
    now: float = 1.0
    cseq: int = 1000
    sseq: int = 7000
    received: dict[Direction, bytearray] = field(default_factory=lambda: {OUT: bytearray(), IN: bytearray()})
    verdicts: list[Verdict] = field(default_factory=list)

    def open(self) -> Flow:
        self.send(OUT, b"", SYN)
        self.send(IN, b"", SYN | ACK)
        return self

    def packet(self, direction: Direction, payload: bytes, flags: int, seq: int | None = None) -> bytes:
        if direction is OUT:
            return tcp(self.client, self.port, self.server, 1723, self.cseq if seq is None else seq, self.sseq, flags, payload)
        return tcp(self.server, 1723, self.client, self.port, self.sseq if seq is None else seq, self.cseq, flags, payload)

    def send(self, direction: Direction, payload: bytes, flags: int = ACK | PSH, seq: int | None = None) -> Verdict:
        """Send one segment; what passes is appended to ``received[direction]``."""
        verdict = self.t.handle_packet(self.packet(direction, payload, flags, seq), direction, self.now)
        self.verdicts.append(verdict)
        if seq is None:
            advance = len(payload) + (1 if flags & (SYN | FIN) else 0)
            if direction is OUT:
                self.cseq += advance
            else:
                self.sseq += advance
        if verdict.accept and payload and seq is None:
            sent = payload if verdict.packet is None else tcp_payload(verdict.packet)
            self.received[direction] += sent
        return verdict

    def message(self, direction: Direction, msg, pieces: int | list[int] | None = None) -> bytes:
        """Send one control message (whole, or cut into the given piece sizes); return what passed."""
        data = build_message(msg)
        before = len(self.received[direction])
        for piece in _cut(data, pieces):
            self.send(direction, piece)
        return bytes(self.received[direction][before:])


def _cut(data: bytes, pieces: int | list[int] | None) -> list[bytes]:
    if pieces is None:
        return [data]
    sizes = [pieces] * len(data) if isinstance(pieces, int) else list(pieces)
    out, at = [], 0
    for size in sizes:
        if at >= len(data):
            break
        out.append(data[at:at + size])
        at += size
    if at < len(data):
        out.append(data[at:])
    return out


def call_id_at(message: bytes, offset: int) -> int:
    return struct.unpack_from("!H", message, offset)[0]
