"""The lab's PPTP dial-up client (I/O): dials a PPTP server, brings PPP up and bridges a TUN device.

RFC 2637 control connection on TCP 1723 (SCCRQ/SCCRP, OCRQ/OCRP, sections 2.1, 2.2, 2.7,
2.8), enhanced GRE (section 4) through a raw ``IPPROTO_GRE`` socket and
:class:`fixup.proto.vpdn.gre_channel.GreChannel`, PPP by :class:`fixup.lab.ppp_client.PppClient`.
Once PPP is up a TUN device in this namespace gets the IPCP address (peer: the server's
address), the ``--route`` networks and MTU 1400; then ``--ping`` (ICMP echo through the
tunnel) and ``--transfer`` (bytes to a ``sink`` that answers their SHA-256) run in a worker
thread while the main loop bridges.  On the way out: LCP Terminate, CCRQ (section 2.12),
StopCCRQ (section 2.3), TUN removed.

The tunnel's own TCP and GRE sockets are bound (SO_BINDTODEVICE) to the interface that reaches
the server before the TUN exists: the server's PPP address is usually its public address, so
the TUN's peer route would otherwise pull the tunnel into itself.

Modes of ``python -m fixup.lab.peers``: ``dial`` (:func:`run_dial`) and ``sink``
(:func:`run_sink`).  JSON lines on stdout; nothing waits without a timeout.  ``dial`` prints
``{"event": "call-up", ...}``, ``{"event": "up", "address", "peer_address", "dns", "auth",
"mppe" (key bits or null), "stateless", "mppe_bits"}``, with ``--hold`` ``{"event":
"holding"}``, and last ``{"result": "dial", "ok", "address", "peer_address", "auth", "mppe",
"mppe_bits", "stateless", "call_id", "server_call_id", "ping": {"sent", "received"} | null,
"transfer": {"bytes", "sha256_ok"} | null, "failure", "stats"}``; ``ok`` (and exit status 0)
needs PPP up, every echo answered and the right SHA-256 back.
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import ipaddress
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from types import FrameType
from typing import Any

from fixup.errors import BadInput
from fixup.io.vpdn.tun import IFF_NO_PI, IFF_TUN, TUNSETIFF
from fixup.lab.peer_io import ControlChannel, GreSocket, connect, emit, parse_datagram
from fixup.lab.ppp_client import MPPE_MODES, PppClient
from fixup.lab.pptp_peer import PnsConnection
from fixup.proto.vpdn.gre_channel import GreChannel
from fixup.wire.pptp import CallDisconnectNotify, Message, MessageType, OutgoingCallReply

RECEIVE_WINDOW = 64  # our Packet Recv. Window Size (RFC 2637 section 2.7)
TUN_MTU = 1400
TUN_QUEUE_LIMIT = 32  # PPP frames waiting for the peer's GRE window (GreChannel backlog: 64)
TICK = 0.05
PING_COUNT = 3
CHUNK = 65536


class Interrupted(Exception):
    """SIGTERM / SIGINT: hang up cleanly."""


@dataclass(slots=True)
class DialOptions:
    server: str
    user: str
    password: str
    port: int = 1723
    auth: tuple[str, ...] = ("pap", "chap", "mschap", "mschap-v2")
    mppe: str = "auto"
    stateless: bool | None = None
    tun: str = "fxdial0"
    routes: list[str] = field(default_factory=list)
    ping: str | None = None
    transfer: tuple[str, int, int] | None = None
    call_id: int = 0
    timeout: float = 10.0
    hold: bool = False
    hold_timeout: float = 60.0
    again: bool = False  # the workload once more after the hold
    spoof: tuple[str, str] | None = None  # (source, count): packets from an address not ours first


# -- the TUN device -----------------------------------------------------------------------------


class ClientTun:
    """A point-to-point TUN (Linux tuntap, IFF_TUN | IFF_NO_PI): our address, the server's as
    peer, routes through it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.fd: int | None = None

    def open(self, address: str, peer: str, routes: list[str]) -> None:
        from pyroute2 import IPRoute

        self.fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        fcntl.ioctl(self.fd, TUNSETIFF, struct.pack("16sH", self.name.encode(), IFF_TUN | IFF_NO_PI))
        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname=self.name)[0]
            ipr.link("set", index=index, mtu=TUN_MTU, state="up")
            ipr.addr("add", index=index, local=address, address=peer, prefixlen=32)
            for route in routes:
                ipr.route("replace", dst=route, oif=index)

    def read(self) -> bytes | None:
        try:
            return os.read(self.fd, 65535) if self.fd is not None else None
        except BlockingIOError:
            return None

    def write(self, packet: bytes) -> None:
        try:
            if self.fd is not None:
                os.write(self.fd, packet)
        except OSError:
            pass  # a full queue drops, like a link

    def close(self) -> None:
        """Closing the descriptor removes the device and its routes."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def pin_to_route_device(sockets: list[socket.socket], server: str) -> str:
    """Bind the tunnel's own sockets (SO_BINDTODEVICE) to the interface that reaches the server
    now: once the TUN routes the server's address (its PPP address is often its public one,
    RFC 2637 leaves that open), GRE and TCP must not loop into the tunnel."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        device = socket.if_indextoname(ipr.route("get", dst=server)[0].get_attr("RTA_OIF"))
    for sock in sockets:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
    return device


