"""The Redis parts against a real redis-server: the event bus (order, resume from any seq, expiry,
closing), the job queue (at-least-once delivery, heartbeats, hand-over, one version per job) and
node leases."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from streamscribe.errors import EventsExpired, NodeNameInUse
from streamscribe.store.redis_events import RedisEventBus, RedisEventFeed
from streamscribe.store.redis_jobs import RedisJobQueue
from streamscribe.store.redis_nodes import RedisNodeLease
from streamscribe.store.sqlite import SqliteTranscriptStore
from streamscribe.wire import Closed, Final, Ready, Word

from ..services import redis_server
from ..stored import create, sample


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    connection = aioredis.Redis.from_url(redis_url, socket_timeout=10)
    yield connection
    await connection.aclose()


async def alive(node: str) -> bool:
    return True


async def gone(node: str) -> bool:
    return False


def ready(session_id: str) -> Ready:
    return Ready(seq=1, session_id=session_id, protocol=1, model="m", sample_rate=16000)


def final(seq: int, text: str) -> Final:
    return Final(seq=seq, words=[Word(text=text, start=0.0, end=0.1, confidence=1.0)])


async def found(bus: RedisEventBus, session_id: str) -> RedisEventFeed:
    """The session's feed once its writer's first batch is in Redis (it writes in the background)."""
    async with asyncio.timeout(10):
        while True:
            if (feed := await bus.find(session_id)) is not None:
                return feed
            await asyncio.sleep(0.01)


async def collect(bus: RedisEventBus, session_id: str, after: int = 0) -> list[int]:
    feed = await bus.find(session_id)
    assert feed is not None
    return [event.seq async for event in feed.follow(after)]


async def test_events_reach_a_follower_on_another_bus_in_order_from_any_seq(client: aioredis.Redis) -> None:
    writer = RedisEventBus(client, "node-a", alive, max_events=1000, linger_s=60)
    reader = RedisEventBus(client, "node-b", alive, max_events=1000, linger_s=60)
    session = f"s-{uuid.uuid4().hex}"
    stream = writer.open(session, "alice")
    stream.append(ready(session))
    feed = await found(reader, session)
    assert feed.owner == "alice" and not feed.closed
    early = asyncio.create_task(collect(reader, session))
    for seq in range(2, 6):
        stream.append(final(seq, f"w{seq}"))
    stream.append(Closed(seq=6, audio_s=1.0, words=4))
    writer.finish(stream)
    async with asyncio.timeout(20):
        assert await early == [1, 2, 3, 4, 5, 6]
    assert await collect(reader, session, after=3) == [4, 5, 6]
    closed = await reader.find(session)
    assert closed is not None and closed.closed
    assert await closed.has_after(5) and not await closed.has_after(6)
    assert 0 < await client.ttl(f"streamscribe:events:{session}") <= 60, "a finished stream must expire"
    await reader.forget(session)
    assert await reader.find(session) is None


async def test_a_follower_behind_the_kept_events_is_told_they_expired(client: aioredis.Redis) -> None:
    bus = RedisEventBus(client, "node-a", alive, max_events=10, linger_s=60)
    session = f"s-{uuid.uuid4().hex}"
    stream = bus.open(session, None)
    stream.append(ready(session))
    for seq in range(2, 400):
        stream.append(final(seq, "w"))
    stream.append(Closed(seq=400, audio_s=1.0, words=398))
    await bus.close()
    feed = await bus.find(session)
    assert feed is not None
    with pytest.raises(EventsExpired):
        await feed.check_available(0)
    assert (await collect(bus, session, after=398)) == [399, 400]


async def test_a_follower_of_a_session_whose_node_died_is_ended(client: aioredis.Redis) -> None:
    dead_node = RedisEventBus(client, "node-dead", alive, max_events=100, linger_s=60)
    session = f"s-{uuid.uuid4().hex}"
    elsewhere = RedisEventBus(client, "node-b", gone, max_events=100, linger_s=60)
    stream = dead_node.open(session, None)
    stream.append(ready(session))
    feed = await found(elsewhere, session)  # its first batch is in Redis, `ready` with it
    stream.writer.cancel()  # the node is SIGKILLed: no `closed` will ever come
    assert not feed.closed
    assert 0 < await client.ttl(f"streamscribe:events:{session}"), "a dead node's events must expire"
    async with asyncio.timeout(20):
        assert [event.seq async for event in feed.follow(0)] == [1]


async def test_a_gap_inside_a_batch_is_reported_not_skipped(client: aioredis.Redis) -> None:
    bus = RedisEventBus(client, "node-a", alive, max_events=100, linger_s=60)
    session = f"s-{uuid.uuid4().hex}"
    for seq in (1, 2, 5, 6):  # events 3 and 4 were dropped from a full buffer
        await client.xadd(f"streamscribe:events:{session}", {"type": "final", "json": b"{}"}, id=f"{seq}-0")
    await client.hset(
        f"streamscribe:session:{session}", mapping={"owner": "", "node": "node-a", "closed": "0"}
    )
    feed = await bus.find(session)
    assert feed is not None
    seen: list[int] = []
    with pytest.raises(EventsExpired, match="events 3-4"):
        async for event in feed.follow(0):
            seen.append(event.seq)
    assert seen == [1, 2]


async def test_close_flushes_what_sessions_still_buffer(client: aioredis.Redis) -> None:
    bus = RedisEventBus(client, "node-a", alive, max_events=100, linger_s=60)
    session = f"s-{uuid.uuid4().hex}"
    stream = bus.open(session, None)
    stream.append(ready(session))
    stream.append(final(2, "last"))
    await bus.close()  # the shutdown: no await in between, yet nothing is lost
    assert await collect(bus, session) == [1, 2]


@pytest.fixture
def queue_parts(redis_url: str, tmp_path: Path) -> Iterator[tuple[SqliteTranscriptStore, redis.Redis]]:
    store = SqliteTranscriptStore(tmp_path / "db.sqlite3")
    client = redis.Redis.from_url(redis_url)
    client.delete("streamscribe:jobs")
    yield store, client
    client.close()
    store.close()


def new_transcript(store: SqliteTranscriptStore) -> str:
    transcript_id = uuid.uuid4().hex
    create(store, transcript_id, node="n")
    store.add_version(sample(transcript_id))
    return transcript_id


def test_a_job_left_by_a_silent_worker_is_taken_over_and_stored_once(
    queue_parts: tuple[SqliteTranscriptStore, redis.Redis],
) -> None:
    store, client = queue_parts
    queue = RedisJobQueue(client, store, visibility_timeout_s=1.0)
    transcript_id = new_transcript(store)
    assert queue.enqueue(transcript_id, b"{}")
    assert not queue.enqueue(transcript_id, b"{}"), "a second job for the same transcript was queued"
    first = queue.claim_next_job("worker-1")
    assert first is not None and first.record.state == "running"
    assert queue.claim_next_job("worker-2") is None, "a job in hand was handed out again"
    time.sleep(1.2)  # worker-1 sends no heartbeat past the visibility timeout
    second = queue.claim_next_job("worker-2")
    assert second is not None and second.job_id == first.job_id
    # both finish: at least once, stored once
    stored = [store.add_version(sample(transcript_id), job.job_id).version for job in (second, first)]
    assert stored == [2, 2] and [summary.version for summary in store.versions(transcript_id)] == [1, 2]
    queue.finish_job(second, None)
    queue.finish_job(first, None)
    assert store.get(transcript_id).state == "done"  # type: ignore[union-attr]
    assert client.xlen("streamscribe:jobs") == 0, "finished jobs must not stay in the stream"


def test_heartbeats_keep_a_long_job_with_its_worker(
    queue_parts: tuple[SqliteTranscriptStore, redis.Redis],
) -> None:
    store, client = queue_parts
    queue = RedisJobQueue(client, store, visibility_timeout_s=1.0)
    transcript_id = new_transcript(store)
    queue.enqueue(transcript_id, b"{}")
    job = queue.claim_next_job("worker-1")
    assert job is not None
    for _ in range(4):
        time.sleep(0.4)
        queue.heartbeat(job, "worker-1")
        assert queue.claim_next_job("worker-2") is None, "a job with heartbeats was stolen"
    queue.release_job(job)  # shutting down: another worker takes it at once
    taken = queue.claim_next_job("worker-2")
    assert taken is not None and taken.job_id == job.job_id


def test_a_job_the_queue_lost_is_queued_again(queue_parts: tuple[SqliteTranscriptStore, redis.Redis]) -> None:
    store, client = queue_parts
    queue = RedisJobQueue(client, store, visibility_timeout_s=30.0)
    transcript_id = new_transcript(store)
    assert store.queue_job(transcript_id, b"{}", "job-1")  # a crash came before its entry was added
    assert queue.requeue_lost() == [], "a job may be between its two writes: not lost at the first look"
    assert queue.requeue_lost() == [transcript_id]
    assert queue.requeue_lost() == []
    job = queue.claim_next_job("worker-1")
    assert job is not None and (job.record.id, job.job_id) == (transcript_id, "job-1")


def test_a_retired_worker_is_forgotten_unless_it_holds_a_job(
    queue_parts: tuple[SqliteTranscriptStore, redis.Redis],
) -> None:
    store, client = queue_parts
    queue = RedisJobQueue(client, store, visibility_timeout_s=30.0)

    def consumers() -> set[str]:
        return {
            consumer["name"].decode() for consumer in client.xinfo_consumers("streamscribe:jobs", "workers")
        }

    for _ in range(2):
        queue.enqueue(new_transcript(store), b"{}")
    done = queue.claim_next_job("worker-idle")
    assert done is not None
    queue.finish_job(done, None)
    job = queue.claim_next_job("worker-busy")
    assert job is not None and {"worker-busy", "worker-idle"} <= consumers()
    queue.retire_worker("worker-idle")
    queue.retire_worker("worker-busy")  # killed mid-job, say: its entry must stay claimable
    assert "worker-idle" not in consumers() and "worker-busy" in consumers()
    queue.finish_job(job, None)
    queue.retire_worker("worker-busy")
    assert "worker-busy" not in consumers()


def test_a_job_of_a_deleted_transcript_is_dropped(
    queue_parts: tuple[SqliteTranscriptStore, redis.Redis],
) -> None:
    store, client = queue_parts
    queue = RedisJobQueue(client, store, visibility_timeout_s=30.0)
    transcript_id = new_transcript(store)
    queue.enqueue(transcript_id, b"{}")
    store.delete(transcript_id)
    assert queue.claim_next_job("worker-1") is None
    assert client.xlen("streamscribe:jobs") == 0


async def test_a_node_name_is_held_by_one_running_process(client: aioredis.Redis) -> None:
    name = f"node-{uuid.uuid4().hex[:6]}"
    first = RedisNodeLease(client, name, lease_s=1.0)
    await first.acquire()
    renewing = asyncio.create_task(first.renew_forever())
    assert name in await first.live_nodes()
    with pytest.raises(NodeNameInUse):
        await RedisNodeLease(client, name, lease_s=1.0).acquire()  # waits out one lease, then refuses
    renewing.cancel()
    await first.release()
    assert name not in await first.live_nodes()
    second = RedisNodeLease(client, name, lease_s=1.0)
    await second.acquire()  # a name let go is free at once
    await second.release()
