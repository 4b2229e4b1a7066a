"""streamscribe serve | transcribe | stream | bench"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast
from urllib.parse import urlsplit

from ..audio import SAMPLE_RATE, iter_file, read_file
from ..config import MAX_SPEAKERS, ServerSettings, client_api_key
from ..errors import StreamscribeError
from ..wire import Closed, Error, Final, Partial, Ready, ServerMessage, Start, UtteranceEnd, Word
from .remote import say_where

if TYPE_CHECKING:
    from ..finalize.pipeline import SecondPass


class LivePrinter:
    """Shows finals as they are committed; on a terminal the partial tail is redrawn in place."""

    def __init__(self, interactive: bool, out: TextIO = sys.stdout) -> None:
        self._interactive = interactive
        self._out = out
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
                print(" ".join(self._line), file=self._out, flush=True)
            else:
                print(file=self._out, flush=True)
            self._line = []
        elif isinstance(event, Error):
            self.failed = True
            print(f"\nerror {event.code}: {event.message}", file=sys.stderr, flush=True)

    def _redraw(self, partial: list[Word]) -> None:
        if not self._interactive:
            return
        tail = " ".join(word.text for word in partial)
        text = " ".join(self._line)
        self._out.write(f"\r\x1b[K{text}" + (f" \x1b[2m{tail}\x1b[0m" if tail else ""))
        self._out.flush()


def _settings_overrides(args: argparse.Namespace) -> dict[str, Any]:
    keys = (
        "host", "port", "model", "device", "compute_type", "cpu_threads", "max_sessions", "data_dir",
        "audio_retention_h", "webrtc_ports", "webrtc_public_address", "webrtc_stun_url", "webrtc_turn_url",
        "webrtc_turn_username", "max_decode_wait_s", "decode_batch_size", "decode_workers", "auth",
        "allowed_origins", "allowed_hosts", "max_connections", "max_connections_per_address", "max_stream_speed", "stream_burst_s", "resume_window_s",
        "min_upload_kib_per_s", "min_free_disk_mb", "redis_url", "database_url", "audio_url",
        "second_pass_workers", "node_id", "drain_grace_s", "metrics_port", "engine",
    )  # fmt: skip
    overrides: dict[str, Any] = {key: getattr(args, key, None) for key in keys}
    finalize: dict[str, Any] = {
        key: getattr(args, key, None) for key in ("num_speakers", "min_speakers", "max_speakers")
    }
    finalize["model"] = getattr(args, "second_pass_model", None)
    finalize["prompt"] = getattr(args, "prompt", None)
    if getattr(args, "no_second_pass", False):
        finalize["enabled"] = False
    if getattr(args, "no_diarize", False):
        finalize["diarize"] = False
    overrides["finalize"] = finalize
    return overrides


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _cmd_serve(args: argparse.Namespace) -> int:
    from ..app import serve
    from ..asr.models import load_engine
    from ..config import load_settings
    from .logs import configure_logging

    configure_logging(args.log_level, args.log_format)
    settings = load_settings(_settings_overrides(args))
    engine = load_engine(settings)
    return _run(serve(settings, engine))


def _cmd_worker(args: argparse.Namespace) -> int:
    from ..config import load_settings
    from .logs import configure_logging

    configure_logging(args.log_level, args.log_format)
    settings = load_settings(_settings_overrides(args))
    if settings.cpu_threads:  # torch's and OpenMP's pools too, read when they first start
        os.environ.setdefault("OMP_NUM_THREADS", str(settings.cpu_threads))
    from ..app import work

    return _run(work(settings))


def _cmd_migrate(args: argparse.Namespace) -> int:
    from ..config import load_settings
    from ..store.postgres import migrate

    database_url = load_settings({"database_url": args.database_url}).database_url
    if database_url is None:
        raise ValueError("no database: give --database-url or STREAMSCRIBE_DATABASE_URL")
    migrate(database_url)
    print("the database schema is up to date")
    return 0


def _cmd_transcribe(args: argparse.Namespace) -> int:
    """The live pass in-process (shown on stderr when a second pass follows), then the second
    pass; prints the final version as text and writes the --output files."""
    from ..asr.models import load_engine
    from ..config import load_settings
    from ..exports import FORMATS
    from ..finalize.pipeline import SecondPass
    from ..local import live_pass

    outputs = [Path(path) for path in args.output or []]
    for path in outputs:
        if path.suffix.lstrip(".") not in FORMATS:
            raise UsageError(f"{path}: the extension must be one of {', '.join(FORMATS)}")
    if args.url:
        return _transcribe_remote(args, outputs)
    settings = load_settings(_settings_overrides(args))
    second_pass = settings.finalize.enabled
    engine = load_engine(settings)
    passes = SecondPass.for_server(settings)
    if second_pass:
        passes.prepare(settings.finalize)  # a wrong --second-pass-model is refused before the live pass
    printer = LivePrinter(sys.stderr.isatty() if second_pass else sys.stdout.isatty(),
                          sys.stderr if second_pass else sys.stdout)  # fmt: skip
    language = args.language or settings.stream.language

    async def transcribe() -> None:
        chunks = iter_file(Path(args.file))
        finals = await live_pass(engine, settings, chunks, language, printer.show, settings.finalize.prompt)
        if second_pass or outputs:
            enabled = passes if second_pass else None
            await _second_pass(settings, engine.name, Path(args.file), finals, language, outputs, enabled)

    return _run(transcribe(), printer)


def _transcribe_remote(args: argparse.Namespace, outputs: list[Path]) -> int:
    """Upload to a server instead: the same transcript, on the server's models, with progress."""
    from ..client import UploadOptions
    from .remote import transcribe_remote

    if args.no_second_pass:
        raise UsageError("--no-second-pass is the server's setting, not an upload's")
    _require_url(args.url, ("http", "https"), "http://127.0.0.1:8000")
    options = {"speed": args.speed, "language": args.language, "model": args.second_pass_model,
               "prompt": args.prompt, "num_speakers": args.num_speakers, "min_speakers": args.min_speakers,
               "max_speakers": args.max_speakers, "diarize": False if args.no_diarize else None}  # fmt: skip
    chosen = cast(UploadOptions, {name: value for name, value in options.items() if value is not None})
    return _run(transcribe_remote(args.url, Path(args.file), chosen, outputs, args.api_key))


