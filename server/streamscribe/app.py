"""Wiring: the model, the scheduler, the routes, admission control and graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import msgspec
from aiohttp import web

from .asr.engine import Engine
from .asr.models import load_engine
from .config import ServerSettings
from .finalize.pipeline import SecondPass
from .finalize.service import FinalizeService
from .scheduler import DecodeScheduler
from .store.sqlite import SqliteTranscriptStore
from .stream.event_log import EventLogs
from .transports import events, http, openai_audio, transcripts, uploads, webrtc, websocket
from .transports.state import SERVER_STATE, ServerState

log = logging.getLogger("streamscribe")


def load_model(settings: ServerSettings) -> Engine:
    return load_engine(
        settings.model, settings.device, settings.compute_type, settings.cpu_threads, settings.model_cache_dir
    )


def create_finalizer(settings: ServerSettings) -> FinalizeService:
    """The transcript store in settings.data_dir and the second pass that fills it."""

    def load_second_pass_model(name: str) -> Engine:
        return load_model(msgspec.structs.replace(settings, model=name))

    store = SqliteTranscriptStore(settings.data_dir / "transcripts.sqlite3")
    return FinalizeService(store, settings, SecondPass(load_second_pass_model, settings.rewrite_api_key))


def create_app(settings: ServerSettings, engine: Engine) -> web.Application:
    """The aiohttp application; the scheduler starts with the app and stops after the sessions.

    Shutdown order: refuse new streams, stop every live session (their finals are flushed, their
    transcripts stored and `closed` is sent), wait up to shutdown_timeout_s, then stop the
    second-pass worker (a running job is redone at the next start) and the decoder threads.
    """
    app = web.Application()
    finalizer = create_finalizer(settings)
    state = ServerState(
        settings=settings,
        scheduler=DecodeScheduler(engine),
        event_logs=EventLogs(settings.event_log_max_events, settings.event_log_linger_s),
        finalizer=finalizer,
    )
    app[SERVER_STATE] = state

    async def start_scheduler(app: web.Application) -> None:
        await asyncio.to_thread(_remove_spooled_uploads, settings.data_dir / "uploads")
        state.scheduler.start()
        await finalizer.start()

    async def drain_sessions(app: web.Application) -> None:
        state.draining = True
        for session in list(state.sessions):
            session.drain()
        drivers = [s.driver.wait_closed() for s in state.sessions if s.driver is not None]
        try:
            await asyncio.wait_for(asyncio.gather(*drivers), settings.shutdown_timeout_s)
        except TimeoutError:
            log.warning("sessions still open after %.0f s of shutdown", settings.shutdown_timeout_s)

    async def stop_scheduler(app: web.Application) -> None:
        await finalizer.close()
        await state.scheduler.close()

    app.on_startup.append(start_scheduler)
    app.on_shutdown.append(drain_sessions)
    app.on_cleanup.append(stop_scheduler)
    http.add_routes(app, settings.client_dir)
    websocket.add_routes(app)
    transcripts.add_routes(app)
    uploads.add_routes(app)
    openai_audio.add_routes(app)
    events.add_routes(app)
    webrtc.add_routes(app)
    return app


def _remove_spooled_uploads(spool: Path) -> None:
    """Uploads left by a server that stopped mid-upload or mid-replay: nothing will read them."""
    for leftover in spool.glob("*.upload"):
        leftover.unlink(missing_ok=True)


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
