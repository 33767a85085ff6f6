"""Server-side LCP, IPCP and CCP: the PIX exchanges of the seeds replayed byte for byte, and
in-memory negotiations against small test clients built on the same generic Negotiator."""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixup.errors import BadInput
from fixup.proto.ppp.ccp import (
    MPPE_H,
    MPPE_L,
    MPPE_OPTION,
    MPPE_S,
    NO_COMMON_STRENGTH,
    PEER_REFUSED_MPPE,
    Ccp,
    CcpPolicy,
    MppeResult,
    mppe_option,
)
from fixup.proto.ppp.fsm import Judgement, State, judge_each
from fixup.proto.ppp.ipcp import Ipcp, IpcpConfig
from fixup.proto.ppp.lcp import (
    AUTH_PROTOCOLS,
    NO_AUTH_OVERLAP,
    PEER_NOT_RESPONDING,
    PEER_REFUSED_AUTH,
    Lcp,
    LcpConfig,
    auth_method_name,
)
from fixup.proto.ppp.negotiator import ControlProtocol, Negotiator
from fixup.wire.ppp import (
    Code,
    ControlPacket,
    Option,
    Protocol,
    build_control,
    build_frame,
    parse_control,
    parse_frame,
    parse_options,
)

pytestmark = pytest.mark.unit

SEED = "001_78fc8e2d733fd35b.txt"
Peer = ControlProtocol | Negotiator


def frames(layer: Peer) -> list[str]:
    """Queued output as full PPP frames in hex, as the PIX debug prints them."""
    return [build_frame(protocol, info).hex() for protocol, info in layer.take_output()]


def feed(layer: ControlProtocol, frame_hex: str, now: float = 0.0) -> None:
    protocol, info = parse_frame(bytes.fromhex(frame_hex))
    assert protocol == layer.negotiator.protocol
    layer.receive(parse_control(info), now)


def pump(a: Peer, b: Peer, now: float = 0.0) -> None:
    for _ in range(60):
        moved = False
        for src, dst in ((a, b), (b, a)):
            for _, info in src.take_output():
                dst.receive(parse_control(info), now)
                moved = True
        if not moved:
            return
    raise AssertionError("negotiation does not converge")


def start(layer: Peer, now: float = 0.0) -> Peer:
    layer.up(now)
    layer.open(now)
    return layer


def randoms(*values: int) -> Callable[[], int]:
    """A deterministic Magic-Number source: ``values`` first, then a counter."""
    it = itertools.chain(values, itertools.count(0x10000001))
    return lambda: next(it)


# -- test clients (the Windows side), on the generic Negotiator -------------------------------


class ClientLcp:
    def __init__(self, supported: Iterable[str] = ("mschap-v2",), *, mru: int = 1400, magic: int = 0x447E217E,
                 refuse_auth: bool = False) -> None:
        self.supported = tuple(supported)
        self.refuse_auth = refuse_auth
        self.request = [Option(1, mru.to_bytes(2, "big")), Option(5, magic.to_bytes(4, "big")), Option(7), Option(8),
                        Option(13, b"\x06")]  # Callback, as Windows sends it

    def build_request(self) -> tuple[Option, ...]:
        return tuple(self.request)

    def judge_request(self, options: tuple[Option, ...]) -> tuple[Judgement, tuple[Option, ...]]:
        def judge(option: Option) -> tuple[Judgement, Option]:
            if option.type == 3:
                if self.refuse_auth:
                    return Judgement.REJECT, option
                if auth_method_name(option.data) in self.supported:
                    return Judgement.ACK, option
                return Judgement.NAK, Option(3, AUTH_PROTOCOLS[self.supported[0]])
            return (Judgement.ACK if option.type in (5, 7, 8) else Judgement.REJECT), option
        return judge_each(options, judge)

    def on_ack(self, options: tuple[Option, ...]) -> None: ...

    def on_nak(self, options: tuple[Option, ...]) -> None:
        nak = {o.type: o for o in options}
        self.request = [nak.get(o.type, o) for o in self.request]

    def on_reject(self, options: tuple[Option, ...]) -> None:
        self.request = [o for o in self.request if o not in options]


