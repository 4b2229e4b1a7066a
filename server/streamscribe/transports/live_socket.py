"""What the live WebSocket transports (/v1/stream, Deepgram's /v1/listen, OpenAI's /v1/realtime)
share: the socket's limits, reading frames into a session, serving it, and closing with an error.

A transport makes its socket with `live_socket`, opens its session, sets the slot's attachment,
then runs it with `serve_session`: its own frame loop runs under `read_frames`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Coroutine
from typing import Any

from aiohttp import WSMessage, web

from ..errors import IdleTimeout, StreamscribeError
from ..live.driver import SessionDriver
from ..live.sessions import SessionHost, Slot
from ..wire import MAX_FRAME_BYTES

log = logging.getLogger(__name__)

_MAX_MESSAGE_BYTES = 2 * MAX_FRAME_BYTES
"""aiohttp drops the connection (1009) past this; audio past MAX_FRAME_BYTES in a frame (or an
OpenAI append, base64 makes it a third longer) gets an error before that."""
HEARTBEAT_S = 60.0
"""A ping after this long without a frame; no pong within half of it closes the connection (a
client that vanished while it waits for its transcript). Its pong can queue behind audio that
max_stream_speed has yet to take: 30 s covers the few MB a socket buffers. No per-message
compression is offered: 1 MiB of silence deflates to 1 KB, so a client could queue hours of
audio in a socket's buffers."""


def live_socket() -> web.WebSocketResponse:
    """A live stream's WebSocket, with the limits above; prepare it."""
    return web.WebSocketResponse(max_msg_size=_MAX_MESSAGE_BYTES, heartbeat=HEARTBEAT_S, compress=False)


async def receive(
    ws: web.WebSocketResponse, driver: SessionDriver, idle_timeout_s: float, silence: str
) -> WSMessage:
    """The client's next message. Until its stream has ended, one silent for `idle_timeout_s`
    raises IdleTimeout (`silence` says what did not come); then it may wait for its last events."""
    try:
        return await ws.receive(timeout=None if driver.session.ended else idle_timeout_s)
    except TimeoutError:
        raise IdleTimeout(f"{silence} for {idle_timeout_s:g} s; the stream is ended") from None


async def read_frames(driver: SessionDriver, frames: Awaitable[None]) -> bool:
    """Run a transport's frame loop: bad input (a StreamscribeError) or a failure of ours ends the
    session with its error. True: the connection ended instead (closed, or broken); the caller
    then disconnects the session (or leaves it waiting for a comeback)."""
    try:
        await frames
    except StreamscribeError as exc:
        driver.fail(exc)
        return False
    except ConnectionError:
        pass  # the connection broke (a reset while answering a ping, say): as if it closed
    except Exception as exc:  # a bug or a failing disk must not leave the session open
        log.exception("reading stream %s failed", driver.session.session_id)
        driver.fail(StreamscribeError.reading_failed(exc))
        return False
    return True


async def serve_session(
    host: SessionHost, slot: Slot, reading: Coroutine[Any, Any, None], writing: Coroutine[Any, Any, None]
) -> None:
    """Run the opened session of `slot` (its attachment set) with its frame loop (`reading`) and
    the writer of its attachment's outbox (`writing`) until it is closed; returns once nothing
    more is read and every event is written. The caller closes the socket with its close code."""
    writer = asyncio.create_task(writing)
    reader = asyncio.create_task(reading)
    await host.run(slot)  # ends once the session is closed
    reader.cancel()  # nothing more is read from a closed session (nor during server shutdown)
    await asyncio.gather(reader, return_exceptions=True)
    await writer


async def close_for(ws: web.WebSocketResponse, error: StreamscribeError) -> None:
    """Close with `error`'s close code and reason (a refusal, a slow consumer)."""
    await ws.close(code=error.close_code, message=error.close_reason)
