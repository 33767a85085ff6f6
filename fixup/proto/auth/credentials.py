"""Who may log in, and the asynchronous verification interface between authenticators and
whatever checks credentials (local users now; RADIUS / TACACS+ later).

An authenticator never looks a password up itself: it emits a ``VerifyRequest`` carrying what
the peer sent, and later is handed a ``VerifyResult``.  For local users the session calls
``verify_locally`` at once; a RADIUS client would answer when the server does.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Final

from fixup.proto.auth import crypto
from fixup.proto.auth.crypto import MppeKeys

# Method names as the LCP Authentication-Protocol option maps them (fixup.proto.ppp.lcp).
PAP: Final = "pap"
CHAP_MD5: Final = "chap"
MSCHAP_V1: Final = "mschap"
MSCHAP_V2: Final = "mschap-v2"
METHODS: Final = (PAP, CHAP_MD5, MSCHAP_V1, MSCHAP_V2)

FAILED_MESSAGE: Final = "Authentication failed."  # the PIX's text (seed 001 line 95)


class LocalUsers:
    """Locally configured users (PIX ``vpdn username NAME password PW``).

    A Windows 98 MS-CHAP client prefixes the domain (``DOMAIN\\cisco``, seed 001 lines 88-97):
    the exact name is tried first, then the part after the last backslash, so ``cisco`` matches
    unless ``DOMAIN\\cisco`` is itself defined."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = dict(users)

    def __len__(self) -> int:
        return len(self._users)

    def account_for(self, name: str) -> str | None:
        """The configured user name ``name`` resolves to, or None."""
        if name in self._users:
            return name
        short = name.rsplit("\\", 1)[-1]
        return short if short != name and short in self._users else None

    def password_for(self, name: str) -> str | None:
        """The password of the account ``name`` resolves to, or None when unknown."""
        account = self.account_for(name)
        return None if account is None else self._users[account]


@dataclass(frozen=True, slots=True)
class VerifyRequest:
    """What an authenticator asks a verifier.  ``method``: one of ``METHODS``.  ``username``:
    the name as the peer sent it (bytes decoded as UTF-8 with surrogateescape, so
    ``username.encode("utf-8", "surrogateescape")`` gives the wire bytes back).  ``data``:

    * ``pap``: ``password`` (bytes)
    * ``chap`` (MD5): ``identifier`` (int), ``challenge``, ``response`` (RFC 1994 section 4.1)
    * ``mschap`` (v1): ``challenge`` (8), ``lm_response`` (24), ``nt_response`` (24), ``flags``
      (int) (RFC 2433 section 4)
    * ``mschap-v2``: ``authenticator_challenge`` (16), ``peer_challenge`` (16),
      ``nt_response`` (24), ``flags`` (int) (RFC 2759 section 4)
    """

    method: str
    username: str
    data: Mapping[str, bytes | int] = field(default_factory=dict)

    @property
    def username_bytes(self) -> bytes:
        return self.username.encode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """A verifier's answer.  ``message``: text for the peer (Success / Ack message on success,
    human-readable reason on failure; an MS-CHAP ``E=...`` string is relayed as is).
    ``keys``: MPPE start keys when derivable (MS-CHAP v1 and v2; a RADIUS server may not send
    them, seed 001 line 148).  ``authenticator_response``: MS-CHAP v2 ``S=<40 hex>`` (RFC 2759
    section 5).  ``account``: the configured user name that matched, when known.

    What a AAA server may add (RFC 2865 section 5, RFC 2869 section 5.16): ``framed_address``
    (Framed-IP-Address, overrides the pool), ``session_timeout`` / ``idle_timeout`` (seconds),
    ``interim_interval`` (Acct-Interim-Interval, seconds), ``radius_class`` (Class, echoed in
    accounting, RFC 2865 section 5.25).  ``log``: why, for the operator's log (never sent)."""

    ok: bool
    message: str = ""
    keys: MppeKeys | None = None
    authenticator_response: str | None = None
    account: str | None = None
    framed_address: IPv4Address | None = None
    session_timeout: int | None = None
    idle_timeout: int | None = None
    interim_interval: int | None = None
    radius_class: bytes | None = None
    log: str = ""


