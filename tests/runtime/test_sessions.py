"""The one path sessions take (live/sessions.py): admission limits, release, and finding a session."""

from __future__ import annotations

import pytest

from streamscribe.config import load_settings
from streamscribe.errors import Overloaded, ShuttingDown
from streamscribe.live.sessions import SessionHost


def host(max_sessions: int, max_uploads: int) -> SessionHost:
    """Admission needs only the settings: no scheduler, event bus or keeper is reached."""
    settings = load_settings({"max_sessions": max_sessions, "max_uploads": max_uploads}, environ={})
    return SessionHost(settings, scheduler=None, event_bus=None, keeper=None)  # type: ignore[arg-type]


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
