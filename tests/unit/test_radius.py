"""RADIUS client (RFC 2865, RFC 2866, RFC 2869, RFC 2548): byte vectors of RFC 2865 section 7,
the RFC 2548 key encryption, the request / answer mappings, and the pure client's retries,
failover, identifiers and accounting driven with a fake ``now`` against a fake server built
with pyrad.packet; one round trip through the asyncio driver on the loopback interface."""
from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

import pytest
from pyrad import packet as rp

from fixup.io.aaa.radius import RadiusIo
from fixup.lab.ppp_client_auth import MsChapV1Peer, MsChapV2Peer
from fixup.proto.aaa.config import RADIUS, AaaGroup, AaaHost
from fixup.proto.aaa import ACCT_INTERIM, ACCT_START, ACCT_STOP, AccountingRecord, AuthContext, NasIdentity
from fixup.proto.aaa.radius import IDENTIFIERS, RadiusClient
from fixup.proto.aaa.radius_attributes import (
    BadRadius,
    access_request,
    access_result,
    decode_answer,
    dictionary,
    unhide,
)
from fixup.proto.auth import crypto
from fixup.proto.auth.chap import MsChapV1Authenticator, MsChapV2Authenticator
from fixup.proto.auth.credentials import LocalUsers, VerifyRequest, VerifyResult, verify_locally

pytestmark = pytest.mark.unit

SECRET = b"s3cret"
NAS = NasIdentity(IPv4Address("192.0.2.1"), "fixup-test")
CONTEXT = AuthContext(nas_port=7, calling_station="198.51.100.7", called_station="192.0.2.1", session_id="0000002A")
SERVER_A = ("192.0.2.10", 1812)
SERVER_B = ("192.0.2.11", 1812)
MS = 311  # RFC 2548: Microsoft's vendor id


def hexbytes(text: str) -> bytes:
    return bytes.fromhex(" ".join(text.split()))


# RFC 2865 section 7.1, "User Telnet to Specified Host": nemo / arctangent, secret xyzzy5461.
RFC_SECRET = b"xyzzy5461"
RFC71_REQUEST = hexbytes("""01 00 00 38 0f 40 3f 94 73 97 80 57 bd 83 d5 cb 98 f4 22 7a 01 06 6e 65 6d 6f
    02 12 0d be 70 8d 93 d4 13 ce 31 96 e4 3f 78 2a 0a ee 04 06 c0 a8 01 10 05 06 00 00 00 03""")
RFC71_ACCEPT = hexbytes("""02 00 00 26 86 fe 22 0e 76 24 ba 2a 10 05 f6 bf 9b 55 e0 b2 06 06 00 00 00 01
    0f 06 00 00 00 00 0e 06 c0 a8 01 03""")
# RFC 2865 section 7.2, "Framed User Authenticating with CHAP": flopsy, CHAP ID 0x16.
RFC72_REQUEST = hexbytes("""01 01 00 47 2a ee 86 f0 8d 0d 55 96 9c a5 97 8e 0d 33 67 a2 01 08 66 6c 6f 70
    73 79 03 13 16 e9 75 57 c3 16 18 58 95 f2 93 ff 63 44 07 72 75 04 06 c0 a8 01 10 05 06 00 00 00 14
    06 06 00 00 00 02 07 06 00 00 00 01""")
RFC72_ACCEPT = hexbytes("""02 01 00 38 15 ef bc 7d ab 26 cf a3 dc 34 d9 c0 3c 86 01 a4 06 06 00 00 00 02
    07 06 00 00 00 01 08 06 ff ff ff fe 0a 06 00 00 00 02 0d 06 00 00 00 01 0c 06 00 00 05 dc""")


def host(address: str = SERVER_A[0], *, secret: bytes = SECRET, timeout: float = 5.0, retries: int = 2) -> AaaHost:
    return AaaHost(IPv4Address(address), 1812, secret, timeout, retries, 1813)


def make_client(*hosts: AaaHost, seed: int = 1) -> RadiusClient:
    group = AaaGroup("AuthInbound", RADIUS, hosts or (host(),))
    return RadiusClient(group, NAS, random_bytes=random.Random(seed).randbytes)


def decode(data: bytes, secret: bytes = SECRET) -> rp.Packet:
    """The fake server's view of one of our requests."""
    kind = rp.AcctPacket if data[0] == rp.AccountingRequest else rp.AuthPacket
    return kind(packet=data, dict=dictionary(), secret=secret)


