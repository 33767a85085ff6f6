"""MS-CHAP v1/v2 and MPPE key derivation primitives against the RFCs' own example values:
RFC 2433 appendix B ("MyPw"), RFC 2759 section 9.2 ("User"/"clientPass") and RFC 3079
sections 2.5 (MS-CHAP v1 keys) and 3.5 (MS-CHAP v2 keys)."""
from __future__ import annotations

from collections.abc import Callable

import pytest
from Crypto.Cipher import ARC4

from fixup.proto.auth import crypto
from fixup.proto.auth.crypto import MppeKeys

pytestmark = pytest.mark.unit

h = bytes.fromhex

# RFC 2759 section 9.2 (the same inputs are reused by RFC 3079 section 3.5).
USER = b"User"
PASSWORD = "clientPass"
AUTH_CHALLENGE = h("5B5D7C7D7B3F2F3E3C2C602132262628")
PEER_CHALLENGE = h("21402324255E262A28295F2B3A337C7E")
PASSWORD_HASH = h("44EBBA8D5312B8D611474411F56989AE")
PASSWORD_HASH_HASH = h("41C00C584BD2D91C4017A2A12FA59F3F")
CHALLENGE_HASH = h("D02E4386BCE91226")
NT_RESPONSE = h("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF")
AUTHENTICATOR_RESPONSE = "S=407A5589115FD0D6209F510FE9C04566932CDA56"

# RFC 3079 section 3.5.3 (128-bit) and 3.5.1 (40-bit): the RFC's "send" keys are the
# server's (GetAsymmetricStartKey with IsSend and IsServer true).
MASTER_KEY = h("FDECE3717A8C838CB388E527AE3CDD31")
SEND_START_KEY_128 = h("8B7CDC149B993A1BA118CB153F56DCCB")
SEND_SESSION_KEY_128 = h("405CB2247A7956E6E211007AE27B22D4")
SEND_START_KEY_40 = h("8B7CDC149B993A1B")
SEND_SESSION_KEY_40 = h("D1269EC49FA62E3E")
SEND_SESSION_KEY_56 = h("D15C00C49FA62E3E")  # RFC 3079 section 3.5.2
# RFC 3079 sections 3.5.1 / 3.5.3, "Sample Encrypted Message": rc4(SendSessionKey, "test message")
ENCRYPTED_128 = h("81848317DF68846272FB5ABE")
ENCRYPTED_40 = h("929137917E5803D668D75898")

# RFC 2433 appendix B.2 (MS-CHAP v1 hash example).
V1_PASSWORD = "MyPw"
V1_CHALLENGE = h("102DB5DF085D3041")
V1_NT_HASH = h("FC156AF7EDCD6C0EDDE3337D427F4EAC")
V1_NT_RESPONSE = h("4E9D3C8F9CFD385D5BF4D3246791956CA4C351AB409A3D61")
V1_LM_HASH = h("75BA30198E6D1975AAD3B435B51404EE")

# RFC 3079 section 2.5 (MS-CHAP v1 keys; password "clientPass", challenge as in RFC 2433 B).
V1_LM_HASH_CLIENTPASS = h("76A152936096D7830E2390227404AFD2")
V1_40_BIT_KEY_BEFORE_REDUCTION = h("D80801538CEC4A08")  # section 2.5.1, GetNewKeyFromSHA
V1_START_KEY_128 = h("A8947850CFC0ACC1D1789FB62DDCDDB0")  # section 2.5.3, GetStartKey
V1_SESSION_KEY_128 = h("59D159BC09F76F1DA2A86A28FFEC0B1E")  # section 2.5.3


def test_rfc2759_password_hashes() -> None:
    assert crypto.nt_password_hash(PASSWORD) == PASSWORD_HASH
    assert crypto.hash_nt_password_hash(PASSWORD_HASH) == PASSWORD_HASH_HASH


def test_rfc2759_challenge_hash() -> None:
    assert crypto.challenge_hash(PEER_CHALLENGE, AUTH_CHALLENGE, USER) == CHALLENGE_HASH


def test_challenge_hash_ignores_domain_prefix() -> None:
    """RFC 2759 section 8.2: the user name without the domain feeds ChallengeHash."""
    assert crypto.challenge_hash(PEER_CHALLENGE, AUTH_CHALLENGE, b"DOMAIN\\User") == CHALLENGE_HASH


def test_rfc2759_nt_response() -> None:
    nt = crypto.generate_nt_response(AUTH_CHALLENGE, PEER_CHALLENGE, USER, PASSWORD_HASH)
    assert nt == NT_RESPONSE
    assert crypto.challenge_response(CHALLENGE_HASH, PASSWORD_HASH) == NT_RESPONSE


def test_rfc2759_authenticator_response() -> None:
    answer = crypto.generate_authenticator_response(
        PASSWORD_HASH, NT_RESPONSE, PEER_CHALLENGE, AUTH_CHALLENGE, USER
    )
    assert answer == AUTHENTICATOR_RESPONSE


def test_check_authenticator_response() -> None:
    args = (PASSWORD_HASH, NT_RESPONSE, PEER_CHALLENGE, AUTH_CHALLENGE, USER)
    assert crypto.check_authenticator_response(*args, AUTHENTICATOR_RESPONSE.lower())
    wrong = AUTHENTICATOR_RESPONSE[:-1] + "7"
    assert not crypto.check_authenticator_response(*args, wrong)


def test_rfc2433_ms_chap_v1_vectors() -> None:
    assert crypto.nt_password_hash(V1_PASSWORD) == V1_NT_HASH
    assert crypto.nt_challenge_response(V1_CHALLENGE, V1_PASSWORD) == V1_NT_RESPONSE
    assert crypto.lm_password_hash(V1_PASSWORD) == V1_LM_HASH


