"""The tracker end to end on synthetic packets: Call-ID translation, GRE, teardown (RFC 2637)."""
from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from fixup.wire import pptp_messages as m
from fixup.wire.pptp import build_message
from tests.unit.flows import ACK, FIN, IN, OUT, PAT, RST, SERVER, Flow, call_id_at, gre, tracker

pytestmark = pytest.mark.unit

CLIENTS = [IPv4Address(f"10.99.1.{10 + i}") for i in range(3)]


def established(t, client, port=40000, pieces=None) -> Flow:
    flow = Flow(t, client, port).open()
    flow.message(OUT, m.StartControlConnectionRequest(), pieces)
    flow.message(IN, m.StartControlConnectionReply(), pieces)
    return flow


def place_call(flow: Flow, call_id: int, server_id: int, pieces=None) -> int:
    """OCRQ out, OCRP in; returns the translated ID the server saw."""
    sent = flow.message(OUT, m.OutgoingCallRequest(call_id=call_id), pieces)
    translated = call_id_at(sent, 12)
    back = flow.message(IN, m.OutgoingCallReply(call_id=server_id, peer_call_id=translated), pieces)
    assert call_id_at(back, 14) == call_id, "OCRP Peer Call ID must reach the client untranslated"
    assert call_id_at(back, 12) == server_id
    return translated


def gre_in(t, translated, payload=b"x"):
    return t.handle_packet(gre(SERVER, PAT, translated, payload), IN, 1.0)


def test_three_clients_same_call_id_get_distinct_ids_and_their_own_gre():
    t = tracker()
    flows = [established(t, c, 40000 + i) for i, c in enumerate(CLIENTS)]
    translated = [place_call(f, 0, 100 + i) for i, f in enumerate(flows)]
    assert len(set(translated)) == 3
    for i, (flow, tid) in enumerate(zip(flows, translated)):
        v = gre_in(t, tid, b"to-%d" % i)
        assert v.accept and v.packet[16:20] == flow.client.packed
        assert v.packet[26:28] == b"\x00\x00"  # Call ID back to the client's 0
        out = t.handle_packet(gre(flow.client, SERVER, 100 + i), OUT, 1.0)
        assert out.accept and out.packet[12:16] == PAT.packed
    assert len(t.snapshot(1.0)["calls"]) == 3


def test_three_calls_on_one_control_connection():
    t = tracker()
    flow = established(t, CLIENTS[0])
    ids = [place_call(flow, call_id, 200 + call_id) for call_id in (0, 1, 2)]
    assert len(set(ids)) == 3
    for call_id, tid in enumerate(ids):
        v = gre_in(t, tid)
        assert v.accept and int.from_bytes(v.packet[26:28], "big") == call_id


@pytest.mark.parametrize("pieces", [1, 2, 3, [5, 1, 7, 1, 1, 13]])
def test_messages_split_across_segments_are_translated_like_whole_ones(pieces):
    whole, split = tracker(), tracker()
    a = established(whole, CLIENTS[0])
    b = established(split, CLIENTS[0], pieces=pieces)
    # a second client first, so the translated ID is not the original one
    established(whole, CLIENTS[1], 41000).message(OUT, m.OutgoingCallRequest(call_id=0x4000))
    established(split, CLIENTS[1], 41000).message(OUT, m.OutgoingCallRequest(call_id=0x4000), pieces)
    ta = place_call(a, 0x4000, 9)
    tb = place_call(b, 0x4000, 9, pieces)
    assert ta == tb != 0x4000
    assert a.received == b.received


def test_retransmitted_segment_is_rewritten_identically():
    t = tracker()
    established(t, CLIENTS[1], 41000).message(OUT, m.OutgoingCallRequest(call_id=0))
    flow = established(t, CLIENTS[0])
    start = flow.cseq
    first = flow.message(OUT, m.OutgoingCallRequest(call_id=0))
    again = flow.send(OUT, build_message(m.OutgoingCallRequest(call_id=0)), seq=start)
    assert again.accept and again.packet is not None
    assert again.packet[40:] == first
    # overlapping: bytes 10.. of the OCRQ again (they hold the Call ID) plus a new SLI
    sli = build_message(m.SetLinkInfo(peer_call_id=5))
    v = flow.send(OUT, build_message(m.OutgoingCallRequest(call_id=0))[10:] + sli, seq=start + 10)
    assert v.accept and v.packet is not None
    assert v.packet[40:40 + len(first) - 10] == first[10:]


