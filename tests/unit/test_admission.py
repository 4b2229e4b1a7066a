"""Admission control: live streams and file replays share max_sessions; replays also max_uploads."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from streamscribe.config import load_settings
from streamscribe.errors import Overloaded, ShuttingDown
from streamscribe.transports.state import ServerState


@dataclass(eq=False)
class Session:
    replays_file: bool
    driver: None = None

    def drain(self) -> None:
        pass


def state(max_sessions: int, max_uploads: int) -> ServerState:
    settings = load_settings({"max_sessions": max_sessions, "max_uploads": max_uploads}, environ={})
    return ServerState(settings=settings, scheduler=None, event_logs=None, finalizer=None)  # type: ignore[arg-type]


def test_uploads_are_refused_past_max_uploads_while_live_streams_still_get_in() -> None:
    server = state(max_sessions=3, max_uploads=1)
    server.admit(Session(replays_file=True))
    with pytest.raises(Overloaded, match="1 files are being transcribed"):
        server.admit(Session(replays_file=True))
    server.admit(Session(replays_file=False))
    server.admit(Session(replays_file=False))
    with pytest.raises(Overloaded, match="all 3 sessions"):
        server.admit(Session(replays_file=False))
    assert Overloaded("").http_status == 429


def test_nothing_is_admitted_while_draining() -> None:
    server = state(max_sessions=3, max_uploads=1)
    server.draining = True
    with pytest.raises(ShuttingDown):
        server.admit(Session(replays_file=False))
    assert not server.sessions
