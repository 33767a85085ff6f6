"""Hostile input, pure layers (issue 11): each test fails on the code before its fix.  Streams
come from :mod:`tests.unit.flows`; the dial-in server is fed bytes and ``now``."""
from __future__ import annotations

import pytest

from fixup.wire import pptp_messages as m
from tests.unit.flows import ACK, FIN, IN, OUT, RST
from tests.unit.test_tracker import CLIENTS, established, tracker

pytestmark = pytest.mark.unit


# -- item 1: a call released before its reply --------------------------------------------------


def test_an_unanswered_ocrq_times_out_and_later_timeouts_still_run():
    t = tracker(call_setup=5, call_idle=30)
    waiting = established(t, CLIENTS[0])
    waiting.message(OUT, m.OutgoingCallRequest(call_id=1))
    events = t.poll(10.0)  # raised AttributeError ('NoneType' ... to_bytes) before the fix
    assert [e.kind for e in events if e.kind == "call-down"] == ["call-down"]
    assert t.snapshot(10.0)["calls"] == []


@pytest.mark.parametrize("flags", [FIN | ACK, RST])
def test_a_connection_closing_while_its_call_waits_passes(flags):
    t = tracker()
    flow = established(t, CLIENTS[0])
    flow.message(OUT, m.OutgoingCallRequest(call_id=1))
    assert flow.send(OUT, b"", flags).accept
    assert t.snapshot(1.0)["calls"] == []


def test_an_incoming_call_waiting_for_the_client_can_be_cleared():
    t = tracker()
    flow = established(t, CLIENTS[0])
    flow.message(IN, m.IncomingCallRequest(call_id=9))  # no translated ID until the client's ICRP
    assert t.clear(1.0) == 1
    assert t.snapshot(1.0)["calls"] == []


# -- item 4: dial-in tunnel ids never land on a live tunnel -----------------------------------


def test_tunnel_ids_skip_live_tunnels_and_run_out_cleanly():
    import dataclasses
    import random

    from fixup.proto.vpdn.config import DialInLimits
    from fixup.proto.vpdn.terminate import TerminateServer
    from tests.unit.test_terminate import LOCAL, policy

    unlimited = dataclasses.replace(policy(), limits=DialInLimits(tunnels=65535, tunnels_per_peer=65535))
    server = TerminateServer(unlimited, LOCAL, 0.0, random_bytes=random.Random(1).randbytes)
    first = server.tunnel_opened(b"\x0a\x00\x00\x01", 1000, 0.0)
    opened = {first}
    for port in range(0xFFFE):  # every other id, then one more connection than there are ids
        tunnel = server.tunnel_opened(b"\x0a\x00\x00\x02", port, 0.0)
        assert tunnel not in opened and tunnel is not None
        opened.add(tunnel)
    assert server.tunnel_opened(b"\x0a\x00\x00\x03", 1, 0.0) is None
    assert server.tunnels[first].peer == b"\x0a\x00\x00\x01"  # the first tunnel is still its own


def test_dial_in_call_ids_are_not_sequential():
    from tests.unit.test_terminate import dial, new_server

    server = new_server(mppe="none")
    ids = [dial(server, mppe="none").server_call_id for _ in range(3)]
    assert len(set(ids)) == 3 and ids != sorted(ids) or abs(ids[1] - ids[0]) != 1


# -- item 6: a dial-in client sends from its own address only --------------------------------


@pytest.mark.parametrize("source", ["192.168.1.2", "127.0.0.1", "10.1.1.5"])
def test_a_dial_in_client_cannot_send_as_another_address(source):
    from ipaddress import IPv4Address

    from tests.unit.test_terminate import INSIDE_HOST, dial, ipv4, new_server

    server = new_server(mppe="none")
    d = dial(server, mppe="none")
    assert d.client.up and d.client.address == IPv4Address("192.168.1.1")
    d.client.ip_out(ipv4(IPv4Address(source), INSIDE_HOST, b"spoof"), d.now)
    d.client.ip_out(ipv4(d.client.address, INSIDE_HOST, b"honest"), d.now)
    d.pump()
    assert [p[-6:] for p in server.take_tun()] == [b"honest"]
    assert server.snapshot(d.now)["drops"] == {"spoofed-source": 1}


