"""fixup's netfilter rules and daemon life cycle in a real kernel, inside throw-away namespaces.

Run as root under the shared lock:  flock /tmp/fixup-netns.lock .venv/bin/pytest -m netns tests/netns/test_rules.py
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from fixup.errors import FixupError
from fixup.io.pat import netfilter
from fixup.io.control import request
from fixup.policy.loader import Policy

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="netns tests need root (network namespaces, netfilter)"),
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in ("ip", "nft", "iptables-nft")),
        reason="netns tests need ip, nft and iptables-nft",
    ),
]

PREFIX = "fxb-"
INSIDE = "fxbin0"
OUTSIDE = "fxbout0"
OUTSIDE_ADDRESS = "192.0.2.1"
PAT = IPv4Address("198.51.100.1")

# Used when fixup.proto.pat.tracker does not exist yet: the daemon's shell and rules are what is tested.
STUB_TRACKER_RUN = """
import sys, types
from fixup.proto.pat.verdict import Verdict

class Tracker:
    def __init__(self, config):
        self.config, self.drops = config, {}
    def handle_packet(self, packet, direction, now):
        return Verdict(False, None, "stub")
    def poll(self, now):
        return []
    def snapshot(self, now):
        return {"pat_address": str(self.config.pat_address), "connections": [], "calls": [],
                "counters": {}, "drops": dict(self.drops)}
    def count(self, reason):
        self.drops[reason] = self.drops.get(reason, 0) + 1
    def clear(self, now, conn_id=None):
        return 0

module = types.ModuleType("fixup.proto.pat.tracker")
module.Tracker = Tracker
sys.modules["fixup.proto.pat.tracker"] = module
from fixup.cli import main
sys.exit(main(sys.argv[1:]))
"""


@dataclass
class Namespace:
    name: str

    def exec(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], capture_output=True, text=True,
                              timeout=60, check=check)

    @property
    def commands(self) -> netfilter.Commands:
        return netfilter.Commands(prefix=("ip", "netns", "exec", self.name))

    def argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]


@pytest.fixture
def ns() -> Iterator[Namespace]:
    """A namespace with an inside and an outside veth (dummy links are not built into this kernel)."""
    name = f"{PREFIX}{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        space = Namespace(name)
        space.exec("ip", "link", "add", INSIDE, "type", "veth", "peer", "name", "fxbin1")
        space.exec("ip", "link", "add", OUTSIDE, "type", "veth", "peer", "name", "fxbout1")
        space.exec("ip", "addr", "add", f"{OUTSIDE_ADDRESS}/24", "dev", OUTSIDE)
        space.exec("sysctl", "-qw", "net.ipv4.ip_forward=1")
        for link in (INSIDE, "fxbin1", OUTSIDE, "fxbout1", "lo"):
            space.exec("ip", "link", "set", link, "up")
        yield space
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=30)


def policy(gre: str = "queue") -> Policy:
    return Policy(inside=(INSIDE,), outside=OUTSIDE, pptp_ports=(1723,), queue_num=1723, gre=gre)


def state(ns: Namespace) -> tuple[str, str, str, str, str]:
    """Everything fixup may have put in the namespace's netfilter, as text."""
    return (
        ns.exec("nft", "list", "table", "ip", "fixup", check=False).stdout,
        ns.exec("iptables-nft", "-t", "mangle", "-S", "FIXUP_FWD", check=False).stdout,
        ns.exec("iptables-nft", "-t", "raw", "-S", "FIXUP_PRE", check=False).stdout,
        ns.exec("iptables-nft", "-t", "mangle", "-S", "FORWARD", check=False).stdout,
        ns.exec("iptables-nft", "-t", "raw", "-S", "PREROUTING", check=False).stdout,
    )


def test_probe_finds_xtables_nfqueue(ns: Namespace) -> None:
    caps = netfilter.probe_capabilities(ns.commands)
    assert caps.nft_binary and caps.iptables_nft_binary
    assert caps.xt_nfqueue
    assert caps.queue_flavour in ("nft", "xtables")
    assert netfilter.leftovers(ns.commands) == []  # the probe leaves nothing behind
    assert "FIXUP_PROBE" not in ns.exec("iptables-nft", "-t", "mangle", "-S").stdout
    assert "fixup_probe" not in ns.exec("nft", "list", "tables").stdout


def test_kernel_gre_mode_loads_maps_and_queues_no_gre(ns: Namespace) -> None:
    caps = netfilter.probe_capabilities(ns.commands)
    netfilter.install(netfilter.build_ruleset(policy("kernel"), PAT, caps), ns.commands)
    try:
        table, fwd, pre, _forward, _prerouting = state(ns)
        assert "map gre_in_addr" in table and "set gre_out" in table and "chain gre_in" in table
        assert "-p gre" not in fwd and not pre.strip()
    finally:
        netfilter.remove(ns.commands)
    assert netfilter.leftovers(ns.commands) == []


