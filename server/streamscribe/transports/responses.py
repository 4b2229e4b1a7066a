"""REST answers: a wire Struct as a JSON response."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
from aiohttp import web

from ..wire import encode


def struct_response(
    body: msgspec.Struct, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=encode(body), status=status, content_type="application/json", charset="utf-8", headers=headers
    )