async def _second_pass(
    settings: ServerSettings,
    live_model: str,
    file: Path,
    finals: list[Word],
    language: str | None,
    outputs: list[Path],
    passes: SecondPass | None,
) -> None:
    """Version 1, then (with `passes`) the second pass; prints the final text, writes `outputs`."""
    from ..exports import render, to_txt
    from ..local import live_version, second_pass

    audio = read_file(file)
    transcript = live_version(file.stem, finals, audio, language, live_model, settings)
    if passes is not None:
        interactive = sys.stderr.isatty()

        def show_progress(progress: float) -> None:
            if interactive:
                print(f"\rsecond pass {progress:4.0%}", end="", file=sys.stderr, flush=True)

        transcript = await asyncio.to_thread(second_pass, settings, audio, transcript, show_progress, passes)
        if interactive:
            print(file=sys.stderr)
        for warning in transcript.info.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(to_txt(transcript), end="", flush=True)
    for path in outputs:
        body, _content_type = render(transcript, path.suffix.lstrip("."))
        path.write_bytes(body)


def _cmd_stream(args: argparse.Namespace) -> int:
    from ..client.stream import TimedEvent, stream_samples

    _require_url(args.url, ("ws", "wss"), "ws://127.0.0.1:8000/v1/stream")
    samples = read_file(Path(args.file))
    printer = LivePrinter(sys.stdout.isatty())
    start = Start(sample_rate=SAMPLE_RATE, language=args.language)
    where = urlsplit(args.url)
    http_url = f"{where.scheme.replace('ws', 'http', 1)}://{where.netloc}"

    def show(timed: TimedEvent) -> None:
        if isinstance(timed.event, Ready) and timed.event.transcript_id:
            say_where(http_url, timed.event.transcript_id)
        printer.show(timed.event)

    async def stream() -> bool:
        result = await stream_samples(
            args.url, samples, speed=args.speed, start=start, on_event=show, api_key=args.api_key
        )
        if not result.completed:
            print(
                f"\nerror: the connection was lost after {result.sent_s:.1f} s of audio were sent "
                f"(close code {result.close_code}{': ' + result.close_reason if result.close_reason else ''}); "
                "the server keeps what it received, marked as cut",
                file=sys.stderr,
                flush=True,
            )
        return result.completed

    return _run(stream(), printer)


def _run(work: Coroutine[Any, Any, Any], printer: LivePrinter | None = None) -> int:
    """Run the command's coroutine on uvloop; 1 if it (or the stream it printed) failed, else 0.
    Errors go up to `main`, which turns each into one line."""
    try:
        import uvloop
    except ImportError:  # Windows
        runner: Any = asyncio.run
    else:
        runner = uvloop.run
    result = runner(work)
    failed = result is False or (printer is not None and printer.failed)
    return 1 if failed else 0


