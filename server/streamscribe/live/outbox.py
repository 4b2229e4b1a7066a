"""A bounded per-client queue of events: the latest partial wins, finals are never dropped."""

from __future__ import annotations

import asyncio
from collections import deque

from ..errors import SlowConsumer
from ..wire import Partial, ServerMessage


class Outbox:
    """`push` never blocks: a queued partial is replaced by a newer one (so `seq` may skip a
    superseded partial for a slow client); past `max_messages` it raises SlowConsumer.
    `close()` ends `get()` once the queue is empty.
    """

    def __init__(self, max_messages: int) -> None:
        self._queue: deque[ServerMessage] = deque()
        self._max = max_messages
        self._available = asyncio.Event()
        self._closed = False

    def push(self, event: ServerMessage) -> None:
        if isinstance(event, Partial):
            stale = [queued for queued in self._queue if isinstance(queued, Partial)]
            for queued in stale:
                self._queue.remove(queued)
        if len(self._queue) >= self._max:
            raise SlowConsumer(f"the client fell {self._max} events behind and was disconnected")
        self._queue.append(event)
        self._available.set()

    def __len__(self) -> int:
        """The events queued: while there are any, `get` returns at once."""
        return len(self._queue)

    def close(self) -> None:
        self._closed = True
        self._available.set()

    async def get(self) -> ServerMessage | None:
        """The next event, or None once closed and drained."""
        while not self._queue:
            if self._closed:
                return None
            self._available.clear()
            await self._available.wait()
        return self._queue.popleft()
