"""Parse and build the enhanced GRE header of RFC 2637 section 4.1.

The base GRE header is RFC 1701 / RFC 2784; PPTP uses version 1 with the Key field split
into Payload Length (high 16 bits) and Call ID (low 16 bits):

     0                   1                   2                   3
    |C|R|K|S|s|Recur|A| Flags | Ver |         Protocol Type (0x880B)  |
    |    Key (HW) Payload Length    |       Key (LW) Call ID          |
    |              Sequence Number (present if S is 1)                |
    |           Acknowledgment Number (present if A is 1)             |

C, R, s, Recur and Flags must be 0, K must be 1 and Ver must be 1.  Only the header is
parsed here; the PPP payload follows it and is checked with :func:`check_payload`.
"""
from __future__ import annotations

from dataclasses import dataclass
from struct import Struct

from fixup.errors import BadGre, BadLength, BadValue, NotPptpGre, Truncated

GRE_PROTOCOL_PPP = 0x880B  # RFC 2637 section 4.1: Protocol Type for PPP
GRE_VERSION = 1  # RFC 2637 section 4.1: enhanced GRE
CALL_ID_OFFSET = 6  # the 16-bit Call ID, low half of the Key
BASE_LENGTH = 8  # flags/version, protocol, payload length, call id
WHERE = "GRE header"

FLAG_C = 0x8000  # checksum present
FLAG_R = 0x4000  # routing present
FLAG_K = 0x2000  # key present
FLAG_S = 0x1000  # sequence number present
FLAG_STRICT_ROUTE = 0x0800  # "s"
RECUR_MASK = 0x0700
FLAG_A = 0x0080  # acknowledgment number present (RFC 2637 addition)
FLAGS_MASK = 0x0078
VERSION_MASK = 0x0007
MUST_BE_ZERO = FLAG_C | FLAG_R | FLAG_STRICT_ROUTE | RECUR_MASK | FLAGS_MASK

_BASE = Struct(">HHHH")
_U32 = Struct(">I")
_PREFIX_LENGTH = 4  # flags/version and protocol: enough to tell whether this is PPTP GRE


@dataclass(frozen=True, slots=True)
class GreHeader:
    """One RFC 2637 section 4.1 header.  ``sequence`` is present (S bit) on packets carrying
    a payload, ``acknowledgment`` (A bit) when the sender acknowledges received packets."""

    call_id: int
    payload_length: int
    sequence: int | None = None
    acknowledgment: int | None = None

    @property
    def header_length(self) -> int:
        """8 bytes, plus 4 for a Sequence Number, plus 4 for an Acknowledgment Number."""
        return BASE_LENGTH + 4 * (self.sequence is not None) + 4 * (self.acknowledgment is not None)


def parse_gre(data: bytes | bytearray | memoryview, offset: int = 0) -> GreHeader:
    """Parse the enhanced GRE header at ``offset`` (RFC 2637 section 4.1).

    NotPptpGre when Ver is not 1 or Protocol Type is not 0x880B; BadGre when C, R, s, Recur
    or Flags are set or K is clear; Truncated when ``data`` ends inside the header its flags
    announce.  The payload need not be present.  Error offsets are positions in ``data``.
    """
    buf = _byte_view(data)
    if offset < 0:
        raise BadValue(f"negative offset {offset}", where=WHERE)
    available = len(buf) - offset
    if available < _PREFIX_LENGTH:
        raise Truncated(f"{max(available, 0)} bytes, not a GRE header", where=WHERE, offset=offset)
    flags = int.from_bytes(buf[offset:offset + 2], "big")
    protocol = int.from_bytes(buf[offset + 2:offset + 4], "big")
    _check_flags(flags, protocol, offset)
    header_length = BASE_LENGTH + 4 * bool(flags & FLAG_S) + 4 * bool(flags & FLAG_A)
    if available < header_length:
        raise Truncated(f"{available} of {header_length} header bytes", where=WHERE, offset=offset)
    _, _, payload_length, call_id = _BASE.unpack_from(buf, offset)
    position = offset + BASE_LENGTH
    sequence = acknowledgment = None
    if flags & FLAG_S:
        (sequence,) = _U32.unpack_from(buf, position)
        position += 4
    if flags & FLAG_A:
        (acknowledgment,) = _U32.unpack_from(buf, position)
    return GreHeader(call_id, payload_length, sequence, acknowledgment)


