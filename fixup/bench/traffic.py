"""GRE at C speed through the gateway: trafgen in one namespace, packets counted in another.

An I/O tool (runs ``trafgen`` and ``ip`` as root).  One measurement: write the frame as a
trafgen config, start ``trafgen -P 1`` on the sender's veth (its single worker is pinned to
CPU 0 by trafgen itself), wait out a warm-up, then read the *receiver's* interface counter
(``rx_packets``: frames the gateway delivered onto the receiver's link) and the per-CPU time
split from ``/proc/stat`` twice, ``seconds`` apart.

trafgen runs its slow path: one blocking ``sendto`` per frame.  Its TX ring would fail with
EAGAIN as soon as the gateway, on another CPU, holds more frames than the socket's send buffer
(trafgen only avoids that by raising global socket-memory sysctls, which this tool never
touches).  Two pacings:

* *full speed* (``pps`` None): ``--rate`` far above what anything forwards, qdisc bypassed;
  the blocking send waits whenever the gateway's input backlog is full, so the generator
  offers as much as the gateway takes in.
* *paced* (``pps`` N): a token-bucket qdisc (``tc ... tbf``, bursts of 32 frames) on the
  sender's link at N frames/s, and trafgen through the qdisc (``-q``); a full qdisc blocks the
  sender.  trafgen's own ``--rate`` is not used for that: it sends each second's frames as one
  burst, which no queue of 4096 packets absorbs; its ``--gap`` cannot pace faster than about
  50,000 frames/s.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

TRAFGEN = "trafgen"
FULL_SPEED_RATE = "5000000pps"
TBF_BURST_FRAMES = 32
TBF_LIMIT_FRAMES = 256
GENERATOR_CPU = 0  # trafgen -P 1 pins its one worker to CPU 0
CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


@dataclass(frozen=True, slots=True)
class Flow:
    """Frames sent by ``sender_ns``/``sender_dev``, counted on ``receiver_ns``/``receiver_dev``."""

    name: str
    sender_ns: str
    sender_dev: str
    receiver_ns: str
    receiver_dev: str
    config: str  # trafgen packet configuration text
    frame_length: int  # bytes on the link per frame (what the token bucket counts)


@dataclass(slots=True)
class PpsResult:
    """Delivered packets per second and where the CPUs spent that time (percent per CPU)."""

    pps: float
    packets: int
    seconds: float
    offered_pps: float = 0.0
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)
    error: str | None = None
    paced_pps: int | None = None  # None: full speed
    overload_pps: float | None = None  # delivered when offered as fast as possible (if searched)
    trials: list[dict[str, float]] = field(default_factory=list)
    runs: list[int] = field(default_factory=list)  # every repeat's pps (this result is the best)

    @property
    def loss(self) -> float:
        """Share of the offered frames that did not arrive (0 when nothing was offered)."""
        return max(0.0, 1.0 - self.pps / self.offered_pps) if self.offered_pps else 0.0

    def to_dict(self) -> dict[str, object]:
        return {"pps": self.pps, "packets": self.packets, "seconds": self.seconds, "offered_pps": self.offered_pps,
                "loss": round(self.loss, 4), "paced_pps": self.paced_pps, "overload_pps": self.overload_pps,
                "trials": self.trials, "runs": self.runs, "cpu": self.cpu, "error": self.error}


def run(argv: Sequence[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)


def trafgen_version() -> str | None:
    """``trafgen 0.6.8, ...`` first line, None when trafgen is not installed."""
    if shutil.which(TRAFGEN) is None:
        return None
    out = run([TRAFGEN, "-v"]).stdout.strip().splitlines()
    return out[0] if out else "trafgen"


def link(ns: str, dev: str, *, stats: bool = False) -> dict[str, object]:
    """``ip -j link show`` of ``dev`` in ``ns`` (with ``-s``: statistics)."""
    argv = ["ip", "-n", ns, "-j", *(["-s"] if stats else []), "link", "show", "dev", dev]
    done = run(argv)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return json.loads(done.stdout)[0]


def mac_address(ns: str, dev: str) -> str:
    return str(link(ns, dev)["address"])


def packets(ns: str, dev: str, direction: str = "rx") -> int:
    """The ``rx`` or ``tx`` packet counter of ``dev`` in ``ns``."""
    stats = link(ns, dev, stats=True)["stats64"]
    assert isinstance(stats, dict)
    return int(stats[direction]["packets"])


def set_rps(ns: str, dev: str, cpus: set[int]) -> bool:
    """Steer receive processing of ``dev`` to ``cpus`` (Receive Packet Steering); False if the
    kernel has no RPS.  Written through ``ip netns exec`` so /sys is the namespace's."""
    mask = format(sum(1 << cpu for cpu in cpus), "x")
    path = f"/sys/class/net/{dev}/queues/rx-0/rps_cpus"
    done = run(["ip", "netns", "exec", ns, "sh", "-c", f"echo {mask} > {path}"])
    return done.returncode == 0


