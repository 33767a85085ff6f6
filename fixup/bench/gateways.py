"""The four gateways the benchmark compares, each set up and torn down in the one topology.

(a) plain routing: no rules, no NAT; the server gets a route back to the inside for this
scenario only.  (b) the kernel helper: a table of the benchmark's own in the gateway
namespace attaches ``ct helper "pptp"`` (nf_conntrack_pptp + nf_nat_pptp) to TCP 1723 and
source-NATs to the PAT address -- only here, in a throw-away namespace; fixup itself never
attaches the helper.  (c)/(d)/(e) ``fixup run`` with ``fixup.pptp.gre`` = ``kernel`` / ``queue``
/ ``ebpf``, pinned to the router CPU; (e) is "not available" where the daemon falls back from
``ebpf`` (its log says why).  An I/O tool.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from fixup.lab.scenario import Lab
from fixup.lab.topology import (
    CLIENT_INTERFACE,
    GATEWAY_INSIDE_ADDRESS,
    INSIDE_PREFIX_LENGTH,
    OUTSIDE_INTERFACE,
    PAT_ADDRESS,
    SERVER_INTERFACE,
    Topology,
)

HELPER_TABLE = "fxbench_helper"
SINK_TABLE = "fxbench_sink"
INSIDE_NETWORK = f"{GATEWAY_INSIDE_ADDRESS.rsplit('.', 1)[0]}.0/{INSIDE_PREFIX_LENGTH}"


@dataclass(slots=True)
class Gateway:
    """What a measurement needs to know about the gateway under test."""

    key: str
    inbound_destination: str  # where the server sends GRE: the PAT address, or the client (a)
    daemon_pid: int | None = None
    lab: Lab | None = None
    notes: dict[str, object] = field(default_factory=dict)


def nft(topo: Topology, ns: str, script: str) -> None:
    done = topo.exec(ns, ["nft", "-f", "-"], input=script)
    if done.returncode != 0:
        raise RuntimeError(f"nft in {ns} failed: {done.stderr.strip()}\n{script}")


def delete_table(topo: Topology, ns: str, table: str) -> None:
    topo.exec(ns, ["nft", "delete", "table", "ip", table])


def flush_conntrack(topo: Topology) -> int | None:
    """Forget the gateway's connection tracking entries between scenarios (best effort);
    the number of entries left afterwards (None if unknown)."""
    code = "from pyroute2 import Conntrack\nwith Conntrack() as ct:\n    ct.flush()\n"
    topo.exec(topo.gateway, [sys.executable, "-c", code])
    count = topo.exec(topo.gateway, ["cat", "/proc/sys/net/netfilter/nf_conntrack_count"]).stdout.strip()
    return int(count) if count.isdigit() else None


def helper_script(pat_address: str) -> str:
    """The kernel helper set-up of scenario (b): nftables ``ct helper`` objects (nft(8),
    "CT HELPER") plus SNAT of everything leaving the outside interface."""
    return (
        f"table ip {HELPER_TABLE} {{\n"
        '  ct helper pptp-h { type "pptp" protocol tcp; l3proto ip; }\n'
        "  chain pre {\n"
        "    type filter hook prerouting priority filter; policy accept;\n"
        '    tcp dport 1723 ct helper set "pptp-h"\n'
        "  }\n"
        "  chain nat_pre {\n    type nat hook prerouting priority dstnat; policy accept;\n  }\n"
        "  chain nat_post {\n"
        "    type nat hook postrouting priority srcnat; policy accept;\n"
        f'    oifname "{OUTSIDE_INTERFACE}" snat to {pat_address}\n'
        "  }\n"
        "}\n"
    )


def sink_script(device: str) -> str:
    """The receiving end drops GRE at its link's ingress hook, before IP input: no ICMP, no
    raw-socket copies, and as little receiver work as possible on the generator's CPU.  The
    link's packet counter has already counted the frame."""
    return (
        f"table netdev {SINK_TABLE} {{\n"
        "  chain ingress {\n"
        f'    type filter hook ingress device "{device}" priority -500; policy accept;\n'
        "    ip protocol gre drop\n"
        "  }\n"
        "}\n"
    )


