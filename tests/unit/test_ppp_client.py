"""The lab's PPP client against the server-side pieces (Lcp, the authenticators with
verify_locally, Ipcp, Ccp, MppeEngine), wired in memory by a tiny test server; and the client's
answers to the PIX's own packets of seed 001_78fc8e2d733fd35b.txt line 134."""
from __future__ import annotations

import random
from collections.abc import Callable
from ipaddress import IPv4Address

import pytest

from fixup.lab.ppp_client import MPPE_WITHOUT_KEYS, NO_COMMON_AUTH, PppClient
from fixup.lab.ppp_client_auth import AUTH_FAILED, MUTUAL_AUTH_FAILED
from fixup.lab.ppp_client_layers import MPPE_REFUSED
from fixup.proto.auth import AUTHENTICATORS, Authenticator, LocalUsers, verify_locally
from fixup.proto.ppp.mppe import MppeEngine, MppeOutOfSync
from fixup.proto.ppp.ccp import MPPE_H, MPPE_L, MPPE_S, Ccp, CcpPolicy, MppeResult
from fixup.proto.ppp.fsm import State
from fixup.proto.ppp.ipcp import Ipcp, IpcpConfig
from fixup.proto.ppp.lcp import Lcp, LcpConfig
from fixup.wire.ppp import Code, ControlPacket, Protocol, build_control, build_frame, parse_control, parse_frame

pytestmark = pytest.mark.unit

SEED = "001_78fc8e2d733fd35b.txt"
SERVER_ADDRESS = IPv4Address("10.9.0.1")
CLIENT_ADDRESS = IPv4Address("10.9.0.20")
DNS = (IPv4Address("10.9.0.53"), IPv4Address("10.9.1.53"))
USERS = {"alice": "Secret-123"}
METHODS = ("pap", "chap", "mschap", "mschap-v2")


