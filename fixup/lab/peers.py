"""Small PPTP peers for the lab and the netns tests (real sockets: an I/O tool).

Run inside network namespaces as subprocesses::

    python -m fixup.lab.peers server --listen 192.0.2.10 [--first-call-id 100]
    python -m fixup.lab.peers client --server 192.0.2.10 --name c1 --call-ids 0[,1,2]
                                     [--segment-sizes 1-3] [--gre-count 5] [--clear] [--hold]
    python -m fixup.lab.peers garbage --server 192.0.2.10 [--port 1723]
    python -m fixup.lab.peers gre-inject --to 192.0.2.1 --call-id 4096 [--count 1]
    python -m fixup.lab.peers gre-listen [--timeout 2]
    python -m fixup.lab.peers dial --server 192.0.2.10 --user U --password P [--auth ...] [--mppe ...]
                                   [--tun NAME] [--route CIDR] [--ping ADDR]
                                   [--transfer ADDR:PORT BYTES] [--call-id N] [--timeout S] [--hold]
    python -m fixup.lab.peers sink --listen 10.0.0.5:9000 [--count N]

Every mode prints one JSON object per line on stdout.  Control messages use the codec of
:mod:`fixup.wire.pptp` (RFC 2637 section 2), GRE the codec of :mod:`fixup.wire.gre` (RFC 2637
section 4) through a raw ``IPPROTO_GRE`` socket: received datagrams include the IPv4 header,
sent ones get theirs from the kernel.  Nothing waits without a timeout.
"""
from __future__ import annotations

import argparse
import json
import random
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fixup.errors import BadInput
from fixup.wire.gre import GreHeader, build_gre, parse_gre
from fixup.wire.pptp import (
    PREFIX_LENGTH,
    Message,
    MessageType,
    StartControlConnectionRequest,
    build_message,
    parse_header,
    parse_message,
)

