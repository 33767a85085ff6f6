"""PPTP clients behind one PAT address, through a real ``fixup run`` gateway (RFC 2637).

One topology for the module (namespaces ``fxt-pat-*``): three client namespaces on ``br-in``,
the gateway namespace running the daemon, a server namespace that only knows the PAT address.
The peers are :mod:`fixup.lab.peers`; the snapshot comes from the daemon's control socket.
"""
from __future__ import annotations

import json
import signal
import tempfile
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from fixup.lab.scenario import PEERS, JsonLines, Lab, is_result, release
from fixup.lab.topology import PAT_ADDRESS, SERVER_ADDRESS, Topology

pytestmark = pytest.mark.netns

PREFIX = "fxt-pat-"
CLIENTS = 3
WAIT = 20.0


@pytest.fixture(scope="module")
def topology(netns_ready: None) -> Iterator[Topology]:
    with Topology(PREFIX, clients=CLIENTS) as topo:
        yield topo


@pytest.fixture(scope="module", params=["ebpf", "kernel", "queue"])
def lab(topology: Topology, request: pytest.FixtureRequest) -> Iterator[Lab]:
    """The gateway with GRE through the tc eBPF program, through the nftables maps, and through the queue."""
    with tempfile.TemporaryDirectory(prefix="fixup-netns-") as work:
        gateway = Lab(topology, work, clearing_timeout=2.0, gre=request.param)
        with gateway.serving():
            yield gateway
        status, left = gateway.stopped
        assert status == 0, gateway.daemon_log()
        assert left == [], f"fixup left rules behind: {left}"


@pytest.fixture
def gateway(lab: Lab) -> Lab:
    """The module's gateway with an empty translation table and a live daemon."""
    assert lab.daemon is not None and lab.daemon.poll() is None, lab.daemon_log()
    lab.clear_calls()
    return lab


# --- helpers --------------------------------------------------------------------------------


def holding(client: JsonLines) -> dict[str, Any]:
    """Wait for a ``--hold`` client's report that its calls are up and echoed."""
    got = client.wait_for(lambda o: o.get("event") == "holding" or is_result(o), WAIT)
    assert got is not None, f"{client.name}: no output; stderr: {client.stderr()}"
    assert got.get("event") == "holding", f"{client.name} failed early: {got}"
    return got


def finished(client: JsonLines) -> dict[str, Any]:
    """Release (if holding) and wait for the client's exit; assert it succeeded."""
    release(client)
    status = client.finish(WAIT)
    result = client.wait_for(is_result, 1)
    assert result is not None, f"{client.name}: no result line; stderr: {client.stderr()}"
    assert result["ok"] and status == 0, f"{client.name}: exit {status}: {result}"
    return result


def release_all(clients: Sequence[JsonLines]) -> None:
    for client in clients:
        release(client)


def calls_of(snapshot: dict[str, Any], client_address: str) -> list[dict[str, Any]]:
    return [call for call in snapshot["calls"] if call["client"] == client_address]


def drops(lab: Lab, reason: str) -> int:
    return int(lab.snapshot()["drops"].get(reason, 0))


def trouble(lab: Lab) -> int:
    """Everything the tracker counted as wrong so far: drops plus anomalies."""
    snapshot = lab.snapshot()
    return sum(snapshot["drops"].values()) + sum(snapshot.get("anomalies", {}).values())


