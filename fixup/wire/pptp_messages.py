"""The fifteen PPTP control messages of RFC 2637 section 2, one frozen dataclass each.

Field names are the RFC 2637 field names in snake_case, in wire order after the 12-byte
header (RFC 2637 section 1.4).  Every field has a default, RFC-typical value, so
``OutgoingCallRequest(call_id=7)`` is a complete message.  Fixed-size text fields
(Host Name, Phone Number, Call Statistics ...) are ``bytes`` without their NUL padding.

The wire layout of each field (``B``/``H``/``I`` or ``<n>s``) is kept in the dataclass field
metadata; :mod:`fixup.wire.pptp` compiles it into one ``struct.Struct`` per message.
Integer result codes parse as plain ``int``; the IntEnums below compare equal to them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from typing import Any, ClassVar, Union

FORMAT_KEY = "pptp_format"
PROTOCOL_VERSION = 0x0100  # RFC 2637 section 2.1: version 1, revision 0


class MessageType(IntEnum):
    """RFC 2637 section 1.4 / 2: Control Message Type (bytes 9-10 of every control message)."""

    SCCRQ = 1
    SCCRP = 2
    STOPCCRQ = 3
    STOPCCRP = 4
    ECHORQ = 5
    ECHORP = 6
    OCRQ = 7
    OCRP = 8
    ICRQ = 9
    ICRP = 10
    ICCN = 11
    CCRQ = 12
    CDN = 13
    WEN = 14
    SLI = 15

    @property
    def long_name(self) -> str:
        """The RFC 2637 name, e.g. ``Outgoing-Call-Request``."""
        return LONG_NAMES[self]

    @property
    def rfc_section(self) -> str:
        """Where RFC 2637 defines this message (sections 2.1 .. 2.15 follow the type number)."""
        return f"RFC 2637 section 2.{self.value}"


LONG_NAMES: dict[MessageType, str] = {
    MessageType.SCCRQ: "Start-Control-Connection-Request",
    MessageType.SCCRP: "Start-Control-Connection-Reply",
    MessageType.STOPCCRQ: "Stop-Control-Connection-Request",
    MessageType.STOPCCRP: "Stop-Control-Connection-Reply",
    MessageType.ECHORQ: "Echo-Request",
    MessageType.ECHORP: "Echo-Reply",
    MessageType.OCRQ: "Outgoing-Call-Request",
    MessageType.OCRP: "Outgoing-Call-Reply",
    MessageType.ICRQ: "Incoming-Call-Request",
    MessageType.ICRP: "Incoming-Call-Reply",
    MessageType.ICCN: "Incoming-Call-Connected",
    MessageType.CCRQ: "Call-Clear-Request",
    MessageType.CDN: "Call-Disconnect-Notify",
    MessageType.WEN: "WAN-Error-Notify",
    MessageType.SLI: "Set-Link-Info",
}


# --- code points -------------------------------------------------------------------------


class StartControlResult(IntEnum):
    """RFC 2637 section 2.2: Start-Control-Connection-Reply Result Code."""

    SUCCESS = 1
    GENERAL_ERROR = 2
    ALREADY_EXISTS = 3
    NOT_AUTHORIZED = 4
    BAD_PROTOCOL_VERSION = 5


class StopReason(IntEnum):
    """RFC 2637 section 2.3: Stop-Control-Connection-Request Reason."""

    NONE = 1
    STOP_PROTOCOL = 2
    STOP_LOCAL_SHUTDOWN = 3


class StopControlResult(IntEnum):
    """RFC 2637 section 2.4: Stop-Control-Connection-Reply Result Code."""

    OK = 1
    GENERAL_ERROR = 2


class EchoResult(IntEnum):
    """RFC 2637 section 2.6: Echo-Reply Result Code."""

    OK = 1
    GENERAL_ERROR = 2


class OutgoingCallResult(IntEnum):
    """RFC 2637 section 2.8: Outgoing-Call-Reply Result Code."""

    CONNECTED = 1
    GENERAL_ERROR = 2
    NO_CARRIER = 3
    BUSY = 4
    NO_DIAL_TONE = 5
    TIME_OUT = 6
    DO_NOT_ACCEPT = 7


class IncomingCallResult(IntEnum):
    """RFC 2637 section 2.10: Incoming-Call-Reply Result Code."""

    CONNECT = 1
    GENERAL_ERROR = 2
    DO_NOT_ACCEPT = 3


class DisconnectResult(IntEnum):
    """RFC 2637 section 2.13: Call-Disconnect-Notify Result Code."""

    LOST_CARRIER = 1
    GENERAL_ERROR = 2
    ADMIN_SHUTDOWN = 3
    REQUEST = 4


class FramingCapability(IntFlag):
    """RFC 2637 section 2.1: Framing Capabilities bits."""

    ASYNC = 1
    SYNC = 2


class BearerCapability(IntFlag):
    """RFC 2637 section 2.1: Bearer Capabilities bits."""

    ANALOG = 1
    DIGITAL = 2


class FramingType(IntEnum):
    """RFC 2637 sections 2.7 / 2.11: Framing Type."""

    ASYNC = 1
    SYNC = 2
    EITHER = 3


class BearerType(IntEnum):
    """RFC 2637 sections 2.7 / 2.9: Bearer Type."""

    ANALOG = 1
    DIGITAL = 2
    EITHER = 3


# --- field declarations ------------------------------------------------------------------


def _wire(default: Any, fmt: str) -> Any:
    return field(default=default, metadata={FORMAT_KEY: fmt})


def u8(default: int = 0) -> Any:
    """An 8-bit unsigned field."""
    return _wire(default, "B")


def u16(default: int = 0) -> Any:
    """A 16-bit unsigned field, network byte order."""
    return _wire(default, "H")


def u32(default: int = 0) -> Any:
    """A 32-bit unsigned field, network byte order."""
    return _wire(default, "I")


def text(size: int) -> Any:
    """A fixed-size, NUL-padded octet string field (RFC 2637 section 2.1 "Host Name" style)."""
    return _wire(b"", f"{size}s")


class _MessageBase:
    """The base of every control message: its type (the dataclasses carry the fields; :mod:`fixup.wire.pptp`
    builds and parses them)."""

    __slots__ = ()
    message_type: ClassVar[MessageType]


# --- control connection management (RFC 2637 sections 2.1 - 2.6) --------------------------


@dataclass(frozen=True, slots=True)
class StartControlConnectionRequest(_MessageBase):
    """RFC 2637 section 2.1 (SCCRQ), 156 bytes."""

    message_type: ClassVar[MessageType] = MessageType.SCCRQ
    protocol_version: int = u16(PROTOCOL_VERSION)
    reserved1: int = u16()
    framing_capabilities: int = u32(FramingCapability.ASYNC)
    bearer_capabilities: int = u32(BearerCapability.ANALOG)
    maximum_channels: int = u16()
    firmware_revision: int = u16()
    host_name: bytes = text(64)
    vendor_string: bytes = text(64)


@dataclass(frozen=True, slots=True)
class StartControlConnectionReply(_MessageBase):
    """RFC 2637 section 2.2 (SCCRP), 156 bytes."""

    message_type: ClassVar[MessageType] = MessageType.SCCRP
    protocol_version: int = u16(PROTOCOL_VERSION)
    result_code: int = u8(StartControlResult.SUCCESS)
    error_code: int = u8()
    framing_capabilities: int = u32(FramingCapability.ASYNC | FramingCapability.SYNC)
    bearer_capabilities: int = u32(BearerCapability.ANALOG | BearerCapability.DIGITAL)
    maximum_channels: int = u16()
    firmware_revision: int = u16()
    host_name: bytes = text(64)
    vendor_string: bytes = text(64)


@dataclass(frozen=True, slots=True)
class StopControlConnectionRequest(_MessageBase):
    """RFC 2637 section 2.3 (StopCCRQ), 16 bytes."""

    message_type: ClassVar[MessageType] = MessageType.STOPCCRQ
    reason: int = u8(StopReason.NONE)
    reserved1: int = u8()
    reserved2: int = u16()


@dataclass(frozen=True, slots=True)
class StopControlConnectionReply(_MessageBase):
    """RFC 2637 section 2.4 (StopCCRP), 16 bytes."""

    message_type: ClassVar[MessageType] = MessageType.STOPCCRP
    result_code: int = u8(StopControlResult.OK)
    error_code: int = u8()
    reserved1: int = u16()


@dataclass(frozen=True, slots=True)
class EchoRequest(_MessageBase):
    """RFC 2637 section 2.5 (Echo-Request), 16 bytes."""

    message_type: ClassVar[MessageType] = MessageType.ECHORQ
    identifier: int = u32()


@dataclass(frozen=True, slots=True)
class EchoReply(_MessageBase):
    """RFC 2637 section 2.6 (Echo-Reply), 20 bytes."""

    message_type: ClassVar[MessageType] = MessageType.ECHORP
    identifier: int = u32()
    result_code: int = u8(EchoResult.OK)
    error_code: int = u8()
    reserved1: int = u16()


# --- call management (RFC 2637 sections 2.7 - 2.13) ---------------------------------------


@dataclass(frozen=True, slots=True)
class OutgoingCallRequest(_MessageBase):
    """RFC 2637 section 2.7 (OCRQ), 168 bytes; ``call_id`` is assigned by the PNS (sender)."""

    message_type: ClassVar[MessageType] = MessageType.OCRQ
    call_id: int = u16()
    call_serial_number: int = u16()
    minimum_bps: int = u32(300)
    maximum_bps: int = u32(100_000_000)
    bearer_type: int = u32(BearerType.EITHER)
    framing_type: int = u32(FramingType.EITHER)
    packet_recv_window_size: int = u16(64)
    packet_processing_delay: int = u16()
    phone_number_length: int = u16()
    reserved1: int = u16()
    phone_number: bytes = text(64)
    subaddress: bytes = text(64)


@dataclass(frozen=True, slots=True)
class OutgoingCallReply(_MessageBase):
    """RFC 2637 section 2.8 (OCRP), 32 bytes; ``call_id`` is the PAC's, ``peer_call_id`` the PNS's."""

    message_type: ClassVar[MessageType] = MessageType.OCRP
    call_id: int = u16()
    peer_call_id: int = u16()
    result_code: int = u8(OutgoingCallResult.CONNECTED)
    error_code: int = u8()
    cause_code: int = u16()
    connect_speed: int = u32(100_000_000)
    packet_recv_window_size: int = u16(64)
    packet_processing_delay: int = u16()
    physical_channel_id: int = u32()


@dataclass(frozen=True, slots=True)
class IncomingCallRequest(_MessageBase):
    """RFC 2637 section 2.9 (ICRQ), 220 bytes; ``call_id`` is assigned by the PAC (sender)."""

    message_type: ClassVar[MessageType] = MessageType.ICRQ
    call_id: int = u16()
    call_serial_number: int = u16()
    call_bearer_type: int = u32(BearerType.ANALOG)
    physical_channel_id: int = u32()
    dialed_number_length: int = u16()
    dialing_number_length: int = u16()
    dialed_number: bytes = text(64)
    dialing_number: bytes = text(64)
    subaddress: bytes = text(64)


@dataclass(frozen=True, slots=True)
class IncomingCallReply(_MessageBase):
    """RFC 2637 section 2.10 (ICRP), 24 bytes; ``call_id`` is the PNS's, ``peer_call_id`` the PAC's."""

    message_type: ClassVar[MessageType] = MessageType.ICRP
    call_id: int = u16()
    peer_call_id: int = u16()
    result_code: int = u8(IncomingCallResult.CONNECT)
    error_code: int = u8()
    packet_recv_window_size: int = u16(64)
    packet_transmit_delay: int = u16()
    reserved1: int = u16()


@dataclass(frozen=True, slots=True)
class IncomingCallConnected(_MessageBase):
    """RFC 2637 section 2.11 (ICCN), 28 bytes; ``peer_call_id`` is the PNS's Call ID."""

    message_type: ClassVar[MessageType] = MessageType.ICCN
    peer_call_id: int = u16()
    reserved1: int = u16()
    connect_speed: int = u32(100_000_000)
    packet_recv_window_size: int = u16(64)
    packet_transmit_delay: int = u16()
    framing_type: int = u32(FramingType.ASYNC)


