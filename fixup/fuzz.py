"""``fixup fuzz`` / ``make fuzz``: mutated input into every pure entry point (issue 11), counting
inputs per second and reporting any crash with a reproducer.

A *crash* is any exception a target lets escape other than the typed errors it is allowed to
raise (:class:`fixup.errors.BadInput` subclasses, :class:`fixup.errors.PolicyError` for policy
text); the tracker and the PPP session must raise nothing at all.  Mutations are the usual
byte-level ones (bit flips, byte overwrites, truncation, insertion, duplication of a slice) of seed
inputs taken from valid conversations.  Written here rather than with atheris: this runs on the
stock interpreter with no build step, and the targets are plain Python (no native code to guide
coverage in).  ``--inputs N`` per run (split across the targets), ``--seed`` for a repeatable run;
a crash is printed as ``target``, exception and the input in hex, and the exit status is 1.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from fixup.errors import BadInput, PolicyError

Target = Callable[[bytes], None]


@dataclass
class Result:
    name: str
    inputs: int = 0
    seconds: float = 0.0
    crashes: list[tuple[str, bytes]] = field(default_factory=list)


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One to four byte-level mutations of ``data``."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(6)
        at = rng.randrange(len(out) + 1)
        if kind == 0 and out:
            out[min(at, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif kind == 1 and out:
            out[min(at, len(out) - 1)] = rng.randrange(256)
        elif kind == 2:
            del out[at:at + rng.randint(1, 16)]
        elif kind == 3:
            out[at:at] = rng.randbytes(rng.randint(1, 16))
        elif kind == 4 and out:
            start = rng.randrange(len(out))
            out[at:at] = out[start:start + rng.randint(1, 32)]
        else:
            out[at:at + 2] = rng.choice((b"\x00\x00", b"\xff\xff", b"\x7f\xff", b"\x80\x00"))
    return bytes(out)


# -- targets ---------------------------------------------------------------------------------------


def tracker_target() -> tuple[list[bytes], Target]:
    """A whole PAT conversation (SYN to GRE both ways); the input replaces one of its segments."""
    from fixup.proto.pat.config import TrackerConfig
    from fixup.proto.pat.tracker import Tracker
    from fixup.proto.pat.verdict import Direction
    from fixup.wire import pptp_messages as m
    from fixup.wire.gre import GreHeader, build_gre
    from fixup.wire.ip import internet_checksum
    from fixup.wire.pptp import build_message

    pat, client, server = IPv4Address("192.0.2.1"), IPv4Address("10.0.0.5"), IPv4Address("192.0.2.10")

    def ipv4(src: IPv4Address, dst: IPv4Address, proto: int, payload: bytes) -> bytes:
        head = bytearray(b"\x45\x00" + (20 + len(payload)).to_bytes(2, "big") + b"\x00\x00\x40\x00\x40"
                         + bytes([proto]) + b"\x00\x00" + src.packed + dst.packed)
        head[10:12] = internet_checksum(bytes(head)).to_bytes(2, "big")
        return bytes(head) + payload

    def tcp(out: bool, seq: int, ack: int, flags: int, payload: bytes = b"") -> bytes:
        ports = (40000, 1723) if out else (1723, 40000)
        segment = (ports[0].to_bytes(2, "big") + ports[1].to_bytes(2, "big") + seq.to_bytes(4, "big")
                   + ack.to_bytes(4, "big") + b"\x50" + bytes([flags]) + b"\xff\xff\x00\x00\x00\x00" + payload)
        return ipv4(client, server, 6, segment) if out else ipv4(server, pat, 6, segment)

    messages = [(True, m.StartControlConnectionRequest()), (False, m.StartControlConnectionReply()),
                (True, m.OutgoingCallRequest(call_id=0)), (False, m.OutgoingCallReply(call_id=7, peer_call_id=0))]
    conversation = [(True, tcp(True, 999, 0, 0x02)), (False, tcp(False, 4999, 1000, 0x12))]
    seqs = {True: 1000, False: 5000}
    for out, msg in messages:
        data = build_message(msg)
        conversation.append((out, tcp(out, seqs[out], seqs[not out], 0x18, data)))
        seqs[out] += len(data)
    conversation.append((True, ipv4(client, server, 47, build_gre(GreHeader(7, 3, 1, None), b"abc"))))
    conversation.append((False, ipv4(server, pat, 47, build_gre(GreHeader(0, 3, 1, None), b"xyz"))))
    conversation.append((True, tcp(True, seqs[True], seqs[False], 0x11)))
    rng = random.Random(7)

    def run(data: bytes) -> None:
        tracker = Tracker(TrackerConfig(pat_address=pat), randbelow=rng.randrange)
        victim = data[0] % len(conversation) if data else 0
        for index, (out, packet) in enumerate(conversation):
            sent = data[1:] if index == victim else packet
            tracker.handle_packet(sent, Direction.OUTBOUND if out else Direction.INBOUND, 1.0 + index)
        tracker.poll(1000.0)
        tracker.snapshot(1000.0)

    return [bytes([i]) + packet for i, (_out, packet) in enumerate(conversation)], run


def ppp_target() -> tuple[list[bytes], Target]:
    """PPP frames into a dial-in session (LCP, PAP, CHAP, IPCP, CCP, MPPE, IP)."""
    from fixup.policy.loader import parse_policy
    from fixup.proto.auth import VerifyResult
    from fixup.proto.ppp.session import PppSession
    from fixup.proto.vpdn.terminate_config import session_config

    policy = parse_policy("inside: [a]\noutside: b\nterminate:\n  listen: 192.0.2.1\n  pool: 10.1.0.1-10.1.0.9\n"
                          "  encryption: {mppe: auto}\n  users: {u: p}\n").terminate
    assert policy is not None
    config = session_config(policy, IPv4Address("192.0.2.1"))
    seeds = [bytes.fromhex(h) for h in (
        "ff03c021010100140304c0230506deadbeef07020802",  # LCP Configure-Request
        "ff03c02301010009017502703d",  # PAP Authenticate-Request
        "ff03c22302010015100123456789abcdef0123456789abcdef75",  # CHAP Response
        "ff038021010100100306c0a80001810600000000",  # IPCP Configure-Request
        "ff0380fd0101000a120601000001",  # CCP Configure-Request (MPPE)
        "ff0300fd90000102030405060708",  # MPPE data
        "ff030021450000140000000040110000c0a80001c0a80002",  # IP
    )]

    def run(data: bytes) -> None:
        session = PppSession(config, IPv4Address("10.1.0.1"), 0.0, random_bytes=lambda n: bytes(n))
        session.start(0.0)
        for step, frame in enumerate((seeds[0], data, seeds[3], data)):
            session.frame_in(frame, 0.1 * step)
        if session.take_verify_requests():
            session.verify_result(VerifyResult(False), 1.0)
        session.poll(100.0)
        session.take_frames()

    return seeds, run


def mppe_target() -> tuple[list[bytes], Target]:
    from fixup.proto.ppp.mppe import MppeEngine

    seeds = [MppeEngine(bytes(16), bytes(range(16)), 128, stateless).encrypt(b"\x00\x21E\x00abc")
             for stateless in (True, False)]

    def run(data: bytes) -> None:
        for stateless in (True, False):
            engine = MppeEngine(bytes(range(16)), bytes(16), 128, stateless)
            try:
                engine.decrypt(data)
            except BadInput:
                pass

    return seeds, run


def radius_target() -> tuple[list[bytes], Target]:
    """Answers (and strays) into a RADIUS client with one Access-Request outstanding."""
    from fixup.proto.aaa import AuthContext, NasIdentity
    from fixup.proto.aaa.config import RADIUS, AaaGroup, AaaHost
    from fixup.proto.aaa.radius import RadiusClient
    from fixup.proto.auth import VerifyRequest

    group = AaaGroup("R", RADIUS, (AaaHost(IPv4Address("127.0.0.1"), 1812, b"secret", 1.0, 1, 1813),))
    request = VerifyRequest("pap", "user", {"password": b"pw"})
    context = AuthContext(7, "198.51.100.9", "192.0.2.1", "S1")

    def client() -> tuple[RadiusClient, bytes]:
        c = RadiusClient(group, NasIdentity(IPv4Address("192.0.2.1")), random_bytes=lambda n: bytes(n))
        c.authenticate("t", request, context, 0.0)
        (_destination, sent), = c.take_datagrams()
        return c, sent

    _c, sent = client()
    accept = bytes([2]) + sent[1:4] + bytes(16) + sent[20:]  # the request's shape with Access-Accept's code

    def run(data: bytes) -> None:
        c, _sent = client()
        c.datagram_in(("127.0.0.1", 1812), data, 0.5)
        c.datagram_in(("10.9.9.9", 1812), data, 0.6)
        c.poll(10.0)
        c.take_results()
        c.take_events()

    return [sent, accept], run


def restore_target() -> tuple[list[bytes], Target]:
    """Saved state as the restart store holds it (JSON records, issue 12), mutated: the tracker
    must skip what is wrong and keep working -- restore, a control segment, GRE, timeouts."""
    import json

    from fixup.proto.pat.config import TrackerConfig
    from fixup.proto.pat.tracker import Tracker
    from fixup.proto.pat.verdict import Direction

    conversation_seeds, conversation = tracker_target()
    pat = IPv4Address("192.0.2.1")
    donor = Tracker(TrackerConfig(pat_address=pat), randbelow=random.Random(3).randrange)
    for index, seed in enumerate(conversation_seeds[:6]):
        donor.handle_packet(seed[1:], Direction.OUTBOUND if index % 2 == 0 else Direction.INBOUND, 1.0 + index)
    seeds = [json.dumps(donor.export()).encode()]
    probes = [seed[1:] for seed in conversation_seeds[6:]]

    def run(data: bytes) -> None:
        if data[:1] == b"\x01":  # a structured mutation: odd values in the fields of a good record
            records = _mutate_leaves(json.loads(seeds[0]), random.Random(data))
        else:
            try:
                records = json.loads(data.decode("utf-8", "replace"))
            except ValueError:
                return
        tracker = Tracker(TrackerConfig(pat_address=pat), randbelow=random.Random(5).randrange)
        tracker.restore(records if isinstance(records, list) else [records], 10.0)
        for index, packet in enumerate(probes):
            tracker.handle_packet(packet, Direction.OUTBOUND if index % 2 == 0 else Direction.INBOUND, 11.0)
        tracker.take_changes()
        tracker.poll(5000.0)
        tracker.export()

    return seeds + [b"\x01" + bytes([i]) for i in range(8)], run


_ODD_VALUES = (None, -1, 0, 1, 255, 256, 65535, 65536, 2**32, 2**64, 1.5, float("inf"), True, "x", "10.0.0.5",
               "established", [], [0, 0], {}, {"v": 1})


def _mutate_leaves(value: object, rng: random.Random) -> object:
    """Replace a few values anywhere in a JSON document by odd ones."""
    leaves: list[tuple[object, object]] = []

    def walk(node: object) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in list(items):
            leaves.append((node, key))
            walk(child)

    walk(value)
    for _ in range(rng.randint(1, 3)):
        if leaves:
            node, key = rng.choice(leaves)
            node[key] = rng.choice(_ODD_VALUES)  # type: ignore[index]
    return value


def tacacs_target() -> tuple[list[bytes], Target]:
    from fixup.wire import tacacs as wire

    seeds = [bytes.fromhex("c0010201000000010000000c") + bytes(12)]

    def run(data: bytes) -> None:
        try:
            header, body = wire.parse_packet(data, b"key")
            for parse in (wire.parse_start, wire.parse_reply, wire.parse_continue):
                try:
                    parse(body)
                except BadInput:
                    pass
        except BadInput:
            pass

    return seeds, run


def policy_target() -> tuple[list[bytes], Target]:
    from fixup.policy.loader import parse_policy

    seeds = [b"inside: [br-in]\noutside: gw-out\nfixup: {pptp: {ports: [1723], gre: kernel, timeouts: {call_idle: 600}}}\n"
             b"terminate:\n  listen: 192.0.2.1\n  pool: 10.1.0.1-10.1.0.9\n  users: {u: p}\n"
             b"  encryption: {mppe: auto, required: false}\n"]

    def run(data: bytes) -> None:
        try:
            parse_policy(data.decode("utf-8", "replace"), "fuzz.yaml")
        except PolicyError:
            pass

    return seeds, run


TARGETS: dict[str, Callable[[], tuple[list[bytes], Target]]] = {
    "tracker": tracker_target, "ppp": ppp_target, "mppe": mppe_target, "radius": radius_target,
    "tacacs": tacacs_target, "policy": policy_target, "restore": restore_target,
}


def fuzz(name: str, inputs: int, seed: int) -> Result:
    seeds, target = TARGETS[name]()
    rng = random.Random(seed)
    result = Result(name)
    started = time.perf_counter()
    for n in range(inputs):
        data = mutate(rng, rng.choice(seeds)) if n % 16 else rng.randbytes(rng.randint(0, 64))
        try:
            target(data)
        except Exception:  # noqa: BLE001 - what a fuzzer is for
            if len(result.crashes) < 5:
                result.crashes.append((traceback.format_exc(limit=3), data))
            else:
                break
        result.inputs += 1
    result.seconds = time.perf_counter() - started
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fixup fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=1_000_000, help="inputs in all, split across the targets")
    parser.add_argument("--seed", type=int, default=1723)
    parser.add_argument("--target", action="append", choices=sorted(TARGETS), help="only these (repeatable)")
    args = parser.parse_args(argv)
    names = args.target or list(TARGETS)
    total, crashed = 0, False
    for name in names:
        result = fuzz(name, max(1, args.inputs // len(names)), args.seed)
        total += result.inputs
        rate = result.inputs / result.seconds if result.seconds else 0.0
        print(f"fuzz {name:8s} {result.inputs:>10,} inputs  {rate:>9,.0f}/s  {len(result.crashes)} crash(es)", flush=True)
        for trace, data in result.crashes:
            crashed = True
            print(f"  CRASH in {name}: input {data.hex()}\n{trace}", flush=True)
    print(f"fuzz: {total:,} inputs, {'crashes found' if crashed else 'no crash'}")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
