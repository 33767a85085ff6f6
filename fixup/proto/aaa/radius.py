"""RADIUS client of the PPTP NAS, sans-I/O: authentication (RFC 2865) and accounting
(RFC 2866) against one server group, like PIX ``aaa-server AuthInbound protocol radius``.

Datagrams go in through ``datagram_in`` and out through ``take_datagrams``; every timer is
driven by ``now`` (``poll``, ``next_deadline``).  Packets and the answer mapping are in
:mod:`fixup.proto.aaa.radius_attributes`.

Retransmission and failover (RFC 2865 section 2.4, RFC 5080 section 2.2.1): a request goes
to one host up to ``1 + retries`` times, ``timeout`` seconds apart.  An Access-Request is
retransmitted unchanged (same Identifier and Request Authenticator); an Accounting-Request is
rebuilt with the grown Acct-Delay-Time and therefore a new Identifier (RFC 2866 section 5.2).
Then the next host of the group gets the request, with a new Identifier and authenticator,
and when every host has had its tries the request fails (authentication: a failed
``VerifyResult``; accounting: an ``aaa-accounting-lost`` event).

The host that last answered is the *active server* (PIX ``show aaa-server``), kept apart for
authentication and accounting: new requests start there and go round the group from it.

Identifiers: one 8-bit space per destination (address, port); an Identifier is never reused
while outstanding; with 256 outstanding to one destination further requests wait in order.
"""
from __future__ import annotations

import itertools
import os
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Any, Final

from pyrad import packet as rp

from fixup.proto.aaa.config import RADIUS, AaaGroup, AaaHost
from fixup.proto.aaa import AccountingRecord, AuthContext, NasIdentity
from fixup.proto.aaa.radius_attributes import (
    BadRadius,
    UnsendableRequest,
    access_request,
    access_result,
    accounting_request,
    check_record,
    decode_answer,
    encode,
)
from fixup.proto.auth.credentials import VerifyRequest, VerifyResult
from fixup.proto.events import Event

AUTH: Final = "authentication"
ACCT: Final = "accounting"
IDENTIFIERS: Final = 256  # RFC 2865 section 3: the Identifier is one octet
HEADER: Final = 20  # Code, Identifier, Length, Authenticator

Destination = tuple[str, int]


@dataclass(slots=True)
class HostStats:
    """Counters of one server, for ``show aaa-server``."""

    requests: int = 0  # datagrams sent, retransmissions included
    answers: int = 0  # authenticated answers to an outstanding request
    timeouts: int = 0  # tries that saw no answer in time
    bad_answers: int = 0  # dropped: did not parse or did not authenticate
    late_answers: int = 0  # dropped: no outstanding request had that Identifier


@dataclass(eq=False, slots=True)
class _Job:
    """One request through its tries and hosts."""

    service: str  # AUTH or ACCT
    token: Hashable
    queued_at: float
    request: VerifyRequest | None = None
    context: AuthContext | None = None
    record: AccountingRecord | None = None
    host: int = 0  # index in group.hosts
    hosts_tried: int = 0
    tries: int = 0  # datagrams sent to the current host
    deadline: float | None = None  # None: not sent yet / waiting for an Identifier
    destination: Destination | None = None
    identifier: int | None = None
    packet: rp.Packet | None = None  # as sent: its authenticator checks the answer
    datagram: bytes = b""
    waiting: bool = False


@dataclass(slots=True)
class _Space:
    """The Identifier space of one destination."""

    next: int
    used: set[int] = field(default_factory=set)
    waiting: deque[_Job] = field(default_factory=deque)


