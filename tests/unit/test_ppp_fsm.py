"""The RFC 1661 automaton: the table against the RFC, cell by cell, and the Negotiator that
runs it (restart timer, counters, replies) with ``now`` advanced by hand."""
from __future__ import annotations

import pytest

from fixup.proto.ppp.fsm import (
    FOOTNOTES,
    TRANSITIONS,
    Action,
    Event,
    Judgement,
    Limits,
    NegotiationFailed,
    State,
    judge_each,
)
from fixup.proto.ppp.negotiator import Negotiator
from fixup.wire.ppp import Code, ControlPacket, Option, Protocol, build_control, parse_control, parse_options

pytestmark = pytest.mark.unit

# RFC 1661 section 4.1, "State Transition Table", as printed in the RFC (two halves).
RFC1661_TABLE = """
      | State
      |    0         1         2         3         4         5
Events| Initial   Starting  Closed    Stopped   Closing   Stopping
------+-----------------------------------------------------------
 Up   |    2     irc,scr/6     -         -         -         -
 Down |    -         -         0       tls/1       0         1
 Open |  tls/1       1     irc,scr/6     3r        5r        5r
 Close|    0       tlf/0       2         2         4         4
      |
  TO+ |    -         -         -         -       str/4     str/5
  TO- |    -         -         -         -       tlf/2     tlf/3
      |
 RCR+ |    -         -       sta/2 irc,scr,sca/8   4         5
 RCR- |    -         -       sta/2 irc,scr,scn/6   4         5
 RCA  |    -         -       sta/2     sta/3       4         5
 RCN  |    -         -       sta/2     sta/3       4         5
      |
 RTR  |    -         -       sta/2     sta/3     sta/4     sta/5
 RTA  |    -         -         2         3       tlf/2     tlf/3
      |
 RUC  |    -         -       scj/2     scj/3     scj/4     scj/5
 RXJ+ |    -         -         2         3         4         5
 RXJ- |    -         -       tlf/2     tlf/3     tlf/2     tlf/3
      |
 RXR  |    -         -         2         3         4         5

      | State
      |    6         7         8           9
Events| Req-Sent  Ack-Rcvd  Ack-Sent    Opened
------+-----------------------------------------
 Up   |    -         -         -           -
 Down |    1         1         1         tld/1
 Open |    6         7         8           9r
 Close|irc,str/4 irc,str/4 irc,str/4 tld,irc,str/4
      |
  TO+ |  scr/6     scr/6     scr/8         -
  TO- |  tlf/3p    tlf/3p    tlf/3p        -
      |
 RCR+ |  sca/8   sca,tlu/9   sca/8   tld,scr,sca/8
 RCR- |  scn/6     scn/7     scn/6   tld,scr,scn/6
 RCA  |  irc/7     scr/6x  irc,tlu/9   tld,scr/6x
 RCN  |irc,scr/6   scr/6x  irc,scr/8   tld,scr/6x
      |
 RTR  |  sta/6     sta/6     sta/6   tld,zrc,sta/5
 RTA  |    6         6         8       tld,scr/6
      |
 RUC  |  scj/6     scj/7     scj/8       scj/9
 RXJ+ |    6         6         8           9
 RXJ- |  tlf/3     tlf/3     tlf/3   tld,irc,str/5
      |
 RXR  |    6         7         8         ser/9
"""


def _rfc_cells() -> dict[tuple[State, Event], str]:
    """Parse the literal above into {(state, event): cell text}."""
    cells: dict[tuple[State, Event], str] = {}
    columns: list[State] = []
    for line in RFC1661_TABLE.splitlines():
        if "|" not in line:
            continue
        label, rest = (part.strip() for part in line.split("|", 1))
        if label == "" and rest.replace(" ", "").isdigit():
            columns = [State(int(number)) for number in rest.split()]
        elif label in {e.value for e in Event}:
            values = rest.split()
            assert len(values) == len(columns), line
            for state, value in zip(columns, values):
                cells[(state, Event(label))] = value
    return cells


RFC_CELLS = _rfc_cells()


def test_the_literal_covers_every_cell() -> None:
    assert len(RFC_CELLS) == len(State) * len(Event) == 160


