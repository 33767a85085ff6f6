"""A TUN device for the terminated PPP links: IP packets between the kernel and the sessions.

One point-to-multipoint device for every session: the client addresses (the pool) are routed
to it, the sessions are told apart by address.  Links, addresses and routes through pyroute2.
"""
from __future__ import annotations

import fcntl
import logging
import os
import struct
from ipaddress import IPv4Address

from fixup.errors import SetupError

log = logging.getLogger("fixup.tun")

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


class TunDevice:
    """Open, configure and remove one TUN interface (RFC-free plumbing; Linux tuntap.rst)."""

    def __init__(self, name: str = "fxppp0", mtu: int = 1400) -> None:
        self.name = name
        self.mtu = mtu
        self.fd: int | None = None

    def open(self, local: IPv4Address, pool: tuple[IPv4Address, IPv4Address]) -> None:
        """Create the device, bring it up with ``local`` as its address and route the pool to it."""
        try:
            self.fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
            ifr = struct.pack("16sH", self.name.encode(), IFF_TUN | IFF_NO_PI)
            fcntl.ioctl(self.fd, TUNSETIFF, ifr)
        except OSError as err:
            self.close()
            raise SetupError(f"cannot create TUN device {self.name}: {err}") from err
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname=self.name)[0]
            ipr.link("set", index=index, mtu=self.mtu, state="up")
            ipr.addr("add", index=index, address=str(local), prefixlen=32)
            for network in _cover(pool):
                ipr.route("replace", dst=network, oif=index)
        log.info("fixup: TUN %s up, %s, pool %s-%s routed to it, MTU %d", self.name, local, pool[0], pool[1], self.mtu)

    def reroute(self, old: tuple[IPv4Address, IPv4Address], new: tuple[IPv4Address, IPv4Address]) -> None:
        """A reloaded pool: route the new range first, then drop what only the old one covered
        (live addresses outside the new pool have host routes by then); blocking, like route()."""
        from pyroute2 import IPRoute

        keep = _cover(new)
        try:
            with IPRoute() as ipr:
                index = ipr.link_lookup(ifname=self.name)[0]
                for network in keep:
                    ipr.route("replace", dst=network, oif=index)
                for network in set(_cover(old)) - set(keep):
                    ipr.route("del", dst=network, oif=index)
        except Exception as err:  # noqa: BLE001 - pyroute2 raises several kinds; the sessions go on
            log.warning("fixup: pool routes via %s not updated: %s", self.name, err)
            return
        log.info("fixup: pool %s-%s routed to %s", new[0], new[1], self.name)

    def route(self, address: str, add: bool) -> None:
        """A host route to the device for a client address outside the pool (a AAA server's
        Framed-IP-Address); blocking (pyroute2), so the event loop runs it in a thread."""
        from pyroute2 import IPRoute

        try:
            with IPRoute() as ipr:
                index = ipr.link_lookup(ifname=self.name)[0]
                ipr.route("replace" if add else "del", dst=f"{address}/32", oif=index)
        except Exception as err:  # noqa: BLE001 - pyroute2 raises several kinds; the call goes on
            log.warning("fixup: route %s %s via %s failed: %s", "to" if add else "removal for", address, self.name, err)

    def read(self) -> bytes | None:
        """One IP packet from the kernel, or None when none is waiting."""
        try:
            return os.read(self.fd, 65535)
        except BlockingIOError:
            return None

    def write(self, packet: bytes) -> None:
        """One IP packet from a client into the kernel; a full queue drops it (like a link)."""
        try:
            os.write(self.fd, packet)
        except (BlockingIOError, OSError) as err:
            log.debug("TUN write dropped: %s", err)

    def close(self) -> None:
        """Closing the descriptor removes the (non-persistent) device and its routes."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _cover(pool: tuple[IPv4Address, IPv4Address]) -> list[str]:
    """The smallest list of CIDR blocks covering the pool range."""
    from ipaddress import summarize_address_range

    return [str(net) for net in summarize_address_range(pool[0], pool[1])]
