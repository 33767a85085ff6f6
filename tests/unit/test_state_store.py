"""The restart store (issue 12) on a real sqlite file in a temporary directory: records saved and
forgotten, discarded with the reason when written for another boot / PAT address, and a file that
is not a database moved aside instead of stopping the daemon."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from fixup.io.pat.state_store import FILE_NAME, StateStore

pytestmark = pytest.mark.unit

IDENTITY = {"boot": "b1", "pat": "192.0.2.1", "ports": "1723", "gre": "kernel"}


def opened(directory: Path, identity: dict[str, str] = IDENTITY) -> StateStore:
    store = StateStore(str(directory), identity)
    store.open()
    return store


def test_saves_and_forgets_records_and_reads_them_back_once_stamped(tmp_path: Path) -> None:
    store = opened(tmp_path / "state")
    assert store.load().records == []
    store.save([(1, {"id": 1}), (2, {"id": 2})], [])
    store.save([(2, {"id": 2, "x": 1})], [1])
    store.close()
    again = opened(tmp_path / "state")
    saved = again.load()
    assert saved.records == [{"id": 2, "x": 1}] and saved.discarded == ""
    assert stat.S_IMODE(os.stat(tmp_path / "state" / FILE_NAME).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "state").st_mode) == 0o700


@pytest.mark.parametrize("key, value", [("boot", "b2"), ("pat", "192.0.2.9"), ("ports", "1723,1724"), ("gre", "queue")])
def test_records_of_another_boot_or_policy_are_discarded_with_the_reason(tmp_path: Path, key: str, value: str) -> None:
    store = opened(tmp_path)
    store.load()
    store.save([(1, {"id": 1})], [])
    store.close()
    other = opened(tmp_path, {**IDENTITY, key: value})
    saved = other.load()
    assert saved.records == [] and key in saved.discarded and value in saved.discarded
    other.close()
    assert opened(tmp_path, {**IDENTITY, key: value}).load().records == []  # deleted, not kept aside


def test_a_file_that_is_not_a_database_is_moved_aside(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_bytes(b"garbage" * 1000)
    store = opened(tmp_path)
    assert store.load().records == []
    assert (tmp_path / (FILE_NAME + ".bad")).read_bytes().startswith(b"garbage")
    store.save([(1, {"id": 1})], [])


def test_recoveries_are_counted_across_starts(tmp_path: Path) -> None:
    store = opened(tmp_path)
    assert store.load().recoveries == 0
    store.count_recovery(1)
    store.close()
    assert opened(tmp_path).load().recoveries == 1


def test_a_record_that_is_not_json_comes_back_as_none(tmp_path: Path) -> None:
    store = opened(tmp_path)
    store.load()
    store._write([("INSERT INTO connections VALUES (?, ?)", (5, "{not json"))])
    store.close()
    assert opened(tmp_path).load().records == [None]
