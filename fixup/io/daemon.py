"""``fixup run``: wire the pure tracker to the kernel and serve until a stop signal; SIGHUP
reloads the policy (:mod:`fixup.io.reload`).

Order of start: resolve the PAT address, probe netfilter, claim the control socket, bind the
queue, resume what the restart store holds (:mod:`fixup.io.pat.recovery`), install the rules
with the resumed calls' GRE translations in the same transaction.  The queue is bound before the
rules change so a second daemon fails before it touches the first one's rules.

Two ways to stop (issue 12):

* SIGTERM (``systemctl restart``, ``kill``): stop and keep.  Rules, the GRE translations (each
  on its lease) and the saved calls stay; control segments are dropped while no daemon runs
  (the queue has no bypass, TCP retransmits them) and the next start resumes every call.
* SIGINT (Ctrl-C, ``systemctl stop``: the unit's ``KillSignal``) and ``fixup stop``: stop and
  remove everything, rules and saved calls.

Dial-in sessions end either way (their PPP and MPPE state lives in this process).  A start that
fails after the rules were installed removes them and leaves the saved calls for the next start.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import socket
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any

from fixup.errors import SetupError
from fixup.io.pat import netfilter, permit
from fixup.io.control import ControlServer, refuse_if_running
from fixup.io.pat.gre_maps import GreMaps
from fixup.io.pat.nfqueue import QueueShell, interface_directions
from fixup.io.pat.nftlib import Nft
from fixup.io.pat.plane import ControlPlane, RuleKeeper
from fixup.io.pat.recovery import recover
from fixup.io.pat.state_store import StateStore, identity
from fixup.io.reload import Reloader
from fixup.io.service import Notifier
from fixup.io.vpdn.terminate_io import TerminateIo

if TYPE_CHECKING:
    from fixup.policy.loader import Policy

log = logging.getLogger("fixup")

POLL_INTERVAL = 1.0
COUNTS_INTERVAL = 10  # ticks: how often the kernel paths' GRE counters are read back
PERMIT_INTERVAL = 3  # ticks: how often the permit-pptp rules are checked (a host firewall reloaded under us)
IFA_F_SECONDARY = 0x01


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


def startup_line(policy: Policy, pat: IPv4Address, gre: str) -> str:
    """The PIX-like line logged once everything is in place."""
    ports = ", ".join(str(p) for p in sorted(set(policy.pptp_ports)))
    what = f"PPTP fixup on ports {ports}" if ports else "PPTP fixup off (no ports), all GRE dropped"
    inside = ", ".join(policy.inside)
    return f"fixup: {what}, PAT {pat}, inside {inside}, outside {policy.outside}, gre {gre}"


KEEP, FLUSH = "keep", "flush"  # how the daemon stops: see the module docstring


def stop_mode(signum: int) -> str:
    return KEEP if signum == signal.SIGTERM else FLUSH


class _Stopped(Exception):
    """A stop signal before the event loop runs: unwind through the ``finally`` clauses."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.mode = stop_mode(signum)


def _raise_stopped(signum: int, _frame: object) -> None:
    raise _Stopped(signum)