def seeded(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


class TestServer:
    """The server side of one call, glued minimally: LCP -> authenticator -> IPCP + CCP, MPPE."""

    __test__ = False

    def __init__(self, *, auth_methods: tuple[str, ...] = ("mschap-v2",), ccp: CcpPolicy | None = None,
                 users: dict[str, str] | None = None) -> None:
        rng = random.Random(7)
        self.lcp = Lcp(LcpConfig(auth_methods=auth_methods, echo_interval=None), random32=lambda: rng.getrandbits(32))
        self.ipcp = Ipcp(IpcpConfig(local=SERVER_ADDRESS, primary_dns=DNS[0], secondary_dns=DNS[1]), CLIENT_ADDRESS)
        self.ccp = Ccp(ccp or CcpPolicy())
        self.users = LocalUsers(users or USERS)
        self.auth: Authenticator | None = None
        self.engine: MppeEngine | None = None
        self.frames: list[bytes] = []
        self.ip: list[bytes] = []

    def start(self, now: float) -> None:
        self.lcp.up(now)
        self.lcp.open(now)
        self.settle(now)

    def frame_in(self, frame: bytes, now: float) -> None:
        protocol, info = parse_frame(frame)
        if protocol == Protocol.LCP:
            self.lcp.receive(parse_control(info), now)
            if Protocol.CCP in self.lcp.take_rejected_protocols():
                self.ccp.protocol_rejected(now)
        elif protocol in (Protocol.PAP, Protocol.CHAP) and self.auth is not None:
            self.send_auth(self.auth.receive(info, now))
            for request in self.auth.take_verify_requests():
                self.send_auth(self.auth.complete(verify_locally(request, self.users)))
            self.after_auth(now)
        elif protocol in (Protocol.IPCP, Protocol.CCP):
            (self.ipcp if protocol == Protocol.IPCP else self.ccp).receive(parse_control(info), now)
        elif protocol == Protocol.MPPE and self.engine is not None:
            try:
                self.ip.append(self.engine.decrypt(info)[2:])
            except MppeOutOfSync:
                pass
            if self.engine.take_reset_request():
                self.ccp.request_reset()  # RFC 3078 section 8
        elif protocol == Protocol.IP and self.engine is None:
            self.ip.append(info)
        self.settle(now)

    def ip_out(self, packet: bytes) -> None:
        if self.engine is None:
            self.frames.append(build_frame(Protocol.IP, packet))
        else:
            self.frames.append(build_frame(Protocol.MPPE, self.engine.encrypt(b"\x00\x21" + packet)))

    def send_auth(self, packets: list[bytes]) -> None:
        assert self.auth is not None
        protocol = Protocol.PAP if self.auth.method == "pap" else Protocol.CHAP
        self.frames += [build_frame(protocol, info) for info in packets]

    def after_auth(self, now: float) -> None:
        assert self.auth is not None
        if self.auth.outcome == "success" and self.ipcp.state is State.INITIAL:
            for layer in (self.ipcp, self.ccp):
                layer.up(now)
                layer.open(now)
        elif self.auth.outcome == "failure":
            self.lcp.close(now, "Authentication failed")

    def settle(self, now: float) -> None:
        for layer in (self.lcp, self.ipcp, self.ccp):
            self.frames += [build_frame(protocol, info) for protocol, info in layer.take_output()]
        if "this-layer-up" in self.lcp.take_events():
            method = self.lcp.auth_method
            assert method is not None
            self.auth = AUTHENTICATORS[method]()
            self.send_auth(self.auth.start(now))
        for event in self.ccp.take_events():
            if event == "this-layer-up" and self.ccp.mppe is not None:
                assert self.auth is not None and self.auth.keys is not None
                mppe = self.ccp.mppe
                send, receive = self.auth.keys.start_keys(mppe.key_length)
                self.engine = MppeEngine(send, receive, mppe.key_length, mppe.stateless)
            elif event == "reset-request" and self.engine is not None:
                self.engine.on_reset_request()
        if self.ccp.failure is not None and self.ccp.policy.required and self.lcp.opened:
            self.lcp.close(now, "MPPE required")
            self.settle(now)


Tap = Callable[[str, bytes], bytes | None]


def pump(client: PppClient, server: TestServer, now: float = 0.0, tap: Tap | None = None) -> list[bytes]:
    """Move frames both ways until quiet; ``tap(direction, frame)`` may change or drop one.
    Returns every frame the client sent."""
    sent: list[bytes] = []
    for _ in range(200):
        to_server = client.take_frames()
        to_client, server.frames = server.frames, []
        if not to_server and not to_client:
            return sent
        sent += to_server
        for frame in to_server:
            changed = tap("to-server", frame) if tap else frame
            if changed is not None:
                server.frame_in(changed, now)
        for frame in to_client:
            changed = tap("to-client", frame) if tap else frame
            if changed is not None:
                client.frame_in(changed, now)
    raise AssertionError("the exchange does not settle")


def dial(client: PppClient, server: TestServer, tap: Tap | None = None) -> list[bytes]:
    server.start(0.0)
    client.start(0.0)
    sent = pump(client, server, tap=tap)
    for now in (3.0, 6.0, 9.0):  # restart timers: retransmissions and Terminate-Ack waits
        client.poll(now)
        for layer in (server.lcp, server.ipcp, server.ccp):
            layer.poll(now)
        server.settle(now)
        sent += pump(client, server, now, tap)
    return sent


def new_client(method_list: tuple[str, ...] = METHODS, *, password: str = "Secret-123", mppe: str = "auto",
               stateless: bool | None = None) -> PppClient:
    return PppClient("alice", password, auth_methods=method_list, mppe=mppe, stateless=stateless,
                     random_bytes=seeded(3))


def ip_packet(n: int) -> bytes:
    """A small IPv4/UDP-looking packet; only its bytes matter here."""
    body = f"packet {n} ".encode() * 4
    return bytes.fromhex("4500") + (20 + len(body)).to_bytes(2, "big") + bytes(16) + body


def exchange(client: PppClient, server: TestServer, count: int, tap: Tap | None = None) -> list[bytes]:
    """``count`` packets each way; returns the frames the client sent for them."""
    for n in range(count):
        client.ip_out(ip_packet(n), 1.0)
        server.ip_out(ip_packet(1000 + n))
    return pump(client, server, 1.0, tap)


# -- the link comes up with each method ---------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_link_up_with_each_method(method: str) -> None:
    client, server = new_client(), TestServer(auth_methods=(method,))
    dial(client, server)
    assert client.up and client.failure is None
    assert client.auth_method == method and server.auth is not None and server.auth.outcome == "success"
    assert (client.address, client.peer_address, client.dns) == (CLIENT_ADDRESS, SERVER_ADDRESS, DNS)
    assert server.ipcp.peer_address == CLIENT_ADDRESS


@pytest.mark.parametrize("method", ["pap", "chap"])
def test_without_ms_chap_keys_ip_crosses_unencrypted(method: str) -> None:
    """RFC 3079 keys need MS-CHAP: with PAP / CHAP-MD5 an "auto" client refuses MPPE and
    the server, not requiring it, carries IP in clear (protocol 0x0021)."""
    client, server = new_client(), TestServer(auth_methods=(method,))
    dial(client, server)
    assert client.up and client.mppe is None and server.ccp.opened and server.ccp.mppe is None
    frames = exchange(client, server, 3)
    assert [parse_frame(f)[0] for f in frames] == [Protocol.IP] * 3
    assert server.ip == [ip_packet(n) for n in range(3)]
    assert client.take_ip() == [ip_packet(1000 + n) for n in range(3)]


@pytest.mark.parametrize("method", ["pap", "chap"])
def test_required_mppe_without_ms_chap_fails(method: str) -> None:
    client, server = new_client(mppe="require-128"), TestServer(auth_methods=(method,))
    dial(client, server)
    assert client.failure == MPPE_WITHOUT_KEYS and not client.up and client.finished


# -- MPPE ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("stateless", "policy", "expected"), [
    (True, CcpPolicy(allow_40=False, required=True, stateless="always"), MppeResult(MPPE_H | MPPE_S, 128, True)),
    (False, CcpPolicy(allow_40=False, required=True, stateless="never"), MppeResult(MPPE_S, 128, False)),
    (None, CcpPolicy(allow_40=False, required=True, stateless="never"), MppeResult(MPPE_S, 128, False)),
    (None, CcpPolicy(), MppeResult(MPPE_H | MPPE_S, 128, True)),
])
def test_mschap_v2_mppe_128_carries_ip_both_ways(stateless: bool | None, policy: CcpPolicy,
                                                 expected: MppeResult) -> None:
    client = new_client(("mschap-v2",), mppe="require-128", stateless=stateless)
    server = TestServer(ccp=policy)
    dial(client, server)
    assert client.up and client.mppe == server.ccp.mppe == expected
    assert (client.mppe_bits, client.key_length) == (expected.bits, 128)
    count = 300  # past coherency count 0xFF: a stateful key change (RFC 3078 section 7.2)
    frames = exchange(client, server, count)
    assert {parse_frame(f)[0] for f in frames} == {Protocol.MPPE}
    assert all(b"packet" not in frame for frame in frames)
    assert server.ip == [ip_packet(n) for n in range(count)]
    assert client.take_ip() == [ip_packet(1000 + n) for n in range(count)]


