"""The daemon as a systemd service (issue 12 item 4): the ``sd_notify`` protocol, written here
in a few lines rather than taken from a binding (python-systemd needs libsystemd at build time
for one datagram).

``$NOTIFY_SOCKET`` names a datagram socket (``@`` first: the abstract namespace); the daemon
sends ``READY=1`` once its rules are in place and it serves, ``WATCHDOG=1`` every half
``$WATCHDOG_USEC``, ``RELOADING=1`` with ``MONOTONIC_USEC`` around a reload, ``STOPPING=1`` when it
stops, and ``STATUS=`` lines for ``systemctl status``.  Without ``$NOTIFY_SOCKET`` nothing is sent.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger("fixup")


class Notifier:
    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        path = environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + path[1:] if path.startswith("@") else path
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog = int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 and mine else None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *lines: str) -> None:
        """One notification; a socket that is gone is logged, never fatal."""
        if not self.address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as err:
            log.warning("fixup: cannot notify the service manager at %s: %s", self.address.lstrip("\0"), err)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def reloading(self) -> None:
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def alive(self) -> None:
        self.send("WATCHDOG=1")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping: removing the rules")
