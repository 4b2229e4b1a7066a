"""Plain HTTP endpoints: health, readiness, the wire schema, and the browser client with its page at /."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from aiohttp import web

from ..store.failures import storage_state
from ..wire import Health, Readiness, json_schema
from .responses import struct_response
from .state import SERVER_STATE


async def healthz(request: web.Request) -> web.Response:
    state = request.app[SERVER_STATE]
    host = state.sessions
    settings = state.settings
    storage, free_mb = await asyncio.to_thread(
        storage_state, settings.data_dir, settings.min_free_disk_mb, state.finalizer.check_storage
    )
    degraded = storage != "ok"
    health = Health(
        status="draining" if host.draining else "degraded" if degraded else "ok",
        model=host.scheduler.engine.name,
        sessions=len(host.slots),
        max_sessions=state.settings.max_sessions,
        uploads=sum(1 for slot in host.slots if slot.replays_file),
        max_uploads=state.settings.max_uploads,
        decoder=host.scheduler.stats,
        stalled_sessions=host.stalled(),
        decode_wait_p95_s=host.scheduler.load.recent_p95_s(time.monotonic()),
        connections=state.connections.open,
        max_connections=state.connections.max_connections,
        connections_refused=state.connections.refused,
        storage=storage,
        storage_free_mb=free_mb,
        engine=host.scheduler.engine.runtime,
        device=host.scheduler.engine.device,
    )
    return struct_response(health, 503 if degraded else 200)


async def readyz(request: web.Request) -> web.Response:
    """For load balancers: 200 while this node takes new sessions, 503 while it drains or a
    dependency (database, audio store, Redis) cannot be reached."""
    state = request.app[SERVER_STATE]
    checks = await state.backends.readiness()
    if state.sessions.draining:
        status = "draining"
    elif all(result == "ok" for result in checks.values()):
        status = "ready"
    else:
        status = "unavailable"
    cluster = state.backends.cluster
    readiness = Readiness(status=status, node=cluster.node_id if cluster else None, checks=checks)
    return struct_response(readiness, 200 if status == "ready" else 503)


async def schema(request: web.Request) -> web.Response:
    return web.json_response(json_schema())


def add_routes(app: web.Application, client_dir: Path) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/v1/schema", schema)
    if (client_dir / "index.html").is_file():

        async def page(request: web.Request) -> web.FileResponse:
            return web.FileResponse(client_dir / "index.html", headers={"Cache-Control": "no-cache"})

        app.router.add_get("/", page)
        app.router.add_static("/client/", client_dir)