@pytest.mark.parametrize(("mode", "bits", "key_length"), [("require-40", MPPE_L, 40), ("require-128", MPPE_S, 128)])
def test_mschap_v1_mppe(mode: str, bits: int, key_length: int) -> None:
    """RFC 3079 section 2: v1 keys, the same both ways; 40-bit from the LAN Manager hash."""
    client, server = new_client(("mschap",), mppe=mode), TestServer(auth_methods=("mschap",))
    dial(client, server)
    assert client.up and client.mppe == server.ccp.mppe == MppeResult(MPPE_H | bits, key_length, True)
    exchange(client, server, 5)
    assert server.ip == [ip_packet(n) for n in range(5)]
    assert client.take_ip() == [ip_packet(1000 + n) for n in range(5)]


def test_stateful_loss_resynchronised_by_reset_request() -> None:
    """RFC 3078 section 8: the client drops packets after a loss, sends a CCP Reset-Request,
    and the server's next (flushed) packet decrypts again."""
    client = new_client(("mschap-v2",), mppe="require-128", stateless=False)
    server = TestServer(ccp=CcpPolicy(stateless="never"))
    dial(client, server)
    exchange(client, server, 2)
    assert len(client.take_ip()) == 2
    lost: list[bytes] = []

    def lose_first(direction: str, frame: bytes) -> bytes | None:
        if direction == "to-client" and parse_frame(frame)[0] == Protocol.MPPE and not lost:
            lost.append(frame)
            return None
        return frame

    sent = exchange(client, server, 2, tap=lose_first)
    assert client.take_ip() == []  # the one after the loss is undecryptable until a flush
    assert client.stats["drop_mppe_out_of_sync"] == 1
    resets = [parse_control(parse_frame(f)[1]).code for f in sent if parse_frame(f)[0] == Protocol.CCP]
    assert resets == [Code.RESET_REQUEST]
    exchange(client, server, 1)
    assert client.take_ip() == [ip_packet(1000)]


