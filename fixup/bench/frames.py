"""Whole Ethernet frames of enhanced GRE for the traffic generator, and trafgen's config text.

Pure: bytes in, bytes (or text) out.  A frame is Ethernet II (IEEE 802.3, EtherType 0x0800),
an IPv4 header without options (RFC 791 section 3.1, checksum filled in), the enhanced GRE
header of RFC 2637 section 4.1 with the Sequence Number present (S bit, as on every PPTP data
packet) and a payload of ``payload_length`` bytes that starts like a PPP frame carrying IPv4
(address 0xff, control 0x03, protocol 0x0021; RFC 1662 section 3.1, RFC 1332).
"""
from __future__ import annotations

import struct
from ipaddress import IPv4Address

from fixup.wire.gre import GreHeader, build_gre
from fixup.wire.ip import IPPROTO_GRE, set_ipv4_checksum

ETHERTYPE_IPV4 = 0x0800
ETHERNET_HEADER_LENGTH = 14
IPV4_HEADER_LENGTH = 20
DEFAULT_TTL = 64
PPP_IPV4_PREFIX = b"\xff\x03\x00\x21"  # RFC 1662 section 3.1 address/control, PPP protocol 0x0021
PAYLOAD_FILLER = 0xA5
TRAFGEN_BYTES_PER_LINE = 16
MAX_FRAME_LENGTH = 1514  # a 1500-byte MTU plus the Ethernet header (no FCS: the NIC adds it)

_IPV4_FIXED = struct.Struct("!BBHHHBBH4s4s")


def parse_mac(text: str) -> bytes:
    """``"02:00:5e:10:00:01"`` -> 6 bytes; ValueError for anything else."""
    parts = text.strip().split(":")
    if len(parts) != 6 or not all(len(part) == 2 for part in parts):
        raise ValueError(f"not a MAC address: {text!r}")
    return bytes(int(part, 16) for part in parts)


def ppp_payload(length: int) -> bytes:
    """``length`` bytes that look like the start of a PPP frame carrying IPv4, then filler."""
    if length < 0:
        raise ValueError(f"negative payload length {length}")
    return (PPP_IPV4_PREFIX + bytes([PAYLOAD_FILLER]) * length)[:length]


def ipv4_header(src: IPv4Address, dst: IPv4Address, protocol: int, payload_length: int, *,
                ttl: int = DEFAULT_TTL, identification: int = 0) -> bytes:
    """A 20-byte IPv4 header (RFC 791 section 3.1): version 4, IHL 5, no fragmentation, checksum set."""
    total_length = IPV4_HEADER_LENGTH + payload_length
    if total_length > 0xFFFF:
        raise ValueError(f"IPv4 total length {total_length} does not fit 16 bits")
    header = bytearray(_IPV4_FIXED.pack(0x45, 0, total_length, identification & 0xFFFF, 0, ttl, protocol, 0,
                                        src.packed, dst.packed))
    set_ipv4_checksum(header, IPV4_HEADER_LENGTH)
    return bytes(header)


def gre_frame(*, dst_mac: bytes, src_mac: bytes, src: IPv4Address, dst: IPv4Address, call_id: int,
              payload_length: int, sequence: int = 1) -> bytes:
    """One Ethernet frame carrying enhanced GRE (RFC 2637 section 4.1) for ``call_id``."""
    if len(dst_mac) != 6 or len(src_mac) != 6:
        raise ValueError("MAC addresses are 6 bytes")
    payload = ppp_payload(payload_length)
    gre = build_gre(GreHeader(call_id=call_id, payload_length=payload_length, sequence=sequence), payload)
    frame = dst_mac + src_mac + struct.pack("!H", ETHERTYPE_IPV4) + ipv4_header(src, dst, IPPROTO_GRE, len(gre)) + gre
    if len(frame) > MAX_FRAME_LENGTH:
        raise ValueError(f"frame of {len(frame)} bytes exceeds {MAX_FRAME_LENGTH} (1500-byte MTU)")
    return frame


def trafgen_config(frame: bytes, comment: str = "") -> str:
    """trafgen's packet configuration for sending ``frame`` over and over: one ``{ ... }``
    block of comma-separated hex bytes (trafgen(8), "PACKET CONFIGURATION")."""
    if not frame:
        raise ValueError("empty frame")
    lines = [f"/* {comment.replace('*/', '')} */"] if comment else []
    chunks = [frame[i:i + TRAFGEN_BYTES_PER_LINE] for i in range(0, len(frame), TRAFGEN_BYTES_PER_LINE)]
    body = ",\n".join("  " + ", ".join(f"0x{byte:02x}" for byte in chunk) for chunk in chunks)
    lines += ["{", body, "}"]
    return "\n".join(lines) + "\n"
