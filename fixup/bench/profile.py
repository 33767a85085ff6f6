"""Where a fixup GRE path's time goes: sample the router CPU (and the daemon) under load.

``perf record -C ROUTER_CPU`` samples everything running on the router CPU -- the kernel's
packet path (softirq), the daemon's system calls and its Python -- and ``perf report`` names the
hottest symbols.  For the queue path py-spy (``pip install py-spy``) also samples the daemon's
Python stacks without stopping it (``--nonblocking``).  :mod:`fixup.bench.report` turns both
into one line.  Whatever tool is missing is left out; the router CPU's user / system / softirq
split from the same run is always there.  An I/O tool.
"""
from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from fixup.bench import report
from fixup.bench.traffic import PpsResult

SAMPLE_RATE = 250
TOP = 8
# label -> substring of a Python function name; a sample counts for every bucket on its stack
PYTHON_BUCKETS = {
    "NFQUEUE callback (payload copy, verdict, tracker)": "_decide",
    "of which tracker.handle_packet": "handle_packet",
    "blocked in epoll or preempted by softirq": "select",
}


def py_spy() -> str | None:
    """py-spy next to this Python (the venv) or on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "py-spy")
    if os.access(beside, os.X_OK):
        return beside
    return shutil.which("py-spy")


def cpu_line(result: PpsResult, router_cpu: int | None) -> str:
    split = result.cpu.get(f"cpu{router_cpu}") if router_cpu is not None else None
    if not split:
        return ""
    return (f"router CPU: softirq {split['softirq'] + split['irq']:.0f}%, system {split['system']:.0f}%, "
            f"user {split['user'] + split['nice']:.0f}%, idle {split['idle'] + split['iowait']:.0f}%")


class Sampler:
    """A profiler process started before the load and collected after it."""

    def __init__(self, name: str, argv: list[str], output: str) -> None:
        self.name = name
        self.output = output
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def finish(self, timeout: float) -> str:
        """Wait for the sampler; its stderr tail (empty when all went well)."""
        try:
            _, errors = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, errors = self.proc.communicate()
        return "" if self.proc.returncode == 0 else (errors or "").strip()[-200:]


def start_samplers(pid: int | None, router_cpu: int | None, seconds: int, workdir: str) -> list[Sampler]:
    samplers = []
    perf = shutil.which("perf")
    if perf is not None and router_cpu is not None:
        output = os.path.join(workdir, f"perf-{pid or 'kernel'}.data")
        samplers.append(Sampler("perf", [perf, "record", "-q", "-o", output, "-C", str(router_cpu), "--",
                                         "sleep", str(seconds)], output))
    spy = py_spy()
    if spy is not None and pid is not None:
        output = os.path.join(workdir, f"py-spy-{pid}.txt")
        samplers.append(Sampler("py-spy", [spy, "record", "--pid", str(pid), "--duration", str(seconds),
                                           "--rate", str(SAMPLE_RATE), "--format", "raw", "--output", output,
                                           "--nonblocking", "--idle"], output))
    return samplers


def profile_gateway(pid: int | None, load: Callable[[], PpsResult], workdir: str, duration: float,
                    router_cpu: int | None) -> dict[str, Any]:
    """Run ``load`` while the samplers watch the router CPU (and ``pid``, the daemon): one
    profile entry of the result document."""
    samplers = start_samplers(pid, router_cpu, math.ceil(duration), workdir)
    result = load()
    found: dict[str, Any] = {"tools": [s.name for s in samplers], "pps": result.pps, "cpu": result.cpu,
                             "kernel_top": [], "python_top": []}
    parts = [cpu_line(result, router_cpu)]
    for sampler in samplers:
        problem = sampler.finish(duration + 30)
        if sampler.name == "perf":
            listing = _run(["perf", "report", "-i", sampler.output, "--stdio", "--sort", "sym", "-q",
                            "--percent-limit", "0.5"])
            top = report.parse_perf_report(listing)[:TOP]
            found["kernel_top"] = [[name, share] for name, share in top]
            if top:
                parts.append("router CPU hottest: " + ", ".join(f"{name} {share:.0f}%" for name, share in top[:5]))
        else:
            stacks = report.parse_collapsed(_read(sampler.output))
            found["python_top"] = [[name, round(share, 1)] for name, share in report.self_time(stacks, TOP)]
            if stacks:
                parts.append("daemon: " + report.profile_summary(stacks, PYTHON_BUCKETS))
        if problem:
            parts.append(f"{sampler.name}: {problem}")
    if not samplers:
        parts.append("install perf (linux-perf) and py-spy for a per-function profile")
    found["summary"] = "; ".join(part for part in parts if part)
    return found


class DaemonSampler:
    """py-spy on the daemon from ``with`` entry to exit (e.g. while thousands of calls are set
    up); :meth:`result` names its hottest Python functions."""

    def __init__(self, pid: int, workdir: str, name: str, *, enabled: bool = True) -> None:
        self.pid = pid
        self.enabled = enabled
        self.output = os.path.join(workdir, f"py-spy-{name}-{pid}.txt")
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> DaemonSampler:
        spy = py_spy() if self.enabled else None
        if spy is not None:
            self.proc = subprocess.Popen([spy, "record", "--pid", str(self.pid), "--rate", str(SAMPLE_RATE),
                                          "--format", "raw", "--output", self.output, "--nonblocking"],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)  # py-spy writes its samples when interrupted
        try:
            self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()

    def result(self) -> dict[str, Any] | None:
        if self.proc is None:
            return None
        stacks = report.parse_collapsed(_read(self.output))
        if not stacks:
            return None
        top = report.self_time(stacks, TOP)
        return {"tools": ["py-spy"], "python_top": [[name, round(share, 1)] for name, share in top],
                "summary": "daemon busiest in: " + ", ".join(f"{name} {share:.0f}%" for name, share in top[:5])}


def _run(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""
