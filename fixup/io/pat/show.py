"""PIX-like text tables of a tracker snapshot (pure: dict in, text out).

The snapshot shape is :meth:`fixup.proto.pat.tracker.Tracker.snapshot`'s; missing keys show as
``-`` so an older or newer daemon still prints something sensible.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

CONNECTION_COLUMNS: tuple[tuple[str, str], ...] = (
    ("Id", "id"), ("Client", "client_ep"), ("Server", "server_ep"), ("State", "state"),
    ("Age", "age"), ("Idle", "idle"), ("Calls", "calls"), ("Msgs out/in", "messages"),
)
CALL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("Conn", "conn"), ("Client", "client"), ("Server", "server"), ("Call ID", "call_id"),
    ("Xlate ID", "translated_id"), ("Peer ID", "peer_call_id"), ("State", "state"),
    ("Age", "age"), ("Idle", "idle"), ("Pkts out/in", "packets"), ("Bytes out/in", "bytes"),
)


def duration(seconds: object) -> str:
    """Seconds as PIX prints uptimes and idle times: ``H:MM:SS``."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
        return "-"
    whole = int(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _text(value: object) -> str:
    return "-" if value is None else str(value)


def _pair(row: Mapping[str, Any], first: str, second: str) -> str:
    return f"{_text(row.get(first))}/{_text(row.get(second))}"


def _endpoint(row: Mapping[str, Any], host: str, port: str) -> str:
    return f"{_text(row.get(host))}:{_text(row.get(port))}" if row.get(port) is not None else _text(row.get(host))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns two spaces apart, a header line first."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in [list(headers), *rows]]
    return lines


def _connection_cells(conn: Mapping[str, Any]) -> dict[str, str]:
    return {
        "id": _text(conn.get("id")), "client_ep": _endpoint(conn, "client", "client_port"),
        "server_ep": _endpoint(conn, "server", "server_port"), "state": _text(conn.get("state")),
        "age": duration(conn.get("age")), "idle": duration(conn.get("idle")), "calls": _text(conn.get("calls")),
        "messages": _pair(conn, "messages_out", "messages_in"),
    }


def _call_cells(call: Mapping[str, Any]) -> dict[str, str]:
    cells = {key: _text(call.get(key)) for key in ("conn", "client", "server", "call_id", "translated_id", "peer_call_id", "state")}
    cells.update(age=duration(call.get("age")), idle=duration(call.get("idle")),
                 packets=_pair(call, "packets_out", "packets_in"), bytes=_pair(call, "bytes_out", "bytes_in"))
    return cells


def format_connections(snapshot: Mapping[str, Any]) -> list[str]:
    conns = list(snapshot.get("connections") or [])
    title = f"{len(conns)} PPTP control connection(s), PAT {_text(snapshot.get('pat_address'))}"
    return _section(title, conns, CONNECTION_COLUMNS, _connection_cells)


def format_calls(snapshot: Mapping[str, Any]) -> list[str]:
    calls = list(snapshot.get("calls") or [])
    return _section(f"{len(calls)} PPTP call(s)", calls, CALL_COLUMNS, _call_cells)


def _section(title: str, items: list[Mapping[str, Any]], columns: Any,
             cells: Callable[[Mapping[str, Any]], dict[str, str]]) -> list[str]:
    """A title line, then the items as an indented table (nothing more when there are none)."""
    lines = [title]
    if items:
        rows = [[cells(item)[key] for _h, key in columns] for item in items]
        lines += ["  " + line for line in table([h for h, _k in columns], rows)]
    return lines


def format_counter_block(title: str, counters: Mapping[str, Any]) -> list[str]:
    """``title`` then one ``name value`` line per counter, sorted by name, values aligned."""
    if not counters:
        return [f"{title}: none"]
    width = max(len(name) for name in counters)
    return [f"{title}:"] + [f"  {name.ljust(width)}  {_text(counters[name])}" for name in sorted(counters)]


def format_counters(snapshot: Mapping[str, Any]) -> str:
    """``fixup show counters``: the counters, drops by reason, then anomalies (packets passed
    untouched but counted: unexpected messages, bad reserved fields, unsynced streams ...)."""
    lines = format_counter_block("Counters", snapshot.get("counters") or {})
    lines += format_counter_block("Drops by reason", snapshot.get("drops") or {})
    if snapshot.get("anomalies"):
        lines += format_counter_block("Anomalies (passed, counted)", snapshot["anomalies"])
    if snapshot.get("vpdn_drops") is not None:
        lines += format_counter_block("Dial-in drops and refusals by reason", snapshot["vpdn_drops"])
    return "\n".join(lines) + "\n"


def format_snapshot(snapshot: Mapping[str, Any]) -> str:
    """``fixup show calls``: connections, calls (original and translated IDs), counters, drops."""
    lines = format_connections(snapshot) + [""] + format_calls(snapshot)
    return "\n".join(lines) + "\n\n" + format_counters(snapshot)
