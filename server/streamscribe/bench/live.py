"""streamscribe bench: real speech streamed at real-time pace to a real server, measured.

Prints WER of the finals and of an offline decode of the same audio with the same model,
per-word latency of partials and finals (wall time a word first arrives minus its end time in
the offline decode, words matched by alignment), real-time factor, and server memory.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from ..client import Client
from ..client.stream import StreamResult, stream_samples
from ..client.webrtc import stream_samples_webrtc
from ..wire import Error, Final, Start
from .corpus import Corpus, write_mp3
from .metrics import (
    Latency,
    OfflineDecode,
    first_arrivals,
    latencies,
    latency_summary,
    offline_decode,
    word_error_rate,
)
from .options import add_benchmark, add_live_load_options
from .protocols import stream_deepgram, stream_openai_realtime
from .server import ServerProcess

_PING_EVERY_S = 1.0
"""WebSocket streams ping this often, to measure how long a ping waits behind the audio."""


@dataclass(frozen=True, slots=True)
class StreamRun:
    results: list[StreamResult]
    decoder: dict[str, Any]
    """The server's decoder totals over the run (uploads alongside included)."""
    rss_mib: list[tuple[float, float]]
    decode_wait_p95_s: list[float]
    """The server's admission measure, sampled every second while live streams were decoded."""
    wall_s: float
    uploads_done: int


async def run_streams(corpus: Corpus, args: argparse.Namespace) -> StreamRun:
    serve_args = [*(["--no-second-pass"] if args.no_second_pass else []), *shlex.split(args.serve_args)]
    async with ServerProcess(args.model, *serve_args, engine=args.engine) as server:
        before = await server.health()
        began = time.monotonic()
        streaming = asyncio.Event()
        streaming.set()
        uploads = [asyncio.create_task(_upload_while(streaming, server, corpus)) for _ in range(args.uploads)]
        results = await asyncio.gather(
            *(_stream(server, corpus, args, delay_s=index * args.stagger_s) for index in range(args.sessions))
        )
        wall_s = time.monotonic() - began
        after = await server.health()
        streaming.clear()
        uploads_done = sum(await asyncio.gather(*uploads))
        totals = msgspec.structs.asdict(after.decoder).items()
        decoder = {key: value - getattr(before.decoder, key) for key, value in totals}
        return StreamRun(
            list(results), decoder, server.rss_mib, server.decode_wait_p95_s, wall_s, uploads_done
        )


async def _stream(
    server: ServerProcess, corpus: Corpus, args: argparse.Namespace, delay_s: float
) -> StreamResult:
    await asyncio.sleep(delay_s)  # staggered starts, as independent users begin
    if args.transport == "webrtc":
        return await stream_samples_webrtc(server.base_url, corpus.audio, speed=args.speed, language="en")
    if args.transport == "deepgram":
        return await stream_deepgram(server.base_url, corpus.audio, args.speed)
    if args.transport == "openai-realtime":
        return await stream_openai_realtime(server.base_url, corpus.audio, args.speed)
    return await stream_samples(
        server.url, corpus.audio, speed=args.speed, start=Start(language="en"), ping_every_s=_PING_EVERY_S
    )


async def _upload_while(streaming: asyncio.Event, server: ServerProcess, corpus: Corpus) -> int:
    """Upload the corpus (as mp3, at max speed) again and again while the live streams run, each
    followed to its final version; how many were done."""
    done = 0
    with tempfile.TemporaryDirectory() as scratch:
        file = Path(scratch) / f"{corpus.name}.mp3"
        await asyncio.to_thread(write_mp3, corpus.audio, file)
        async with Client(server.base_url) as client:
            while streaming.is_set():
                await client.transcribe(file, speed="max", language="en")
                done += 1
    return done


