"""fixup as a systemd service (issue 12 item 4): the unit passes ``systemd-analyze verify``, and
the daemon speaks the notify protocol (READY, WATCHDOG, RELOADING, STOPPING) to a socket the test
holds as ``$NOTIFY_SOCKET`` -- PID 1 here is not systemd, so the test plays the service manager."""
from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixup.io.service import Notifier
from fixup.lab.scenario import Lab
from fixup.lab.topology import Topology

pytestmark = pytest.mark.netns

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "fixup.service"


def test_the_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    fixup = str(Path(sys.executable).parent / "fixup")  # the unit names /usr/local/bin/fixup (make install)
    unit = tmp_path / "fixup.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/fixup", fixup))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [line for line in done.stderr.splitlines() if "fixup.service" in line]
    assert done.returncode == 0 and not problems, done.stderr
    text = UNIT.read_text()
    for needed in ("Type=notify", "WatchdogSec=", "ExecReload=", "Restart=on-failure", "SyslogIdentifier=fixup",
                   "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW", "ProtectSystem=strict", "StateDirectory=fixup",
                   "RuntimeDirectory=fixup", "KillSignal=SIGINT", "RestartKillSignal=SIGTERM"):
        assert needed in text


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """The service manager's end: a datagram socket on a path (the abstract namespace is per
    network namespace, and the daemon runs in the gateway's)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.settimeout(0.5)
    try:
        yield sock, path
    finally:
        sock.close()


def test_an_abstract_notify_socket_is_understood() -> None:
    assert Notifier({"NOTIFY_SOCKET": "@fixup/notify"}).address == "\0fixup/notify"


def messages(sock: socket.socket, until: str, timeout: float = 30) -> list[str]:
    """Notifications until one holding ``until``."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            seen.append(sock.recv(4096).decode())
        except socket.timeout:
            continue
        if until in seen[-1]:
            return seen
    raise AssertionError(f"no {until} within {timeout} s: {seen}")


def test_the_notifier_speaks_sd_notify(manager: tuple[socket.socket, str]) -> None:
    sock, address = manager
    notifier = Notifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "4000000"})
    assert notifier.watchdog == 2.0
    notifier.ready("serving")
    notifier.alive()
    assert messages(sock, "WATCHDOG=1") == ["READY=1\nSTATUS=serving", "WATCHDOG=1"]
    assert Notifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "5", "WATCHDOG_PID": "1"}).watchdog is None
    Notifier({}).ready("nobody listens")  # no socket: nothing, no error


def test_the_daemon_notifies_ready_watchdog_reloading_and_stopping(
        netns_ready: None, manager: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch) -> None:
    sock, address = manager
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    with Topology("fxt-svc-", clients=1) as topo, tempfile.TemporaryDirectory(prefix="fixup-svc-") as work:
        lab = Lab(topo, work)
        lab.start_daemon()
        try:
            first = messages(sock, "READY=1")
            assert "STATUS=fixup: PPTP fixup on ports 1723" in first[-1]
            assert "WATCHDOG=1" in "".join(messages(sock, "WATCHDOG=1", 5))  # every half second here
            assert lab.daemon is not None
            lab.daemon.send_signal(signal.SIGHUP)
            reload = messages(sock, "STATUS=reload")
            assert any(m.startswith("RELOADING=1\nMONOTONIC_USEC=") for m in reload), reload
            assert "READY=1" in reload[-1] and "reload done" in reload[-1]
        finally:
            status, left = lab.stop_all()
        assert "STOPPING=1" in "".join(messages(sock, "STOPPING=1", 5))
        assert status == 0 and left == []
