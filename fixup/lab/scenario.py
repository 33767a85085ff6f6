"""``fixup lab``: the whole PAT scenario in network namespaces, end to end.

Builds the :mod:`fixup.lab.topology` namespaces, runs ``fixup run`` in the gateway namespace,
the lab PPTP server (:mod:`fixup.lab.peers_server`) behind it and every client with Call ID 0
at once (RFC 2637 section 2.7: real PNSes start at 0, so all of them collide), shows the
translation table, clears the calls (CCRQ/CDN, StopCCRQ/StopCCRP), stops the daemon and checks
it removed its rules.  Exit status 0 only when all of that worked.

:class:`Lab` is the reusable part (the netns tests drive the gateway through it).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from fixup.lab.topology import INSIDE_BRIDGE, OUTSIDE_INTERFACE, PAT_ADDRESS, SERVER_ADDRESS, Topology

PEERS = [sys.executable, "-m", "fixup.lab.peers"]
FIXUP = [sys.executable, "-m", "fixup.cli"]
LAB_PREFIX = "fxl-"
DAEMON_START_TIMEOUT = 20.0
PEER_TIMEOUT = 20.0


class JsonLines:
    """A subprocess whose stdout is read on a thread: every line kept, JSON lines parsed."""

    def __init__(self, proc: subprocess.Popen[str], name: str) -> None:
        self.proc = proc
        self.name = name
        self.lines: list[str] = []
        self.objects: list[dict[str, Any]] = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, name=f"read-{name}", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                try:
                    obj = json.loads(line)
                except ValueError:
                    obj = None
                if isinstance(obj, dict):
                    self.objects.append(obj)
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any] | None:
        """The first JSON line matching ``predicate`` (waiting up to ``timeout`` s), else None."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for obj in self.objects:
                    if predicate(obj):
                        return obj
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (not self.reader.is_alive() and self.proc.poll() is not None):
                    return None
                self.changed.wait(min(remaining, 0.2))

    def matching(self, predicate: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        with self.changed:
            return [obj for obj in self.objects if predicate(obj)]

    def finish(self, timeout: float = PEER_TIMEOUT) -> int:
        """Wait for the process to exit (killing it after ``timeout`` s); return its status."""
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            status = self.proc.wait(5)
        self.reader.join(5)
        return status

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM, then wait (SIGKILL after ``timeout`` s)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.finish(timeout)

    def stderr(self) -> str:
        if self.proc.stderr is None or self.proc.poll() is None:
            return ""
        return self.proc.stderr.read()


def is_result(obj: dict[str, Any]) -> bool:
    """A client's final JSON line."""
    return "ok" in obj and "calls" in obj


class Lab:
    """The gateway daemon, the server and the clients of one :class:`Topology`."""

    def __init__(self, topology: Topology, workdir: str, *, clearing_timeout: float = 2.0,
                 gre: str = "ebpf", log_level: str = "debug") -> None:
        self.topology = topology
        self.gre = gre
        self.log_level = log_level
        self.workdir = workdir
        self.socket_path = os.path.join(workdir, "fixup.sock")
        self.policy_path = os.path.join(workdir, "policy.yaml")
        self.daemon_log_path = os.path.join(workdir, "daemon.log")
        self.state_dir = os.path.join(workdir, "state")
        self.bpf_dir = f"/sys/fs/bpf/{os.path.basename(workdir.rstrip('/'))}"  # its own pins (gre: ebpf)
        self.clearing_timeout = clearing_timeout
        self.daemon: subprocess.Popen[str] | None = None
        self.server: JsonLines | None = None
        self.stopped: tuple[int | None, list[str]] = (None, [])  # set by serving()

    # -- policy and daemon ------------------------------------------------------------

    def policy_text(self) -> str:
        return (
            f"# fixup lab policy (namespaces {self.topology.prefix}*, gre {self.gre})\n"
            f"inside: [{INSIDE_BRIDGE}]\n"
            f"outside: {OUTSIDE_INTERFACE}\n"
            f"pat_address: {PAT_ADDRESS}\n"
            "fixup:\n"
            "  pptp:\n"
            "    ports: [1723]\n"
            f"    gre: {self.gre}\n"
            "    timeouts:\n"
            f"      clearing: {self.clearing_timeout:g}\n"
            f"{self.limits_text()}"
            "runtime:\n"
            f"  control_socket: {self.socket_path}\n"
            f"  state_dir: {self.state_dir}\n"
            f"  bpf_dir: {self.bpf_dir}\n"
            f"  log_level: {self.log_level}\n"
        )

    def limits_text(self) -> str:
        """``fixup.pptp.limits`` lines of the policy (the defaults here)."""
        return ""

    def write_policy(self) -> str:
        with open(self.policy_path, "w", encoding="utf-8") as handle:
            handle.write(self.policy_text())
        return self.policy_path

    def start_daemon(self, timeout: float = DAEMON_START_TIMEOUT) -> None:
        """``fixup run`` in the gateway namespace; returns once its control socket answers."""
        self.write_policy()
        log = open(self.daemon_log_path, "a", encoding="utf-8")  # noqa: SIM115 - the child keeps it; a restart appends
        self.daemon = self.topology.popen(self.topology.gateway, [*FIXUP, "run", "--policy", self.policy_path],
                                          stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.daemon.poll() is not None:
                raise RuntimeError(f"fixup run exited with {self.daemon.returncode}:\n{self.daemon_log()}")
            if self.try_snapshot() is not None:
                return
            time.sleep(0.1)
        raise RuntimeError(f"fixup run did not answer on {self.socket_path} within {timeout:g} s:\n"
                           f"{self.daemon_log()}")

    def daemon_log(self, tail: int = 40) -> str:
        try:
            with open(self.daemon_log_path, encoding="utf-8", errors="replace") as handle:
                return "".join(handle.readlines()[-tail:])
        except OSError:
            return ""

    def request(self, obj: dict[str, Any]) -> dict[str, Any]:
        from fixup.io.control import request

        return request(self.socket_path, obj)

    def snapshot(self) -> dict[str, Any]:
        return self.request({"cmd": "show-calls"})

    def try_snapshot(self) -> dict[str, Any] | None:
        from fixup.io.control import ControlError

        try:
            return self.snapshot()
        except ControlError:
            return None

    def clear_calls(self) -> int:
        return int(self.request({"cmd": "clear-calls", "conn": None}).get("released", 0))

    def fixup_cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``fixup ARGS --socket PATH`` run in the gateway namespace."""
        return self.topology.exec(self.topology.gateway, [*FIXUP, *args, "--socket", self.socket_path])

    def stop_daemon(self, timeout: float = 15.0, sig: int = signal.SIGINT) -> tuple[int | None, list[str]]:
        """Stop the daemon (SIGINT: stop and remove everything; SIGTERM: stop and keep the calls
        for the next start; SIGKILL: a crash); return its exit status and the fixup rules still
        present."""
        from fixup.io.pat.netfilter import Commands, leftovers

        status: int | None = None
        if self.daemon is not None:
            if self.daemon.poll() is None:
                self.daemon.send_signal(sig)
            try:
                status = self.daemon.wait(timeout)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait(5)
            self.daemon = None
        from fixup.io.pat import permit

        gateway = Commands(("ip", "netns", "exec", self.topology.gateway))
        left = leftovers(gateway) + permit.left(gateway) + self.bpf_left()
        if os.path.exists(self.socket_path):
            left.append(f"control socket {self.socket_path}")
        return status, left

    # -- peers -------------------------------------------------------------------------

    def bpf_left(self) -> list[str]:
        """The eBPF GRE program still attached to a gateway interface (tc ingress)."""
        found = []
        for dev in (INSIDE_BRIDGE, OUTSIDE_INTERFACE):
            shown = self.topology.exec(self.topology.gateway, ["tc", "filter", "show", "dev", dev, "ingress"])
            if "fixup_gre" in shown.stdout:
                found.append(f"tc eBPF filter on {dev}")
        return found

    def peer(self, ns: str, args: Sequence[str], name: str) -> JsonLines:
        proc = self.topology.popen(ns, [*PEERS, *args], stdin=subprocess.PIPE)
        return JsonLines(proc, name)

    def start_server(self, first_call_id: int = 100) -> JsonLines:
        server = self.peer(self.topology.server, ["server", "--listen", SERVER_ADDRESS,
                                                  "--first-call-id", str(first_call_id)], "server")
        if server.wait_for(lambda obj: obj.get("event") == "ready", 10) is None:
            server.stop()
            raise RuntimeError(f"lab server did not start: {server.lines} {server.stderr()}")
        self.server = server
        return server

    def start_client(self, index: int, call_ids: Sequence[int] = (0,), *extra: str) -> JsonLines:
        name = f"c{index}"
        ids = ",".join(str(i) for i in call_ids)
        args = ["client", "--server", SERVER_ADDRESS, "--name", name, "--call-ids", ids, *extra]
        return self.peer(self.topology.clients[index], args, name)

    @contextmanager
    def serving(self) -> Iterator[Lab]:
        """The daemon, then the server, up for the ``with`` block; both stopped after it, with
        the daemon's exit status and the leftovers in :attr:`stopped`."""
        self.start_daemon()
        try:
            self.start_server()
            yield self
        finally:
            self.stopped = self.stop_all()

    def stop_all(self) -> tuple[int | None, list[str]]:
        """Stop the server and the daemon (in that order); the daemon's status and leftovers."""
        if self.server is not None:
            self.server.stop()
            self.server = None
        return self.stop_daemon()


def release(client: JsonLines) -> None:
    """End a ``--hold`` client's wait (it then clears, if asked, and exits)."""
    stdin = client.proc.stdin
    if stdin is not None and not stdin.closed:
        try:
            stdin.close()
        except BrokenPipeError:
            pass


# --- the ``fixup lab`` command ------------------------------------------------------------------


class Steps:
    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0

    def __call__(self, text: str) -> None:
        self.done += 1
        print(f"[{self.done}/{self.total}] {text}", flush=True)


def run_lab(args: argparse.Namespace) -> list[str]:
    """The scenario; returns the problems found (empty = success)."""
    step = Steps(9)
    problems: list[str] = []
    step(f"building namespaces ({args.clients} clients, gateway, server; prefix {args.prefix})")
    with Topology(args.prefix, clients=args.clients) as topo, tempfile.TemporaryDirectory(prefix="fixup-lab-") as work:
        lab = Lab(topo, work)
        clients: list[JsonLines] = []
        try:
            step(f"starting gateway: fixup run --policy {lab.policy_path} (in {topo.gateway})")
            lab.start_daemon()
            step(f"starting PPTP server {SERVER_ADDRESS} (in {topo.server})")
            lab.start_server()
            step(f"running {args.clients} clients at once, all with Call ID 0")
            hold = ["--hold", "--hold-timeout", "3600" if args.keep else "60", "--again", "--clear", "--timeout", "30"]
            clients = [lab.start_client(i, [0], *hold) for i in range(args.clients)]
            problems += wait_holding(clients)
            step("translation table (fixup show calls)")
            problems += show_table(lab, args.clients)
            step("GRE for no call from the server side: no pinhole, dropped and counted")
            problems += probe_pinhole(lab)
            if args.keep:
                keep_up(lab)
            step("restarting the gateway (SIGTERM, as systemctl restart, then fixup run): the calls stay up")
            problems += restart_keeps_calls(lab)
            step("clearing calls after one more Echo and GRE round each (CCRQ/CDN, StopCCRQ/StopCCRP)")
            problems += finish_clients(clients)
        finally:
            for client in clients:
                release(client)
                client.finish(5)
            step("stopping the gateway (SIGINT, as systemctl stop) and checking its rules are gone")
            status, left = lab.stop_all()
            problems += check_stop(status, left, lab)
    problems += [f"namespace {ns} left behind" for ns in list_prefixed(args.prefix)]
    return problems


UNKNOWN_CALL_ID = 0xBEEF  # no call has it: the lab's calls get 0, 256, 512 ...


def probe_pinhole(lab: Lab, count: int = 3) -> list[str]:
    """Send GRE with a Call ID no call has to the PAT address; it must be dropped and counted."""
    before = int(lab.snapshot()["drops"].get("unknown-call", 0))
    done = lab.topology.exec(lab.topology.server, [*PEERS, "gre-inject", "--to", PAT_ADDRESS,
                                                   "--call-id", str(UNKNOWN_CALL_ID), "--count", str(count)])
    if done.returncode != 0:
        return [f"gre-inject failed: {done.stderr.strip()}"]
    deadline = time.monotonic() + 5
    dropped = 0
    while time.monotonic() < deadline:
        dropped = int(lab.snapshot()["drops"].get("unknown-call", 0)) - before
        if dropped >= count:
            break
        time.sleep(0.2)
    print(f"      {count} GRE packets with Call ID 0x{UNKNOWN_CALL_ID:04x} to {PAT_ADDRESS}: "
          f"{dropped} dropped (drops by reason: unknown-call)", flush=True)
    return [] if dropped >= count else [f"only {dropped} of {count} GRE packets of no call were dropped"]


def wait_holding(clients: Sequence[JsonLines]) -> list[str]:
    problems = []
    for client in clients:
        got = client.wait_for(lambda o: o.get("event") == "holding" or is_result(o), PEER_TIMEOUT)
        if got is None or is_result(got):
            problems.append(f"client {client.name}: {got.get('error') if got else 'no answer'}")
        else:
            calls = ", ".join(f"Call ID {c['call_id']} -> server {c['server_call_id']}, "
                              f"{c['gre_echoed']}/{c['gre_sent']} echoes" for c in got["calls"])
            print(f"      {client.name}: {calls}")
    return problems


def show_table(lab: Lab, expected_calls: int) -> list[str]:
    shown = lab.fixup_cli("show", "calls")
    print(shown.stdout.rstrip() or shown.stderr.rstrip())
    snapshot = lab.try_snapshot()
    if shown.returncode != 0 or snapshot is None:
        return ["fixup show calls failed"]
    calls = snapshot.get("calls", [])
    translated = {call.get("translated_id") for call in calls}
    problems = []
    if len(calls) != expected_calls:
        problems.append(f"table shows {len(calls)} calls, expected {expected_calls}")
    if len(translated) != len(calls):
        problems.append(f"translated Call IDs are not distinct: {sorted(map(str, translated))}")
    return problems


def restart_keeps_calls(lab: Lab) -> list[str]:
    """Issue 12: the same translations after a restart (the clients' Echo and GRE after it are
    checked when they finish)."""
    before = {(c["client"], c["translated_id"]) for c in (lab.try_snapshot() or {}).get("calls", [])}
    status, left = lab.stop_daemon(sig=signal.SIGTERM)
    problems = [] if status == 0 and left else [f"SIGTERM: exit {status}, rules kept: {left}"]
    lab.start_daemon()
    resumed = [line.split("fixup: ", 1)[1] for line in lab.daemon_log(20).splitlines() if "fixup: resumed" in line]
    print(f"      {resumed[-1] if resumed else 'nothing resumed'}")
    after = {(c["client"], c["translated_id"]) for c in (lab.try_snapshot() or {}).get("calls", [])}
    if after != before:
        problems.append(f"calls before the restart {sorted(before)}, after {sorted(after)}")
    return problems


def keep_up(lab: Lab) -> None:
    topo = lab.topology
    print(f"      --keep: namespaces {', '.join(topo.namespaces)}")
    print(f"      try: ip netns exec {topo.gateway} {sys.executable} -m fixup.cli show calls --socket {lab.socket_path}")
    print("      press Enter (or Ctrl-C) to clear and tear everything down", flush=True)
    try:
        sys.stdin.readline()
    except KeyboardInterrupt:
        pass


def finish_clients(clients: Sequence[JsonLines]) -> list[str]:
    problems = []
    for client in clients:
        release(client)
    for client in clients:
        status = client.finish(PEER_TIMEOUT)
        result = client.wait_for(is_result, 1)
        if status != 0 or result is None or not result.get("ok"):
            why = result.get("error") if result else "no result line"
            problems.append(f"client {client.name} failed (exit {status}): {why}")
    return problems


def check_stop(status: int | None, left: list[str], lab: Lab) -> list[str]:
    problems = []
    if status != 0:
        problems.append(f"fixup run exited with {status}:\n{lab.daemon_log()}")
    problems += [f"left behind after stop: {item}" for item in left]
    return problems


def list_prefixed(prefix: str) -> list[str]:
    from fixup.lab.topology import list_namespaces

    return [ns for ns in list_namespaces() if ns.startswith(prefix)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fixup lab", description="PPTP PAT scenario in network namespaces")
    parser.add_argument("--clients", type=int, default=2, help="number of PPTP clients (default 2)")
    parser.add_argument("--keep", action="store_true", help="wait for Enter before tearing down")
    parser.add_argument("--prefix", default=LAB_PREFIX, help=f"namespace name prefix (default {LAB_PREFIX})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if os.geteuid() != 0:
        print("fixup lab: needs root (network namespaces, netfilter)", file=sys.stderr)
        return 1
    if not 1 <= args.clients <= 50:
        print("fixup lab: --clients must be 1..50", file=sys.stderr)
        return 1
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        problems = run_lab(args)
    except KeyboardInterrupt:
        print("fixup lab: interrupted, namespaces removed", file=sys.stderr)
        return 130
    except (RuntimeError, OSError, subprocess.SubprocessError) as err:
        print(f"fixup lab: FAILED: {err}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    if problems:
        print("fixup lab: FAILED", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print("fixup lab: OK (every echo arrived, distinct translated Call IDs, GRE of no call dropped, calls kept across a restart, rules and namespaces removed)")
    return 0


def _sigterm_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
