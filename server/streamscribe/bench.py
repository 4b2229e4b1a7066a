"""streamscribe bench: real speech streamed at real-time pace to a real server, measured.

Prints WER of the finals and of an offline decode of the same audio with the same model,
per-word latency of partials and finals (wall time a word first arrives minus its end time in
the offline decode, words matched by alignment), real-time factor, and server memory.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import os
import re
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .asr.engine import AsrWord
from .audio import SAMPLE_RATE, Samples, read_file
from .client import StreamResult, TimedEvent, stream_samples
from .evaluation import align, normalise_text, word_error_rate
from .wire import Final, Partial, Start

DEFAULT_TESTDATA = Path(__file__).resolve().parents[3] / "shared" / "testdata"
"""../shared/testdata beside a source checkout."""
GAP_S = 0.6


@dataclass(frozen=True, slots=True)
class Corpus:
    name: str
    audio: Samples
    reference: str
    """Empty where only speaker turns are known."""
    rttm: Path | None = None
    """The reference speaker turns, where known."""

    @property
    def duration_s(self) -> float:
        return self.audio.size / SAMPLE_RATE


# ---- corpora ------------------------------------------------------------------------------------


def librispeech_stream(testdata: Path, minutes: float) -> Corpus:
    """dev-clean utterances in a fixed order, joined with short silences, up to `minutes`."""
    pieces: list[Samples] = []
    texts: list[str] = []
    total = 0
    gap = np.zeros(int(GAP_S * SAMPLE_RATE), dtype=np.float32)
    for flac, text in _librispeech_utterances(testdata / "librispeech-dev-clean"):
        audio = read_file(flac)
        pieces += [audio, gap]
        texts.append(text)
        total += audio.size + gap.size
        if total >= minutes * 60 * SAMPLE_RATE:
            break
    return Corpus(f"librispeech-{minutes:g}min", np.concatenate(pieces), " ".join(texts))


def _librispeech_utterances(root: Path) -> Iterator[tuple[Path, str]]:
    for listing in sorted(root.glob("*/*/*.trans.txt")):
        for line in listing.read_text().splitlines():
            utterance_id, text = line.split(" ", 1)
            yield listing.parent / f"{utterance_id}.flac", text


def conversation(testdata: Path) -> Corpus:
    base = testdata / "conversations" / "conv2spk_1272_84"
    with base.with_suffix(".transcript.tsv").open() as handle:
        reference = " ".join(row["text"] for row in csv.DictReader(handle, delimiter="\t"))
    return Corpus("conversation-2spk", read_file(base.with_suffix(".wav")), reference, base.with_suffix(".rttm"))


def meeting(testdata: Path) -> Corpus:
    """pyannote's 30 s two-person sample: real conversation with overlap; speaker turns only."""
    base = testdata / "pyannote" / "sample"
    return Corpus("meeting-pyannote-sample", read_file(base.with_suffix(".wav")), "", base.with_suffix(".rttm"))


def load_corpus(name: str, testdata: Path, minutes: float) -> Corpus:
    loaders = {
        "librispeech": lambda: librispeech_stream(testdata, minutes),
        "conversation": lambda: conversation(testdata),
        "jfk": lambda: jfk(testdata),
        "meeting": lambda: meeting(testdata),
    }
    return loaders[name]()


def jfk(testdata: Path) -> Corpus:
    return Corpus("jfk", read_file(testdata / "jfk" / "jfk.wav"), (testdata / "jfk" / "jfk.txt").read_text())


# ---- measurement --------------------------------------------------------------------------------


@dataclass(slots=True)
class OfflineDecode:
    words: list[AsrWord]
    seconds: float
    tokens: list[str] = field(default_factory=list)
    token_end_s: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        for word in self.words:
            for token in normalise_text(word.text):
                self.tokens.append(token)
                self.token_end_s.append(word.end_s)

    @property
    def text(self) -> str:
        return " ".join(word.text for word in self.words)


