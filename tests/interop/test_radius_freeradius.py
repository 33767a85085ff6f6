"""fixup's RADIUS client (fixup.io.aaa.radius over fixup.proto.aaa.radius) against the REAL
FreeRADIUS 3.2 (Debian ``freeradius``), started per module with its own configuration
(tests/interop/freeradius.py): PAP, CHAP, MS-CHAP v1 and v2 built by our PPP authenticators
from what our lab PPP client sends, the MPPE keys compared with our local verifier's,
Access-Accept attributes, accounting read back from the detail file, and failover.

The server requires a Message-Authenticator in every Access-Request (clients.conf
``require_message_authenticator = yes``), so every accepted request also checks ours."""
from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from ipaddress import IPv4Address
from typing import Any

import pytest

from fixup.io.aaa.radius import RadiusIo
from fixup.lab.ppp_client_auth import make_auth_peer
from fixup.proto.aaa.config import RADIUS, AaaGroup, AaaHost
from fixup.proto.aaa import ACCT_INTERIM, ACCT_START, ACCT_STOP, AccountingRecord, AuthContext, NasIdentity
from fixup.proto.auth import AUTHENTICATORS, Authenticator
from fixup.proto.auth.credentials import LocalUsers, VerifyRequest, VerifyResult, verify_locally
from fixup.proto.events import Event
import freeradius
from freeradius import FreeRadius

pytestmark = pytest.mark.interop

USERS = """\
alice   Cleartext-Password := "alice-pw"
        Framed-IP-Address = 10.9.8.7,
        Session-Timeout = 3600,
        Idle-Timeout = 600,
        Acct-Interim-Interval = 300,
        Class = 0x66697875702d636c617373,
        Reply-Message = "Hello alice"

bob     Cleartext-Password := "bob-pw"
"""
LOCAL = LocalUsers({"alice": "alice-pw", "bob": "bob-pw"})
NAS = NasIdentity(IPv4Address("127.0.0.1"), "fixup-interop")
CONTEXT = AuthContext(nas_port=42, calling_station="203.0.113.9", called_station="127.0.0.1", session_id="fx-0042")
ANSWER_TIMEOUT = 10.0


def _start(tmp_path_factory: pytest.TempPathFactory, name: str, *, use_mppe: bool) -> Iterator[FreeRadius]:
    reason = freeradius.unavailable_reason()
    if reason:
        pytest.skip(f"interop: {reason}")
    try:
        server = freeradius.start(tmp_path_factory.mktemp(name), USERS, use_mppe=use_mppe)
    except RuntimeError as err:
        pytest.fail(f"FreeRADIUS did not start: {err}")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def radius(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FreeRadius]:
    yield from _start(tmp_path_factory, "freeradius", use_mppe=True)


@pytest.fixture(scope="module")
def radius_no_mppe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FreeRadius]:
    """The server that omits the MPPE keys (mschap ``use_mppe = no``)."""
    yield from _start(tmp_path_factory, "freeradius-no-mppe", use_mppe=False)


def host_of(server: FreeRadius, **changes: Any) -> AaaHost:
    values: dict[str, Any] = {"address": IPv4Address("127.0.0.1"), "port": server.auth_port, "secret": server.secret,
                              "timeout": 2.0, "retries": 1, "accounting_port": server.acct_port}
    return AaaHost(**{**values, **changes})


def dead_host(timeout: float = 0.3, retries: int = 1) -> AaaHost:
    auth_port, acct_port = freeradius.free_udp_ports(2)  # nothing listens there
    return AaaHost(IPv4Address("127.0.0.1"), auth_port, freeradius.SECRET, timeout, retries, acct_port)


def expect(condition: bool, server: FreeRadius, what: str) -> None:
    assert condition, f"{what}\n--- FreeRADIUS log (tail) ---\n{server.log_tail()}"


# -- driving RadiusIo -------------------------------------------------------------------------


async def _authenticate(hosts: tuple[AaaHost, ...], request: VerifyRequest) -> tuple[VerifyResult, list[Event]]:
    answered: asyncio.Future[VerifyResult] = asyncio.get_running_loop().create_future()
    events: list[Event] = []
    io = RadiusIo(AaaGroup("Interop", RADIUS, hosts), NAS,
                  on_result=lambda token, result: answered.done() or answered.set_result(result),
                  on_event=events.append)
    await io.start()
    try:
        io.authenticate("call-42", request, CONTEXT)
        return await asyncio.wait_for(answered, ANSWER_TIMEOUT), events
    finally:
        await io.stop()


def authenticate(*hosts: AaaHost, request: VerifyRequest) -> tuple[VerifyResult, list[Event]]:
    return asyncio.run(_authenticate(hosts, request))


async def _account(hosts: tuple[AaaHost, ...], records: list[AccountingRecord]) -> tuple[dict[str, Any], list[Event]]:
    events: list[Event] = []
    io = RadiusIo(AaaGroup("Interop", RADIUS, hosts), NAS, on_result=lambda token, result: None,
                  on_event=events.append)
    await io.start()
    for record in records:
        io.account(record)
    await io.stop(grace=ANSWER_TIMEOUT)  # waits for the Accounting-Responses
    return io.snapshot(), events


