"""The in-process EventBus: every session's events, kept so that any number of followers can read
them from any `seq` (GET /v1/sessions/{id}/events), while the session runs and for a while after
it closed.

Bounded: a newer partial replaces the partial right before it, each log keeps at most
`max_events`, and finished logs are dropped after `linger_s` (or when too many are kept).
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import OrderedDict
from collections.abc import AsyncIterator

from ..errors import EventsExpired
from ..wire import Closed, Partial, ServerMessage, encode
from .base import EventStream, LoggedEvent


class EventLog:
    """One session's events in memory, both its EventStream and its EventFeed: `append` each
    event in seq order; `follow` from any seq."""

    def __init__(self, session_id: str, owner: str | None, max_events: int) -> None:
        self.session_id = session_id
        self.owner = owner
        self._max_events = max_events
        self._events: list[LoggedEvent] = []
        self._seqs: list[int] = []
        self._dropped_until = 0
        """Every event with a seq up to this one has been dropped."""
        self._changed = asyncio.Event()
        self.closed = False

    def append(self, event: ServerMessage) -> None:
        logged = LoggedEvent(event.seq, str(event.__struct_config__.tag), encode(event))
        if isinstance(event, Partial) and self._events and self._events[-1].type == "partial":
            self._events.pop()  # superseded: a follower reading from here gets the newer one
            self._seqs.pop()
        self._events.append(logged)
        self._seqs.append(logged.seq)
        if len(self._events) > self._max_events:
            excess = len(self._events) - self._max_events + self._max_events // 10  # drop in batches
            self._dropped_until = self._seqs[excess - 1]
            del self._events[:excess], self._seqs[:excess]
        if isinstance(event, Closed):
            self.close()
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    async def check_available(self, after_seq: int) -> None:
        self._check_available(after_seq)

    def _check_available(self, after_seq: int) -> None:
        if after_seq < self._dropped_until:
            raise EventsExpired(
                f"events {after_seq + 1}-{self._dropped_until} of session {self.session_id} are no longer "
                f"kept; read the transcript at /v1/transcripts/{self.session_id}"
            )

    async def has_after(self, after_seq: int) -> bool:
        return bool(self._seqs) and self._seqs[-1] > after_seq

    async def follow(self, after_seq: int = 0) -> AsyncIterator[LoggedEvent]:
        """Every event with a seq above `after_seq`, as it comes, until the log is closed.
        Raises EventsExpired if the follower falls so far behind that its next events are gone."""
        while True:
            self._check_available(after_seq)
            changed = self._changed
            index = bisect.bisect_right(self._seqs, after_seq)
            pending = self._events[index:]
            for logged in pending:
                yield logged
            if pending:
                after_seq = pending[-1].seq
                continue
            if self.closed:
                return
            await changed.wait()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


class InProcessEventBus:
    """The logs of running sessions, and of finished ones for `linger_s` (at most `max_finished`)."""

    def __init__(self, max_events: int, linger_s: float, max_finished: int = 256) -> None:
        self._max_events = max_events
        self._linger_s = linger_s
        self._max_finished = max_finished
        self._running: dict[str, EventLog] = {}
        self._finished: OrderedDict[str, tuple[float, EventLog]] = OrderedDict()

    def open(self, session_id: str, owner: str | None) -> EventLog:
        log = EventLog(session_id, owner, self._max_events)
        self._running[session_id] = log
        return log

    def finish(self, stream: EventStream) -> None:
        """The session closed: its log stays readable for `linger_s`."""
        stream.close()
        log = self._running.pop(stream.session_id, None)
        if log is not None:
            self._finished[log.session_id] = (time.monotonic(), log)
        self._prune()

    async def find(self, session_id: str) -> EventLog | None:
        self._prune()
        if session_id in self._running:
            return self._running[session_id]
        finished = self._finished.get(session_id)
        return finished[1] if finished else None

    async def forget(self, session_id: str) -> None:
        """A finished session's transcript was deleted: its events go too (a running session's stay)."""
        self._finished.pop(session_id, None)

    async def close(self) -> None:
        """Nothing is pending: every event is in memory as soon as it is appended."""

    def _prune(self) -> None:
        deadline = time.monotonic() - self._linger_s
        while self._finished:
            finished_at, _log = next(iter(self._finished.values()))
            if finished_at > deadline and len(self._finished) <= self._max_finished:
                return
            self._finished.popitem(last=False)
