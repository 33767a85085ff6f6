"""Small PPTP peers for the lab and the netns tests (real sockets: an I/O tool).

Run inside network namespaces as subprocesses::

    python -m fixup.lab.peers server --listen 192.0.2.10 [--first-call-id 100]
    python -m fixup.lab.peers client --server 192.0.2.10 --name c1 --call-ids 0[,1,2]
                                     [--segment-sizes 1-3] [--gre-count 5] [--clear] [--hold]
    python -m fixup.lab.peers garbage --server 192.0.2.10 [--port 1723]
    python -m fixup.lab.peers gre-inject --to 192.0.2.1 --call-id 4096 [--count 1]
    python -m fixup.lab.peers storm --server 192.0.2.10 [--count 1000]
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
import random
import socket
import struct
import sys
import time
from collections.abc import Sequence

from fixup.lab.peer_io import PPTP_PORT, REPLY_TIMEOUT, RESET_LINGER, ControlChannel, GreSocket, connect, emit
from fixup.lab.peers_client import run_client
from fixup.lab.peers_server import run_server
from fixup.lab.pptp_dialer import add_dial_arguments, add_sink_arguments, run_dial, run_sink
from fixup.lab.pptp_peer import PnsConnection
from fixup.wire.pptp import MessageType, StartControlConnectionRequest, build_message


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
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_LINGER)
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


def run_storm(args: argparse.Namespace) -> int:
    """Hostile tests: one control connection, then ``--count`` OCRQs with distinct Call IDs back
    to back; how many were answered within ``--wait`` seconds."""
    pns = PnsConnection(name=b"storm")
    channel = ControlChannel(connect(args.server, args.port, args.timeout))
    answered = 0
    try:
        channel.send(pns.start())
        channel.expect(MessageType.SCCRP, args.timeout)
        try:  # a gateway that drops the storm's segments stalls the stream: send what goes
            channel.send_bytes(b"".join(build_message(pns.place(call_id)) for call_id in range(args.count)))
        except TimeoutError:
            pass
        deadline = time.monotonic() + args.wait
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                msg = channel.receive(remaining)
            except TimeoutError:
                break
            if msg is None:
                break
            answered += pns.receive(msg).kind == "call-up"
    finally:
        channel.close(reset=True)
    emit(result="storm", ok=True, sent=args.count, answered=answered)
    return 0


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
    client.add_argument("--again-call", type=int, default=None, metavar="CALL_ID",
                        help="with --again: place one more call with this Call ID on the same connection")
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

    storm = modes.add_parser("storm", help="one control connection, then many OCRQs at once")
    storm.add_argument("--server", required=True)
    storm.add_argument("--port", type=int, default=PPTP_PORT)
    storm.add_argument("--count", type=int, default=1000)
    storm.add_argument("--timeout", type=float, default=REPLY_TIMEOUT)
    storm.add_argument("--wait", type=float, default=3.0, help="seconds to count the answers")

    listen = modes.add_parser("gre-listen", help="print enhanced GRE arriving for a while")
    listen.add_argument("--timeout", type=float, default=2.0)

    add_dial_arguments(modes.add_parser("dial", help="dial a PPTP server: PPP up, TUN, ping / transfer"))
    add_sink_arguments(modes.add_parser("sink", help="TCP sink answering the SHA-256 of what it read"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.mode == "server":
        return run_server(args)
    if args.mode == "client":
        return run_client(args)
    if args.mode == "garbage":
        return run_garbage(args)
    if args.mode == "gre-inject":
        return run_gre_inject(args)
    if args.mode == "storm":
        return run_storm(args)
    if args.mode in ("dial", "sink"):
        return run_dial(args) if args.mode == "dial" else run_sink(args)
    return run_gre_listen(args)


if __name__ == "__main__":
    sys.exit(main())
