"""The NFQUEUE shell and the control-socket dispatcher with fakes: one verdict per packet,
drop on any failure, the loop never dies."""
from __future__ import annotations

import pytest

from fixup.io.control import dispatch
from fixup.io.pat.nfqueue import QueueShell
from fixup.proto.pat.verdict import Direction, Verdict
from tests.unit.flows import IN, OUT, PAT, SERVER, gre, tracker

pytestmark = pytest.mark.unit


class FakePacket:
    def __init__(self, payload: bytes, indev: int) -> None:
        self.payload, self.indev = payload, indev
        self.verdicts: list[str] = []
        self.new_payload: bytes | None = None

    def get_payload(self) -> bytes:
        return self.payload

    def set_payload(self, data: bytes) -> None:
        self.new_payload = data

    def accept(self) -> None:
        self.verdicts.append("accept")

    def drop(self) -> None:
        self.verdicts.append("drop")


class Exploding:
    def __init__(self) -> None:
        self.counted: list[str] = []

    def handle_packet(self, packet: bytes, direction: Direction, now: float) -> Verdict:
        raise RuntimeError("boom")

    def count(self, reason: str) -> None:
        self.counted.append(reason)


def shell(t) -> QueueShell:
    return QueueShell(t, 1723, {2: OUT, 3: IN}, clock=lambda: 1.0)


def test_unknown_interface_is_dropped_and_counted():
    t = tracker()
    pkt = FakePacket(gre(PAT, SERVER, 1), indev=99)
    shell(t).on_packet(pkt)
    assert pkt.verdicts == ["drop"]
    assert t.snapshot(1.0)["drops"] == {"unknown-interface": 1}


def test_exception_in_tracker_drops_counts_and_survives():
    t = Exploding()
    s = shell(t)
    for _ in range(3):
        pkt = FakePacket(b"x", indev=2)
        s.on_packet(pkt)
        assert pkt.verdicts == ["drop"]
    assert t.counted == ["shell-error"] * 3


def test_gre_of_no_call_is_dropped_and_garbage_too():
    t = tracker()
    s = shell(t)
    for payload in (gre(SERVER, PAT, 5), b"\x45garbage"):
        pkt = FakePacket(payload, indev=3)
        s.on_packet(pkt)
        assert pkt.verdicts == ["drop"] and pkt.new_payload is None


def test_dispatch_commands():
    t = tracker()
    assert dispatch(t, {"cmd": "show-calls"}, 1.0)["result"]["pat_address"] == str(PAT)
    assert dispatch(t, {"cmd": "clear-calls", "conn": None}, 1.0) == {"ok": True, "result": {"released": 0}}
    levels: list[str] = []
    assert dispatch(t, {"cmd": "debug", "level": "debug"}, 1.0, set_level=levels.append)["ok"]
    assert levels == ["debug"]
    assert not dispatch(t, {"cmd": "debug", "level": "loud"}, 1.0)["ok"]
    assert not dispatch(t, ["show-calls"], 1.0)["ok"]
    assert "unknown command" in dispatch(t, {"cmd": "reboot"}, 1.0)["error"]


def test_held_verdicts_wait_for_the_burst_save_and_go_in_order():
    """A control segment's verdict waits until its connection is saved (the restart store);
    GRE is not held."""
    t = tracker()
    saved: list[int] = []
    changed = [True, False, True]
    packets = [FakePacket(gre(SERVER, PAT, 5), indev=3) for _ in range(3)]
    s = QueueShell(t, 1723, {2: OUT, 3: IN}, clock=lambda: 1.0, hold=lambda: changed.pop(0),
                   after_burst=lambda: saved.append(sum(1 for p in packets if p.verdicts)))
    for pkt in packets:
        s.on_packet(pkt)
    assert [p.verdicts for p in packets] == [[], ["drop"], []]
    s.release()
    assert saved == [1] and [p.verdicts for p in packets] == [["drop"], ["drop"], ["drop"]]  # saved first
    s.release()
    assert saved == [1]  # nothing held: no save
