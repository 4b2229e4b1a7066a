"""What every request must satisfy before a handler reads it."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from ..errors import UnsupportedContentEncoding, UnsupportedMediaType


@web.middleware
async def identity_bodies_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a body sent with a Content-Encoding (gzip, deflate, br): aiohttp would inflate it
    past every size limit (429 KB of gzip became a 441 MB upload spool)."""
    encodings = {
        coding.strip().lower()
        for header in request.headers.getall("Content-Encoding", [])
        for coding in header.split(",")
    }  # every header and every coding: aiohttp's parser acts on the last one, not the first
    if encodings - {"", "identity"}:
        named = ", ".join(sorted(encodings - {"", "identity"}))
        raise UnsupportedContentEncoding(
            f"request bodies with Content-Encoding {named} are not accepted: send the body as it is"
        )
    return await handler(request)


async def json_body(request: web.Request) -> bytes:
    """The body of a JSON endpoint: empty, or labelled application/json. A page on another site
    can post a text/plain form without asking the server first, never application/json."""
    if request.body_exists and request.content_type != "application/json":
        raise UnsupportedMediaType(
            f"this endpoint takes a JSON body with Content-Type: application/json, not {request.content_type!r}"
        )
    return await request.read()