@pytest.mark.parametrize(("state", "event"), sorted(RFC_CELLS, key=lambda key: (key[0], list(Event).index(key[1]))))
def test_transition_cell_matches_rfc(state: State, event: Event) -> None:
    text = RFC_CELLS[(state, event)]
    if text == "-":
        assert (state, event) not in TRANSITIONS
        return
    actions_text, _, target = text.rpartition("/")
    footnote = target.lstrip("0123456789")
    expected_actions = tuple(Action(name) for name in actions_text.split(",")) if actions_text else ()
    assert TRANSITIONS[(state, event)] == (expected_actions, State(int(target[:len(target) - len(footnote)])))
    assert FOOTNOTES.get((state, event), "") == footnote


def test_no_cells_beyond_the_rfc() -> None:
    assert set(TRANSITIONS) <= set(RFC_CELLS)
    assert len(TRANSITIONS) == sum(text != "-" for text in RFC_CELLS.values())


# -- the Negotiator ---------------------------------------------------------------------------


class Handler:
    """Requests ``request``; answers every peer request with ``verdict``; records callbacks."""

    def __init__(self, request: tuple[Option, ...] = (Option(1, b"\x05\xdc"),),
                 verdict: Judgement = Judgement.ACK) -> None:
        self.request = request
        self.verdict = verdict
        self.calls: list[tuple[str, tuple[Option, ...]]] = []
        self.fail_on_nak: str | None = None

    def build_request(self) -> tuple[Option, ...]:
        return self.request

    def judge_request(self, options: tuple[Option, ...]) -> tuple[Judgement, tuple[Option, ...]]:
        return self.verdict, (options if self.verdict is Judgement.REJECT else (Option(1, b"\x02\x00"),))

    def on_ack(self, options: tuple[Option, ...]) -> None:
        self.calls.append(("ack", options))

    def on_nak(self, options: tuple[Option, ...]) -> None:
        self.calls.append(("nak", options))
        if self.fail_on_nak:
            raise NegotiationFailed(self.fail_on_nak)

    def on_reject(self, options: tuple[Option, ...]) -> None:
        self.calls.append(("reject", options))


def sent(negotiator: Negotiator) -> list[ControlPacket]:
    out = negotiator.take_output()
    assert all(protocol == Protocol.LCP for protocol, _ in out)
    return [parse_control(info) for _, info in out]


def pump(a: Negotiator, b: Negotiator, now: float) -> None:
    """Deliver queued packets both ways until both sides are quiet."""
    for _ in range(50):
        moved = False
        for src, dst in ((a, b), (b, a)):
            for _, info in src.take_output():
                dst.receive(parse_control(info), now)
                moved = True
        if not moved:
            return
    raise AssertionError("negotiation does not converge")


def started(handler: Handler | None = None, limits: Limits = Limits()) -> Negotiator:
    negotiator = Negotiator(Protocol.LCP, handler or Handler(), limits=limits)
    negotiator.up(0.0)
    negotiator.open(0.0)
    return negotiator


def opened_pair() -> tuple[Negotiator, Negotiator]:
    a, b = started(), started()
    pump(a, b, 0.0)
    assert a.opened and b.opened
    a.take_events(), b.take_events()
    return a, b


def test_two_negotiators_reach_opened() -> None:
    a, b = started(), started()
    assert a.state is State.REQ_SENT
    pump(a, b, 0.0)
    assert a.state is b.state is State.OPENED
    assert a.take_events() == ["this-layer-up"]
    assert a.local_options == a.peer_options == (Option(1, b"\x05\xdc"),)


def test_open_before_up_signals_layer_started() -> None:
    negotiator = Negotiator(Protocol.LCP, Handler())
    negotiator.open(0.0)
    assert negotiator.state is State.STARTING
    assert negotiator.take_events() == ["this-layer-started"]
    assert negotiator.take_output() == []
    negotiator.up(0.0)
    assert [p.code for p in sent(negotiator)] == [Code.CONFIGURE_REQUEST]


