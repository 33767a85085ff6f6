"""What the pure tracker answers for one packet, and the events it reports."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Direction(Enum):
    """Which side a packet came from, as the I/O shell knows it from the input interface."""

    OUTBOUND = "out"  # from an inside interface, toward the servers
    INBOUND = "in"  # from the outside interface, toward the PAT address / inside clients


@dataclass(slots=True)  # not frozen: built once per packet, frozen __init__ costs twice as much
class Verdict:
    """``accept``: let the packet go on.  ``packet``: the rewritten packet (IP header included,
    checksums correct) or None when it goes on unchanged.  ``reason``: for a drop, the counter
    key (``truncated``, ``bad-cookie``, ``unknown-call`` ...); for an accepted packet with an
    anomaly worth counting, that anomaly."""

    accept: bool
    packet: bytes | None = None
    reason: str | None = None


ACCEPT = Verdict(True)


def drop(reason: str) -> Verdict:
    return Verdict(False, None, reason)


@dataclass(frozen=True, slots=True)
class Event:
    """Something an operator may want logged; ``kind`` is a stable token
    (``control-open``, ``control-close``, ``call-up``, ``call-down``, ``protocol-error`` ...),
    ``text`` a one-line human description, ``data`` JSON-able details."""

    kind: str
    text: str
    data: dict

    def __str__(self) -> str:
        return self.text
