"""Receiving an uploaded file: a multipart form (field `file`) or the raw request body (whatever
Content-Type it is labelled with), written to a spool file as it arrives, never held in memory,
and never past the size limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeVar

from aiohttp import BodyPartReader, ClientPayloadError, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.multipart import parse_content_disposition

from ..errors import EmptyUpload, InvalidRequest, UploadInterrupted, UploadTooLarge

_CHUNK_BYTES = 1 << 16
_MAX_FIELD_BYTES = 64 * 1024
_URLENCODED = "application/x-www-form-urlencoded"
T = TypeVar("T")


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


async def receive_upload(request: web.Request, spool: Path, max_bytes: int) -> Upload:
    """The uploaded file in `spool` plus its options. Raises UploadTooLarge, EmptyUpload,
    UploadInterrupted or InvalidRequest, and then leaves no spool file behind."""
    if request.content_length is not None and request.content_length > max_bytes + _MAX_FIELD_BYTES:
        raise UploadTooLarge(_too_large(max_bytes))
    fields = query_fields(request)
    spool.parent.mkdir(parents=True, exist_ok=True)
    try:
        if request.content_type.startswith("multipart/"):
            filename, size = await _receive_form(request, spool, max_bytes, fields)
        else:
            filename = _raw_filename(request)
            size = await _write(_raw_chunks(request), spool, max_bytes)
    except BaseException:
        discard(spool)
        raise
    if size == 0:
        discard(spool)
        raise EmptyUpload("the uploaded file is empty")
    return Upload(spool, filename, size, fields, labelled_form=request.content_type == _URLENCODED)


async def _receive_form(
    request: web.Request, spool: Path, max_bytes: int, fields: dict[str, list[str]]
) -> tuple[str, int]:
    size: int | None = None
    filename = "upload"
    reader = await _reading(request.multipart())
    while (part := await _reading(reader.next())) is not None:
        if not isinstance(part, BodyPartReader) or part.name is None:
            raise InvalidRequest("nested multipart bodies and unnamed parts are not accepted")
        if part.name == "file":
            if size is not None:
                raise InvalidRequest("send one file per request")
            filename = Path(part.filename or "upload").name
            size = await _write(_part_chunks(part), spool, max_bytes)
        else:
            value = await _reading(part.read_chunk(_MAX_FIELD_BYTES + 1))
            if len(value) > _MAX_FIELD_BYTES:
                raise InvalidRequest(f"form field {part.name!r} is longer than {_MAX_FIELD_BYTES} bytes")
            fields.setdefault(part.name, []).append(value.decode("utf-8", errors="replace"))
    if size is None:
        raise InvalidRequest("the form has no `file` field")
    return filename, size


async def _write(chunks: AsyncIterator[bytes], spool: Path, max_bytes: int) -> int:
    size = 0
    handle: IO[bytes] = await asyncio.to_thread(spool.open, "wb")
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise UploadTooLarge(_too_large(max_bytes))
            await asyncio.to_thread(handle.write, chunk)
    finally:
        await asyncio.to_thread(handle.close)
    return size


async def _raw_chunks(request: web.Request) -> AsyncIterator[bytes]:
    while chunk := await _reading(request.content.read(_CHUNK_BYTES)):
        yield chunk


async def _part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await _reading(part.read_chunk(_CHUNK_BYTES)):
        yield chunk


async def _reading(read: Awaitable[T]) -> T:
    """Await one read of the request body; a client gone mid-upload becomes UploadInterrupted."""
    try:
        return await read
    except (ConnectionError, asyncio.IncompleteReadError, ClientPayloadError, HttpProcessingError) as exc:
        raise UploadInterrupted(
            f"the upload was cut off before it was complete ({type(exc).__name__})"
        ) from exc


def _raw_filename(request: web.Request) -> str:
    """The name a raw body gives itself in Content-Disposition (`attachment; filename="talk.mp3"`)."""
    _kind, params = parse_content_disposition(request.headers.get("Content-Disposition"))
    return Path(params.get("filename") or "upload").name


def discard(spool: Path) -> None:
    """Remove a spool file (a quick unlink; fine on the loop, and safe while being cancelled)."""
    spool.unlink(missing_ok=True)


def _too_large(max_bytes: int) -> str:
    return f"the upload is larger than the {max_bytes / 2**20:.0f} MiB limit"
