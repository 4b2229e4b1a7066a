import pytest

from streamscribe.errors import SlowConsumer
from streamscribe.live.outbox import Outbox
from streamscribe.wire import Final, Partial, Word

WORD = Word(text="hi", start=0.0, end=0.1, confidence=1.0)


async def drain(outbox: Outbox) -> list[object]:
    outbox.close()
    events = []
    while (event := await outbox.get()) is not None:
        events.append(event)
    return events


async def test_a_newer_partial_replaces_a_queued_one_but_finals_stay() -> None:
    outbox = Outbox(10)
    outbox.push(Partial(seq=1, words=[WORD]))
    outbox.push(Final(seq=2, words=[WORD]))
    outbox.push(Partial(seq=3, words=[]))
    assert [event.seq for event in await drain(outbox)] == [2, 3]


async def test_a_client_that_falls_behind_is_refused_not_buffered() -> None:
    outbox = Outbox(3)
    for seq in range(3):
        outbox.push(Final(seq=seq, words=[WORD]))
    with pytest.raises(SlowConsumer):
        outbox.push(Final(seq=3, words=[WORD]))