# -- item 11: text from the wire, secrets ------------------------------------------------------


def test_peer_text_is_escaped_in_events_and_show_vpdn():
    from fixup.io.vpdn.show import format_vpdn
    from fixup.proto.events import Event

    forged = "bob\r\n2026-12-01 INFO 603104: PPTP Tunnel created\x1b[2J\u202e"
    text = Event("auth-failed", f"user {forged}", {}).text
    assert "\n" not in text and "\r" not in text and "\x1b" not in text and "\u202e" not in text
    assert text.endswith("\\x1b[2J\\u202e") and "\\x0d\\x0a" in text
    snapshot = {"tunnels": [{"id": 1, "sessions": 1, "state": "estabd", "since_change": 1, "remote_address": "1.2.3.4",
                             "remote_port": 1, "local_address": "5.6.7.8", "packets_sent": 0, "packets_received": 0,
                             "bytes_sent": 0, "bytes_received": 0}],
                "sessions": [{"call_id": 2, "tunnel_id": 1, "state": "up", "username": forged, "since_change": 1,
                              "address": "192.168.1.1", "mppe": None, "remote_call_id": 3, "packets_sent": 0,
                              "packets_received": 0, "bytes_sent": 0, "bytes_received": 0, "seq": 0, "ack": 0,
                              "ack_received": 0, "peer_rws": 64, "out_of_order": 0, "remote_address": "1.2.3.4"}]}
    shown = format_vpdn(snapshot)
    assert "\x1b" not in shown and "\r" not in shown and "Session username is bob\\x0d\\x0a2026" in shown


def test_aaa_secrets_stay_out_of_reprs():
    from ipaddress import IPv4Address

    from fixup.proto.aaa.config import AaaGroup, AaaHost

    group = AaaGroup("R", "radius", (AaaHost(IPv4Address("10.0.0.5"), 1812, b"s3cr3t-key"),))
    assert "s3cr3t" not in repr(group) and "s3cr3t" not in str(group)


def test_fixup_check_warns_about_a_readable_policy_with_secrets(tmp_path, capsys):
    from fixup.cli import main

    path = tmp_path / "p.yaml"
    path.write_text("inside: [a]\noutside: b\naaa:\n  R: {protocol: radius, hosts: [{address: 10.0.0.5, secret: k}]}\n")
    path.chmod(0o644)
    assert main(["check", "--policy", str(path)]) == 0
    assert "holds secrets (aaa.R.hosts[].secret) and is readable by other users (mode 0644)" in capsys.readouterr().err
    path.chmod(0o600)
    assert main(["check", "--policy", str(path)]) == 0
    assert "readable" not in capsys.readouterr().err


# -- item 12: GRE other than version 1 --------------------------------------------------------


def test_forwarded_gre_v0_is_dropped_and_counted_not_sent_without_nat():
    from tests.unit.flows import PAT, SERVER, ipv4

    t = tracker()
    flow = established(t, CLIENTS[0])
    from tests.unit.test_tracker import place_call

    place_call(flow, 0, 10)
    plain = bytes.fromhex("00000800") + b"\x45" + bytes(19)  # RFC 2784 GRE, version 0, carrying IPv4
    out = t.handle_packet(ipv4(CLIENTS[0], SERVER, 47, plain), OUT, 1.0)
    assert not out.accept and out.reason == "gre-not-pptp"
    assert t.snapshot(1.0)["drops"]["gre-not-pptp"] == 1
    to_router = t.handle_packet(ipv4(SERVER, PAT, 47, plain), IN, 1.0)  # the router's own GRE tunnels
    assert to_router.accept and to_router.packet is None