class ClientIpcp:
    def __init__(self, types: Iterable[int] = (3, 129, 130, 131, 132)) -> None:
        self.values = {kind: IPv4Address(0) for kind in types}

    def build_request(self) -> tuple[Option, ...]:
        return tuple(Option(kind, address.packed) for kind, address in self.values.items())

    def judge_request(self, options: tuple[Option, ...]) -> tuple[Judgement, tuple[Option, ...]]:
        return judge_each(options, lambda o: (Judgement.ACK if o.type == 3 else Judgement.REJECT, o))

    def on_ack(self, options: tuple[Option, ...]) -> None: ...

    def on_nak(self, options: tuple[Option, ...]) -> None:
        self.values.update({o.type: IPv4Address(o.data) for o in options if o.type in self.values})

    def on_reject(self, options: tuple[Option, ...]) -> None:
        for option in options:
            self.values.pop(option.type, None)


class ClientCcp:
    """Offers all it supports (RFC 3078 section 2), then takes a single value from a Nak."""

    def __init__(self, supported: int) -> None:
        self.supported = supported
        self.bits = supported

    def build_request(self) -> tuple[Option, ...]:
        return (mppe_option(self.bits),)

    def judge_request(self, options: tuple[Option, ...]) -> tuple[Judgement, tuple[Option, ...]]:
        def judge(option: Option) -> tuple[Judgement, Option]:
            bits = int.from_bytes(option.data, "big")
            if option.type == MPPE_OPTION and bits & ~self.supported == 0 and bin(bits & 0x60).count("1") == 1:
                return Judgement.ACK, option
            return Judgement.NAK, mppe_option(self.preferred())
        return judge_each(options, judge)

    def preferred(self) -> int:
        strength = MPPE_S if self.supported & MPPE_S else MPPE_L
        return strength | (self.supported & MPPE_H)

    def on_ack(self, options: tuple[Option, ...]) -> None: ...

    def on_nak(self, options: tuple[Option, ...]) -> None:
        for option in options:
            bits = int.from_bytes(option.data, "big")
            if bits & ~self.supported == 0:
                self.bits = bits

    def on_reject(self, options: tuple[Option, ...]) -> None: ...


# -- LCP -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("magic", "expected"), [
    (0x5A899B23, "ff03c021010100130305c2238005065a899b2307020802"),  # SEED line 134
    (0x09894AB4, "ff03c021010100130305c22380050609894ab407020802"),  # SEED line 132
])
def test_our_lcp_request_is_the_pix_one(magic: int, expected: str) -> None:
    config = LcpConfig(auth_methods=("mschap",), request_pfc=True, request_acfc=True)
    lcp = start(Lcp(config, random32=randoms(magic)))
    assert frames(lcp) == [expected]


def test_default_lcp_request_asks_mschap_v2_and_magic() -> None:
    (request,) = start(Lcp(random32=randoms(0x01020304))).take_output()
    assert parse_options(parse_control(request[1]).data) == (Option(3, bytes.fromhex("c22381")),
                                                             Option(5, bytes.fromhex("01020304")))


def test_seed_nt_lcp_exchange_replayed() -> None:
    """SEED line 134: the NT request (Length 44; its Endpoint-Discriminator completed with
    zeros) is rejected for Callback, MRRU and Endpoint-Discriminator; the second request acked."""
    lcp = start(Lcp(LcpConfig(auth_methods=("mschap",), request_pfc=True, request_acfc=True),
                    random32=randoms(0x5A899B23)))
    frames(lcp)
    feed(lcp, "ff03c0210100002c0506447e217e070208020d0306" "1104064e" "131701beb613cb" + "00" * 16)
    (reject,) = frames(lcp)
    assert reject.startswith("ff03c021040000220d03061104064e131701beb613cb")
    feed(lcp, "ff03c021020100130305c2238005065a899b2307020802")
    feed(lcp, "ff03c0210101000e0506447e217e07020802")
    assert frames(lcp) == ["ff03c0210201000e0506447e217e07020802"]
    assert lcp.opened and lcp.take_events() == ["this-layer-up"]
    assert (lcp.auth_method, lcp.magic, lcp.peer_magic, lcp.peer_mru) == ("mschap", 0x5A899B23, 0x447E217E, 1500)
    assert lcp.send_pfc and lcp.send_acfc