def _fail(message: str = FAILED_MESSAGE) -> VerifyResult:
    return VerifyResult(False, message)


def verify_locally(request: VerifyRequest, users: LocalUsers) -> VerifyResult:
    """Check ``request`` against local users, purely; unknown users and wrong passwords get
    the same answer after the same work: an unknown user is checked against a password nobody
    has, so the time taken does not tell which names exist (issue 11 item 13)."""
    account = users.account_for(request.username)
    password = (users.password_for(account) or "") if account is not None else _NOBODYS_PASSWORD
    checker = _CHECKERS.get(request.method)
    if checker is None:
        return _fail(f"unsupported method {request.method}")
    try:
        result = checker(request, password)
    except (KeyError, TypeError, ValueError):
        return _fail("malformed verification request")
    if not result.ok or account is None:
        return result if not result.ok else _fail()
    return VerifyResult(True, result.message, result.keys, result.authenticator_response, account)


def _bytes(request: VerifyRequest, key: str) -> bytes:
    value = request.data[key]
    if not isinstance(value, bytes):
        raise TypeError(f"{key} must be bytes")
    return value


def _int(request: VerifyRequest, key: str) -> int:
    value = request.data[key]
    if not isinstance(value, int):
        raise TypeError(f"{key} must be an int")
    return value


def _check_pap(request: VerifyRequest, password: str) -> VerifyResult:
    """RFC 1334 section 2.2.1: the clear password compared with the configured one."""
    ok = hmac.compare_digest(_bytes(request, "password"), password.encode("utf-8"))
    return VerifyResult(True) if ok else _fail()


def chap_md5_response(identifier: int, secret: bytes, challenge: bytes) -> bytes:
    """RFC 1994 section 4.1 with MD5 (algorithm 5): MD5(Identifier + secret + Challenge)."""
    return hashlib.md5(bytes([identifier]) + secret + challenge).digest()


def _check_chap_md5(request: VerifyRequest, password: str) -> VerifyResult:
    identifier, challenge = _int(request, "identifier"), _bytes(request, "challenge")
    expected = chap_md5_response(identifier, password.encode("utf-8"), challenge)
    ok = hmac.compare_digest(expected, _bytes(request, "response"))
    return VerifyResult(True) if ok else _fail()


def _check_mschap_v1(request: VerifyRequest, password: str) -> VerifyResult:
    """RFC 2433 section 4 / appendix A.1: the NT-Response; LM-only responses are refused."""
    challenge, nt_response = _bytes(request, "challenge"), _bytes(request, "nt_response")
    if not _int(request, "flags") & 1:
        return _fail("LAN Manager responses are not accepted")
    password_hash = crypto.nt_password_hash(password)
    expected = crypto.challenge_response(challenge, password_hash)
    if not hmac.compare_digest(expected, nt_response):
        return _fail()
    lm_hash = crypto.lm_password_hash(password)
    return VerifyResult(True, keys=crypto.mschap1_mppe_keys(password_hash, challenge, lm_hash))


def _check_mschap_v2(request: VerifyRequest, password: str) -> VerifyResult:
    """RFC 2759 sections 4, 5 and 8: the NT-Response, then the authenticator response and
    the MPPE keys of RFC 3079 section 3."""
    auth_challenge = _bytes(request, "authenticator_challenge")
    peer_challenge, nt_response = _bytes(request, "peer_challenge"), _bytes(request, "nt_response")
    name = request.username_bytes
    password_hash = crypto.nt_password_hash(password)
    expected = crypto.generate_nt_response(auth_challenge, peer_challenge, name, password_hash)
    if not hmac.compare_digest(expected, nt_response):
        return _fail()
    answer = crypto.generate_authenticator_response(
        password_hash, nt_response, peer_challenge, auth_challenge, name
    )
    keys = crypto.mschap2_mppe_keys(password_hash, nt_response)
    return VerifyResult(True, keys=keys, authenticator_response=answer)


_NOBODYS_PASSWORD = secrets.token_urlsafe(12)  # per process: no request can know it

_CHECKERS = {
    PAP: _check_pap,
    CHAP_MD5: _check_chap_md5,
    MSCHAP_V1: _check_mschap_v1,
    MSCHAP_V2: _check_mschap_v2,
}