def test_retransmitted_ocrq_keeps_its_translated_id():
    t = tracker()
    established(t, CLIENTS[1], 41000).message(OUT, m.OutgoingCallRequest(call_id=0))
    flow = established(t, CLIENTS[0])
    first = call_id_at(flow.message(OUT, m.OutgoingCallRequest(call_id=7)), 12)
    second = call_id_at(flow.message(OUT, m.OutgoingCallRequest(call_id=7)), 12)
    assert first == second
    assert t.snapshot(1.0)["counters"]["calls_active"] == 2


def test_segment_after_a_gap_is_dropped_and_far_away_data_too():
    """Far-away data used to pass untouched; issue 11 item 7: what cannot be placed is dropped."""
    t = tracker()
    flow = established(t, CLIENTS[0])
    data = build_message(m.OutgoingCallRequest(call_id=0))
    assert not flow.send(OUT, data[20:], seq=flow.cseq + 20).accept
    assert t.snapshot(1.0)["drops"]["out-of-order"] == 1
    far = flow.send(OUT, data, seq=flow.cseq + 2**31 + 5)
    assert not far.accept and far.reason == "outside-window"


@pytest.mark.parametrize("cdn_call_id", ["server", "translated"])
def test_cdn_releases_the_call_and_stale_gre_is_dropped(cdn_call_id):
    t = tracker()
    flow = established(t, CLIENTS[0])
    tid = place_call(flow, 0, 77)
    assert gre_in(t, tid).accept
    value = 77 if cdn_call_id == "server" else tid
    passed = flow.message(IN, m.CallDisconnectNotify(call_id=value))
    assert call_id_at(passed, 12) == (77 if cdn_call_id == "server" else 0)
    assert t.snapshot(1.0)["calls"] == []
    assert not gre_in(t, tid).accept
    assert not t.handle_packet(gre(CLIENTS[0], SERVER, 77), OUT, 1.0).accept
    assert t.snapshot(1.0)["drops"]["unknown-call"] == 2


def test_ccrq_from_client_is_translated_then_cdn_closes():
    t = tracker()
    flow = established(t, CLIENTS[1], 41000)
    place_call(flow, 0, 1)
    flow = established(t, CLIENTS[0])
    tid = place_call(flow, 0, 2)
    sent = flow.message(OUT, m.CallClearRequest(call_id=0), 1)
    assert call_id_at(sent, 12) == tid
    assert t.snapshot(1.0)["calls"][1]["state"] == "clearing"
    flow.message(IN, m.CallDisconnectNotify(call_id=2))
    assert len(t.snapshot(1.0)["calls"]) == 1


def test_clearing_call_times_out():
    t = tracker(clearing=5)
    flow = established(t, CLIENTS[0])
    place_call(flow, 0, 2)
    flow.message(OUT, m.CallClearRequest(call_id=0))
    t.poll(3.0)
    assert len(t.snapshot(3.0)["calls"]) == 1
    events = t.poll(7.0)
    assert t.snapshot(7.0)["calls"] == []
    assert any(e.kind == "call-down" for e in events)


def test_failed_ocrp_releases_the_id():
    t = tracker()
    flow = established(t, CLIENTS[0])
    tid = call_id_at(flow.message(OUT, m.OutgoingCallRequest(call_id=3)), 12)
    flow.message(IN, m.OutgoingCallReply(call_id=0, peer_call_id=tid, result_code=m.OutgoingCallResult.BUSY))
    assert t.snapshot(1.0)["calls"] == []
    assert not gre_in(t, tid).accept


def test_stop_control_connection_releases_every_call():
    t = tracker()
    flow = established(t, CLIENTS[0])
    for call_id in range(3):
        place_call(flow, call_id, 10 + call_id)
    flow.message(OUT, m.StopControlConnectionRequest())
    assert {c["state"] for c in t.snapshot(1.0)["calls"]} == {"clearing"}
    flow.message(IN, m.StopControlConnectionReply())
    assert t.snapshot(1.0)["calls"] == []
    assert t.snapshot(1.0)["connections"][0]["state"] == "closed"


@pytest.mark.parametrize("flags", [FIN | ACK, RST])
def test_tcp_close_releases_calls(flags):
    t = tracker()
    flow = established(t, CLIENTS[0])
    tid = place_call(flow, 0, 10)
    flow.send(IN, b"", flags)
    assert t.snapshot(1.0)["calls"] == []
    assert not gre_in(t, tid).accept
    t.poll(100.0)
    assert t.snapshot(100.0)["connections"] == []


def test_idle_call_and_idle_connection_time_out():
    t = tracker(call_idle=30, control_idle=100)
    flow = established(t, CLIENTS[0])
    tid = place_call(flow, 0, 10)
    t.poll(20.0)
    assert gre_in(t, tid).accept  # activity at now=1.0 (gre_in uses 1.0)
    t.poll(40.0)
    assert t.snapshot(40.0)["calls"] == []
    t.poll(200.0)
    assert t.snapshot(200.0)["connections"] == []


