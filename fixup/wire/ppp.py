"""Parse and build PPP frames, control packets and configuration options.

A PPP frame carried in enhanced GRE (RFC 2637 section 4) is the HDLC-like framing of RFC 1662
section 3 without flags, FCS or byte stuffing::

    | 0xFF Address | 0x03 Control | Protocol (1 or 2 bytes) | Information ... |

Address and Control may be omitted once Address-and-Control-Field-Compression is agreed
(RFC 1661 section 6.6), and the Protocol field shrinks to one byte once
Protocol-Field-Compression is agreed (RFC 1661 section 6.5).  The Information of LCP, IPCP and
CCP is a control packet (RFC 1661 section 5)::

    | Code | Identifier | Length (2 bytes) | Data ... |

and the Data of Configure-Request/Ack/Nak/Reject is a list of options (RFC 1661 section 6)::

    | Type | Length | Data ... |

Every parse error is a :class:`fixup.errors.BadPpp` (never IndexError or struct.error).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from fixup.errors import BadPpp

ADDRESS = 0xFF  # RFC 1662 section 3.1: All-Stations address
CONTROL = 0x03  # RFC 1662 section 3.1: Unnumbered Information
CONTROL_HEADER_LENGTH = 4  # Code, Identifier, Length
OPTION_HEADER_LENGTH = 2  # Type, Length
MAX_CONTROL_LENGTH = 0xFFFF


class Protocol(IntEnum):
    """PPP protocol numbers (RFC 1661 section 2; RFC 1700 "PPP DLL protocol numbers")."""

    IP = 0x0021
    IPV6 = 0x0057
    MPPE = 0x00FD  # compressed / encrypted datagram, RFC 1962 section 1, RFC 3078 section 3
    IPCP = 0x8021
    IPV6CP = 0x8057
    CCP = 0x80FD
    LCP = 0xC021
    PAP = 0xC023
    CHAP = 0xC223


class Code(IntEnum):
    """Control packet codes (RFC 1661 section 5; RFC 1570 section 2 for 12 and 13;
    RFC 1962 section 2.1 for the CCP Reset codes)."""

    CONFIGURE_REQUEST = 1
    CONFIGURE_ACK = 2
    CONFIGURE_NAK = 3
    CONFIGURE_REJECT = 4
    TERMINATE_REQUEST = 5
    TERMINATE_ACK = 6
    CODE_REJECT = 7
    PROTOCOL_REJECT = 8
    ECHO_REQUEST = 9
    ECHO_REPLY = 10
    DISCARD_REQUEST = 11
    IDENTIFICATION = 12
    TIME_REMAINING = 13
    RESET_REQUEST = 14
    RESET_ACK = 15


@dataclass(frozen=True, slots=True)
class ControlPacket:
    """One LCP / NCP packet (RFC 1661 section 5); ``data`` excludes the 4-byte header."""

    code: int
    identifier: int
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class Option:
    """One configuration option (RFC 1661 section 6); ``data`` excludes Type and Length."""

    type: int
    data: bytes = b""


def is_valid_protocol(protocol: int) -> bool:
    """RFC 1661 section 2: the low octet is odd and the high octet is even."""
    return 0 <= protocol <= 0xFFFF and protocol & 0x0001 == 1 and protocol & 0x0100 == 0


def parse_frame(data: bytes | bytearray | memoryview) -> tuple[int, bytes]:
    """Split a PPP frame into (protocol, information).

    Address/Control 0xFF 0x03 are skipped when present (RFC 1662 section 3.1, RFC 1661
    section 6.6); a first protocol byte that is odd is a compressed one-byte protocol
    (RFC 1661 section 6.5).  A leading 0xFF not followed by 0x03, a missing or malformed
    Protocol field raise BadPpp.
    """
    buf = bytes(data)
    position = 0
    if buf[:1] == bytes((ADDRESS,)):
        if buf[1:2] != bytes((CONTROL,)):
            raise BadPpp("address 0xff without control 0x03", where="PPP frame", offset=1)
        position = 2
    if position >= len(buf):
        raise BadPpp("no protocol field", where="PPP frame", offset=position)
    first = buf[position]
    if first & 1:
        return first, buf[position + 1:]
    if position + 2 > len(buf):
        raise BadPpp("truncated protocol field", where="PPP frame", offset=position)
    protocol = int.from_bytes(buf[position:position + 2], "big")
    if not is_valid_protocol(protocol):
        raise BadPpp(f"malformed protocol 0x{protocol:04x}", where="PPP frame", offset=position)
    return protocol, buf[position + 2:]


def build_frame(protocol: int, info: bytes, *, acfc: bool = False, pfc: bool = False) -> bytes:
    """Build a PPP frame; ``acfc``/``pfc`` omit Address/Control and shrink Protocol when the
    peer agreed to it.  LCP is never compressed (RFC 1661 sections 6.5 and 6.6)."""
    if not is_valid_protocol(protocol):
        raise ValueError(f"not a PPP protocol number: 0x{protocol:04x}")
    if protocol == Protocol.LCP:
        acfc = pfc = False
    head = b"" if acfc else bytes((ADDRESS, CONTROL))
    proto = bytes((protocol,)) if pfc and protocol < 0x100 else protocol.to_bytes(2, "big")
    return head + proto + bytes(info)


def parse_control(info: bytes | bytearray | memoryview) -> ControlPacket:
    """Parse a control packet (RFC 1661 section 5).

    The Length field is honoured: octets past Length are padding and ignored; a Length below
    4 or beyond the received octets raises BadPpp.
    """
    buf = bytes(info)
    if len(buf) < CONTROL_HEADER_LENGTH:
        raise BadPpp(f"{len(buf)} bytes, shorter than the 4-byte header", where="PPP control packet")
    length = int.from_bytes(buf[2:4], "big")
    if length < CONTROL_HEADER_LENGTH:
        raise BadPpp(f"Length {length} below 4", where="PPP control packet", offset=2)
    if length > len(buf):
        raise BadPpp(f"Length {length} beyond the {len(buf)} bytes received", where="PPP control packet", offset=2)
    return ControlPacket(buf[0], buf[1], buf[CONTROL_HEADER_LENGTH:length])


def build_control(packet: ControlPacket) -> bytes:
    """Encode a control packet, computing Length (RFC 1661 section 5)."""
    length = CONTROL_HEADER_LENGTH + len(packet.data)
    if length > MAX_CONTROL_LENGTH:
        raise ValueError(f"control packet of {length} bytes exceeds 65535")
    if not (0 <= packet.code <= 0xFF and 0 <= packet.identifier <= 0xFF):
        raise ValueError(f"code {packet.code} / identifier {packet.identifier} not an octet")
    return bytes((packet.code, packet.identifier)) + length.to_bytes(2, "big") + bytes(packet.data)


def parse_options(data: bytes | bytearray | memoryview) -> tuple[Option, ...]:
    """Parse the options of a Configure-* packet (RFC 1661 section 6): every option needs a
    Length of at least 2 that stays inside ``data``."""
    buf = bytes(data)
    options: list[Option] = []
    position = 0
    while position < len(buf):
        if position + OPTION_HEADER_LENGTH > len(buf):
            raise BadPpp("truncated option header", where="PPP options", offset=position)
        length = buf[position + 1]
        if length < OPTION_HEADER_LENGTH:
            raise BadPpp(f"option Length {length} below 2", where="PPP options", offset=position + 1)
        if position + length > len(buf):
            raise BadPpp(f"option Length {length} beyond the data", where="PPP options", offset=position + 1)
        options.append(Option(buf[position], buf[position + 2:position + length]))
        position += length
    return tuple(options)


def build_options(options: Iterable[Option]) -> bytes:
    """Encode options in order (RFC 1661 section 6)."""
    out = bytearray()
    for option in options:
        length = OPTION_HEADER_LENGTH + len(option.data)
        if length > 0xFF or not 0 <= option.type <= 0xFF:
            raise ValueError(f"option type {option.type} with {len(option.data)} data bytes does not fit")
        out += bytes((option.type, length)) + bytes(option.data)
    return bytes(out)
