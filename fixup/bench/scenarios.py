"""One benchmark run: build the topology once, then measure each gateway the same way.

Per gateway (see :mod:`fixup.bench.gateways`): call setups per second (and, for the daemon,
its memory with ``calls_small`` then ``calls_large`` calls held up), OCRP -> first GRE, then
GRE packets per second in both directions with each payload size.  With two or more CPUs,
CPU 0 is the traffic generator's and the receivers' (trafgen pins its worker there; RPS on
the receivers' links), CPU 1 is the router's (RPS on the gateway's two ingress links; the
daemon pinned there), so the gateway's work is what the counter measures.  An I/O tool.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from ipaddress import IPv4Address
from typing import Any

from fixup.bench import report
from fixup.bench.frames import gre_frame, parse_mac, trafgen_config
from fixup.bench.gateways import Gateway, NotAvailable, gateway, gre_sinks, nfqueue_stats, rss_kib
from fixup.bench.traffic import (
    GENERATOR_CPU,
    Flow,
    PpsResult,
    mac_address,
    measure,
    search_rate,
    set_rps,
    trial,
)
from fixup.lab.scenario import JsonLines
from fixup.lab.topology import (
    CLIENT_INTERFACE,
    INSIDE_BRIDGE,
    OUTSIDE_INTERFACE,
    SERVER_ADDRESS,
    SERVER_INTERFACE,
    Topology,
)

BENCH_PREFIX = "fxb3-"
GATEWAY_CLIENT_PORT = "in0"  # the bridge port of client 0 (fixup.lab.topology names them in<i>)
BULK = [sys.executable, "-m", "fixup.bench.bulk"]
PPS_CALL_ID = 4242
LATENCY_FIRST_CALL_ID = 30000
SETTLE = 0.5
SEARCH_ABOVE = 0.05  # loss at full offered load that starts a rate search
LOSS_LIMIT = 0.01  # loss accepted by the search (RFC 2544 throughput allows none; VMs jitter)
SEARCH_START = 20_000
FOREIGN_USER_LIMIT = 5.0  # percent user time on the router CPU in (a)/(b): someone else's processes
ROUTER_IDLE_LIMIT = 10.0  # percent idle left on the router CPU that marks a generator-bound figure
Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a run is parameterised by (``quick``: the netns smoke test's tiny run)."""

    seconds: float = 3.0
    warmup: float = 1.0
    calls_small: int = 1000
    calls_large: int = 10000
    latency_samples: int = 20
    concurrency: int = 200
    trial_seconds: float = 1.0
    search_steps: int = 3
    repeats: int = 2
    scenarios: tuple[str, ...] = tuple(report.SCENARIOS)
    profile: str = "auto"  # "auto": when the queue path misses its target; "always"; "never"
    prefix: str = BENCH_PREFIX

    @classmethod
    def quick(cls, **overrides: Any) -> Settings:
        values: dict[str, Any] = dict(seconds=1.0, warmup=0.3, calls_small=50, calls_large=100,
                                      latency_samples=5, profile="never", trial_seconds=0.3,
                                      search_steps=1, repeats=1)
        values.update(overrides)
        return cls(**values)

    def parameters(self) -> dict[str, Any]:
        params = asdict(self)
        params["payloads"] = list(report.PAYLOADS)
        params["scenarios"] = list(self.scenarios)
        return params


