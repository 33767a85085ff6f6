"""The control-connection and call state machines as explicit tables (RFC 2637 sections 2 and 3).

``(state, event) -> (action, next state)``.  A pair that is not in a table is a protocol error:
the tracker counts it and lets the message pass untouched (it neither opens nor closes a call).
"""
from __future__ import annotations

from enum import Enum


class ControlState(Enum):
    """RFC 2637 section 3.1.1/3.1.2, seen from the middle: we do not care which side initiated."""

    IDLE = "idle"
    WAIT_REPLY = "wait-reply"  # SCCRQ seen, SCCRP not yet
    ESTABLISHED = "established"
    STOPPING = "stopping"  # StopCCRQ seen
    CLOSED = "closed"  # StopCCRP, FIN or RST: every call released


class ControlEvent(Enum):
    SCCRQ = "sccrq"
    SCCRP_OK = "sccrp-ok"
    SCCRP_FAIL = "sccrp-fail"
    STOPCCRQ = "stopccrq"
    STOPCCRP = "stopccrp"
    ECHO = "echo"  # Echo-Request / Echo-Reply (section 2.5, 2.6)
    CALL = "call"  # any call-management message (sections 2.7-2.15)
    TCP_CLOSE = "tcp-close"  # FIN or RST


class ControlAction(Enum):
    NONE = "none"
    TRACK_CALL = "track-call"  # hand the message to the call table
    RELEASE_ALL = "release-all"
    CLEARING_ALL = "clearing-all"  # StopCCRQ: every call to clearing, released by StopCCRP or timeout


S, E, A = ControlState, ControlEvent, ControlAction

CONTROL_TRANSITIONS: dict[tuple[ControlState, ControlEvent], tuple[ControlAction, ControlState]] = {
    (S.IDLE, E.SCCRQ): (A.NONE, S.WAIT_REPLY),
    (S.WAIT_REPLY, E.SCCRQ): (A.NONE, S.WAIT_REPLY),  # retransmitted or crossing requests
    (S.WAIT_REPLY, E.SCCRP_OK): (A.NONE, S.ESTABLISHED),
    (S.WAIT_REPLY, E.SCCRP_FAIL): (A.RELEASE_ALL, S.CLOSED),
    (S.WAIT_REPLY, E.STOPCCRQ): (A.CLEARING_ALL, S.STOPPING),
    (S.ESTABLISHED, E.ECHO): (A.NONE, S.ESTABLISHED),
    (S.ESTABLISHED, E.CALL): (A.TRACK_CALL, S.ESTABLISHED),
    (S.ESTABLISHED, E.STOPCCRQ): (A.CLEARING_ALL, S.STOPPING),
    (S.STOPPING, E.STOPCCRQ): (A.NONE, S.STOPPING),
    (S.STOPPING, E.STOPCCRP): (A.RELEASE_ALL, S.CLOSED),
    (S.STOPPING, E.ECHO): (A.NONE, S.STOPPING),
    (S.STOPPING, E.CALL): (A.TRACK_CALL, S.STOPPING),  # CDNs of the calls being cleared
    (S.IDLE, E.TCP_CLOSE): (A.RELEASE_ALL, S.CLOSED),
    (S.WAIT_REPLY, E.TCP_CLOSE): (A.RELEASE_ALL, S.CLOSED),
    (S.ESTABLISHED, E.TCP_CLOSE): (A.RELEASE_ALL, S.CLOSED),
    (S.STOPPING, E.TCP_CLOSE): (A.RELEASE_ALL, S.CLOSED),
    (S.CLOSED, E.TCP_CLOSE): (A.NONE, S.CLOSED),
}


class CallState(Enum):
    """A call as the middle sees it (RFC 2637 sections 3.2.1-3.2.4)."""

    SETUP = "setup"  # request seen (OCRQ/ICRQ), reply not yet
    ESTABLISHED = "established"  # positive reply: GRE may flow
    CLEARING = "clearing"  # CCRQ (or StopCCRQ) seen, waiting for CDN
    RELEASED = "released"


class CallEvent(Enum):
    REQUEST = "request"  # OCRQ / ICRQ from the side that owns the call's Call ID
    REPLY_OK = "reply-ok"  # OCRP Connected / ICRP Accept
    REPLY_FAIL = "reply-fail"
    CONNECTED = "connected"  # ICCN (section 2.11)
    LINK_INFO = "link-info"  # SLI, WEN (sections 2.14, 2.15)
    CLEAR = "clear"  # CCRQ (section 2.12)
    DISCONNECT = "disconnect"  # CDN (section 2.13)
    TIMEOUT = "timeout"
    CONTROL_GONE = "control-gone"  # StopCCRP, FIN, RST of the control connection


class CallAction(Enum):
    NONE = "none"
    OPEN = "open"  # install GRE translation both ways
    RELEASE = "release"  # remove GRE translation, free the translated ID
    CLOSE_GRE = "close-gre"  # a re-request: GRE stops until the new reply


CS, CE, CA = CallState, CallEvent, CallAction

CALL_TRANSITIONS: dict[tuple[CallState, CallEvent], tuple[CallAction, CallState]] = {
    (CS.SETUP, CE.REQUEST): (CA.NONE, CS.SETUP),  # retransmitted request: same translated ID
    (CS.SETUP, CE.REPLY_OK): (CA.OPEN, CS.ESTABLISHED),
    (CS.SETUP, CE.REPLY_FAIL): (CA.RELEASE, CS.RELEASED),
    (CS.SETUP, CE.CLEAR): (CA.NONE, CS.CLEARING),
    (CS.SETUP, CE.DISCONNECT): (CA.RELEASE, CS.RELEASED),
    (CS.SETUP, CE.TIMEOUT): (CA.RELEASE, CS.RELEASED),
    (CS.SETUP, CE.CONTROL_GONE): (CA.RELEASE, CS.RELEASED),
    (CS.ESTABLISHED, CE.REQUEST): (CA.CLOSE_GRE, CS.SETUP),
    (CS.ESTABLISHED, CE.CONNECTED): (CA.NONE, CS.ESTABLISHED),
    (CS.ESTABLISHED, CE.LINK_INFO): (CA.NONE, CS.ESTABLISHED),
    (CS.ESTABLISHED, CE.CLEAR): (CA.NONE, CS.CLEARING),
    (CS.ESTABLISHED, CE.DISCONNECT): (CA.RELEASE, CS.RELEASED),
    (CS.ESTABLISHED, CE.TIMEOUT): (CA.RELEASE, CS.RELEASED),
    (CS.ESTABLISHED, CE.CONTROL_GONE): (CA.RELEASE, CS.RELEASED),
    (CS.CLEARING, CE.CLEAR): (CA.NONE, CS.CLEARING),
    (CS.CLEARING, CE.LINK_INFO): (CA.NONE, CS.CLEARING),
    (CS.CLEARING, CE.CONNECTED): (CA.NONE, CS.CLEARING),
    (CS.CLEARING, CE.DISCONNECT): (CA.RELEASE, CS.RELEASED),
    (CS.CLEARING, CE.TIMEOUT): (CA.RELEASE, CS.RELEASED),
    (CS.CLEARING, CE.CONTROL_GONE): (CA.RELEASE, CS.RELEASED),
}
