"""The restart store (issue 12): the PAT tracker's connection records in sqlite, written as they
change -- before the verdict of the segment that changed them -- so a restart, even after
``kill -9``, finds every call that was up.

sqlite (the standard library's) rather than a journal of our own: one row per control
connection, replaced in a transaction, is the whole compaction story.  WAL with
``synchronous=OFF``: a commit reaches the operating system (not the disk) before the verdict, so a
crash of the process loses nothing; only a power cut may lose the last commits, and then
conntrack and the calls are gone too.  A single change is one autocommitted statement.  The file lives in ``runtime.state_dir`` (``/var/lib/fixup``, the unit's
``StateDirectory``), mode 0600 in a 0700 directory: it names inside hosts.

The records are valid only on the boot, PAT address and control ports that wrote them (times are
``CLOCK_MONOTONIC``); :meth:`StateStore.load` says why when it discards them.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fixup.errors import SetupError
from fixup.io.logs import RateLimitedLog

log = logging.getLogger("fixup.state")

FILE_NAME = "state.db"
BOOT_ID = "/proc/sys/kernel/random/boot_id"
SCHEMA = ("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
          "CREATE TABLE IF NOT EXISTS connections (id INTEGER PRIMARY KEY, record TEXT NOT NULL)")
MAX_RECORD = 1 << 20  # a record longer than this was not written by us


@dataclass(frozen=True, slots=True)
class Saved:
    """What :meth:`StateStore.load` found: the records to restore (empty when discarded), why
    they were discarded if they were, and how many earlier starts recovered calls."""

    records: list[Any]
    discarded: str = ""
    recoveries: int = 0


def identity(pat: object, ports: Iterable[int], gre: str) -> dict[str, str]:
    """What saved calls are valid for: this boot, this PAT address, these ports, this GRE mode."""
    return {"boot": boot_id(), "pat": str(pat), "ports": ",".join(str(p) for p in sorted(set(ports))), "gre": gre}


def boot_id(path: str = BOOT_ID) -> str:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return "unknown"


_ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False)  # records are trees we built


def _encode(record: dict[str, Any]) -> str:
    return _ENCODER.encode(record)


class StateStore:
    """One sqlite file; every failure after :meth:`open` is logged (rate-limited) and counted,
    never raised into the packet path."""

    def __init__(self, directory: str, identity: dict[str, str]) -> None:
        """``identity``: what the records are valid for (boot id, PAT address, ports, GRE mode)."""
        self.path = os.path.join(directory, FILE_NAME)
        self.directory = directory
        self.identity = dict(identity)
        self.errors = 0
        self._db: sqlite3.Connection | None = None
        self._log = RateLimitedLog(log)

    def open(self) -> None:
        """Open (or create) the file.  One that is not a sqlite database of ours is moved aside
        (``state.db.bad``, with a warning) and a new one started: the calls it held are lost, the
        daemon is not."""
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            try:
                self._db = self._connect()
            except sqlite3.DatabaseError as err:
                os.replace(self.path, self.path + ".bad")
                log.warning("fixup: the state store %s is unreadable (%s): moved to %s.bad, starting afresh",
                            self.path, err, self.path)
                self._db = self._connect()
        except (OSError, sqlite3.Error) as err:
            raise SetupError(f"cannot open the state store {self.path}: {err}") from err

    def _connect(self) -> sqlite3.Connection:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=OFF")
            db.execute("PRAGMA cache_size=-256")  # KiB: writes are appends, a small cache does (issue 12 memory)
            for statement in SCHEMA:
                db.execute(statement)
            db.execute("SELECT key, value FROM meta LIMIT 1").fetchall()
            db.execute("SELECT id, record FROM connections LIMIT 1").fetchall()
        except sqlite3.Error:
            db.close()
            raise
        return db

    def load(self) -> Saved:
        """The records of the previous process, if they are valid here; the store is then
        stamped with this process's identity (records discarded are deleted)."""
        db = self._require()
        try:
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            rows = db.execute("SELECT record FROM connections ORDER BY id").fetchall()
        except sqlite3.Error as err:
            raise SetupError(f"cannot read the state store {self.path}: {err}") from err
        try:
            recoveries = max(0, int(meta.get("recoveries", "0")))
        except ValueError:
            recoveries = 0
        records, discarded = self._decode(rows), ""
        if rows:
            discarded = self._mismatch(meta)
        if discarded:
            records = []
        self._stamp(recoveries, clear=bool(discarded))
        return Saved(records, discarded, recoveries)

    def _decode(self, rows: list[tuple[str]]) -> list[Any]:
        records = []
        for (text,) in rows:
            if len(text) > MAX_RECORD:
                records.append(None)  # the tracker skips it and says so
                continue
            try:
                records.append(json.loads(text))
            except ValueError:
                records.append(None)
        return records

    def _mismatch(self, meta: dict[str, str]) -> str:
        for key, value in self.identity.items():
            if meta.get(key) != value:
                was = meta.get(key, "nothing")
                return f"written for {key} {was}, this is {value}"
        return ""

    def _stamp(self, recoveries: int, *, clear: bool) -> None:
        db = self._require()
        try:
            with db:
                db.execute("BEGIN")
                if clear:
                    db.execute("DELETE FROM connections")
                db.execute("DELETE FROM meta")
                db.executemany("INSERT INTO meta VALUES (?, ?)",
                               [*self.identity.items(), ("recoveries", str(recoveries))])
        except sqlite3.Error as err:
            raise SetupError(f"cannot write the state store {self.path}: {err}") from err

    def restamp(self, identity: dict[str, str]) -> None:
        """The records now hold for ``identity`` (a reload changed the control ports)."""
        self.identity = dict(identity)
        self._write([("INSERT OR REPLACE INTO meta VALUES (?, ?)", item) for item in self.identity.items()])

    def count_recovery(self, recoveries: int) -> None:
        self._write([("INSERT OR REPLACE INTO meta VALUES ('recoveries', ?)", (str(recoveries),))])

    def save(self, saves: list[tuple[int, dict[str, Any]]], gone: list[int]) -> None:
        """One transaction: the changed connections' records in, the forgotten ones out."""
        if not saves and not gone:
            return
        statements: list[tuple[str, tuple[Any, ...]]] = [
            ("INSERT OR REPLACE INTO connections VALUES (?, ?)", (conn_id, _encode(record)))
            for conn_id, record in saves]
        statements += [("DELETE FROM connections WHERE id = ?", (conn_id,)) for conn_id in gone]
        self._write(statements)

    def replace_all(self, records: list[tuple[int, dict[str, Any]]]) -> None:
        """Exactly these records (after a restore: what was skipped goes)."""
        self._write([("DELETE FROM connections", ()),
                     *(("INSERT INTO connections VALUES (?, ?)", (conn_id, _encode(record)))
                       for conn_id, record in records)])

    def clear(self) -> None:
        """A real shutdown: nothing to resume."""
        self._write([("DELETE FROM connections", ())])

    def _write(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        db = self._db
        if db is None:
            return
        try:
            if len(statements) == 1:  # the usual case: one connection, its own transaction
                db.execute(*statements[0])
                return
            with db:
                db.execute("BEGIN")
                for sql, args in statements:
                    db.execute(sql, args)
        except sqlite3.Error:
            self.errors += 1
            self._log.error("fixup: cannot write the state store %s", self.path)

    def close(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                log.debug("closing the state store failed", exc_info=True)
            self._db = None

    def _require(self) -> sqlite3.Connection:
        if self._db is None:
            raise SetupError(f"the state store {self.path} is not open")
        return self._db
