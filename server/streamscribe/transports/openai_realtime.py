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
import functools
import logging
import time

from aiohttp import WSMsgType, web

from ..audio import PcmConverter
from ..errors import IdleTimeout, ProtocolViolation, StreamscribeError, close_code_for
from ..live.driver import SessionDriver
from ..live.outbox import Outbox
from ..live.resume import Attachment
from ..live.sessions import SessionOptions, Slot, Transport
from ..store.base import ApiKey
from .auth import caller
from .live_socket import HEARTBEAT_S, close_for, live_socket, read_frames, serve_session
from .realtime_events import ServerEvent, ServerVadSettings, encode_event
from .realtime_protocol import INPUT_SAMPLE_RATE, RealtimeProtocol, error_event
from .state import SERVER_STATE, ServerState

log = logging.getLogger(__name__)

_TRANSPORT: Transport = "openai-realtime"
"""As `streamscribe bench --transport` names it: the sessions' `transport` in metrics and logs."""


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
        try:
            options = SessionOptions(
                language=host.live_language(None),
                stream=self._state.settings.stream,
                input_sample_rate=INPUT_SAMPLE_RATE,
            )
            slot, driver = await host.open_new(_TRANSPORT, caller, options)
        except StreamscribeError as exc:
            await self.refuse(exc)
            return
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
            slot.session_id, host.scheduler.engine.name, vad, driver, host.live_language
        )
        await self._flush(protocol)
        outbox = Outbox(self._state.settings.outbox_max_messages)
        slot.attachment = Attachment(outbox, functools.partial(close_for, self._ws))
        await serve_session(host, slot, self._read(driver, protocol), self._translate(outbox, protocol))
        if not self._ws.closed:
            await self._ws.close(code=close_code_for(driver.session.error_code))

    async def refuse(self, error: StreamscribeError) -> None:
        """Answer with one `error` event and close; no session is opened."""
        log.info(
            "realtime session refused",
            extra={"fields": {"event": "refused", "transport": _TRANSPORT, "code": error.code}},
        )
        self._state.count_refusal(error)
        await self._send(error_event(error))
        await close_for(self._ws, error)

    async def _read(self, driver: SessionDriver, protocol: RealtimeProtocol) -> None:
        """Feed the client's events until bad input or a disconnect; `_serve` cancels it once the
        session closed."""
        if await read_frames(driver, self._events(driver, protocol)):
            driver.disconnect()  # the client went away: what was heard is kept and stored

    async def _events(self, driver: SessionDriver, protocol: RealtimeProtocol) -> None:
        """Take the client's events until the connection ends; raises on bad input. A quiet
        client is not cut off (unlike on /v1/stream, stream_idle_timeout_s does not apply): a
        push-to-talk client may send nothing for minutes between turns, and OpenAI's sessions
        wait for it. The heartbeat closes a client that vanished; one that stays connected but
        sends nothing for max_session_s (as long as a session may take audio) is taken as
        abandoned and ended with `idle_timeout`."""
        converter = PcmConverter("pcm_s16le", INPUT_SAMPLE_RATE, 1)
        settings = self._state.settings
        abandoned_after_s = settings.stream.max_session_s
        check_s = max(1.0, min(HEARTBEAT_S, settings.stall_after_s / 2))
        quiet_since = time.monotonic()
        while True:
            quiet_s = time.monotonic() - quiet_since
            if quiet_s >= abandoned_after_s:
                raise IdleTimeout(
                    f"nothing was sent for {abandoned_after_s:g} s; the session was taken as abandoned"
                )
            try:
                message = await self._ws.receive(timeout=min(check_s, abandoned_after_s - quiet_s))
            except TimeoutError:
                driver.keep_waiting()  # quiet, not stalled: the heartbeat vouches for the client
                continue
            quiet_since = time.monotonic()
            if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return
            audio = protocol.receive_client_event(message.data)
            await self._flush(protocol)
            if audio:
                await driver.feed_audio(converter.convert(audio))

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


async def realtime_handler(request: web.Request) -> web.WebSocketResponse:
    state = request.app[SERVER_STATE]
    ws = live_socket()
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
