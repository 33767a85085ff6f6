"""``fixup bench``: fixup's GRE and control-plane performance next to plain routing and the
kernel PPTP helper, measured in network namespaces (issue 3).

``frames`` and ``report`` are pure; ``traffic`` (trafgen), ``bulk``/``latency`` (PPTP peers),
``gateways``, ``scenarios``, ``profile`` and ``main`` are I/O tools like :mod:`fixup.lab`.
"""
