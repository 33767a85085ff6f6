"""PAP (RFC 1334), CHAP-MD5 (RFC 1994), MS-CHAP v1 (RFC 2433) and v2 (RFC 2759) authenticators,
their packet codecs, local users and ``verify_locally``.  Byte vectors from the PIX seed
(001_78fc8e2d733fd35b.txt lines 95, 132, 134) and RFC 2759 section 9.2."""
from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fixup.errors import BadAuth, BadInput
from fixup.proto.auth import (
    AUTHENTICATORS,
    CHAP_MD5,
    MSCHAP_V1,
    MSCHAP_V2,
    PAP,
    ChapMd5Authenticator,
    LocalUsers,
    MsChapV1Authenticator,
    MsChapV2Authenticator,
    PapAuthenticator,
    VerifyRequest,
    VerifyResult,
    verify_locally,
)
from fixup.proto.auth import crypto
from fixup.proto.auth.chap import (
    CHALLENGE,
    ChapPacket,
    build_challenge,
    build_failure,
    build_mschap_v1_response,
    build_mschap_v2_response,
    build_response,
    build_success,
    parse_chap,
)
from fixup.proto.auth.pap import (
    AUTHENTICATE_ACK,
    AUTHENTICATE_NAK,
    PapPacket,
    build_pap_reply,
    build_pap_request,
    parse_pap,
)

pytestmark = pytest.mark.unit

h = bytes.fromhex

# 001 line 132 (Windows 98 client) "PPP xmit ... data: ff03c2230101000d08d36602863630eca8": the
# PIX's MS-CHAP v1 Challenge, Identifier 1, 8-octet value, no Name.
SEED_V1_CHALLENGE = h("0101000d08d36602863630eca8")
# 001 line 134 (NT client) "data: ff03c2230101000d08f3686cc47e37ce67"
SEED_V1_CHALLENGE_NT = h("0101000d08f3686cc47e37ce67")
# 001 lines 132 and 134: "PPP xmit, ifc = 0, Len: 8 data: ff03c22303010004": Success, no message.
SEED_SUCCESS = h("03010004")
# 001 line 95 (Windows 98 PPP log): "c2 23 04 01 00 1a 41 75 ... 6c 65 64 2e": Failure, Identifier
# 1, Length 26, "Authentication failed."
SEED_FAILURE = h("0401001a") + b"Authentication failed."

# RFC 2759 section 9.2.
USER = "User"
PASSWORD = "clientPass"
AUTH_CHALLENGE = h("5B5D7C7D7B3F2F3E3C2C602132262628")
PEER_CHALLENGE = h("21402324255E262A28295F2B3A337C7E")
NT_RESPONSE = h("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF")
AUTHENTICATOR_RESPONSE = "S=407A5589115FD0D6209F510FE9C04566932CDA56"


def fixed_random(*chunks: bytes) -> Callable[[int], bytes]:
    """Injected randomness: hands out ``chunks`` in order, then zeros."""
    queue = list(chunks)

    def random_bytes(size: int) -> bytes:
        chunk = queue.pop(0) if queue else b"\x00" * size
        assert len(chunk) == size
        return chunk

    return random_bytes


USERS = LocalUsers({"cisco": "cisco", USER: PASSWORD, "DOMAIN\\admin": "secret", "admin": "other"})


# --- local users (seed 001 lines 88-97) ---------------------------------------------------------


def test_domain_prefix_falls_back_to_plain_name() -> None:
    assert USERS.password_for("cisco") == "cisco"
    assert USERS.password_for("DOMAIN\\cisco") == "cisco"
    assert USERS.account_for("DOMAIN\\cisco") == "cisco"
    assert USERS.password_for("A\\B\\cisco") == "cisco"


def test_defined_domain_name_wins() -> None:
    assert USERS.password_for("DOMAIN\\admin") == "secret"
    assert USERS.password_for("OTHER\\admin") == "other"


def test_unknown_user() -> None:
    assert USERS.password_for("nobody") is None
    assert USERS.password_for("DOMAIN\\") is None
    assert verify_locally(VerifyRequest(PAP, "nobody", {"password": b"x"}), USERS).ok is False


# --- verify_locally ---------------------------------------------------------------------------