def test_the_kernel_path_drops_forwarded_gre_of_any_version():
    from ipaddress import IPv4Address

    from fixup.io.pat import netfilter
    from fixup.policy.loader import parse_policy

    policy = parse_policy("inside: [br-in]\noutside: gw-out\n")
    caps = netfilter.Capabilities(nft_binary=True, iptables_nft_binary=True, nft_queue=False, xt_nfqueue=True)
    script = netfilter.build_ruleset(policy, IPv4Address("192.0.2.1"), caps).nft_script
    (drop,) = [line for line in script.splitlines() if "gre_out_unknown drop" in line]
    assert "@th,13,3" not in drop  # no version test: v0 is dropped too


# -- item 9: log floods -------------------------------------------------------------------------


def test_a_flood_of_per_packet_events_costs_a_few_log_lines(caplog):
    import logging

    from fixup.io.logs import EventLog
    from fixup.proto.events import Event

    clock = [0.0]
    logger = logging.getLogger("fixup.test-flood")
    sink = EventLog(logger, {"protocol-error": logging.WARNING}, burst=5, interval=10.0, clock=lambda: clock[0])
    with caplog.at_level(logging.DEBUG, logger="fixup.test-flood"):
        sink.all([Event("protocol-error", f"bad message {n}", {}) for n in range(1000)])
        sink.all([Event("control-open", f"connection {n}", {}) for n in range(3)])
        flooded = [r.getMessage() for r in caplog.records]
        clock[0] = 11.0
        sink(Event("protocol-error", "one more", {}))
    assert flooded == [f"bad message {n}" for n in range(5)] + [f"connection {n}" for n in range(3)]
    assert [r.getMessage() for r in caplog.records[-2:]] == [
        "995 more protocol-error event(s) not logged in the last 10 s", "one more"]


# -- item 10: translated Call IDs cannot be guessed --------------------------------------------


def test_translated_call_ids_are_not_predictable():
    import random

    from fixup.proto.pat.callids import CallIdSpace

    def first_ids(seed: int) -> list[int]:
        space = CallIdSpace(random.Random(seed).randrange)
        return [space.allocate(conn, 0) for conn in range(1, 51)]

    ids = first_ids(1)
    steps = {b - a for a, b in zip(ids, ids[1:])}
    assert len(steps) > 10  # not the old 0x0000, 0x0100, 0x0200, ... of a least-loaded-first scan
    assert first_ids(2)[:5] != ids[:5] and len(set(ids)) == 50
    same_bucket = CallIdSpace(random.Random(3).randrange)
    lows = [same_bucket.allocate(7, original) & 0xFF for original in range(20)]  # one bucket, 20 slots
    assert lows != sorted(lows)


# -- item 3: one client cannot take every Call ID ---------------------------------------------


def test_one_connection_and_one_client_are_held_to_their_quotas():
    from fixup.proto.pat.config import Limits, TrackerConfig
    from fixup.proto.pat.tracker import Tracker
    from tests.unit.flows import PAT
    from tests.unit.test_tracker import place_call

    import random

    t = Tracker(TrackerConfig(pat_address=PAT, limits=Limits(calls_per_connection=4, calls_per_client=6)),
                randbelow=random.Random(1).randrange)
    first = established(t, CLIENTS[0])
    for call_id in range(4):
        place_call(first, call_id, 100 + call_id)
    refused = first.send(OUT, build_ocrq(99))
    assert not refused.accept and refused.reason == "call-quota-connection"
    second = established(t, CLIENTS[0], 40001)
    for call_id in range(2):
        place_call(second, call_id, 200 + call_id)
    assert second.send(OUT, build_ocrq(7)).reason == "call-quota-client"
    other = established(t, CLIENTS[1], 40002)
    place_call(other, 0, 300)  # another inside host is not affected
    assert t.snapshot(1.0)["drops"] == {"call-quota-connection": 1, "call-quota-client": 1}


def build_ocrq(call_id: int) -> bytes:
    from fixup.wire.pptp import build_message

    return build_message(m.OutgoingCallRequest(call_id=call_id))


