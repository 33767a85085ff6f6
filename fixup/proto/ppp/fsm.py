"""The option negotiation automaton of RFC 1661 section 4, written once and shared by LCP,
IPCP and CCP.

:data:`TRANSITIONS` is the state transition table of RFC 1661 section 4.1, cell by cell,
with the states (4.2), events (4.3) and actions (4.4) it names; :class:`Limits` holds the
counters and timer of section 4.6.  What to request and how to judge the peer's request is
protocol business, supplied by an :class:`OptionsHandler`;
:class:`fixup.proto.ppp.negotiator.Negotiator` runs the table.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Protocol as TypingProtocol

from fixup.wire.ppp import Code, Option


class State(IntEnum):
    """RFC 1661 section 4.2, numbered as in the table of section 4.1."""

    INITIAL = 0
    STARTING = 1
    CLOSED = 2
    STOPPED = 3
    CLOSING = 4
    STOPPING = 5
    REQ_SENT = 6
    ACK_RCVD = 7
    ACK_SENT = 8
    OPENED = 9


class Event(Enum):
    """RFC 1661 section 4.3; values are the table's row labels."""

    UP = "Up"
    DOWN = "Down"
    OPEN = "Open"
    CLOSE = "Close"
    TO_PLUS = "TO+"
    TO_MINUS = "TO-"
    RCR_PLUS = "RCR+"
    RCR_MINUS = "RCR-"
    RCA = "RCA"
    RCN = "RCN"
    RTR = "RTR"
    RTA = "RTA"
    RUC = "RUC"
    RXJ_PLUS = "RXJ+"
    RXJ_MINUS = "RXJ-"
    RXR = "RXR"


class Action(Enum):
    """RFC 1661 section 4.4; values are the table's abbreviations."""

    TLU = "tlu"  # This-Layer-Up
    TLD = "tld"  # This-Layer-Down
    TLS = "tls"  # This-Layer-Started
    TLF = "tlf"  # This-Layer-Finished
    IRC = "irc"  # Initialize-Restart-Count
    ZRC = "zrc"  # Zero-Restart-Count
    SCR = "scr"  # Send-Configure-Request
    SCA = "sca"  # Send-Configure-Ack
    SCN = "scn"  # Send-Configure-Nak/Rej
    STR = "str"  # Send-Terminate-Request
    STA = "sta"  # Send-Terminate-Ack
    SCJ = "scj"  # Send-Code-Reject
    SER = "ser"  # Send-Echo-Reply


Cell = tuple[tuple[Action, ...], State]

_I, _S, _C, _P = State.INITIAL, State.STARTING, State.CLOSED, State.STOPPED
_CG, _SG, _RS, _AR, _AS, _O = (State.CLOSING, State.STOPPING, State.REQ_SENT, State.ACK_RCVD,
                               State.ACK_SENT, State.OPENED)
TLU, TLD, TLS, TLF, IRC, ZRC, SCR, SCA, SCN, STR, STA, SCJ, SER = (
    Action.TLU, Action.TLD, Action.TLS, Action.TLF, Action.IRC, Action.ZRC, Action.SCR, Action.SCA,
    Action.SCN, Action.STR, Action.STA, Action.SCJ, Action.SER)
_X = None  # '-': the event cannot occur in this state


def _to(state: State, *actions: Action) -> Cell:
    return actions, state


# RFC 1661 section 4.1, one row per event, one column per state 0..9 (Initial .. Opened).
_ROWS: dict[Event, tuple[Cell | None, ...]] = {
    Event.UP: (_to(_C), _to(_RS, IRC, SCR), _X, _X, _X, _X, _X, _X, _X, _X),
    Event.DOWN: (_X, _X, _to(_I), _to(_S, TLS), _to(_I), _to(_S), _to(_S), _to(_S), _to(_S), _to(_S, TLD)),
    Event.OPEN: (_to(_S, TLS), _to(_S), _to(_RS, IRC, SCR), _to(_P), _to(_SG), _to(_SG),
                 _to(_RS), _to(_AR), _to(_AS), _to(_O)),
    Event.CLOSE: (_to(_I), _to(_I, TLF), _to(_C), _to(_C), _to(_CG), _to(_CG),
                  _to(_CG, IRC, STR), _to(_CG, IRC, STR), _to(_CG, IRC, STR), _to(_CG, TLD, IRC, STR)),
    Event.TO_PLUS: (_X, _X, _X, _X, _to(_CG, STR), _to(_SG, STR), _to(_RS, SCR), _to(_RS, SCR), _to(_AS, SCR), _X),
    Event.TO_MINUS: (_X, _X, _X, _X, _to(_C, TLF), _to(_P, TLF), _to(_P, TLF), _to(_P, TLF), _to(_P, TLF), _X),
    Event.RCR_PLUS: (_X, _X, _to(_C, STA), _to(_AS, IRC, SCR, SCA), _to(_CG), _to(_SG),
                     _to(_AS, SCA), _to(_O, SCA, TLU), _to(_AS, SCA), _to(_AS, TLD, SCR, SCA)),
    Event.RCR_MINUS: (_X, _X, _to(_C, STA), _to(_RS, IRC, SCR, SCN), _to(_CG), _to(_SG),
                      _to(_RS, SCN), _to(_AR, SCN), _to(_RS, SCN), _to(_RS, TLD, SCR, SCN)),
    Event.RCA: (_X, _X, _to(_C, STA), _to(_P, STA), _to(_CG), _to(_SG),
                _to(_AR, IRC), _to(_RS, SCR), _to(_O, IRC, TLU), _to(_RS, TLD, SCR)),
    Event.RCN: (_X, _X, _to(_C, STA), _to(_P, STA), _to(_CG), _to(_SG),
                _to(_RS, IRC, SCR), _to(_RS, SCR), _to(_AS, IRC, SCR), _to(_RS, TLD, SCR)),
    Event.RTR: (_X, _X, _to(_C, STA), _to(_P, STA), _to(_CG, STA), _to(_SG, STA),
                _to(_RS, STA), _to(_RS, STA), _to(_RS, STA), _to(_SG, TLD, ZRC, STA)),
    Event.RTA: (_X, _X, _to(_C), _to(_P), _to(_C, TLF), _to(_P, TLF), _to(_RS), _to(_RS), _to(_AS), _to(_RS, TLD, SCR)),
    Event.RUC: (_X, _X, _to(_C, SCJ), _to(_P, SCJ), _to(_CG, SCJ), _to(_SG, SCJ),
                _to(_RS, SCJ), _to(_AR, SCJ), _to(_AS, SCJ), _to(_O, SCJ)),
    Event.RXJ_PLUS: (_X, _X, _to(_C), _to(_P), _to(_CG), _to(_SG), _to(_RS), _to(_RS), _to(_AS), _to(_O)),
    Event.RXJ_MINUS: (_X, _X, _to(_C, TLF), _to(_P, TLF), _to(_C, TLF), _to(_P, TLF),
                      _to(_P, TLF), _to(_P, TLF), _to(_P, TLF), _to(_SG, TLD, IRC, STR)),
    Event.RXR: (_X, _X, _to(_C), _to(_P), _to(_CG), _to(_SG), _to(_RS), _to(_AR), _to(_AS), _to(_O, SER)),
}