@dataclass(frozen=True, slots=True)
class CallClearRequest(_MessageBase):
    """RFC 2637 section 2.12 (CCRQ), 16 bytes; ``call_id`` is the PNS's (sender's) Call ID."""

    message_type: ClassVar[MessageType] = MessageType.CCRQ
    call_id: int = u16()
    reserved1: int = u16()


@dataclass(frozen=True, slots=True)
class CallDisconnectNotify(_MessageBase):
    """RFC 2637 section 2.13 (CDN), 148 bytes; ``call_id`` is the PAC's (sender's) Call ID."""

    message_type: ClassVar[MessageType] = MessageType.CDN
    call_id: int = u16()
    result_code: int = u8(DisconnectResult.REQUEST)
    error_code: int = u8()
    cause_code: int = u16()
    reserved1: int = u16()
    call_statistics: bytes = text(128)


# --- error reporting and PPP session control (RFC 2637 sections 2.14 - 2.15) --------------


@dataclass(frozen=True, slots=True)
class WanErrorNotify(_MessageBase):
    """RFC 2637 section 2.14 (WEN), 40 bytes; ``peer_call_id`` is the PNS's Call ID."""

    message_type: ClassVar[MessageType] = MessageType.WEN
    peer_call_id: int = u16()
    reserved1: int = u16()
    crc_errors: int = u32()
    framing_errors: int = u32()
    hardware_overruns: int = u32()
    buffer_overruns: int = u32()
    timeout_errors: int = u32()
    alignment_errors: int = u32()


