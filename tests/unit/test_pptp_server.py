"""The terminating PPTP control connection (RFC 2637 sections 2, 3), fed byte by byte."""
from __future__ import annotations

import pytest

from fixup.proto.vpdn.pptp_server import PptpServerConnection, ServerConfig, ServerState
from fixup.wire import pptp_messages as m
from fixup.wire.pptp import build_message, parse_header, parse_message

pytestmark = pytest.mark.unit


def replies(conn: PptpServerConnection) -> list:
    data, out = conn.take_output(), []
    while data:
        length = parse_header(data).length
        out.append(parse_message(data[:length]))
        data = data[length:]
    return out


def feed(conn: PptpServerConnection, msg, now: float = 0.0, one_byte: bool = True) -> None:
    data = build_message(msg)
    for i in range(len(data)) if one_byte else [None]:
        conn.receive(data[i:i + 1] if one_byte else data, now)


def established() -> PptpServerConnection:
    conn = PptpServerConnection(ServerConfig(), 0.0)
    feed(conn, m.StartControlConnectionRequest(host_name=b"local", vendor_string=b"9x"))  # seed 001 line 132
    return conn


def test_sccrq_gets_sccrp_and_the_connection_is_established():
    conn = established()
    (reply,) = replies(conn)
    assert isinstance(reply, m.StartControlConnectionReply) and reply.result_code == 1
    assert conn.state is ServerState.ESTABLISHED
    assert [e.kind for e in conn.take_events()] == ["control-up"]


def test_wrong_protocol_version_is_refused_and_closed():
    conn = PptpServerConnection(ServerConfig(), 0.0)
    feed(conn, m.StartControlConnectionRequest(protocol_version=0x0200))
    (reply,) = replies(conn)
    assert reply.result_code == m.StartControlResult.BAD_PROTOCOL_VERSION
    assert conn.closed


def test_ocrq_is_handed_to_the_session_which_accepts_or_refuses():
    conn = established()
    replies(conn)
    conn.take_events()
    request = m.OutgoingCallRequest(call_id=0x4000, call_serial_number=58613, minimum_bps=300,
                                    maximum_bps=100000000, packet_recv_window_size=64)  # seed 001 line 134
    feed(conn, request)
    (event,) = conn.take_events()
    assert event.kind == "call-request" and event.message == request
    conn.accept_call(event.message, our_call_id=9)
    (ocrp,) = replies(conn)
    assert (ocrp.call_id, ocrp.peer_call_id, ocrp.result_code) == (9, 0x4000, 1)
    assert build_message(ocrp).startswith(bytes.fromhex("002000011a2b3c4d00080000000940000100"))
    conn.refuse_call(request, m.OutgoingCallResult.BUSY)
    assert replies(conn)[0].result_code == m.OutgoingCallResult.BUSY


def test_echo_both_ways_and_a_silent_peer_is_dropped():
    conn = established()
    replies(conn)
    feed(conn, m.EchoRequest(identifier=77), now=1.0)
    assert replies(conn)[0] == m.EchoReply(identifier=77)
    conn.poll(62.0)
    (probe,) = replies(conn)
    assert isinstance(probe, m.EchoRequest)
    conn.poll(100.0)
    assert not conn.closed
    conn.poll(130.0)
    assert conn.closed and "not responding" in conn.take_events()[-1].reason


def test_ccrq_and_stop_are_reported_and_answered():
    conn = established()
    feed(conn, m.CallClearRequest(call_id=5))
    assert conn.take_events()[-1].kind == "call-clear"
    feed(conn, m.StopControlConnectionRequest())
    assert isinstance(replies(conn)[-1], m.StopControlConnectionReply)
    assert conn.closed


def test_garbage_closes_the_connection_with_a_reason():
    conn = established()
    conn.receive(b"\x00\x10\x00\x01\xde\xad\xbe\xef" + bytes(8), 0.0)
    assert conn.closed
    assert any(e.kind == "protocol-error" and "Magic Cookie" in e.reason for e in conn.take_events())
