"""The GRE data channel of a terminated call (RFC 2637 section 4)."""
from __future__ import annotations

import pytest

from fixup.proto.vpdn.gre_channel import GreChannel
from fixup.wire.gre import parse_gre

pytestmark = pytest.mark.unit


def unpack(packet: bytes):
    header = parse_gre(packet)
    return header, packet[header.header_length:]


def pair(window: int = 64):
    return GreChannel(peer_call_id=9, peer_window=window, now=0.0), GreChannel(peer_call_id=7, peer_window=window, now=0.0)


def test_payloads_cross_with_sequence_numbers_and_piggybacked_acks():
    a, b = pair()
    (p1,) = a.send(b"one", 0.0)
    h1, body = unpack(p1)
    assert (h1.call_id, h1.sequence, h1.acknowledgment) == (9, 0, None)
    got, _ = b.receive(h1, body, 0.0)
    assert got == [b"one"]
    (reply,) = b.send(b"two", 0.01)
    h2, _ = unpack(reply)
    assert (h2.sequence, h2.acknowledgment) == (0, 0)  # piggybacked ack of a's packet 0


def test_ack_only_packet_after_the_delay_when_nothing_to_send():
    a, b = pair()
    h, body = unpack(a.send(b"x", 0.0)[0])
    b.receive(h, body, 0.0)
    assert b.poll(0.01) == ([], [])
    _, (ack,) = b.poll(0.06)
    h, body = unpack(ack)
    assert h.sequence is None and h.acknowledgment == 0 and body == b""
    assert b.poll(0.2) == ([], [])


def test_reordered_packets_are_delivered_in_order_and_duplicates_dropped():
    a, b = pair()
    packets = [unpack(p) for p in (a.send(bytes([i]), 0.0)[0] for i in range(4))]
    order = [packets[0], packets[2], packets[1], packets[1], packets[3], packets[0]]
    delivered = [p for h, body in order for p in b.receive(h, body, 0.0)[0]]
    assert delivered == [b"\x00", b"\x01", b"\x02", b"\x03"]
    assert b.stats.duplicates == 2 and b.stats.out_of_order == 1


def test_a_gap_is_given_up_after_the_reorder_timeout():
    a, b = pair()
    packets = [unpack(p) for p in (a.send(bytes([i]), 0.0)[0] for i in range(3))]
    b.receive(*packets[0], 0.0)
    assert b.receive(*packets[2], 0.0)[0] == []
    delivered, _ = b.poll(0.2)
    assert delivered == [b"\x02"] and b.stats.lost == 1


def test_send_window_holds_packets_until_acknowledged():
    a, b = pair(window=2)
    sent = [p for i in range(4) for p in a.send(bytes([i]), 0.0)]
    assert len(sent) == 2
    for h, body in map(unpack, sent):
        b.receive(h, body, 0.0)
    _, (ack,) = b.poll(1.0)
    h, body = unpack(ack)
    _, released = a.receive(h, body, 1.0)
    assert [unpack(p)[0].sequence for p in released] == [2, 3]


def test_sequence_numbers_wrap():
    a, b = pair()
    a.next_send = 2**32 - 1
    a.peer_acked = 2**32 - 2
    for i in range(3):
        h, body = unpack(a.send(bytes([i]), 0.0)[0])
        assert b.receive(h, body, 0.0)[0] == [bytes([i])]
    assert a.next_send == 2