class RadiusClient:
    """RADIUS for one ``AaaGroup``.  ``token``s are the caller's (one pending authentication
    per token); results come back through ``take_results``."""

    def __init__(self, group: AaaGroup, nas: NasIdentity, *,
                 random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        if group.protocol != RADIUS or not group.hosts:
            raise ValueError(f"group {group.name} is not a RADIUS group with hosts")
        self.group = group
        self.nas = nas
        self.random_bytes = random_bytes
        self.stats = [HostStats() for _ in group.hosts]
        self.active = {AUTH: 0, ACCT: 0}
        self.accounting_lost = 0
        self.unknown_sources = 0
        self._jobs: dict[tuple[str, Hashable], _Job] = {}
        self._outstanding: dict[tuple[Destination, int], _Job] = {}
        self._spaces: dict[Destination, _Space] = {}
        self._serial = itertools.count(1)
        self._now = 0.0
        self._datagrams: list[tuple[Destination, bytes]] = []
        self._results: list[tuple[Hashable, VerifyResult]] = []
        self._events: list[Event] = []

    # --- the caller's side -------------------------------------------------------------------

    def authenticate(self, token: Hashable, request: VerifyRequest, context: AuthContext, now: float) -> None:
        """Ask the group about ``request`` (RFC 2865 section 4.1); a pending request with the
        same token is cancelled first."""
        self._now = now
        self.cancel(token)
        job = _Job(AUTH, token, now, request=request, context=context)
        self._jobs[(AUTH, token)] = job
        self._start_host(job, self.active[AUTH], now)
        self._drain(now)

    def account(self, record: AccountingRecord, now: float) -> None:
        """Queue an Accounting-Request (RFC 2866 section 4.1).  A record no request can carry
        (unknown status or terminate cause) is reported lost at once."""
        self._now = now
        job = _Job(ACCT, next(self._serial), now, record=record)
        try:
            check_record(record)
        except ValueError as err:
            self._fail(job, f"unusable record: {err}")
            return
        self._jobs[(ACCT, job.token)] = job
        self._start_host(job, self.active[ACCT], now)
        self._drain(now)

    def cancel(self, token: Hashable) -> None:
        """The session went away: forget its authentication, answer or not."""
        job = self._jobs.pop((AUTH, token), None)
        if job is not None:
            self._release(job)

    def abandon(self, reason: str = "RADIUS client stopped") -> None:
        """Give up on everything pending (the daemon stops): failed results for
        authentications, ``aaa-accounting-lost`` for accounting."""
        jobs, self._jobs = list(self._jobs.values()), {}
        for job in jobs:
            self._release(job)
            job.deadline = None
            self._fail(job, reason)

    @property
    def pending_accounting(self) -> int:
        return sum(1 for service, _ in self._jobs if service == ACCT)

    def take_datagrams(self) -> list[tuple[Destination, bytes]]:
        """(destination (address, port), payload) to send, in order."""
        return _taken(self._datagrams)

    def take_results(self) -> list[tuple[Hashable, VerifyResult]]:
        return _taken(self._results)

    def take_events(self) -> list[Event]:
        return _taken(self._events)

    # --- time ----------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When ``poll`` has something to do: a retransmission, a failover, or (at once) a
        waiting request whose destination has a free Identifier again."""
        if any(space.waiting and len(space.used) < IDENTIFIERS for space in self._spaces.values()):
            return self._now
        deadlines = [job.deadline for job in self._jobs.values() if job.deadline is not None]
        return min(deadlines, default=None)

    def poll(self, now: float) -> None:
        self._now = now
        self._drain(now)
        for job in list(self._jobs.values()):
            if job.deadline is not None and job.deadline <= now:
                self._expire(job, now)
        self._drain(now)

    # --- sending -------------------------------------------------------------------------

    def _host(self, job: _Job) -> AaaHost:
        return self.group.hosts[job.host]

    def _destination(self, job: _Job) -> Destination:
        host = self._host(job)
        port = host.port if job.service == AUTH else host.accounting_port or host.port + 1
        return str(host.address), port

    def _start_host(self, job: _Job, index: int, now: float) -> None:
        job.host, job.tries, job.packet = index % len(self.group.hosts), 0, None
        job.hosts_tried += 1
        self._transmit(job, now)

    def _transmit(self, job: _Job, now: float) -> None:
        """Send (or resend) ``job`` to its current host."""
        if job.service == ACCT or job.packet is None:
            if not self._prepare(job, now):
                return
        assert job.destination is not None
        self._datagrams.append((job.destination, job.datagram))
        job.tries += 1
        self.stats[job.host].requests += 1
        job.deadline = now + self._host(job).timeout

    def _prepare(self, job: _Job, now: float) -> bool:
        """A new Identifier and packet for ``job``; False when it must wait or failed."""
        destination = self._destination(job)
        space = self._space(destination)
        self._free_identifier(job)  # a retransmitted Accounting-Request gets a new one: never wait holding one
        if (space.waiting and not job.waiting) or len(space.used) >= IDENTIFIERS:
            self._wait(job, space)
            return False
        job.waiting = False
        identifier = self._allocate(space)
        try:
            packet = self._build(job, identifier, now)
            datagram = encode(packet)
        except UnsendableRequest as err:
            space.used.discard(identifier)
            self._drop(job, f"cannot build the request: {err}")
            return False
        self._release(job)  # an Accounting-Request's previous Identifier (RFC 2866 5.2)
        job.destination, job.identifier, job.packet, job.datagram = destination, identifier, packet, datagram
        self._outstanding[(destination, identifier)] = job
        return True

    def _build(self, job: _Job, identifier: int, now: float) -> rp.Packet:
        secret = self._host(job).secret
        if job.service == AUTH:
            assert job.request is not None and job.context is not None
            return access_request(job.request, job.context, self.nas, secret=secret,
                                  identifier=identifier, authenticator=self.random_bytes(16))
        assert job.record is not None
        return accounting_request(job.record, self.nas, secret=secret, identifier=identifier,
                                  delay=int(now - job.queued_at))

    def _space(self, destination: Destination) -> _Space:
        space = self._spaces.get(destination)
        if space is None:
            space = self._spaces[destination] = _Space(self.random_bytes(1)[0])
        return space

    @staticmethod
    def _allocate(space: _Space) -> int:
        for step in range(IDENTIFIERS):
            candidate = (space.next + step) % IDENTIFIERS
            if candidate not in space.used:
                space.used.add(candidate)
                space.next = (candidate + 1) % IDENTIFIERS
                return candidate
        raise AssertionError("no free Identifier")  # callers check len(space.used) first

    def _wait(self, job: _Job, space: _Space) -> None:
        if not job.waiting:
            if not space.waiting:
                host = self._host(job)
                self._event("aaa-queued", f"{IDENTIFIERS} requests outstanding to {self._label(job)}, "
                            "further requests wait for a free Identifier", host=host.label)
            job.waiting = True
            space.waiting.append(job)
        job.deadline = None

    def _drain(self, now: float) -> None:
        """Send waiting requests that now have a free Identifier, in order."""
        for space in list(self._spaces.values()):
            while space.waiting and len(space.used) < IDENTIFIERS:
                job = space.waiting.popleft()
                if self._jobs.get((job.service, job.token)) is job:
                    self._transmit(job, now)

    def _free_identifier(self, job: _Job) -> None:
        """Free ``job``'s Identifier; answers to it are late from now on."""
        if job.destination is not None and job.identifier is not None:
            self._outstanding.pop((job.destination, job.identifier), None)
            self._spaces[job.destination].used.discard(job.identifier)
        job.identifier = None

    def _release(self, job: _Job) -> None:
        """Free ``job``'s Identifier and its place in a waiting queue."""
        self._free_identifier(job)
        for space in self._spaces.values():
            if job in space.waiting:
                space.waiting.remove(job)
        job.waiting = False

    # --- timeouts and failover -----------------------------------------------------------

    def _expire(self, job: _Job, now: float) -> None:
        host = self._host(job)
        self.stats[job.host].timeouts += 1
        if job.tries < 1 + host.retries:
            self._transmit(job, now)
            return
        self._event("aaa-timeout", f"no answer from {self._label(job)} after {job.tries} "
                    f"{'try' if job.tries == 1 else 'tries'} ({self._what(job)})", host=self._label(job))
        self._release(job)
        job.deadline = None
        if job.hosts_tried >= len(self.group.hosts):
            self._jobs.pop((job.service, job.token), None)
            self._fail(job, f"no answer from RADIUS group {self.group.name} (hosts {self._labels(job.service)})")
            return
        failed = self._label(job)
        self._start_host(job, job.host + 1, now)
        self._event("aaa-failover", f"{job.service} failing over from {failed} to {self._label(job)}",
                    host=failed, to=self._label(job))

    def _drop(self, job: _Job, reason: str) -> None:
        self._release(job)
        self._jobs.pop((job.service, job.token), None)
        job.deadline = None
        self._fail(job, reason)

    def _fail(self, job: _Job, reason: str) -> None:
        if job.service == AUTH:
            self._results.append((job.token, VerifyResult(False, log=reason)))
            return
        self.accounting_lost += 1
        self._event("aaa-accounting-lost", f"accounting lost: {self._what(job)}: {reason}",
                    session=job.record.context.session_id if job.record else "")

    # --- answers -------------------------------------------------------------------------

    def datagram_in(self, source: tuple[str, int], data: bytes, now: float) -> None:
        """An answer from ``source`` (address, port).  Answers that match no outstanding
        request, do not parse or do not authenticate are counted and dropped."""
        self._now = now
        origin = _normalize(source)
        job = self._outstanding.get((origin, data[1])) if len(data) >= HEADER else None
        if job is None:
            self._unmatched(origin, data)
            return
        assert job.packet is not None
        try:
            reply = decode_answer(job.packet, data)
        except BadRadius as err:
            self.stats[job.host].bad_answers += 1
            self._event("aaa-bad-answer", f"answer from {self._label(job)} dropped: {err.what}",
                        host=self._host(job).label, reason=err.reason)
            return
        self.stats[job.host].answers += 1
        self.active[job.service] = job.host
        self._release(job)
        self._jobs.pop((job.service, job.token), None)
        if job.service == AUTH:
            assert job.request is not None
            result = access_result(reply, job.request, self._host(job).secret, self._label(job))
            self._results.append((job.token, result))
        self._drain(now)

    def _unmatched(self, origin: Destination, data: bytes) -> None:
        index = self._host_index(origin)
        if index is None:
            self.unknown_sources += 1
            self._event("aaa-bad-answer", f"datagram from {origin[0]}:{origin[1]}, not a server of the "
                        "group, dropped", source=f"{origin[0]}:{origin[1]}")
            return
        if len(data) < HEADER:
            self.stats[index].bad_answers += 1
            self._event("aaa-bad-answer", f"answer from {origin[0]}:{origin[1]} dropped: "
                        f"{len(data)} octets, shorter than the RADIUS header", host=self.group.hosts[index].label)
            return
        self.stats[index].late_answers += 1
        self._event("aaa-late-answer", f"answer from {origin[0]}:{origin[1]} with Identifier {data[1]} "
                    "matches no outstanding request (late or duplicate), dropped",
                    host=self.group.hosts[index].label)

    def _host_index(self, origin: Destination) -> int | None:
        for index, host in enumerate(self.group.hosts):
            ports = (host.port, host.accounting_port or host.port + 1)
            if str(host.address) == origin[0] and origin[1] in ports:
                return index
        return None

    # --- reporting -----------------------------------------------------------------------

    def _label(self, job: _Job) -> str:
        address, port = self._destination(job)
        return f"{address}:{port}"

    def _labels(self, service: str) -> str:
        if service == AUTH:
            return ", ".join(host.label for host in self.group.hosts)
        return ", ".join(f"{host.address}:{host.accounting_port or host.port + 1}" for host in self.group.hosts)

    def _what(self, job: _Job) -> str:
        if job.service == AUTH:
            assert job.request is not None
            return f"{job.request.method} authentication of {job.request.username!r}"
        assert job.record is not None
        return (f"{job.record.status} of {job.record.username!r} session "
                f"{job.record.context.session_id}")

    def _event(self, kind: str, text: str, **data: Any) -> None:
        self._events.append(Event(kind, f"RADIUS {self.group.name}: {text}", {"group": self.group.name, **data}))

    def snapshot(self) -> dict[str, Any]:
        """Per host counters and what is pending, for ``show aaa-server``."""
        hosts = []
        for index, (host, stats) in enumerate(zip(self.group.hosts, self.stats)):
            pending = sum(1 for job in self._jobs.values() if job.host == index and job.deadline is not None)
            hosts.append({
                "host": host.label,
                "accounting_port": host.accounting_port or host.port + 1,
                "timeout": host.timeout,
                "retries": host.retries,
                "requests": stats.requests,
                "answers": stats.answers,
                "timeouts": stats.timeouts,
                "bad_answers": stats.bad_answers,
                "late_answers": stats.late_answers,
                "pending": pending,
                "active": [service for service, active in self.active.items() if active == index],
            })
        return {
            "group": self.group.name,
            "protocol": RADIUS,
            "hosts": hosts,
            "pending": {AUTH: len(self._jobs) - self.pending_accounting, ACCT: self.pending_accounting},
            "queued": sum(len(space.waiting) for space in self._spaces.values()),
            "accounting_lost": self.accounting_lost,
            "unknown_sources": self.unknown_sources,
        }


def _taken(items: list[Any]) -> list[Any]:
    """Everything in ``items``, which is left empty."""
    out = items[:]
    items.clear()
    return out


def _normalize(source: tuple[str, int]) -> Destination:
    """``(address, port)`` with the address written as ``str(IPv4Address)`` writes it (an
    IPv4-mapped IPv6 source becomes its IPv4 address)."""
    address, port = source[0], source[1]
    try:
        parsed = ip_address(address.split("%", 1)[0])
    except ValueError:
        return address, port
    mapped = getattr(parsed, "ipv4_mapped", None)
    return str(mapped or parsed), port
