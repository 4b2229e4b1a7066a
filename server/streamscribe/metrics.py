"""Every figure a process exports at GET /metrics (Prometheus), defined once, in a registry of
its own: each server or worker in a process reports only what it counted itself.

Make one `Metrics` per server (app.create_app) or worker (app.work) and pass it to the parts
that count: the session host (final words, their lag, audio, uploads), the decode scheduler, the
second-pass job runner, and the transports that refuse clients. Figures that state already holds
(open sessions and connections, the decoder's totals) are read when scraped
(transports/metrics.py). Names say their unit: `_seconds`, `_bytes`, counters end in `_total`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LAG_BUCKETS_S = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 10.0, 20.0, 60.0)
_DECODE_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
_WAIT_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_SECOND_PASS_BUCKETS_S = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


class Metrics:
    """The metric objects of one server or worker, in `registry` (serve it with
    transports.metrics.metrics_route)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.audio_received = Counter(
            "streamscribe_audio_received_seconds_total",
            "Seconds of audio the sessions took (16 kHz, after conversion), by transport.",
            ["transport"],
            registry=registry,
        )
        self.final_words = Counter(
            "streamscribe_final_words_total",
            "Final words sent (committed, never revised), by transport.",
            ["transport"],
            registry=registry,
        )
        self.final_word_lag = Histogram(
            "streamscribe_final_word_lag_seconds",
            "Per final word: seconds from the arrival of the audio of its end at the server to its "
            "final going out, by transport (for upload, from the audio's decoding from the file).",
            ["transport"],
            buckets=_LAG_BUCKETS_S,
            registry=registry,
        )
        self.uploads = Counter(
            "streamscribe_uploads_total",
            "Uploaded files whose replay ended, by outcome: ok, the error code it ended with, or "
            "refused (a file or options found bad before its replay started).",
            ["outcome"],
            registry=registry,
        )
        self.refusals = Counter(
            "streamscribe_refusals_total",
            "Requests, streams and connections refused, by error code (unauthorized, overloaded, "
            "not_found, too_many_connections...).",
            ["code"],
            registry=registry,
        )
        self.decode_seconds = Histogram(
            "streamscribe_decode_seconds",
            "Seconds per model call of the live decoder (one batch of windows).",
            buckets=_DECODE_BUCKETS_S,
            registry=registry,
        )
        self.decode_batch_windows = Histogram(
            "streamscribe_decode_batch_windows",
            "Windows (sessions) decoded per model call.",
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.decode_wait = Histogram(
            "streamscribe_decode_wait_seconds",
            "Per live window: seconds from its session being ready to its words (queue, batch and "
            "model call); admission goes by its recent p95 (max_decode_wait_s).",
            buckets=_WAIT_BUCKETS_S,
            registry=registry,
        )
        self.second_pass_jobs = Counter(
            "streamscribe_second_pass_jobs_total",
            "Second-pass jobs this process queued (state=queued) or finished (done, failed).",
            ["state"],
            registry=registry,
        )
        self.second_passes_running = Gauge(
            "streamscribe_second_pass_jobs_running",
            "Second-pass jobs running in this process now.",
            registry=registry,
        )
        self.second_pass_duration = Histogram(
            "streamscribe_second_pass_duration_seconds",
            "Seconds per second-pass job, from its claim to its end, by state (done, failed).",
            ["state"],
            buckets=_SECOND_PASS_BUCKETS_S,
            registry=registry,
        )
