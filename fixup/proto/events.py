"""Events the pure state machines of both products report for the I/O shell to log and count."""
from __future__ import annotations

import re
from dataclasses import dataclass

# C0 and C1 controls (CR, LF, ESC ...), DEL, line/paragraph separators and bidi overrides: what
# could forge a log line or repaint a terminal when a peer's text (user name, host name) is shown
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with every character that could forge a log line or drive a terminal escaped
    (``\\x1b``, ``\\u202e``); text from the wire goes through this before it is logged or shown."""
    if not _UNSAFE.search(text):
        return text
    return _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", text)


@dataclass(frozen=True, slots=True)
class Event:
    """Something an operator may want logged; ``kind`` is a stable token
    (``control-open``, ``control-close``, ``call-up``, ``call-down``, ``protocol-error`` ...),
    ``text`` a one-line human description, ``data`` JSON-able details."""

    kind: str
    text: str
    data: dict

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", printable(self.text))  # texts carry peers' names

    def __str__(self) -> str:
        return self.text