@dataclass(frozen=True, slots=True)
class SetLinkInfo(_MessageBase):
    """RFC 2637 section 2.15 (SLI), 24 bytes; ``peer_call_id`` is the receiver's Call ID.
    The ACCMs default to 0xFFFFFFFF, the value the RFC says is in effect before any SLI."""

    message_type: ClassVar[MessageType] = MessageType.SLI
    peer_call_id: int = u16()
    reserved1: int = u16()
    send_accm: int = u32(0xFFFFFFFF)
    receive_accm: int = u32(0xFFFFFFFF)


Message = Union[
    StartControlConnectionRequest,
    StartControlConnectionReply,
    StopControlConnectionRequest,
    StopControlConnectionReply,
    EchoRequest,
    EchoReply,
    OutgoingCallRequest,
    OutgoingCallReply,
    IncomingCallRequest,
    IncomingCallReply,
    IncomingCallConnected,
    CallClearRequest,
    CallDisconnectNotify,
    WanErrorNotify,
    SetLinkInfo,
]

MESSAGE_CLASSES: dict[MessageType, type[Message]] = {
    cls.message_type: cls
    for cls in (
        StartControlConnectionRequest,
        StartControlConnectionReply,
        StopControlConnectionRequest,
        StopControlConnectionReply,
        EchoRequest,
        EchoReply,
        OutgoingCallRequest,
        OutgoingCallReply,
        IncomingCallRequest,
        IncomingCallReply,
        IncomingCallConnected,
        CallClearRequest,
        CallDisconnectNotify,
        WanErrorNotify,
        SetLinkInfo,
    )
}
