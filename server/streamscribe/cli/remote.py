"""`streamscribe transcribe FILE --url URL`: upload to a server, show its progress, print the result."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from ..client import Client, UploadOptions
from ..wire import Error, Finalizing, Progress, ServerMessage, TranscriptReady

_BAR_WIDTH = 30
_LOG_STEP = 0.1
"""Without a terminal, a line is written per 10 % of each stage."""


class ProgressBar:
    """Shows the live pass (`progress`) and then the second pass (`finalizing`) of an upload:
    redrawn in place on a terminal, a line per 10 % otherwise."""

    def __init__(self, interactive: bool, out: TextIO = sys.stderr) -> None:
        self._interactive = interactive
        self._out = out
        self._logged: dict[str, float] = {}
        self.errors: list[str] = []

    def show(self, event: ServerMessage) -> None:
        if isinstance(event, Progress):
            total = event.total_s or 0.0
            fraction = min(1.0, event.processed_s / total) if total else 0.0
            detail = f"{_clock(event.processed_s)} / {_clock(total)}" if total else _clock(event.processed_s)
            self._draw("transcribing", fraction, detail)
        elif isinstance(event, Finalizing):
            self._draw(
                "second pass ",
                event.progress,
                f"{_clock(event.processed_s or 0.0)} / {_clock(event.total_s or 0.0)}",
            )
        elif isinstance(event, TranscriptReady):
            self._end_line()
        elif isinstance(event, Error):
            self._end_line()
            self.errors.append(f"{event.code}: {event.message}")
            print(f"error {event.code}: {event.message}", file=self._out, flush=True)

    def _draw(self, stage: str, fraction: float, detail: str) -> None:
        filled = round(fraction * _BAR_WIDTH)
        line = f"{stage} {fraction:4.0%} [{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {detail}"
        if self._interactive:
            self._out.write(f"\r\x1b[K{line}")
            self._out.flush()
            return
        step = int(fraction / _LOG_STEP) * _LOG_STEP
        if step > self._logged.get(stage, -1.0):
            self._logged[stage] = step
            print(line, file=self._out, flush=True)

    def _end_line(self) -> None:
        if self._interactive:
            print(file=self._out, flush=True)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def say_where(base_url: str, transcript_id: str) -> None:
    """On stderr, as soon as it is known: the transcript's id and where to get its versions."""
    print(
        f"transcript {transcript_id}: {base_url.rstrip('/')}/v1/transcripts/{transcript_id}",
        file=sys.stderr,
        flush=True,
    )


async def transcribe_remote(
    base_url: str, path: Path, options: UploadOptions, outputs: list[Path], api_key: str | None
) -> bool:
    """Upload, follow to the end, print the final version as text, write `outputs` (by extension).
    True when the server reported no error."""
    async with Client(base_url, api_key=api_key) as client:
        accepted = await client.upload(path, **options)
        say_where(client.url, accepted.transcript_id)
        bar = ProgressBar(sys.stderr.isatty())
        async for event in client.follow(accepted.session_id):
            bar.show(event)
        transcript_id = accepted.transcript_id
        print(await client.export(transcript_id, "txt"), end="", flush=True)
        for output in outputs:
            body = await client.export(transcript_id, output.suffix.lstrip("."))
            output.write_bytes(body.encode())
    return not bar.errors
