"""The protocol state of both products (pure, sans-I/O): :mod:`fixup.proto.pat` (the PAT fixup),
:mod:`fixup.proto.vpdn` (the dial-in server) with :mod:`fixup.proto.ppp`, :mod:`fixup.proto.auth`
and :mod:`fixup.proto.aaa`."""
