"""Resume's state: the buffer a resuming client's missed events come from (bounded, newest
partial only), and the tokens (one key's, for a window)."""

from __future__ import annotations

import asyncio

import pytest

from streamscribe.audio import PcmConverter
from streamscribe.errors import EventsExpired, ResumeExpired
from streamscribe.live.outbox import Outbox
from streamscribe.live.resume import Attachment, RecentEvents, Resumptions
from streamscribe.live.sessions import Slot
from streamscribe.store.base import ApiKey
from streamscribe.wire import Final, Partial, SpeechStarted, Word

WORD = Word(text="hello", start=0.0, end=0.5, confidence=0.9)


def test_a_newer_partial_replaces_the_one_right_before_it() -> None:
    recent = RecentEvents(max_events=10)
    for event in (
        SpeechStarted(seq=1, at=0.0),
        Partial(seq=2, words=[WORD]),
        Partial(seq=3, words=[WORD]),
        Final(seq=4, words=[WORD]),
        Partial(seq=5, words=[WORD]),
    ):
        recent.append(event)
    assert [event.seq for event in recent.after(0)] == [1, 3, 4, 5]
    assert [event.seq for event in recent.after(3)] == [4, 5]
    assert recent.after(5) == []
    assert recent.last_seq == 5


def test_events_past_the_bound_are_dropped_and_asking_for_them_is_refused() -> None:
    recent = RecentEvents(max_events=3)
    for seq in range(1, 7):
        recent.append(Final(seq=seq, words=[WORD]))
    assert [event.seq for event in recent.after(3)] == [4, 5, 6]
    with pytest.raises(EventsExpired):
        recent.after(2)


def converter() -> PcmConverter:
    return PcmConverter("pcm_s16le", 16000, 1)


async def test_a_token_is_refused_for_another_key_and_after_its_window() -> None:
    resumptions = Resumptions(window_s=0.05, max_events=8)
    owner = ApiKey(name="alice")
    slot = Slot("session-1", "websocket", caller=owner)
    token = resumptions.offer(slot, converter)
    assert token is not None
    attachment = Attachment(Outbox(8))
    slot.attachment = attachment
    assert resumptions.detach(slot, attachment), "a resumable stream waits for its client"
    with pytest.raises(ResumeExpired):
        await resumptions.resume(token, ApiKey(name="mallory"), 0, Attachment(Outbox(8)))
    assert await resumptions.resume(token, owner, 0, Attachment(Outbox(8))) is slot
    assert resumptions.detach(slot, slot.attachment)  # type: ignore[arg-type]
    assert slot.resumable is not None and slot.resumable.expiry is not None
    loop = asyncio.get_running_loop()
    await asyncio.sleep(slot.resumable.expiry.when() - loop.time() + 0.01)  # the window's timer runs first
    with pytest.raises(ResumeExpired):
        await resumptions.resume(token, owner, 0, Attachment(Outbox(8)))


def test_tokens_name_their_node_on_a_cluster_and_none_is_offered_without_a_window() -> None:
    assert (Resumptions(30.0, 8, node="node-a").offer(Slot("s", "websocket"), converter) or "").startswith(
        "node-a."
    )
    assert Resumptions(0.0, 8).offer(Slot("s", "websocket"), converter) is None


async def test_a_comeback_for_events_no_longer_kept_leaves_the_connected_stream_alone() -> None:
    resumptions = Resumptions(window_s=30.0, max_events=2)
    slot = Slot("session-1", "websocket")
    token = resumptions.offer(slot, converter)
    assert token is not None and slot.resumable is not None
    superseded: list[bool] = []

    async def supersede() -> None:
        superseded.append(True)

    connected = Attachment(Outbox(8), supersede=supersede)
    slot.attachment = connected
    for seq in range(1, 6):
        slot.resumable.recent.append(Final(seq=seq, words=[WORD]))
    with pytest.raises(EventsExpired):
        await resumptions.resume(token, None, 1, Attachment(Outbox(8)))
    assert slot.attachment is connected and not superseded, "the working connection was kept"
    comeback = Attachment(Outbox(8))
    assert await resumptions.resume(token, None, 4, comeback) is slot
    assert superseded and slot.attachment is comeback
