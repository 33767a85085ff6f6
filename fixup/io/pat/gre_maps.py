"""The kernel GRE path: nftables maps programmed from the tracker's call events.

For every established call (RFC 2637 section 4.1: GRE carries the receiver's Call ID):

* inbound, key (server address, translated Call ID): ``gre_in_addr`` gives the inside client's
  address, ``gre_in_id`` its original Call ID -- stateless rewrites in raw PREROUTING, before
  routing;
* outbound, key (client address, server address, server Call ID) in set ``gre_out``: the source
  becomes the PAT address in FORWARD.

Elements carry counters; :meth:`GreMaps.read_counts` feeds them back to the tracker (idle
timeouts, ``show calls``).  GRE matching no element is counted and dropped by the rules.

Elements also carry a timeout, the lease (``fixup.pptp.timeouts.gre_lease``, issue 12 item 3):
the daemon renews each live call's elements a third of a lease at a time (``add element`` with
``timeout`` and ``expires`` renews an element in place, counters kept), so GRE of live calls
flows on while no daemon runs -- a restart, an upgrade -- and a dead daemon leaves no
translation behind for longer than the lease.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from ipaddress import IPv4Address
from typing import Any, Protocol

from fixup.errors import SetupError

log = logging.getLogger("fixup.gre")

TABLE = "ip fixup"
IN_ADDR, IN_ID, OUT_SET = "gre_in_addr", "gre_in_id", "gre_out"
IN_UNKNOWN, OUT_UNKNOWN = "gre_in_unknown", "gre_out_unknown"

InKey = tuple[str, int]  # server, translated
OutKey = tuple[str, str, int]  # client, server, server call id
Counts = tuple[dict[InKey, tuple[int, int]], dict[OutKey, tuple[int, int]]]


class NftRunner(Protocol):
    def run(self, commands: str, *, json_output: bool = False) -> str: ...

    def run_json(self, commands: str) -> list[dict[str, Any]]: ...


def add_commands(client: str, server: str, translated: int, original: int, server_id: int, lease: float,
                 counts: tuple[int, int, int, int] | None = None) -> str:
    """Element additions for one call (one atomic batch), each for one ``lease``; ``counts``
    (packets and bytes out, then in) start the counters where an earlier process left them."""
    t = _lease(lease)
    c_in = c_out = ""
    if counts is not None:
        c_out, c_in = f" counter packets {counts[0]} bytes {counts[1]}", f" counter packets {counts[2]} bytes {counts[3]}"
    return (f"add element {TABLE} {IN_ADDR} {{ {server} . {translated}{c_in} timeout {t} : {client} }}\n"
            f"add element {TABLE} {IN_ID} {{ {server} . {translated} timeout {t} : {original} }}\n"
            f"add element {TABLE} {OUT_SET} {{ {client} . {server} . {server_id}{c_out} timeout {t} }}\n")


def renew_commands(client: str, server: str, translated: int, original: int, server_id: int, lease: float) -> str:
    """A new lease for one call's elements, counters untouched."""
    t = _lease(lease)
    return (f"add element {TABLE} {IN_ADDR} {{ {server} . {translated} timeout {t} expires {t} : {client} }}\n"
            f"add element {TABLE} {IN_ID} {{ {server} . {translated} timeout {t} expires {t} : {original} }}\n"
            f"add element {TABLE} {OUT_SET} {{ {client} . {server} . {server_id} timeout {t} expires {t} }}\n")


