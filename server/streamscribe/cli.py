"""streamscribe serve | transcribe | stream | bench"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from .audio import SAMPLE_RATE, iter_file, read_file
from .errors import StreamscribeError
from .wire import Closed, Error, Final, Partial, ServerMessage, Start, UtteranceEnd, Word


class LivePrinter:
    """Shows finals as they are committed; on a terminal the partial tail is redrawn in place."""

    def __init__(self, interactive: bool) -> None:
        self._interactive = interactive
        self._line: list[str] = []
        self.failed = False

    def show(self, event: ServerMessage) -> None:
        if isinstance(event, Final):
            self._line.extend(word.text for word in event.words)
            self._redraw([])
        elif isinstance(event, Partial):
            self._redraw(event.words)
        elif isinstance(event, UtteranceEnd | Closed) and self._line:
            self._redraw([])
            if not self._interactive:
                print(" ".join(self._line), flush=True)
            else:
                print(flush=True)
            self._line = []
        elif isinstance(event, Error):
            self.failed = True
            print(f"\nerror {event.code}: {event.message}", file=sys.stderr, flush=True)

    def _redraw(self, partial: list[Word]) -> None:
        if not self._interactive:
            return
        tail = " ".join(word.text for word in partial)
        text = " ".join(self._line)
        sys.stdout.write(f"\r\x1b[K{text}" + (f" \x1b[2m{tail}\x1b[0m" if tail else ""))
        sys.stdout.flush()


def _settings_overrides(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("host", "port", "model", "device", "compute_type", "cpu_threads", "max_sessions")
    return {key: getattr(args, key, None) for key in keys}


def _cmd_serve(args: argparse.Namespace) -> int:
    from .app import load_model, serve
    from .config import load_settings

    settings = load_settings(_settings_overrides(args))
    engine = load_model(settings)
    return _run(serve(settings, engine))


def _cmd_transcribe(args: argparse.Namespace) -> int:
    from .app import load_model
    from .config import load_settings

    settings = load_settings(_settings_overrides(args))
    engine = load_model(settings)
    printer = LivePrinter(sys.stdout.isatty())

    async def transcribe() -> None:
        from .scheduler import DecodeScheduler
        from .stream.driver import SessionDriver

        scheduler = DecodeScheduler(engine)
        scheduler.start()
        driver = SessionDriver.open(
            scheduler, settings.stream, language=args.language or settings.stream.language
        )

        async def feed() -> None:
            try:
                for chunk in iter_file(Path(args.file)):
                    await driver.feed_audio(chunk)
            finally:
                driver.stop()

        feeder = asyncio.create_task(feed())
        try:
            async for event in driver.events():
                printer.show(event)
            await feeder
        finally:
            await scheduler.close()

    return _run(transcribe(), printer)


def _cmd_stream(args: argparse.Namespace) -> int:
    from .client import stream_samples

    samples = read_file(Path(args.file))
    printer = LivePrinter(sys.stdout.isatty())
    start = Start(sample_rate=SAMPLE_RATE, language=args.language)
    result = stream_samples(
        args.url, samples, speed=args.speed, start=start, on_event=lambda timed: printer.show(timed.event)
    )
    return _run(result, printer)


def _run(work: Coroutine[Any, Any, Any], printer: LivePrinter | None = None) -> int:
    try:
        import uvloop
    except ImportError:  # Windows
        runner: Any = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(work)
    except StreamscribeError as exc:
        print(f"error {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    return 1 if printer is not None and printer.failed else 0


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="tiny.en (embedded default), base (embedded), a path, or a name")
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"])
    parser.add_argument(
        "--compute-type", dest="compute_type", help="int8, float16, ... (default: per device)"
    )
    parser.add_argument("--cpu-threads", dest="cpu_threads", type=int)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamscribe", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--max-sessions", dest="max_sessions", type=int)
    _add_model_options(serve)
    serve.set_defaults(handler=_cmd_serve)

    transcribe = commands.add_parser("transcribe", help="transcribe a file in-process, no server")
    transcribe.add_argument("file")
    transcribe.add_argument("--language")
    _add_model_options(transcribe)
    transcribe.set_defaults(handler=_cmd_transcribe)

    stream = commands.add_parser("stream", help="stream a file to a server and print the words")
    stream.add_argument("file")
    stream.add_argument("--url", default="ws://127.0.0.1:8000/v1/stream")
    stream.add_argument("--speed", type=float, default=1.0, help="x real time; 0 = as fast as possible")
    stream.add_argument("--language")
    stream.set_defaults(handler=_cmd_stream)

    from .bench import add_bench_parser

    add_bench_parser(commands)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = args.handler
    code: int = handler(args)
    return code


if __name__ == "__main__":  # python -m streamscribe.cli
    sys.exit(main())
