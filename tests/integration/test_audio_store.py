"""Recordings in a shared store (store/audio.py), against real backends: WAV files in a directory
and segment objects in an S3-protocol server (moto's, over HTTP). Real speech written in uneven
pieces reads back bit-exact in any slice, survives a writer that never closes, downloads as a
WAV file, and is deleted whole; then one real server keeps its recordings in S3 end to end."""

from __future__ import annotations

import io
import uuid
import wave
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import boto3
import msgspec
import numpy as np
import pytest

from streamscribe.asr.engine import Engine
from streamscribe.audio import SAMPLE_RATE, to_pcm_s16le
from streamscribe.config import ServerSettings
from streamscribe.errors import AudioNotRetained
from streamscribe.store.audio import LocalAudioStore, S3AudioStore, open_audio_store
from streamscribe.store.base import AudioStore
from streamscribe.store.failures import BackendFailure

from ..conftest import librispeech_utterance, start_server
from ..services import s3_server
from .test_transcripts import get_json, stream

_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing-secret",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server; AWS_ENDPOINT_URL and credentials set as a deployment would set them."""
    with s3_server() as endpoint, pytest.MonkeyPatch.context() as patch:
        for name, value in {**_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}.items():
            patch.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
            patch.delenv(name, raising=False)
        yield endpoint


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    name = f"rec-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


def objects(bucket: str) -> list[tuple[str, int]]:
    listing = boto3.client("s3").list_objects_v2(Bucket=bucket)
    return [(item["Key"], item["Size"]) for item in listing.get("Contents", [])]


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """About 24 s of real speech (three LibriSpeech utterances), float32 at 16 kHz."""
    return np.concatenate(
        [librispeech_utterance(u)[0] for u in ("1272-135031-0000", "84-121550-0000", "1462-170142-0000")]
    ).astype(np.float32)


def as_int16(samples: np.ndarray) -> np.ndarray:
    """What a recording keeps of float samples: 16-bit PCM (read back as int16 / 32768)."""
    return np.frombuffer(to_pcm_s16le(samples), dtype="<i2")


def read_int16(samples: np.ndarray) -> np.ndarray:
    scaled = samples * np.float32(32768)
    assert np.array_equal(scaled, np.round(scaled)), "a slice is whole 16-bit samples"
    return scaled.astype("<i2")


