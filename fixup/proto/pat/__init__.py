"""The PAT fixup's protocol state (pure): PPTP control connections followed through the gateway,
Call IDs translated behind one PAT address, verdicts per packet (RFC 2637 sections 2 and 4)."""
