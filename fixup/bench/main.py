"""``fixup bench``: the four gateways of issue 3 measured in one run, as a table and JSON.

(a) plain routing, (b) the kernel PPTP helper, (c) fixup's kernel GRE path, (d) fixup's queue
GRE path: GRE packets/s both ways with 64 and 1400-byte payloads (trafgen), call setups/s,
the daemon's memory with many calls, and OCRP -> first GRE.  Progress lines while it runs,
then the table with ratios to (b) and (a) and the targets; ``--json FILE`` writes everything.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from fixup.bench import report
from fixup.bench.scenarios import BENCH_PREFIX, Bench, Settings, have_tools
from fixup.bench.traffic import GENERATOR_CPU, trafgen_version

BUSY_LOADAVG = 0.5
LETTERS = {"a": "plain", "b": "helper", "c": "kernel", "d": "queue", "e": "ebpf"}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def loadavg() -> str | None:
    try:
        with open("/proc/loadavg", encoding="ascii") as handle:
            return " ".join(handle.read().split()[:3])
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    nproc = os.cpu_count() or 1
    return {
        "nproc": nproc,
        "kernel": platform.release(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "trafgen": trafgen_version(),
        "generator_cpu": GENERATOR_CPU,
        "router_cpu": 1 if nproc >= 2 else None,
        "rps": None,
        "loadavg_start": loadavg(),
        "loadavg_end": None,
    }


def parse_scenarios(text: str) -> tuple[str, ...]:
    """``"a,b,d"`` (letters or names) -> scenario keys in table order."""
    chosen = set()
    for word in text.split(","):
        word = word.strip().lower()
        key = LETTERS.get(word, word)
        if key not in report.SCENARIOS:
            raise argparse.ArgumentTypeError(f"unknown scenario {word!r}: use a, b, c, d, e")
        chosen.add(key)
    return tuple(key for key in report.SCENARIOS if key in chosen)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fixup bench",
        description="Measure plain routing (a), the kernel PPTP helper (b), fixup's kernel (c), queue (d) "
                    "and eBPF (e) GRE paths in network namespaces: GRE packets/s (also with thousands of calls "
                    "held), call setups/s, daemon memory, OCRP -> first GRE, time to program a call.  Needs root "
                    "and trafgen (netsniff-ng).")
    parser.add_argument("--quick", action="store_true", help="tiny run: 1 s per rate, 100 calls (smoke test)")
    parser.add_argument("--json", metavar="FILE", help="write every number (and the machine) as JSON")
    parser.add_argument("--markdown", metavar="FILE", help="write the table as Markdown")
    parser.add_argument("--scenarios", type=parse_scenarios, default=None, metavar="LIST",
                        help="which of a,b,c,d,e to run (default all)")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per packet-rate measurement")
    parser.add_argument("--calls", type=int, default=None, metavar="N", help="calls held up for the memory figure")
    parser.add_argument("--profile", choices=["auto", "always", "never"], default=None,
                        help="profile fixup's GRE paths with perf and py-spy (auto: a path that misses "
                             "its packet-rate target)")
    parser.add_argument("--prefix", default=BENCH_PREFIX, help=f"namespace prefix (default {BENCH_PREFIX})")
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {"prefix": args.prefix}
    if args.scenarios:
        overrides["scenarios"] = args.scenarios
    if args.seconds is not None:
        overrides["seconds"] = args.seconds
    if args.profile is not None:
        overrides["profile"] = args.profile
    settings = Settings.quick(**overrides) if args.quick else Settings(**overrides)
    if args.calls is not None:
        settings = replace(settings, calls_large=args.calls, calls_small=min(settings.calls_small, args.calls))
    return settings


class Clock:
    """Progress lines prefixed with the seconds since the start."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def __call__(self, text: str) -> None:
        print(f"[{time.monotonic() - self.start:6.1f} s] {text}", flush=True)


def write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    settings = settings_from(args)
    clock = Clock()
    results = report.new_results(command=" ".join(["fixup", "bench", *argv]), quick=args.quick,
                                 started=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                 machine=machine_info(), parameters=settings.parameters(),
                                 scenarios=settings.scenarios)
    status = 0
    load = results["machine"]["loadavg_start"]
    if load and float(load.split()[0]) > BUSY_LOADAVG:
        clock(f"warning: load average {load} - other work on this machine lowers every figure")
    try:
        Bench(settings, results, clock).run()
    except KeyboardInterrupt:
        clock("interrupted; namespaces removed")
        status = 130
    except (RuntimeError, OSError, subprocess.SubprocessError) as err:
        clock(f"FAILED: {err}")
        status = 1
    results["duration_s"] = round(time.monotonic() - clock.start, 1)
    results["machine"]["loadavg_end"] = loadavg()
    results["targets"] = report.evaluate(results)
    print()
    print(report.format_table(results), end="")
    print(report.format_summary(results))
    for key, profiles in results["profile"].items():
        for what, found in profiles.items():
            if found:
                print(f"{report.SCENARIOS[key]}, where the time goes ({what}): {found['summary']}")
    if args.json:
        write(args.json, json.dumps(results, indent=2, sort_keys=True, default=str) + "\n")
        print(f"JSON written to {args.json}")
    if args.markdown:
        write(args.markdown, report.format_markdown(results))
    return status


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if os.geteuid() != 0:
        print("fixup bench: needs root (network namespaces, netfilter, trafgen)", file=sys.stderr)
        return 1
    missing = have_tools()
    if missing:
        print(f"fixup bench: missing {', '.join(missing)} (make setup installs them; trafgen is in netsniff-ng)",
              file=sys.stderr)
        return 1
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        return run(args, argv)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _sigterm_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
