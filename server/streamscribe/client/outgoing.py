"""What a stream sends, in order, kept so that a resumed connection can send it again: the audio
(pcm_s16le mono bytes) and the control messages between it (`finalize`, the final `stop`)."""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import AsyncIterator
from functools import partial

from ..wire import ClientMessage, Stop

_SAMPLE_BYTES = 2
"""pcm_s16le mono."""


class Outgoing:
    """The stream's audio and control messages by audio offset (bytes since the first sample).

    `append` takes the source's audio and waits while `keep_bytes` of it are not sent yet (a
    dropped connection, a server that reads slowly); `mark` puts a control message after the
    audio taken so far. `items_from(offset)` is what one connection sends: the audio from
    `offset` in frames of at most `frame_bytes`, each control message at its place, until `stop`.
    What was sent stays for `keep_bytes` behind the furthest any connection got, so a resumed
    connection can start where the server's copy ends (`offset_of`, `kept_from`)."""

    def __init__(self, bytes_per_s: int, keep_bytes: int, frame_bytes: int) -> None:
        self.bytes_per_s = bytes_per_s
        self._keep_bytes = max(keep_bytes, frame_bytes)
        self._frame_bytes = frame_bytes - frame_bytes % _SAMPLE_BYTES
        self._audio = bytearray()
        self.kept_from = 0
        """The offset of the oldest byte still held: a resume from before it cannot be served."""
        self._end = 0
        self._sent = 0
        self._marks: list[tuple[int, ClientMessage]] = []
        self._changed = asyncio.Condition()

    @property
    def stopped(self) -> bool:
        """`stop` is marked: nothing more is taken."""
        return bool(self._marks) and isinstance(self._marks[-1][1], Stop)

    @property
    def sent_s(self) -> float:
        """Seconds of audio the furthest connection has been given."""
        return self._sent / self.bytes_per_s

    def offset_of(self, seconds: float) -> int:
        """The offset of `seconds` of audio (whole samples; never past what was sent)."""
        samples = round(seconds * self.bytes_per_s / _SAMPLE_BYTES)
        return min(samples * _SAMPLE_BYTES, self._sent)

    async def append(self, audio: bytes) -> None:
        """Take the next audio; waits while `keep_bytes` are waiting to be sent."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._end - self._sent < self._keep_bytes)
            if self.stopped:
                raise RuntimeError("audio after stop")
            self._audio += audio
            self._end += len(audio)
            self._changed.notify_all()

    async def mark(self, message: ClientMessage) -> None:
        """Put `message` after the audio taken so far (ignored once `stop` is marked)."""
        async with self._changed:
            if not self.stopped:
                self._marks.append((self._end, message))
                self._changed.notify_all()

    async def items_from(self, offset: int) -> AsyncIterator[bytes | ClientMessage]:
        """What one connection sends from `offset` (0, or `offset_of` what the server holds; not
        before `kept_from`): audio frames and control messages, waiting for more, until `stop`.
        A message at exactly `offset` is sent (again): `finalize` and `stop` may be repeated."""
        if offset < self.kept_from:
            raise ValueError(f"offset {offset} is no longer kept (from {self.kept_from})")
        position = offset
        next_mark = bisect.bisect_left(self._marks, offset, key=lambda mark: mark[0])
        while True:
            async with self._changed:
                await self._changed.wait_for(partial(self._has_after, position, next_mark))
                item: bytes | ClientMessage
                if next_mark < len(self._marks) and self._marks[next_mark][0] <= position:
                    item = self._marks[next_mark][1]
                    next_mark += 1
                else:
                    upto = self._marks[next_mark][0] if next_mark < len(self._marks) else self._end
                    upto = min(upto, position + self._frame_bytes)
                    item = bytes(self._audio[position - self.kept_from : upto - self.kept_from])
                    position = upto
                    self._note_sent(position)
            yield item
            if isinstance(item, Stop):
                return

    def _has_after(self, position: int, next_mark: int) -> bool:
        return self._end > position or next_mark < len(self._marks)

    def _note_sent(self, position: int) -> None:
        if position <= self._sent:
            return
        self._sent = position
        surplus = self._sent - self._keep_bytes - self.kept_from
        if surplus >= self._frame_bytes:  # bytearray drops a prefix in place, without a copy
            del self._audio[:surplus]
            self.kept_from += surplus
        self._changed.notify_all()