def write_unevenly(store: AudioStore, transcript_id: str, samples: np.ndarray, close: bool = True) -> str:
    recording = store.record(transcript_id)
    sizes = np.random.default_rng(7).integers(1, 9_000, size=samples.size // 10)
    offset = 0
    for size in sizes:
        if offset >= samples.size:
            break
        recording.write(samples[offset : offset + size])
        offset += int(size)
    recording.write(samples[offset:])
    assert recording.samples == samples.size
    if close:
        recording.close()
        recording.write(samples[:100])  # ignored after close
    return recording.location


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> AudioStore:
    if request.param == "local":
        return LocalAudioStore(tmp_path / "audio")
    bucket_name = request.getfixturevalue("bucket")
    return open_audio_store(f"s3://{bucket_name}/rec/2024", tmp_path)


def test_slices_read_back_bit_exact(store: AudioStore, speech: np.ndarray) -> None:
    location = write_unevenly(store, "t1", speech)
    expected = as_int16(speech)
    recording = store.samples(location)
    assert recording.size == speech.size
    assert store.duration_s(location) == pytest.approx(speech.size / SAMPLE_RATE)
    segment = 10 * SAMPLE_RATE
    parts = [
        slice(0, recording.size),
        slice(0, 1),
        slice(segment - 3, segment + 3),  # across a segment's end
        slice(segment, 2 * segment),  # exactly one segment
        slice(12_345, 3 * segment + 17),  # more than two (past the end: cut there)
        slice(recording.size - 5, recording.size + 100),
        slice(recording.size, recording.size + 1),
        slice(9, 4),
    ]
    rng = np.random.default_rng(3)
    for _ in range(20):
        start = int(rng.integers(0, recording.size))
        parts.append(slice(start, start + int(rng.integers(1, 3 * segment))))
    for part in parts:
        got = recording[part]
        assert got.dtype == np.float32
        assert np.array_equal(read_int16(got), expected[part]), part
    with pytest.raises(ValueError):
        recording[::2]


def test_a_recording_downloads_as_the_same_wav(store: AudioStore, speech: np.ndarray) -> None:
    location = write_unevenly(store, "t2", speech)
    pieces = list(store.wav_chunks(location))
    assert len(pieces) > 1, "streamed a piece at a time"
    with wave.open(io.BytesIO(b"".join(pieces)), "rb") as parsed:
        assert (parsed.getnchannels(), parsed.getsampwidth(), parsed.getframerate()) == (1, 2, SAMPLE_RATE)
        assert parsed.getnframes() == speech.size
        frames = np.frombuffer(parsed.readframes(parsed.getnframes() + 10), dtype="<i2")
    assert np.array_equal(frames, as_int16(speech))
    assert store.size_bytes(location) >= speech.size * 2
    assert store.size_bytes(location) <= speech.size * 2 + 44


def test_delete_removes_the_recording(store: AudioStore, speech: np.ndarray) -> None:
    location = write_unevenly(store, "t3", speech[: 3 * SAMPLE_RATE])
    other = write_unevenly(store, "t30", speech[: 2 * SAMPLE_RATE])  # a prefix of t3's name: kept
    store.delete(location)
    store.delete(location)  # gone already: nothing happens
    with pytest.raises(AudioNotRetained):
        store.samples(location)
    with pytest.raises(AudioNotRetained):
        store.wav_chunks(location)
    assert store.size_bytes(location) == 0 and store.duration_s(location) == 0
    assert store.samples(other).size == 2 * SAMPLE_RATE


def test_a_missing_recording_is_not_retained(store: AudioStore, tmp_path: Path) -> None:
    location = store.record("t4").location
    cut = location.rfind("t4")
    missing = location[:cut] + "never-written" + location[cut + 2 :]
    for location in (missing, str(tmp_path / "old-version.wav")):
        with pytest.raises(AudioNotRetained):
            store.samples(location)
        with pytest.raises(AudioNotRetained):
            store.wav_chunks(location)
        assert store.size_bytes(location) == 0 and store.duration_s(location) == 0
        store.delete(location)
    store.check()


def test_a_writer_that_never_closes_leaves_what_it_wrote(
    store: AudioStore, speech: np.ndarray, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A crash mid-stream: 25 s written, never closed; a new store (another process) reads the
    recording up to its last segment at least."""
    spoken = np.concatenate([speech, speech])[: 25 * SAMPLE_RATE]
    location = write_unevenly(store, "t5", spoken, close=False)
    if isinstance(store, LocalAudioStore):
        fresh: AudioStore = LocalAudioStore(store.directory)
    else:
        fresh = open_audio_store(f"s3://{request.getfixturevalue('bucket')}/rec/2024", tmp_path)
    recording = fresh.samples(location)
    assert 20 * SAMPLE_RATE <= recording.size <= spoken.size
    assert np.array_equal(read_int16(recording[0 : recording.size]), as_int16(spoken)[: recording.size])
    assert fresh.duration_s(location) >= 20.0


def test_s3_layout_is_raw_pcm_segments(bucket: str, speech: np.ndarray) -> None:
    store = S3AudioStore(bucket, "a/b/", segment_s=1.3)
    location = write_unevenly(store, "t6", speech)
    assert location == f"s3://{bucket}/a/b/t6/"
    keys = objects(bucket)
    segment_bytes = round(1.3 * SAMPLE_RATE) * 2
    assert [key for key, _ in keys] == [f"a/b/t6/{index:06d}.pcm" for index in range(len(keys))]
    assert all(size == segment_bytes for _, size in keys[:-1]) and 0 < keys[-1][1] <= segment_bytes
    assert sum(size for _, size in keys) == speech.size * 2 == store.size_bytes(location)
    recording = store.samples(location)  # many small segments: slices across several of them
    expected = as_int16(speech)
    for start in range(0, speech.size, 7_919):
        part = slice(start, start + 3 * segment_bytes // 2 + 11)
        assert np.array_equal(read_int16(recording[part]), expected[part])
    store.delete(location)
    assert objects(bucket) == []


def test_s3_segments_are_put_as_the_stream_goes(bucket: str, speech: np.ndarray) -> None:
    """At most one segment is buffered: a full one is in the bucket before the next write."""
    store = S3AudioStore(bucket, "", segment_s=1.0)
    recording = store.record("t7")
    assert objects(bucket) == [("t7/000000.pcm", 0)], "opened with an empty first segment"
    recording.write(speech[: SAMPLE_RATE - 1])
    assert objects(bucket) == [("t7/000000.pcm", 0)]
    recording.write(speech[SAMPLE_RATE - 1 : 3 * SAMPLE_RATE + 5])
    assert [size for _, size in objects(bucket)] == [2 * SAMPLE_RATE] * 3
    assert store.duration_s(recording.location) == 3.0
    recording.close()
    assert [size for _, size in objects(bucket)] == [2 * SAMPLE_RATE] * 3 + [10]


def test_an_unreachable_bucket_is_a_backend_failure_that_names_no_secret(s3_endpoint: str) -> None:
    store = open_audio_store("s3://no-such-bucket-here/x", Path("/nonexistent"))
    for attempt in (
        store.check,
        lambda: store.record("t8"),
        lambda: store.size_bytes("s3://no-such-bucket-here/x/t8/"),
    ):
        with pytest.raises(BackendFailure) as failure:
            attempt()
        assert isinstance(failure.value, OSError)
        message = str(failure.value)
        assert "testing-secret" not in message and s3_endpoint not in message and "127.0.0.1" not in message


@pytest.mark.parametrize(
    "url",
    [
        "file://relative/path",
        "file://host/srv/audio",
        "file:///",
        "s3://",
        "s3://ab/prefix",
        "s3://Bad_Bucket/x",
        "s3://key:secret@bucket/prefix",
        "s3://bucket/a//b",
        "s3://bucket/p?x=1",
        "http://bucket/prefix",
        "/srv/audio",
    ],
)
def test_a_bad_url_is_refused_with_a_readable_message(url: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError) as refused:
        open_audio_store(url, tmp_path)
    assert "audio_url" in str(refused.value) and "secret" not in str(refused.value)


def test_urls_name_their_store(tmp_path: Path, s3_endpoint: str) -> None:
    default = open_audio_store(None, tmp_path / "default")
    assert isinstance(default, LocalAudioStore) and (tmp_path / "default").is_dir()
    shared = open_audio_store(f"file://{tmp_path}/shared%20volume", tmp_path / "unused")
    assert isinstance(shared, LocalAudioStore) and shared.directory == tmp_path / "shared volume"
    location = shared.record("t9").location
    assert location == str(tmp_path / "shared volume" / "t9.wav")
    assert shared.local_file(location) == Path(location)
    whole_bucket = open_audio_store("s3://my-bucket", tmp_path)
    assert isinstance(whole_bucket, S3AudioStore)
    assert whole_bucket.location_of("t9") == "s3://my-bucket/t9/"
    assert whole_bucket.local_file("s3://my-bucket/t9/") is None


# ---- a real server ----------------------------------------------------------------------------------


@pytest.mark.model
@pytest.mark.parametrize("kept_in", ["s3", "shared volume"])
async def test_a_server_keeps_its_recordings_in_the_shared_store(
    settings: ServerSettings,
    engine: Engine,
    tmp_path: Path,
    speech: np.ndarray,
    kept_in: str,
    request: pytest.FixtureRequest,
) -> None:
    """Stream real speech; the second pass reads the recording from the store, the download is a
    WAV of what was streamed (from S3 a piece at a time, from a volume as the file), and DELETE
    removes all of it."""
    if kept_in == "s3":
        bucket = request.getfixturevalue("bucket")
        audio_url = f"s3://{bucket}/recordings"

        def kept() -> list[str]:
            return [key for key, _ in objects(bucket)]
    else:
        volume = tmp_path / "volume"
        audio_url = f"file://{volume}"

        def kept() -> list[str]:
            return sorted(path.name for path in volume.iterdir())

    served = msgspec.structs.replace(
        settings,
        data_dir=tmp_path / "data",
        audio_url=audio_url,
        audio_retention_h=float("inf"),
        finalize=msgspec.structs.replace(settings.finalize, enabled=True),
    )
    runner, url = await start_server(served, engine)
    try:
        assert (await get_json(url, "/healthz"))["storage"] == "ok"
        audio = speech[: 12 * SAMPLE_RATE]
        events = await stream(url, audio)
        transcript_id = events[0]["transcript_id"]
        assert any(event["type"] == "transcript_ready" for event in events), events[-3:]
        listing = await get_json(url, f"/v1/transcripts/{transcript_id}/versions")
        assert listing["state"] == "done" and [v["version"] for v in listing["versions"]] == [1, 2], listing
        second = await get_json(url, f"/v1/transcripts/{transcript_id}/versions/2")
        assert second["duration_s"] == pytest.approx(12.0, abs=0.05)
        if kept_in == "s3":
            assert kept() and all(key.startswith(f"recordings/{transcript_id}/") for key in kept())
        else:
            assert kept() == [f"{transcript_id}.wav"]
        assert not (tmp_path / "data" / "audio" / f"{transcript_id}.wav").exists(), "only in the store"
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{url}/v1/transcripts/{transcript_id}/audio") as got,
        ):
            assert got.status == 200 and got.content_type == "audio/wav"
            body = await got.read()
            assert got.content_length == len(body)
        with wave.open(io.BytesIO(body), "rb") as parsed:
            assert parsed.getframerate() == SAMPLE_RATE
            assert parsed.getnframes() / SAMPLE_RATE == pytest.approx(12.0, abs=0.05)
            frames = np.frombuffer(parsed.readframes(parsed.getnframes()), dtype="<i2")
        received = as_int16(audio).astype(np.float32) / np.float32(32768)  # what the server took
        assert np.array_equal(frames, as_int16(received))
        async with (
            aiohttp.ClientSession() as http,
            http.delete(f"{url}/v1/transcripts/{transcript_id}") as gone,
        ):
            assert gone.status == 204
        assert kept() == []
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{url}/v1/transcripts/{transcript_id}/audio") as got,
        ):
            assert got.status == 404
    finally:
        await runner.cleanup()
