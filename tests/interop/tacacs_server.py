"""A small TACACS+ authentication server for the client tests, on 127.0.0.1 (a free port).

Debian 12 has no TACACS+ server package, so this one stands in.  Its header and obfuscation
are the PyPI ``tacacs_plus`` package's (``TACACSHeader``, ``TACACSPacket``), not fixup's; the
START and REPLY bodies, which that package only builds / only parses on the client side, are
unpacked and packed here with ``struct`` after RFC 8907 sections 5.1 and 5.2.  It checks PAP
passwords and CHAP responses (MD5(Identifier + secret + Challenge), RFC 1994 section 4.1)
itself, and answers a START it cannot make sense of (a wrong key) with an ERROR, as
shrubbery tac_plus does ("check keys").
"""
from __future__ import annotations

import hashlib
import socket
import socketserver
import struct
import threading
from dataclasses import dataclass, field
from types import TracebackType

from tacacs_plus.flags import (
    TAC_PLUS_AUTHEN_STATUS_ERROR,
    TAC_PLUS_AUTHEN_STATUS_FAIL,
    TAC_PLUS_AUTHEN_STATUS_PASS,
    TAC_PLUS_AUTHEN_TYPE_CHAP,
    TAC_PLUS_AUTHEN_TYPE_PAP,
)
from tacacs_plus.packet import TACACSHeader, TACACSPacket

START_FIXED = struct.Struct("!8B")  # action, priv_lvl, authen_type, service, 4 lengths
REPLY_FIXED = struct.Struct("!BBHH")  # status, flags, server_msg len, data len
CHAP_RESPONSE = 16


@dataclass(frozen=True)
class ReceivedStart:
    action: int
    priv_lvl: int
    authen_type: int
    service: int
    user: bytes
    port: bytes
    rem_addr: bytes
    data: bytes
    version: int
    seq_no: int


def parse_start(body: bytes, version: int, seq_no: int) -> ReceivedStart | None:
    """RFC 8907 section 5.1, or None when the lengths do not add up (a wrong key)."""
    if len(body) < START_FIXED.size:
        return None
    action, priv_lvl, authen_type, service, *lengths = START_FIXED.unpack_from(body)
    if START_FIXED.size + sum(lengths) != len(body):
        return None
    values, offset = [], START_FIXED.size
    for length in lengths:
        values.append(body[offset:offset + length])
        offset += length
    return ReceivedStart(action, priv_lvl, authen_type, service, *values, version=version, seq_no=seq_no)


def reply_body(status: int, server_msg: bytes = b"", data: bytes = b"", flags: int = 0) -> bytes:
    """RFC 8907 section 5.2."""
    return REPLY_FIXED.pack(status, flags, len(server_msg), len(data)) + server_msg + data


def packet(secret: str, session_id: int, seq_no: int, body: bytes, version: int = 0xC1) -> bytes:
    """Header and obfuscated body, by the tacacs_plus package."""
    header = TACACSHeader(version, 1, session_id, len(body), seq_no=seq_no)
    return bytes(TACACSPacket(header, body, secret))


@dataclass
class ServerState:
    secret: str
    users: dict[bytes, bytes]
    starts: list[ReceivedStart] = field(default_factory=list)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def decide(self, start: ReceivedStart) -> tuple[int, bytes]:
        password = self.users.get(start.user)
        if start.authen_type == TAC_PLUS_AUTHEN_TYPE_PAP:
            ok = password is not None and start.data == password
        elif start.authen_type == TAC_PLUS_AUTHEN_TYPE_CHAP and len(start.data) > 1 + CHAP_RESPONSE:
            ident, challenge, response = start.data[:1], start.data[1:-CHAP_RESPONSE], start.data[-CHAP_RESPONSE:]
            ok = password is not None and hashlib.md5(ident + password + challenge).digest() == response
        else:
            return TAC_PLUS_AUTHEN_STATUS_ERROR, b"unsupported authen_type"
        if ok:
            return TAC_PLUS_AUTHEN_STATUS_PASS, b"welcome " + start.user
        return TAC_PLUS_AUTHEN_STATUS_FAIL, b"bad password"


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        state = self.server.state
        with state.lock:
            state.connections += 1
        raw_header = _read_exactly(self.request, 12)
        if raw_header is None:
            return
        header = TACACSHeader.unpacked(raw_header)
        raw_body = _read_exactly(self.request, header.length)
        if raw_body is None:
            return
        body = TACACSPacket(header, raw_body, state.secret).body  # XOR: de-obfuscates
        start = parse_start(body, header.version, header.seq_no)
        if start is None:
            status, message = TAC_PLUS_AUTHEN_STATUS_ERROR, b"Invalid AUTHEN/START packet (check keys)"
        else:
            with state.lock:
                state.starts.append(start)
            status, message = state.decide(start)
        answer = packet(state.secret, header.session_id, header.seq_no + 1, reply_body(status, message),
                        header.version)
        self.request.sendall(answer)


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    state: ServerState


class TacacsTestServer:
    """``with TacacsTestServer("key", {b"alice": b"pw"}) as server: server.port``."""

    def __init__(self, secret: str, users: dict[bytes, bytes]) -> None:
        self.state = ServerState(secret, users)
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = self.state
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def __enter__(self) -> TacacsTestServer:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2)


def main(argv: list[str] | None = None) -> int:
    """``python tacacs_server.py --listen ADDR:PORT --secret KEY --user NAME:PASSWORD ...``:
    serve until killed (for tests that need the server in another network namespace)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--user", action="append", default=[])
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    users = {name.encode(): password.encode() for name, _, password in (u.partition(":") for u in args.user)}
    server = _Server((host, int(port)), _Handler)
    server.state = ServerState(args.secret, users)
    print("ready", flush=True)
    try:
        server.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