class BulkPeers:
    """The benchmark PAC in the server namespace and the PNS in the client namespace."""

    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.server: JsonLines | None = None
        self.client: JsonLines | None = None
        self.seq = 0

    def start(self) -> None:
        self.server = self._spawn(self.topo.server, ["server", "--listen", SERVER_ADDRESS], "bulk-server")
        self.client = self._spawn(self.topo.clients[0], ["client", "--server", SERVER_ADDRESS], "bulk-client")

    def _spawn(self, ns: str, args: list[str], name: str) -> JsonLines:
        peer = JsonLines(self.topo.popen(ns, [*BULK, *args], stdin=subprocess.PIPE), name)
        if peer.wait_for(lambda obj: obj.get("event") == "ready", 15) is None:
            peer.stop()
            raise RuntimeError(f"{name} did not start: {peer.lines[-3:]} {peer.stderr()[-500:]}")
        return peer

    def command(self, timeout: float, **command: Any) -> dict[str, Any]:
        assert self.client is not None and self.client.proc.stdin is not None
        self.seq += 1
        seq = self.seq
        self.client.proc.stdin.write(json.dumps({"seq": seq, **command}) + "\n")
        self.client.proc.stdin.flush()
        reply = self.client.wait_for(lambda obj: obj.get("seq") == seq, timeout)
        if reply is None:
            raise RuntimeError(f"bulk client: no answer to {command} within {timeout:g} s "
                               f"({self.client.lines[-2:]})")
        return reply

    def stop(self) -> None:
        for peer in (self.client, self.server):
            if peer is not None and peer.proc.stdin is not None and not peer.proc.stdin.closed:
                try:
                    peer.proc.stdin.close()
                except BrokenPipeError:
                    pass
        for peer in (self.client, self.server):
            if peer is not None:
                peer.finish(10)