def test_verify_pap() -> None:
    assert verify_locally(VerifyRequest(PAP, "cisco", {"password": b"cisco"}), USERS).ok
    result = verify_locally(VerifyRequest(PAP, "cisco", {"password": b"wrong"}), USERS)
    assert not result.ok and result.message == "Authentication failed."


def test_verify_chap_md5() -> None:
    """RFC 1994 section 4.1: MD5(Identifier + secret + Challenge)."""
    challenge = bytes(range(16))
    response = hashlib.md5(b"\x07" + b"cisco" + challenge).digest()
    data = {"identifier": 7, "challenge": challenge, "response": response}
    assert verify_locally(VerifyRequest(CHAP_MD5, "cisco", data), USERS).ok
    data["identifier"] = 8
    assert not verify_locally(VerifyRequest(CHAP_MD5, "cisco", data), USERS).ok


def test_verify_mschap_v2_gives_authenticator_response_and_keys() -> None:
    data = {"authenticator_challenge": AUTH_CHALLENGE, "peer_challenge": PEER_CHALLENGE,
            "nt_response": NT_RESPONSE, "flags": 0}
    result = verify_locally(VerifyRequest(MSCHAP_V2, USER, data), USERS)
    assert result.ok and result.account == USER
    assert result.authenticator_response == AUTHENTICATOR_RESPONSE
    assert result.keys is not None
    assert result.keys.send_key == h("8B7CDC149B993A1BA118CB153F56DCCB")  # RFC 3079 3.5.3


def test_verify_mschap_v2_with_domain_prefix() -> None:
    """Seed 001 lines 88-97: "DOMAIN\\User" authenticates as "User"; RFC 2759 section 8.2
    hashes the name without the domain, so the RFC 2759 NT-Response still matches."""
    data = {"authenticator_challenge": AUTH_CHALLENGE, "peer_challenge": PEER_CHALLENGE,
            "nt_response": NT_RESPONSE, "flags": 0}
    result = verify_locally(VerifyRequest(MSCHAP_V2, "DOMAIN\\User", data), USERS)
    assert result.ok and result.account == USER
    assert result.authenticator_response == AUTHENTICATOR_RESPONSE


def test_verify_mschap_v1_refuses_lm_only() -> None:
    challenge = h("102DB5DF085D3041")
    nt = crypto.nt_challenge_response(challenge, "cisco")
    data = {"challenge": challenge, "lm_response": b"\x00" * 24, "nt_response": nt, "flags": 1}
    good = verify_locally(VerifyRequest(MSCHAP_V1, "cisco", data), USERS)
    assert good.ok and good.keys is not None and good.keys.lm_key is not None
    assert not verify_locally(VerifyRequest(MSCHAP_V1, "cisco", {**data, "flags": 0}), USERS).ok


def test_verify_malformed_request_fails_cleanly() -> None:
    assert not verify_locally(VerifyRequest(MSCHAP_V2, USER, {"flags": 0}), USERS).ok
    assert not verify_locally(VerifyRequest("eap", USER, {}), USERS).ok


# --- PAP --------------------------------------------------------------------------------------


def test_pap_codec_round_trip_and_padding() -> None:
    request = build_pap_request(5, b"cisco", b"pw")
    assert request == h("0105000d") + b"\x05cisco\x02pw"
    assert parse_pap(request + b"\x00\x00") == PapPacket(1, 5, peer_id=b"cisco", password=b"pw")
    assert parse_pap(build_pap_reply(AUTHENTICATE_NAK, 5, b"no")) == PapPacket(3, 5, message=b"no")


@pytest.mark.parametrize("info", [
    h("0105"),  # short header
    h("01050003"),  # Length below 4
    h("0105000a05636973"),  # Length past the data
    h("0105000805636973"),  # Peer-ID runs past Length
    h("0105000803616263"),  # Password length missing
    h("09050004"),  # unknown Code
])
def test_pap_malformed(info: bytes) -> None:
    with pytest.raises(BadAuth) as caught:
        parse_pap(info)
    assert isinstance(caught.value, BadInput) and caught.value.reason == "bad-auth"


