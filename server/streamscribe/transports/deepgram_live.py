"""GET /v1/listen: Deepgram's streaming API, a thin translation onto the same live session as
/v1/stream (deepgram_results.py maps the events).

The query parameters say everything about the stream, so it is checked and admitted before the
upgrade: a bad parameter is 400, no key 401, a full server 429 or 503, in Deepgram's error body.
Binary frames are audio (raw linear16 or linear32 at `sample_rate`); text frames are KeepAlive,
Finalize, CloseStream (and Configure, refused). An empty binary frame ends the stream as
CloseStream does (what Deepgram's older clients send). A stream ends with close 1000 after its
Metadata, or with an Error message and Deepgram's close code for what went wrong.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging

import msgspec
from aiohttp import WSMsgType, web

from ..audio import PcmConverter
from ..config import StreamSettings
from ..errors import FrameTooLarge, InvalidRequest, SlowConsumer, StreamscribeError, UnsupportedAudio
from ..live.driver import SessionDriver
from ..live.outbox import Outbox
from ..live.resume import Attachment
from ..live.sessions import SessionOptions, Slot
from ..stream.session import LiveSession
from ..wire import MAX_FRAME_BYTES, ServerMessage
from .auth import caller
from .deepgram_results import (
    CloseStream,
    Configure,
    ControlRefused,
    ErrorMessage,
    FinalizeAnswered,
    FinalizeStream,
    KeepAlive,
    ListenMessage,
    ResultsTranslator,
    StreamIdentity,
    encode_message,
    parse_control,
)
from .deepgram_shape import (
    ENCODINGS,
    ListenParams,
    check_live_model,
    model_info,
    model_uuid,
    parse_params,
    stream_close,
)
from .live_socket import live_socket, read_frames, receive, serve_session
from .state import SERVER_STATE, ServerState
from .upload_body import query_fields

log = logging.getLogger(__name__)

_UTTERANCE_END_MS = (500, 5000)
"""utterance_end_ms becomes the session's min_silence_ms within these bounds (shorter pauses cut
sentences apart, longer ones keep silence in the decoded window)."""
_ECHOED_MESSAGE_CHARS = 1000
"""How much of an unreadable client message an Error echoes back."""


class ListenOutbox(Outbox):
    """The session's events for one client, where the batch of events that answers the client's
    Finalize is marked (FinalizeAnswered before its first event). Call `finalize_asked` after
    `driver.finalize()`."""

    def __init__(self, max_messages: int, session: LiveSession) -> None:
        super().__init__(max_messages)
        self._session = session
        self._awaiting_answer = False

    def finalize_asked(self) -> None:
        self._awaiting_answer = self._session.finalize_pending  # nothing heard: nothing to answer

    def push(self, event: ServerMessage) -> None:
        # The session's events come as batches pushed at once: the first push after the session
        # answered starts the batch that holds the answer.
        if self._awaiting_answer and not self._session.finalize_pending:
            self._awaiting_answer = False
            super().push(FinalizeAnswered(seq=event.seq))
        super().push(event)


class ListenConnection:
    """One Deepgram client's WebSocket: reads frames into its session, writes its events back
    as Deepgram's messages."""

    def __init__(self, ws: web.WebSocketResponse, state: ServerState, params: ListenParams) -> None:
        self._ws = ws
        self._state = state
        self._params = params
        self._audio_digest = hashlib.sha256()

    async def serve(self, slot: Slot, options: SessionOptions, converter: PcmConverter) -> None:
        """Open the admitted session and serve it until it is closed; the slot is released."""
        host = self._state.sessions
        try:
            driver = await host.open(slot, options)
        except StreamscribeError as exc:
            await self._refuse(exc)
            return
        finally:
            if slot.driver is None:
                host.release(slot)
        engine_name = host.scheduler.engine.name
        identity = StreamIdentity(
            request_id=slot.session_id,
            model_uuid=model_uuid(engine_name),
            model_info=model_info(engine_name),
            channels=self._params.channels,
        )
        translator = ResultsTranslator(self._params, identity, self._audio_digest.hexdigest)
        outbox = ListenOutbox(self._state.settings.outbox_max_messages, driver.session)
        slot.attachment = Attachment(outbox, self._close_slow_consumer)
        await serve_session(
            host, slot, self._read(driver, converter, outbox), self._write(outbox, translator)
        )
        if not self._ws.closed:
            await self._close(driver.session.error_code, driver.session.error_message)

    async def _refuse(self, error: StreamscribeError) -> None:
        """After the upgrade, before the session opened: one Error message, then the close."""
        self._state.count_refusal(error)
        with contextlib.suppress(ConnectionError):
            await self._ws.send_str(
                encode_message(ErrorMessage(variant=error.code, description=error.message))
            )
        await self._close(error.code, error.message)

    async def _close(self, error_code: str | None, message: str) -> None:
        """Close as Deepgram closes a stream that ended with `error_code` (None: normally)."""
        close_code, reason = stream_close(error_code, message)
        await self._ws.close(code=close_code, message=reason.encode())

    async def _read(self, driver: SessionDriver, converter: PcmConverter, outbox: ListenOutbox) -> None:
        """Feed frames until bad input, a disconnect or a silent client; `serve` cancels it once
        the session closed."""
        if await read_frames(driver, self._frames(driver, converter, outbox)):
            driver.disconnect()  # the client went away without CloseStream: flush and keep what it sent

    async def _frames(self, driver: SessionDriver, converter: PcmConverter, outbox: ListenOutbox) -> None:
        """Take frames until the connection ends; raises on bad input."""
        wait_s = self._state.settings.stream_idle_timeout_s
        while True:  # once the stream ended, a client may wait in silence for its last results
            message = await receive(self._ws, driver, wait_s, "no audio or KeepAlive came")
            if message.type == WSMsgType.BINARY:
                await self._take_audio(message.data, driver, converter)
            elif message.type == WSMsgType.TEXT:
                await self._take_control(message.data, driver, converter, outbox)
            else:
                return  # closing, closed or broken

    async def _take_audio(self, data: bytes, driver: SessionDriver, converter: PcmConverter) -> None:
        if not data:
            await self._close_stream(driver, converter)
            return
        if len(data) > MAX_FRAME_BYTES:
            raise FrameTooLarge(f"audio frame of {len(data)} bytes exceeds {MAX_FRAME_BYTES} bytes")
        if not driver.session.ended:
            self._audio_digest.update(data)
        await driver.feed_audio(converter.convert(data))

    async def _take_control(
        self, text: str, driver: SessionDriver, converter: PcmConverter, outbox: ListenOutbox
    ) -> None:
        try:
            control = parse_control(text)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
            reason = f"the message is not one of KeepAlive, Finalize, CloseStream: {exc}"
            outbox.push(ControlRefused(seq=0, text=text[:_ECHOED_MESSAGE_CHARS], reason=reason))
            return
        match control:
            case KeepAlive():
                pass  # receiving it was enough: the idle timeout starts again
            case FinalizeStream():
                driver.finalize()
                outbox.finalize_asked()
            case CloseStream():
                await self._close_stream(driver, converter)
            case Configure():
                reason = (
                    "keyterms and features are fixed when the stream opens: reconnect with new parameters"
                )
                outbox.push(
                    ControlRefused(seq=0, text=text[:_ECHOED_MESSAGE_CHARS], reason=reason, configure=True)
                )

    async def _close_stream(self, driver: SessionDriver, converter: PcmConverter) -> None:
        """End of audio: the session flushes, sends its last finals and closes (the second pass
        still runs; its versions are at /v1/transcripts/{request_id})."""
        if driver.session.ended:
            return
        await driver.feed_audio(converter.flush())
        driver.stop(wait_for_transcript=False)

    async def _close_slow_consumer(self, error: SlowConsumer) -> None:
        await self._close(error.code, error.message)

    async def _write(self, outbox: ListenOutbox, translator: ResultsTranslator) -> None:
        connected = True
        while (event := await outbox.get()) is not None:
            messages: list[ListenMessage] = translator.receive(event)
            if len(outbox) == 0:  # no event waits: the batch being read is over
                messages += translator.end_of_batch()
            for message in messages:
                if not connected:
                    break
                try:
                    await self._ws.send_str(encode_message(message))
                except ConnectionError:
                    connected = False