def test_restart_timer_resends_then_gives_up() -> None:
    """RFC 1661 section 4.6: Max-Configure requests, Restart interval apart, then TO-."""
    negotiator = started(limits=Limits(restart=3.0, max_configure=10))
    requests = sent(negotiator)
    now = 0.0
    negotiator.poll(2.9)
    assert sent(negotiator) == []
    while negotiator.next_deadline() is not None:
        now = negotiator.next_deadline() or now
        negotiator.poll(now)
        requests += sent(negotiator)
    assert len(requests) == 10
    assert len({p.identifier for p in requests}) == 10
    assert now == pytest.approx(30.0)
    assert negotiator.state is State.STOPPED
    assert negotiator.take_events() == ["this-layer-finished"]
    assert negotiator.failure == "no answer to 10 Configure-Requests"


def test_close_sends_terminate_requests_then_finishes() -> None:
    a, _ = opened_pair()
    a.close(1.0, "admin")
    assert a.take_events() == ["this-layer-down"]
    first = sent(a)
    assert [(p.code, p.data) for p in first] == [(Code.TERMINATE_REQUEST, b"admin")]
    a.poll(4.0)
    assert [p.code for p in sent(a)] == [Code.TERMINATE_REQUEST]  # Max-Terminate = 2
    a.poll(7.0)
    assert sent(a) == []
    assert a.state is State.CLOSED
    assert a.take_events() == ["this-layer-finished"]


def test_close_handshake_between_two() -> None:
    a, b = opened_pair()
    a.close(1.0, "bye")
    pump(a, b, 1.0)
    assert a.state is State.CLOSED
    assert b.state is State.STOPPING and b.peer_reason == "bye"
    b.poll(4.0)  # zrc: the pause before finishing (RFC 1661 section 4.4)
    assert b.state is State.STOPPED
    assert b.take_events() == ["this-layer-down", "this-layer-finished"]


def test_terminate_ack_echoes_identifier() -> None:
    a, _ = opened_pair()
    a.receive(ControlPacket(Code.TERMINATE_REQUEST, 0x42, b"x"), 1.0)
    assert [(p.code, p.identifier) for p in sent(a)] == [(Code.TERMINATE_ACK, 0x42)]


def test_unknown_code_is_code_rejected() -> None:
    a, _ = opened_pair()
    a.receive(ControlPacket(0x99, 7, b"\x01\x02"), 1.0)
    (reject,) = sent(a)
    assert reject.code == Code.CODE_REJECT
    assert reject.data == build_control(ControlPacket(0x99, 7, b"\x01\x02"))
    assert a.state is State.OPENED


def test_code_reject_of_configure_request_is_catastrophic() -> None:
    a, _ = opened_pair()
    a.receive(ControlPacket(Code.CODE_REJECT, 1, bytes.fromhex("0e010004")), 1.0)  # code 14: permitted
    assert a.state is State.OPENED
    a.receive(ControlPacket(Code.CODE_REJECT, 2, bytes.fromhex("01010004")), 1.0)
    assert a.state is State.STOPPING
    assert a.take_events() == ["this-layer-down"]
    assert sent(a)[0].code == Code.TERMINATE_REQUEST
    assert a.failure == "peer rejected code 01"


def test_replies_with_wrong_identifier_or_options_are_discarded() -> None:
    handler = Handler()
    negotiator = started(handler)
    (request,) = sent(negotiator)
    negotiator.receive(ControlPacket(Code.CONFIGURE_ACK, request.identifier + 1, request.data), 0.0)
    negotiator.receive(ControlPacket(Code.CONFIGURE_ACK, request.identifier, b"\x01\x04\x02\x00"), 0.0)
    negotiator.receive(ControlPacket(Code.CONFIGURE_REJECT, request.identifier, b"\x09\x02"), 0.0)
    assert negotiator.discarded == 3 and handler.calls == []
    assert negotiator.state is State.REQ_SENT
    negotiator.receive(ControlPacket(Code.CONFIGURE_ACK, request.identifier, request.data), 0.0)
    assert negotiator.state is State.ACK_RCVD
    negotiator.receive(ControlPacket(Code.CONFIGURE_ACK, request.identifier, request.data), 0.0)
    assert negotiator.discarded == 4  # a duplicate reply
    assert handler.calls == [("ack", (Option(1, b"\x05\xdc"),))]


