"""Terminated calls with a AAA server group (issue 6), in memory: the server's answers are
played by the test (built with the local verifier, as a RADIUS server would compute them), so
this checks what TerminateServer does with them: the asynchronous answer, the 403110 refusal
of an accept without MPPE keys (seed 001 line 148), Framed-IP-Address, Session-Timeout,
Idle-Timeout and the accounting records (RFC 2865 section 5, RFC 2866, RFC 2869)."""
from __future__ import annotations

import dataclasses
import random
from ipaddress import IPv4Address

import pytest

from fixup.lab.ppp_client import PppClient
from fixup.policy.loader import parse_policy
from fixup.proto.aaa import ACCT_INTERIM, ACCT_START, ACCT_STOP
from fixup.proto.auth import LocalUsers, VerifyResult, verify_locally
from fixup.proto.vpdn.terminate import TerminateServer
from fixup.wire import pptp_messages as m
from tests.unit.test_terminate import CLIENT, INSIDE_HOST, LOCAL, Dialer, dial, ipv4, messages

pytestmark = pytest.mark.unit

USERS = LocalUsers({"cisco": "cisco"})


def policy(methods="[mschap-v2, chap, pap]", mppe="auto", required="false", accounting=True, interim=None,
           pool="192.168.1.1-192.168.1.50"):
    aaa = "{authentication: AuthInbound" + (", accounting: AuthInbound" if accounting else "")
    aaa += f", interim_interval: {interim}}}" if interim else "}"
    text = ("inside: [br-in]\noutside: gw-out\n"
            "aaa: {AuthInbound: {protocol: radius, hosts: [{address: 10.1.1.5, secret: cisco}]}}\n"
            f"terminate:\n  listen: {LOCAL}\n  authentication: {methods}\n"
            f"  encryption: {{mppe: {mppe}, required: {required}}}\n  pool: {pool}\n  aaa: {aaa}\n")
    return parse_policy(text).terminate


class FakeAaa:
    """Answers the server's AAA requests when it polls; ``edit`` changes the answer."""

    def __init__(self, server: TerminateServer, edit=lambda result, request: result, hold: bool = False):
        self.server, self.edit, self.hold = server, edit, hold
        self.requests: list = []
        self.held: list = []
        original = server.poll

        def poll(now: float) -> None:
            for token, request, context in server.take_aaa_requests():
                self.requests.append((token, request, context))
                result = self.edit(verify_locally(request, USERS), request)
                if self.hold:
                    self.held.append((token, result))
                else:
                    server.aaa_result(token, result, now)
            original(now)

        server.poll = poll  # type: ignore[method-assign]


def new_server(**kwargs) -> TerminateServer:
    return TerminateServer(policy(**kwargs), LOCAL, 0.0, random_bytes=random.Random(1).randbytes)


def texts(server) -> list[str]:
    return [event.text for event in server.take_events()]


@pytest.mark.parametrize("method", ["pap", "chap", "mschap-v2"])
def test_the_answer_comes_later_and_the_link_comes_up(method):
    server = new_server(mppe="none" if method != "mschap-v2" else "128")
    aaa = FakeAaa(server)
    d = dial(server, auth_methods=(method,), mppe="none" if method != "mschap-v2" else "auto")
    assert d.client.up, d.client.failure
    (token, request, context), = aaa.requests
    assert request.method == method and request.username == "cisco"
    assert context.nas_port == d.server_call_id and context.calling_station == "203.0.113.7"
    assert context.called_station == str(LOCAL) and token == context.session_id
    log = texts(server)
    assert any("aaa authentication started" in t for t in log) and any("aaa authentication succeed" in t for t in log)


def test_accept_without_mppe_keys_while_encryption_is_on_is_refused_with_691():
    """Seed 001 line 148: '403110: ... missing MPPE key from aaa server'; the client sees 691."""
    server = new_server(mppe="auto")
    FakeAaa(server, edit=lambda result, request: dataclasses.replace(result, keys=None))
    d = dial(server, auth_methods=("mschap-v2",))
    assert not d.client.up and d.client.auth.message.startswith(b"E=691")
    d.pump()
    log = texts(server)
    assert any("403110: PPP virtual interface" in t and "missing MPPE key from aaa server" in t for t in log)
    assert any("aaa authentication failed" in t for t in log)
    assert server.calls == {} and server.pool.in_use == 0


