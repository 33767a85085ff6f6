"""fixup.bench's pure parts: the result document, ratios, targets and table (report), the
generator's frames (frames), the rate search and CPU split (traffic), the PPTP framing of the
bulk peers (their message stream: tests/unit/test_pptp_peer.py).  No namespaces, no trafgen."""
from __future__ import annotations

import json
from collections import Counter
from ipaddress import IPv4Address
from typing import Any

import pytest

from fixup.bench import report
from fixup.bench.frames import gre_frame, parse_mac, ppp_payload, trafgen_config
from fixup.bench.traffic import cpu_split, search_rate
from fixup.wire.gre import GreHeader, parse_gre
from fixup.wire.ip import IPPROTO_GRE, internet_checksum, parse_ipv4

pytestmark = pytest.mark.unit

CLIENT_MAC = "02:00:00:00:00:0a"
GATEWAY_MAC = "02:00:00:00:00:01"


# --- result document ------------------------------------------------------------------------


def results_with(values: dict[str, dict[str, float | None]], *, statuses: dict[str, str] | None = None,
                 calls: tuple[int, int] = (1000, 10000)) -> dict[str, Any]:
    """A result document as a run leaves it, with ``values[scenario][metric]`` filled in."""
    params = {"seconds": 3.0, "warmup": 1.0, "calls_small": calls[0], "calls_large": calls[1],
              "latency_samples": 20, "concurrency": 200, "payloads": [64, 1400], "trial_seconds": 1.0,
              "search_steps": 3, "repeats": 2}
    machine = {"nproc": 2, "kernel": "6.18", "cpu_model": "test", "python": "3.11", "trafgen": "trafgen 0.6.8",
               "generator_cpu": 0, "router_cpu": 1}
    results = report.new_results(command="fixup bench", quick=False, started="2025-01-01T00:00:00+00:00",
                                 machine=machine, parameters=params, scenarios=report.SCENARIOS)
    for scenario, metrics in values.items():
        results["scenarios"][scenario]["metrics"].update(metrics)
    for scenario, status in (statuses or {}).items():
        results["scenarios"][scenario]["status"] = status
    results["targets"] = report.evaluate(results)
    return results


OUT64 = report.gre_metric_key("out", 64)
IN64 = report.gre_metric_key("in", 64)


def test_new_results_has_every_required_field_and_is_json() -> None:
    results = results_with({})
    assert report.missing_fields(results) == []
    assert json.loads(json.dumps(results)) == results


def test_missing_fields_names_what_is_absent() -> None:
    results = results_with({})
    del results["machine"]["kernel"]
    del results["scenarios"]["queue"]["metrics"]["bytes_per_call"]
    del results["profile"]
    assert report.missing_fields(results) == ["profile", "machine.kernel", "scenarios.queue.metrics.bytes_per_call"]


def test_ratios_are_to_the_helper_and_to_plain_routing() -> None:
    results = results_with({"plain": {OUT64: 800_000.0}, "helper": {OUT64: 400_000.0}, "queue": {OUT64: 100_000.0}})
    assert report.ratio(results, "queue", OUT64, report.BASELINE_HELPER) == pytest.approx(0.25)
    assert report.ratio(results, "queue", OUT64, report.BASELINE_PLAIN) == pytest.approx(0.125)
    assert report.ratio(results, "kernel", OUT64, report.BASELINE_HELPER) is None  # not measured


def test_a_scenario_that_did_not_run_has_no_values_even_if_some_were_recorded() -> None:
    results = results_with({"helper": {OUT64: 400_000.0}, "kernel": {OUT64: 500_000.0}},
                           statuses={"kernel": report.STATUS_NOT_AVAILABLE})
    assert report.value(results, "kernel", OUT64) is None
    assert report.ratio(results, "kernel", OUT64, report.BASELINE_HELPER) is None


