"""A bounded per-client queue of events (the latest partial wins, finals are never dropped), and
the pump that fills it and the session's event log."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

from ..errors import SlowConsumer
from ..stream.driver import SessionDriver
from ..stream.event_log import EventLog, EventLogs
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


async def pump_events(
    driver: SessionDriver,
    event_logs: EventLogs,
    event_log: EventLog,
    outbox: Outbox | None = None,
    on_slow_consumer: Callable[[SlowConsumer], Awaitable[None]] | None = None,
) -> None:
    """Every event of the session, until `closed`, into its event log (for followers) and the
    client's outbox. A client that falls behind its outbox has its stream stopped (what was
    heard is kept) after `on_slow_consumer` has told it why. The log stays readable afterwards."""
    try:
        async for event in driver.events():
            event_log.append(event)
            if outbox is not None:
                outbox.push(event)
    except SlowConsumer as exc:
        driver.stop(wait_for_transcript=False)
        if on_slow_consumer is not None:
            await on_slow_consumer(exc)
        await driver.wait_closed()
    finally:
        if outbox is not None:
            outbox.close()
        event_logs.finish(event_log)
