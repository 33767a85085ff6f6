"""The kernel GRE path's element programming and counter reading, against a fake nft."""
from __future__ import annotations

import json

import pytest

from fixup.io.pat.gre_maps import GreMaps, add_commands
from fixup.proto.events import Event

pytestmark = pytest.mark.unit

CALL = {"conn": 1, "client": "10.99.1.10", "server": "192.0.2.10", "call_id": 0, "translated_id": 256,
        "server_call_id": 100}


class FakeNft:
    def __init__(self, listing: list | None = None) -> None:
        self.batches: list[str] = []
        self.listing = listing or []

    def run(self, commands: str, *, json_output: bool = False) -> str:
        self.batches.append(commands)
        return ""

    def run_json(self, commands: str) -> list:
        name = commands.split()[-1]
        return [item for item in self.listing if next(iter(item.values()))["name"] == name]


def test_call_up_adds_three_elements_in_one_batch_and_call_down_removes_them_once():
    nft = FakeNft()
    maps = GreMaps(nft, lease=120.0)
    maps.apply([Event("call-up", "", CALL)])
    assert nft.batches == [add_commands("10.99.1.10", "192.0.2.10", 256, 0, 100, 120.0)]
    assert "add element ip fixup gre_in_addr { 192.0.2.10 . 256 timeout 120000ms : 10.99.1.10 }" in nft.batches[0]
    assert "add element ip fixup gre_in_id { 192.0.2.10 . 256 timeout 120000ms : 0 }" in nft.batches[0]
    assert "add element ip fixup gre_out { 10.99.1.10 . 192.0.2.10 . 100 timeout 120000ms }" in nft.batches[0]
    maps.apply([Event("call-reset", "", {**CALL, "gre_open": True}), Event("call-down", "", {**CALL, "gre_open": False})])
    assert len(nft.batches) == 2 and nft.batches[1].count("delete element") == 3


def test_counts_are_read_from_nft_json():
    listing = json.loads(json.dumps([
        {"map": {"name": "gre_in_addr", "elem": [[{"elem": {"val": {"concat": ["192.0.2.10", 256]},
                                                           "counter": {"packets": 5, "bytes": 300}}}, "10.99.1.10"]]}},
        {"set": {"name": "gre_out", "elem": [{"elem": {"val": {"concat": ["10.99.1.10", "192.0.2.10", 100]},
                                                      "counter": {"packets": 7, "bytes": 400}}}]}},
        {"counter": {"name": "gre_in_unknown", "packets": 2, "bytes": 80}},
        {"counter": {"name": "gre_out_unknown", "packets": 1, "bytes": 40}},
    ]))
    inbound, outbound, unknown = GreMaps(FakeNft(listing), lease=120.0).read_counts()
    assert inbound == {("192.0.2.10", 256): (5, 300)}
    assert outbound == {("10.99.1.10", "192.0.2.10", 100): (7, 400)}
    assert unknown == 3


class _Call:
    client, server, translated, original, server_id = (bytes([10, 99, 1, 10]), bytes([192, 0, 2, 10]), 256, 0, 100)
    packets_out, bytes_out, packets_in, bytes_in = 1, 10, 2, 20


def test_leases_are_renewed_a_slice_per_tick_and_restored_elements_keep_their_counters():
    nft = FakeNft()
    maps = GreMaps(nft, lease=9.0)  # three slices: a call every third tick
    for tick in range(6):
        maps.renew([_Call()], tick)
    assert len(nft.batches) == 2  # translated ID 256: slice 1 of 3, ticks 1 and 4
    assert "timeout 9000ms expires 9000ms" in nft.batches[0] and "counter" not in nft.batches[0]
    restored = maps.element_commands([_Call()], ({("192.0.2.10", 256): (50, 500)}, {}))
    assert "192.0.2.10 . 256 counter packets 50 bytes 500 timeout 9000ms : 10.99.1.10" in restored
    assert "10.99.1.10 . 192.0.2.10 . 100 counter packets 1 bytes 10 timeout 9000ms" in restored
