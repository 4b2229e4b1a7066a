"""Every StreamscribeError a handler raises becomes the JSON error body with its HTTP status."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from ..errors import StreamscribeError
from ..wire import ErrorBody, ErrorDetail
from .responses import struct_response

log = logging.getLogger(__name__)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """{"error": {"code", "message", "type"}} (`type` as OpenAI's API has it, so its SDKs raise
    the matching exception)."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except StreamscribeError as exc:
        level = logging.ERROR if exc.http_status >= 500 else logging.INFO
        fields = {
            "event": "refused",
            "method": request.method,
            "path": request.path,
            "status": exc.http_status,
            "code": exc.code,
        }
        log.log(level, "request refused", extra={"fields": fields})
        kind = "invalid_request_error" if exc.http_status < 500 else "server_error"
        body = ErrorBody(error=ErrorDetail(code=exc.code, message=exc.message, type=kind))
        response = struct_response(body, exc.http_status)
        if exc.retry_after_s is not None:
            response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
