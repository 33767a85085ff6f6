"""I/O for the TACACS+ client: TCP connections to the servers of one ``aaa-server`` group
around the pure :class:`fixup.proto.aaa.tacacs.TacacsClient`, in the daemon's event loop.

The pure client decides everything (which host, when to give up); this shell opens and
closes the connections it asks for, feeds it what arrives and runs its timer.  Connections
start from the NAS address when it is one of ours (the server knows us by it), unbound
otherwise.  TACACS+ accounting is not offered: :meth:`TacacsIo.account` does nothing.
"""
from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Hashable
from typing import Any

from fixup.io.aaa.driver import ClientDriver
from fixup.proto.aaa.config import AaaGroup
from fixup.proto.aaa import AccountingRecord, AuthContext, NasIdentity
from fixup.proto.aaa.tacacs import TacacsClient
from fixup.proto.auth.credentials import VerifyRequest, VerifyResult
from fixup.proto.events import Event

log = logging.getLogger("fixup.aaa")

READ_SIZE = 4096


class TacacsIo(ClientDriver):
    """Owns the TCP connections of one TACACS+ group (callbacks: :class:`ClientDriver`)."""

    def __init__(self, group: AaaGroup, nas: NasIdentity, *,
                 on_result: Callable[[Hashable, VerifyResult], None],
                 on_event: Callable[[Event], None]) -> None:
        super().__init__(group, on_result, on_event)
        self.nas = nas
        self.client = TacacsClient(group, nas)
        self._local: tuple[str, int] | None = None
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._writers: dict[int, asyncio.StreamWriter] = {}
        self._open = False

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._local = (str(self.nas.address), 0) if _is_local(str(self.nas.address)) else None
        self._open = True
        log.info("fixup: aaa-server %s protocol tacacs+: %s, source %s", self.group.name,
                 ", ".join(host.label for host in self.group.hosts) or "no hosts",
                 self._local[0] if self._local else "unbound")

    async def stop(self) -> None:
        """Close every connection; pending authentications get a failed result."""
        self._step(lambda now: self.client.abandon())
        self._open = False
        self._cancel_timer()
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

    def authenticate(self, token: Hashable, request: VerifyRequest, context: AuthContext) -> None:
        self._request(lambda now: self.client.authenticate(token, request, context, now))

    def cancel(self, token: Hashable) -> None:
        self._request(lambda now: self.client.cancel(token))

    def account(self, record: AccountingRecord) -> None:
        """TACACS+ accounting (RFC 8907 section 7) is not offered; the policy layer sends
        accounting to RADIUS groups only."""

    def snapshot(self) -> dict[str, Any]:
        return self.client.snapshot()

    # -- connections ------------------------------------------------------------------------

    async def _run_connection(self, conn_id: int, address: str, port: int) -> None:
        """Connect, then feed the client until either side closes.  :meth:`_flush` cancels
        the task (or, from inside it, ends the loop) when the client closes the connection."""
        try:
            reader, writer = await asyncio.open_connection(address, port, local_addr=self._local)
        except OSError as err:
            reason = _reason(err)
            self._tasks.pop(conn_id, None)
            self._step(lambda now: self.client.connection_failed(conn_id, reason, now))
            return
        self._writers[conn_id] = writer
        try:
            self._step(lambda now: self.client.connected(conn_id, now))
            while conn_id in self._tasks:
                data = await reader.read(READ_SIZE)
                if not data:
                    break
                self._step(lambda now: self.client.data_in(conn_id, data, now))
        except (ConnectionError, OSError) as err:
            log.debug("TACACS+ connection %d to %s:%d: %s", conn_id, address, port, err)
        finally:
            self._writers.pop(conn_id, None)
            writer.close()
            if self._tasks.pop(conn_id, None) is not None:  # not closed by us: the host did
                self._step(lambda now: self.client.connection_closed(conn_id, now))

    # -- plumbing ---------------------------------------------------------------------------

    def _running(self) -> bool:
        return self._open

    def _carry_out(self) -> None:
        """Connections, then sends before closes, so that a closing connection still writes
        its last packet (closing a writer flushes it first)."""
        client = self.client
        for conn_id, address, port in client.take_connects():
            if self._open:
                self._tasks[conn_id] = asyncio.get_running_loop().create_task(
                    self._run_connection(conn_id, address, port))
        for conn_id, data in client.take_sends():
            writer = self._writers.get(conn_id)
            if writer is not None:
                writer.write(data)
        for conn_id in client.take_closes():
            self._close(conn_id)

    def _close(self, conn_id: int) -> None:
        writer = self._writers.pop(conn_id, None)
        if writer is not None:
            writer.close()
        task = self._tasks.pop(conn_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()


def _reason(err: OSError) -> str:
    return err.strerror or str(err) or type(err).__name__


def _is_local(address: str) -> bool:
    """Whether ``address`` is one of this host's, i.e. a source we may bind to."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.bind((address, 0))
    except OSError:
        return False
    finally:
        probe.close()
    return True