def test_a_retransmitted_ocrq_does_not_restart_the_setup_timer():
    t = tracker(call_setup=10)
    flow = established(t, CLIENTS[0])
    start = flow.cseq
    flow.message(OUT, m.OutgoingCallRequest(call_id=1))
    for second in range(2, 30, 2):  # the client retransmits every 2 s (a fresh copy each time)
        flow.now = float(second)
        flow.send(OUT, build_ocrq(1), seq=start)
        t.poll(float(second))
    assert t.snapshot(30.0)["calls"] == []


def test_an_ocrq_that_does_not_parse_gives_its_translated_id_back():
    from tests.unit.flows import SERVER

    t = tracker()
    flow = established(t, CLIENTS[0])
    bad = bytearray(build_ocrq(5))
    bad[10:12] = b"\x12\x34"  # Reserved0 != 0 (RFC 2637 section 1.4)
    flow.send(OUT, bytes(bad))
    assert len(t.calls.space_for(SERVER.packed)) == 0 and t.snapshot(1.0)["calls"] == []


# -- item 2: no state from single packets, every table bounded --------------------------------


def test_syns_to_many_servers_are_capped_and_their_state_goes_away():
    from ipaddress import IPv4Address

    from tests.unit.flows import SYN, tcp

    t = tracker(call_setup=60)
    for n in range(2000):  # one inside host, 2,000 server addresses
        t.handle_packet(tcp(CLIENTS[0], 20000 + n, IPv4Address(0x0B000000 + n), 1723, 1, 0, SYN), OUT, 1.0)
    assert len(t.connections) == 256 and t.snapshot(1.0)["drops"]["connection-quota-client"] == 1744
    assert len(t.calls.spaces) == 256
    assert all(space._slots.count(None) == 256 for space in t.calls.spaces.values())  # nothing allocated yet
    t.poll(62.0)  # no SCCRP within call_setup: gone, with their Call-ID spaces
    assert t.connections == {} and t.calls.spaces == {}


def test_segments_of_no_connection_from_outside_create_nothing():
    from ipaddress import IPv4Address

    from tests.unit.flows import PAT, SYN, tcp

    t = tracker()
    for n, flags in enumerate([ACK, SYN | ACK, RST, ACK | FIN, SYN]):  # spoofed, source port 1723
        v = t.handle_packet(tcp(IPv4Address(0x0C000000 + n), 1723, PAT, 5000 + n, 1, 1, flags), IN, 1.0)
        assert not v.accept and v.reason == "no-connection"
    assert t.connections == {} and t.calls.spaces == {}


def test_the_total_number_of_connections_is_capped():
    import random

    from fixup.proto.pat.config import Limits, TrackerConfig
    from fixup.proto.pat.tracker import Tracker
    from tests.unit.flows import PAT, SERVER, SYN, tcp

    t = Tracker(TrackerConfig(pat_address=PAT, limits=Limits(connections=10)), randbelow=random.Random(1).randrange)
    from ipaddress import IPv4Address

    verdicts = [t.handle_packet(tcp(IPv4Address(0x0A000000 + n), 30000, SERVER, 1723, 1, 0, SYN), OUT, 1.0)
                for n in range(12)]
    assert [v.accept for v in verdicts] == [True] * 10 + [False] * 2
    assert verdicts[-1].reason == "connection-quota"


# -- item 7: translation fails closed ------------------------------------------------------------


def test_a_client_cannot_put_another_clients_translated_id_on_the_wire():
    from tests.unit.test_tracker import gre_in, place_call

    t = tracker()
    victim = established(t, CLIENTS[0])
    translated = place_call(victim, 0, 10)
    attacker = established(t, CLIENTS[1], 41000)
    for msg in (m.CallClearRequest(call_id=translated), m.CallDisconnectNotify(call_id=translated)):
        assert attacker.message(OUT, msg) == b""  # used to go out verbatim, naming the victim's call
    assert t.snapshot(1.0)["drops"]["unknown-call"] == 1 and t.snapshot(1.0)["drops"]["closed-connection"] == 1
    assert gre_in(t, translated).accept  # the victim's call is untouched


