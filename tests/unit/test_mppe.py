"""MPPE engine (RFC 3078) with keys per RFC 3079: vectors from RFC 3079 section 3.5, headers as
in the PIX seed (001_78fc8e2d733fd35b.txt line 134, "PPP Encr/Comp Pkt: 9000bccf...",
"9001f834...": flushed + encrypted, coherency counts 0, 1, ...), and mirrored engines."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fixup.errors import BadMppe
from fixup.proto.auth.crypto import initial_session_key
from fixup.proto.ppp.mppe import MppeEngine, MppeOutOfSync

pytestmark = pytest.mark.unit

h = bytes.fromhex

# RFC 3079 section 3.5.3: the server's send start key; section 3.5.1/3.5.3 "Sample Encrypted
# Message" rc4(SendSessionKey, "test message").  "te" (0x7465) is a valid PPP protocol number.
SERVER_SEND = h("8B7CDC149B993A1BA118CB153F56DCCB")
SERVER_RECV = h("D5F0E9521E3EA9589645E86051C82226")  # the other direction, any 16 octets do
SAMPLE_128 = h("81848317DF68846272FB5ABE")
SAMPLE_40 = h("929137917E5803D668D75898")

MODES = [(bits, stateless) for bits in (40, 128) for stateless in (True, False)]


def pair(bits: int, stateless: bool) -> tuple[MppeEngine, MppeEngine]:
    """Server and client engines: the client's send key is the server's receive key."""
    server = MppeEngine(SERVER_SEND, SERVER_RECV, bits, stateless)
    client = MppeEngine(SERVER_RECV, SERVER_SEND, bits, stateless)
    return server, client


def ip_packet(n: int) -> bytes:
    return b"\x00\x21" + bytes([0x45, 0]) + n.to_bytes(4, "big") + bytes(n % 50)


@pytest.mark.parametrize(("bits", "sample"), [(128, SAMPLE_128), (40, SAMPLE_40)])
def test_first_stateful_packet_uses_rfc3079_session_key(bits: int, sample: bytes) -> None:
    server, client = pair(bits, stateless=False)
    packet = server.encrypt(b"test message")
    assert packet == h("1000") + sample  # D bit, coherency count 0, no key change yet
    assert client.decrypt(packet) == b"test message"


def test_stateless_headers_match_the_seed() -> None:
    server, client = pair(40, stateless=True)
    first, second = server.encrypt(ip_packet(1)), server.encrypt(ip_packet(2))
    assert first[:2] == h("9000") and second[:2] == h("9001")
    # stateless: the key changes before the first packet too (RFC 3078 section 7.1)
    assert first[2:] != MppeEngine(SERVER_SEND, SERVER_RECV, 40, False).encrypt(ip_packet(1))[2:]
    assert client.decrypt(first) == ip_packet(1)
    assert client.decrypt(second) == ip_packet(2)


@pytest.mark.parametrize(("bits", "stateless"), MODES)
def test_round_trip_both_directions_across_rekeys(bits: int, stateless: bool) -> None:
    """600 packets: stateful mode crosses the flag packets 0x0FF and 0x1FF (RFC 3078 7.2)."""
    server, client = pair(bits, stateless)
    for n in range(600):
        packet = server.encrypt(ip_packet(n))
        assert client.decrypt(packet) == ip_packet(n)
        assert server.decrypt(client.encrypt(ip_packet(n + 1))) == ip_packet(n + 1)
        if not stateless:
            flushed = packet[0] & 0x80
            assert bool(flushed) == (n & 0xFF == 0xFF)


def test_stateful_key_changes_on_flag_packet() -> None:
    server, client = pair(128, stateless=False)
    packets = [server.encrypt(ip_packet(n)) for n in range(257)]
    assert packets[255][:2] == h("90ff") and packets[256][:2] == h("1100")
    for n, packet in enumerate(packets):
        assert client.decrypt(packet) == ip_packet(n)


@pytest.mark.parametrize("bits", [40, 128])
def test_stateless_survives_lost_packets(bits: int) -> None:
    server, client = pair(bits, stateless=True)
    packets = [server.encrypt(ip_packet(n)) for n in range(40)]
    for n in (0, 1, 5, 6, 30, 39):  # gaps of 3, 23 and 8 packets
        assert client.decrypt(packets[n]) == ip_packet(n)
    assert not client.needs_reset


def test_stateless_coherency_count_wraps() -> None:
    server, client = pair(40, stateless=True)
    for n in range(4100):
        packet = server.encrypt(ip_packet(n))
        if n % 97 == 0 or n >= 4094:
            assert client.decrypt(packet) == ip_packet(n)
    assert packet[:2] == h("9003")


def test_stateless_late_or_repeated_packet_refused() -> None:
    server, client = pair(128, stateless=True)
    packets = [server.encrypt(ip_packet(n)) for n in range(3)]
    client.decrypt(packets[0])
    client.decrypt(packets[2])
    for stale in (packets[1], packets[2]):
        with pytest.raises(BadMppe):
            client.decrypt(stale)


def test_stateful_loss_then_reset_request_resynchronises() -> None:
    """RFC 3078 section 8.2: loss -> discard state, CCP Reset-Request, flushed packet."""
    server, client = pair(128, stateless=False)
    packets = [server.encrypt(ip_packet(n)) for n in range(5)]
    assert client.decrypt(packets[0]) == ip_packet(0)
    with pytest.raises(MppeOutOfSync) as caught:
        client.decrypt(packets[2])
    assert caught.value.reason == "mppe-out-of-sync"
    assert client.needs_reset
    assert client.take_reset_request() and not client.take_reset_request()
    with pytest.raises(MppeOutOfSync):
        client.decrypt(packets[3])  # not flushed: still discarding
    server.on_reset_request()
    server.on_reset_request()  # a repeated request is answered by one flushed packet
    flushed = server.encrypt(ip_packet(5))
    assert flushed[:2] == h("9005")
    assert client.decrypt(flushed) == ip_packet(5)
    assert not client.needs_reset
    after = server.encrypt(ip_packet(6))
    assert after[:2] == h("1006")
    assert client.decrypt(after) == ip_packet(6)


@pytest.mark.parametrize("bits", [40, 128])
def test_stateful_loss_across_flag_packets(bits: int) -> None:
    """Lost packets include the flag packets 0x0FF and 0x1FF: one key change each, then one
    for the flushed packet (RFC 3078 section 8.2)."""
    server, client = pair(bits, stateless=False)
    packets = [server.encrypt(ip_packet(n)) for n in range(0x210)]
    for n in range(0xF0):
        client.decrypt(packets[n])
    with pytest.raises(MppeOutOfSync):
        client.decrypt(packets[0x205])
    server.on_reset_request()
    flushed = server.encrypt(ip_packet(0x300))
    assert client.decrypt(flushed) == ip_packet(0x300)


def test_flushed_packet_after_a_reset_request_changes_the_key() -> None:
    """After a Reset-Request the next packet is flushed and encrypted under a new session key,
    as pppd/Linux ppp_mppe (and Windows) do; restarting RC4 with the same key does not
    interoperate (seen in the VM interop run: pppd decoded garbage after our Reset-Ack)."""
    server, client = pair(128, stateless=False)
    for n in range(3):
        client.decrypt(server.encrypt(ip_packet(n)))
    server.on_reset_request()
    flushed = server.encrypt(b"test message")
    assert flushed[:2] == h("9003") and flushed != h("9003") + SAMPLE_128  # SAMPLE_128: same key restarted
    assert client.decrypt(flushed) == b"test message"
    assert client.decrypt(server.encrypt(ip_packet(4))) == ip_packet(4)


def test_stateful_loss_resynchronises_on_the_flushed_answer() -> None:
    server, client = pair(128, stateless=False)
    client.decrypt(server.encrypt(ip_packet(0)))
    server.encrypt(ip_packet(1))  # lost
    with pytest.raises(MppeOutOfSync):
        client.decrypt(server.encrypt(ip_packet(2)))
    assert client.take_reset_request() and not client.take_reset_request()  # once per loss
    server.on_reset_request()
    assert client.decrypt(server.encrypt(ip_packet(3))) == ip_packet(3)


def test_stateful_late_flag_packet_refused_without_harm() -> None:
    server, client = pair(40, stateless=False)
    packets = [server.encrypt(ip_packet(n)) for n in range(0x108)]
    for n in range(0xFF):
        client.decrypt(packets[n])
    for n in range(0x100, 0x108):
        try:
            client.decrypt(packets[n])
        except MppeOutOfSync:
            pass
    server.on_reset_request()
    assert client.decrypt(server.encrypt(ip_packet(0x108))) == ip_packet(0x108)
    with pytest.raises(BadMppe):
        client.decrypt(packets[0xFF])  # late: must not change the key again
    assert client.decrypt(server.encrypt(ip_packet(0x109))) == ip_packet(0x109)


def test_stateful_flushed_flag_packet_after_loss_resynchronises_at_once() -> None:
    server, client = pair(128, stateless=False)
    packets = [server.encrypt(ip_packet(n)) for n in range(0x101)]
    client.decrypt(packets[0])
    assert client.decrypt(packets[0xFF]) == ip_packet(0xFF)  # flushed: no reset needed
    assert client.decrypt(packets[0x100]) == ip_packet(0x100)
    assert not client.needs_reset and not client.take_reset_request()


def test_compressed_protocol_field_is_expanded() -> None:
    server, client = pair(128, stateless=True)
    assert client.decrypt(server.encrypt(b"\x21\x45\x00")) == b"\x00\x21\x45\x00"


@pytest.mark.parametrize(("packet", "stateless"), [
    (h("9000"), True),  # no data
    (h("8000aabb"), True),  # D (encrypted) bit missing
    (h("b000aabb"), True),  # C (compressed) bit set
    (h("1000aabb"), True),  # stateless without the flushed bit
    (h("9fffaabb"), False),  # stateful: coherency count 4095 is not after the start
])
def test_garbage_refused(packet: bytes, stateless: bool) -> None:
    _, client = pair(128, stateless)
    with pytest.raises(BadMppe) as caught:
        client.decrypt(packet)
    assert caught.value.reason == "bad-mppe"


def test_wrong_key_detected_by_protocol_field() -> None:
    server, _ = pair(128, stateless=True)
    wrong = MppeEngine(SERVER_RECV, b"\x01" * 16, 128, stateless=True)
    packets = [server.encrypt(ip_packet(n)) for n in range(8)]
    failures = 0
    for packet in packets:
        try:
            wrong.decrypt(packet)
        except BadMppe:
            failures += 1
    assert failures > 0


def test_engine_keys_follow_rfc3079_reduction() -> None:
    engine = MppeEngine(SERVER_SEND, SERVER_RECV, 40, stateless=False)
    assert engine.encrypt(b"test message")[2:] == SAMPLE_40
    assert initial_session_key(SERVER_SEND, 40).startswith(h("D1269E"))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        MppeEngine(SERVER_SEND, SERVER_RECV, 64, stateless=True)
    with pytest.raises(ValueError):
        MppeEngine(SERVER_SEND[:8], SERVER_RECV, 128, stateless=True)
    with pytest.raises(ValueError):
        MppeEngine(SERVER_SEND, SERVER_RECV, 128, stateless=True).encrypt(b"\x21")


@settings(max_examples=50, deadline=None)
@given(kept=st.lists(st.booleans(), min_size=1, max_size=300), stateless=st.booleans())
def test_any_loss_pattern_recovers(kept: list[bool], stateless: bool) -> None:
    """Stateless: every packet that arrives decrypts (RFC 3078 8.1).  Stateful: after a loss,
    a Reset-Request and the next (flushed) packet bring the receiver back (8.2)."""
    server, client = pair(40, stateless)
    answer_due = False  # a flushed answer to a Reset-Request is not lost (pppd cannot recover from that either)
    for n, arrives in enumerate(kept):
        packet = server.encrypt(ip_packet(n))
        flushed_answer, answer_due = answer_due, False
        if not arrives and not flushed_answer:
            continue
        try:
            assert client.decrypt(packet) == ip_packet(n)
        except MppeOutOfSync:
            assert not stateless and client.take_reset_request() in (True, False)
            server.on_reset_request()
            answer_due = True
    server.on_reset_request()
    assert client.decrypt(server.encrypt(ip_packet(9999))) == ip_packet(9999)
