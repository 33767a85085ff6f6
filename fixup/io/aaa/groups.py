"""The AAA server groups of a ``terminate`` policy, in the daemon's event loop: one driver per
group (RADIUS over UDP, :mod:`fixup.io.aaa.radius`; TACACS+ over TCP, :mod:`fixup.io.aaa.tacacs`)
between :class:`fixup.proto.vpdn.terminate.TerminateServer` and the servers."""
from __future__ import annotations

import asyncio
import logging
import socket
from ipaddress import IPv4Address
from typing import Any, Callable, Hashable, Protocol

from fixup.proto.aaa.config import RADIUS, AaaGroup, TerminateAaa
from fixup.proto.aaa import AccountingRecord, AuthContext, NasIdentity
from fixup.proto.auth import VerifyRequest, VerifyResult
from fixup.io.logs import EventLog
from fixup.proto.events import Event

log = logging.getLogger("fixup.aaa")

STOP_GRACE = 10.0  # seconds fixup waits for the last Stop records when it stops

EVENT_LEVELS = {"aaa-timeout": logging.WARNING, "aaa-failover": logging.WARNING, "aaa-bad-answer": logging.WARNING,
                "aaa-queued": logging.WARNING, "aaa-accounting-lost": logging.ERROR, "aaa-error": logging.WARNING,
                "aaa-late-answer": logging.DEBUG}


class GroupDriver(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def authenticate(self, token: Hashable, request: VerifyRequest, context: AuthContext) -> None: ...

    def cancel(self, token: Hashable) -> None: ...

    def account(self, record: AccountingRecord) -> None: ...

    def snapshot(self) -> dict[str, Any]: ...


def _driver(group: AaaGroup, nas: NasIdentity, on_result: Callable[[Hashable, VerifyResult], None],
            on_event: Callable[[Event], None]) -> GroupDriver:
    if group.protocol == RADIUS:
        from fixup.io.aaa.radius import RadiusIo

        return RadiusIo(group, nas, on_result=on_result, on_event=on_event)
    from fixup.io.aaa.tacacs import TacacsIo

    return TacacsIo(group, nas, on_result=on_result, on_event=on_event)


class AaaIo:
    """``authentication`` and ``accounting`` of ``terminate.aaa`` (one driver when both name the
    same group).  ``on_result(token, result)`` is called in the event loop."""

    def __init__(self, aaa: TerminateAaa, nas_address: IPv4Address,
                 on_result: Callable[[Hashable, VerifyResult], None]) -> None:
        nas = NasIdentity(nas_address, socket.gethostname() or "fixup")
        self.drivers: dict[str, GroupDriver] = {}
        self.groups = tuple(group for group in (aaa.authentication, aaa.accounting) if group is not None)
        for group in self.groups:
            if group.name not in self.drivers:
                self.drivers[group.name] = _driver(group, nas, on_result, self._log_event)
        self.auth = self.drivers[aaa.authentication.name] if aaa.authentication is not None else None
        self.acct = self.drivers[aaa.accounting.name] if aaa.accounting is not None else None
        self.accounting_group = aaa.accounting

    async def start(self) -> None:
        for name, driver in self.drivers.items():
            await driver.start()
            log.info("fixup: AAA server group %s ready", name)

    async def stop(self) -> None:
        """Waits for outstanding accounting (the Stop records of the last sessions): one try per
        host of the accounting group, at most STOP_GRACE seconds, then gives up (logged)."""
        for name, driver in self.drivers.items():
            if driver is self.acct and self.accounting_group is not None:
                grace = min(STOP_GRACE, sum(host.timeout for host in self.accounting_group.hosts))
                await driver.stop(grace=grace)  # type: ignore[call-arg]
            else:
                await driver.stop()

    async def retire(self) -> None:
        """After a reload replaced these groups: let the requests already sent be answered (every
        host's timeout times its tries), then stop."""
        await asyncio.sleep(max((h.timeout * (h.retries + 1) for g in self.groups for h in g.hosts), default=0))
        await self.stop()
        log.info("fixup: AAA server group(s) %s of the previous policy stopped", ", ".join(self.drivers))

    def authenticate(self, token: Hashable, request: VerifyRequest, context: AuthContext) -> None:
        if self.auth is not None:
            self.auth.authenticate(token, request, context)

    def cancel(self, token: Hashable) -> None:
        if self.auth is not None:
            self.auth.cancel(token)

    def account(self, record: AccountingRecord) -> None:
        if self.acct is not None:
            self.acct.account(record)

    def snapshot(self) -> dict[str, Any]:
        return {name: driver.snapshot() for name, driver in self.drivers.items()}

    _log_event = EventLog(log, EVENT_LEVELS)
