"""AAA bookkeeping of terminated calls, pure: what to ask the AAA server, what to make of its
answer, when a session must end, and the accounting records (RFC 2865, RFC 2866, RFC 2869).

:class:`fixup.proto.vpdn.terminate.TerminateServer` owns one :class:`CallAaa` per call and asks this
module; the RADIUS / TACACS+ clients themselves are elsewhere (:mod:`fixup.proto.aaa`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Callable

from fixup.proto.aaa.config import RADIUS, TerminateAaa
from fixup.proto.aaa import ACCT_INTERIM, ACCT_START, ACCT_STOP, AccountingRecord, AuthContext
from fixup.proto.auth import MSCHAP_V1, MSCHAP_V2, VerifyRequest, VerifyResult
from fixup.proto.ppp.session import MPPE_REQUIRED_NOT_ACTIVE, PppSession

MISSING_MPPE_KEYS = "missing MPPE key from aaa server"  # the PIX's 403110 wording (seed 001 line 148)
SESSION_TIMEOUT = "session timeout"
IDLE_TIMEOUT = "idle timeout"
OPERATOR = "cleared by operator"
STOPPING = "fixup stopping"

# Why a call ended (our own reason strings) -> Acct-Terminate-Cause (RFC 2866 section 5.10).
CAUSE_BY_REASON: dict[str, str] = {
    OPERATOR: "admin-reset",
    STOPPING: "admin-reboot",
    SESSION_TIMEOUT: "session-timeout",
    IDLE_TIMEOUT: "idle-timeout",
    MPPE_REQUIRED_NOT_ACTIVE: "service-unavailable",
    "TCP closed": "lost-carrier",
    "control connection closed": "lost-carrier",
}


@dataclass(slots=True, eq=False)
class CallAaa:
    """One call's AAA state.  Times are ``now`` values (monotonic seconds)."""

    context: AuthContext
    pending: bool = False  # an authentication request is out
    started: float | None = None  # Accounting Start sent (the link came up)
    radius_class: bytes | None = None
    session_deadline: float | None = None
    idle_timeout: float | None = None
    interim: float | None = None
    next_interim: float | None = None
    last_activity: float = 0.0
    last_packets: int = 0
    username: str = ""
    address: IPv4Address | None = None
    routed: bool = False  # the address is outside the pool: the I/O routed it to the TUN device
    stopped: bool = field(default=False)


def terminate_cause(why: str, session: PppSession) -> str:
    """RFC 2866 section 5.10 for the reason a call ended."""
    if why in CAUSE_BY_REASON:
        return CAUSE_BY_REASON[why]
    if why.endswith("from client") or session.lcp.peer_reason is not None:
        return "user-request"  # CDN / CCRQ, or an LCP Terminate-Request from the client
    return "lost-carrier"  # echo failures, the GRE went quiet, PPP gave up


