"""Which control connections conntrack still holds (issue 12: reconcile the restart store with
the kernel).  The kernel keeps the SNAT of a control connection in its conntrack entry whatever
happens to fixup; a connection that conntrack no longer has, or has seen closed both ways
(``TIME_WAIT``, ``CLOSE``), ended while no daemon ran and is not restored.

One dump through pyroute2's conntrack netlink client, filtered to the control ports here.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from ipaddress import IPv4Address

log = logging.getLogger("fixup.conntrack")

IPPROTO_TCP = 6
ENDED = frozenset({"TIME_WAIT", "CLOSE"})
Key = tuple[str, int, str, int]  # client, client port, server, server port (dotted addresses)


def live_connections(ports: Iterable[int]) -> set[Key] | None:
    """Original-direction tuples of the TCP connections to ``ports`` that are not over; None
    when conntrack cannot be read (the caller then keeps every record, and says so)."""
    wanted = set(ports)
    try:
        from pyroute2 import Conntrack

        with Conntrack() as ct:
            found: set[Key] = set()
            for entry in ct.dump_entries():
                orig = entry.tuple_orig
                if orig is None or orig.proto != IPPROTO_TCP or orig.dport not in wanted:
                    continue
                state = entry.protoinfo.state_name() if entry.protoinfo is not None else ""
                if state not in ENDED:
                    found.add((str(IPv4Address(orig.saddr)), int(orig.sport), str(IPv4Address(orig.daddr)), int(orig.dport)))
            return found
    except Exception as err:  # noqa: BLE001 - netlink, permissions, a pyroute2 without conntrack
        log.warning("fixup: cannot read conntrack (%s): every saved control connection is restored", err)
        return None


def record_key(record: object) -> Key | None:
    """The tuple of a saved connection record (None when it has none: the tracker rejects it)."""
    if not isinstance(record, dict):
        return None
    try:
        return (str(record["client"]), int(record["client_port"]), str(record["server"]), int(record["server_port"]))
    except (KeyError, TypeError, ValueError):
        return None
