"""MPPE encryption engine (RFC 3078), pure: bytes in, bytes out.

An MPPE packet (PPP protocol 0x00FD) starts with two octets: the A (flushed), B, C
(compressed) and D (encrypted) bits and a 12-bit coherency count (RFC 3078 section 3); then
the inner packet, protocol field included, RC4-encrypted.

Keys (RFC 3078 section 7, RFC 3079): each direction starts from its start key; the first
session key is GetNewKeyFromSHA(start, start) reduced to the negotiated strength, and every
later one is GetNewKeyFromSHA(start, current) passed once through RC4 under itself, then
reduced (RFC 3078 section 7.3).  Stateless mode changes the key for every packet (section
7.1); stateful mode keeps the RC4 stream running across packets and changes the key on every
"flag" packet (coherency count low octet 0xFF, section 7.2).  A packet with the flushed bit
(A) set tells the receiver the sender restarted RC4 from the current session key: every
stateless packet, every flag packet, and the first packet after a CCP Reset-Request (section
8); the key itself changes only on flag packets, so a receiver can resynchronise on any
flushed packet however many were lost.  Like Linux, the coherency count starts at 0 and a
stateless sender changes the key before its first packet too.
"""
from __future__ import annotations

import struct

from Crypto.Cipher import ARC4

from fixup.errors import BadMppe
from fixup.proto.auth.crypto import (
    KEY_BYTES,
    get_new_key_from_sha,
    initial_session_key,
    reduce_session_key,
)

MPPE_PROTOCOL = 0x00FD
BIT_FLUSHED = 0x80  # A
BIT_B = 0x40
BIT_COMPRESSED = 0x20  # C (MPPC, never negotiated here)
BIT_ENCRYPTED = 0x10  # D
CCOUNT_SPACE = 4096
HEADER_LEN = 2
_NETWORK_PROTOCOLS = (b"\x00\x21", b"\x00\x57")  # IPv4, IPv6 (RFC 1332, RFC 5072): what rides in MPPE here
MAX_STATELESS_GAP = 256  # coherency counts one packet may skip: 256 lost in a row, not 2,047 rekeys


class MppeOutOfSync(BadMppe):
    """A stateful-mode packet dropped because packets were lost: the session sends a CCP
    Reset-Request (RFC 3078 section 8) and waits for a flushed packet."""

    reason = "mppe-out-of-sync"


class _KeyState:
    """One direction's start key, current session key and RC4 state (RFC 3078 section 7)."""

    __slots__ = ("start_key", "key_bits", "session_key", "rc4", "used")

    def __init__(self, start_key: bytes, key_bits: int) -> None:
        length = KEY_BYTES[key_bits]
        if len(start_key) < length:
            raise ValueError(f"{key_bits}-bit MPPE needs a start key of {length} octets")
        self.start_key = start_key[:length]
        self.key_bits = key_bits
        self.session_key = initial_session_key(self.start_key, key_bits)
        self.rc4 = ARC4.new(self.session_key)
        self.used = 0  # keystream bytes consumed under this session key (stateful mode)

    def rewind(self, session_key: bytes, used: int) -> None:
        """Back to ``used`` bytes into ``session_key``'s keystream: undoes a packet that did not
        decrypt (stateful mode; costs at most the bytes of one key epoch, on the failure path only)."""
        self.session_key, self.used = session_key, used
        self.rc4 = ARC4.new(session_key)
        if used:
            self.rc4.encrypt(bytes(used))

    def copy(self) -> _KeyState:
        """The same keys with a fresh RC4 state (stateless mode: every packet starts one)."""
        twin = _KeyState.__new__(_KeyState)
        twin.start_key, twin.key_bits, twin.session_key = self.start_key, self.key_bits, self.session_key
        twin.rc4, twin.used = ARC4.new(self.session_key), 0
        return twin

    def rekey(self) -> None:
        """RFC 3078 section 7.3: interim key by SHA-1, RC4 of it under itself, reduction."""
        interim = get_new_key_from_sha(self.start_key, self.session_key, len(self.start_key))
        self.session_key = reduce_session_key(ARC4.new(interim).encrypt(interim), self.key_bits)
        self.rc4 = ARC4.new(self.session_key)
        self.used = 0


def _valid_protocol(protocol: int) -> bool:
    """RFC 1661 section 2: protocol numbers have an odd low octet and an even high octet."""
    return protocol & 0x0001 == 1 and protocol & 0x0100 == 0


