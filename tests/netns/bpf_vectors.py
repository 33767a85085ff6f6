"""Run inside a throw-away network namespace by test_bpf_program.py: load the eBPF GRE program
(maps pinned under argv[2]), program one call each way, run crafted packets through
BPF_PROG_TEST_RUN and print one JSON line per packet (return value, packet out) and the counters."""
from __future__ import annotations

import json
import socket
import sys
from ipaddress import IPv4Address

from fixup.io.pat import gre_bpf
from fixup.io.pat.libbpf import test_run

SKB_SIZE = 192  # sizeof(struct __sk_buff)
INGRESS_IFINDEX, IFINDEX = 36, 40  # offsets in struct __sk_buff


def ctx(ifindex: int) -> bytes:
    raw = bytearray(SKB_SIZE)
    raw[INGRESS_IFINDEX:INGRESS_IFINDEX + 4] = ifindex.to_bytes(4, "little")
    raw[IFINDEX:IFINDEX + 4] = ifindex.to_bytes(4, "little")
    return bytes(raw)


def main() -> int:
    vectors = json.loads(sys.argv[3])
    calls = json.loads(sys.argv[4])
    plane = gre_bpf.GreBpf(sys.argv[2], IPv4Address(calls["pat"]), [], lease=60.0)
    plane.attach()  # no interface: only the PAT address goes into the program's configuration
    for call in calls["calls"]:
        plane._add(*call)
    if calls.get("expired"):
        plane.lease = -1.0
        plane._add(*calls["expired"])
    prog = plane.obj.program_fd(gre_bpf.PROGRAM)
    for vector in vectors:
        retval, out, _ns = test_run(prog, bytes.fromhex(vector["packet"]), ctx(socket.if_nametoindex(vector["dev"])))
        print(json.dumps({"name": vector["name"], "retval": retval, "out": out.hex()}))
    inbound, outbound = plane.read_counts()
    print(json.dumps({"counts": {"in": [[list(k), list(v)] for k, v in inbound.items()],
                                 "out": [[list(k), list(v)] for k, v in outbound.items()]},
                      "stats": plane.stats()}))
    plane.close(remove=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
