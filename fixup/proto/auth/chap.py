"""CHAP, server side: packet codec (RFC 1994 section 4) and one authenticator per algorithm:
CHAP with MD5 (RFC 1994, algorithm 5), MS-CHAP v1 (RFC 2433, algorithm 0x80) and MS-CHAP v2
(RFC 2759, algorithm 0x81).

Packets are PPP Information fields of protocol 0xC223: Code, Identifier, Length, then for
Challenge/Response a Value-Size octet, the Value and the Name, and for Success/Failure a
Message.  All three authenticators share one interface:

* ``start(now)`` -> the Challenge packets to send; ``poll(now)`` retransmits the Challenge
  every ``restart_interval`` seconds, ``max_challenges`` times at most, then fails;
* ``receive(info, now)`` takes a packet from the peer (raises BadAuth if malformed);
* ``take_verify_requests()`` -> the ``VerifyRequest``s to answer; ``complete(result)`` ->
  the Success / Failure packet;
* ``outcome`` (None, ``"success"``, ``"failure"``), ``reason``, ``username`` and, for
  MS-CHAP after success, ``keys`` (``MppeKeys``, server's point of view).
"""
from __future__ import annotations

import re

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from fixup.errors import BadAuth
from fixup.proto.auth.credentials import (
    CHAP_MD5,
    FAILED_MESSAGE,
    MSCHAP_V1,
    MSCHAP_V2,
    VerifyRequest,
    VerifyResult,
)
from fixup.proto.auth.crypto import MppeKeys

CHAP_PROTOCOL = 0xC223
CHALLENGE, RESPONSE, SUCCESS, FAILURE = 1, 2, 3, 4
ALGORITHM_MD5 = 5
ALGORITHM_MSCHAP_V1 = 0x80
ALGORITHM_MSCHAP_V2 = 0x81
MSCHAP_RESPONSE_SIZE = 49  # RFC 2433 section 4 and RFC 2759 section 4


@dataclass(frozen=True, slots=True)
class ChapPacket:
    """One CHAP packet: ``value``/``name`` for Challenge and Response, ``message`` for
    Success and Failure (RFC 1994 sections 4.1, 4.2)."""

    code: int
    identifier: int
    value: bytes = b""
    name: bytes = b""
    message: bytes = b""


def parse_chap(info: bytes) -> ChapPacket:
    """Parse a CHAP packet; octets past Length are padding (RFC 1661 section 5)."""
    if len(info) < 4:
        raise BadAuth("shorter than the 4-octet header", where="CHAP", offset=len(info))
    code, identifier, length = struct.unpack_from("!BBH", info)
    if length < 4 or length > len(info):
        raise BadAuth(f"Length {length} outside 4..{len(info)}", where="CHAP", offset=2)
    body = info[4:length]
    if code in (CHALLENGE, RESPONSE):
        if not body or 1 + body[0] > len(body):
            raise BadAuth("Value-Size runs past Length", where="CHAP", offset=4)
        end = 1 + body[0]
        return ChapPacket(code, identifier, value=body[1:end], name=body[end:])
    if code in (SUCCESS, FAILURE):
        return ChapPacket(code, identifier, message=body)
    raise BadAuth(f"unsupported Code {code}", where="CHAP", offset=0)


def _value_packet(code: int, identifier: int, value: bytes, name: bytes) -> bytes:
    if not 0 < len(value) < 256:
        raise ValueError("CHAP Value must be 1..255 octets")
    body = bytes([len(value)]) + value + name
    return struct.pack("!BBH", code, identifier, 4 + len(body)) + body


def build_challenge(identifier: int, value: bytes, name: bytes = b"") -> bytes:
    """RFC 1994 section 4.1, Challenge."""
    return _value_packet(CHALLENGE, identifier, value, name)


def build_response(identifier: int, value: bytes, name: bytes = b"") -> bytes:
    """RFC 1994 section 4.1, Response (the peer's side; used by tests)."""
    return _value_packet(RESPONSE, identifier, value, name)


def build_success(identifier: int, message: bytes = b"") -> bytes:
    """RFC 1994 section 4.2, Success."""
    return struct.pack("!BBH", SUCCESS, identifier, 4 + len(message)) + message


def build_failure(identifier: int, message: bytes = b"") -> bytes:
    """RFC 1994 section 4.2, Failure."""
    return struct.pack("!BBH", FAILURE, identifier, 4 + len(message)) + message


@dataclass(frozen=True, slots=True)
class MsChapV1Response:
    """RFC 2433 section 4: LM-Response (24), NT-Response (24), Use-NT flag (1)."""

    lm_response: bytes
    nt_response: bytes
    flags: int


@dataclass(frozen=True, slots=True)
class MsChapV2Response:
    """RFC 2759 section 4: Peer-Challenge (16), Reserved (8), NT-Response (24), Flags (1)."""

    peer_challenge: bytes
    nt_response: bytes
    flags: int


