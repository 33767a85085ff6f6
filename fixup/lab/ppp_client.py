"""The client (dial-out) side of a PPP link over PPTP, pure: a test peer for fixup's PPTP server.

:class:`PppClient` runs the phases of RFC 1661 section 3 as a Windows or pppd client would:
LCP (RFC 1661 section 6) requesting Magic-Number and MRU and accepting the server's
Authentication-Protocol when it is one of ours; then PAP (RFC 1334), CHAP-MD5 (RFC 1994),
MS-CHAP v1 (RFC 2433) or MS-CHAP v2 (RFC 2759, with the server's authenticator response
checked); then IPCP (RFC 1332, DNS options of RFC 1877) asking for an address and name
servers, and CCP (RFC 1962) negotiating MPPE (RFC 3078) with keys of RFC 3079.  IPv4 packets go
in and out, encrypted when MPPE is up.  Frames in, frames out, ``now`` passed in: no sockets.

The control protocols are in :mod:`fixup.lab.ppp_client_layers`, the authentication peers in
:mod:`fixup.lab.ppp_client_auth`.  ``failure`` mirrors pppd's wording.
"""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from ipaddress import IPv4Address

from fixup.errors import BadInput, BadMppe
from fixup.lab.ppp_client_auth import AUTH_FAILED, AuthPeer, make_auth_peer, swap_keys
from fixup.lab.ppp_client_layers import (
    MPPE_REFUSED,
    ClientCcp,
    ClientCcpOptions,
    ClientIpcp,
    ClientLcp,
    ClientLcpOptions,
)
from fixup.proto.auth.crypto import MppeKeys
from fixup.proto.ppp.mppe import MppeEngine, MppeOutOfSync
from fixup.proto.ppp.ccp import DIRECTIONS_DIFFER, MPPE_L, MPPE_S, MppeResult, mppe_result
from fixup.proto.ppp.fsm import Limits, State
from fixup.proto.ppp.lcp import AUTH_PROTOCOLS
from fixup.wire.ppp import Code, ControlPacket, Protocol, build_frame, parse_control, parse_frame

NO_COMMON_AUTH = "LCP: no common authentication protocol"
MPPE_WITHOUT_KEYS = "MPPE required but MS-CHAP authentication not performed"
MPPE_MODES = ("none", "40", "128", "auto", "require-40", "require-128")
AUTH_WAIT = 30.0  # seconds the authentication phase may last
RESET_RETRY = 1.0  # seconds before a CCP Reset-Request is repeated
_STRENGTHS = {"none": (), "40": (MPPE_L,), "128": (MPPE_S,), "auto": (MPPE_S, MPPE_L),
              "require-40": (MPPE_L,), "require-128": (MPPE_S,)}
_FINISHED = (State.INITIAL, State.CLOSED, State.STOPPED)


# -- the client -------------------------------------------------------------------------------


