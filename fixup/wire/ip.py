"""Minimal IPv4 (RFC 791) and TCP (RFC 9293) header access for the packets NFQUEUE hands us.

Only what the tracker needs: locate the transport header and payload, read ports / sequence
numbers / flags, and rebuild checksums after a rewrite.  Pure functions on bytes.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from fixup.errors import BadIp, Truncated

IPPROTO_TCP = 6
IPPROTO_GRE = 47

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_ACK = 0x10

_IPV4_FIXED = struct.Struct("!BBHHHBBH4s4s")
_TCP_FIXED = struct.Struct("!HHIIBB")
_IP_CHECKSUM_OFFSET = 10
_TCP_CHECKSUM_OFFSET = 16


@dataclass(frozen=True, slots=True)
class Ipv4Header:
    """RFC 791 section 3.1, the fields we use.  ``src``/``dst`` are the 4 raw address bytes."""

    header_length: int
    total_length: int
    protocol: int
    src: bytes
    dst: bytes


@dataclass(frozen=True, slots=True)
class TcpHeader:
    """RFC 9293 section 3.1.  ``payload_offset`` counts from the start of the IP packet."""

    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: int
    payload_offset: int


def parse_ipv4(packet: bytes | bytearray) -> Ipv4Header:
    """Validate the IPv4 header (RFC 791 section 3.1); fragments are refused (the kernel's
    defragmentation runs before any hook we queue from)."""
    if len(packet) < 20:
        raise Truncated(f"{len(packet)} bytes, an IPv4 header needs 20", where="IPv4 header")
    ver_ihl, _tos, total, _ident, frag, _ttl, proto, _csum, src, dst = _IPV4_FIXED.unpack_from(packet)
    if ver_ihl >> 4 != 4:
        raise BadIp(f"version {ver_ihl >> 4}, expected 4", where="IPv4 header", offset=0)
    ihl = (ver_ihl & 0x0F) * 4
    if ihl < 20:
        raise BadIp(f"header length {ihl} < 20", where="IPv4 header", offset=0)
    if total < ihl or total > len(packet):
        raise Truncated(f"total length {total}, have {len(packet)} bytes", where="IPv4 header", offset=2)
    if frag & 0x3FFF:
        raise BadIp("fragment", where="IPv4 header", offset=6)
    return Ipv4Header(ihl, total, proto, src, dst)


def parse_tcp(packet: bytes | bytearray, ip: Ipv4Header) -> TcpHeader:
    """RFC 9293 section 3.1: ports, sequence and acknowledgment numbers, flags, data offset."""
    off = ip.header_length
    if ip.total_length - off < 20:
        raise Truncated("TCP header shorter than 20 bytes", where="TCP header", offset=off)
    sport, dport, seq, ack, data_off, flags = _TCP_FIXED.unpack_from(packet, off)
    hlen = (data_off >> 4) * 4
    if hlen < 20 or off + hlen > ip.total_length:
        raise BadIp(f"data offset {hlen}", where="TCP header", offset=off + 12)
    return TcpHeader(sport, dport, seq, ack, flags, off + hlen)


def internet_checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """RFC 1071 one's-complement sum, folded and complemented."""
    if len(data) % 2:
        data = bytes(data) + b"\x00"
    total = initial + sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def set_ipv4_checksum(packet: bytearray, header_length: int) -> None:
    """Recompute the IPv4 header checksum in place (RFC 791 section 3.1)."""
    packet[_IP_CHECKSUM_OFFSET:_IP_CHECKSUM_OFFSET + 2] = b"\x00\x00"
    struct.pack_into("!H", packet, _IP_CHECKSUM_OFFSET, internet_checksum(packet[:header_length]))


def set_tcp_checksum(packet: bytearray, ip: Ipv4Header) -> None:
    """Recompute the whole TCP checksum in place (RFC 9293 section 3.1).  A full recompute, not an
    incremental one: a queued segment may carry only a partial (offload) checksum."""
    start = ip.header_length
    seg_len = ip.total_length - start
    pseudo = ip.src + ip.dst + struct.pack("!BBH", 0, IPPROTO_TCP, seg_len)
    packet[start + _TCP_CHECKSUM_OFFSET:start + _TCP_CHECKSUM_OFFSET + 2] = b"\x00\x00"
    csum = internet_checksum(pseudo + bytes(packet[start:ip.total_length]))
    struct.pack_into("!H", packet, start + _TCP_CHECKSUM_OFFSET, csum)


def rewrite_addresses(packet: bytearray, ip: Ipv4Header, *, src: bytes | None = None,
                      dst: bytes | None = None) -> None:
    """Set source and/or destination address in place and fix the IPv4 header checksum.
    Only for protocols whose own checksum does not cover the addresses (enhanced GRE)."""
    if src is not None:
        packet[12:16] = src
    if dst is not None:
        packet[16:20] = dst
    set_ipv4_checksum(packet, ip.header_length)

