"""The eBPF GRE path (``fixup.pptp.gre: ebpf``, issue 13): ``bpf/fixup_gre.bpf.c`` on the tc
ingress of the outside and inside interfaces, its maps programmed from the tracker's call events
exactly where the nftables elements are (:mod:`fixup.io.pat.gre_maps`), before the verdict of the
reply that establishes a call.

The nftables maps of ``gre: kernel`` stay programmed as well: what the program sends up the stack
(a missing neighbour, an MTU it must not decide, fragments, IP options) is still translated there,
and GRE of no call is still dropped and counted there.  Each map entry carries the same lease as
the nftables elements (issue 12 item 3), renewed on the same schedule; the maps are pinned under
``runtime.bpf_dir`` and the program stays attached while no daemon runs, so GRE of live calls flows
across a restart and the next daemon takes the maps over (libbpf reuses pins of the same name).
"""
from __future__ import annotations

import logging
import os
import shutil
import struct
import time
from collections.abc import Iterable
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from fixup.errors import SetupError
from fixup.io.pat.gre_maps import Counts, call_keys, gre_changes, in_renewal_slice
from fixup.io.logs import RateLimitedLog
from fixup.io.pat.libbpf import BpfMap, BpfObject, attach_tc, detach_tc

log = logging.getLogger("fixup.gre")
_errors = RateLimitedLog(log)  # a full map fails every call-up after it: one line per 10 s

OBJECT = Path(__file__).with_name("fixup_gre.bpf.o")
PROGRAM = "fixup_gre"
TC_HANDLE, TC_PRIORITY = 0x1723, 17
BPFFS = "/sys/fs/bpf"

IN_KEY = struct.Struct("=4s2s2x")  # server, translated Call ID (network order, as in the packet)
IN_VALUE = struct.Struct("=4s2s2xQ")  # client, original Call ID, lease end (CLOCK_MONOTONIC ns)
OUT_KEY = struct.Struct("=4s4s2s2x")  # client, server, server Call ID
OUT_VALUE = struct.Struct("=Q")
COUNTS = struct.Struct("=QQ")
CFG = struct.Struct("=4s4x")
STATS = ("redirected-in", "redirected-out", "no-call", "expired", "ip-options", "fragment", "not-pptp",
         "short", "ttl", "no-route", "mtu", "error")


def load(pin_dir: str, pat: IPv4Address, ifindexes: Iterable[int], lease: float) -> tuple[GreBpf | None, str]:
    """The program loaded (not attached), or None and why it cannot run here."""
    if not OBJECT.exists():
        return None, f"{OBJECT.name} is not built (make setup compiles bpf/fixup_gre.bpf.c with clang)"
    try:
        return GreBpf(pin_dir, pat, ifindexes, lease), ""
    except (SetupError, OSError) as err:
        return None, str(err)


def unavailable(pin_dir: str) -> str | None:
    """Why the eBPF path cannot run here (None: it can): :func:`load`, then closed."""
    bpf, reason = load(pin_dir, IPv4Address("0.0.0.0"), (), 0.0)
    if bpf is not None:
        bpf.close(remove=False)
        return None
    return reason


def ensure_bpffs(mountpoint: str = BPFFS) -> None:
    """Pinned maps need the BPF filesystem (systemd mounts it; a bare host may not have)."""
    if _is_bpffs(mountpoint):
        return
    import subprocess

    done = subprocess.run(["mount", "-t", "bpf", "bpf", mountpoint], capture_output=True, text=True, check=False)
    if done.returncode != 0 or not _is_bpffs(mountpoint):
        raise SetupError(f"no BPF filesystem at {mountpoint} and it cannot be mounted: {done.stderr.strip()}")
    log.info("fixup: mounted the BPF filesystem at %s", mountpoint)


def _is_bpffs(path: str) -> bool:
    try:
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            return any(line.split()[1:3] == [path, "bpf"] for line in mounts)
    except OSError:
        return False


def _pin_dir(pin_dir: str) -> str:
    os.makedirs(pin_dir, mode=0o700, exist_ok=True)
    return pin_dir


def _ns(seconds: float) -> int:
    return time.monotonic_ns() + int(seconds * 1e9)


