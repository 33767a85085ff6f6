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

from fixup.io.aaa.driver import ClientDriver
from fixup.proto.aaa.config import AaaGroup
from fixup.proto.aaa import AccountingRecord, AuthContext, NasIdentity
from fixup.proto.aaa.radius import RadiusClient
from fixup.proto.auth.credentials import VerifyRequest, VerifyResult
from fixup.proto.events import Event

log = logging.getLogger("fixup.aaa")


class _Receiver(asyncio.DatagramProtocol):
    """Hands every datagram of one socket to the driver."""

    def __init__(self, owner: RadiusIo) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.owner.datagram_received(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        log.debug("RADIUS socket: %s", exc)


class RadiusIo(ClientDriver):
    """Owns the UDP socket(s) of one RADIUS group (callbacks: :class:`ClientDriver`)."""

    def __init__(self, group: AaaGroup, nas: NasIdentity, *,
                 on_result: Callable[[Hashable, VerifyResult], None],
                 on_event: Callable[[Event], None],
                 random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        super().__init__(group, on_result, on_event)
        self.nas = nas
        self.client = RadiusClient(group, nas, random_bytes=random_bytes)
        self.sources: dict[int, str] = {}  # address family -> the address we send from
        self._transports: dict[int, asyncio.DatagramTransport] = {}
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
        self._cancel_timer()
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

    def _carry_out(self) -> None:
        for destination, payload in self.client.take_datagrams():
            self._send(destination, payload)

    def _after_flush(self) -> None:
        if self._accounting_done is not None and not self.client.pending_accounting:
            self._accounting_done.set()

    def _running(self) -> bool:
        return bool(self._transports) and self._loop is not None

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