def _lease(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


CallKeys = tuple[str, str, int, int, int]  # client, server, translated, original, server id


def gre_changes(events: Iterable[Any]) -> Iterable[tuple[bool, CallKeys]]:
    """What the tracker's events do to the GRE translations, for every data plane: (True, keys)
    for a call that came up, (False, keys) for one whose open GRE went (``call-down`` /
    ``call-reset``); other events change nothing."""
    for event in events:
        d = event.data
        if event.kind == "call-up" or event.kind in ("call-down", "call-reset") and d.get("gre_open"):
            yield event.kind == "call-up", (d["client"], d["server"], d["translated_id"], d["call_id"],
                                            d["server_call_id"])


def in_renewal_slice(translated: int, tick: int, lease: float) -> bool:
    """Whether a call is renewed at this tick (one per second): each once a third of a lease,
    the calls spread over the ticks so that no tick renews them all."""
    slices = max(1, int(lease // 3))
    return translated % slices == tick % slices


def call_keys(call: Any) -> CallKeys:
    """(client, server, translated, original, server id) of a tracker call with open GRE."""
    return (str(IPv4Address(call.client)), str(IPv4Address(call.server)), call.translated, call.original, call.server_id)


def delete_commands(in_key: InKey, out_key: OutKey) -> str:
    server, translated = in_key
    client, _server, server_id = out_key
    return (f"delete element {TABLE} {IN_ADDR} {{ {server} . {translated} }}\n"
            f"delete element {TABLE} {IN_ID} {{ {server} . {translated} }}\n"
            f"delete element {TABLE} {OUT_SET} {{ {client} . {server} . {server_id} }}\n")


class GreMaps:
    """Keeps the kernel maps equal to the tracker's established calls.  Stateless: the events
    carry every key and whether the call's GRE was open (``gre_open``), so nothing is kept
    per call here (10,000s of calls)."""

    def __init__(self, nft: NftRunner, lease: float) -> None:
        self.nft = nft
        self.lease = lease  # a reload may change it: the next renewal uses the new one

    def apply(self, events: Iterable[Any]) -> int:
        """Program ``call-up`` events, remove ``call-down`` / ``call-reset`` ones whose GRE was
        open, in one nft transaction (one by one if that fails, so one bad element does not
        cost the others).  Failures are logged: the call then has no kernel translation and its
        GRE is dropped and counted.  Returns how many calls came up."""
        batch = [(add_commands(*keys, self.lease) if up else
                  delete_commands((keys[1], keys[2]), (keys[0], keys[1], keys[4])), up, keys)
                 for up, keys in gre_changes(events)]
        ups = sum(1 for _command, up, _keys in batch if up)
        if len(batch) > 1:
            try:
                self.nft.run("".join(command for command, _up, _keys in batch))
                return ups
            except SetupError:
                pass
        for command, _up, keys in batch:
            self._run(command, keys)
        return ups

    def element_commands(self, calls: Iterable[Any], counts: Counts) -> str:
        """The elements of ``calls`` for a table being replaced (a restart, a reload of the
        ports): counters from the kernel's elements as they were (``counts``), else the calls' own."""
        inbound, outbound = counts
        lines = []
        for call in calls:
            client, server, translated, original, server_id = keys = call_keys(call)
            p_in, b_in = inbound.get((server, translated), (call.packets_in, call.bytes_in))
            p_out, b_out = outbound.get((client, server, server_id), (call.packets_out, call.bytes_out))
            lines.append(add_commands(*keys, self.lease, (p_out, b_out, p_in, b_in)))
        return "".join(lines)

    @staticmethod
    def local_commands(keys: Iterable[bytes]) -> str:
        """``local_gre`` elements (peer address + Call ID, as the tracker keeps them) of the calls
        this host terminates, for a rebuilt table."""
        return "".join(f"add element {TABLE} local_gre {{ {IPv4Address(key[:4])} . {int.from_bytes(key[4:6], 'big')} }}\n"
                       for key in keys)

    def renew(self, calls: Iterable[Any], tick: int) -> None:
        """Renew the leases of the calls in this tick's slice: each call once every third of a
        lease, spread over the ticks (one per second) so no tick writes them all."""
        batch = "".join(renew_commands(*call_keys(call), self.lease) for call in calls
                        if in_renewal_slice(call.translated, tick, self.lease))
        if batch:
            self._run(batch, {"renewal": tick})

    def _run(self, commands: str, d: object) -> None:
        try:
            self.nft.run(commands)
        except SetupError as err:
            log.error("fixup: GRE translation of call %s: %s", d, err)

    def read_counts(self) -> tuple[dict[InKey, tuple[int, int]], dict[OutKey, tuple[int, int]], int]:
        """Per-element (packets, bytes) of ``gre_in_addr`` and ``gre_out``, and the unknown-call drops."""
        listing = [item for what in (f"map {TABLE} {IN_ADDR}", f"set {TABLE} {OUT_SET}",
                                     f"counter {TABLE} {IN_UNKNOWN}", f"counter {TABLE} {OUT_UNKNOWN}")
                   for item in self.nft.run_json(f"list {what}")]  # one JSON document per listing
        inbound: dict[InKey, tuple[int, int]] = {}
        outbound: dict[OutKey, tuple[int, int]] = {}
        unknown = 0
        for item in listing:
            if "map" in item:
                for elem in item["map"].get("elem", []):
                    key, counts = _element(elem[0])
                    inbound[(key[0], int(key[1]))] = counts
            elif "set" in item:
                for elem in item["set"].get("elem", []):
                    key, counts = _element(elem)
                    outbound[(key[0], key[1], int(key[2]))] = counts
            elif "counter" in item:
                unknown += int(item["counter"].get("packets", 0))
        return inbound, outbound, unknown


def _element(elem: Any) -> tuple[list[Any], tuple[int, int]]:
    """An nft JSON element: ``{"elem": {"val": {"concat": [...]}, "counter": {...}}}``."""
    body = elem.get("elem", elem) if isinstance(elem, dict) else elem
    value = body.get("val", body) if isinstance(body, dict) else body
    key = value.get("concat", [value]) if isinstance(value, dict) else [value]
    counter = body.get("counter", {}) if isinstance(body, dict) else {}
    return key, (int(counter.get("packets", 0)), int(counter.get("bytes", 0)))
