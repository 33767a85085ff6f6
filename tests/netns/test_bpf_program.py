"""The eBPF GRE program (bpf/fixup_gre.bpf.c, issue 13) on crafted packets through
BPF_PROG_TEST_RUN, in a throw-away namespace whose two veth interfaces, routes and permanent
neighbours give bpf_fib_lookup its answers: a good call in each direction is rewritten (address,
Call ID, TTL, checksum, MACs) and redirected; everything it does not handle goes up the stack
(TC_ACT_OK) byte for byte unchanged.  Skipped, with the reason, where the kernel refuses BPF."""
from __future__ import annotations

import json
import struct
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from fixup.io.pat import gre_bpf
from fixup.lab.topology import delete_namespace
from fixup.wire.ip import internet_checksum

pytestmark = pytest.mark.netns

RUNNER = Path(__file__).with_name("bpf_vectors.py")
PAT, SERVER, CLIENT = "192.0.2.1", "192.0.2.10", "10.99.1.10"
SERVER_MAC, CLIENT_MAC = "02:00:00:00:02:10", "02:00:00:00:01:10"
TC_ACT_OK, TC_ACT_REDIRECT = 0, 7
TRANSLATED, ORIGINAL, SERVER_CALL_ID = 0x1234, 0, 100


def ipv4(src: str, dst: str, payload: bytes, *, ttl: int = 64, proto: int = 47, frag: int = 0x4000,
         options: bytes = b"") -> bytes:
    ihl = 5 + len(options) // 4
    head = bytearray(struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 4 * ihl + len(payload), 7, frag, ttl, proto, 0,
                                 bytes(map(int, src.split("."))), bytes(map(int, dst.split(".")))) + options)
    head[10:12] = internet_checksum(bytes(head)).to_bytes(2, "big")
    return bytes(head) + payload


def gre(call_id: int, payload: bytes = b"ppp-frame", *, flags: int = 0x3001, proto: int = 0x880B) -> bytes:
    """RFC 2637 section 4.1: K and S set, version 1, Key = payload length + Call ID, Sequence."""
    return struct.pack("!HHHHI", flags, proto, len(payload), call_id, 1) + payload


def frame(packet: bytes) -> bytes:
    return b"\x02\xaa\xaa\xaa\xaa\xaa" + b"\x02\xbb\xbb\xbb\xbb\xbb" + b"\x08\x00" + packet


VECTORS = [
    ("in-good", "out0", frame(ipv4(SERVER, PAT, gre(TRANSLATED)))),
    ("out-good", "in0", frame(ipv4(CLIENT, SERVER, gre(SERVER_CALL_ID)))),
    ("in-unknown-call", "out0", frame(ipv4(SERVER, PAT, gre(0xBEEF)))),
    ("out-unknown-call", "in0", frame(ipv4(CLIENT, SERVER, gre(0xBEEF)))),
    ("in-expired", "out0", frame(ipv4("192.0.2.20", PAT, gre(TRANSLATED)))),
    ("short", "out0", frame(ipv4(SERVER, PAT, gre(TRANSLATED))[:26])),
    ("fragment", "out0", frame(ipv4(SERVER, PAT, gre(TRANSLATED), frag=0x2000))),
    ("gre-v0", "out0", frame(ipv4(SERVER, PAT, gre(TRANSLATED, flags=0x2000)))),
    ("not-ppp", "out0", frame(ipv4(SERVER, PAT, gre(TRANSLATED, proto=0x0800)))),
    ("ip-options", "out0", frame(ipv4(SERVER, PAT, gre(TRANSLATED), options=b"\x01\x01\x01\x00"))),
    ("ttl-1", "out0", frame(ipv4(SERVER, PAT, gre(TRANSLATED), ttl=1))),
    ("udp", "out0", frame(ipv4(SERVER, PAT, b"\x00" * 16, proto=17))),
    ("no-route", "in0", frame(ipv4(CLIENT, "203.0.113.9", gre(SERVER_CALL_ID)))),
    ("bigger-than-the-mtu", "out0", frame(ipv4(SERVER, PAT, gre(TRANSLATED, b"x" * 1400)))),  # in0's MTU is 1300
]


