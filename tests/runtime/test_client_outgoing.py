"""What the SDK's resuming stream sends (client/outgoing.py): audio in frames with its control
messages in place, the same again from where a server's copy ends, never a hole; the microphone
source's missing extra named, and its backlog bounded; a SyncClient that fails to open leaves no
thread behind. (The buffer awaits, so these tests run on a loop.)"""

from __future__ import annotations

import asyncio
import sys
import threading
import tracemalloc
import types
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from streamscribe.client import Client, Microphone, SyncClient, microphone
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


class FakeInputStream:
    """sounddevice.RawInputStream as the microphone source uses it: the test plays the device,
    calling `callback` with each block as PortAudio's thread would."""

    opened: ClassVar[list[FakeInputStream]] = []

    def __init__(self, *, callback: Callable[..., None], blocksize: int, **settings: Any) -> None:
        self.callback = callback
        self.block = bytes(2 * blocksize)
        FakeInputStream.opened.append(self)

    def __enter__(self) -> FakeInputStream:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def play(self, blocks: int) -> None:
        for _ in range(blocks):
            self.callback(self.block, len(self.block) // 2, None, None)


async def test_a_microphone_the_stream_cannot_keep_up_with_fails_once_and_holds_no_more_audio(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", types.SimpleNamespace(RawInputStream=FakeInputStream))
    block_samples = 160  # 10 ms
    mic = Microphone(None, 16000, max_backlog_s=0.025)  # 3 blocks may wait
    async with mic.opened(block_samples) as blocks:
        device = FakeInputStream.opened[-1]
        device.play(2)
        assert [await anext(blocks), await anext(blocks)] == [device.block] * 2
        tracemalloc.start()
        try:
            held_bytes = []
            for _ in range(2):
                device.play(50_000)  # 8 minutes more, nobody reading
                await asyncio.sleep(0.05)  # the loop takes each block
                held_bytes.append(tracemalloc.get_traced_memory()[0])
        finally:
            tracemalloc.stop()
        with pytest.raises(RuntimeError, match=r"waited more than 0.025 s to be sent"):
            await anext(blocks)
        with pytest.raises(StopAsyncIteration):
            await anext(blocks)  # said once
    grown_bytes = held_bytes[1] - held_bytes[0]  # the first round's one-off allocations aside
    assert grown_bytes < 32 * 1024, "after the overflow nothing more is kept for the device's blocks"


def stream_client_threads() -> int:
    return sum(thread.name == "streamscribe-client" for thread in threading.enumerate())


def test_a_sync_client_that_fails_to_open_leaves_no_loop_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse(client: Client) -> Client:
        raise OSError("no sockets left")

    monkeypatch.setattr(Client, "__aenter__", refuse)
    before = stream_client_threads()
    with pytest.raises(OSError, match="no sockets left"):
        with SyncClient("http://127.0.0.1:9"):
            pytest.fail("opened")
    assert stream_client_threads() == before
