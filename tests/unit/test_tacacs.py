"""TACACS+ (RFC 8907): the codec of fixup.wire.tacacs, cross-checked against the PyPI
``tacacs_plus`` package as an independent implementation, and the pure client of
fixup.proto.aaa.tacacs with a fake clock and fake connection events."""
from __future__ import annotations

import hashlib
import struct
from ipaddress import IPv4Address

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tacacs_plus.authentication import (
    TACACSAuthenticationContinue,
    TACACSAuthenticationReply,
    TACACSAuthenticationStart,
)
from tacacs_plus.packet import TACACSHeader, TACACSPacket, crypt

from fixup.errors import BadInput, BadLength, BadValue, Truncated
from fixup.proto.aaa.config import TACACS_PLUS, AaaGroup, AaaHost
from fixup.proto.aaa import AuthContext, NasIdentity
from fixup.proto.aaa.tacacs import TacacsClient
from fixup.proto.auth.credentials import FAILED_MESSAGE, VerifyRequest
from fixup.wire import tacacs as wire
from fixup.wire.tacacs import AuthenContinue, AuthenReply, AuthenStart, BadTacacs, Status, TacacsHeader

pytestmark = pytest.mark.unit

MODEST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEY = b"tac-key"
SESSION = 0x12345678
PPP = 3  # RFC 8907 section 5.1: TAC_PLUS_AUTHEN_SVC_PPP (tacacs_plus has no constant for it)


# -- the other implementation: tacacs_plus ---------------------------------------------------


def their_packet(body: bytes, *, seq_no: int = 2, session_id: int = SESSION, secret: str = KEY.decode(),
                 version: int = 0xC1) -> bytes:
    header = TACACSHeader(version, 1, session_id, len(body), seq_no=seq_no)
    return bytes(TACACSPacket(header, body, secret))


def their_open(packet: bytes, secret: str = KEY.decode()) -> tuple[TACACSHeader, bytes]:
    header = TACACSHeader.unpacked(packet[:12])
    return header, TACACSPacket(header, packet[12:], secret).body


def their_reply(status: int, server_msg: bytes = b"", data: bytes = b"", **packet_args: object) -> bytes:
    """tacacs_plus parses REPLY but does not build it: the body by hand (section 5.2)."""
    body = struct.pack("!BBHH", status, 0, len(server_msg), len(data)) + server_msg + data
    return their_packet(body, **packet_args)


# -- byte vectors -----------------------------------------------------------------------------


def test_header_vector_section_4_1() -> None:
    # version 0xc1 (major 0xc, minor 1), type 1 authentication, seq_no 1, flags, session_id, length
    header = TacacsHeader(wire.TYPE_AUTHEN, 1, SESSION, wire.MINOR_ONE)
    assert wire.build_packet(header, b"", b"") == bytes.fromhex("c1 01 01 01 12345678 00000000")
    packet = wire.build_packet(header, b"abc", KEY)
    assert packet[:12] == bytes.fromhex("c1 01 01 00 12345678 00000003")  # UNENCRYPTED clear with a key
    parsed = wire.parse_header(packet)
    assert parsed == TacacsHeader(1, 1, SESSION, 1, 0, 3) and parsed.version == 0xC1


def test_pap_start_vector_sections_5_1_and_5_4_2() -> None:
    start = AuthenStart(wire.ACTION_LOGIN, wire.PRIV_LVL_USER, wire.AUTHEN_TYPE_PAP, wire.SERVICE_PPP,
                        b"alice", b"pptp7", b"192.0.2.1", b"secret")
    body = wire.build_start(start)
    # action LOGIN, priv_lvl 1, authen_type PAP, service PPP, then the four lengths
    assert body == bytes.fromhex("01 01 02 03 05 05 09 06") + b"alicepptp7192.0.2.1secret"
    assert wire.parse_start(body) == start


