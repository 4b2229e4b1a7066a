"""GET /v1/sessions/{id}/events: follow a session (live stream or file replay) from any seq.

A WebSocket upgrade gets each event as a text frame; any other request gets Server-Sent Events
(`id:` is the seq, `event:` the type, `data:` the same JSON). Resume with `?after=SEQ` or, for
SSE, the Last-Event-ID header that EventSource sends when it reconnects. Both end after `closed`.
"""

from __future__ import annotations

import asyncio
import contextlib

import msgspec
from aiohttp import WSMsgType, web

from ..errors import EventsExpired, InvalidRequest, SessionNotFound
from ..store.base import EventFeed, LoggedEvent, can_see
from .auth import caller
from .state import SERVER_STATE

_KEEPALIVE_S = 15.0


async def _feed_and_position(request: web.Request) -> tuple[EventFeed, int]:
    session_id = request.match_info["session_id"]
    event_log = await request.app[SERVER_STATE].sessions.event_bus.find(session_id)
    if event_log is None or not can_see(caller(request), event_log.owner):
        raise SessionNotFound(
            f"no running or recently finished session {session_id}; its transcript, if kept, is at "
            f"/v1/transcripts/{session_id}"
        )
    raw = request.headers.get("Last-Event-ID") or request.query.get("after", "0")
    try:
        after_seq = int(raw)
    except ValueError as exc:
        raise InvalidRequest(f"after / Last-Event-ID must be a seq number, not {raw!r}") from exc
    await event_log.check_available(after_seq)
    return event_log, after_seq


async def session_events(request: web.Request) -> web.StreamResponse:
    event_log, after_seq = await _feed_and_position(request)
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await _websocket(request, event_log, after_seq)
    return await _server_sent_events(request, event_log, after_seq)


async def _websocket(request: web.Request, event_log: EventFeed, after_seq: int) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=30.0)
    await ws.prepare(request)
    reader = asyncio.create_task(_until_closed_by_client(ws))
    try:
        async for logged in event_log.follow(after_seq):
            if reader.done():
                break
            await ws.send_str(logged.json.decode())
    except EventsExpired as exc:
        await ws.close(code=exc.close_code, message=exc.close_reason)
    except ConnectionError:
        pass
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    await ws.close()
    return ws


async def _until_closed_by_client(ws: web.WebSocketResponse) -> None:
    async for message in ws:
        if message.type == WSMsgType.CLOSE:
            return


async def _server_sent_events(
    request: web.Request, event_log: EventFeed, after_seq: int
) -> web.StreamResponse:
    if event_log.closed and not await event_log.has_after(after_seq):
        return web.Response(status=204)  # all seen: 204 also tells EventSource not to reconnect
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    events = aiter(event_log.follow(after_seq))
    upcoming = asyncio.ensure_future(anext(events, None))
    try:
        while True:
            done, _ = await asyncio.wait({upcoming}, timeout=_KEEPALIVE_S)
            if not done:
                await response.write(b": keep-alive\n\n")
                continue
            if (logged := upcoming.result()) is None:
                break
            await response.write(_sse(logged))
            upcoming = asyncio.ensure_future(anext(events, None))
    except EventsExpired as exc:
        # not the wire's `error` event (which belongs to the session): this follower fell behind
        body = msgspec.json.encode({"code": exc.code, "message": exc.message})
        await response.write(b"event: %s\ndata: %s\n\n" % (exc.code.encode(), body))
    except ConnectionError:
        return response
    finally:
        upcoming.cancel()
    with contextlib.suppress(ConnectionError):
        await response.write_eof()
    return response


def _sse(logged: LoggedEvent) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (logged.seq, logged.type.encode(), logged.json)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/sessions/{session_id}/events", session_events)
