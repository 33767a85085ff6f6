"""PAP, server side (RFC 1334 section 2): packet codec and the authenticator state machine.

Packets are PPP Information fields of protocol 0xC023 (RFC 1334 section 2.2): Code,
Identifier, Length, then for Authenticate-Request a Peer-ID and a Password, each preceded by
its length octet, and for Authenticate-Ack/Nak a Message preceded by its length octet.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from fixup.errors import BadAuth
from fixup.proto.auth.credentials import FAILED_MESSAGE, PAP, VerifyRequest, VerifyResult
from fixup.proto.auth.crypto import MppeKeys

PAP_PROTOCOL = 0xC023
AUTHENTICATE_REQUEST = 1
AUTHENTICATE_ACK = 2
AUTHENTICATE_NAK = 3


@dataclass(frozen=True, slots=True)
class PapPacket:
    """One PAP packet; ``peer_id``/``password`` for a request, ``message`` for Ack/Nak."""

    code: int
    identifier: int
    peer_id: bytes = b""
    password: bytes = b""
    message: bytes = b""


def _body(info: bytes) -> tuple[int, int, bytes]:
    """RFC 1334 section 2.2: Code, Identifier, Length; octets past Length are padding."""
    if len(info) < 4:
        raise BadAuth("shorter than the 4-octet header", where="PAP", offset=len(info))
    code, identifier, length = struct.unpack_from("!BBH", info)
    if length < 4 or length > len(info):
        raise BadAuth(f"Length {length} outside 4..{len(info)}", where="PAP", offset=2)
    return code, identifier, info[4:length]


def _counted(body: bytes, offset: int, what: str) -> tuple[bytes, int]:
    """One length-prefixed field (RFC 1334 sections 2.2.1, 2.2.2)."""
    if offset >= len(body):
        raise BadAuth(f"{what} length missing", where="PAP", offset=4 + offset)
    end = offset + 1 + body[offset]
    if end > len(body):
        raise BadAuth(f"{what} runs past Length", where="PAP", offset=4 + offset)
    return body[offset + 1:end], end


def parse_pap(info: bytes) -> PapPacket:
    """Parse a PAP packet; raises BadAuth on anything malformed or an unknown Code."""
    code, identifier, body = _body(info)
    if code == AUTHENTICATE_REQUEST:
        peer_id, offset = _counted(body, 0, "Peer-ID")
        password, _ = _counted(body, offset, "Password")
        return PapPacket(code, identifier, peer_id=peer_id, password=password)
    if code in (AUTHENTICATE_ACK, AUTHENTICATE_NAK):
        message, _ = _counted(body, 0, "Message") if body else (b"", 0)
        return PapPacket(code, identifier, message=message)
    raise BadAuth(f"unknown Code {code}", where="PAP", offset=0)


def _field(value: bytes, what: str) -> bytes:
    if len(value) > 255:
        raise ValueError(f"{what} longer than 255 octets")
    return bytes([len(value)]) + value


def build_pap_request(identifier: int, peer_id: bytes, password: bytes) -> bytes:
    """RFC 1334 section 2.2.1, Authenticate-Request (the peer's side; used by tests)."""
    body = _field(peer_id, "Peer-ID") + _field(password, "Password")
    return struct.pack("!BBH", AUTHENTICATE_REQUEST, identifier, 4 + len(body)) + body


def build_pap_reply(code: int, identifier: int, message: bytes = b"") -> bytes:
    """RFC 1334 section 2.2.2, Authenticate-Ack (code 2) or Authenticate-Nak (code 3)."""
    body = _field(message[:255], "Message")
    return struct.pack("!BBH", code, identifier, 4 + len(body)) + body


class PapAuthenticator:
    """The authenticator's half of RFC 1334 section 2.1.

    The peer sends Authenticate-Requests; each new one becomes a ``VerifyRequest``.  The answer
    (``complete``) is an Ack, or a Nak; after ``max_failures`` Naks, or ``timeout`` seconds
    without a request, the outcome is ``"failure"``.  A request repeated after the decision
    (because the reply was lost) gets the same answer again, with its own Identifier."""

    method = PAP

    def __init__(self, *, max_failures: int = 3, timeout: float = 30.0) -> None:
        self.max_failures = max_failures
        self.timeout = timeout
        self.outcome: str | None = None
        self.reason: str | None = None
        self.username: str | None = None
        self.keys: MppeKeys | None = None
        self.failures = 0
        self._deadline: float | None = None
        self._requests: list[VerifyRequest] = []
        self._pending_id: int | None = None
        self._last_reply: tuple[int, int, bytes] | None = None  # (code, identifier, message)

    @property
    def deadline(self) -> float | None:
        """When ``poll`` next has something to do, or None."""
        waiting = self.outcome is None and self._pending_id is None
        return self._deadline if waiting else None

    def start(self, now: float) -> list[bytes]:
        """PAP's authenticator sends nothing first (RFC 1334 section 2.1); start the clock."""
        self._deadline = now + self.timeout
        return []

    def poll(self, now: float) -> list[bytes]:
        """Give up when no request came in time."""
        if self.outcome is None and self._pending_id is None and self._deadline is not None:
            if now >= self._deadline:
                self._finish("failure", "no Authenticate-Request")
        return []

    def take_verify_requests(self) -> list[VerifyRequest]:
        requests, self._requests = self._requests, []
        return requests

    def receive(self, info: bytes, now: float) -> list[bytes]:
        """One PAP packet from the peer; only Authenticate-Requests matter to us."""
        packet = parse_pap(info)
        if packet.code != AUTHENTICATE_REQUEST:
            return []
        self._deadline = now + self.timeout
        if self.outcome is not None or self._is_repeat(packet.identifier):
            return self._answer_again(packet.identifier)
        if self._pending_id is not None:  # still verifying: answer the newest Identifier
            self._pending_id = packet.identifier
            return []
        self._pending_id = packet.identifier
        self.username = packet.peer_id.decode("utf-8", "surrogateescape")
        self._requests.append(VerifyRequest(PAP, self.username, {"password": packet.password}))
        return []

    def complete(self, result: VerifyResult) -> list[bytes]:
        """The verifier's answer to the pending request: Ack, or Nak (RFC 1334 2.2.2)."""
        if self._pending_id is None or self.outcome is not None:
            return []
        identifier, self._pending_id = self._pending_id, None
        if result.ok:
            self.keys = result.keys
            self._finish("success", None)
            return [self._reply(AUTHENTICATE_ACK, identifier, result.message.encode())]
        self.failures += 1
        if self.failures >= self.max_failures:
            self._finish("failure", result.message or FAILED_MESSAGE)
        message = (result.message or FAILED_MESSAGE).encode()
        return [self._reply(AUTHENTICATE_NAK, identifier, message)]

    def _is_repeat(self, identifier: int) -> bool:
        return self._last_reply is not None and self._last_reply[1] == identifier

    def _answer_again(self, identifier: int) -> list[bytes]:
        if self._last_reply is None:
            return []
        code, _, message = self._last_reply
        return [self._reply(code, identifier, message)]

    def _reply(self, code: int, identifier: int, message: bytes) -> bytes:
        self._last_reply = (code, identifier, message)
        return build_pap_reply(code, identifier, message)

    def _finish(self, outcome: str, reason: str | None) -> None:
        self.outcome = outcome
        self.reason = reason
