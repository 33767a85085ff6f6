"""TACACS+ authentication client, pure (sans-I/O): RFC 8907 section 5 for PPP PAP and CHAP.

One authentication is one TCP connection to one host, closed after the REPLY (no single
connection mode, RFC 8907 section 4.3).  The client asks for connections
(:meth:`TacacsClient.take_connects`), is told how they went (``connected``,
``connection_failed``, ``connection_closed``), writes the START once connected
(``take_sends``) and reads the stream (``data_in``: bytes split in any way).

Each try has ``host.timeout`` seconds for connect and answer; a host gets ``1 + host.retries``
tries, then the next host of the group is tried (failover).  A refused or closed connection
ends its try at once; an answer that does not parse (a wrong key, mostly) skips the host's
remaining tries, since they would get the same answer.

The login (RFC 8907 section 5.4.2): action LOGIN, minor version 1, service PPP, authen_type
PAP (data: the password) or CHAP (data: PPP Identifier, challenge, response).  TACACS+ has no
MPPE keys for us, so MS-CHAP is not offered: the policy layer refuses TACACS+ for MS-CHAP and
this client fails such a request at once.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from fixup.errors import BadInput
from fixup.proto.aaa.config import AaaGroup, AaaHost
from fixup.proto.aaa import AuthContext, NasIdentity
from fixup.proto.auth.credentials import CHAP_MD5, FAILED_MESSAGE, PAP, VerifyRequest, VerifyResult
from fixup.proto.events import Event
from fixup.wire import tacacs as wire
from fixup.wire.tacacs import AuthenReply, Status

REPLY_SEQ = 2  # RFC 8907 section 4.1: the server's first packet of a session
_ASKS_FOR_MORE = (Status.GETDATA, Status.GETUSER, Status.GETPASS)
_COUNTERS = ("requests", "accepts", "rejects", "errors", "timeouts", "connect_failures", "closed_early",
             "bad_answers")


class RequestError(ValueError):
    """A VerifyRequest that cannot be put into a START."""


@dataclass(slots=True)
class _Pending:
    """One authentication in progress: which host and try, and the connection of the try."""

    token: Hashable
    start: wire.AuthenStart
    username: str
    host_index: int = 0
    tries_on_host: int = 0
    tries: int = 0
    conn_id: int | None = None
    session_id: int = 0
    deadline: float = 0.0
    sent_at: float | None = None
    buffer: bytearray = field(default_factory=bytearray)
    last_problem: str = ""


@dataclass(slots=True)
class _HostStats:
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_COUNTERS, 0))
    rtt_total: float = 0.0
    rtt_count: int = 0
    last_problem: str = ""


class TacacsClient:
    """The TACACS+ client for one ``aaa-server`` group.  ``token``: the caller's name for an
    authentication, handed back with its result.  Connection ids are the client's own."""

    def __init__(self, group: AaaGroup, nas: NasIdentity, *,
                 random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        self.group = group
        self.nas = nas
        self._random = random_bytes
        self._pending: dict[Hashable, _Pending] = {}
        self._by_conn: dict[int, _Pending] = {}
        self._next_conn = 1
        self._stats = [_HostStats() for _ in group.hosts]
        self._connects: list[tuple[int, str, int]] = []
        self._sends: list[tuple[int, bytes]] = []
        self._closes: list[int] = []
        self._results: list[tuple[Hashable, VerifyResult]] = []
        self._events: list[Event] = []

    # -- requests ---------------------------------------------------------------------------

    def authenticate(self, token: Hashable, request: VerifyRequest, context: AuthContext, now: float) -> None:
        """Start verifying ``request``; the result comes out of :meth:`take_results`.  A token
        still pending is cancelled first."""
        self.cancel(token)
        if request.method not in (PAP, CHAP_MD5):
            self._results.append((token, _failure(f"TACACS+ cannot verify {request.method} (PAP and CHAP only, "
                                                  "no MPPE keys)")))
            return
        try:
            start = _start_for(request, context)
        except RequestError as err:
            self._results.append((token, _failure(f"TACACS+ request not sent: {err}")))
            return
        if not self.group.hosts:
            self._results.append((token, _failure(f"TACACS+ group {self.group.name} has no hosts")))
            return
        pending = _Pending(token, start, request.username)
        self._pending[token] = pending
        self._start_try(pending, now)

    def cancel(self, token: Hashable) -> None:
        """Forget ``token``: its connection is closed and no result comes."""
        pending = self._pending.pop(token, None)
        if pending is not None:
            self._drop_connection(pending)

    def abandon(self, reason: str = "TACACS+ client stopped") -> None:
        """Give up on everything pending (the daemon stops): a failed result for each."""
        for pending in list(self._pending.values()):
            self._finish(pending, _failure(f"{reason} while asking TACACS+ group {self.group.name}"))

    # -- connection events ------------------------------------------------------------------

    def connected(self, conn_id: int, now: float) -> None:
        """The TCP connection is up: the START goes out (seq_no 1, RFC 8907 section 4.1)."""
        pending = self._by_conn.get(conn_id)
        if pending is None:
            self._closes.append(conn_id)  # cancelled or timed out meanwhile
            return
        header = wire.TacacsHeader(wire.TYPE_AUTHEN, 1, pending.session_id, wire.MINOR_ONE)
        self._sends.append((conn_id, wire.build_packet(header, wire.build_start(pending.start), self._key(pending))))
        pending.sent_at = now

    def data_in(self, conn_id: int, data: bytes, now: float) -> None:
        """Stream bytes from the host; the REPLY is handled once all of it is there."""
        pending = self._by_conn.get(conn_id)
        if pending is None:
            return
        pending.buffer += data
        try:
            reply = self._complete_reply(pending)
        except BadInput as err:
            self._bad_answer(pending, err, now)
            return
        if reply is not None:
            self._handle_reply(pending, reply, now)

    def connection_failed(self, conn_id: int, reason: str, now: float) -> None:
        """The connection could not be made: this try is over."""
        pending = self._by_conn.get(conn_id)
        if pending is not None:
            self._count(pending, "connect_failures")
            self._try_failed(pending, f"cannot connect: {reason}", now, close=False)

    def connection_closed(self, conn_id: int, now: float) -> None:
        """The host closed before its REPLY was complete: this try is over."""
        pending = self._by_conn.get(conn_id)
        if pending is not None:
            self._count(pending, "closed_early")
            self._try_failed(pending, "connection closed without a reply (bad key?)", now, close=False)

    def poll(self, now: float) -> None:
        """Time out the tries whose deadline has passed."""
        for pending in [p for p in self._pending.values() if p.conn_id is not None and p.deadline <= now]:
            self._count(pending, "timeouts")
            host = self._host(pending)
            self._events.append(Event("aaa-timeout", f"TACACS+ {self.group.name}: no answer from {host.label} "
                                      f"within {host.timeout:g} s for {pending.username!r}",
                                      {"group": self.group.name, "host": host.label, "user": pending.username}))
            self._try_failed(pending, f"no answer within {host.timeout:g} s", now, close=True)

    def next_deadline(self) -> float | None:
        """When :meth:`poll` has something to do, or None."""
        deadlines = [p.deadline for p in self._pending.values() if p.conn_id is not None]
        return min(deadlines, default=None)

    # -- outputs ----------------------------------------------------------------------------

    def take_connects(self) -> list[tuple[int, str, int]]:
        """(conn_id, address, port) of the TCP connections to open."""
        out, self._connects = self._connects, []
        return out

    def take_sends(self) -> list[tuple[int, bytes]]:
        out, self._sends = self._sends, []
        return out

    def take_closes(self) -> list[int]:
        """Connections to close (or to stop opening); sends for them come first."""
        out, self._closes = self._closes, []
        return out

    def take_results(self) -> list[tuple[Hashable, VerifyResult]]:
        out, self._results = self._results, []
        return out

    def take_events(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    def snapshot(self) -> dict[str, Any]:
        """For ``show aaa-server``: the group and per host counters."""
        hosts = []
        for host, stats in zip(self.group.hosts, self._stats):
            pending = sum(1 for p in self._pending.values() if p.conn_id is not None and self._host(p) is host)
            average = round(stats.rtt_total / stats.rtt_count * 1000) if stats.rtt_count else 0
            hosts.append({"host": host.label, "address": str(host.address), "port": host.port,
                          "timeout": host.timeout, "retries": host.retries, "pending": pending,
                          "average_rtt_ms": average, **stats.counters, "last_problem": stats.last_problem})
        return {"group": self.group.name, "protocol": self.group.protocol, "pending": len(self._pending),
                "hosts": hosts}

    # -- tries ------------------------------------------------------------------------------

    def _host(self, pending: _Pending) -> AaaHost:
        return self.group.hosts[pending.host_index]

    def _key(self, pending: _Pending) -> bytes:
        return self._host(pending).secret

    def _count(self, pending: _Pending, counter: str) -> None:
        self._stats[pending.host_index].counters[counter] += 1

    def _start_try(self, pending: _Pending, now: float) -> None:
        """A new connection and a new session_id (RFC 8907 section 4.1: random) per try."""
        host = self._host(pending)
        conn_id, self._next_conn = self._next_conn, self._next_conn + 1
        pending.conn_id, pending.sent_at = conn_id, None
        pending.session_id = int.from_bytes(self._random(4), "big")
        pending.deadline = now + host.timeout
        pending.buffer.clear()
        pending.tries += 1
        self._by_conn[conn_id] = pending
        self._count(pending, "requests")
        self._connects.append((conn_id, str(host.address), host.port))

    def _drop_connection(self, pending: _Pending, close: bool = True) -> None:
        if pending.conn_id is not None:
            self._by_conn.pop(pending.conn_id, None)
            if close:
                self._closes.append(pending.conn_id)
            pending.conn_id = None

    def _try_failed(self, pending: _Pending, problem: str, now: float, *, close: bool,
                    skip_host: bool = False) -> None:
        """Retry the host, fail over to the next one, or give up."""
        host = self._host(pending)
        pending.last_problem = f"{host.label}: {problem}"
        self._stats[pending.host_index].last_problem = problem
        self._drop_connection(pending, close)
        pending.tries_on_host += 1
        if not skip_host and pending.tries_on_host < 1 + host.retries:
            self._start_try(pending, now)
            return
        pending.host_index += 1
        pending.tries_on_host = 0
        if pending.host_index < len(self.group.hosts):
            nxt = self._host(pending)
            self._events.append(Event("aaa-failover", f"TACACS+ {self.group.name}: {host.label} failed "
                                      f"({problem}), trying {nxt.label}",
                                      {"group": self.group.name, "from": host.label, "to": nxt.label}))
            self._start_try(pending, now)
            return
        self._finish(pending, _failure(f"no answer from TACACS+ group {self.group.name} after {pending.tries} "
                                       f"tries to {len(self.group.hosts)} hosts; last: {pending.last_problem}"))

    def _finish(self, pending: _Pending, result: VerifyResult) -> None:
        self._pending.pop(pending.token, None)
        self._drop_connection(pending)
        self._results.append((pending.token, result))

    # -- replies ----------------------------------------------------------------------------

    def _complete_reply(self, pending: _Pending) -> AuthenReply | None:
        """The REPLY once the buffer holds all of it (RFC 8907 sections 4.1 and 5.2)."""
        size = wire.frame_length(pending.buffer)
        if size is None or len(pending.buffer) < size:
            return None
        header, body = wire.parse_packet(pending.buffer[:size], self._key(pending))
        if header.packet_type != wire.TYPE_AUTHEN:
            raise wire.BadTacacs(f"packet type {header.packet_type} in an authentication session",
                                 where="TACACS+ header", offset=1)
        if header.session_id != pending.session_id:
            raise wire.BadTacacs(f"session_id 0x{header.session_id:08x}, ours is 0x{pending.session_id:08x}",
                                 where="TACACS+ header", offset=4)
        if header.seq_no != REPLY_SEQ:
            raise wire.BadTacacs(f"seq_no {header.seq_no}, expected {REPLY_SEQ}", where="TACACS+ header", offset=2)
        return wire.parse_reply(body)

    def _bad_answer(self, pending: _Pending, err: BadInput, now: float) -> None:
        host = self._host(pending)
        self._count(pending, "bad_answers")
        self._events.append(Event("aaa-bad-answer", f"TACACS+ {self.group.name}: {host.label} sent a reply "
                                  f"that does not parse: {err}",
                                  {"group": self.group.name, "host": host.label, "error": str(err)}))
        self._try_failed(pending, f"reply does not parse: {err}", now, close=True, skip_host=True)

    def _handle_reply(self, pending: _Pending, reply: AuthenReply, now: float) -> None:
        """RFC 8907 section 5.4.2: PAP and CHAP end with PASS, FAIL or ERROR; anything else
        is a failure too (a request for more data is answered with an abort, section 5.3)."""
        host = self._host(pending)
        stats = self._stats[pending.host_index]
        if pending.sent_at is not None:
            stats.rtt_total += now - pending.sent_at
            stats.rtt_count += 1
        text = _text(reply.server_msg)
        if reply.status is Status.PASS:
            self._count(pending, "accepts")
            self._finish(pending, VerifyResult(True, text, account=pending.username,
                                               log=f"accepted by {host.label}"))
            return
        if reply.status is Status.FAIL:
            self._count(pending, "rejects")
            self._finish(pending, VerifyResult(False, text or FAILED_MESSAGE,
                                               log=f"rejected by {host.label}: {text or '(no message)'}"))
            return
        self._count(pending, "errors")
        if reply.status in _ASKS_FOR_MORE:
            self._send_abort(pending, reply.status)
        log = f"{host.label} answered {reply.status.name}{_detail(reply)}"
        self._events.append(Event("aaa-error", f"TACACS+ {self.group.name}: {log}",
                                  {"group": self.group.name, "host": host.label, "status": reply.status.name}))
        self._finish(pending, _failure(log))

    def _send_abort(self, pending: _Pending, status: Status) -> None:
        """RFC 8907 section 5.3: a CONTINUE with the ABORT flag ends the session."""
        assert pending.conn_id is not None
        body = wire.build_continue(wire.AuthenContinue(
            data=f"{status.name} is not possible for PPP PAP/CHAP".encode(), flags=wire.CONTINUE_FLAG_ABORT))
        header = wire.TacacsHeader(wire.TYPE_AUTHEN, REPLY_SEQ + 1, pending.session_id, wire.MINOR_ONE)
        self._sends.append((pending.conn_id, wire.build_packet(header, body, self._key(pending))))


def _start_for(request: VerifyRequest, context: AuthContext) -> wire.AuthenStart:
    """RFC 8907 sections 5.1 and 5.4.2: the START of a PPP PAP or CHAP login."""
    try:
        if request.method == PAP:
            authen_type, data = wire.AUTHEN_TYPE_PAP, _field(request, "password", bytes)
        else:
            authen_type = wire.AUTHEN_TYPE_CHAP
            data = wire.chap_data(_field(request, "identifier", int), _field(request, "challenge", bytes),
                                  _field(request, "response", bytes))
    except BadInput as err:
        raise RequestError(str(err)) from err
    fields = {"user": request.username_bytes, "port": f"pptp{context.nas_port}".encode(),
              "rem_addr": context.calling_station.encode("utf-8", "replace"), "data": data}
    for name, value in fields.items():
        if len(value) > 0xFF:
            raise RequestError(f"{name} is {len(value)} bytes, TACACS+ allows 255")
    return wire.AuthenStart(wire.ACTION_LOGIN, wire.PRIV_LVL_USER, authen_type, wire.SERVICE_PPP, **fields)


def _field(request: VerifyRequest, name: str, kind: type) -> Any:
    value = request.data.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise RequestError(f"{request.method} request without {name}")
    return value


def _failure(log: str) -> VerifyResult:
    return VerifyResult(False, FAILED_MESSAGE, log=log)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _detail(reply: AuthenReply) -> str:
    parts = [f"server_msg {_text(reply.server_msg)!r}"] if reply.server_msg else []
    if reply.data:
        parts.append(f"data {_text(reply.data)!r}")
    return ": " + ", ".join(parts) if parts else ""