def answer(request: rp.Packet, code: int = rp.AccessAccept, attributes: dict[str, Any] | None = None,
           raw: dict[Any, bytes] | None = None, *, secret: bytes | None = None) -> bytes:
    """The fake server's answer, built with pyrad (Response Authenticator, Message-Authenticator,
    salt encryption of MS-MPPE-*-Key)."""
    reply = request.CreateReply()
    if code != rp.AccountingResponse:
        reply.code = code
    if secret is not None:
        reply.secret = secret
    for name, value in (attributes or {}).items():
        reply[name] = value
    for key, value in (raw or {}).items():
        reply[key] = [value]
    return reply.ReplyPacket()


def sent(client: RadiusClient) -> list[tuple[tuple[str, int], rp.Packet, bytes]]:
    return [(destination, decode(data), data) for destination, data in client.take_datagrams()]


def pap(username: str = "cisco", password: bytes = b"cisco-pw") -> VerifyRequest:
    return VerifyRequest("pap", username, {"password": password})


def chap(identifier: int = 0x16) -> VerifyRequest:
    challenge = bytes(range(16))
    response = hashlib.md5(bytes([identifier]) + b"pw" + challenge).digest()
    return VerifyRequest("chap", "flopsy", {"identifier": identifier, "challenge": challenge, "response": response})


def mschap(version: int, username: str = "alice", password: str = "alice-pw", seed: int = 3) -> VerifyRequest:
    """What our MS-CHAP authenticator asks for a real client's Response (the lab peer)."""
    authenticator = MsChapV1Authenticator() if version == 1 else MsChapV2Authenticator()
    authenticator.random_bytes = random.Random(seed).randbytes
    peer_class = MsChapV1Peer if version == 1 else MsChapV2Peer
    peer = peer_class(username, password, random.Random(seed + 1).randbytes)
    [challenge] = authenticator.start(0.0)
    [response] = peer.receive(challenge, 0.0)
    authenticator.receive(response, 0.0)
    [request] = authenticator.take_verify_requests()
    return request


def round_trip(request: VerifyRequest, code: int = rp.AccessAccept, attributes: dict[str, Any] | None = None,
               raw: dict[Any, bytes] | None = None) -> VerifyResult:
    client = make_client()
    client.authenticate("t", request, CONTEXT, 0.0)
    [(source, server_view, _)] = sent(client)
    client.datagram_in(source, answer(server_view, code, attributes, raw), 0.1)
    [(token, result)] = client.take_results()
    assert token == "t"
    return result


# -- RFC 2865 section 7 vectors ---------------------------------------------------------------


def test_rfc2865_7_1_user_password_hiding() -> None:
    rfc = decode(RFC71_REQUEST, RFC_SECRET)
    request = access_request(pap("nemo", b"arctangent"), CONTEXT, NAS, secret=RFC_SECRET, identifier=0,
                             authenticator=rfc.authenticator)
    assert request[2] == rfc[2] == [hexbytes("0d be 70 8d 93 d4 13 ce 31 96 e4 3f 78 2a 0a ee")]
    assert rfc.PwDecrypt(rfc[2][0]) == "arctangent"


def test_rfc2865_7_1_access_accept_verifies() -> None:
    rfc = decode(RFC71_REQUEST, RFC_SECRET)
    reply = decode_answer(rfc, RFC71_ACCEPT)
    assert reply.code == rp.AccessAccept
    result = access_result(reply, pap("nemo", b"arctangent"), RFC_SECRET, "192.168.1.16:1812")
    assert result.ok and result.account == "nemo" and result.framed_address is None
    tampered = RFC71_ACCEPT[:-1] + b"\x04"  # Login-IP-Host 192.168.1.4
    with pytest.raises(BadRadius):
        decode_answer(rfc, tampered)
    rfc.secret = b"not-the-secret"
    with pytest.raises(BadRadius):
        decode_answer(rfc, RFC71_ACCEPT)


def test_rfc2865_7_2_chap_request_layout_and_accept() -> None:
    rfc = decode(RFC72_REQUEST, RFC_SECRET)
    chap_password = rfc["CHAP-Password"][0]
    request = VerifyRequest("chap", "flopsy", {"identifier": 0x16, "challenge": rfc.authenticator,
                                               "response": chap_password[1:]})
    ours = access_request(request, CONTEXT, NAS, secret=RFC_SECRET, identifier=1, authenticator=rfc.authenticator)
    assert ours["CHAP-Password"] == [chap_password]  # RFC 2865 section 5.3: CHAP Ident + response
    assert ours["CHAP-Challenge"] == [rfc.authenticator]  # section 5.40
    assert ours["Service-Type"] == rfc["Service-Type"] == ["Framed-User"]
    assert ours["Framed-Protocol"] == rfc["Framed-Protocol"] == ["PPP"]
    reply = decode_answer(rfc, RFC72_ACCEPT)  # also carries Framed-Routing, -MTU, -Compression
    result = access_result(reply, request, RFC_SECRET, "192.168.1.16:1812")
    assert result.ok and result.framed_address is None  # 255.255.255.254: the NAS chooses


