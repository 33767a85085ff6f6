"""PPP frame / control packet / option codec (RFC 1661 sections 2, 5, 6; RFC 1662 section 3),
with the PPP frames of the PIX debug output in the seeds as vectors."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixup.errors import BadInput, BadPpp
from fixup.wire.ppp import (
    Code,
    ControlPacket,
    Option,
    Protocol,
    build_control,
    build_frame,
    build_options,
    parse_control,
    parse_frame,
    parse_options,
)

pytestmark = pytest.mark.unit

MODEST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# 001_78fc8e2d733fd35b.txt line 134 (Windows NT client, PIX 40-bit MPPE), complete frames:
# "PPP rcvd ... Len: 23, data: ff03c021020100130305c2238005065a899b2307020802" (Ack of our request)
NT_LCP_ACK = bytes.fromhex("ff03c021020100130305c2238005065a899b2307020802")
# "PPP rcvd ... Len: 14, data: ff0380fd0104000a120601000001" (CCP request: MPPE H|C)
NT_CCP_REQUEST = bytes.fromhex("ff0380fd0104000a120601000001")
# "PPP rcvd ... Len: 22, data: ff03c0210c020012447e217e4d5352415356352e3030" (LCP Identification)
NT_IDENTIFICATION = bytes.fromhex("ff03c0210c020012447e217e4d5352415356352e3030")
# "PPP rcvd ... Len: 48, data: ff03c0210100002c0506447e217e070208020d030611..." (cut by the dump)
NT_LCP_REQUEST_PREFIX = bytes.fromhex("ff03c0210100002c0506447e217e070208020d030611")
# "PPP rcvd ... Len: 104, data: ff0300fd9000bccf59b71755d9af7330dae3bbc94d28..." (MPPE datagram)
NT_MPPE_PREFIX = bytes.fromhex("ff0300fd9000bccf59b71755d9af7330dae3bbc94d28")
# 001 line 132 (Windows 98 client): "PPP xmit ... Len: 14 data: ff0380210101000a030663636302", then
# "Sending xGRE pak ... data: 3081880b000c0000000000060000000580210101000a..." (PPP Len 12: ACFC)
W98_IPCP_REQUEST = bytes.fromhex("ff0380210101000a030663636302")
W98_IPCP_REQUEST_ON_GRE_PREFIX = bytes.fromhex("80210101000a")
# 001 line 132: "Sending xGRE pak ... data: 3081880b001700000000000100000001ff03c0210101..." (LCP keeps ff03)
W98_LCP_ON_GRE_PREFIX = bytes.fromhex("ff03c0210101")
# 000_ac39955d34a0daa9.txt lines 140-141: "LCP: I PROTREJ [Open] id 3 len 16 protocol CCP
# (0x80FD0157000A120601000020)"
PROTREJ_DATA = bytes.fromhex("80FD0157000A120601000020")


def test_seed_lcp_ack_parses_and_rebuilds() -> None:
    protocol, info = parse_frame(NT_LCP_ACK)
    assert protocol == Protocol.LCP
    packet = parse_control(info)
    assert packet == ControlPacket(Code.CONFIGURE_ACK, 1, info[4:])
    assert parse_options(packet.data) == (
        Option(3, bytes.fromhex("c22380")),  # Authentication-Protocol CHAP, MS-CHAP (0x80)
        Option(5, bytes.fromhex("5a899b23")),  # Magic-Number
        Option(7),  # Protocol-Field-Compression
        Option(8),  # Address-and-Control-Field-Compression
    )
    assert build_options(parse_options(packet.data)) == packet.data
    assert build_frame(Protocol.LCP, build_control(packet)) == NT_LCP_ACK


def test_seed_ccp_request() -> None:
    protocol, info = parse_frame(NT_CCP_REQUEST)
    assert protocol == Protocol.CCP == 0x80FD
    packet = parse_control(info)
    assert (packet.code, packet.identifier) == (Code.CONFIGURE_REQUEST, 4)
    assert parse_options(packet.data) == (Option(18, bytes.fromhex("01000001")),)


def test_seed_identification_code_12() -> None:
    packet = parse_control(parse_frame(NT_IDENTIFICATION)[1])
    assert packet.code == Code.IDENTIFICATION == 12
    assert packet.identifier == 2
    assert packet.data[:4] == bytes.fromhex("447e217e")  # the client's Magic-Number
    assert packet.data[4:] == b"MSRASV5.00"


def test_seed_mppe_datagram_protocol() -> None:
    protocol, info = parse_frame(NT_MPPE_PREFIX)
    assert protocol == Protocol.MPPE == 0x00FD
    assert info[:2] == bytes.fromhex("9000")  # RFC 3078 section 3: flags A|D, coherency count 0


def test_truncated_seed_request_is_bad_length() -> None:
    """The dump cut the 44-byte request (Length 0x002c) after 18 bytes of information."""
    _, info = parse_frame(NT_LCP_REQUEST_PREFIX)
    with pytest.raises(BadPpp, match="Length 44"):
        parse_control(info)


def test_seed_request_prefix_plus_tail_adds_up_to_its_length() -> None:
    """Magic, PFC, ACFC, Callback(6) and MRRU come from the seed; the Endpoint-Discriminator
    (type 19, length 0x17 from the seed's Configure-Reject on the same line) is completed with
    zeros: the option lengths then sum to the Length field, 44."""
    tail = bytes.fromhex("04064e") + bytes.fromhex("131701beb613cb") + bytes(16)
    packet = parse_control(parse_frame(NT_LCP_REQUEST_PREFIX + tail)[1])
    types = [option.type for option in parse_options(packet.data)]
    assert types == [5, 7, 8, 13, 17, 19]
    assert len(build_control(packet)) == 0x2C


def test_acfc_compressed_ipcp_frame() -> None:
    protocol, info = parse_frame(W98_IPCP_REQUEST)
    compressed = build_frame(protocol, info, acfc=True)
    assert compressed.startswith(W98_IPCP_REQUEST_ON_GRE_PREFIX)
    assert len(compressed) == 12  # "PPP Len 12"
    assert parse_frame(compressed) == (Protocol.IPCP, info)


def test_lcp_is_never_compressed() -> None:
    info = parse_frame(NT_LCP_ACK)[1]
    frame = build_frame(Protocol.LCP, info, acfc=True, pfc=True)
    assert frame[:6] == W98_LCP_ON_GRE_PREFIX[:4] + info[:2]
    assert frame == NT_LCP_ACK


@pytest.mark.parametrize(("protocol", "acfc", "pfc", "head"), [
    (Protocol.IP, False, False, "ff030021"),
    (Protocol.IP, True, False, "0021"),
    (Protocol.IP, False, True, "ff0321"),
    (Protocol.IP, True, True, "21"),
    (Protocol.MPPE, True, True, "fd"),
    (Protocol.CCP, True, True, "80fd"),  # two-byte protocols cannot shrink (RFC 1661 section 6.5)
])
def test_compression_combinations(protocol: Protocol, acfc: bool, pfc: bool, head: str) -> None:
    frame = build_frame(protocol, b"\x45\x00", acfc=acfc, pfc=pfc)
    assert frame == bytes.fromhex(head) + b"\x45\x00"
    assert parse_frame(frame) == (protocol, b"\x45\x00")


@pytest.mark.parametrize("frame", [
    "",  # nothing
    "ff",  # address without control
    "ff04c021",  # wrong control
    "ff03",  # no protocol
    "80",  # two-byte protocol cut
    "c020",  # low octet even: not a protocol (RFC 1661 section 2)
])
def test_bad_frames(frame: str) -> None:
    with pytest.raises(BadPpp):
        parse_frame(bytes.fromhex(frame))


def test_build_frame_refuses_invalid_protocol() -> None:
    with pytest.raises(ValueError):
        build_frame(0xC020, b"")


def test_control_length_honoured_padding_ignored() -> None:
    """RFC 1661 section 5: octets beyond Length are padding."""
    packet = parse_control(bytes.fromhex("09070008 447e217e 0000"))
    assert packet == ControlPacket(Code.ECHO_REQUEST, 7, bytes.fromhex("447e217e"))
    assert build_control(packet) == bytes.fromhex("09070008447e217e")


@pytest.mark.parametrize("info", ["", "010100", "01010003", "0101000a0306"])
def test_bad_control_packets(info: str) -> None:
    with pytest.raises(BadPpp):
        parse_control(bytes.fromhex(info))


@pytest.mark.parametrize("data", ["05", "0501", "050600", "0300"])
def test_bad_options(data: str) -> None:
    with pytest.raises(BadPpp):
        parse_options(bytes.fromhex(data))


def test_protocol_reject_from_seed() -> None:
    """000 lines 140-141: 'id 3 len 16' and the rejected CCP Configure-Request inside."""
    wire = build_control(ControlPacket(Code.PROTOCOL_REJECT, 3, PROTREJ_DATA))
    assert wire[:4] == bytes.fromhex("08030010")
    rejected = parse_control(PROTREJ_DATA[2:])
    assert int.from_bytes(PROTREJ_DATA[:2], "big") == Protocol.CCP
    assert (rejected.code, rejected.identifier) == (Code.CONFIGURE_REQUEST, 0x57)
    assert parse_options(rejected.data) == (Option(18, bytes.fromhex("01000020")),)  # H|L


def test_enums_match_the_rfcs() -> None:
    assert [int(c) for c in Code] == [*range(1, 16)]
    assert (Protocol.LCP, Protocol.PAP, Protocol.CHAP, Protocol.IPCP, Protocol.CCP) == (
        0xC021, 0xC023, 0xC223, 0x8021, 0x80FD)
    assert (Protocol.IP, Protocol.MPPE, Protocol.IPV6CP, Protocol.IPV6) == (0x0021, 0x00FD, 0x8057, 0x0057)


_options = st.lists(st.builds(Option, st.integers(0, 255), st.binary(max_size=20)), max_size=8)


@MODEST
@given(_options)
def test_options_round_trip(options: list[Option]) -> None:
    assert parse_options(build_options(options)) == tuple(options)


@MODEST
@given(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=60), st.binary(max_size=8))
def test_control_round_trip_with_padding(code: int, identifier: int, data: bytes, padding: bytes) -> None:
    packet = ControlPacket(code, identifier, data)
    assert parse_control(build_control(packet) + padding) == packet


@MODEST
@given(st.binary(max_size=64))
def test_random_bytes_raise_only_bad_input(data: bytes) -> None:
    for parse in (parse_frame, parse_control, parse_options):
        try:
            parse(data)
        except BadInput as error:
            assert isinstance(error, BadPpp)
