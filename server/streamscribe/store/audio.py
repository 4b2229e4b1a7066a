"""Where recordings are kept (the AudioStore of base.py): WAV files in a directory (the data
directory's audio/, or a volume every node and worker mounts), or segment objects in an
S3-compatible bucket. `open_audio_store` picks one from the server's `audio_url`.

S3 layout: a multipart upload needs parts of 5 MiB or more (164 s of 16 kHz 16-bit audio), so a
recording is written as segments instead, raw s16le 16 kHz mono PCM, one object per `segment_s`
under `{prefix}/{transcript_id}/{index:06d}.pcm`; its location is
`s3://bucket/prefix/{transcript_id}/`. A segment is put once full and at close (the remainder),
so a crash loses at most the last segment; `record` puts an empty first segment, so that a
recording exists (and a bucket that cannot be written is found) as the stream opens.
"""

from __future__ import annotations

import bisect
import re
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np

from ..audio import SAMPLE_RATE, Samples, SampleSource, from_pcm_s16le, to_pcm_s16le
from ..errors import AudioNotRetained
from .base import AudioRecording, AudioStore
from .failures import BackendFailure, check_writable, ensure_room
from .recording import AudioRecorder, RecordedSamples, contiguous, recording_duration_s

_BYTES_PER_SAMPLE = 2
_FILE_CHUNK_BYTES = 1 << 16
_SEGMENT_NAME = re.compile(r"^(\d{6})\.pcm$")
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_DELETE_BATCH = 1000  # S3's limit per DeleteObjects call


def _not_kept() -> AudioNotRetained:
    return AudioNotRetained("the audio is no longer kept")


def _check_id(transcript_id: str) -> None:
    if not transcript_id or "/" in transcript_id or transcript_id in (".", ".."):
        raise ValueError(f"{transcript_id!r} cannot name a recording")


def wav_header(data_bytes: int) -> bytes:
    """The 44-byte header of a 16 kHz mono 16-bit PCM WAV file with `data_bytes` of samples."""
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,  # PCM
        1,  # mono
        SAMPLE_RATE,
        SAMPLE_RATE * _BYTES_PER_SAMPLE,
        _BYTES_PER_SAMPLE,
        8 * _BYTES_PER_SAMPLE,
        b"data",
        data_bytes,
    )


# ---- a directory ------------------------------------------------------------------------------------


class LocalAudioStore:
    """`{transcript_id}.wav` files in `directory` (created here); a location is the file's path.
    Any path works as a location, so the plain paths that older versions stored stay readable."""

    def __init__(self, directory: Path, min_free_mb: float = 0.0) -> None:
        """New recordings are refused (StorageFull) while the disk has less than `min_free_mb`."""
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._min_free_mb = min_free_mb

    def record(self, transcript_id: str) -> AudioRecording:
        _check_id(transcript_id)
        ensure_room(self.directory, self._min_free_mb)
        return AudioRecorder(self.directory / f"{transcript_id}.wav")

    def local_file(self, location: str) -> Path | None:
        return None if location.startswith("s3://") else Path(location)

    def samples(self, location: str) -> SampleSource:
        path = self.local_file(location)
        if path is None:
            raise _not_kept()
        try:
            return RecordedSamples(path)
        except FileNotFoundError:
            raise _not_kept() from None

    def duration_s(self, location: str) -> float:
        path = self.local_file(location)
        return 0.0 if path is None else recording_duration_s(path)

    def size_bytes(self, location: str) -> int:
        path = self.local_file(location)
        try:
            return 0 if path is None else path.stat().st_size
        except FileNotFoundError:
            return 0

    def wav_chunks(self, location: str) -> Iterator[bytes]:
        """The file as it is, in pieces of 64 KiB (raises AudioNotRetained here, not when read)."""
        path = self.local_file(location)
        if path is None:
            raise _not_kept()
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            raise _not_kept() from None
        return _file_chunks(handle)

    def delete(self, location: str) -> None:
        path = self.local_file(location)
        if path is not None:
            path.unlink(missing_ok=True)

    def check(self) -> None:
        check_writable(self.directory)