# -- RFC 2548 key encryption ------------------------------------------------------------------


def rfc2548_salt_encrypt(key: bytes, secret: bytes, request_authenticator: bytes, salt: bytes) -> bytes:
    """RFC 2548 section 2.4.2, written out independently of pyrad: P = Key-Length + Key
    padded to 16-octet blocks; b(1) = MD5(S + R + A), c(i) = p(i) xor b(i),
    b(i) = MD5(S + c(i-1))."""
    plain = bytes([len(key)]) + key
    plain += bytes(-len(plain) % 16)
    out, previous = b"", request_authenticator + salt
    for start in range(0, len(plain), 16):
        pad = hashlib.md5(secret + previous).digest()
        block = bytes(a ^ b for a, b in zip(plain[start:start + 16], pad))
        out, previous = out + block, block
    return salt + out


@pytest.mark.parametrize("size", [16, 32])
def test_rfc2548_mppe_keys_decrypt(size: int) -> None:
    send, recv = bytes(range(1, size + 1)), bytes(range(100, 100 + size))
    client = make_client()
    client.authenticate("t", mschap(2), CONTEXT, 0.0)
    [(source, server_view, _)] = sent(client)
    authenticator = server_view.authenticator
    raw = {(MS, 16): rfc2548_salt_encrypt(send, SECRET, authenticator, b"\x80\x01"),
           (MS, 17): rfc2548_salt_encrypt(recv, SECRET, authenticator, b"\x80\x02")}
    client.datagram_in(source, answer(server_view, raw=raw), 0.1)
    [(_, result)] = client.take_results()
    assert result.keys == crypto.MppeKeys(send[:16], recv[:16])  # 32-octet keys: the first 16


def test_rfc2548_pyrad_salt_encryption_round_trip() -> None:
    key = bytes(range(16))
    result = round_trip(mschap(2), attributes={"MS-MPPE-Send-Key": key, "MS-MPPE-Recv-Key": key[::-1]})
    assert result.keys == crypto.MppeKeys(key, key[::-1])


def test_ms_chap_mppe_keys_unhide_round_trip() -> None:
    authenticator = bytes(range(16))
    request = rp.AuthPacket(secret=SECRET, authenticator=authenticator, dict=dictionary())
    clear = bytes(range(24))
    hidden = request.PwCrypt(clear)  # RFC 2548 section 2.4.1: hidden as User-Password
    assert len(hidden) == 32 and unhide(hidden, SECRET, authenticator) == clear + bytes(8)
    with pytest.raises(BadRadius):
        unhide(hidden[:20], SECRET, authenticator)


# -- Access-Request mapping -------------------------------------------------------------------


def test_access_request_common_attributes_and_message_authenticator() -> None:
    client = make_client()
    client.authenticate("t", pap(), CONTEXT, 0.0)
    [(destination, request, data)] = sent(client)
    assert destination == SERVER_A
    assert list(request.keys())[0] == "Message-Authenticator"  # RFC 2869 section 5.14, first
    assert request.verify_message_authenticator()
    assert request["User-Name"] == ["cisco"]
    assert request["NAS-IP-Address"] == ["192.0.2.1"] and request["NAS-Identifier"] == ["fixup-test"]
    assert request["NAS-Port"] == [7] and request["NAS-Port-Type"] == ["Virtual"]
    assert request["Service-Type"] == ["Framed-User"] and request["Framed-Protocol"] == ["PPP"]
    assert request["Calling-Station-Id"] == ["198.51.100.7"] and request["Called-Station-Id"] == ["192.0.2.1"]
    assert request["Acct-Session-Id"] == ["0000002A"]
    assert request.PwDecrypt(request["User-Password"][0]) == "cisco-pw"


def test_access_request_chap() -> None:
    verify = chap(identifier=9)
    request = access_request(verify, CONTEXT, NAS, secret=SECRET, identifier=1, authenticator=bytes(16))
    assert request["CHAP-Password"] == [b"\x09" + verify.data["response"]]
    assert request["CHAP-Challenge"] == [verify.data["challenge"]]
    assert request.VerifyChapPasswd(b"pw")
    assert "User-Password" not in request