def wait_until(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def run_peer(topology: Topology, ns: str, args: Sequence[str]) -> dict[str, Any]:
    done = topology.exec(ns, [*PEERS, *args], timeout=WAIT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0 and lines, f"peer {args[0]} failed: {done.stdout} {done.stderr}"
    return json.loads(lines[-1])


# --- the peers alone (no daemon yet: the server sits on the gateway's inside address) -------


def test_peers_talk_directly_without_the_daemon(topology: Topology) -> None:
    """Baseline for everything below: the peers agree with each other over a plain link."""
    server = JsonLines(topology.popen(topology.gateway, [*PEERS, "server", "--listen", "10.99.1.1"]), "direct")
    try:
        assert server.wait_for(lambda o: o.get("event") == "ready", 10) is not None, server.stderr()
        client = JsonLines(topology.popen(topology.clients[0], [
            *PEERS, "client", "--server", "10.99.1.1", "--name", "direct", "--call-ids", "0,1", "--clear"]), "c")
        result = finished(client)
    finally:
        server.stop()
    assert [call["gre_echoed"] for call in result["calls"]] == [5, 5]
    assert all(call["cleared"] for call in result["calls"])


# --- through the gateway --------------------------------------------------------------------


def test_three_clients_with_call_id_zero_get_distinct_translated_ids(gateway: Lab, topology: Topology) -> None:
    """(a) RFC 2637 section 2.7: every PNS may pick Call ID 0; behind one PAT address the
    gateway must hand the server distinct ones and map the echoes back."""
    clients = [gateway.start_client(i, [0], "--hold", "--clear") for i in range(CLIENTS)]
    try:
        reports = [holding(client) for client in clients]
        snapshot = gateway.snapshot()
    finally:
        release_all(clients)
    results = [finished(client) for client in clients]
    for report in reports:
        assert report["calls"][0]["gre_echoed"] == 5
    assert len(snapshot["calls"]) == CLIENTS
    translated = {call["translated_id"] for call in snapshot["calls"]}
    assert len(translated) == CLIENTS
    for i in range(CLIENTS):
        (call,) = calls_of(snapshot, topology.client_address(i))
        assert call["call_id"] == 0 and call["state"] == "established"
        assert call["packets_out"] >= 5 and call["packets_in"] >= 5
    # The server saw the translated IDs, all from the PAT address.
    assert gateway.server is not None
    seen = gateway.server.matching(lambda o: o.get("event") == "call-open" and o.get("peer") == PAT_ADDRESS)
    assert translated <= {event["peer_call_id"] for event in seen}
    assert all(result["unexpected_gre"] == 0 for result in results)


def test_three_calls_on_one_control_connection(gateway: Lab, topology: Topology) -> None:
    """(b) Calls 0, 1, 2 of one PNS (RFC 2637 section 2.7) share one control connection."""
    client = gateway.start_client(0, [0, 1, 2], "--hold", "--clear")
    try:
        report = holding(client)
        snapshot = gateway.snapshot()
    finally:
        release(client)
    result = finished(client)
    assert [call["gre_echoed"] for call in report["calls"]] == [5, 5, 5]
    calls = calls_of(snapshot, topology.client_address(0))
    assert sorted(call["call_id"] for call in calls) == [0, 1, 2]
    assert len({call["conn"] for call in calls}) == 1
    assert len({call["translated_id"] for call in calls}) == 3
    assert all(call["cleared"] for call in result["calls"])


def test_gre_larger_than_the_mtu_crosses_in_fragments(gateway: Lab, topology: Topology) -> None:
    """Full-size PPP frames (pppd's default MTU 1496) make GRE packets over 1500 bytes: their IP
    fragments must all leave with the PAT address and come back to the client (the server sees
    them reassembled; a rewrite after fragmentation would leak the inside address)."""
    result = finished(gateway.start_client(2, [0], "--gre-size", "2400", "--gre-count", "3", "--clear"))
    assert result["ok"] and result["calls"][0]["gre_echoed"] == 3, result


def test_control_messages_in_one_to_three_byte_segments(gateway: Lab) -> None:
    """(c) A control message may arrive cut anywhere (RFC 2637 section 2 runs over TCP)."""
    before = gateway.snapshot()["counters"].get("control_segments", 0)
    result = finished(gateway.start_client(1, [0, 1], "--segment-sizes", "1-3", "--clear"))
    assert [call["gre_echoed"] for call in result["calls"]] == [5, 5]
    after = gateway.snapshot()["counters"]["control_segments"]
    # SCCRQ alone is 156 bytes (RFC 2637 section 2.1): at 3 bytes a segment, 52 segments.
    assert after - before >= 52


def test_stale_gre_after_call_clear_is_dropped(gateway: Lab, topology: Topology) -> None:
    """(d) After CCRQ/CDN (RFC 2637 sections 2.12, 2.13) the translated Call ID is gone:
    GRE from the server side that still carries it is dropped and counted."""
    client = gateway.start_client(2, [0], "--hold", "--clear")
    try:
        holding(client)
        (call,) = calls_of(gateway.snapshot(), topology.client_address(2))
    finally:
        release(client)
    finished(client)
    stale_id = call["translated_id"]
    assert wait_until(lambda: not any(c["translated_id"] == stale_id for c in gateway.snapshot()["calls"]))
    before = drops(gateway, "unknown-call")
    listener = JsonLines(topology.popen(topology.clients[2], [*PEERS, "gre-listen", "--timeout", "2"]), "listen")
    assert listener.wait_for(lambda o: o.get("event") == "listening", 10) is not None
    injected = run_peer(topology, topology.server, ["gre-inject", "--to", PAT_ADDRESS,
                                                    "--call-id", str(stale_id), "--count", "3"])
    assert injected["sent"] == 3
    assert wait_until(lambda: drops(gateway, "unknown-call") >= before + 3)
    assert listener.finish(WAIT) == 0
    heard = listener.wait_for(lambda o: o.get("result") == "gre-listen", 1)
    assert heard is not None and heard["received"] == 0


def test_garbage_on_the_control_port_leaves_the_daemon_working(gateway: Lab) -> None:
    """(e) Bytes that break RFC 2637 section 1.4 are counted (as drops or anomalies: the
    tracker may pass a stream it cannot follow); the daemon stays up and the next client
    still gets through."""
    before = trouble(gateway)
    garbage = run_peer(gateway.topology, gateway.topology.clients[0], ["garbage", "--server", SERVER_ADDRESS])
    assert garbage["ok"]
    assert gateway.daemon is not None and gateway.daemon.poll() is None, gateway.daemon_log()
    assert trouble(gateway) >= before + 5  # most of the nine cases are noticed
    result = finished(gateway.start_client(0, [0], "--clear"))
    assert result["calls"][0]["gre_echoed"] == 5


def test_fixup_show_calls_json_lists_a_held_call(gateway: Lab, topology: Topology) -> None:
    """``fixup show calls --json`` (the operator's view) agrees with the control socket."""
    client = gateway.start_client(1, [7], "--hold", "--clear")
    try:
        holding(client)
        shown = gateway.fixup_cli("show", "calls", "--json")
    finally:
        release(client)
    finished(client)
    assert shown.returncode == 0, shown.stderr
    snapshot = json.loads(shown.stdout)
    (call,) = calls_of(snapshot, topology.client_address(1))
    assert call["call_id"] == 7 and call["server"] == SERVER_ADDRESS
    assert snapshot["pat_address"] == PAT_ADDRESS


def test_calls_survive_a_reload_and_a_bad_policy_is_refused(gateway: Lab, topology: Topology) -> None:
    """Issue 12 item 1: SIGHUP and ``fixup reload`` apply a changed policy in the same process
    while two clients hold calls; their Echo and GRE still cross afterwards.  An invalid policy,
    and one that changes what needs a restart, are refused with one line; the old one stays."""
    assert gateway.daemon is not None
    clients = [gateway.start_client(i, [0], "--hold", "--again", "--clear") for i in range(2)]
    original = gateway.policy_text()
    try:
        for client in clients:
            holding(client)
        before = {(c["client"], c["translated_id"]) for c in gateway.snapshot()["calls"]}
        pid = gateway.daemon.pid
        with open(gateway.policy_path, "w", encoding="utf-8") as f:
            f.write(original.replace(f"      clearing: {gateway.clearing_timeout:g}\n",
                                     f"      clearing: {gateway.clearing_timeout:g}\n      call_idle: 900\n"))
        gateway.daemon.send_signal(signal.SIGHUP)
        assert wait_until(lambda: "reloaded" in gateway.daemon_log(5)), gateway.daemon_log()
        assert "changed fixup.pptp.timeouts" in gateway.daemon_log(5)
        with open(gateway.policy_path, "w", encoding="utf-8") as f:
            f.write(original.replace("    ports: [1723]\n", "    ports: [abc]\n"))
        bad = gateway.fixup_cli("reload")
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad
        assert "reload refused" in bad.stderr and "fixup.pptp.ports" in bad.stderr
        other_mode = "queue" if gateway.gre != "queue" else "kernel"
        with open(gateway.policy_path, "w", encoding="utf-8") as f:
            f.write(original.replace(f"    gre: {gateway.gre}\n", f"    gre: {other_mode}\n"))
        restart = gateway.fixup_cli("reload")
        assert restart.returncode == 2 and "fixup.pptp.gre" in restart.stderr and "needs a restart" in restart.stderr
        assert gateway.daemon.poll() is None and gateway.daemon.pid == pid
        after = {(c["client"], c["translated_id"]) for c in gateway.snapshot()["calls"]}
        assert after == before and len(after) == 2
    finally:
        with open(gateway.policy_path, "w", encoding="utf-8") as f:
            f.write(original)
        release_all(clients)
    for client in clients:
        result = finished(client)
        assert result["calls"][0]["gre_echoed"] == 10 and result["unexpected_gre"] == 0
    assert "Traceback" not in gateway.daemon_log(400)
