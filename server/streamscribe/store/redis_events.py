"""The EventBus on Redis Streams: every session's events in its own stream, readable from any node.

Keys: `streamscribe:events:{id}`, a stream whose entry ids are `{seq}-0` (so a follower reads
after any seq with one XREAD), trimmed to about `max_events`; `streamscribe:session:{id}`, a hash
of the session's owner, node and whether it is closed. While the session runs its node keeps both
alive (they expire `open_ttl_s` after its last refresh, so a node that dies leaves nothing for
good); once it ends they expire `linger_s` later, as the in-process log is dropped.

`append` never blocks the session: events go to a bounded buffer that one task per stream
writes in batches (a pipeline each). If Redis is unreachable the task retries; when the buffer is
full its oldest events are dropped, and a follower that needed them is told they expired.
A follower ends with the session's `closed`, or once the session's node is gone (its lease lapsed).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from ..errors import EventsExpired
from ..wire import Closed, ServerMessage, encode
from .base import EventStream, LoggedEvent
from .failures import BackendFailure

log = logging.getLogger(__name__)

_BLOCK_MS = 2000
"""How long a follower's read waits in Redis for the next event (under the client's socket timeout)."""
_READ_BATCH = 500
_RETRY_S = 0.5
_FLUSH_TIMEOUT_S = 5.0
_MIN_OPEN_TTL_S = 60.0
REDIS_FAILURES = (redis.exceptions.RedisError,)
"""What Redis raises when it cannot be reached or cannot do what was asked (READONLY, OOM...)."""

NodeAlive = Callable[[str], Awaitable[bool]]
"""Whether the node of that name holds its lease now."""


def events_key(session_id: str) -> str:
    return f"streamscribe:events:{session_id}"


def session_key(session_id: str) -> str:
    return f"streamscribe:session:{session_id}"


class RedisEventStream:
    """One session's writing end: `append` buffers, a task writes (see the module)."""

    def __init__(self, bus: RedisEventBus, session_id: str, owner: str | None) -> None:
        self.session_id = session_id
        self.owner = owner
        self._bus = bus
        self._pending: collections.deque[tuple[int, str, bytes]] = collections.deque(maxlen=bus.max_events)
        self._wake = asyncio.Event()
        self._wake.set()  # the first batch writes the session's hash even before any event
        self._closing = False
        self.writer = asyncio.create_task(self._write_forever(), name=f"events-{session_id}")

    def append(self, event: ServerMessage) -> None:
        self._pending.append((event.seq, str(event.__struct_config__.tag), encode(event)))
        if isinstance(event, Closed):
            self.close()
        self._wake.set()

    def close(self) -> None:
        self._closing = True
        self._wake.set()

    async def _write_forever(self) -> None:
        """Write the buffer until the stream is closed and empty, refreshing the keys' expiry
        meanwhile; then mark it closed and let it expire."""
        meta_written = False
        refresh_s = self._bus.open_ttl_s / 3
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), refresh_s)
            self._wake.clear()
            closing = self._closing
            batch = list(self._pending)
            try:
                await self._write(batch, write_meta=not meta_written, closing=closing)
            except REDIS_FAILURES as exc:
                log.warning(
                    "writing events of %s to Redis failed (%s); retrying", self.session_id, type(exc).__name__
                )
                await asyncio.sleep(_RETRY_S)
                self._wake.set()
                continue
            meta_written = True
            while batch and self._pending and self._pending[0][0] <= batch[-1][0]:
                self._pending.popleft()
            if closing and not self._pending:
                return

    async def _write(self, batch: list[tuple[int, str, bytes]], *, write_meta: bool, closing: bool) -> None:
        bus = self._bus
        keys = (session_key(self.session_id), events_key(self.session_id))
        async with bus.redis.pipeline(transaction=False) as pipe:
            if write_meta:
                meta: Any = {"owner": self.owner or "", "node": bus.node_id, "closed": "0"}
                pipe.hset(keys[0], mapping=meta)
            for seq, kind, json in batch:
                pipe.xadd(
                    keys[1],
                    {"type": kind, "json": json},
                    id=f"{seq}-0",
                    maxlen=bus.max_events,
                    approximate=True,
                )
            if closing:
                pipe.hset(keys[0], "closed", "1")
            ttl_s = bus.linger_s if closing else bus.open_ttl_s
            for key in keys:
                pipe.expire(key, max(1, int(ttl_s)))
            results = await pipe.execute(raise_on_error=False)
        for result in results:
            if isinstance(result, redis.exceptions.ResponseError) and "equal or smaller" in str(result):
                continue  # written already by a batch whose reply was lost: at-least-once, deduplicated by id
            if isinstance(result, Exception):
                raise result


