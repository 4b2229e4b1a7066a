"""GET /v1/stream: the live WebSocket protocol of wire.py, over aiohttp; and its comeback,
/v1/stream?resume=TOKEN&after=SEQ, after a dropped connection (live/resume.py)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging

import msgspec
from aiohttp import WSCloseCode, WSMsgType, web

from ..audio import SAMPLE_RATE, PcmConverter
from ..errors import (
    FrameTooLarge,
    IdleTimeout,
    InvalidRequest,
    ProtocolViolation,
    ShuttingDown,
    StreamscribeError,
    UnknownModel,
    close_code_for,
)
from ..live.driver import SessionDriver
from ..live.outbox import Outbox
from ..live.resume import Attachment, ResumableSlot
from ..live.sessions import SessionOptions
from ..store.base import ApiKey
from ..wire import (
    MAX_FRAME_BYTES,
    Error,
    Finalize,
    Ready,
    Resumed,
    ServerMessage,
    Start,
    Stop,
    encode,
)
from .auth import caller
from .client_messages import parse_client_message
from .live_socket import close_for, live_socket, read_frames, receive
from .state import SERVER_STATE, ServerState

log = logging.getLogger(__name__)
_GOODBYES = (WSCloseCode.OK, WSCloseCode.GOING_AWAY)
"""Close codes of a client that left for good: its stream ends at once, with no resume window."""


class StreamConnection:
    """One client's WebSocket: reads frames into a session, writes its events back. `run` opens
    a new stream, `resume` takes over one whose connection dropped."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, state: ServerState) -> None:
        self._ws = ws
        self._request = request
        self._state = state
        self._resume_token: str | None = None
        self._reader: asyncio.Task[None] | None = None
        self._superseded = False
        self._said_goodbye = False
        """The client closed with a goodbye code: it is not coming back."""

    async def run(self, caller: ApiKey | None) -> None:
        """Admit the session on the client's `start` (a socket that never sends one holds no slot),
        open it, then serve it until it is closed."""
        host = self._state.sessions
        try:
            start = await self._receive_start()
            converter = PcmConverter(start.encoding, start.sample_rate, start.channels)
            options = SessionOptions(
                language=self._check_model(start),
                stream=self._state.settings.stream,
                input_sample_rate=start.sample_rate,
                prompt=start.prompt,
                audio_retention_h=start.audio_retention_h,
            )
            slot, driver = await host.open_new("websocket", caller, options)
        except StreamscribeError as exc:
            await self.refuse(exc)
            return
        self._resume_token = host.resumptions.offer(
            slot, lambda: PcmConverter(start.encoding, start.sample_rate, start.channels)
        )
        attachment = self._attachment()
        slot.attachment = attachment
        pump = asyncio.create_task(host.run(slot))  # ends once the session is closed
        await self._attend(slot, driver, attachment, converter)
        await pump  # a dropped client may come back on another connection meanwhile

    async def resume(self, caller: ApiKey | None, token: str, after_seq: int) -> None:
        """Take over the stream of `token` (its previous connection is dropped if the server still
        holds it): `resumed`, the events after `after_seq`, then the stream goes on here."""
        host = self._state.sessions
        attachment = self._attachment()
        try:
            if host.draining:
                raise ShuttingDown("the server is shutting down; its streams are being ended")
            slot = await host.resumptions.resume(token, caller, after_seq, attachment)
        except StreamscribeError as exc:
            await self.refuse(exc)
            return
        driver, resumable = slot.driver, slot.resumable
        assert driver is not None and resumable is not None, "only opened streams are resumable"
        newest_seq = resumable.recent.last_seq
        self._resume_token = token
        log.info(
            "stream resumed",
            extra={"fields": {"event": "resumed", "session_id": slot.session_id, "after": after_seq}},
        )
        received_s = driver.session.received_samples / SAMPLE_RATE
        with contextlib.suppress(ConnectionError):
            await self._ws.send_str(
                _text(Resumed(seq=newest_seq, session_id=slot.session_id, received_s=received_s))
            )
        await self._attend(slot, driver, attachment, resumable.new_converter())

    def _attachment(self) -> Attachment:
        outbox = Outbox(self._state.settings.outbox_max_messages)
        return Attachment(outbox, functools.partial(close_for, self._ws), self._supersede)

    async def _attend(
        self, slot: ResumableSlot, driver: SessionDriver, attachment: Attachment, converter: PcmConverter
    ) -> None:
        """Read the client's frames into the session and write its events, until the session
        closes (then close with its code) or this connection drops or is taken over."""
        if self._superseded:  # taken over by a later comeback while this one was answered
            return
        writer = asyncio.create_task(self._write(attachment.outbox))
        self._reader = asyncio.create_task(self._read(slot, driver, attachment, converter))
        await writer  # ends once the outbox is closed: the session closed, or the client is gone
        if not driver.session.closed:
            await self._reader  # the connection dropped (or was taken over): it reads no more
            return
        self._reader.cancel()  # nothing more is read from a closed session (nor during shutdown)
        await asyncio.gather(self._reader, return_exceptions=True)
        if not self._ws.closed:
            await self._ws.close(code=close_code_for(driver.session.error_code))

    async def _supersede(self) -> None:
        """Another connection resumed this stream: drop this one (its client is presumed gone)
        and return once it reads no more."""
        self._superseded = True
        if self._request.transport is not None:
            self._request.transport.abort()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def _receive_start(self) -> Start:
        wait_s = self._state.settings.idle_timeout_s
        try:
            message = await self._ws.receive(timeout=wait_s)
        except TimeoutError as exc:
            raise IdleTimeout(f"no start message within {wait_s:g} s") from exc
        if message.type == WSMsgType.BINARY:
            raise ProtocolViolation("audio before start: send a start message first")
        if message.type != WSMsgType.TEXT:
            raise ProtocolViolation("the connection closed before start")
        start = parse_client_message(message.data)
        if not isinstance(start, Start):
            raise ProtocolViolation(f"expected start, got {type(start).__name__.lower()}")
        return start

    def _check_model(self, start: Start) -> str | None:
        engine = self._state.sessions.scheduler.engine
        if start.model is not None and start.model != engine.name:
            raise UnknownModel(
                f"this server serves {engine.name!r}, not {start.model!r}; omit model or start a "
                f"server with --model {start.model}"
            )
        return self._state.sessions.live_language(start.language)

    async def refuse(self, error: StreamscribeError) -> None:
        """Answer with one `error` and close; no session is opened."""
        log.info(
            "stream refused",
            extra={"fields": {"event": "refused", "transport": "websocket", "code": error.code}},
        )
        self._state.count_refusal(error)
        with contextlib.suppress(ConnectionError):
            await self._ws.send_str(
                _text(Error(seq=1, code=error.code, message=error.message, retry_after_s=error.retry_after_s))
            )
        await close_for(self._ws, error)

    async def _read(
        self, slot: ResumableSlot, driver: SessionDriver, attachment: Attachment, converter: PcmConverter
    ) -> None:
        """Feed frames until bad input, a disconnect or a silent client; cancelled once the
        session closed. A connection that drops without a close frame leaves the stream waiting
        for its client to resume it (where it may); a closed one ends it."""
        if not await read_frames(driver, self._frames(driver, converter)) or self._superseded:
            return
        if self._said_goodbye or not self._state.sessions.resumptions.detach(slot, attachment):
            driver.disconnect()  # the client is gone without stop: flush and keep what it sent

    async def _frames(self, driver: SessionDriver, converter: PcmConverter) -> None:
        """Feed frames until the connection ends (or is taken over); raises on bad input."""
        wait_s = self._state.settings.stream_idle_timeout_s
        while True:  # once stopped, a client may wait in silence for its transcript
            message = await receive(self._ws, driver, wait_s, "nothing was sent")
            if self._superseded:  # frames buffered before the drop: the comeback sends them again
                return
            if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING):
                self._said_goodbye = message.data in _GOODBYES  # 1011 from a client's ping timeout: back soon
                return
            if message.type in (WSMsgType.CLOSED, WSMsgType.ERROR):
                return
            if message.type == WSMsgType.BINARY:
                if len(message.data) > MAX_FRAME_BYTES:
                    raise FrameTooLarge(
                        f"audio frame of {len(message.data)} bytes exceeds {MAX_FRAME_BYTES} bytes"
                    )
                await driver.feed_audio(converter.convert(message.data))
            elif message.type == WSMsgType.TEXT:
                match parse_client_message(message.data):
                    case Stop(wait_for_transcript=wait):
                        await driver.feed_audio(converter.flush())
                        driver.stop(wait)
                    case Finalize():
                        driver.finalize()
                    case _:
                        raise ProtocolViolation("the stream has already started")

    async def _write(self, outbox: Outbox) -> None:
        connected = True
        while (event := await outbox.get()) is not None:
            if not connected:
                continue
            if isinstance(event, Ready) and self._resume_token is not None:
                event = msgspec.structs.replace(event, resume_token=self._resume_token)
            try:
                await self._ws.send_str(_text(event))
            except ConnectionError:
                connected = False


def _text(event: ServerMessage) -> str:
    return encode(event).decode()


async def stream_handler(request: web.Request) -> web.WebSocketResponse:
    state = request.app[SERVER_STATE]
    after_seq = _after_seq(request) if "resume" in request.query else 0  # a bad one is a 400
    ws = live_socket()
    await ws.prepare(request)
    connection = StreamConnection(ws, request, state)
    try:
        if "resume" in request.query:
            await connection.resume(caller(request), request.query["resume"], after_seq)
        else:
            await connection.run(caller(request))
    except Exception:
        log.exception("stream handler failed")
        if not ws.closed:
            await connection.refuse(StreamscribeError("internal error; the stream was ended"))
    return ws


def _after_seq(request: web.Request) -> int:
    """?after= of a comeback: the last seq its client saw (0: none)."""
    after = request.query.get("after", "0")
    if not (after.isascii() and after.isdigit()):
        raise InvalidRequest(f"after must be the last seq the client saw (a whole number), not {after!r}")
    return int(after)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/stream", stream_handler)
