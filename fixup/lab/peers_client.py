"""The lab's PPTP client (a PNS, RFC 2637 section 1.2) that places calls and pings over GRE.

SCCRQ/SCCRP, one Echo-Request/Echo-Reply, then per Call ID an OCRQ/OCRP (RFC 2637 sections
2.1 - 2.8); then, per call, ``--gre-count`` enhanced-GRE packets (RFC 2637 section 4.1) to the
server carrying the server's Call ID from the OCRP, with sequence numbers and payload
``b"ping <name> <callid> <n>"``.  Each must come back from the server address with the
client's own Call ID and payload ``b"echo:ping <name> <callid> <n>"``.  ``--clear`` ends with
CCRQ/CDN per call and StopCCRQ/StopCCRP (sections 2.3, 2.4, 2.12, 2.13).

The last stdout line is the JSON result ``{"name", "calls": [...], "ok", "error"}``; the exit
status is 0 only when every echo arrived (and, with ``--clear``, the teardown was answered).
"""
from __future__ import annotations

import argparse
import random
import select
import sys
import time
from dataclasses import asdict, dataclass

from fixup.errors import BadInput
from fixup.lab.peer_io import ControlChannel, GreSocket, connect, emit, message_name
from fixup.lab.pptp_peer import SUCCESS, PnsConnection
from fixup.wire.pptp import CallDisconnectNotify, EchoReply, EchoRequest, Message, MessageType, OutgoingCallReply

GRE_PAUSE = 0.002


@dataclass(slots=True)
class ClientCall:
    """One call: the client's own Call ID and the server's, and the GRE tally."""

    call_id: int
    server_call_id: int | None = None
    gre_sent: int = 0
    gre_echoed: int = 0
    cleared: bool = False
    rounds: int = 0  # GRE rounds it takes part in when not every one (0: all of them)


