"""``fixup show vpdn``: the local PPTP server's tunnels and sessions, laid out like PIX 6.x
``show vpdn`` (seed 001_78fc8e2d733fd35b.txt line 76).  Pure formatting of the snapshot."""
from __future__ import annotations

from typing import Any, Mapping

from fixup.proto.events import printable


def format_vpdn(snapshot: Mapping[str, Any]) -> str:
    tunnels = list(snapshot.get("tunnels") or [])
    sessions = list(snapshot.get("sessions") or [])
    lines = [f"PPTP Tunnel and Session Information (Total tunnels={len(tunnels)} sessions={len(sessions)})"]
    for t in tunnels:
        lines += [
            "",
            f"Tunnel id {t['id']}, {t['sessions']} active sessions",
            f"   Tunnel state is {t['state']}, time since event change {_secs(t['since_change'])}",
            f"   remote Internet Address {t['remote_address']}, port {t['remote_port']}",
            f"   Local Internet Address {t['local_address']}, port 1723",
            f"   {t['packets_sent']} packets sent, {t['packets_received']} received, "
            f"{t['bytes_sent']} bytes sent, {t['bytes_received']} received",
        ]
        for s in (s for s in sessions if s["tunnel_id"] == t["id"]):
            lines += _session(s)
    pool = snapshot.get("pool") or {}
    if pool:
        lines += ["", f"ip local pool {pool['first']}-{pool['last']}: {pool['in_use']} of {pool['size']} in use; "
                  f"max sessions {snapshot.get('max_sessions')}, {snapshot.get('refused', 0)} calls refused, "
                  f"{snapshot.get('unknown_gre', 0)} GRE packets of no call dropped"]
    drops = snapshot.get("drops") or {}
    if drops:
        lines.append("dropped from clients: " + ", ".join(f"{reason} {count}" for reason, count in sorted(drops.items())))
    return "\n".join(lines) + "\n"


def _session(s: Mapping[str, Any]) -> list[str]:
    mppe = f"{s['mppe']} bits" if s.get("mppe") else "None"
    return [
        f"Call id {s['call_id']} is {'up' if s['state'] == 'up' else s['state']} on tunnel id {s['tunnel_id']}",
        f"   Remote Internet Address is {s['remote_address']}",
        f"   Session username is {printable(s.get('username') or 'Unknown')}, state is {s['state']}",
        f"      Time since event change {_secs(s['since_change'])}, client address {s['address']}, MPPE {mppe}",
        f"      Remote call id is {s['remote_call_id']}",
        f"      {s['packets_sent']} packets sent, {s['packets_received']} received, "
        f"{s['bytes_sent']} bytes sent, {s['bytes_received']} received",
        f"      Seq {s['seq']}, Ack {s['ack'] if s['ack'] is not None else '-'}, Ack_Rcvd {s['ack_received']}, "
        f"peer RWS {s['peer_rws']}",
        f"      {s['out_of_order']} out of order packets",
    ]


def _secs(value: float) -> str:
    return f"{int(value)} secs"


def format_aaa(groups: Mapping[str, Any]) -> str:
    """``fixup show aaa-server``: each AAA server group and its hosts with their counters, laid
    out like the ASA's ``show aaa-server`` (one ``Name: value`` line per counter)."""
    if not groups:
        return "No AAA server groups in use (the policy's terminate section names none).\n"
    lines: list[str] = []
    for name, group in groups.items():
        for host in group.get("hosts") or []:
            lines += ["" if lines else None, f"Server Group:    {name}",
                      f"Server Protocol: {group.get('protocol', '?')}",
                      f"Server Address:  {host.get('address', host.get('host', '?'))}",
                      f"Server port:     {host.get('port', '?')}"]
            for key, value in host.items():
                if key not in ("address", "port", "host") and value not in (None, ""):
                    lines.append(f"  {key.replace('_', ' ').replace('-', ' ')}: {value}")
    return "\n".join(line for line in lines if line is not None) + "\n"