def account(*hosts: AaaHost, records: list[AccountingRecord]) -> tuple[dict[str, Any], list[Event]]:
    return asyncio.run(_account(hosts, records))


# -- PPP authentication as a real client does it ----------------------------------------------


def exchange(method: str, username: str, password: str) -> tuple[Authenticator, Any, VerifyRequest]:
    """Our authenticator and our lab client's peer, until the authenticator asks its
    verifier: the VerifyRequest is what a real client's Response makes of it."""
    authenticator = AUTHENTICATORS[method]()
    peer = make_auth_peer(method, username, password, os.urandom)
    to_authenticator = peer.start(0.0)
    for packet in authenticator.start(0.0):
        to_authenticator += peer.receive(packet, 0.0)
    for packet in to_authenticator:
        authenticator.receive(packet, 0.0)
    [request] = authenticator.take_verify_requests()
    return authenticator, peer, request


def conclude(authenticator: Authenticator, peer: Any, result: VerifyResult) -> str | None:
    """Hand the RADIUS result to the authenticator; the peer judges its Success / Failure
    (for MS-CHAP v2 it checks the server's authenticator response, RFC 2759 section 8.8)."""
    for packet in authenticator.complete(result):
        peer.receive(packet, 0.0)
    return peer.outcome


# -- authentication ---------------------------------------------------------------------------


def test_pap_accept_carries_the_users_file_attributes(radius: FreeRadius) -> None:
    authenticator, peer, request = exchange("pap", "alice", "alice-pw")
    result, _ = authenticate(host_of(radius), request=request)
    expect(result.ok, radius, f"PAP alice refused: {result}")
    assert result.message == "Hello alice" and result.account == "alice"
    assert result.framed_address == IPv4Address("10.9.8.7")
    assert (result.session_timeout, result.idle_timeout, result.interim_interval) == (3600, 600, 300)
    assert result.radius_class == b"fixup-class"
    assert conclude(authenticator, peer, result) == "success"


def test_pap_wrong_password(radius: FreeRadius) -> None:
    authenticator, peer, request = exchange("pap", "bob", "not-bob-pw")
    result, _ = authenticate(host_of(radius), request=request)
    expect(not result.ok, radius, f"PAP with a wrong password accepted: {result}")
    assert result.log.startswith(f"rejected by 127.0.0.1:{radius.auth_port}")
    assert conclude(authenticator, peer, result) == "failure"


@pytest.mark.parametrize(("password", "ok"), [("bob-pw", True), ("wrong", False)])
def test_chap(radius: FreeRadius, password: str, ok: bool) -> None:
    authenticator, peer, request = exchange("chap", "bob", password)
    result, _ = authenticate(host_of(radius), request=request)
    expect(result.ok is ok, radius, f"CHAP bob/{password}: {result}")
    assert conclude(authenticator, peer, result) == ("success" if ok else "failure")


def test_mschap_v1_keys(radius: FreeRadius) -> None:
    authenticator, peer, request = exchange("mschap", "alice", "alice-pw")
    result, _ = authenticate(host_of(radius), request=request)
    expect(result.ok and result.keys is not None, radius, f"MS-CHAP v1: {result}")
    local = verify_locally(request, LOCAL).keys
    assert local is not None and result.keys is not None
    # RFC 3079 section 2.4: the 128-bit start key; FreeRADIUS sends a zero LM-Key (unknown).
    assert (result.keys.send_key, result.keys.recv_key) == (local.send_key, local.recv_key)
    assert result.keys.start_keys(128) == local.start_keys(128)
    assert conclude(authenticator, peer, result) == "success"
    assert authenticator.keys == result.keys


def test_mschap_v2_keys_equal_the_local_verifiers(radius: FreeRadius) -> None:
    authenticator, peer, request = exchange("mschap-v2", "alice", "alice-pw")
    result, _ = authenticate(host_of(radius), request=request)
    expect(result.ok, radius, f"MS-CHAP v2: {result}")
    local = verify_locally(request, LOCAL)
    assert result.authenticator_response == local.authenticator_response
    assert result.keys == local.keys  # MS-MPPE-Send-Key / Recv-Key as RFC 3079 section 3 derives them
    assert conclude(authenticator, peer, result) == "success"  # the client accepts the S= value
    assert peer.keys == authenticator.keys == result.keys


def test_mschap_v2_wrong_password(radius: FreeRadius) -> None:
    authenticator, peer, request = exchange("mschap-v2", "alice", "wrong")
    result, _ = authenticate(host_of(radius), request=request)
    expect(not result.ok, radius, f"MS-CHAP v2 with a wrong password: {result}")
    assert result.message.startswith("E=691"), result
    assert conclude(authenticator, peer, result) == "failure"
    # relayed as the server wrote it, except R=1 (FreeRADIUS allows a retry; our Failure is final)
    assert peer.message.decode() == result.message.replace(" R=1 ", " R=0 ")


