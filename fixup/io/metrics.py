"""The optional Prometheus endpoint (issue 12 item 5): ``runtime.metrics_port`` on 127.0.0.1,
off by default.  Served from the daemon's event loop (asyncio), so each scrape reads the pure
state machines in the one thread that owns them; the text format is prometheus_client's.

Names: ``fixup_control_connections`` / ``fixup_control_connections_opened_total``,
``fixup_calls`` / ``fixup_calls_opened_total``, ``fixup_calls_gre_packets`` and
``fixup_calls_gre_bytes`` by ``direction`` (of the calls up now), ``fixup_drops_total`` by
``product`` and ``reason``, ``fixup_vpdn_sessions`` by ``auth`` and ``mppe``,
``fixup_aaa_requests_total`` / ``_answers_total`` / ``_timeouts_total`` by ``group`` and ``host``,
``fixup_reloads_total`` by ``outcome``, ``fixup_last_reload_ok``, ``fixup_build_info``.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric

from fixup import __version__
from fixup.errors import SetupError

if TYPE_CHECKING:
    from fixup.io.reload import Reloader
    from fixup.io.vpdn.terminate_io import TerminateIo
    from fixup.proto.pat.tracker import Tracker

log = logging.getLogger("fixup")


class FixupCollector:
    """Reads the tracker, the dial-in server and the reloader at each scrape."""

    def __init__(self, tracker: Tracker, vpdn: TerminateIo | None, reloader: Reloader,
                 refresh: Callable[[], None] = lambda: None, recovery: Any = None) -> None:
        self.tracker, self.vpdn, self.reloader = tracker, vpdn, reloader
        self.refresh = refresh  # the kernel GRE path's counters are read back first
        self.recovery = recovery  # what this start resumed (fixup.io.pat.recovery.Recovery)

    def collect(self) -> Iterator[Metric]:
        self.refresh()
        snap = self.tracker.snapshot(time.monotonic())
        counters = snap["counters"]
        yield _gauge("fixup_control_connections", "PPTP control connections tracked now", counters["connections_active"])
        yield _counter("fixup_control_connections_opened", "PPTP control connections tracked since start",
                       counters.get("connections_total", 0))
        yield _gauge("fixup_calls", "PAT calls tracked now", counters["calls_active"])
        yield _counter("fixup_calls_opened", "PAT calls set up since start", counters["calls_total"])
        for name, key in (("fixup_calls_gre_packets", "packets"), ("fixup_calls_gre_bytes", "bytes")):
            family = GaugeMetricFamily(name, f"GRE {key} of the PAT calls up now", labels=["direction"])
            for direction in ("in", "out"):
                family.add_metric([direction], sum(call[f"{key}_{direction}"] for call in snap["calls"]))
            yield family
        drops = CounterMetricFamily("fixup_drops", "packets and connections dropped or refused, by reason",
                                    labels=["product", "reason"])
        for reason, count in snap["drops"].items():
            drops.add_metric(["pat", reason], count)
        vpdn = self.vpdn.snapshot() if self.vpdn is not None else None
        for reason, count in (vpdn or {}).get("drops", {}).items():
            drops.add_metric(["vpdn", reason], count)
        yield drops
        if self.recovery is not None:
            yield _counter("fixup_restarts_with_calls_recovered",
                           "starts that resumed saved PAT calls, over the life of the state store",
                           self.recovery.recoveries)
            yield _gauge("fixup_recovered_calls", "PAT calls this process resumed at its start",
                         self.recovery.restored.calls)
            yield _gauge("fixup_recovered_connections", "control connections this process resumed at its start",
                         self.recovery.restored.connections)
        if vpdn is not None:
            yield from _vpdn_metrics(vpdn)
        reloads = CounterMetricFamily("fixup_reloads", "policy reloads", labels=["outcome"])
        for outcome, count in self.reloader.reloads.items():
            reloads.add_metric([outcome], count)
        yield reloads
        yield _gauge("fixup_last_reload_ok", "1 when the last reload was applied (also before any)",
                     0 if self.reloader.last and not self.reloader.last.get("ok") else 1)
        yield InfoMetricFamily("fixup_build", "fixup version", value={"version": __version__})


def _vpdn_metrics(vpdn: dict[str, Any]) -> Iterator[Metric]:
    sessions = GaugeMetricFamily("fixup_vpdn_sessions", "dial-in sessions now", labels=["auth", "mppe"])
    for (auth, mppe), count in Counter((s.get("auth") or "none", str(s.get("mppe") or "none"))
                                       for s in vpdn.get("sessions", [])).items():
        sessions.add_metric([auth, mppe], count)
    yield sessions
    families = {kind: CounterMetricFamily(f"fixup_aaa_{kind}", f"AAA {kind}", labels=["group", "host"])
                for kind in ("requests", "answers", "timeouts")}
    for group, snapshot in (vpdn.get("aaa") or {}).items():
        for host in snapshot.get("hosts", []):
            for kind, family in families.items():
                family.add_metric([group, host["host"]], host.get(kind, 0))
    yield from families.values()


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, value=value)


def _counter(name: str, text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, text, value=value)


class MetricsServer:
    """``GET /metrics`` (any path) on 127.0.0.1:``port``, HTTP/1.0, one answer per connection."""

    def __init__(self, port: int, collector: FixupCollector) -> None:
        self.port = port
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)  # type: ignore[arg-type]
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        try:
            self.server = await asyncio.start_server(self._answer, "127.0.0.1", self.port, reuse_address=True)
        except OSError as err:
            raise SetupError(f"cannot serve metrics on 127.0.0.1:{self.port}: {err.strerror or err}") from err
        log.info("fixup: metrics on http://127.0.0.1:%d/metrics", self.port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            body = generate_latest(self.registry)
            writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: " + CONTENT_TYPE_LATEST.encode()
                         + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            await writer.drain()
        except Exception:  # noqa: BLE001 - a bad scraper never hurts the daemon
            log.debug("metrics request failed", exc_info=True)
        finally:
            writer.close()