def _file_chunks(handle: Any) -> Iterator[bytes]:
    with handle:
        while piece := handle.read(_FILE_CHUNK_BYTES):
            yield piece


# ---- an S3 bucket -----------------------------------------------------------------------------------


def _backend_failure(exc: Exception, doing: str) -> BackendFailure:
    """The error to raise for a botocore error: its code or type, never its message (which may
    name the endpoint) nor anything of the credentials."""
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return BackendFailure(f"the object store failed {doing} ({code or type(exc).__name__})")


def _is_missing(exc: Exception) -> bool:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    code = str(response.get("Error", {}).get("Code", ""))
    return code in ("NoSuchKey", "404", "NotFound")


class _Segments:
    """A recording's segments as one listing saw them: keys and sample counts, in order."""

    def __init__(self, bucket: str, keys: list[str], sizes: list[int]) -> None:
        self.bucket = bucket
        self.keys = keys
        self.samples = [size // _BYTES_PER_SAMPLE for size in sizes]
        self.starts: list[int] = []
        total = 0
        for count in self.samples:
            self.starts.append(total)
            total += count
        self.total_samples = total


class S3AudioStore:
    """Recordings as segment objects under `s3://bucket/prefix/` (see the module). The client is
    boto3's, configured as boto3 does it: AWS_ENDPOINT_URL (MinIO, any S3-compatible store),
    AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_REGION, profiles, instance roles."""

    def __init__(self, bucket: str, prefix: str = "", *, segment_s: float = 10.0, client: Any = None) -> None:
        if segment_s <= 0:
            raise ValueError("segment_s must be positive")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.segment_bytes = max(1, round(segment_s * SAMPLE_RATE)) * _BYTES_PER_SAMPLE
        self._client = client if client is not None else _default_client()
        from botocore.exceptions import BotoCoreError, ClientError

        self._errors: tuple[type[Exception], ...] = (BotoCoreError, ClientError)

    def location_of(self, transcript_id: str) -> str:
        key = f"{self.prefix}/{transcript_id}/" if self.prefix else f"{transcript_id}/"
        return f"s3://{self.bucket}/{key}"

    def record(self, transcript_id: str) -> AudioRecording:
        """Puts an empty first segment: raises BackendFailure when the bucket cannot be written."""
        _check_id(transcript_id)
        return _S3Recording(self, self.location_of(transcript_id))

    def local_file(self, location: str) -> Path | None:
        return None

    def samples(self, location: str) -> SampleSource:
        segments = self._listing(location)
        if segments is None:
            raise _not_kept()
        return _S3Samples(self, segments)

    def duration_s(self, location: str) -> float:
        try:
            segments = self._listing(location)
        except BackendFailure:
            return 0.0
        return 0.0 if segments is None else segments.total_samples / SAMPLE_RATE

    def size_bytes(self, location: str) -> int:
        segments = self._listing(location)
        return 0 if segments is None else segments.total_samples * _BYTES_PER_SAMPLE

    def wav_chunks(self, location: str) -> Iterator[bytes]:
        """The WAV header first (exactly 44 bytes, with the sizes of the listing), then the
        segments' bytes, one segment a piece. Lists here: raises AudioNotRetained at the call."""
        segments = self._listing(location)
        if segments is None:
            raise _not_kept()
        return self._wav_pieces(segments)

    def delete(self, location: str) -> None:
        parsed = _parse_location(location)
        if parsed is None:
            return
        bucket, key_prefix = parsed
        keys = [key for key, _ in self._objects(bucket, key_prefix)]
        for first in range(0, len(keys), _DELETE_BATCH):
            batch = [{"Key": key} for key in keys[first : first + _DELETE_BATCH]]
            try:
                answer = self._client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            except self._errors as exc:
                raise _backend_failure(exc, "deleting a recording") from exc
            if answer.get("Errors"):
                code = answer["Errors"][0].get("Code", "unknown")
                raise BackendFailure(f"the object store failed deleting a recording ({code})")

    def check(self) -> None:
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except self._errors as exc:
            raise _backend_failure(exc, "checking the bucket") from exc

    # ---- internals --------------------------------------------------------------------------------

    def put_segment(self, location: str, index: int, data: bytes) -> None:
        parsed = _parse_location(location)
        assert parsed is not None  # our own recording's
        bucket, key_prefix = parsed
        try:
            self._client.put_object(
                Bucket=bucket,
                Key=f"{key_prefix}{index:06d}.pcm",
                Body=data,
                ContentType="application/octet-stream",
            )
        except self._errors as exc:
            raise _backend_failure(exc, "writing a recording") from exc

    def read_range(self, segments: _Segments, index: int, first_byte: int, stop_byte: int) -> bytes:
        """Bytes [first_byte, stop_byte) of segment `index` (a ranged GET)."""
        try:
            answer = self._client.get_object(
                Bucket=segments.bucket,
                Key=segments.keys[index],
                Range=f"bytes={first_byte}-{stop_byte - 1}",
            )
            data: bytes = answer["Body"].read()
        except self._errors as exc:
            if _is_missing(exc):
                raise _not_kept() from None
            raise _backend_failure(exc, "reading a recording") from exc
        if len(data) != stop_byte - first_byte:
            raise BackendFailure("the object store returned a short read of a recording")
        return data

    def _objects(self, bucket: str, key_prefix: str) -> list[tuple[str, int]]:
        found: list[tuple[str, int]] = []
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key_prefix)
            for page in pages:
                found.extend((item["Key"], int(item["Size"])) for item in page.get("Contents", ()))
        except self._errors as exc:
            raise _backend_failure(exc, "listing a recording") from exc
        return found

    def _listing(self, location: str) -> _Segments | None:
        """The recording's segments; None when it has none (gone, or not an s3:// location)."""
        parsed = _parse_location(location)
        if parsed is None:
            return None
        bucket, key_prefix = parsed
        segments: dict[int, tuple[str, int]] = {}
        for key, size in self._objects(bucket, key_prefix):
            named = _SEGMENT_NAME.match(key[len(key_prefix) :])
            if named:
                segments[int(named.group(1))] = (key, size)
        if not segments:
            return None
        ordered = [segments[index] for index in sorted(segments)]
        kept = [(key, size) for key, size in ordered if size >= _BYTES_PER_SAMPLE]
        return _Segments(bucket, [key for key, _ in kept], [size for _, size in kept])

    def _wav_pieces(self, segments: _Segments) -> Iterator[bytes]:
        yield wav_header(segments.total_samples * _BYTES_PER_SAMPLE)
        for index, count in enumerate(segments.samples):
            yield self.read_range(segments, index, 0, count * _BYTES_PER_SAMPLE)


