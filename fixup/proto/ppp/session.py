"""One terminated PPP link, server side: the phases of RFC 1661 section 3.2 wired together.

Dead -> Establish (LCP) -> Authenticate (PAP / CHAP / MS-CHAP, RFC 1334, 1994, 2433, 2759)
-> Network (IPCP, RFC 1332/1877; CCP with MPPE, RFC 1962/3078/3079) -> Terminate.
PPP frames in and out (the GRE channel carries them), IPv4 packets in and out (the TUN device
carries them), ``now`` for every timer; verification of credentials is a request the owner
answers (locally at once, or later from RADIUS), so nothing here blocks.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Callable

from fixup.errors import BadInput
from fixup.proto.auth import AUTHENTICATORS, MSCHAP_V1, MSCHAP_V2, PAP, Authenticator, VerifyRequest, VerifyResult
from fixup.proto.ppp.mppe import MppeEngine
from fixup.proto.ppp.ccp import Ccp, CcpPolicy
from fixup.proto.ppp.fsm import State
from fixup.proto.ppp.ipcp import Ipcp, IpcpConfig
from fixup.proto.ppp.lcp import Lcp, LcpConfig
from fixup.wire.ppp import Protocol, build_frame, parse_control, parse_frame

MPPE_REQUIRED_NOT_ACTIVE = "mppe required but not active"  # the seed's PIX wording
RESET_RETRY = 1.0  # seconds between CCP Reset-Requests while a stateful MPPE receiver is out of sync
CCP_WAIT = 1.0  # seconds we let the client send the first CCP Configure-Request


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """``ccp`` None: no encryption offered (a client's CCP is Protocol-Rejected)."""

    lcp: LcpConfig
    ipcp: IpcpConfig
    ccp: CcpPolicy | None = None
    auth_name: bytes = b"fixup"


@dataclass(slots=True)
class LinkCounters:
    frames_in: int = 0
    frames_out: int = 0
    ip_in: int = 0  # from the client
    ip_out: int = 0  # to the client
    bytes_in: int = 0
    bytes_out: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


class PppSession:
    """See module docstring.  ``phase``: establish, authenticate, network, up, terminate, dead."""

    def __init__(self, config: SessionConfig, assigned: IPv4Address, now: float, *,
                 random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        self.config = config
        self.assigned = assigned
        self.random_bytes = random_bytes
        self.phase = "establish"
        self.lcp = Lcp(config.lcp)
        self.ipcp = Ipcp(config.ipcp, assigned)
        self.ccp = Ccp(config.ccp) if config.ccp is not None else None
        self.auth: Authenticator | None = None
        self.mppe: MppeEngine | None = None
        self.failure: str | None = None
        self.ccp_refused = False
        self._reset_sent = 0.0
        self._ccp_deadline: float | None = None
        self.counters = LinkCounters()
        self._frames: list[bytes] = []
        self._ip: list[bytes] = []
        self._events: list[tuple[str, str]] = []
        self._verify: list[VerifyRequest] = []
        self.changed = now

    # -- properties -----------------------------------------------------------------------------

    @property
    def username(self) -> str | None:
        return self.auth.username if self.auth is not None else None

    @property
    def mppe_key_length(self) -> int | None:
        result = self.ccp.mppe if self.ccp is not None else None
        return result.key_length if result is not None and self.mppe is not None else None

    @property
    def closed(self) -> bool:
        return self.phase == "dead"

    # -- driving ----------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """The lower layer (the GRE channel of an accepted call) is up: open LCP."""
        self.lcp.up(now)
        self.lcp.open(now)
        self._after(now)

    def frame_in(self, frame: bytes, now: float) -> None:
        """One PPP frame from the client."""
        self.counters.frames_in += 1
        try:
            protocol, info = parse_frame(frame)
            self._dispatch(protocol, info, now)
        except BadInput as err:
            self.counters.drop(err.reason)
        self._after(now)

    def ip_out(self, packet: bytes, now: float) -> None:
        """An IPv4 packet for the client (from the TUN device)."""
        if self.phase != "up":
            self.counters.drop("link-not-up")
            return
        self.counters.ip_out += 1
        self.counters.bytes_out += len(packet)
        if self.mppe is not None:
            self._send(Protocol.MPPE, self.mppe.encrypt(Protocol.IP.to_bytes(2, "big") + packet))
        else:
            self._send(Protocol.IP, packet)

    def verify_result(self, result: VerifyResult, now: float) -> None:
        """The verifier's answer to the last VerifyRequest."""
        if self.auth is not None:
            self._frames_of(Protocol.PAP if self.auth.method == "pap" else Protocol.CHAP, self.auth.complete(result))
        self._after(now)

    def reassign(self, address: IPv4Address) -> None:
        """Another address for the client (a AAA server's Framed-IP-Address, RFC 2865 section
        5.8); only before IPCP has started."""
        if self.ipcp.state is not State.INITIAL:
            raise ValueError("IPCP already started")
        self.assigned = address
        self.ipcp = Ipcp(self.config.ipcp, address)

    def poll(self, now: float) -> None:
        if self.ccp is not None and self.ccp.state is State.INITIAL and self._ccp_deadline is not None \
                and now >= self._ccp_deadline:  # the client did not start CCP: we do
            self.ccp.up(now)
            self.ccp.open(now)
        if self.mppe is not None and self.ccp is not None and self.mppe.needs_reset \
                and now - self._reset_sent >= RESET_RETRY:  # RFC 3078 section 3.3: until a flushed packet
            self.ccp.request_reset()
            self._reset_sent = now
        for layer in self._layers():
            layer.poll(now)
        if self.auth is not None and self.auth.outcome is None:
            self._frames_of(self._auth_protocol(), self.auth.poll(now))
        self._after(now)

    def close(self, now: float, reason: str) -> None:
        """Terminate the link (LCP Terminate-Request), e.g. ``clear vpdn``."""
        if self.failure is None:
            self.failure = reason
        self.lcp.close(now, reason)
        self._after(now)

    def lower_down(self, now: float, reason: str) -> None:
        """The call or control connection is gone: no goodbye possible."""
        if self.failure is None:
            self.failure = reason
        self.lcp.down(now)
        self._enter("dead", now, reason)

    def take_frames(self) -> list[bytes]:
        frames, self._frames = self._frames, []
        return frames

    def take_ip(self) -> list[bytes]:
        packets, self._ip = self._ip, []
        return packets

    def take_verify_requests(self) -> list[VerifyRequest]:
        requests, self._verify = self._verify, []
        return requests

    def take_events(self) -> list[tuple[str, str]]:
        """(kind, text): "phase" changes, "auth-ok" / "auth-failed", "up", "down"."""
        events, self._events = self._events, []
        return events

    def next_deadline(self) -> float | None:
        deadlines = [layer.next_deadline() for layer in self._layers()]
        if self.auth is not None and self.auth.outcome is None:
            deadlines.append(self.auth.deadline)
        if self.ccp is not None and self.ccp.state is State.INITIAL:
            deadlines.append(self._ccp_deadline)
        return min((d for d in deadlines if d is not None), default=None)

    # -- frames in --------------------------------------------------------------------------------

    def _dispatch(self, protocol: int, info: bytes, now: float) -> None:
        if protocol == Protocol.LCP:
            self.lcp.receive(parse_control(info), now)
        elif not self.lcp.opened:
            self.counters.drop("before-lcp-opened")  # RFC 1661 section 3.4: discarded
        elif protocol in (Protocol.PAP, Protocol.CHAP):
            self._auth_frame(protocol, info, now)
        elif self.phase in ("establish", "authenticate"):
            self.counters.drop("before-authentication")  # section 3.5: only LCP and auth
        elif protocol == Protocol.IPCP:
            if self._encryption_settled() or not self._encryption_required():
                self._start_ipcp(now)  # else IPCP waits: no IP before MPPE when it is required
            self.ipcp.receive(parse_control(info), now)
        elif protocol == Protocol.CCP and self.ccp is not None:
            packet = parse_control(info)
            if self.ccp.state is State.INITIAL:
                self.ccp.open_for_peer(packet, now)
            self.ccp.receive(packet, now)
        elif protocol == Protocol.MPPE and self.mppe is not None:
            self._mppe_in(info, now)
        elif protocol == Protocol.IP:
            self._ip_in(info, now)
        else:  # IPv6CP, an unwanted CCP, anything else: LCP Protocol-Reject (section 5.7)
            self._send(Protocol.LCP, self.lcp.reject_protocol(protocol, info))

    def _auth_frame(self, protocol: int, info: bytes, now: float) -> None:
        if self.auth is None or protocol != self._auth_protocol():
            self.counters.drop("unexpected-auth")
            return
        self._frames_of(protocol, self.auth.receive(info, now))
        self._verify += self.auth.take_verify_requests()

    def _mppe_in(self, info: bytes, now: float) -> None:
        inner = self.mppe.decrypt(info)
        if self.mppe.take_reset_request() and self.ccp is not None:
            self.ccp.request_reset()
            self._reset_sent = now
        if int.from_bytes(inner[:2], "big") == Protocol.IP:
            self._ip_in(inner[2:], now, encrypted=True)
        else:
            self.counters.drop("mppe-non-ip")

    def _ip_in(self, packet: bytes, now: float, encrypted: bool = False) -> None:
        if self.phase != "up":
            self.counters.drop("link-not-up")
        elif self.mppe is not None and not encrypted:
            self.counters.drop("cleartext-while-encrypting")  # RFC 3078 section 3
        elif len(packet) < 20 or packet[0] >> 4 != 4 or packet[12:16] != self.assigned.packed:
            # every session shares one TUN device, so rp_filter cannot tell clients apart: a
            # client sends from the address IPCP gave it (RFC 1332 section 3.3), or not at all
            self.counters.drop("spoofed-source")
        else:
            self.counters.ip_in += 1
            self.counters.bytes_in += len(packet)
            self._ip.append(packet)

    # -- phases -------------------------------------------------------------------------------------

    def _after(self, now: float) -> None:
        """Move between phases (RFC 1661 section 3.2), then send what the layers have queued."""
        self._advance(now)
        for layer in self._layers():
            for protocol, info in layer.take_output():
                self._send(protocol, info)

    def _advance(self, now: float) -> None:
        for protocol in self.lcp.take_rejected_protocols():
            if protocol == Protocol.CCP and self.ccp is not None:
                self.ccp.protocol_rejected(now)
        lcp_events = self.lcp.take_events()
        if "this-layer-up" in lcp_events and self.phase == "establish":
            self._authenticate(now)
        if {"this-layer-finished", "this-layer-down"} & set(lcp_events) and self.phase != "dead":
            if self.phase == "authenticate" and self.auth is not None and self.auth.username is not None:
                # the client gave up after a rejection (PAP allows retries, so no outcome yet)
                self.failure = self.failure or "authentication failed"
                self._events.append(("auth-failed", f"user {self.auth.username!r}: "
                                     f"{self.auth.reason or 'authentication failed'}, client hung up"))
            self._enter("dead", now, self.failure or self.lcp.failure or self.lcp.peer_reason or "LCP closed")
            return
        if self.phase == "authenticate" and self.auth is not None and self.auth.outcome is not None:
            self._authenticated(now)
        if self.phase in ("network", "up"):
            self._encryption(now)
            if self.phase == "network" and self._encryption_settled():
                self._start_ipcp(now)
        if self.phase == "network" and self.ipcp.opened and self._encryption_settled():
            self._enter("up", now, "IPCP opened")
            self._events.append(("up", f"link up: user {self.username!r}, address {self.ipcp.peer_address}, "
                                 f"MPPE {self.mppe_key_length or 'none'}"))

    def _authenticate(self, now: float) -> None:
        method = self.lcp.auth_method
        if method is None:  # no authentication configured: straight to the network phase
            self._enter("network", now, "no authentication")
            self._start_ipcp(now)
            return
        kind = AUTHENTICATORS[method]
        self.auth = kind() if method == PAP else kind(name=self.config.auth_name, random_bytes=self.random_bytes)
        self._enter("authenticate", now, f"authenticating with {method}")
        self._frames_of(self._auth_protocol(), self.auth.start(now))

    def _authenticated(self, now: float) -> None:
        if self.auth.outcome != "success":
            self._events.append(("auth-failed", f"user {self.auth.username!r}: {self.auth.reason or 'authentication failed'}"))
            self.failure = "authentication failed"
            self.lcp.close(now, "authentication failed")
            self._enter("terminate", now, "authentication failed")
            return
        self._events.append(("auth-ok", f"user {self.auth.username!r} authenticated ({self.auth.method})"))
        self._enter("network", now, "network phase")
        if self.ccp is not None and self.auth.method in (MSCHAP_V1, MSCHAP_V2) and self.auth.keys is not None:
            # CCP before IPCP, as pppd does with MPPE; and the client speaks first (up to
            # CCP_WAIT), so our MPPE choice can follow its offer (see Ccp.open_for_peer)
            self._ccp_deadline = now + CCP_WAIT
        else:
            self.ccp = None  # no MS-CHAP keys, no MPPE (RFC 3079): refuse the client's CCP
            self._start_ipcp(now)

    def _encryption(self, now: float) -> None:
        """CCP and the MPPE engine (RFC 3078): engine on when CCP opens; a client that will not
        encrypt is refused when encryption is required (the seed's "mppe required but not active")."""
        required = self._encryption_required()
        if self.ccp is None:
            if required:
                self._refuse_cleartext(now)
            return
        events = self.ccp.take_events()
        if self.ccp.opened and self.mppe is None and self.ccp.mppe is not None:
            send, recv = self.auth.keys.start_keys(self.ccp.mppe.key_length)
            self.mppe = MppeEngine(send, recv, self.ccp.mppe.key_length, self.ccp.mppe.stateless, ip_only=True)
        elif "reset-request" in events and self.mppe is not None:
            self.mppe.on_reset_request()
        if self.ccp.failure is not None or "ccp-rejected" in events or ("this-layer-down" in events and self.mppe):
            self.ccp_refused = True
            if required:
                self._refuse_cleartext(now)

    def _refuse_cleartext(self, now: float) -> None:
        if self.phase in ("terminate", "dead"):
            return
        self.close(now, MPPE_REQUIRED_NOT_ACTIVE)
        self._enter("terminate", now, MPPE_REQUIRED_NOT_ACTIVE)

    def _start_ipcp(self, now: float) -> None:
        """Open IPCP (RFC 1332) once: when encryption is settled, or as soon as the client starts
        IPCP itself (a client that does not wait for CCP must not wait for us)."""
        if self.ipcp.state is State.INITIAL:
            self.ipcp.up(now)
            self.ipcp.open(now)

    def _encryption_required(self) -> bool:
        return self.config.ccp is not None and self.config.ccp.required

    def _encryption_settled(self) -> bool:
        return self.ccp is None or self.mppe is not None or self.ccp_refused

    def _enter(self, phase: str, now: float, why: str) -> None:
        if phase == self.phase:
            return
        self.phase, self.changed = phase, now
        self._events.append(("phase", f"{phase}: {why}"))
        if phase == "dead":
            self._events.append(("down", why))

    # -- helpers ------------------------------------------------------------------------------------

    def _layers(self) -> list:
        return [layer for layer in (self.lcp, self.ipcp, self.ccp) if layer is not None]

    def _auth_protocol(self) -> int:
        return Protocol.PAP if self.auth is not None and self.auth.method == "pap" else Protocol.CHAP

    def _frames_of(self, protocol: int, infos: list[bytes]) -> None:
        for info in infos:
            self._send(protocol, info)

    def _send(self, protocol: int, info: bytes) -> None:
        lcp_up = self.lcp.opened
        self._frames.append(build_frame(protocol, info, acfc=lcp_up and self.lcp.send_acfc and protocol != Protocol.LCP,
                                        pfc=lcp_up and self.lcp.send_pfc))
        self.counters.frames_out += 1