def test_lost_reset_request_is_repeated() -> None:
    """RFC 3078 section 8 with the Reset-Request itself lost: while still out of sync, the
    client asks again once RESET_RETRY has passed (pppd repeats it too)."""
    client = new_client(("mschap-v2",), mppe="require-128", stateless=False)
    server = TestServer(ccp=CcpPolicy(stateless="never"))
    dial(client, server)
    dropped: list[str] = []

    def lose_data_then_reset(direction: str, frame: bytes) -> bytes | None:
        protocol = parse_frame(frame)[0]
        if direction == "to-client" and protocol == Protocol.MPPE and not dropped:
            dropped.append("data")
            return None
        if direction == "to-server" and protocol == Protocol.CCP and dropped == ["data"]:
            dropped.append("reset-request")
            return None
        return frame

    for n in range(2):
        server.ip_out(ip_packet(n))
    pump(client, server, 1.0, lose_data_then_reset)
    assert dropped == ["data", "reset-request"] and client.take_ip() == []
    server.ip_out(ip_packet(2))
    sent = pump(client, server, 1.5)  # too early to ask again
    assert not [f for f in sent if parse_frame(f)[0] == Protocol.CCP]
    server.ip_out(ip_packet(3))
    sent = pump(client, server, 2.5)
    assert [parse_control(parse_frame(f)[1]).code for f in sent if parse_frame(f)[0] == Protocol.CCP] == [
        Code.RESET_REQUEST]
    server.ip_out(ip_packet(4))  # flushed after the server's engine saw the Reset-Request
    pump(client, server, 2.5)
    assert client.take_ip() == [ip_packet(4)]


def test_server_reset_request_makes_the_client_flush() -> None:
    """RFC 3078 section 8, the other way: a client packet is lost, the server's engine asks for
    a reset, the client answers Reset-Ack and flushes its next packet (A bit set)."""
    client = new_client(("mschap-v2",), mppe="require-128", stateless=False)
    server = TestServer(ccp=CcpPolicy(stateless="never"))
    dial(client, server)
    lost: list[bytes] = []

    def lose_first(direction: str, frame: bytes) -> bytes | None:
        if direction == "to-server" and parse_frame(frame)[0] == Protocol.MPPE and not lost:
            lost.append(frame)
            return None
        return frame

    for n in range(2):
        client.ip_out(ip_packet(n), 1.0)
    frames = pump(client, server, 1.0, lose_first)
    assert server.ip == [] and server.engine is not None and server.engine.needs_reset
    ccp = [parse_control(parse_frame(f)[1]).code for f in frames if parse_frame(f)[0] == Protocol.CCP]
    assert ccp == [Code.RESET_ACK]  # the answer to the server's Reset-Request
    client.ip_out(ip_packet(7), 2.0)
    (flushed,) = pump(client, server, 2.0)
    assert parse_frame(flushed)[1][0] & 0x80  # the flushed bit (RFC 3078 section 3)
    assert server.ip == [ip_packet(7)]


def test_required_mppe_refused_by_server() -> None:
    client = new_client(("mschap-v2",), mppe="require-128")
    server = TestServer(ccp=CcpPolicy(allow_40=False, allow_128=False))
    dial(client, server)
    assert client.failure == MPPE_REFUSED and not client.up and client.finished


def test_strength_mismatch_fails() -> None:
    client = new_client(("mschap-v2",), mppe="require-40")
    dial(client, TestServer(ccp=CcpPolicy(allow_40=False, required=True)))
    assert client.failure == MPPE_REFUSED