def test_incoming_call_from_client_and_from_server():
    t = tracker()
    established(t, CLIENTS[1], 41000).message(OUT, m.OutgoingCallRequest(call_id=5))
    flow = established(t, CLIENTS[0])
    # client is the PAC: ICRQ out, ICRP in, ICCN out
    tid = call_id_at(flow.message(OUT, m.IncomingCallRequest(call_id=5)), 12)
    assert tid != 5
    back = flow.message(IN, m.IncomingCallReply(call_id=300, peer_call_id=tid))
    assert call_id_at(back, 14) == 5
    flow.message(OUT, m.IncomingCallConnected(peer_call_id=300))
    assert gre_in(t, tid).accept
    # server is the PAC: ICRQ in, ICRP out allocates, ICCN in translated back
    flow.message(IN, m.IncomingCallRequest(call_id=301))
    reply = flow.message(OUT, m.IncomingCallReply(call_id=6, peer_call_id=301))
    tid2 = call_id_at(reply, 12)
    assert call_id_at(flow.message(IN, m.IncomingCallConnected(peer_call_id=tid2)), 12) == 6
    v = gre_in(t, tid2)
    assert v.accept and v.packet[26:28] == b"\x00\x06"


def test_sli_and_wen_peer_call_ids_are_translated_back():
    t = tracker()
    established(t, CLIENTS[1], 41000).message(OUT, m.OutgoingCallRequest(call_id=0))
    flow = established(t, CLIENTS[0])
    tid = place_call(flow, 0, 9)
    assert call_id_at(flow.message(IN, m.SetLinkInfo(peer_call_id=tid), 1), 12) == 0
    assert call_id_at(flow.message(IN, m.WanErrorNotify(peer_call_id=tid), 3), 12) == 0
    assert call_id_at(flow.message(OUT, m.SetLinkInfo(peer_call_id=9), 1), 12) == 9


def test_call_messages_before_sccrp_are_dropped_and_the_connection_closed():
    """They used to pass untranslated; issue 11 item 7: never forwarded untranslated."""
    t = tracker()
    flow = Flow(t, CLIENTS[0]).open()
    flow.message(OUT, m.StartControlConnectionRequest())
    passed = flow.message(OUT, m.OutgoingCallRequest(call_id=0))
    assert passed == b"" and t.snapshot(1.0)["drops"]["call-before-established"] == 1
    assert t.snapshot(1.0)["calls"] == [] and t.snapshot(1.0)["connections"][0]["state"] == "closed"


def test_garbage_closes_the_connection_and_nothing_after_it_passes():
    """Garbage used to desync the stream until a segment started a message, passing what came in
    between untranslated; issue 11 item 7: the segment is dropped and the connection closed."""
    t = tracker()
    established(t, CLIENTS[1], 41000).message(OUT, m.OutgoingCallRequest(call_id=0))
    flow = established(t, CLIENTS[0])
    garbage = flow.send(OUT, b"\x00\x10\x00\x01\xde\xad\xbe\xef" + bytes(8))
    assert not garbage.accept and garbage.reason == "malformed-message"
    assert t.snapshot(1.0)["anomalies"]["bad-cookie"] == 1
    assert flow.message(OUT, m.OutgoingCallRequest(call_id=0)) == b""
    assert t.snapshot(1.0)["drops"]["closed-connection"] == 1


def test_a_connection_whose_syn_was_not_seen_is_not_tracked_and_fails_closed():
    """Issue 11 item 2 (it used to be tracked from any segment, and passed untranslated until a
    message boundary): no state from single packets, nothing forwarded that cannot be translated."""
    t = tracker()
    flow = Flow(t, CLIENTS[0])  # no SYN seen: e.g. the daemon restarted
    assert not flow.send(OUT, build_message(m.StartControlConnectionRequest())).accept
    assert not flow.send(IN, build_message(m.StartControlConnectionReply())).accept
    assert t.snapshot(1.0)["connections"] == [] and t.snapshot(1.0)["drops"]["no-connection"] == 2


