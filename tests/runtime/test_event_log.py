"""The per-session event log that followers read from any seq: ordering, resumption, bounds."""

from __future__ import annotations

import asyncio

import pytest

from streamscribe.errors import EventsExpired
from streamscribe.store.events import EventLog, InProcessEventBus
from streamscribe.wire import Closed, Final, Partial, Ready, Word


def ready(seq: int) -> Ready:
    return Ready(seq=seq, session_id="s", protocol=1, model="m", sample_rate=16000)


def word(text: str) -> Word:
    return Word(text=text, start=0.0, end=0.1, confidence=1.0)


async def collect(log: EventLog, after: int = 0) -> list[int]:
    return [logged.seq async for logged in log.follow(after)]


async def test_followers_get_events_in_order_from_any_seq_until_closed() -> None:
    log = EventLog("s", None, max_events=100)
    early = asyncio.create_task(collect(log))
    log.append(ready(1))
    log.append(Final(seq=2, words=[word("a")]))
    await asyncio.sleep(0)
    log.append(Final(seq=3, words=[word("b")]))
    log.append(Closed(seq=4, audio_s=1.0, words=2))
    assert await early == [1, 2, 3, 4]
    assert await collect(log, after=2) == [3, 4]
    assert await collect(log, after=4) == []
    assert log.closed and not await log.has_after(4) and await log.has_after(3)


async def test_a_newer_partial_replaces_the_partial_right_before_it_only() -> None:
    log = EventLog("s", None, max_events=100)
    log.append(ready(1))
    log.append(Partial(seq=2, words=[word("a")]))
    log.append(Partial(seq=3, words=[word("ab")]))
    log.append(Final(seq=4, words=[word("a")]))
    log.append(Partial(seq=5, words=[word("b")]))
    log.close()
    assert await collect(log) == [1, 3, 4, 5]
    assert await collect(log, after=2) == [3, 4, 5], "a follower that saw the replaced partial goes on"


async def test_the_log_is_bounded_and_says_so_to_followers_that_ask_for_dropped_events() -> None:
    log = EventLog("s", None, max_events=10)
    for seq in range(1, 31):
        log.append(Final(seq=seq, words=[word(str(seq))]))
    log.close()
    kept = await collect(log, after=29)
    assert kept == [30]
    with pytest.raises(EventsExpired) as raised:
        await collect(log, after=0)
    assert "/v1/transcripts/s" in raised.value.message
    assert (await collect(log, after=28))[0] == 29


async def test_finished_logs_linger_then_go() -> None:
    logs = InProcessEventBus(max_events=10, linger_s=60.0, max_finished=2)
    first = logs.open("a", None)
    assert await logs.find("a") is first
    logs.finish(first)
    assert await logs.find("a") is first, "a finished session can still be followed for a while"
    for name in ("b", "c"):
        logs.finish(logs.open(name, None))
    assert await logs.find("a") is None, "past max_finished, the oldest finished log goes"
    expired = InProcessEventBus(max_events=10, linger_s=0.0)
    expired.finish(expired.open("x", None))
    assert await expired.find("x") is None