@pytest.fixture(scope="module")
def results(netns_ready: None) -> dict:
    probe = f"/sys/fs/bpf/fxt-probe-{uuid.uuid4().hex[:6]}"
    reason = gre_bpf.unavailable(probe)
    gre_bpf.remove_pins(probe)
    if reason is not None:
        pytest.skip(f"the kernel or toolchain refuses the eBPF path here: {reason}")
    ns = f"fxt-bpf-{uuid.uuid4().hex[:6]}"
    pins = f"/sys/fs/bpf/{ns}"
    script = [
        f"ip netns add {ns}",
        f"ip -n {ns} link set lo up",
        f"ip -n {ns} link add in0 type veth peer name in0p", f"ip -n {ns} link add out0 type veth peer name out0p",
        f"ip -n {ns} link set in0p up", f"ip -n {ns} link set out0p up",
        f"ip -n {ns} addr add 10.99.1.1/24 dev in0", f"ip -n {ns} addr add {PAT}/24 dev out0",
        f"ip -n {ns} link set in0 mtu 1300", f"ip -n {ns} link set in0 up", f"ip -n {ns} link set out0 up",
        f"ip -n {ns} neigh add {CLIENT} lladdr {CLIENT_MAC} dev in0 nud permanent",
        f"ip -n {ns} neigh add {SERVER} lladdr {SERVER_MAC} dev out0 nud permanent",
        f"ip netns exec {ns} sysctl -qw net.ipv4.ip_forward=1",
    ]
    try:
        for line in script:
            subprocess.run(line.split(), check=True, capture_output=True, timeout=30)
        calls = {"pat": PAT, "calls": [[CLIENT, SERVER, TRANSLATED, ORIGINAL, SERVER_CALL_ID],
                                       [CLIENT, "203.0.113.9", 0x2222, 5, SERVER_CALL_ID]],  # a server with no route
                 "expired": [CLIENT, "192.0.2.20", TRANSLATED, ORIGINAL, 7]}
        done = subprocess.run(["ip", "netns", "exec", ns, sys.executable, str(RUNNER), str(gre_bpf.OBJECT), pins,
                               json.dumps([{"name": n, "dev": d, "packet": p.hex()} for n, d, p in VECTORS]),
                               json.dumps(calls)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        lines = [json.loads(line) for line in done.stdout.splitlines()]
    finally:
        delete_namespace(ns)
        gre_bpf.remove_pins(pins)
    *packets, summary = lines
    return {"packets": {p["name"]: (p["retval"], bytes.fromhex(p["out"])) for p in packets}, **summary}


def sent(name: str) -> bytes:
    return next(p for n, _d, p in VECTORS if n == name)


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def test_a_good_inbound_packet_is_translated_and_redirected(results: dict) -> None:
    retval, out = results["packets"]["in-good"]
    assert retval == TC_ACT_REDIRECT
    ip = out[14:34]
    assert out[:6] == mac(CLIENT_MAC)  # the neighbour's address, from bpf_fib_lookup
    assert ip[16:20] == bytes([10, 99, 1, 10]) and ip[12:16] == bytes([192, 0, 2, 10])
    assert ip[8] == 63 and internet_checksum(ip) == 0  # TTL decremented, checksum right (RFC 1624)
    assert out[34 + 6:34 + 8] == ORIGINAL.to_bytes(2, "big")  # the client's own Call ID
    assert out[34 + 8:] == sent("in-good")[34 + 8:]


def test_a_good_outbound_packet_leaves_from_the_pat_address(results: dict) -> None:
    retval, out = results["packets"]["out-good"]
    assert retval == TC_ACT_REDIRECT
    ip = out[14:34]
    assert out[:6] == mac(SERVER_MAC)
    assert ip[12:16] == bytes([192, 0, 2, 1]) and ip[8] == 63 and internet_checksum(ip) == 0
    assert out[34:] == sent("out-good")[34:]  # the server's Call ID is never changed


@pytest.mark.parametrize("name", [n for n, _d, _p in VECTORS if not n.endswith("-good")])
def test_what_it_does_not_handle_goes_up_the_stack_unchanged(results: dict, name: str) -> None:
    retval, out = results["packets"][name]
    assert retval == TC_ACT_OK
    assert out == sent(name)


def test_counters_per_call_and_per_reason(results: dict) -> None:
    inbound = {tuple(k): tuple(v) for k, v in results["counts"]["in"]}
    outbound = {tuple(k): tuple(v) for k, v in results["counts"]["out"]}
    assert inbound == {(SERVER, TRANSLATED): (1, len(sent("in-good")) - 14)}
    assert outbound == {(CLIENT, SERVER, SERVER_CALL_ID): (1, len(sent("out-good")) - 14)}  # only what it forwarded
    stats = results["stats"]
    assert stats["redirected-in"] == 1 and stats["redirected-out"] == 1
    assert stats["no-call"] == 2 and stats["expired"] == 1 and stats["fragment"] == 1
    assert stats["not-pptp"] == 2 and stats["ip-options"] == 1 and stats["short"] == 1
    assert stats["ttl"] == 1 and stats["no-route"] == 1 and stats["mtu"] == 1
