"""A restart keeps the PAT calls (issue 12 items 2, 3 and 6), through the real daemon.

Two clients behind the PAT, both with Call ID 0, hold a call each; the daemon is stopped with
SIGTERM (``systemctl restart``) or killed (SIGKILL) and started again.  Afterwards each client's
connection still answers Echo, carries GRE both ways with its own Call ID, takes a new call and
clears everything -- one client's Echo was sent while no daemon ran (TCP retransmitted it).  A
call whose client died while no daemon ran leaves no translation behind: its GRE elements expire
on their lease with no daemon at all, and the new daemon releases the call when the client's
FIN comes through.  Namespaces ``fxt-rst-*``.
"""
from __future__ import annotations

import json
import signal
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest

from fixup.io.pat.netfilter import Commands, leftovers
from fixup.lab.scenario import JsonLines, Lab, is_result, release
from fixup.lab.topology import Topology

pytestmark = pytest.mark.netns

PREFIX = "fxt-rst-"
WAIT = 20.0


@pytest.fixture(scope="module")
def topology(netns_ready: None) -> Iterator[Topology]:
    with Topology(PREFIX, clients=2) as topo:
        yield topo


class LeasedLab(Lab):
    """The lab gateway with a short GRE lease (``fixup.pptp.timeouts.gre_lease``)."""

    lease: float | None = None

    def policy_text(self) -> str:
        text = super().policy_text()
        if self.lease is None:
            return text
        return text.replace("    timeouts:\n", f"    timeouts:\n      gre_lease: {self.lease:g}\n")


@pytest.fixture
def lab(topology: Topology, request: pytest.FixtureRequest) -> Iterator[LeasedLab]:
    with tempfile.TemporaryDirectory(prefix="fixup-restart-") as work:
        gateway = LeasedLab(topology, work, clearing_timeout=2.0, gre=getattr(request, "param", "ebpf"))
        with gateway.serving():
            yield gateway
        left = gateway.stopped[1]
        assert left == [], f"fixup left rules behind: {left}\n{gateway.daemon_log(60)}"


