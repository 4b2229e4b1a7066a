"""The listening socket, with a bound on open connections.

A connection past `max_connections` is answered 503 (`too_many_connections`, JSON) and closed
as it arrives, before aiohttp spends anything on it: a flood of idle sockets is refused before
memory grows. Connections that dawdle are aiohttp's to close: the runner's `keepalive_timeout`
ends one that has not completed a request head within it, the first request included.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import cast

from aiohttp import web

from ..errors import TooManyConnections
from ..wire import ErrorBody, ErrorDetail, encode

log = logging.getLogger(__name__)

_REFUSAL = TooManyConnections("the server has as many open connections as it takes; try again shortly")


class ConnectionLimit:
    """Counts for /healthz: `open` (once serving) and `refused`."""

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self.refused = 0
        self._server: web.Server | None = None

    @property
    def open(self) -> int:
        return len(self._server.connections) if self._server is not None else 0

    def protocol_factory(self, server: web.Server) -> Callable[[], asyncio.Protocol]:
        """What `loop.create_server` takes in place of `server`."""
        self._server = server

        def make_protocol() -> asyncio.Protocol:
            if len(server.connections) < self.max_connections:
                return server()
            self.refused += 1
            if self.refused % 1000 == 1:
                log.warning("%d connections are open, the limit: new ones are refused", self.open)
            return _Refused()

        return make_protocol


class _Refused(asyncio.Protocol):
    """Writes the 503 and closes; reads nothing."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        body = encode(
            ErrorBody(error=ErrorDetail(code=_REFUSAL.code, message=_REFUSAL.message, type="server_error"))
        )
        head = (
            f"HTTP/1.1 {_REFUSAL.http_status} Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: {_REFUSAL.retry_after_s}\r\nConnection: close\r\n\r\n"
        )
        writable = cast(asyncio.WriteTransport, transport)  # uvloop's transports are no subclass of it
        writable.write(head.encode() + body)
        writable.close()


class LimitedSite(web.TCPSite):
    """A TCP site whose connections pass `limit` first."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, limit: ConnectionLimit) -> None:
        super().__init__(runner, host, port)
        self._limit = limit

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site; TCPSite.start would bind the plain server
        server = self._runner.server
        assert isinstance(server, web.Server), "start the site after runner.setup()"
        self._server = await asyncio.get_running_loop().create_server(
            self._limit.protocol_factory(server), self._host, self._port, backlog=self._backlog
        )
        self._bound_port = self._server.sockets[0].getsockname()[1]
