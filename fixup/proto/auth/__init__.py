"""PPP authentication, server side, pure (no I/O): PAP (RFC 1334), CHAP-MD5 (RFC 1994),
MS-CHAP v1 (RFC 2433) and v2 (RFC 2759), with MPPE key derivation (RFC 3079).

Authenticators emit ``VerifyRequest``s and take ``VerifyResult``s, so the verifier may be
local (``verify_locally``) or remote and asynchronous (RADIUS / TACACS+ later).
"""
from __future__ import annotations

from fixup.proto.auth.chap import (
    CHAP_PROTOCOL,
    ChapAuthenticator,
    ChapMd5Authenticator,
    MsChapV1Authenticator,
    MsChapV2Authenticator,
)
from fixup.proto.auth.credentials import (
    CHAP_MD5,
    MSCHAP_V1,
    MSCHAP_V2,
    PAP,
    LocalUsers,
    VerifyRequest,
    VerifyResult,
    verify_locally,
)
from fixup.proto.auth.crypto import MppeKeys
from fixup.proto.auth.pap import PAP_PROTOCOL, PapAuthenticator

Authenticator = PapAuthenticator | ChapAuthenticator

AUTHENTICATORS: dict[str, type[Authenticator]] = {
    PAP: PapAuthenticator,
    CHAP_MD5: ChapMd5Authenticator,
    MSCHAP_V1: MsChapV1Authenticator,
    MSCHAP_V2: MsChapV2Authenticator,
}
"""Authenticator class per method name (the names of fixup.proto.ppp.lcp.AUTH_PROTOCOLS)."""

__all__ = [
    "CHAP_MD5",
    "CHAP_PROTOCOL",
    "MSCHAP_V1",
    "MSCHAP_V2",
    "PAP",
    "PAP_PROTOCOL",
    "AUTHENTICATORS",
    "Authenticator",
    "ChapAuthenticator",
    "ChapMd5Authenticator",
    "LocalUsers",
    "MppeKeys",
    "MsChapV1Authenticator",
    "MsChapV2Authenticator",
    "PapAuthenticator",
    "VerifyRequest",
    "VerifyResult",
    "verify_locally",
]