@pytest.mark.parametrize("method", ["mschap", "mschap-v2"])
def test_server_without_mppe_keys(radius_no_mppe: FreeRadius, method: str) -> None:
    _, _, request = exchange(method, "alice", "alice-pw")
    result, _ = authenticate(host_of(radius_no_mppe), request=request)
    expect(result.ok, radius_no_mppe, f"{method} on the no-MPPE server: {result}")
    assert result.keys is None and "no MPPE keys" in result.log
    if method == "mschap-v2":
        assert result.authenticator_response == verify_locally(request, LOCAL).authenticator_response


# -- failover ---------------------------------------------------------------------------------


def test_failover_from_a_dead_port(radius: FreeRadius) -> None:
    _, _, request = exchange("pap", "bob", "bob-pw")
    dead = dead_host()
    result, events = authenticate(dead, host_of(radius), request=request)
    expect(result.ok, radius, f"after failover: {result}")
    kinds = [event.kind for event in events]
    assert kinds[:2] == ["aaa-timeout", "aaa-failover"], events
    assert dead.label in events[1].text


def test_all_hosts_dead() -> None:
    _, _, request = exchange("pap", "bob", "bob-pw")
    first, second = dead_host(), dead_host()
    result, events = authenticate(first, second, request=request)
    assert not result.ok
    assert result.log == f"no answer from RADIUS group Interop (hosts {first.label}, {second.label})"
    assert [event.kind for event in events] == ["aaa-timeout", "aaa-failover", "aaa-timeout"]


# -- accounting -------------------------------------------------------------------------------


def _records(session_id: str) -> list[AccountingRecord]:
    context = AuthContext(CONTEXT.nas_port, CONTEXT.calling_station, CONTEXT.called_station, session_id)
    common: dict[str, Any] = {"context": context, "username": "alice", "framed_address": IPv4Address("10.9.8.7"),
                              "radius_class": b"fixup-class"}
    traffic: dict[str, Any] = {"session_time": 125, "input_octets": 3 * 2**32 + 1000, "output_octets": 2**32 + 5,
                               "input_packets": 7000, "output_packets": 6500}
    return [AccountingRecord(ACCT_START, **common),
            AccountingRecord(ACCT_INTERIM, **common, **{**traffic, "session_time": 60}),
            AccountingRecord(ACCT_STOP, **common, **traffic, terminate_cause="idle-timeout")]


def _session(server: FreeRadius, session_id: str) -> list[dict[str, str]]:
    return [record for record in server.detail_records() if record.get("Acct-Session-Id") == session_id]


def test_accounting_start_interim_stop(radius: FreeRadius) -> None:
    snapshot, events = account(host_of(radius), records=_records("fx-acct-1"))
    assert snapshot["accounting_lost"] == 0 and snapshot["pending"]["accounting"] == 0, (snapshot, events)
    records = _session(radius, "fx-acct-1")
    expect([record.get("Acct-Status-Type") for record in records] == ["Start", "Interim-Update", "Stop"], radius,
           f"detail records: {records}")
    start, interim, stop = records
    for record in records:
        assert record["User-Name"] == "alice" and record["NAS-IP-Address"] == "127.0.0.1"
        assert record["NAS-Port"] == "42" and record["NAS-Port-Type"] == "Virtual"
        assert record["Framed-IP-Address"] == "10.9.8.7" and record["Acct-Authentic"] == "RADIUS"
        assert record["Class"] == "0x66697875702d636c617373" and record["Acct-Delay-Time"] == "0"
        assert record["Calling-Station-Id"] == "203.0.113.9" and record["NAS-Identifier"] == "fixup-interop"
    assert "Acct-Session-Time" not in start and interim["Acct-Session-Time"] == "60"
    assert (stop["Acct-Input-Octets"], stop["Acct-Input-Gigawords"]) == ("1000", "3")
    assert (stop["Acct-Output-Octets"], stop["Acct-Output-Gigawords"]) == ("5", "1")
    assert (stop["Acct-Input-Packets"], stop["Acct-Output-Packets"]) == ("7000", "6500")
    assert stop["Acct-Session-Time"] == "125" and stop["Acct-Terminate-Cause"] == "Idle-Timeout"


def test_accounting_fails_over(radius: FreeRadius) -> None:
    snapshot, events = account(dead_host(), host_of(radius), records=_records("fx-acct-2")[:1])
    assert snapshot["accounting_lost"] == 0, (snapshot, events)
    [start] = _session(radius, "fx-acct-2")
    assert start["Acct-Status-Type"] == "Start" and int(start["Acct-Delay-Time"]) <= 1


def test_accounting_lost_is_reported() -> None:
    snapshot, events = account(dead_host(timeout=0.2, retries=0), records=_records("fx-acct-3")[:1])
    assert snapshot["accounting_lost"] == 1
    assert [event.kind for event in events][-1] == "aaa-accounting-lost"