@contextmanager
def gre_sinks(topo: Topology) -> Iterator[None]:
    """Both ends drop arriving GRE while a generator runs."""
    ends = [(topo.server, SERVER_INTERFACE), (topo.clients[0], CLIENT_INTERFACE)]
    try:
        for ns, device in ends:
            nft(topo, ns, sink_script(device))
        yield
    finally:
        for ns, _ in ends:
            topo.exec(ns, ["nft", "delete", "table", "netdev", SINK_TABLE])


class BenchLab(Lab):
    """The lab daemon with the GRE mode under test, logging at the default level (the lab's
    debug level would log every packet)."""

    def __init__(self, topology: Topology, workdir: str, gre_mode: str) -> None:
        super().__init__(topology, workdir, clearing_timeout=2.0, gre=gre_mode, log_level="info")

    def limits_text(self) -> str:
        """The benchmark holds 10,000 calls from one client namespace to one server, each on its
        own control connection: far past the default floodguard limits."""
        return ("    limits: {calls_per_connection: 64, calls_per_client: 65536, connections_per_client: 65536, "
                "connections: 65536}\n")


class NotAvailable(Exception):
    """The gateway cannot run here (e.g. the daemon refuses the GRE mode)."""


def pin(pid: int, cpu: int | None) -> None:
    """Every thread of ``pid`` onto ``cpu`` (no-op for None)."""
    if cpu is None:
        return
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), {cpu})
        except OSError:
            pass


def daemon_failure(lab: Lab, err: Exception) -> str:
    """The daemon's own last words, one line."""
    lines = [line.strip() for line in lab.daemon_log().splitlines() if line.strip()]
    return lines[-1] if lines else str(err).splitlines()[0]


@contextmanager
def gateway(key: str, topo: Topology, workdir: str, router_cpu: int | None) -> Iterator[Gateway]:
    """Set up gateway ``key`` (see module docstring), yield it, tear it down."""
    client = topo.client_address(0)
    if key == "plain":
        route = ["route", "add", INSIDE_NETWORK, "via", PAT_ADDRESS]
        subprocess.run(["ip", "-n", topo.server, *route], check=True, capture_output=True)
        try:
            yield Gateway(key, inbound_destination=client)
        finally:
            subprocess.run(["ip", "-n", topo.server, "route", "del", INSIDE_NETWORK], capture_output=True)
        return
    if key == "helper":
        nft(topo, topo.gateway, helper_script(PAT_ADDRESS))
        helper = Gateway(key, inbound_destination=PAT_ADDRESS)
        try:
            yield helper
        finally:
            delete_table(topo, topo.gateway, HELPER_TABLE)
            helper.notes["conntrack_after_flush"] = flush_conntrack(topo)
        return
    lab = BenchLab(topo, workdir, key)
    try:
        lab.start_daemon()
    except RuntimeError as err:
        lab.stop_daemon()
        raise NotAvailable(daemon_failure(lab, err)) from err
    if key == "ebpf" and "gre ebpf" not in lab.daemon_log():
        fallback = [line for line in lab.daemon_log().splitlines() if "gre ebpf is not available" in line]
        lab.stop_daemon()
        raise NotAvailable(fallback[-1].split("fixup: ", 1)[-1] if fallback else "the daemon did not use gre ebpf")
    assert lab.daemon is not None
    pid = lab.daemon.pid
    pin(pid, router_cpu)
    found = Gateway(key, inbound_destination=PAT_ADDRESS, daemon_pid=pid, lab=lab)
    try:
        yield found
    finally:
        status, left = lab.stop_daemon()
        found.notes.update(daemon_exit=status, leftovers=left, conntrack_after_flush=flush_conntrack(topo))


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` from /proc/PID/status, in KiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def nfqueue_stats(topo: Topology) -> list[dict[str, int]]:
    """/proc/net/netfilter/nfnetlink_queue of the gateway: per queue, packets waiting, dropped
    by the kernel (queue full) and lost toward user space (socket buffer full)."""
    text = topo.exec(topo.gateway, ["cat", "/proc/net/netfilter/nfnetlink_queue"]).stdout
    stats = []
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 7 and all(word.isdigit() for word in words[:7]):
            stats.append({"queue": int(words[0]), "waiting": int(words[2]), "queue_dropped": int(words[5]),
                          "user_dropped": int(words[6])})
    return stats
