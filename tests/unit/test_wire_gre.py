"""Enhanced GRE header codec: RFC 2637 section 4.1, with real packets from the seeds."""
from __future__ import annotations

import pytest

from fixup.errors import BadGre, BadLength, BadValue, NotPptpGre, Truncated
from fixup.wire.gre import (
    CALL_ID_OFFSET,
    GRE_PROTOCOL_PPP,
    GreHeader,
    build_gre,
    check_payload,
    parse_gre,
)

pytestmark = pytest.mark.unit

# 001_78fc8e2d733fd35b.txt line 134: "PPP xmit ... Len: 23 data: ff03c021...0802" then
# "Sending xGRE pak ... Len 39, seq 1, ack 0, data: 3081880b001740000000000100000000ff03c0210101..."
NT_LCP_PAYLOAD = bytes.fromhex("ff03c021010100130305c2238005065a899b2307020802")
NT_LCP_PREFIX = bytes.fromhex("3081880b001740000000000100000000ff03c0210101")
# 001 line 134, complete (no "..."): "Len 22, seq 5, ack 5, data: 3081880b000640000000000500000005c22303010004"
NT_CHAP_SUCCESS = bytes.fromhex("3081880b000640000000000500000005c22303010004")
# 001 line 132 (Windows 98 client, call ID 0): "Len 22, seq 5, ack 4, data: 3081880b000600000000000500000004c22303010004"
W98_CHAP_SUCCESS = bytes.fromhex("3081880b000600000000000500000004c22303010004")


def test_seed_lcp_packet_builds_to_dumped_prefix() -> None:
    header = GreHeader(call_id=0x4000, payload_length=23, sequence=1, acknowledgment=0)
    packet = build_gre(header, NT_LCP_PAYLOAD)
    assert len(packet) == 39  # "Len 39"
    assert packet.startswith(NT_LCP_PREFIX)
    assert parse_gre(packet) == header
    check_payload(header, len(packet) - header.header_length)


@pytest.mark.parametrize(("packet", "expected"), [
    (NT_CHAP_SUCCESS, GreHeader(call_id=0x4000, payload_length=6, sequence=5, acknowledgment=5)),
    (W98_CHAP_SUCCESS, GreHeader(call_id=0, payload_length=6, sequence=5, acknowledgment=4)),
])
def test_seed_complete_packets(packet: bytes, expected: GreHeader) -> None:
    header = parse_gre(packet)
    assert header == expected
    assert header.header_length == 16
    assert packet[header.header_length:] == bytes.fromhex("c22303010004")
    assert build_gre(header, packet[16:]) == packet


@pytest.mark.parametrize(("header", "first_bytes", "length"), [
    (GreHeader(1, 0), "2001880b", 8),
    (GreHeader(1, 4, sequence=9), "3001880b", 12),
    (GreHeader(1, 0, acknowledgment=9), "2081880b", 12),  # ack-only packet, no payload
    (GreHeader(1, 4, sequence=9, acknowledgment=8), "3081880b", 16),
])
def test_optional_fields_and_flag_bits(header: GreHeader, first_bytes: str, length: int) -> None:
    wire = build_gre(header)
    assert wire[:4] == bytes.fromhex(first_bytes)
    assert len(wire) == header.header_length == length
    assert parse_gre(wire) == header


def test_ack_only_field_position() -> None:
    """With S clear and A set, the Acknowledgment Number takes the Sequence Number's place."""
    wire = build_gre(GreHeader(0x1234, 0, acknowledgment=0xDEADBEEF))
    assert wire[8:12] == bytes.fromhex("deadbeef")


def test_call_id_offset() -> None:
    wire = build_gre(GreHeader(0xBEEF, 0, sequence=1))
    assert wire[CALL_ID_OFFSET:CALL_ID_OFFSET + 2] == b"\xbe\xef"
    assert GRE_PROTOCOL_PPP == int.from_bytes(wire[2:4], "big")


def test_parse_at_offset() -> None:
    ip_header = bytes(20)
    header = parse_gre(ip_header + NT_CHAP_SUCCESS, 20)
    assert header.call_id == 0x4000
    with pytest.raises(Truncated) as info:
        parse_gre(ip_header + NT_CHAP_SUCCESS[:15], 20)
    assert info.value.offset == 20


@pytest.mark.parametrize("first4", [
    "3080880b",  # version 0: plain GRE (RFC 2784)
    "3082880b",  # version 2
    "30810800",  # IPv4 payload
    "00000800",  # RFC 2784 GRE carrying IPv4
])
def test_not_pptp_gre(first4: str) -> None:
    with pytest.raises(NotPptpGre) as info:
        parse_gre(bytes.fromhex(first4) + bytes(12))
    assert info.value.reason == "not-pptp-gre"


@pytest.mark.parametrize(("flag_bits", "name"), [
    (0x8000, "C"), (0x4000, "R"), (0x0800, "s"), (0x0100, "Recur"), (0x0400, "Recur"),
    (0x0040, "Flags"), (0x0008, "Flags"),
])
def test_must_be_zero_bits(flag_bits: int, name: str) -> None:
    wire = bytearray(NT_CHAP_SUCCESS)
    flags = int.from_bytes(wire[:2], "big") | flag_bits
    wire[:2] = flags.to_bytes(2, "big")
    with pytest.raises(BadGre) as info:
        parse_gre(bytes(wire))
    assert type(info.value) is BadGre, name


def test_key_bit_required() -> None:
    wire = bytearray(NT_CHAP_SUCCESS)
    wire[0] &= ~0x20
    with pytest.raises(BadGre) as info:
        parse_gre(bytes(wire))
    assert type(info.value) is BadGre and info.value.reason == "bad-gre"


@pytest.mark.parametrize("length", range(16))
def test_truncated_header(length: int) -> None:
    """S and A announce a 16-byte header; any shorter input is Truncated."""
    with pytest.raises(Truncated):
        parse_gre(NT_CHAP_SUCCESS[:length])


def test_payload_need_not_be_present() -> None:
    assert parse_gre(NT_LCP_PREFIX[:16]).payload_length == 23


def test_check_payload() -> None:
    header = GreHeader(1, 10, sequence=0)
    check_payload(header, 10)
    check_payload(header, 12)  # trailing bytes (padding) accepted
    with pytest.raises(BadLength):
        check_payload(header, 9)


@pytest.mark.parametrize(("header", "payload"), [
    (GreHeader(1, 5, sequence=1), b"1234"),
    (GreHeader(0x10000, 0), b""),
    (GreHeader(-1, 0), b""),
    (GreHeader(1, 0x10000), b""),
    (GreHeader(1, 0, sequence=1 << 32), b""),
    (GreHeader(1, 0, acknowledgment=-1), b""),
])
def test_build_rejects(header: GreHeader, payload: bytes) -> None:
    with pytest.raises(BadValue):
        build_gre(header, payload)


def test_build_header_only_when_no_payload() -> None:
    header = GreHeader(7, 100, sequence=3)
    assert build_gre(header) == bytes.fromhex("3001880b006400070000 0003".replace(" ", ""))


def test_memoryview_input() -> None:
    assert parse_gre(memoryview(NT_CHAP_SUCCESS)) == parse_gre(NT_CHAP_SUCCESS)
    assert parse_gre(memoryview(NT_CHAP_SUCCESS).cast("H")) == parse_gre(NT_CHAP_SUCCESS)