def test_access_request_mschap_v1() -> None:
    verify = mschap(1)
    request = access_request(verify, CONTEXT, NAS, secret=SECRET, identifier=1, authenticator=bytes(16))
    assert request["MS-CHAP-Challenge"] == [verify.data["challenge"]]
    [response] = request["MS-CHAP-Response"]  # RFC 2548 2.1.1: Ident, Flags, LM (24), NT (24)
    assert len(response) == 50 and response[:2] == b"\x00\x01"
    assert response[2:26] == verify.data["lm_response"] and response[26:] == verify.data["nt_response"]


def test_access_request_mschap_v2() -> None:
    verify = mschap(2)
    request = access_request(verify, CONTEXT, NAS, secret=SECRET, identifier=1, authenticator=bytes(16))
    assert request["MS-CHAP-Challenge"] == [verify.data["authenticator_challenge"]]
    [response] = request["MS-CHAP2-Response"]  # RFC 2548 2.3.2: Ident, Flags, Peer-Challenge, 8, NT
    assert len(response) == 50 and response[:2] == b"\x00\x00"
    assert response[2:18] == verify.data["peer_challenge"] and response[18:26] == bytes(8)
    assert response[26:] == verify.data["nt_response"]


@pytest.mark.parametrize("request_", [
    VerifyRequest("eap", "x"),
    VerifyRequest("mschap-v2", "x", {"authenticator_challenge": b"short"}),
    pap("x" * 300),
    pap(password=b"p" * 129),
])
def test_unsendable_requests_fail_at_once(request_: VerifyRequest) -> None:
    client = make_client()
    client.authenticate("t", request_, CONTEXT, 0.0)
    assert client.take_datagrams() == []
    [(_, result)] = client.take_results()
    assert not result.ok and "cannot build" in result.log
    assert client.next_deadline() is None


# -- answer mapping ---------------------------------------------------------------------------


def test_accept_attributes_reach_the_result() -> None:
    result = round_trip(pap(), attributes={
        "Reply-Message": "Welcome", "Framed-IP-Address": "10.1.2.3", "Session-Timeout": 3600,
        "Idle-Timeout": 600, "Acct-Interim-Interval": 300, "Class": b"\x00cls", "User-Name": "CISCO"})
    assert result == VerifyResult(True, message="Welcome", account="CISCO", framed_address=IPv4Address("10.1.2.3"),
                                  session_timeout=3600, idle_timeout=600, interim_interval=300,
                                  radius_class=b"\x00cls", log="accepted by 192.0.2.10:1812")


@pytest.mark.parametrize("address", ["255.255.255.254", "255.255.255.255"])
def test_framed_address_left_to_the_nas(address: str) -> None:
    assert round_trip(pap(), attributes={"Framed-IP-Address": address}).framed_address is None


def test_reject_with_reply_message() -> None:
    result = round_trip(pap(), rp.AccessReject, {"Reply-Message": "Bad password"})
    assert result == VerifyResult(False, message="Bad password", log="rejected by 192.0.2.10:1812: Bad password")


def test_reject_with_ms_chap_error_is_relayed() -> None:
    error = "E=691 R=0 C=00112233445566778899AABBCCDDEEFF V=3 M=Authentication failed"
    result = round_trip(mschap(2), rp.AccessReject, {"MS-CHAP-Error": b"\x01" + error.encode()})
    assert not result.ok and result.message == error
    assert result.log.startswith("rejected by 192.0.2.10:1812: E=691")


def test_access_challenge_is_a_failure() -> None:
    result = round_trip(pap(), rp.AccessChallenge, {"Reply-Message": "Enter PIN", "State": b"s1"})
    assert not result.ok and "challenges are not supported" in result.log


def server_v2_accept(request: VerifyRequest, password: str) -> dict[str, Any]:
    """What a server knowing ``password`` answers (RFC 2759 section 8.7, RFC 3079 section 3)."""
    data, name = request.data, request.username_bytes
    password_hash = crypto.nt_password_hash(password)
    success = crypto.generate_authenticator_response(password_hash, data["nt_response"], data["peer_challenge"],
                                                     data["authenticator_challenge"], name)
    keys = crypto.mschap2_mppe_keys(password_hash, data["nt_response"])
    return {"MS-CHAP2-Success": b"\x00" + success.encode(), "MS-MPPE-Send-Key": keys.send_key,
            "MS-MPPE-Recv-Key": keys.recv_key}


def test_mschap_v2_accept_matches_the_local_verifier() -> None:
    request = mschap(2)
    local = verify_locally(request, LocalUsers({"alice": "alice-pw"}))
    result = round_trip(request, attributes=server_v2_accept(request, "alice-pw"))
    assert result.ok and result.keys == local.keys
    assert result.authenticator_response == local.authenticator_response
    assert result.message == ""  # the authenticator writes "S=... M=Access granted" itself


