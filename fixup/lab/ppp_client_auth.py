"""The peer (client) side of PPP authentication, pure: PAP (RFC 1334 section 2), CHAP with MD5
(RFC 1994), MS-CHAP v1 (RFC 2433) and MS-CHAP v2 (RFC 2759, the server's authenticator
response checked as section 8.8 asks).  MS-CHAP exchanges also yield the MPPE start keys of
RFC 3079, seen from the client (:func:`swap_keys`).  A test peer for fixup's authenticators.

Every peer has ``start(now)``, ``receive(info, now)`` and ``poll(now)`` returning packets (PPP
Information fields of ``protocol``) to send, ``deadline``, ``outcome`` (None, ``"success"``,
``"failure"``), ``reason`` and ``keys`` (server's point of view, as the authenticator has them).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import ClassVar

from fixup.errors import BadAuth
from fixup.proto.auth import crypto
from fixup.proto.auth.chap import (
    CHALLENGE,
    FAILURE,
    SUCCESS,
    build_mschap_v1_response,
    build_mschap_v2_response,
    build_response,
    parse_chap,
)
from fixup.proto.auth.credentials import chap_md5_response
from fixup.proto.auth.crypto import MppeKeys
from fixup.proto.auth.pap import AUTHENTICATE_ACK, AUTHENTICATE_NAK, build_pap_request, parse_pap
from fixup.wire.ppp import Protocol

AUTH_FAILED = "authentication failed"
MUTUAL_AUTH_FAILED = "mutual authentication failed"  # pppd: "MS-CHAPv2 mutual authentication failed"
NO_ANSWER = "authentication: no answer from the server"
_AUTHENTICATOR_RESPONSE = re.compile(rb"S=([0-9A-Fa-f]{40})")


def swap_keys(server_view: MppeKeys) -> MppeKeys:
    """RFC 3079 section 3.4: the server's send key is the client's receive key."""
    return MppeKeys(server_view.recv_key, server_view.send_key, server_view.lm_key)


class PapPeer:
    """RFC 1334 section 2.1: the peer sends Authenticate-Request until Ack or Nak, every
    ``restart`` seconds, ``max_requests`` times at most."""

    protocol = Protocol.PAP

    def __init__(self, username: str, password: str, *, restart: float = 3.0, max_requests: int = 10) -> None:
        self.request = build_pap_request(1, username.encode(), password.encode())
        self.restart, self.max_requests = restart, max_requests
        self.outcome: str | None = None
        self.reason: str | None = None
        self.keys: MppeKeys | None = None
        self.deadline: float | None = None
        self._sent = 0

    def start(self, now: float) -> list[bytes]:
        return self._send(now)

    def _send(self, now: float) -> list[bytes]:
        self._sent += 1
        self.deadline = now + self.restart
        return [self.request]

    def poll(self, now: float) -> list[bytes]:
        if self.outcome is not None or self.deadline is None or now < self.deadline:
            return []
        if self._sent >= self.max_requests:
            self._finish("failure", NO_ANSWER)
            return []
        return self._send(now)

    def receive(self, info: bytes, now: float) -> list[bytes]:
        """Ack or Nak with our Identifier decides (RFC 1334 section 2.2.2)."""
        packet = parse_pap(info)
        if self.outcome is None and packet.identifier == self.request[1]:
            if packet.code == AUTHENTICATE_ACK:
                self._finish("success", None)
            elif packet.code == AUTHENTICATE_NAK:
                self._finish("failure", AUTH_FAILED)
        return []

    def _finish(self, outcome: str, reason: str | None) -> None:
        self.outcome, self.reason, self.deadline = outcome, reason, None


class _ChapPeer:
    """RFC 1994 section 4.1: answer each Challenge; a retransmitted Challenge (same Identifier
    and value) gets the same Response.  Success / Failure with the last Response's Identifier
    decide (section 4.2).  The authenticator retransmits, so the peer has no timer."""

    protocol = Protocol.CHAP
    challenge_size: ClassVar[int | None] = None

    def __init__(self, username: str, password: str, random_bytes: Callable[[int], bytes]) -> None:
        self.username, self.password = username, password
        self.name = username.encode("utf-8")
        self.random_bytes = random_bytes
        self.outcome: str | None = None
        self.reason: str | None = None
        self.keys: MppeKeys | None = None
        self.deadline: float | None = None
        self.message = b""  # the server's Success / Failure text
        self._last: tuple[int, bytes, bytes] | None = None  # (identifier, challenge, response packet)

    def start(self, now: float) -> list[bytes]:
        return []

    def poll(self, now: float) -> list[bytes]:
        return []

    def receive(self, info: bytes, now: float) -> list[bytes]:
        packet = parse_chap(info)
        if packet.code == CHALLENGE:
            return self._answer(packet.identifier, packet.value)
        if self.outcome is not None or self._last is None or packet.identifier != self._last[0]:
            return []
        self.message = packet.message
        if packet.code == SUCCESS:
            problem = self._check_success(packet.message)
            self._finish("failure" if problem else "success", problem)
        elif packet.code == FAILURE:
            self._finish("failure", AUTH_FAILED)
        return []

    def _answer(self, identifier: int, challenge: bytes) -> list[bytes]:
        if self.outcome == "failure":
            return []
        if self._last is not None and self._last[:2] == (identifier, challenge):
            return [self._last[2]]
        if self.challenge_size is not None and len(challenge) != self.challenge_size:
            raise BadAuth(f"Challenge of {len(challenge)} octets, expected {self.challenge_size}", where="CHAP")
        self.outcome = None
        response = build_response(identifier, self._value(identifier, challenge), self.name)
        self._last = (identifier, challenge, response)
        return [response]

    def _finish(self, outcome: str, reason: str | None) -> None:
        self.outcome, self.reason = outcome, reason

    def _value(self, identifier: int, challenge: bytes) -> bytes:
        raise NotImplementedError

    def _check_success(self, message: bytes) -> str | None:
        return None


class ChapMd5Peer(_ChapPeer):
    """RFC 1994 section 4.1: Value = MD5(Identifier + secret + Challenge)."""

    def _value(self, identifier: int, challenge: bytes) -> bytes:
        return chap_md5_response(identifier, self.password.encode("utf-8"), challenge)


class MsChapV1Peer(_ChapPeer):
    """RFC 2433 section 4: the NT-Response only (LM-Response zero, Use-NT flag 1); keys of
    RFC 3079 section 2 once the server says Success."""

    challenge_size = 8

    def _value(self, identifier: int, challenge: bytes) -> bytes:
        return build_mschap_v1_response(b"", crypto.nt_challenge_response(challenge, self.password), flags=1)

    def _check_success(self, message: bytes) -> str | None:
        assert self._last is not None
        password_hash = crypto.nt_password_hash(self.password)
        self.keys = crypto.mschap1_mppe_keys(password_hash, self._last[1], crypto.lm_password_hash(self.password))
        return None


class MsChapV2Peer(_ChapPeer):
    """RFC 2759 section 4 Response (our Peer-Challenge, GenerateNTResponse); the Success
    message's ``S=`` authenticator response must match (section 8.8), then RFC 3079 section 3
    keys."""

    challenge_size = 16

    def __init__(self, username: str, password: str, random_bytes: Callable[[int], bytes]) -> None:
        super().__init__(username, password, random_bytes)
        self._peer_challenge = b""
        self._nt_response = b""

    def _value(self, identifier: int, challenge: bytes) -> bytes:
        self._peer_challenge = self.random_bytes(16)
        password_hash = crypto.nt_password_hash(self.password)
        self._nt_response = crypto.generate_nt_response(challenge, self._peer_challenge, self.name, password_hash)
        return build_mschap_v2_response(self._peer_challenge, self._nt_response)

    def _check_success(self, message: bytes) -> str | None:
        assert self._last is not None
        found = _AUTHENTICATOR_RESPONSE.search(message)
        password_hash = crypto.nt_password_hash(self.password)
        if found is None or not crypto.check_authenticator_response(
                password_hash, self._nt_response, self._peer_challenge, self._last[1], self.name,
                "S=" + found.group(1).decode()):
            return MUTUAL_AUTH_FAILED
        self.keys = crypto.mschap2_mppe_keys(password_hash, self._nt_response)
        return None


AuthPeer = PapPeer | ChapMd5Peer | MsChapV1Peer | MsChapV2Peer


def make_auth_peer(method: str, username: str, password: str, random_bytes: Callable[[int], bytes]) -> AuthPeer:
    """The peer for an LCP Authentication-Protocol name (fixup.proto.ppp.lcp.AUTH_PROTOCOLS)."""
    if method == "pap":
        return PapPeer(username, password)
    peers: dict[str, type[_ChapPeer]] = {"chap": ChapMd5Peer, "mschap": MsChapV1Peer, "mschap-v2": MsChapV2Peer}
    return peers[method](username, password, random_bytes)  # type: ignore[return-value]