def offline_decode(corpus: Corpus, model: str, cache_dir: Path) -> OfflineDecode:
    """The whole recording at once, faster-whisper's default offline settings (beam 5)."""
    from faster_whisper import WhisperModel

    from .asr.models import resolve_model

    whisper = WhisperModel(resolve_model(model, cache_dir), device="cpu", compute_type="int8")
    began = time.perf_counter()
    segments, _ = whisper.transcribe(corpus.audio, language="en", word_timestamps=True, beam_size=5)
    words = [
        AsrWord(word.word.strip(), word.start, word.end, word.probability)
        for segment in list(segments)
        for word in segment.words or []
    ]
    return OfflineDecode(words, time.perf_counter() - began)


def first_arrivals(
    events: list[TimedEvent], offline: OfflineDecode
) -> tuple[dict[int, float], dict[int, float]]:
    """For each offline token index: when it first arrived in any hypothesis, and as a final.

    Finals are matched by a Levenshtein alignment of the whole final sequence; a partial word is
    matched to the offline token with the same text whose end time is nearest (within 1 s).
    """
    final_tokens: list[str] = []
    final_arrival: list[float] = []
    for timed in events:
        if isinstance(timed.event, Final):
            for word in timed.event.words:
                for token in normalise_text(word.text):
                    final_tokens.append(token)
                    final_arrival.append(timed.arrived_s)
    _, pairs = align(offline.tokens, final_tokens)
    finals = {ref: final_arrival[hyp] for ref, hyp in pairs}

    seen = dict(finals)
    by_text: dict[str, list[int]] = {}
    for index, token in enumerate(offline.tokens):
        by_text.setdefault(token, []).append(index)
    for timed in events:
        if not isinstance(timed.event, Partial):
            continue
        for word in timed.event.words:
            for token in normalise_text(word.text):
                candidates = [
                    i for i in by_text.get(token, []) if abs(offline.token_end_s[i] - word.end) < 1.0
                ]
                if candidates:
                    index = min(candidates, key=lambda i: abs(offline.token_end_s[i] - word.end))
                    seen[index] = min(seen.get(index, timed.arrived_s), timed.arrived_s)
    return seen, finals


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]  # nearest rank


Latency = tuple[float, float]
"""(offline end time of the word, seconds from that end until it arrived)."""


def latencies(arrivals: dict[int, float], offline: OfflineDecode) -> list[Latency]:
    return [
        (offline.token_end_s[index], arrived - offline.token_end_s[index])
        for index, arrived in arrivals.items()
    ]


def latency_summary(
    samples: list[Latency], window_s: tuple[float, float] = (0.0, float("inf"))
) -> dict[str, float]:
    values = [latency for end_s, latency in samples if window_s[0] <= end_s < window_s[1]]
    return {"p50_s": percentile(values, 0.5), "p95_s": percentile(values, 0.95), "words": len(values)}


class ServerProcess:
    """`streamscribe serve` on a free loopback port, with its memory sampled every second."""

    def __init__(self, model: str, *serve_args: str) -> None:
        self._model = model
        self._serve_args = serve_args
        self.url = ""
        self.base_url = ""
        self.rss_mib: list[tuple[float, float]] = []
        self._process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> ServerProcess:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "streamscribe.cli",
            "serve",
            "--port",
            "0",
            "--model",
            self._model,
            *self._serve_args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert self._process.stdout is not None
        line = (await asyncio.wait_for(self._process.stdout.readline(), 120)).decode()
        found = re.search(r"listening on http://(\S+)", line)
        if not found:
            raise RuntimeError(f"the server did not start: {line!r}")
        self.base_url = f"http://{found.group(1)}"
        self.url = f"ws://{found.group(1)}/v1/stream"
        self._sampler = asyncio.create_task(self._sample_memory())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._sampler.cancel()
        assert self._process is not None
        self._process.terminate()
        await self._process.wait()

    async def health(self) -> dict[str, Any]:
        import aiohttp

        async with (
            aiohttp.ClientSession() as http,
            http.get(self.url.replace("ws://", "http://").replace("/v1/stream", "/healthz")) as response,
        ):
            health: dict[str, Any] = await response.json()
            return health

    async def _sample_memory(self) -> None:
        import psutil

        assert self._process is not None
        process = psutil.Process(self._process.pid)
        began = time.monotonic()
        while True:
            self.rss_mib.append((time.monotonic() - began, process.memory_info().rss / 2**20))
            await asyncio.sleep(1.0)