def test_pap_success_and_repeated_request() -> None:
    pap = PapAuthenticator()
    assert pap.start(0.0) == []
    assert pap.receive(build_pap_request(1, b"cisco", b"cisco"), 1.0) == []
    [request] = pap.take_verify_requests()
    assert request == VerifyRequest(PAP, "cisco", {"password": b"cisco"})
    assert pap.take_verify_requests() == []
    [ack] = pap.complete(verify_locally(request, USERS))
    assert parse_pap(ack).code == AUTHENTICATE_ACK and parse_pap(ack).identifier == 1
    assert pap.outcome == "success" and pap.username == "cisco"
    assert pap.receive(build_pap_request(1, b"cisco", b"cisco"), 2.0) == [ack]
    assert pap.take_verify_requests() == []


def test_pap_request_repeated_while_verifying_is_answered_once() -> None:
    pap = PapAuthenticator()
    pap.start(0.0)
    pap.receive(build_pap_request(1, b"cisco", b"cisco"), 1.0)
    pap.receive(build_pap_request(2, b"cisco", b"cisco"), 2.0)
    [request] = pap.take_verify_requests()
    [ack] = pap.complete(verify_locally(request, USERS))
    assert parse_pap(ack).identifier == 2  # the newest request is the one the peer waits on


def test_pap_gives_up_after_max_failures() -> None:
    pap = PapAuthenticator(max_failures=2)
    pap.start(0.0)
    pap.receive(build_pap_request(1, b"cisco", b"bad"), 1.0)
    [nak] = pap.complete(verify_locally(pap.take_verify_requests()[0], USERS))
    assert parse_pap(nak) == PapPacket(AUTHENTICATE_NAK, 1, message=b"Authentication failed.")
    assert pap.outcome is None
    assert pap.receive(build_pap_request(1, b"cisco", b"bad"), 1.5) == [nak]  # repeat: same Nak
    assert pap.take_verify_requests() == []
    pap.receive(build_pap_request(2, b"cisco", b"bad2"), 2.0)
    [nak2] = pap.complete(verify_locally(pap.take_verify_requests()[0], USERS))
    assert parse_pap(nak2).code == AUTHENTICATE_NAK
    assert pap.outcome == "failure"
    assert parse_pap(pap.receive(build_pap_request(3, b"cisco", b"cisco"), 3.0)[0]).code == 3


def test_pap_times_out_without_request() -> None:
    pap = PapAuthenticator(timeout=30.0)
    pap.start(0.0)
    assert pap.deadline == 30.0
    pap.poll(29.9)
    assert pap.outcome is None
    pap.poll(30.0)
    assert pap.outcome == "failure" and pap.deadline is None


# --- CHAP codec -------------------------------------------------------------------------------


def test_chap_codec_matches_seed_packets() -> None:
    assert build_challenge(1, h("d36602863630eca8")) == SEED_V1_CHALLENGE
    assert parse_chap(SEED_V1_CHALLENGE_NT) == ChapPacket(CHALLENGE, 1, value=h("f3686cc47e37ce67"))
    assert build_success(1) == SEED_SUCCESS
    assert build_failure(1, b"Authentication failed.") == SEED_FAILURE
    assert parse_chap(SEED_FAILURE).message == b"Authentication failed."


def test_chap_response_round_trip_with_name() -> None:
    packet = build_response(9, b"\x01" * 16, b"john")
    assert parse_chap(packet + b"\xff") == ChapPacket(2, 9, value=b"\x01" * 16, name=b"john")


@pytest.mark.parametrize("info", [
    h("020100"),  # short header
    h("02010008"),  # Length past the data
    h("0201000410"),  # no Value-Size within Length
    h("0201000610aa"),  # Value runs past Length
    h("0701000400"),  # Change-Password: not supported
])
def test_chap_malformed(info: bytes) -> None:
    with pytest.raises(BadAuth):
        parse_chap(info)


# --- CHAP-MD5 ---------------------------------------------------------------------------------


def test_chap_md5_failure_is_the_pix_failure() -> None:
    chap = ChapMd5Authenticator(random_bytes=fixed_random(b"\x11" * 16))
    [challenge] = chap.start(0.0)
    assert challenge == build_challenge(1, b"\x11" * 16)
    response = hashlib.md5(b"\x01" + b"wrong" + b"\x11" * 16).digest()
    assert chap.receive(build_response(1, response, b"cisco"), 1.0) == []
    [request] = chap.take_verify_requests()
    assert request.method == CHAP_MD5 and request.data["identifier"] == 1
    assert chap.complete(verify_locally(request, USERS)) == [SEED_FAILURE]
    assert chap.outcome == "failure" and chap.keys is None


