"""Parse and build PPTP control messages: RFC 2637 section 2 (control connection protocol).

Every control message starts with the 12-byte header of RFC 2637 section 1.4 / 2:

    Length (2) | PPTP Message Type (2) | Magic Cookie (4) | Control Message Type (2) | Reserved0 (2)

and has a fixed total length per Control Message Type (``MESSAGE_LENGTHS``).  Parsing never
raises anything but :class:`fixup.errors.BadInput` subclasses for any byte input: lengths are
checked before every unpack.  The message dataclasses live in :mod:`fixup.wire.pptp_messages`
and are re-exported here.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from enum import Enum
from struct import Struct, calcsize
from types import MappingProxyType
from typing import Mapping

from fixup.errors import BadCookie, BadLength, BadMessageType, BadReserved, BadValue, Truncated
from fixup.wire.pptp_messages import (
    FORMAT_KEY,
    LONG_NAMES,
    MESSAGE_CLASSES,
    PROTOCOL_VERSION,
    BearerCapability,
    BearerType,
    CallClearRequest,
    CallDisconnectNotify,
    DisconnectResult,
    EchoReply,
    EchoRequest,
    EchoResult,
    FramingCapability,
    FramingType,
    IncomingCallConnected,
    IncomingCallReply,
    IncomingCallRequest,
    IncomingCallResult,
    Message,
    MessageType,
    OutgoingCallReply,
    OutgoingCallRequest,
    OutgoingCallResult,
    SetLinkInfo,
    StartControlConnectionReply,
    StartControlConnectionRequest,
    StartControlResult,
    StopControlConnectionReply,
    StopControlConnectionRequest,
    StopControlResult,
    StopReason,
    WanErrorNotify,
)

__all__ = [
    "MAGIC_COOKIE", "CONTROL_MESSAGE", "PREFIX_LENGTH", "HEADER_LENGTH", "PROTOCOL_VERSION",
    "MessageType", "LONG_NAMES", "MESSAGE_LENGTHS", "MESSAGE_CLASSES", "CallIdRole", "CALL_ID_FIELDS",
    "Header", "parse_header", "parse_message", "build_message", "Message",
    "StartControlConnectionRequest", "StartControlConnectionReply", "StopControlConnectionRequest",
    "StopControlConnectionReply", "EchoRequest", "EchoReply", "OutgoingCallRequest", "OutgoingCallReply",
    "IncomingCallRequest", "IncomingCallReply", "IncomingCallConnected", "CallClearRequest",
    "CallDisconnectNotify", "WanErrorNotify", "SetLinkInfo",
    "StartControlResult", "StopReason", "StopControlResult", "EchoResult", "OutgoingCallResult",
    "IncomingCallResult", "DisconnectResult", "FramingCapability", "BearerCapability", "FramingType",
    "BearerType",
]

MAGIC_COOKIE = 0x1A2B3C4D  # RFC 2637 section 1.4
CONTROL_MESSAGE = 1  # RFC 2637 section 1.4: PPTP Message Type 1; 2 (Management) is not handled
PREFIX_LENGTH = 10  # Length, PPTP Message Type, Magic Cookie, Control Message Type
HEADER_LENGTH = 12  # ... plus Reserved0
HEADER_WHERE = "PPTP header"

_HEADER_FORMAT = ">HHIHH"
_PREFIX = Struct(_HEADER_FORMAT[:-1])

MESSAGE_LENGTHS: Mapping[MessageType, int] = MappingProxyType({
    MessageType.SCCRQ: 156,
    MessageType.SCCRP: 156,
    MessageType.STOPCCRQ: 16,
    MessageType.STOPCCRP: 16,
    MessageType.ECHORQ: 16,
    MessageType.ECHORP: 20,
    MessageType.OCRQ: 168,
    MessageType.OCRP: 32,
    MessageType.ICRQ: 220,
    MessageType.ICRP: 24,
    MessageType.ICCN: 28,
    MessageType.CCRQ: 16,
    MessageType.CDN: 148,
    MessageType.WEN: 40,
    MessageType.SLI: 24,
})


class CallIdRole(Enum):
    """Whose Call ID a field holds, seen from the message's sender (RFC 2637 sections 2.7 - 2.15).

    ``OWN``: the "Call ID" the sender assigned; ``PEER``: the "Peer's Call ID", assigned by the
    receiver.  GRE from the sender toward the receiver carries the receiver's (PEER) Call ID
    (RFC 2637 section 4.1)."""

    OWN = "own"
    PEER = "peer"


CALL_ID_FIELDS: Mapping[MessageType, tuple[tuple[int, CallIdRole], ...]] = MappingProxyType({
    **{message_type: () for message_type in MessageType},
    MessageType.OCRQ: ((12, CallIdRole.OWN),),
    MessageType.OCRP: ((12, CallIdRole.OWN), (14, CallIdRole.PEER)),
    MessageType.ICRQ: ((12, CallIdRole.OWN),),
    MessageType.ICRP: ((12, CallIdRole.OWN), (14, CallIdRole.PEER)),
    MessageType.ICCN: ((12, CallIdRole.PEER),),
    MessageType.CCRQ: ((12, CallIdRole.OWN),),
    MessageType.CDN: ((12, CallIdRole.OWN),),
    MessageType.WEN: ((12, CallIdRole.PEER),),
    MessageType.SLI: ((12, CallIdRole.PEER),),
})


@dataclass(frozen=True, slots=True)
class Header:
    """The parts of the RFC 2637 section 1.4 header that decide how to read the rest."""

    length: int
    message_type: MessageType


# --- header -------------------------------------------------------------------------------


def parse_header(data: bytes | bytearray | memoryview, offset: int = 0) -> Header:
    """Read and check the first ``PREFIX_LENGTH`` bytes of a control message at ``offset``.

    RFC 2637 section 1.4: PPTP Message Type must be 1 (Control Message), the Magic Cookie
    0x1A2B3C4D, the Control Message Type one of sections 2.1 - 2.15, and Length the fixed
    length of that message.  Error offsets are positions in ``data``.  Reserved0 is not
    looked at (it may not have arrived yet); :func:`parse_message` checks it.
    """
    buf = _byte_view(data)
    if offset < 0:
        raise BadValue(f"negative offset {offset}", where=HEADER_WHERE)
    available = len(buf) - offset
    if available < PREFIX_LENGTH:
        raise Truncated(f"{max(available, 0)} of {PREFIX_LENGTH} header bytes",
                        where=HEADER_WHERE, offset=offset)
    length, pptp_type, cookie, control_type = _PREFIX.unpack_from(buf, offset)
    if pptp_type != CONTROL_MESSAGE:
        raise BadMessageType(f"PPTP Message Type {pptp_type}, only 1 (Control Message) is handled",
                             where=HEADER_WHERE, offset=offset + 2)
    if cookie != MAGIC_COOKIE:
        raise BadCookie(f"Magic Cookie 0x{cookie:08x}, expected 0x{MAGIC_COOKIE:08x}",
                        where=HEADER_WHERE, offset=offset + 4)
    try:
        message_type = MessageType(control_type)
    except ValueError:
        raise BadMessageType(f"unknown Control Message Type {control_type}",
                             where=HEADER_WHERE, offset=offset + 8) from None
    expected = MESSAGE_LENGTHS[message_type]
    if length != expected:
        raise BadLength(f"Length {length}, {message_type.rfc_section} requires {expected}",
                        where=message_type.long_name, offset=offset)
    return Header(length, message_type)


def _byte_view(data: bytes | bytearray | memoryview) -> bytes | bytearray | memoryview:
    """``data`` as something whose ``len`` counts bytes and that ``struct`` can read."""
    if isinstance(data, memoryview) and (data.itemsize != 1 or not data.c_contiguous or data.ndim != 1):
        return data.tobytes()
    return data


# --- per-message codecs -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Codec:
    """The compiled wire layout of one message class (header included)."""

    cls: type[Message]
    layout: Struct
    names: tuple[str, ...]
    formats: tuple[str, ...]
    offsets: tuple[int, ...]


def _compile(cls: type[Message]) -> _Codec:
    wire_fields = fields(cls)
    formats = tuple(f.metadata[FORMAT_KEY] for f in wire_fields)
    offsets = []
    position = HEADER_LENGTH
    for fmt in formats:
        offsets.append(position)
        position += calcsize(">" + fmt)
    layout = Struct(_HEADER_FORMAT + "".join(formats))
    if layout.size != MESSAGE_LENGTHS[cls.message_type]:
        raise AssertionError(f"{cls.__name__}: layout of {layout.size} bytes")
    return _Codec(cls, layout, tuple(f.name for f in wire_fields), formats, tuple(offsets))


_CODECS: Mapping[MessageType, _Codec] = MappingProxyType(
    {message_type: _compile(cls) for message_type, cls in MESSAGE_CLASSES.items()}
)
_CODEC_BY_CLASS: Mapping[type, _Codec] = MappingProxyType({codec.cls: codec for codec in _CODECS.values()})


def _is_reserved(name: str) -> bool:
    return name.startswith("reserved")


# --- parse --------------------------------------------------------------------------------


def parse_message(data: bytes | bytearray | memoryview, *, strict: bool = True) -> Message:
    """Parse one whole control message: ``data`` must be exactly Length bytes.

    RFC 2637 section 1.4: Reserved0 must be 0 (always checked).  With ``strict``, every other
    Reserved field must be 0 too (BadReserved); without it they are kept in the dataclass, so
    :func:`build_message` gives the same bytes back.  Text fields lose their trailing NULs.
    """
    buf = _byte_view(data)
    header = parse_header(buf)
    name = header.message_type.long_name
    if len(buf) < header.length:
        raise Truncated(f"{len(buf)} of {header.length} bytes", where=name, offset=len(buf))
    if len(buf) > header.length:
        raise BadLength(f"{len(buf) - header.length} bytes after the {header.length}-byte message",
                        where=name, offset=header.length)
    codec = _CODECS[header.message_type]
    values = codec.layout.unpack(buf)
    if values[4] != 0:
        raise BadReserved(f"Reserved0 is 0x{values[4]:04x}", where=name, offset=PREFIX_LENGTH)
    return _make_message(codec, values[5:], strict)


def _make_message(codec: _Codec, body: tuple[int | bytes, ...], strict: bool) -> Message:
    kwargs: dict[str, int | bytes] = {}
    for field_name, offset, value in zip(codec.names, codec.offsets, body):
        if isinstance(value, bytes):
            value = value.rstrip(b"\x00")
        elif strict and value != 0 and _is_reserved(field_name):
            raise BadReserved(f"{field_name} is {value}",
                              where=codec.cls.message_type.long_name, offset=offset)
        kwargs[field_name] = value
    return codec.cls(**kwargs)  # type: ignore[arg-type]


# --- build --------------------------------------------------------------------------------


def build_message(msg: Message) -> bytes:
    """The wire form of ``msg``: header with Length, Magic Cookie and Reserved0 = 0, then the
    fields in RFC 2637 section 2 order, text fields NUL-padded.  Values that do not fit their
    field raise BadValue."""
    codec = _CODEC_BY_CLASS.get(type(msg))
    if codec is None:
        raise BadValue(f"not a PPTP control message: {type(msg).__name__}", where="build_message")
    message_type = codec.cls.message_type
    values = [
        _checked(getattr(msg, field_name), fmt, field_name, message_type)
        for field_name, fmt in zip(codec.names, codec.formats)
    ]
    return codec.layout.pack(
        MESSAGE_LENGTHS[message_type], CONTROL_MESSAGE, MAGIC_COOKIE, message_type, 0, *values
    )


_INT_LIMITS = {"B": 0xFF, "H": 0xFFFF, "I": 0xFFFFFFFF}


def _checked(value: object, fmt: str, field_name: str, message_type: MessageType) -> int | bytes:
    """``value`` if it fits a field of struct format ``fmt``, else BadValue."""
    where = message_type.long_name
    if fmt in _INT_LIMITS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadValue(f"{field_name} must be an int, not {type(value).__name__}", where=where)
        if not 0 <= value <= _INT_LIMITS[fmt]:
            raise BadValue(f"{field_name} = {value} does not fit in {calcsize(fmt)} bytes", where=where)
        return value
    size = int(fmt[:-1])
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise BadValue(f"{field_name} must be bytes, not {type(value).__name__}", where=where)
    octets = bytes(value)
    if len(octets) > size:
        raise BadValue(f"{field_name} is {len(octets)} bytes, the field holds {size}", where=where)
    return octets
