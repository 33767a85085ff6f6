"""PPP in userspace, pure: the RFC 1661 option negotiation automaton and the control protocols
a PPTP server runs over it.

``fsm``: the RFC 1661 section 4.1 table and the options-handler interface;
``negotiator``: :class:`Negotiator`, which runs the table for one protocol instance;
``lcp`` (RFC 1661 section 6), ``ipcp`` (RFC 1332, RFC 1877), ``ccp`` (RFC 1962, RFC 3078):
the server side of each.  Frames and packets are coded by :mod:`fixup.wire.ppp`.
Nothing here does I/O or reads a clock: time is passed in as ``now``.
"""
from __future__ import annotations

from fixup.proto.ppp.ccp import Ccp, CcpPolicy, MppeResult
from fixup.proto.ppp.fsm import TRANSITIONS, Action, Event, Judgement, Limits, NegotiationFailed, OptionsHandler, State
from fixup.proto.ppp.ipcp import Ipcp, IpcpConfig
from fixup.proto.ppp.lcp import Lcp, LcpConfig
from fixup.proto.ppp.negotiator import ControlProtocol, Negotiator

__all__ = [
    "TRANSITIONS", "Action", "Ccp", "CcpPolicy", "ControlProtocol", "Event", "Ipcp", "IpcpConfig", "Judgement",
    "Lcp", "LcpConfig", "Limits", "MppeResult", "NegotiationFailed", "Negotiator", "OptionsHandler", "State",
]
