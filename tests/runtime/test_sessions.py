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
from streamscribe.store.base import ApiKey
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
    sessions.admit("websocket", None)
    for _ in range(20):
        sessions.scheduler.load.record(now, limit * 0.9)  # 4 streams: 5/4 of it is past the limit
    with pytest.raises(Overloaded, match="at capacity") as refused:
        sessions.admit("webrtc", None)
    assert refused.value.retry_after_s == 10
    assert sessions.admit("upload", None).replays_file, (
        "a replay takes only spare capacity: it is not refused"
    )


def test_uploads_are_refused_past_max_uploads_while_live_streams_still_get_in() -> None:
    sessions = host(max_sessions=3, max_uploads=1)
    sessions.admit("upload", None)
    with pytest.raises(Overloaded, match="1 files are being transcribed"):
        sessions.admit("upload", None)
    sessions.admit("websocket", None)
    sessions.admit("webrtc", None)
    with pytest.raises(Overloaded, match="all 3 sessions"):
        sessions.admit("websocket", None)
    assert Overloaded("").http_status == 429


def test_a_key_is_held_to_its_own_limits_and_other_keys_are_not() -> None:
    sessions = host(max_sessions=10, max_uploads=4)
    alice = ApiKey(name="alice", max_streams=1, max_replays=1)
    sessions.admit("websocket", alice)
    sessions.admit("upload", alice)
    with pytest.raises(Overloaded, match="key 'alice' has 1 live streams, its limit"):
        sessions.admit("webrtc", alice)
    with pytest.raises(Overloaded, match="key 'alice' has 1 files being transcribed"):
        sessions.admit("upload", alice)
    assert sessions.admit("websocket", ApiKey(name="bob")).owner == "bob"
    assert sessions.admit("websocket", None).owner is None


def test_a_released_slot_makes_room_and_release_is_idempotent() -> None:
    sessions = host(max_sessions=1, max_uploads=1)
    slot = sessions.admit("upload", None)
    sessions.release(slot)
    sessions.release(slot)
    assert not sessions.slots
    again = sessions.admit("upload", None)
    assert again.replays_file and again.session_id != slot.session_id


def test_a_session_is_found_by_id_only_on_its_own_transport() -> None:
    sessions = host(max_sessions=3, max_uploads=1)
    slot = sessions.admit("webrtc", None)
    assert sessions.find(slot.session_id, "webrtc") is slot
    assert sessions.find(slot.session_id, "websocket") is None
    assert sessions.find("other", "webrtc") is None


async def test_nothing_is_admitted_while_draining() -> None:
    sessions = host(max_sessions=3, max_uploads=1)
    await sessions.drain()
    with pytest.raises(ShuttingDown):
        sessions.admit("websocket", None)
    assert not sessions.slots


async def test_health_counts_an_open_session_without_progress_as_stalled() -> None:
    sessions = host(max_sessions=3, max_uploads=1)
    slot = sessions.admit("websocket", None)
    engine = types.SimpleNamespace(name="scripted", multilingual=False)
    session = LiveSession("s", StreamSettings(), ScriptedVad(None, None), "scripted", SAMPLE_RATE, "en")
    slot.driver = SessionDriver(session, DecodeScheduler(engine))  # type: ignore[arg-type]
    assert sessions.stalled() == 0, "it just opened"
    slot.driver.last_progress_s -= sessions.settings.stall_after_s + 1
    assert sessions.stalled() == 1, "held, but nothing happened for stall_after_s"
    slot.driver.stop(wait_for_transcript=False)
    assert slot.driver.session.closed and sessions.stalled() == 0, "a stop is progress"
