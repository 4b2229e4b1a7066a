"""The listening socket, with a bound on open connections.

A connection past `max_connections`, or past `per_address` from one address, is answered 503
(`too_many_connections`, JSON) and closed as it arrives, before aiohttp spends anything on it: a
flood of idle sockets is refused before memory grows, and one client cannot take every place.
Connections that dawdle are aiohttp's to close: the runner's `keepalive_timeout` ends one that
has not completed a request head within it, the first request included.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from typing import cast

from aiohttp import web

from ..errors import TooManyConnections
from ..metrics import Metrics
from ..wire import ErrorBody, ErrorDetail, encode

log = logging.getLogger(__name__)


def _refusal_bytes() -> bytes:
    """The whole 503 answer, made once: a flood of refusals costs a write each."""
    refusal = TooManyConnections("the server has as many open connections as it takes; try again shortly")
    body = encode(
        ErrorBody(error=ErrorDetail(code=refusal.code, message=refusal.message, type="server_error"))
    )
    head = (
        f"HTTP/1.1 {refusal.http_status} Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: {refusal.retry_after_s}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


_REFUSAL = _refusal_bytes()


class ConnectionLimit:
    """Counts for /healthz: `open` (once serving) and `refused` (also counted in `metrics`)."""

    def __init__(self, max_connections: int, per_address: int, metrics: Metrics) -> None:
        self.max_connections = max_connections
        self.per_address = per_address
        self.refused = 0
        self._refusals = metrics.refusals.labels(code=TooManyConnections.code)
        self._by_address: Counter[str] = Counter()
        self._server: web.Server | None = None

    @property
    def open(self) -> int:
        return len(self._server.connections) if self._server is not None else 0

    def protocol_factory(self, server: web.Server) -> Callable[[], asyncio.Protocol]:
        """What `loop.create_server` takes in place of `server`."""
        self._server = server
        return lambda: _Admission(server, self)

    def _admit(self, transport: asyncio.BaseTransport) -> str | None:
        """The peer's address, counted, or None when it must be refused."""
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) else "?"
        if self.open < self.max_connections and self._by_address[address] < self.per_address:
            self._by_address[address] += 1
            return address
        self.refused += 1
        self._refusals.inc()
        if self.refused % 1000 == 1:
            log.warning("%d connections are open (limits %d, %d from one address): new ones are refused",
                        self.open, self.max_connections, self.per_address)  # fmt: skip
        return None

    def _release(self, address: str) -> None:
        self._by_address[address] -= 1
        if not self._by_address[address]:
            del self._by_address[address]


class _Admission(asyncio.Protocol):
    """One connection: refused with the 503 as it arrives, or handed to aiohttp's protocol."""

    def __init__(self, server: web.Server, limit: ConnectionLimit) -> None:
        self._server = server
        self._limit = limit
        self._inner: asyncio.Protocol | None = None
        self._address = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        address = self._limit._admit(transport)
        if address is None:
            _refuse(transport)
            return
        self._address = address
        self._inner = self._server()
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is not None:  # admitted
            self._limit._release(self._address)
            self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


def _refuse(transport: asyncio.BaseTransport) -> None:
    """Write the 503 and close; nothing is read."""
    writable = cast(asyncio.WriteTransport, transport)  # uvloop's transports are no subclass of it
    writable.write(_REFUSAL)
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
