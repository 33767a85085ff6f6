"""Parse and build TACACS+ authentication packets: RFC 8907 sections 4 and 5.

Every packet is the 12-byte clear header of RFC 8907 section 4.1 followed by a body of
``length`` bytes, obfuscated with an MD5 pseudo-pad (section 4.5):

     major | minor |  type  | seq_no |  flags  |  session_id (4)  |  length (4)

Only what an authenticating NAS needs is here: the header, the obfuscation, the
authentication START (section 5.1), REPLY (section 5.2) and CONTINUE (section 5.3) bodies.
Parsing raises nothing but :class:`fixup.errors.BadInput` subclasses for any byte input.  A
body obfuscated with another key than ours de-obfuscates to noise whose lengths do not add up
(section 4.5): the error then says "bad key?".
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import IntEnum
from struct import Struct

from fixup.errors import BadInput, BadLength, BadValue, Truncated

HEADER_LENGTH = 12
MAJOR_VERSION = 0xC  # RFC 8907 section 4.1: TAC_PLUS_MAJOR_VER
MINOR_DEFAULT = 0x0  # TAC_PLUS_MINOR_VER_DEFAULT
MINOR_ONE = 0x1  # TAC_PLUS_MINOR_VER_ONE: PAP, CHAP and MS-CHAP logins (section 5.4.1)

TYPE_AUTHEN = 0x01  # RFC 8907 section 4.1: TAC_PLUS_AUTHEN
TYPE_AUTHOR = 0x02
TYPE_ACCT = 0x03
PACKET_TYPES = (TYPE_AUTHEN, TYPE_AUTHOR, TYPE_ACCT)

FLAG_UNENCRYPTED = 0x01  # RFC 8907 section 4.1: TAC_PLUS_UNENCRYPTED_FLAG
FLAG_SINGLE_CONNECT = 0x04  # TAC_PLUS_SINGLE_CONNECT_FLAG (section 4.3)

ACTION_LOGIN = 0x01  # RFC 8907 section 5.1: TAC_PLUS_AUTHEN_LOGIN
ACTION_CHPASS = 0x02
ACTION_SENDAUTH = 0x04

PRIV_LVL_MIN = 0x00  # RFC 8907 section 5.1 / 9
PRIV_LVL_USER = 0x01
PRIV_LVL_MAX = 0x0F

AUTHEN_TYPE_ASCII = 0x01  # RFC 8907 section 5.1: authen_type
AUTHEN_TYPE_PAP = 0x02
AUTHEN_TYPE_CHAP = 0x03
AUTHEN_TYPE_MSCHAP = 0x05
AUTHEN_TYPE_MSCHAPV2 = 0x06

SERVICE_NONE = 0x00  # RFC 8907 section 5.1: authen_service
SERVICE_LOGIN = 0x01
SERVICE_ENABLE = 0x02
SERVICE_PPP = 0x03

REPLY_FLAG_NOECHO = 0x01  # RFC 8907 section 5.2
CONTINUE_FLAG_ABORT = 0x01  # RFC 8907 section 5.3

CHAP_RESPONSE_LENGTH = 16  # RFC 8907 section 5.4.2: the MD5 CHAP response is always 16 octets
# Larger than any body RFC 8907 sections 5 to 7 can describe (the largest, an authorization
# REPLY, is 6 + 255 + 2 * 65535 + 255 * 255 bytes): a bigger length is not TACACS+.
MAX_BODY_LENGTH = 0x40000


class Status(IntEnum):
    """RFC 8907 section 5.2: the status of an authentication REPLY."""

    PASS = 0x01
    FAIL = 0x02
    GETDATA = 0x03
    GETUSER = 0x04
    GETPASS = 0x05
    RESTART = 0x06
    ERROR = 0x07
    FOLLOW = 0x21


class BadTacacs(BadInput):
    """A TACACS+ packet that does not parse (RFC 8907 sections 4 and 5)."""

    reason = "bad-tacacs"


_HEADER = Struct(">BBBBII")
_START = Struct(">BBBBBBBB")
_REPLY = Struct(">BBHH")
_CONTINUE = Struct(">HHB")
_SESSION_ID = Struct(">I")


@dataclass(frozen=True, slots=True)
class TacacsHeader:
    """RFC 8907 section 4.1.  ``length``: of the body, header excluded; :func:`build_packet`
    fills it in.  ``flags`` as received; :func:`build_packet` sets UNENCRYPTED itself."""

    packet_type: int
    seq_no: int
    session_id: int
    minor_version: int = MINOR_DEFAULT
    flags: int = 0
    length: int = 0

    @property
    def version(self) -> int:
        """The version byte: major in the high nibble, minor in the low one."""
        return MAJOR_VERSION << 4 | self.minor_version


@dataclass(frozen=True, slots=True)
class AuthenStart:
    """RFC 8907 section 5.1.  ``user``, ``port``, ``rem_addr`` and ``data`` are at most 255
    bytes each."""

    action: int
    priv_lvl: int
    authen_type: int
    service: int
    user: bytes = b""
    port: bytes = b""
    rem_addr: bytes = b""
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class AuthenReply:
    """RFC 8907 section 5.2.  ``server_msg`` is for the user, ``data`` for the client."""

    status: Status
    flags: int = 0
    server_msg: bytes = b""
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class AuthenContinue:
    """RFC 8907 section 5.3.  ``flags``: CONTINUE_FLAG_ABORT ends the session."""

    user_msg: bytes = b""
    data: bytes = b""
    flags: int = 0


# -- header and obfuscation ------------------------------------------------------------------


def parse_header(data: bytes | bytearray | memoryview) -> TacacsHeader:
    """The 12-byte header at the start of ``data`` (RFC 8907 section 4.1).

    Truncated when fewer than 12 bytes; BadTacacs when the major version is not 0xC, the
    minor version not 0 or 1, the type not authentication/authorization/accounting, seq_no 0
    (the first packet of a session is 1) or the length beyond any TACACS+ body."""
    if len(data) < HEADER_LENGTH:
        raise Truncated(f"{len(data)} of {HEADER_LENGTH} header bytes", where="TACACS+ header")
    version, packet_type, seq_no, flags, session_id, length = _HEADER.unpack_from(data)
    major, minor = version >> 4, version & 0x0F
    if major != MAJOR_VERSION:
        raise BadTacacs(f"major version 0x{major:x}, not TACACS+ (0xc)", where="TACACS+ header", offset=0)
    if minor not in (MINOR_DEFAULT, MINOR_ONE):
        raise BadTacacs(f"minor version {minor}, expected 0 or 1", where="TACACS+ header", offset=0)
    if packet_type not in PACKET_TYPES:
        raise BadTacacs(f"packet type {packet_type}", where="TACACS+ header", offset=1)
    if seq_no == 0:
        raise BadTacacs("seq_no 0 (sessions start at 1)", where="TACACS+ header", offset=2)
    if length > MAX_BODY_LENGTH:
        raise BadTacacs(f"body length {length} is beyond any TACACS+ packet", where="TACACS+ header", offset=8)
    return TacacsHeader(packet_type, seq_no, session_id, minor, flags, length)


def frame_length(buffer: bytes | bytearray | memoryview) -> int | None:
    """For stream reassembly: the size of the packet ``buffer`` starts with (header plus
    body), or None while fewer than 12 bytes are there.  Raises as :func:`parse_header`."""
    if len(buffer) < HEADER_LENGTH:
        return None
    return HEADER_LENGTH + parse_header(buffer).length


def pseudo_pad(header: TacacsHeader, key: bytes, length: int) -> bytes:
    """RFC 8907 section 4.5: MD5_1 = MD5(session_id, key, version, seq_no), then
    MD5_n = MD5(session_id, key, version, seq_no, MD5_n-1), concatenated and cut to
    ``length`` bytes."""
    seed = _SESSION_ID.pack(header.session_id) + key + bytes((header.version, header.seq_no))
    pad = bytearray()
    previous = b""
    while len(pad) < length:
        previous = hashlib.md5(seed + previous).digest()
        pad += previous
    return bytes(pad[:length])


def obfuscate(header: TacacsHeader, key: bytes, body: bytes | bytearray | memoryview) -> bytes:
    """``body`` XOR the pseudo-pad (RFC 8907 section 4.5); its own inverse."""
    pad = pseudo_pad(header, key, len(body))
    return (int.from_bytes(body, "big") ^ int.from_bytes(pad, "big")).to_bytes(len(body), "big")


def build_packet(header: TacacsHeader, body: bytes, key: bytes) -> bytes:
    """Header plus ``body``, obfuscated with ``key`` (RFC 8907 section 4.5).  The header's
    length is set to ``len(body)``; UNENCRYPTED is set when ``key`` is empty, cleared
    otherwise."""
    _check_range("seq_no", header.seq_no, 1, 0xFF)
    _check_range("session_id", header.session_id, 0, 0xFFFFFFFF)
    _check_range("packet_type", header.packet_type, 0, 0xFF)
    _check_range("minor_version", header.minor_version, 0, 0x0F)
    _check_range("flags", header.flags, 0, 0xFF)
    if len(body) > MAX_BODY_LENGTH:
        raise BadValue(f"body of {len(body)} bytes", where="TACACS+ header")
    flags = header.flags | FLAG_UNENCRYPTED if not key else header.flags & ~FLAG_UNENCRYPTED
    wire_body = obfuscate(header, key, body) if key else bytes(body)
    return _HEADER.pack(header.version, header.packet_type, header.seq_no, flags, header.session_id,
                        len(body)) + wire_body


def parse_packet(packet: bytes | bytearray | memoryview, key: bytes) -> tuple[TacacsHeader, bytes]:
    """One whole packet (exactly header plus body) -> the header and the clear body.

    Truncated when the body is shorter than the header says, BadLength when longer;
    BadTacacs when the UNENCRYPTED flag does not match whether we have a key (section 4.5)."""
    header = parse_header(packet)
    total = HEADER_LENGTH + header.length
    if len(packet) < total:
        raise Truncated(f"{len(packet) - HEADER_LENGTH} of {header.length} body bytes", where="TACACS+ packet",
                        offset=HEADER_LENGTH)
    if len(packet) > total:
        raise BadLength(f"{len(packet) - total} bytes after the body", where="TACACS+ packet", offset=total)
    body = bytes(packet[HEADER_LENGTH:total])
    clear = bool(header.flags & FLAG_UNENCRYPTED)
    if clear and key:
        raise BadTacacs("body not obfuscated although a key is configured", where="TACACS+ header", offset=3)
    if not clear and not key:
        raise BadTacacs("body obfuscated but no key is configured", where="TACACS+ header", offset=3)
    return header, body if clear else obfuscate(header, key, body)


# -- authentication bodies --------------------------------------------------------------------


def build_start(start: AuthenStart) -> bytes:
    """RFC 8907 section 5.1: eight one-byte fields, then user, port, rem_addr, data."""
    for name in ("action", "priv_lvl", "authen_type", "service"):
        _check_range(name, getattr(start, name), 0, 0xFF)
    fields = (start.user, start.port, start.rem_addr, start.data)
    for name, value in zip(("user", "port", "rem_addr", "data"), fields):
        if len(value) > 0xFF:
            raise BadValue(f"{name} is {len(value)} bytes, at most 255", where="TACACS+ START")
    head = _START.pack(start.action, start.priv_lvl, start.authen_type, start.service, *map(len, fields))
    return head + b"".join(fields)


def parse_start(body: bytes | bytearray | memoryview) -> AuthenStart:
    """RFC 8907 section 5.1; the four lengths must add up to the body ("bad key?")."""
    where = "TACACS+ START"
    _need(body, _START.size, where)
    action, priv_lvl, authen_type, service, *lengths = _START.unpack_from(body)
    _check_sum(body, _START.size, lengths, where)
    user, port, rem_addr, data = _split(body, _START.size, lengths)
    return AuthenStart(action, priv_lvl, authen_type, service, user, port, rem_addr, data)


def build_reply(reply: AuthenReply) -> bytes:
    """RFC 8907 section 5.2: status, flags, server_msg length, data length, then both."""
    _check_range("flags", reply.flags, 0, 0xFF)
    _check_fields(((reply.server_msg, "server_msg"), (reply.data, "data")), "TACACS+ REPLY")
    head = _REPLY.pack(int(reply.status), reply.flags, len(reply.server_msg), len(reply.data))
    return head + reply.server_msg + reply.data


def parse_reply(body: bytes | bytearray | memoryview) -> AuthenReply:
    """RFC 8907 section 5.2; lengths that do not add up or an unknown status: "bad key?"."""
    where = "TACACS+ REPLY"
    _need(body, _REPLY.size, where)
    status, flags, msg_length, data_length = _REPLY.unpack_from(body)
    _check_sum(body, _REPLY.size, (msg_length, data_length), where)
    if status not in Status._value2member_map_:
        raise BadTacacs(f"unknown status 0x{status:02x} (bad key?)", where=where, offset=0)
    server_msg, data = _split(body, _REPLY.size, (msg_length, data_length))
    return AuthenReply(Status(status), flags, server_msg, data)


def build_continue(cont: AuthenContinue) -> bytes:
    """RFC 8907 section 5.3: user_msg length, data length, flags, then both."""
    _check_range("flags", cont.flags, 0, 0xFF)
    _check_fields(((cont.user_msg, "user_msg"), (cont.data, "data")), "TACACS+ CONTINUE")
    return _CONTINUE.pack(len(cont.user_msg), len(cont.data), cont.flags) + cont.user_msg + cont.data


def parse_continue(body: bytes | bytearray | memoryview) -> AuthenContinue:
    """RFC 8907 section 5.3; the lengths must add up to the body ("bad key?")."""
    where = "TACACS+ CONTINUE"
    _need(body, _CONTINUE.size, where)
    msg_length, data_length, flags = _CONTINUE.unpack_from(body)
    _check_sum(body, _CONTINUE.size, (msg_length, data_length), where)
    user_msg, data = _split(body, _CONTINUE.size, (msg_length, data_length))
    return AuthenContinue(user_msg, data, flags)


def chap_data(identifier: int, challenge: bytes, response: bytes) -> bytes:
    """RFC 8907 section 5.4.2, CHAP login: the START data is the PPP Identifier (1 octet),
    the challenge and the 16-octet response (RFC 1994 section 4.1)."""
    _check_range("identifier", identifier, 0, 0xFF)
    if len(response) != CHAP_RESPONSE_LENGTH:
        raise BadValue(f"CHAP response of {len(response)} bytes, expected 16", where="TACACS+ START")
    return bytes((identifier,)) + challenge + response


# -- helpers ----------------------------------------------------------------------------------


def _need(body: bytes | bytearray | memoryview, size: int, where: str) -> None:
    if len(body) < size:
        raise Truncated(f"{len(body)} of {size} fixed bytes (bad key?)", where=where)


def _check_sum(body: bytes | bytearray | memoryview, fixed: int, lengths: tuple[int, ...] | list[int],
               where: str) -> None:
    """RFC 8907 section 4.5: after de-obfuscation the field lengths must add up to the
    body length; with a wrong key they almost never do."""
    expected = fixed + sum(lengths)
    if expected != len(body):
        raise BadTacacs(f"field lengths add up to {expected} bytes, body is {len(body)} (bad key?)",
                        where=where)


def _split(body: bytes | bytearray | memoryview, offset: int, lengths: tuple[int, ...] | list[int]) -> list[bytes]:
    parts = []
    for length in lengths:
        parts.append(bytes(body[offset:offset + length]))
        offset += length
    return parts


def _check_fields(fields: tuple[tuple[bytes, str], ...], where: str) -> None:
    for value, name in fields:
        if len(value) > 0xFFFF:
            raise BadValue(f"{name} is {len(value)} bytes, at most 65535", where=where)


def _check_range(name: str, value: object, minimum: int, maximum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise BadValue(f"{name} = {value!r} is not an integer in {minimum}..{maximum}", where="TACACS+")
