"""The options every benchmark shares, declared once, and where their figures go."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from .corpus import DEFAULT_TESTDATA, Corpus, load_corpus

Figures = dict[str, Any]
Measure = Callable[[Corpus, argparse.Namespace], Coroutine[Any, Any, Figures]]


def add_benchmark(
    commands: Any,
    name: str,
    help: str,
    measure: Measure,
    report: Callable[[Figures], None],
    corpora: Sequence[str],
    *,
    engine_option: bool = True,
) -> argparse.ArgumentParser:
    """A benchmark subcommand with --corpus, --minutes, --model, --engine (unless `engine_option`
    is False: a benchmark of one engine's internals), --testdata and --json that loads the corpus,
    runs `measure` on it, shows the figures with `report` and appends them to --json. Add the
    benchmark's own options to the parser it returns."""

    def handler(args: argparse.Namespace) -> int:
        corpus = corpus_from_args(args)
        if corpus is None:
            return 2
        figures = asyncio.run(measure(corpus, args))
        report(figures)
        append_json(args.json, figures)
        return 0

    bench: argparse.ArgumentParser = commands.add_parser(name, help=help)
    bench.add_argument(
        "--corpus",
        choices=list(corpora),
        default=corpora[0],
        help=f"the speech to play (default: {corpora[0]})",
    )
    bench.add_argument(
        "--minutes", type=float, default=5.0, help="length of the LibriSpeech stream (default: 5)"
    )
    bench.add_argument(
        "--skip-minutes", dest="skip_minutes", type=float, default=0.0,
        help="start the LibriSpeech stream this far into dev-clean, past the speakers a 10-minute "
        "stream holds, to check on other speakers (default: 0)",
    )  # fmt: skip
    bench.add_argument("--model", default="tiny.en", help="the live model (default: tiny.en)")
    if engine_option:
        bench.add_argument(
            "--engine", choices=["faster-whisper", "whisper.cpp"], default="faster-whisper",
            help="what decodes the live model (default: faster-whisper)",
        )  # fmt: skip
    bench.add_argument(
        "--testdata",
        default=os.environ.get("STREAMSCRIBE_TESTDATA", str(DEFAULT_TESTDATA)),
        help="the test speech folder (default: ../shared/testdata, or STREAMSCRIBE_TESTDATA)",
    )
    bench.add_argument("--json", help="append the figures as one JSON line to this file (default: none)")
    bench.set_defaults(handler=handler)
    return bench


def add_live_load_options(bench: argparse.ArgumentParser, stagger_s: float) -> None:
    """--stagger-s (its default given) and --serve-args, for the benchmarks that run live streams
    against a `serve` subprocess (bench/live.py's run_streams reads both)."""
    bench.add_argument(
        "--stagger-s", dest="stagger_s", type=float, default=stagger_s,
        help=f"seconds between the starts of the streams, as independent users begin (default: {stagger_s:g})",
    )  # fmt: skip
    bench.add_argument(
        "--serve-args", dest="serve_args", default="",
        help="more options for the server, as one string (e.g. \"--device cuda --decode-batch-size 64\"; "
        "default: none)",
    )  # fmt: skip


def corpus_from_args(args: argparse.Namespace) -> Corpus | None:
    """The corpus named by --corpus/--minutes/--skip-minutes from --testdata; None (and why on
    stderr) without it."""
    testdata = Path(args.testdata)
    if not testdata.is_dir():
        print(f"no test speech at {testdata}; pass --testdata", file=sys.stderr)
        return None
    try:
        return load_corpus(args.corpus, testdata, args.minutes, args.skip_minutes)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def append_json(path: str | None, figures: Figures) -> None:
    """Append the figures as one JSON line (--json), if a path was given."""
    if path:
        with open(path, "a") as handle:
            handle.write(json.dumps(figures) + "\n")
