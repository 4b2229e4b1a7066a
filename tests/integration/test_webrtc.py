"""WebRTC ingest on a real server: an aiortc peer sends real speech as an Opus track over
loopback and reads the words back on its data channel."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import msgspec
import pytest

from streamscribe.asr.engine import Engine
from streamscribe.bench.metrics import word_error_rate
from streamscribe.client.webrtc import WebRtcPeer, stream_samples_webrtc
from streamscribe.config import ServerSettings
from streamscribe.errors import UnsupportedLanguage
from streamscribe.wire import Final, Ready

from ..conftest import start_server

pytestmark = pytest.mark.model


async def test_speech_sent_as_a_track_comes_back_as_words_on_the_data_channel(
    server_url: str, jfk: tuple[object, str]
) -> None:
    audio, reference = jfk
    result = await stream_samples_webrtc(server_url, audio, speed=2.0)  # type: ignore[arg-type]
    assert_well_formed_over_webrtc(result.events)
    finals = " ".join(word.text for word in result.finals)
    assert word_error_rate(reference, finals) < 0.15, finals
    ready = result.events[0].event
    assert isinstance(ready, Ready) and ready.sample_rate == 48000
    assert await stored_words(server_url, ready.session_id) == finals, "v1 is what was streamed"


def assert_well_formed_over_webrtc(events: list) -> None:  # type: ignore[type-arg]
    kinds = [type(timed.event).__name__ for timed in events]
    assert kinds[0] == "Ready" and kinds[-1] == "Closed", kinds
    seqs = [timed.event.seq for timed in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


async def stored_words(server_url: str, transcript_id: str) -> str | None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{server_url}/v1/transcripts/{transcript_id}") as response,
    ):
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
        if peer.result.finals:
            break
        await asyncio.sleep(0.05)
    heard = " ".join(word.text for word in peer.result.finals)
    await peer.pc.close()
    for _ in range(300):
        words = await stored_words(server_url, answer.transcript_id)
        if words:
            break
        await asyncio.sleep(0.05)
    assert heard and words and words.startswith(heard), "v1 holds every final sent before the close"
    assert words.lower().startswith("and so my fellow")


async def test_whip_offer_and_delete(server_url: str, jfk: tuple[object, str]) -> None:
    audio, _ = jfk
    peer = WebRtcPeer(audio, speed=2.0)  # type: ignore[arg-type]
    answer = await peer.offer(server_url, {"language": "en"}, whip=True)
    assert answer.sdp.startswith("v=0") and answer.location == f"/v1/webrtc/sessions/{answer.session_id}"
    await asyncio.wait_for(peer.track.finished.wait(), 30)
    async with aiohttp.ClientSession() as http, http.delete(server_url + answer.location) as response:
        assert response.status == 204
    await asyncio.wait_for(peer.closed.wait(), 30)
    await peer.pc.close()
    assert "your country" in " ".join(word.text for word in peer.result.finals).lower()
    assert any(isinstance(timed.event, Final) for timed in peer.result.events)


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        ('{"type": "offer", "sdp": "v=0\\r\\n"}', "application/json", 400, "invalid_request"),
        ("not json", "application/json", 400, "invalid_request"),
        ('{"type": "offer", "sdp": "v=0", "colour": "red"}', "application/json", 400, "invalid_request"),
        ('{"type": "offer", "sdp": "v=0\\r\\n"}', "text/plain", 415, "unsupported_media_type"),
    ],
)
async def test_a_bad_offer_gets_a_code_and_a_reason(
    server_url: str, body: str, content_type: str, status: int, code: str
) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            server_url + "/v1/webrtc/offer", data=body, headers={"Content-Type": content_type}
        ) as response,
    ):
        assert response.status == status
        assert (await response.json())["error"]["code"] == code


async def test_a_peer_that_never_connects_frees_its_session(server_url: str, jfk: tuple[object, str]) -> None:
    """An offer that is answered but whose media never arrives (the client vanished before ICE)."""
    audio, _ = jfk
    peer = WebRtcPeer(audio, speed=1.0)  # type: ignore[arg-type]
    await peer.pc.setLocalDescription(await peer.pc.createOffer())
    offer = {"type": "offer", "sdp": peer.pc.localDescription.sdp}
    await peer.pc.close()  # gone before the answer could be applied
    async with aiohttp.ClientSession() as http:
        async with http.post(server_url + "/v1/webrtc/offer", json=offer) as response:
            assert response.status == 200
            session_id = (await response.json())["session_id"]
        for _ in range(300):
            async with http.get(server_url + "/healthz") as response:
                if (await response.json())["sessions"] == 0:
                    break
            await asyncio.sleep(0.1)
        async with http.get(f"{server_url}/v1/sessions/{session_id}/events") as response:
            events = await response.text()
    assert "protocol_violation" in events and "no audio arrived" in events


async def test_an_offer_in_a_language_the_model_does_not_serve_is_refused(
    server_url: str, jfk: tuple[object, str]
) -> None:
    audio, _ = jfk
    peer = WebRtcPeer(audio, speed=1.0)  # type: ignore[arg-type]
    try:
        with pytest.raises(UnsupportedLanguage) as refused:
            await peer.offer(server_url, {"language": "de"})
        assert refused.value.http_status == 400 and "English-only" in refused.value.message
    finally:
        await peer.pc.close()
    async with aiohttp.ClientSession() as http, http.get(server_url + "/healthz") as response:
        assert (await response.json())["sessions"] == 0, "nothing is left of a refused offer"


async def test_media_ports_stay_in_the_range_and_the_public_address_is_offered(
    settings: ServerSettings, engine: Engine, jfk: tuple[object, str], tmp_path: Path
) -> None:
    """As a container publishing a UDP range behind its host's address would be configured."""
    ports = "61000-61031"  # above Linux's ephemeral range: nothing else takes them by chance
    configured = msgspec.structs.replace(
        settings, data_dir=tmp_path, webrtc_ports=ports, webrtc_public_address="192.0.2.7"
    )
    runner, url = await start_server(configured, engine)
    try:
        audio, reference = jfk
        peer = WebRtcPeer(audio, speed=4.0)  # type: ignore[arg-type]
        answer = await peer.offer(url)
        candidates = [line.split() for line in answer.sdp.splitlines() if line.startswith("a=candidate:")]
        host_ports = {int(fields[5]) for fields in candidates if fields[7] == "host"}
        assert host_ports and all(61000 <= port <= 61031 for port in host_ports), candidates
        announced = [fields for fields in candidates if fields[4] == "192.0.2.7"]
        assert announced and {int(fields[5]) for fields in announced} <= host_ports
        await asyncio.wait_for(peer.track.finished.wait(), 60)
        peer.send_stop()
        await asyncio.wait_for(peer.closed.wait(), 60)
        await peer.pc.close()
        assert word_error_rate(reference, " ".join(word.text for word in peer.result.finals)) < 0.15
    finally:
        await runner.cleanup()


async def test_clients_are_told_the_ice_servers(
    settings: ServerSettings, engine: Engine, tmp_path: Path
) -> None:
    configured = msgspec.structs.replace(
        settings,
        data_dir=tmp_path,
        webrtc_stun_url="stun:stun.example.org:3478",
        webrtc_turn_url="turn:turn.example.org:3478",
        webrtc_turn_username="caption",
        webrtc_turn_password="s3cret",
    )
    runner, url = await start_server(configured, engine)
    try:
        async with aiohttp.ClientSession() as http, http.get(url + "/v1/webrtc/ice-servers") as response:
            assert response.status == 200
            body = await response.json()
    finally:
        await runner.cleanup()
    assert body == {
        "ice_servers": [
            {"urls": ["stun:stun.example.org:3478"]},
            {"urls": ["turn:turn.example.org:3478"], "username": "caption", "credential": "s3cret"},
        ]
    }
