"""A short run of ``fixup fuzz`` (issue 11): every target takes mutated input without a crash,
and a crash would be reported (a target that raises something untyped is caught and shown)."""
from __future__ import annotations

import pytest

from fixup import fuzz

pytestmark = pytest.mark.unit


def test_a_short_fuzz_run_finds_no_crash(capsys):
    assert fuzz.main(["--inputs", "1200", "--seed", "5"]) == 0
    out = capsys.readouterr().out
    assert out.count(" inputs ") == len(fuzz.TARGETS) and "no crash" in out


def test_a_crash_is_reported_with_its_input(monkeypatch, capsys):
    def fragile() -> tuple[list[bytes], fuzz.Target]:
        def run(data: bytes) -> None:
            if len(data) > 3:
                raise IndexError("the kind of bug the fuzzer is for")
        return [b"abcd"], run

    monkeypatch.setitem(fuzz.TARGETS, "fragile", fragile)
    assert fuzz.main(["--inputs", "50", "--target", "fragile"]) == 1
    out = capsys.readouterr().out
    assert "CRASH in fragile: input " in out and "IndexError" in out