def test_mschap_v2_accept_without_success_or_keys() -> None:
    result = round_trip(mschap(2))
    assert result.ok and result.keys is None and result.authenticator_response is None
    assert "no MPPE keys" in result.log and "no MS-CHAP2-Success" in result.log


def v1_mppe_keys(request: VerifyRequest, password: str) -> bytes:
    """RFC 2548 section 2.4.1, clear: LM-Key (the LM hash's first 8 octets), NT-Key (the NT
    password hash hash, as servers send it)."""
    lm_key = crypto.lm_password_hash(password)[:8]
    return lm_key + crypto.hash_nt_password_hash(crypto.nt_password_hash(password))


def test_mschap_v1_keys_match_the_local_verifier() -> None:
    request = mschap(1)
    local = verify_locally(request, LocalUsers({"alice": "alice-pw"}))
    client = make_client()
    client.authenticate("t", request, CONTEXT, 0.0)
    [(source, server_view, _)] = sent(client)
    hidden = server_view.PwCrypt(v1_mppe_keys(request, "alice-pw"))
    client.datagram_in(source, answer(server_view, raw={(MS, 12): hidden}), 0.1)
    [(_, result)] = client.take_results()
    assert result.ok and result.keys == local.keys and result.keys.lm_key is not None
    for bits in (40, 56, 128):
        assert result.keys.start_keys(bits) == local.keys.start_keys(bits)


def test_mschap_v1_prefers_send_and_recv_keys() -> None:
    request = mschap(1)
    client = make_client()
    client.authenticate("t", request, CONTEXT, 0.0)
    [(source, server_view, _)] = sent(client)
    raw = {(MS, 12): server_view.PwCrypt(bytes(8) + bytes(range(16)))}  # LM-Key unknown (zero)
    attributes = {"MS-MPPE-Send-Key": b"S" * 16, "MS-MPPE-Recv-Key": b"R" * 16}
    client.datagram_in(source, answer(server_view, attributes=attributes, raw=raw), 0.1)
    [(_, result)] = client.take_results()
    assert result.keys == crypto.MppeKeys(b"S" * 16, b"R" * 16, None)


def test_mschap_v1_accept_without_keys() -> None:
    result = round_trip(mschap(1))
    assert result.ok and result.keys is None


# -- answers that are dropped -----------------------------------------------------------------


def test_wrong_authenticator_is_dropped_not_an_answer() -> None:
    client = make_client()
    client.authenticate("t", pap(), CONTEXT, 0.0)
    [(source, server_view, _)] = sent(client)
    client.datagram_in(source, answer(server_view, secret=b"wrong"), 0.1)
    assert client.take_results() == []
    [event] = client.take_events()
    assert event.kind == "aaa-bad-answer" and "does not verify" in event.text
    assert client.snapshot()["hosts"][0]["bad_answers"] == 1
    client.datagram_in(source, answer(server_view), 0.2)  # the real answer still counts
    [(_, result)] = client.take_results()
    assert result.ok


def test_unmatched_answers_are_dropped() -> None:
    client = make_client()
    client.authenticate("t", pap(), CONTEXT, 0.0)
    [(source, server_view, _)] = sent(client)
    reply = answer(server_view)
    client.datagram_in(("192.0.2.99", 1812), reply, 0.1)  # not a server of the group
    client.datagram_in((source[0], 1999), reply, 0.1)  # right address, wrong port
    other = bytes([reply[0], (reply[1] + 1) % 256]) + reply[2:]
    client.datagram_in(source, other, 0.1)  # another Identifier
    client.datagram_in(source, b"\x02\x00", 0.1)  # shorter than a header
    assert client.take_results() == []
    kinds = [event.kind for event in client.take_events()]
    assert kinds == ["aaa-bad-answer", "aaa-bad-answer", "aaa-late-answer", "aaa-bad-answer"]
    snapshot = client.snapshot()
    assert snapshot["unknown_sources"] == 2 and snapshot["hosts"][0]["late_answers"] == 1
    client.datagram_in(source, reply, 0.2)
    client.datagram_in(source, reply, 0.3)  # a duplicate after the answer: late
    assert len(client.take_results()) == 1
    assert client.snapshot()["hosts"][0]["late_answers"] == 2