def test_exhausted_call_ids_drop_the_segment_until_one_is_free():
    t = tracker()
    space = t.calls.space_for(SERVER.packed)
    for i in range(256 * 256):  # 64 calls per connection: Limits.calls_per_connection
        assert space.allocate(10_000 + i // 64, i % 64) is not None
    flow = established(t, CLIENTS[0])
    start = flow.cseq
    data = build_message(m.OutgoingCallRequest(call_id=0))
    assert flow.send(OUT, data[:12], seq=start).accept  # header only: nothing to allocate yet
    v = flow.send(OUT, data[12:], seq=start + 12)
    assert not v.accept and v.reason == "no-free-call-id"
    freed = space.forward(10_000 + 3, 7)
    space.release(10_000 + 3, 7)  # frees that one translated ID (random, issue 11 item 10)
    v = flow.send(OUT, data, seq=start)  # TCP retransmits from the last byte that passed
    assert v.accept and v.packet[40 + 12:40 + 14] == freed.to_bytes(2, "big")


def test_random_packets_never_raise():
    import random
    rng = random.Random(1)
    t = tracker()
    for _ in range(3000):
        size = rng.randrange(0, 80)
        pkt = bytearray(rng.randbytes(size))
        if size >= 20 and rng.random() < 0.7:
            pkt[0] = 0x45
            pkt[9] = rng.choice([6, 47])
            pkt[2:4] = size.to_bytes(2, "big")
            pkt[6:8] = b"\x00\x00"
        v = t.handle_packet(bytes(pkt), rng.choice([IN, OUT]), 1.0)
        assert isinstance(v.accept, bool)


def _with_ip_option(packet: bytes) -> bytes:
    """The same packet with a 4-byte IPv4 option (NOPs + EOL): IHL 6, the general GRE path."""
    from tests.unit.flows import internet_checksum
    body = packet[20:]
    header = bytearray(packet[:20] + b"\x01\x01\x01\x00")
    header[0] = 0x46
    header[2:4] = (24 + len(body)).to_bytes(2, "big")
    header[10:12] = b"\x00\x00"
    header[10:12] = internet_checksum(bytes(header)).to_bytes(2, "big")
    return bytes(header) + body


@pytest.mark.parametrize("client", ["10.99.1.10", "172.31.255.254", "1.2.3.4"])
def test_gre_fast_path_matches_the_general_path_and_checksums_verify(client):
    from tests.unit.flows import internet_checksum
    t = tracker()
    flow = established(t, IPv4Address(client))
    tid = place_call(flow, 0x1234, 0xBEEF)
    for direction, packet in ((IN, gre(SERVER, PAT, tid, b"abc")), (OUT, gre(IPv4Address(client), SERVER, 0xBEEF, b"abc"))):
        fast = t.handle_packet(packet, direction, 1.0).packet
        general = t.handle_packet(_with_ip_option(packet), direction, 1.0).packet
        assert internet_checksum(fast[:20]) == 0 and internet_checksum(general[:24]) == 0
        assert fast[12:20] == general[12:20] and fast[20:] == general[24:]
    assert fast[12:16] == PAT.packed
    assert t.snapshot(1.0)["calls"][0]["packets_in"] == 2


def test_kernel_path_counters_mark_calls_active_and_count_unknown_gre():
    t = tracker(call_idle=30)
    flow = established(t, CLIENTS[0])
    tid = place_call(flow, 0, 10)
    t.note_gre_counts({(SERVER.packed, tid): (7, 700)}, {(CLIENTS[0].packed, SERVER.packed, 10): (3, 300)}, 4, now=25.0)
    (call,) = t.snapshot(25.0)["calls"]
    assert (call["packets_in"], call["bytes_in"], call["packets_out"], call["bytes_out"]) == (7, 700, 3, 300)
    assert t.snapshot(25.0)["drops"]["unknown-call"] == 4
    t.poll(50.0)  # idle since 25 only
    assert len(t.snapshot(50.0)["calls"]) == 1
    t.note_gre_counts({(SERVER.packed, tid): (7, 700)}, {}, 4, now=60.0)  # nothing moved
    t.poll(60.0)
    assert t.snapshot(60.0)["calls"] == []


def test_random_payloads_inside_established_connections_never_raise():
    import random
    rng = random.Random(3)
    t = tracker()
    flows = [established(t, c, 40000 + i) for i, c in enumerate(CLIENTS)]
    for flow in flows:
        place_call(flow, 0, 9)
    for _ in range(2000):
        flow = rng.choice(flows)
        direction = rng.choice([IN, OUT])
        payload = rng.randbytes(rng.randrange(1, 60))
        if rng.random() < 0.3:  # a plausible header with random rest
            payload = build_message(m.CallDisconnectNotify(call_id=rng.randrange(65536)))[:rng.randrange(1, 148)]
        seq = None if rng.random() < 0.8 else rng.randrange(2**32)
        v = flow.send(direction, payload, seq=seq)
        assert isinstance(v.accept, bool)
    t.poll(5000.0)
    assert t.snapshot(5000.0)["connections"] == []