class UsageError(Exception):
    """A command line that cannot work (a URL of the wrong kind, say): one line says why."""


def _require_url(url: str, schemes: tuple[str, ...], example: str) -> None:
    if not url.startswith(tuple(f"{scheme}://" for scheme in schemes)):
        raise UsageError(f"{url} is not a {' or '.join(schemes)}:// URL; give one like {example}")


def _one_line(exc: BaseException) -> tuple[str, int]:
    """What to print for an error that ended a command, and the exit status."""
    import aiohttp
    import msgspec
    from websockets.exceptions import InvalidStatus, WebSocketException

    match exc:
        case msgspec.ValidationError():
            return f"error: a setting is not valid (check the flag or STREAMSCRIBE_* variable): {exc}", 2
        case StreamscribeError():
            return f"error {exc.code}: {exc.message}", 2
        case UsageError():
            return f"error: {exc}", 2
        case InvalidStatus() if exc.response.status_code == 401:
            return "error: the server needs an API key: --api-key KEY, or STREAMSCRIBE_API_KEY", 2
        case InvalidStatus():
            status = exc.response.status_code
            return (
                f"error: the server answered HTTP {status} instead of a WebSocket; is the path /v1/stream?",
                2,
            )
        case WebSocketException():
            return f"error: the WebSocket failed: {exc}", 2
        case OSError() if exc.filename is not None:  # a local file, not the network
            return f"error: {exc.strerror or exc}: {exc.filename}", 2
        case aiohttp.ClientError() | OSError():
            return f"error: cannot reach the server: {exc}", 2
    raise exc


_DEFAULTS = ServerSettings()
"""The built-in defaults the help shows; STREAMSCRIBE_* variables and flags override them."""
_ENVIRONMENT_HELP = """\
Every setting can also come from the environment: STREAMSCRIBE_<NAME> for server settings
(STREAMSCRIBE_PORT, STREAMSCRIBE_DATA_DIR, STREAMSCRIBE_MAX_UPLOADS, STREAMSCRIBE_ALLOWED_MODELS,
STREAMSCRIBE_STALL_AFTER_S, ...), STREAMSCRIBE_STREAM_<NAME> for the live session core,
STREAMSCRIBE_REPLAY_<NAME> for files replayed at max speed and STREAMSCRIBE_FINALIZE_<NAME> for
the second pass; flags win over the environment. Every name, default and meaning: README.md
(Configuration) and server/streamscribe/config.py."""


def _add_second_pass_options(parser: argparse.ArgumentParser) -> None:
    finalize = _DEFAULTS.finalize
    parser.add_argument(
        "--second-pass-model", dest="second_pass_model",
        help=f"the model of the second pass (default: {finalize.model})",
    )  # fmt: skip
    parser.add_argument(
        "--no-second-pass", dest="no_second_pass", action="store_true",
        help="keep the live words as the transcript, without the second pass (default: it runs)",
    )  # fmt: skip
    parser.add_argument(
        "--no-diarize", dest="no_diarize", action="store_true",
        help="no speaker labels in the second pass (default: speakers are labelled)",
    )  # fmt: skip
    parser.add_argument(
        "--num-speakers", dest="num_speakers", type=int, help="exactly this many speakers (default: found)"
    )
    parser.add_argument("--min-speakers", dest="min_speakers", type=int, help="at least (default: 1)")
    parser.add_argument(
        "--max-speakers", dest="max_speakers", type=int, help=f"at most (default: {MAX_SPEAKERS})"
    )


