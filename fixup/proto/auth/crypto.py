"""MS-CHAP v1/v2 and MPPE key derivation primitives (pure functions on bytes).

Sources:

* RFC 2433 (MS-CHAP v1) appendix A: NtPasswordHash, LmPasswordHash, ChallengeResponse,
  DesEncrypt.
* RFC 2759 (MS-CHAP v2) section 8: ChallengeHash, GenerateNTResponse,
  GenerateAuthenticatorResponse, CheckAuthenticatorResponse.
* RFC 3079 (MPPE keys) section 2 (from MS-CHAP v1 credentials) and section 3 (from MS-CHAP v2
  credentials): GetStartKey, GetMasterKey, GetAsymmetricStartKey, GetNewKeyFromSHA and the
  40/56-bit key reduction.

Where an RFC function takes the clear password, the function here takes the NT password hash
(``nt_password_hash(password)``) when that is all it needs, so a verifier that stores only NT
hashes can use it too.  Usernames are bytes as they came in the CHAP Name field.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from Crypto.Cipher import DES
from Crypto.Hash import MD4

# RFC 2759 section 8.7, GenerateAuthenticatorResponse: the two magic constants.
_AUTH_MAGIC1 = b"Magic server to client signing constant"
_AUTH_MAGIC2 = b"Pad to make it do more than one iteration"
# RFC 3079 section 3.4: GetMasterKey / GetAsymmetricStartKey magic constants.
_MASTER_MAGIC = b"This is the MPPE Master Key"
_CLIENT_SEND_MAGIC = (  # "Magic2": client send key, server receive key
    b"On the client side, this is the send key; on the server side, it is the receive key."
)
_CLIENT_RECV_MAGIC = (  # "Magic3": client receive key, server send key
    b"On the client side, this is the receive key; on the server side, it is the send key."
)
# RFC 3079 section 3.4 (and 2.4): SHSpad1 / SHSpad2, 40 octets each.
_SHA_PAD1 = b"\x00" * 40
_SHA_PAD2 = b"\xf2" * 40
# RFC 2433 appendix A.3, DesHash: the clear text LAN Manager encrypts with each password half.
_LM_MAGIC = b"KGS!@#$%"

KEY_BYTES = {40: 8, 56: 8, 128: 16}
"""Session key length in octets for each MPPE key strength (RFC 3079 sections 2.1-2.3)."""


def _sha1(*parts: bytes) -> bytes:
    digest = hashlib.sha1()
    for part in parts:
        digest.update(part)
    return digest.digest()


def _need(name: str, value: bytes, size: int) -> None:
    if len(value) != size:
        raise ValueError(f"{name} must be {size} octets, got {len(value)}")


def nt_password_hash(password: str) -> bytes:
    """RFC 2433 appendix A.2 / RFC 2759 section 8.3, NtPasswordHash: MD4 of the UTF-16LE
    password (hashlib has no MD4 under OpenSSL 3, hence Crypto.Hash.MD4)."""
    return MD4.new(password.encode("utf-16-le")).digest()


def hash_nt_password_hash(password_hash: bytes) -> bytes:
    """RFC 2759 section 8.4, HashNtPasswordHash: MD4 of the 16-octet NT password hash."""
    _need("password hash", password_hash, 16)
    return MD4.new(password_hash).digest()


def expand_des_key(key7: bytes) -> bytes:
    """RFC 2433 appendix A.6 (DesEncrypt): spread 56 key bits over 8 octets, 7 bits each in
    the high bits; the low (parity) bit is left 0 because DES ignores it."""
    _need("DES key", key7, 7)
    bits = int.from_bytes(key7, "big")
    return bytes(((bits >> (49 - 7 * i)) & 0x7F) << 1 for i in range(8))


def des_encrypt(clear: bytes, key7: bytes) -> bytes:
    """RFC 2433 appendix A.6, DesEncrypt: one DES-ECB block under a 7-octet key."""
    _need("DES clear text", clear, 8)
    return DES.new(expand_des_key(key7), DES.MODE_ECB).encrypt(clear)


def challenge_response(challenge: bytes, password_hash: bytes) -> bytes:
    """RFC 2433 appendix A.5 / RFC 2759 section 8.5, ChallengeResponse: the 16-octet hash
    zero-padded to 21 octets, cut in three 7-octet DES keys, each encrypting the 8-octet
    challenge; 24 octets out."""
    _need("challenge", challenge, 8)
    _need("password hash", password_hash, 16)
    keys = password_hash + b"\x00" * 5
    return b"".join(des_encrypt(challenge, keys[i:i + 7]) for i in (0, 7, 14))


def nt_challenge_response(challenge: bytes, password: str) -> bytes:
    """RFC 2433 appendix A.1, NtChallengeResponse: the MS-CHAP v1 NT-Response."""
    return challenge_response(challenge, nt_password_hash(password))


def lm_password_hash(password: str) -> bytes:
    """RFC 2433 appendix A.2 (LmPasswordHash) and A.3 (DesHash): the LAN Manager hash, used
    here only for MS-CHAP v1 40/56-bit MPPE keys (RFC 3079 section 2.1).  The password is
    upper-cased, taken as OEM (ASCII, others as '?') and cut or zero-padded to 14 octets."""
    oem = password.upper().encode("ascii", errors="replace")[:14].ljust(14, b"\x00")
    return des_encrypt(_LM_MAGIC, oem[:7]) + des_encrypt(_LM_MAGIC, oem[7:])


def strip_domain(username: bytes) -> bytes:
    """RFC 2759 section 8.2: ChallengeHash uses the user name without any prepended
    ``DOMAIN\\`` part."""
    return username.rsplit(b"\\", 1)[-1]


def challenge_hash(peer_challenge: bytes, authenticator_challenge: bytes, username: bytes) -> bytes:
    """RFC 2759 section 8.2, ChallengeHash: first 8 octets of
    SHA1(PeerChallenge + AuthenticatorChallenge + UserName-without-domain)."""
    _need("peer challenge", peer_challenge, 16)
    _need("authenticator challenge", authenticator_challenge, 16)
    return _sha1(peer_challenge, authenticator_challenge, strip_domain(username))[:8]


def generate_nt_response(
    authenticator_challenge: bytes, peer_challenge: bytes, username: bytes, password_hash: bytes
) -> bytes:
    """RFC 2759 section 8.1, GenerateNTResponse (with the NT password hash already taken)."""
    challenge = challenge_hash(peer_challenge, authenticator_challenge, username)
    return challenge_response(challenge, password_hash)


def generate_authenticator_response(
    password_hash: bytes,
    nt_response: bytes,
    peer_challenge: bytes,
    authenticator_challenge: bytes,
    username: bytes,
) -> str:
    """RFC 2759 section 8.7, GenerateAuthenticatorResponse: ``"S="`` + 40 upper-case hex."""
    _need("NT-Response", nt_response, 24)
    hash_hash = hash_nt_password_hash(password_hash)
    digest = _sha1(hash_hash, nt_response, _AUTH_MAGIC1)
    challenge = challenge_hash(peer_challenge, authenticator_challenge, username)
    return "S=" + _sha1(digest, challenge, _AUTH_MAGIC2).hex().upper()


def check_authenticator_response(
    password_hash: bytes,
    nt_response: bytes,
    peer_challenge: bytes,
    authenticator_challenge: bytes,
    username: bytes,
    received: str,
) -> bool:
    """RFC 2759 section 8.8, CheckAuthenticatorResponse (what the peer does with our
    Success message), compared in constant time."""
    expected = generate_authenticator_response(
        password_hash, nt_response, peer_challenge, authenticator_challenge, username
    )
    return hmac.compare_digest(expected.encode(), received.strip().upper().encode())


# --- MPPE keys (RFC 3079) ---------------------------------------------------------------


def get_start_key(challenge: bytes, password_hash_hash: bytes) -> bytes:
    """RFC 3079 section 2.4, GetStartKey (MS-CHAP v1, 128-bit): first 16 octets of
    SHA1(NtPasswordHashHash + NtPasswordHashHash + Challenge)."""
    _need("challenge", challenge, 8)
    _need("password hash hash", password_hash_hash, 16)
    return _sha1(password_hash_hash, password_hash_hash, challenge)[:16]


def get_master_key(password_hash_hash: bytes, nt_response: bytes) -> bytes:
    """RFC 3079 section 3.4, GetMasterKey (MS-CHAP v2): first 16 octets of
    SHA1(PasswordHashHash + NTResponse + Magic1)."""
    _need("password hash hash", password_hash_hash, 16)
    _need("NT-Response", nt_response, 24)
    return _sha1(password_hash_hash, nt_response, _MASTER_MAGIC)[:16]


def get_asymmetric_start_key(
    master_key: bytes, key_length: int, *, is_send: bool, is_server: bool
) -> bytes:
    """RFC 3079 section 3.4, GetAsymmetricStartKey: SHA1(MasterKey + SHSpad1 + Magic +
    SHSpad2) cut to ``key_length``; the server's send key is the client's receive key
    (Magic3) and vice versa (Magic2)."""
    _need("master key", master_key, 16)
    if key_length not in (8, 16):
        raise ValueError(f"key length must be 8 or 16, got {key_length}")
    client_recv = is_send == is_server  # server send or client receive: Magic3
    magic = _CLIENT_RECV_MAGIC if client_recv else _CLIENT_SEND_MAGIC
    return _sha1(master_key, _SHA_PAD1, magic, _SHA_PAD2)[:key_length]


def get_new_key_from_sha(start_key: bytes, session_key: bytes, key_length: int) -> bytes:
    """RFC 3079 section 2.4 / 3.4 (and RFC 3078 section 7.3), GetNewKeyFromSHA:
    SHA1(StartKey + SHApad1 + SessionKey + SHApad2) cut to ``key_length``."""
    if key_length not in (8, 16) or len(start_key) < key_length or len(session_key) < key_length:
        raise ValueError("start and session keys must hold key_length (8 or 16) octets")
    digest = _sha1(start_key[:key_length], _SHA_PAD1, session_key[:key_length], _SHA_PAD2)
    return digest[:key_length]


def reduce_session_key(key: bytes, key_bits: int) -> bytes:
    """RFC 3079 sections 2.1/3.1 (40-bit: first three octets 0xD1 0x26 0x9E) and 2.2/3.2
    (56-bit: first octet 0xD1); 128-bit keys are used as they are."""
    if key_bits == 40:
        return b"\xd1\x26\x9e" + key[3:8]
    if key_bits == 56:
        return b"\xd1" + key[1:8]
    if key_bits == 128:
        return key[:16]
    raise ValueError(f"MPPE key strength must be 40, 56 or 128 bits, got {key_bits}")


def initial_session_key(start_key: bytes, key_bits: int) -> bytes:
    """RFC 3079 sections 2.1-2.3 and 3.1-3.3: the first session key is GetNewKeyFromSHA of
    the start key with itself, reduced to the negotiated strength."""
    length = _key_bytes(key_bits)
    return reduce_session_key(get_new_key_from_sha(start_key, start_key, length), key_bits)


def _key_bytes(key_bits: int) -> int:
    try:
        return KEY_BYTES[key_bits]
    except KeyError:
        raise ValueError(f"MPPE key strength must be 40, 56 or 128 bits, got {key_bits}") from None


@dataclass(frozen=True, slots=True)
class MppeKeys:
    """MPPE start-key material from the SERVER's point of view (server send = client
    receive).  ``send_key``/``recv_key``: 16 octets (the MS-MPPE-Send-Key / MS-MPPE-Recv-Key
    of RFC 2548 section 2.4).  ``lm_key``: for MS-CHAP v1 only, the 8-octet LAN Manager start
    key RFC 3079 section 2.1/2.2 uses for 40- and 56-bit keys (None when unknown: the first 8
    octets of the 128-bit key are used then, as pppd does)."""

    send_key: bytes
    recv_key: bytes
    lm_key: bytes | None = None

    def start_keys(self, key_bits: int) -> tuple[bytes, bytes]:
        """(send, receive) start keys for the negotiated strength, ready for MppeEngine."""
        length = _key_bytes(key_bits)
        if length == 8 and self.lm_key is not None:
            return self.lm_key[:8], self.lm_key[:8]
        return self.send_key[:length], self.recv_key[:length]


def mschap2_mppe_keys(password_hash: bytes, nt_response: bytes) -> MppeKeys:
    """RFC 3079 section 3.3: master key from the NT hash hash and the NT-Response, then the
    server's send (Magic3) and receive (Magic2) start keys."""
    master = get_master_key(hash_nt_password_hash(password_hash), nt_response)
    send = get_asymmetric_start_key(master, 16, is_send=True, is_server=True)
    recv = get_asymmetric_start_key(master, 16, is_send=False, is_server=True)
    return MppeKeys(send, recv)


def mschap1_mppe_keys(
    password_hash: bytes, challenge: bytes, lm_hash: bytes | None = None
) -> MppeKeys:
    """RFC 3079 sections 2.1-2.3: MS-CHAP v1 keys are the same in both directions; 128-bit
    from GetStartKey(challenge, NT hash hash), 40/56-bit from the LAN Manager hash."""
    key = get_start_key(challenge, hash_nt_password_hash(password_hash))
    return MppeKeys(key, key, None if lm_hash is None else lm_hash[:8])