def test_ms_chap_error_of_the_server_reaches_the_client():
    server = new_server(mppe="auto")
    FakeAaa(server, edit=lambda result, request: VerifyResult(False, message="E=648 R=0 V=3 M=expired"))
    d = dial(server, auth_methods=("mschap-v2",))
    assert not d.client.up and d.client.auth.message == b"E=648 R=0 V=3 M=expired"


def test_answer_for_a_call_that_has_gone_is_dropped():
    server = new_server(mppe="none")
    aaa = FakeAaa(server, hold=True)
    d = dial(server, auth_methods=("pap",), mppe="none")
    assert not d.client.up and aaa.held
    server.clear(d.now)
    token, result = aaa.held[0]
    server.aaa_result(token, result, d.now)  # nothing to do, nothing raised
    assert server.calls == {} and server.take_aaa_requests() == []


@pytest.mark.parametrize("framed, routed", [("192.168.1.40", False), ("10.99.0.7", True)])
def test_framed_ip_address_overrides_the_pool(framed, routed):
    server = new_server(mppe="none")
    FakeAaa(server, edit=lambda result, request: dataclasses.replace(result, framed_address=IPv4Address(framed)))
    d = dial(server, auth_methods=("pap",), mppe="none")
    assert d.client.up and d.client.address == IPv4Address(framed)
    assert server.pool.in_use == (1 if not routed else 0)
    events = server.take_events()
    assert [e.data["add"] for e in events if e.kind == "address-routed"] == ([True] if routed else [])
    server.clear(d.now)
    events = server.take_events()
    assert [e.data["add"] for e in events if e.kind == "address-routed"] == ([False] if routed else [])
    assert server.pool.in_use == 0 and server.by_address == {}


def test_framed_ip_address_in_use_is_refused():
    server = new_server(mppe="none")
    FakeAaa(server, edit=lambda result, request: dataclasses.replace(result, framed_address=IPv4Address("192.168.1.1")))
    first = dial(server, auth_methods=("pap",), mppe="none")
    assert first.client.up  # it got 192.168.1.1 (the pool's first) anyway
    second = Dialer(server, PppClient("cisco", "cisco", mppe="none", auth_methods=("pap",)),
                    peer=IPv4Address("203.0.113.8").packed, call_id=0x5000)
    for _ in range(10):
        second.pump()
    assert not second.client.up
    assert any("Framed-IP-Address 192.168.1.1 is in use" in t for t in texts(server))


def run_until(d: Dialer, seconds: float) -> None:
    end = d.now + seconds
    while d.now < end and not d.client.finished:
        d.now += 0.5
        d.server.poll(d.now)
        d.client.poll(d.now)
        d.pump()


def test_session_timeout_ends_the_call_with_a_stop_record():
    server = new_server(mppe="none")
    FakeAaa(server, edit=lambda result, request: dataclasses.replace(result, session_timeout=30))
    d = dial(server, auth_methods=("pap",), mppe="none")
    assert d.client.up
    start = d.now
    run_until(d, 40)
    assert d.client.finished and server.calls == {}
    records = server.take_accounting()
    assert [r.status for r in records] == [ACCT_START, ACCT_STOP]
    assert records[1].terminate_cause == "session-timeout" and 29 <= records[1].session_time <= 31
    assert any("session timeout" in t for t in texts(server))
    assert d.now - start < 40


def test_idle_timeout_counts_from_the_last_packet():
    server = new_server(mppe="none")
    FakeAaa(server, edit=lambda result, request: dataclasses.replace(result, idle_timeout=20))
    d = dial(server, auth_methods=("pap",), mppe="none")
    for _ in range(3):  # traffic keeps it alive past 20 s
        run_until(d, 10)
        d.client.ip_out(ipv4(d.client.address, INSIDE_HOST, b"keepalive"), d.now)
        d.pump()
    assert d.client.up
    run_until(d, 25)
    assert d.client.finished
    stop = server.take_accounting()[-1]
    assert stop.status == ACCT_STOP and stop.terminate_cause == "idle-timeout"