@dataclass(frozen=True, slots=True)
class StreamRun:
    results: list[StreamResult]
    decoder: dict[str, Any]
    """The server's decoder totals over the run (uploads alongside included)."""
    rss_mib: list[tuple[float, float]]
    wall_s: float
    uploads_done: int


async def run_streams(corpus: Corpus, args: argparse.Namespace) -> StreamRun:
    serve_args = ["--no-second-pass"] if args.no_second_pass else []
    async with ServerProcess(args.model, *serve_args) as server:
        before = await server.health()
        began = time.monotonic()
        streaming = asyncio.Event()
        streaming.set()
        uploads = [asyncio.create_task(_upload_while(streaming, server, corpus)) for _ in range(args.uploads)]
        results = await asyncio.gather(*(_stream(server, corpus, args) for _ in range(args.sessions)))
        wall_s = time.monotonic() - began
        after = await server.health()
        streaming.clear()
        uploads_done = sum(await asyncio.gather(*uploads))
        decoder = {key: after["decoder"][key] - before["decoder"][key] for key in after["decoder"]}
        return StreamRun(list(results), decoder, server.rss_mib, wall_s, uploads_done)


async def _stream(server: ServerProcess, corpus: Corpus, args: argparse.Namespace) -> StreamResult:
    if args.transport == "webrtc":
        from .webrtc_client import stream_samples_webrtc

        return await stream_samples_webrtc(server.base_url, corpus.audio, speed=args.speed, language="en")
    return await stream_samples(server.url, corpus.audio, speed=args.speed, start=Start(language="en"))


async def _upload_while(streaming: asyncio.Event, server: ServerProcess, corpus: Corpus) -> int:
    """Upload the corpus (as mp3, at max speed) again and again while the live streams run, each
    followed to its final version; how many were done."""
    import tempfile

    from .bench_replay import write_mp3
    from .client import follow_session, upload_file

    done = 0
    with tempfile.TemporaryDirectory() as scratch:
        file = Path(scratch) / f"{corpus.name}.mp3"
        await asyncio.to_thread(write_mp3, corpus.audio, file)
        while streaming.is_set():
            accepted = await upload_file(server.base_url, file, {"speed": "max", "language": "en"})
            await follow_session(server.base_url, accepted["session_id"], lambda event: None)
            done += 1
    return done


def measure(corpus: Corpus, offline: OfflineDecode, run: StreamRun, args: argparse.Namespace) -> dict[str, Any]:
    duration = corpus.duration_s
    results, decoder, rss_mib = run.results, run.decoder, run.rss_mib
    partial_latencies: list[Latency] = []
    final_latencies: list[Latency] = []
    for result in results:
        seen, finals = first_arrivals(result.events, offline)
        partial_latencies += latencies(seen, offline)
        final_latencies += latencies(finals, offline)
    stream_wers = [word_error_rate(corpus.reference, " ".join(w.text for w in r.finals)) for r in results]
    figures: dict[str, Any] = {
        "corpus": corpus.name,
        "audio_s": round(duration, 1),
        "sessions": len(results),
        "transport": args.transport,
        "uploads_alongside": args.uploads,
        "uploads_done": run.uploads_done,
        "second_pass": not args.no_second_pass,
        "speed": args.speed,
        "model": args.model,
        "wer_finals": round(statistics.mean(stream_wers), 4),
        "wer_offline": round(word_error_rate(corpus.reference, offline.text), 4),
        "latency_partial": latency_summary(partial_latencies),
        "latency_final": latency_summary(final_latencies),
        "words_matched_final": f"{len(final_latencies)}/{len(offline.tokens) * len(results)}",
        "rtf_decoder_busy": round(decoder["busy_s"] / (duration * len(results)), 3),
        "decodes": decoder["decodes"],
        "wall_s": round(run.wall_s, 1),
        "offline_decode_s": round(offline.seconds, 1),
        "server_rss_peak_mib": round(max(rss for _, rss in rss_mib), 1),
    }
    if duration >= 180:
        first, last = (0.0, 60.0), (duration - 60.0, duration)
        figures["latency_final_first_minute"] = latency_summary(final_latencies, first)
        figures["latency_final_last_minute"] = latency_summary(final_latencies, last)
        figures["server_rss_mib_at"] = {
            f"{int(t // 60)}min": round(rss, 1) for t, rss in rss_mib if int(t) % 60 == 0 and t > 1
        }
    return figures