def test_chap_md5_success() -> None:
    chap = ChapMd5Authenticator(random_bytes=fixed_random(b"\x22" * 16), name=b"pix")
    [challenge] = chap.start(0.0)
    assert parse_chap(challenge).name == b"pix"
    response = hashlib.md5(b"\x01" + b"cisco" + b"\x22" * 16).digest()
    chap.receive(build_response(1, response, b"cisco"), 1.0)
    assert chap.complete(verify_locally(chap.take_verify_requests()[0], USERS)) == [SEED_SUCCESS]
    assert chap.outcome == "success" and chap.username == "cisco"


def test_challenge_retransmitted_every_3s_then_give_up() -> None:
    chap = ChapMd5Authenticator(random_bytes=fixed_random(b"\x33" * 16))
    [first] = chap.start(0.0)
    sent = [first]
    now = 0.0
    assert chap.poll(2.9) == []
    while chap.outcome is None:
        assert chap.deadline == now + 3.0
        now += 3.0
        sent += chap.poll(now)
    assert len(sent) == 10 and set(sent) == {first}  # unchanged: same Identifier and value
    assert chap.outcome == "failure" and chap.deadline is None


def test_response_after_giving_up_is_ignored() -> None:
    chap = ChapMd5Authenticator(random_bytes=fixed_random(b"\x55" * 16), max_challenges=1)
    chap.start(0.0)
    chap.poll(3.0)
    assert chap.outcome == "failure"
    assert chap.receive(build_response(1, b"\x00" * 16, b"cisco"), 4.0) == []
    assert chap.take_verify_requests() == []


def test_response_with_stale_identifier_is_discarded() -> None:
    chap = ChapMd5Authenticator(random_bytes=fixed_random(b"\x44" * 16), first_identifier=7)
    chap.start(0.0)
    assert chap.receive(build_response(6, b"\x00" * 16, b"cisco"), 1.0) == []
    assert chap.take_verify_requests() == [] and chap.deadline == 3.0


# --- MS-CHAP v1 -------------------------------------------------------------------------------


def v1_session(password: str, flags: int = 1) -> tuple[MsChapV1Authenticator, bytes]:
    challenge = h("d36602863630eca8")
    chap = MsChapV1Authenticator(random_bytes=fixed_random(challenge))
    assert chap.start(0.0) == [SEED_V1_CHALLENGE]
    nt = crypto.nt_challenge_response(challenge, password)
    # 001 line 134: the NT client's Response, Value-Size 0x31, LM-Response all zero.
    response = build_response(1, build_mschap_v1_response(b"", nt, flags), b"john")
    assert response.startswith(h("0201003a31") + b"\x00" * 24)
    return chap, response


def test_mschap_v1_success_repeated_like_the_seed() -> None:
    users = LocalUsers({"john": "cisco"})
    chap, response = v1_session("cisco")
    assert chap.receive(response, 1.0) == []
    assert chap.receive(response, 1.1) == []  # still verifying: no second request
    [request] = chap.take_verify_requests()
    assert request.method == MSCHAP_V1 and request.username == "john"
    assert chap.complete(verify_locally(request, users)) == [SEED_SUCCESS]
    # 001 line 134: the client sent its Response twice and got Success twice.
    assert chap.receive(response, 2.0) == [SEED_SUCCESS]
    assert chap.keys == crypto.mschap1_mppe_keys(
        crypto.nt_password_hash("cisco"), h("d36602863630eca8"), crypto.lm_password_hash("cisco")
    )


def test_mschap_v1_wrong_password_is_691() -> None:
    chap, response = v1_session("wrong")
    chap.receive(response, 1.0)
    [failure] = chap.complete(verify_locally(chap.take_verify_requests()[0], USERS))
    assert parse_chap(failure).message == b"E=691 R=0"
    assert chap.outcome == "failure"


def test_mschap_v1_lm_only_refused_without_verifier() -> None:
    chap, response = v1_session("cisco", flags=0)
    [failure] = chap.receive(response, 1.0)
    assert parse_chap(failure).message == b"E=691 R=0"
    assert chap.take_verify_requests() == []
    assert chap.outcome == "failure"


