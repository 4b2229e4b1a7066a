"""Wiring: the model, the scheduler, the stores, the routes, and ordered startup and shutdown.

Startup: the lock on the data directory (one process per directory), the node's lease in Redis
when scaled out (one process per node name), the decoder threads, then the transcript store and
its second-pass workers (which first recover what stopped processes left). Shutdown: /readyz
answers draining, new sessions are refused and every live one ends (their finals are flushed,
their transcripts stored and `closed` is sent), waiting up to shutdown_timeout_s; their last
events are flushed to Redis; then the second-pass workers stop (a running job goes back to the
queue) and the store closes; then the decoder threads; then the lease and the data directory
are let go. `work` is a process with the second-pass part alone (`streamscribe worker`). Each has its
own Metrics, served at /metrics (and alone on 127.0.0.1:metrics_port, where one is given).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

from aiohttp import web

from .asr.engine import Engine
from .config import ServerSettings
from .errors import AuthRequired
from .finalize.pipeline import SecondPass
from .finalize.service import FinalizeService
from .live.scheduler import DecodeScheduler
from .live.sessions import SessionHost
from .metrics import Metrics
from .store.backends import open_backends
from .store.lock import DataDirLock
from .transports import (
    deepgram,
    events,
    http,
    openai_audio,
    openai_realtime,
    transcripts,
    uploads,
    webrtc,
    websocket,
)
from .transports.auth import requiring_keys, token_route
from .transports.connections import ConnectionLimit, LimitedSite
from .transports.errors import json_errors
from .transports.ice import use_port_range
from .transports.limits import identity_bodies_only
from .transports.metrics import ServerFigures, loopback_metrics, metrics_route
from .transports.origins import OriginPolicy, is_loopback
from .transports.state import SERVER_STATE, ServerState

log = logging.getLogger(__name__)


def create_app(settings: ServerSettings, engine: Engine) -> web.Application:
    """The aiohttp application serving `engine` as the live model (see the module for the order
    in which its parts start and stop)."""
    lock = DataDirLock(settings.data_dir)
    backends = open_backends(settings)
    store = backends.store
    if settings.auth == "on" and not is_loopback(settings.host) and not store.has_keys():
        store.close()
        raise AuthRequired(
            f"refusing to serve on {settings.host} with no API key: anyone who can reach the port could "
            "stream, read and delete transcripts. Either create a key first (streamscribe keys create NAME "
            f"--data-dir {settings.data_dir}) and give it to your clients, or, where something in front "
            "of this server already checks who calls (an authenticating proxy, a private network), "
            "start it with --auth off"
        )
    if settings.auth == "off" and not is_loopback(settings.host) and not settings.allowed_hosts:
        store.close()
        raise AuthRequired(
            f"--auth off on {settings.host} needs --allowed-hosts with the names clients reach it by: "
            "with no key and no Host check, any web page a browser on the network opens could reach "
            "it through DNS rebinding"
        )
    metrics = Metrics()
    finalizer = FinalizeService(
        backends.for_jobs,
        settings,
        partial(SecondPass.for_server, settings),
        backends.cluster,
        metrics=metrics,
    )
    scheduler = DecodeScheduler(
        engine,
        workers=engine.parallel_decodes,
        batch_size=settings.decode_batch_size or engine.batch_size,
        gather_s=settings.decode_gather_ms / 1000,
        max_decode_wait_s=settings.max_decode_wait_s,
        greedy_after_wait_s=settings.beam_until_wait_s,
        metrics=metrics,
    )
    host = SessionHost(settings, scheduler, backends.events, finalizer, metrics=metrics)
    origins = OriginPolicy(settings)
    checks = [json_errors, deepgram.listen_errors, origins.middleware()]
    if settings.auth == "on":
        checks.append(requiring_keys(store, open_without_keys=is_loopback(settings.host)))
    app = web.Application(middlewares=[*checks, identity_bodies_only])
    app.on_response_prepare.append(origins.add_cors_headers)
    app[SERVER_STATE] = ServerState(
        settings,
        host,
        finalizer,
        ConnectionLimit(settings.max_connections, settings.max_connections_per_address, metrics),
        backends,
        metrics,
    )
    figures = ServerFigures(app[SERVER_STATE])
    metrics.registry.register(figures)
    scraping = metrics_route(metrics, figures)

    async def decoding(app: web.Application) -> AsyncIterator[None]:
        scheduler.start()
        yield
        await scheduler.close()

    async def keeping_webrtc_ports(app: web.Application) -> AsyncIterator[None]:
        use_port_range(settings.webrtc_port_range)  # process-wide: aioice has no per-connection setting
        yield
        use_port_range(None)

    async def holding_data_dir(app: web.Application) -> AsyncIterator[None]:
        lock.acquire()  # first: recovery must never touch another process's live streams
        yield
        lock.release()

    async def holding_node_lease(app: web.Application) -> AsyncIterator[None]:
        async with backends.running():
            yield

    async def keeping_transcripts(app: web.Application) -> AsyncIterator[None]:
        await asyncio.to_thread(_remove_spooled_uploads, settings.data_dir / "uploads")
        await finalizer.start()
        yield
        await finalizer.close()

    async def serving_metrics_port(app: web.Application) -> AsyncIterator[None]:
        async with loopback_metrics(settings.metrics_port, scraping):
            yield

    async def ending_sessions(app: web.Application) -> None:
        await host.drain()
        await backends.events.close()  # their last events reach followers on other nodes

    app.cleanup_ctx.extend(
        [
            holding_data_dir,
            holding_node_lease,
            keeping_webrtc_ports,
            decoding,
            keeping_transcripts,
            serving_metrics_port,
        ]
    )  # cleaned up in reverse order
    app.on_shutdown.append(ending_sessions)  # before connections close: clients hear the end
    http.add_routes(app, settings.client_dir)
    websocket.add_routes(app)
    transcripts.add_routes(app)
    uploads.add_routes(app)
    openai_audio.add_routes(app)
    openai_realtime.add_routes(app)
    deepgram.add_routes(app)
    events.add_routes(app)
    webrtc.add_routes(app)
    app.router.add_routes([token_route(store), scraping])
    return app


def _remove_spooled_uploads(spool: Path) -> None:
    """Uploads left by a server that stopped mid-upload or mid-replay: nothing will read them."""
    for leftover in spool.glob("*.upload"):
        leftover.unlink(missing_ok=True)


async def listen(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start `app` (its startup runs here) on host:port (0: any free port; see
    `runner.addresses`); the caller must `await runner.cleanup()` to shut it down."""
    state = app[SERVER_STATE]
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,  # a request line can hold a ?token=; requests are logged where refused
        keepalive_timeout=state.settings.idle_timeout_s,
    )
    await runner.setup()
    await LimitedSite(runner, host, port, state.connections).start()
    return runner


