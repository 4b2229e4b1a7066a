"""streamscribe bench-scale-out: what Redis Streams cost a follower, and what workers add.

1. Event path: real speech streamed at real-time pace into a node; a follower of the same
   session (GET /v1/sessions/{id}/events, SSE) reads every final. A final's extra latency is when
   the follower got it less when the streaming client got it (the client's own socket is fed in
   process either way). Measured against an embedded server (in-process event log) and against a
   scaled-out node (Redis Streams), on the same audio: the difference is what Redis adds.
2. Second passes per minute: `jobs` recordings are streamed into a node that runs no second
   pass, then 1 (and then 2) `streamscribe worker` processes are started, on the nodes' --engine,
   each with its share of the cores (--cpu-threads), and timed from their start until every job is
   done, model loading included (once per worker).

Needs a Redis and a PostgreSQL it may write to (--redis-url, --database-url); loadtests/scale_out.py
starts both on loopback ports.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from ..audio import SAMPLE_RATE
from ..client import Client
from ..client.stream import TimedEvent, stream_samples
from ..wire import Final, Ready, Stop
from .corpus import Corpus
from .metrics import percentile
from .options import add_benchmark
from .server import ServerProcess

_JOB_CLIP_S = 20.0


async def measure(corpus: Corpus, args: argparse.Namespace) -> dict[str, Any]:
    if not (args.redis_url and args.database_url):
        raise ValueError(
            "bench-scale-out needs --redis-url and --database-url (loadtests/scale_out.py starts both)"
        )
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        embedded = await _follower_lag(corpus, args, "--data-dir", str(root / "embedded"))
        scaled = [
            "--data-dir", str(root / "node"), "--redis-url", args.redis_url, "--database-url", args.database_url,
            "--audio-url", f"file://{root / 'audio'}", "--node-id", f"bench-node-{uuid.uuid4().hex[:6]}",
        ]  # fmt: skip
        redis_path = await _follower_lag(corpus, args, *scaled)
        throughput = {
            f"{workers}_workers": await _second_passes_per_minute(corpus, args, root, scaled, workers)
            for workers in (1, 2)
        }
    return {
        "engine": args.engine,
        "corpus": corpus.name,
        "audio_s": round(corpus.duration_s, 1),
        "final_follower_lag_ms": {"in_process": embedded, "redis": redis_path},
        "redis_extra_ms": {
            key: round(redis_path[key] - embedded[key], 1) for key in ("p50", "p95") if key in embedded
        },
        "second_passes": throughput,
    }


async def _follower_lag(corpus: Corpus, args: argparse.Namespace, *serve_args: str) -> dict[str, float]:
    """p50/p95/max (ms) of how much later a follower gets each final than the streaming client."""
    async with ServerProcess(
        args.model, "--no-second-pass", *serve_args, *shlex.split(args.serve_args), engine=args.engine
    ) as server:
        client_s: dict[int, float] = {}
        follower_s: dict[int, float] = {}
        followers: list[asyncio.Task[None]] = []

        async def follow(client: Client, session_id: str) -> None:
            async for event in client.follow(session_id):
                if isinstance(event, Final):
                    follower_s[event.seq] = time.monotonic()

        async with Client(server.base_url) as client:

            def on_client(timed: TimedEvent) -> None:
                if isinstance(timed.event, Ready):
                    followers.append(asyncio.create_task(follow(client, timed.event.session_id)))
                elif isinstance(timed.event, Final):
                    client_s[timed.event.seq] = time.monotonic()

            await stream_samples(server.url, corpus.audio, speed=args.speed, on_event=on_client)
            await asyncio.wait_for(asyncio.gather(*followers), 60)
    lags_ms = [(follower_s[seq] - client_s[seq]) * 1000 for seq in client_s if seq in follower_s]
    if not lags_ms:
        return {"finals": 0}
    return {
        "finals": len(lags_ms),
        "p50": round(percentile(lags_ms, 0.5), 1),
        "p95": round(percentile(lags_ms, 0.95), 1),
        "max": round(max(lags_ms), 1),
    }


async def _second_passes_per_minute(
    corpus: Corpus, args: argparse.Namespace, root: Path, scaled: list[str], workers: int
) -> dict[str, float]:
    clip = _JOB_CLIP_S * SAMPLE_RATE
    clips = [corpus.audio[int(start) : int(start + clip)] for start in range(0, corpus.audio.size, int(clip))]
    clips = [piece for piece in clips if piece.size > SAMPLE_RATE][: args.jobs]
    async with ServerProcess(args.model, *scaled, "--second-pass-workers", "0", engine=args.engine) as server:
        ids: list[str] = []
        for piece in clips:
            result = await stream_samples(server.url, piece, speed=0, stop=Stop(wait_for_transcript=False))
            ids.extend(timed.event.session_id for timed in result.events if isinstance(timed.event, Ready))
        began = time.monotonic()
        processes = [
            await _start_worker(root, scaled, index, workers, args.engine) for index in range(workers)
        ]
        try:
            await _until_done(server.base_url, ids)
        finally:
            for process in processes:
                process.terminate()
            await asyncio.gather(*(process.wait() for process in processes))
        wall_s = time.monotonic() - began
    audio_s = sum(piece.size for piece in clips) / SAMPLE_RATE
    return {
        "jobs": len(ids),
        "audio_s": round(audio_s, 1),
        "wall_s": round(wall_s, 1),
        "per_minute": round(len(ids) / wall_s * 60, 2),
    }


async def _start_worker(
    root: Path, scaled: list[str], index: int, workers: int, engine: str
) -> asyncio.subprocess.Process:
    """Worker `index` of `workers` on this machine, with its share of the cores, on the nodes'
    engine."""
    options = list(scaled)
    options[options.index("--node-id") + 1] = f"bench-worker-{index}-{uuid.uuid4().hex[:6]}"
    options[options.index("--data-dir") + 1] = str(root / f"worker-{index}")
    options += ["--engine", engine, "--cpu-threads", str(max(1, (os.cpu_count() or 1) // workers))]
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streamscribe.cli", "worker", *options,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def _until_done(base_url: str, ids: list[str]) -> None:
    pending = set(ids)
    async with aiohttp.ClientSession() as http:
        while pending:
            for transcript_id in list(pending):
                async with http.get(f"{base_url}/v1/transcripts/{transcript_id}/versions") as response:
                    if (await response.json()).get("state") in ("done", "failed"):
                        pending.discard(transcript_id)
            await asyncio.sleep(0.5)


def report(figures: dict[str, Any]) -> None:
    print(json.dumps(figures, indent=2))


def add_bench_scale_out_parser(commands: Any) -> None:
    bench = add_benchmark(
        commands, "bench-scale-out", "Redis event path latency and second passes per minute with 1 and 2 workers",
        measure, report, ("librispeech", "conversation"),
    )  # fmt: skip
    for option, variable, what in (
        ("--redis-url", "STREAMSCRIBE_REDIS_URL", "a Redis database the benchmark may write to"),
        ("--database-url", "STREAMSCRIBE_DATABASE_URL", "a PostgreSQL database the benchmark may write to"),
    ):
        bench.add_argument(option, default=os.environ.get(variable), help=f"{what} (default: {variable})")
    bench.add_argument(
        "--speed", type=float, default=1.0, help="x real time of the followed stream (default: %(default)s)"
    )
    bench.add_argument(
        "--jobs", type=int, default=8, help=f"second passes, of {_JOB_CLIP_S:g} s each (default: 8)"
    )
    bench.add_argument(
        "--serve-args", dest="serve_args", default="", help="more options for the node (default: none)"
    )
