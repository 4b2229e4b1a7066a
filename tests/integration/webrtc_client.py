"""A WebRTC client written with aiortc, as an app would: speech as an audio track, events on a
data channel (independent of the server's code but for the wire message types)."""

from __future__ import annotations

import asyncio
import fractions
import json
import time

import aiohttp
import av
import numpy as np
from aiortc import AudioStreamTrack, RTCPeerConnection, RTCSessionDescription

from streamscribe.audio import SAMPLE_RATE

FRAME_SAMPLES = SAMPLE_RATE // 50  # 20 ms


class SpeechTrack(AudioStreamTrack):
    """16 kHz mono speech in 20 ms frames at `speed` x real time, then silence; `finished` is set
    once the speech has been sent."""

    def __init__(self, audio: np.ndarray, speed: float) -> None:
        super().__init__()
        self._pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
        self._speed = speed
        self._sent = 0
        self._began: float | None = None
        self.finished = asyncio.Event()

    async def recv(self) -> av.AudioFrame:
        if self._began is None:
            self._began = time.monotonic()
        due = self._began + self._sent / SAMPLE_RATE / self._speed
        await asyncio.sleep(max(0.0, due - time.monotonic()))
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
    """A peer connection with a speech track and an `events` data channel; `events` fills as
    messages arrive (each with `arrived_s`, monotonic time)."""

    def __init__(self, audio: np.ndarray, speed: float) -> None:
        self.pc = RTCPeerConnection()
        self.channel = self.pc.createDataChannel("events")
        self.track = SpeechTrack(audio, speed)
        self.pc.addTrack(self.track)
        self.events: list[dict] = []
        self.closed = asyncio.Event()
        self.channel.on("message", self._on_message)

    def _on_message(self, message: str) -> None:
        event = json.loads(message)
        event["arrived_s"] = time.monotonic()
        self.events.append(event)
        if event["type"] == "closed":
            self.closed.set()

    async def offer(self, base_url: str, whip: bool = False, **options: str) -> dict:
        """Send the offer, apply the answer; the server's JSON answer (or WHIP's headers)."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        sdp = self.pc.localDescription.sdp
        async with aiohttp.ClientSession() as http:
            if whip:
                headers = {"Content-Type": "application/sdp"}
                async with http.post(base_url + "/v1/webrtc/offer", data=sdp, headers=headers, params=options) as response:
                    assert response.status == 201, await response.text()
                    answer = {"sdp": await response.text(), "location": response.headers["Location"]}
            else:
                offer = {"type": "offer", "sdp": sdp, **options}
                async with http.post(base_url + "/v1/webrtc/offer", json=offer) as response:
                    assert response.status == 200, await response.text()
                    answer = await response.json()
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        return answer


async def stream_over_webrtc(base_url: str, audio: np.ndarray, speed: float = 1.0, **options: str) -> list[dict]:
    """Stream the audio, send stop once it is out, and return every event up to `closed`."""
    peer = WebRtcPeer(audio, speed)
    await peer.offer(base_url, **options)
    try:
        await asyncio.wait_for(peer.track.finished.wait(), audio.size / SAMPLE_RATE / speed + 30)
        peer.channel.send(json.dumps({"type": "stop"}))
        await asyncio.wait_for(peer.closed.wait(), 60)
    finally:
        await peer.pc.close()
    return peer.events