def _stream_settings(settings: StreamSettings, params: ListenParams) -> StreamSettings:
    """The server's live settings, with the client's utterance_end_ms as the silence that ends
    an utterance (within _UTTERANCE_END_MS)."""
    if params.utterance_end_ms is None:
        return settings
    low, high = _UTTERANCE_END_MS
    return msgspec.structs.replace(settings, min_silence_ms=min(max(params.utterance_end_ms, low), high))


def _session_options(state: ServerState, params: ListenParams) -> tuple[SessionOptions, PcmConverter]:
    """What the session is opened with and how its audio is decoded; raises (before the upgrade)
    for a model, language or audio format this server does not serve."""
    host = state.sessions
    check_live_model(params, host.scheduler.engine.name)
    if params.encoding is None or params.sample_rate is None:
        raise UnsupportedAudio(
            f"encoding and sample_rate are needed: this server decodes raw {' or '.join(ENCODINGS)} "
            "streams, not containers (WAV, Ogg, WebM)"
        )
    converter = PcmConverter(ENCODINGS[params.encoding], params.sample_rate, params.channels)
    options = SessionOptions(
        language=host.live_language(params.language),
        stream=_stream_settings(state.settings.stream, params),
        input_sample_rate=params.sample_rate,
        prompt=params.prompt,
    )
    return options, converter


async def listen_socket(request: web.Request) -> web.StreamResponse:
    """Refusals before the upgrade are raised (the Deepgram error middleware answers them)."""
    state = request.app[SERVER_STATE]
    ws = live_socket()
    if not ws.can_prepare(request).ok:
        raise InvalidRequest(
            "GET /v1/listen is Deepgram's streaming WebSocket; POST a file to /v1/listen to transcribe it"
        )
    params = parse_params(query_fields(request))
    options, converter = _session_options(state, params)
    slot = state.sessions.admit("deepgram", caller(request))
    ws.headers["dg-request-id"] = slot.session_id
    try:
        await ws.prepare(request)
    except BaseException:
        state.sessions.release(slot)
        raise
    connection = ListenConnection(ws, state, params)
    try:
        await connection.serve(slot, options, converter)
    except Exception:
        log.exception("deepgram stream handler failed")
        if not ws.closed:
            await ws.close(code=1011, message=b"internal error; the stream was ended")
    return ws
