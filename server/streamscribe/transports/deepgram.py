"""/v1/listen, compatible with Deepgram's API: its SDKs work unchanged against this server when
their environment points at it (base http://host:port, production ws://host:port).

GET (a WebSocket) streams (deepgram_live.py); POST transcribes a file (deepgram_prerecorded.py).
Both answer a refused request as Deepgram does: the HTTP status with {"err_code", "err_msg",
"request_id"} and a dg-request-id header, which `listen_errors` makes of our errors (put it
right inside json_errors, so that it also shapes the refusals of the checks after it).
"""

from __future__ import annotations

import logging
import uuid

from aiohttp import web
from aiohttp.typedefs import Handler

from ..errors import InvalidRequest, StreamscribeError
from ..store.failures import STORAGE_FAILURES, is_storage_failure, storage_error
from ..wire import encode
from .deepgram_live import listen_socket
from .deepgram_prerecorded import transcribe_file
from .deepgram_shape import http_refusal
from .state import SERVER_STATE

log = logging.getLogger(__name__)

LISTEN_PATH = "/v1/listen"


@web.middleware
async def listen_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Deepgram's error body for every refusal of /v1/listen; other paths pass through."""
    if request.path != LISTEN_PATH:
        return await handler(request)
    try:
        return await handler(request)
    except StreamscribeError as exc:
        return _refusal(request, exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _refusal(request, InvalidRequest(exc.reason), exc.status)
    except STORAGE_FAILURES as exc:
        if not is_storage_failure(exc):
            raise
        return _refusal(request, storage_error(exc, "the request"))


def _refusal(request: web.Request, error: StreamscribeError, status: int | None = None) -> web.Response:
    request_id = uuid.uuid4().hex
    deepgram_status, body = http_refusal(error, request_id)
    status = status or deepgram_status
    fields = {
        "event": "refused",
        "method": request.method,
        "path": request.path,
        "status": status,
        "code": error.code,
    }
    log.log(logging.ERROR if status >= 500 else logging.INFO, "request refused", extra={"fields": fields})
    request.app[SERVER_STATE].count_refusal(error)
    reason = " ".join(error.message.split()).encode("ascii", "replace").decode()[:200]
    headers = {"dg-request-id": request_id, "dg-error": reason}
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(error.retry_after_s)
    return web.Response(
        body=encode(body), status=status, content_type="application/json", charset="utf-8", headers=headers
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get(LISTEN_PATH, listen_socket, allow_head=False)
    app.router.add_post(LISTEN_PATH, transcribe_file)
