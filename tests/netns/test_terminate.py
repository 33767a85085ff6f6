"""Local PPTP termination through the real daemon (issue 4 item 9): a PPTP client written for the
tests dials fixup from outside, gets an address from the pool over PPP (userspace, TUN), and
reaches a host on the inside: ping and a 1 MB transfer, with and without MPPE."""
from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from fixup.lab.scenario import PEERS, Lab
from fixup.lab.topology import PAT_ADDRESS, Topology

pytestmark = pytest.mark.netns

PREFIX = "fxt-term-"
INSIDE_HOST = "10.99.1.10"  # the topology's first "client" namespace sits on the inside bridge
POOL = "192.168.50.10-192.168.50.20"


class TerminateLab(Lab):
    def policy_text(self) -> str:
        return super().policy_text() + (
            "terminate:\n"
            f"  listen: {PAT_ADDRESS}\n"
            "  authentication: [pap, chap, mschap, mschap-v2]\n"
            "  encryption: {mppe: auto, required: false}\n"
            f"  pool: {POOL}\n"
            "  dns: [10.99.1.53]\n"
            "  users: {cisco: cisco}\n"
            "  max_sessions: 127\n"
        )


@contextmanager
def terminate_topology(prefix: str) -> Iterator[Topology]:
    """One client namespace on the inside (the host dialers reach), running the TCP sink."""
    with Topology(prefix, clients=1) as topo:
        sink = topo.popen(topo.clients[0], [*PEERS, "sink", "--listen", f"{INSIDE_HOST}:5001"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield topo
        finally:
            sink.terminate()
            sink.wait(5)


@pytest.fixture(scope="module")
def lab(netns_ready: None) -> Iterator[TerminateLab]:
    with terminate_topology(PREFIX) as topo, tempfile.TemporaryDirectory(prefix="fixup-term-") as work:
        gateway = TerminateLab(topo, work, clearing_timeout=2.0)
        gateway.start_daemon()
        try:
            yield gateway
        finally:
            status, left = gateway.stop_all()
        assert status == 0, gateway.daemon_log()
        assert left == [], f"fixup left rules behind: {left}"


def dial(lab: TerminateLab, *args: str, timeout: float = 60) -> dict[str, Any]:
    """``peers dial`` from the outside host (the topology's server namespace) to the gateway."""
    done = lab.topology.exec(lab.topology.server, [*PEERS, "dial", "--server", PAT_ADDRESS, "--route", "10.99.1.0/24",
                                                   *args], timeout=timeout)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    results = [line for line in lines if line.get("result") == "dial"]
    assert results, f"no result from the dialer (exit {done.returncode}):\n{done.stdout}\n{done.stderr}\n{lab.daemon_log()}"
    return results[-1]


def vpdn(lab: TerminateLab) -> dict[str, Any]:
    return lab.request({"cmd": "show-vpdn"})


@pytest.mark.parametrize("auth, mppe", [("mschap-v2", "require-128"), ("mschap", "require-40"), ("pap", "none")])
def test_dial_in_reaches_the_inside_host(lab: TerminateLab, auth: str, mppe: str) -> None:
    result = dial(lab, "--user", "cisco", "--password", "cisco", "--auth", auth, "--mppe", mppe,
                  "--ping", INSIDE_HOST, "--transfer", f"{INSIDE_HOST}:5001", "1000000")
    assert result["ok"], (result, lab.daemon_log())
    assert result["address"].startswith("192.168.50.")
    assert result["ping"]["received"] == result["ping"]["sent"] == 3
    assert result["transfer"] == {"bytes": 1000000, "sha256_ok": True}
    if mppe != "none":
        assert result["mppe_bits"] is not None
    assert vpdn(lab)["pool"]["in_use"] == 0  # the dialer hung up: address returned
    # the call's GRE was let in before the OCRP reached the client: none dropped as unknown
    assert lab.snapshot()["drops"].get("unknown-call", 0) == 0


def test_wrong_password_fails_and_frees_the_address(lab: TerminateLab) -> None:
    result = dial(lab, "--user", "cisco", "--password", "nope", "--auth", "mschap-v2", "--mppe", "none")
    assert not result["ok"] and "auth" in (result.get("failure") or "")
    snapshot = vpdn(lab)
    assert snapshot["sessions"] == [] and snapshot["pool"]["in_use"] == 0
    assert "auth" in lab.daemon_log(200).lower()


def held_dial(lab: TerminateLab, auth: str, mppe: str, hold: float) -> subprocess.Popen[str]:
    """A dialer (user cisco) from the outside host holding its session until its stdin closes."""
    proc = lab.topology.popen(lab.topology.server, [*PEERS, "dial", "--server", PAT_ADDRESS, "--user", "cisco",
                                                    "--password", "cisco", "--auth", auth, "--mppe", mppe,
                                                    "--hold", "--hold-timeout", str(hold)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if '"holding"' in line or '"result"' in line:
            break
    return proc


def test_show_vpdn_lists_a_held_session(lab: TerminateLab) -> None:
    proc = held_dial(lab, "mschap-v2", "require-128", 20)
    try:
        text = lab.fixup_cli("show", "vpdn").stdout
        assert "Total tunnels=1 sessions=1" in text and "Session username is cisco, state is up" in text, text
        assert "MPPE 128 bits" in text
        cleared = lab.fixup_cli("clear", "vpdn", "all")
        assert cleared.returncode == 0 and "1 tunnel(s) ended" in cleared.stdout
    finally:
        proc.stdin.close()
        proc.wait(20)
    assert vpdn(lab)["tunnels"] == []


def test_a_reload_keeps_the_held_session_and_applies_to_the_next(lab: TerminateLab) -> None:
    """Issue 12 item 1 for dial-in: new users and a new authentication order reach new sessions
    through ``fixup reload``; the session held across it stays up."""
    original = lab.policy_text()
    proc = held_dial(lab, "pap", "none", 30)
    try:
        with open(lab.policy_path, "w", encoding="utf-8") as f:
            f.write(original.replace("users: {cisco: cisco}", "users: {cisco: cisco, bob: b0b}")
                    .replace("authentication: [pap, chap, mschap, mschap-v2]", "authentication: [mschap-v2]"))
        done = lab.fixup_cli("reload")
        assert done.returncode == 0 and "terminate.authentication, terminate.users" in done.stdout, done
        sessions = vpdn(lab)["sessions"]
        assert [(s["username"], s["state"]) for s in sessions] == [("cisco", "up")], sessions
        proc.stdin.close()  # the dialer routes our address into its tunnel: hang up before the next dial
        proc.wait(20)
        bob = dial(lab, "--user", "bob", "--password", "b0b", "--auth", "mschap-v2", "--mppe", "require-128")
        assert bob["ok"], (bob, lab.daemon_log(30))
        assert not dial(lab, "--user", "cisco", "--password", "cisco", "--auth", "pap", "--mppe", "none")["ok"]
    finally:
        with open(lab.policy_path, "w", encoding="utf-8") as f:
            f.write(original)
        lab.fixup_cli("reload")
        if not proc.stdin.closed:
            proc.stdin.close()
        proc.wait(20)
    assert vpdn(lab)["tunnels"] == []
