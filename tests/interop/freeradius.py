"""A real FreeRADIUS 3 (Debian ``freeradius``) for the RADIUS interop tests: its own small
configuration in a temporary directory, listening on 127.0.0.1 only, on two free UDP ports
(authentication and accounting), with modules pap, chap, mschap, files and detail.

Nothing under /etc is touched: the configuration is written from the templates below (the
module settings are the ones of Debian's /etc/freeradius/3.0/mods-available, reduced to
what the tests need).  ``-X`` runs the server in the foreground, single-threaded, logging
every request, so a failing test can show the tail of its log.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from pyrad import packet as rp

from fixup.proto.aaa.radius_attributes import dictionary

FREERADIUS = "/usr/sbin/freeradius"
SECRET = b"fixup-interop-secret"
READY_TIMEOUT = 15.0

RADIUSD_CONF = """\
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = {root}
sbindir = /usr/sbin
logdir = {root}/log
raddbdir = {root}
radacctdir = {root}/radacct
name = freeradius
confdir = {root}
modconfdir = {root}/mods-config
run_dir = {root}/run
db_dir = {root}
libdir = /usr/lib/freeradius
pidfile = {root}/run/freeradius.pid
max_request_time = 30
cleanup_delay = 0
max_requests = 1024
hostname_lookups = no

log {{
    destination = files
    file = {root}/log/radius.log
    auth = yes
    auth_badpass = yes
    auth_goodpass = no
}}

security {{
    allow_core_dumps = no
    max_attributes = 200
    reject_delay = 0
    status_server = yes
    allow_vulnerable_openssl = yes
}}

thread pool {{
    start_servers = 1
    max_servers = 4
    min_spare_servers = 1
    max_spare_servers = 2
    max_requests_per_server = 0
}}

client nas {{
    ipaddr = {client}
    proto = udp
    secret = "{secret}"
    require_message_authenticator = yes
    nas_type = other
}}

modules {{
    pap {{
        normalise = yes
    }}
    chap {{
    }}
    mschap {{
        use_mppe = {use_mppe}
        require_encryption = no
        require_strong = no
        with_ntdomain_hack = yes
    }}
    files {{
        filename = {root}/users
    }}
    detail {{
        filename = {root}/radacct/detail
        escape_filenames = no
        permissions = 0600
        header = "%t"
    }}
}}

instantiate {{
}}

policy {{
}}

