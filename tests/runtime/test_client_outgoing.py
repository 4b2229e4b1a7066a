"""What the SDK's resuming stream sends (client/outgoing.py): audio in frames with its control
messages in place, the same again from where a server's copy ends, never a hole; and the
microphone source's missing extra named. (The buffer awaits, so these tests run on a loop.)"""

from __future__ import annotations

import asyncio
import sys

import pytest

from streamscribe.client import microphone
from streamscribe.client.outgoing import Outgoing
from streamscribe.wire import ClientMessage, Finalize, Stop

SECOND = 100  # bytes per "second": small numbers keep the offsets readable


async def sent(outgoing: Outgoing, offset: int) -> list[bytes | ClientMessage]:
    """Everything a connection from `offset` gets, up to and with `stop`."""
    return [item async for item in outgoing.items_from(offset)]


async def test_audio_goes_in_frames_with_finalize_and_stop_where_they_were_asked() -> None:
    outgoing = Outgoing(SECOND, keep_bytes=10 * SECOND, frame_bytes=40)
    await outgoing.append(bytes(range(50)))
    await outgoing.mark(Finalize())
    await outgoing.append(bytes(range(50, 60)))
    await outgoing.mark(Stop())
    items = await sent(outgoing, 0)
    assert items == [bytes(range(40)), bytes(range(40, 50)), Finalize(), bytes(range(50, 60)), Stop()]
    assert outgoing.sent_s == 0.6


async def test_a_resumed_connection_gets_the_audio_again_from_the_servers_copy_and_what_followed() -> None:
    outgoing = Outgoing(SECOND, keep_bytes=10 * SECOND, frame_bytes=1000)
    await outgoing.append(bytes(range(60)))
    await outgoing.mark(Finalize())
    await outgoing.mark(Stop())
    await sent(outgoing, 0)  # the first connection got it all, then dropped
    offset = outgoing.offset_of(0.31)  # the server holds 31 bytes: 15.5 samples, rounded to whole ones
    assert offset == 32
    assert await sent(outgoing, offset) == [bytes(range(32, 60)), Finalize(), Stop()]
    assert await sent(outgoing, outgoing.offset_of(0.6)) == [Finalize(), Stop()], "repeated: harmless"
    assert outgoing.offset_of(99.0) == 60, "never past what was sent"


async def test_only_the_last_keep_bytes_are_held_and_a_resume_from_before_them_is_refused() -> None:
    outgoing = Outgoing(SECOND, keep_bytes=2 * SECOND, frame_bytes=20)
    connection = outgoing.items_from(0)
    for second in range(6):
        await outgoing.append(bytes([second]) * SECOND)
        for _ in range(SECOND // 20):
            await anext(connection)
    assert outgoing.kept_from >= 6 * SECOND - 2 * SECOND - 20
    assert outgoing.kept_from <= 6 * SECOND - 2 * SECOND
    with pytest.raises(ValueError, match="no longer kept"):
        await anext(outgoing.items_from(outgoing.offset_of(1.0)))
    await outgoing.mark(Stop())
    resent = await sent(outgoing, outgoing.offset_of(4.0))
    assert resent == [bytes([4]) * 20] * 5 + [bytes([5]) * 20] * 5 + [Stop()]


async def test_the_source_waits_while_keep_bytes_are_not_sent() -> None:
    outgoing = Outgoing(SECOND, keep_bytes=SECOND, frame_bytes=SECOND)
    await outgoing.append(bytes(SECOND))
    waiting = asyncio.create_task(outgoing.append(bytes(SECOND)))
    await asyncio.sleep(0)
    assert not waiting.done(), "a second of audio waits already: the source is held back"
    connection = outgoing.items_from(0)
    assert await anext(connection) == bytes(SECOND)
    await asyncio.wait_for(waiting, 1)


def test_the_microphone_names_its_extra_where_sounddevice_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # an import of it raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'streamscribe\[mic\]'"):
        microphone()