class PptpClient:
    def __init__(self, args: argparse.Namespace) -> None:
        self.server: str = args.server
        self.port: int = args.port
        self.name: str = args.name
        self.gre_count: int = args.gre_count
        self.gre_size: int = getattr(args, "gre_size", 0)  # pad payloads to this many bytes (fragmentation tests)
        self.timeout: float = args.timeout
        self.segment_sizes: tuple[int, int] | None = args.segment_sizes
        self.clear: bool = args.clear
        self.hold: bool = args.hold
        self.hold_timeout: float = args.hold_timeout
        self.again: bool = getattr(args, "again", False)
        self.again_call: int | None = getattr(args, "again_call", None)
        self.rng = random.Random(args.seed)
        self.calls = [ClientCall(call_id) for call_id in args.call_ids]
        self.unexpected_gre = 0
        self.local_port: int | None = None
        self.channel: ControlChannel | None = None
        self.pns = PnsConnection(name=self.name.encode()[:63], vendor=b"fixup.lab")

    # -- phases ------------------------------------------------------------------------

    def run(self) -> None:
        """All phases; raises on the first failure (the caller turns it into the result)."""
        gre = GreSocket()  # open before any call exists so no echo can be missed
        try:
            sock = connect(self.server, self.port, self.timeout)
            self.local_port = sock.getsockname()[1]
            self.channel = ControlChannel(sock, segment_sizes=self.segment_sizes, rng=self.rng)
            emit(event="connected", name=self.name, local_port=self.local_port)
            self.start_control_connection()
            self.echo()
            for call in self.calls:
                self.place_call(call)
            self.ping(gre)
            if self.hold:
                self.wait_for_release()
            if self.again:  # the calls still work after what happened during the hold
                self.echo()
                if self.again_call is not None:  # and the connection takes a new call
                    self.calls.append(ClientCall(self.again_call, rounds=1))
                    self.place_call(self.calls[-1])
                self.ping(gre)
            if self.clear:
                self.clear_calls()
                self.stop_control_connection()
        finally:
            gre.close()
            if self.channel is not None:
                self.channel.close()

    def start_control_connection(self) -> None:
        """RFC 2637 sections 2.1/2.2."""
        assert self.channel is not None
        self.channel.send(self.pns.start())
        reply = self.channel.expect(MessageType.SCCRP, self.timeout, on_other=self.other)
        if self.pns.receive(reply).kind != "established":
            raise RuntimeError(f"SCCRP result code {getattr(reply, 'result_code', None)}")

    def echo(self) -> None:
        """RFC 2637 sections 2.5/2.6: one keep-alive round trip."""
        assert self.channel is not None
        identifier = self.rng.getrandbits(32)
        self.channel.send(EchoRequest(identifier=identifier))
        self.channel.expect(MessageType.ECHORP, self.timeout, on_other=self.other,
                            accept=lambda m: isinstance(m, EchoReply) and m.identifier == identifier)

    def place_call(self, call: ClientCall) -> None:
        """RFC 2637 sections 2.7/2.8: the OCRP's Peer's Call ID must be the OCRQ's Call ID."""
        assert self.channel is not None
        self.channel.send(self.pns.place(call.call_id, serial=self.rng.getrandbits(16)))
        reply = self.channel.expect(
            MessageType.OCRP, self.timeout, on_other=self.other,
            accept=lambda m: isinstance(m, OutgoingCallReply) and m.peer_call_id == call.call_id)
        assert isinstance(reply, OutgoingCallReply)
        if self.pns.receive(reply).kind != "call-up":
            raise RuntimeError(f"OCRP for call {call.call_id}: result code {reply.result_code}")
        call.server_call_id = reply.call_id
        emit(event="call-up", name=self.name, call_id=call.call_id, server_call_id=reply.call_id)

    def ping(self, gre: GreSocket) -> None:
        """Send every call's GRE, then collect the echoes (RFC 2637 section 4.1)."""
        expected: dict[tuple[int, bytes], ClientCall] = {}
        for n in range(self.gre_count):
            for call in self.calls:
                assert call.server_call_id is not None
                payload = f"ping {self.name} {call.call_id} {n}".encode()
                payload += b"." * max(0, self.gre_size - len(payload))
                gre.send(self.server, call.server_call_id, payload, sequence=n)
                call.gre_sent += 1
                expected[(call.call_id, b"echo:" + payload)] = call
                time.sleep(GRE_PAUSE)
        deadline = time.monotonic() + self.timeout
        while expected and (remaining := deadline - time.monotonic()) > 0:
            packet = gre.receive(remaining)
            if packet is None:
                break
            call = expected.pop((packet.header.call_id, packet.payload), None)
            if call is None or packet.source != self.server:
                self.unexpected_gre += 1
                emit(event="unexpected-gre", name=self.name, source=packet.source,
                     call_id=packet.header.call_id, payload=packet.payload[:64].decode("latin-1"))
                continue
            call.gre_echoed += 1
        if expected:
            raise RuntimeError(f"{len(expected)} GRE echo(es) missing after {self.timeout:g} s")

    def wait_for_release(self) -> None:
        """``--hold``: report the calls, then wait for a line or EOF on stdin."""
        emit(event="holding", name=self.name, local_port=self.local_port,
             calls=[asdict(call) for call in self.calls])
        ready, _, _ = select.select([sys.stdin], [], [], self.hold_timeout)
        if ready:
            sys.stdin.readline()

    def clear_calls(self) -> None:
        """RFC 2637 sections 2.12/2.13: CCRQ with our Call ID, CDN with the server's."""
        assert self.channel is not None
        for call in self.calls:
            self.channel.send(self.pns.clear(call.call_id))
            cdn = self.channel.expect(
                MessageType.CDN, self.timeout, on_other=self.other,
                accept=lambda m: isinstance(m, CallDisconnectNotify) and m.call_id == call.server_call_id)
            self.pns.receive(cdn)
            call.cleared = True
            emit(event="call-down", name=self.name, call_id=call.call_id, server_call_id=call.server_call_id)

    def stop_control_connection(self) -> None:
        """RFC 2637 sections 2.3/2.4."""
        assert self.channel is not None
        self.channel.send(self.pns.stop())
        reply = self.channel.expect(MessageType.STOPCCRP, self.timeout, on_other=self.other)
        if getattr(reply, "result_code", None) != SUCCESS:
            raise RuntimeError(f"StopCCRP result code {getattr(reply, 'result_code', None)}")

    def other(self, msg: Message) -> None:
        """A message we were not waiting for: answer what the PNS owes (Echo-Reply), report the rest."""
        event = self.pns.receive(msg)
        if event.replies and self.channel is not None:
            for reply in event.replies:
                self.channel.send(reply)
            return
        emit(event="unexpected-message", name=self.name, type=message_name(msg))

    # -- result ------------------------------------------------------------------------

    def result(self, error: str | None) -> dict[str, object]:
        expected = self.gre_count * (2 if self.again else 1)
        ok = error is None and all(c.gre_echoed == (self.gre_count * c.rounds if c.rounds else expected)
                                   for c in self.calls)
        return {
            "name": self.name,
            "local_port": self.local_port,
            "calls": [asdict(call) for call in self.calls],
            "unexpected_gre": self.unexpected_gre,
            "ok": ok,
            "error": error,
        }


def run_client(args: argparse.Namespace) -> int:
    client = PptpClient(args)
    error: str | None = None
    try:
        client.run()
    except (OSError, TimeoutError, ConnectionError, BadInput, RuntimeError) as err:
        error = f"{type(err).__name__}: {err}"
    except KeyboardInterrupt:
        error = "interrupted"
    result = client.result(error)
    emit(**result)
    return 0 if result["ok"] else 1