def test_chap_data_vector_section_5_4_2() -> None:
    challenge, response = bytes(range(16)), hashlib.md5(b"\x07pw" + bytes(range(16))).digest()
    assert wire.chap_data(7, challenge, response) == b"\x07" + challenge + response
    with pytest.raises(BadValue):
        wire.chap_data(7, challenge, response[:15])


def test_reply_and_continue_vectors_sections_5_2_and_5_3() -> None:
    assert wire.build_reply(AuthenReply(Status.PASS, 0, b"hi")) == bytes.fromhex("01 00 0002 0000 6869")
    assert wire.parse_reply(bytes.fromhex("02 01 0000 0001 ff")) == AuthenReply(Status.FAIL, 1, b"", b"\xff")
    assert wire.parse_reply(bytes.fromhex("21 00 0000 0000")).status is Status.FOLLOW
    abort = AuthenContinue(flags=wire.CONTINUE_FLAG_ABORT)
    assert wire.build_continue(abort) == bytes.fromhex("0000 0000 01")
    assert wire.parse_continue(bytes.fromhex("0001 0002 00 41 4243")) == AuthenContinue(b"A", b"BC", 0)


def test_pseudo_pad_section_4_5_chained_md5() -> None:
    header = TacacsHeader(wire.TYPE_AUTHEN, 1, SESSION, wire.MINOR_ONE)
    seed = bytes.fromhex("12345678") + KEY + b"\xc1\x01"  # session_id, key, version, seq_no
    md5_1 = hashlib.md5(seed).digest()
    md5_2 = hashlib.md5(seed + md5_1).digest()
    md5_3 = hashlib.md5(seed + md5_2).digest()
    assert wire.pseudo_pad(header, KEY, 40) == (md5_1 + md5_2 + md5_3)[:40]
    assert wire.pseudo_pad(header, KEY, 0) == b""


# -- cross-checks with tacacs_plus ------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 15, 16, 17, 33, 300])
def test_obfuscation_matches_tacacs_plus(length: int) -> None:
    body = bytes((i * 7 + 3) & 0xFF for i in range(length))
    header = TacacsHeader(wire.TYPE_AUTHEN, 3, SESSION, wire.MINOR_ONE)
    theirs = crypt(TACACSHeader(0xC1, 1, SESSION, length, seq_no=3), body, KEY.decode())
    assert wire.obfuscate(header, KEY, body) == theirs
    assert wire.obfuscate(header, KEY, theirs) == body


def test_our_start_parses_with_tacacs_plus() -> None:
    start = AuthenStart(wire.ACTION_LOGIN, 1, wire.AUTHEN_TYPE_PAP, wire.SERVICE_PPP, b"alice", b"pptp7",
                        b"198.51.100.7", b"wonderland")
    packet = wire.build_packet(TacacsHeader(wire.TYPE_AUTHEN, 1, SESSION, 1), wire.build_start(start), KEY)
    header, body = their_open(packet)
    assert (header.version_max, header.version_min, header.type, header.seq_no) == (0xC, 1, 1, 1)
    assert (header.session_id, header.length, header.flags) == (SESSION, len(body), 0)
    expected = TACACSAuthenticationStart("alice", 2, priv_lvl=1, data=b"wonderland", rem_addr="198.51.100.7",
                                         port="pptp7")
    expected.service = PPP
    assert body == expected.packed


def test_their_reply_parses_with_ours() -> None:
    packet = their_reply(Status.FAIL, b"bad password", b"\x01\x02", session_id=0xCAFE, seq_no=2)
    header, body = wire.parse_packet(packet, KEY)
    assert (header.session_id, header.seq_no, header.minor_version) == (0xCAFE, 2, 1)
    assert wire.parse_reply(body) == AuthenReply(Status.FAIL, 0, b"bad password", b"\x01\x02")