# -- the dialer ----------------------------------------------------------------------------------


class Dialer:
    """One call: control connection, GRE channel, PPP client, TUN bridge."""

    def __init__(self, options: DialOptions) -> None:
        self.options = options
        self.client = PppClient(options.user, options.password, auth_methods=options.auth, mppe=options.mppe,
                                stateless=options.stateless)
        self.control: ControlChannel | None = None
        self.pns = PnsConnection(name=b"fixup-dialer", vendor=b"fixup.lab")
        self.gre: GreSocket | None = None
        self.channel: GreChannel | None = None
        self.tun: ClientTun | None = None
        self.server_call_id: int | None = None
        self.call_lost: str | None = None  # CDN / StopCCRQ / close from the server (the first of them)
        self.ended_by: list[str] = []  # the server's CDN and StopCCRQ, in order
        self.result: dict[str, Any] = {"ping": None, "transfer": None}
        self.stats = {"gre_in": 0, "gre_out": 0, "gre_foreign": 0, "tun_in": 0, "tun_out": 0, "tun_not_ipv4": 0}

    def run(self) -> None:
        """Dial, bring PPP up, run the workload; raises on the first failure."""
        options = self.options
        self.gre = GreSocket()
        self.gre.sock.setblocking(False)
        self.control = ControlChannel(connect(options.server, options.port, options.timeout))
        self._start_control_connection()
        self._place_call()
        self._bring_up_ppp()
        pin_to_route_device([self.gre.sock, self.control.sock], options.server)
        self.tun = ClientTun(options.tun)
        self.tun.open(str(self.client.address), str(self.client.peer_address), options.routes)
        mppe = self.client.mppe
        emit(event="up", address=str(self.client.address), peer_address=str(self.client.peer_address),
             dns=[str(a) for a in self.client.dns], auth=self.client.auth_method,
             mppe=mppe.key_length if mppe else None, stateless=mppe.stateless if mppe else None,
             mppe_bits=mppe.bits if mppe else None)
        if options.spoof is not None:
            self._spoof(*options.spoof)
        self._run_workload()
        if options.hold:
            self._hold()
            if options.again:  # the session still works after what happened during the hold
                first = {key: self.result.pop(key) for key in ("ping", "transfer") if key in self.result}
                self._run_workload()
                self.result["again"] = {key: self.result.pop(key) for key in ("ping", "transfer") if key in self.result}
                self.result.update(first)

    # -- control connection (RFC 2637 section 2) ---------------------------------------------------

    def _start_control_connection(self) -> None:
        assert self.control is not None
        self.control.send(self.pns.start())
        reply = self.control.expect(MessageType.SCCRP, self.options.timeout, on_other=self._control_message)
        if self.pns.receive(reply).kind != "established":
            raise RuntimeError(f"SCCRP result code {getattr(reply, 'result_code', None)}")

    def _place_call(self) -> None:
        """OCRQ with our Call ID and window; the OCRP names the server's Call ID (section 2.8)."""
        assert self.control is not None
        call_id = self.options.call_id
        self.control.send(self.pns.place(call_id, serial=os.getpid() & 0xFFFF, window=RECEIVE_WINDOW))
        reply = self.control.expect(
            MessageType.OCRP, self.options.timeout, on_other=self._control_message,
            accept=lambda m: isinstance(m, OutgoingCallReply) and m.peer_call_id == call_id)
        assert isinstance(reply, OutgoingCallReply)
        if self.pns.receive(reply).kind != "call-up":
            raise RuntimeError(f"OCRP result code {reply.result_code}, error code {reply.error_code}")
        self.server_call_id = reply.call_id
        self.channel = GreChannel(reply.call_id, reply.packet_recv_window_size, time.monotonic())
        emit(event="call-up", call_id=call_id, server_call_id=reply.call_id)

    def _control_message(self, msg: Message) -> None:
        """Messages outside a request/reply pair: Echo (section 2.5), CDN, StopCCRQ."""
        assert self.control is not None
        event = self.pns.receive(msg)
        for reply in event.replies:
            self.control.send(reply)
        if isinstance(msg, CallDisconnectNotify) and msg.call_id == self.server_call_id:
            self.ended_by.append("CDN")
            self.call_lost = self.call_lost or f"call disconnected by the server (result {msg.result_code})"
        elif event.kind == "stop-requested":
            self.ended_by.append("StopCCRQ")
            self.call_lost = self.call_lost or "control connection stopped by the server"
        elif not event.replies:
            emit(event="control-message", type=msg.message_type.name)

    def _read_control(self) -> None:
        assert self.control is not None
        try:
            msg = self.control.receive(0.2)
            while msg is not None:
                self._control_message(msg)
                msg = self.control.receive(0.0)
            self.call_lost = self.call_lost or "control connection closed by the server"
        except TimeoutError:
            pass

    # -- the loop ----------------------------------------------------------------------------------

    def _bring_up_ppp(self) -> None:
        self.client.start(time.monotonic())
        deadline = time.monotonic() + self.options.timeout
        self.pump_until(lambda: self.client.up or self.client.finished, deadline)
        if not self.client.up:
            raise RuntimeError(self.client.failure or self.call_lost or f"PPP not up within {self.options.timeout:g} s")

    def pump_until(self, done: Any, deadline: float, extra: list[Any] | None = None) -> list[Any]:
        """Run the bridge until ``done()``, the deadline, a lost call or readable ``extra``."""
        while not done() and self.call_lost is None and not self.client.finished:
            now = time.monotonic()
            if now >= deadline:
                break
            ready = self._wait(min(deadline, self._next_deadline(now)) - now, extra or [])
            now = time.monotonic()
            if self.gre is not None and self.gre.sock in ready:
                self._read_gre(now)
            if self.control is not None and self.control.sock in ready:
                self._read_control()
            if self.tun is not None and self.tun.fd in ready:
                self._read_tun(now)
            self._tick(now)
            if extra and any(item in ready for item in extra):
                return [item for item in extra if item in ready]
        return []

    def _wait(self, timeout: float, extra: list[Any]) -> list[Any]:
        readers: list[Any] = [s for s in (self.gre and self.gre.sock, self.control and self.control.sock) if s]
        if self.tun is not None and self.tun.fd is not None and self._tun_has_room():
            readers.append(self.tun.fd)
        ready, _, _ = select.select(readers + extra, [], [], max(timeout, 0.0))
        return ready

    def _next_deadline(self, now: float) -> float:
        deadlines = [now + TICK, self.client.next_deadline()]
        if self.channel is not None:
            deadlines.append(self.channel.next_deadline())
        return min(d for d in deadlines if d is not None)

    def _read_gre(self, now: float) -> None:
        assert self.gre is not None and self.channel is not None
        while True:
            try:
                datagram = self.gre.sock.recv(65535)
            except BlockingIOError:
                return
            packet = parse_datagram(datagram)
            if packet is None or packet.source != self.options.server or packet.header.call_id != self.options.call_id:
                self.stats["gre_foreign"] += 1
                continue
            self.stats["gre_in"] += 1
            delivered, out = self.channel.receive(packet.header, packet.payload, now)
            self._send_gre(out)
            for frame in delivered:
                self.client.frame_in(frame, now)

    def _tun_has_room(self) -> bool:
        """Back-pressure: read the TUN only while the GRE send queue has room, so the kernel's
        queue drops before MPPE sees a packet (a stateful receiver would lose sync)."""
        return self.channel is not None and len(self.channel.queue) < TUN_QUEUE_LIMIT

    def _read_tun(self, now: float) -> None:
        assert self.tun is not None
        while self._tun_has_room() and (packet := self.tun.read()) is not None:
            if packet[:1] and packet[0] >> 4 == 4:
                self.stats["tun_in"] += 1
                self.client.ip_out(packet, now)
                self._flush(now)
            else:
                self.stats["tun_not_ipv4"] += 1

    def _tick(self, now: float) -> None:
        """Timers, then everything queued."""
        assert self.channel is not None
        self.client.poll(now)
        delivered, out = self.channel.poll(now)
        self._send_gre(out)
        for frame in delivered:
            self.client.frame_in(frame, now)
        self._flush(now)

    def _flush(self, now: float) -> None:
        """PPP frames into the GRE channel, IP packets into the TUN."""
        assert self.channel is not None
        for frame in self.client.take_frames():
            self._send_gre(self.channel.send(frame, now))
        for packet in self.client.take_ip():
            if self.tun is not None:
                self.stats["tun_out"] += 1
                self.tun.write(packet)

    def _send_gre(self, packets: list[bytes]) -> None:
        assert self.gre is not None
        for packet in packets:
            try:
                self.gre.sock.sendto(packet, (self.options.server, 0))
                self.stats["gre_out"] += 1
            except OSError:
                self.stats["gre_send_errors"] = self.stats.get("gre_send_errors", 0) + 1

    # -- workload ----------------------------------------------------------------------------------

    def _run_workload(self) -> None:
        """``--ping`` and ``--transfer`` in a thread on kernel sockets; the loop bridges meanwhile."""
        options = self.options
        if options.ping is None and options.transfer is None:
            return
        worker = threading.Thread(target=self._workload, daemon=True)
        worker.start()
        size = options.transfer[2] if options.transfer else 0
        deadline = time.monotonic() + options.timeout * 3 + size / 100_000
        self.pump_until(lambda: not worker.is_alive(), deadline)

    def _workload(self) -> None:
        options = self.options
        if options.ping is not None:
            try:
                self.result["ping"] = ping(options.ping, PING_COUNT, min(options.timeout, 2.0))
            except OSError as err:
                self.result["ping"] = {"sent": PING_COUNT, "received": 0, "error": str(err)}
        if options.transfer is not None:
            address, port, size = options.transfer
            try:
                self.result["transfer"] = transfer(address, port, size, options.timeout)
            except OSError as err:
                self.result["transfer"] = {"bytes": size, "sha256_ok": False, "error": str(err)}

    def _spoof(self, source: str, count: str) -> None:
        """Hostile tests: ``count`` IPv4/UDP packets from ``source`` (not our address) into the
        link, as a client would that tries to pass for another one."""
        assert self.client.peer_address is not None
        for n in range(int(count)):
            self.client.ip_out(udp_packet(source, str(self.client.peer_address), b"spoof %d" % n), time.monotonic())
        self.pump_until(lambda: False, time.monotonic() + 0.5)
        emit(event="spoofed", source=source, count=int(count))

    def _hold(self) -> None:
        """Keep bridging until a line or EOF on stdin (or the hold timeout)."""
        emit(event="holding", address=str(self.client.address))
        deadline = time.monotonic() + self.options.hold_timeout
        if self.pump_until(lambda: False, deadline, [sys.stdin]):
            sys.stdin.readline()

    # -- hanging up ----------------------------------------------------------------------------------

    def hang_up(self) -> None:
        """LCP Terminate, CCRQ / CDN (sections 2.12, 2.13), StopCCRQ / StopCCRP (2.3, 2.4); no step
        waits longer than the timeout, a failing step does not stop the next."""
        wait = min(self.options.timeout, 3.0)
        if self.channel is not None and self.call_lost is None and self.client.lcp.opened:
            self.client.close(time.monotonic())
            self.pump_until(lambda: self.client.finished, time.monotonic() + wait)
        if self.control is not None and not self.control.closed and self.call_lost is None:
            if self.server_call_id is not None:
                self._request(self.pns.clear(self.options.call_id), MessageType.CDN, wait)
            self._request(self.pns.stop(), MessageType.STOPCCRP, wait)
        for closer in (self.control, self.gre, self.tun):
            if closer is not None:
                closer.close()

    def _request(self, msg: Message, reply: MessageType, wait: float) -> None:
        """One request / reply of the hang-up; a missing reply is reported, not raised."""
        assert self.control is not None
        try:
            self.control.send(msg)
            self.control.expect(reply, wait, on_other=self._control_message)
        except (OSError, TimeoutError, ConnectionError, BadInput) as err:
            emit(event="hang-up-incomplete", step=msg.message_type.name, error=f"{type(err).__name__}: {err}")

    def report(self, error: str | None) -> dict[str, Any]:
        client = self.client
        mppe = client.mppe
        ping_result, transfer_result = self.result["ping"], self.result["transfer"]
        ok = (error is None and client.failure is None
              and (ping_result is None or ping_result["received"] == ping_result["sent"])
              and (transfer_result is None or bool(transfer_result["sha256_ok"])))
        return {
            "result": "dial", "ok": ok,
            "address": str(client.address) if client.address else None,
            "peer_address": str(client.peer_address) if client.peer_address else None,
            "auth": client.auth_method, "mppe": mppe.key_length if mppe else None,
            "mppe_bits": mppe.bits if mppe else None, "stateless": mppe.stateless if mppe else None,
            "call_id": self.options.call_id, "server_call_id": self.server_call_id,
            "ping": ping_result, "transfer": transfer_result,
            **({"again": self.result["again"]} if "again" in self.result else {}),
            "failure": client.failure or error or self.call_lost,
            "ended_by": self.ended_by,
            "stats": {**self.stats, **{k: v for k, v in client.stats.items() if v},
                      **({f"channel_{k}": v for k, v in asdict(self.channel.stats).items()} if self.channel else {})},
        }


