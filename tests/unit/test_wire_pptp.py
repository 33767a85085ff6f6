"""PPTP control message codec: RFC 2637 section 2 layouts and real bytes from the seeds.

Seed vectors come from Cisco PIX ``debug pptp`` dumps.  Those dumps end in "...", so the
test builds the whole message from the field values the debug text prints and checks that
the built bytes START WITH the dumped prefix.
"""
from __future__ import annotations

import struct

import pytest

from fixup.errors import BadCookie, BadInput, BadLength, BadMessageType, BadReserved, BadValue, Truncated
from fixup.wire.pptp import (
    CALL_ID_FIELDS,
    CONTROL_MESSAGE,
    HEADER_LENGTH,
    MAGIC_COOKIE,
    MESSAGE_CLASSES,
    MESSAGE_LENGTHS,
    PREFIX_LENGTH,
    CallClearRequest,
    CallDisconnectNotify,
    CallIdRole,
    EchoReply,
    Header,
    IncomingCallConnected,
    IncomingCallReply,
    IncomingCallRequest,
    IncomingCallResult,
    MessageType,
    OutgoingCallReply,
    OutgoingCallRequest,
    OutgoingCallResult,
    SetLinkInfo,
    StartControlConnectionReply,
    StartControlConnectionRequest,
    StopControlConnectionRequest,
    WanErrorNotify,
    build_message,
    parse_header,
    parse_message,
)

pytestmark = pytest.mark.unit

SEED_000 = "/work/shared/seeds/000_ac39955d34a0daa9.txt"
SEED_001 = "/work/shared/seeds/001_78fc8e2d733fd35b.txt"


def _header(length: int, control_type: int, *, pptp_type: int = 1, cookie: int = MAGIC_COOKIE,
            reserved0: int = 0) -> bytes:
    return struct.pack(">HHIHH", length, pptp_type, cookie, control_type, reserved0)


# --- seed vectors -------------------------------------------------------------------------

# (seed file:line, message built from the debug text's field values, dumped hex prefix)
SEED_PREFIXES = [
    pytest.param(
        # 001 line 134, Windows NT client: "framing caps 0x1, bearer caps 0x1, max channels 0,
        # firmware rev 0x870, hostname "", vendor "Microsoft Windows NT""
        StartControlConnectionRequest(framing_capabilities=1, bearer_capabilities=1, maximum_channels=0,
                                      firmware_revision=0x870, host_name=b"",
                                      vendor_string=b"Microsoft Windows NT"),
        "009c00011a2b3c4d0001000001000000000000010000",
        id="001:134 SCCRQ NT",
    ),
    pytest.param(
        # 001 line 132, Windows 98 client: firmware rev 0x0, hostname "local", vendor "9x"
        StartControlConnectionRequest(framing_capabilities=1, bearer_capabilities=1, firmware_revision=0,
                                      host_name=b"local", vendor_string=b"9x"),
        "009c00011a2b3c4d0001000001000000000000010000",
        id="001:132 SCCRQ 98",
    ),
    pytest.param(
        # 001 line 134, PIX answer: result 1, framing caps 3
        StartControlConnectionReply(result_code=1, error_code=0, framing_capabilities=3, bearer_capabilities=0),
        "009c00011a2b3c4d0002000001000100000000030000",
        id="001:134 SCCRP",
    ),
    pytest.param(
        # 001 line 134: "call id 0x4000, serial num 58613, min bps 300, max BPS 100000000,
        # bearer type 3, framing type 3, recv win size 64, ppd 0, phone num Len 0"
        OutgoingCallRequest(call_id=0x4000, call_serial_number=58613, minimum_bps=300, maximum_bps=100_000_000,
                            bearer_type=3, framing_type=3, packet_recv_window_size=64,
                            packet_processing_delay=0, phone_number_length=0),
        "00a800011a2b3c4d000700004000e4f50000012c05f5",
        id="001:134 OCRQ NT",
    ),
    pytest.param(
        # 001 line 132: "call id 0x0, serial num 0, min bps 56000, max bps 64000, bearer 3,
        # framing 3, recv win size 16, ppd 0"
        OutgoingCallRequest(call_id=0, call_serial_number=0, minimum_bps=56000, maximum_bps=64000,
                            bearer_type=3, framing_type=3, packet_recv_window_size=16),
        "00a800011a2b3c4d00070000000000000000dac00000",
        id="001:132 OCRQ 98",
    ),
    pytest.param(
        # 001 line 134: PIX call 9 (Tnl/CL 9/9) answers peer 0x4000, Connected; the dump shows
        # the Connect Speed starts 0x00fa, the rest is cut off.
        OutgoingCallReply(call_id=9, peer_call_id=0x4000, result_code=OutgoingCallResult.CONNECTED,
                          connect_speed=0x00FA0000),
        "002000011a2b3c4d00080000000940000100000000fa",
        id="001:134 OCRP NT",
    ),
    pytest.param(
        # 001 line 132: PIX call 42 answers peer 0
        OutgoingCallReply(call_id=42, peer_call_id=0, result_code=OutgoingCallResult.CONNECTED,
                          connect_speed=0x00FA0000),
        "002000011a2b3c4d00080000002a00000100000000fa",
        id="001:132 OCRP 98",
    ),
    pytest.param(
        # 001 line 134: client sets the link info of PIX call 9, ACCMs all ones
        SetLinkInfo(peer_call_id=9, send_accm=0xFFFFFFFF, receive_accm=0xFFFFFFFF),
        "001800011a2b3c4d000f000000090000ffffffffffff",
        id="001:134 SLI",
    ),
]