def test_our_reply_and_continue_parse_with_tacacs_plus() -> None:
    reply = AuthenReply(Status.GETPASS, wire.REPLY_FLAG_NOECHO, b"Password: ", b"x")
    packet = wire.build_packet(TacacsHeader(wire.TYPE_AUTHEN, 2, SESSION, 1), wire.build_reply(reply), KEY)
    theirs = TACACSAuthenticationReply.unpacked(their_open(packet)[1])
    assert (theirs.status, theirs.flags, theirs.server_msg, theirs.data) == (5, 1, b"Password: ", b"x")
    assert theirs.getpass
    assert wire.build_continue(AuthenContinue(flags=1)) == TACACSAuthenticationContinue("", flags=1).packed
    assert wire.build_continue(AuthenContinue(b"pw", b"d")) == TACACSAuthenticationContinue("pw", b"d").packed


# -- malformed input ---------------------------------------------------------------------------


def test_wrong_key_says_bad_key() -> None:
    for session_id in range(1, 60):
        packet = their_reply(Status.PASS, b"welcome", session_id=session_id, secret="other-key")
        _, body = wire.parse_packet(packet, KEY)
        with pytest.raises(BadTacacs, match=r"bad key\?"):
            wire.parse_reply(body)


def test_every_prefix_is_truncated() -> None:
    packet = their_reply(Status.PASS, b"welcome")
    for end in range(len(packet)):
        with pytest.raises(Truncated):
            wire.parse_packet(packet[:end], KEY)
        assert wire.frame_length(packet[:end]) == (None if end < 12 else len(packet))
    with pytest.raises(BadLength):
        wire.parse_packet(packet + b"\0", KEY)


@pytest.mark.parametrize(("header", "match"), [
    ("b1 01 02 00 00000001 00000000", "major version"),
    ("c2 01 02 00 00000001 00000000", "minor version"),
    ("c0 04 02 00 00000001 00000000", "packet type"),
    ("c0 01 00 00 00000001 00000000", "seq_no 0"),
    ("c0 01 02 00 00000001 7fffffff", "beyond any"),
])
def test_bad_headers(header: str, match: str) -> None:
    with pytest.raises(BadTacacs, match=match):
        wire.parse_header(bytes.fromhex(header))


def test_unencrypted_flag_must_match_the_key() -> None:
    header = TacacsHeader(wire.TYPE_AUTHEN, 2, SESSION, 1)
    clear = wire.build_packet(header, wire.build_reply(AuthenReply(Status.PASS)), b"")
    assert wire.parse_packet(clear, b"")[1] == bytes.fromhex("01 00 0000 0000")
    with pytest.raises(BadTacacs, match="not obfuscated"):
        wire.parse_packet(clear, KEY)
    with pytest.raises(BadTacacs, match="no key"):
        wire.parse_packet(their_reply(Status.PASS), b"")


def test_build_refuses_out_of_range_values() -> None:
    with pytest.raises(BadValue):
        wire.build_packet(TacacsHeader(wire.TYPE_AUTHEN, 256, SESSION), b"", KEY)
    with pytest.raises(BadValue):
        wire.build_start(AuthenStart(1, 1, 2, 3, user=b"u" * 256))
    with pytest.raises(BadValue):
        wire.build_reply(AuthenReply(Status.PASS, server_msg=b"m" * 65536))


@MODEST
@given(st.binary(max_size=80))
def test_random_bytes_raise_only_bad_input(data: bytes) -> None:
    for parse in (wire.parse_header, wire.parse_start, wire.parse_reply, wire.parse_continue,
                  wire.frame_length, lambda raw: wire.parse_packet(raw, KEY)):
        try:
            parse(data)
        except BadInput:
            pass


@MODEST
@given(st.binary(max_size=40), st.integers(0, 0xFFFFFFFF), st.integers(1, 255), st.binary(max_size=20))
def test_obfuscation_round_trip(body: bytes, session_id: int, seq_no: int, key: bytes) -> None:
    header = TacacsHeader(wire.TYPE_AUTHEN, seq_no, session_id, 1)
    packet = wire.build_packet(header, body, key)
    assert wire.parse_packet(packet, key) == (TacacsHeader(1, seq_no, session_id, 1, 0 if key else 1, len(body)),
                                              body)


