"""What every handler of one server shares."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from ..config import ServerSettings
from ..errors import StreamscribeError
from ..finalize.service import FinalizeService
from ..live.sessions import SessionHost
from ..metrics import Metrics
from ..store.backends import Backends
from .connections import ConnectionLimit


@dataclass(frozen=True, slots=True)
class ServerState:
    settings: ServerSettings
    sessions: SessionHost
    """Admission and the path every session takes."""
    finalizer: FinalizeService
    """Keeps transcripts and runs second passes."""
    connections: ConnectionLimit
    backends: Backends
    """The stores this node uses (for /readyz)."""
    metrics: Metrics
    """What GET /metrics reports; transports count their refusals in it (`count_refusal`)."""

    def count_refusal(self, error: StreamscribeError) -> None:
        """Count a request, stream or connection refused with `error`, by its code; call it once
        for each refusal answered."""
        self.metrics.refusals.labels(code=error.code).inc()


SERVER_STATE = web.AppKey("server_state", ServerState)
