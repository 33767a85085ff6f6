"""Start-up after a restart (issue 12 item 2): the restart store reconciled with the kernel, the
tracker restored, and the GRE translations of the restored calls ready for the start-up
transaction.

Reconciliation: a saved control connection that conntrack no longer holds (or holds as closed)
ended while no daemon ran and is not restored; one that conntrack still holds is restored and
resumes at its next message boundary (control segments were never forwarded meanwhile: the
queue has no bypass, so TCP retransmitted them).  The kernel's GRE elements of the previous
process give the restored calls' counters; the start-up transaction replaces the table with the
restored calls' elements in it, so any element of a call not restored goes with it.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fixup.errors import SetupError
from fixup.io.pat import conntrack
from fixup.io.pat.gre_maps import Counts, GreMaps
from fixup.io.pat.state_store import StateStore
from fixup.proto.pat.tracker import Restored, Tracker

log = logging.getLogger("fixup")


@dataclass(frozen=True, slots=True)
class Recovery:
    """What the start-up took back; ``elements``: nft commands for the start-up transaction."""

    restored: Restored
    ended: int
    recoveries: int
    elements: str = ""

    def describe(self, path: str) -> str:
        r = self.restored
        if not r.connections and not self.ended and not r.skipped:
            return ""
        line = (f"fixup: resumed {r.connections} control connection{'s' if r.connections != 1 else ''} with "
                f"{r.calls} call{'s' if r.calls != 1 else ''} ({len(r.gre_calls)} carrying GRE) from {path}")
        if self.ended:
            line += f"; {self.ended} ended while no daemon ran"
        if r.skipped:
            line += f"; {len(r.skipped)} saved record{'s' if len(r.skipped) != 1 else ''} skipped"
        return line


def recover(tracker: Tracker, store: StateStore, ports: Iterable[int], gre_maps: GreMaps | None) -> Recovery:
    """Load, reconcile, restore; the store then holds exactly what was restored."""
    saved = store.load()
    if saved.discarded:
        log.info("fixup: saved state in %s discarded: %s", store.path, saved.discarded)
    records = _still_open(saved.records, ports)
    ended = len(saved.records) - len(records)
    restored = tracker.restore(records, time.monotonic())
    for line in restored.skipped[:20]:
        log.warning("fixup: saved control connection not restored: %s", line)
    store.replace_all([(record["id"], record) for record in tracker.export()])
    recoveries = saved.recoveries
    if restored.connections:
        recoveries += 1
        store.count_recovery(recoveries)
    elements = ""
    if gre_maps is not None and restored.gre_calls:
        elements = gre_maps.element_commands(restored.gre_calls, kernel_counts(gre_maps))
    return Recovery(restored, ended, recoveries, elements)


def _still_open(records: list[Any], ports: Iterable[int]) -> list[Any]:
    if not records:
        return []
    live = conntrack.live_connections(ports)
    if live is None:
        return records
    return [r for r in records if conntrack.record_key(r) is None or conntrack.record_key(r) in live]


def kernel_counts(gre_maps: GreMaps) -> Counts:
    """Counters of the previous process's elements (none when its table is gone)."""
    try:
        inbound, outbound, _unknown = gre_maps.read_counts()
    except SetupError:
        return {}, {}
    return inbound, outbound