@MODEST
@given(st.builds(AuthenReply, st.sampled_from(list(Status)), st.integers(0, 255), st.binary(max_size=300),
                 st.binary(max_size=300)))
def test_reply_round_trip(reply: AuthenReply) -> None:
    assert wire.parse_reply(wire.build_reply(reply)) == reply


# -- the pure client ---------------------------------------------------------------------------

HOST_A = AaaHost(IPv4Address("192.0.2.10"), 49, KEY, timeout=5.0, retries=1)
HOST_B = AaaHost(IPv4Address("192.0.2.11"), 4949, b"key-b", timeout=2.0, retries=0)
NAS = NasIdentity(IPv4Address("192.0.2.1"))
CONTEXT = AuthContext(nas_port=7, calling_station="198.51.100.7", called_station="192.0.2.1", session_id="7")
PAP_REQUEST = VerifyRequest("pap", "alice", {"password": b"wonderland"})
CHAP_RESPONSE = hashlib.md5(b"\x09wonderland" + b"C" * 16).digest()
CHAP_REQUEST = VerifyRequest("chap", "alice", {"identifier": 9, "challenge": b"C" * 16, "response": CHAP_RESPONSE})


class Counter:
    """Deterministic session ids: 1, 2, 3 ..."""

    def __init__(self) -> None:
        self.value = 0

    def __call__(self, size: int) -> bytes:
        self.value += 1
        return self.value.to_bytes(size, "big")


def client(*hosts: AaaHost) -> TacacsClient:
    return TacacsClient(AaaGroup("TacGroup", TACACS_PLUS, hosts or (HOST_A, HOST_B)), NAS, random_bytes=Counter())


def start_and_connect(tac: TacacsClient, request: VerifyRequest = PAP_REQUEST, now: float = 0.0) -> bytes:
    tac.authenticate("t", request, CONTEXT, now)
    [(conn_id, address, port)] = tac.take_connects()
    assert (conn_id, address, port) == (1, "192.0.2.10", 49)
    tac.connected(1, now)
    [(sent_to, packet)] = tac.take_sends()
    assert sent_to == 1
    return packet


def test_pap_start_and_a_reply_byte_by_byte() -> None:
    tac = client()
    packet = start_and_connect(tac)
    header, body = their_open(packet)
    assert (header.version, header.type, header.seq_no, header.session_id) == (0xC1, 1, 1, 1)
    assert wire.parse_start(body) == AuthenStart(1, 1, wire.AUTHEN_TYPE_PAP, wire.SERVICE_PPP, b"alice", b"pptp7",
                                                 b"198.51.100.7", b"wonderland")
    reply = their_reply(Status.PASS, b"welcome", session_id=1)
    for index, byte in enumerate(reply):
        assert tac.take_results() == []
        tac.data_in(1, bytes([byte]), 0.5 + index / 1000)
    [(token, result)] = tac.take_results()
    assert token == "t" and result.ok and result.message == "welcome" and result.keys is None
    assert result.account == "alice"
    assert tac.take_closes() == [1] and tac.next_deadline() is None
    host = tac.snapshot()["hosts"][0]
    assert (host["requests"], host["accepts"], host["pending"]) == (1, 1, 0) and host["average_rtt_ms"] > 0


def test_chap_start_data() -> None:
    _, body = their_open(start_and_connect(client(), CHAP_REQUEST))
    start = wire.parse_start(body)
    assert start.authen_type == wire.AUTHEN_TYPE_CHAP
    assert start.data == b"\x09" + b"C" * 16 + CHAP_RESPONSE


def test_fail_relays_server_msg() -> None:
    tac = client()
    start_and_connect(tac)
    tac.data_in(1, their_reply(Status.FAIL, b"bad password", session_id=1), 1.0)
    [(_, result)] = tac.take_results()
    assert not result.ok and result.message == "bad password"
    assert result.log == "rejected by 192.0.2.10:49: bad password"
    tac.authenticate("u", PAP_REQUEST, CONTEXT, 2.0)
    tac.connected(2, 2.0)
    tac.data_in(2, their_reply(Status.FAIL, session_id=2), 2.1)
    assert tac.take_results()[0][1].message == FAILED_MESSAGE