class AaaBook:
    """AAA for every call of one ``terminate`` policy."""

    def __init__(self, aaa: TerminateAaa, encryption_on: bool, called_station: str,
                 random_bytes: Callable[[int], bytes]) -> None:
        self.aaa = aaa
        self.encryption_on = encryption_on
        self.called_station = called_station
        self._prefix = random_bytes(4).hex().upper()  # Acct-Session-Ids stay unique across restarts
        self._serial = 0
        self._requests: list[tuple[str, VerifyRequest, AuthContext]] = []
        self._records: list[AccountingRecord] = []

    def reconfigure(self, aaa: TerminateAaa, encryption_on: bool) -> None:
        """A reload: calls admitted from now on use these groups; session ids stay unique."""
        self.aaa = aaa
        self.encryption_on = encryption_on

    @property
    def remote(self) -> bool:
        """Credentials are checked by a AAA server (``client authentication aaa GROUP``)."""
        return self.aaa.authentication is not None

    def new_call(self, call_id: int, peer: str, now: float) -> CallAaa:
        self._serial += 1
        session_id = f"{self._prefix}{self._serial:08X}"
        return CallAaa(AuthContext(call_id, peer, self.called_station, session_id), last_activity=now)

    # -- authentication ---------------------------------------------------------------------------

    def ask(self, call: CallAaa, request: VerifyRequest) -> None:
        """Queue ``request`` for the AAA server; the answer comes back with the session id."""
        call.pending = True
        self._requests.append((call.context.session_id, request, call.context))

    def screen(self, call: CallAaa, method: str, result: VerifyResult) -> tuple[VerifyResult, str | None]:
        """The server's answer as the session must see it, and a 403110-style problem when an
        accept is refused: an MS-CHAP accept without MPPE keys while encryption is on (seed 001
        line 148: the client sees 691)."""
        call.pending = False
        if result.ok and self.encryption_on and method in (MSCHAP_V1, MSCHAP_V2) and result.keys is None:
            return VerifyResult(False, log=MISSING_MPPE_KEYS), MISSING_MPPE_KEYS
        return result, None

    def authorized(self, call: CallAaa, result: VerifyResult, username: str, now: float) -> None:
        """Session-Timeout, Idle-Timeout, Acct-Interim-Interval and Class of an accept."""
        call.username = username
        call.radius_class = result.radius_class
        if result.session_timeout:
            call.session_deadline = now + result.session_timeout
        if result.idle_timeout:
            call.idle_timeout = float(result.idle_timeout)
        interval = result.interim_interval or self.aaa.interim_interval
        if interval and self.aaa.accounting is not None:
            call.interim = float(max(interval, 60))  # RFC 2869 section 5.16: not below 60 s

    # -- the life of the session ---------------------------------------------------------------------

    def link_up(self, call: CallAaa, session: PppSession, address: IPv4Address, now: float) -> None:
        """IPCP opened: accounting Start."""
        call.username = call.username or session.username or ""
        call.address = address
        call.started = now
        call.last_activity = now
        if call.interim is None and self.aaa.interim_interval and self.aaa.accounting is not None:
            call.interim = max(self.aaa.interim_interval, 60.0)  # local users: the policy's interval
        if call.interim is not None:
            call.next_interim = now + call.interim
        self._account(call, session, ACCT_START, now)

    def expired(self, call: CallAaa, session: PppSession, now: float) -> str | None:
        """A reason to end the call now (Session-Timeout, Idle-Timeout), after an Interim-Update
        when one is due."""
        packets = session.counters.ip_in + session.counters.ip_out
        if packets != call.last_packets:
            call.last_packets, call.last_activity = packets, now
        if call.next_interim is not None and now >= call.next_interim:
            call.next_interim = now + (call.interim or 0.0)
            self._account(call, session, ACCT_INTERIM, now)
        if call.session_deadline is not None and now >= call.session_deadline:
            return SESSION_TIMEOUT
        if call.idle_timeout is not None and call.started is not None and now - call.last_activity >= call.idle_timeout:
            return IDLE_TIMEOUT
        return None

    def ended(self, call: CallAaa, session: PppSession, why: str, now: float) -> None:
        """The call is gone: accounting Stop when a Start went out."""
        if call.started is None or call.stopped:
            return
        call.stopped = True
        self._account(call, session, ACCT_STOP, now, terminate_cause(why, session))

    def next_deadline(self, call: CallAaa) -> float | None:
        deadlines = [call.session_deadline, call.next_interim]
        if call.idle_timeout is not None and call.started is not None:
            deadlines.append(call.last_activity + call.idle_timeout)
        return min((d for d in deadlines if d is not None), default=None)

    def take_requests(self) -> list[tuple[str, VerifyRequest, AuthContext]]:
        """(token = Acct-Session-Id, request, context) for the authentication server."""
        out, self._requests = self._requests, []
        return out

    def take_records(self) -> list[AccountingRecord]:
        out, self._records = self._records, []
        return out

    def _account(self, call: CallAaa, session: PppSession, status: str, now: float, cause: str | None = None) -> None:
        if self.aaa.accounting is None or call.address is None:
            return
        counters = session.counters
        self._records.append(AccountingRecord(
            status=status, context=call.context, username=call.username, framed_address=call.address,
            session_time=int(now - (call.started or now)), input_octets=counters.bytes_in,
            output_octets=counters.bytes_out, input_packets=counters.ip_in, output_packets=counters.ip_out,
            terminate_cause=cause, radius_class=call.radius_class, authentic=self._authentic()))

    def _authentic(self) -> str:
        """Acct-Authentic (RFC 2866 section 5.6): RADIUS, Local, or Remote (TACACS+)."""
        group = self.aaa.authentication
        return "local" if group is None else "radius" if group.protocol == RADIUS else "remote"