def test_garbage_from_the_server_is_counted() -> None:
    client = make_client()
    client.authenticate("t", pap(), CONTEXT, 0.0)
    [(source, request, data)] = sent(client)
    client.datagram_in(source, bytes([2, data[1]]) + b"\xff\xff" + bytes(16), 0.1)
    client.datagram_in(source, bytes([4, data[1], 0, 20]) + bytes(16), 0.1)  # not an answer Code
    assert [event.kind for event in client.take_events()] == ["aaa-bad-answer", "aaa-bad-answer"]
    assert client.snapshot()["hosts"][0]["bad_answers"] == 2 and client.take_results() == []


# -- retries, failover, the active server -----------------------------------------------------


def test_retries_then_failover_then_failure() -> None:
    client = make_client(host(timeout=5, retries=2), host(SERVER_B[0], secret=b"other", timeout=3, retries=0))
    client.authenticate("t", pap(), CONTEXT, 100.0)
    [(destination, first, data)] = sent(client)
    assert destination == SERVER_A and client.next_deadline() == 105.0
    client.poll(104.9)
    assert client.take_datagrams() == []
    client.poll(105.0)
    assert client.take_datagrams() == [(SERVER_A, data)]  # RFC 5080 2.2.1: the same packet again
    client.poll(110.0)
    assert client.take_datagrams() == [(SERVER_A, data)]
    client.poll(115.0)
    [(destination, second, _)] = [(d, decode(p, b"other"), p) for d, p in client.take_datagrams()]
    assert destination == SERVER_B and second.authenticator != first.authenticator
    assert second.PwDecrypt(second["User-Password"][0]) == "cisco-pw"  # hidden with B's secret
    assert [event.kind for event in client.take_events()] == ["aaa-timeout", "aaa-failover"]
    assert client.next_deadline() == 118.0
    client.poll(118.0)
    [(_, result)] = client.take_results()
    assert result == VerifyResult(False, log="no answer from RADIUS group AuthInbound "
                                             "(hosts 192.0.2.10:1812, 192.0.2.11:1812)")
    assert client.next_deadline() is None and client.take_datagrams() == []
    hosts = client.snapshot()["hosts"]
    assert (hosts[0]["requests"], hosts[0]["timeouts"], hosts[1]["requests"], hosts[1]["timeouts"]) == (3, 3, 1, 1)


def test_the_server_that_answered_is_tried_first_next_time() -> None:
    client = make_client(host(timeout=1, retries=0), host(SERVER_B[0], timeout=1, retries=0))
    client.authenticate("t1", pap(), CONTEXT, 0.0)
    client.take_datagrams()
    client.poll(1.0)
    [(destination, request, _)] = sent(client)
    assert destination == SERVER_B
    client.datagram_in(destination, answer(request), 1.5)
    assert client.snapshot()["hosts"][1]["active"] == ["authentication"]
    client.authenticate("t2", pap(), CONTEXT, 2.0)
    [(destination, request, _)] = sent(client)
    assert destination == SERVER_B
    client.poll(3.0)  # B silent now: round the group to A
    assert [d for d, _ in client.take_datagrams()] == [SERVER_A]


def test_cancel_forgets_the_request() -> None:
    client = make_client()
    client.authenticate("t", pap(), CONTEXT, 0.0)
    [(source, request, _)] = sent(client)
    client.cancel("t")
    assert client.next_deadline() is None
    client.datagram_in(source, answer(request), 0.1)
    assert client.take_results() == [] and client.snapshot()["hosts"][0]["late_answers"] == 1


def test_same_token_replaces_the_pending_request() -> None:
    client = make_client()
    client.authenticate("t", pap(), CONTEXT, 0.0)
    [(source, old, _)] = sent(client)
    client.authenticate("t", pap(password=b"again"), CONTEXT, 0.5)
    [(_, new, _)] = sent(client)
    client.datagram_in(source, answer(old), 0.6)
    client.datagram_in(source, answer(new, rp.AccessReject), 0.6)
    assert [result.ok for _, result in client.take_results()] == [False]


# -- identifiers ------------------------------------------------------------------------------


def test_identifier_exhaustion_queues() -> None:
    client = make_client()
    for token in range(IDENTIFIERS + 2):
        client.authenticate(token, pap(), CONTEXT, 0.0)
    out = sent(client)
    assert len(out) == IDENTIFIERS and len({request.id for _, request, _ in out}) == IDENTIFIERS
    assert [event.kind for event in client.take_events()] == ["aaa-queued"]
    assert client.snapshot()["queued"] == 2
    source, request, _ = out[10]
    client.datagram_in(source, answer(request), 1.0)
    [(_, queued, _)] = sent(client)  # the first one waiting goes out at once, on the freed Identifier
    assert queued.id == request.id and client.snapshot()["queued"] == 1
    client.cancel(20)  # the session of token 20 went away: its Identifier is free
    assert client.next_deadline() == 1.0  # a waiting request can go: poll at once
    client.poll(1.0)
    assert len(client.take_datagrams()) == 1 and client.snapshot()["queued"] == 0