@pytest.mark.parametrize("pieces", [None, 1])
def test_a_syn_in_the_middle_of_a_stream_does_not_resync_it(pieces):
    from tests.unit.flows import SYN
    from tests.unit.test_tracker import place_call

    t = tracker()
    flow = established(t, CLIENTS[0], pieces=pieces)
    syn = flow.send(OUT, b"", SYN, seq=flow.cseq + 5000)
    assert not syn.accept and syn.reason == "syn-mid-stream"
    translated = place_call(flow, 0, 10, pieces)  # the real stream goes on, translated
    assert translated is not None
    assert flow.send(OUT, b"", SYN, seq=1000).accept  # the handshake's own SYN, retransmitted (ISN 1000)


# -- item 5: dial-in resources before authentication --------------------------------------------


def test_tunnels_are_capped_in_all_and_per_peer():
    import dataclasses
    import random

    from fixup.proto.vpdn.config import DialInLimits
    from fixup.proto.vpdn.terminate import TerminateServer
    from tests.unit.test_terminate import LOCAL, policy

    limited = dataclasses.replace(policy(), limits=DialInLimits(tunnels=5, tunnels_per_peer=3))
    server = TerminateServer(limited, LOCAL, 0.0, random_bytes=random.Random(1).randbytes)
    one = [server.tunnel_opened(b"\x0a\x00\x00\x01", port, 0.0) for port in range(4)]
    assert None not in one[:3] and one[3] is None
    other = [server.tunnel_opened(b"\x0a\x00\x00\x02", port, 0.0) for port in range(3)]
    assert None not in other[:2] and other[2] is None
    assert server.snapshot(0.0)["drops"] == {"tunnel-quota-peer": 1, "tunnel-quota": 1}


def test_a_tunnel_that_never_sends_sccrq_or_a_call_is_closed():
    from tests.unit.test_terminate import new_server

    server = new_server()
    silent = server.tunnel_opened(b"\x0a\x00\x00\x01", 1, 0.0)
    server.poll(11.0)  # sccrq_timeout 10 s
    assert silent not in server.tunnels
    tid = server.tunnel_opened(b"\x0a\x00\x00\x02", 2, 20.0)
    from fixup.wire import pptp_messages as mm
    from fixup.wire.pptp import build_message

    server.tcp_in(tid, build_message(mm.StartControlConnectionRequest()), 20.0)
    server.poll(40.0)
    assert tid in server.tunnels
    server.poll(51.0)  # call_timeout 30 s
    assert tid not in server.tunnels
    assert server.snapshot(51.0)["drops"]["tunnel-timeout"] == 2


def test_a_session_that_does_not_come_up_is_ended_whatever_the_client_repeats():
    import random

    from fixup.lab.ppp_client import PppClient
    from fixup.proto.vpdn.terminate import TerminateServer
    from tests.unit.test_terminate import LOCAL, Dialer, policy

    never = TerminateServer(policy(methods="[pap]", mppe="none"), LOCAL, 0.0, random_bytes=random.Random(1).randbytes,
                            verifier=lambda request: None)  # an answer that never comes (a dead AAA server)
    server = never
    d = Dialer(server, PppClient("cisco", "cisco", auth_methods=("pap",), mppe="none"))
    assert server.calls and not d.client.up  # admitted, PAP asked: a session and an address are held
    server.poll(30.0)
    assert server.calls  # the client may still be typing
    server.poll(61.0)  # setup_timeout 60 s, however often the client would repeat its PAP request
    assert server.calls == {} and server.pool.in_use == 0
    assert server.snapshot(61.0)["drops"]["setup-timeout"] == 1


# -- item 8: MPPE catch-up and the GRE receive window -------------------------------------------