server default {{
    listen {{
        type = auth
        ipaddr = {address}
        port = {auth_port}
    }}
    listen {{
        type = acct
        ipaddr = {address}
        port = {acct_port}
    }}
    authorize {{
        chap
        mschap
        files
        pap
    }}
    authenticate {{
        Auth-Type PAP {{
            pap
        }}
        Auth-Type CHAP {{
            chap
        }}
        Auth-Type MS-CHAP {{
            mschap
        }}
    }}
    preacct {{
    }}
    accounting {{
        detail
    }}
    post-auth {{
{post_auth}
    }}
}}
"""


@dataclass
class FreeRadius:
    """One running server: where it listens, its log and the detail (accounting) file."""

    root: Path
    auth_port: int
    acct_port: int
    process: subprocess.Popen[bytes]
    secret: bytes = SECRET

    @property
    def log_path(self) -> Path:
        return self.root / "freeradius-X.log"

    @property
    def detail_path(self) -> Path:
        return self.root / "radacct" / "detail"

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as err:
            return f"(no log: {err})"
        return "\n".join(text.splitlines()[-lines:])

    def detail_records(self) -> list[dict[str, str]]:
        """The accounting records of the detail file: one dict per record, attribute name
        -> value as FreeRADIUS wrote it (quotes removed)."""
        if not self.detail_path.exists():
            return []
        records: list[dict[str, str]] = []
        for block in re.split(r"\n\s*\n", self.detail_path.read_text(errors="replace")):
            pairs = [line.strip().split(" = ", 1) for line in block.splitlines()[1:] if " = " in line]
            if pairs:
                records.append({name: value.strip('"') for name, value in pairs})
        return records

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def unavailable_reason() -> str | None:
    if not os.path.exists(FREERADIUS):
        return f"FreeRADIUS is not installed ({FREERADIUS} missing; apt-get install freeradius)"
    return None


def free_udp_ports(count: int) -> list[int]:
    """Ports nothing listens on right now (the kernel's choice, so they are high ones)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


# Strips the MPPE keys from the accept of user "nokeys" (the server of seed 001 line 148 that
# authenticates MS-CHAP but returns no keys), so one server plays both parts.
STRIP_KEYS_OF_NOKEYS = """\
        if (&User-Name == "nokeys") {
            update reply {
                &MS-MPPE-Send-Key !* ANY
                &MS-MPPE-Recv-Key !* ANY
                &MS-CHAP-MPPE-Keys !* ANY
            }
        }"""


def write_config(root: Path, users: str, *, use_mppe: bool = True, address: str = "127.0.0.1",
                 client: str = "127.0.0.1", auth_port: int = 1812, acct_port: int = 1813,
                 post_auth: str = "") -> None:
    """The whole configuration under ``root`` (absolute paths inside): listening on ``address``,
    answering the NAS at ``client``."""
    for sub in ("log", "run", "radacct", "mods-config"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "radiusd.conf").write_text(RADIUSD_CONF.format(
        root=root, secret=SECRET.decode(), use_mppe="yes" if use_mppe else "no", address=address, client=client,
        auth_port=auth_port, acct_port=acct_port, post_auth=post_auth))
    (root / "users").write_text(users)
    (root / "dictionary").write_text("# local attributes: none (the server's own come from /usr/share/freeradius)\n")


def start(root: Path, users: str, *, use_mppe: bool = True, netns: str | None = None,
          client: str = "127.0.0.1", post_auth: str = "") -> FreeRadius:
    """Write a configuration under ``root`` and run FreeRADIUS (inside network namespace
    ``netns`` when given) until it is ready: it answers a Status-Server (RFC 5997) on its
    authentication port, or, in a namespace, its log says so.  Raises RuntimeError with the
    log's tail when it does not come up."""
    auth_port, acct_port = free_udp_ports(2) if netns is None else (1812, 1813)
    write_config(root, users, use_mppe=use_mppe, client=client, auth_port=auth_port, acct_port=acct_port,
                 post_auth=post_auth)
    log = (root / "freeradius-X.log").open("wb")
    prefix = ["ip", "netns", "exec", netns] if netns else []
    process = subprocess.Popen([*prefix, FREERADIUS, "-X", "-d", str(root), "-n", "radiusd"],
                               stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    server = FreeRadius(root, auth_port, acct_port, process)
    try:
        _wait_ready(server) if netns is None else _wait_logged_ready(server)
    except RuntimeError:
        server.stop()
        raise
    return server


def _wait_logged_ready(server: FreeRadius) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"FreeRADIUS exited with {server.process.returncode}:\n{server.log_tail()}")
        if "Ready to process requests" in server.log_tail(5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"FreeRADIUS not ready after {READY_TIMEOUT:.0f} s:\n{server.log_tail()}")


def _status_server() -> bytes:
    """RFC 5997 section 3: Status-Server with a Message-Authenticator."""
    request = rp.AuthPacket(code=rp.StatusServer, id=1, secret=SECRET, dict=dictionary())
    request.add_message_authenticator()
    return request.RequestPacket()


def _wait_ready(server: FreeRadius) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.1)
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"FreeRADIUS exited with {server.process.returncode}:\n{server.log_tail()}")
            sock.sendto(_status_server(), ("127.0.0.1", server.auth_port))
            try:
                sock.recv(4096)
                return
            except (TimeoutError, ConnectionRefusedError):
                continue
    raise RuntimeError(f"FreeRADIUS not ready after {READY_TIMEOUT:.0f} s:\n{server.log_tail()}")
