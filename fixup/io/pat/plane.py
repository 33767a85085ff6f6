"""The PAT control plane in the daemon: the tracker's events to the GRE data planes (nftables
maps, the eBPF program), to the restart store and to the log; the data planes' counters back.

``gre: kernel`` programs the nftables maps (:mod:`fixup.io.pat.gre_maps`); ``gre: ebpf`` the tc
program's maps (:mod:`fixup.io.pat.gre_bpf`) and, behind it, the same nftables maps; ``gre:
queue`` neither (the tracker translates every GRE packet itself).
"""
from __future__ import annotations

import logging
import time
from dataclasses import replace
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any

from fixup.errors import SetupError
from fixup.io.logs import EventLog
from fixup.io.pat import netfilter, permit
from fixup.io.pat.gre_maps import Counts, GreMaps
from fixup.io.pat.recovery import kernel_counts
from fixup.io.pat.state_store import StateStore, identity

if TYPE_CHECKING:
    from fixup.io.pat.gre_bpf import GreBpf
    from fixup.policy.loader import Policy

log = logging.getLogger("fixup")
EVENT_LEVELS = {"protocol-error": logging.WARNING}
log_events = EventLog(log, EVENT_LEVELS, prefix="fixup: ").all


class ControlPlane:
    """See the module docstring.  ``bpf`` may be set after construction (it is attached once the
    nftables rules behind it are in place)."""

    def __init__(self, tracker: Any, gre_maps: GreMaps | None, store: StateStore | None = None,
                 bpf: GreBpf | None = None, permit: bool = False) -> None:
        self.tracker = tracker
        self.permit = permit  # fixup.pptp.permit: keep the permit-pptp rules in the host's forward chains
        self.gre_maps = gre_maps
        self.store = store
        self.bpf = bpf
        self.ticks = 0
        self._nft_pending: list[Any] = []  # events whose nftables part waits for the burst's end
        self.programmed: dict[str, list[float]] = {"nft": [0, 0.0], "ebpf": [0, 0.0]}  # calls, seconds
    def keep_permit(self) -> None:
        if self.permit:
            permit.ensure()

    def set_lease(self, lease: float) -> None:
        """A reloaded ``gre_lease``: every renewal from now on uses it."""
        for data_plane in (self.gre_maps, self.bpf):
            if data_plane is not None:
                data_plane.lease = lease

    def after_packet(self) -> None:
        """After every queued packet, before its verdict: a call that has just come up gets its
        eBPF translation at once.  Its nftables elements and the saved records follow at the end
        of the burst (:meth:`save`, one nft transaction and one sqlite transaction for all of it),
        before the held verdicts of the segments that made them (every segment that opens or
        closes a call changes a saved record, so its verdict is held)."""
        self.handle(self.tracker.take_events(), nft_later=self.store is not None)

    def unsaved(self) -> bool:
        return self.store is not None and self.tracker.has_changes

    def tick(self) -> None:
        self.handle(self.tracker.poll(time.monotonic()))
        self.save()
        self.ticks += 1
        for data_plane in (self.gre_maps, self.bpf):
            if data_plane is not None:
                data_plane.renew(self.tracker.calls.gre_in.values(), self.ticks)

    def _timed(self, name: str, apply: Any, events: list[Any]) -> None:
        started = time.perf_counter()
        up = apply(events)
        if up:
            entry = self.programmed[name]
            entry[0] += up
            entry[1] += time.perf_counter() - started
            self.tracker.counters[f"calls_programmed_{name}"] = int(entry[0])
            self.tracker.counters[f"program_us_{name}"] = round(entry[1] / entry[0] * 1e6)

    def save(self) -> None:
        """The nftables elements held back by :meth:`after_packet`, then the changed records."""
        if self._nft_pending:
            events, self._nft_pending = self._nft_pending, []
            if self.gre_maps is not None:
                self._timed("nft", self.gre_maps.apply, events)
        if self.store is not None:
            self.store.save(*self.tracker.take_changes())

    def handle(self, events: list[Any], *, nft_later: bool = False) -> None:
        """GRE translations first, in every data plane, before the verdict of the packet that
        made them: the nftables maps behind the eBPF program too, since the first GRE of a call
        may be a fragment, which the program passes up to them.  ``nft_later``: the nftables
        part waits for :meth:`save` (the verdict waits too)."""
        if events:
            if self.bpf is not None:
                self._timed("ebpf", self.bpf.apply, events)
            if self.gre_maps is not None:
                if nft_later:
                    self._nft_pending.extend(events)
                else:
                    self._timed("nft", self.gre_maps.apply, events)
        log_events(events)

    def local_call(self, added: bool, peer: str, call_id: int) -> None:
        """A call this host terminates began or ended: let its GRE in (RFC 2637 section 4.1).
        The eBPF program finds no call for it and passes it up, to these rules."""
        key = IPv4Address(peer).packed + call_id.to_bytes(2, "big")
        if added:
            self.tracker.local_gre.add(key)
        else:
            self.tracker.local_gre.discard(key)
        if self.gre_maps is not None:
            try:
                self.gre_maps.nft.run(f"{'add' if added else 'delete'} element ip fixup local_gre {{ {peer} . {call_id} }}")
            except SetupError as err:
                log.error("fixup: local call %s/%d: %s", peer, call_id, err)

    def refresh_counts(self) -> None:
        """Read the data planes' per-call GRE counters into the tracker (summed: a call's GRE
        goes through the eBPF program, or up to the nftables maps when the program passes it)."""
        if self.gre_maps is None:
            return
        try:
            inbound, outbound, unknown = self.gre_maps.read_counts()
        except SetupError as err:
            log.warning("fixup: cannot read GRE counters: %s", err)
            return
        if self.bpf is not None:
            inbound, outbound = _sum_counts((inbound, outbound), self.bpf.read_counts())
            for name, value in self.bpf.stats().items():
                self.tracker.counters[f"ebpf_{name}"] = value
        self.tracker.note_gre_counts(inbound={(IPv4Address(s).packed, t): c for (s, t), c in inbound.items()},
                                     outbound={(IPv4Address(c).packed, IPv4Address(s).packed, i): n
                                               for (c, s, i), n in outbound.items()},
                                     unknown=unknown, now=time.monotonic())


