"""Pure parse/build of the bytes on the wire, with no I/O.

``fixup.wire.pptp`` (with ``pptp_messages``): PPTP control messages, RFC 2637 section 2.
``fixup.wire.gre``: the enhanced GRE header, RFC 2637 section 4.1.
Parsers raise only :class:`fixup.errors.BadInput` subclasses for bad bytes.
"""