def test_mppe_none_protocol_rejects_ccp() -> None:
    """000_ac39955d34a0daa9.txt lines 140-141: a client without encryption Protocol-Rejects
    CCP; a server not requiring MPPE carries on in clear."""
    client, server = new_client(mppe="none"), TestServer()
    sent = dial(client, server)
    rejects = [parse_control(parse_frame(f)[1]) for f in sent if parse_frame(f)[0] == Protocol.LCP]
    assert any(p.code == Code.PROTOCOL_REJECT and p.data[:2] == b"\x80\xfd" for p in rejects)
    assert client.up and client.mppe is None and server.ccp.state is State.STOPPED


def test_mppe_none_against_server_requiring_it() -> None:
    client, server = new_client(mppe="none"), TestServer(ccp=CcpPolicy(required=True))
    dial(client, server)
    assert not client.up and client.failure == "LCP terminated by peer (MPPE required)"


# -- authentication failures ----------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_wrong_password(method: str) -> None:
    client, server = new_client(password="wrong"), TestServer(auth_methods=(method,))
    dial(client, server)
    assert client.failure == AUTH_FAILED and not client.up and client.finished
    assert server.auth is not None and server.auth.outcome != "success"  # PAP allows retries
    assert server.ipcp.state is State.INITIAL and not server.lcp.opened


def test_wrong_authenticator_response_fails() -> None:
    """RFC 2759 section 8.8: a Success whose S= value is not what the password gives is a
    failed (mutual) authentication."""
    def forge(direction: str, frame: bytes) -> bytes | None:
        protocol, info = parse_frame(frame)
        if direction == "to-client" and protocol == Protocol.CHAP and info[0] == 3:
            packet = parse_control(info)
            forged = b"S=" + b"0" * 40 + packet.data[42:]
            return build_frame(protocol, build_control(ControlPacket(3, packet.identifier, forged)))
        return frame

    client = new_client(("mschap-v2",))
    dial(client, TestServer(), tap=forge)
    assert client.failure == MUTUAL_AUTH_FAILED and not client.up


@pytest.mark.parametrize(("server_methods", "client_methods"), [(("mschap",), ("mschap-v2",)), (("pap",), ())])
def test_no_common_authentication(server_methods: tuple[str, ...], client_methods: tuple[str, ...]) -> None:
    """SEED 001 (Error 732): the PIX asks for MS-CHAP v1, the client allows only v2."""
    client, server = new_client(client_methods), TestServer(auth_methods=server_methods)
    dial(client, server)
    assert client.failure == NO_COMMON_AUTH and client.finished and not server.lcp.opened


def test_client_nak_steers_server_to_a_common_method() -> None:
    """RFC 1661 section 6.2: the server asks CHAP-MD5 first; the client's Nak names MS-CHAP v2."""
    client, server = new_client(("mschap-v2",)), TestServer(auth_methods=("chap", "mschap-v2"))
    dial(client, server)
    assert client.up and client.auth_method == "mschap-v2"


# -- single packets: seed bytes, echo, protocol reject ------------------------------------------


def opened_client(methods: tuple[str, ...] = ("mschap",)) -> PppClient:
    client = new_client(methods)
    client.start(0.0)
    request = parse_control(parse_frame(client.take_frames()[0])[1])
    client.frame_in(build_frame(Protocol.LCP, build_control(ControlPacket(Code.CONFIGURE_ACK, request.identifier,
                                                                          request.data))), 0.0)
    return client


def test_client_acks_the_pix_lcp_request() -> None:
    """SEED line 134: the PIX asks MS-CHAP v1, Magic 0x5a899b23, PFC, ACFC; acked as sent."""
    client = opened_client(("mschap",))
    client.frame_in(bytes.fromhex("ff03c021010100130305c2238005065a899b2307020802"), 0.0)
    assert client.take_frames()[0].hex() == "ff03c021020100130305c2238005065a899b2307020802"
    assert client.phase == "authenticate" and client.auth_method == "mschap"


def test_client_naks_the_pix_lcp_request_for_v2() -> None:
    """SEED line 134 request, client allowing only MS-CHAP v2: Nak with c22381."""
    client = opened_client(("mschap-v2",))
    client.frame_in(bytes.fromhex("ff03c021010100130305c2238005065a899b2307020802"), 0.0)
    assert client.take_frames() == [bytes.fromhex("ff03c02103010009" "0305c22381")]


