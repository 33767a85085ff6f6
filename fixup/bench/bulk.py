"""Many PPTP control connections at once: the benchmark's own PNS and PAC (asyncio, an I/O tool).

Run inside network namespaces as subprocesses::

    python -m fixup.bench.bulk server --listen 192.0.2.10
    python -m fixup.bench.bulk client --server 192.0.2.10

The **server** (a PAC, RFC 2637 section 1.2) answers SCCRQ with SCCRP, Echo-Request with
Echo-Reply, OCRQ with a connected OCRP (its own Call ID unique across the server, section 2.8),
CCRQ with CDN and StopCCRQ with StopCCRP.  Two benchmark conveniences: the OCRP's Physical
Channel ID (section 2.8, a value the PNS must not interpret) carries the Call ID the OCRQ
arrived with, so the client learns its *translated* Call ID; and an OCRQ whose Phone Number is
``gre-burst`` makes the server send enhanced GRE (section 4.1) for the call to the connection's
peer address right after the OCRP, one packet every ~0.2 ms, until the connection closes.

The **client** (a PNS) reads one JSON command per line on stdin and answers each with one JSON
line on stdout carrying the same ``seq``:

* ``{"cmd": "open", "count": N, "concurrency": C}``: N connections, each SCCRQ/SCCRP then
  OCRQ/OCRP, at most C in flight; answer with the time taken.  The calls stay up.
* ``{"cmd": "call", "call_id": ID}``: one more held call; answer with the server's Call ID and
  the Call ID the server saw.
* ``{"cmd": "latency", "count": K}``: K calls one after the other, each asking for a GRE burst;
  answer with the milliseconds from the OCRP's arrival to the first GRE's arrival
  (:mod:`fixup.bench.latency`).
* ``{"cmd": "close"}``: reset every held connection.  ``{"cmd": "quit"}`` or EOF: exit.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from fixup.bench.latency import BURST_PHONE, measure_latency
from fixup.errors import BadInput
from fixup.lab.peer_io import PPTP_PORT, RESET_LINGER
from fixup.lab.pptp_peer import CallIds, MessageStream, PacConnection, PnsConnection
from fixup.wire.gre import GreHeader, build_gre
from fixup.wire.pptp import Message, OutgoingCallReply, build_message

BURST_INTERVAL = 0.0002
BURST_MAX_SECONDS = 2.0
SETUP_TIMEOUT = 15.0
LISTEN_BACKLOG = 8192
OPEN_FILES = 65536
NAME, VENDOR = b"fixup-bench", b"fixup.bench"


def emit(**fields: Any) -> None:
    """One JSON line on stdout, flushed."""
    sys.stdout.write(json.dumps(fields, default=str) + "\n")
    sys.stdout.flush()


def raise_open_files(limit: int = OPEN_FILES) -> int:
    """Raise RLIMIT_NOFILE to ``limit`` (root may raise the hard limit too); return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for wanted in ((limit, max(limit, hard)), (min(limit, hard), hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, wanted)
            return wanted[0]
        except (ValueError, OSError):
            continue
    return soft


class StdinLines:
    """Lines of stdin as an asyncio queue (None at EOF), read with ``add_reader`` so that no
    thread is left blocked in ``read()`` when the process exits."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.fd = sys.stdin.fileno()
        self.pending = bytearray()
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        loop.add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        chunk = os.read(self.fd, 65536)
        if not chunk:
            self.loop.remove_reader(self.fd)
            self.queue.put_nowait(None)
            return
        self.pending += chunk
        while (end := self.pending.find(b"\n")) >= 0:
            self.queue.put_nowait(self.pending[:end].decode("utf-8", "replace"))
            del self.pending[:end + 1]

    async def next(self) -> str | None:
        return await self.queue.get()


def reset(transport: asyncio.BaseTransport) -> None:
    """Close with RST (SO_LINGER 0): no TIME_WAIT on thousands of benchmark connections."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_LINGER)
        except OSError:
            pass
    transport.abort()


# --- the server -------------------------------------------------------------------------------


class GreBurster:
    """Sends enhanced GRE (RFC 2637 section 4.1) for one call every ~0.2 ms on its own thread."""

    def __init__(self, sock: socket.socket, peer: str, call_id: int) -> None:
        self.sock = sock
        self.peer = peer
        self.call_id = call_id
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._run, name=f"burst-{call_id}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        payload = b"\xff\x03\x00\x21burst"
        deadline = time.monotonic() + BURST_MAX_SECONDS
        while not self.stop.is_set() and time.monotonic() < deadline:
            packet = build_gre(GreHeader(self.call_id, len(payload), sequence=self.sent), payload)
            try:
                self.sock.sendto(packet, (self.peer, 0))
            except OSError:
                pass
            self.sent += 1
            time.sleep(BURST_INTERVAL)


class Pac:
    """State shared by every connection of the server: Call IDs in use, the GRE socket, counters."""

    def __init__(self) -> None:
        self.ids = CallIds(1)
        self.gre: socket.socket | None = None
        self.connections = 0
        self.calls = 0
        self.errors = 0

    def gre_socket(self) -> socket.socket:
        if self.gre is None:
            self.gre = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_GRE)
        return self.gre


