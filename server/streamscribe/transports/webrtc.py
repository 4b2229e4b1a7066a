"""WebRTC ingest with aiortc: POST /v1/webrtc/offer takes an SDP offer with an audio track and a
data channel and answers with the SDP answer. The track's audio feeds a live session exactly as
WebSocket frames do; the session's events go back on the data channel as the same JSON, and the
client's `finalize` / `stop` come in on it. Closing the peer connection (or DELETE on the
session) ends the stream, and its second pass runs as for any stream.

Two forms: JSON `{"type": "offer", "sdp": ..., "language": ..., "prompt": ...}` answered with
JSON, or WHIP-style `Content-Type: application/sdp` (options as query parameters) answered with
201, the SDP answer, and a Location to DELETE.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import av
import msgspec
from aiohttp import web
from aiortc import MediaStreamTrack, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.exceptions import InternalError, InvalidAccessError, InvalidStateError, OperationError
from aiortc.mediastreams import MediaStreamError

from ..audio import Resampler, Samples
from ..errors import (
    InvalidRequest,
    Overloaded,
    ProtocolViolation,
    SessionNotFound,
    SlowConsumer,
    StreamscribeError,
)
from ..live.driver import SessionDriver
from ..live.outbox import Outbox
from ..live.resume import Attachment
from ..live.sessions import SessionOptions, Slot
from ..store.base import can_see
from ..wire import Finalize, IceServers, Prompt, RetentionHours, Stop, WebRtcAnswer, encode
from .auth import caller
from .client_messages import parse_client_message
from .ice import announce_address, ice_servers, peer_configuration
from .limits import json_body, small_body
from .responses import struct_response
from .state import SERVER_STATE, ServerState

log = logging.getLogger(__name__)

OPUS_RATE = 48000
_AUDIO_BACKLOG_S = 10.0
"""Audio received but not yet taken by the session; WebRTC has no backpressure, so a stream that
cannot be decoded in real time for this long is ended (`overloaded`) rather than buffered."""
_CONNECT_TIMEOUT_S = 15.0
"""A peer whose audio has not arrived by then (ICE failed, a client gone) frees its session."""
_OPUS_FRAME_S = 0.02
_CHANNEL_HIGH_WATER_BYTES = 1 << 20


class OfferOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    type: str = "offer"
    sdp: str = ""
    language: str | None = None
    prompt: Prompt | None = None
    audio_retention_h: RetentionHours | None = None


class WebRtcSession:
    """One peer connection: its audio track drained into a session, its data channel the events."""

    def __init__(self, state: ServerState, slot: Slot) -> None:
        self._state = state
        self._slot = slot
        self.session_id = slot.session_id
        self._pc = RTCPeerConnection(peer_configuration(state.settings))
        self._channel: RTCDataChannel | None = None
        self._channel_open = asyncio.Event()
        self._audio: asyncio.Queue[Samples | None] = asyncio.Queue(
            maxsize=int(_AUDIO_BACKLOG_S / _OPUS_FRAME_S)
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._track_arrived = asyncio.Event()

    async def answer(self, options: OfferOptions) -> str:
        """Accept the offer and start the session; the SDP answer (with its host candidates)."""
        if options.type != "offer" or "m=audio" not in options.sdp or "m=application" not in options.sdp:
            raise InvalidRequest("the offer must be an SDP offer with an audio track and a data channel")
        host = self._state.sessions
        self._pc.on("datachannel", self._on_channel)
        self._pc.on("track", self._on_track)
        self._pc.on("connectionstatechange", self._on_connection_state)
        try:
            language = host.live_language(options.language)
            try:
                await self._pc.setRemoteDescription(RTCSessionDescription(sdp=options.sdp, type="offer"))
                await self._pc.setLocalDescription(await self._pc.createAnswer())
            except (
                ValueError, KeyError, IndexError, AttributeError, TypeError,
                InternalError, InvalidAccessError, InvalidStateError, OperationError,
            ) as exc:  # fmt: skip
                # aiortc fails on a malformed offer (or one with no codec it has) in any of these ways
                raise InvalidRequest(
                    "the offer cannot be answered: its SDP is malformed or lacks what a peer needs (ICE "
                    f"credentials, a DTLS fingerprint and setup, an audio codec) ({type(exc).__name__})"
                ) from exc
            session_options = SessionOptions(
                language=language,
                stream=self._state.settings.stream,
                input_sample_rate=OPUS_RATE,
                prompt=options.prompt,
                audio_retention_h=options.audio_retention_h,
            )
            driver = await host.open(self._slot, session_options)
        except BaseException:
            await _close_refused(self._pc)  # a refused offer leaves no peer connection behind
            raise
        self._spawn(self._run(driver))
        self._spawn(self._expect_audio(driver))
        sdp = str(self._pc.localDescription.sdp)
        public_address = self._state.settings.webrtc_public_address
        return sdp if public_address is None else announce_address(sdp, public_address)

    # ---- internals ------------------------------------------------------------------------------

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, driver: SessionDriver) -> None:
        outbox = Outbox(self._state.settings.outbox_max_messages)
        self._slot.attachment = Attachment(outbox, self._slow_consumer)
        feeder = asyncio.create_task(self._feed(driver))
        writer = asyncio.create_task(self._write(outbox))
        try:
            await self._state.sessions.run(self._slot)
        finally:
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(writer, 5.0)
            await self._pc.close()

    async def _slow_consumer(self, error: SlowConsumer) -> None:
        log.warning("webrtc session %s: %s", self.session_id, error.message)

    def _on_channel(self, channel: RTCDataChannel) -> None:
        self._channel = channel
        channel.bufferedAmountLowThreshold = _CHANNEL_HIGH_WATER_BYTES // 2
        channel.on("message", self._on_message)
        if channel.readyState == "open":
            self._channel_open.set()
        channel.on("open", self._channel_open.set)

    def _on_message(self, message: str | bytes) -> None:
        driver = self._slot.driver
        if driver is None:
            return
        try:
            match parse_client_message(message):
                case Stop(wait_for_transcript=wait):
                    self._spawn(self._stop_after_audio(driver, wait))
                case Finalize():
                    driver.finalize()
                case _:
                    raise ProtocolViolation("the stream has already started: send finalize or stop")
        except StreamscribeError as exc:
            driver.fail(exc)

    async def _stop_after_audio(self, driver: SessionDriver, wait: bool) -> None:
        """Stop once the audio already received has been fed (so no heard word is lost)."""
        await self._audio.put(None)
        await self._audio.join()
        driver.stop(wait)

    async def _expect_audio(self, driver: SessionDriver) -> None:
        try:
            await asyncio.wait_for(self._track_arrived.wait(), _CONNECT_TIMEOUT_S)
        except TimeoutError:
            driver.fail(
                ProtocolViolation(f"no audio arrived within {_CONNECT_TIMEOUT_S:.0f} s of the answer")
            )

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._spawn(self._drain(track))

    async def _drain(self, track: MediaStreamTrack) -> None:
        """Read every frame as it comes (aiortc queues them without limit otherwise), converted
        to 16 kHz mono; a backlog the session cannot take in time ends the stream."""
        resampler = Resampler()
        overloaded = False
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                break
            self._track_arrived.set()
            if overloaded or not isinstance(frame, av.AudioFrame):
                continue
            samples = resampler.resample(frame)
            if not samples.size:
                continue
            try:
                self._audio.put_nowait(samples)
            except asyncio.QueueFull:
                overloaded = True
                if self._slot.driver is not None:
                    self._slot.driver.fail(Overloaded("the server cannot decode this stream in real time"))
        if self._slot.driver is not None and not self._slot.driver.session.ended:
            self._spawn(self._stop_after_audio(self._slot.driver, True))

    async def _feed(self, driver: SessionDriver) -> None:
        """Feed the received audio in order; a failure ends the session (the queue is still
        drained, so a `stop` waiting on it goes through)."""
        while True:
            samples = await self._audio.get()
            try:
                if samples is not None:
                    await driver.feed_audio(samples)
            except Exception as exc:
                log.exception("feeding WebRTC session %s failed", self.session_id)
                driver.fail(StreamscribeError.reading_failed(exc))
            finally:
                self._audio.task_done()

    async def _write(self, outbox: Outbox) -> None:
        while (event := await outbox.get()) is not None:
            await self._channel_open.wait()
            channel = self._channel
            if channel is None or channel.readyState != "open":
                continue
            if channel.bufferedAmount > _CHANNEL_HIGH_WATER_BYTES:
                drained = asyncio.Event()
                channel.once("bufferedamountlow", drained.set)
                channel.once("close", drained.set)
                await drained.wait()
            if channel.readyState == "open":
                channel.send(encode(event).decode())

    def _on_connection_state(self) -> None:
        if self._pc.connectionState in ("failed", "closed") and self._slot.driver is not None:
            self._channel_open.set()  # nobody will read: let the writer drain
            self._slot.driver.disconnect()


async def _close_refused(pc: RTCPeerConnection) -> None:
    """Close the peer connection of a refused offer. aiortc's close() stops half way on a peer
    that a malformed offer set up only in part (an SCTP transport without its DTLS one); its
    transports are then stopped one by one, so that no UDP socket stays open."""
    try:
        await pc.close()
    except AttributeError:
        for transceiver in pc.getTransceivers():
            dtls = transceiver.receiver.transport
            with contextlib.suppress(Exception):
                await dtls.stop()
            with contextlib.suppress(Exception):
                await dtls.transport.stop()


async def offer(request: web.Request) -> web.Response:
    state = request.app[SERVER_STATE]
    whip = request.content_type == "application/sdp"
    try:
        if whip:
            values = {**request.query, "sdp": (await small_body(request)).decode(errors="replace")}
            options = msgspec.convert(values, OfferOptions, strict=False)
        else:
            options = msgspec.json.decode(await json_body(request), type=OfferOptions)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        raise InvalidRequest(f"bad offer: {exc}") from exc
    slot = state.sessions.admit("webrtc", caller(request))
    try:
        session = WebRtcSession(state, slot)
        answer_sdp = await session.answer(options)
    except BaseException:
        state.sessions.release(slot)
        raise
    location = f"/v1/webrtc/sessions/{session.session_id}"
    if whip:
        return web.Response(
            status=201, text=answer_sdp, content_type="application/sdp", headers={"Location": location}
        )
    body = WebRtcAnswer(
        type="answer",
        sdp=answer_sdp,
        session_id=session.session_id,
        transcript_id=session.session_id,
        location=location,
    )
    return struct_response(body)


async def end(request: web.Request) -> web.Response:
    """WHIP teardown: end the stream (its words are kept and its second pass runs)."""
    session_id = request.match_info["session_id"]
    slot = request.app[SERVER_STATE].sessions.find(session_id, "webrtc")
    if slot is None or slot.driver is None or not can_see(caller(request), slot.owner):
        raise SessionNotFound(f"no running WebRTC session {session_id}")
    slot.driver.stop(wait_for_transcript=False)
    return web.Response(status=204)


async def ice_servers_handler(request: web.Request) -> web.Response:
    """The STUN and TURN servers a client's peer connection should use (none unless configured)."""
    return struct_response(IceServers(ice_servers=ice_servers(request.app[SERVER_STATE].settings)))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/webrtc/ice-servers", ice_servers_handler)
    app.router.add_post("/v1/webrtc/offer", offer)
    app.router.add_delete("/v1/webrtc/sessions/{session_id}", end)
