"""I/O for local PPTP termination: the TCP 1723 listener, a raw GRE socket and the TUN device
around the pure :class:`fixup.proto.vpdn.terminate.TerminateServer`, in the daemon's event loop."""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
import logging
import socket
import time
from ipaddress import IPv4Address
from typing import Any, Callable

from fixup.errors import SetupError
from fixup.io.aaa.groups import AaaIo
from fixup.io.vpdn.tun import TunDevice
from fixup.io.logs import EventLog
from fixup.proto.vpdn.config import TerminatePolicy
from fixup.proto.auth import VerifyResult
from fixup.proto.vpdn.terminate import TerminateServer
from fixup.proto.vpdn.terminate_aaa import STOPPING

log = logging.getLogger("fixup.vpdn")

PPTP_PORT = 1723  # RFC 2637 section 1.3
MAX_WRITE_BUFFER = 256 * 1024  # bytes unsent to one tunnel's peer before the tunnel is closed
TICK = 0.05  # GRE ack delay and reorder timeout are of this order
EVENT_LEVELS = {"debug": logging.DEBUG, "pptp-error": logging.WARNING, "call-refused": logging.WARNING,
                "auth-failed": logging.WARNING, "aaa-refused": logging.WARNING}


class TerminateIo:
    """Owns the sockets and the TUN device; ``on_call`` is told (added, peer, call id) so GRE
    rules can let the call's packets reach this host."""

    def __init__(self, policy: TerminatePolicy, listen: IPv4Address, local: IPv4Address,
                 on_call: Callable[[bool, str, int], None] | None = None) -> None:
        self.policy = policy
        self.listen = listen
        self.event_log = EventLog(log, EVENT_LEVELS)
        self.server = TerminateServer(policy, local, time.monotonic(), listen_address=listen)
        self.tun = TunDevice()
        self.local = local
        self.on_call = on_call or (lambda added, peer, call_id: None)
        self.gre: socket.socket | None = None
        self.tcp_server: asyncio.AbstractServer | None = None
        self.writers: dict[int, asyncio.StreamWriter] = {}
        self.ticker: asyncio.Task[None] | None = None
        self.aaa: AaaIo | None = None
        self._routes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fixup-routes")
        self.aaa = self._aaa_io(policy)
        self._retiring: set[asyncio.Task[None]] = set()  # AAA drivers of a previous policy

    def _aaa_io(self, policy: TerminatePolicy) -> AaaIo | None:
        if policy.aaa.authentication is None and policy.aaa.accounting is None:
            return None
        return AaaIo(policy.aaa, self.listen, on_result=self._aaa_answer)

    def prepare(self) -> None:
        """Before the event loop runs: the TUN device (pyroute2's synchronous calls must not run
        inside a running loop)."""
        self.tun.open(self.local, self.policy.pool)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self.gre = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_GRE)
            self.gre.bind((str(self.listen), 0))
            self.gre.setblocking(False)
            self.tcp_server = await asyncio.start_server(self._serve_tunnel, str(self.listen), PPTP_PORT,
                                                         reuse_address=True, backlog=256)
        except OSError as err:
            self.close()
            raise SetupError(f"cannot accept PPTP on {self.listen}:{PPTP_PORT}: {err}") from err
        if self.aaa is not None:
            await self.aaa.start()
        loop.add_reader(self.gre.fileno(), self._gre_readable)
        loop.add_reader(self.tun.fd, self._tun_readable)
        self.ticker = asyncio.create_task(self._tick())
        log.info("fixup: vpdn accept dialin pptp on %s, pool %s-%s, authentication %s, mppe %s%s, max sessions %d",
                 self.listen, *self.policy.pool, " ".join(self.policy.authentication), self.policy.encryption.mppe,
                 " required" if self.policy.encryption.required else "", self.policy.max_sessions)

    async def stop(self) -> int:
        """End every tunnel (LCP Terminate, CDN, StopCCRQ; accounting Stop Admin-Reboot), then
        close; returns how many tunnels there were."""
        now = time.monotonic()
        ended = self.server.clear(now, why=STOPPING)
        self._flush()
        if self.ticker is not None:
            self.ticker.cancel()
        if self.aaa is not None:
            await self.aaa.stop()  # the Stop records of the sessions just cleared
        for task in list(self._retiring):
            task.cancel()
        self._routes.shutdown(wait=True)
        for writer in list(self.writers.values()):
            writer.close()
        if self.tcp_server is not None:
            self.tcp_server.close()
        self.close()
        return ended

    async def reload(self, policy: TerminatePolicy) -> None:
        """A reloaded ``terminate`` section (listen and local address unchanged, see
        :mod:`fixup.policy.reload`): new sessions get the new settings, live ones go on.  New AAA
        groups start before the old ones retire; the old ones still answer what they were asked
        (for as long as their hosts' timeouts and retries allow) and then stop."""
        old, self.policy = self.policy, policy
        self.server.reconfigure(policy)
        if policy.pool != old.pool:
            asyncio.get_running_loop().run_in_executor(self._routes, self.tun.reroute, old.pool, policy.pool)
        if policy.aaa != old.aaa:
            retiring, self.aaa = self.aaa, self._aaa_io(policy)
            if self.aaa is not None:
                await self.aaa.start()
            if retiring is not None:
                task = asyncio.create_task(retiring.retire())
                self._retiring.add(task)
                task.add_done_callback(self._retiring.discard)
        self._flush()

    def close(self) -> None:
        """Sockets and TUN device; safe to call twice, inside or outside the event loop."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if self.gre is not None:
            if loop is not None:
                loop.remove_reader(self.gre.fileno())
            self.gre.close()
            self.gre = None
        if self.tun.fd is not None and loop is not None:
            loop.remove_reader(self.tun.fd)
        self.tun.close()

    # -- input --------------------------------------------------------------------------------

    async def _serve_tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer_ip, peer_port = writer.get_extra_info("peername")[:2]
        tunnel_id = self.server.tunnel_opened(IPv4Address(peer_ip).packed, peer_port, time.monotonic())
        if tunnel_id is None:
            writer.close()
            return
        self.writers[tunnel_id] = writer
        self._flush()
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    break
                self.server.tcp_in(tunnel_id, data, time.monotonic())
                self._flush()
        except (ConnectionError, OSError) as err:
            log.debug("tunnel %d: %s", tunnel_id, err)
        finally:
            self.writers.pop(tunnel_id, None)
            self.server.tunnel_closed(tunnel_id, time.monotonic())
            self._flush()
            writer.close()

    def _gre_readable(self) -> None:
        for _ in range(256):
            try:
                data, (source, _port) = self.gre.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                break
            ihl = (data[0] & 0x0F) * 4
            self.server.gre_in(IPv4Address(source).packed, data[ihl:], time.monotonic())
        self._flush()

    def _tun_readable(self) -> None:
        for _ in range(256):
            packet = self.tun.read()
            if packet is None:
                break
            self.server.tun_in(packet, time.monotonic())
        self._flush()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            try:
                self.server.poll(time.monotonic())
                self._flush()
            except Exception:  # noqa: BLE001 - the timer must survive one bad session
                log.exception("fixup: terminate poll failed")

    def _aaa_answer(self, token: object, result: VerifyResult) -> None:
        try:
            self.server.aaa_result(str(token), result, time.monotonic())
            self._flush()
        except Exception:  # noqa: BLE001 - one bad answer must not take the AAA socket down
            log.exception("fixup: AAA answer for session %s failed", token)

    # -- output -------------------------------------------------------------------------------

    def _flush(self) -> None:
        server = self.server
        events = server.take_events()
        for event in events:  # first: a call's GRE must be let in before its OCRP reaches the client
            if event.kind in ("call-admitted", "call-ended"):
                self.on_call(event.kind == "call-admitted", event.data["peer"], event.data["call"])
        for tunnel_id, data in server.take_tcp():
            writer = self.writers.get(tunnel_id)
            if writer is not None:
                writer.write(data)
                if writer.transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
                    self._stalled(tunnel_id, writer)
        for tunnel_id in server.take_close():
            writer = self.writers.pop(tunnel_id, None)
            if writer is not None:
                writer.close()
        for peer, packet in server.take_gre():
            try:
                self.gre.sendto(packet, (str(IPv4Address(peer)), 0))
            except OSError as err:
                log.debug("GRE to %s dropped: %s", IPv4Address(peer), err)
        for packet in server.take_tun():
            self.tun.write(packet)
        self._flush_aaa(events)
        self.event_log.all(events)

    def _stalled(self, tunnel_id: int, writer: asyncio.StreamWriter) -> None:
        """A peer that does not read what we send is not buffered for without end: its tunnel
        goes (issue 11 item 5)."""
        self.writers.pop(tunnel_id, None)
        writer.transport.abort()
        self.server.count("stalled-peer")
        self.server.tunnel_closed(tunnel_id, time.monotonic(), f"peer does not read ({MAX_WRITE_BUFFER} bytes unsent)")

    def _flush_aaa(self, events: list) -> None:
        server, aaa = self.server, self.aaa
        for event in events:
            if event.kind == "address-routed":
                # one worker: a route's removal never overtakes its addition
                asyncio.get_running_loop().run_in_executor(self._routes, self.tun.route, event.data["address"],
                                                           event.data["add"])
            elif event.kind == "call-ended" and aaa is not None:
                aaa.cancel(event.data["session_id"])
        if aaa is None:
            return
        for token, request, context in server.take_aaa_requests():
            aaa.authenticate(token, request, context)
        for record in server.take_accounting():
            aaa.account(record)

    def snapshot(self) -> dict[str, Any]:
        snap = self.server.snapshot(time.monotonic())
        snap["aaa"] = self.aaa.snapshot() if self.aaa is not None else {}
        return snap

    def clear(self, tunnel_id: int | None) -> int:
        cleared = self.server.clear(time.monotonic(), tunnel_id)
        self._flush()
        return cleared
