"""Authentication failures per peer address (issue 11 item 13), pure: a peer that fails
``limit`` times within ``window`` seconds is refused new calls until ``window`` seconds after its
last failure -- the delay that makes guessing passwords slow.  The table is bounded: when it is
full, the entry whose last failure is oldest goes."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class _Record:
    failures: int
    first: float
    last: float


class FailureBudget:
    def __init__(self, limit: int = 5, window: float = 60.0, capacity: int = 4096) -> None:
        self.limit, self.window, self.capacity = limit, window, capacity
        self._peers: dict[bytes, _Record] = {}

    def failed(self, peer: bytes, now: float) -> None:
        record = self._peers.get(peer)
        if record is None or now - record.first > self.window and record.failures < self.limit:
            if record is None and len(self._peers) >= self.capacity:
                del self._peers[min(self._peers, key=lambda p: self._peers[p].last)]
            self._peers[peer] = _Record(1, now, now)
            return
        record.failures += 1
        record.last = now

    def held_down(self, peer: bytes, now: float) -> float | None:
        """Seconds until ``peer`` may try again, or None when it may now."""
        record = self._peers.get(peer)
        if record is None or record.failures < self.limit:
            return None
        left = record.last + self.window - now
        if left <= 0:
            del self._peers[peer]
            return None
        return left

    def succeeded(self, peer: bytes) -> None:
        self._peers.pop(peer, None)
