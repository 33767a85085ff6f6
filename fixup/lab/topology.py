"""A throw-away network-namespace topology for the lab and the netns tests.

::

    client ns  <prefix>c0 .. c(N-1)      gateway ns <prefix>gw                server ns <prefix>srv
    eth0 10.99.1.(10+i)/24  --veth--  in<i> ─┐
                                             br-in 10.99.1.1/24
                                             gw-out 192.0.2.1/24  --veth--  srv0 192.0.2.10/24

The clients route everything via 10.99.1.1.  The server has no route to 10.99.1.0/24: it only
knows its link, so everything from the clients must reach it from the PAT address 192.0.2.1.

Everything is built with ``ip`` commands; the namespaces are deleted in ``finally`` (also on
Ctrl-C) and leftovers with the same prefix are removed before building.  This is an I/O tool:
it runs commands as root and must never be imported by :mod:`fixup.wire` or :mod:`fixup.proto`.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

INSIDE_BRIDGE = "br-in"
OUTSIDE_INTERFACE = "gw-out"
SERVER_INTERFACE = "srv0"
CLIENT_INTERFACE = "eth0"
GATEWAY_INSIDE_ADDRESS = "10.99.1.1"
PAT_ADDRESS = "192.0.2.1"
SERVER_ADDRESS = "192.0.2.10"
INSIDE_PREFIX_LENGTH = 24
OUTSIDE_PREFIX_LENGTH = 24

COMMON_SYSCTLS = (
    "net.ipv4.conf.all.rp_filter=0",
    "net.ipv4.conf.default.rp_filter=0",
)
OPTIONAL_SYSCTLS = (
    "net.ipv6.conf.all.disable_ipv6=1",
    "net.ipv6.conf.default.disable_ipv6=1",
)
GATEWAY_OPTIONAL_SYSCTLS = (
    # Bridged (client-to-client) frames must not wander through iptables FORWARD.
    "net.bridge.bridge-nf-call-iptables=0",
    "net.bridge.bridge-nf-call-ip6tables=0",
    "net.bridge.bridge-nf-call-arptables=0",
)


def client_address(index: int) -> str:
    """The inside address of client ``index`` (0-based): 10.99.1.(10+index)."""
    return f"10.99.1.{10 + index}"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one ``ip`` command, capturing its output; raise with stderr on failure."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def list_namespaces() -> list[str]:
    """Names of all named network namespaces (``ip netns list``)."""
    out = ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def namespace_pids(ns: str) -> list[int]:
    """PIDs of the processes living in namespace ``ns``."""
    out = ip("netns", "pids", ns, check=False).stdout
    return [int(word) for word in out.split() if word.isdigit()]


def delete_namespace(ns: str) -> None:
    """Kill what still runs inside ``ns`` (processes this tool started there) and delete it."""
    for pid in namespace_pids(ns):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    ip("netns", "delete", ns, check=False)


def delete_namespaces_with_prefix(prefix: str) -> list[str]:
    """Delete every namespace whose name starts with ``prefix``; return their names."""
    if not prefix:
        raise ValueError("refusing to delete namespaces with an empty prefix")
    doomed = [ns for ns in list_namespaces() if ns.startswith(prefix)]
    for ns in doomed:
        delete_namespace(ns)
    return doomed


class Topology:
    """Context manager building the namespaces described in the module docstring.

    ``keep=True`` leaves the namespaces up on exit (the caller deletes them later with
    :meth:`teardown` or :func:`delete_namespaces_with_prefix`)."""

    def __init__(self, prefix: str, clients: int = 2, *, keep: bool = False) -> None:
        if not prefix or len(prefix) > 40:
            raise ValueError("prefix must be 1..40 characters")
        if not 1 <= clients <= 200:
            raise ValueError("clients must be 1..200")
        self.prefix = prefix
        self.keep = keep
        self.gateway = f"{prefix}gw"
        self.server = f"{prefix}srv"
        self.clients = [f"{prefix}c{i}" for i in range(clients)]
        self.pat_address = PAT_ADDRESS
        self.server_address = SERVER_ADDRESS
        self.gateway_inside_address = GATEWAY_INSIDE_ADDRESS
        self.inside_interfaces = [INSIDE_BRIDGE]
        self.outside_interface = OUTSIDE_INTERFACE
        self.built = False

    # -- public helpers --------------------------------------------------------------

    @property
    def namespaces(self) -> list[str]:
        return [self.gateway, self.server, *self.clients]

    def client_address(self, index: int) -> str:
        return client_address(index)

    def exec(
        self, ns: str, argv: Sequence[str], *, check: bool = False, timeout: float = 60.0, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside namespace ``ns`` and wait; output captured as text by default."""
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(["ip", "netns", "exec", ns, *argv], check=check, timeout=timeout, **kw)

    def popen(self, ns: str, argv: Sequence[str], **kw: Any) -> subprocess.Popen[str]:
        """Start ``argv`` inside namespace ``ns``; stdout/stderr piped as text by default."""
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("text", True)
        return subprocess.Popen(["ip", "netns", "exec", ns, *argv], **kw)

    # -- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> Topology:
        self.build()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.keep:
            self.teardown()

    def build(self) -> None:
        """Remove leftovers with our prefix, then build; on any failure (or Ctrl-C) tear down."""
        delete_namespaces_with_prefix(self.prefix)
        try:
            self._build()
        except BaseException:
            self.teardown()
            raise
        self.built = True

    def teardown(self) -> None:
        """Delete every namespace with our prefix; Ctrl-C / SIGTERM cannot interrupt it halfway."""
        previous = _ignore_stop_signals()
        try:
            delete_namespaces_with_prefix(self.prefix)
            self.built = False
        finally:
            _restore_signals(previous)

    # -- building ----------------------------------------------------------------------

    def _build(self) -> None:
        for ns in self.namespaces:
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
            self._sysctl(ns, COMMON_SYSCTLS)
            self._sysctl(ns, OPTIONAL_SYSCTLS, check=False)
        self._build_gateway()
        for index, ns in enumerate(self.clients):
            self._attach_client(index, ns)
        self._build_outside()

    def _build_gateway(self) -> None:
        gw = self.gateway
        self._sysctl(gw, ("net.ipv4.ip_forward=1",))
        self._sysctl(gw, GATEWAY_OPTIONAL_SYSCTLS, check=False)
        ip("-n", gw, "link", "add", INSIDE_BRIDGE, "type", "bridge", "stp_state", "0")
        ip("-n", gw, "addr", "add", f"{GATEWAY_INSIDE_ADDRESS}/{INSIDE_PREFIX_LENGTH}", "dev", INSIDE_BRIDGE)
        ip("-n", gw, "link", "set", INSIDE_BRIDGE, "up")

    def _attach_client(self, index: int, ns: str) -> None:
        port = f"in{index}"
        ip("-n", self.gateway, "link", "add", port, "type", "veth", "peer", "name", CLIENT_INTERFACE, "netns", ns)
        ip("-n", self.gateway, "link", "set", port, "master", INSIDE_BRIDGE)
        ip("-n", self.gateway, "link", "set", port, "up")
        ip("-n", ns, "addr", "add", f"{client_address(index)}/{INSIDE_PREFIX_LENGTH}", "dev", CLIENT_INTERFACE)
        ip("-n", ns, "link", "set", CLIENT_INTERFACE, "up")
        ip("-n", ns, "route", "add", "default", "via", GATEWAY_INSIDE_ADDRESS)

    def _build_outside(self) -> None:
        gw, srv = self.gateway, self.server
        ip("-n", gw, "link", "add", OUTSIDE_INTERFACE, "type", "veth", "peer", "name", SERVER_INTERFACE, "netns", srv)
        ip("-n", gw, "addr", "add", f"{PAT_ADDRESS}/{OUTSIDE_PREFIX_LENGTH}", "dev", OUTSIDE_INTERFACE)
        ip("-n", gw, "link", "set", OUTSIDE_INTERFACE, "up")
        ip("-n", srv, "addr", "add", f"{SERVER_ADDRESS}/{OUTSIDE_PREFIX_LENGTH}", "dev", SERVER_INTERFACE)
        ip("-n", srv, "link", "set", SERVER_INTERFACE, "up")

    def _sysctl(self, ns: str, settings: Sequence[str], *, check: bool = True) -> None:
        result = self.exec(ns, ["sysctl", "-q", "-w", *settings])
        if check and result.returncode != 0:
            raise RuntimeError(f"sysctl {' '.join(settings)} in {ns} failed: {result.stderr.strip()}")

    def wait_reachable(self, ns: str, address: str, timeout: float = 5.0) -> bool:
        """ICMP-echo ``address`` from ``ns`` until it answers (links up, neighbours resolved).
        No ``ping`` binary is assumed: a few lines of Python send the echo from a raw socket."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            probe = self.exec(ns, [sys.executable, "-c", _PING_SCRIPT, address], timeout=timeout + 5)
            if probe.returncode == 0:
                return True
            time.sleep(0.1)
        return False


_PING_SCRIPT = r"""
import socket, struct, sys, time
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF); s += s >> 16
    return ~s & 0xFFFF
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(1.0)
body = struct.pack("!BBHHH", 8, 0, 0, 0x4c41, 1) + b"fixup-lab"
s.sendto(body[:2] + struct.pack("!H", csum(body + b"\0")) + body[4:], (sys.argv[1], 0))
end = time.monotonic() + 1.0
while time.monotonic() < end:
    try:
        data, peer = s.recvfrom(2048)
    except OSError:
        break
    ihl = (data[0] & 15) * 4
    if peer[0] == sys.argv[1] and data[ihl] == 0 and data[ihl + 4:ihl + 6] == b"\x4c\x41":
        sys.exit(0)
sys.exit(1)
"""


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _ignore_stop_signals() -> dict[int, Any]:
    """Ignore SIGINT/SIGTERM; return the previous handlers (none outside the main thread)."""
    previous: dict[int, Any] = {}
    for signum in STOP_SIGNALS:
        try:
            previous[signum] = signal.signal(signum, signal.SIG_IGN)
        except ValueError:  # not the main thread: signals go to the main thread anyway
            break
    return previous


def _restore_signals(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def _ignore_sigint() -> Any:
    try:
        return signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        return None


def _restore_sigint(previous: Any) -> None:
    if previous is not None:
        try:
            signal.signal(signal.SIGINT, previous)
        except ValueError:
            pass
