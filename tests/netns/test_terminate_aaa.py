"""Local PPTP termination with AAA through the real daemon (issue 6 item 5): the test PPTP client
dials fixup from outside; a REAL FreeRADIUS 3.2 (or the TACACS+ test server) runs on the
gateway's loopback and checks the login, like PIX ``vpdn group 1 client authentication aaa
AuthInbound`` (seed 001 line 57).  MS-CHAP v2 with MPPE-128 keys from RADIUS moves 1 MB to a host
on the inside; the accounting records land in FreeRADIUS's detail file; an accept without MPPE
keys is refused with the PIX's 403110 line (seed 001 line 148)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixup.lab.topology import PAT_ADDRESS, Topology
from tests.interop import freeradius
from tests.netns.test_terminate import INSIDE_HOST, TerminateLab, dial, held_dial, terminate_topology, vpdn

pytestmark = pytest.mark.netns

SECRET = freeradius.SECRET.decode()
TACACS_SERVER = Path(__file__).resolve().parents[1] / "interop" / "tacacs_server.py"
FRAMED = "10.77.0.5"  # outside the pool: fixup routes it to its TUN device for the session
USERS = f"""\
cisco   Cleartext-Password := "cisco"

nokeys  Cleartext-Password := "cisco"

framed  Cleartext-Password := "cisco"
        Framed-IP-Address = {FRAMED}
