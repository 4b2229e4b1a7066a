"""Wiring: the model, the scheduler, the routes, admission control and graceful shutdown."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from .asr.engine import Engine
from .asr.models import load_engine
from .config import ServerSettings
from .scheduler import DecodeScheduler
from .transports import http, websocket
from .transports.state import SERVER_STATE, ServerState

log = logging.getLogger("streamscribe")


def load_model(settings: ServerSettings) -> Engine:
    return load_engine(
        settings.model, settings.device, settings.compute_type, settings.cpu_threads, settings.model_cache_dir
    )


def create_app(settings: ServerSettings, engine: Engine) -> web.Application:
    """The aiohttp application; the scheduler starts with the app and stops after the sessions.

    Shutdown order: refuse new streams, stop every live session (their finals are flushed and
    `closed` is sent), wait up to shutdown_timeout_s, then stop the decoder threads.
    """
    app = web.Application()
    state = ServerState(settings=settings, scheduler=DecodeScheduler(engine))
    app[SERVER_STATE] = state

    async def start_scheduler(app: web.Application) -> None:
        state.scheduler.start()

    async def drain_sessions(app: web.Application) -> None:
        state.draining = True
        for connection in list(state.connections):
            connection.drain()
        drivers = [c.driver.wait_closed() for c in state.connections if c.driver is not None]
        try:
            await asyncio.wait_for(asyncio.gather(*drivers), settings.shutdown_timeout_s)
        except TimeoutError:
            log.warning("sessions still open after %.0f s of shutdown", settings.shutdown_timeout_s)

    async def stop_scheduler(app: web.Application) -> None:
        await state.scheduler.close()

    app.on_startup.append(start_scheduler)
    app.on_shutdown.append(drain_sessions)
    app.on_cleanup.append(stop_scheduler)
    http.add_routes(app)
    websocket.add_routes(app)
    return app


async def serve(settings: ServerSettings, engine: Engine) -> None:
    """Run until SIGINT or SIGTERM, then shut down in order. Prints the bound address."""
    import signal

    runner = web.AppRunner(create_app(settings, engine), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    host, port = runner.addresses[0][:2]
    print(f"streamscribe listening on http://{host}:{port} (model {engine.name})", flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    print("streamscribe shutting down", flush=True)
    await runner.cleanup()
