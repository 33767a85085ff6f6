"""The I/O layer: the daemon (``fixup run``), its control socket and reload, and the shells of
each product (:mod:`fixup.io.pat`, :mod:`fixup.io.vpdn`, :mod:`fixup.io.aaa`)."""
