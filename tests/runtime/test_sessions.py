"""The one path sessions take (live/sessions.py): admission limits, release, and finding a session."""

from __future__ import annotations

import time
import types

import pytest

from streamscribe.audio import SAMPLE_RATE
from streamscribe.config import StreamSettings, load_settings
from streamscribe.errors import Overloaded, ShuttingDown
from streamscribe.live.driver import SessionDriver
from streamscribe.live.scheduler import DecodeScheduler
from streamscribe.live.sessions import SessionHost
from streamscribe.stream.session import LiveSession

from ..unit.test_live_session import ScriptedVad


def host(max_sessions: int, max_uploads: int) -> SessionHost:
    """Admission needs the settings and the scheduler's load: no engine, event bus or keeper is reached."""
    settings = load_settings({"max_sessions": max_sessions, "max_uploads": max_uploads}, environ={})
    scheduler = DecodeScheduler(None, max_decode_wait_s=settings.max_decode_wait_s)  # type: ignore[arg-type]
    return SessionHost(settings, scheduler, event_bus=None, keeper=None)  # type: ignore[arg-type]


class LiveClient:
    background = False


def test_live_streams_are_refused_when_one_more_would_stretch_the_decode_wait_past_its_limit() -> None:
    sessions = host(max_sessions=10, max_uploads=1)
    limit = sessions.settings.max_decode_wait_s
    running = [LiveClient() for _ in range(4)]
    for client in running:
        sessions.scheduler.poke(client)  # type: ignore[arg-type]
    now = time.monotonic()
    for _ in range(20):
        sessions.scheduler.load.record(now, limit * 0.7)
    sessions.admit("websocket")
    for _ in range(20):
        sessions.scheduler.load.record(now, limit * 0.9)  # 4 streams: 5/4 of it is past the limit
    with pytest.raises(Overloaded, match="at capacity") as refused:
        sessions.admit("webrtc")
    assert refused.value.retry_after_s == 10
    assert sessions.admit("upload").replays_file, "a replay takes only spare capacity: it is not refused"


def test_uploads_are_refused_past_max_uploads_while_live_streams_still_get_in() -> None:
    sessions = host(max_sessions=3, max_uploads=1)
    sessions.admit("upload")
    with pytest.raises(Overloaded, match="1 files are being transcribed"):
        sessions.admit("upload")
    sessions.admit("websocket")
    sessions.admit("webrtc")
    with pytest.raises(Overloaded, match="all 3 sessions"):
        sessions.admit("websocket")
    assert Overloaded("").http_status == 429


def test_a_released_slot_makes_room_and_release_is_idempotent() -> None:
    sessions = host(max_sessions=1, max_uploads=1)
    slot = sessions.admit("upload")
    sessions.release(slot)
    sessions.release(slot)
    assert not sessions.slots
    again = sessions.admit("upload")
    assert again.replays_file and again.session_id != slot.session_id


def test_a_session_is_found_by_id_only_on_its_own_transport() -> None:
    sessions = host(max_sessions=3, max_uploads=1)
    slot = sessions.admit("webrtc")
    assert sessions.find(slot.session_id, "webrtc") is slot
    assert sessions.find(slot.session_id, "websocket") is None
    assert sessions.find("other", "webrtc") is None


async def test_nothing_is_admitted_while_draining() -> None:
    sessions = host(max_sessions=3, max_uploads=1)
    await sessions.drain()
    with pytest.raises(ShuttingDown):
        sessions.admit("websocket")
    assert not sessions.slots


async def test_health_counts_an_open_session_without_progress_as_stalled() -> None:
    sessions = host(max_sessions=3, max_uploads=1)
    slot = sessions.admit("websocket")
    engine = types.SimpleNamespace(name="scripted", multilingual=False)
    session = LiveSession("s", StreamSettings(), ScriptedVad(None, None), "scripted", SAMPLE_RATE, "en")
    slot.driver = SessionDriver(session, DecodeScheduler(engine))  # type: ignore[arg-type]
    assert sessions.stalled() == 0, "it just opened"
    slot.driver.last_progress_s -= sessions.settings.stall_after_s + 1
    assert sessions.stalled() == 1, "held, but nothing happened for stall_after_s"
    slot.driver.stop(wait_for_transcript=False)
    assert slot.driver.session.closed and sessions.stalled() == 0, "a stop is progress"
