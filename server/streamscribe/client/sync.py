"""`SyncClient`: the calls of `Client`, blocking, for code without an event loop. An event loop runs
in a background thread for the client's life; async iterators become plain iterators. Callbacks
(an upload's `on_progress`) are called on that thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from types import TracebackType
from typing import Concatenate, ParamSpec, TypeVar

from ..wire import Ready, ServerMessage, Word
from .resume import Stream, StreamSummary
from .session import Client

P = ParamSpec("P")
T = TypeVar("T")


class _LoopThread:
    """An event loop running in a daemon thread; `run` waits for a coroutine's result there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="streamscribe-client", daemon=True)
        self._thread.start()

    def run(self, work: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(_awaited(work), self.loop).result()

    def iterate(self, items: AsyncIterator[T]) -> Iterator[T]:
        """`items` as a plain iterator; an async generator left early is closed."""
        try:
            while True:
                try:
                    yield self.run(anext(items))
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                self.run(aclose())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


async def _awaited(work: Awaitable[T]) -> T:
    return await work


class SyncStream:
    """`Stream`, blocking: `with client.stream(source) as stream:` then `for event in stream:`
    or `stream.result()`; `finalize()` and `stop()` may be called from another thread."""

    def __init__(self, stream: Stream, loop: _LoopThread) -> None:
        self._stream = stream
        self._loop = loop

    def __enter__(self) -> SyncStream:
        self._loop.run(self._stream.__aenter__())
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._loop.run(self._stream.__aexit__(kind, error, trace))

    def __iter__(self) -> Iterator[ServerMessage]:
        return self._loop.iterate(self._stream)

    @property
    def ready(self) -> Ready | None:
        return self._stream.ready

    @property
    def session_id(self) -> str:
        return self._stream.session_id

    @property
    def finals(self) -> list[Word]:
        return self._stream.finals

    @property
    def resumes(self) -> int:
        return self._stream.resumes

    @property
    def sent_s(self) -> float:
        return self._stream.sent_s

    def finalize(self) -> None:
        self._loop.run(self._stream.finalize())

    def stop(self, wait_for_transcript: bool = True) -> None:
        self._loop.run(self._stream.stop(wait_for_transcript))

    def result(self) -> StreamSummary:
        return self._loop.run(self._stream.result())


def _blocking(
    method: Callable[Concatenate[Client, P], Awaitable[T]],
) -> Callable[Concatenate[SyncClient, P], T]:
    def call(self: SyncClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._running.run(method(self._client, *args, **kwargs))

    call.__doc__ = method.__doc__
    return call


def _iterating(
    method: Callable[Concatenate[Client, P], AsyncIterator[T]],
) -> Callable[Concatenate[SyncClient, P], Iterator[T]]:
    def call(self: SyncClient, /, *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        return self._running.iterate(method(self._client, *args, **kwargs))

    call.__doc__ = method.__doc__
    return call


def _streaming(
    method: Callable[Concatenate[Client, P], Stream],
) -> Callable[Concatenate[SyncClient, P], SyncStream]:
    def call(self: SyncClient, /, *args: P.args, **kwargs: P.kwargs) -> SyncStream:
        return SyncStream(method(self._client, *args, **kwargs), self._running)

    call.__doc__ = method.__doc__
    return call


class SyncClient:
    """`Client` with blocking calls: `with SyncClient(url, api_key=...) as client:`. The same
    methods and arguments; `stream` gives a SyncStream, `follow` and `transcripts` plain
    iterators. A plain iterable of chunks is a source here too (read in a worker thread)."""

    def __init__(self, url: str, *, api_key: str | None = None) -> None:
        self._client = Client(url, api_key=api_key)
        self._loop: _LoopThread | None = None

    def __enter__(self) -> SyncClient:
        running = _LoopThread()
        try:
            running.run(self._client.__aenter__())
        except BaseException:
            running.close()  # no `with` body, no __exit__: the thread would be left running
            raise
        self._loop = running
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            self._running.run(self._client.__aexit__(kind, error, trace))
        finally:
            self._running.close()
            self._loop = None

    @property
    def _running(self) -> _LoopThread:
        if self._loop is None:
            raise RuntimeError("use the client inside `with SyncClient(...) as client:`")
        return self._loop

    stream = _streaming(Client.stream)
    upload = _blocking(Client.upload)
    transcribe = _blocking(Client.transcribe)
    follow = _iterating(Client.follow)
    transcripts = _iterating(Client.transcripts)
    transcript = _blocking(Client.transcript)
    export = _blocking(Client.export)
    delete = _blocking(Client.delete)