def test_accounting_and_authentication_have_separate_identifier_spaces() -> None:
    client = make_client()
    client.authenticate("t", pap(), CONTEXT, 0.0)
    client.account(record(ACCT_START), 0.0)
    destinations = [destination for destination, _ in client.take_datagrams()]
    assert destinations == [SERVER_A, (SERVER_A[0], 1813)]


# -- accounting -------------------------------------------------------------------------------


def record(status: str, **changes: Any) -> AccountingRecord:
    values: dict[str, Any] = {"status": status, "context": CONTEXT, "username": "cisco",
                              "framed_address": IPv4Address("10.0.0.5")}
    if status != ACCT_START:
        values.update(session_time=61, input_octets=5 * 2**32 + 7, output_octets=2**32 - 1,
                      input_packets=11, output_packets=12)
    return AccountingRecord(**{**values, **changes})


def test_accounting_start() -> None:
    client = make_client()
    client.account(record(ACCT_START, radius_class=b"cls"), 0.0)
    [(destination, request, _)] = sent(client)
    assert destination == (SERVER_A[0], 1813) and request.VerifyAcctRequest()  # RFC 2866 section 3
    assert request["Acct-Status-Type"] == ["Start"] and request["Acct-Authentic"] == ["RADIUS"]
    assert request["Acct-Session-Id"] == ["0000002A"] and request["User-Name"] == ["cisco"]
    assert request["Framed-IP-Address"] == ["10.0.0.5"] and request["Class"] == [b"cls"]
    assert request["NAS-Port"] == [7] and request["Acct-Delay-Time"] == [0]
    assert "Acct-Session-Time" not in request and "Acct-Terminate-Cause" not in request


def test_accounting_stop_with_gigawords() -> None:
    client = make_client()
    client.account(record(ACCT_STOP, terminate_cause="idle-timeout"), 0.0)
    [(_, request, _)] = sent(client)
    assert request["Acct-Status-Type"] == ["Stop"] and request["Acct-Session-Time"] == [61]
    assert (request["Acct-Input-Octets"], request["Acct-Input-Gigawords"]) == ([7], [5])  # RFC 2869 5.1
    assert (request["Acct-Output-Octets"], request["Acct-Output-Gigawords"]) == ([2**32 - 1], [0])
    assert (request["Acct-Input-Packets"], request["Acct-Output-Packets"]) == ([11], [12])
    assert request["Acct-Terminate-Cause"] == ["Idle-Timeout"]


def test_accounting_interim_and_response() -> None:
    client = make_client()
    client.account(record(ACCT_INTERIM), 0.0)
    [(source, request, _)] = sent(client)
    assert request["Acct-Status-Type"] == ["Interim-Update"] and "Acct-Terminate-Cause" not in request
    assert client.pending_accounting == 1
    client.datagram_in(source, answer(request, rp.AccountingResponse), 0.1)
    assert client.pending_accounting == 0 and client.take_results() == [] and client.next_deadline() is None
    assert client.snapshot()["hosts"][0]["answers"] == 1


def test_full_identifier_space_of_accounting_retransmits_never_deadlocks() -> None:
    """256 Accounting-Requests outstanding to a dead server: each retransmission needs a new
    Identifier (RFC 2866 section 5.2) and must not wait holding its old one, so they all time out
    and are reported lost (one host) instead of waiting forever with no timer."""
    client = make_client()
    for index in range(IDENTIFIERS):
        client.account(record(ACCT_START, context=AuthContext(index, "198.51.100.7", "192.0.2.1", f"S{index}")), 0.0)
    now, polls = 0.0, 0
    while client.next_deadline() is not None and polls < 10_000:
        now = max(now, client.next_deadline())
        client.poll(now)
        polls += 1
    assert client.pending_accounting == 0
    assert [e.kind for e in client.take_events()].count("aaa-accounting-lost") == IDENTIFIERS


def test_acct_delay_time_grows_with_a_new_identifier() -> None:
    client = make_client(host(timeout=2, retries=2))
    client.account(record(ACCT_STOP), 10.0)
    delays, identifiers = [], []
    for now in (10.0, 12.0, 14.0):
        client.poll(now)
        [(_, request, _)] = sent(client)
        delays.append(request["Acct-Delay-Time"][0])
        identifiers.append(request.id)
    assert delays == [0, 2, 4] and len(set(identifiers)) == 3  # RFC 2866 section 5.2
    client.datagram_in((SERVER_A[0], 1813), answer(request, rp.AccountingResponse), 14.5)
    assert client.pending_accounting == 0


