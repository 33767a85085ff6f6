"""``fixup run``: wire the pure tracker to the kernel and serve until SIGINT/SIGTERM.

Order of start: resolve the PAT address, probe netfilter, claim the control socket, bind the
queue, install the rules.  The queue is bound before the rules exist so a second daemon fails
before it touches the first one's rules, and no control segment waits for a missing listener.
Whatever happens after the rules are installed, they are removed in ``finally``.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any

from fixup.errors import SetupError
from fixup.io import netfilter
from fixup.io.control import ControlServer
from fixup.io.nfqueue import QueueShell, interface_directions

if TYPE_CHECKING:
    from fixup.policy import Policy

log = logging.getLogger("fixup")

POLL_INTERVAL = 1.0
IFA_F_SECONDARY = 0x01
EVENT_LEVELS = {"protocol-error": logging.WARNING}


def resolve_pat_address(policy: Policy) -> IPv4Address:
    """The policy's PAT address, else the outside interface's primary IPv4 address (via pyroute2)."""
    if policy.pat_address is not None:
        return IPv4Address(policy.pat_address)
    address = primary_ipv4(policy.outside)
    if address is None:
        raise SetupError(f"outside interface {policy.outside} has no IPv4 address; set pat_address in the policy")
    return address


def primary_ipv4(ifname: str) -> IPv4Address | None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        index = ipr.link_lookup(ifname=ifname)
        if not index:
            raise SetupError(f"outside interface {ifname} does not exist")
        for msg in ipr.get_addr(family=socket.AF_INET, index=index[0]):
            flags = msg.get_attr("IFA_FLAGS")
            flags = msg.get("flags", 0) if flags is None else flags
            address = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
            if address and not flags & IFA_F_SECONDARY:
                return IPv4Address(address)
    return None


def startup_line(policy: Policy, pat: IPv4Address) -> str:
    """The PIX-like line logged once everything is in place."""
    ports = ", ".join(str(p) for p in sorted(set(policy.pptp_ports)))
    what = f"PPTP fixup on ports {ports}" if ports else "PPTP fixup off (no ports), all GRE dropped"
    inside = ", ".join(policy.inside)
    return f"fixup: {what}, PAT {pat}, inside {inside}, outside {policy.outside}, gre {policy.gre}"


class _Stopped(Exception):
    """SIGTERM before the event loop runs: unwind through the ``finally`` clauses."""


def _raise_stopped(signum: int, _frame: object) -> None:
    raise _Stopped(signal.Signals(signum).name)


def _ignore_stop_signals() -> None:
    """While removing rules a second signal must not cut the clean-up short."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)


def run(policy: Policy) -> int:
    """Run the daemon until SIGINT/SIGTERM; return the exit status (0 on a clean stop)."""
    from fixup.proto.tracker import Tracker

    previous = {s: signal.signal(s, _raise_stopped) for s in (signal.SIGINT, signal.SIGTERM)}
    control: ControlServer | None = None
    shell: QueueShell | None = None
    installed = False
    try:
        pat = resolve_pat_address(policy)
        directions = interface_directions(policy.inside, policy.outside)
        tracker = Tracker(policy.tracker_config(pat))
        control = ControlServer(tracker, policy.control_socket)
        control.prepare()
        ruleset = netfilter.build_ruleset(policy, pat, netfilter.probe_capabilities())
        netfilter.ensure_forwarding()
        shell = QueueShell(tracker, policy.queue_num, directions)
        shell.bind()
        installed = True  # from here on, whatever happens, the rules are removed
        netfilter.install(ruleset)
        log.debug("rules (%s queueing):\n%s", ruleset.flavour, ruleset.describe().rstrip())
        log.info("%s", startup_line(policy, pat))
        asyncio.run(_serve(tracker, shell, control))
    except (_Stopped, KeyboardInterrupt):
        log.info("fixup: stopped during start-up")
    finally:
        _ignore_stop_signals()
        try:
            if installed:
                netfilter.remove()
                log.info("fixup: rules removed, stopped")
        finally:
            if shell is not None:
                shell.close()
            if control is not None:
                control.remove_socket()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    return 0


async def _serve(tracker: Any, shell: QueueShell, control: ControlServer) -> None:
    """The event loop: queue reader, 1 s timer, control socket, until a stop signal."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, _on_signal, signum, stop)
    loop.add_reader(shell.fileno(), shell.process_pending)
    await control.start()
    timer = asyncio.create_task(_poll_forever(tracker))
    try:
        await stop.wait()
    finally:
        timer.cancel()
        loop.remove_reader(shell.fileno())
        await control.stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    log_events(tracker.poll(time.monotonic()))


def _on_signal(signum: int, stop: asyncio.Event) -> None:
    log.info("fixup: %s received, stopping", signal.Signals(signum).name)
    stop.set()


async def _poll_forever(tracker: Any) -> None:
    while True:
        await asyncio.sleep(POLL_INTERVAL)
        try:
            log_events(tracker.poll(time.monotonic()))
        except Exception:  # noqa: BLE001 - the timer must survive the tracker
            tracker.count("shell-error")
            log.exception("fixup: tracker poll failed")


def log_events(events: list[Any]) -> None:
    for event in events:
        log.log(EVENT_LEVELS.get(event.kind, logging.INFO), "fixup: %s", event)
