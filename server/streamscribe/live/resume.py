"""Resume after a dropped connection. A live stream whose client vanished without `stop` waits
`resume_window_s` for it to come back with the token its `ready` carried; the new connection is
sent what the old one may have missed (from a bounded buffer of the session's latest events) and
takes the stream over. After the window the stream ends as a vanished client's always did.

A transport offers resume with `Resumptions.offer` once the session is open, routes its events
through an `Attachment`, calls `detach` when its connection drops without `stop` (and disconnects
the session itself if that returns False), and answers a comeback with `resume`.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..audio import PcmConverter
from ..errors import EventsExpired, ResumeExpired, SlowConsumer
from ..store.base import ApiKey
from ..wire import Partial, ServerMessage
from .driver import SessionDriver
from .outbox import Outbox


class RecentEvents:
    """A session's latest events, at most `max_events` (a newer partial replaces the one right
    before it, as in the event log): what a resuming client may have missed."""

    def __init__(self, max_events: int) -> None:
        self._events: deque[ServerMessage] = deque()
        self._max_events = max_events
        self._dropped_until = 0
        """Every event with a seq up to this one is no longer kept."""

    def append(self, event: ServerMessage) -> None:
        if isinstance(event, Partial) and self._events and isinstance(self._events[-1], Partial):
            self._events.pop()
        self._events.append(event)
        if len(self._events) > self._max_events:
            self._dropped_until = self._events.popleft().seq

    @property
    def last_seq(self) -> int:
        return self._events[-1].seq if self._events else 0

    def after(self, seq: int) -> list[ServerMessage]:
        """The events after `seq`; raises EventsExpired if some of them are no longer kept."""
        if seq < self._dropped_until:
            raise EventsExpired(
                f"events {seq + 1}-{self._dropped_until} are no longer kept, so the stream cannot be resumed "
                f"from seq {seq}"
            )
        return [event for event in self._events if event.seq > seq]


@dataclass(slots=True, eq=False)
class Attachment:
    """The connection a session's events go to now."""

    outbox: Outbox
    on_slow_consumer: Callable[[SlowConsumer], Awaitable[None]] | None = None
    """Tell the client why it is dropped (it fell `outbox_max_messages` behind)."""
    supersede: Callable[[], Awaitable[None]] | None = None
    """Stop this connection reading and drop it, returning once it reads no more: another
    connection resumed its session."""


class ResumableSlot(Protocol):
    """What resume needs of a session's slot (live/sessions.py's Slot)."""

    session_id: str
    driver: SessionDriver | None
    attachment: Attachment | None
    resumable: Resumable | None
    released: bool

    @property
    def owner(self) -> str | None: ...


@dataclass(slots=True, eq=False)
class Resumable:
    """A stream its client may come back to."""

    slot: ResumableSlot
    token_hash: str
    recent: RecentEvents
    new_converter: Callable[[], PcmConverter]
    """How the comeback's audio is converted (in the stream's format, from a clean state)."""
    expiry: asyncio.TimerHandle | None = None
    """When the stream gives its client up (while detached), or is forgotten (once closed)."""
    resuming: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(slots=True)
class Resumptions:
    """The streams this node can resume, by the SHA-256 of their token (only hashes are kept)."""

    window_s: float
    max_events: int
    node: str | None = None
    """This node's name among several: tokens start with it and a dot, so that a load balancer
    can send a comeback to the node that holds its stream."""
    _by_token: dict[str, Resumable] = field(default_factory=dict)

    def offer(self, slot: ResumableSlot, new_converter: Callable[[], PcmConverter]) -> str | None:
        """Make `slot`'s stream resumable; the token for its client (None: the window is 0)."""
        if self.window_s <= 0:
            return None
        token = secrets.token_urlsafe(32) if self.node is None else f"{self.node}.{secrets.token_urlsafe(32)}"
        resumable = Resumable(slot, _hash(token), RecentEvents(self.max_events), new_converter)
        slot.resumable = resumable
        self._by_token[resumable.token_hash] = resumable
        return token

    def detach(self, slot: ResumableSlot, attachment: Attachment) -> bool:
        """`attachment`'s connection dropped without `stop`. False: the stream is not resumable,
        and the caller disconnects its session as before. True: nothing more to do (the stream
        waits for its client for the window, or another connection has it already)."""
        if slot.attachment is not attachment or slot.released:
            return True
        resumable = slot.resumable
        if resumable is None:
            return False
        slot.attachment = None
        attachment.outbox.close()
        self._expire_later(resumable)
        return True

    async def resume(
        self, token: str, caller: ApiKey | None, after_seq: int, attachment: Attachment
    ) -> ResumableSlot:
        """Hand the stream of `token` over to `attachment`: its previous connection (if the server
        still holds it) is dropped first, then what came after `after_seq` is queued in the new
        outbox ahead of everything to come; where the session has closed already, the outbox is
        closed after it. Raises ResumeExpired or EventsExpired (then nothing changed, but for a
        previous connection dropped meanwhile: the stream waits for the window again)."""
        resumable = self._by_token.get(_hash(token))
        owner = None if caller is None else caller.name
        if resumable is None or resumable.slot.owner != owner:
            raise ResumeExpired(
                f"no stream waits for this resume token: it ended more than {self.window_s:g} s after its "
                "connection dropped, or the token is not this key's"
            )
        slot = resumable.slot
        resumable.recent.after(after_seq)  # a comeback that cannot be served changes nothing
        async with resumable.resuming:  # two comebacks at once: one after the other
            previous = slot.attachment
            if previous is not None and previous.supersede is not None:
                await previous.supersede()
            if previous is not None:
                slot.attachment = None
                previous.outbox.close()
            if resumable.expiry is not None and not slot.released:
                resumable.expiry.cancel()
                resumable.expiry = None
            try:  # more may have come while the previous connection was dropped
                for event in resumable.recent.after(after_seq):
                    attachment.outbox.push(event)
            except (EventsExpired, SlowConsumer):
                if not slot.released:
                    self._expire_later(resumable)
                raise
            if slot.released:  # the session's last event is in the outbox already
                attachment.outbox.close()
            else:
                slot.attachment = attachment
        return slot

    def closed(self, slot: ResumableSlot) -> None:
        """The session closed: a client that lost its connection at the very end may still come
        back for the last events, for the window."""
        resumable = slot.resumable
        if resumable is not None and resumable.expiry is None:
            self._expire_later(resumable)

    def give_up_all(self) -> None:
        """Shutdown: no stream waits for its client any more (each is being ended)."""
        for resumable in list(self._by_token.values()):
            self._give_up(resumable)

    def _expire_later(self, resumable: Resumable) -> None:
        if resumable.expiry is not None:
            resumable.expiry.cancel()
        loop = asyncio.get_running_loop()
        resumable.expiry = loop.call_later(self.window_s, self._give_up, resumable)

    def _give_up(self, resumable: Resumable) -> None:
        """The window passed (or the comeback failed): a stream still open ends as a vanished
        client's."""
        if resumable.expiry is not None:
            resumable.expiry.cancel()
        self._by_token.pop(resumable.token_hash, None)
        driver = resumable.slot.driver
        if driver is not None and not driver.session.ended:
            driver.disconnect()


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