def test_a_forged_stateless_packet_cannot_move_the_keys():
    import os

    from fixup.errors import BadMppe
    from fixup.proto.ppp.mppe import MppeEngine
    from tests.unit.test_mppe import SERVER_RECV, SERVER_SEND, ip_packet

    server = MppeEngine(SERVER_SEND, SERVER_RECV, 128, True)
    client = MppeEngine(SERVER_RECV, SERVER_SEND, 128, True, ip_only=True)
    packets = [server.encrypt(ip_packet(n)) for n in range(4)]
    assert client.decrypt(packets[0]) == ip_packet(0)
    far = bytes([0x90 | 0x07, 0xFF]) + os.urandom(60)  # coherency count 2,047 ahead: 2,047 rekeys before
    with pytest.raises(BadMppe, match="at most 256"):
        client.decrypt(far)
    near = bytes([0x90, 0x03]) + os.urandom(60)  # 3 ahead, garbage inside (an off-path spoofer)
    for _ in range(20):
        try:
            client.decrypt(near)
        except BadMppe:
            pass
    assert client.decrypt(packets[1]) == ip_packet(1)  # the real stream goes on
    assert client.decrypt(packets[3]) == ip_packet(3)


def test_gre_far_ahead_of_the_window_is_not_taken():
    from fixup.proto.vpdn.gre_channel import GreChannel
    from fixup.wire.gre import GreHeader

    channel = GreChannel(7, 64, 0.0)
    assert channel.receive(GreHeader(1, 3, 100, None), b"one", 0.0)[0] == [b"one"]
    assert channel.receive(GreHeader(1, 3, 100 + 2**30, None), b"far", 0.0)[0] == []
    assert channel.stats.outside_window == 1
    assert channel.receive(GreHeader(1, 3, 101, None), b"two", 0.0)[0] == [b"two"]


# -- item 13: authentication throttling and equal timing ---------------------------------------


def test_an_unknown_user_costs_the_same_work_as_a_wrong_password(monkeypatch):
    from fixup.proto.auth import credentials

    calls = []
    real = credentials._CHECKERS[credentials.MSCHAP_V2]
    monkeypatch.setitem(credentials._CHECKERS, credentials.MSCHAP_V2, lambda r, pw: calls.append(pw) or real(r, pw))
    users = credentials.LocalUsers({"cisco": "cisco"})
    request = credentials.VerifyRequest(credentials.MSCHAP_V2, "nobody", {
        "authenticator_challenge": bytes(16), "peer_challenge": bytes(16), "nt_response": bytes(24)})
    assert not credentials.verify_locally(request, users).ok
    assert not credentials.verify_locally(credentials.VerifyRequest(credentials.MSCHAP_V2, "cisco", request.data), users).ok
    assert len(calls) == 2 and calls[1] == "cisco" and calls[0] not in ("", "cisco")


def test_a_peer_that_keeps_failing_is_held_down():
    from tests.unit.test_terminate import CLIENT, dial, new_server

    server = new_server(mppe="none")
    for _ in range(5):
        assert not dial(server, password="guess", mppe="none").client.up
    assert not dial(server, mppe="none").client.up  # even the right password waits
    assert server.snapshot(0.0)["drops"]["auth-held-down"] >= 1
    server.failures.held_down(CLIENT, 1e9)  # a minute later (the dialer's clock restarts at 0)
    assert dial(server, mppe="none").client.up


def test_a_forged_stateful_packet_leaves_the_stream_where_it_was():
    import os

    from fixup.errors import BadMppe
    from fixup.proto.ppp.mppe import MppeEngine
    from tests.unit.test_mppe import SERVER_RECV, SERVER_SEND, ip_packet

    server = MppeEngine(SERVER_SEND, SERVER_RECV, 128, False)
    client = MppeEngine(SERVER_RECV, SERVER_SEND, 128, False, ip_only=True)
    real = [server.encrypt(ip_packet(n)) for n in range(300)]  # past a flag packet (count 0xff)
    for n, packet in enumerate(real):
        if n in (3, 200, 255):  # a forged packet with the very next coherency count, before the real one
            forged = packet[:2] + os.urandom(len(packet) - 2)
            with pytest.raises(BadMppe):
                client.decrypt(forged)
        assert client.decrypt(packet) == ip_packet(n)