def test_des_key_expansion_spreads_seven_bits_per_octet() -> None:
    """RFC 2433 appendix A.6: 56 key bits, 7 per octet in the high bits (parity bit 0)."""
    assert crypto.expand_des_key(b"\xff" * 7) == b"\xfe" * 8
    assert crypto.expand_des_key(h("80000000000001")) == h("8000000000000002")


def test_rfc3079_master_and_start_keys() -> None:
    assert crypto.get_master_key(PASSWORD_HASH_HASH, NT_RESPONSE) == MASTER_KEY
    send = crypto.get_asymmetric_start_key(MASTER_KEY, 16, is_send=True, is_server=True)
    assert send == SEND_START_KEY_128
    send_40 = crypto.get_asymmetric_start_key(MASTER_KEY, 8, is_send=True, is_server=True)
    assert send_40 == SEND_START_KEY_40


def test_server_send_key_is_client_receive_key() -> None:
    """RFC 3079 section 3.4: the two sides pick the magic constants crosswise."""
    def key(is_send: bool, is_server: bool) -> bytes:
        return crypto.get_asymmetric_start_key(MASTER_KEY, 16, is_send=is_send, is_server=is_server)

    assert key(True, True) == key(False, False)
    assert key(False, True) == key(True, False)
    assert key(True, True) != key(False, True)


def test_rfc3079_session_keys() -> None:
    key_128 = crypto.get_new_key_from_sha(SEND_START_KEY_128, SEND_START_KEY_128, 16)
    assert key_128 == SEND_SESSION_KEY_128
    assert crypto.initial_session_key(SEND_START_KEY_128, 128) == SEND_SESSION_KEY_128
    assert crypto.initial_session_key(SEND_START_KEY_40, 40) == SEND_SESSION_KEY_40
    assert crypto.initial_session_key(SEND_START_KEY_128, 40) == SEND_SESSION_KEY_40
    assert crypto.initial_session_key(SEND_START_KEY_40, 56) == SEND_SESSION_KEY_56


@pytest.mark.parametrize(("key", "encrypted"), [
    (SEND_SESSION_KEY_128, ENCRYPTED_128),
    (SEND_SESSION_KEY_40, ENCRYPTED_40),
])
def test_rfc3079_sample_encrypted_message(key: bytes, encrypted: bytes) -> None:
    assert ARC4.new(key).encrypt(b"test message") == encrypted


def test_reduce_session_key() -> None:
    """RFC 3079 sections 3.1 (40-bit: D1 26 9E) and 3.2 (56-bit: D1)."""
    key = bytes(range(1, 17))
    assert crypto.reduce_session_key(key, 40) == h("D1269E0405060708")
    assert crypto.reduce_session_key(key, 56) == h("D102030405060708")
    assert crypto.reduce_session_key(key, 128) == key
    with pytest.raises(ValueError):
        crypto.reduce_session_key(key, 64)


def test_mschap2_mppe_keys_from_server_side() -> None:
    keys = crypto.mschap2_mppe_keys(PASSWORD_HASH, NT_RESPONSE)
    assert keys.send_key == SEND_START_KEY_128
    assert keys.recv_key == crypto.get_asymmetric_start_key(
        MASTER_KEY, 16, is_send=True, is_server=False
    )
    assert keys.start_keys(40) == (keys.send_key[:8], keys.recv_key[:8])
    assert keys.start_keys(128) == (keys.send_key, keys.recv_key)


def test_rfc3079_ms_chap_v1_keys() -> None:
    password_hash = crypto.nt_password_hash(PASSWORD)
    lm_hash = crypto.lm_password_hash(PASSWORD)
    assert lm_hash == V1_LM_HASH_CLIENTPASS
    keys = crypto.mschap1_mppe_keys(password_hash, V1_CHALLENGE, lm_hash)
    assert keys.send_key == keys.recv_key == V1_START_KEY_128
    assert crypto.get_start_key(V1_CHALLENGE, PASSWORD_HASH_HASH) == V1_START_KEY_128
    assert crypto.initial_session_key(keys.send_key, 128) == V1_SESSION_KEY_128
    send_40, recv_40 = keys.start_keys(40)
    assert send_40 == recv_40 == lm_hash[:8]
    assert crypto.get_new_key_from_sha(send_40, send_40, 8) == V1_40_BIT_KEY_BEFORE_REDUCTION
    assert crypto.initial_session_key(send_40, 40) == h("D1269E538CEC4A08")


def test_v1_keys_without_lm_hash_fall_back_to_nt_key() -> None:
    keys = MppeKeys(V1_START_KEY_128, V1_START_KEY_128)
    assert keys.start_keys(40) == (V1_START_KEY_128[:8], V1_START_KEY_128[:8])


@pytest.mark.parametrize("call", [
    lambda: crypto.challenge_response(b"\x00" * 7, PASSWORD_HASH),
    lambda: crypto.challenge_hash(PEER_CHALLENGE[:15], AUTH_CHALLENGE, USER),
    lambda: crypto.get_master_key(PASSWORD_HASH_HASH, NT_RESPONSE[:23]),
    lambda: crypto.get_asymmetric_start_key(MASTER_KEY, 12, is_send=True, is_server=True),
    lambda: crypto.get_new_key_from_sha(b"\x00" * 8, b"\x00" * 8, 16),
    lambda: MppeKeys(MASTER_KEY, MASTER_KEY).start_keys(64),
])
def test_wrong_sizes_are_refused(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        call()
