"""Every message on the /v1/stream WebSocket, defined once as tagged msgspec Structs, and the REST
bodies the server answers with (decoded by the Python client with the same types).

The names are a contract with independent clients: add fields (with defaults), never rename.
Times on the wire are seconds from the first sample of the stream.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 1 << 20
Prompt = Annotated[str, msgspec.Meta(max_length=1000)]
"""A decode prompt a client may give: at most 1,000 characters."""
RetentionHours = Annotated[float, msgspec.Meta(ge=0)]
"""How long a client wants its audio kept after the second pass (0: none); it can only shorten
what its key or the server keeps."""


class Word(msgspec.Struct, frozen=True):
    """One recognised word; times in seconds from the first sample of the stream."""

    text: str
    start: float
    end: float
    confidence: float


# ---- client to server ---------------------------------------------------------------------------


class ClientMessage(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, frozen=True):
    """Base of every text frame a client may send."""


class Start(ClientMessage, tag="start", frozen=True):
    """Opens the stream; binary audio frames in this format follow."""

    sample_rate: int = 16000
    encoding: str = "pcm_s16le"
    """pcm_s16le, pcm_f32le, pcm_mulaw or pcm_alaw (G.711); others are refused with
    `unsupported_audio`."""
    channels: int = 1
    language: str | None = None
    model: str | None = None
    prompt: Prompt | None = None
    """Words and spelling to expect (names, jargon): the prompt of decodes until text is committed."""
    audio_retention_h: RetentionHours | None = None


class Finalize(ClientMessage, tag="finalize", frozen=True):
    """Commit everything heard so far now."""


class Stop(ClientMessage, tag="stop", frozen=True):
    """End of stream: the server flushes and sends the remaining finals; where it keeps transcripts
    it then sends `finalizing` and `transcript_ready` (unless `wait_for_transcript` is false: the
    second pass still runs), then `closed`, then closes."""

    wait_for_transcript: bool = True


ClientUnion = Start | Finalize | Stop


# ---- server to client ---------------------------------------------------------------------------


class ServerMessage(msgspec.Struct, tag_field="type", frozen=True, kw_only=True):
    """Base of every event the server sends; `seq` increases by one per event in a session."""

    seq: int


class Ready(ServerMessage, tag="ready", frozen=True):
    session_id: str
    protocol: int
    model: str
    sample_rate: int
    transcript_id: str | None = None
    """Where the stored transcript will be (GET /v1/transcripts/{id}); None if none is kept. A
    stream that ends with no audio at all keeps none: it closes without `transcript_ready`."""
    resume_token: str | None = None
    """Only in the `ready` a /v1/stream client gets (never in the session's followed events): after
    a dropped connection, reconnect to /v1/stream?resume=TOKEN&after=LAST_SEQ within the server's
    resume window, with no `start`. None where the server offers no resume."""


class SpeechStarted(ServerMessage, tag="speech_started", frozen=True):
    at: float


class Partial(ServerMessage, tag="partial", frozen=True):
    """The whole current unstable tail; replaces the previous partial."""

    words: list[Word]


class Final(ServerMessage, tag="final", frozen=True):
    """Newly committed words only; never revised or repeated later."""

    words: list[Word]


class UtteranceEnd(ServerMessage, tag="utterance_end", frozen=True):
    at: float


class Error(ServerMessage, tag="error", frozen=True, omit_defaults=True):
    code: str
    message: str
    retry_after_s: int | None = None
    """Seconds after which the same request may succeed (an `overloaded` refusal)."""


class Progress(ServerMessage, tag="progress", frozen=True):
    """How far the live pass of a replayed file has got: seconds of audio processed, of
    `total_s` (None where the file does not say how long it is)."""

    processed_s: float
    total_s: float | None = None


class Finalizing(ServerMessage, tag="finalizing", frozen=True):
    """The second pass is running: `progress` goes from 0 to 1, `processed_s` of `total_s`
    seconds of audio."""

    progress: float
    processed_s: float | None = None
    total_s: float | None = None


class TranscriptReady(ServerMessage, tag="transcript_ready", frozen=True):
    """A new version of the transcript is stored: GET /v1/transcripts/{id}/versions/{version}."""

    transcript_id: str
    version: int


class Resumed(ServerMessage, tag="resumed", frozen=True):
    """The first answer on a resumed connection (not a session event: followers never see it).
    `seq` is the session's newest event: the events after the client's `after` up to it are sent
    next, then new ones. Send audio again from `received_s`, the seconds of audio the server
    holds (what was sent beyond it was lost with the connection)."""

    session_id: str
    received_s: float


class Closed(ServerMessage, tag="closed", frozen=True):
    audio_s: float
    words: int


ServerUnion = (
    Ready
    | SpeechStarted
    | Partial
    | Final
    | UtteranceEnd
    | Error
    | Progress
    | Finalizing
    | TranscriptReady
    | Closed
    | Resumed
)

# ---- REST bodies --------------------------------------------------------------------------------


class ErrorDetail(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    """The same codes as the stream's `error` event (errors.py)."""
    message: str
    type: str = "invalid_request_error"
    """As OpenAI's API has it: invalid_request_error (4xx) or server_error (5xx)."""


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    """Every refused REST request: {"error": {"code", "message", "type"}} with its HTTP status."""

    error: ErrorDetail


class UploadedFile(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    bytes: int
    format: str
    """The container ffmpeg found (mp3, wav, mov,mp4,m4a,...)."""
    codec: str
    duration_s: float | None
    """What the file declares; None if it declares nothing."""


class UploadAccepted(msgspec.Struct, frozen=True, kw_only=True):
    """202 answer of POST /v1/transcriptions: the replay has started."""

    session_id: str
    transcript_id: str
    events_url: str
    transcript_url: str
    speed: str
    file: UploadedFile


class TokenRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Body of POST /v1/tokens."""

    ttl_s: Annotated[int, msgspec.Meta(ge=1, le=600)] = 60


class TokenAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """Answer of POST /v1/tokens: a token that authenticates as the calling key until `expires_at`
    (Unix time), in the Bearer header or as ?token= on stream, event and WebRTC offer URLs."""

    token: str
    expires_at: float


class FinalizeAnswer(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Answer of POST /v1/transcripts/{id}/finalize: "queued" (202), or with ?wait the new version."""

    transcript_id: str
    state: str
    version: int | None = None


class DecoderTotals(msgspec.Struct, kw_only=True):
    """Since the server started: decodes run, seconds the model was busy, seconds of audio decoded,
    and the batches the decodes were made in."""

    decodes: int = 0
    busy_s: float = 0.0
    decoded_audio_s: float = 0.0
    batches: int = 0
    """Model calls: each decodes the windows of one or more sessions."""
    greedy_decodes: int = 0
    """Live decodes made greedy (no beam search) because the decoder was loaded."""


class Health(msgspec.Struct, frozen=True, kw_only=True):
    """GET /healthz."""

    status: str
    """ok; draining while the server shuts down; degraded (HTTP 503) while `storage` is not ok."""
    model: str
    sessions: int
    max_sessions: int
    uploads: int
    max_uploads: int
    decoder: DecoderTotals
    stalled_sessions: int = 0
    """Open sessions with no progress (audio, decodes, state) for stall_after_s: held by nobody."""
    decode_wait_p95_s: float | None = None
    """How long live sessions waited for their decodes (queue and batch), p95 over the last 20 s;
    None when none was decoded then. Admission goes by it (max_decode_wait_s)."""
    connections: int = 0
    """Open HTTP and WebSocket connections."""
    max_connections: int = 0
    connections_refused: int = 0
    """Connections answered too_many_connections since start."""
    storage: str = "ok"
    """ok; full (under min_free_disk_mb free, or a write failed for want of space: new streams
    and uploads are refused); unavailable (the data directory or the store cannot be used)."""
    storage_free_mb: float | None = None
    engine: str = ""
    """faster-whisper or whisper.cpp: what decodes the live model."""
    device: str = ""
    """Where it decodes: cpu, cuda or metal."""


class Readiness(msgspec.Struct, frozen=True, kw_only=True):
    """GET /readyz: whether a load balancer should send this node new sessions (HTTP 503 if not)."""

    status: str
    """ready; draining while the node shuts down; unavailable while a dependency cannot be reached."""
    node: str | None = None
    """This node's name among the nodes on one Redis (None when it runs alone)."""
    checks: dict[str, str] = {}
    """Each dependency ("database", "audio", "redis"): "ok", or why not."""


class WebRtcAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """Answer of POST /v1/webrtc/offer (JSON form)."""

    type: str
    sdp: str
    session_id: str
    transcript_id: str
    location: str
    """DELETE here ends the stream."""


class IceServer(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A STUN or TURN server, as a browser's RTCPeerConnection takes it."""

    urls: list[str]
    username: str | None = None
    credential: str | None = None


class IceServers(msgspec.Struct, frozen=True, kw_only=True):
    """Answer of GET /v1/webrtc/ice-servers: what a client's peer connection should use."""

    ice_servers: list[IceServer]


_client_decoder = msgspec.json.Decoder(ClientUnion)
_server_decoder = msgspec.json.Decoder(ServerUnion)
_encoder = msgspec.json.Encoder()


def decode_client(data: str | bytes) -> ClientMessage:
    """Parse one client text frame; raises msgspec.DecodeError / ValidationError on bad input."""
    message: ClientMessage = _client_decoder.decode(data)
    return message


def decode_server(data: str | bytes) -> ServerMessage:
    """Parse one server event (for clients written in Python)."""
    message: ServerMessage = _server_decoder.decode(data)
    return message


def encode(message: msgspec.Struct) -> bytes:
    return _encoder.encode(message)


def json_schema() -> dict[str, Any]:
    """The JSON schema of both directions of the stream, and of the REST bodies (`rest`, by
    name), served at GET /v1/schema."""
    rest_bodies = (ErrorBody, UploadAccepted, WebRtcAnswer, FinalizeAnswer, Health, IceServers)
    (client, server, *rest), components = msgspec.json.schema_components(
        [ClientUnion, ServerUnion, *rest_bodies]
    )
    return {
        "protocol": PROTOCOL_VERSION,
        "max_frame_bytes": MAX_FRAME_BYTES,
        "client_to_server": client,
        "server_to_client": server,
        "$defs": components,
        "rest": {body.__name__: schema for body, schema in zip(rest_bodies, rest, strict=True)},
    }
