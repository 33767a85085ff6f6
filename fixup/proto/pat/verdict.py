"""What the pure PAT tracker answers for one packet (its events are :class:`fixup.proto.events.Event`)."""
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
