"""What every request must satisfy before a handler reads it."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from ..errors import UnsupportedContentEncoding, UnsupportedMediaType


@web.middleware
async def identity_bodies_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a body sent with a Content-Encoding (gzip, deflate, br): aiohttp would inflate it
    past every size limit (429 KB of gzip became a 441 MB upload spool)."""
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        raise UnsupportedContentEncoding(
            f"request bodies with Content-Encoding {encoding!r} are not accepted: send the body as it is"
        )
    return await handler(request)


async def json_body(request: web.Request) -> bytes:
    """The body of a JSON endpoint: empty, or labelled application/json. A page on another site
    can post a text/plain form without asking the server first, never application/json."""
    body = await request.read()
    if body and request.content_type != "application/json":
        raise UnsupportedMediaType(
            f"this endpoint takes a JSON body with Content-Type: application/json, not {request.content_type!r}"
        )
    return body
