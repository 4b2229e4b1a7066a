"""What every request must satisfy before a handler reads it."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.typedefs import Handler

from ..errors import IdleTimeout, UnsupportedContentEncoding, UnsupportedMediaType
from .state import SERVER_STATE


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
    return await small_body(request)


async def small_body(request: web.Request) -> bytes:
    """A body of at most aiohttp's client_max_size (1 MiB), which must arrive within
    idle_timeout_s: a body that never comes would hold its connection for good."""
    wait_s = request.app[SERVER_STATE].settings.idle_timeout_s
    try:
        async with asyncio.timeout(wait_s):
            return await request.read()
    except TimeoutError:
        raise IdleTimeout(f"the request body did not arrive within {wait_s:g} s") from None
