"""fixup's TACACS+ client (fixup.io.aaa.tacacs) against a server built from the PyPI
``tacacs_plus`` package's packet classes (tacacs_server.py), over real TCP on 127.0.0.1:
PAP and CHAP (RFC 8907 section 5.4.2), a wrong key (section 4.5), failover and timeouts."""
from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import Hashable, Iterator
from ipaddress import IPv4Address

import pytest
from tacacs_server import TacacsTestServer

from fixup.io.aaa.tacacs import TacacsIo
from fixup.proto.aaa.config import TACACS_PLUS, AaaGroup, AaaHost
from fixup.proto.aaa import AuthContext, NasIdentity
from fixup.proto.auth.credentials import VerifyRequest, VerifyResult
from fixup.proto.events import Event

pytestmark = pytest.mark.interop

KEY = "tac-key"
USERS = {b"alice": b"wonderland", b"bob": b"builder"}
LOCALHOST = IPv4Address("127.0.0.1")
NAS = NasIdentity(LOCALHOST, "fixup-test")
CONTEXT = AuthContext(nas_port=42, calling_station="198.51.100.7", called_station="203.0.113.1",
                      session_id="0000002a")


@pytest.fixture
def server() -> Iterator[TacacsTestServer]:
    with TacacsTestServer(KEY, USERS) as running:
        yield running


