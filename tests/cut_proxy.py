"""A TCP proxy in front of a real server whose connections a test can cut, as a phone that changes
networks cuts them: no WebSocket close frame, no FIN from the client's side, the socket just goes
(an abort sends an RST to both ends)."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit


class CutProxy:
    """Listens on a free loopback port and forwards every connection to `target` (http://host:port).
    `cut()` aborts every connection open now; new ones are forwarded as before."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self._target_host = parts.hostname or "127.0.0.1"
        self._target_port = parts.port or 80
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._pumps: set[asyncio.Task[None]] = set()
        self.connections = 0
        """Connections accepted so far."""
        self.connected = asyncio.Event()
        """Set at each accepted connection (clear it to wait for the next one)."""

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT of the proxy."""
        assert self._server is not None, "use the proxy inside `async with`"
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aenter__(self) -> CutProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        await self._server.wait_closed()

    def cut(self) -> None:
        """Abort every open connection at once, both sides, without a goodbye."""
        for client, upstream in list(self._pairs):
            client.transport.abort()
            upstream.transport.abort()
        self._pairs.clear()

    async def _accept(self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream = await asyncio.open_connection(self._target_host, self._target_port)
        except OSError:
            client.transport.abort()
            return
        pair = (client, upstream)
        self._pairs.add(pair)
        self.connections += 1
        self.connected.set()
        pumps = {
            asyncio.create_task(_pump(client_reader, upstream)),
            asyncio.create_task(_pump(upstream_reader, client)),
        }
        self._pumps |= pumps
        await asyncio.gather(*pumps, return_exceptions=True)
        self._pumps -= pumps
        self._pairs.discard(pair)
        for writer in pair:
            writer.transport.abort()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
