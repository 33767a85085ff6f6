"""Sockets of the PPTP test peers (an I/O tool): a blocking control connection, a raw GRE socket
and one JSON line per event on stdout.  The protocol logic they drive is sans-I/O in
:mod:`fixup.lab.pptp_peer`; the peers are :mod:`fixup.lab.peers_client`,
:mod:`fixup.lab.peers_server`, :mod:`fixup.lab.pptp_dialer` and the misbehaving ones of
:mod:`fixup.lab.peers`.  Control messages use the codec of :mod:`fixup.wire.pptp` (RFC 2637
section 2), GRE the codec of :mod:`fixup.wire.gre` (section 4) through a raw ``IPPROTO_GRE``
socket: received datagrams include the IPv4 header, sent ones get theirs from the kernel.
"""
from __future__ import annotations

import json
import random
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fixup.errors import BadInput
from fixup.lab.pptp_peer import MessageStream
from fixup.wire.gre import GreHeader, build_gre, parse_gre
from fixup.wire.pptp import Message, MessageType, build_message

PPTP_PORT = 1723  # RFC 2637 section 2: the control connection's TCP port
REPLY_TIMEOUT = 5.0
MAX_DATAGRAM = 65535
RESET_LINGER = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST, no TIME_WAIT

_print_lock = threading.Lock()


def emit(**fields: Any) -> None:
    """Print one JSON line on stdout (thread-safe, flushed at once)."""
    line = json.dumps(fields, sort_keys=False, default=str)
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def message_name(msg: Message) -> str:
    return msg.message_type.name


# --- the control connection -----------------------------------------------------------------


class ControlChannel:
    """One PPTP control connection (RFC 2637 section 2) on a blocking socket: whole messages in
    (:class:`fixup.lab.pptp_peer.MessageStream`), whole messages out.

    ``segment_sizes`` (low, high) writes every message in pieces of ``low..high`` bytes, one
    ``send()`` each with TCP_NODELAY and a short pause, so the peer sees tiny TCP segments."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        segment_sizes: tuple[int, int] | None = None,
        pause: float = 0.003,
        rng: random.Random | None = None,
    ) -> None:
        self.sock = sock
        self.segment_sizes = segment_sizes
        self.pause = pause
        self.rng = rng or random.Random()
        self.stream = MessageStream()
        self.ready: list[Message] = []
        self.closed = False
        if segment_sizes is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, msg: Message) -> None:
        self.send_bytes(build_message(msg))

    def send_bytes(self, data: bytes) -> None:
        if self.segment_sizes is None:
            self.sock.sendall(data)
            return
        low, high = self.segment_sizes
        position = 0
        while position < len(data):
            size = self.rng.randint(low, high)
            self.sock.sendall(data[position : position + size])
            position += size
            time.sleep(self.pause)

    def receive(self, timeout: float) -> Message | None:
        """The next whole message, or None when the peer closed.  Raises TimeoutError after
        ``timeout`` seconds without a whole message, BadInput for bytes that are not PPTP."""
        deadline = time.monotonic() + timeout
        while True:
            if self.ready:
                return self.ready.pop(0)
            if self.closed:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no whole control message within {timeout:g} s")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                self.closed = True
                if self.stream.pending:
                    raise BadInput(f"connection closed inside a message ({self.stream.pending} bytes)")
            self.ready += self.stream.feed(chunk)

    def expect(
        self,
        message_type: MessageType,
        timeout: float = REPLY_TIMEOUT,
        accept: Callable[[Message], bool] = lambda msg: True,
        on_other: Callable[[Message], None] | None = None,
    ) -> Message:
        """Wait for a message of ``message_type`` that ``accept``s; others go to ``on_other``."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = max(deadline - time.monotonic(), 0.0)
            try:
                msg = self.receive(remaining)
            except TimeoutError:
                raise TimeoutError(f"no {message_type.name} within {timeout:g} s") from None
            if msg is None:
                raise ConnectionError(f"connection closed while waiting for {message_type.name}")
            if msg.message_type == message_type and accept(msg):
                return msg
            if on_other is not None:
                on_other(msg)

    def close(self, *, reset: bool = False) -> None:
        if reset:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_LINGER)
        self.sock.close()


def connect(server: str, port: int, timeout: float = REPLY_TIMEOUT) -> socket.socket:
    sock = socket.create_connection((server, port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


# --- enhanced GRE ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GrePacket:
    """One received enhanced-GRE packet (RFC 2637 section 4.1) and who sent it."""

    source: str
    destination: str
    header: GreHeader
    payload: bytes


class GreSocket:
    """A raw ``IPPROTO_GRE`` socket: receives every GRE datagram of the namespace."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_GRE)
        self.unparsable = 0

    def send(
        self,
        destination: str,
        call_id: int,
        payload: bytes,
        *,
        sequence: int | None = None,
        acknowledgment: int | None = None,
    ) -> None:
        header = GreHeader(call_id=call_id, payload_length=len(payload), sequence=sequence,
                           acknowledgment=acknowledgment)
        self.sock.sendto(build_gre(header, payload), (destination, 0))

    def receive(self, timeout: float) -> GrePacket | None:
        """The next enhanced-GRE packet within ``timeout`` s, or None.  Other GRE is counted
        in ``unparsable`` and skipped."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([self.sock], [], [], remaining)
            if not ready:
                return None
            datagram = self.sock.recv(MAX_DATAGRAM)
            packet = parse_datagram(datagram)
            if packet is None:
                self.unparsable += 1
                continue
            return packet

    def close(self) -> None:
        self.sock.close()


def parse_datagram(datagram: bytes) -> GrePacket | None:
    """IPv4 header + enhanced GRE as a raw socket delivers it; None if it is not that."""
    if len(datagram) < 20 or datagram[0] >> 4 != 4:
        return None
    header_length = (datagram[0] & 0x0F) * 4
    source = socket.inet_ntoa(datagram[12:16])
    destination = socket.inet_ntoa(datagram[16:20])
    try:
        gre = parse_gre(datagram, header_length)
    except BadInput:
        return None
    start = header_length + gre.header_length
    payload = datagram[start : start + gre.payload_length]
    return GrePacket(source, destination, gre, payload)
