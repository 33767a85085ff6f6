"""Log lines a peer can cause, bounded (issue 11 item 9): every per-packet or per-connection line
of the daemon goes through one :class:`RateLimit`, so a flood of malformed messages, connections
or stray datagrams costs a few lines a second, never one line per packet.  What is not logged is
still counted (the events' own counters, ``fixup show counters``), and the next line that gets
through says how many were left out.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

INTERVAL = 10.0  # seconds
EVENTS_PER_INTERVAL = 50  # lines per event kind per interval; a quiet router never comes near it


class RateLimit:
    """At most ``burst`` passes per key in each ``interval``; counts what it holds back."""

    def __init__(self, burst: int, interval: float = INTERVAL, clock: Callable[[], float] = time.monotonic) -> None:
        self.burst = burst
        self.interval = interval
        self.clock = clock
        self._windows: dict[str, tuple[float, int, int]] = {}  # key -> (window start, passed, held back)

    def allow(self, key: str) -> tuple[bool, int]:
        """Whether this one may pass, and how many of ``key`` were held back before it (reported
        once, by the first that passes after them)."""
        now = self.clock()
        start, passed, held = self._windows.get(key, (now, 0, 0))
        if now - start >= self.interval:
            start, passed = now, 0
        if passed >= self.burst:
            self._windows[key] = (start, passed, held + 1)
            return False, 0
        self._windows[key] = (start, passed + 1, 0)
        return True, held


class RateLimitedLog:
    """Logs an error at most once per ``interval`` seconds, saying how many were suppressed;
    the traceback goes to debug every time."""

    def __init__(self, logger: logging.Logger, interval: float = INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.limit = RateLimit(1, interval, clock)

    def error(self, message: str, *args: object) -> None:
        self.logger.debug(message, *args, exc_info=True)
        allowed, held = self.limit.allow(message)
        if allowed:
            self.logger.error(message + (f" ({held} more suppressed)" if held else ""), *args)


class EventLog:
    """Logs :class:`fixup.proto.events.Event` s at the level of their kind (``levels``, else INFO),
    at most ``burst`` of each kind per interval."""

    def __init__(self, logger: logging.Logger, levels: Mapping[str, int], *, prefix: str = "",
                 burst: int = EVENTS_PER_INTERVAL, interval: float = INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.levels = levels
        self.prefix = prefix
        self.limit = RateLimit(burst, interval, clock)

    def __call__(self, event: Any) -> None:
        level = self.levels.get(event.kind, logging.INFO)
        if not self.logger.isEnabledFor(level):
            return
        if level <= logging.DEBUG:  # asked for (fixup debug pptp): all of it
            self.logger.log(level, "%s%s", self.prefix, event.text)
            return
        allowed, held = self.limit.allow(event.kind)
        if not allowed:
            return
        if held:
            self.logger.log(level, "%s%d more %s event(s) not logged in the last %g s", self.prefix, held,
                            event.kind, self.limit.interval)
        self.logger.log(level, "%s%s", self.prefix, event.text)

    def all(self, events: list[Any]) -> None:
        for event in events:
            self(event)