def test_accounting_lost_when_no_server_answers() -> None:
    client = make_client(host(timeout=1, retries=0), host(SERVER_B[0], timeout=1, retries=0))
    client.account(record(ACCT_STOP), 0.0)
    client.poll(1.0)
    client.poll(2.0)
    events = client.take_events()
    assert [event.kind for event in events] == ["aaa-timeout", "aaa-failover", "aaa-timeout", "aaa-accounting-lost"]
    assert "192.0.2.10:1813, 192.0.2.11:1813" in events[-1].text and "'cisco'" in events[-1].text
    assert client.snapshot()["accounting_lost"] == 1 and client.pending_accounting == 0


def test_unusable_accounting_record_is_reported_lost() -> None:
    client = make_client()
    client.account(record(ACCT_STOP, terminate_cause="meteor"), 0.0)
    [event] = client.take_events()
    assert event.kind == "aaa-accounting-lost" and "meteor" in event.text
    assert client.take_datagrams() == []


def test_abandon_reports_everything_pending() -> None:
    client = make_client()
    client.authenticate("t", pap(), CONTEXT, 0.0)
    client.account(record(ACCT_START), 0.0)
    client.abandon("stopping")
    assert client.take_results() == [("t", VerifyResult(False, log="stopping"))]
    assert [event.kind for event in client.take_events()] == ["aaa-accounting-lost"]
    assert client.next_deadline() is None


def test_snapshot_shape() -> None:
    client = make_client()
    client.authenticate("t", pap(), CONTEXT, 0.0)
    snapshot = client.snapshot()
    assert snapshot["group"] == "AuthInbound" and snapshot["protocol"] == "radius"
    assert snapshot["pending"] == {"authentication": 1, "accounting": 0}
    [row] = snapshot["hosts"]
    assert row["host"] == "192.0.2.10:1812" and row["accounting_port"] == 1813
    assert (row["requests"], row["answers"], row["timeouts"], row["bad_answers"], row["pending"]) == (1, 0, 0, 0, 1)


# -- the asyncio driver, on the loopback interface --------------------------------------------


class _FakeServer(asyncio.DatagramProtocol):
    def __init__(self, respond: Callable[[rp.Packet], bytes | None]) -> None:
        self.respond = respond
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self.respond(decode(data))
        assert self.transport is not None
        self.transport.sendto(b"junk", addr)  # must not disturb the client
        if reply is not None:
            self.transport.sendto(reply, addr)


def test_radius_io_round_trip() -> None:
    async def scenario() -> tuple[list[Any], list[Any], dict[str, Any]]:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _FakeServer(lambda request: answer(request, attributes={"Reply-Message": "hi"})
                                if request.code == rp.AccessRequest else answer(request, rp.AccountingResponse)),
            local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
        server = AaaHost(IPv4Address("127.0.0.1"), port, SECRET, 1.0, 1, port)
        results: list[Any] = []
        events: list[Any] = []
        done = asyncio.Event()
        io = RadiusIo(AaaGroup("Loop", RADIUS, (server,)), NasIdentity(IPv4Address("127.0.0.1")),
                      on_result=lambda token, result: (results.append((token, result)), done.set()),
                      on_event=events.append)
        await io.start()
        io.authenticate("t", pap(), CONTEXT)
        assert results == []  # never from inside authenticate
        await asyncio.wait_for(done.wait(), 5)
        io.account(record(ACCT_START))
        await io.stop(grace=2.0)
        transport.close()
        return results, events, io.snapshot()

    results, events, snapshot = asyncio.run(scenario())
    [(token, result)] = results
    assert token == "t" and result.ok and result.message == "hi"
    assert snapshot["pending"] == {"authentication": 0, "accounting": 0} and snapshot["accounting_lost"] == 0
    assert snapshot["source"] == "127.0.0.1"
    assert {event.kind for event in events} <= {"aaa-bad-answer", "aaa-late-answer"}


def test_radius_io_sends_unbound_when_the_nas_address_is_not_ours() -> None:
    async def scenario() -> dict[str, Any]:
        io = RadiusIo(AaaGroup("Far", RADIUS, (host(),)), NasIdentity(IPv4Address("192.0.2.1")),
                      on_result=lambda token, result: None, on_event=lambda event: None)
        await io.start()
        await io.stop()
        return io.snapshot()

    assert asyncio.run(scenario())["source"] == "unbound"
