"""GET /v1/realtime?intent=transcription: OpenAI's Realtime API transcription sessions, over
aiohttp. The official SDKs work unchanged against `base_url=http://host:port/v1`:
`client.realtime.connect(model=..., extra_query={"intent": "transcription"})`.

The session opens when the socket connects (as OpenAI's do) and takes the same path as a
/v1/stream session; realtime_protocol.py translates between the two. A conversation session
(no `intent=transcription`) is refused with an `error` event, then the socket is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import WSMsgType, web

from ..audio import PcmConverter
from ..errors import (
    IdleTimeout,
    ProtocolViolation,
    SlowConsumer,
    StreamscribeError,
    close_code_for,
)
from ..live.driver import SessionDriver
from ..live.outbox import Outbox
from ..live.sessions import SessionHost, SessionOptions, Slot
from ..store.base import ApiKey
from ..wire import MAX_FRAME_BYTES
from .auth import caller
from .realtime_events import ServerEvent, ServerVadSettings, encode_event
from .realtime_protocol import INPUT_SAMPLE_RATE, RealtimeProtocol, error_event
from .state import SERVER_STATE, ServerState

log = logging.getLogger(__name__)

_MAX_EVENT_BYTES = 2 * MAX_FRAME_BYTES
"""aiohttp drops the connection (1009) past this; an append whose audio is larger than
MAX_APPEND_BYTES (base64 makes it a third longer) gets an `error` before that."""
_HEARTBEAT_S = 60.0
"""As on /v1/stream: a ping after this long without a frame; a client that vanished is closed."""


class _LiveControl:
    """What the protocol asks of the session: the driver, and the host's language check."""

    def __init__(self, driver: SessionDriver, host: SessionHost) -> None:
        self._driver = driver
        self._host = host

    @property
    def speech_start_s(self) -> float | None:
        return self._driver.session.speech_start_s

    def cut(self) -> float | None:
        return self._driver.cut()

    def update_decoding(self, language: str | None, prompt: str | None) -> None:
        self._driver.update_decoding(language, prompt)

    def check_language(self, requested: str | None) -> str | None:
        return self._host.live_language(requested)


class RealtimeConnection:
    """One client's WebSocket: its events into the session, the session's events back as
    OpenAI's."""

    def __init__(self, ws: web.WebSocketResponse, state: ServerState) -> None:
        self._ws = ws
        self._state = state
        self._sending = asyncio.Lock()
        self._connected = True

    async def run(self, caller: ApiKey | None, intent: str | None) -> None:
        """Admit and open the session at once (OpenAI sends session.created on connect), then serve
        it until it is closed."""
        if intent != "transcription":
            await self.refuse(
                ProtocolViolation(
                    "this server only transcribes: connect to /v1/realtime?intent=transcription "
                    "(conversation sessions are not offered)"
                )
            )
            return
        host = self._state.sessions
        slot: Slot | None = None
        try:
            options = SessionOptions(
                language=host.live_language(None),
                stream=self._state.settings.stream,
                input_sample_rate=INPUT_SAMPLE_RATE,
            )
            slot = host.admit("realtime", caller)
            driver = await host.open(slot, options)
        except StreamscribeError as exc:
            await self.refuse(exc)
            return
        finally:
            if slot is not None and slot.driver is None:
                host.release(slot)
        await self._serve(slot, driver)

    async def _serve(self, slot: Slot, driver: SessionDriver) -> None:
        host = self._state.sessions
        stream = self._state.settings.stream
        vad = ServerVadSettings(
            threshold=stream.vad_threshold,
            prefix_padding_ms=stream.speech_pad_ms,
            silence_duration_ms=stream.min_silence_ms,
        )
        protocol = RealtimeProtocol(
            slot.session_id, host.scheduler.engine.name, vad, _LiveControl(driver, host)
        )
        await self._flush(protocol)
        outbox = Outbox(self._state.settings.outbox_max_messages)
        writer = asyncio.create_task(self._translate(outbox, protocol))
        reader = asyncio.create_task(self._read(driver, protocol))
        await host.run(slot, outbox, self._close_slow_consumer)  # ends once the session is closed
        reader.cancel()  # nothing more is read from a closed session (nor during server shutdown)
        await asyncio.gather(reader, return_exceptions=True)
        await writer
        if not self._ws.closed:
            await self._ws.close(code=close_code_for(driver.session.error_code))

    async def refuse(self, error: StreamscribeError) -> None:
        """Answer with one `error` event and close; no session is opened."""
        log.info(
            "realtime session refused",
            extra={"fields": {"event": "refused", "transport": "realtime", "code": error.code}},
        )
        self._state.metrics.refusals.labels(code=error.code).inc()
        await self._send(error_event(error))
        await self._ws.close(code=error.close_code, message=error.close_reason)

    async def _read(self, driver: SessionDriver, protocol: RealtimeProtocol) -> None:
        """Feed the client's events until a disconnect or a silent client; `_serve` cancels it
        once the session closed."""
        converter = PcmConverter("pcm_s16le", INPUT_SAMPLE_RATE, 1)
        wait_s = self._state.settings.stream_idle_timeout_s
        try:
            while True:
                try:
                    message = await self._ws.receive(timeout=wait_s)
                except TimeoutError:
                    raise IdleTimeout(f"nothing was sent for {wait_s:g} s; the session is ended") from None
                if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
                audio = protocol.receive_client_event(message.data)
                await self._flush(protocol)
                if audio:
                    await driver.feed_audio(converter.convert(audio))
        except StreamscribeError as exc:
            driver.fail(exc)
            return
        except ConnectionError:
            pass  # the connection broke: as if it closed
        except Exception as exc:  # a bug must not leave the session open
            log.exception("reading realtime session %s failed", driver.session.session_id)
            driver.fail(StreamscribeError.reading_failed(exc))
            return
        driver.disconnect()  # the client went away: what was heard is kept and stored

    async def _translate(self, outbox: Outbox, protocol: RealtimeProtocol) -> None:
        while (event := await outbox.get()) is not None:
            protocol.receive_session_event(event)
            await self._flush(protocol)

    async def _flush(self, protocol: RealtimeProtocol) -> None:
        """Send what the protocol has to send; the reader and the translator both flush, one at a
        time, so the events go out in the order the protocol made them."""
        async with self._sending:
            for event in protocol.events_to_send():
                await self._send(event)

    async def _send(self, event: ServerEvent) -> None:
        """A broken connection drops the event; the session ends as the reader finds it closed."""
        if not self._connected:
            return
        try:
            await self._ws.send_str(encode_event(event))
        except ConnectionError:
            self._connected = False

    async def _close_slow_consumer(self, error: SlowConsumer) -> None:
        await self._ws.close(code=error.close_code, message=error.close_reason)


async def realtime_handler(request: web.Request) -> web.WebSocketResponse:
    state = request.app[SERVER_STATE]
    ws = web.WebSocketResponse(max_msg_size=_MAX_EVENT_BYTES, heartbeat=_HEARTBEAT_S, compress=False)
    await ws.prepare(request)
    connection = RealtimeConnection(ws, state)
    try:
        await connection.run(caller(request), request.query.get("intent"))
    except Exception:
        log.exception("realtime handler failed")
        if not ws.closed:
            with contextlib.suppress(ConnectionError):
                await connection.refuse(StreamscribeError("internal error; the session was ended"))
    return ws


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/realtime", realtime_handler)