class MppeEngine:
    """Encrypts what we send and decrypts what we receive on one MPPE-protected link.

    ``send_key``/``recv_key``: this side's start keys (for the server, ``MppeKeys.start_keys``
    of the authenticator).  ``key_bits``: 40, 56 or 128.  ``stateless``: the CCP option's H
    bit (RFC 3078 section 2.1).  ``ip_only``: a received packet counts as decrypted (and moves
    the key state) only when it is IPv4 or IPv6 inside -- what the dial-in server carries; the
    RFC 3079 test vectors carry text."""

    def __init__(self, send_key: bytes, recv_key: bytes, key_bits: int, stateless: bool, *,
                 ip_only: bool = False) -> None:
        if key_bits not in KEY_BYTES:
            raise ValueError(f"MPPE key strength must be 40, 56 or 128 bits, got {key_bits}")
        self.key_bits = key_bits
        self.stateless = stateless
        self.ip_only = ip_only
        self._tx = _KeyState(send_key, key_bits)
        self._rx = _KeyState(recv_key, key_bits)
        self._tx_ccount = CCOUNT_SPACE - 1  # the first packet carries count 0
        self._rx_ccount = CCOUNT_SPACE - 1
        self._flush_next = False
        self._discard = False
        self._reset_wanted = False

    # --- sending -----------------------------------------------------------------------------

    def on_reset_request(self) -> None:
        """The peer sent a CCP Reset-Request: the next packet changes the key and carries the
        flushed bit (repeated requests before it count once).  RFC 3078 section 8 could be read
        as "restart RC4 with the same key"; what pppd/Linux ppp_mppe and Windows do -- and so what
        interoperates -- is a key change on every flushed packet."""
        self._flush_next = True

    def encrypt(self, ppp_payload: bytes) -> bytes:
        """``ppp_payload``: the inner packet, 2-octet protocol field first.  Returns the MPPE
        header and the encrypted packet (the Information field of a 0x00FD frame)."""
        if len(ppp_payload) < 2:
            raise ValueError("the inner packet needs its 2-octet protocol field")
        self._tx_ccount = (self._tx_ccount + 1) % CCOUNT_SPACE
        flag_packet = self._tx_ccount & 0xFF == 0xFF
        bits = BIT_ENCRYPTED
        if self.stateless or flag_packet or self._flush_next:
            self._tx.rekey()
            bits |= BIT_FLUSHED
        self._flush_next = False
        header = struct.pack("!H", (bits << 8) | self._tx_ccount)
        return header + self._tx.rc4.encrypt(ppp_payload)

    # --- receiving ---------------------------------------------------------------------------

    @property
    def needs_reset(self) -> bool:
        """Stateful mode lost packets: drop until a flushed packet; a CCP Reset-Request is due."""
        return self._discard

    def take_reset_request(self) -> bool:
        """True once per loss event: the session then sends one CCP Reset-Request."""
        wanted, self._reset_wanted = self._reset_wanted, False
        return wanted

    def decrypt(self, data: bytes) -> bytes:
        """``data``: the Information field of a 0x00FD frame.  Returns the inner packet with a
        2-octet protocol field (a compressed 1-octet one is expanded).  Raises BadMppe for a
        malformed packet, MppeOutOfSync for one dropped while resynchronising."""
        if len(data) < HEADER_LEN + 1:
            raise BadMppe("no encrypted data", where="MPPE", offset=len(data))
        word = struct.unpack_from("!H", data)[0]
        bits, ccount = word >> 8 & 0xF0, word & 0x0FFF
        self._check_bits(bits)
        flushed = bool(bits & BIT_FLUSHED)
        if self.stateless:
            return self._decrypt_stateless(ccount, data[HEADER_LEN:])
        return self._decrypt_stateful(ccount, flushed, data[HEADER_LEN:])

    def _decrypt_stateful(self, ccount: int, flushed: bool, encrypted: bytes) -> bytes:
        """In order, through the one RC4 stream; a packet that does not decrypt to IP leaves the
        coherency count, the key and the stream where they were (a forged one cannot desync it)."""
        saved = (self._rx_ccount, self._discard, self._rx.session_key, self._rx.used)
        self._catch_up_stateful(ccount, flushed)
        try:
            inner = self._network_packet(self._rx.rc4.decrypt(encrypted))
        except BadMppe:
            self._rx_ccount, self._discard = saved[0], saved[1]
            self._rx.rewind(saved[2], saved[3])
            raise
        self._rx.used += len(encrypted)
        return inner

    def _check_bits(self, bits: int) -> None:
        """RFC 3078 section 3: D set, C clear (no MPPC); the flushed bit on every stateless
        packet (7.1).  (A stateful flag packet is taken as flushed whatever its A bit.)"""
        if not bits & BIT_ENCRYPTED:
            raise BadMppe("encrypted bit (D) not set", where="MPPE", offset=0)
        if bits & BIT_COMPRESSED:
            raise BadMppe("compressed bit (C) set: MPPC is not negotiated", where="MPPE", offset=0)
        if self.stateless and not bits & BIT_FLUSHED:
            raise BadMppe("flushed bit (A) missing in stateless mode", where="MPPE", offset=0)

    def _decrypt_stateless(self, ccount: int, encrypted: bytes) -> bytes:
        """RFC 3078 section 8.1: one key change per coherency count step, lost packets included;
        a packet not ahead of the last one (late or repeated), or more than MAX_STATELESS_GAP
        ahead, is refused.  The keys move on a copy and are kept only when the packet decrypts
        to a PPP protocol: one forged packet cannot advance them past the real stream."""
        gap = (ccount - self._rx_ccount) % CCOUNT_SPACE
        if gap == 0 or gap > CCOUNT_SPACE // 2:
            raise BadMppe(f"coherency count {ccount} not after {self._rx_ccount}", where="MPPE")
        if gap > MAX_STATELESS_GAP:
            raise BadMppe(f"coherency count {ccount} is {gap} after {self._rx_ccount} (at most "
                          f"{MAX_STATELESS_GAP})", where="MPPE")
        keys = self._rx.copy()
        for _ in range(gap):
            keys.rekey()
        inner = self._network_packet(keys.rc4.decrypt(encrypted))  # BadMppe: nothing committed
        self._rx, self._rx_ccount = keys, ccount
        return inner

    def _catch_up_stateful(self, ccount: int, flushed: bool) -> None:
        """RFC 3078 sections 7.2 and 8.2, as pppd/Linux and Windows implement them: in order, or
        after a loss drop packets until a flushed one and change the key once per flag packet
        missed; every flushed packet (flag packets carry the bit too) changes the key.  A late
        or repeated packet is refused without touching the state: a key change cannot be undone."""
        ahead = (ccount - self._rx_ccount) % CCOUNT_SPACE
        if ahead == 0 or ahead > CCOUNT_SPACE // 2:
            raise BadMppe(f"coherency count {ccount} not after {self._rx_ccount}", where="MPPE")
        entering = False
        if not self._discard:
            self._rx_ccount = (self._rx_ccount + 1) % CCOUNT_SPACE  # the count we expected
            self._discard = entering = ccount != self._rx_ccount
        if self._discard:
            if not flushed:
                self._reset_wanted = self._reset_wanted or entering  # one Reset-Request per loss
                raise MppeOutOfSync(f"coherency count {ccount}, waiting for a flushed packet", where="MPPE")
            while (ccount & ~0xFF) != (self._rx_ccount & ~0xFF):  # flag packets lost on the way
                self._rx.rekey()
                self._rx_ccount = (self._rx_ccount + 0x100) % CCOUNT_SPACE
            self._discard = False
        self._rx_ccount = ccount
        if flushed:
            self._rx.rekey()

    def _network_packet(self, inner: bytes) -> bytes:
        """:meth:`_plain`, and with ``ip_only`` only IP: MPPE has no integrity check of its own, so
        this is what tells a forged or wrongly keyed packet from a real one before state moves."""
        inner = self._plain(inner)
        if self.ip_only and inner[:2] not in _NETWORK_PROTOCOLS or inner[:2] == b"\x00\x21" and inner[2:3] and inner[2] >> 4 != 4:
            raise BadMppe("decrypted packet is not IP: wrong key or forged", where="MPPE", offset=2)
        return inner

    @staticmethod
    def _plain(inner: bytes) -> bytes:
        """Expand a compressed protocol field (RFC 1661 section 6.5) and sanity-check it: a
        wrong key shows up here most of the time."""
        if inner[0] & 1:
            inner = b"\x00" + inner
        if len(inner) < 2 or not _valid_protocol(struct.unpack_from("!H", inner)[0]):
            raise BadMppe("decrypted protocol field is not a PPP protocol", where="MPPE", offset=2)
        return inner