@pytest.mark.parametrize(("message", "prefix"), SEED_PREFIXES)
def test_seed_message_builds_to_dumped_prefix(message, prefix: str) -> None:
    wire = build_message(message)
    assert wire.startswith(bytes.fromhex(prefix))
    assert len(wire) == MESSAGE_LENGTHS[message.message_type]
    assert parse_message(wire) == message


@pytest.mark.parametrize(("path", "line", "needle"), [
    (SEED_001, 134, "00a800011a2b3c4d000700004000e4f50000012c05f5"),
    (SEED_001, 132, "00a800011a2b3c4d00070000000000000000dac00000"),
    (SEED_000, 156, "001000011A2B3C4D000C000000000000"),
])
def test_seed_citations_are_where_they_say(path: str, line: int, needle: str) -> None:
    """Guards the citations above against a seed file that moved."""
    try:
        with open(path, encoding="utf-8") as seed:
            lines = seed.read().splitlines()
    except OSError:
        pytest.skip("seed files not present")
    assert needle in lines[line - 1]


def test_seed_call_clear_request_complete() -> None:
    """000 line 156: a whole Call-Clear-Request (16 bytes, Call ID 0) from a Cisco router debug."""
    wire = bytes.fromhex("001000011A2B3C4D000C000000000000")
    message = parse_message(wire)
    assert message == CallClearRequest(call_id=0)
    assert build_message(message) == wire


def test_seed_sccrq_vendor_string_in_place() -> None:
    """001 line 134: the vendor string sits at byte 92 (12 + 16 + 64), NUL padded to 64."""
    wire = build_message(StartControlConnectionRequest(vendor_string=b"Microsoft Windows NT"))
    assert wire[92:112] == b"Microsoft Windows NT"
    assert wire[112:156] == bytes(44)


# --- header -------------------------------------------------------------------------------


def test_message_lengths_are_rfc_2637_section_2() -> None:
    assert [MESSAGE_LENGTHS[t] for t in MessageType] == [
        156, 156, 16, 16, 16, 20, 168, 32, 220, 24, 28, 16, 148, 40, 24]


@pytest.mark.parametrize("message_type", list(MessageType))
def test_default_message_has_its_length_and_type(message_type: MessageType) -> None:
    wire = build_message(MESSAGE_CLASSES[message_type]())
    assert len(wire) == MESSAGE_LENGTHS[message_type]
    assert parse_header(wire) == Header(MESSAGE_LENGTHS[message_type], message_type)
    assert wire[2:4] == b"\x00\x01" and wire[4:8] == bytes.fromhex("1a2b3c4d") and wire[10:12] == b"\0\0"


def test_long_names() -> None:
    assert MessageType.OCRQ.long_name == "Outgoing-Call-Request"
    assert MessageType.WEN.long_name == "WAN-Error-Notify"
    assert MessageType.SLI.rfc_section == "RFC 2637 section 2.15"


