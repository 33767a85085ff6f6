"""The Prometheus endpoint (issue 12 item 5), scraped through the real daemon while a client
holds a PAT call and after a reload and some dropped GRE."""
from __future__ import annotations

import signal
import sys
import tempfile
import time

import pytest

from fixup.lab.scenario import PEERS, Lab, is_result, release
from fixup.lab.topology import PAT_ADDRESS, Topology

pytestmark = pytest.mark.netns

PORT = 9723
SCRAPE = f"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{PORT}/metrics', timeout=5).read().decode())"


class MetricsLab(Lab):
    def policy_text(self) -> str:
        return super().policy_text() + f"  metrics_port: {PORT}\n"


def scrape(lab: Lab) -> dict[str, float]:
    done = lab.topology.exec(lab.topology.gateway, [sys.executable, "-c", SCRAPE], timeout=30)
    assert done.returncode == 0, done.stderr
    values = {}
    for line in done.stdout.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def test_the_metrics_endpoint_tells_calls_drops_and_reloads(netns_ready: None) -> None:
    with Topology("fxt-met-", clients=1) as topo, tempfile.TemporaryDirectory(prefix="fixup-met-") as work:
        lab = MetricsLab(topo, work)
        lab.start_daemon()
        try:
            lab.start_server()
            client = lab.start_client(0, [0], "--hold", "--clear")
            got = client.wait_for(lambda o: o.get("event") == "holding" or is_result(o), 20)
            assert got is not None and got.get("event") == "holding", got
            topo.exec(topo.server, [*PEERS, "gre-inject", "--to", PAT_ADDRESS, "--call-id", "48879", "--count", "3"])
            assert lab.daemon is not None
            lab.daemon.send_signal(signal.SIGHUP)
            time.sleep(1)
            values = scrape(lab)
            lab.stop_daemon(sig=signal.SIGTERM)  # a restart: the held call is resumed
            lab.start_daemon()
            resumed = scrape(lab)
            release(client)
            client.finish(20)
        finally:
            status, left = lab.stop_all()
    assert status == 0 and left == []
    assert values["fixup_control_connections"] == 1 and values["fixup_calls"] == 1
    assert values["fixup_calls_opened_total"] >= 1 and values["fixup_control_connections_opened_total"] >= 1
    assert values['fixup_calls_gre_packets{direction="out"}'] >= 5
    assert values['fixup_drops_total{product="pat",reason="unknown-call"}'] >= 3
    assert values['fixup_reloads_total{outcome="ok"}'] == 1 and values["fixup_last_reload_ok"] == 1
    assert any(name.startswith("fixup_build_info{") for name in values)
    assert values["fixup_restarts_with_calls_recovered_total"] == 0 and values["fixup_recovered_calls"] == 0
    assert resumed["fixup_restarts_with_calls_recovered_total"] == 1
    assert resumed["fixup_recovered_calls"] == 1 and resumed["fixup_recovered_connections"] == 1
    assert resumed["fixup_calls"] == 1
