"""A failing disk on a real server, on real file systems (tmpfs, remounted read-only): full and
read-only data directories answer JSON errors with codes (507 storage_full, 503
storage_unavailable) on uploads and streams, /healthz says so, a DELETE that cannot remove the
audio keeps the transcript listed, and a damaged store stops start-up with one clear line."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import msgspec
import numpy as np
import pytest
from websockets.asyncio.client import connect

from streamscribe.asr.engine import Engine
from streamscribe.config import ServerSettings

from ..conftest import speech_file, start_server
from .test_cli import run_cli
from .test_stream import ws_url
from .test_transcripts import get_json, stream

pytestmark = pytest.mark.model


@contextlib.contextmanager
def tmpfs(mount_point: Path, size: str = "8m") -> Iterator[Path]:
    """A real file system of `size` at `mount_point` (skipped where none can be mounted),
    unmounted after."""
    mount_point.mkdir(exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "disk") as mount_point:
        yield mount_point


def remount(mount_point: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(mount_point)], check=True)


async def upload(url: str, content: bytes) -> tuple[int, dict]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            url + "/v1/transcriptions", data=content, headers={"Content-Type": "audio/wav"}
        ) as response,
    ):
        assert response.content_type == "application/json"
        return response.status, await response.json()


async def stream_refusal(url: str) -> tuple[dict, int | None]:
    async with connect(ws_url(url)) as ws:
        await ws.send('{"type":"start"}')
        event = json.loads(await ws.recv())
        await ws.wait_closed()
        return event, ws.close_code


async def health(url: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http, http.get(url + "/healthz") as response:
        return response.status, await response.json()


def fill(disk: Path, leave_bytes: int) -> Path:
    """Take all but about `leave_bytes` of the disk."""
    filler = disk / "filler"
    with filler.open("wb") as handle:
        while True:
            free = subprocess.run(
                ["stat", "-f", "-c", "%a %S", str(disk)], capture_output=True, text=True, check=True
            )
            blocks, block_size = map(int, free.stdout.split())
            room = blocks * block_size - leave_bytes
            if room <= 0:
                return filler
            handle.write(b"\0" * min(room, 1 << 20))
            handle.flush()


async def test_a_full_disk_refuses_new_work_with_storage_full_and_keeps_what_is_stored(
    settings: ServerSettings, engine: Engine, disk: Path, jfk: tuple[np.ndarray, str]
) -> None:
    wav = speech_file("jfk/jfk.wav").read_bytes()
    runner, url = await start_server(
        msgspec.structs.replace(settings, data_dir=disk, min_free_disk_mb=2.0), engine
    )
    try:
        kept = (await stream(url, jfk[0]))[0]["transcript_id"]
        filler = fill(disk, 1 << 20)  # under the 2 MB reserve
        status, body = await health(url)
        assert status == 503 and body["status"] == "degraded" and body["storage"] == "full", body
        status, body = await upload(url, wav)
        assert status == 507 and body["error"]["code"] == "storage_full", body
        event, close_code = await stream_refusal(url)
        assert event["code"] == "storage_full" and close_code == 1011, event
        assert "country" in json.dumps(await get_json(url, f"/v1/transcripts/{kept}")).lower()
        filler.unlink()
        status, body = await health(url)
        assert status == 200 and body["storage"] == "ok" and body["storage_free_mb"] > 2
    finally:
        await runner.cleanup()


async def test_a_disk_that_fills_during_an_upload_answers_storage_full(
    settings: ServerSettings, engine: Engine, disk: Path
) -> None:
    runner, url = await start_server(
        msgspec.structs.replace(settings, data_dir=disk, min_free_disk_mb=0.0), engine
    )
    try:
        fill(disk, 256 << 10)
        status, body = await upload(url, b"RIFF" + b"\0" * (1 << 20))
        assert status == 507 and body["error"]["code"] == "storage_full", body
        assert "disk is full" in body["error"]["message"] and "Errno" not in body["error"]["message"]
        assert not list((disk / "uploads").glob("*")), "the partial spool file is removed"
    finally:
        await runner.cleanup()


async def test_a_read_only_disk_answers_storage_unavailable_and_delete_keeps_the_transcript(
    settings: ServerSettings, engine: Engine, tmp_path: Path, jfk: tuple[np.ndarray, str]
) -> None:
    """The recordings' disk goes read-only (the store's stays writable: a file open for writing
    keeps a file system from being remounted)."""
    disk = tmp_path / "data"
    (disk / "audio").mkdir(parents=True)
    with tmpfs(disk / "audio") as audio_disk:
        await _read_only_audio(settings, engine, disk, audio_disk, jfk[0])


async def _read_only_audio(
    settings: ServerSettings, engine: Engine, disk: Path, audio_disk: Path, speech: np.ndarray
) -> None:
    served = msgspec.structs.replace(
        settings, data_dir=disk, audio_retention_h=float("inf"), min_free_disk_mb=0.0
    )
    runner, url = await start_server(served, engine)
    try:
        transcript_id = (await stream(url, speech))[0]["transcript_id"]
        recording = audio_disk / f"{transcript_id}.wav"
        assert recording.exists()
        remount(audio_disk, "ro")
        try:
            status, body = await health(url)
            assert status == 503 and body["storage"] == "unavailable", body
            status, body = await upload(url, speech_file("jfk/jfk.wav").read_bytes())
            assert status == 503 and body["error"]["code"] == "storage_unavailable", body
            event, close_code = await stream_refusal(url)
            assert event["code"] == "storage_unavailable" and close_code == 1011, event
            async with (
                aiohttp.ClientSession() as http,
                http.delete(f"{url}/v1/transcripts/{transcript_id}") as response,
            ):
                assert (
                    response.status == 503
                    and (await response.json())["error"]["code"] == "storage_unavailable"
                )
        finally:
            remount(audio_disk, "rw")
        assert recording.exists(), "nothing was removed"
        await get_json(url, f"/v1/transcripts/{transcript_id}")
        async with (
            aiohttp.ClientSession() as http,
            http.delete(f"{url}/v1/transcripts/{transcript_id}") as response,
        ):
            assert response.status == 204
        assert not recording.exists()
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("damage", ["garbage", "torn pages"])
def test_a_damaged_store_stops_start_up_with_one_clear_line(tmp_path: Path, damage: str) -> None:
    store = tmp_path / "transcripts.sqlite3"
    if damage == "garbage":
        store.write_bytes(b"this is not a database" * 100)
    else:
        import sqlite3

        with sqlite3.connect(store) as db:
            db.execute("CREATE TABLE t (x)")
            db.executemany("INSERT INTO t VALUES (?)", [("x" * 500,)] * 200)
        data = bytearray(store.read_bytes())
        data[4096 * 2 : 4096 * 4] = b"\xff" * 8192  # pages past the header
        store.write_bytes(bytes(data))
    done = run_cli("serve", "--port", "0", "--data-dir", str(tmp_path))
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr and len(lines) == 1, done.stderr
    assert lines[0].startswith("error storage_unavailable:") and "restore it from a backup" in lines[0]
