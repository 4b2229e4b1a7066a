"""What every handler of one server shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web

from ..config import ServerSettings
from ..errors import Overloaded, ShuttingDown, UnsupportedLanguage
from ..finalize.service import FinalizeService
from ..scheduler import DecodeScheduler
from ..stream.driver import SessionDriver
from ..stream.event_log import EventLogs


class ActiveSession(Protocol):
    """A live stream or a file replay, as admission control and shutdown see it."""

    driver: SessionDriver | None
    replays_file: bool

    def drain(self) -> None:
        """Server shutdown: end the stream, keeping what was heard."""


@dataclass(slots=True)
class ServerState:
    settings: ServerSettings
    scheduler: DecodeScheduler
    event_logs: EventLogs
    finalizer: FinalizeService
    """Keeps transcripts and runs second passes."""
    sessions: set[ActiveSession] = field(default_factory=set)
    draining: bool = False

    def live_language(self, requested: str | None) -> str | None:
        """The language a session asks for (or the server's default), if the live model serves it."""
        engine = self.scheduler.engine
        language = requested or self.settings.stream.language
        if not engine.multilingual and language not in (None, "en"):
            raise UnsupportedLanguage(
                f"the live model {engine.name!r} is English-only; language {language!r} is not served "
                "(start the server with a multilingual --model)"
            )
        return language

    def admit(self, session: ActiveSession) -> None:
        """Count the session in, or raise ShuttingDown / Overloaded; `sessions.discard` it at its end."""
        if self.draining:
            raise ShuttingDown("the server is shutting down")
        if len(self.sessions) >= self.settings.max_sessions:
            raise Overloaded(f"all {self.settings.max_sessions} sessions are in use; retry later")
        replays = sum(1 for running in self.sessions if running.replays_file)
        if session.replays_file and replays >= self.settings.max_uploads:
            raise Overloaded(f"{self.settings.max_uploads} files are being transcribed already; retry later")
        self.sessions.add(session)


SERVER_STATE = web.AppKey("server_state", ServerState)
