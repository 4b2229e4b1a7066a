"""GET /readyz, what a load balancer asks: ready with every dependency checked, 503 while draining."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import msgspec

from streamscribe.asr.engine import Engine
from streamscribe.config import ServerSettings
from streamscribe.transports.state import SERVER_STATE

from ..conftest import start_server


async def test_readyz_checks_the_stores_and_turns_503_while_draining(
    settings: ServerSettings, engine: Engine, tmp_path: Path
) -> None:
    runner, url = await start_server(msgspec.structs.replace(settings, data_dir=tmp_path), engine)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/readyz") as response:
                assert response.status == 200
                assert await response.json() == {
                    "status": "ready",
                    "node": None,
                    "checks": {"database": "ok", "audio": "ok"},
                }
            runner.app[SERVER_STATE].sessions.draining = True  # what SIGTERM sets first
            async with http.get(f"{url}/readyz") as response:
                assert response.status == 503
                assert (await response.json())["status"] == "draining"
    finally:
        await runner.cleanup()
