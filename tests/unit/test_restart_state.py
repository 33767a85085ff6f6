"""The tracker's saved state (issue 12): a new tracker restored from an old one's records carries
on with every call -- GRE both ways with the clients' own Call IDs, the control stream at its
next message boundary, new calls on the same connection -- and bad records are skipped whole."""
from __future__ import annotations

import json
from ipaddress import IPv4Address

import pytest

from fixup.errors import BadRecord
from fixup.proto.pat.persist import parse_record
from fixup.wire import pptp_messages as m
from fixup.wire.pptp import build_message
from tests.unit.flows import IN, OUT, PAT, SERVER, Flow, call_id_at, gre, tracker
from tests.unit.test_tracker import established, place_call

pytestmark = pytest.mark.unit

CLIENTS = [IPv4Address("10.99.1.10"), IPv4Address("10.99.1.11")]


def restarted(old, seed: int = 99):
    """A second tracker from the first one's records, through JSON as the store keeps them."""
    records = json.loads(json.dumps(old.export()))
    new = tracker(seed)
    result = new.restore(records, 5.0)
    return new, result


def moved(flow: Flow, t) -> Flow:
    flow.t = t
    return flow


def test_two_clients_with_call_id_0_keep_gre_and_control_across_a_restart():
    old = tracker()
    flows = [established(old, c, 40000 + i) for i, c in enumerate(CLIENTS)]
    translated = [place_call(f, 0, 100 + i) for i, f in enumerate(flows)]
    new, result = restarted(old)
    assert (result.connections, result.calls, len(result.gre_calls), result.skipped) == (2, 2, 2, [])
    for i, (flow, tid) in enumerate(zip(flows, translated)):
        moved(flow, new)
        v = new.handle_packet(gre(SERVER, PAT, tid), IN, 6.0)
        assert v.accept and v.packet[16:20] == flow.client.packed and v.packet[26:28] == b"\x00\x00"
        out = new.handle_packet(gre(flow.client, SERVER, 100 + i), OUT, 6.0)
        assert out.accept and out.packet[12:16] == PAT.packed
        assert flow.message(OUT, m.EchoRequest(identifier=i)) == build_message(m.EchoRequest(identifier=i))
        assert flow.message(IN, m.EchoReply(identifier=i))
    # a new call on the first connection gets an ID distinct from both restored ones
    third = place_call(flows[0], 0x0101, 300)
    assert third not in translated
    # CCRQ for the restored call is translated, the CDN releases it
    sent = flows[1].message(OUT, m.CallClearRequest(call_id=0))
    assert call_id_at(sent, 12) == translated[1]
    flows[1].message(IN, m.CallDisconnectNotify(call_id=101))
    assert not new.handle_packet(gre(SERVER, PAT, translated[1]), IN, 7.0).accept
    assert len(new.snapshot(7.0)["calls"]) == 2


@pytest.mark.parametrize("pieces", [1, 3])
def test_restart_between_messages_with_byte_by_byte_segments(pieces):
    old = tracker()
    flow = established(old, CLIENTS[0], pieces=pieces)
    tid = place_call(flow, 7, 55, pieces)
    new, _ = restarted(old)
    moved(flow, new)
    sli = flow.message(IN, m.SetLinkInfo(peer_call_id=tid), pieces)
    assert call_id_at(sli, 4 + 8) == 7  # the Peer Call ID back to the client's own
    assert new.handle_packet(gre(SERVER, PAT, tid), IN, 6.0).accept


def test_restart_inside_a_split_message_resumes_at_its_start():
    """The old process saw half an OCRQ: the new one drops the other half (it cannot translate
    it) and takes the whole message when TCP retransmits it from its start."""
    old = tracker()
    flow = established(old, CLIENTS[0])
    place_call(flow, 0, 100)
    data = build_message(m.OutgoingCallRequest(call_id=1))
    start = flow.cseq
    flow.send(OUT, data[:15])
    new, _ = restarted(old)
    moved(flow, new)
    rest = flow.send(OUT, data[15:])
    assert not rest.accept and rest.reason == "out-of-order"
    again = flow.send(OUT, data, seq=start)
    assert again.accept and again.packet is not None
    assert new.calls.spaces[SERVER.packed].owner(call_id_at(again.packet[40:], 12)) == (1, 1)  # translated
    assert len(new.snapshot(6.0)["calls"]) == 2