def test_seed_win98_request_only_callback_rejected() -> None:
    """SEED line 132: ACCM 0x000a0000, Magic, PFC, ACFC, Callback (Length 23).  The PIX
    rejected ACCM too; we accept it (meaningless on PPTP's synchronous link)."""
    lcp = start(Lcp(random32=randoms(0x09894AB4)))
    frames(lcp)
    feed(lcp, "ff03c021010100170206000a00000506001137210702" "08020d0306")
    assert frames(lcp) == ["ff03c02104010007" "0d0306"]


@pytest.mark.parametrize(("ours", "theirs", "expected"), [
    (("mschap-v2",), ("mschap-v2",), "mschap-v2"),
    (("chap", "mschap", "mschap-v2"), ("mschap-v2",), "mschap-v2"),  # jumps to the peer's suggestion
    (("mschap", "mschap-v2"), ("pap", "mschap-v2"), "mschap-v2"),  # suggestion not ours: next configured
    (("pap",), ("pap",), "pap"),
])
def test_lcp_negotiates_auth_with_client(ours: tuple[str, ...], theirs: tuple[str, ...], expected: str) -> None:
    server = start(Lcp(LcpConfig(auth_methods=ours), random32=randoms(0x5A899B23)))
    client = start(Negotiator(Protocol.LCP, ClientLcp(theirs)))
    pump(server, client)
    assert server.opened and client.opened
    assert server.auth_method == expected
    assert server.peer_mru == 1400 and server.peer_magic == 0x447E217E


def test_lcp_auth_no_overlap_fails() -> None:
    """SEED 001 (Error 732): the PC allows only MS-CHAP v2, the PIX only MS-CHAP v1."""
    server = start(Lcp(LcpConfig(auth_methods=("mschap",))))
    client = start(Negotiator(Protocol.LCP, ClientLcp(("mschap-v2",))))
    pump(server, client)
    assert server.failure == NO_AUTH_OVERLAP
    assert server.state in (State.CLOSING, State.CLOSED) and not client.opened
    assert client.peer_reason == NO_AUTH_OVERLAP


def test_lcp_peer_refusing_authentication_fails() -> None:
    server = start(Lcp())
    pump(server, start(Negotiator(Protocol.LCP, ClientLcp(refuse_auth=True))))
    assert server.failure == PEER_REFUSED_AUTH


def test_lcp_loopback_magic_is_nakd_with_a_new_number() -> None:
    """RFC 1661 section 6.4: our own Magic-Number coming back means a looped-back link."""
    lcp = start(Lcp(random32=randoms(0x11111111, 0x22222222, 0x33333333)))
    frames(lcp)
    lcp.receive(ControlPacket(Code.CONFIGURE_REQUEST, 1, bytes.fromhex("050611111111")), 0.0)
    (nak,) = lcp.take_output()
    assert parse_control(nak[1]) == ControlPacket(Code.CONFIGURE_NAK, 1, bytes.fromhex("050633333333"))
    assert lcp.options.loopbacks == 1
    lcp.poll(3.0)  # the next request carries our new number
    (request,) = lcp.take_output()
    assert Option(5, bytes.fromhex("22222222")) in parse_options(parse_control(request[1]).data)


@pytest.mark.parametrize(("option", "reply_code", "reply"), [
    ("050600000000", Code.CONFIGURE_NAK, None),  # Magic-Number zero: always nak'd
    ("010405dc", Code.CONFIGURE_ACK, "010405dc"),  # MRU 1500
    ("01040640", Code.CONFIGURE_NAK, "010405dc"),  # MRU 1600 -> our max
    ("01040020", Code.CONFIGURE_NAK, "01040040"),  # MRU 32 -> 64
    ("0206ffffffff", Code.CONFIGURE_ACK, "0206ffffffff"),  # ACCM
    ("0304c023", Code.CONFIGURE_REJECT, "0304c023"),  # the client asking us to authenticate
    ("0408c025000003e8", Code.CONFIGURE_REJECT, "0408c025000003e8"),  # Quality-Protocol
    ("050301", Code.CONFIGURE_REJECT, "050301"),  # malformed Magic-Number
])
def test_lcp_judges_peer_options(option: str, reply_code: Code, reply: str | None) -> None:
    lcp = start(Lcp(random32=randoms(0x11111111, 0x22222222)))
    lcp.take_output()
    lcp.receive(ControlPacket(Code.CONFIGURE_REQUEST, 3, bytes.fromhex(option)), 0.0)
    (answer,) = lcp.take_output()
    packet = parse_control(answer[1])
    assert (packet.code, packet.identifier) == (reply_code, 3)
    if reply is not None:
        assert packet.data.hex() == reply
    else:
        assert packet.data[:2] == b"\x05\x06" and packet.data[2:] != bytes(4)


