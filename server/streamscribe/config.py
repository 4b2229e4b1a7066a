"""Settings as frozen msgspec Structs; the only place that reads the environment (STREAMSCRIBE_*)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from .languages import check_language
from .transcript import SpeakerMarks
from .wire import Prompt

Device = Literal["cpu", "cuda", "metal", "auto"]
EngineKind = Literal["faster-whisper", "whisper.cpp"]


class StreamSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How one live session turns audio into words."""

    language: str | None = "en"
    decode_step_ms: int = 500
    """Decode again once this much new speech has arrived (and nothing is in flight)."""
    max_window_s: float = 20.0
    """Hard bound on the audio handed to Whisper; the window is trimmed at committed words."""
    max_lookahead_s: float = 120.0
    """Undecoded speech a session reads ahead before its transport stops reading (backpressure):
    a client that sends faster than real time is read this far ahead, so its socket keeps moving
    (and its keepalive pings are answered) while decoding catches up. Held as 16-bit PCM:
    32 kB per second per session."""
    catch_up_after_s: Annotated[float, msgspec.Meta(gt=0.0)] = 6.0
    """A session this far behind (undecoded speech) catches up: it decodes long windows of
    several utterances at once and commits what one hypothesis says, as an offline decode does."""
    catch_up_window_s: Annotated[float, msgspec.Meta(gt=1.0, le=30.0)] = 28.0
    """Audio per catch-up decode (Whisper's own window is 30 s)."""
    catch_up_margin_s: Annotated[float, msgspec.Meta(ge=0.0)] = 3.0
    """A catch-up decode that ends inside speech commits only words that end this long before its
    end; the rest is decoded again with the next window."""
    trim_after_s: float = 15.0
    """Once the window is longer than this, drop its committed head (the final words Whisper
    hears again give it context: 10 s cost 0.2 WER points on held-out speakers)."""
    commit_margin_s: float = 0.5
    """Agreement commits a word only once it ends this long before the newest audio."""
    settle_s: float = 1.5
    """A word that consecutive hypotheses still disagree on is committed as the newest one says
    once it ends this long before the newest audio: runs of words that Whisper kept revising came
    final 3-5 s late. On the conversation it cut final p95 from 2.49 to 2.04 s, WER within 0.1 points."""
    min_context_s: float = 3.0
    """Each decode covers at least this much of the region (committed words included), so that
    Whisper never sees a short tail alone, which is where it hallucinates."""
    agreement_n: int = 2
    """LocalAgreement-n: a word is final once n consecutive hypotheses agree on it."""
    prompt_chars: int = 200
    """Committed text given to Whisper as the prompt (about 40 tokens): it keeps the style of the
    text so far ("ten", not "10"); 80 cost 0.3 WER points on held-out speakers."""
    vad_threshold: float = 0.5
    vad_release: float = 0.35
    min_silence_ms: int = 1000
    """Silence this long ends an utterance: its words are committed and its audio dropped. Shorter
    pauses stay inside the window, so Whisper decodes the words after a pause with the sentence
    before it heard (500 ms cost 0.3 WER points on held-out speakers: each sentence decoded cold)."""
    speech_pad_ms: int = 200
    max_session_s: float = 4 * 3600.0
    beam_size: Annotated[int, msgspec.Meta(ge=1, le=10)] = 5
    """Beam of live decodes while the decoder has room; past it (the live streams' decode wait
    p95 past the server's beam_until_wait_s) they are greedy. On 2 cores beam 5 cut tiny.en's WER on
    the conversation by 1.9 points for 16 % more decoder time."""

    def __post_init__(self) -> None:
        if self.settle_s < self.commit_margin_s:
            raise ValueError(
                f"settle_s {self.settle_s} must be at least commit_margin_s {self.commit_margin_s}"
            )
        if self.catch_up_margin_s >= self.catch_up_window_s / 2:
            raise ValueError(
                f"catch_up_margin_s {self.catch_up_margin_s} must be under half of catch_up_window_s "
                f"({self.catch_up_window_s}): each catch-up window must commit more than it decodes again"
            )