def _add_scale_out_options(parser: argparse.ArgumentParser, *, worker: bool) -> None:
    scale = parser.add_argument_group("many nodes and workers (README: Scaling out)")
    scale.add_argument(
        "--redis-url", dest="redis_url", metavar="URL",
        help="redis://host:port/db: session events and second-pass jobs through Redis Streams, shared by "
        "every node and worker (default: in this process; env STREAMSCRIBE_REDIS_URL)",
    )  # fmt: skip
    scale.add_argument(
        "--database-url", dest="database_url", metavar="URL",
        help="postgresql://user:password@host:port/db: transcripts, versions and keys in PostgreSQL "
        "(default: SQLite in --data-dir; env STREAMSCRIBE_DATABASE_URL)",
    )  # fmt: skip
    scale.add_argument(
        "--audio-url", dest="audio_url", metavar="URL",
        help="file:///path (a volume every node and worker mounts) or s3://bucket/prefix (endpoint and "
        "credentials from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...) for recordings (default: "
        "DATA_DIR/audio; env STREAMSCRIBE_AUDIO_URL)",
    )  # fmt: skip
    scale.add_argument(
        "--node-id", dest="node_id", metavar="NAME",
        help="this process's name on Redis, unique among the running nodes and workers (default: the "
        "host name)",
    )  # fmt: skip
    if not worker:
        scale.add_argument(
            "--drain-grace-s", dest="drain_grace_s", type=float, metavar="S",
            help="after SIGTERM, serve open sessions this long while /readyz answers 503 and new ones are "
            f"refused, then end them: two of the load balancer's check intervals (default: {_DEFAULTS.drain_grace_s:g})",
        )  # fmt: skip
    scale.add_argument(
        "--second-pass-workers", dest="second_pass_workers", type=int, metavar="N",
        help=("second passes this worker runs at once" if worker else
              "second passes this server runs at once; 0: none, `streamscribe worker` processes take them "
              "(needs --redis-url)") + f" (default: {_DEFAULTS.second_pass_workers})",
    )  # fmt: skip


def _add_storage_options(parser: argparse.ArgumentParser, data_dir_holds: str) -> None:
    parser.add_argument(
        "--data-dir", dest="data_dir", help=f"{data_dir_holds} (default: {_DEFAULTS.data_dir})"
    )
    parser.add_argument(
        "--audio-retention-h", dest="audio_retention_h", type=float,
        help="hours recorded audio is kept after its second pass; 0 deletes it at once, inf keeps it; "
        f"give every node and worker the same (default: {_DEFAULTS.audio_retention_h:g})",
    )  # fmt: skip


def _add_log_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level", dest="log_level", choices=["debug", "info", "warning", "error"], default="info",
        help="the least important records logged, on stderr (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--log-format", dest="log_format", choices=["text", "json"], default="text",
        help="a line of text or a JSON object per record (default: %(default)s)",
    )  # fmt: skip


def _add_metrics_option(parser: argparse.ArgumentParser, *, worker: bool) -> None:
    parser.add_argument(
        "--metrics-port", dest="metrics_port", type=int, metavar="PORT",
        help="serve GET /metrics (Prometheus) alone on 127.0.0.1:PORT with no key, for a scraper on the "
        "same host; 0 picks a free one, logged (default: none" + (
            ", a worker serves no metrics)" if worker else ": only /metrics on --port, which asks for a key like every route)"
        ),
    )  # fmt: skip


def _add_webrtc_options(parser: argparse.ArgumentParser) -> None:
    webrtc = parser.add_argument_group(
        "WebRTC across networks (README: WebRTC in Docker and across networks)"
    )
    webrtc.add_argument(
        "--webrtc-ports", dest="webrtc_ports", metavar="MIN-MAX",
        help="UDP ports for WebRTC media, to publish from a container or open in a firewall "
        "(default: any port the OS picks)",
    )  # fmt: skip
    webrtc.add_argument(
        "--webrtc-public-address", dest="webrtc_public_address", metavar="IP",
        help="the address peers reach this host at, offered besides its own (default: none)",
    )  # fmt: skip
    webrtc.add_argument(
        "--webrtc-stun-url", dest="webrtc_stun_url", metavar="stun:HOST:PORT",
        help="a STUN server, also handed to browsers (default: none)",
    )  # fmt: skip
    webrtc.add_argument(
        "--webrtc-turn-url", dest="webrtc_turn_url", metavar="turn:HOST:PORT",
        help="a TURN server to relay media; its password only from STREAMSCRIBE_WEBRTC_TURN_PASSWORD "
        "(default: none)",
    )  # fmt: skip
    webrtc.add_argument(
        "--webrtc-turn-username",
        dest="webrtc_turn_username",
        help="the TURN server's username (default: none)",
    )