def test_accounting_start_interim_stop_with_counters_and_class():
    server = new_server(mppe="auto", interim=60)
    FakeAaa(server, edit=lambda result, request: dataclasses.replace(result, radius_class=b"grp=7"))
    d = dial(server, auth_methods=("mschap-v2",))
    assert d.client.up
    address = d.client.address
    for i in range(5):
        d.client.ip_out(ipv4(d.client.address, INSIDE_HOST, b"x" * 100), d.now)
        d.pump()
    server.tun_in(ipv4(INSIDE_HOST, d.client.address, b"y" * 50), d.now)
    d.pump()
    run_until(d, 65)
    d.client.close(d.now)
    d.pump()
    run_until(d, 5)
    records = server.take_accounting()
    assert [r.status for r in records] == [ACCT_START, ACCT_INTERIM, ACCT_STOP]
    start, interim, stop = records
    assert start.username == "cisco" and start.framed_address == address and start.radius_class == b"grp=7"
    assert len({r.context.session_id for r in records}) == 1
    assert stop.input_packets == 5 and stop.input_octets == 5 * 120 and stop.output_packets == 1
    assert stop.output_octets == 70 and stop.terminate_cause == "user-request"
    assert interim.session_time >= 60 and stop.session_time >= interim.session_time


def test_no_accounting_records_without_an_accounting_group_or_before_the_link_is_up():
    server = new_server(mppe="none", accounting=False)
    FakeAaa(server)
    d = dial(server, auth_methods=("pap",), mppe="none")
    assert d.client.up
    server.clear(d.now)
    assert server.take_accounting() == []
    server = new_server(mppe="none")
    FakeAaa(server)
    d = dial(server, password="wrong", auth_methods=("pap",), mppe="none")
    assert not d.client.up
    assert server.take_accounting() == []


def test_clear_vpdn_gives_admin_reset_and_a_cdn():
    server = new_server(mppe="none")
    FakeAaa(server)
    d = dial(server, auth_methods=("pap",), mppe="none")
    server.clear(d.now)
    assert server.take_accounting()[-1].terminate_cause == "admin-reset"
    assert any(isinstance(msg, m.CallDisconnectNotify) for data in [b"".join(x for _t, x in server.take_tcp())]
               for msg in messages(data))


def test_session_ids_are_unique_and_carried_in_snapshots():
    server = new_server(mppe="none")
    aaa = FakeAaa(server)
    dial(server, auth_methods=("pap",), mppe="none")
    Dialer(server, PppClient("cisco", "cisco", mppe="none", auth_methods=("pap",)),
           peer=IPv4Address("203.0.113.8").packed, call_id=0x5000).pump()
    tokens = [token for token, _r, _c in aaa.requests]
    assert len(tokens) == len(set(tokens)) == 2
    assert {s["session_id"] for s in server.snapshot(0.0)["sessions"]} == set(tokens)
    assert CLIENT != IPv4Address("203.0.113.8").packed


def test_retry_allowed_by_the_server_becomes_final():
    """FreeRADIUS answers MS-CHAP failures with ``E=691 R=1``; our Failure allows no retry."""
    server = new_server(mppe="auto")
    FakeAaa(server, edit=lambda result, request: VerifyResult(False, message="E=691 R=1 C=0011 V=3 M=bad"))
    d = dial(server, auth_methods=("mschap-v2",))
    assert not d.client.up and d.client.auth.message == b"E=691 R=0 C=0011 V=3 M=bad"


def test_local_users_with_radius_accounting_send_interim_updates_and_say_local():
    text = ("inside: [br-in]\noutside: gw-out\n"
            "aaa: {Acct: {protocol: radius, hosts: [{address: 10.1.1.5, secret: cisco}]}}\n"
            f"terminate:\n  listen: {LOCAL}\n  authentication: [pap]\n  pool: 192.168.1.1-192.168.1.9\n"
            "  users: {cisco: cisco}\n  aaa: {accounting: Acct, interim_interval: 60}\n")
    server = TerminateServer(parse_policy(text).terminate, LOCAL, 0.0, random_bytes=random.Random(1).randbytes)
    d = dial(server, auth_methods=("pap",), mppe="none")
    assert d.client.up
    run_until(d, 65)
    records = server.take_accounting()
    assert [r.status for r in records] == [ACCT_START, ACCT_INTERIM]
    assert {r.authentic for r in records} == {"local"}  # Acct-Authentic Local (RFC 2866 5.6)


def test_client_stop_control_connection_is_a_user_request():
    server = new_server(mppe="none")
    FakeAaa(server)
    d = dial(server, auth_methods=("pap",), mppe="none")
    assert d.client.up
    d.send(m.StopControlConnectionRequest())
    records = server.take_accounting()
    assert records[-1].status == ACCT_STOP and records[-1].terminate_cause == "user-request"