def _default_client() -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise ValueError(
            "s3:// audio needs boto3: install streamscribe[scale] (pip install 'streamscribe[scale]')"
        ) from None
    config = Config(
        max_pool_connections=64,  # writes of many streams, reads of the second passes, at once
        retries={"mode": "standard", "max_attempts": 4},
        connect_timeout=10,
        read_timeout=60,
        request_checksum_calculation="when_required",  # what S3-compatible stores all accept
        response_checksum_validation="when_required",
    )
    return boto3.client("s3", config=config)


def _parse_location(location: str) -> tuple[str, str] | None:
    """(bucket, key prefix ending in '/') of `s3://bucket/.../transcript_id/`; None for anything
    else, a prefix that names no single recording included (a delete must never take more)."""
    if not location.startswith("s3://"):
        return None
    bucket, _, key_prefix = location[len("s3://") :].partition("/")
    if not bucket or not key_prefix.endswith("/") or not key_prefix.strip("/"):
        return None
    if any(part in ("", ".", "..") for part in key_prefix[:-1].split("/")):
        return None
    return bucket, key_prefix


class _S3Recording:
    """A recording being written: at most one segment is buffered; a full one is put at once."""

    def __init__(self, store: S3AudioStore, location: str) -> None:
        self._store = store
        self.location = location
        self.samples = 0
        self._buffer = bytearray()
        self._index = 0
        self._lock = threading.Lock()
        self._closed = False
        store.put_segment(location, 0, b"")

    def write(self, samples: Samples) -> None:
        """Raises BackendFailure when a full segment cannot be put; a later write tries it again
        before taking more, so no more than a segment and a write are ever held."""
        with self._lock:
            if self._closed or not samples.size:
                return
            self._put_full_segments()
            self._buffer += to_pcm_s16le(samples)
            self.samples += samples.size
            self._put_full_segments()

    def close(self) -> None:
        """Puts the remainder; later writes are ignored."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._put_full_segments()
            if self._buffer:
                self._store.put_segment(self.location, self._index, bytes(self._buffer))
                self._buffer.clear()
                self._index += 1

    def _put_full_segments(self) -> None:
        size = self._store.segment_bytes
        while len(self._buffer) >= size:
            self._store.put_segment(self.location, self._index, bytes(self._buffer[:size]))
            del self._buffer[:size]
            self._index += 1


class _S3Samples:
    """A SampleSource over the segments one listing saw: each slice is read with ranged GETs of
    the segments it overlaps."""

    def __init__(self, store: S3AudioStore, segments: _Segments) -> None:
        self._store = store
        self._segments = segments
        self.size: int = segments.total_samples

    def __getitem__(self, part: slice) -> Samples:
        start, stop = contiguous(part, self.size)
        if stop <= start:
            return np.zeros(0, dtype=np.float32)
        segments = self._segments
        pieces: list[bytes] = []
        index = bisect.bisect_right(segments.starts, start) - 1
        while index < len(segments.keys) and segments.starts[index] < stop:
            first = segments.starts[index]
            low = max(start, first) - first
            high = min(stop, first + segments.samples[index]) - first
            if high > low:
                pieces.append(
                    self._store.read_range(segments, index, low * _BYTES_PER_SAMPLE, high * _BYTES_PER_SAMPLE)
                )
            index += 1
        return from_pcm_s16le(b"".join(pieces))


# ---- from the server's settings ---------------------------------------------------------------------


def open_audio_store(url: str | None, default_directory: Path, min_free_mb: float = 0.0) -> AudioStore:
    """The store of `audio_url`: None: files in `default_directory`; file:///path: files in that
    (absolute) directory, refusing new recordings under `min_free_mb` free; s3://bucket/prefix
    (prefix may be empty): segments in that bucket. Raises ValueError, with a message that never
    repeats the URL, for anything else."""
    if url is None:
        return LocalAudioStore(default_directory, min_free_mb)
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise ValueError("audio_url takes no query or fragment")
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError("audio_url file:// names no host: file:///absolute/path (three slashes)")
        directory = Path(unquote(parts.path))
        if not directory.is_absolute() or directory == Path("/"):
            raise ValueError("audio_url file:/// needs an absolute directory, as file:///srv/audio")
        return LocalAudioStore(directory, min_free_mb)
    if parts.scheme == "s3":
        if "@" in parts.netloc or ":" in parts.netloc:
            raise ValueError(
                "audio_url s3://bucket/prefix holds no credentials or port: give them as AWS_* "
                "variables (AWS_ENDPOINT_URL for MinIO and other S3-compatible stores)"
            )
        if not _BUCKET_NAME.match(parts.netloc):
            raise ValueError(
                "audio_url s3://bucket/prefix needs a bucket name of 3 to 63 lowercase letters, "
                "digits, dots and hyphens"
            )
        prefix = unquote(parts.path).strip("/")
        if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
            raise ValueError("audio_url s3://bucket/prefix has an empty, '.' or '..' part in its prefix")
        return S3AudioStore(parts.netloc, prefix)
    raise ValueError("audio_url must start with file:/// or s3://")