def test_install_twice_then_remove(ns: Namespace) -> None:
    caps = netfilter.probe_capabilities(ns.commands)
    rules = netfilter.build_ruleset(policy(), PAT, caps)
    netfilter.install(rules, ns.commands)
    table, fwd, pre, forward, prerouting = first = state(ns)
    assert "chain gre_notrack" in table and "notrack" in table
    assert 'snat to 198.51.100.1' in table and "helper" not in table
    assert "@th,8,8 & 0x7 == 0x1" in table  # GRE version 1 only, as nft prints @th,13,3 1
    if rules.flavour == "xtables":
        assert f"-A FIXUP_FWD -i {INSIDE} -o {OUTSIDE} -p tcp -m tcp --dport 1723 -j NFQUEUE --queue-num 1723" in fwd
        assert f"-A FIXUP_FWD -i {OUTSIDE} -o {INSIDE} -p tcp -m tcp --sport 1723 -j NFQUEUE --queue-num 1723" in fwd
        assert f"-A FIXUP_FWD -i {INSIDE} -o {OUTSIDE} -p gre -j NFQUEUE --queue-num 1723" in fwd
        assert "-A FIXUP_PRE -d 198.51.100.1/32 -i fxbout0 -p gre -j NFQUEUE --queue-num 1723" in pre
        assert forward.count("-j FIXUP_FWD") == 2  # one jump for TCP, one for GRE
        assert prerouting.count("-j FIXUP_PRE") == 1
        assert "bypass" not in fwd + pre

    netfilter.install(rules, ns.commands)  # a restart: same rules, no duplicates
    assert state(ns) == first

    netfilter.remove(ns.commands)
    table, fwd, pre, forward, prerouting = state(ns)
    assert table == fwd == pre == ""
    assert "FIXUP" not in forward + prerouting
    assert netfilter.leftovers(ns.commands) == []
    netfilter.remove(ns.commands)  # absence is fine


def test_remove_cleans_duplicate_jumps_of_a_crashed_run(ns: Namespace) -> None:
    rules = netfilter.build_ruleset(policy(), PAT, netfilter.probe_capabilities(ns.commands))
    netfilter.install(rules, ns.commands)
    ns.exec("iptables-nft", "-t", "mangle", "-I", "FORWARD", "1", "-j", "FIXUP_FWD", check=False)
    netfilter.remove(ns.commands)
    assert netfilter.leftovers(ns.commands) == []
    assert "FIXUP" not in ns.exec("iptables-nft", "-t", "mangle", "-S").stdout


def test_remove_cleans_chains_altered_by_nft(ns: Namespace) -> None:
    """iptables-nft cannot read chains holding rules it cannot express: removal falls back to nft."""
    rules = netfilter.build_ruleset(policy(), PAT, netfilter.probe_capabilities(ns.commands))
    netfilter.install(rules, ns.commands)
    ns.exec("nft", "add", "rule", "ip", "mangle", "FIXUP_FWD", "ip", "protocol", "gre", "@th,13,3", "1", "accept")
    ns.exec("nft", "add", "rule", "ip", "mangle", "FORWARD", "meta", "mark", "7", "jump", "FIXUP_FWD")
    assert ns.exec("iptables-nft", "-t", "mangle", "-S", "FIXUP_FWD", check=False).returncode != 0
    netfilter.remove(ns.commands)
    assert netfilter.leftovers(ns.commands) == []
    assert "FIXUP" not in ns.exec("nft", "list", "table", "ip", "mangle").stdout


def _fixup_run_argv() -> list[str]:
    try:
        import fixup.proto.pat.tracker  # noqa: F401
    except ImportError:
        return [sys.executable, "-c", STUB_TRACKER_RUN]
    return [sys.executable, "-m", "fixup.cli"]


def _write_policy(tmp_path: Path) -> tuple[Path, str]:
    sock = str(tmp_path / "run" / "fixup.sock")
    path = tmp_path / "policy.yaml"
    path.write_text(f"inside: [{INSIDE}]\noutside: {OUTSIDE}\nruntime:\n  control_socket: {sock}\n  queue: 1723\n"
                    f"  state_dir: {tmp_path / 'state'}\n")
    return path, sock


def _wait_running(proc: subprocess.Popen[str], ns: Namespace, sock: str) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"fixup run exited {proc.returncode}: {proc.communicate()[1]}")
        try:
            snapshot = request(sock, {"cmd": "show-calls"}, timeout=2)
        except FixupError:
            time.sleep(0.2)
            continue
        if netfilter.leftovers(ns.commands):
            return snapshot
        time.sleep(0.2)
    pytest.fail("fixup run did not come up within 30 s")


def test_fixup_run_installs_and_sigint_removes(ns: Namespace, tmp_path: Path) -> None:
    policy_path, sock = _write_policy(tmp_path)
    proc = subprocess.Popen(ns.argv(*_fixup_run_argv(), "run", "--policy", str(policy_path)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        snapshot = _wait_running(proc, ns, sock)
        assert snapshot["pat_address"] == OUTSIDE_ADDRESS  # resolved from the outside interface
        assert stat_mode(Path(sock).parent) == 0o700
        assert len(netfilter.leftovers(ns.commands)) >= 1
        assert request(sock, {"cmd": "debug", "level": "debug"}) == {"level": "debug"}

        second = ns.exec(*_fixup_run_argv(), "run", "--policy", str(policy_path), check=False)
        assert second.returncode == 1
        assert "another fixup daemon" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
        assert netfilter.leftovers(ns.commands)  # the second daemon did not touch the first one's rules

        proc.send_signal(signal.SIGINT)  # stop and remove (systemctl stop); SIGTERM keeps, see test_restart
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "fixup: PPTP fixup on ports 1723, PAT 192.0.2.1" in err
    assert netfilter.leftovers(ns.commands) == []
    assert not os.path.exists(sock)


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_fixup_run_bad_policy_exits_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("inside: [br-in]\n")
    done = subprocess.run([sys.executable, "-m", "fixup.cli", "run", "--policy", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "outside" in done.stderr
