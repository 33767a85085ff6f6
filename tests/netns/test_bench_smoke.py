"""``fixup bench --quick``: the whole benchmark, tiny (1 s per rate, 100 calls), end to end.

Runs as a subprocess in namespaces ``fxb3-s-*`` and checks that it completes, prints the table,
writes a JSON document with every field, measures every scenario it can (the kernel path may
report itself "not available"), and removes its namespaces.  No timing is asserted: only that
the numbers exist and are plausible (something was forwarded, calls were set up).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from fixup.bench import report
from fixup.lab.topology import list_namespaces

pytestmark = pytest.mark.netns

PREFIX = "fxb3-s-"
RUN_TIMEOUT = 600


def test_quick_benchmark_writes_complete_json(netns_ready: None) -> None:
    if shutil.which("trafgen") is None:
        pytest.skip("fixup bench needs trafgen (Debian package netsniff-ng)")
    with tempfile.TemporaryDirectory(prefix="fixup-bench-test-") as work:
        path = os.path.join(work, "bench.json")
        done = subprocess.run([sys.executable, "-m", "fixup.cli", "bench", "--quick", "--json", path,
                               "--prefix", PREFIX], capture_output=True, text=True, timeout=RUN_TIMEOUT)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        with open(path, encoding="utf-8") as handle:
            results = json.load(handle)
    assert report.missing_fields(results) == []
    assert results["quick"] is True and results["parameters"]["calls_large"] == 100
    assert "scenario" in done.stdout and "targets:" in done.stdout
    assert not [ns for ns in list_namespaces() if ns.startswith(PREFIX)]

    scenarios = results["scenarios"]
    for key in ("plain", "helper", "queue"):
        assert scenarios[key]["status"] == report.STATUS_OK, (key, scenarios[key]["reason"])
    for key in ("kernel", "ebpf"):
        assert scenarios[key]["status"] in (report.STATUS_OK, report.STATUS_NOT_AVAILABLE), (key, scenarios[key]["reason"])
    measured = [key for key, entry in scenarios.items() if entry["status"] == report.STATUS_OK]
    for key in measured:
        metrics = scenarios[key]["metrics"]
        for payload in report.PAYLOADS:
            for direction in ("out", "in"):
                assert metrics[report.gre_metric_key(direction, payload)] > 0, (key, direction, payload)
        assert metrics["setups_per_s"] > 0, key
        assert metrics["ocrp_to_gre_ms"] is not None, (key, scenarios[key]["details"].get("latency"))
        assert metrics[report.HELD_METRIC] > 0, key
    for key in set(measured) & report.PROGRAMMED_SCENARIOS:
        assert scenarios[key]["metrics"]["program_us"] > 0, (key, scenarios[key]["details"].get("program_us"))
    for key in set(measured) & report.DAEMON_SCENARIOS:
        metrics = scenarios[key]["metrics"]
        assert metrics["rss_large_kib"] >= metrics["rss_idle_kib"] > 0, key
        assert scenarios[key]["details"]["gateway"]["leftovers"] == [], key
    assert len(results["targets"]) == len(report.targets())
