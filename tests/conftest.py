"""Shared fixtures: the test speech in ../shared/testdata, the real model, a real server."""

from __future__ import annotations

import contextlib
import csv
import io
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import numpy as np
import pytest
from aiohttp import web

from streamscribe.app import create_app, listen
from streamscribe.asr.engine import Engine
from streamscribe.asr.models import load_engine
from streamscribe.audio import read_file
from streamscribe.cli.main import main
from streamscribe.config import ServerSettings, load_settings

TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"


async def start_server(settings: ServerSettings, engine: Engine) -> tuple[web.AppRunner, str]:
    """A real server on a free loopback port, as `serve` starts it; the caller must
    `await runner.cleanup()`."""
    runner = await listen(create_app(settings, engine), "127.0.0.1", 0)
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


def create_key(data_dir: Path, name: str, *options: str) -> str:
    """A new API key in the store of `data_dir`, made as an operator makes one (`streamscribe keys
    create NAME [OPTIONS]`, e.g. "--max-streams", "1"); the key, the command's last line."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["keys", "create", name, *options, "--data-dir", str(data_dir)])
    lines = out.getvalue().splitlines()
    assert status == 0, lines
    return lines[-1]


async def start_keyed_server(
    settings: ServerSettings, engine: Engine, data_dir: Path, key_name: str
) -> tuple[web.AppRunner, str, str]:
    """A real server (`start_server`) on `data_dir`, in which a key named `key_name` is made first,
    so every route but the open ones asks for a key: the runner, the URL and the key. The caller
    must `await runner.cleanup()`; more keys may be made with `create_key(data_dir, ...)`."""
    key = create_key(data_dir, key_name)
    runner, url = await start_server(msgspec.structs.replace(settings, data_dir=data_dir), engine)
    return runner, url, key


def speech_file(relative: str) -> Path:
    path = TESTDATA / relative
    if not path.exists():
        pytest.skip(f"test speech not found at {path} (../shared/testdata beside the repo)")
    return path


def librispeech_utterance(utterance_id: str) -> tuple[np.ndarray, str]:
    """Audio and reference text of one LibriSpeech dev-clean utterance."""
    speaker, chapter, _ = utterance_id.split("-")
    folder = speech_file(f"librispeech-dev-clean/{speaker}/{chapter}")
    with (folder / f"{speaker}-{chapter}.trans.txt").open() as handle:
        references = dict(line.rstrip("\n").split(" ", 1) for line in handle)
    return read_file(folder / f"{utterance_id}.flac"), references[utterance_id]


def conversation_reference() -> str:
    with speech_file("conversations/conv2spk_1272_84.transcript.tsv").open() as handle:
        return " ".join(row["text"] for row in csv.DictReader(handle, delimiter="\t"))


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> ServerSettings:
    """Second pass off: streams store v1 and close at once (tests/integration/test_transcripts.py
    runs servers with it on)."""
    cache = tmp_path_factory.mktemp("model-cache")
    data = tmp_path_factory.mktemp("data")
    overrides = {
        "port": 0,
        "device": "cpu",
        "compute_type": "int8",
        "model_cache_dir": cache,
        "data_dir": data,
        "max_sessions": 4,
        "finalize": {"enabled": False},
        "resume_window_s": 1.0,  # a vanished client's stream ends soon (test_resume.py: the window)
    }
    return load_settings(overrides, environ={})


@pytest.fixture(scope="session")
def engine(settings: ServerSettings) -> Engine:
    return load_engine(settings)


@pytest.fixture(scope="session")
def jfk() -> tuple[np.ndarray, str]:
    return read_file(speech_file("jfk/jfk.wav")), speech_file("jfk/jfk.txt").read_text()


@pytest.fixture(scope="session")
async def server_url(settings: ServerSettings, engine: Engine) -> AsyncIterator[str]:
    """A real server on a free loopback port; yields its base URL (http://...)."""
    runner, url = await start_server(settings, engine)
    yield url
    await runner.cleanup()


MEDIA_ENCODINGS = {
    "mp3": ["-c:a", "libmp3lame"],
    "ogg": ["-c:a", "libopus"],
    "flac": ["-c:a", "flac"],
    "wav": ["-c:a", "pcm_s16le", "-ar", "44100", "-ac", "2"],
    "m4a": ["-c:a", "aac"],
    "webm": ["-c:a", "libopus"],
}


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The JFK speech re-encoded by ffmpeg as a user would have it: mp3, ogg/opus, flac, 44.1 kHz
    stereo wav, m4a, webm, and an mp4 with an H.264 video track; plus a video with no sound."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.fail("ffmpeg is missing: tests/run.sh installs Debian's ffmpeg")
    source = speech_file("jfk/jfk.wav")
    folder = tmp_path_factory.mktemp("media")
    files: dict[str, Path] = {}

    def encode(name: str, *args: str) -> None:
        files[name] = folder / name
        subprocess.run([ffmpeg, "-loglevel", "error", "-y", *args, str(files[name])], check=True, timeout=60)

    for extension, codec in MEDIA_ENCODINGS.items():
        encode(f"jfk.{extension}", "-i", str(source), *codec)
    video = ["-f", "lavfi", "-i", "testsrc=size=160x120:rate=10", "-c:v", "libx264", "-pix_fmt", "yuv420p"]
    encode("jfk.mp4", *video[:4], "-i", str(source), "-shortest", *video[4:], "-c:a", "aac")
    encode("silent-video.mp4", *video[:4], "-t", "2", *video[4:])
    return files


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL server, started once for the session (tests/services.py); yields the URL of
    its empty `streamscribe` database. Tests that share it keep to their own schema or ids."""
    from tests.services import postgres_server

    with postgres_server(tmp_path_factory.mktemp("postgres")) as url:
        yield url
