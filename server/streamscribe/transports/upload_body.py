"""Receiving an uploaded file: a multipart form (field `file`) or the raw request body (whatever
Content-Type it is labelled with), written to a spool file as it arrives, never held in memory,
never past the size limit, and never slower than the server allows (a body trickled in holds an
upload slot)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeVar

from aiohttp import BodyPartReader, ClientPayloadError, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.multipart import parse_content_disposition

from ..errors import (
    EmptyUpload,
    IdleTimeout,
    InvalidRequest,
    StreamscribeError,
    UploadInterrupted,
    UploadTooLarge,
)

_CHUNK_BYTES = 1 << 16
_MAX_FIELD_BYTES = 64 * 1024
_MAX_FIELDS = 64
_FORM_ALLOWANCE_BYTES = _MAX_FIELDS * _MAX_FIELD_BYTES + _CHUNK_BYTES
"""What a body may hold besides the file: fields, part headers and boundaries."""
_CHECK_EVERY_S = 0.5
_URLENCODED = "application/x-www-form-urlencoded"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BodyLimits:
    max_file_bytes: int
    idle_timeout_s: float
    """No byte for this long ends the upload; so does an average under `min_bytes_per_s` once
    this long has passed."""
    min_bytes_per_s: float

    @property
    def max_body_bytes(self) -> int:
        return self.max_file_bytes + _FORM_ALLOWANCE_BYTES

    def problem(self, total_bytes: int, elapsed_s: float, quiet_s: float) -> StreamscribeError | None:
        """Why a body that has brought `total_bytes` in `elapsed_s`, the last of them `quiet_s`
        ago, must be cut off; None while it may go on."""
        if total_bytes > self.max_body_bytes:
            return UploadTooLarge(_too_large(self.max_file_bytes))
        if quiet_s >= self.idle_timeout_s:
            return IdleTimeout(f"no byte of the upload came for {self.idle_timeout_s:g} s")
        if elapsed_s >= self.idle_timeout_s and total_bytes < self.min_bytes_per_s * elapsed_s:
            return IdleTimeout(
                f"the upload is arriving at {total_bytes / elapsed_s / 1024:.1f} KiB/s, under the "
                f"{self.min_bytes_per_s / 1024:g} KiB/s this server takes"
            )
        return None


@dataclass(slots=True)
class Upload:
    path: Path
    filename: str
    size_bytes: int
    fields: dict[str, list[str]] = field(default_factory=dict)
    """Form fields and query parameters, each with all its values (`timestamp_granularities[]`)."""
    labelled_form: bool = False
    """The raw body came labelled as a url-encoded form, as `curl --data-binary @file` labels it:
    it is taken as the file all the same, and recognised by its content."""


def query_fields(request: web.Request) -> dict[str, list[str]]:
    """The query parameters as option fields: every value of each name, in order."""
    fields: dict[str, list[str]] = {}
    for name, value in request.query.items():
        fields.setdefault(name, []).append(value)
    return fields


async def receive_upload(
    request: web.Request, spool: Path, limits: BodyLimits, on_first_bytes: Callable[[], None]
) -> Upload:
    """The uploaded file in `spool` plus its options; `on_first_bytes` is called as the file's
    first bytes arrive (admission: it may raise). Raises UploadTooLarge, EmptyUpload,
    UploadInterrupted, IdleTimeout or InvalidRequest, and then leaves no spool file behind."""
    if request.content_length is not None and request.content_length > limits.max_body_bytes:
        raise UploadTooLarge(_too_large(limits.max_file_bytes))
    fields = query_fields(request)
    spool.parent.mkdir(parents=True, exist_ok=True)
    writer = _SpoolWriter(spool, limits.max_file_bytes, on_first_bytes)
    try:
        async with _paced(request, limits):
            if request.content_type.startswith("multipart/"):
                filename, size = await _receive_form(request, writer, fields)
            else:
                filename = _raw_filename(request)
                size = await writer.write(_raw_chunks(request))
    except BaseException:
        discard(spool)
        raise
    if size == 0:
        discard(spool)
        raise EmptyUpload("the uploaded file is empty")
    return Upload(spool, filename, size, fields, labelled_form=request.content_type == _URLENCODED)


@contextlib.asynccontextmanager
async def _paced(request: web.Request, limits: BodyLimits) -> AsyncIterator[None]:
    """Cut off the body read inside once `limits` say so (checked every half second, whatever
    aiohttp is doing: a preamble without end is cut off too)."""
    loop = asyncio.get_running_loop()
    started = last_progress = loop.time()
    last_total = request.content.total_bytes
    problem: StreamscribeError | None = None
    check: asyncio.TimerHandle | None = None
    try:
        async with asyncio.timeout(None) as deadline:

            def watch() -> None:
                nonlocal last_total, last_progress, problem, check
                now, total = loop.time(), request.content.total_bytes
                if total != last_total:
                    last_total, last_progress = total, now
                problem = limits.problem(total, now - started, now - last_progress)
                if problem is None:
                    check = loop.call_later(_CHECK_EVERY_S, watch)
                else:
                    deadline.reschedule(now)

            check = loop.call_later(_CHECK_EVERY_S, watch)
            yield
    except TimeoutError:
        if problem is not None:
            raise problem from None
        raise
    finally:
        if check is not None:
            check.cancel()


async def _receive_form(
    request: web.Request, writer: _SpoolWriter, fields: dict[str, list[str]]
) -> tuple[str, int]:
    size: int | None = None
    filename = "upload"
    parts = 0
    reader = await _reading(request.multipart())
    while (part := await _reading(reader.next())) is not None:
        if not isinstance(part, BodyPartReader) or part.name is None:
            raise InvalidRequest("nested multipart bodies and unnamed parts are not accepted")
        parts += 1
        if parts > _MAX_FIELDS:
            raise InvalidRequest(f"the form has more than {_MAX_FIELDS} fields")
        if part.name == "file":
            if size is not None:
                raise InvalidRequest("send one file per request")
            filename = Path(part.filename or "upload").name
            size = await writer.write(_part_chunks(part))
        else:
            value = await _reading(part.read_chunk(_MAX_FIELD_BYTES + 1))
            if len(value) > _MAX_FIELD_BYTES:
                raise InvalidRequest(f"form field {part.name!r} is longer than {_MAX_FIELD_BYTES} bytes")
            fields.setdefault(part.name, []).append(value.decode("utf-8", errors="replace"))
    if size is None:
        raise InvalidRequest("the form has no `file` field")
    return filename, size


@dataclass(frozen=True, slots=True)
class _SpoolWriter:
    spool: Path
    max_bytes: int
    on_first_bytes: Callable[[], None]

    async def write(self, chunks: AsyncIterator[bytes]) -> int:
        """Write every chunk to the spool file; returns the size."""
        size = 0
        handle: IO[bytes] | None = None
        try:
            async for chunk in chunks:
                if handle is None:
                    self.on_first_bytes()
                    handle = await asyncio.to_thread(self.spool.open, "wb")
                size += len(chunk)
                if size > self.max_bytes:
                    raise UploadTooLarge(_too_large(self.max_bytes))
                await asyncio.to_thread(handle.write, chunk)
        finally:
            if handle is not None:
                await asyncio.to_thread(handle.close)
        return size


async def _raw_chunks(request: web.Request) -> AsyncIterator[bytes]:
    while chunk := await _reading(request.content.read(_CHUNK_BYTES)):
        yield chunk


async def _part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await _reading(part.read_chunk(_CHUNK_BYTES)):
        yield chunk


async def _reading(read: Awaitable[T]) -> T:
    """Await one read of the request body; a client gone mid-upload becomes UploadInterrupted,
    a form aiohttp cannot parse (no boundary, a missing one) InvalidRequest."""
    try:
        return await read
    except (ConnectionError, asyncio.IncompleteReadError, ClientPayloadError, HttpProcessingError) as exc:
        raise UploadInterrupted(
            f"the upload was cut off before it was complete ({type(exc).__name__})"
        ) from exc
    except ValueError as exc:
        raise InvalidRequest(f"the multipart form is malformed: {exc}") from exc


def _raw_filename(request: web.Request) -> str:
    """The name a raw body gives itself in Content-Disposition (`attachment; filename="talk.mp3"`)."""
    _kind, params = parse_content_disposition(request.headers.get("Content-Disposition"))
    return Path(params.get("filename") or "upload").name


def discard(spool: Path) -> None:
    """Remove a spool file (a quick unlink; fine on the loop, and safe while being cancelled)."""
    spool.unlink(missing_ok=True)


def _too_large(max_bytes: int) -> str:
    return f"the upload is larger than the {max_bytes / 2**20:.0f} MiB limit"
