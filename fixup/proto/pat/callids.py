"""Translated Call IDs: one 16-bit space per (PAT address, server address).

Many inside clients pick the same Call ID (every pptp-linux control connection opens its first
call with Call ID 0), so the Call ID a client chose (its *original* ID, ``O``) is replaced, on the
way out, by a *translated* ID ``T`` unique toward that server.  The server then addresses the
call by ``T`` in control messages (Peer Call ID, RFC 2637 section 2.8/2.10/...) and in the
enhanced-GRE Key field (RFC 2637 section 4.1), and fixup maps ``T`` back to the client and ``O``.

A Call ID may reach us split across TCP segments, one byte at a time, and the high byte must be
rewritten before the low byte has been seen.  The space is therefore cut into 256 *buckets* (the
high byte of ``T``) and, for each control connection, every original high byte ``O >> 8`` is bound
to one bucket and every bucket to at most one original high byte.  Then:

* the high byte of ``T`` follows from the high byte of ``O`` alone (outbound), and the high byte
  of ``O`` from the high byte of ``T`` alone (inbound), per connection;
* the low byte is chosen freely inside the bucket, so thousands of connections that all use
  Call ID 0 still get distinct IDs (buckets are handed out least-used first).

Both choices are random (issue 11 item 10): a least-used bucket from a random starting point, a
free slot from a random starting point, so that a blind GRE injection cannot guess a call's
translated ID from the server's address and the order of calls.
"""
from __future__ import annotations

import secrets
from typing import Callable

from fixup.proto.pat.config import Limits
from fixup.proto.pat.framer import DropSegment

BUCKETS = 256
SLOTS = 256


class CallIdsExhausted(DropSegment):
    """No translated Call ID may be handed out: the segment must be dropped (TCP will retransmit
    it).  ``reason`` is the drop counter: ``no-free-call-id`` (the server's space is full),
    ``call-quota-connection`` or ``call-quota-client`` (:class:`fixup.proto.pat.config.Limits`)."""

    def __init__(self, reason: str = "no-free-call-id") -> None:
        super().__init__(reason)


class _ConnectionBuckets:
    """One control connection's binding of original high bytes to buckets, as a flat list of
    ``[original high, bucket, calls + reservations, ...]`` triples: a connection has one or a few,
    and 10,000s of connections must stay small."""

    __slots__ = ("binding", "originals")

    def __init__(self) -> None:
        self.binding: list[int] = []
        self.originals: list[int] = []  # live original IDs of this connection

    def _find(self, value: int, field: int) -> int:
        binding = self.binding
        for at in range(0, len(binding), 3):
            if binding[at + field] == value:
                return at
        return -1

    def bucket_of(self, o_high: int) -> int | None:
        at = self._find(o_high, 0)
        return None if at < 0 else self.binding[at + 1]

    def high_of(self, bucket: int) -> int | None:
        at = self._find(bucket, 1)
        return None if at < 0 else self.binding[at]

    def buckets(self) -> set[int]:
        return set(self.binding[1::3])

    def bind(self, o_high: int, bucket: int) -> None:
        self.binding += (o_high, bucket, 0)

    def add_user(self, bucket: int, delta: int) -> None:
        """Count a call or reservation in (``+1``) or out (``-1``); unbind at zero."""
        at = self._find(bucket, 1)
        self.binding[at + 2] += delta
        if self.binding[at + 2] == 0:
            del self.binding[at:at + 3]

    def pending(self) -> list[tuple[int, int]]:
        """(bucket, count) of every binding."""
        return list(zip(self.binding[1::3], self.binding[2::3]))