async def serve(settings: ServerSettings, engine: Engine) -> None:
    """Run until SIGINT or SIGTERM, then shut down in order. Prints the bound address. A second
    pass cut off by the shutdown ends the process here, with status 0 (see _leave)."""
    app = create_app(settings, engine)
    runner = await listen(app, settings.host, settings.port)
    host, port = runner.addresses[0][:2]
    print(
        f"streamscribe listening on http://{host}:{port} (model {engine.name}, {engine.runtime} on "
        f"{engine.device})",
        flush=True,
    )
    if settings.auth == "off" and not is_loopback(settings.host):
        log.warning(
            "auth is off: anyone who can reach %s:%s can stream, read and delete transcripts", host, port
        )
    await _until_signalled()
    print("streamscribe shutting down", flush=True)
    state = app[SERVER_STATE]
    state.sessions.draining = True  # /readyz answers 503, new sessions are refused
    await asyncio.sleep(settings.drain_grace_s)  # the load balancer's checks see it while we still listen
    await runner.cleanup()
    _leave_if_cut_off(state.finalizer)


async def work(settings: ServerSettings) -> None:
    """`streamscribe worker`: take second-pass jobs from Redis (second_pass_workers at once) until
    SIGINT or SIGTERM; a job running then goes back to the queue for another worker. Its jobs are
    counted at 127.0.0.1:metrics_port/metrics, where a metrics_port is given."""
    if settings.redis_url is None:
        raise ValueError(
            "a worker takes its jobs from Redis: give it --redis-url, --database-url and --audio-url"
        )
    if settings.second_pass_workers == 0:
        raise ValueError("a worker with --second-pass-workers 0 would take no job")
    backends = open_backends(settings)
    metrics = Metrics()
    finalizer = FinalizeService(
        backends.for_jobs,
        settings,
        partial(SecondPass.for_server, settings),
        backends.cluster,
        metrics=metrics,
    )
    async with backends.running(), loopback_metrics(settings.metrics_port, metrics_route(metrics)):
        await finalizer.start()
        assert backends.cluster is not None
        print(
            f"streamscribe worker {backends.cluster.node_id} taking second-pass jobs "
            f"({settings.second_pass_workers} at once)",
            flush=True,
        )
        await _until_signalled()
        print("streamscribe worker shutting down", flush=True)
        await finalizer.close()
    _leave_if_cut_off(finalizer)


async def _until_signalled() -> None:
    import signal

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()


def _leave_if_cut_off(finalizer: FinalizeService) -> None:
    """A second pass is inside CTranslate2 or torch in its daemon thread; finalising the
    interpreter under it aborts the process (SIGABRT). Everything else is closed, and the job is
    redone (by another worker, or at the next start): leave now, with status 0."""
    if finalizer.native_work_running():
        log.warning(
            "a second pass was cut off by the shutdown; it is redone by another worker or at the next start"
        )
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
