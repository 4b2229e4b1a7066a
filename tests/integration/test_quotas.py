"""What a client can make the server keep, on a real server: a stream that sends no audio leaves
nothing behind (no transcript, no recording, no job), and re-runs stop at max_versions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import numpy as np
import pytest

from streamscribe.asr.engine import Engine
from streamscribe.config import ServerSettings

from ..conftest import start_server
from .test_transcripts import get_json, post, stream, wait_until_done

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("quotas")


@pytest.fixture(scope="module")
async def base_url(settings: ServerSettings, engine: Engine, data_dir: Path) -> AsyncIterator[str]:
    runner, url = await start_server(
        msgspec.structs.replace(settings, data_dir=data_dir, max_versions=2, audio_retention_h=float("inf")),
        engine,
    )
    yield url
    await runner.cleanup()


async def test_a_stream_with_no_audio_keeps_nothing(base_url: str, data_dir: Path) -> None:
    events = await stream(base_url, np.zeros(0, dtype=np.float32), wait=True)
    assert [event["type"] for event in events] == ["ready", "closed"]
    transcript_id = events[0]["transcript_id"]
    for _attempt in range(300):  # removed as the stream is handed over, just after `closed`
        if not (data_dir / "audio" / f"{transcript_id}.wav").exists():
            break
        await asyncio.sleep(0.1)
    await get_json(base_url, f"/v1/transcripts/{transcript_id}", expect=404)
    assert not (data_dir / "audio" / f"{transcript_id}.wav").exists()
    listing = await get_json(base_url, "/v1/transcripts")
    assert transcript_id not in [item["id"] for item in listing["transcripts"]]


async def test_re_runs_stop_at_max_versions(base_url: str, jfk: tuple[np.ndarray, str]) -> None:
    events = await stream(base_url, jfk[0][: 16000 * 3])
    transcript_id = events[0]["transcript_id"]
    status, _body = await post(base_url, f"/v1/transcripts/{transcript_id}/finalize", {"diarize": False})
    assert status == 202
    await wait_until_done(base_url, transcript_id, 120)
    status, body = await post(base_url, f"/v1/transcripts/{transcript_id}/finalize", {})
    assert status == 409 and body["error"]["code"] == "version_limit", body
    versions = await get_json(base_url, f"/v1/transcripts/{transcript_id}/versions")
    assert len(versions["versions"]) == 2