TRANSITIONS: dict[tuple[State, Event], Cell] = {
    (state, event): cell for event, row in _ROWS.items() for state, cell in zip(State, row) if cell is not None
}

# The table's footnote letters: r = restart option (Open), p = passive option (TO-),
# x = crossed connection (RCA/RCN).  The automaton takes none of these options.
FOOTNOTES: dict[tuple[State, Event], str] = {
    **{(s, Event.OPEN): "r" for s in (_P, _CG, _SG, _O)},
    **{(s, Event.TO_MINUS): "p" for s in (_RS, _AR, _AS)},
    **{(s, e): "x" for s in (_AR, _O) for e in (Event.RCA, Event.RCN)},
}

TIMER_STATES = frozenset({_CG, _SG, _RS, _AR, _AS})  # RFC 1661 section 4.6: the Restart timer runs
LAYER_EVENTS = {TLU: "this-layer-up", TLD: "this-layer-down", TLS: "this-layer-started", TLF: "this-layer-finished"}
CATASTROPHIC_CODES = frozenset(range(Code.CONFIGURE_REQUEST, Code.CODE_REJECT + 1))


@dataclass(frozen=True, slots=True)
class Limits:
    """RFC 1661 section 4.6 counters and timer: ``restart`` seconds between retransmissions."""

    restart: float = 3.0
    max_terminate: int = 2
    max_configure: int = 10
    max_failure: int = 5


class Judgement(Enum):
    """How a Configure-Request is answered (RFC 1661 sections 5.2 - 5.4)."""

    ACK = "ack"
    NAK = "nak"
    REJECT = "reject"


class NegotiationFailed(Exception):
    """Raised by an options handler when the peers cannot agree; the layer closes with
    ``reason`` as the Terminate-Request text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OptionsHandler(TypingProtocol):
    """The protocol-specific part of option negotiation (RFC 1661 section 6 for LCP,
    RFC 1332 for IPCP, RFC 1962 for CCP).  Methods may raise :class:`NegotiationFailed`."""

    def build_request(self) -> tuple[Option, ...]: ...

    def judge_request(self, options: tuple[Option, ...]) -> tuple[Judgement, tuple[Option, ...]]: ...

    def on_ack(self, options: tuple[Option, ...]) -> None: ...

    def on_nak(self, options: tuple[Option, ...]) -> None: ...

    def on_reject(self, options: tuple[Option, ...]) -> None: ...


def judge_each(options: Iterable[Option], judge_one: Callable[[Option], tuple[Judgement, Option]],
               *, hints: Iterable[Option] = ()) -> tuple[Judgement, tuple[Option, ...]]:
    """Combine per-option decisions into one reply (RFC 1661 sections 5.3 and 5.4): any
    rejected option -> Configure-Reject of exactly those; else any nak'd option (or a
    ``hint``: an option the peer should add) -> Configure-Nak with our values; else Ack."""
    rejects: list[Option] = []
    naks: list[Option] = []
    for option in options:
        judgement, reply = judge_one(option)
        if judgement is Judgement.REJECT:
            rejects.append(option)
        elif judgement is Judgement.NAK:
            naks.append(reply)
    if rejects:
        return Judgement.REJECT, tuple(rejects)
    naks.extend(hints)
    if naks:
        return Judgement.NAK, tuple(naks)
    return Judgement.ACK, ()