def test_client_answers_the_pix_ms_chap_challenge() -> None:
    """SEED line 134: Challenge f3686cc47e37ce67 (Identifier 1): a 49-octet Response whose
    NT-Response is RFC 2433's NtChallengeResponse, Use-NT flag 1, Name = user."""
    from fixup.proto.auth.crypto import nt_challenge_response

    client = opened_client(("mschap",))
    client.frame_in(bytes.fromhex("ff03c021010100130305c2238005065a899b2307020802"), 0.0)
    client.take_frames()
    client.frame_in(bytes.fromhex("ff03c2230101000d08f3686cc47e37ce67"), 0.0)
    (response,) = client.take_frames()
    nt = nt_challenge_response(bytes.fromhex("f3686cc47e37ce67"), "Secret-123")
    assert response.hex() == ("ff03c2230201003b" "31" + "00" * 24 + nt.hex() + "01" + b"alice".hex())
    client.frame_in(bytes.fromhex("ff03c22303010004"), 0.0)  # SEED line 134: Success
    assert client.phase == "network"


def test_client_takes_the_pix_ipcp_nak() -> None:
    """SEED line 134: the PIX naks IP-Address 0.0.0.0 with 192.168.1.1 (Identifier 7); the
    client's next request asks for that address."""
    client = new_client()
    client.ipcp.up(0.0)
    client.ipcp.open(0.0)
    (request,) = client.ipcp.take_output()
    assert parse_control(request[1]).data.hex() == "030600000000" "810600000000" "830600000000"
    identifier = parse_control(request[1]).identifier
    client.ipcp.receive(ControlPacket(Code.CONFIGURE_NAK, identifier, bytes.fromhex("0306c0a80101")), 0.0)
    (again,) = client.ipcp.take_output()
    assert parse_control(again[1]).data.hex() == "0306c0a80101" "810600000000" "830600000000"


@pytest.mark.parametrize(("mode", "reply"), [
    ("40", "ff0380fd0201000a120601000020"),  # the PIX's H|L (SEED line 134) acked
    ("require-40", "ff0380fd0201000a120601000020"),
    ("128", "ff0380fd0301000a120601000040"),  # nak'd with H|S
])
def test_client_judges_the_pix_ccp_request(mode: str, reply: str) -> None:
    client = new_client(("mschap-v2",), mppe=mode)
    client.ccp.up(0.0)
    client.ccp.open(0.0)
    client.ccp.take_output()
    client.ccp.receive(parse_control(bytes.fromhex("0101000a120601000020")), 0.0)
    assert [build_frame(p, i).hex() for p, i in client.ccp.take_output()] == [reply]


def test_echo_request_answered_with_magic() -> None:
    client = opened_client()
    client.frame_in(bytes.fromhex("ff03c021010100130305c2238005065a899b2307020802"), 0.0)
    client.take_frames()
    client.frame_in(build_frame(Protocol.LCP, build_control(ControlPacket(Code.ECHO_REQUEST, 9, b"\x5a\x89\x9b\x23"))),
                    1.0)
    (reply,) = client.take_frames()
    packet = parse_control(parse_frame(reply)[1])
    assert (packet.code, packet.identifier) == (Code.ECHO_REPLY, 9)
    assert packet.data == client.lcp.magic.to_bytes(4, "big") and client.lcp.magic != 0


def test_unknown_protocol_rejected_once_lcp_opened() -> None:
    client = opened_client()
    client.frame_in(bytes.fromhex("ff03c021010100130305c2238005065a899b2307020802"), 0.0)
    client.take_frames()
    client.frame_in(build_frame(Protocol.IPV6CP, bytes.fromhex("0101000a010a0000000000000001")[:10]), 0.0)
    (reject,) = client.take_frames()
    packet = parse_control(parse_frame(reject)[1])
    assert packet.code == Code.PROTOCOL_REJECT and packet.data[:2] == b"\x80\x57"


def test_ip_before_up_is_dropped() -> None:
    client = new_client()
    client.start(0.0)
    client.take_frames()
    client.ip_out(ip_packet(0), 0.0)
    assert client.take_frames() == [] and client.stats["drop_not_up"] == 1


def test_close_terminates_lcp() -> None:
    client, server = new_client(("mschap-v2",)), TestServer()
    dial(client, server)
    client.close(10.0)
    pump(client, server, 10.0)
    assert client.finished and client.failure is None and not client.up
    assert server.lcp.peer_reason == "User request"