def test_header_needs_prefix_length_bytes() -> None:
    wire = build_message(CallClearRequest(call_id=5))
    assert parse_header(wire[:PREFIX_LENGTH]).message_type is MessageType.CCRQ
    with pytest.raises(Truncated) as info:
        parse_header(wire[:PREFIX_LENGTH - 1])
    assert info.value.where == "PPTP header" and info.value.reason == "truncated"


def test_header_at_offset_reports_absolute_offsets() -> None:
    wire = b"\xee" * 40 + build_message(EchoReply(identifier=7))
    assert parse_header(wire, 40).message_type is MessageType.ECHORP
    bad = bytearray(wire)
    bad[44] ^= 0xFF
    with pytest.raises(BadCookie) as info:
        parse_header(bad, 40)
    assert info.value.offset == 44


def test_management_message_type_rejected() -> None:
    """RFC 2637 section 1.4: PPTP Message Type 2 is a Management Message."""
    with pytest.raises(BadMessageType) as info:
        parse_header(_header(16, 12, pptp_type=2))
    assert info.value.offset == 2 and info.value.reason == "bad-message-type"


def test_bad_cookie() -> None:
    with pytest.raises(BadCookie) as info:
        parse_header(_header(16, 12, cookie=0x1A2B3C4E))
    assert info.value.offset == 4 and info.value.reason == "bad-cookie"


@pytest.mark.parametrize("control_type", [0, 16, 0xFFFF])
def test_unknown_control_message_type(control_type: int) -> None:
    with pytest.raises(BadMessageType) as info:
        parse_header(_header(16, control_type))
    assert info.value.offset == 8


def test_length_must_match_message_type() -> None:
    with pytest.raises(BadLength) as info:
        parse_header(_header(17, MessageType.CCRQ))
    assert info.value.where == "Call-Clear-Request"


def test_check_order_is_type_cookie_control_type_length() -> None:
    with pytest.raises(BadMessageType):
        parse_header(_header(99, 99, pptp_type=2, cookie=0))
    with pytest.raises(BadCookie):
        parse_header(_header(99, 99, cookie=0))
    with pytest.raises(BadMessageType):
        parse_header(_header(99, 99))


# --- whole messages -----------------------------------------------------------------------


def test_missing_and_extra_bytes() -> None:
    wire = build_message(IncomingCallConnected(peer_call_id=3))
    with pytest.raises(Truncated) as info:
        parse_message(wire[:-1])
    assert info.value.offset == len(wire) - 1
    with pytest.raises(BadLength) as info_long:
        parse_message(wire + b"\0")
    assert info_long.value.offset == len(wire)


def test_reserved0_always_checked() -> None:
    wire = bytearray(build_message(CallClearRequest(call_id=1)))
    wire[11] = 1
    for strict in (True, False):
        with pytest.raises(BadReserved) as info:
            parse_message(bytes(wire), strict=strict)
        assert info.value.offset == 10


def test_reserved_fields_strict_and_lenient() -> None:
    """RFC 2637 section 2.7: Reserved1 of the OCRQ (byte 38) "MUST be 0"; lenient keeps it."""
    wire = bytearray(build_message(OutgoingCallRequest(call_id=1)))
    wire[39] = 5
    with pytest.raises(BadReserved) as info:
        parse_message(bytes(wire))
    assert info.value.offset == 38 and info.value.reason == "bad-reserved"
    lenient = parse_message(bytes(wire), strict=False)
    assert isinstance(lenient, OutgoingCallRequest) and lenient.reserved1 == 5
    assert build_message(lenient) == bytes(wire)


def test_stop_request_two_reserved_fields() -> None:
    wire = bytearray(build_message(StopControlConnectionRequest(reason=3)))
    wire[15] = 1  # Reserved2
    with pytest.raises(BadReserved) as info:
        parse_message(bytes(wire))
    assert info.value.offset == 14


def test_strings_padded_and_stripped() -> None:
    message = IncomingCallRequest(call_id=2, dialed_number=b"5551234", dialing_number=b"", subaddress=b"x")
    wire = build_message(message)
    # RFC 2637 section 2.9: Dialed Number at 28, Dialing Number at 92, Subaddress at 156
    assert wire[28:92] == b"5551234" + bytes(57)
    assert wire[92:156] == bytes(64)
    assert wire[156:220] == b"x" + bytes(63)
    assert parse_message(wire) == message