def _ignore_stop_signals() -> None:
    """While removing rules a second signal (or a late SIGHUP) must not cut the clean-up short."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)


def run(policy: Policy, *, debug: bool = False) -> int:
    """Run the daemon until a stop signal or ``fixup stop``; return the exit status (0 on a clean
    stop).  ``debug``: debug logging stays on across reloads."""
    from fixup.proto.pat.tracker import Tracker

    previous = {s: signal.signal(s, _raise_stopped) for s in (signal.SIGINT, signal.SIGTERM)}
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # no reload before the loop runs
    control: ControlServer | None = None
    shell: QueueShell | None = None
    vpdn: TerminateIo | None = None
    store: StateStore | None = None
    plane: ControlPlane | None = None
    installed, mode = False, FLUSH  # a start that fails removes the rules (the saved calls stay)
    try:
        refuse_if_running(policy.control_socket)
        pat = resolve_pat_address(policy)
        directions = interface_directions(policy.inside, policy.outside)
        tracker = Tracker(policy.tracker_config(pat))
        gre, loaded_bpf = gre_mode(policy, pat, directions)
        store = StateStore(policy.state_dir, identity(pat, policy.pptp_ports, gre))
        gre_maps = GreMaps(Nft(), policy.timeouts.gre_lease) if gre in netfilter.KERNEL_GRE else None
        plane = ControlPlane(tracker, gre_maps, store, permit=policy.permit)
        vpdn = _terminate_io(policy, plane)
        notifier = Notifier()
        capabilities = netfilter.probe_capabilities()
        rules = RuleKeeper(pat, capabilities, tracker, gre_maps, store, gre)
        reloader = Reloader(policy, pat, tracker, vpdn, debug=debug, notifier=notifier, set_lease=plane.set_lease,
                            rebuild_rules=rules.rebuild)
        stopper = Stopper()
        control = ControlServer(tracker, policy.control_socket, before_request=plane.refresh_counts, vpdn=vpdn,
                                on_reload=reloader.reload, on_stop=stopper.flush)
        control.prepare()
        ruleset = rules.ruleset(policy)
        netfilter.ensure_forwarding()
        shell = QueueShell(tracker, policy.queue_num, directions, after_packet=plane.after_packet,
                           hold=plane.unsaved, after_burst=plane.save)
        shell.bind()
        store.open()
        recovery = recover(tracker, store, policy.pptp_ports, gre_maps)
        installed = True  # from here on, whatever happens, the rules are removed or kept on purpose
        netfilter.install(ruleset, resume=True, elements=recovery.elements)
        log.debug("rules (%s queueing):\n%s", ruleset.flavour, ruleset.describe().rstrip())
        plane.keep_permit()
        if gre == "ebpf":
            loaded_bpf.sync(recovery.restored.gre_calls)  # exactly the resumed calls, then on the interfaces
            loaded_bpf.attach()
            plane.bpf = loaded_bpf
        log.info("%s", startup_line(policy, pat, gre))
        resumed = recovery.describe(store.path)
        if resumed:
            log.info("%s", resumed)
        if vpdn is not None:
            vpdn.prepare()
        metrics = None
        if policy.metrics_port is not None:
            from fixup.io.metrics import FixupCollector, MetricsServer

            metrics = MetricsServer(policy.metrics_port, FixupCollector(tracker, vpdn, reloader, plane.refresh_counts,
                                                                        recovery))
        mode = asyncio.run(_serve(plane, shell, control, vpdn, reloader, startup_line(policy, pat, gre), stopper,
                                  metrics))
    except _Stopped as stopped:
        mode = stopped.mode
        log.info("fixup: stopped during start-up")
    except KeyboardInterrupt:
        log.info("fixup: stopped during start-up")
    finally:
        _ignore_stop_signals()
        try:
            if installed:
                _leave(mode, plane, store, policy)
        finally:
            if shell is not None:
                shell.close()
            if vpdn is not None:
                vpdn.close()
            if control is not None:
                control.remove_socket()
            if store is not None:
                store.close()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    return 0



def gre_mode(policy: Policy, pat: IPv4Address, directions: dict[int, Any]) -> tuple[str, Any]:
    """The GRE mode in force and, for ``ebpf``, the loaded program (not attached yet): the
    policy's mode, except ``ebpf`` where this host cannot load it (issue 13: then ``kernel``,
    with one line saying why).  Loading it is the probe."""
    if policy.gre != "ebpf":
        return policy.gre, None
    if not policy.permit:
        log.warning("fixup: gre ebpf forwards past the host's forward chains, which permit: false leaves in charge: "
                    "using gre kernel (nftables maps)")
        return "kernel", None
    from fixup.io.pat.gre_bpf import load

    bpf, reason = load(policy.bpf_dir, pat, directions, policy.timeouts.gre_lease)
    if bpf is not None:
        return "ebpf", bpf
    log.warning("fixup: gre ebpf is not available here (%s): using gre kernel (nftables maps)", reason)
    return "kernel", None


def _leave(mode: str, plane: ControlPlane | None, store: StateStore | None, policy: Policy) -> None:
    """Keep (SIGTERM) or remove (everything else) what this daemon set up; say which."""
    keep = mode == KEEP and plane is not None and store is not None
    if plane is not None and plane.bpf is not None:
        plane.bpf.close(remove=not keep)
    if keep:
        assert plane is not None and store is not None
        plane.save()
        calls = sum(len(plane.tracker.calls.calls_of(c)) for c in plane.tracker.connections.values())
        lease = (f"; their GRE translations expire {policy.timeouts.gre_lease:g} s after this"
                 if plane.gre_maps is not None else "")
        log.info("fixup: stopped, rules and %d call%s kept for the next start%s ('fixup stop' removes everything)",
                 calls, "" if calls == 1 else "s", lease)
        return
    permit.remove()
    netfilter.remove()
    if store is not None and mode == FLUSH:
        store.clear()
    log.info("fixup: rules removed, stopped")


class Stopper:
    """How the event loop is asked to stop: by a signal (keep or flush) or ``fixup stop`` (flush)."""

    def __init__(self) -> None:
        self.mode = FLUSH
        self.event: asyncio.Event | None = None

    def request(self, mode: str) -> None:
        self.mode = mode
        if self.event is not None:
            self.event.set()

    def flush(self) -> None:
        log.info("fixup: 'fixup stop' received, stopping and removing everything")
        self.request(FLUSH)


def _terminate_io(policy: Policy, plane: ControlPlane) -> TerminateIo | None:
    """The local PPTP server of the ``terminate`` section, if there is one."""
    if policy.terminate is None:
        return None
    t = policy.terminate
    listen = t.listen_address
    if listen is None:
        listen = primary_ipv4(t.listen_interface)
        if listen is None:
            raise SetupError(f"terminate.listen interface {t.listen_interface} has no IPv4 address")
    return TerminateIo(t, listen, t.local_address or listen, on_call=plane.local_call)


async def _serve(plane: ControlPlane, shell: QueueShell, control: ControlServer, vpdn: TerminateIo | None,
                 reloader: Reloader, status: str, stopper: Stopper, metrics: Any = None) -> str:
    """The event loop: queue reader, 1 s timer, control socket, local PPTP server, until a stop
    signal or ``fixup stop``; SIGHUP reloads the policy.  The service manager hears READY=1 once
    all of it serves.  Returns how to stop (:data:`KEEP` or :data:`FLUSH`)."""
    loop = asyncio.get_running_loop()
    stop = stopper.event = asyncio.Event()
    notifier = reloader.notifier
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, _on_signal, signum, stopper, notifier)
    reloads: set[asyncio.Task[Any]] = set()
    loop.add_signal_handler(signal.SIGHUP, _on_hangup, reloader, reloads)
    loop.add_reader(shell.fileno(), shell.process_pending)
    await control.start()
    if vpdn is not None:
        await vpdn.start()
    if metrics is not None:
        await metrics.start()
    timer = asyncio.create_task(_tick_forever(plane))
    watchdog = asyncio.create_task(_watchdog(notifier)) if notifier.watchdog else None
    notifier.ready(status)
    try:
        await stop.wait()
    finally:
        notifier.stopping()
        if watchdog is not None:
            watchdog.cancel()
        if metrics is not None:
            await metrics.stop()
        if vpdn is not None:
            ended = await vpdn.stop()
            if ended:
                log.info("fixup: %d dial-in tunnel%s ended (PPP and MPPE state cannot outlive the process): "
                         "LCP Terminate, CDN, StopCCRQ, accounting Stop Admin-Reboot", ended, "" if ended == 1 else "s")
        timer.cancel()
        loop.remove_reader(shell.fileno())
        await control.stop()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(signum)
    plane.tick()
    return stopper.mode


def _on_hangup(reloader: Reloader, tasks: set[asyncio.Task[Any]]) -> None:
    log.info("fixup: SIGHUP received, reloading %s", reloader.policy.source)
    task = asyncio.get_running_loop().create_task(reloader.reload())
    tasks.add(task)  # a reference until it is done
    task.add_done_callback(tasks.discard)


def _on_signal(signum: int, stopper: Stopper, notifier: Notifier) -> None:
    mode = stop_mode(signum)
    log.info("fixup: %s received, stopping (%s)", signal.Signals(signum).name,
             "keeping the calls for the next start" if mode == KEEP else "removing everything")
    notifier.stopping()
    stopper.request(mode)


async def _watchdog(notifier: Notifier) -> None:
    """WATCHDOG=1 every half WatchdogSec, from the event loop itself: a stuck loop stops them."""
    assert notifier.watchdog is not None
    while True:
        notifier.alive()
        await asyncio.sleep(notifier.watchdog)


async def _tick_forever(plane: ControlPlane) -> None:
    ticks = 0
    while True:
        await asyncio.sleep(POLL_INTERVAL)
        ticks += 1
        try:
            if ticks % COUNTS_INTERVAL == 0:
                plane.refresh_counts()
            if ticks % PERMIT_INTERVAL == 0:
                plane.keep_permit()
            plane.tick()
        except Exception:  # noqa: BLE001 - the timer must survive the tracker
            plane.tracker.count("shell-error")
            log.exception("fixup: tracker poll failed")