@pytest.mark.parametrize(("queue_pps", "passed"), [(120_000.0, True), (119_999.0, False)])
def test_queue_path_target_is_three_tenths_of_the_helper(queue_pps: float, passed: bool) -> None:
    results = results_with({"helper": {OUT64: 400_000.0}, "queue": {OUT64: queue_pps}})
    verdict = next(t for t in results["targets"] if t["scenario"] == "queue" and t["metric"] == OUT64)
    assert verdict["passed"] is passed
    assert verdict["target"] == ">= 0.3x (b)"


def test_kernel_path_target_is_the_helper_itself() -> None:
    results = results_with({"helper": {IN64: 400_000.0}, "kernel": {IN64: 399_000.0}})
    verdict = next(t for t in results["targets"] if t["scenario"] == "kernel" and t["metric"] == IN64)
    assert verdict["passed"] is False


@pytest.mark.parametrize(("metric", "good", "bad"), [
    ("setups_per_s", 1000.0, 999.0),
    ("bytes_per_call", 2048.0, 2049.0),
    ("ocrp_to_gre_ms", 5.0, 5.01),
])
def test_absolute_targets(metric: str, good: float, bad: float) -> None:
    for measured, passed in ((good, True), (bad, False)):
        results = results_with({"queue": {metric: measured}})
        verdict = next(t for t in results["targets"] if t["scenario"] == "queue" and t["metric"] == metric)
        assert verdict["passed"] is passed, (metric, measured)


def test_unmeasured_targets_are_neither_passed_nor_failed() -> None:
    results = results_with({})
    assert {t["passed"] for t in results["targets"]} == {None}
    assert report.format_summary(results) == f"targets: 0 passed, 0 failed, {len(results['targets'])} not measured"


def test_table_rows_show_values_ratios_targets_and_results() -> None:
    results = results_with({"plain": {OUT64: 1_000_000.0}, "helper": {OUT64: 400_000.0},
                            "queue": {OUT64: 100_000.0, "bytes_per_call": 1500.0}},
                           statuses={"kernel": report.STATUS_NOT_AVAILABLE})
    rows = {(row[0], row[1]): row[2:] for row in report.table_rows(results)}
    assert rows[("(d) fixup queue path", "GRE outbound, 64 B payload")] == (
        "100,000 pkt/s", "0.25x", "0.10x", ">= 0.3x (b)", "FAIL")
    assert rows[("(b) kernel helper", "GRE outbound, 64 B payload")][:3] == ("400,000 pkt/s", "1.00x", "0.40x")
    assert rows[("(c) fixup kernel path", "GRE outbound, 64 B payload")] == (
        "not available", "-", "-", ">= 1x (b)", "n/a")
    assert rows[("(d) fixup queue path", "daemon memory per call (10,000 calls)")] == (
        "1,500 B", "", "", "<= 2048", "PASS")
    assert ("(a) plain routing", "daemon RSS, no calls") not in rows  # memory rows only for the daemon


def test_memory_labels_follow_the_call_counts_of_the_run() -> None:
    labels = {row[1] for row in report.table_rows(results_with({}, calls=(50, 100)))}
    assert "daemon RSS, 50 calls" in labels and "daemon memory per call (100 calls)" in labels


def test_skipped_scenarios_have_no_rows() -> None:
    results = results_with({}, statuses={"plain": report.STATUS_SKIPPED})
    assert all(not row[0].startswith("(a)") for row in report.table_rows(results))


def test_text_table_is_aligned_and_markdown_has_one_line_per_row() -> None:
    results = results_with({"helper": {OUT64: 400_000.0}})
    text = report.format_table(results).splitlines()
    assert text[0].startswith("scenario") and set(text[1]) <= {"-", " "}
    assert len({line.index("  ", len("(d) fixup queue path")) for line in text[2:]}) >= 1
    markdown = report.format_markdown(results).splitlines()
    assert markdown[0] == "| scenario | metric | value | vs (b) | vs (a) | target | result |"
    assert markdown[1] == "| --- | --- | ---: | ---: | ---: | --- | --- |"
    assert len(markdown) == 2 + len(report.table_rows(results))


# --- profile summary -------------------------------------------------------------------------

