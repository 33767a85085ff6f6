"""fixup: PPTP (RFC 2637) fixup for Linux edge routers.

Layers, one folder each:

* :mod:`fixup.wire`  -- pure parse/build of PPTP control messages, enhanced GRE, IPv4/TCP headers.
* :mod:`fixup.proto` -- pure state machines fed bytes and ``now``, returning verdicts and events.
* :mod:`fixup.io`    -- netfilter rules, NFQUEUE, sockets: the only layer that touches the kernel.
"""
from __future__ import annotations

__version__ = "0.1.0"
