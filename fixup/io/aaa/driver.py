"""What every AAA client shell shares: driving a pure (sans-I/O) client in the event loop.

The client is fed inputs with the loop's clock (``now``); after each input the shell carries
out what the client asked for (:meth:`ClientDriver._carry_out`, per protocol), hands results
and events to its owner, and keeps one timer at the client's ``next_deadline()``.  A bug or bad
input in one step is logged and counted; the event loop goes on.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable
from typing import Any, Protocol

from fixup.proto.aaa.config import AaaGroup
from fixup.proto.auth.credentials import VerifyResult
from fixup.proto.events import Event

log = logging.getLogger("fixup.aaa")


class PureClient(Protocol):
    def poll(self, now: float) -> None: ...

    def next_deadline(self) -> float | None: ...

    def take_results(self) -> list[tuple[Hashable, VerifyResult]]: ...

    def take_events(self) -> list[Event]: ...


class ClientDriver:
    """Base of :class:`fixup.io.aaa.radius.RadiusIo` and :class:`fixup.io.aaa.tacacs.TacacsIo`.
    ``on_result`` gets (token, result), never from inside a request call; ``on_event`` gets the
    client's events (the owner logs them)."""

    client: PureClient

    def __init__(self, group: AaaGroup, on_result: Callable[[Hashable, VerifyResult], None],
                 on_event: Callable[[Event], None]) -> None:
        self.group = group
        self.on_result = on_result
        self.on_event = on_event
        self.input_errors = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._flush_soon = False

    # -- to override ------------------------------------------------------------------------

    def _carry_out(self) -> None:
        """Send / connect / close what the client asked for (per protocol)."""

    def _running(self) -> bool:
        """Whether the timer may be armed (sockets open)."""
        return self._loop is not None

    # -- driving ----------------------------------------------------------------------------

    def _now(self) -> float:
        return (self._loop or asyncio.get_running_loop()).time()

    def _guard(self, call: Callable[[float], None]) -> None:
        """Run one step of the client; a bug or bad input there is logged and counted."""
        try:
            call(self._now())
        except Exception:  # noqa: BLE001 - one bad answer must not stop the client
            self.input_errors += 1
            log.exception("fixup: aaa-server %s: %s client step failed", self.group.name, self.group.protocol)

    def _step(self, call: Callable[[float], None]) -> None:
        """An input from the network or the timer: run it, then flush at once."""
        self._guard(call)
        self._flush()

    def _request(self, call: Callable[[float], None]) -> None:
        """A call from the session layer: what it causes goes out from the event loop, never
        back into the caller."""
        self._guard(call)
        if not self._flush_soon:
            self._flush_soon = True
            (self._loop or asyncio.get_running_loop()).call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_soon = False
        self._carry_out()
        client = self.client
        for event in client.take_events():
            self._call(self.on_event, event)
        for token, result in client.take_results():
            self._call(self.on_result, token, result)
        self._after_flush()
        self._rearm()

    def _after_flush(self) -> None:
        """Hook after results went out (RADIUS: wake a stop waiting for accounting)."""

    def _rearm(self) -> None:
        self._cancel_timer()
        deadline = self.client.next_deadline()
        if deadline is not None and self._running():
            self._timer = (self._loop or asyncio.get_running_loop()).call_at(deadline, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        self._step(self.client.poll)

    def _call(self, callback: Callable[..., None], *args: Any) -> None:
        try:
            callback(*args)
        except Exception:  # noqa: BLE001 - the owner's bug must not stop the client
            log.exception("fixup: aaa-server %s: callback failed", self.group.name)
