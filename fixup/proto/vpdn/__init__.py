"""The dial-in server's protocol state (pure): PPTP terminated on this host, its calls, GRE
channels and PPP sessions, address pool and AAA (RFC 2637, RFC 1661), like PIX ``vpdn group``."""