"""


class AaaLab(TerminateLab):
    """The terminate lab with ``users`` replaced by a AAA server group on 127.0.0.1."""

    def __init__(self, *args: object, group: str, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.group = group

    def policy_text(self) -> str:
        text = super().policy_text().replace("  users: {cisco: cisco}\n", "")
        if self.group == "radius":
            return text + ("  aaa: {authentication: R, accounting: R}\n"
                           f"aaa: {{R: {{protocol: radius, hosts: [{{address: 127.0.0.1, secret: {SECRET}, "
                           "timeout: 2, retries: 1}]}}\n")
        text = text.replace("  authentication: [pap, chap, mschap, mschap-v2]\n", "  authentication: [chap, pap]\n")
        text = text.replace("  encryption: {mppe: auto, required: false}\n", "  encryption: {mppe: none}\n")
        return text + ("  aaa: {authentication: T}\n"
                       f"aaa: {{T: {{protocol: tacacs+, hosts: [{{address: 127.0.0.1, port: 4949, secret: {SECRET}, "
                       "timeout: 2, retries: 1}]}}\n")


def run_lab(topo: Topology, work: str, group: str) -> AaaLab:
    lab = AaaLab(topo, work, clearing_timeout=2.0, group=group)
    lab.start_daemon()
    return lab


def stop_lab(lab: AaaLab) -> None:
    status, left = lab.stop_all()
    assert status == 0, lab.daemon_log()
    assert left == [], f"fixup left rules behind: {left}"


@pytest.fixture(scope="module")
def radius_lab(netns_ready: None) -> Iterator[tuple[AaaLab, freeradius.FreeRadius]]:
    if freeradius.unavailable_reason():
        pytest.skip(freeradius.unavailable_reason())
    with terminate_topology("fxt-aaa-") as topo, tempfile.TemporaryDirectory(prefix="fixup-aaa-") as work:
        server = freeradius.start(Path(work) / "radius", USERS, netns=topo.gateway, client=PAT_ADDRESS,
                                  post_auth=freeradius.STRIP_KEYS_OF_NOKEYS)
        try:
            lab = run_lab(topo, work, "radius")
            try:
                yield lab, server
            finally:
                stop_lab(lab)
        finally:
            server.stop()


def account_of(server: freeradius.FreeRadius, user: str) -> list[dict[str, str]]:
    return [r for r in server.detail_records() if r.get("User-Name") == user]


@pytest.mark.parametrize("auth, mppe", [("mschap-v2", "require-128"), ("mschap", "require-128"), ("chap", "none"),
                                        ("pap", "none")])
def test_radius_login_reaches_the_inside_host(radius_lab, auth: str, mppe: str) -> None:
    lab, server = radius_lab
    before = len(account_of(server, "cisco"))
    result = dial(lab, "--user", "cisco", "--password", "cisco", "--auth", auth, "--mppe", mppe,
                  "--ping", INSIDE_HOST, "--transfer", f"{INSIDE_HOST}:5001", "1000000")
    assert result["ok"], (result, lab.daemon_log(), server.log_tail())
    assert result["ping"]["received"] == result["ping"]["sent"] == 3
    assert result["transfer"] == {"bytes": 1000000, "sha256_ok": True}
    if mppe != "none":
        assert result["mppe_bits"] & 0x40  # RFC 3078 section 2.1 S bit: 128-bit keys, from RADIUS
    assert vpdn(lab)["pool"]["in_use"] == 0
    records = account_of(server, "cisco")[before:]
    assert [r.get("Acct-Status-Type") for r in records] == ["Start", "Stop"], records
    start, stop = records
    assert start["Acct-Session-Id"] == stop["Acct-Session-Id"]
    assert stop["Acct-Terminate-Cause"] == "User-Request"
    assert int(stop["Acct-Input-Octets"]) > 1000000 and int(stop["Acct-Input-Packets"]) > 600
    assert stop["Framed-IP-Address"] == result["address"] and stop["NAS-IP-Address"] == PAT_ADDRESS


def test_a_restart_ends_the_dial_in_session_with_cdn_and_an_admin_reboot_stop(radius_lab) -> None:
    """Issue 12 item 2: PPP and MPPE state cannot outlive the process, so a restart (SIGTERM,
    systemctl restart) ends a dial-in session cleanly -- the client hears the CDN, RADIUS gets
    the Stop with Acct-Terminate-Cause Admin-Reboot -- and the log says so."""
    lab, server = radius_lab
    before = len(account_of(server, "cisco"))
    proc = held_dial(lab, "mschap-v2", "require-128", 60)
    try:
        status, left = lab.stop_daemon(sig=signal.SIGTERM)
        assert status == 0 and left, lab.daemon_log(20)
        assert "dial-in tunnel ended" in lab.daemon_log(20) and "Admin-Reboot" in lab.daemon_log(20)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        lab.start_daemon()
    result = [json.loads(line) for line in out.splitlines() if '"result"' in line][-1]
    assert "disconnected by the server" in (result.get("failure") or ""), result
    assert result["ended_by"][:1] == ["CDN"], result  # the StopCCRQ follows; the dialer may hang up first
    records = account_of(server, "cisco")[before:]
    assert [r.get("Acct-Status-Type") for r in records] == ["Start", "Stop"], records
    assert records[1]["Acct-Terminate-Cause"] == "Admin-Reboot"
    assert vpdn(lab)["tunnels"] == []


def test_radius_wrong_password_is_refused(radius_lab) -> None:
    lab, server = radius_lab
    result = dial(lab, "--user", "cisco", "--password", "nope", "--auth", "mschap-v2", "--mppe", "none")
    assert not result["ok"] and "auth" in (result.get("failure") or "")
    assert vpdn(lab)["pool"]["in_use"] == 0
    assert "aaa authentication failed" in lab.daemon_log(200)


def test_radius_accept_without_mppe_keys_is_refused_like_pix(radius_lab) -> None:
    """Seed 001 line 148: '403110: PPP virtual interface 1, user: cisco missing MPPE key from aaa server'."""
    lab, server = radius_lab
    result = dial(lab, "--user", "nokeys", "--password", "cisco", "--auth", "mschap-v2", "--mppe", "require-128")
    assert not result["ok"] and "auth" in (result.get("failure") or ""), result
    log = lab.daemon_log(200)
    assert "403110: PPP virtual interface" in log and "user: nokeys missing MPPE key from aaa server" in log, log
    snapshot = vpdn(lab)
    assert snapshot["sessions"] == [] and snapshot["pool"]["in_use"] == 0


def test_radius_framed_ip_address_outside_the_pool(radius_lab) -> None:
    lab, server = radius_lab
    result = dial(lab, "--user", "framed", "--password", "cisco", "--auth", "pap", "--mppe", "none",
                  "--ping", INSIDE_HOST)
    assert result["ok"] and result["address"] == FRAMED, (result, lab.daemon_log())
    assert result["ping"]["received"] == 3  # the inside host's answers were routed to the session
    assert f"Framed-IP-Address {FRAMED} outside the pool, routed" in lab.daemon_log(300)


def test_show_aaa_server_counts_the_requests(radius_lab) -> None:
    lab, _server = radius_lab
    text = lab.fixup_cli("show", "aaa-server").stdout
    assert "Server Group:    R" in text and "Server Protocol: radius" in text and "Server Address:  127.0.0.1" in text
    assert "requests:" in text, text


@pytest.fixture(scope="module")
def tacacs_lab(netns_ready: None) -> Iterator[AaaLab]:
    with terminate_topology("fxt-tac-") as topo, tempfile.TemporaryDirectory(prefix="fixup-tac-") as work:
        server = topo.popen(topo.gateway, [sys.executable, str(TACACS_SERVER), "--listen", "127.0.0.1:4949",
                                           "--secret", SECRET, "--user", "cisco:cisco"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            assert server.stdout.readline().strip() == "ready"
            lab = run_lab(topo, work, "tacacs")
            try:
                yield lab
            finally:
                stop_lab(lab)
        finally:
            server.terminate()
            server.wait(5)


@pytest.mark.parametrize("auth", ["chap", "pap"])
def test_tacacs_login_reaches_the_inside_host(tacacs_lab: AaaLab, auth: str) -> None:
    result = dial(tacacs_lab, "--user", "cisco", "--password", "cisco", "--auth", auth, "--mppe", "none",
                  "--ping", INSIDE_HOST)
    assert result["ok"], (result, tacacs_lab.daemon_log())
    assert result["ping"]["received"] == 3


def test_tacacs_wrong_password_is_refused(tacacs_lab: AaaLab) -> None:
    result = dial(tacacs_lab, "--user", "cisco", "--password", "nope", "--auth", "chap", "--mppe", "none")
    assert not result["ok"] and "auth" in (result.get("failure") or "")
    assert "aaa authentication failed" in tacacs_lab.daemon_log(200)
    assert vpdn(tacacs_lab)["pool"]["in_use"] == 0