def report(figures: dict[str, Any]) -> None:
    def fmt(summary: dict[str, float]) -> str:
        return f"p50 {summary['p50_s']:.2f} s  p95 {summary['p95_s']:.2f} s  ({summary['words']} words)"

    print(
        f"\n== {figures['corpus']}: {figures['audio_s']} s of audio, {figures['sessions']} session(s), "
        f"speed {figures['speed']}x, model {figures['model']}, over {figures['transport']}"
        + (f", {figures['uploads_done']} uploads replayed alongside" if figures["uploads_alongside"] else "")
    )
    print(f"WER finals          {100 * figures['wer_finals']:.2f} %")
    print(f"WER offline decode  {100 * figures['wer_offline']:.2f} %   (same model, beam 5, whole file)")
    print(f"latency partial     {fmt(figures['latency_partial'])}")
    print(f"latency final       {fmt(figures['latency_final'])}")
    for key in ("latency_final_first_minute", "latency_final_last_minute"):
        if key in figures:
            print(f"  {key.removeprefix('latency_final_').replace('_', ' '):17} {fmt(figures[key])}")
    print(
        f"real-time factor    {figures['rtf_decoder_busy']} (decoder busy s per audio s, {figures['decodes']} decodes)"
    )
    print(
        f"server memory       peak {figures['server_rss_peak_mib']} MiB"
        + (f"; by minute {figures['server_rss_mib_at']}" if "server_rss_mib_at" in figures else "")
    )
    sys.stdout.flush()


def _cmd_bench(args: argparse.Namespace) -> int:
    from .config import load_settings

    corpus = corpus_from_args(args)
    if corpus is None:
        return 2
    offline = offline_decode(corpus, args.model, load_settings().model_cache_dir)
    figures = measure(corpus, offline, asyncio.run(run_streams(corpus, args)), args)
    report(figures)
    append_json(args.json, figures)
    return 0


def corpus_from_args(args: argparse.Namespace) -> Corpus | None:
    """The corpus named by --corpus/--minutes from --testdata; None (and why on stderr) without it."""
    testdata = Path(args.testdata)
    if not testdata.is_dir():
        print(f"no test speech at {testdata}; pass --testdata", file=sys.stderr)
        return None
    return load_corpus(args.corpus, testdata, args.minutes)


def append_json(path: str | None, figures: dict[str, Any]) -> None:
    """Append the figures as one JSON line (--json), if a path was given."""
    if path:
        with open(path, "a") as handle:
            handle.write(json.dumps(figures) + "\n")


def add_bench_parser(commands: Any) -> None:
    bench = commands.add_parser("bench", help="stream real speech to a server at real-time pace and measure")
    bench.add_argument("--corpus", choices=["librispeech", "conversation", "jfk"], default="librispeech")
    bench.add_argument("--minutes", type=float, default=5.0, help="length of the LibriSpeech stream")
    bench.add_argument("--sessions", type=int, default=1, help="concurrent streams of the same audio")
    bench.add_argument("--speed", type=float, default=1.0, help="x real time (1 = real-time pace)")
    bench.add_argument(
        "--uploads", type=int, default=0, help="upload loops replaying the corpus at max speed alongside"
    )
    bench.add_argument("--no-second-pass", dest="no_second_pass", action="store_true")
    bench.add_argument(
        "--transport", choices=["websocket", "webrtc"], default="websocket", help="how the streams reach the server"
    )
    bench.add_argument("--model", default="tiny.en")
    bench.add_argument("--testdata", default=os.environ.get("STREAMSCRIBE_TESTDATA", str(DEFAULT_TESTDATA)))
    bench.add_argument("--json", help="append the figures as one JSON line to this file")
    bench.set_defaults(handler=_cmd_bench)
