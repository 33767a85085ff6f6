"""I/O for the RADIUS client: the UDP socket of one ``aaa-server`` group around the pure
:class:`fixup.proto.aaa.radius.RadiusClient`, in the daemon's event loop.

The pure client decides everything (identifiers, retransmissions, failover); this shell
sends what it asks, feeds it what arrives and runs its one timer at ``next_deadline()``.
Requests leave from the NAS address when that address is ours (RFC 2865 section 5.4: the
server may know the NAS by it), from any address otherwise.  One socket per address family
of the group's hosts.  Times are the event loop's clock.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Hashable
from ipaddress import ip_address
from typing import Any

from fixup.policy_aaa import AaaGroup
from fixup.proto.aaa import AccountingRecord, AuthContext, NasIdentity
from fixup.proto.aaa.radius import RadiusClient
from fixup.proto.auth.credentials import VerifyRequest, VerifyResult
from fixup.proto.verdict import Event

log = logging.getLogger("fixup.aaa")


class _Receiver(asyncio.DatagramProtocol):
    """Hands every datagram of one socket to the driver."""

    def __init__(self, owner: RadiusIo) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.owner.datagram_received(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        log.debug("RADIUS socket: %s", exc)


class RadiusIo:
    """Owns the UDP socket(s) of one RADIUS group.  ``on_result`` gets (token, result),
    never from inside :meth:`authenticate`; ``on_event`` gets the client's events, which are
    also logged."""

    def __init__(self, group: AaaGroup, nas: NasIdentity, *,
                 on_result: Callable[[Hashable, VerifyResult], None],
                 on_event: Callable[[Event], None],
                 random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        self.group = group
        self.nas = nas
        self.client = RadiusClient(group, nas, random_bytes=random_bytes)
        self.on_result = on_result
        self.on_event = on_event
        self.input_errors = 0
        self.sources: dict[int, str] = {}  # address family -> the address we send from
        self._transports: dict[int, asyncio.DatagramTransport] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._flush_soon = False
        self._accounting_done: asyncio.Event | None = None

    # --- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._accounting_done = asyncio.Event()
        families = {socket.AF_INET6 if ip_address(str(host.address)).version == 6 else socket.AF_INET
                    for host in self.group.hosts}
        for family in sorted(families):
            self._transports[family] = await self._open(family)
        log.info("fixup: aaa-server %s protocol radius: %s, source %s", self.group.name,
                 ", ".join(host.label for host in self.group.hosts),
                 ", ".join(self.sources.values()) or "none")

    async def _open(self, family: int) -> asyncio.DatagramTransport:
        """Bind to the NAS address if it is one of ours, else to the wildcard address."""
        nas = str(self.nas.address)
        if (ip_address(nas).version == 6) == (family == socket.AF_INET6):
            try:
                transport = await self._endpoint(nas, family)
            except OSError as err:
                log.debug("RADIUS: %s is not ours (%s), sending unbound", nas, err)
            else:
                self.sources[family] = nas
                return transport
        self.sources[family] = "unbound"
        return await self._endpoint("::" if family == socket.AF_INET6 else "0.0.0.0", family)

    async def _endpoint(self, address: str, family: int) -> asyncio.DatagramTransport:
        assert self._loop is not None
        transport, _ = await self._loop.create_datagram_endpoint(
            lambda: _Receiver(self), local_addr=(address, 0), family=family)
        return transport

    async def stop(self, grace: float = 2.0) -> None:
        """Wait up to ``grace`` seconds for outstanding accounting (the Stop records of the
        last sessions), then give up on what is left (reported) and close the socket(s)."""
        if self._loop is not None and self._accounting_done is not None and self.client.pending_accounting:
            self._accounting_done.clear()
            try:
                await asyncio.wait_for(self._accounting_done.wait(), grace)
            except TimeoutError:
                log.warning("fixup: aaa-server %s: %d accounting request(s) unanswered at stop",
                            self.group.name, self.client.pending_accounting)
        self._step(lambda now: self.client.abandon("RADIUS client stopped"))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for transport in self._transports.values():
            transport.close()
        self._transports.clear()

    # --- the caller's side -----------------------------------------------------------------

    def authenticate(self, token: Hashable, request: VerifyRequest, context: AuthContext) -> None:
        self._request(lambda now: self.client.authenticate(token, request, context, now))

    def account(self, record: AccountingRecord) -> None:
        self._request(lambda now: self.client.account(record, now))

    def cancel(self, token: Hashable) -> None:
        self._request(lambda now: self.client.cancel(token))

    def snapshot(self) -> dict[str, Any]:
        return {**self.client.snapshot(), "input_errors": self.input_errors,
                "source": ", ".join(self.sources.values())}

    # --- input -----------------------------------------------------------------------------

    def datagram_received(self, data: bytes, source: tuple[str, int]) -> None:
        self._step(lambda now: self.client.datagram_in(source, data, now))

    def _on_timer(self) -> None:
        self._timer = None
        self._step(self.client.poll)

    # --- plumbing --------------------------------------------------------------------------

    def _now(self) -> float:
        loop = self._loop or asyncio.get_running_loop()
        return loop.time()

    def _guard(self, call: Callable[[float], None]) -> None:
        """Run one step of the client; a bug or bad input there is logged and counted, the
        event loop goes on."""
        try:
            call(self._now())
        except Exception:  # noqa: BLE001 - one bad datagram must not stop the client
            self.input_errors += 1
            log.exception("fixup: aaa-server %s: RADIUS client step failed", self.group.name)

    def _step(self, call: Callable[[float], None]) -> None:
        self._guard(call)
        self._flush()

    def _request(self, call: Callable[[float], None]) -> None:
        """A call from the session layer: its datagrams and results go out from the event
        loop, never back into the caller."""
        self._guard(call)
        if not self._flush_soon:
            self._flush_soon = True
            (self._loop or asyncio.get_running_loop()).call_soon(self._flush)

    def _flush(self) -> None:
        """Send, deliver, re-arm the timer."""
        self._flush_soon = False
        client = self.client
        for destination, payload in client.take_datagrams():
            self._send(destination, payload)
        for event in client.take_events():
            self._call(self.on_event, event)  # the owner logs it (fixup.io.aaa_io)
        for token, result in client.take_results():
            self._call(self.on_result, token, result)
        if self._accounting_done is not None and not client.pending_accounting:
            self._accounting_done.set()
        self._rearm()

    def _send(self, destination: tuple[str, int], payload: bytes) -> None:
        family = socket.AF_INET6 if ":" in destination[0] else socket.AF_INET
        transport = self._transports.get(family)
        if transport is None or transport.is_closing():
            log.debug("RADIUS datagram to %s:%d not sent: no socket", *destination)
            return
        try:
            transport.sendto(payload, destination)
        except OSError as err:
            log.debug("RADIUS datagram to %s:%d not sent: %s", destination[0], destination[1], err)

    def _rearm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.client.next_deadline()
        if deadline is not None and self._transports and self._loop is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _call(self, callback: Callable[..., None], *args: Any) -> None:
        try:
            callback(*args)
        except Exception:  # noqa: BLE001 - the caller's bug must not stop the client
            log.exception("fixup: aaa-server %s: callback failed", self.group.name)