def opened_lcp(echo_interval: float | None = 10.0) -> tuple[Lcp, Negotiator]:
    server = start(Lcp(LcpConfig(echo_interval=echo_interval), random32=randoms(0x5A899B23)))
    client = start(Negotiator(Protocol.LCP, ClientLcp()))
    pump(server, client)
    assert server.opened
    server.take_events()
    return server, client


def test_echo_request_answered_with_our_magic() -> None:
    server, _ = opened_lcp()
    server.receive(ControlPacket(Code.ECHO_REQUEST, 5, bytes.fromhex("447e217e") + b"xy"), 1.0)
    (reply,) = server.take_output()
    assert parse_control(reply[1]) == ControlPacket(Code.ECHO_REPLY, 5, bytes.fromhex("5a899b23") + b"xy")


def test_echo_request_before_opened_is_not_answered() -> None:
    lcp = start(Lcp())
    lcp.take_output()
    lcp.receive(ControlPacket(Code.ECHO_REQUEST, 5, bytes(4)), 0.0)
    assert lcp.take_output() == []


def test_keepalive_echo_and_dead_peer() -> None:
    server, _ = opened_lcp(echo_interval=10.0)
    assert server.next_deadline() == 10.0
    server.poll(10.0)
    (echo,) = server.take_output()
    request = parse_control(echo[1])
    assert (request.code, request.data) == (Code.ECHO_REQUEST, bytes.fromhex("5a899b23"))
    server.receive(ControlPacket(Code.ECHO_REPLY, request.identifier, bytes.fromhex("447e217e")), 10.5)
    now = 10.0
    for _ in range(5):  # five unanswered Echo-Requests ...
        now += 10.0
        server.poll(now)
        assert [parse_control(i).code for _, i in server.take_output()] == [Code.ECHO_REQUEST]
    assert server.opened
    server.poll(now + 10.0)  # ... and the link is declared dead
    assert server.failure == PEER_NOT_RESPONDING
    assert server.take_events() == ["this-layer-down"]
    (terminate,) = server.take_output()
    assert parse_control(terminate[1]).data == PEER_NOT_RESPONDING.encode()


def test_protocol_reject_of_ccp_from_seed() -> None:
    """000_ac39955d34a0daa9.txt lines 140-141: PROTREJ id 3 len 16 protocol CCP."""
    server, _ = opened_lcp()
    server.receive(parse_control(bytes.fromhex("0803001080FD0157000A120601000020")), 1.0)
    assert server.take_rejected_protocols() == [Protocol.CCP]
    assert server.take_rejected_protocols() == []
    assert server.take_events() == ["protocol-rejected"]
    assert server.opened


def test_protocol_reject_of_lcp_is_catastrophic() -> None:
    server, _ = opened_lcp()
    server.receive(ControlPacket(Code.PROTOCOL_REJECT, 1, bytes.fromhex("c021")), 1.0)
    assert server.state is State.STOPPING


def test_reject_protocol_builds_protocol_reject_within_mru() -> None:
    server, _ = opened_lcp()  # peer MRU 1400
    info = server.reject_protocol(Protocol.IPV6CP, bytes(2000))
    packet = parse_control(info)
    assert packet.code == Code.PROTOCOL_REJECT
    assert packet.data[:2] == bytes.fromhex("8057")
    assert len(info) == 1400


def test_unknown_code_rejected_identification_kept() -> None:
    server, _ = opened_lcp()
    # SEED line 134: "ff03c0210c020012447e217e4d5352415356352e3030" (Identification, RFC 1570)
    feed(server, "ff03c0210c020012447e217e4d5352415356352e3030", 1.0)
    assert server.take_output() == [] and server.peer_identification == "MSRASV5.00"
    server.receive(ControlPacket(0x20, 9, b""), 1.0)
    (reject,) = server.take_output()
    assert parse_control(reject[1]).code == Code.CODE_REJECT