def cpu_times() -> dict[str, list[int]]:
    """Per-CPU jiffies from /proc/stat (host-wide: CPUs are not namespaced)."""
    times: dict[str, list[int]] = {}
    with open("/proc/stat", encoding="ascii") as handle:
        for line in handle:
            name, *values = line.split()
            if name.startswith("cpu") and name != "cpu":
                times[name] = [int(v) for v in values[:len(CPU_FIELDS)]]
    return times


def cpu_split(before: dict[str, list[int]], after: dict[str, list[int]]) -> dict[str, dict[str, float]]:
    """Percent of each CPU's time per /proc/stat field between two samples (pure)."""
    split: dict[str, dict[str, float]] = {}
    for name, start in before.items():
        end = after.get(name)
        if end is None:
            continue
        deltas = [b - a for a, b in zip(start, end)]
        total = sum(deltas) or 1
        split[name] = {key: round(100.0 * d / total, 1) for key, d in zip(CPU_FIELDS, deltas)}
    return split


def pacing_qdisc(flow: Flow, pps: int) -> list[str]:
    """``tc`` arguments for a token bucket passing ``pps`` frames of ``flow`` per second."""
    bits = pps * flow.frame_length * 8
    return ["tc", "-n", flow.sender_ns, "qdisc", "replace", "dev", flow.sender_dev, "root", "tbf",
            "rate", f"{bits}bit", "burst", str(flow.frame_length * TBF_BURST_FRAMES),
            "limit", str(flow.frame_length * TBF_LIMIT_FRAMES)]