def measure(
    corpus: Corpus, offline: OfflineDecode, run: StreamRun, args: argparse.Namespace
) -> dict[str, Any]:
    duration = corpus.duration_s
    refused = sum(result.refused for result in run.results)
    results = [result for result in run.results if not result.refused]
    decoder, rss_mib = run.decoder, run.rss_mib
    if not results:
        return {
            "corpus": corpus.name,
            "sessions": len(run.results),
            "refused": refused,
            "model": args.model,
            "engine": args.engine,
        }
    partial_latencies: list[Latency] = []
    final_latencies: list[Latency] = []
    final_p95_per_stream: list[float] = []
    for result in results:
        seen, finals = first_arrivals(result.events, offline)
        partial_latencies += latencies(seen, offline)
        final_latencies += latencies(finals, offline)
        final_p95_per_stream.append(latency_summary(latencies(finals, offline))["p95_s"])
    stream_wers = [word_error_rate(corpus.reference, " ".join(w.text for w in r.finals)) for r in results]
    live_pass_s = max(_last_final_s(result) for result in results)
    ping_waits = [wait for result in results for wait in result.ping_waits_s]
    figures: dict[str, Any] = {
        "corpus": corpus.name,
        "audio_s": round(duration, 1),
        "sessions": len(run.results),
        "admitted": len(results),
        "refused": refused,
        "transport": args.transport,
        "uploads_alongside": args.uploads,
        "uploads_done": run.uploads_done,
        "second_pass": not args.no_second_pass,
        "speed": args.speed,
        "model": args.model,
        "engine": args.engine,
        "wer_finals": round(statistics.mean(stream_wers), 4),
        "wer_offline": round(word_error_rate(corpus.reference, offline.text), 4),
        "latency_partial": latency_summary(partial_latencies),
        "latency_final": latency_summary(final_latencies),
        "words_matched_final": f"{len(final_latencies)}/{len(offline.tokens) * len(results)}",
        "rtf_decoder_busy": round(decoder["busy_s"] / (duration * len(results)), 3),
        "decodes": decoder["decodes"],
        "batches": decoder["batches"],
        "greedy_decodes": decoder["greedy_decodes"],
        "completed": sum(result.completed for result in results),
        "stagger_s": args.stagger_s,
        "final_p95_worst_stream_s": round(
            max(math.inf if math.isnan(p) else p for p in final_p95_per_stream), 2
        ),
        "streams_with_errors": sum(
            any(isinstance(timed.event, Error) for timed in result.events) for result in results
        ),
        "live_pass_s": round(live_pass_s, 1),
        "ping_wait_max_s": round(max(ping_waits), 2) if ping_waits else None,
        "pings": len(ping_waits),
        "wall_s": round(run.wall_s, 1),
        "offline_decode_s": round(offline.seconds, 1),
        "server_rss_peak_mib": round(max(rss for _, rss in rss_mib), 1),
        "decode_wait_p95_s": {
            "median": round(statistics.median(run.decode_wait_p95_s), 2) if run.decode_wait_p95_s else None,
            "max": round(max(run.decode_wait_p95_s), 2) if run.decode_wait_p95_s else None,
        },
    }
    if duration >= 180:
        first, last = (0.0, 60.0), (duration - 60.0, duration)
        figures["latency_final_first_minute"] = latency_summary(final_latencies, first)
        figures["latency_final_last_minute"] = latency_summary(final_latencies, last)
        figures["server_rss_mib_at"] = {
            f"{int(t // 60)}min": round(rss, 1) for t, rss in rss_mib if int(t) % 60 == 0 and t > 1
        }
    return figures


def _last_final_s(result: StreamResult) -> float:
    """When the stream's last final arrived (seconds since its first audio was sent)."""
    return max((timed.arrived_s for timed in result.events if isinstance(timed.event, Final)), default=0.0)