def _check_size(value: bytes, what: str) -> None:
    if len(value) != MSCHAP_RESPONSE_SIZE:
        what = f"{what} Response Value-Size {len(value)}, expected 49"
        raise BadAuth(what, where="CHAP", offset=4)


def parse_mschap_v1_response(value: bytes) -> MsChapV1Response:
    _check_size(value, "MS-CHAP v1")
    return MsChapV1Response(value[:24], value[24:48], value[48])


def build_mschap_v1_response(lm_response: bytes, nt_response: bytes, flags: int = 1) -> bytes:
    return lm_response.ljust(24, b"\x00")[:24] + nt_response + bytes([flags])


def parse_mschap_v2_response(value: bytes) -> MsChapV2Response:
    """The Reserved octets and Flags MUST be zero (RFC 2759 section 4) but are not checked:
    the NT-Response decides."""
    _check_size(value, "MS-CHAP v2")
    return MsChapV2Response(value[:16], value[24:48], value[48])


def build_mschap_v2_response(peer_challenge: bytes, nt_response: bytes, flags: int = 0) -> bytes:
    return peer_challenge + b"\x00" * 8 + nt_response + bytes([flags])


class _ChapAuthenticator:
    """What the three CHAP flavours share: challenge, retransmission (RFC 1994 section 4.1;
    the Challenge is resent unchanged, Identifier and value, as pppd does, until a Response
    with its Identifier arrives),
    verification and the final answer, repeated for a repeated Response (RFC 1994 section
    4.2: a Success may be lost; seed 001 line 134 shows a client sending its Response
    twice and the PIX answering Success twice)."""

    method: ClassVar[str]
    algorithm: ClassVar[int]
    challenge_size: ClassVar[int]

    def __init__(
        self,
        *,
        name: bytes = b"",
        random_bytes: Callable[[int], bytes] = os.urandom,
        restart_interval: float = 3.0,
        max_challenges: int = 10,
        first_identifier: int = 1,
        require_keys: bool = False,
    ) -> None:
        self.name = name
        self.random_bytes = random_bytes
        self.restart_interval = restart_interval
        self.max_challenges = max_challenges
        self.require_keys = require_keys
        self.identifier = first_identifier & 0xFF
        self.challenge: bytes | None = None
        self.outcome: str | None = None
        self.reason: str | None = None
        self.username: str | None = None
        self.keys: MppeKeys | None = None
        self._sent = 0
        self._next_send: float | None = None
        self._pending = False
        self._requests: list[VerifyRequest] = []
        self._reply: bytes | None = None

    @property
    def deadline(self) -> float | None:
        """When ``poll`` next has something to do (Challenge retransmission), or None."""
        return self._next_send if self._awaiting_response() else None

    def _awaiting_response(self) -> bool:
        return self.challenge is not None and not self._pending and self.outcome is None

    def start(self, now: float) -> list[bytes]:
        """Send the first Challenge (RFC 1994 section 4.1)."""
        self.challenge = self.random_bytes(self.challenge_size)
        self._sent = 0
        return self._send_challenge(now)

    def _send_challenge(self, now: float) -> list[bytes]:
        assert self.challenge is not None
        self._sent += 1
        self._next_send = now + self.restart_interval
        return [build_challenge(self.identifier, self.challenge, self.name)]

    def poll(self, now: float) -> list[bytes]:
        """Retransmit the Challenge, or give up after ``max_challenges`` of them."""
        if not self._awaiting_response() or self._next_send is None or now < self._next_send:
            return []
        if self._sent >= self.max_challenges:
            self._next_send = None
            self._finish("failure", "no Response to the Challenge")
            return []
        return self._send_challenge(now)

    def take_verify_requests(self) -> list[VerifyRequest]:
        requests, self._requests = self._requests, []
        return requests

    def receive(self, info: bytes, now: float) -> list[bytes]:
        """A packet from the peer.  Responses carrying another Identifier are stale and
        silently discarded (RFC 1994 section 4.1); other Codes are not for the authenticator."""
        packet = parse_chap(info)
        if packet.code != RESPONSE or self.challenge is None:
            return []
        if packet.identifier != self.identifier:
            return []
        if self.outcome is not None:  # decided: repeat the answer (none after a timeout)
            return [] if self._reply is None else [self._reply]
        if self._pending:
            return []
        request = self._verify_request(packet, self.challenge)  # may raise BadAuth
        self.username = request.username
        refusal = self._refusal(request)
        if refusal is not None:
            return self._answer(False, self._failure_message(VerifyResult(False)), refusal)
        self._pending = True
        self._requests.append(request)
        return []

    def complete(self, result: VerifyResult) -> list[bytes]:
        """The verifier's answer: Success or Failure, final either way (Failure says R=0)."""
        if not self._pending or self.outcome is not None:
            return []
        self._pending = False
        problem = self._success_problem(result) if result.ok else None
        if result.ok and problem is None:
            self.keys = result.keys
            return self._answer(True, self._success_message(result), None)
        reason = problem or result.message or FAILED_MESSAGE
        return self._answer(False, self._failure_message(result), reason)

    def _answer(self, ok: bool, message: bytes, reason: str | None) -> list[bytes]:
        build = build_success if ok else build_failure
        self._reply = build(self.identifier, message)
        self._finish("success" if ok else "failure", reason)
        return [self._reply]

    def _finish(self, outcome: str, reason: str | None) -> None:
        self.outcome = outcome
        self.reason = reason

    def _username(self, packet: ChapPacket) -> str:
        return packet.name.decode("utf-8", "surrogateescape")

    # --- per algorithm ---------------------------------------------------------------------

    def _verify_request(self, packet: ChapPacket, challenge: bytes) -> VerifyRequest:
        raise NotImplementedError

    def _refusal(self, request: VerifyRequest) -> str | None:
        """A reason to fail without asking the verifier, or None."""
        return None

    def _success_problem(self, result: VerifyResult) -> str | None:
        if self.require_keys and result.keys is None:
            return "missing MPPE keys from the verifier"
        return None

    def _success_message(self, result: VerifyResult) -> bytes:
        return result.message.encode()

    def _failure_message(self, result: VerifyResult) -> bytes:
        return (result.message or FAILED_MESSAGE).encode()