class RedisEventFeed:
    """One session's reading end, on any node. Its methods raise BackendFailure when Redis
    cannot be reached (a follower already reading waits for it instead)."""

    def __init__(
        self,
        redis_client: aioredis.Redis,
        session_id: str,
        owner: str | None,
        *,
        closed: bool,
        node: str,
        node_alive: NodeAlive,
    ) -> None:
        self.session_id = session_id
        self.owner = owner
        self.closed = closed
        self._redis = redis_client
        self._node = node
        self._node_alive = node_alive

    async def check_available(self, after_seq: int) -> None:
        with redis_as_backend_failure():
            first: Any = await self._redis.xrange(events_key(self.session_id), count=1)
        if first:
            self._check_next(_seq(first[0][0]), after_seq)

    async def has_after(self, after_seq: int) -> bool:
        with redis_as_backend_failure():
            last: Any = await self._redis.xrevrange(events_key(self.session_id), count=1)
        return bool(last) and _seq(last[0][0]) > after_seq

    async def follow(self, after_seq: int = 0) -> AsyncIterator[LoggedEvent]:
        key = events_key(self.session_id)
        while True:
            try:
                reply: Any = await self._redis.xread(
                    {key: f"{after_seq}-0"}, count=_READ_BATCH, block=_BLOCK_MS
                )
                ended = not reply and await self._ended()
            except REDIS_FAILURES as exc:  # Redis restarting, say: the follower waits, then reads on
                log.warning(
                    "following %s: reading from Redis failed (%s)", self.session_id, type(exc).__name__
                )
                await asyncio.sleep(_RETRY_S)
                continue
            if ended:
                return
            for entry_id, fields in reply[0][1] if reply else []:
                seq = _seq(entry_id)
                self._check_next(seq, after_seq)  # Redis keeps every seq: a gap is events dropped
                after_seq = seq
                kind = fields[b"type"].decode()
                yield LoggedEvent(seq, kind, fields[b"json"])
                if kind == "closed":
                    return

    async def _ended(self) -> bool:
        """Closed (and read to its end by the caller), expired, or its node is gone."""
        closed: Any = await self._redis.hget(session_key(self.session_id), "closed")
        return closed is None or closed == b"1" or not await self._node_alive(self._node)

    def _check_next(self, seq: int, after_seq: int) -> None:
        if seq > after_seq + 1:
            raise EventsExpired(
                f"events {after_seq + 1}-{seq - 1} of session {self.session_id} are no longer "
                f"kept; read the transcript at /v1/transcripts/{self.session_id}"
            )


class RedisEventBus:
    """`open` per session on its node, `find` from any node; `close()` at shutdown flushes."""

    def __init__(
        self,
        redis_client: aioredis.Redis,
        node_id: str,
        node_alive: NodeAlive,
        *,
        max_events: int,
        linger_s: float,
    ) -> None:
        self.redis = redis_client
        self.node_id = node_id
        self.max_events = max_events
        self.linger_s = linger_s
        self.open_ttl_s = max(linger_s, _MIN_OPEN_TTL_S)
        self._node_alive = node_alive
        self._streams: dict[str, RedisEventStream] = {}

    def open(self, session_id: str, owner: str | None) -> RedisEventStream:
        stream = RedisEventStream(self, session_id, owner)
        self._streams[session_id] = stream
        stream.writer.add_done_callback(lambda _task: self._streams.pop(session_id, None))
        return stream

    def finish(self, stream: EventStream) -> None:
        stream.close()

    async def find(self, session_id: str) -> RedisEventFeed | None:
        """A session of this node is found at once (its first events may still be on their way)."""
        if (local := self._streams.get(session_id)) is not None:
            return self._feed(session_id, local.owner, closed=False, node=self.node_id)
        with redis_as_backend_failure():
            meta: Any = await self.redis.hgetall(session_key(session_id))
        if not meta:
            return None
        owner = meta.get(b"owner", b"").decode() or None
        node = meta.get(b"node", b"").decode()
        return self._feed(session_id, owner, closed=meta.get(b"closed") == b"1", node=node)

    def _feed(self, session_id: str, owner: str | None, *, closed: bool, node: str) -> RedisEventFeed:
        return RedisEventFeed(
            self.redis, session_id, owner, closed=closed, node=node, node_alive=self._node_alive
        )

    async def forget(self, session_id: str) -> None:
        with redis_as_backend_failure():
            closed: Any = await self.redis.hget(session_key(session_id), "closed")
            if closed == b"1":
                await self.redis.delete(session_key(session_id), events_key(session_id))

    async def close(self) -> None:
        """Wait (up to a few seconds) for every finished stream's writer to deliver its events."""
        streams = list(self._streams.values())
        for stream in streams:
            stream.close()
        writers = [stream.writer for stream in streams]
        if writers:
            _done, late = await asyncio.wait(writers, timeout=_FLUSH_TIMEOUT_S)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
            if late:
                log.warning("%d sessions' last events could not be written to Redis", len(late))


@contextlib.contextmanager
def redis_as_backend_failure() -> Any:
    """Redis failing under a request or at start: a storage failure (503), never a 500."""
    try:
        yield
    except REDIS_FAILURES as exc:
        raise BackendFailure(f"Redis failed ({type(exc).__name__})") from exc


def _seq(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[0])
