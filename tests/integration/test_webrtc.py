"""WebRTC ingest on a real server: an aiortc peer sends real speech as an Opus track over
loopback and reads the words back on its data channel."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from streamscribe.evaluation import word_error_rate

from .webrtc_client import WebRtcPeer, stream_over_webrtc

pytestmark = pytest.mark.model


async def test_speech_sent_as_a_track_comes_back_as_words_on_the_data_channel(
    server_url: str, jfk: tuple[object, str]
) -> None:
    audio, reference = jfk
    events = await stream_over_webrtc(server_url, audio, speed=2.0)  # type: ignore[arg-type]
    kinds = [event["type"] for event in events]
    assert kinds[0] == "ready" and kinds[-1] == "closed", kinds
    assert [event["seq"] for event in events] == sorted(event["seq"] for event in events)
    finals = [word["text"] for event in events if event["type"] == "final" for word in event["words"]]
    assert word_error_rate(reference, " ".join(finals)) < 0.15, finals
    assert await stored_words(server_url, events[0]["session_id"]) == " ".join(finals), "v1 is what was streamed"


async def stored_words(server_url: str, transcript_id: str) -> str | None:
    async with aiohttp.ClientSession() as http, http.get(f"{server_url}/v1/transcripts/{transcript_id}") as response:
        if response.status != 200:
            return None
        stored = await response.json()
    return " ".join(w["text"] for s in stored["segments"] for line in s["lines"] for w in line["words"])


async def test_closing_the_peer_connection_ends_the_stream_and_keeps_its_words(
    server_url: str, jfk: tuple[object, str]
) -> None:
    audio, _ = jfk
    peer = WebRtcPeer(audio, speed=2.0)  # type: ignore[arg-type]
    answer = await peer.offer(server_url)
    for _ in range(300):  # until "And so my fellow Americans" has come back as finals
        if any(event["type"] == "final" for event in peer.events):
            break
        await asyncio.sleep(0.05)
    heard = " ".join(w["text"] for e in list(peer.events) if e["type"] == "final" for w in e["words"])
    await peer.pc.close()
    for _ in range(300):
        words = await stored_words(server_url, answer["transcript_id"])
        if words:
            break
        await asyncio.sleep(0.05)
    assert heard and words and words.startswith(heard), "v1 holds every final sent before the close"
    assert words.lower().startswith("and so my fellow")


async def test_whip_offer_and_delete(server_url: str, jfk: tuple[object, str]) -> None:
    audio, _ = jfk
    peer = WebRtcPeer(audio, speed=2.0)  # type: ignore[arg-type]
    answer = await peer.offer(server_url, whip=True, language="en")
    assert answer["sdp"].startswith("v=0") and answer["location"].startswith("/v1/webrtc/sessions/")
    await asyncio.wait_for(peer.track.finished.wait(), 30)
    async with aiohttp.ClientSession() as http, http.delete(server_url + answer["location"]) as response:
        assert response.status == 204
    await asyncio.wait_for(peer.closed.wait(), 30)
    await peer.pc.close()
    finals = [w["text"] for e in peer.events if e["type"] == "final" for w in e["words"]]
    assert "country." in finals[-1:] or "country" in " ".join(finals).lower()


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ('{"type": "offer", "sdp": "v=0\\r\\n"}', "application/json"),
        ("not json", "application/json"),
        ('{"type": "offer", "sdp": "v=0", "colour": "red"}', "application/json"),
    ],
)
async def test_a_bad_offer_gets_a_code_and_a_reason(server_url: str, body: str, content_type: str) -> None:
    async with aiohttp.ClientSession() as http, http.post(
        server_url + "/v1/webrtc/offer", data=body, headers={"Content-Type": content_type}
    ) as response:
        assert response.status == 400
        assert (await response.json())["error"]["code"] == "invalid_request"