class ChapMd5Authenticator(_ChapAuthenticator):
    """RFC 1994 CHAP with MD5: the Response Value is MD5(Identifier + secret + Challenge)."""

    method = CHAP_MD5
    algorithm = ALGORITHM_MD5
    challenge_size = 16

    def _verify_request(self, packet: ChapPacket, challenge: bytes) -> VerifyRequest:
        data = {"identifier": packet.identifier, "challenge": challenge, "response": packet.value}
        return VerifyRequest(self.method, self._username(packet), data)


def _ms_failure(result: VerifyResult, default: str) -> bytes:
    """A verifier may hand over a complete MS-CHAP error string (RADIUS MS-CHAP-Error, RFC 2548
    section 2.1.5); its ``R=1`` (retry allowed) becomes ``R=0``: our Failure is final."""
    text = result.message if result.message.startswith("E=") else default
    return re.sub(r"\bR=1\b", "R=0", text).encode()


class MsChapV1Authenticator(_ChapAuthenticator):
    """RFC 2433 MS-CHAP v1: 8-octet Challenge, 49-octet Response; only NT-Responses are
    accepted (Use-NT flag set); Failure ``E=691 R=0`` (RFC 2433 section 6)."""

    method = MSCHAP_V1
    algorithm = ALGORITHM_MSCHAP_V1
    challenge_size = 8

    def _verify_request(self, packet: ChapPacket, challenge: bytes) -> VerifyRequest:
        response = parse_mschap_v1_response(packet.value)
        data = {
            "challenge": challenge,
            "lm_response": response.lm_response,
            "nt_response": response.nt_response,
            "flags": response.flags,
        }
        return VerifyRequest(self.method, self._username(packet), data)

    def _refusal(self, request: VerifyRequest) -> str | None:
        flags = request.data["flags"]
        return None if isinstance(flags, int) and flags & 1 else "LAN Manager response refused"

    def _failure_message(self, result: VerifyResult) -> bytes:
        return _ms_failure(result, "E=691 R=0")


class MsChapV2Authenticator(_ChapAuthenticator):
    """RFC 2759 MS-CHAP v2: 16-octet Challenge, 49-octet Response; Success carries
    ``S=<authenticator response> M=<message>`` (section 5), Failure ``E=691 R=0 C=<new
    challenge> V=3 M=...`` (section 6)."""

    method = MSCHAP_V2
    algorithm = ALGORITHM_MSCHAP_V2
    challenge_size = 16

    def _verify_request(self, packet: ChapPacket, challenge: bytes) -> VerifyRequest:
        response = parse_mschap_v2_response(packet.value)
        data = {
            "authenticator_challenge": challenge,
            "peer_challenge": response.peer_challenge,
            "nt_response": response.nt_response,
            "flags": response.flags,
        }
        return VerifyRequest(self.method, self._username(packet), data)

    def _success_problem(self, result: VerifyResult) -> str | None:
        if not result.authenticator_response:
            return "no authenticator response from the verifier"
        return super()._success_problem(result)

    def _success_message(self, result: VerifyResult) -> bytes:
        text = result.message or "Access granted"
        return f"{result.authenticator_response} M={text}".encode()

    def _failure_message(self, result: VerifyResult) -> bytes:
        challenge = self.random_bytes(16).hex().upper()
        return _ms_failure(result, f"E=691 R=0 C={challenge} V=3 M=Authentication failed")


ChapAuthenticator = ChapMd5Authenticator | MsChapV1Authenticator | MsChapV2Authenticator
