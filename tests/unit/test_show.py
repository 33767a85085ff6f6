"""fixup.io.pat.show: PIX-like tables of a literal tracker snapshot (the shape documented for
Tracker.snapshot); no daemon involved."""
from __future__ import annotations

import pytest

from fixup.io.pat.show import duration, format_counters, format_snapshot

pytestmark = pytest.mark.unit

SNAPSHOT = {
    "pat_address": "198.51.100.1",
    "connections": [
        {"id": 1, "client": "10.0.1.2", "client_port": 40000, "server": "203.0.113.10", "server_port": 1723,
         "state": "established", "age": 12.3, "idle": 1.0, "calls": 2, "messages_out": 5, "messages_in": 4},
    ],
    "calls": [
        {"conn": 1, "client": "10.0.1.2", "server": "203.0.113.10", "call_id": 0, "translated_id": 4096,
         "peer_call_id": 5, "state": "established", "age": 10.0, "idle": 0.2,
         "packets_out": 10, "bytes_out": 1200, "packets_in": 9, "bytes_in": 1100},
        {"conn": 1, "client": "10.0.1.2", "server": "203.0.113.10", "call_id": 1, "translated_id": 4097,
         "peer_call_id": None, "state": "setup", "age": 3725.0, "idle": 59.9,
         "packets_out": 0, "bytes_out": 0, "packets_in": 0, "bytes_in": 0},
    ],
    "counters": {"control_segments": 20, "control_messages": 9, "gre_in": 9, "gre_out": 10, "calls_total": 2},
    "drops": {"unknown-call": 3, "truncated": 1, "bad-cookie": 0},
}

EXPECTED = """\
1 PPTP control connection(s), PAT 198.51.100.1
  Id  Client          Server             State        Age      Idle     Calls  Msgs out/in
  1   10.0.1.2:40000  203.0.113.10:1723  established  0:00:12  0:00:01  2      5/4

2 PPTP call(s)
  Conn  Client    Server        Call ID  Xlate ID  Peer ID  State        Age      Idle     Pkts out/in  Bytes out/in
  1     10.0.1.2  203.0.113.10  0        4096      5        established  0:00:10  0:00:00  10/9         1200/1100
  1     10.0.1.2  203.0.113.10  1        4097      -        setup        1:02:05  0:00:59  0/0          0/0

Counters:
  calls_total       2
  control_messages  9
  control_segments  20
  gre_in            9
  gre_out           10
Drops by reason:
  bad-cookie    0
  truncated     1
  unknown-call  3
"""


def test_full_table() -> None:
    assert format_snapshot(SNAPSHOT) == EXPECTED


def test_original_and_translated_ids_side_by_side() -> None:
    call_line = format_snapshot(SNAPSHOT).splitlines()[6]
    assert call_line.split()[3:6] == ["0", "4096", "5"]


def test_counters_alone() -> None:
    text = format_counters(SNAPSHOT)
    assert text.startswith("Counters:\n")
    assert "  unknown-call  3\n" in text
    assert "Conn" not in text


def test_empty_snapshot_still_prints() -> None:
    assert format_snapshot({}) == (
        "0 PPTP control connection(s), PAT -\n\n0 PPTP call(s)\n\nCounters: none\nDrops by reason: none\n"
    )


def test_unknown_or_missing_fields_show_as_dash() -> None:
    text = format_snapshot({"calls": [{"call_id": 7}], "connections": [{"id": 3}]})
    conn_row = text.splitlines()[2].split()
    assert conn_row == ["3", "-", "-", "-", "-", "-", "-", "-/-"]
    call_row = text.splitlines()[6].split()
    assert call_row[3] == "7" and set(call_row) - {"7"} == {"-", "-/-"}


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0:00:00"), (59.9, "0:00:59"), (3600, "1:00:00"), (90061, "25:01:01"), (None, "-"), (-1, "-"), (True, "-")],
)
def test_duration_like_pix(seconds: object, text: str) -> None:
    assert duration(seconds) == text


def test_anomalies_are_listed_when_present() -> None:
    text = format_counters({"anomalies": {"bad-reserved": 2}})
    assert text.endswith("Anomalies (passed, counted):\n  bad-reserved  2\n")