PENDING = "<module> (fixup/cli.py:180);process_pending (fixup/io/pat/nfqueue.py:97)"
COLLAPSED = (
    "<module> (fixup/cli.py:180);run (asyncio/runners.py:118);select (selectors.py:468) 60\n"
    f"{PENDING};_decide (fixup/io/pat/nfqueue.py:118) 25\n"
    f"{PENDING};_decide (fixup/io/pat/nfqueue.py:118);handle_packet (fixup/proto/pat/tracker.py:62) 15\n"
)


def test_collapsed_stacks_parse_and_summarise() -> None:
    stacks = report.parse_collapsed(COLLAPSED + "garbage line\n")
    assert sum(stacks.values()) == 100
    assert report.self_time(stacks, 2) == [("select (selectors.py)", 60.0), ("_decide (nfqueue.py)", 25.0)]
    assert report.inclusive_share(stacks, "_decide") == pytest.approx(40.0)
    line = report.profile_summary(stacks, {"callback": "_decide", "waiting": "select"})
    assert line.startswith("callback 40%; waiting 60%; hottest: select (selectors.py) 60%")


def test_empty_profile_summary_does_not_divide_by_zero() -> None:
    assert report.self_time(Counter(), 3) == []
    assert report.inclusive_share(Counter(), "x") == 0.0


# --- frames for trafgen ---------------------------------------------------------------------------


def test_gre_frame_is_ethernet_ipv4_enhanced_gre() -> None:
    frame = gre_frame(dst_mac=parse_mac(GATEWAY_MAC), src_mac=parse_mac(CLIENT_MAC),
                      src=IPv4Address("10.99.1.10"), dst=IPv4Address("192.0.2.10"), call_id=0x4000,
                      payload_length=64, sequence=1)
    assert frame[:12] == bytes.fromhex("020000000001" "02000000000a")
    assert frame[12:14] == b"\x08\x00"  # EtherType IPv4
    packet = frame[14:]
    ip = parse_ipv4(packet)
    assert (ip.protocol, ip.src, ip.dst) == (IPPROTO_GRE, bytes([10, 99, 1, 10]), bytes([192, 0, 2, 10]))
    assert ip.total_length == len(packet) == 20 + 12 + 64
    assert internet_checksum(packet[:20]) == 0  # RFC 1071: a correct header sums to all ones
    # RFC 2637 section 4.1: K and S set, version 1, protocol 0x880B, payload length, call id, seq
    assert packet[20:32] == bytes.fromhex("3001880b" "00404000" "00000001")
    assert parse_gre(packet, 20) == GreHeader(call_id=0x4000, payload_length=64, sequence=1)
    assert packet[32:36] == b"\xff\x03\x00\x21"  # RFC 1662 address/control, PPP protocol IPv4


def test_gre_frame_refuses_more_than_a_1500_byte_mtu() -> None:
    args = dict(dst_mac=bytes(6), src_mac=bytes(6), src=IPv4Address("10.0.0.1"), dst=IPv4Address("10.0.0.2"),
                call_id=1)
    assert len(gre_frame(**args, payload_length=1400)) == 14 + 20 + 12 + 1400
    with pytest.raises(ValueError):
        gre_frame(**args, payload_length=1500 - 20 - 12 + 1)


def test_ppp_payload_lengths() -> None:
    assert ppp_payload(0) == b""
    assert ppp_payload(2) == b"\xff\x03"
    assert len(ppp_payload(1400)) == 1400
    with pytest.raises(ValueError):
        ppp_payload(-1)


@pytest.mark.parametrize("text", ["02:00:00:00:00", "02-00-00-00-00-01", "0g:00:00:00:00:01", ""])
def test_parse_mac_rejects_what_is_not_a_mac(text: str) -> None:
    with pytest.raises(ValueError):
        parse_mac(text)


def test_trafgen_config_lists_every_byte_in_one_packet_block() -> None:
    frame = bytes(range(20))
    config = trafgen_config(frame, "a */ comment")
    assert config.startswith("/* a  comment */\n{\n")
    assert config.rstrip().endswith("}")
    body = config.split("{", 1)[1].rsplit("}", 1)[0]
    assert [int(word, 16) for word in body.replace(",", " ").split()] == list(frame)


