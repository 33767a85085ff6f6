"""AAA I/O: the RADIUS (UDP) and TACACS+ (TCP) sockets around the pure clients of :mod:`fixup.proto.aaa`."""
