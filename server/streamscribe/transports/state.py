"""What every handler of one server shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from ..config import ServerSettings
from ..finalize.service import FinalizeService
from ..scheduler import DecodeScheduler

if TYPE_CHECKING:
    from .websocket import StreamConnection


@dataclass(slots=True)
class ServerState:
    settings: ServerSettings
    scheduler: DecodeScheduler
    finalizer: FinalizeService | None = None
    """Keeps transcripts and runs second passes; None when the server keeps nothing."""
    connections: set[StreamConnection] = field(default_factory=set)
    draining: bool = False


SERVER_STATE = web.AppKey("server_state", ServerState)
