"""A Python WebRTC client of the server (aiortc): speech as an Opus audio track, events on a data
channel. Used by `streamscribe bench --transport webrtc` and the tests; apps can use it too."""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import Callable

import aiohttp
import av
import msgspec
import numpy as np
from aiortc import AudioStreamTrack, RTCPeerConnection, RTCSessionDescription

from ..audio import SAMPLE_RATE, Samples
from ..wire import Closed, Stop, WebRtcAnswer, decode_server, encode
from .http import auth_headers, refusal
from .stream import StreamResult, TimedEvent, keep_pace

FRAME_SAMPLES = SAMPLE_RATE // 50
"""20 ms, the frame of WebRTC's Opus."""


class SpeechTrack(AudioStreamTrack):
    """16 kHz mono audio as 20 ms frames at `speed` x real time, then silence. `began` is when the
    first frame was taken; `finished` is set once all the audio has been."""

    def __init__(self, audio: Samples, speed: float) -> None:
        super().__init__()
        self._pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
        self._speed = speed
        self._sent = 0
        self.began: float | None = None
        self.finished = asyncio.Event()

    async def recv(self) -> av.AudioFrame:
        if self.began is None:
            self.began = time.monotonic()
        await keep_pace(self.began, self._sent / SAMPLE_RATE, self._speed)
        piece = self._pcm[self._sent : self._sent + FRAME_SAMPLES]
        if piece.size < FRAME_SAMPLES:
            self.finished.set()
            piece = np.concatenate([piece, np.zeros(FRAME_SAMPLES - piece.size, dtype=np.int16)])
        frame = av.AudioFrame.from_ndarray(piece.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._sent
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self._sent += FRAME_SAMPLES
        return frame


class WebRtcPeer:
    """One peer connection with a speech track and an `events` data channel."""

    def __init__(
        self, audio: Samples, speed: float, on_event: Callable[[TimedEvent], None] | None = None
    ) -> None:
        self.pc = RTCPeerConnection()
        self.channel = self.pc.createDataChannel("events")
        self.track = SpeechTrack(audio, speed)
        self.pc.addTrack(self.track)
        self.result = StreamResult()
        self.closed = asyncio.Event()
        self._on_event = on_event
        self.channel.on("message", self._receive)

    async def offer(
        self,
        base_url: str,
        options: dict[str, str] | None = None,
        whip: bool = False,
        api_key: str | None = None,
    ) -> WebRtcAnswer:
        """Send the offer (JSON, or WHIP's application/sdp) and apply the answer. Raises the
        server's StreamscribeError if it refuses the offer."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        sdp = self.pc.localDescription.sdp
        options = options or {}
        url = base_url.rstrip("/") + "/v1/webrtc/offer"
        async with aiohttp.ClientSession(headers=auth_headers(api_key)) as http:
            if whip:
                headers = {"Content-Type": "application/sdp"}
                async with http.post(url, data=sdp, headers=headers, params=options) as response:
                    body = await response.read()
                    if response.status != 201:
                        raise refusal(response.status, body)
                    location = response.headers["Location"]
                    session_id = location.rsplit("/", 1)[-1]
                    answer = WebRtcAnswer(
                        type="answer", sdp=body.decode(), session_id=session_id, transcript_id=session_id,
                        location=location,
                    )  # fmt: skip
            else:
                async with http.post(url, json={"type": "offer", "sdp": sdp, **options}) as response:
                    body = await response.read()
                    if response.status != 200:
                        raise refusal(response.status, body)
                    answer = msgspec.json.decode(body, type=WebRtcAnswer)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer.sdp, type="answer"))
        return answer

    def send_stop(self) -> None:
        self.channel.send(encode(Stop()).decode())

    def _receive(self, message: str) -> None:
        began = self.track.began or time.monotonic()
        timed = TimedEvent(time.monotonic() - began, decode_server(message))
        self.result.events.append(timed)
        if self._on_event is not None:
            self._on_event(timed)
        if isinstance(timed.event, Closed):
            self.closed.set()


async def stream_samples_webrtc(
    base_url: str,
    samples: Samples,
    *,
    speed: float = 1.0,
    on_event: Callable[[TimedEvent], None] | None = None,
    api_key: str | None = None,
    **options: str,
) -> StreamResult:
    """Stream 16 kHz mono audio as a WebRTC track at `speed` x real time, send `stop` once it is
    out, and collect every event until `closed`; like `client.stream_samples` for WebSocket.
    Event times count from the first audio frame."""
    peer = WebRtcPeer(samples, speed, on_event)
    await peer.offer(base_url, options, api_key=api_key)
    try:
        await asyncio.wait_for(peer.track.finished.wait(), samples.size / SAMPLE_RATE / speed + 30)
        peer.send_stop()
        await asyncio.wait_for(peer.closed.wait(), 120)
    finally:
        await peer.pc.close()
    return peer.result