class PacProtocol(asyncio.Protocol):
    """One control connection as the PAC sees it (:class:`fixup.lab.pptp_peer.PacConnection`,
    with the OCRP's Physical Channel ID carrying the Call ID the OCRQ arrived with)."""

    def __init__(self, pac: Pac) -> None:
        self.pac = pac
        self.stream = MessageStream(strict=False)
        self.conn = PacConnection(pac.ids, name=NAME, vendor=VENDOR, channel_echo=True)
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.bursts: list[GreBurster] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.peer = transport.get_extra_info("peername")[0]
        self.pac.connections += 1

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        try:
            for msg in self.stream.feed(data):
                self.answer(msg)
        except (BadInput, RuntimeError):
            self.pac.errors += 1
            reset(self.transport)

    def answer(self, msg: Message) -> None:
        """RFC 2637 sections 2.1 - 2.13, the PAC side; a ``gre-burst`` OCRQ starts a GRE burst."""
        assert self.transport is not None
        answer = self.conn.receive(msg)
        for reply in answer.replies:
            self.transport.write(build_message(reply))
        if answer.opened is not None:
            self.pac.calls += 1
            _own, peer_call_id, request = answer.opened
            if request.phone_number == BURST_PHONE:
                burst = GreBurster(self.pac.gre_socket(), self.peer, peer_call_id)
                self.bursts.append(burst)
                burst.start()
        if answer.stop:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.close()
        for burst in self.bursts:
            burst.stop.set()