@pytest.mark.parametrize(("status", "seen"), [
    (Status.ERROR, "ERROR: server_msg 'database down'"),
    (Status.FOLLOW, "FOLLOW: server_msg 'database down', data 'tac2.example'"),
    (Status.RESTART, "RESTART"),
])
def test_other_statuses_fail_with_what_came_back(status: Status, seen: str) -> None:
    tac = client()
    start_and_connect(tac)
    tac.data_in(1, their_reply(status, b"database down", b"tac2.example", session_id=1), 1.0)
    [(_, result)] = tac.take_results()
    assert not result.ok and result.message == FAILED_MESSAGE
    assert result.log.startswith(f"192.0.2.10:49 answered {seen}")
    assert [event.kind for event in tac.take_events()] == ["aaa-error"]
    assert tac.take_sends() == [] and tac.take_closes() == [1]


def test_getpass_is_aborted_with_a_continue() -> None:
    tac = client()
    start_and_connect(tac)
    tac.data_in(1, their_reply(Status.GETPASS, b"Password: ", session_id=1), 1.0)
    [(conn_id, packet)] = tac.take_sends()
    header, body = their_open(packet)
    assert (conn_id, header.seq_no, header.session_id) == (1, 3, 1)
    assert wire.parse_continue(body).flags == wire.CONTINUE_FLAG_ABORT
    assert tac.take_closes() == [1]
    assert "GETPASS" in tac.take_results()[0][1].log


def test_timeouts_retries_and_failover() -> None:
    tac = client()
    tac.authenticate("t", PAP_REQUEST, CONTEXT, 0.0)
    assert tac.take_connects() == [(1, "192.0.2.10", 49)] and tac.next_deadline() == 5.0
    tac.poll(4.9)
    assert tac.take_connects() == [] and tac.take_events() == []
    tac.poll(5.0)  # first try on A timed out: one retry (retries=1)
    assert tac.take_connects() == [(2, "192.0.2.10", 49)] and tac.take_closes() == [1]
    assert [event.kind for event in tac.take_events()] == ["aaa-timeout"]
    tac.connected(1, 5.1)  # the first connection comes up too late
    assert tac.take_sends() == [] and tac.take_closes() == [1]
    tac.poll(10.0)
    assert tac.take_connects() == [(3, "192.0.2.11", 4949)] and tac.next_deadline() == 12.0
    assert [event.kind for event in tac.take_events()] == ["aaa-timeout", "aaa-failover"]
    tac.connection_failed(3, "Connection refused", 10.1)  # B has no retries: all exhausted
    [(_, result)] = tac.take_results()
    assert not result.ok and result.keys is None
    assert result.log == ("no answer from TACACS+ group TacGroup after 3 tries to 2 hosts; "
                          "last: 192.0.2.11:4949: cannot connect: Connection refused")
    snapshot = tac.snapshot()
    assert [(h["requests"], h["timeouts"], h["connect_failures"]) for h in snapshot["hosts"]] == [(2, 2, 0), (1, 0, 1)]
    assert snapshot["pending"] == 0 and tac.next_deadline() is None


def test_host_closing_early_is_a_failed_try() -> None:
    tac = client()
    start_and_connect(tac)
    tac.data_in(1, their_reply(Status.PASS, session_id=1)[:5], 0.2)
    tac.connection_closed(1, 0.3)
    assert tac.take_connects() == [(2, "192.0.2.10", 49)] and tac.take_closes() == []
    tac.connected(2, 0.4)
    header, _ = their_open(tac.take_sends()[0][1])
    assert header.session_id == 2  # every try is a new session
    tac.data_in(2, their_reply(Status.PASS, session_id=2), 0.5)
    assert tac.take_results()[0][1].ok