def max_speed_replay() -> StreamSettings:
    """Replays of a file at `max` speed: the audio is all there, so each decode takes a long
    window and commits what one hypothesis says, as an offline decode does. Whisper pays for 30 s
    of audio per decode whatever it is given, so fewer, longer decodes are what makes it fast."""
    return StreamSettings(
        beam_size=1,
        decode_step_ms=20000,
        max_lookahead_s=60.0,
        max_window_s=28.0,
        trim_after_s=14.0,
        agreement_n=1,
        commit_margin_s=3.0,
        settle_s=3.0,
        min_silence_ms=2000,
    )


MAX_BEAM_SIZE = 10
"""Memory and time grow with the beam (beam 1600 took 50 s and 1.8 GB for one request)."""
MAX_SPEAKERS = 32
SpeakerCount = Annotated[int, msgspec.Meta(ge=1, le=MAX_SPEAKERS)]


class FinalizeSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The second pass at end of stream; POST /v1/transcripts/{id}/finalize may override any field
    (checked: out-of-range values are refused, naming the field)."""

    enabled: bool = True
    model: str = "base"
    beam_size: Annotated[int, msgspec.Meta(ge=1, le=MAX_BEAM_SIZE)] = 5
    language: str | None = None
    prompt: Prompt | None = None
    """Text that sets the vocabulary and style of the redecode (Whisper's initial prompt)."""
    """None: the language the live stream used."""
    diarize: bool = True
    diarizer: Literal["resemblyzer", "pyannote"] = "resemblyzer"
    pyannote_checkpoint: str | None = None
    """A local pyannote.audio pipeline (config.yaml or directory); used with diarizer "pyannote"."""
    num_speakers: SpeakerCount | None = None
    min_speakers: SpeakerCount | None = None
    max_speakers: SpeakerCount | None = None
    paragraph_pause_s: Annotated[float, msgspec.Meta(gt=0.0, le=60.0)] = 2.0
    caption_max_chars: Annotated[int, msgspec.Meta(ge=16, le=120)] = 42
    caption_max_lines: Annotated[int, msgspec.Meta(ge=1, le=4)] = 2
    caption_min_duration_s: Annotated[float, msgspec.Meta(ge=0.3, le=5.0)] = 1.0
    """A caption stays up at least this long, where the next one leaves room."""
    caption_max_chars_per_s: Annotated[float, msgspec.Meta(ge=5.0, le=40.0)] = 17.0
    """Reading speed: a caption stays up until it can be read at this speed, where the next one
    leaves room (else it is merged with a neighbour when they fit together)."""
    caption_speaker_marks: SpeakerMarks = "dash"
    """How SRT shows a change of speaker: "dash" (a leading "- "), "name" ("Speaker 2: ") or "none"."""
    rewrite_url: str | None = None
    """An OpenAI-compatible API base (e.g. http://localhost:11434/v1): optional punctuation rewrite."""
    rewrite_model: str = "gpt-4o-mini"
    rewrite_timeout_s: Annotated[float, msgspec.Meta(gt=0.0)] = 30.0

    def __post_init__(self) -> None:
        check_language(self.language)
        low, high = self.min_speakers or 1, self.max_speakers or MAX_SPEAKERS
        if low > high:
            raise ValueError(f"min_speakers {low} is more than max_speakers {high}")
        if self.num_speakers is not None and not low <= self.num_speakers <= high:
            raise ValueError(
                f"num_speakers {self.num_speakers} is outside min_speakers..max_speakers ({low}-{high})"
            )


class ServerSettings(msgspec.Struct, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 8000
    metrics_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] | None = None
    """Also serve GET /metrics alone on 127.0.0.1 at this port, with no key, for a scraper or
    sidecar on the same host (0: any free port, logged); None: only at /metrics on `port`, where
    keys are asked like on every route. A worker serves its metrics only here."""
    auth: Literal["on", "off"] = "on"
    """on: once a key exists every request needs one, and a server on a non-loopback address with
    no key refuses to start; off: no credential is asked (something in front checks callers)."""
    allowed_origins: tuple[str, ...] = ()
    """Browser origins ("https://app.example.com") besides the server's own that may call the API
    and open its WebSockets, with CORS headers to match; "*" allows any. Others get 403."""
    allowed_hosts: tuple[str, ...] = ()
    """Host header names accepted; empty: on a loopback address only loopback names (a page on
    another site reaching it through DNS rebinding is refused), elsewhere any."""
    engine: EngineKind = "faster-whisper"
    """What decodes, the live pass and the second pass alike: faster-whisper (CTranslate2, on the
    CPU or CUDA) or whisper.cpp (ggml, on the CPU, or Metal on Apple silicon; the embedded models
    are converted to ggml on first use)."""
    model: str = "tiny.en"
    device: Device = "auto"
    """cpu, cuda, or metal (whisper.cpp only); auto: Metal on Apple silicon for whisper.cpp, CUDA
    where present for faster-whisper, else the CPU."""
    compute_type: str = "default"
    """CTranslate2 compute type (faster-whisper only); "default" means int8 on CPU and float16 on CUDA."""
    cpu_threads: int = 0
    """Threads for one decode on CPU; 0 = the cores shared among the decode workers."""
    decode_workers: Annotated[int, msgspec.Meta(ge=0, le=64)] = 0
    """Live decodes run at once, each a batch on its own thread; 0 = on faster-whisper one per core
    on the CPU (tiny.en gains 7 % from a second thread per decode but 60 % from a second decode at
    once), one on a GPU (a second one there stretched the latency tail on an H100); on whisper.cpp
    one per 4 cores (it gains from a decode's threads instead), one on Metal."""
    model_cache_dir: Path = Path.home() / ".cache" / "streamscribe"
    max_sessions: int = 32
    """Live streams and file replays together."""
    max_decode_wait_s: Annotated[float, msgspec.Meta(gt=0.0)] = 2.0
    """Admission by measured load: a new live stream is refused (`overloaded`) when it would make
    the live streams' p95 wait for a decode (queue and batch) exceed this, as predicted from the
    last 20 s. Finals trail speech by about twice this less the decode. On 2 cores 8 streams
    decoded with beam 5 held the targets at a p95 wait of 1.8 s; 10 missed partial p50 at 2.2 s."""
    beam_until_wait_s: Annotated[float, msgspec.Meta(ge=0.0)] = 2.0
    """Live decodes use their stream's beam while the live streams' decode wait p95 is under
    this; above it they are greedy, the cushion of a server past its capacity. On 2 cores greedy
    decodes held 12 streams within the latency targets but lost 2.4-2.8 WER points to one stream
    (beam 5); beam held 8 streams within 1.3 points."""
    decode_batch_size: Annotated[int, msgspec.Meta(ge=0, le=256)] = 0
    """Sessions decoded in one model call at most; 0 = what suits the device: 2 on a CPU (a
    session's words come when its whole batch is done, and only `generate` gains from a batch
    there: 8 streams on 2 cores had a partial p50 of 0.70 s with 2, 1.07 s with 8), 128 on a GPU,
    where batching is the lever."""
    decode_gather_ms: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 20
    """How long a batch waits for more live sessions to be ready, when more are open than ready;
    a lone session never waits."""
    max_stream_speed: Annotated[float, msgspec.Meta(ge=1.0)] = 20.0
    """A live stream's audio is taken at most this many times faster than real time once its
    first stream_burst_s are in (silence costs no decode: without a bound one client pushed
    6,488 s of it in 30 s through the voice detector and onto the disk); the client is then
    simply read slower. Not much lower: a fast client's keepalive ping waits behind the audio its
    socket buffers hold (about 6 MB, 190 s, on loopback: 10 s at 20x; a stock client gives up
    after 20 s). File replays are bounded by the decoder instead."""
    stream_burst_s: Annotated[float, msgspec.Meta(ge=0.0)] = 120.0
    """Audio a live stream may send at once, beyond max_stream_speed (a client catching up
    after a stall, or a test streaming a recording)."""
    max_connections: Annotated[int, msgspec.Meta(ge=1)] = 1000
    """Open connections at most (idle, streaming and half-sent alike); more are answered 503
    `too_many_connections` and closed at once. Keep it under the process's open-file limit."""
    max_connections_per_address: Annotated[int, msgspec.Meta(ge=1)] = 256
    """Open connections from one client address at most (raise it behind a proxy that connects
    from one address for everyone)."""
    idle_timeout_s: Annotated[float, msgspec.Meta(gt=0.0)] = 10.0
    """A connection is closed when its request head (the first one included), a WebSocket's
    `start`, or the next bytes of an upload body do not come within this."""
    stream_idle_timeout_s: Annotated[float, msgspec.Meta(gt=0.0)] = 60.0
    """A started live stream that sends nothing (no audio, no message) for this long is ended
    (`idle_timeout`), its words kept, as if its client had gone."""
    min_upload_kib_per_s: Annotated[float, msgspec.Meta(ge=0.0)] = 8.0
    """An upload body must average at least this (after its first idle_timeout_s), or it is
    refused (`idle_timeout`): a body trickled at 1 byte a second held an upload slot for good.
    An upload holds its slot from its first bytes, so at this pace one of max_upload_mb may hold
    it for max_upload_mb / this (73 h for 2 GiB): lower max_upload_mb or raise this where that
    matters, and give keys --max-replays."""
    max_uploads: int = 4
    """File replays at a time (each counts as a session too); more are refused with 429."""
    max_upload_mb: float = 2048.0
    allowed_models: tuple[str, ...] = ()
    """Models a client may name for its second pass, besides the embedded ones and the server's
    own; a name is loaded (or downloaded, where a network exists) on the first request."""
    event_log_max_events: int = 10000
    """Events kept per session for followers of /v1/sessions/{id}/events (a newer partial
    replaces the one before it); older ones are dropped."""
    event_log_linger_s: float = 600.0
    """How long a finished session's events can still be followed."""
    outbox_max_messages: int = 512
    resume_window_s: Annotated[float, msgspec.Meta(ge=0.0, le=3600.0)] = 30.0
    """How long a live WebSocket stream whose connection dropped without `stop` waits for its
    client to come back with its `resume_token` (0: it ends at once, as before resume existed)."""
    shutdown_timeout_s: float = 10.0
    drain_grace_s: Annotated[float, msgspec.Meta(ge=0.0)] = 0.0
    """After SIGTERM: how long the node goes on serving its open sessions, refusing new ones and
    answering /readyz 503, before it ends them. Behind a load balancer give it two of its health
    check intervals, so that no new connection is sent to a node that is going away."""
    stall_after_s: float = 120.0
    """/healthz counts an open session as stalled after this long without progress."""
    data_dir: Path = Path.home() / ".local" / "share" / "streamscribe"
    """Transcripts (SQLite) and recorded audio."""
    min_free_disk_mb: Annotated[float, msgspec.Meta(ge=0.0)] = 256.0
    """New streams and uploads are refused (`storage_full`) while the disk of data_dir has less
    free: the room that streams in progress, second passes and the store still need."""
    max_versions: Annotated[int, msgspec.Meta(ge=2)] = 20
    """Versions a transcript may have; a re-run (POST .../finalize) past it is refused
    (`version_limit`): each one costs a second pass and is kept for good."""
    audio_retention_h: float = 168.0
    """Recorded audio is deleted this long after its second pass; 0 = right after it; inf = never."""
    client_dir: Path = Path(__file__).resolve().parents[2] / "client_js"
    """The browser client and live-caption page served at / (client_js/ of a source checkout)."""
    rewrite_api_key: str | None = None
    """Bearer token for FinalizeSettings.rewrite_url; kept out of the stored version settings."""
    webrtc_ports: str = ""
    """UDP ports for WebRTC media, "MIN-MAX" (publish the same range from a container or a
    firewall; each stream takes one per network address); empty: any port the OS picks."""
    webrtc_public_address: str | None = None
    """An IP address peers can reach this server at (a NAT's or a container host's), offered
    besides the host's own, on the same ports."""
    webrtc_stun_url: str | None = None
    """A STUN server ("stun:host:port") that tells both ends their public address; also given to
    browsers by GET /v1/webrtc/ice-servers."""
    webrtc_turn_url: str | None = None
    """A TURN server ("turn:host:port") to relay media through where no direct path exists."""
    webrtc_turn_username: str | None = None
    webrtc_turn_password: str | None = None
    redis_url: str | None = None
    """redis://host:port/db: session events and second-pass jobs go through Redis Streams, so
    any node serves any session's events and `streamscribe worker` processes take the jobs;
    None: in this process (events) and in the transcript store (jobs)."""
    database_url: str | None = None
    """postgresql://user:password@host:port/db: transcripts, versions and keys in PostgreSQL
    (shared by every node and worker); None: SQLite in data_dir."""
    audio_url: str | None = None
    """Where recordings are kept: file:///path (a volume every node and worker mounts) or
    s3://bucket/prefix (AWS S3, MinIO, any S3-compatible store; endpoint and credentials from the
    usual AWS_* variables); None: data_dir/audio."""
    second_pass_workers: Annotated[int, msgspec.Meta(ge=0, le=64)] = 1
    """Second passes this process runs at once; 0: none, only `streamscribe worker` processes
    take the jobs (needs redis_url)."""
    node_id: str | None = None
    """This node's name in Redis (its lease and the sessions it holds); None: the host name.
    Two running processes on one Redis must not share a name."""
    node_lease_s: Annotated[float, msgspec.Meta(ge=1.0)] = 15.0
    """A node or worker renews its lease every third of this; once it has not for this long, its
    cut-off streams are recovered by the others."""
    job_visibility_timeout_s: Annotated[float, msgspec.Meta(ge=1.0)] = 60.0
    """A job whose worker has not sent a heartbeat (every third of this) for this long is taken
    by another worker: what a SIGKILLed worker or a lost machine costs in delay."""
    stream: StreamSettings = msgspec.field(default_factory=StreamSettings)
    replay: StreamSettings = msgspec.field(default_factory=max_speed_replay)
    """Stream settings of file replays at `max` speed; `realtime` replays use `stream`."""
    finalize: FinalizeSettings = msgspec.field(default_factory=FinalizeSettings)

    def __post_init__(self) -> None:
        _ = self.webrtc_port_range
        if self.webrtc_public_address is not None:
            try:
                ipaddress.ip_address(self.webrtc_public_address)
            except ValueError:
                raise ValueError(
                    f"webrtc_public_address {self.webrtc_public_address!r} is not an IP address"
                ) from None
        for name, url, schemes in (
            ("webrtc_stun_url", self.webrtc_stun_url, ("stun:", "stuns:")),
            ("webrtc_turn_url", self.webrtc_turn_url, ("turn:", "turns:")),
        ):
            if url is not None and not url.startswith(schemes):
                raise ValueError(f"{name} {url!r} must start with {' or '.join(schemes)}")
        if self.webrtc_turn_url and not (self.webrtc_turn_username and self.webrtc_turn_password):
            raise ValueError("webrtc_turn_url needs webrtc_turn_username and webrtc_turn_password")
        for name, address, prefixes in (
            ("redis_url", self.redis_url, ("redis://", "rediss://", "unix://")),
            ("database_url", self.database_url, ("postgresql://", "postgres://")),
            ("audio_url", self.audio_url, ("file:///", "s3://")),
        ):
            if address is not None and not address.startswith(
                prefixes
            ):  # never echo it: it may hold a password
                raise ValueError(f"{name} must start with {' or '.join(prefixes)}")
        if self.redis_url is not None and (self.database_url is None or self.audio_url is None):
            raise ValueError(
                "redis_url needs database_url and audio_url: nodes and workers on one Redis share their "
                "transcripts in PostgreSQL and their recordings in a shared volume or an S3 bucket"
            )
        if self.second_pass_workers == 0 and self.redis_url is None:
            raise ValueError(
                "second_pass_workers 0 needs redis_url: only `streamscribe worker` would run second passes"
            )

    @property
    def webrtc_port_range(self) -> range | None:
        """`webrtc_ports` as a range, None for any port; raises ValueError if it is not MIN-MAX."""
        if not self.webrtc_ports:
            return None
        low, _, high = self.webrtc_ports.partition("-")
        if not (low.isdigit() and high.isdigit() and 1024 <= int(low) <= int(high) <= 65535):
            raise ValueError(f"webrtc_ports {self.webrtc_ports!r} must be MIN-MAX, within 1024-65535")
        return range(int(low), int(high) + 1)


def _from_env(cls: type[msgspec.Struct], environ: Mapping[str, str], prefix: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in cls.__struct_fields__:
        raw = environ.get(f"{prefix}{name.upper()}")
        if raw is not None:
            values[name] = raw
    return values


def client_api_key(environ: Mapping[str, str] | None = None) -> str | None:
    """The API key the command-line clients send (STREAMSCRIBE_API_KEY), if one is set."""
    return (os.environ if environ is None else environ).get("STREAMSCRIBE_API_KEY") or None


def load_settings(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> ServerSettings:
    """Defaults, then STREAMSCRIBE_* variables, then explicit overrides (from the command line).

    Stream settings read STREAMSCRIBE_STREAM_*, max-speed replays STREAMSCRIBE_REPLAY_*, second-pass
    settings STREAMSCRIBE_FINALIZE_*; overrides may hold "stream", "replay" and "finalize" mappings.
    Raises msgspec.ValidationError on a bad value.
    """
    environ = os.environ if environ is None else environ
    overrides = {key: value for key, value in (overrides or {}).items() if value is not None}
    server_values = _from_env(ServerSettings, environ, "STREAMSCRIBE_")
    nested: dict[str, Any] = {}
    defaults: msgspec.Struct
    for name, prefix, defaults in (
        ("stream", "STREAMSCRIBE_STREAM_", StreamSettings()),
        ("replay", "STREAMSCRIBE_REPLAY_", max_speed_replay()),
        ("finalize", "STREAMSCRIBE_FINALIZE_", FinalizeSettings()),
    ):
        values = msgspec.structs.asdict(defaults)
        values.update(_from_env(type(defaults), environ, prefix))
        values.update({k: v for k, v in overrides.pop(name, {}).items() if v is not None})
        server_values.pop(name, None)
        nested[name] = msgspec.convert(values, type(defaults), strict=False)
    for listed in ("allowed_models", "allowed_origins", "allowed_hosts"):
        if isinstance(server_values.get(listed), str):
            server_values[listed] = [
                item.strip() for item in server_values[listed].split(",") if item.strip()
            ]
    server_values.update(overrides)
    settings = msgspec.convert(
        server_values, ServerSettings, strict=False, dec_hook=_decode_path, from_attributes=True
    )
    return msgspec.structs.replace(settings, **nested)


def _decode_path(kind: type, value: Any) -> Any:
    if kind is Path:
        return Path(value)
    raise NotImplementedError(kind)