class Bench:
    """Runs :class:`Settings` into a result document (see :mod:`fixup.bench.report`)."""

    def __init__(self, settings: Settings, results: dict[str, Any], progress: Progress) -> None:
        self.settings = settings
        self.results = results
        self.progress = progress
        self.router_cpu: int | None = 1 if (os.cpu_count() or 1) >= 2 else None
        self.topo: Topology | None = None
        self.peers: BulkPeers | None = None
        self.workdir = ""

    def run(self) -> None:
        s = self.settings
        self.progress(f"building namespaces {s.prefix}* (client, gateway, server)")
        with Topology(s.prefix, clients=1) as topo, tempfile.TemporaryDirectory(prefix="fixup-bench-") as work:
            self.topo, self.workdir = topo, work
            self.prepare(topo)
            self.peers = BulkPeers(topo)
            try:
                self.peers.start()
                for key in s.scenarios:
                    self.run_gateway(key)
            finally:
                self.peers.stop()

    def prepare(self, topo: Topology) -> None:
        """Sysctls for thousands of connections, CPU roles, neighbours resolved."""
        client, server = topo.clients[0], topo.server
        topo.exec(client, ["sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=1024 65535"], check=True)
        topo.exec(server, ["sysctl", "-q", "-w", "net.core.somaxconn=8192",
                           "net.ipv4.tcp_max_syn_backlog=8192"], check=True)
        if self.router_cpu is not None:
            roles = [(topo.gateway, GATEWAY_CLIENT_PORT, self.router_cpu),
                     (topo.gateway, OUTSIDE_INTERFACE, self.router_cpu),
                     (server, SERVER_INTERFACE, GENERATOR_CPU), (client, CLIENT_INTERFACE, GENERATOR_CPU)]
            rps = all(set_rps(ns, dev, {cpu}) for ns, dev, cpu in roles)
            self.results["machine"]["rps"] = rps
        for ns, address in ((client, topo.gateway_inside_address), (server, topo.pat_address)):
            if not topo.wait_reachable(ns, address):
                raise RuntimeError(f"{address} does not answer from {ns}")

    # -- one gateway -------------------------------------------------------------------------

    def run_gateway(self, key: str) -> None:
        assert self.topo is not None
        entry = self.results["scenarios"][key]
        label = report.SCENARIOS[key]
        self.progress(f"{label}: setting up")
        try:
            with gateway(key, self.topo, self.workdir, self.router_cpu) as gw:
                self.measure_gre(gw, entry)  # first: with one call, before thousands came and went
                if self.should_profile(key):
                    self.profile(gw)
                self.measure_latency(gw, entry)
                self.measure_calls(gw, entry)
            entry["details"]["gateway"] = gw.notes
        except NotAvailable as err:
            entry["status"], entry["reason"] = report.STATUS_NOT_AVAILABLE, str(err)
            self.progress(f"{label}: not available: {err}")
        except (RuntimeError, OSError, subprocess.SubprocessError) as err:
            entry["status"], entry["reason"] = report.STATUS_FAILED, str(err)
            self.progress(f"{label}: FAILED: {err}")

    def measure_calls(self, gw: Gateway, entry: dict[str, Any]) -> None:
        """Call setups per second from idle (``calls_small`` calls, each on its own control
        connection); for the daemon also its RSS idle, with ``calls_small`` and with
        ``calls_large`` calls held up, and the growth per call."""
        assert self.peers is not None
        try:
            self.held_calls(gw, entry)
        finally:
            self.peers.command(60, cmd="close")

    def held_calls(self, gw: Gateway, entry: dict[str, Any]) -> None:
        s, metrics = self.settings, entry["metrics"]
        daemon = gw.daemon_pid
        if daemon is not None:
            time.sleep(SETTLE)
            metrics["rss_idle_kib"] = rss_kib(daemon)
        first = self.open_batch(gw, s.calls_small)
        metrics["setups_per_s"] = first["ok"] / first["seconds"] if first["seconds"] else 0.0
        batches = [first]
        if daemon is not None:
            metrics["rss_small_kib"] = metrics["rss_large_kib"] = first["rss_kib"]
            if s.calls_large > s.calls_small:
                from fixup.bench.profile import DaemonSampler

                slow = metrics["setups_per_s"] < report.MIN_SETUPS_PER_S
                wanted = s.profile == "always" or (s.profile == "auto" and slow)
                with DaemonSampler(daemon, self.workdir, "setups", enabled=wanted) as sampler:
                    batches.append(self.open_batch(gw, s.calls_large - s.calls_small))
                metrics["rss_large_kib"] = batches[-1]["rss_kib"]
                found = sampler.result()
                if found is not None:
                    self.results["profile"][gw.key]["setups"] = found
                    self.progress(f"{report.SCENARIOS[gw.key]}: call setup, {found['summary']}")
            held = batches[-1]["held"]
            if held:
                metrics["bytes_per_call"] = (metrics["rss_large_kib"] - metrics["rss_idle_kib"]) * 1024 / held
        elif s.calls_large > s.calls_small:  # (a), (b): the same calls held for the GRE figure below
            batches.append(self.open_batch(gw, s.calls_large - s.calls_small))
        entry["details"]["setups"] = batches
        self.programming_time(gw, entry)
        self.measure_held_gre(gw, entry)

    def programming_time(self, gw: Gateway, entry: dict[str, Any]) -> None:
        """The daemon's own mean time to write a call's translations into its data plane ((c):
        the nftables maps, one nft transaction per packet's events; (e): the eBPF maps, before
        the nftables maps behind them)."""
        if gw.lab is None:
            return
        counters = (gw.lab.try_snapshot() or {}).get("counters", {})
        programmed = {plane: counters.get(f"program_us_{plane}") for plane in ("nft", "ebpf")}
        entry["details"]["program_us"] = programmed
        own = programmed["ebpf" if gw.key == "ebpf" else "nft"]
        if gw.key in report.PROGRAMMED_SCENARIOS and own is not None:
            entry["metrics"]["program_us"] = float(own)
            extra = f" (the nftables maps behind it: {programmed['nft']} us)" if gw.key == "ebpf" else ""
            self.progress(f"{report.SCENARIOS[gw.key]}: a call's translations written in {own} us{extra}")

    def measure_held_gre(self, gw: Gateway, entry: dict[str, Any]) -> None:
        """Inbound 1400 B GRE of one more call while the batches' calls are all still up."""
        assert self.peers is not None and self.topo is not None
        call = self.peers.command(30, cmd="call", call_id=PPS_CALL_ID)
        if "error" in call:
            raise RuntimeError(f"placing the GRE call with calls held: {call['error']}")
        with gre_sinks(self.topo):
            result = self.blast(gw, call, "in", 1400, held=True)
        entry["metrics"][report.HELD_METRIC] = result.pps
        entry["details"]["gre"]["in_1400_held"] = result.to_dict()

    def open_batch(self, gw: Gateway, count: int) -> dict[str, Any]:
        """``count`` more calls as fast as the peers go; the client's answer, plus the daemon's
        RSS once they are up."""
        assert self.peers is not None
        batch = self.peers.command(60 + count / 50, cmd="open", count=count, concurrency=self.settings.concurrency)
        if "error" in batch:
            raise RuntimeError(f"opening calls: {batch['error']}")
        rate = batch["ok"] / batch["seconds"] if batch["seconds"] else 0.0
        line = f"{report.SCENARIOS[gw.key]}: {batch['ok']:,} calls up in {batch['seconds']:.2f} s ({rate:,.0f}/s)"
        if batch["failed"]:
            line += f", {batch['failed']} failed ({batch['first_error']})"
        if gw.daemon_pid is not None:
            time.sleep(SETTLE)
            batch["rss_kib"] = rss_kib(gw.daemon_pid)
            line += f"; daemon RSS {batch['rss_kib']:,} KiB with {batch['held']:,} calls"
        self.progress(line)
        return batch

    def measure_latency(self, gw: Gateway, entry: dict[str, Any]) -> None:
        assert self.peers is not None
        count = self.settings.latency_samples
        reply = self.peers.command(30 + 3 * count, cmd="latency", count=count, first_call_id=LATENCY_FIRST_CALL_ID)
        entry["details"]["latency"] = reply
        samples = reply.get("samples_ms") or []
        entry["metrics"]["ocrp_to_gre_ms"] = report.median(samples)
        shown = "-"
        if samples:
            shown = f"{report.median(samples):.2f} ms (min {min(samples):.2f}, max {max(samples):.2f})"
        failed = f", {reply.get('failed')} without GRE ({reply.get('first_error')})" if reply.get("failed") else ""
        self.progress(f"{report.SCENARIOS[gw.key]}: OCRP -> first GRE median {shown} over {len(samples)} calls{failed}")

    def measure_gre(self, gw: Gateway, entry: dict[str, Any]) -> None:
        assert self.peers is not None and self.topo is not None
        call = self.peers.command(30, cmd="call", call_id=PPS_CALL_ID)
        if "error" in call:
            raise RuntimeError(f"placing the GRE call: {call['error']}")
        entry["details"]["gre_call"] = call
        pps: dict[str, Any] = {}
        try:
            with gre_sinks(self.topo):
                for payload in report.PAYLOADS:
                    for direction in ("out", "in"):
                        result = self.blast(gw, call, direction, payload)
                        pps[f"{direction}_{payload}"] = result.to_dict()
                        key = report.gre_metric_key(direction, payload)
                        entry["metrics"][key] = result.pps
                        if payload == 64:
                            entry["metrics"][report.cpu_metric_key(direction)] = self.cpu_per_packet(result)
                        if self.generator_limited(result):
                            entry["details"].setdefault("generator_limited", []).append(key)
            if gw.lab is not None:
                snapshot = gw.lab.try_snapshot() or {}
                entry["details"]["daemon_counters"] = {k: snapshot.get(k) for k in ("counters", "drops")}
                entry["details"]["nfqueue"] = nfqueue_stats(self.topo)
        finally:
            entry["details"]["gre"] = pps
            self.peers.command(30, cmd="close")

    def flow(self, gw: Gateway, call: dict[str, Any], direction: str, payload: int) -> Flow:
        """Outbound: client -> server with the server's Call ID.  Inbound: server -> PAT address
        (client address in (a)) with the Call ID the server saw (RFC 2637 section 4.1)."""
        topo = self.topo
        assert topo is not None
        client_ns, client_ip = topo.clients[0], topo.client_address(0)
        if direction == "out":
            frame = gre_frame(dst_mac=parse_mac(mac_address(topo.gateway, INSIDE_BRIDGE)),
                              src_mac=parse_mac(mac_address(client_ns, CLIENT_INTERFACE)),
                              src=IPv4Address(client_ip), dst=IPv4Address(SERVER_ADDRESS),
                              call_id=int(call["server_call_id"]), payload_length=payload)
            ends = (client_ns, CLIENT_INTERFACE, topo.server, SERVER_INTERFACE)
        else:
            frame = gre_frame(dst_mac=parse_mac(mac_address(topo.gateway, OUTSIDE_INTERFACE)),
                              src_mac=parse_mac(mac_address(topo.server, SERVER_INTERFACE)),
                              src=IPv4Address(SERVER_ADDRESS), dst=IPv4Address(gw.inbound_destination),
                              call_id=int(call["seen_call_id"]), payload_length=payload)
            ends = (topo.server, SERVER_INTERFACE, client_ns, CLIENT_INTERFACE)
        name = f"{gw.key}-{direction}-{payload}"
        return Flow(name, *ends, trafgen_config(frame, f"fixup bench {name}"), len(frame))

    def blast(self, gw: Gateway, call: dict[str, Any], direction: str, payload: int, held: bool = False) -> PpsResult:
        """Packets/s delivered when offered as fast as possible, best of ``repeats`` runs (other
        load on the machine only ever lowers a figure).  When more than SEARCH_ABOVE of the
        offered frames is lost (the gateway collapses under overload): the highest offered rate
        it forwards with at most LOSS_LIMIT loss, measured again the same way."""
        s = self.settings
        flow = self.flow(gw, call, direction, payload)
        first = measure(flow, seconds=s.seconds, warmup=s.warmup, workdir=self.workdir)
        word = f"GRE {'outbound' if direction == 'out' else 'inbound'} {payload} B" + (", calls held" if held else "")
        if first.loss > SEARCH_ABOVE and not first.error:
            self.progress(f"{report.SCENARIOS[gw.key]}: {word}: {first.pps:,.0f} pkt/s delivered of "
                          f"{first.offered_pps:,.0f} offered; searching the highest rate with <= "
                          f"{LOSS_LIMIT:.0%} loss")
            result = self.search(flow, first)
        else:
            result = self.best_of(flow, None, first)
        note = self.cpu_note(result)
        if gw.daemon_pid is None and self.foreign_load(result):
            note += " - other processes ran on the router CPU, this figure is low"
            self.results["scenarios"][gw.key]["details"].setdefault("foreign_load", []).append(f"{direction}_{payload}")
        self.progress(f"{report.SCENARIOS[gw.key]}: {word}: {result.pps:,.0f} pkt/s{note}"
                      + (f" [{result.error}]" if result.error else ""))
        return result

    def foreign_load(self, result: PpsResult) -> bool:
        """User time on the router CPU where nothing of ours runs in user space."""
        router = result.cpu.get(f"cpu{self.router_cpu}") if self.router_cpu is not None else None
        return router is not None and router["user"] + router["nice"] >= FOREIGN_USER_LIMIT

    def best_of(self, flow: Flow, pps: int | None, first: PpsResult | None = None) -> PpsResult:
        """``repeats`` measurements (counting ``first``); the one that delivered most, with every
        run's figure in ``runs``."""
        s = self.settings
        results = [first] if first is not None else []
        while len(results) < max(1, s.repeats):
            results.append(measure(flow, seconds=s.seconds, warmup=s.warmup, pps=pps, workdir=self.workdir))
        best = max(results, key=lambda r: r.pps)
        best.runs = [round(r.pps) for r in results]
        return best

    def search(self, flow: Flow, overload: PpsResult) -> PpsResult:
        s = self.settings
        trials: list[dict[str, float]] = []

        def lossy(rate: int) -> bool:
            loss, achieved = trial(flow, rate_pps=rate, seconds=s.trial_seconds, workdir=self.workdir)
            trials.append({"requested": rate, "offered": round(achieved), "loss": round(loss, 4)})
            return loss > LOSS_LIMIT

        ceiling = max(SEARCH_START, int(overload.offered_pps))
        best = search_rate(lossy, start=SEARCH_START, ceiling=ceiling, steps=s.search_steps)
        if best == 0:
            overload.trials = trials
            overload.error = f"no rate down to 1,000 pkt/s with <= {LOSS_LIMIT:.0%} loss"
            return overload
        result = self.best_of(flow, best)
        result.overload_pps, result.trials = overload.pps, trials
        return result

    def cpu_per_packet(self, result: PpsResult) -> float | None:
        """Nanoseconds of the router CPU per packet forwarded (busy share / packets per second):
        what a path costs even when the generator, not the router, set the rate."""
        router = result.cpu.get(f"cpu{self.router_cpu}") if self.router_cpu is not None else None
        if router is None or not result.pps:
            return None
        return (100.0 - router["idle"]) / 100.0 / result.pps * 1e9

    def generator_limited(self, result: PpsResult) -> bool:
        """Full speed, nothing lost and the router CPU still idle: the generator was the limit."""
        router = result.cpu.get(f"cpu{self.router_cpu}") if self.router_cpu is not None else None
        return (result.paced_pps is None and router is not None and result.loss < SEARCH_ABOVE
                and router["idle"] >= ROUTER_IDLE_LIMIT)

    def cpu_note(self, result: PpsResult) -> str:
        router = result.cpu.get(f"cpu{self.router_cpu}") if self.router_cpu is not None else None
        offered = f"offered {result.offered_pps:,.0f}"
        if router is None:
            return f" ({offered})"
        return (f" ({offered}; router CPU: softirq {router['softirq']:.0f}%, user {router['user']:.0f}%, "
                f"system {router['system']:.0f}%, idle {router['idle']:.0f}%)")

    # -- where the time goes -----------------------------------------------------------------

    def should_profile(self, key: str) -> bool:
        """``auto``: when the path misses its packet-rate target for outbound 64 B."""
        if key not in report.PPS_TARGETS or self.settings.profile == "never":
            return False
        if self.settings.profile == "always":
            return True
        measured = report.ratio(self.results, key, report.gre_metric_key("out", 64), report.BASELINE_HELPER)
        return measured is not None and measured < report.PPS_TARGETS[key]

    def profile(self, gw: Gateway) -> None:
        """Outbound 64 B once more, at the pacing its measurement settled on, with the router
        CPU sampled by perf and (queue path) the daemon by py-spy."""
        from fixup.bench.profile import profile_gateway

        assert self.peers is not None and self.topo is not None
        s = self.settings
        measured = self.results["scenarios"][gw.key]["details"].get("gre", {}).get("out_64", {})
        pps = measured.get("paced_pps")
        call = self.peers.command(30, cmd="call", call_id=PPS_CALL_ID)
        flow = self.flow(gw, call, "out", 64)
        label = report.SCENARIOS[gw.key]
        try:
            self.progress(f"{label}: profiling GRE outbound 64 B "
                          f"({'full speed' if pps is None else f'paced at {pps:,} pkt/s'})")
            with gre_sinks(self.topo):
                found = profile_gateway(
                    gw.daemon_pid if gw.key == "queue" else None,  # the kernel path's daemon idles
                    lambda: measure(flow, seconds=s.seconds, warmup=s.warmup, pps=pps, workdir=self.workdir),
                    self.workdir, s.warmup + s.seconds, self.router_cpu)
            self.results["profile"][gw.key]["gre"] = found
            self.progress(f"{label}: where the time goes: {found['summary']}")
        finally:
            self.peers.command(30, cmd="close")


def have_tools() -> list[str]:
    """Missing programs the benchmark needs (empty when all are there)."""
    return [tool for tool in ("ip", "nft", "trafgen", "iptables-nft") if shutil.which(tool) is None]