def test_peer_terminate_reason_recorded() -> None:
    server, _ = opened_lcp()
    server.receive(ControlPacket(Code.TERMINATE_REQUEST, 4, b"User request"), 1.0)
    assert server.peer_reason == "User request"
    assert server.take_events() == ["this-layer-down"]


# -- IPCP ------------------------------------------------------------------------------------


def test_seed_nt_ipcp_exchange_replayed() -> None:
    """SEED line 134: PIX 172.18.124.152 assigns 192.168.1.1; no DNS/WINS configured."""
    ipcp = start(Ipcp(IpcpConfig(local=IPv4Address("172.18.124.152")), assigned=IPv4Address("192.168.1.1")))
    assert frames(ipcp) == ["ff0380210101000a0306ac127c98"]
    feed(ipcp, "ff03802101050022" + "".join(f"{t:02x}0600000000" for t in (3, 0x81, 0x82, 0x83, 0x84)))
    (reject,) = frames(ipcp)
    assert reject.startswith("ff0380210405001c8106000000008206000000008306")
    feed(ipcp, "ff0380210201000a0306ac127c98")
    feed(ipcp, "ff0380210107000a030600000000")
    assert frames(ipcp) == ["ff0380210307000a0306c0a80101"]
    feed(ipcp, "ff0380210108000a030600000000")
    assert frames(ipcp) == ["ff0380210308000a0306c0a80101"]
    assert ipcp.peer_address is None
    feed(ipcp, "ff0380210109000a0306c0a80101")
    assert frames(ipcp) == ["ff0380210209000a0306c0a80101"]
    assert ipcp.opened and ipcp.peer_address == IPv4Address("192.168.1.1")
    assert ipcp.local_address == IPv4Address("172.18.124.152")


def test_seed_win98_ipcp_exchange_replayed() -> None:
    """SEED line 132: VJ compression rejected with the name servers; then Nak 172.16.1.1."""
    ipcp = start(Ipcp(IpcpConfig(local=IPv4Address("99.99.99.2")), assigned=IPv4Address("172.16.1.1")))
    assert frames(ipcp) == ["ff0380210101000a030663636302"]
    servers = "".join(f"{t:02x}0600000000" for t in (0x81, 0x82, 0x83, 0x84))
    feed(ipcp, "ff03802101010028" "0206002d0f01" "030600000000" + servers)
    (reject,) = frames(ipcp)
    assert reject.startswith("ff038021040100220206002d0f018106000000008206")
    feed(ipcp, "ff03802101020022" "030600000000" + servers)
    (reject,) = frames(ipcp)
    assert reject.startswith("ff0380210402001c8106000000008206000000008306")
    feed(ipcp, "ff0380210201000a030663636302")
    feed(ipcp, "ff0380210103000a030600000000")
    assert frames(ipcp) == ["ff0380210303000a0306ac100101"]
    feed(ipcp, "ff0380210104000a0306ac100101")
    assert frames(ipcp) == ["ff0380210204000a0306ac100101"]
    assert ipcp.peer_address == IPv4Address("172.16.1.1")


def test_ipcp_with_dns_and_wins_against_client() -> None:
    config = IpcpConfig(local=IPv4Address("10.0.0.1"), primary_dns=IPv4Address("10.0.0.53"),
                        secondary_dns=IPv4Address("10.0.1.53"), primary_nbns=IPv4Address("10.0.0.137"))
    server = start(Ipcp(config, assigned=IPv4Address("10.0.0.20")))
    client_options = ClientIpcp()
    client = start(Negotiator(Protocol.IPCP, client_options))
    pump(server, client)
    assert server.opened and client.opened
    assert server.peer_address == IPv4Address("10.0.0.20")
    assert client_options.values == {3: IPv4Address("10.0.0.20"), 129: IPv4Address("10.0.0.53"),
                                     131: IPv4Address("10.0.1.53"), 130: IPv4Address("10.0.0.137")}