@pytest.fixture
def dead_port() -> int:
    """A port nobody listens on: connections are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel does, from the backlog) but never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def host(port: int, key: str = KEY, timeout: float = 1.0, retries: int = 0) -> AaaHost:
    return AaaHost(LOCALHOST, port, key.encode(), timeout=timeout, retries=retries)


def pap(user: str, password: bytes) -> VerifyRequest:
    return VerifyRequest("pap", user, {"password": password})


def chap(user: str, secret: bytes, identifier: int = 7, challenge: bytes = bytes(range(16))) -> VerifyRequest:
    response = hashlib.md5(bytes([identifier]) + secret + challenge).digest()
    return VerifyRequest("chap", user, {"identifier": identifier, "challenge": challenge, "response": response})


async def _verify(hosts: tuple[AaaHost, ...], requests: dict[Hashable, VerifyRequest],
                  wait: float = 5.0) -> tuple[dict[Hashable, VerifyResult], list[Event], dict]:
    loop = asyncio.get_running_loop()
    results: dict[Hashable, VerifyResult] = {}
    events: list[Event] = []
    done = loop.create_future()

    def on_result(token: Hashable, result: VerifyResult) -> None:
        results[token] = result
        if len(results) == len(requests) and not done.done():
            done.set_result(None)

    io = TacacsIo(AaaGroup("TacGroup", TACACS_PLUS, hosts), NAS, on_result=on_result, on_event=events.append)
    await io.start()
    try:
        for token, request in requests.items():
            io.authenticate(token, request, CONTEXT)
        await asyncio.wait_for(done, wait)
        return results, events, io.snapshot()
    finally:
        await io.stop()


def verify(hosts: tuple[AaaHost, ...], requests: dict[Hashable, VerifyRequest]) -> tuple[
        dict[Hashable, VerifyResult], list[Event], dict]:
    return asyncio.run(_verify(hosts, requests))


def test_pap_and_chap_accepted_and_rejected(server: TacacsTestServer) -> None:
    results, events, snapshot = verify((host(server.port),), {
        "pap-ok": pap("alice", b"wonderland"),
        "pap-bad": pap("alice", b"looking-glass"),
        "chap-ok": chap("bob", b"builder"),
        "chap-bad": chap("bob", b"breaker"),
        "unknown": pap("mallory", b"x"),
    })
    assert results["pap-ok"].ok and results["pap-ok"].message == "welcome alice"
    assert results["chap-ok"].ok and results["chap-ok"].keys is None
    for token in ("pap-bad", "chap-bad", "unknown"):
        assert not results[token].ok
        assert results[token].message == "bad password"
        assert results[token].log.startswith(f"rejected by 127.0.0.1:{server.port}")
    assert not events
    counters = snapshot["hosts"][0]
    assert (counters["requests"], counters["accepts"], counters["rejects"]) == (5, 2, 3)
    starts = {start.user: start for start in server.state.starts}
    assert starts[b"alice"].service == 3 and starts[b"alice"].version == 0xC1  # PPP, minor version 1
    assert starts[b"bob"].authen_type == 3 and starts[b"bob"].data[:1] == b"\x07"
    assert starts[b"alice"].port == b"pptp42" and starts[b"alice"].rem_addr == b"198.51.100.7"


def test_wrong_key_fails_with_a_log_line(server: TacacsTestServer) -> None:
    results, events, snapshot = verify((host(server.port, key="other-key", retries=2),),
                                       {"t": pap("alice", b"wonderland")})
    result = results["t"]
    assert not result.ok
    assert "no answer from TACACS+ group TacGroup" in result.log and "bad key?" in result.log
    assert [event.kind for event in events] == ["aaa-bad-answer"]
    assert snapshot["hosts"][0]["bad_answers"] == 1
    assert server.state.connections == 1  # a garbled answer is not tried again on that host


def test_failover_from_dead_port_to_live_server(server: TacacsTestServer, dead_port: int) -> None:
    results, events, snapshot = verify((host(dead_port, timeout=0.3, retries=1), host(server.port)),
                                       {"t": chap("alice", b"wonderland")})
    assert results["t"].ok
    assert [event.kind for event in events] == ["aaa-failover"]
    assert snapshot["hosts"][0]["connect_failures"] == 2
    assert snapshot["hosts"][1]["accepts"] == 1


def test_failover_from_silent_server_after_timeouts(server: TacacsTestServer, silent_port: int) -> None:
    started = asyncio.run(_timed(lambda: _verify((host(silent_port, timeout=0.3, retries=1), host(server.port)),
                                                 {"t": pap("bob", b"builder")})))
    (results, events, snapshot), elapsed = started
    assert results["t"].ok
    assert [event.kind for event in events] == ["aaa-timeout", "aaa-timeout", "aaa-failover"]
    assert snapshot["hosts"][0]["timeouts"] == 2
    assert 0.55 < elapsed < 2.0


def test_all_dead_gives_a_failure(dead_port: int, silent_port: int) -> None:
    results, events, _ = verify((host(dead_port, timeout=0.3, retries=1), host(silent_port, timeout=0.3)),
                                {"t": pap("alice", b"wonderland")})
    result = results["t"]
    assert not result.ok and result.keys is None
    assert result.log.startswith("no answer from TACACS+ group TacGroup after 3 tries to 2 hosts")
    assert "no answer within 0.3 s" in result.log
    assert [event.kind for event in events] == ["aaa-failover", "aaa-timeout"]


def test_mschap_is_refused_without_a_connection(server: TacacsTestServer) -> None:
    request = VerifyRequest("mschap-v2", "alice", {})
    results, _, _ = verify((host(server.port),), {"t": request})
    assert not results["t"].ok and "cannot verify mschap-v2" in results["t"].log
    assert server.state.connections == 0


def test_stop_fails_what_is_pending(silent_port: int) -> None:
    async def scenario() -> list[tuple[Hashable, VerifyResult]]:
        results: list[tuple[Hashable, VerifyResult]] = []
        io = TacacsIo(AaaGroup("TacGroup", TACACS_PLUS, (host(silent_port),)), NAS,
                      on_result=lambda token, result: results.append((token, result)), on_event=print)
        await io.start()
        io.authenticate("t", pap("alice", b"wonderland"), CONTEXT)
        await asyncio.sleep(0.1)  # connected, START sent, no answer
        assert io.snapshot()["hosts"][0]["pending"] == 1
        await io.stop()
        return results

    [(token, result)] = asyncio.run(scenario())
    assert token == "t" and not result.ok and "stopped" in result.log


async def _timed(make):  # noqa: ANN001, ANN202 - a tiny helper
    loop = asyncio.get_running_loop()
    started = loop.time()
    value = await make()
    return value, loop.time() - started
