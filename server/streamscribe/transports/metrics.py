"""GET /metrics: a server's or a worker's Metrics in the Prometheus text format (OpenMetrics when
the scraper asks for it in Accept).

On the server's own port it is a route like any other: where keys are asked, a scraper sends
`Authorization: Bearer KEY`. With `metrics_port` it is also served alone, with no key, on
127.0.0.1 only: for a scraper or sidecar on the same host (a worker has no other port).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import shutil
from collections.abc import AsyncIterator, Iterator
from typing import get_args

from aiohttp import web
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..live.sessions import Transport
from ..metrics import Metrics
from .state import ServerState

log = logging.getLogger(__name__)


class ServerFigures(Collector):
    """What the server holds already, read at each scrape: open sessions by transport, stalled
    sessions, open connections, the decoder's totals and the data directory's free space.
    Register it in the server's registry, and `refresh` it before each scrape."""

    def __init__(self, state: ServerState) -> None:
        self._state = state
        self._free_bytes: int | None = None

    async def refresh(self) -> None:
        """Read the data directory's free space, off the event loop (None if it cannot be read)."""
        try:
            usage = await asyncio.to_thread(shutil.disk_usage, self._state.settings.data_dir)
        except OSError:
            self._free_bytes = None
        else:
            self._free_bytes = usage.free

    def collect(self) -> Iterator[Metric]:
        host = self._state.sessions
        sessions = GaugeMetricFamily(
            "streamscribe_live_sessions",
            "Sessions open now, by transport (transport=upload: files being replayed).",
            labels=["transport"],
        )
        open_now = collections.Counter(slot.transport for slot in host.slots)
        for transport in get_args(Transport):
            sessions.add_metric([transport], open_now[transport])
        yield sessions
        yield GaugeMetricFamily(
            "streamscribe_stalled_sessions",
            "Open sessions with no progress for stall_after_s (held by nobody).",
            value=host.stalled(),
        )
        yield GaugeMetricFamily(
            "streamscribe_connections",
            "Open HTTP and WebSocket connections.",
            value=self._state.connections.open,
        )
        stats = host.scheduler.stats
        yield CounterMetricFamily(
            "streamscribe_decoded_audio_seconds",
            "Seconds of audio the live decoder decoded (windows overlap: more than was received).",
            value=stats.decoded_audio_s,
        )
        yield CounterMetricFamily(
            "streamscribe_greedy_decodes",
            "Live windows decoded greedily (no beam search) because the decoder was loaded.",
            value=stats.greedy_decodes,
        )
        if self._free_bytes is not None:
            yield GaugeMetricFamily(
                "streamscribe_storage_free_bytes",
                "Free space on the disk of the data directory.",
                value=self._free_bytes,
            )


def metrics_route(metrics: Metrics, figures: ServerFigures | None = None) -> web.RouteDef:
    """GET /metrics for `metrics`; `figures`, registered in its registry, are refreshed first."""

    async def scrape(request: web.Request) -> web.Response:
        if figures is not None:
            await figures.refresh()
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encode(metrics.registry), headers={"Content-Type": content_type})

    return web.get("/metrics", scrape)


@contextlib.asynccontextmanager
async def loopback_metrics(port: int | None, route: web.RouteDef) -> AsyncIterator[None]:
    """While inside: with a `port` (0: any free one, logged), serve `route` alone on
    127.0.0.1:port, with no key; with None, nothing."""
    if port is None:
        yield
        return
    app = web.Application()
    app.router.add_routes([route])
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        host, bound_port = runner.addresses[0][:2]
        log.info("metrics for a local scraper at http://%s:%s/metrics", host, bound_port)
        yield
    finally:
        await runner.cleanup()