@pytest.mark.parametrize(("request_hex", "code", "reply_hex"), [
    ("03060a000005", Code.CONFIGURE_NAK, "03060a000014"),  # the wrong address -> the assigned one
    ("03060a000014", Code.CONFIGURE_ACK, "03060a000014"),
    ("", Code.CONFIGURE_NAK, "03060a000014"),  # no address asked: told the assigned one
    ("0206002d0f01", Code.CONFIGURE_REJECT, "0206002d0f01"),  # IP-Compression-Protocol (VJ)
    ("010a0a0000140a000001", Code.CONFIGURE_REJECT, "010a0a0000140a000001"),  # deprecated IP-Addresses
    ("810600000000", Code.CONFIGURE_REJECT, "810600000000"),  # DNS not configured
])
def test_ipcp_judges_peer_options(request_hex: str, code: Code, reply_hex: str) -> None:
    ipcp = start(Ipcp(IpcpConfig(local=IPv4Address("10.0.0.1")), assigned=IPv4Address("10.0.0.20")))
    ipcp.take_output()
    ipcp.receive(ControlPacket(Code.CONFIGURE_REQUEST, 2, bytes.fromhex(request_hex)), 0.0)
    (answer,) = ipcp.take_output()
    assert parse_control(answer[1]) == ControlPacket(code, 2, bytes.fromhex(reply_hex))


# -- CCP -------------------------------------------------------------------------------------


def test_seed_nt_ccp_exchange_replayed() -> None:
    """SEED line 134: PIX 'ppp encryption mppe 40 required'; the client offers H|C only and
    is nak'd with H|L (stateless 40-bit)."""
    ccp = start(Ccp(CcpPolicy(allow_40=True, allow_128=False, required=True)))
    assert frames(ccp) == ["ff0380fd0101000a120601000020"]
    feed(ccp, "ff0380fd0104000a120601000001")
    assert frames(ccp) == ["ff0380fd0304000a120601000020"]
    feed(ccp, "ff0380fd0201000a120601000020")
    feed(ccp, "ff0380fd0106000a120601000020")
    assert frames(ccp) == ["ff0380fd0206000a120601000020"]
    assert ccp.opened and ccp.take_events() == ["this-layer-up"]
    assert ccp.mppe == MppeResult(MPPE_H | MPPE_L, 40, True)


def test_seed_win98_ccp_without_mppe() -> None:
    """SEED line 132: no MPPE configured: empty request, the client's MPPE and Stac rejected;
    CCP opens empty, then the client terminates it (code 5) and gets its Terminate-Ack."""
    ccp = start(Ccp(CcpPolicy(allow_40=False, allow_128=False)))
    assert frames(ccp) == ["ff0380fd01010004"]
    feed(ccp, "ff0380fd0101000f1206010000011105000104")
    assert frames(ccp) == ["ff0380fd0401000f1206010000011105000104"]
    feed(ccp, "ff0380fd02010004")
    feed(ccp, "ff0380fd01020004")
    assert frames(ccp) == ["ff0380fd02020004"]
    assert ccp.opened and ccp.mppe is None
    ccp.take_events()
    feed(ccp, "ff0380fd05030004")
    assert frames(ccp) == ["ff0380fd06030004"]
    assert ccp.take_events() == ["this-layer-down"]


def test_ccp_reset_request_answered_when_opened() -> None:
    """RFC 1962 section 2.1: Reset-Ack carries the Reset-Request's Identifier."""
    server = start(Ccp())
    pump(server, start(Negotiator(Protocol.CCP, ClientCcp(MPPE_H | MPPE_S))))
    server.take_events()
    server.receive(ControlPacket(Code.RESET_REQUEST, 0x21, b""), 1.0)
    assert frames(server) == ["ff0380fd0f210004"]  # code 15, identifier 0x21
    assert server.take_events() == ["reset-request"]
    server.request_reset()
    (request,) = server.take_output()
    assert parse_control(request[1]).code == Code.RESET_REQUEST


@pytest.mark.parametrize(("policy", "supported", "expected"), [
    (CcpPolicy(), MPPE_H | 0xE0, MppeResult(MPPE_H | MPPE_S, 128, True)),
    (CcpPolicy(stateless="never"), MPPE_H | 0xE0, MppeResult(MPPE_S, 128, False)),
    (CcpPolicy(allow_128=False, stateless="always"), MPPE_H | 0xE0, MppeResult(MPPE_H | MPPE_L, 40, True)),
    (CcpPolicy(), MPPE_L, MppeResult(MPPE_L, 40, False)),
])
def test_ccp_against_client(policy: CcpPolicy, supported: int, expected: MppeResult) -> None:
    server = start(Ccp(policy))
    client = start(Negotiator(Protocol.CCP, ClientCcp(supported)))
    pump(server, client)
    assert server.opened and client.opened
    assert server.mppe == expected