def report(figures: dict[str, Any]) -> None:
    if "admitted" not in figures:
        print(f"\n== all {figures['sessions']} stream(s) were refused (overloaded)")
        return

    def fmt(summary: dict[str, float]) -> str:
        return f"p50 {summary['p50_s']:.2f} s  p95 {summary['p95_s']:.2f} s  ({summary['words']} words)"

    print(
        f"\n== {figures['corpus']}: {figures['audio_s']} s of audio, {figures['sessions']} session(s), "
        f"speed {figures['speed']}x, model {figures['model']} ({figures['engine']}), "
        f"over {figures['transport']}"
        + (f", {figures['uploads_done']} uploads replayed alongside" if figures["uploads_alongside"] else "")
    )
    print(f"WER finals          {100 * figures['wer_finals']:.2f} %")
    print(
        f"WER offline decode  {100 * figures['wer_offline']:.2f} %   "
        "(same model on faster-whisper, beam 5, whole file)"
    )
    print(f"latency partial     {fmt(figures['latency_partial'])}")
    print(f"latency final       {fmt(figures['latency_final'])}")
    if figures["sessions"] > 1:
        print(
            f"  worst stream      final p95 {figures['final_p95_worst_stream_s']:.2f} s; "
            f"{figures['streams_with_errors']} stream(s) with an error; starts {figures['stagger_s']:g} s apart"
        )
        print(f"  admitted          {figures['admitted']}; refused (overloaded) {figures['refused']}")
    for key in ("latency_final_first_minute", "latency_final_last_minute"):
        if key in figures:
            print(f"  {key.removeprefix('latency_final_').replace('_', ' '):17} {fmt(figures[key])}")
    print(
        f"real-time factor    {figures['rtf_decoder_busy']} (decoder busy s per audio s, {figures['decodes']} decodes "
        f"in {figures['batches']} batches, {figures['greedy_decodes']} of them greedy under load)"
    )
    print(
        f"live pass           {figures['live_pass_s']} s to the last final "
        f"({figures['audio_s'] / max(figures['live_pass_s'], 0.1):.1f}x real time); "
        f"{figures['completed']} of {figures['admitted']} admitted stream(s) completed"
    )
    wait = figures["decode_wait_p95_s"]
    if wait["median"] is not None:
        print(
            f"decode wait p95     median {wait['median']} s, max {wait['max']} s (the admission measure, each second)"
        )
    if figures["pings"]:
        print(f"longest ping wait   {figures['ping_wait_max_s']} s ({figures['pings']} pings, one a second)")
    print(
        f"server memory       peak {figures['server_rss_peak_mib']} MiB"
        + (f"; by minute {figures['server_rss_mib_at']}" if "server_rss_mib_at" in figures else "")
    )
    sys.stdout.flush()


async def measure_streams(corpus: Corpus, args: argparse.Namespace) -> dict[str, Any]:
    """The offline reference decode, then the streams against a server, measured."""
    offline = await asyncio.to_thread(offline_decode, corpus, args.model)
    return measure(corpus, offline, await run_streams(corpus, args), args)


def add_bench_parser(commands: Any) -> None:
    bench = add_benchmark(
        commands, "bench", "stream real speech to a server at real-time pace and measure", measure_streams, report,
        ("librispeech", "conversation", "jfk"),
    )  # fmt: skip
    bench.add_argument(
        "--sessions", type=int, default=1, help="concurrent streams of the same audio (default: 1)"
    )
    bench.add_argument("--speed", type=float, default=1.0, help="x real time (default: 1, real-time pace)")
    add_live_load_options(bench, stagger_s=0.0)
    bench.add_argument(
        "--uploads",
        type=int,
        default=0,
        help="upload loops replaying the corpus at max speed alongside (default: 0)",
    )
    bench.add_argument(
        "--no-second-pass",
        dest="no_second_pass",
        action="store_true",
        help="run the server without its second pass (default: with it)",
    )
    bench.add_argument(
        "--transport", choices=["websocket", "webrtc", "deepgram", "openai-realtime"], default="websocket",
        help="how the streams reach the server: our WebSocket, WebRTC, or the protocol of Deepgram's or "
        "OpenAI's Realtime SDKs (default: websocket)",
    )  # fmt: skip
