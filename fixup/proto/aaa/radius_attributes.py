"""RADIUS packets of the PPTP NAS, pure: the Access-Request built from a ``VerifyRequest``
(RFC 2865 section 4.1), the Accounting-Request built from an ``AccountingRecord`` (RFC 2866
section 4.1) and the server's answer mapped to a ``VerifyResult``.

pyrad does the packet codec, User-Password hiding (RFC 2865 section 5.2, ``PwCrypt``), the
Message-Authenticator (RFC 2869 section 5.14), the Response Authenticator check (RFC 2865
section 3, ``VerifyReply``) and the salt decryption of MS-MPPE-Send-Key / MS-MPPE-Recv-Key
(RFC 2548 sections 2.4.2 and 2.4.3, ``encrypt=2`` in our dictionary).  Written here: the
un-hiding of MS-CHAP-MPPE-Keys (RFC 2548 section 2.4.1, hidden as User-Password but binary)
and the MS-CHAP v1 start key it yields (RFC 3079 section 2.4).
"""
from __future__ import annotations

import functools
import hashlib
import io
import re
import struct
from collections.abc import Callable
from importlib import resources
from ipaddress import IPv4Address
from typing import Any, Final

from pyrad import packet as rp
from pyrad.dictionary import Dictionary

from fixup.errors import BadInput
from fixup.proto.aaa import ACCT_AUTHENTIC, ACCT_INTERIM, ACCT_START, ACCT_STOP, TERMINATE_CAUSES
from fixup.proto.aaa import AccountingRecord, AuthContext, NasIdentity
from fixup.proto.auth import crypto
from fixup.proto.auth.credentials import CHAP_MD5, MSCHAP_V1, MSCHAP_V2, PAP, VerifyRequest, VerifyResult
from fixup.proto.auth.crypto import MppeKeys

ACCESS_REQUEST: Final = rp.AccessRequest
ACCESS_ACCEPT: Final = rp.AccessAccept
ACCESS_REJECT: Final = rp.AccessReject
ACCESS_CHALLENGE: Final = rp.AccessChallenge
ACCOUNTING_REQUEST: Final = rp.AccountingRequest
ACCOUNTING_RESPONSE: Final = rp.AccountingResponse
ANSWER_CODES: Final = {  # RFC 2865 section 4, RFC 2866 section 4
    ACCESS_REQUEST: (ACCESS_ACCEPT, ACCESS_REJECT, ACCESS_CHALLENGE),
    ACCOUNTING_REQUEST: (ACCOUNTING_RESPONSE,),
}

SERVICE_FRAMED: Final = 2  # RFC 2865 section 5.6, Framed
PROTOCOL_PPP: Final = 1  # RFC 2865 section 5.7
PORT_VIRTUAL: Final = 5  # RFC 2865 section 5.41
AUTHENTIC_RADIUS: Final = 1  # RFC 2866 section 5.6
STATUS_TYPES: Final = {ACCT_START: 1, ACCT_STOP: 2, ACCT_INTERIM: 3}  # RFC 2866 5.1, RFC 2869 2.1
# RFC 2865 section 5.8: these two Framed-IP-Address values leave the choice to the NAS / user.
ADDRESS_NOT_GIVEN: Final = (IPv4Address("255.255.255.254"), IPv4Address("255.255.255.255"))
_SUCCESS = re.compile(r"S=[0-9A-Fa-f]{40}")  # RFC 2759 section 5
_UINT32: Final = 0xFFFFFFFF
_DECODE_ERRORS = (rp.PacketError, ValueError, TypeError, KeyError, IndexError, struct.error)


class BadRadius(BadInput):
    """A RADIUS answer that does not parse or does not authenticate (RFC 2865 section 3)."""

    reason = "bad-radius"


class UnsendableRequest(ValueError):
    """What the caller handed over cannot become a RADIUS request (e.g. a name over 253
    octets, RFC 2865 section 5; an MS-CHAP field of the wrong size)."""


@functools.cache
def dictionary() -> Dictionary:
    """Our dictionary file, shipped as package data of ``fixup.proto.aaa``."""
    text = resources.files("fixup.proto.aaa").joinpath("dictionary").read_text(encoding="utf-8")
    return Dictionary(io.StringIO(text))