# --- rate search and CPU split ---------------------------------------------------------------------


def capacity(limit: int, tried: list[int]) -> Any:
    def lossy(rate: int) -> bool:
        tried.append(rate)
        return rate > limit
    return lossy


def test_search_doubles_then_bisects_below_the_capacity() -> None:
    tried: list[int] = []
    best = search_rate(capacity(70_000, tried), start=20_000, ceiling=1_000_000, steps=3)
    assert tried[:4] == [20_000, 40_000, 80_000, 56_568]
    assert 56_568 <= best <= 70_000


def test_search_halves_when_the_start_is_already_too_fast() -> None:
    tried: list[int] = []
    best = search_rate(capacity(6_000, tried), start=20_000, ceiling=1_000_000, steps=2)
    assert tried[:3] == [20_000, 10_000, 5_000]
    assert 5_000 <= best <= 6_000


def test_search_stops_at_the_ceiling_and_at_the_floor() -> None:
    assert search_rate(capacity(10**9, []), start=20_000, ceiling=100_000, steps=3) == 100_000
    assert search_rate(capacity(10, []), start=20_000, ceiling=100_000, steps=3, floor=1_000) == 0


def test_cpu_split_is_percent_per_field() -> None:
    before = {"cpu0": [0, 0, 0, 0, 0, 0, 0, 0], "cpu1": [10, 0, 10, 10, 0, 0, 10, 0]}
    after = {"cpu0": [50, 0, 0, 50, 0, 0, 0, 0], "cpu1": [10, 0, 10, 10, 0, 0, 110, 0]}
    split = cpu_split(before, after)
    assert split["cpu0"]["user"] == 50.0 and split["cpu0"]["idle"] == 50.0
    assert split["cpu1"]["softirq"] == 100.0


def test_generator_bound_figures_are_shown_as_lower_bounds() -> None:
    results = results_with({"plain": {OUT64: 600_000.0}})
    results["scenarios"]["plain"]["details"]["generator_limited"] = [OUT64]
    rows = {(row[0], row[1]): row[2] for row in report.table_rows(results)}
    assert rows[("(a) plain routing", "GRE outbound, 64 B payload")] == ">= 600,000 pkt/s"
    assert rows[("(a) plain routing", "GRE inbound, 64 B payload")] == "-"


PERF_REPORT = """\
    15.44%  [k] handle_softirqs
     5.53%  [.] _PyEval_EvalFrameDefault
     2.28%  [k] nft_do_chain

# a comment
"""


def test_perf_report_lines_parse_in_order() -> None:
    assert report.parse_perf_report(PERF_REPORT) == [
        ("[k] handle_softirqs", 15.44), ("[.] _PyEval_EvalFrameDefault", 5.53), ("[k] nft_do_chain", 2.28)]


@pytest.mark.parametrize(("ebpf_ns", "passed"), [(1538.0, True), (1539.0, False)])
def test_ebpf_cpu_per_packet_target_is_the_helpers_divided_by_1_3(ebpf_ns: float, passed: bool) -> None:
    """Issue 13 item 5 in router CPU per packet: the figure that holds when the generator sets
    the rate (the router CPU half idle), where packets/s cannot tell the paths apart."""
    key = report.cpu_metric_key("out")
    results = results_with({"helper": {key: 2000.0}, "plain": {key: 1600.0}, "ebpf": {key: ebpf_ns}})
    verdict = next(t for t in results["targets"] if t["scenario"] == "ebpf" and t["metric"] == key
                   and t["kind"] == "cpu_helper")
    assert verdict["passed"] is passed and verdict["target"] == "<= 0.77x (b)"
    plain = next(t for t in results["targets"] if t["scenario"] == "ebpf" and t["metric"] == key
                 and t["kind"] == "cpu_plain")
    assert plain["passed"] is True
