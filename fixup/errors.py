"""One typed error hierarchy for everything that can be wrong with input.

Every error carries *what* is wrong (``reason``, a short stable token used as a drop-counter
key), *where* (``where``: the message or header name, and ``offset`` into it when known) and,
where RFC 2637 defines one, the PPTP General Error Code (RFC 2637 section 2.16, "Error Code"
field) a PAC/PNS would answer with.
"""
from __future__ import annotations

from enum import IntEnum


class GeneralError(IntEnum):
    """RFC 2637 section 2.16 (Call-Disconnect-Notify) / 1.5: General Error Codes."""

    NONE = 0
    NOT_CONNECTED = 1
    BAD_FORMAT = 2
    BAD_VALUE = 3
    NO_RESOURCE = 4
    BAD_CALL_ID = 5
    PAC_ERROR = 6


class FixupError(Exception):
    """Base of every error raised by fixup itself."""


class BadInput(FixupError):
    """Bytes from the wire that do not parse.  Never IndexError or struct.error."""

    reason = "bad-input"
    error_code: GeneralError = GeneralError.BAD_FORMAT

    def __init__(self, what: str, *, where: str = "", offset: int | None = None) -> None:
        self.what = what
        self.where = where
        self.offset = offset
        at = f" at offset {offset}" if offset is not None else ""
        place = f"{where}{at}: " if where or at else ""
        super().__init__(f"{place}{what}")


class Truncated(BadInput):
    reason = "truncated"


class BadLength(BadInput):
    reason = "bad-length"


class BadCookie(BadInput):
    reason = "bad-cookie"


class BadMessageType(BadInput):
    reason = "bad-message-type"


class BadReserved(BadInput):
    reason = "bad-reserved"
    error_code = GeneralError.BAD_VALUE


class BadValue(BadInput):
    reason = "bad-value"
    error_code = GeneralError.BAD_VALUE


class BadGre(BadInput):
    reason = "bad-gre"


class NotPptpGre(BadGre):
    """GRE that is not RFC 2637 enhanced GRE (version 1, protocol 0x880B)."""

    reason = "not-pptp-gre"


class BadIp(BadInput):
    reason = "bad-ip"


class PolicyError(FixupError):
    """A policy file that does not validate; ``line`` is 1-based, when known."""

    def __init__(self, message: str, *, key: str = "", line: int | None = None, path: str = "") -> None:
        self.message = message
        self.key = key
        self.line = line
        self.path = path
        loc = path or "policy"
        if line is not None:
            loc += f":{line}"
        keypart = f" {key}:" if key else ""
        super().__init__(f"{loc}:{keypart} {message}")


class SetupError(FixupError):
    """The host cannot do what the policy asks (missing interface, no NFQUEUE, ...)."""


class BadPpp(BadInput):
    """A PPP frame, control packet or option that does not parse (RFC 1661 sections 2, 5, 6)."""

    reason = "bad-ppp"


class BadAuth(BadInput):
    """A PAP / CHAP / MS-CHAP packet that does not parse (RFC 1334, RFC 1994, RFC 2433, RFC 2759)."""

    reason = "bad-auth"


class BadMppe(BadInput):
    """An MPPE packet that cannot be decrypted (RFC 3078 section 3)."""

    reason = "bad-mppe"


class BadRecord(BadInput):
    """A saved-state record (the restart store, issue 12) that does not describe a consistent
    connection: it is skipped, never half restored."""

    reason = "bad-record"