class Trafgen:
    """One trafgen process in its own session, so stopping it also stops its forked worker;
    ``pps`` paces it through a token bucket on the sender's link (removed on stop)."""

    def __init__(self, flow: Flow, workdir: str, pps: int | None = None) -> None:
        self.flow = flow
        self.pps = pps
        fd, self.config_path = tempfile.mkstemp(prefix=f"{flow.name}-", suffix=".cfg", dir=workdir)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(flow.config)
        self.log_path = self.config_path[:-4] + ".log"
        self.argv = ["ip", "netns", "exec", flow.sender_ns, TRAFGEN, "--dev", flow.sender_dev,
                     "--conf", self.config_path, "--cpus", "1", "--rate", FULL_SPEED_RATE,
                     "--no-sock-mem", "--notouch-irq", "--no-cpu-stats", *(["--qdisc-path"] if pps else [])]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.pps:
            done = run(pacing_qdisc(self.flow, self.pps))
            if done.returncode != 0:
                raise RuntimeError(f"tc tbf on {self.flow.sender_dev}: {done.stderr.strip()}")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as handle:
                return handle.read()[-400:]
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGINT the whole session (trafgen's parent and worker), SIGKILL if it lingers; then
        remove the token bucket."""
        if self.proc is not None:
            for sig in (signal.SIGINT, signal.SIGKILL):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                deadline = time.monotonic() + 3.0
                while time.monotonic() < deadline and _group_alive(self.proc.pid):
                    self.proc.poll()
                    time.sleep(0.05)
                if not _group_alive(self.proc.pid):
                    break
            self.proc.poll()
        if self.pps:
            run(["tc", "-n", self.flow.sender_ns, "qdisc", "del", "dev", self.flow.sender_dev, "root"])


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def measure(flow: Flow, *, seconds: float, warmup: float, workdir: str, pps: int | None = None) -> PpsResult:
    """Send ``flow`` (full speed, or paced at ``pps``) and count what arrives; the generator is
    stopped in every case."""
    gen = Trafgen(flow, workdir, pps)
    gen.start()
    try:
        time.sleep(warmup)
        if not gen.running():
            return PpsResult(0.0, 0, 0.0, error=f"trafgen exited: {gen.output().strip()}",
                             paced_pps=pps)
        first = _sample(flow)
        time.sleep(seconds)
        last = _sample(flow)
        alive = gen.running()
    finally:
        gen.stop()
    elapsed = last.at - first.at
    result = PpsResult((last.received - first.received) / elapsed, last.received - first.received, elapsed,
                       offered_pps=(last.sent - first.sent) / elapsed, cpu=cpu_split(first.cpu, last.cpu),
                       paced_pps=pps)
    if not alive:
        result.error = f"trafgen stopped early: {gen.output().strip()}"
    return result


def trial(flow: Flow, *, rate_pps: int, seconds: float, workdir: str) -> tuple[float, float]:
    """Send paced at ``rate_pps`` for ``seconds``; (share lost, frames/s achieved).
    Both counters are read while nothing is sent, so they need not be read at the same time."""
    before_sent = packets(flow.sender_ns, flow.sender_dev, "tx")
    before_received = packets(flow.receiver_ns, flow.receiver_dev)
    gen = Trafgen(flow, workdir, rate_pps)
    gen.start()
    started = time.monotonic()
    try:
        time.sleep(seconds)
    finally:
        gen.stop()
    elapsed = time.monotonic() - started
    time.sleep(0.05)  # frames still on their way
    sent = packets(flow.sender_ns, flow.sender_dev, "tx") - before_sent
    received = packets(flow.receiver_ns, flow.receiver_dev) - before_received
    if sent <= 0:
        return 1.0, 0.0
    return max(0.0, 1.0 - received / sent), sent / elapsed


def search_rate(lossy: Callable[[int], bool], *, start: int, ceiling: int, steps: int, floor: int = 1000) -> int:
    """The highest rate (packets/s) that ``lossy`` accepts, 0 if none down to ``floor``.

    From ``start``, double while accepted (up to ``ceiling``) or halve while rejected, then
    ``steps`` geometric bisections between the best accepted and the lowest rejected rate.
    Pure: ``lossy`` does the measuring."""
    rate = max(1, min(start, ceiling))
    if lossy(rate):
        good, bad = 0, rate
        while rate // 2 >= floor:
            rate //= 2
            if not lossy(rate):
                good = rate
                break
            bad = rate
        if good == 0:
            return 0
    else:
        good, bad = rate, 0
        while rate < ceiling:
            rate = min(rate * 2, ceiling)
            if lossy(rate):
                bad = rate
                break
            good = rate
        if bad == 0:
            return good
    for _ in range(steps):
        middle = int((good * bad) ** 0.5)
        if middle <= good or middle >= bad:
            break
        if lossy(middle):
            bad = middle
        else:
            good = middle
    return good


@dataclass(frozen=True, slots=True)
class _Sample:
    received: int
    sent: int
    cpu: dict[str, list[int]]
    at: float


def _sample(flow: Flow) -> _Sample:
    """Both counters, CPU times and the time in between (each ``ip`` call takes a few ms)."""
    before = time.monotonic()
    received = packets(flow.receiver_ns, flow.receiver_dev)
    after = time.monotonic()
    sent = packets(flow.sender_ns, flow.sender_dev, "tx")
    return _Sample(received, sent, cpu_times(), (before + after) / 2)
