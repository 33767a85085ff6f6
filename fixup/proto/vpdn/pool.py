"""``ip local pool``: client addresses handed out by IPCP (RFC 1332 section 3.3), never twice."""
from __future__ import annotations

import heapq
from ipaddress import IPv4Address


class AddressPool:
    """Addresses ``first``..``last``, lowest free first, minus the ones reserved (our own)."""

    def __init__(self, first: IPv4Address, last: IPv4Address, reserved: frozenset[IPv4Address] = frozenset()) -> None:
        self._first, self._last = int(first), int(last)
        self._free = [a for a in range(int(first), int(last) + 1) if IPv4Address(a) not in reserved]
        heapq.heapify(self._free)
        self._used: set[int] = set()
        self.size = len(self._free)

    def allocate(self) -> IPv4Address | None:
        if not self._free:
            return None
        address = heapq.heappop(self._free)
        self._used.add(address)
        return IPv4Address(address)

    def take(self, address: IPv4Address) -> bool:
        """Hand out this very address (a AAA server's Framed-IP-Address); False when it is in
        use or not in the pool."""
        value = int(address)
        if value in self._used or value not in self._free:
            return False
        self._free.remove(value)
        heapq.heapify(self._free)
        self._used.add(value)
        return True

    def __contains__(self, address: IPv4Address) -> bool:
        return self._first <= int(address) <= self._last

    def release(self, address: IPv4Address) -> None:
        value = int(address)
        if value in self._used:
            self._used.remove(value)
            heapq.heappush(self._free, value)

    @property
    def in_use(self) -> int:
        return len(self._used)