def test_nak_calls_handler_and_sends_new_request() -> None:
    handler = Handler()
    negotiator = started(handler)
    (request,) = sent(negotiator)
    negotiator.receive(ControlPacket(Code.CONFIGURE_NAK, request.identifier, b"\x01\x04\x02\x00"), 0.0)
    assert handler.calls == [("nak", (Option(1, b"\x02\x00"),))]
    (again,) = sent(negotiator)
    assert again.code == Code.CONFIGURE_REQUEST and again.identifier != request.identifier


def test_handler_failure_closes_with_reason() -> None:
    handler = Handler()
    handler.fail_on_nak = "no overlap"
    negotiator = started(handler)
    (request,) = sent(negotiator)
    negotiator.receive(ControlPacket(Code.CONFIGURE_NAK, request.identifier, b""), 0.0)
    assert negotiator.state is State.CLOSING
    assert negotiator.failure == "no overlap"
    assert [(p.code, p.data) for p in sent(negotiator)] == [(Code.TERMINATE_REQUEST, b"no overlap")]


def test_max_failure_turns_naks_into_rejects() -> None:
    """RFC 1661 section 4.6: after Max-Failure Naks without an Ack, Reject instead."""
    negotiator = started(Handler(verdict=Judgement.NAK), limits=Limits(max_failure=5))
    sent(negotiator)
    codes = []
    for identifier in range(7):
        negotiator.receive(ControlPacket(Code.CONFIGURE_REQUEST, identifier, b"\x01\x04\x05\xdc"), 0.0)
        codes += [p.code for p in sent(negotiator)]
    assert codes == [Code.CONFIGURE_NAK] * 5 + [Code.CONFIGURE_REJECT] * 2


def test_reject_verdict_lists_the_options() -> None:
    negotiator = started(Handler(verdict=Judgement.REJECT))
    sent(negotiator)
    negotiator.receive(ControlPacket(Code.CONFIGURE_REQUEST, 9, b"\x0d\x03\x06"), 0.0)
    (reply,) = sent(negotiator)
    assert (reply.code, reply.identifier, parse_options(reply.data)) == (Code.CONFIGURE_REJECT, 9, (Option(13, b"\x06"),))


def test_peer_request_in_opened_renegotiates() -> None:
    a, b = opened_pair()
    b.receive(ControlPacket(Code.CONFIGURE_REQUEST, 77, b"\x01\x04\x05\xdc"), 1.0)
    assert b.take_events() == ["this-layer-down"]
    assert [p.code for p in sent(b)] == [Code.CONFIGURE_REQUEST, Code.CONFIGURE_ACK]
    assert b.state is State.ACK_SENT


def test_illegal_event_is_ignored() -> None:
    negotiator = Negotiator(Protocol.LCP, Handler())
    negotiator.receive(ControlPacket(Code.CONFIGURE_REQUEST, 1, b""), 0.0)
    assert negotiator.state is State.INITIAL and negotiator.illegal_events == 1
    assert negotiator.take_output() == []


def test_down_from_opened() -> None:
    a, _ = opened_pair()
    a.down(1.0)
    assert a.state is State.STARTING
    assert a.take_events() == ["this-layer-down"]
    assert a.next_deadline() is None


def test_judge_each_rules() -> None:
    """RFC 1661 sections 5.3/5.4: Reject wins over Nak; Nak carries our values and hints."""
    options = (Option(1, b"a"), Option(2, b"b"), Option(3, b"c"))

    def judge(option: Option) -> tuple[Judgement, Option]:
        return {1: Judgement.ACK, 2: Judgement.NAK, 3: Judgement.REJECT}[option.type], Option(option.type, b"ours")

    assert judge_each(options, judge) == (Judgement.REJECT, (Option(3, b"c"),))
    assert judge_each(options[:2], judge, hints=(Option(9, b"h"),)) == (
        Judgement.NAK, (Option(2, b"ours"), Option(9, b"h")))
    assert judge_each(options[:1], judge) == (Judgement.ACK, ())
    assert judge_each(options[:1], judge, hints=(Option(9, b"h"),)) == (Judgement.NAK, (Option(9, b"h"),))
