"""``show vpdn`` layout (PIX 6.x, seed 001_78fc8e2d733fd35b.txt line 76)."""
from __future__ import annotations

import pytest

from fixup.io.vpdn.show import format_vpdn

pytestmark = pytest.mark.unit

SNAPSHOT = {
    "local_address": "172.18.124.152",
    "tunnels": [{"id": 13, "remote_address": "10.44.17.104", "remote_port": 1723, "local_address": "172.18.124.152",
                 "state": "estabd", "since_change": 24.3, "sessions": 1, "packets_sent": 12, "packets_received": 35,
                 "bytes_sent": 394, "bytes_received": 3469}],
    "sessions": [{"call_id": 13, "tunnel_id": 13, "remote_address": "10.44.17.104", "remote_call_id": 32768,
                  "username": "cisco", "state": "up", "since_change": 24.0, "address": "192.168.1.1", "mppe": 40,
                  "packets_sent": 12, "packets_received": 35, "bytes_sent": 394, "bytes_received": 3469,
                  "seq": 13, "ack": 34, "ack_received": 12, "peer_rws": 64, "out_of_order": 0}],
    "pool": {"first": "192.168.1.1", "last": "192.168.1.50", "in_use": 1, "size": 50},
    "max_sessions": 127, "refused": 0, "unknown_gre": 0,
}


def test_layout_follows_pix_show_vpdn():
    text = format_vpdn(SNAPSHOT)
    assert text.startswith("PPTP Tunnel and Session Information (Total tunnels=1 sessions=1)\n")
    for line in ("Tunnel id 13, 1 active sessions", "Tunnel state is estabd, time since event change 24 secs",
                 "remote Internet Address 10.44.17.104, port 1723", "Local Internet Address 172.18.124.152, port 1723",
                 "12 packets sent, 35 received, 394 bytes sent, 3469 received", "Call id 13 is up on tunnel id 13",
                 "Session username is cisco, state is up", "Remote call id is 32768",
                 "Seq 13, Ack 34, Ack_Rcvd 12, peer RWS 64", "0 out of order packets", "MPPE 40 bits"):
        assert line in text


def test_empty():
    assert format_vpdn({}) == "PPTP Tunnel and Session Information (Total tunnels=0 sessions=0)\n"


def test_show_aaa_server_lists_every_host_with_its_counters():
    from fixup.io.vpdn.show import format_aaa

    text = format_aaa({"AuthInbound": {"protocol": "radius", "hosts": [
        {"address": "10.1.1.5", "port": 1812, "requests": 4, "timeouts": 1},
        {"address": "10.1.1.6", "port": 1812, "requests": 1, "timeouts": 0}]}})
    assert text.count("Server Group:    AuthInbound") == 2 and "Server Address:  10.1.1.6" in text
    assert "  requests: 4" in text and "  timeouts: 1" in text
    assert "No AAA server groups" in format_aaa({})