def _byte_view(data: bytes | bytearray | memoryview) -> bytes | bytearray | memoryview:
    """``data`` as something whose ``len`` counts bytes and that ``struct`` can read."""
    if isinstance(data, memoryview) and (data.itemsize != 1 or not data.c_contiguous or data.ndim != 1):
        return data.tobytes()
    return data


def _check_flags(flags: int, protocol: int, offset: int) -> None:
    """RFC 2637 section 4.1: Ver 1 and Protocol Type 0x880B make it PPTP GRE; then the bits
    RFC 2637 requires to be 0 (C, R, s, Recur, Flags) and the one it requires to be 1 (K)."""
    version = flags & VERSION_MASK
    if version != GRE_VERSION:
        raise NotPptpGre(f"GRE version {version}, enhanced GRE is version 1", where=WHERE, offset=offset)
    if protocol != GRE_PROTOCOL_PPP:
        raise NotPptpGre(f"Protocol Type 0x{protocol:04x}, expected 0x{GRE_PROTOCOL_PPP:04x}",
                         where=WHERE, offset=offset + 2)
    if flags & MUST_BE_ZERO:
        raise BadGre(f"flag bits 0x{flags & MUST_BE_ZERO:04x} must be 0", where=WHERE, offset=offset)
    if not flags & FLAG_K:
        raise BadGre("Key present bit (K) is 0", where=WHERE, offset=offset)


def check_payload(header: GreHeader, available: int) -> None:
    """Raise BadLength when fewer than Payload Length bytes follow the header
    (RFC 2637 section 4.1: Payload Length is the size of the payload, header excluded).
    More bytes than announced (link padding) are accepted; the payload is the first
    ``payload_length`` of them."""
    if available < header.payload_length:
        raise BadLength(f"Payload Length {header.payload_length}, only {available} bytes follow",
                        where=WHERE, offset=4)


def build_gre(header: GreHeader, payload: bytes = b"") -> bytes:
    """The header (with K, S/A as present, Ver 1, Protocol 0x880B) followed by ``payload``.

    Payload Length comes from ``header``; a non-empty ``payload`` must be exactly that long
    (BadValue otherwise).  With no payload only the header is returned, e.g. to patch it in
    front of a payload that is already in place.
    """
    _check_range("call_id", header.call_id, 0xFFFF)
    _check_range("payload_length", header.payload_length, 0xFFFF)
    if payload and len(payload) != header.payload_length:
        raise BadValue(f"payload is {len(payload)} bytes, header says {header.payload_length}", where=WHERE)
    flags = FLAG_K | GRE_VERSION
    tail = b""
    if header.sequence is not None:
        _check_range("sequence", header.sequence, 0xFFFFFFFF)
        flags |= FLAG_S
        tail += _U32.pack(header.sequence)
    if header.acknowledgment is not None:
        _check_range("acknowledgment", header.acknowledgment, 0xFFFFFFFF)
        flags |= FLAG_A
        tail += _U32.pack(header.acknowledgment)
    return _BASE.pack(flags, GRE_PROTOCOL_PPP, header.payload_length, header.call_id) + tail + bytes(payload)


def _check_range(name: str, value: object, maximum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise BadValue(f"{name} = {value!r} is not an integer in 0..{maximum}", where=WHERE)



# For a per-packet path that must not build a GreHeader: the 32-bit word of flags/version and
# protocol, masked, must equal this for RFC 2637 enhanced GRE (S and A may be either).
FIXED_WORD_MASK = (MUST_BE_ZERO | FLAG_K | VERSION_MASK) << 16 | 0xFFFF
FIXED_WORD_VALUE = (FLAG_K | GRE_VERSION) << 16 | GRE_PROTOCOL_PPP
WORD_S, WORD_A = FLAG_S << 16, FLAG_A << 16