def test_wrong_key_skips_the_host() -> None:
    tac = client()
    start_and_connect(tac)
    tac.data_in(1, their_reply(Status.PASS, b"welcome", session_id=1, secret="other-key"), 0.5)
    assert tac.take_connects() == [(2, "192.0.2.11", 4949)]  # A's retry would get the same answer
    [bad, failover] = tac.take_events()
    assert (bad.kind, failover.kind) == ("aaa-bad-answer", "aaa-failover")
    assert "bad key?" in bad.text
    tac.connected(2, 0.6)
    header, body = their_open(tac.take_sends()[0][1], "key-b")
    assert wire.parse_start(body).user == b"alice"
    tac.data_in(2, their_reply(Status.PASS, session_id=header.session_id, secret="key-b"), 0.7)
    assert tac.take_results()[0][1].ok


@pytest.mark.parametrize(("packet_args", "match"), [
    ({"session_id": 99}, "session_id"),
    ({"seq_no": 4}, "seq_no 4"),
])
def test_reply_of_another_session_is_a_bad_answer(packet_args: dict, match: str) -> None:
    tac = client(HOST_A)
    start_and_connect(tac)
    tac.data_in(1, their_reply(Status.PASS, **{"session_id": 1, **packet_args}), 0.5)
    [(_, result)] = tac.take_results()
    assert not result.ok and match in result.log


@pytest.mark.parametrize(("request_", "log"), [
    (VerifyRequest("mschap-v2", "alice", {}), "TACACS+ cannot verify mschap-v2"),
    (VerifyRequest("mschap", "alice", {}), "TACACS+ cannot verify mschap"),
    (VerifyRequest("chap", "alice", {"identifier": 1, "challenge": b"c", "response": b"short"}), "16"),
    (VerifyRequest("pap", "alice", {}), "pap request without password"),
    (VerifyRequest("pap", "a" * 256, {"password": b"x"}), "user is 256 bytes"),
])
def test_requests_failed_at_once(request_: VerifyRequest, log: str) -> None:
    tac = client()
    tac.authenticate("t", request_, CONTEXT, 0.0)
    [(_, result)] = tac.take_results()
    assert not result.ok and log in result.log
    assert tac.take_connects() == [] and tac.next_deadline() is None


def test_cancel_closes_and_gives_no_result() -> None:
    tac = client()
    start_and_connect(tac)
    tac.cancel("t")
    assert tac.take_closes() == [1] and tac.next_deadline() is None
    tac.data_in(1, their_reply(Status.PASS, session_id=1), 1.0)
    tac.connection_closed(1, 1.0)
    tac.poll(100.0)
    assert tac.take_results() == [] and tac.take_connects() == [] and tac.snapshot()["pending"] == 0


def test_same_token_again_replaces_the_first() -> None:
    tac = client()
    start_and_connect(tac)
    tac.authenticate("t", CHAP_REQUEST, CONTEXT, 1.0)
    assert tac.take_closes() == [1] and tac.take_connects() == [(2, "192.0.2.10", 49)]


@MODEST
@given(st.lists(st.binary(min_size=1, max_size=40), max_size=6))
def test_client_survives_any_answer(chunks: list[bytes]) -> None:
    tac = client()
    start_and_connect(tac)
    for chunk in chunks:
        tac.data_in(1, chunk, 0.5)
    tac.connection_closed(1, 0.6)
    tac.poll(100.0)
    tac.poll(200.0)
    tac.poll(300.0)
    assert len(tac.take_results()) == 1


def test_abandon_fails_everything_pending() -> None:
    tac = client()
    start_and_connect(tac)
    tac.authenticate("u", CHAP_REQUEST, CONTEXT, 0.0)
    tac.abandon()
    results = dict(tac.take_results())
    assert set(results) == {"t", "u"} and not any(result.ok for result in results.values())
    assert results["t"].log == "TACACS+ client stopped while asking TACACS+ group TacGroup"
    assert sorted(tac.take_closes()) == [1, 2] and tac.next_deadline() is None
