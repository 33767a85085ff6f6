"""Local PPTP termination, pure: control connections, calls, GRE channels and PPP sessions
(RFC 2637 + RFC 1661), like PIX ``vpdn group 1 accept dialin pptp``.

The I/O layer hands in TCP bytes per tunnel, GRE packets per source address and IP packets
from the TUN device, with ``now``; it takes out TCP bytes, GRE packets, IP packets, tunnels to
close and events to log.  Tunnel ids and call ids are ours; call ids are unique across tunnels
so inbound GRE (keyed by our call id, RFC 2637 section 4.1) finds its call directly.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Callable, Container

from fixup.errors import BadInput
from fixup.proto.vpdn.config import TerminatePolicy
from fixup.proto.aaa import AccountingRecord, AuthContext
from fixup.proto.auth import LocalUsers, VerifyRequest, VerifyResult, verify_locally
from fixup.proto.vpdn.gre_channel import GreChannel
from fixup.proto.vpdn.pool import AddressPool
from fixup.proto.vpdn.pptp_server import PptpServerConnection, ServerConfig, ServerEvent, ServerState
from fixup.proto.ppp.session import PppSession, SessionConfig
from fixup.proto.vpdn.terminate_aaa import OPERATOR, AaaBook, CallAaa
from fixup.proto.vpdn.terminate_config import session_config
from fixup.proto.vpdn.throttle import FailureBudget
from fixup.proto.events import Event
from fixup.wire import pptp_messages as m
from fixup.wire.gre import parse_gre

Verifier = Callable[[VerifyRequest], "VerifyResult | None"]  # None: the answer comes later


@dataclass(slots=True, eq=False)
class LocalCall:
    call_id: int
    peer_call_id: int
    tunnel_id: int
    peer: bytes
    address: IPv4Address
    channel: GreChannel
    session: PppSession
    created: float
    aaa: CallAaa
    announced: bool = False  # the "Tunnel created" line was logged


@dataclass(slots=True, eq=False)
class Tunnel:
    tunnel_id: int
    peer: bytes
    peer_port: int
    conn: PptpServerConnection
    created: float
    calls: dict[int, LocalCall] = field(default_factory=dict)  # by our call id
    had_call: bool = False  # the call deadline is for the first call only
    packets_in: int = 0
    packets_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0


class TerminateServer:
    """Every terminated tunnel and call of one ``terminate`` policy."""

    def __init__(self, policy: TerminatePolicy, local_address: IPv4Address, now: float, *,
                 random_bytes: Callable[[int], bytes] = os.urandom, verifier: Verifier | None = None,
                 server: ServerConfig = ServerConfig(), listen_address: IPv4Address | None = None) -> None:
        self.policy = policy
        self.local_address = local_address  # our end of the PPP links
        self.listen_address = listen_address or local_address  # where PPTP is accepted
        self.random_bytes = random_bytes
        self._own_verifier = verifier is None  # a reload rebuilds it from the new local users
        self.verifier: Verifier = verifier or _local_verifier(policy)
        self.server = server
        self.session_config: SessionConfig = session_config(policy, local_address)
        self.pool = AddressPool(*policy.pool, reserved=frozenset({local_address}))
        self.aaa = AaaBook(policy.aaa, policy.encryption.mppe != "none", str(self.listen_address), random_bytes)
        self.by_session: dict[str, LocalCall] = {}  # by Acct-Session-Id (the AAA token)
        self.tunnels: dict[int, Tunnel] = {}
        self._per_peer: dict[bytes, int] = {}  # peer address -> open tunnels
        self.failures = FailureBudget(policy.limits.auth_failures, policy.limits.auth_hold_down)
        self.calls: dict[int, LocalCall] = {}  # by our call id
        self.by_address: dict[IPv4Address, LocalCall] = {}
        self._tcp: list[tuple[int, bytes]] = []
        self._close: list[int] = []
        self._gre: list[tuple[bytes, bytes]] = []
        self._tun: list[bytes] = []
        self._events: list[Event] = []
        self.refused = 0
        self.unknown_gre = 0
        self.drops: dict[str, int] = {}  # by reason, of the sessions that have ended (live ones: their own)

    def reconfigure(self, policy: TerminatePolicy) -> None:
        """A reloaded ``terminate`` section (same listen and local address): the settings of the
        sessions that start from now on.  Live sessions keep what they negotiated and their
        addresses; a live address the new pool no longer covers is routed to the TUN device for
        the rest of its session (``address-routed``), never handed out again meanwhile."""
        self.policy = policy
        if self._own_verifier:
            self.verifier = _local_verifier(policy)
        self.session_config = session_config(policy, self.local_address)
        self.failures.limit, self.failures.window = policy.limits.auth_failures, policy.limits.auth_hold_down
        self.aaa.reconfigure(policy.aaa, policy.encryption.mppe != "none")
        self.pool = AddressPool(*policy.pool, reserved=frozenset({self.local_address}))
        for address, call in self.by_address.items():
            if self.pool.take(address) or call.aaa.routed:
                continue
            call.aaa.routed = True  # its route goes when the call ends (_end_call)
            self._events.append(Event("address-routed", f"Tnl/Cl {call.tunnel_id}/{call.call_id} PPTP: "
                                      f"{address} is outside the reloaded pool, routed until the call ends",
                                      {"address": str(address), "add": True}))

    # -- tunnels (TCP) ----------------------------------------------------------------------------

    def tunnel_opened(self, peer: bytes, peer_port: int, now: float) -> int | None:
        """A new TCP connection: its tunnel id, never one a live tunnel holds; None when all are
        held (the I/O closes the connection)."""
        problem = self._tunnel_refusal(peer)
        tunnel_id = self._pick_id(self.tunnels) if problem is None else None
        if tunnel_id is None:
            self.refused += 1
            self.count(problem or "tunnel-ids")
            self._events.append(Event("tunnel-refused", f"PPTP: connection from {_ip(peer)}:{peer_port} refused: "
                                      f"{problem or 'every tunnel id in use'}", {"reason": problem}))
            return None
        self._per_peer[peer] = self._per_peer.get(peer, 0) + 1
        self.tunnels[tunnel_id] = Tunnel(tunnel_id, peer, peer_port, PptpServerConnection(self.server, now), now)
        self._debug(f"Tnl {tunnel_id} PPTP: Tunnel created; peer initiated ({_ip(peer)}:{peer_port})")
        return tunnel_id

    def tcp_in(self, tunnel_id: int, data: bytes, now: float) -> None:
        tunnel = self.tunnels.get(tunnel_id)
        if tunnel is None:
            return
        tunnel.packets_in += 1
        tunnel.bytes_in += len(data)
        tunnel.conn.receive(data, now)
        self._drain_tunnel(tunnel, now)

    def tunnel_closed(self, tunnel_id: int, now: float, why: str = "TCP closed") -> None:
        tunnel = self.tunnels.pop(tunnel_id, None)
        if tunnel is None:
            return
        left = self._per_peer.get(tunnel.peer, 1) - 1
        if left > 0:
            self._per_peer[tunnel.peer] = left
        else:
            self._per_peer.pop(tunnel.peer, None)
        for call in list(tunnel.calls.values()):
            call.session.lower_down(now, why)
            self._end_call(call, now, why, notify=False)
        self._events.append(Event("tunnel-deleted", f"603105: PPTP Tunnel deleted, tunnel_id = {tunnel_id}, "
                                  f"remote_peer_ip = {_ip(tunnel.peer)} ({why})", {"tunnel": tunnel_id}))

    # -- calls (GRE) and the TUN device -------------------------------------------------------------

    def gre_in(self, source: bytes, packet: bytes, now: float) -> None:
        """An IP payload of protocol 47 from ``source`` (the IP header already stripped)."""
        try:
            header = parse_gre(packet)
        except BadInput:
            self.unknown_gre += 1
            return
        call = self.calls.get(header.call_id)
        if call is None or call.peer != source:
            self.unknown_gre += 1
            return
        frames, out = call.channel.receive(header, packet[header.header_length:], now)
        self._gre += [(call.peer, gre) for gre in out]
        for frame in frames:
            call.session.frame_in(frame, now)
        self._drain_call(call, now)

    def tun_in(self, packet: bytes, now: float) -> None:
        """An IPv4 packet the kernel routed to the pool."""
        if len(packet) < 20:
            return
        call = self.by_address.get(IPv4Address(packet[16:20]))
        if call is not None:
            call.session.ip_out(packet, now)
            self._drain_call(call, now)

    # -- time and commands ---------------------------------------------------------------------------

    def poll(self, now: float) -> None:
        for tunnel in list(self.tunnels.values()):
            tunnel.conn.poll(now)
            self._drain_tunnel(tunnel, now)
            overdue = self._overdue(tunnel, now) if tunnel.tunnel_id in self.tunnels else None
            if overdue is not None:
                self.count("tunnel-timeout")
                self._events.append(Event("tunnel-timeout", f"Tnl {tunnel.tunnel_id} PPTP: {overdue}, closed",
                                          {"tunnel": tunnel.tunnel_id, "reason": overdue}))
                self._end_tunnel(tunnel, now, overdue)
        setup = self.policy.limits.setup_timeout
        for call in [c for c in self.calls.values() if c.session.phase not in ("up", "terminate", "dead")
                     and now - c.created > setup]:
            self.count("setup-timeout")
            self._events.append(Event("session-timeout", f"Tnl/Cl {call.tunnel_id}/{call.call_id} PPTP: PPP not up "
                                      f"within {setup:g} s (phase {call.session.phase}), disconnecting",
                                      {"call": call.call_id, "reason": "setup timeout"}))
            call.session.close(now, f"PPP not up within {setup:g} s")
            self._drain_call(call, now)
            self._end_call(call, now, f"PPP not up within {setup:g} s")
        for call in list(self.calls.values()):
            expired = self.aaa.expired(call.aaa, call.session, now)
            if expired is not None and not call.session.closed and call.session.phase != "terminate":
                self._events.append(Event("session-timeout", f"Tnl/Cl {call.tunnel_id}/{call.call_id} PPTP: "
                                          f"user {call.session.username or 'Unknown'}: {expired}, disconnecting",
                                          {"call": call.call_id, "reason": expired}))
                call.session.close(now, expired)
            delivered, out = call.channel.poll(now)
            self._gre += [(call.peer, gre) for gre in out]
            for frame in delivered:
                call.session.frame_in(frame, now)
            call.session.poll(now)
            self._drain_call(call, now)

    def clear(self, now: float, tunnel_id: int | None = None, why: str = OPERATOR) -> int:
        """``clear vpdn tunnel ID|all``: LCP Terminate, CDN, StopCCRQ."""
        tunnels = list(self.tunnels.values()) if tunnel_id is None else [t for t in [self.tunnels.get(tunnel_id)] if t]
        for tunnel in tunnels:
            self._end_tunnel(tunnel, now, why)
        return len(tunnels)

    # -- AAA (RADIUS / TACACS+ answers come back here) --------------------------------------------------

    def aaa_result(self, token: str, result: VerifyResult, now: float) -> None:
        """The AAA server's answer for the call whose Acct-Session-Id is ``token``; answers for
        calls that have gone are dropped."""
        call = self.by_session.get(token)
        if call is None or not call.aaa.pending or call.session.auth is None:
            return
        session = call.session
        user = session.username or "Unknown"
        result, problem = self.aaa.screen(call.aaa, session.auth.method, result)
        if result.ok and result.framed_address is not None and result.framed_address != call.address:
            problem = self._use_framed_address(call, result.framed_address)
            result = result if problem is None else VerifyResult(False, log=problem)
        outcome = "succeed" if result.ok else "failed"
        self._events.append(Event("aaa-auth", f"603103: PPP virtual interface {call.call_id} - user: {user} "
                                  f"aaa authentication {outcome}" + (f" ({result.log})" if result.log and not problem else ""),
                                  {"call": call.call_id, "ok": result.ok}))
        if problem is not None:
            self._events.append(Event("aaa-refused", f"403110: PPP virtual interface {call.call_id}, user: {user} "
                                      f"{problem}", {"call": call.call_id, "reason": problem}))
        if result.ok:
            self.aaa.authorized(call.aaa, result, user, now)
        session.verify_result(result, now)
        self._drain_call(call, now)

    def take_aaa_requests(self) -> list[tuple[str, VerifyRequest, AuthContext]]:
        """(token, request, context) for the authentication server group."""
        return self.aaa.take_requests()

    def take_accounting(self) -> list[AccountingRecord]:
        """Start / Interim-Update / Stop records for the accounting server group."""
        return self.aaa.take_records()

    def _use_framed_address(self, call: LocalCall, address: IPv4Address) -> str | None:
        """Framed-IP-Address (RFC 2865 section 5.8) instead of the pool's address, or why not."""
        if address == self.local_address or address in self.by_address:
            return f"Framed-IP-Address {address} is in use"
        in_pool = address in self.pool
        if in_pool and not self.pool.take(address):
            return f"Framed-IP-Address {address} is not free in the pool"
        self.pool.release(call.address)
        self.by_address.pop(call.address, None)
        call.address = address
        call.session.reassign(address)
        call.aaa.routed = not in_pool
        self.by_address[address] = call
        if call.aaa.routed:  # the I/O routes it to the TUN device (the pool is routed already)
            self._events.append(Event("address-routed", f"Tnl/Cl {call.tunnel_id}/{call.call_id} PPTP: "
                                      f"Framed-IP-Address {address} outside the pool, routed",
                                      {"address": str(address), "add": True}))
        return None

    def take_tcp(self) -> list[tuple[int, bytes]]:
        out, self._tcp = self._tcp, []
        return out

    def take_close(self) -> list[int]:
        out, self._close = self._close, []
        return out

    def take_gre(self) -> list[tuple[bytes, bytes]]:
        out, self._gre = self._gre, []
        return out

    def take_tun(self) -> list[bytes]:
        out, self._tun = self._tun, []
        return out

    def take_events(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    # -- control connection events --------------------------------------------------------------------

    def _drain_tunnel(self, tunnel: Tunnel, now: float) -> None:
        for event in tunnel.conn.take_events():
            self._on_control(tunnel, event, now)
        self._flush_tcp(tunnel)
        if tunnel.conn.closed and tunnel.tunnel_id in self.tunnels:
            self._close.append(tunnel.tunnel_id)
            why = "Stop-Control-Connection-Request from client" if tunnel.conn.peer_stopped else "control connection closed"
            self.tunnel_closed(tunnel.tunnel_id, now, why)

    def _flush_tcp(self, tunnel: Tunnel) -> None:
        data = tunnel.conn.take_output()
        if data:
            tunnel.packets_out += 1
            tunnel.bytes_out += len(data)
            self._tcp.append((tunnel.tunnel_id, data))

    def _on_control(self, tunnel: Tunnel, event: ServerEvent, now: float) -> None:
        tid = tunnel.tunnel_id
        if event.kind == "control-up":
            peer = event.message
            self._debug(f"Tnl {tid} PPTP: CC I SCCRQ, vendor {peer.vendor_string!r}, hostname {peer.host_name!r}; "
                        "CC O SCCRP; state change wt-sccrq to estabd")
        elif event.kind == "call-request":
            self._admit(tunnel, event.message, now)
        elif event.kind == "call-clear":
            for call in [c for c in tunnel.calls.values() if c.peer_call_id == event.message.call_id]:
                call.session.lower_down(now, f"{event.reason} from client")
                self._end_call(call, now, f"{event.reason} from client", notify=event.message.message_type == m.MessageType.CCRQ)
        elif event.kind in ("protocol-error", "wan-error"):
            self._events.append(Event("pptp-error", f"Tnl {tid} PPTP: {event.reason or event.kind}", {"tunnel": tid}))
        elif event.kind == "link-info":
            self._debug(f"Tnl {tid} PPTP: CC I SLI")

    def _admit(self, tunnel: Tunnel, request: m.OutgoingCallRequest, now: float) -> None:
        """OCRQ: a session, a pool address and a call id, or a refusal with a reason logged."""
        tid = tunnel.tunnel_id
        self._debug(f"Tnl {tid} PPTP: CC I OCRQ, call id 0x{request.call_id:x}, recv win size {request.packet_recv_window_size}")
        problem = None
        held = self.failures.held_down(tunnel.peer, now)
        if held is not None:
            problem = f"authentication failures from {_ip(tunnel.peer)}: held down for {held:.0f} s"
            self.count("auth-held-down")
        elif len(tunnel.calls) >= self.policy.limits.calls_per_tunnel:
            problem = f"calls_per_tunnel {self.policy.limits.calls_per_tunnel} reached"
        elif len(self.calls) >= self.policy.max_sessions:
            problem = f"max_sessions {self.policy.max_sessions} reached"
        address = self.pool.allocate() if problem is None else None
        if problem is None and address is None:
            problem = f"address pool {self.policy.pool[0]}-{self.policy.pool[1]} exhausted"
        if problem is not None:
            self.refused += 1
            tunnel.conn.refuse_call(request, m.OutgoingCallResult.GENERAL_ERROR, error_code=4)  # No-Resource
            self._events.append(Event("call-refused", f"Tnl {tid} PPTP: call from {_ip(tunnel.peer)} refused: {problem}",
                                      {"tunnel": tid, "reason": problem}))
            return
        call_id = self._pick_id(self.calls)
        assert call_id is not None  # max_sessions is far below 65535
        session = PppSession(self.session_config, address, now, random_bytes=self.random_bytes)
        channel = GreChannel(request.call_id, request.packet_recv_window_size, now)
        call = LocalCall(call_id, request.call_id, tid, tunnel.peer, address, channel, session, now,
                         self.aaa.new_call(call_id, _ip(tunnel.peer), now))
        tunnel.calls[call_id] = self.calls[call_id] = call
        tunnel.had_call = True
        self.by_address[address] = call
        self.by_session[call.aaa.context.session_id] = call
        tunnel.conn.accept_call(request, call_id)
        self._events.append(Event("call-admitted", f"Tnl/Cl {tid}/{call_id} PPTP: call from {_ip(tunnel.peer)} "
                                  f"(peer call id 0x{request.call_id:x}), address {address}",
                                  {"peer": _ip(tunnel.peer), "call": call_id}))
        self._debug(f"Tnl/Cl {tid}/{call_id} PPTP: CC O OCRP; state change wt-vacc to estabd")
        session.start(now)
        self._drain_call(call, now)

    def _tunnel_refusal(self, peer: bytes) -> str | None:
        limits = self.policy.limits
        if len(self.tunnels) >= limits.tunnels:
            return "tunnel-quota"
        if self._per_peer.get(peer, 0) >= limits.tunnels_per_peer:
            return "tunnel-quota-peer"
        return None

    def count(self, reason: str) -> None:
        """One more drop or refusal of ``reason`` (``show vpdn``)."""
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def _overdue(self, tunnel: Tunnel, now: float) -> str | None:
        """Why an unauthenticated tunnel has had its time: no SCCRQ, or no call after SCCRP."""
        limits, state = self.policy.limits, tunnel.conn.state
        if state is ServerState.WAIT_SCCRQ and now - tunnel.created > limits.sccrq_timeout:
            return f"no SCCRQ within {limits.sccrq_timeout:g} s"
        if state is ServerState.ESTABLISHED and not tunnel.calls and not tunnel.had_call \
                and now - tunnel.created > limits.call_timeout:
            return f"no call within {limits.call_timeout:g} s"
        return None

    def _end_tunnel(self, tunnel: Tunnel, now: float, why: str) -> None:
        """LCP Terminate and CDN for its calls, StopCCRQ, close (``clear vpdn``, deadlines)."""
        for call in list(tunnel.calls.values()):
            call.session.close(now, why)
            self._drain_call(call, now)
            self._end_call(call, now, why)
        tunnel.conn.stop(now)
        self._drain_tunnel(tunnel, now)
        self._close.append(tunnel.tunnel_id)
        self.tunnel_closed(tunnel.tunnel_id, now, why)

    def _pick_id(self, used: Container[int]) -> int | None:
        """A random id 1..65535 that ``used`` does not hold (tunnel ids; call ids, which key the
        inbound GRE: RFC 2637 section 4.1, so an off-path sender cannot guess them in order)."""
        for _ in range(16):
            candidate = int.from_bytes(self.random_bytes(2), "big")
            if candidate and candidate not in used:
                return candidate
        start = int.from_bytes(self.random_bytes(2), "big")
        for step in range(0x10000):
            candidate = (start + step) & 0xFFFF
            if candidate and candidate not in used:
                return candidate
        return None

    # -- session outputs -------------------------------------------------------------------------------

    def _drain_call(self, call: LocalCall, now: float) -> None:
        session = call.session
        for request in session.take_verify_requests():
            if self.aaa.remote:
                self.aaa.ask(call.aaa, request)
                self._events.append(Event("aaa-auth", f"2: PPP virtual interface {call.call_id} - user: "
                                          f"{request.username} aaa authentication started", {"call": call.call_id}))
                continue
            result = self.verifier(request)
            if result is not None:
                session.verify_result(result, now)
        for frame in session.take_frames():
            self._gre += [(call.peer, gre) for gre in call.channel.send(frame, now)]
        self._tun += session.take_ip()
        for kind, text in session.take_events():
            self._on_session_event(call, kind, text, now)
        tunnel = self.tunnels.get(call.tunnel_id)
        if tunnel is not None:
            self._flush_tcp(tunnel)
        if session.closed and call.call_id in self.calls:
            self._end_call(call, now, session.failure or "PPP down")

    def _on_session_event(self, call: LocalCall, kind: str, text: str, now: float) -> None:
        tid, cid = call.tunnel_id, call.call_id
        if kind == "up":
            call.announced = True
            self.failures.succeeded(call.peer)
            self.aaa.link_up(call.aaa, call.session, call.address, now)
            strength = f"{call.session.mppe_key_length} bits" if call.session.mppe_key_length else "None"
            self._events.append(Event("tunnel-created", (
                f"603104: PPTP Tunnel created, tunnel_id is {tid}, remote_peer_ip is {_ip(call.peer)} "
                f"ppp_virtual_interface_id is {cid}, client_dynamic_ip is {call.address} "
                f"username is {call.session.username or 'Unknown'}, MPPE_key_strength is {strength}"),
                {"tunnel": tid, "call": cid, "user": call.session.username, "address": str(call.address)}))
        elif kind == "auth-failed":
            self.failures.failed(call.peer, now)
            self._events.append(Event("auth-failed", f"603103: PPP virtual interface {cid} - {text}", {"call": cid}))
        elif kind == "down":
            self._events.append(Event("session-down", f"PPTP: Call id {cid}, tunnel {tid}, reason: {text}",
                                      {"call": cid, "reason": text}))
        else:
            self._debug(f"Tnl/Cl {tid}/{cid} PPP: {text}")

    def _end_call(self, call: LocalCall, now: float, why: str, notify: bool = True) -> None:
        """Free the call id and the address; tell the client with a CDN (RFC 2637 section 2.13)."""
        if self.calls.pop(call.call_id, None) is None:
            return
        self.by_address.pop(call.address, None)
        self.by_session.pop(call.aaa.context.session_id, None)
        self.pool.release(call.address)
        for reason, count in call.session.counters.dropped.items():
            self.drops[reason] = self.drops.get(reason, 0) + count
        self.aaa.ended(call.aaa, call.session, why, now)
        if call.aaa.routed:
            self._events.append(Event("address-routed", f"Tnl/Cl {call.tunnel_id}/{call.call_id} PPTP: route to "
                                      f"{call.address} removed", {"address": str(call.address), "add": False}))
        tunnel = self.tunnels.get(call.tunnel_id)
        if tunnel is not None:
            tunnel.calls.pop(call.call_id, None)
            if notify:
                tunnel.conn.disconnect_call(call.call_id, m.DisconnectResult.ADMIN_SHUTDOWN
                                            if "operator" in why else m.DisconnectResult.REQUEST, why.encode()[:128])
                self._flush_tcp(tunnel)
        if not call.session.closed:
            call.session.lower_down(now, why)
        self._events.append(Event("call-ended", f"PPTP: Call id {call.call_id}, tunnel {call.tunnel_id}, "
                                  f"user {call.session.username or 'Unknown'}: {why}; address {call.address} returned",
                                  {"peer": _ip(call.peer), "call": call.call_id, "reason": why,
                                   "session_id": call.aaa.context.session_id}))

    def _debug(self, text: str) -> None:
        self._events.append(Event("debug", text, {}))

    # -- show vpdn -------------------------------------------------------------------------------------

    def snapshot(self, now: float) -> dict:
        return {
            "local_address": str(self.local_address),
            "tunnels": [_tunnel_dict(t, now, str(self.listen_address)) for t in self.tunnels.values()],
            "sessions": [_call_dict(c, now) for c in self.calls.values()],
            "pool": {"first": str(self.policy.pool[0]), "last": str(self.policy.pool[1]),
                     "in_use": self.pool.in_use, "size": self.pool.size},
            "max_sessions": self.policy.max_sessions, "refused": self.refused, "unknown_gre": self.unknown_gre,
            "drops": self._all_drops(),
        }

    def _all_drops(self) -> dict[str, int]:
        total = dict(self.drops)
        for call in self.calls.values():
            for reason, count in call.session.counters.dropped.items():
                total[reason] = total.get(reason, 0) + count
        return total


def _local_verifier(policy: TerminatePolicy) -> Verifier:
    users = LocalUsers(policy.users)
    return lambda request: verify_locally(request, users)


def _ip(raw: bytes) -> str:
    return str(IPv4Address(raw))


def _tunnel_dict(t: Tunnel, now: float, local: str) -> dict:
    return {"id": t.tunnel_id, "remote_address": _ip(t.peer), "remote_port": t.peer_port, "local_address": local,
            "state": t.conn.state.value, "since_change": round(now - t.conn.changed, 1), "sessions": len(t.calls),
            "packets_sent": t.packets_out, "packets_received": t.packets_in,
            "bytes_sent": t.bytes_out, "bytes_received": t.bytes_in}


def _call_dict(c: LocalCall, now: float) -> dict:
    s, ch = c.session, c.channel
    return {"call_id": c.call_id, "tunnel_id": c.tunnel_id, "remote_address": _ip(c.peer),
            "remote_call_id": c.peer_call_id, "username": s.username, "state": s.phase, "auth": s.lcp.auth_method,
            "session_id": c.aaa.context.session_id,
            "since_change": round(now - s.changed, 1), "address": str(c.address),
            "mppe": s.mppe_key_length, "packets_sent": ch.stats.sent, "packets_received": ch.stats.received,
            "bytes_sent": ch.stats.bytes_sent, "bytes_received": ch.stats.bytes_received,
            "seq": ch.next_send, "ack": ch.expected, "ack_received": ch.peer_acked, "peer_rws": ch.peer_window,
            "out_of_order": ch.stats.out_of_order, "dropped": dict(s.counters.dropped)}