def wait_until(predicate: Any, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def holding(client: JsonLines) -> dict[str, Any]:
    event = client.wait_for(lambda o: o.get("event") == "holding", WAIT)
    assert event is not None, f"{client.name} never held its call: {client.objects}"
    return event


def finished(client: JsonLines) -> dict[str, Any]:
    result = client.wait_for(is_result, 3 * WAIT)
    client.finish(5)
    assert result is not None, f"{client.name} gave no result: {client.objects}"
    return result


def gre_elements(lab: Lab) -> int:
    """How many inbound translations the kernel path holds (each element has a lease)."""
    done = lab.topology.exec(lab.topology.gateway, ["nft", "list", "map", "ip", "fixup", "gre_in_addr"])
    return done.stdout.count(" expires ") if done.returncode == 0 else 0


def pat_calls(lab: Lab) -> set[tuple[str, int, int]]:
    return {(c["client"], c["call_id"], c["translated_id"]) for c in lab.snapshot()["calls"]}


@pytest.mark.parametrize("lab", ["ebpf", "kernel", "queue"], indirect=True)
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_two_clients_keep_their_calls_across_a_restart(lab: LeasedLab, how: signal.Signals) -> None:
    clients = [lab.start_client(i, [0], "--hold", "--again", "--again-call", "1", "--clear", "--timeout", "30")
               for i in range(2)]
    try:
        for client in clients:
            holding(client)
        before = pat_calls(lab)
        assert len(before) == 2 and {call_id for _c, call_id, _t in before} == {0}
        status, left = lab.stop_daemon(sig=how)
        assert left, "the rules must stay while no daemon runs"
        if how is signal.SIGTERM:
            assert status == 0 and "kept for the next start" in lab.daemon_log(5), lab.daemon_log(20)
        if lab.gre != "queue":
            assert gre_elements(lab) == 2, "the GRE translations stay while no daemon runs"
        release(clients[0])  # its Echo meets no daemon: TCP retransmits it
        time.sleep(0.5)
        lab.start_daemon()
        assert "resumed 2 control connections with 2 calls (2 carrying GRE)" in lab.daemon_log(400), lab.daemon_log(30)
        still_held = {call for call in before if call[0] == lab.topology.client_address(1)}
        assert len(still_held) == 1 and still_held <= pat_calls(lab)  # the same translation (client 0 may be done)
        release(clients[1])
        results = [finished(client) for client in clients]
    finally:
        for client in clients:
            release(client)
    for result in results:
        assert result["ok"], json.dumps(result)
        assert [c["gre_echoed"] for c in result["calls"]] == [10, 5]  # before and after; the new call
        assert result["unexpected_gre"] == 0
    assert lab.snapshot()["calls"] == []
    assert "Traceback" not in lab.daemon_log(400)


def test_a_call_whose_client_died_while_no_daemon_ran_leaves_nothing_behind(lab: LeasedLab) -> None:
    lab.lease = 3.0
    lab.stop_daemon()
    lab.start_daemon()
    client = lab.start_client(0, [0], "--hold", "--timeout", "30")
    holding(client)
    assert gre_elements(lab) == 1
    lab.stop_daemon(sig=signal.SIGKILL)
    client.proc.kill()  # its FIN meets no daemon
    client.finish(5)
    assert wait_until(lambda: gre_elements(lab) == 0, 10), "the lease did not expire"
    lab.start_daemon()
    assert wait_until(lambda: lab.snapshot()["calls"] == [], WAIT), lab.snapshot()["calls"]
    assert gre_elements(lab) == 0
    assert "Traceback" not in lab.daemon_log(400)


def test_fixup_stop_removes_what_a_killed_daemon_left(lab: LeasedLab) -> None:
    client = lab.start_client(1, [0], "--hold", "--timeout", "30")
    try:
        holding(client)
        lab.stop_daemon(sig=signal.SIGKILL)
        gateway = Commands(("ip", "netns", "exec", lab.topology.gateway))
        assert leftovers(gateway)
        done = lab.fixup_cli("stop", "--policy", lab.policy_path)
        assert done.returncode == 0 and "removed" in done.stdout, done
        assert leftovers(gateway) == []
        lab.start_daemon()
        assert "resumed" not in lab.daemon_log(400)
        assert lab.snapshot()["calls"] == []
    finally:
        release(client)
        client.finish(10)


def test_a_live_call_outlives_many_leases(lab: LeasedLab) -> None:
    """The daemon renews the leases of live calls: a call held for over two leases still
    carries GRE both ways."""
    lab.lease = 3.0
    lab.stop_daemon()
    lab.start_daemon()
    client = lab.start_client(0, [0], "--hold", "--again", "--timeout", "30")
    try:
        holding(client)
        time.sleep(7.5)
        assert gre_elements(lab) == 1
    finally:
        release(client)
    result = finished(client)
    assert result["ok"] and result["calls"][0]["gre_echoed"] == 10, json.dumps(result)


def test_a_reload_of_the_ports_keeps_the_calls_on_the_ports_that_stay(lab: LeasedLab) -> None:
    """``fixup.pptp.ports`` reloads in place (issue 12 item 1): rules for the new port are added
    before any other changes, and the held call goes on."""
    original = lab.policy_text()
    client = lab.start_client(0, [0], "--hold", "--again", "--again-call", "1", "--clear", "--timeout", "30")
    try:
        holding(client)
        with open(lab.policy_path, "w", encoding="utf-8") as f:
            f.write(original.replace("    ports: [1723]\n", "    ports: [1723, 1724]\n"))
        done = lab.fixup_cli("reload")
        assert done.returncode == 0 and "fixup.pptp.ports" in done.stdout, (done, lab.daemon_log(10))
        rules = lab.topology.exec(lab.topology.gateway, ["iptables-nft", "-t", "mangle", "-S", "FIXUP_FWD"]).stdout
        assert "--dport 1724" in rules and "--dport 1723" in rules, rules
        assert gre_elements(lab) == 1 or lab.gre == "queue"
    finally:
        with open(lab.policy_path, "w", encoding="utf-8") as f:
            f.write(original)
        release(client)
    result = finished(client)
    assert result["ok"] and [c["gre_echoed"] for c in result["calls"]] == [10, 5], json.dumps(result)
    assert lab.fixup_cli("reload").returncode == 0
