"""The PAT fixup's I/O shell: netfilter rules, NFQUEUE, the nftables GRE maps, ``show calls``."""