def _add_engine_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--engine", choices=["faster-whisper", "whisper.cpp"],
        help="what decodes, live and second pass: faster-whisper (CTranslate2: CPU, CUDA) or whisper.cpp "
        f"(ggml: CPU, Metal on Apple silicon) (default: {_DEFAULTS.engine}; env STREAMSCRIBE_ENGINE)",
    )  # fmt: skip


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    _add_engine_option(parser)
    parser.add_argument(
        "--model",
        help="the live model: tiny.en or base (embedded), a CTranslate2 directory or a faster-whisper "
        f"name, or with --engine whisper.cpp a ggml .bin file (default: {_DEFAULTS.model})",
    )
    parser.add_argument(
        "--device", choices=["cpu", "cuda", "metal", "auto"],
        help="where to decode; metal with --engine whisper.cpp only; auto: Metal on Apple silicon for "
        f"whisper.cpp, CUDA where present for faster-whisper, else the CPU (default: {_DEFAULTS.device})",
    )  # fmt: skip
    parser.add_argument(
        "--compute-type",
        dest="compute_type",
        help="int8, float16, ... with faster-whisper (default: int8 on CPU, float16 on CUDA)",
    )
    parser.add_argument(
        "--cpu-threads",
        dest="cpu_threads",
        type=int,
        help="threads for one decode on CPU (default: 0, all cores)",
    )