# -- workload over kernel sockets (through the tunnel) -------------------------------------------


def _checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping(address: str, count: int, timeout: float) -> dict[str, int]:
    """ICMP Echo (RFC 792) ``count`` times, one at a time, each answered within ``timeout``."""
    ident = os.getpid() & 0xFFFF
    received = 0
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        for sequence in range(1, count + 1):
            body = struct.pack("!HH", ident, sequence) + b"fixup-dialer".ljust(48, b".")
            header = struct.pack("!BBH", 8, 0, _checksum(b"\x08\x00\x00\x00" + body))
            sock.sendto(header + body, (address, 0))
            received += _await_echo_reply(sock, address, ident, sequence, timeout)
    return {"sent": count, "received": received}


def _await_echo_reply(sock: socket.socket, address: str, ident: int, sequence: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([sock], [], [], remaining)
        if not ready:
            break
        datagram, (source, _) = sock.recvfrom(65535)
        start = (datagram[0] & 0x0F) * 4
        icmp = datagram[start:start + 8]
        if source == address and len(icmp) == 8 and icmp[0] == 0 and struct.unpack("!HH", icmp[4:8]) == (ident, sequence):
            return 1
    return 0


def transfer(address: str, port: int, size: int, timeout: float) -> dict[str, Any]:
    """Send ``size`` random bytes over TCP, half-close, expect their SHA-256 in hex back."""
    digest = hashlib.sha256()
    with socket.create_connection((address, port), timeout=timeout) as sock:
        left = size
        while left > 0:
            chunk = os.urandom(min(CHUNK, left))
            digest.update(chunk)
            sock.sendall(chunk)
            left -= len(chunk)
        sock.shutdown(socket.SHUT_WR)
        answer = bytearray()
        while chunk := sock.recv(4096):
            answer += chunk
    return {"bytes": size, "sha256_ok": answer.decode("ascii", "replace").strip() == digest.hexdigest()}


def udp_packet(source: str, destination: str, payload: bytes) -> bytes:
    """One IPv4/UDP packet (RFC 791, RFC 768; UDP checksum 0) for --spoof."""
    from fixup.wire.ip import internet_checksum

    udp = struct.pack("!HHHH", 9, 9, 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                         socket.inet_aton(source), socket.inet_aton(destination))
    return header[:10] + struct.pack("!H", internet_checksum(header)) + header[12:] + udp


# -- sink: the inside host's end of --transfer --------------------------------------------------


def _sink_connection(conn: socket.socket, peer: tuple[str, int], timeout: float) -> None:
    digest, total = hashlib.sha256(), 0
    with conn:
        conn.settimeout(timeout)
        try:
            while chunk := conn.recv(CHUNK):
                digest.update(chunk)
                total += len(chunk)
            conn.sendall(digest.hexdigest().encode() + b"\n")
        except OSError as err:
            emit(event="sink-error", peer=peer[0], bytes=total, error=str(err))
            return
    emit(event="sink", peer=peer[0], bytes=total, sha256=digest.hexdigest())


def run_sink(args: argparse.Namespace) -> int:
    """Accept connections on ``--listen ADDR:PORT``; each: read to EOF, answer the SHA-256 hex."""
    host, port = parse_endpoint(args.listen)
    served = 0
    signal.signal(signal.SIGTERM, _interrupt)
    with socket.create_server((host, port), reuse_port=False) as server:
        emit(event="listening", address=host, port=port)
        try:
            while args.count == 0 or served < args.count:
                conn, peer = server.accept()
                served += 1
                threading.Thread(target=_sink_connection, args=(conn, peer, args.timeout), daemon=True).start()
        except (Interrupted, KeyboardInterrupt):
            pass
    emit(result="sink", ok=True, connections=served)
    return 0


# -- command line -----------------------------------------------------------------------------


def parse_endpoint(text: str) -> tuple[str, int]:
    """``"10.0.0.5:9000"`` -> ("10.0.0.5", 9000)."""
    host, _, port = text.rpartition(":")
    try:
        return str(ipaddress.IPv4Address(host)), int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad endpoint {text!r}: want ADDR:PORT") from None


def add_dial_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", required=True)
    parser.add_argument("--port", type=int, default=1723)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--auth", default="pap,chap,mschap,mschap-v2", help="methods we accept, comma-separated")
    parser.add_argument("--mppe", choices=MPPE_MODES, default="auto")
    parser.add_argument("--stateless", choices=("yes", "no", "any"), default="any")
    parser.add_argument("--tun", default="fxdial0")
    parser.add_argument("--route", action="append", default=[], help="CIDR routed through the tunnel")
    parser.add_argument("--ping", default=None, help="address to ping (3 ICMP echoes) through the tunnel")
    parser.add_argument("--transfer", nargs=2, metavar=("ADDR:PORT", "BYTES"), default=None)
    parser.add_argument("--call-id", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--hold", action="store_true", help="keep the tunnel until a line or EOF on stdin")
    parser.add_argument("--hold-timeout", type=float, default=60.0)
    parser.add_argument("--again", action="store_true", help="after the hold: --ping / --transfer once more")
    parser.add_argument("--spoof", nargs=2, metavar=("SOURCE", "COUNT"), default=None,
                        help="first send COUNT packets from SOURCE, an address that is not ours")


def add_sink_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", required=True, help="ADDR:PORT")
    parser.add_argument("--count", type=int, default=0, help="exit after this many connections (0: never)")
    parser.add_argument("--timeout", type=float, default=30.0, help="idle seconds per connection")


def dial_options(args: argparse.Namespace) -> DialOptions:
    transfer_arg = None
    if args.transfer is not None:
        host, port = parse_endpoint(args.transfer[0])
        transfer_arg = (host, port, int(args.transfer[1]))
    return DialOptions(
        server=args.server, port=args.port, user=args.user, password=args.password,
        auth=tuple(name for name in args.auth.split(",") if name), mppe=args.mppe,
        stateless={"yes": True, "no": False, "any": None}[args.stateless], tun=args.tun, routes=list(args.route),
        ping=args.ping, transfer=transfer_arg, call_id=args.call_id, timeout=args.timeout, hold=args.hold,
        hold_timeout=args.hold_timeout, again=args.again, spoof=tuple(args.spoof) if args.spoof else None)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """First SIGTERM: unwind (hang up, report); any later one is ignored meanwhile."""
    signal.signal(signum, signal.SIG_IGN)
    raise Interrupted(signal.Signals(signum).name)


def run_dial(args: argparse.Namespace) -> int:
    """Dial, report, hang up; exit status 0 only when everything asked for worked."""
    signal.signal(signal.SIGTERM, _interrupt)
    dialer = Dialer(dial_options(args))
    error: str | None = None
    try:
        dialer.run()
    except (OSError, TimeoutError, ConnectionError, BadInput, RuntimeError) as err:
        error = f"{type(err).__name__}: {err}" if not isinstance(err, RuntimeError) else str(err)
    except (Interrupted, KeyboardInterrupt):
        error = "interrupted"
    report = dialer.report(error)
    try:
        dialer.hang_up()
    except (Interrupted, KeyboardInterrupt, OSError) as err:
        report["hang_up_error"] = str(err) or type(err).__name__
    emit(**report)
    return 0 if report["ok"] else 1
