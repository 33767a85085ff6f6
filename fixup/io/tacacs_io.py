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

from fixup.policy_aaa import AaaGroup
from fixup.proto.aaa import AccountingRecord, AuthContext, NasIdentity
from fixup.proto.aaa.tacacs import TacacsClient
from fixup.proto.auth.credentials import VerifyRequest, VerifyResult
from fixup.proto.verdict import Event

log = logging.getLogger("fixup.aaa")

READ_SIZE = 4096


class TacacsIo:
    """Owns the TCP connections of one TACACS+ group.  ``on_result`` gets (token, result),
    never from inside :meth:`authenticate`; ``on_event`` gets the client's events (to log)."""

    def __init__(self, group: AaaGroup, nas: NasIdentity, *,
                 on_result: Callable[[Hashable, VerifyResult], None],
                 on_event: Callable[[Event], None]) -> None:
        self.group = group
        self.nas = nas
        self.client = TacacsClient(group, nas)
        self.on_result = on_result
        self.on_event = on_event
        self._loop: asyncio.AbstractEventLoop | None = None
        self._local: tuple[str, int] | None = None
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._writers: dict[int, asyncio.StreamWriter] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._flush_scheduled = False
        self._running = False

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._local = (str(self.nas.address), 0) if _is_local(str(self.nas.address)) else None
        self._running = True
        log.info("fixup: aaa-server %s protocol tacacs+: %s, source %s", self.group.name,
                 ", ".join(host.label for host in self.group.hosts) or "no hosts",
                 self._local[0] if self._local else "unbound")

    async def stop(self) -> None:
        """Close every connection; pending authentications get a failed result."""
        self._guard(lambda now: self.client.abandon())
        self._flush()
        self._running = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

    def authenticate(self, token: Hashable, request: VerifyRequest, context: AuthContext) -> None:
        self._guard(lambda now: self.client.authenticate(token, request, context, now))
        self._schedule_flush()

    def cancel(self, token: Hashable) -> None:
        self._guard(lambda now: self.client.cancel(token))
        self._schedule_flush()

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
            self._feed(lambda now: self.client.connection_failed(conn_id, reason, now))
            return
        self._writers[conn_id] = writer
        try:
            self._feed(lambda now: self.client.connected(conn_id, now))
            while conn_id in self._tasks:
                data = await reader.read(READ_SIZE)
                if not data:
                    break
                self._feed(lambda now: self.client.data_in(conn_id, data, now))
        except (ConnectionError, OSError) as err:
            log.debug("TACACS+ connection %d to %s:%d: %s", conn_id, address, port, err)
        finally:
            self._writers.pop(conn_id, None)
            writer.close()
            if self._tasks.pop(conn_id, None) is not None:  # not closed by us: the host did
                self._feed(lambda now: self.client.connection_closed(conn_id, now))

    # -- plumbing ---------------------------------------------------------------------------

    def _now(self) -> float:
        return self._loop.time() if self._loop is not None else asyncio.get_running_loop().time()

    def _guard(self, call: Callable[[float], None]) -> None:
        """Run one client input; a bug there is logged, never fatal to the daemon."""
        try:
            call(self._now())
        except Exception:  # noqa: BLE001 - the event loop must survive one bad answer
            log.exception("fixup: TACACS+ client failed")

    def _feed(self, call: Callable[[float], None]) -> None:
        self._guard(call)
        self._flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self._flush()

    def _flush(self) -> None:
        """Carry out what the client asked for: sends before closes, so that a closing
        connection still writes its last packet (closing a writer flushes it first)."""
        client = self.client
        for conn_id, address, port in client.take_connects():
            if self._running:
                self._tasks[conn_id] = asyncio.get_running_loop().create_task(
                    self._run_connection(conn_id, address, port))
        for conn_id, data in client.take_sends():
            writer = self._writers.get(conn_id)
            if writer is not None:
                writer.write(data)
        for conn_id in client.take_closes():
            self._close(conn_id)
        self._deliver(client.take_results(), client.take_events())
        self._rearm()

    def _close(self, conn_id: int) -> None:
        writer = self._writers.pop(conn_id, None)
        if writer is not None:
            writer.close()
        task = self._tasks.pop(conn_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def _deliver(self, results: list[tuple[Hashable, VerifyResult]], events: list[Event]) -> None:
        for event in events:
            _call(self.on_event, event)
        for token, result in results:
            _call(self.on_result, token, result)

    def _rearm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.client.next_deadline()
        if deadline is not None and self._running:
            self._timer = asyncio.get_running_loop().call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._feed(self.client.poll)


def _call(callback: Callable[..., None], *args: Any) -> None:
    try:
        callback(*args)
    except Exception:  # noqa: BLE001 - a caller's bug must not stop the client
        log.exception("fixup: TACACS+ callback failed")


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