class GreBpf:
    """The loaded program, attached, and its maps."""

    def __init__(self, pin_dir: str, pat: IPv4Address, ifindexes: Iterable[int], lease: float) -> None:
        ensure_bpffs()
        self.pin_dir = _pin_dir(pin_dir)
        self.obj = BpfObject(str(OBJECT), self.pin_dir)
        self.pat = pat
        self.ifindexes = tuple(ifindexes)
        self.lease = lease
        self.gre_in = BpfMap(self.obj.map_fd("fixup_gre_in"), IN_KEY.size, IN_VALUE.size)
        self.gre_out = BpfMap(self.obj.map_fd("fixup_gre_out"), OUT_KEY.size, OUT_VALUE.size)
        self.in_counts = BpfMap(self.obj.map_fd("fixup_in_cnt"), IN_KEY.size, COUNTS.size, per_cpu=True)
        self.out_counts = BpfMap(self.obj.map_fd("fixup_out_cnt"), OUT_KEY.size, COUNTS.size, per_cpu=True)
        self.stats_map = BpfMap(self.obj.map_fd("fixup_stats"), 4, 8, per_cpu=True)
        self.cfg = BpfMap(self.obj.map_fd("fixup_cfg"), 4, CFG.size)

    def attach(self) -> None:
        """The PAT address in, then the program on every interface (replacing ours if a
        previous daemon left it: the maps are the same pinned ones)."""
        self.cfg.update(b"\0\0\0\0", CFG.pack(self.pat.packed))
        for ifindex in self.ifindexes:
            attach_tc(ifindex, self.obj.program_fd(PROGRAM), TC_HANDLE, TC_PRIORITY)

    # -- calls ----------------------------------------------------------------------------------

    def apply(self, events: Iterable[Any]) -> int:
        """Like :meth:`fixup.io.pat.gre_maps.GreMaps.apply`; returns how many calls came up."""
        ups = 0
        for up, (client, server, translated, original, server_id) in gre_changes(events):
            if up:
                self._add(client, server, translated, original, server_id)
                ups += 1
            else:
                self._delete(client, server, translated, server_id)
        return ups

    def sync(self, calls: Iterable[Any]) -> None:
        """The maps hold exactly ``calls`` (a start: what an earlier daemon left that is not
        resumed goes, the resumed ones get a fresh lease)."""
        wanted_in, wanted_out = set(), set()
        for call in calls:
            keys = call_keys(call)
            self._add(*keys)
            wanted_in.add(self._in_key(keys[1], keys[2]))
            wanted_out.add(self._out_key(keys[0], keys[1], keys[4]))
        for table, counts, wanted in ((self.gre_in, self.in_counts, wanted_in), (self.gre_out, self.out_counts, wanted_out)):
            for key in [k for k in table.keys() if k not in wanted]:
                table.delete(key)
                counts.delete(key)
            for key in [k for k in counts.keys() if k not in wanted]:
                counts.delete(key)

    def renew(self, calls: Iterable[Any], tick: int) -> None:
        for call in calls:
            if in_renewal_slice(call.translated, tick, self.lease):
                self._add(*call_keys(call))

    def _add(self, client: str, server: str, translated: int, original: int, server_id: int) -> None:
        lease_end = _ns(self.lease)
        try:
            self.gre_in.update(self._in_key(server, translated),
                               IN_VALUE.pack(IPv4Address(client).packed, original.to_bytes(2, "big"), lease_end))
            self.gre_out.update(self._out_key(client, server, server_id), OUT_VALUE.pack(lease_end))
        except SetupError as err:  # a full map: the nftables path still has the call
            _errors.error("fixup: eBPF GRE translation of %s/%d: %s", server, translated, err)

    def _delete(self, client: str, server: str, translated: int, server_id: int) -> None:
        for table, counts, key in ((self.gre_in, self.in_counts, self._in_key(server, translated)),
                                   (self.gre_out, self.out_counts, self._out_key(client, server, server_id))):
            table.delete(key)
            counts.delete(key)

    @staticmethod
    def _in_key(server: str, translated: int) -> bytes:
        return IN_KEY.pack(IPv4Address(server).packed, translated.to_bytes(2, "big"))

    @staticmethod
    def _out_key(client: str, server: str, server_id: int) -> bytes:
        return OUT_KEY.pack(IPv4Address(client).packed, IPv4Address(server).packed, server_id.to_bytes(2, "big"))

    # -- counters ---------------------------------------------------------------------------------

    def read_counts(self) -> Counts:
        """Per-call (packets, bytes), summed over the CPUs, keyed like the nftables path's."""
        inbound: dict[tuple[str, int], tuple[int, int]] = {}
        for key in list(self.in_counts.keys()):
            server, translated = IN_KEY.unpack(key)
            inbound[(str(IPv4Address(server)), int.from_bytes(translated, "big"))] = self._sum(self.in_counts, key)
        outbound: dict[tuple[str, str, int], tuple[int, int]] = {}
        for key in list(self.out_counts.keys()):
            client, server, server_id = OUT_KEY.unpack(key)
            outbound[(str(IPv4Address(client)), str(IPv4Address(server)), int.from_bytes(server_id, "big"))] = \
                self._sum(self.out_counts, key)
        return inbound, outbound

    @staticmethod
    def _sum(table: BpfMap, key: bytes) -> tuple[int, int]:
        values = table.lookup(key) or []
        pairs = [COUNTS.unpack(v) for v in values]
        return sum(p for p, _ in pairs), sum(b for _, b in pairs)

    def stats(self) -> dict[str, int]:
        """What the program redirected and why it sent packets up the stack, summed over CPUs."""
        out = {}
        for index, name in enumerate(STATS):
            values = self.stats_map.lookup(index.to_bytes(4, "little")) or []
            out[name] = sum(int.from_bytes(v, "little") for v in values)
        return out

    # -- stop -------------------------------------------------------------------------------------

    def close(self, *, remove: bool) -> None:
        """``remove`` (a real stop): the program off every interface and the pins gone.  Else (a
        restart) the program keeps forwarding the calls' GRE on its leases."""
        if remove:
            for ifindex in self.ifindexes:
                detach_tc(ifindex, TC_HANDLE, TC_PRIORITY)
        self.obj.close()
        if remove:
            remove_pins(self.pin_dir)


def remove_pins(pin_dir: str) -> None:
    """Unpin our maps (the kernel frees them with their last user) and the directory."""
    if os.path.isdir(pin_dir):
        shutil.rmtree(pin_dir, ignore_errors=True)