class CallIdSpace:
    """Translated IDs toward one server from one PAT address; calls keyed ``(conn_id, O)``."""

    def __init__(self, randbelow: Callable[[int], int] = secrets.randbelow, limits: Limits = Limits()) -> None:
        self.randbelow = randbelow
        self.limits = limits
        self._client_of: dict[int, bytes] = {}  # conn -> inside address (register)
        self._client_load: dict[bytes, int] = {}  # inside address -> live IDs + reservations
        # keyed and valued by ``conn << 16 | original``: small ints, not tuples (10,000s of calls)
        self._owner: dict[int, int] = {}  # translated -> conn << 16 | original
        self._translated: dict[int, int] = {}  # conn << 16 | original -> translated
        self._bucket_load = [0] * BUCKETS  # live IDs + reservations per bucket
        self._slots: list[bytearray | None] = [None] * BUCKETS  # a bucket's row when first used
        self._conns: dict[int, _ConnectionBuckets] = {}

    def __len__(self) -> int:
        return len(self._owner)

    def register(self, conn: int, client: bytes) -> None:
        """``conn`` belongs to the inside host ``client`` (for ``Limits.calls_per_client``)."""
        self._client_of[conn] = client

    # -- outbound: original -> translated --------------------------------------------------

    def reserve_high(self, conn: int, o_high: int) -> int:
        """Start an allocation: the bucket (translated high byte) for ``o_high`` on ``conn``,
        with one slot reserved in it; :class:`CallIdsExhausted` when the connection or its client
        is at its quota, or no bucket can take another call."""
        cb = self._conns.get(conn)
        if cb is None:
            cb = self._conns[conn] = _ConnectionBuckets()
        client = self._client_of.get(conn)
        if sum(cb.binding[2::3]) >= self.limits.calls_per_connection:
            raise CallIdsExhausted("call-quota-connection")
        if client is not None and self._client_load.get(client, 0) >= self.limits.calls_per_client:
            raise CallIdsExhausted("call-quota-client")
        bucket = cb.bucket_of(o_high)
        if bucket is None:
            bucket = self._least_loaded_bucket(exclude=cb.buckets())
            if bucket is None:
                self._forget_if_unused(conn)
                raise CallIdsExhausted()
            cb.bind(o_high, bucket)
        elif self._bucket_load[bucket] >= SLOTS:
            raise CallIdsExhausted()
        cb.add_user(bucket, +1)
        self._bucket_load[bucket] += 1
        if client is not None:
            self._client_load[client] = self._client_load.get(client, 0) + 1
        return bucket

    def complete(self, conn: int, bucket: int, o_low: int) -> int:
        """Finish an allocation started by :meth:`reserve_high`: the translated low byte.  An
        original ID this connection already has (a retransmitted request) keeps its translation."""
        cb = self._conns[conn]
        original = cb.high_of(bucket) << 8 | o_low
        existing = self._translated.get(conn << 16 | original)
        if existing is not None:
            self._unreserve(cb, bucket, conn)
            return existing & 0xFF
        low = self._free_slot(bucket)
        translated = bucket << 8 | low
        self._row(bucket)[low] = 1
        self._owner[translated] = conn << 16 | original
        self._translated[conn << 16 | original] = translated
        cb.originals.append(original)
        return low

    def allocate(self, conn: int, original: int) -> int:
        """Whole-ID allocation (both bytes known); a retransmitted request keeps its ID whatever
        the quotas say.  :class:`CallIdsExhausted` as :meth:`reserve_high`."""
        existing = self._translated.get(conn << 16 | original)
        if existing is not None:
            return existing
        bucket = self.reserve_high(conn, original >> 8)
        return bucket << 8 | self.complete(conn, bucket, original & 0xFF)

    def adopt(self, conn: int, original: int, translated: int) -> None:
        """Take back a translation a previous process handed out (a restart, issue 12): the
        same invariants as :meth:`allocate`, no quota.  ValueError when the pair contradicts
        what is already held (a store that does not describe one consistent space)."""
        bucket, low = translated >> 8, translated & 0xFF
        if not 0 <= original <= 0xFFFF or not 0 <= translated <= 0xFFFF:
            raise ValueError(f"call id {original} as {translated} is out of range")
        if translated in self._owner or conn << 16 | original in self._translated:
            raise ValueError(f"call id {original} as {translated} is held twice")
        cb = self._conns.get(conn)
        if cb is None:
            cb = self._conns[conn] = _ConnectionBuckets()
        bound = cb.bucket_of(original >> 8)
        if bound is None:
            if cb.high_of(bucket) is not None:
                raise ValueError(f"bucket {bucket} is bound to another high byte on connection {conn}")
            cb.bind(original >> 8, bucket)
        elif bound != bucket:
            raise ValueError(f"call id {original} as {translated} breaks the bucket binding of connection {conn}")
        cb.add_user(bucket, +1)
        self._bucket_load[bucket] += 1
        client = self._client_of.get(conn)
        if client is not None:
            self._client_load[client] = self._client_load.get(client, 0) + 1
        self._row(bucket)[low] = 1
        self._owner[translated] = conn << 16 | original
        self._translated[conn << 16 | original] = translated
        cb.originals.append(original)

    def forward_high(self, conn: int, o_high: int) -> int | None:
        cb = self._conns.get(conn)
        return None if cb is None else cb.bucket_of(o_high)

    def forward(self, conn: int, original: int) -> int | None:
        return self._translated.get(conn << 16 | original)

    # -- inbound: translated -> original ----------------------------------------------------

    def reverse_high(self, conn: int, t_high: int) -> int | None:
        cb = self._conns.get(conn)
        return None if cb is None else cb.high_of(t_high)

    def owner(self, translated: int) -> tuple[int, int] | None:
        """``(conn_id, original)`` of a live translated ID."""
        owner = self._owner.get(translated)
        return None if owner is None else (owner >> 16, owner & 0xFFFF)

    # -- release -----------------------------------------------------------------------------

    def release(self, conn: int, original: int) -> None:
        translated = self._translated.pop(conn << 16 | original, None)
        if translated is None:
            return
        del self._owner[translated]
        bucket = translated >> 8
        self._row(bucket)[translated & 0xFF] = 0
        cb = self._conns[conn]
        cb.originals.remove(original)
        self._unreserve(cb, bucket, conn)

    def release_connection(self, conn: int) -> None:
        """Release every call of a connection and any reservation still open on it."""
        cb = self._conns.get(conn)
        if cb is None:
            return
        for original in list(cb.originals):
            self.release(conn, original)
        for bucket, pending in cb.pending():
            self._bucket_load[bucket] -= pending
            self._client_unload(conn, pending)
        self._conns.pop(conn, None)

    def unregister(self, conn: int) -> None:
        """The connection is gone (after :meth:`release_connection`)."""
        self._client_of.pop(conn, None)

    @property
    def idle(self) -> bool:
        """No call, reservation or connection left: the space can be dropped."""
        return not self._owner and not self._conns and not self._client_of

    # -- internals ---------------------------------------------------------------------------

    def _unreserve(self, cb: _ConnectionBuckets, bucket: int, conn: int | None = None) -> None:
        self._bucket_load[bucket] -= 1
        cb.add_user(bucket, -1)
        if conn is not None:
            self._client_unload(conn, 1)

    def _client_unload(self, conn: int, count: int) -> None:
        client = self._client_of.get(conn)
        if client is not None and count:
            left = self._client_load.get(client, 0) - count
            if left > 0:
                self._client_load[client] = left
            else:
                self._client_load.pop(client, None)

    def _forget_if_unused(self, conn: int) -> None:
        cb = self._conns.get(conn)
        if cb is not None and not cb.binding:
            del self._conns[conn]

    def _least_loaded_bucket(self, exclude: set[int]) -> int | None:
        load = self._bucket_load
        best, best_load = None, SLOTS
        start = self.randbelow(BUCKETS)
        for step in range(BUCKETS):
            bucket = (start + step) % BUCKETS
            if load[bucket] < best_load and bucket not in exclude:
                best, best_load = bucket, load[bucket]
                if best_load == 0:
                    break
        return best

    def _row(self, bucket: int) -> bytearray:
        row = self._slots[bucket]
        if row is None:
            row = self._slots[bucket] = bytearray(SLOTS)
        return row

    def _free_slot(self, bucket: int) -> int:
        slots, start = self._row(bucket), self.randbelow(SLOTS)
        for step in range(SLOTS):
            low = (start + step) % SLOTS
            if not slots[low]:
                return low
        raise AssertionError("reserved slot missing")  # reserve_high guarantees one
