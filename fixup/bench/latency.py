"""OCRP to first GRE: how long after a call is set up its first GRE packet gets through.

The client side of the benchmark's ``latency`` command (see :mod:`fixup.bench.bulk`): plain
blocking sockets in the client namespace.  Per call: SCCRQ/SCCRP, then an OCRQ whose Phone
Number asks the benchmark PAC for a GRE burst (RFC 2637 sections 2.7/2.8, GRE section 4.1).
The OCRP's arrival and the first GRE packet's arrival for the call are both taken from the
kernel's receive timestamps (SO_TIMESTAMPNS, one clock for the TCP and the raw GRE socket), so
the scheduling of this process does not enter the result.
"""
from __future__ import annotations

import socket
import struct
import time
from typing import Any

from fixup.errors import BadInput
from fixup.lab.peer_io import RESET_LINGER
from fixup.lab.pptp_peer import MessageStream, PnsConnection
from fixup.wire.gre import parse_gre
from fixup.wire.pptp import Message, OutgoingCallReply, StartControlConnectionReply, build_message

BURST_PHONE = b"gre-burst"  # an OCRQ with this Phone Number asks the benchmark PAC for a GRE burst
LATENCY_TIMEOUT = 2.0
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux asm-generic/socket.h
TIMESPEC = struct.Struct("@qq")
CMSG_BUFFER = socket.CMSG_SPACE(TIMESPEC.size)
PAUSE_BETWEEN_CALLS = 0.02


def received_at(sock: socket.socket, size: int) -> tuple[bytes, int]:
    """recvmsg with the kernel's receive timestamp (SO_TIMESTAMPNS, CLOCK_REALTIME ns); falls back
    to the time of the call when the kernel gave none."""
    data, ancillary, _flags, _addr = sock.recvmsg(size, CMSG_BUFFER)
    for level, kind, value in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= TIMESPEC.size:
            seconds, nanoseconds = TIMESPEC.unpack_from(value)
            return data, seconds * 1_000_000_000 + nanoseconds
    return data, time.time_ns()


def read_message(sock: socket.socket, stream: MessageStream, wanted: type, deadline: float) -> tuple[Message, int]:
    """Read until a message of type ``wanted`` is whole; its arrival timestamp (ns)."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no {wanted.__name__} within the timeout")
        sock.settimeout(remaining)
        data, stamp = received_at(sock, 4096)
        if not data:
            raise ConnectionError(f"closed while waiting for {wanted.__name__}")
        for msg in stream.feed(data):
            if isinstance(msg, wanted):
                return msg, stamp


def first_gre(gre: socket.socket, server: str, call_id: int, deadline: float) -> int | None:
    """Arrival time (ns) of the first enhanced-GRE packet from ``server`` for ``call_id``."""
    source = socket.inet_aton(server)
    while (remaining := deadline - time.monotonic()) > 0:
        gre.settimeout(remaining)
        try:
            datagram, stamp = received_at(gre, 2048)
        except socket.timeout:
            return None
        if len(datagram) < 20 or datagram[12:16] != source:
            continue
        try:
            header = parse_gre(datagram, (datagram[0] & 0x0F) * 4)
        except BadInput:
            continue
        if header.call_id == call_id:
            return stamp
    return None


def drain(sock: socket.socket) -> None:
    sock.setblocking(False)
    try:
        while True:
            sock.recv(4096)
    except (BlockingIOError, InterruptedError):
        pass
    finally:
        sock.setblocking(True)


def one_latency(server: str, port: int, gre: socket.socket, call_id: int) -> float | None:
    """OCRP arrival to first GRE arrival, in ms, for one call (None: no GRE in time)."""
    deadline = time.monotonic() + LATENCY_TIMEOUT
    sock = socket.create_connection((server, port), timeout=LATENCY_TIMEOUT)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        stream, pns = MessageStream(strict=False), PnsConnection(name=b"fixup-bench", vendor=b"fixup.bench")
        sock.sendall(build_message(pns.start()))
        read_message(sock, stream, StartControlConnectionReply, deadline)
        drain(gre)
        sock.sendall(build_message(pns.place(call_id, phone=BURST_PHONE)))
        _, ocrp_at = read_message(sock, stream, OutgoingCallReply, deadline)
        gre_at = first_gre(gre, server, call_id, deadline)
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_LINGER)
        sock.close()
    return None if gre_at is None else (gre_at - ocrp_at) / 1e6


def measure_latency(server: str, port: int, count: int, first_call_id: int) -> dict[str, Any]:
    gre = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_GRE)
    gre.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    samples: list[float] = []
    errors: list[str] = []
    try:
        for n in range(count):
            try:
                sample = one_latency(server, port, gre, (first_call_id + n) % 0xFFFF + 1)
            except (OSError, TimeoutError, ConnectionError, BadInput) as err:
                errors.append(f"{type(err).__name__}: {err}")
                continue
            if sample is None:
                errors.append("no GRE within the timeout")
            else:
                samples.append(sample)
            time.sleep(PAUSE_BETWEEN_CALLS)  # let the server see the reset and end the burst
    finally:
        gre.close()
    return {"samples_ms": samples, "failed": len(errors), "first_error": errors[0] if errors else None}
