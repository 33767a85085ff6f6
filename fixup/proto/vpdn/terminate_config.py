"""From the ``terminate`` policy to the PPP layers' configuration (pure)."""
from __future__ import annotations

from ipaddress import IPv4Address

from fixup.proto.vpdn.config import TerminatePolicy
from fixup.proto.ppp.ccp import CcpPolicy
from fixup.proto.ppp.ipcp import IpcpConfig
from fixup.proto.ppp.lcp import LcpConfig
from fixup.proto.ppp.session import SessionConfig


def session_config(policy: TerminatePolicy, local: IPv4Address) -> SessionConfig:
    """``vpdn group 1 ppp authentication ...`` -> LCP, ``client configuration dns/wins`` -> IPCP
    (RFC 1877), ``ppp encryption mppe 40|128|auto [required]`` -> CCP (RFC 3078)."""
    dns, wins = policy.dns, policy.wins
    ipcp = IpcpConfig(local=local, primary_dns=dns[0] if dns else None, secondary_dns=dns[1] if len(dns) > 1 else None,
                      primary_nbns=wins[0] if wins else None, secondary_nbns=wins[1] if len(wins) > 1 else None)
    mppe = policy.encryption.mppe
    ccp = None if mppe == "none" else CcpPolicy(allow_40=mppe in ("40", "auto"), allow_128=mppe in ("128", "auto"),
                                                required=policy.encryption.required,
                                                stateless=policy.encryption.stateless)
    return SessionConfig(lcp=LcpConfig(auth_methods=policy.authentication), ipcp=ipcp, ccp=ccp)
