"""`Client.stream`: one live stream on /v1/stream that resumes by itself when its connection drops.

A connection lost without a close frame (a reset, a network change, a keepalive ping that got no
pong) is reopened at /v1/stream?resume=TOKEN&after=LAST_SEQ (the token of `ready`); the server
answers `resumed` with how much audio it holds, the audio from there is sent again from what this
client keeps, and events already seen (by seq) are skipped, so the caller sees one unbroken
stream. The server ends a stream whose client does not come back within its resume window.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from ..errors import ConnectionLost, StreamscribeError, error_for
from ..wire import (
    Closed,
    Error,
    Final,
    Finalize,
    Ready,
    Resumed,
    ServerMessage,
    Start,
    Stop,
    TranscriptReady,
    Word,
    decode_server,
    encode,
)
from .http import refusal
from .outgoing import Outgoing
from .sources import Source, opened
from .stream import keep_pace

_OPEN_TIMEOUT_S = 30.0
_PING_S = 20.0
"""A keepalive ping this often; no pong within as long counts as a dropped connection."""
_FIRST_RETRY_S = 0.25
_MAX_RETRY_S = 4.0
EventT = TypeVar("EventT", bound=ServerMessage)


@dataclass(frozen=True, slots=True)
class StreamSummary:
    """A stream that ended with `closed`, summed up (`Stream.result()`)."""

    session_id: str
    transcript_id: str | None
    """GET /v1/transcripts/{id} (`Client.transcript`); None if the server keeps none."""
    finals: list[Word]
    version: int | None
    """The newest version announced (`transcript_ready`): None when the stream did not wait."""
    errors: list[Error]
    """`error` events of the session (the stream still ended with `closed`)."""
    audio_s: float
    resumes: int

    @property
    def text(self) -> str:
        return " ".join(word.text for word in self.finals)


class Stream:
    """A live stream: use it as `async with client.stream(source) as stream:` and iterate it for
    the server's events (wire Structs: Ready first, then Partial, Final, ... up to Closed), or
    await `result()`. When the source ends, `stop` is sent by itself; call `stop()` to end it
    sooner (a microphone, say) and `finalize()` to have everything heard so far committed.

    After a resume the iteration yields the server's `Resumed` (not a session event: its seq is
    the session's newest, whose events follow), then the events not seen yet. Leaving the `async
    with` before `closed` drops the stream (the server keeps what it received, marked as cut).
    Iterating without `async with` opens it on the first step and closes it at the end.
    """

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        source: Source,
        start: Start,
        *,
        speed: float,
        chunk_ms: int,
        wait_for_transcript: bool,
        resume_window_s: float,
        resend_buffer_s: float,
    ) -> None:
        rate = start.sample_rate
        self._url = url
        self._headers = headers
        self._source = source
        self._start = start
        self._speed = speed
        self._chunk_samples = rate * chunk_ms // 1000
        self._wait_for_transcript = wait_for_transcript
        self._resume_window_s = resume_window_s
        self._outgoing = Outgoing(2 * rate, int(2 * rate * resend_buffer_s), 2 * self._chunk_samples)
        self._closing = contextlib.AsyncExitStack()
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._ready_unread = False
        self._entered = self._ended = False
        self._last_seq = 0
        self.ready: Ready | None = None
        """The server's `ready` (once open): session_id, transcript_id, model..."""
        self.finals: list[Word] = []
        """Every final word so far, in order (each once, across resumes)."""
        self.resumes = 0
        """How many times the stream came back after a dropped connection."""
        self._version: int | None = None
        self._errors: list[Error] = []
        self._closed: Closed | None = None

    @property
    def session_id(self) -> str:
        if self.ready is None:
            raise RuntimeError("the stream is not open yet: use it in `async with`")
        return self.ready.session_id

    @property
    def sent_s(self) -> float:
        """Seconds of audio sent so far."""
        return self._outgoing.sent_s

    async def finalize(self) -> None:
        """Have the server commit everything heard so far now (after the audio read so far)."""
        await self._outgoing.mark(Finalize())

    async def stop(self, wait_for_transcript: bool = True) -> None:
        """End the audio now: what was read from the source is sent, then `stop`. Read on (or
        await `result()`) for the last finals and, with `wait_for_transcript`, the stored
        version (`finalizing`, `transcript_ready`) before `closed`. A source that has ended has
        sent its `stop` already (with the stream's `wait_for_transcript`)."""
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        await self._closing.aclose()  # the file or the microphone
        await self._outgoing.mark(Stop(wait_for_transcript=wait_for_transcript))

    async def result(self) -> StreamSummary:
        """Read the events not read yet until `closed`, and sum the stream up."""
        async for _ in self:
            pass
        if self._closed is None or self.ready is None:
            raise StreamscribeError("the stream was closed before the server's `closed`")
        return StreamSummary(
            session_id=self.ready.session_id,
            transcript_id=self.ready.transcript_id,
            finals=list(self.finals),
            version=self._version,
            errors=list(self._errors),
            audio_s=self._closed.audio_s,
            resumes=self.resumes,
        )

    async def __aenter__(self) -> Stream:
        """Open the source, connect and wait for `ready`. Raises the server's refusal as its
        StreamscribeError (Overloaded with retry_after_s, Unauthorized...), and UnsupportedAudio
        or NoAudioStream for a file that cannot be read."""
        if self._entered:
            return self
        self._entered = True
        try:
            chunks = await self._closing.enter_async_context(opened(self._source, self._chunk_samples))
            self._reader = asyncio.create_task(self._read(chunks))
            ws = await self._connect(self._url, _OPEN_TIMEOUT_S)
            with contextlib.suppress(ConnectionClosed):  # refused as it connects: its event says why
                await ws.send(encode(self._start).decode())
            self.ready = await _first_event(ws, Ready)
        except ConnectionClosed as lost:
            await self._shut()
            raise ConnectionLost("the connection was lost before the server's ready") from lost
        except BaseException:
            await self._shut()
            raise
        self._serve(ws, offset=0)
        self._ready_unread = True
        self._last_seq = self.ready.seq
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self._shut()

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> ServerMessage:
        try:
            return await self._next_event()
        except StopAsyncIteration:
            await self._shut()
            raise
        except asyncio.CancelledError:
            raise  # the caller gave up waiting; the stream stays as it is
        except BaseException:
            await self._shut()
            raise

    async def _next_event(self) -> ServerMessage:
        await self.__aenter__()
        if self._ready_unread and self.ready is not None:
            self._ready_unread = False
            return self.ready
        while self._closed is None and not self._ended:
            assert self._ws is not None
            try:
                message = await self._receive(self._ws)
            except ConnectionClosed as lost:
                if lost.rcvd is not None:  # the server closed it, before `closed`
                    reason = f"{lost.rcvd.code} {lost.rcvd.reason}".strip()
                    raise StreamscribeError(
                        f"the server closed the stream before `closed` ({reason})"
                    ) from None
                return await self._resume(lost)
            event = decode_server(message)
            if event.seq <= self._last_seq:
                continue  # seen on the connection before (a resumed connection replays from `after`)
            self._last_seq = event.seq
            self._note(event)
            return event
        raise StopAsyncIteration

    def _note(self, event: ServerMessage) -> None:
        match event:
            case Final(words=words):
                self.finals.extend(words)
            case TranscriptReady(version=version):
                self._version = version
            case Error():
                self._errors.append(event)
            case Closed():
                self._closed = event

    async def _receive(self, ws: ClientConnection) -> str | bytes:
        """The next message, unless the source or the sender fails first (raised here)."""
        receive = asyncio.ensure_future(ws.recv())
        try:
            while not receive.done():
                helpers = {
                    task for task in (self._reader, self._sender) if task is not None and not task.done()
                }
                await asyncio.wait({receive, *helpers}, return_when=asyncio.FIRST_COMPLETED)
                for task in helpers:
                    failure = task.exception() if task.done() and not task.cancelled() else None
                    if failure is not None:
                        raise failure
            return receive.result()
        finally:
            receive.cancel()

    async def _resume(self, lost: ConnectionClosed) -> Resumed:
        """Reconnect with the resume token until the server takes the stream back, within the
        resume window; then send the audio again from what the server holds."""
        await self._drop_connection()
        assert self.ready is not None
        where = f"after {self.sent_s:.1f} s of audio"
        if self.ready.resume_token is None or self._resume_window_s <= 0:
            raise ConnectionLost(f"the connection was lost {where}; this server offers no resume") from lost
        url = f"{self._url}?{urlencode({'resume': self.ready.resume_token, 'after': self._last_seq})}"
        ws, resumed = await self._reconnect(url, where)
        offset = self._outgoing.offset_of(resumed.received_s)
        if offset < self._outgoing.kept_from:
            await ws.close()
            kept_s = self._outgoing.kept_from / self._outgoing.bytes_per_s
            raise ConnectionLost(
                f"the server holds {resumed.received_s:.1f} s of audio, but this client keeps it only "
                f"from {kept_s:.1f} s on (resend_buffer_s): resending would leave a hole"
            )
        self.resumes += 1
        self._serve(ws, offset)
        return resumed

    async def _reconnect(self, url: str, where: str) -> tuple[ClientConnection, Resumed]:
        """Try `url` with back-off (the first try after a moment, for the network to come back and
        the server to notice the drop) until the server answers `resumed`, within the window.
        Raises its refusal (ResumeExpired, EventsExpired...) or ConnectionLost."""
        deadline = time.monotonic() + self._resume_window_s
        delay_s = _FIRST_RETRY_S
        failure: BaseException | None = None
        while time.monotonic() + delay_s < deadline:
            await asyncio.sleep(delay_s)
            delay_s = min(2 * delay_s, _MAX_RETRY_S)
            remaining_s = deadline - time.monotonic()
            try:
                ws = await self._connect(url, min(_OPEN_TIMEOUT_S, remaining_s), retry_server_errors=True)
            except (OSError, TimeoutError, InvalidHandshake) as refused:
                failure = refused
                continue
            try:
                resumed = await asyncio.wait_for(_first_event(ws, Resumed), remaining_s)
            except (TimeoutError, ConnectionClosed) as lost:
                failure = lost
                await ws.close()
                continue
            except BaseException:
                await ws.close()
                raise
            return ws, resumed
        why = f" ({type(failure).__name__})" if failure is not None else ""
        raise ConnectionLost(
            f"the connection was lost {where} and could not be resumed within {self._resume_window_s:g} s{why}"
        ) from failure

    async def _connect(
        self, url: str, timeout_s: float, retry_server_errors: bool = False
    ) -> ClientConnection:
        """A connection with the client's credentials. An HTTP refusal of the upgrade raises the
        server's error; with `retry_server_errors`, a 5xx (a proxy while the node restarts)
        raises InvalidStatus for the caller to retry."""
        try:
            return await connect(
                url, additional_headers=self._headers, max_size=None, open_timeout=timeout_s,
                ping_interval=_PING_S, ping_timeout=_PING_S,
            )  # fmt: skip
        except InvalidStatus as refused:
            status = refused.response.status_code
            if retry_server_errors and status >= 500:
                raise
            raise refusal(status, bytes(refused.response.body or b"")) from None

    def _serve(self, ws: ClientConnection, offset: int) -> None:
        self._ws = ws
        self._sender = asyncio.create_task(self._send(ws, offset))

    async def _send(self, ws: ClientConnection, offset: int) -> None:
        with contextlib.suppress(ConnectionClosed):  # the receiving side resumes or ends the stream
            async for item in self._outgoing.items_from(offset):
                await ws.send(item if isinstance(item, bytes) else encode(item).decode())

    async def _read(self, chunks: AsyncIterator[bytes]) -> None:
        """The source into `_outgoing` (at `speed` x real time, if set), then `stop`."""
        began = time.monotonic()
        taken = 0
        async for chunk in chunks:
            await keep_pace(began, taken / self._outgoing.bytes_per_s, self._speed)
            await self._outgoing.append(chunk)
            taken += len(chunk)
        await self._closing.aclose()
        await self._outgoing.mark(Stop(wait_for_transcript=self._wait_for_transcript))

    async def _drop_connection(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            await asyncio.gather(self._sender, return_exceptions=True)
        if self._ws is not None:
            await self._ws.close()

    async def _shut(self) -> None:
        """Stop reading and sending, close the connection (without `stop` the server keeps what
        it has, marked as cut) and the source. Safe to call again."""
        self._ended = True
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        await self._drop_connection()
        await self._closing.aclose()


async def _first_event(ws: ClientConnection, expected: type[EventT]) -> EventT:
    """The first event of a connection, which must be `expected`; an `error` there is a refusal,
    raised as the server's error."""
    try:
        event = decode_server(await ws.recv())
    except ConnectionClosed as closed:
        if closed.rcvd is None:
            raise
        raise StreamscribeError(
            f"the server closed the connection before {expected.__name__.lower()} "
            f"({closed.rcvd.code} {closed.rcvd.reason})".strip()
        ) from None
    if isinstance(event, Error):
        await ws.close()
        error = error_for(event.code, event.message)
        error.retry_after_s = event.retry_after_s
        raise error
    if not isinstance(event, expected):
        raise StreamscribeError(
            f"expected {expected.__name__.lower()} first, got {type(event).__name__.lower()}"
        )
    return event
