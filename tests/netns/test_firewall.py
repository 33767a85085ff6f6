"""PPTP through the router's own firewall (issue 13 item 4): real router rulesets in the gateway
namespace -- an nftables ``inet filter`` forward chain with policy drop, ``ct state
established,related accept`` and LAN -> WAN accept; the same shape in iptables-nft (ufw style) --
and two clients with Call ID 0 behind the PAT.

``permit: true`` (PIX ``sysopt connection permit-pptp``, the default): GRE passes both ways with
every GRE mode.  ``permit: false``: the host's firewall decides, so the GRE of the calls is
dropped until the operator adds the one rule ``fixup check`` prints.  In every case GRE of no call
is still dropped.  firewalld is not run: it needs the D-Bus system bus, which this host's PID 1
does not provide.  Namespaces ``fxt-fw-*``.
"""
from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from fixup.io.pat.permit import hint
from fixup.lab.scenario import FIXUP, PEERS, JsonLines, Lab, is_result
from fixup.lab.topology import INSIDE_BRIDGE, OUTSIDE_INTERFACE, PAT_ADDRESS, Topology

pytestmark = pytest.mark.netns

WAIT = 20.0
NFT_FIREWALL = f"""table inet filter {{
  chain forward {{
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "{INSIDE_BRIDGE}" oifname "{OUTSIDE_INTERFACE}" accept
  }}
}}
"""
IPTABLES_FIREWALL = [
    ["-P", "FORWARD", "DROP"],
    ["-A", "FORWARD", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
    ["-A", "FORWARD", "-i", INSIDE_BRIDGE, "-o", OUTSIDE_INTERFACE, "-j", "ACCEPT"],
]


@pytest.fixture(scope="module")
def topology(netns_ready: None) -> Iterator[Topology]:
    with Topology("fxt-fw-", clients=2) as topo:
        yield topo


class FirewalledLab(Lab):
    permit = True

    def policy_text(self) -> str:
        text = super().policy_text()
        return text if self.permit else text.replace(f"    gre: {self.gre}\n", f"    gre: {self.gre}\n    permit: false\n")


def install_firewall(topo: Topology, kind: str) -> None:
    if kind == "nftables":
        done = topo.exec(topo.gateway, ["nft", "-f", "-"], input=NFT_FIREWALL)
        assert done.returncode == 0, done.stderr
    else:
        for argv in IPTABLES_FIREWALL:
            done = topo.exec(topo.gateway, ["iptables-nft", *argv])
            assert done.returncode == 0, done.stderr


def remove_firewall(topo: Topology) -> None:
    topo.exec(topo.gateway, ["nft", "delete", "table", "inet", "filter"])
    topo.exec(topo.gateway, ["iptables-nft", "-P", "FORWARD", "ACCEPT"])
    topo.exec(topo.gateway, ["iptables-nft", "-F", "FORWARD"])


@pytest.fixture
def firewalled(topology: Topology, request: pytest.FixtureRequest) -> Iterator[tuple[FirewalledLab, str]]:
    kind, gre, permit = request.param
    install_firewall(topology, kind)
    try:
        with tempfile.TemporaryDirectory(prefix="fixup-fw-") as work:
            lab = FirewalledLab(topology, work, gre=gre)
            lab.permit = permit
            with lab.serving():
                yield lab, kind
            status, left = lab.stopped
            assert status == 0 and left == [], (left, lab.daemon_log(40))
    finally:
        remove_firewall(topology)


def run_clients(lab: Lab, count: int = 2, timeout: float = 4.0) -> list[dict[str, Any]]:
    clients = [lab.start_client(i, [0], "--clear", "--timeout", str(timeout)) for i in range(count)]
    results = []
    for client in clients:
        result = client.wait_for(is_result, 3 * WAIT)
        client.finish(5)
        assert result is not None, client.objects
        results.append(result)
    return results


def no_pinhole(lab: Lab) -> None:
    """GRE of no call from the server side reaches no client."""
    topo = lab.topology
    listener = JsonLines(topo.popen(topo.clients[0], [*PEERS, "gre-listen", "--timeout", "2"]), "listen")
    assert listener.wait_for(lambda o: o.get("event") == "listening", 10) is not None
    done = topo.exec(topo.server, [*PEERS, "gre-inject", "--to", PAT_ADDRESS, "--call-id", "48879", "--count", "3"])
    assert done.returncode == 0, done.stderr
    assert listener.finish(WAIT) == 0
    heard = listener.wait_for(lambda o: o.get("result") == "gre-listen", 1)
    assert heard is not None and heard["received"] == 0


CASES = [(kind, gre, True) for kind in ("nftables", "iptables") for gre in ("ebpf", "kernel", "queue")]


@pytest.mark.parametrize("firewalled", CASES, indirect=True, ids=[f"{k}-{g}" for k, g, _p in CASES])
def test_permit_lets_the_gre_of_tracked_calls_through_the_hosts_firewall(firewalled: tuple[FirewalledLab, str]) -> None:
    lab, _kind = firewalled
    results = run_clients(lab)
    for result in results:
        assert result["ok"], json.dumps(result)
        assert result["calls"][0]["gre_echoed"] == 5 and result["unexpected_gre"] == 0
    no_pinhole(lab)


@pytest.mark.parametrize("firewalled", [("nftables", "kernel", False), ("iptables", "kernel", False)], indirect=True,
                         ids=["nftables", "iptables"])
def test_without_permit_the_host_firewall_decides_until_the_printed_rule_is_added(
        firewalled: tuple[FirewalledLab, str]) -> None:
    lab, kind = firewalled
    blocked = run_clients(lab, count=1, timeout=2.0)[0]
    assert not blocked["ok"] and "GRE echo" in (blocked["error"] or ""), json.dumps(blocked)
    printed = lab.topology.exec(lab.topology.gateway, [*FIXUP, "check", "--policy", lab.policy_path]).stdout
    assert hint() in printed
    nft_rule, iptables_rule = hint().split("   # or: ")
    argv = nft_rule.split() if kind == "nftables" else ["iptables-nft", *iptables_rule.split()[1:]]
    done = lab.topology.exec(lab.topology.gateway, argv)
    assert done.returncode == 0, done.stderr
    results = run_clients(lab)
    assert all(r["ok"] and r["calls"][0]["gre_echoed"] == 5 for r in results), results
    no_pinhole(lab)