PPTP_PORT = 1723  # RFC 2637 section 2: the control connection's TCP port
REPLY_TIMEOUT = 5.0
MAX_DATAGRAM = 65535

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
    """One PPTP control connection (RFC 2637 section 2): whole messages in, whole messages out.

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
        self.buffer = bytearray()
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
            msg = self._take_message()
            if msg is not None:
                return msg
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
                if self.buffer:
                    raise BadInput(f"connection closed inside a message ({len(self.buffer)} bytes)")
            self.buffer += chunk

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

    def _take_message(self) -> Message | None:
        if len(self.buffer) < PREFIX_LENGTH:
            return None
        header = parse_header(self.buffer)
        if len(self.buffer) < header.length:
            return None
        raw = bytes(self.buffer[: header.length])
        del self.buffer[: header.length]
        return parse_message(raw)

    def close(self, *, reset: bool = False) -> None:
        if reset:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
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


# --- misbehaving peers ----------------------------------------------------------------------


def garbage_cases(rng: random.Random) -> list[tuple[str, bytes]]:
    """Byte strings a PPTP control connection must survive (RFC 2637 section 1.4 header rules
    broken one at a time), each sent on its own TCP connection."""
    sccrq = bytearray(build_message(StartControlConnectionRequest()))
    bad_cookie = bytearray(sccrq)
    bad_cookie[4:8] = b"\xde\xad\xbe\xef"
    bad_type = bytearray(sccrq)
    bad_type[8:10] = struct.pack("!H", 99)
    management = bytearray(sccrq)
    management[2:4] = struct.pack("!H", 2)
    short_length = bytearray(sccrq)
    short_length[0:2] = struct.pack("!H", 8)
    huge_length = bytearray(sccrq)
    huge_length[0:2] = struct.pack("!H", 0xFFFF)
    reserved = bytearray(sccrq)
    reserved[10:12] = b"\x12\x34"
    return [
        ("random-bytes", rng.randbytes(200)),
        ("bad-cookie", bytes(bad_cookie)),
        ("bad-control-type", bytes(bad_type)),
        ("management-message", bytes(management)),
        ("short-length", bytes(short_length)),
        ("huge-length", bytes(huge_length)),
        ("bad-reserved0", bytes(reserved)),
        ("truncated-then-close", bytes(sccrq[:7])),
        ("valid-then-random", bytes(sccrq) + rng.randbytes(64)),
    ]


def run_garbage(args: argparse.Namespace) -> int:
    """Send each garbage case on its own connection, read whatever comes back, reset."""
    rng = random.Random(args.seed)
    for case, data in garbage_cases(rng):
        answer = 0
        try:
            sock = connect(args.server, args.port, timeout=args.timeout)
        except OSError as err:
            emit(event="garbage", case=case, connected=False, error=str(err))
            continue
        try:
            sock.sendall(data)
            answer = _drain(sock, args.wait)
            emit(event="garbage", case=case, connected=True, sent=len(data), answer_bytes=answer)
        except OSError as err:
            emit(event="garbage", case=case, connected=True, sent=len(data), error=str(err))
        finally:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
    emit(result="garbage", ok=True)
    return 0


def _drain(sock: socket.socket, wait: float) -> int:
    """Bytes the peer sends back within ``wait`` seconds (or until it closes)."""
    total = 0
    deadline = time.monotonic() + wait
    while (remaining := deadline - time.monotonic()) > 0:
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(4096)
        except socket.timeout:
            break
        if not chunk:
            break
        total += len(chunk)
    return total


def run_gre_inject(args: argparse.Namespace) -> int:
    """Send ``--count`` enhanced-GRE packets with ``--call-id`` to ``--to`` (stale-GRE tests)."""
    gre = GreSocket()
    try:
        for n in range(args.count):
            payload = f"{args.payload} {n}".encode()
            gre.send(args.to, args.call_id, payload, sequence=args.sequence + n)
        emit(result="gre-inject", ok=True, to=args.to, call_id=args.call_id, sent=args.count)
    finally:
        gre.close()
    return 0


def run_gre_listen(args: argparse.Namespace) -> int:
    """Print every enhanced-GRE packet arriving within ``--timeout`` s, then a count."""
    gre = GreSocket()
    received = 0
    emit(event="listening")
    try:
        deadline = time.monotonic() + args.timeout
        while (remaining := deadline - time.monotonic()) > 0:
            packet = gre.receive(remaining)
            if packet is None:
                break
            received += 1
            emit(event="gre", source=packet.source, call_id=packet.header.call_id,
                 payload=packet.payload.decode("latin-1"))
    finally:
        gre.close()
    emit(result="gre-listen", ok=True, received=received, unparsable=gre.unparsable)
    return 0


# --- command line ---------------------------------------------------------------------------


def parse_sizes(text: str) -> tuple[int, int]:
    """``"1-3"`` -> (1, 3); ``"2"`` -> (2, 2)."""
    low_text, _, high_text = text.partition("-")
    low, high = int(low_text), int(high_text or low_text)
    if not 1 <= low <= high:
        raise argparse.ArgumentTypeError(f"bad segment sizes {text!r}: want LOW-HIGH with 1 <= LOW <= HIGH")
    return low, high


def parse_call_ids(text: str) -> list[int]:
    """``"0,1,2"`` -> [0, 1, 2]; each a 16-bit Call ID (RFC 2637 section 2.7)."""
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad call ids {text!r}") from None
    if not ids or any(not 0 <= i <= 0xFFFF for i in ids) or len(set(ids)) != len(ids):
        raise argparse.ArgumentTypeError(f"bad call ids {text!r}: distinct integers 0..65535")
    return ids


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fixup.lab.peers", description=__doc__.split("\n")[0])
    modes = parser.add_subparsers(dest="mode", required=True)

    server = modes.add_parser("server", help="a PAC answering calls and echoing GRE")
    server.add_argument("--listen", required=True)
    server.add_argument("--port", type=int, default=PPTP_PORT)
    server.add_argument("--first-call-id", type=int, default=100)
    server.add_argument("--quiet-gre", action="store_true", help="no JSON line per GRE packet")

    client = modes.add_parser("client", help="a PNS placing calls and pinging through GRE")
    client.add_argument("--server", required=True)
    client.add_argument("--port", type=int, default=PPTP_PORT)
    client.add_argument("--name", default="client")
    client.add_argument("--call-ids", type=parse_call_ids, default=[0])
    client.add_argument("--segment-sizes", type=parse_sizes, default=None)
    client.add_argument("--gre-count", type=int, default=5)
    client.add_argument("--gre-size", type=int, default=0,
                        help="pad each GRE payload to this many bytes (over the MTU: IP fragments)")
    client.add_argument("--clear", action="store_true", help="CCRQ/CDN then StopCCRQ/StopCCRP at the end")
    client.add_argument("--hold", action="store_true",
                        help="after the GRE phase, wait for a line or EOF on stdin before finishing")
    client.add_argument("--hold-timeout", type=float, default=60.0)
    client.add_argument("--again", action="store_true",
                        help="after the hold: one more Echo round trip and GRE ping on the same calls")
    client.add_argument("--timeout", type=float, default=REPLY_TIMEOUT, help="seconds per reply")
    client.add_argument("--seed", type=int, default=None)

    garbage = modes.add_parser("garbage", help="connect to the control port and write junk")
    garbage.add_argument("--server", required=True)
    garbage.add_argument("--port", type=int, default=PPTP_PORT)
    garbage.add_argument("--seed", type=int, default=1723)
    garbage.add_argument("--timeout", type=float, default=3.0, help="connect timeout")
    garbage.add_argument("--wait", type=float, default=0.3, help="seconds to read answers per case")

    inject = modes.add_parser("gre-inject", help="send enhanced GRE with a given Call ID")
    inject.add_argument("--to", required=True)
    inject.add_argument("--call-id", type=int, required=True)
    inject.add_argument("--count", type=int, default=1)
    inject.add_argument("--sequence", type=int, default=0)
    inject.add_argument("--payload", default="stale")

    listen = modes.add_parser("gre-listen", help="print enhanced GRE arriving for a while")
    listen.add_argument("--timeout", type=float, default=2.0)

    from fixup.lab.pptp_dialer import add_dial_arguments, add_sink_arguments

    add_dial_arguments(modes.add_parser("dial", help="dial a PPTP server: PPP up, TUN, ping / transfer"))
    add_sink_arguments(modes.add_parser("sink", help="TCP sink answering the SHA-256 of what it read"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.mode == "server":
        from fixup.lab.peers_server import run_server

        return run_server(args)
    if args.mode == "client":
        from fixup.lab.peers_client import run_client

        return run_client(args)
    if args.mode == "garbage":
        return run_garbage(args)
    if args.mode == "gre-inject":
        return run_gre_inject(args)
    if args.mode in ("dial", "sink"):
        from fixup.lab.pptp_dialer import run_dial, run_sink

        return run_dial(args) if args.mode == "dial" else run_sink(args)
    return run_gre_listen(args)


if __name__ == "__main__":
    # Run the imported module's main so every peer shares one fixup.lab.peers (one print lock).
    from fixup.lab.peers import main as _main

    sys.exit(_main())
