"""The test peers' control connection, sans-I/O (fixup.lab.pptp_peer): the message stream of
every peer, the PAC's answers and the PNS's reading of them (RFC 2637 section 2), fed one byte at
a time where the stream matters."""
from __future__ import annotations

import pytest

from fixup.errors import BadCookie
from fixup.lab.pptp_peer import CallIds, MessageStream, PacConnection, PnsConnection
from fixup.wire import pptp_messages as m
from fixup.wire.pptp import OutgoingCallReply, StartControlConnectionRequest, build_message

pytestmark = pytest.mark.unit

# 001_78fc8e2d733fd35b.txt line 134: the dumped SCCRQ starts "009c00011a2b3c4d00010000..." (RFC 2637
# section 2.1: Length 156, PPTP message type 1, magic cookie, control message type 1)
SEED_SCCRQ_PREFIX = bytes.fromhex("009c00011a2b3c4d0001000001000000000000010000")


def test_the_stream_reassembles_messages_split_anywhere() -> None:
    sccrq = build_message(StartControlConnectionRequest(framing_capabilities=1, bearer_capabilities=1,
                                                        firmware_revision=0x870,
                                                        vendor_string=b"Microsoft Windows NT"))
    assert sccrq.startswith(SEED_SCCRQ_PREFIX)
    ocrp = build_message(OutgoingCallReply(call_id=7, peer_call_id=4096, physical_channel_id=4096))
    stream = sccrq + ocrp
    buffer = MessageStream(strict=False)
    seen = []
    for cut in range(0, len(stream), 7):
        seen += buffer.feed(stream[cut:cut + 7])
    assert [type(m).__name__ for m in seen] == ["StartControlConnectionRequest", "OutgoingCallReply"]
    assert seen[1].physical_channel_id == 4096
    assert not buffer.data


def test_the_stream_raises_bad_input_for_a_bad_cookie() -> None:
    bad = bytearray(SEED_SCCRQ_PREFIX)
    bad[4:8] = b"\xde\xad\xbe\xef"
    with pytest.raises(BadCookie):
        MessageStream(strict=False).feed(bytes(bad))


def test_one_byte_at_a_time_yields_each_message_once() -> None:
    wire = build_message(m.EchoRequest(identifier=9)) + build_message(m.CallClearRequest(call_id=3))
    stream = MessageStream()
    seen = [msg for byte in wire for msg in stream.feed(bytes([byte]))]
    assert [type(msg).__name__ for msg in seen] == ["EchoRequest", "CallClearRequest"]
    assert stream.pending == 0


def test_a_pac_and_a_pns_talk_a_whole_connection() -> None:
    ids = CallIds(100)
    pac, pns = PacConnection(ids), PnsConnection(name=b"c1")

    def exchange(request: m.Message) -> list:
        answer = pac.receive(request)
        return [pns.receive(reply) for reply in answer.replies]

    assert [e.kind for e in exchange(pns.start())] == ["established"]
    (up,) = exchange(pns.place(0, serial=7))
    assert up.kind == "call-up" and pns.calls == {0: 100} and pac.calls == {100: 0}
    (echo,) = exchange(m.EchoRequest(identifier=5))
    assert echo.kind == "echo" and echo.message.identifier == 5
    (down,) = exchange(pns.clear(0))
    assert down.kind == "call-down" and down.message.call_id == 100 and pns.calls == {} and ids.in_use == set()
    answer = pac.receive(pns.stop())
    assert answer.stop and [pns.receive(r).kind for r in answer.replies] == ["stopped"]


def test_call_ids_are_unique_across_connections_and_freed_with_them() -> None:
    ids = CallIds(0xFFFE)
    first, second = PacConnection(ids), PacConnection(ids)
    own = [first.receive(m.OutgoingCallRequest(call_id=0)).opened[0] for _ in range(2)]
    own.append(second.receive(m.OutgoingCallRequest(call_id=0)).opened[0])
    assert own == [0xFFFE, 0xFFFF, 1]  # 0 is skipped unless asked for
    assert sorted(first.close()) == [0xFFFE, 0xFFFF] and ids.in_use == {1}


def test_clear_of_an_unknown_call_is_reported_not_answered() -> None:
    answer = PacConnection(CallIds()).receive(m.CallClearRequest(call_id=42))
    assert answer.unknown_clear == 42 and answer.replies == []


def test_the_pns_owes_echo_and_stop_replies() -> None:
    pns = PnsConnection()
    assert pns.receive(m.EchoRequest(identifier=1)).replies == (m.EchoReply(identifier=1),)
    stop = pns.receive(m.StopControlConnectionRequest())
    assert stop.kind == "stop-requested" and stop.replies == (m.StopControlConnectionReply(),)


def test_channel_echo_tells_the_pns_the_call_id_that_arrived() -> None:
    answer = PacConnection(CallIds(), channel_echo=True).receive(m.OutgoingCallRequest(call_id=4096))
    (ocrp,) = answer.replies
    assert isinstance(ocrp, OutgoingCallReply) and ocrp.physical_channel_id == 4096 and ocrp.peer_call_id == 4096