class PppClient:
    """One PPP client session (RFC 1661 section 3 phases): feed :meth:`frame_in`, :meth:`ip_out`
    and :meth:`poll`; collect :meth:`take_frames` (PPP frames for GRE) and :meth:`take_ip`.

    ``auth_methods``: what we accept from the server.  ``mppe``: ``none`` (CCP is
    Protocol-Rejected, as a Windows client without encryption does), ``40``/``128``/``auto``
    (offered, the link comes up unencrypted if the server refuses), ``require-40`` /
    ``require-128`` (the link fails without it)."""

    def __init__(self, username: str, password: str, *,
                 auth_methods: tuple[str, ...] = ("pap", "chap", "mschap", "mschap-v2"),
                 mppe: str = "auto", stateless: bool | None = None,
                 random_bytes: Callable[[int], bytes] = os.urandom,
                 mru: int | None = 1400, request_dns: bool = True, limits: Limits | None = None) -> None:
        unknown = [name for name in auth_methods if name not in AUTH_PROTOCOLS]
        if unknown or mppe not in MPPE_MODES:
            raise ValueError(f"unknown authentication method {unknown} or MPPE mode {mppe!r}")
        self.username, self.password = username, password
        self.mppe_mode = mppe
        self.mppe_required = mppe.startswith("require-")
        self.random_bytes = random_bytes
        limits = limits or Limits()
        self.lcp = ClientLcp(ClientLcpOptions(tuple(auth_methods), mru, self._random32), limits)
        self.ipcp = ClientIpcp(limits, request_dns)
        self.ccp = ClientCcp(ClientCcpOptions(_STRENGTHS[mppe], self.mppe_required, stateless), limits)
        self.auth: AuthPeer | None = None
        self.keys: MppeKeys | None = None  # client's point of view: send = server's receive
        self.phase = "dead"
        self.failure: str | None = None
        self.stats: Counter[str] = Counter()
        self._engine: MppeEngine | None = None
        self._auth_deadline: float | None = None
        self._last_reset = 0.0
        self._ccp_settled = mppe == "none"
        self._closing = False
        self._started = False
        self._frames: list[bytes] = []
        self._ip: list[bytes] = []

    def _random32(self) -> int:
        return int.from_bytes(self.random_bytes(4), "big")

    # -- outcome --------------------------------------------------------------------------

    @property
    def up(self) -> bool:
        """IPCP Opened and, unless MPPE is off, CCP settled (Opened, or given up when optional)."""
        return self.failure is None and self.ipcp.opened and (self._ccp_settled or self.ccp.opened)

    @property
    def finished(self) -> bool:
        """LCP is down for good: the session is over."""
        return self._started and self.phase == "dead"

    @property
    def address(self) -> IPv4Address | None:
        return self.ipcp.address

    @property
    def peer_address(self) -> IPv4Address | None:
        return self.ipcp.peer_address

    @property
    def dns(self) -> tuple[IPv4Address, ...]:
        return self.ipcp.dns

    @property
    def auth_method(self) -> str | None:
        return self.lcp.auth_method if self.lcp.opened else None

    @property
    def mppe(self) -> MppeResult | None:
        if self._engine is None:
            return None
        return mppe_result(self.ccp.agreed_bits()[0] or 0)

    @property
    def mppe_bits(self) -> int | None:
        return self.mppe.bits if self.mppe else None

    @property
    def key_length(self) -> int | None:
        return self.mppe.key_length if self.mppe else None

    # -- input ----------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """The PPTP call is connected: the lower layer is Up (RFC 1661 section 3.2)."""
        self.phase = "establish"
        self._started = True
        self.lcp.up(now)
        self.lcp.open(now)
        self._settle(now)

    def close(self, now: float, reason: str = "User request") -> None:
        """Administrative Close: LCP Terminate-Request (RFC 1661 section 3.7)."""
        self._closing = True
        self.lcp.close(now, reason)
        self._settle(now)

    def frame_in(self, frame: bytes, now: float) -> None:
        """One PPP frame from the GRE payload."""
        self.stats["frames_in"] += 1
        try:
            protocol, info = parse_frame(frame)
            self._dispatch(protocol, info, now)
        except BadInput as err:
            self.stats[f"drop_{err.reason}"] += 1
        self._settle(now)

    def ip_out(self, packet: bytes, now: float) -> None:
        """An IPv4 packet to send over the link; dropped unless the link is up."""
        if not self.up:
            self.stats["drop_not_up"] += 1
            return
        if self._engine is not None:
            self._frames.append(build_frame(Protocol.MPPE, self._engine.encrypt(b"\x00\x21" + packet)))
        else:
            self._frames.append(build_frame(Protocol.IP, packet))
        self.stats["ip_out"] += 1

    def poll(self, now: float) -> None:
        for layer in (self.lcp, self.ipcp, self.ccp):
            layer.poll(now)
        if self.auth is not None and self.phase == "authenticate":
            self._frames += [build_frame(self.auth.protocol, info) for info in self.auth.poll(now)]
            if self._auth_deadline is not None and now >= self._auth_deadline and self.auth.outcome is None:
                self._fail(now, "authentication timed out")
        self._settle(now)

    def next_deadline(self) -> float | None:
        deadlines = [layer.next_deadline() for layer in (self.lcp, self.ipcp, self.ccp)]
        if self.auth is not None and self.phase == "authenticate":
            deadlines += [self.auth.deadline, self._auth_deadline]
        return min((d for d in deadlines if d is not None), default=None)

    def take_frames(self) -> list[bytes]:
        frames, self._frames = self._frames, []
        return frames

    def take_ip(self) -> list[bytes]:
        packets, self._ip = self._ip, []
        return packets

    # -- demultiplexing (RFC 1661 sections 3.3 - 3.5) -----------------------------------------

    def _dispatch(self, protocol: int, info: bytes, now: float) -> None:
        if protocol == Protocol.LCP:
            self._lcp_in(parse_control(info), now)
        elif not self.lcp.opened:
            self.stats["drop_before_lcp"] += 1  # RFC 1661 section 3.4: silently discarded
        elif protocol in (Protocol.PAP, Protocol.CHAP):
            self._auth_in(protocol, info, now)
        elif protocol == Protocol.CCP and self.mppe_mode == "none":
            self.lcp.reject_protocol(protocol, info)
        elif protocol in (Protocol.IPCP, Protocol.CCP):
            if self.phase != "network":
                self.stats["drop_before_network"] += 1
                return
            layer = self.ipcp if protocol == Protocol.IPCP else self.ccp
            layer.receive(parse_control(info), now)
        elif protocol in (Protocol.IP, Protocol.MPPE):
            self._data_in(protocol, info, now)
        else:
            self.lcp.reject_protocol(protocol, info)

    def _lcp_in(self, packet: ControlPacket, now: float) -> None:
        was_opened = self.lcp.opened
        self.lcp.receive(packet, now)
        for protocol in self.lcp.rejected_protocols:
            if protocol == Protocol.CCP:
                self.ccp.protocol_rejected(now)
            elif protocol == Protocol.IPCP:
                self._fail(now, "IPCP: peer rejected protocol 0x8021")
        self.lcp.rejected_protocols.clear()
        if packet.code == Code.TERMINATE_REQUEST and not was_opened and not self._closing:
            # the server gave up during Link Establishment: no need to keep asking
            self._fail(now, NO_COMMON_AUTH if self.lcp.options.auth_refused else self._peer_terminated())

    def _auth_in(self, protocol: int, info: bytes, now: float) -> None:
        if self.auth is None or protocol != self.auth.protocol or self.phase != "authenticate":
            self.stats["drop_auth"] += 1
            return
        self._frames += [build_frame(protocol, reply) for reply in self.auth.receive(info, now)]

    def _data_in(self, protocol: int, info: bytes, now: float) -> None:
        if not self.up:
            self.stats["drop_not_up"] += 1
        elif protocol == Protocol.IP and self._engine is None:
            self._deliver(info)
        elif protocol == Protocol.MPPE and self._engine is not None:
            self._decrypt(info, now)
        else:
            self.stats["drop_encryption_mismatch"] += 1

    def _decrypt(self, info: bytes, now: float) -> None:
        assert self._engine is not None
        try:
            inner = self._engine.decrypt(info)
        except MppeOutOfSync:
            self.stats["drop_mppe_out_of_sync"] += 1
        except BadMppe:
            self.stats["drop_bad_mppe"] += 1
        else:
            if int.from_bytes(inner[:2], "big") == Protocol.IP:
                self._deliver(inner[2:])
            else:
                self.stats["drop_inner_protocol"] += 1
        self._maybe_reset(now)

    def _maybe_reset(self, now: float) -> None:
        """RFC 3078 section 8: a stateful receiver that lost sync sends a CCP Reset-Request, and
        sends it again (as pppd does) when no flushed packet came within RESET_RETRY seconds."""
        assert self._engine is not None
        wanted = self._engine.take_reset_request()
        if wanted or (self._engine.needs_reset and now - self._last_reset >= RESET_RETRY):
            self._last_reset = now
            self.ccp.request_reset()

    def _deliver(self, packet: bytes) -> None:
        self.stats["ip_in"] += 1
        self._ip.append(packet)

    # -- phases -------------------------------------------------------------------------------

    def _settle(self, now: float) -> None:
        """Collect output and act on layer events until nothing changes."""
        for _ in range(16):
            moved = self._lcp_events(now) | self._auth_progress(now) | self._ncp_events(now)
            for layer in (self.lcp, self.ipcp, self.ccp):
                self._frames += [build_frame(protocol, info) for protocol, info in layer.take_output()]
            if not moved:
                return

    def _lcp_events(self, now: float) -> bool:
        events = self.lcp.take_events()
        for event in events:
            if event == "this-layer-up":
                self._authenticate(now)
            elif event == "this-layer-down":
                self._link_down(now)
            elif event == "this-layer-finished":
                self.phase = "dead"
                if self.failure is None and not self._closing:
                    self.failure = f"LCP: {self.lcp.failure}" if self.lcp.failure else self._peer_terminated()
        return bool(events)

    def _link_down(self, now: float) -> None:
        """RFC 1661 section 3.7: the NCPs go down with LCP, for good when the peer sent a
        Terminate-Request (Stopping), else for a renegotiation (RFC 1661 section 4.1 RCR in
        Opened)."""
        terminated = self.lcp.state in (State.STOPPING, State.CLOSING)
        self.phase = "terminate" if terminated else "establish"
        self.ipcp.down(now)
        self.ccp.down(now)
        self._engine = None
        if terminated and self.failure is None and not self._closing:
            self.failure = self._peer_terminated()

    def _peer_terminated(self) -> str:
        reason = self.lcp.peer_reason
        return f"LCP terminated by peer ({reason})" if reason else "LCP terminated by peer"

    def _authenticate(self, now: float) -> None:
        """RFC 1661 section 3.5: authenticate with what the server asked for, if anything."""
        method = self.lcp.auth_method
        if method is None:
            self._network(now)
            return
        self.phase = "authenticate"
        self._auth_deadline = now + AUTH_WAIT
        self.auth = make_auth_peer(method, self.username, self.password, self.random_bytes)
        self._frames += [build_frame(self.auth.protocol, info) for info in self.auth.start(now)]

    def _auth_progress(self, now: float) -> bool:
        if self.phase != "authenticate" or self.auth is None or self.auth.outcome is None:
            return False
        if self.auth.outcome == "success":
            self.keys = swap_keys(self.auth.keys) if self.auth.keys is not None else None
            self._network(now)
        else:
            self._fail(now, self.auth.reason or AUTH_FAILED)
        return True

    def _network(self, now: float) -> None:
        """RFC 1661 section 3.6: IPCP and (unless MPPE is off) CCP."""
        self.phase = "network"
        if self.mppe_mode != "none" and self.keys is None:
            if self.mppe_required:
                self._fail(now, MPPE_WITHOUT_KEYS)
                return
            self.ccp.options.offer = None  # no MS-CHAP, no keys: refuse MPPE (RFC 3079)
        self.ipcp.up(now)
        self.ipcp.open(now)
        if self.mppe_mode != "none":
            self.ccp.up(now)
            self.ccp.open(now)

    def _ncp_events(self, now: float) -> bool:
        moved = False
        for event in self.ipcp.take_events():
            moved = True
            if event == "this-layer-finished" and not self._closing:
                self._fail(now, f"IPCP: {self.ipcp.failure or 'terminated by peer'}")
        for event in self.ccp.take_events():
            moved = True
            if event == "this-layer-up":
                self._start_mppe(now)
            elif event == "this-layer-down":
                self._engine = None
            elif event == "reset-request" and self._engine is not None:
                self._engine.on_reset_request()  # RFC 3078 section 8: our next packet is flushed
        if self.ccp.failure is not None and not self._ccp_settled and self.ccp.state in _FINISHED + (State.CLOSING,):
            self._ccp_settled = True
            moved = True
            if self.mppe_required:
                self._fail(now, MPPE_REFUSED)
        return moved

    def _start_mppe(self, now: float) -> None:
        """CCP Opened: MPPE with the agreed bits, the same both ways (RFC 3078 section 2)."""
        ours, theirs = self.ccp.agreed_bits()
        result = mppe_result(ours) if ours is not None and ours == theirs else None
        if ours != theirs:
            self._fail(now, DIRECTIONS_DIFFER)
            return
        if result is None or self.keys is None:
            if self.mppe_required:
                self._fail(now, MPPE_REFUSED)
            return
        send, receive = self.keys.start_keys(result.key_length)
        self._engine = MppeEngine(send, receive, result.key_length, result.stateless)

    def _fail(self, now: float, reason: str) -> None:
        """Remember the first failure and take the link down (LCP Terminate-Request)."""
        if self.failure is None:
            self.failure = reason
        self._closing = True
        self.lcp.close(now, reason)
