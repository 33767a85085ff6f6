"""Events the pure state machines of both products report for the I/O shell to log and count."""
from __future__ import annotations

from dataclasses import dataclass


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