def _put_raw(pkt: rp.Packet, name: str, value: bytes) -> None:
    """Set a binary attribute as is: pyrad's octets encoder would read a value starting
    with ``0x`` as hexadecimal."""
    if not 0 < len(value) <= 253:
        raise UnsendableRequest(f"{name} must be 1..253 octets, got {len(value)}")
    pkt[dictionary().attrindex.GetForward(name)] = [value]


def _text(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


# --- Access-Request (RFC 2865 section 4.1) ------------------------------------------------


def _field(request: VerifyRequest, key: str, size: int | None = None) -> bytes:
    value = request.data.get(key)
    if not isinstance(value, bytes) or (size is not None and len(value) != size):
        wanted = f"{size} octets" if size is not None else "bytes"
        raise UnsendableRequest(f"{request.method} {key}: expected {wanted}")
    return value


def _small_int(request: VerifyRequest, key: str, default: int | None = None) -> int:
    value = request.data.get(key, default)
    if not isinstance(value, int) or not 0 <= value <= 255:
        raise UnsendableRequest(f"{request.method} {key}: expected an octet value")
    return value


def _pap(pkt: rp.AuthPacket, request: VerifyRequest) -> None:
    """RFC 2865 section 5.2: User-Password, hidden with the secret and Request Authenticator."""
    password = _field(request, "password")
    if len(password) > 128:
        raise UnsendableRequest("PAP password longer than 128 octets (RFC 2865 section 5.2)")
    _put_raw(pkt, "User-Password", pkt.PwCrypt(password))


def _chap(pkt: rp.AuthPacket, request: VerifyRequest) -> None:
    """RFC 2865 sections 5.3 and 5.40: CHAP-Password (CHAP Ident + Response) and
    CHAP-Challenge."""
    ident = _small_int(request, "identifier")
    _put_raw(pkt, "CHAP-Password", bytes([ident]) + _field(request, "response", 16))
    _put_raw(pkt, "CHAP-Challenge", _field(request, "challenge"))


def _mschap_v1(pkt: rp.AuthPacket, request: VerifyRequest) -> None:
    """RFC 2548 sections 2.1.3 and 2.1.1: MS-CHAP-Challenge and MS-CHAP-Response (Ident,
    Flags, LM-Response, NT-Response).  The PPP Identifier is not part of a VerifyRequest;
    ``identifier`` is used when present, else 0 (servers only echo it)."""
    ident, flags = _small_int(request, "identifier", 0), _small_int(request, "flags")
    _put_raw(pkt, "MS-CHAP-Challenge", _field(request, "challenge", 8))
    response = _field(request, "lm_response", 24) + _field(request, "nt_response", 24)
    _put_raw(pkt, "MS-CHAP-Response", bytes([ident, flags]) + response)


def _mschap_v2(pkt: rp.AuthPacket, request: VerifyRequest) -> None:
    """RFC 2548 sections 2.1.3 and 2.3.2: MS-CHAP-Challenge (the authenticator challenge)
    and MS-CHAP2-Response (Ident, Flags, Peer-Challenge, 8 reserved octets, NT-Response)."""
    ident, flags = _small_int(request, "identifier", 0), _small_int(request, "flags", 0)
    _put_raw(pkt, "MS-CHAP-Challenge", _field(request, "authenticator_challenge", 16))
    peer, response = _field(request, "peer_challenge", 16), _field(request, "nt_response", 24)
    _put_raw(pkt, "MS-CHAP2-Response", bytes([ident, flags]) + peer + bytes(8) + response)


_METHODS: Final[dict[str, Callable[[rp.AuthPacket, VerifyRequest], None]]] = {
    PAP: _pap,
    CHAP_MD5: _chap,
    MSCHAP_V1: _mschap_v1,
    MSCHAP_V2: _mschap_v2,
}


def _nas_attributes(pkt: rp.Packet, nas: NasIdentity, context: AuthContext) -> None:
    """Who asks and for which port (RFC 2865 sections 5.4-5.7, 5.30-5.32, 5.41; RFC 2866
    section 5.5 for Acct-Session-Id, also sent in the Access-Request)."""
    pkt["NAS-IP-Address"] = str(nas.address)
    if nas.identifier:
        pkt["NAS-Identifier"] = _text(nas.identifier)
    pkt["NAS-Port"] = context.nas_port & _UINT32
    pkt["NAS-Port-Type"] = PORT_VIRTUAL
    pkt["Service-Type"] = SERVICE_FRAMED
    pkt["Framed-Protocol"] = PROTOCOL_PPP
    for name, value in (("Calling-Station-Id", context.calling_station),
                        ("Called-Station-Id", context.called_station),
                        ("Acct-Session-Id", context.session_id)):
        if value:  # RFC 2865 section 5: text attributes are at least one octet
            pkt[name] = _text(value)


def access_request(request: VerifyRequest, context: AuthContext, nas: NasIdentity, *,
                   secret: bytes, identifier: int, authenticator: bytes) -> rp.AuthPacket:
    """The Access-Request for ``request`` (RFC 2865 section 4.1), with a Message-Authenticator
    first (RFC 2869 section 5.14; RFC 3579 section 3.2, the BlastRADIUS countermeasure).
    Raises UnsendableRequest for an unknown method or malformed data."""
    build = _METHODS.get(request.method)
    if build is None:
        raise UnsendableRequest(f"unsupported method {request.method!r}")
    pkt = rp.AuthPacket(id=identifier, secret=secret, authenticator=authenticator, dict=dictionary())
    pkt.add_message_authenticator()
    try:
        pkt["User-Name"] = request.username_bytes
        build(pkt, request)
        _nas_attributes(pkt, nas, context)
    except (ValueError, TypeError) as err:
        raise UnsendableRequest(str(err)) from err
    return pkt


# --- Accounting-Request (RFC 2866 section 4.1) --------------------------------------------


def check_record(record: AccountingRecord) -> None:
    """Raise ValueError for a record no Accounting-Request can carry."""
    if record.status not in STATUS_TYPES:
        raise ValueError(f"unknown accounting status {record.status!r}")
    if record.terminate_cause is not None and record.terminate_cause not in TERMINATE_CAUSES:
        raise ValueError(f"unknown terminate cause {record.terminate_cause!r}")


def _counters(pkt: rp.AcctPacket, record: AccountingRecord) -> None:
    """RFC 2866 sections 5.3, 5.4, 5.7, 5.8, 5.9; RFC 2869 sections 5.1 and 5.2: octets
    above 2**32 go into Acct-*-Gigawords (how many times the 32-bit counter wrapped)."""
    pkt["Acct-Session-Time"] = min(max(record.session_time, 0), _UINT32)
    for direction, octets in (("Input", record.input_octets), ("Output", record.output_octets)):
        octets = max(octets, 0)
        pkt[f"Acct-{direction}-Octets"] = octets & _UINT32
        pkt[f"Acct-{direction}-Gigawords"] = min(octets >> 32, _UINT32)
    pkt["Acct-Input-Packets"] = max(record.input_packets, 0) & _UINT32
    pkt["Acct-Output-Packets"] = max(record.output_packets, 0) & _UINT32


def accounting_request(record: AccountingRecord, nas: NasIdentity, *, secret: bytes,
                       identifier: int, delay: int) -> rp.AcctPacket:
    """The Accounting-Request for ``record`` (RFC 2866 section 4.1).  ``delay``:
    Acct-Delay-Time, seconds since the record was first queued (RFC 2866 section 5.2).  The
    Request Authenticator is computed when the packet is encoded (RFC 2866 section 3)."""
    check_record(record)
    pkt = rp.AcctPacket(id=identifier, secret=secret, dict=dictionary())
    try:
        pkt["Acct-Status-Type"] = STATUS_TYPES[record.status]
        pkt["User-Name"] = _text(record.username)
        _nas_attributes(pkt, nas, record.context)
        pkt["Framed-IP-Address"] = str(record.framed_address)
        pkt["Acct-Authentic"] = ACCT_AUTHENTIC.get(record.authentic, AUTHENTIC_RADIUS)
        pkt["Acct-Delay-Time"] = min(max(delay, 0), _UINT32)
        if record.radius_class:
            _put_raw(pkt, "Class", record.radius_class)  # RFC 2865 section 5.25: echoed
        if record.status != ACCT_START:
            _counters(pkt, record)
        if record.status == ACCT_STOP and record.terminate_cause is not None:
            pkt["Acct-Terminate-Cause"] = TERMINATE_CAUSES[record.terminate_cause]
    except (ValueError, TypeError) as err:
        raise UnsendableRequest(str(err)) from err
    return pkt


def encode(pkt: rp.Packet) -> bytes:
    """The request's datagram (pyrad fills in the Message-Authenticator and, for
    accounting, the Request Authenticator); UnsendableRequest when an attribute does not fit
    (RFC 2865 section 5: at most 253 octets of value)."""
    try:
        return pkt.RequestPacket()
    except (ValueError, TypeError, struct.error) as err:
        raise UnsendableRequest(str(err)) from err


# --- the answer ---------------------------------------------------------------------------


def decode_answer(request: rp.Packet, data: bytes) -> rp.Packet:
    """Decode an answer to ``request`` (as sent) and authenticate it: the Response
    Authenticator (RFC 2865 section 3, RFC 2866 section 3), and the Message-Authenticator
    when present (RFC 2869 section 5.14).  Raises BadRadius."""
    try:
        reply = request.CreateReply(packet=data)
    except _DECODE_ERRORS as err:
        raise BadRadius(str(err) or type(err).__name__, where="RADIUS answer") from err
    if reply.code not in ANSWER_CODES.get(request.code, ()):
        raise BadRadius(f"Code {reply.code} does not answer Code {request.code}", where="RADIUS answer", offset=0)
    if not request.VerifyReply(reply, data):
        raise BadRadius("Response Authenticator or Message-Authenticator does not verify (wrong secret?)",
                        where="RADIUS answer", offset=4)
    reply.request_authenticator = request.authenticator  # for the salt-encrypted keys
    return reply


def unhide(value: bytes, secret: bytes, authenticator: bytes) -> bytes:
    """Reverse the User-Password hiding of RFC 2865 section 5.2 for a binary value
    (MS-CHAP-MPPE-Keys, RFC 2548 section 2.4.1): c(i) xor MD5(S + c(i-1)), c(0) being the
    Request Authenticator; padding is left in place."""
    if not value or len(value) % 16:
        raise BadRadius(f"hidden value of {len(value)} octets, not a multiple of 16", where="RADIUS answer")
    clear, last = bytearray(), authenticator
    for start in range(0, len(value), 16):
        block = value[start:start + 16]
        pad = hashlib.md5(secret + last).digest()
        clear += bytes(a ^ b for a, b in zip(block, pad))
        last = block
    return bytes(clear)


def _values(reply: rp.Packet, name: str) -> list[Any]:
    """The decoded values of ``name``; a value that does not decode counts as absent."""
    try:
        return list(reply.get(name) or [])
    except _DECODE_ERRORS:
        return []


def _first(reply: rp.Packet, name: str) -> Any:
    values = _values(reply, name)
    return values[0] if values else None


def _as_text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _reply_message(reply: rp.Packet) -> str:
    """RFC 2865 section 5.18: several Reply-Messages are shown one after the other."""
    return "".join(_as_text(value) for value in _values(reply, "Reply-Message")).strip()


def _ms_string(reply: rp.Packet, name: str) -> str | None:
    """The String after the Ident octet of MS-CHAP-Error / MS-CHAP2-Success (RFC 2548
    sections 2.1.5 and 2.3.3)."""
    value = _first(reply, name)
    if not isinstance(value, bytes) or len(value) < 2:
        return None
    return value[1:].decode("ascii", "replace").rstrip("\x00")


def _salt_key(reply: rp.Packet, name: str) -> bytes | None:
    """MS-MPPE-Send-Key / MS-MPPE-Recv-Key decrypted by pyrad (RFC 2548 sections 2.4.2,
    2.4.3): Key-Length octet then the key; a 32-octet key is cut to its first 16."""
    value = _first(reply, name)
    return value[:16] if isinstance(value, bytes) and len(value) >= 16 else None


def _mschap1_keys(reply: rp.Packet, request: VerifyRequest, secret: bytes) -> MppeKeys | None:
    """RFC 2548 section 2.4.1: MS-CHAP-MPPE-Keys is LM-Key (8) + NT-Key (16), hidden as
    User-Password.  The NT-Key servers send is the NT password hash hash (as pppd and
    FreeRADIUS read it), so the 128-bit start key is GetStartKey(challenge, NT-Key)
    (RFC 3079 section 2.4), what ``crypto.mschap1_mppe_keys`` gives locally.  An all-zero
    LM-Key means the server did not know it."""
    hidden = _first(reply, "MS-CHAP-MPPE-Keys")
    challenge = request.data.get("challenge")
    if not isinstance(hidden, bytes) or not isinstance(challenge, bytes) or len(challenge) != 8:
        return None
    try:
        clear = unhide(hidden, secret, reply.request_authenticator)
    except BadRadius:
        return None
    if len(clear) < 24:
        return None
    lm_key, nt_key = clear[:8], clear[8:24]
    start = crypto.get_start_key(challenge, nt_key)
    return MppeKeys(start, start, lm_key if any(lm_key) else None)


def mppe_keys(reply: rp.Packet, request: VerifyRequest, secret: bytes) -> MppeKeys | None:
    """The MPPE start keys an Access-Accept carries, from the NAS's (server's) side: the
    MS-MPPE-Send-Key is what the NAS sends with (RFC 2548 section 2.4.2).  For MS-CHAP v1,
    MS-CHAP-MPPE-Keys unless Send/Recv keys came too (those are preferred)."""
    send, recv = _salt_key(reply, "MS-MPPE-Send-Key"), _salt_key(reply, "MS-MPPE-Recv-Key")
    v1 = _mschap1_keys(reply, request, secret) if request.method == MSCHAP_V1 else None
    if send is not None and recv is not None:
        return MppeKeys(send, recv, v1.lm_key if v1 is not None else None)
    return v1


def _framed_address(reply: rp.Packet) -> IPv4Address | None:
    value = _first(reply, "Framed-IP-Address")
    if value is None:
        return None
    address = IPv4Address(value)
    return None if address in ADDRESS_NOT_GIVEN else address


def _seconds(reply: rp.Packet, name: str) -> int | None:
    value = _first(reply, name)
    return value if isinstance(value, int) else None


def _accepted(reply: rp.Packet, request: VerifyRequest, secret: bytes, label: str) -> VerifyResult:
    """RFC 2865 section 4.2 with what RFC 2865 section 5, RFC 2869 section 5.16 and RFC 2548
    add.  An MS-CHAP accept without keys is still an accept (the caller decides)."""
    notes: list[str] = []
    keys = mppe_keys(reply, request, secret) if request.method in (MSCHAP_V1, MSCHAP_V2) else None
    if keys is None and request.method in (MSCHAP_V1, MSCHAP_V2):
        notes.append("no MPPE keys")
    success = None
    if request.method == MSCHAP_V2:
        found = _SUCCESS.match(_ms_string(reply, "MS-CHAP2-Success") or "")
        success = found.group(0) if found else None
        if success is None:
            notes.append("no MS-CHAP2-Success")
    name = _first(reply, "User-Name")  # RFC 2865 section 5.1: the name to use from now on
    radius_class = _first(reply, "Class")
    return VerifyResult(
        True,
        message=_reply_message(reply) if request.method in (PAP, CHAP_MD5) else "",
        keys=keys,
        authenticator_response=success,
        account=_as_text(name) if name else request.username,
        framed_address=_framed_address(reply),
        session_timeout=_seconds(reply, "Session-Timeout"),
        idle_timeout=_seconds(reply, "Idle-Timeout"),
        interim_interval=_seconds(reply, "Acct-Interim-Interval"),
        radius_class=radius_class if isinstance(radius_class, bytes) else None,
        log=f"accepted by {label}" + (f" ({', '.join(notes)})" if notes else ""),
    )


def _rejected(reply: rp.Packet, label: str) -> VerifyResult:
    """RFC 2865 section 4.3; an MS-CHAP-Error (RFC 2548 section 2.1.5) is relayed as is."""
    reply_message = _reply_message(reply)
    error = _ms_string(reply, "MS-CHAP-Error")
    message = error if error and error.startswith("E=") else reply_message
    why = reply_message or error or "no Reply-Message"
    return VerifyResult(False, message=message, log=f"rejected by {label}: {why}")


def access_result(reply: rp.Packet, request: VerifyRequest, secret: bytes, label: str) -> VerifyResult:
    """Map an authenticated answer to an Access-Request onto a VerifyResult."""
    if reply.code == ACCESS_ACCEPT:
        try:
            return _accepted(reply, request, secret, label)
        except _DECODE_ERRORS as err:
            return VerifyResult(False, log=f"unusable Access-Accept from {label}: {err}")
    if reply.code == ACCESS_CHALLENGE:
        return VerifyResult(False, log=f"Access-Challenge from {label}: RADIUS challenges are not supported")
    return _rejected(reply, label)