def test_mschap_v1_response_value_size_checked() -> None:
    chap = MsChapV1Authenticator(random_bytes=fixed_random(b"\x00" * 8))
    chap.start(0.0)
    with pytest.raises(BadAuth):
        chap.receive(build_response(1, b"\x00" * 48, b"john"), 1.0)
    assert chap.outcome is None


def test_mschap_requires_keys_when_asked() -> None:
    """Seed 001 line 150: "missing MPPE key from aaa server" ends the call."""
    chap, response = v1_session("cisco")
    chap.require_keys = True
    chap.receive(response, 1.0)
    chap.take_verify_requests()
    [failure] = chap.complete(VerifyResult(True))
    assert parse_chap(failure).code == 4 and chap.outcome == "failure"
    assert chap.reason == "missing MPPE keys from the verifier"


# --- MS-CHAP v2 -------------------------------------------------------------------------------


def v2_session(*randomness: bytes) -> tuple[MsChapV2Authenticator, bytes]:
    chap = MsChapV2Authenticator(random_bytes=fixed_random(AUTH_CHALLENGE, *randomness))
    [challenge] = chap.start(0.0)
    assert challenge == h("01010015") + b"\x10" + AUTH_CHALLENGE
    value = build_mschap_v2_response(PEER_CHALLENGE, NT_RESPONSE)
    return chap, build_response(1, value, USER.encode())


def test_mschap_v2_rfc2759_example_succeeds() -> None:
    chap, response = v2_session()
    chap.receive(response, 1.0)
    [request] = chap.take_verify_requests()
    assert request.data["peer_challenge"] == PEER_CHALLENGE
    assert request.data["nt_response"] == NT_RESPONSE
    [success] = chap.complete(verify_locally(request, USERS))
    assert parse_chap(success) == ChapPacket(3, 1, message=AUTHENTICATOR_RESPONSE.encode()
                                             + b" M=Access granted")
    assert chap.outcome == "success" and chap.username == USER
    assert chap.keys is not None
    assert chap.keys.start_keys(128)[0] == h("8B7CDC149B993A1BA118CB153F56DCCB")


def test_mschap_v2_failure_carries_new_challenge() -> None:
    new_challenge = bytes(range(16))
    chap, response = v2_session(new_challenge)
    chap.receive(response, 1.0)
    users = LocalUsers({USER: "not the password"})
    [failure] = chap.complete(verify_locally(chap.take_verify_requests()[0], users))
    message = parse_chap(failure).message.decode()
    assert re.fullmatch(r"E=691 R=0 C=[0-9A-F]{32} V=3 M=Authentication failed", message)
    assert f"C={new_challenge.hex().upper()}" in message
    assert chap.outcome == "failure"


def test_mschap_v2_success_needs_authenticator_response() -> None:
    chap, response = v2_session()
    chap.receive(response, 1.0)
    chap.take_verify_requests()
    [failure] = chap.complete(VerifyResult(True))
    assert parse_chap(failure).code == 4 and chap.outcome == "failure"


def test_mschap_v2_verifier_error_string_passed_through() -> None:
    chap, response = v2_session()
    chap.receive(response, 1.0)
    chap.take_verify_requests()
    [failure] = chap.complete(VerifyResult(False, "E=648 R=0 V=3 M=expired"))
    assert parse_chap(failure).message == b"E=648 R=0 V=3 M=expired"


def test_complete_without_pending_request_is_ignored() -> None:
    chap, _ = v2_session()
    assert chap.complete(VerifyResult(True, authenticator_response=AUTHENTICATOR_RESPONSE)) == []
    assert chap.outcome is None


def test_method_names_match_lcp_option_names() -> None:
    lcp = pytest.importorskip("fixup.proto.ppp.lcp")
    assert set(AUTHENTICATORS) == set(lcp.AUTH_PROTOCOLS)
    assert all(cls.method == name for name, cls in AUTHENTICATORS.items())


@given(st.binary(max_size=80))
def test_parsers_raise_only_bad_auth(info: bytes) -> None:
    for parse in (parse_chap, parse_pap):
        try:
            parse(info)
        except BadAuth:
            pass
