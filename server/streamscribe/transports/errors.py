"""Every StreamscribeError a handler raises, and every failure of the disk or the store under it
(storage_full, storage_unavailable), becomes the JSON error body with its HTTP status, and is
counted by its code in the server's metrics."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from ..errors import InvalidRequest, MethodNotAllowed, NotFound, RequestTooLarge, StreamscribeError
from ..store.failures import STORAGE_FAILURES, is_storage_failure, storage_error
from ..wire import ErrorBody, ErrorDetail
from .responses import struct_response
from .state import SERVER_STATE

log = logging.getLogger(__name__)


_HTTP_ERRORS: dict[int, type[StreamscribeError]] = {
    404: NotFound,
    405: MethodNotAllowed,
    413: RequestTooLarge,
}
"""aiohttp's own refusals (no route, wrong method, a body past client_max_size) by status."""


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """{"error": {"code", "message", "type"}} (`type` as OpenAI's API has it, so its SDKs raise
    the matching exception)."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except StreamscribeError as exc:
        return _answer(request, exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        refusal = _HTTP_ERRORS.get(exc.status, InvalidRequest)(exc.reason)
        answer = _answer(request, refusal, exc.status)
        if "Allow" in exc.headers:
            answer.headers["Allow"] = exc.headers["Allow"]
        return answer
    except STORAGE_FAILURES as exc:
        if not is_storage_failure(exc):
            raise
        return _answer(request, storage_error(exc, "the request"))


def _answer(request: web.Request, exc: StreamscribeError, status: int | None = None) -> web.Response:
    status = status or exc.http_status
    level = logging.ERROR if status >= 500 else logging.INFO
    fields = {
        "event": "refused",
        "method": request.method,
        "path": request.path,
        "status": status,
        "code": exc.code,
    }
    log.log(level, "request refused", extra={"fields": fields})
    request.app[SERVER_STATE].count_refusal(exc)
    kind = "invalid_request_error" if status < 500 else "server_error"
    response = struct_response(
        ErrorBody(error=ErrorDetail(code=exc.code, message=exc.message, type=kind)), status
    )
    if exc.retry_after_s is not None:
        response.headers["Retry-After"] = str(exc.retry_after_s)
    return response