def test_string_with_inner_nul_round_trips() -> None:
    message = CallDisconnectNotify(call_id=1, call_statistics=b"a\0b")
    assert parse_message(build_message(message)) == message


def test_input_types_accepted() -> None:
    wire = build_message(WanErrorNotify(peer_call_id=7, crc_errors=3))
    expected = parse_message(wire)
    assert parse_message(bytearray(wire)) == expected
    assert parse_message(memoryview(wire)) == expected
    assert parse_message(memoryview(wire).cast("H")) == expected  # itemsize 2: len() counts items


def test_field_values_read_from_rfc_offsets() -> None:
    """RFC 2637 section 2.8 layout: Call ID 12, Peer's Call ID 14, Result 16, Error 17,
    Cause 18, Connect Speed 20, Window 24, Delay 26, Physical Channel ID 28."""
    wire = bytes.fromhex("002000011a2b3c4d00080000" "1234" "abcd" "07" "02" "0003"
                         "0000fa00" "0010" "0020" "00000009")
    assert parse_message(wire) == OutgoingCallReply(
        call_id=0x1234, peer_call_id=0xABCD, result_code=OutgoingCallResult.DO_NOT_ACCEPT, error_code=2,
        cause_code=3, connect_speed=64000, packet_recv_window_size=16, packet_processing_delay=32,
        physical_channel_id=9)


@pytest.mark.parametrize("message_type", list(MessageType))
def test_call_id_fields_point_at_call_id_fields(message_type: MessageType) -> None:
    """Every CALL_ID_FIELDS offset holds the call_id (OWN) or peer_call_id (PEER) field."""
    cls = MESSAGE_CLASSES[message_type]
    names = {"call_id": 0x1111, "peer_call_id": 0x2222}
    present = {name: value for name, value in names.items() if name in cls.__dataclass_fields__}
    wire = build_message(cls(**present))
    found = {}
    for offset, role in CALL_ID_FIELDS[message_type]:
        found["call_id" if role is CallIdRole.OWN else "peer_call_id"] = int.from_bytes(wire[offset:offset + 2], "big")
    assert found == present


def test_call_id_fields_spelled_out() -> None:
    assert CALL_ID_FIELDS[MessageType.OCRP] == ((12, CallIdRole.OWN), (14, CallIdRole.PEER))
    assert CALL_ID_FIELDS[MessageType.ICCN] == ((12, CallIdRole.PEER),)
    assert CALL_ID_FIELDS[MessageType.SCCRQ] == ()


def test_result_codes() -> None:
    assert OutgoingCallResult.DO_NOT_ACCEPT == 7
    assert IncomingCallResult.DO_NOT_ACCEPT == 3
    assert IncomingCallReply().result_code == IncomingCallResult.CONNECT
    assert StartControlConnectionReply().result_code == 1


# --- build errors -------------------------------------------------------------------------


@pytest.mark.parametrize("message", [
    OutgoingCallRequest(call_id=0x10000),
    OutgoingCallRequest(call_id=-1),
    OutgoingCallRequest(call_id=True),
    OutgoingCallRequest(call_id="1"),  # type: ignore[arg-type]
    OutgoingCallReply(result_code=256),
    SetLinkInfo(send_accm=1 << 32),
    OutgoingCallRequest(phone_number=b"9" * 65),
    OutgoingCallRequest(phone_number="555"),  # type: ignore[arg-type]
    CallDisconnectNotify(call_statistics=b"s" * 129),
])
def test_build_rejects_values_that_do_not_fit(message) -> None:
    with pytest.raises(BadValue):
        build_message(message)


def test_build_rejects_non_messages() -> None:
    with pytest.raises(BadValue):
        build_message(Header(16, MessageType.CCRQ))  # type: ignore[arg-type]


def test_full_width_values_fit() -> None:
    message = OutgoingCallRequest(call_id=0xFFFF, maximum_bps=0xFFFFFFFF, phone_number=b"9" * 64)
    assert parse_message(build_message(message)) == message


def test_constants() -> None:
    assert (MAGIC_COOKIE, CONTROL_MESSAGE, PREFIX_LENGTH, HEADER_LENGTH) == (0x1A2B3C4D, 1, 10, 12)
    assert all(issubclass(e, BadInput) for e in (Truncated, BadLength, BadCookie, BadMessageType, BadReserved))
