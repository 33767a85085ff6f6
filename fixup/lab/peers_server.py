"""The lab's PPTP server (a PAC, RFC 2637 section 1.2) that answers calls and echoes GRE.

Control (RFC 2637 section 2): SCCRQ -> SCCRP (result 1), Echo-Request -> Echo-Reply, OCRQ ->
OCRP (result 1, a Call ID unique across the whole server, Peer's Call ID = the OCRQ's Call ID),
CCRQ -> CDN (carrying the server's own Call ID, section 2.13), StopCCRQ -> StopCCRP then close.

GRE (RFC 2637 section 4.1): every enhanced-GRE packet whose Call ID is one of the server's calls
is answered, to the packet's source address, with the call's *peer* Call ID (as the OCRQ
carried it) and payload ``b"echo:" + payload``.  GRE for an unknown Call ID is counted, not
answered.  One JSON line per event on stdout; a summary line on SIGTERM.
"""
from __future__ import annotations

import argparse
import signal
import socket
import threading
from collections import Counter
from dataclasses import dataclass
from types import FrameType

from fixup.errors import BadInput
from fixup.lab.peer_io import ControlChannel, GrePacket, GreSocket, emit, message_name
from fixup.lab.pptp_peer import CallIds, PacConnection
from fixup.wire.pptp import Message

IDLE_TIMEOUT = 300.0  # a control connection silent this long is closed
POLL_INTERVAL = 0.2
ECHO_PREFIX = b"echo:"


@dataclass(slots=True)
class ServerCall:
    """One call as the server sees it: its own Call ID and the peer's (from the OCRQ)."""

    call_id: int
    peer_call_id: int
    conn: int
    peer: str
    gre_in: int = 0
    gre_out: int = 0
    sequence: int = 0


class PptpServer:
    """Threaded PAC: one thread per control connection, one for GRE, accept loop in the caller."""

    def __init__(self, listen: str, port: int, first_call_id: int = 100, *, quiet_gre: bool = False) -> None:
        self.listen = listen
        self.port = port
        self.ids = CallIds(first_call_id, zero=True)
        self.quiet_gre = quiet_gre
        self.calls: dict[int, ServerCall] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.counters: Counter[str] = Counter()
        self.connections = 0

    # -- calls -------------------------------------------------------------------------

    def close_call(self, call: ServerCall, why: str) -> None:
        emit(event="call-close", call_id=call.call_id, peer_call_id=call.peer_call_id, conn=call.conn,
             why=why, gre_in=call.gre_in, gre_out=call.gre_out)

    # -- control connections -----------------------------------------------------------

    def serve(self) -> None:
        """Listen, start the GRE thread, accept until :attr:`stopping` is set."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.listen, self.port))
        listener.listen(64)
        listener.settimeout(POLL_INTERVAL)
        gre = GreSocket()
        threading.Thread(target=self._gre_loop, args=(gre,), name="gre", daemon=True).start()
        emit(event="ready", listen=self.listen, port=self.port)
        try:
            while not self.stopping.is_set():
                try:
                    sock, (host, port) = listener.accept()
                except socket.timeout:
                    continue
                self.connections += 1
                conn = self.connections
                threading.Thread(target=self._connection, args=(conn, sock, host, port),
                                 name=f"conn-{conn}", daemon=True).start()
        finally:
            listener.close()

    def _connection(self, conn: int, sock: socket.socket, host: str, port: int) -> None:
        emit(event="control-open", conn=conn, peer=host, peer_port=port)
        channel = ControlChannel(sock)
        pac = PacConnection(self.ids)
        why = "peer closed"
        try:
            while not self.stopping.is_set():
                try:
                    msg = channel.receive(IDLE_TIMEOUT)
                except TimeoutError:
                    why = "idle"
                    break
                if msg is None:
                    break
                self.counters["messages"] += 1
                if not self._answer(channel, pac, msg, conn, host):
                    why = "stopped"
                    break
        except BadInput as err:
            self.counters["bad-input"] += 1
            why = f"bad input: {err.reason}: {err}"
        except OSError as err:
            why = f"socket error: {err}"
        finally:
            with self.lock:
                closed = pac.close()
            self._closed(closed, "control connection closed")
            channel.close()
            emit(event="control-close", conn=conn, peer=host, peer_port=port, why=why)

    def _answer(self, channel: ControlChannel, pac: PacConnection, msg: Message, conn: int, host: str) -> bool:
        """Answer one message as a PAC (:class:`PacConnection`); False when the connection must
        end (StopCCRQ)."""
        emit(event="message", conn=conn, type=message_name(msg), **_ids(msg))
        with self.lock:  # the Call IDs are the whole server's
            answer = pac.receive(msg)
            if answer.opened is not None:
                own, peer_call_id, _request = answer.opened
                self.calls[own] = ServerCall(own, peer_call_id, conn, host)
                self.counters["calls"] += 1
        for reply in answer.replies:
            channel.send(reply)
        if answer.opened is not None:
            emit(event="call-open", conn=conn, peer=host, call_id=answer.opened[0], peer_call_id=answer.opened[1])
        if answer.unknown_clear is not None:
            emit(event="clear-unknown-call", conn=conn, peer_call_id=answer.unknown_clear)
        self._closed(answer.closed, "call-clear-request")
        return not answer.stop

    def _closed(self, own_ids: list[int], why: str) -> None:
        with self.lock:
            calls = [call for own in own_ids if (call := self.calls.pop(own, None)) is not None]
        for call in calls:
            self.close_call(call, why)

    # -- GRE ---------------------------------------------------------------------------

    def _gre_loop(self, gre: GreSocket) -> None:
        while not self.stopping.is_set():
            try:
                packet = gre.receive(POLL_INTERVAL)
            except OSError as err:
                emit(event="gre-error", error=str(err))
                continue
            if packet is not None:
                self._echo(gre, packet)

    def _echo(self, gre: GreSocket, packet: GrePacket) -> None:
        """Answer a call's GRE with the peer's Call ID (RFC 2637 section 4.1 Call ID field)."""
        self.counters["gre_in"] += 1
        with self.lock:
            call = self.calls.get(packet.header.call_id)
        if call is None:
            self.counters["gre_unknown"] += 1
            emit(event="gre-unknown", source=packet.source, call_id=packet.header.call_id)
            return
        call.gre_in += 1
        if not packet.payload:
            return  # an acknowledgment only
        reply = ECHO_PREFIX + packet.payload
        gre.send(packet.source, call.peer_call_id, reply, sequence=call.sequence,
                 acknowledgment=packet.header.sequence)
        call.sequence += 1
        call.gre_out += 1
        self.counters["gre_echoed"] += 1
        if not self.quiet_gre:
            emit(event="gre", source=packet.source, call_id=call.call_id, peer_call_id=call.peer_call_id,
                 sequence=packet.header.sequence, length=len(packet.payload))

    def summary(self) -> dict[str, object]:
        with self.lock:
            open_calls = len(self.calls)
        return {"connections": self.connections, "open_calls": open_calls, **dict(self.counters)}


def _ids(msg: Message) -> dict[str, int]:
    """The Call ID fields of ``msg`` for the event line."""
    return {name: getattr(msg, name) for name in ("call_id", "peer_call_id") if hasattr(msg, name)}


def run_server(args: argparse.Namespace) -> int:
    server = PptpServer(args.listen, args.port, args.first_call_id, quiet_gre=args.quiet_gre)

    def stop(signum: int, frame: FrameType | None) -> None:
        server.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve()
    except OSError as err:
        emit(event="error", error=str(err))
        return 1
    emit(summary=server.summary())
    return 0
