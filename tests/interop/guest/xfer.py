"""1 MB TCP transfer through a PPP link, checked end to end by SHA-256 (stdlib only: the guest's
own python3 starts in well under a second, importing ``fixup`` over 9p takes 5-6 s).

    python3 xfer.py sink --listen 0.0.0.0:9000          # each connection: read to EOF, answer sha256 hex
    python3 xfer.py send --to 10.99.1.10:9000 --bytes 1048576 --seed 7 [--timeout 60]

``send`` prints one JSON line: {"sent": N, "sha256": ..., "echoed": ..., "ok": bool, "seconds": s}.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import socket
import sys
import threading
import time

CHUNK = 16384


def endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def serve_one(conn: socket.socket) -> None:
    digest = hashlib.sha256()
    with conn:
        conn.settimeout(300)
        while data := conn.recv(CHUNK):
            digest.update(data)
        conn.sendall(digest.hexdigest().encode())


def run_sink(args: argparse.Namespace) -> int:
    with socket.create_server(endpoint(args.listen)) as server:
        print(json.dumps({"event": "listening", "address": args.listen}), flush=True)
        while True:
            conn, _peer = server.accept()
            threading.Thread(target=serve_one, args=(conn,), daemon=True).start()


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def run_send(args: argparse.Namespace) -> int:
    data = payload(args.bytes, args.seed)
    expected = hashlib.sha256(data).hexdigest()
    started = time.monotonic()
    result: dict[str, object] = {"sent": 0, "sha256": expected, "echoed": None, "ok": False}
    try:
        with socket.create_connection(endpoint(args.to), timeout=20) as sock:
            sock.settimeout(args.timeout)  # a stall this long fails the transfer
            sock.sendall(data)
            result["sent"] = len(data)
            sock.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := sock.recv(128):
                answer += chunk
        result["echoed"] = answer.decode(errors="replace")
        result["ok"] = result["echoed"] == expected
    except OSError as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    result["seconds"] = round(time.monotonic() - started, 2)
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xfer")
    sub = parser.add_subparsers(dest="mode", required=True)
    sink = sub.add_parser("sink")
    sink.add_argument("--listen", required=True)
    send = sub.add_parser("send")
    send.add_argument("--to", required=True)
    send.add_argument("--bytes", type=int, default=1 << 20)
    send.add_argument("--seed", type=int, default=1)
    send.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    return run_sink(args) if args.mode == "sink" else run_send(args)


if __name__ == "__main__":
    sys.exit(main())
