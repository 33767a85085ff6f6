"""Properties: any segmentation translates like whole messages; the Call-ID space stays a
bijection whatever order allocations and releases come in."""
from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fixup.proto.pat.callids import CallIdSpace
from fixup.proto.pat.config import Limits
from fixup.wire import pptp_messages as m
from tests.unit.flows import IN, OUT, Flow, tracker

pytestmark = pytest.mark.unit

CLIENT = IPv4Address("10.99.1.10")
OTHER = IPv4Address("10.99.1.11")


def run(pieces_for, ids: list[int]) -> tuple[bytes, bytes, list[int]]:
    t = tracker()
    Flow(t, OTHER, 41000).open().message(OUT, m.StartControlConnectionRequest())  # a neighbour
    other = Flow(t, OTHER, 41001).open()
    other.message(OUT, m.StartControlConnectionRequest())
    other.message(IN, m.StartControlConnectionReply())
    neighbour = set()
    for call_id in ids:  # same IDs, taken first
        sent = other.message(OUT, m.OutgoingCallRequest(call_id=call_id))
        neighbour.add(int.from_bytes(sent[12:14], "big"))
    flow = Flow(t, CLIENT).open()
    flow.message(OUT, m.StartControlConnectionRequest(), pieces_for())
    flow.message(IN, m.StartControlConnectionReply(), pieces_for())
    translated = []
    for n, call_id in enumerate(ids):
        sent = flow.message(OUT, m.OutgoingCallRequest(call_id=call_id), pieces_for())
        tid = int.from_bytes(sent[12:14], "big")
        translated.append(tid)
        flow.message(IN, m.OutgoingCallReply(call_id=500 + n, peer_call_id=tid), pieces_for())
        flow.message(IN, m.SetLinkInfo(peer_call_id=tid), pieces_for())
    for n, call_id in enumerate(ids):
        flow.message(OUT, m.CallClearRequest(call_id=call_id), pieces_for())
        flow.message(IN, m.CallDisconnectNotify(call_id=500 + n), pieces_for())
    assert not neighbour & set(translated), "a translated ID given twice toward one server"
    return bytes(flow.received[OUT]), bytes(flow.received[IN]), translated


ids_strategy = st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=4, unique=True)


@settings(max_examples=60, deadline=None)
@given(ids=ids_strategy, data=st.data())
def test_any_segmentation_gives_the_same_bytes_as_whole_messages(ids, data):
    whole_out, whole_in, translated = run(lambda: None, ids)
    sizes = st.lists(st.integers(1, 40), min_size=1, max_size=60)
    split_out, split_in, translated_split = run(lambda: data.draw(sizes), ids)
    assert (split_out, split_in) == (whole_out, whole_in)
    assert translated_split == translated


def test_one_byte_segments_whole_conversation():
    assert run(lambda: 1, [0, 1, 0x4000]) == run(lambda: None, [0, 1, 0x4000])


operations = st.lists(st.tuples(st.sampled_from(["alloc", "release", "drop-conn"]),
                                st.integers(0, 5), st.integers(0, 0x03FF)), max_size=300)


@settings(max_examples=80, deadline=None)
@given(ops=operations)
def test_call_id_space_is_a_bijection_with_bytewise_consistency(ops):
    space = CallIdSpace(limits=Limits(calls_per_connection=0x10000, calls_per_client=0x10000))
    live: dict[tuple[int, int], int] = {}
    for op, conn, original in ops:
        if op == "alloc":
            translated = space.allocate(conn, original)
            assert translated is not None
            if (conn, original) in live:
                assert live[(conn, original)] == translated
            live[(conn, original)] = translated
        elif op == "release":
            space.release(conn, original)
            live.pop((conn, original), None)
        else:
            space.release_connection(conn)
            live = {k: v for k, v in live.items() if k[0] != conn}
        assert len(set(live.values())) == len(live) == len(space)
        for (c, o), t in live.items():
            assert space.owner(t) == (c, o)
            assert space.forward_high(c, o >> 8) == t >> 8
            assert space.reverse_high(c, t >> 8) == o >> 8