def test_a_retransmission_of_bytes_rewritten_before_the_restart_is_rewritten_again():
    old = tracker()
    established(old, CLIENTS[1], 41000).message(OUT, m.OutgoingCallRequest(call_id=0))  # so IDs differ
    flow = established(old, CLIENTS[0])
    start = flow.cseq
    first = flow.message(OUT, m.OutgoingCallRequest(call_id=0))  # not acknowledged by the server yet
    new, _ = restarted(old)
    moved(flow, new)
    again = flow.send(OUT, build_message(m.OutgoingCallRequest(call_id=0)), seq=start)
    assert again.accept and again.packet is not None and again.packet[40:] == first


def test_changes_name_the_connections_to_save_and_to_forget():
    t = tracker()
    flow = established(t, CLIENTS[0])
    saves, gone = t.take_changes()
    assert [conn_id for conn_id, _ in saves] == [1] and gone == []
    assert t.take_changes() == ([], [])
    place_call(flow, 0, 100)
    saves, _ = t.take_changes()
    assert saves[0][1]["calls"][0]["gre"] is True
    t.handle_packet(gre(SERVER, PAT, saves[0][1]["calls"][0]["translated"]), IN, 2.0)
    assert t.take_changes() == ([], [])  # GRE is not saved per packet
    t.clear(3.0)
    assert t.take_changes() == ([], [1])


def test_a_bad_record_is_skipped_whole_and_the_good_ones_kept():
    old = tracker()
    flows = [established(old, c, 40000 + i) for i, c in enumerate(CLIENTS)]
    for i, f in enumerate(flows):
        place_call(f, 0, 100 + i)
    good, bad = json.loads(json.dumps(old.export()))
    bad["calls"][0]["translated"] = good["calls"][0]["translated"]  # two calls, one translated ID
    bad_server = dict(bad, server=good["server"])
    new = tracker()
    result = new.restore([good, bad_server, {"v": 1}, "junk"], 5.0)
    assert result.connections == 1 and len(result.skipped) == 3
    assert new.snapshot(5.0)["anomalies"]["restore-bad-record"] == 3
    assert len(new.calls.spaces[SERVER.packed]) == 1  # nothing of the bad one held


@pytest.mark.parametrize("change", [
    {"v": 2}, {"client": "10.0.0.300"}, {"state": "closed"}, {"id": 0}, {"calls": "x"},
    {"out": {"base": -1, "at": 0, "rewrites": []}}, {"messages": [1]},
])
def test_parse_record_names_the_bad_field(change):
    old = tracker()
    place_call(established(old, CLIENTS[0]), 0, 100)
    record = {**json.loads(json.dumps(old.export()[0])), **change}
    with pytest.raises(BadRecord):
        parse_record(record)


def test_restored_calls_idle_timer_restarts_at_the_restore():
    old = tracker(call_idle=10.0)
    tid = place_call(established(old, CLIENTS[0]), 0, 100)
    records = json.loads(json.dumps(old.export()))
    new = tracker(call_idle=10.0)
    new.restore(records, 100.0)  # long after the old process last saw the call
    new.poll(105.0)
    assert new.handle_packet(gre(SERVER, PAT, tid), IN, 105.0).accept
    new.poll(200.0)
    assert not new.handle_packet(gre(SERVER, PAT, tid), IN, 200.0).accept


def test_a_reload_that_drops_a_port_releases_its_connections_only():
    from dataclasses import replace

    t = tracker()
    kept = established(t, CLIENTS[0])
    place_call(kept, 0, 100)
    t.config = replace(t.config, control_ports=frozenset({1723, 1724}))
    assert len(t.connections) == 1
    t.config = replace(t.config, control_ports=frozenset({1724}))
    assert t.connections == {} and t.calls.gre_in == {}
    assert any(e.kind == "call-down" and "no longer inspected" in e.text for e in t.take_events())