@pytest.mark.parametrize(("offer", "nak_bits"), [
    (MPPE_H | 0xE0 | 0x01, MPPE_H | MPPE_S),  # several strengths: exactly one, + H
    (MPPE_L | MPPE_S, MPPE_S),  # no H offered: none asked (stateless auto)
    (0x01, MPPE_S),  # only MPPC compression: ours
    (0x80, MPPE_S),  # only 56-bit, not allowed: ours
])
def test_ccp_nak_has_one_strength(offer: int, nak_bits: int) -> None:
    ccp = start(Ccp())
    ccp.take_output()
    ccp.receive(ControlPacket(Code.CONFIGURE_REQUEST, 4, b"\x12\x06" + offer.to_bytes(4, "big")), 0.0)
    (answer,) = ccp.take_output()
    assert parse_control(answer[1]) == ControlPacket(Code.CONFIGURE_NAK, 4, b"\x12\x06" + nak_bits.to_bytes(4, "big"))


def test_ccp_no_common_strength_fails() -> None:
    ccp = start(Ccp(CcpPolicy(allow_128=False, required=True)))
    (request,) = ccp.take_output()
    identifier = parse_control(request[1]).identifier
    ccp.receive(ControlPacket(Code.CONFIGURE_NAK, identifier, b"\x12\x06" + MPPE_S.to_bytes(4, "big")), 0.0)
    assert ccp.failure == NO_COMMON_STRENGTH
    assert parse_control(ccp.take_output()[0][1]).code == Code.TERMINATE_REQUEST


def test_ccp_peer_refusing_mppe_fails_when_required() -> None:
    ccp = start(Ccp(CcpPolicy(required=True)))
    (request,) = ccp.take_output()
    packet = parse_control(request[1])
    ccp.receive(ControlPacket(Code.CONFIGURE_REJECT, packet.identifier, packet.data), 0.0)
    assert ccp.failure == PEER_REFUSED_MPPE


def test_ccp_protocol_rejected_surfaces() -> None:
    """000_ac39955d34a0daa9.txt line 141: the client Protocol-Rejects CCP (Error 734 case)."""
    ccp = start(Ccp(CcpPolicy(allow_128=False, required=True)))
    ccp.take_output()
    ccp.protocol_rejected(1.0)
    assert ccp.take_events() == ["ccp-rejected", "this-layer-finished"]
    assert ccp.state is State.STOPPED and ccp.take_output() == []
    assert ccp.failure == "peer rejected protocol 0x80fd"


def test_ccp_reset_request_ignored_unless_opened() -> None:
    ccp = start(Ccp())
    ccp.take_output()
    ccp.receive(ControlPacket(Code.RESET_REQUEST, 1, b""), 0.0)
    assert ccp.take_output() == [] and ccp.take_events() == []


def test_policy_validation() -> None:
    with pytest.raises(ValueError):
        CcpPolicy(stateless="sometimes")
    with pytest.raises(ValueError):
        CcpPolicy(allow_40=False, allow_128=False, required=True)
    with pytest.raises(ValueError):
        LcpConfig(auth_methods=("spap",))


# -- robustness ------------------------------------------------------------------------------

MODEST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _layers() -> list[ControlProtocol]:
    layers: list[ControlProtocol] = [
        Lcp(random32=randoms(0x5A899B23)),
        Ipcp(IpcpConfig(local=IPv4Address("10.0.0.1"), primary_dns=IPv4Address("10.0.0.53")),
             assigned=IPv4Address("10.0.0.20")),
        Ccp(),
    ]
    for layer in layers:
        start(layer)
    return layers


@MODEST
@given(st.lists(st.tuples(st.integers(1, 16), st.integers(0, 3), st.binary(max_size=24)), max_size=12))
def test_random_packets_only_raise_bad_input(packets: list[tuple[int, int, bytes]]) -> None:
    for layer in _layers():
        now = 0.0
        for code, identifier, data in packets:
            now += 1.5
            try:
                layer.receive(parse_control(build_control(ControlPacket(code, identifier, data))), now)
            except BadInput:
                pass
            layer.poll(now)
            for _, info in layer.take_output():
                parse_control(info)  # everything we send parses