async def serve(listen: str, port: int) -> None:
    pac = Pac()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    server = await loop.create_server(lambda: PacProtocol(pac), listen, port, backlog=LISTEN_BACKLOG,
                                      reuse_address=True)
    emit(event="ready", listen=listen, port=port, open_files=resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    stdin = StdinLines(loop)

    async def until_eof() -> None:
        while await stdin.next() is not None:
            pass

    waiters = [asyncio.ensure_future(until_eof()), asyncio.ensure_future(stop.wait())]
    _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for waiter in pending:
        waiter.cancel()
    server.close()
    emit(summary={"connections": pac.connections, "calls": pac.calls, "errors": pac.errors})


# --- the client -------------------------------------------------------------------------------


class PnsProtocol(asyncio.Protocol):
    """One control connection placing one call: SCCRQ, SCCRP, OCRQ, OCRP (RFC 2637 sections 2.1,
    2.2, 2.7, 2.8) through :class:`fixup.lab.pptp_peer.PnsConnection`; ``done`` gets the OCRP."""

    def __init__(self, call_id: int, done: asyncio.Future[OutgoingCallReply]) -> None:
        self.call_id = call_id
        self.done = done
        self.stream = MessageStream(strict=False)
        self.conn = PnsConnection(name=NAME, vendor=VENDOR)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(build_message(self.conn.start()))

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        try:
            messages = self.stream.feed(data)
        except BadInput as err:
            self._fail(err)
            return
        for msg in messages:
            event = self.conn.receive(msg)
            for reply in event.replies:
                self.transport.write(build_message(reply))
            if event.kind == "established":
                self.transport.write(build_message(self.conn.place(self.call_id, serial=self.call_id)))
            elif isinstance(msg, OutgoingCallReply) and not self.done.done():
                self.done.set_result(msg)

    def _fail(self, err: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(err)
        if self.transport is not None:
            reset(self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError(f"closed before OCRP: {exc or 'EOF'}"))


class Pns:
    """The client's held connections and the commands that make them."""

    def __init__(self, server: str, port: int) -> None:
        self.server = server
        self.port = port
        self.held: list[asyncio.Transport] = []
        self.next_call_id = 1

    async def place_call(self, call_id: int) -> OutgoingCallReply:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[OutgoingCallReply] = loop.create_future()
        transport, _ = await loop.create_connection(lambda: PnsProtocol(call_id, done), self.server, self.port)
        try:
            reply = await asyncio.wait_for(done, SETUP_TIMEOUT)
        except BaseException:
            reset(transport)
            raise
        self.held.append(transport)
        return reply

    def take_call_id(self) -> int:
        call_id = self.next_call_id
        self.next_call_id = call_id % 0xFFFF + 1
        return call_id

    async def open(self, count: int, concurrency: int) -> dict[str, Any]:
        gate = asyncio.Semaphore(max(1, concurrency))
        errors: list[str] = []

        async def one() -> bool:
            async with gate:
                try:
                    await self.place_call(self.take_call_id())
                    return True
                except (OSError, asyncio.TimeoutError, ConnectionError, BadInput) as err:
                    errors.append(f"{type(err).__name__}: {err}")
                    return False

        start = time.perf_counter()
        results = await asyncio.gather(*(one() for _ in range(count)))
        seconds = time.perf_counter() - start
        return {"requested": count, "ok": sum(results), "failed": count - sum(results), "seconds": seconds,
                "first_error": errors[0] if errors else None, "held": len(self.held)}

    async def call(self, call_id: int) -> dict[str, Any]:
        reply = await self.place_call(call_id)
        return {"call_id": call_id, "server_call_id": reply.call_id, "seen_call_id": reply.physical_channel_id}

    def close(self) -> dict[str, Any]:
        count = len(self.held)
        for transport in self.held:
            reset(transport)
        self.held.clear()
        return {"closed": count}


# --- client command loop ----------------------------------------------------------------------


async def client_loop(server: str, port: int) -> None:
    pns = Pns(server, port)
    loop = asyncio.get_running_loop()
    stdin = StdinLines(loop)
    emit(event="ready", open_files=resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    while True:
        line = await stdin.next()
        if line is None:
            break
        try:
            command = json.loads(line)
        except ValueError:
            emit(error=f"not JSON: {line.strip()[:80]}")
            continue
        if command.get("cmd") == "quit":
            break
        reply = await run_command(pns, command, server, port)
        emit(seq=command.get("seq"), cmd=command.get("cmd"), **reply)
    pns.close()


async def run_command(pns: Pns, command: dict[str, Any], server: str, port: int) -> dict[str, Any]:
    name = command.get("cmd")
    try:
        if name == "open":
            return await pns.open(int(command["count"]), int(command.get("concurrency", 200)))
        if name == "call":
            return await pns.call(int(command["call_id"]))
        if name == "latency":
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(None, measure_latency, server, port, int(command["count"]),
                                              int(command.get("first_call_id", 30000)))
        if name == "close":
            return pns.close()
    except (OSError, asyncio.TimeoutError, ConnectionError, BadInput, KeyError, ValueError) as err:
        return {"error": f"{type(err).__name__}: {err}"}
    return {"error": f"unknown command {name!r}"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fixup.bench.bulk", description=__doc__.split("\n")[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    server = modes.add_parser("server", help="the benchmark PAC")
    server.add_argument("--listen", required=True)
    server.add_argument("--port", type=int, default=PPTP_PORT)
    client = modes.add_parser("client", help="the benchmark PNS, driven by JSON commands on stdin")
    client.add_argument("--server", required=True)
    client.add_argument("--port", type=int, default=PPTP_PORT)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    raise_open_files()
    runner: Callable[[], Any]
    if args.mode == "server":
        runner = lambda: serve(args.listen, args.port)  # noqa: E731
    else:
        runner = lambda: client_loop(args.server, args.port)  # noqa: E731
    try:
        asyncio.run(runner())
    except OSError as err:
        emit(event="error", error=str(err))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