def _sum_counts(a: Counts, b: Counts) -> Counts:
    out: list[dict[Any, tuple[int, int]]] = []
    for left, right in zip(a, b):
        merged = dict(left)
        for key, (packets, octets) in right.items():
            p, o = merged.get(key, (0, 0))
            merged[key] = (p + packets, o + octets)
        out.append(merged)
    return out[0], out[1]


class RuleKeeper:
    """Rebuilds the rules in place when a reload changes the control ports.  ``gre``: the GRE
    mode in force (the policy's, or ``kernel`` where ``ebpf`` could not run)."""

    def __init__(self, pat: IPv4Address, capabilities: netfilter.Capabilities, tracker: Any,
                 gre_maps: GreMaps | None, store: StateStore, gre: str) -> None:
        self.pat, self.capabilities, self.tracker = pat, capabilities, tracker
        self.gre_maps, self.store, self.gre = gre_maps, store, gre

    def rebuild(self, old: Policy, new: Policy) -> None:
        """Every live call's GRE translations (and the dial-in calls' ``local_gre``) go into the
        transaction that replaces the table."""
        elements = ""
        if self.gre_maps is not None:
            elements = (self.gre_maps.element_commands(self.tracker.calls.gre_in.values(), kernel_counts(self.gre_maps))
                        + self.gre_maps.local_commands(self.tracker.local_gre))
        netfilter.update(self.ruleset(old), self.ruleset(new), elements=elements)
        self.store.restamp(identity(self.pat, new.pptp_ports, self.gre))

    def ruleset(self, policy: Policy) -> netfilter.RuleSet:
        return netfilter.build_ruleset(replace(policy, gre=self.gre), self.pat, self.capabilities)