def _add_api_key_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--api-key",
        default=client_api_key(),
        help="the key for a server that needs one (default: STREAMSCRIBE_API_KEY, else none)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamscribe", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve",
        help="run the server",
        epilog=_ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--host", help=f"the address to listen on (default: {_DEFAULTS.host})")
    serve.add_argument("--port", type=int, help=f"the port; 0 picks a free one (default: {_DEFAULTS.port})")
    access = serve.add_argument_group("who may call (README: API keys)")
    access.add_argument(
        "--auth", choices=["on", "off"],
        help="on: once a key exists (streamscribe keys create) every request needs one, and a non-loopback "
        "--host with no key refuses to start; off: no credential is asked, for a server behind something "
        "that checks callers (default: on)",
    )  # fmt: skip
    access.add_argument(
        "--allowed-origins", dest="allowed_origins", type=_comma_list, metavar="ORIGIN,...",
        help="browser pages on these origins (https://app.example.com, or *) may call the API and open "
        "its WebSockets, besides the server's own pages (default: none)",
    )  # fmt: skip
    access.add_argument(
        "--allowed-hosts", dest="allowed_hosts", type=_comma_list, metavar="NAME,...",
        help="the Host names the server answers to (default: loopback names on a loopback --host, "
        "else any)",
    )  # fmt: skip
    serve.add_argument(
        "--max-sessions", dest="max_sessions", type=int,
        help=f"live streams and file replays at once (default: {_DEFAULTS.max_sessions})",
    )  # fmt: skip
    serve.add_argument(
        "--max-connections", dest="max_connections", type=int,
        help="open connections at most; more are answered 503 too_many_connections (default: "
        f"{_DEFAULTS.max_connections})",
    )  # fmt: skip
    serve.add_argument(
        "--max-connections-per-address", dest="max_connections_per_address", type=int,
        help="open connections from one client address at most; raise it behind a proxy "
        f"(default: {_DEFAULTS.max_connections_per_address})",
    )  # fmt: skip
    serve.add_argument(
        "--max-stream-speed", dest="max_stream_speed", type=float,
        help="a live stream's audio is taken at most this many times faster than real time after its "
        f"burst (default: {_DEFAULTS.max_stream_speed:g})",
    )  # fmt: skip
    serve.add_argument(
        "--stream-burst-s", dest="stream_burst_s", type=float,
        help=f"seconds of audio a live stream may send at once (default: {_DEFAULTS.stream_burst_s:g})",
    )  # fmt: skip
    serve.add_argument(
        "--resume-window-s", dest="resume_window_s", type=float, metavar="S",
        help="how long a live stream whose connection dropped without stop waits for its client to "
        f"resume it; 0: never (default: {_DEFAULTS.resume_window_s:g}; env STREAMSCRIBE_RESUME_WINDOW_S)",
    )  # fmt: skip
    serve.add_argument(
        "--min-upload-kib-per-s", dest="min_upload_kib_per_s", type=float,
        help="an upload body slower than this on average is refused, idle_timeout (default: "
        f"{_DEFAULTS.min_upload_kib_per_s:g})",
    )  # fmt: skip
    serve.add_argument(
        "--min-free-disk-mb", dest="min_free_disk_mb", type=float,
        help="new streams and uploads are refused, storage_full, while the data directory's disk has "
        f"less free (default: {_DEFAULTS.min_free_disk_mb:g})",
    )  # fmt: skip
    serve.add_argument(
        "--max-decode-wait-s", dest="max_decode_wait_s", type=float,
        help="refuse a new live stream (overloaded) when it would make the live streams' p95 wait for "
        f"a decode exceed this many seconds (default: {_DEFAULTS.max_decode_wait_s:g})",
    )  # fmt: skip
    serve.add_argument(
        "--decode-batch-size", dest="decode_batch_size", type=int,
        help="sessions decoded in one model call at most (default: 0, what suits the device: 2 on a CPU, "
        "128 on a GPU)",
    )  # fmt: skip
    serve.add_argument(
        "--decode-workers", dest="decode_workers", type=int,
        help="live decodes at once, each on its own thread; 0 = one per core on the CPU, one on a GPU "
        f"(default: {_DEFAULTS.decode_workers})",
    )  # fmt: skip
    _add_storage_options(serve, "transcripts and recorded audio, without --database-url and --audio-url")
    _add_log_options(serve)
    _add_metrics_option(serve, worker=False)
    _add_scale_out_options(serve, worker=False)
    _add_webrtc_options(serve)
    _add_model_options(serve)
    _add_second_pass_options(serve)
    serve.set_defaults(handler=_cmd_serve)

    worker = commands.add_parser(
        "worker",
        help="run second passes taken from Redis, for nodes started with the same --redis-url",
        epilog=_ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_storage_options(worker, "local state")
    _add_engine_option(worker)
    worker.add_argument(
        "--cpu-threads", dest="cpu_threads", type=int, metavar="N",
        help="threads of a second pass (CTranslate2, torch); with K workers on one machine give each "
        "its cores / K, or they slow each other down (default: 0, every core)",
    )  # fmt: skip
    _add_log_options(worker)
    _add_metrics_option(worker, worker=True)
    _add_scale_out_options(worker, worker=True)
    _add_second_pass_options(worker)
    worker.set_defaults(handler=_cmd_worker)

    migrate = commands.add_parser(
        "migrate", help="bring a PostgreSQL database's schema up to date (nodes and workers also do at start)"
    )
    migrate.add_argument(
        "--database-url", dest="database_url", metavar="URL",
        help="postgresql://user:password@host:port/db (default: STREAMSCRIBE_DATABASE_URL)",
    )  # fmt: skip
    migrate.set_defaults(handler=_cmd_migrate)

    transcribe = commands.add_parser("transcribe", help="transcribe a file in-process, no server")
    transcribe.add_argument("file", help="any audio or video file ffmpeg reads")
    transcribe.add_argument("--language", help=f"the spoken language (default: {_DEFAULTS.stream.language})")
    transcribe.add_argument("--prompt", help="names and words to expect, for both passes (default: none)")
    transcribe.add_argument(
        "--url",
        help="upload to this server (http://host:port) instead of transcribing in-process (default: none)",
    )
    transcribe.add_argument(
        "--speed", choices=["max", "realtime"], default="max", help="with --url: replay pace (default: max)"
    )
    transcribe.add_argument(
        "-o", "--output", action="append",
        help="write the final version here; .srt .vtt .json or .txt, repeatable (default: print text only)",
    )  # fmt: skip
    _add_model_options(transcribe)
    _add_second_pass_options(transcribe)
    _add_api_key_option(transcribe)
    transcribe.set_defaults(handler=_cmd_transcribe)

    stream = commands.add_parser("stream", help="stream a file to a server and print the words")
    stream.add_argument("file", help="any audio or video file ffmpeg reads")
    stream.add_argument(
        "--url", default="ws://127.0.0.1:8000/v1/stream", help="the server's stream (default: %(default)s)"
    )
    stream.add_argument(
        "--speed", type=float, default=1.0, help="x real time; 0 = as fast as possible (default: %(default)s)"
    )
    stream.add_argument("--language", help="the spoken language (default: the server's)")
    _add_api_key_option(stream)
    stream.set_defaults(handler=_cmd_stream)

    from ..bench.capacity import add_bench_capacity_parser
    from ..bench.encoder import add_bench_encoder_parser
    from ..bench.live import add_bench_parser
    from ..bench.replay import add_bench_replay_parser
    from ..bench.scale_out import add_bench_scale_out_parser
    from ..bench.second_pass import add_bench_second_pass_parser

    add_bench_parser(commands)
    add_bench_second_pass_parser(commands)
    add_bench_replay_parser(commands)
    add_bench_encoder_parser(commands)
    add_bench_capacity_parser(commands)
    add_bench_scale_out_parser(commands)

    from .keys import add_keys_parser
    from .models import add_models_parser

    add_keys_parser(commands)
    add_models_parser(commands)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("streamscribe")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    """Run one command; its failures are one line on stderr and a non-zero status, Ctrl-C is 130."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        line, code = _one_line(exc)
        print(line, file=sys.stderr)
    return code
