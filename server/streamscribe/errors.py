"""One root error; each subclass knows its wire code and WebSocket close code."""

from __future__ import annotations

from pathlib import Path


class StreamscribeError(Exception):
    """Base of every error a client may see: `code` goes on the wire with the message."""

    code = "internal_error"
    close_code = 1011  # WebSocket: internal error
    http_status = 500
    retry_after_s: int | None = None
    """When to try again (HTTP Retry-After, the `error` event's retry_after_s), where known."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def close_reason(self) -> bytes:
        """The message as a WebSocket close reason: at most 120 bytes of UTF-8, cut between
        characters (a cut inside one makes the close frame invalid: the client sees 1006)."""
        return self.message.encode()[:120].decode(errors="ignore").encode()

    @classmethod
    def reading_failed(cls, exc: BaseException) -> StreamscribeError:
        """A bug or an unexpected failure while taking a client's audio: it ends that stream only."""
        return cls(f"the server failed reading the stream ({type(exc).__name__}); what was heard is kept")


class BadMessage(StreamscribeError):
    """A text frame that is not valid JSON or not a known message."""

    code = "bad_message"
    close_code = 1007  # invalid payload data


class ProtocolViolation(StreamscribeError):
    """A well-formed message at the wrong time (audio before start, a second start...)."""

    code = "protocol_violation"
    close_code = 1002


class UnsupportedAudio(StreamscribeError):
    """An audio format the server cannot convert (encoding, rate, channels), or a file it cannot
    decode."""

    code = "unsupported_audio"
    close_code = 1003  # unsupported data
    http_status = 415


class UnsupportedLanguage(StreamscribeError):
    code = "unsupported_language"
    close_code = 1003
    http_status = 400


class FrameTooLarge(StreamscribeError):
    code = "frame_too_large"
    close_code = 1009  # message too big


class SessionTooLong(StreamscribeError):
    code = "session_too_long"
    close_code = 1009
    http_status = 413


class UnknownModel(StreamscribeError):
    """A model that cannot be found, read or loaded; the message says which and why."""

    code = "unknown_model"
    close_code = 1008  # policy violation
    http_status = 400

    @classmethod
    def file_failed(cls, doing: str, path: Path, exc: OSError) -> UnknownModel:
        """The error to raise for a file system failure while getting a model ready: "cannot <doing>
        <path>: <the system's reason>", naming the file the system named where that is another (the
        directory to create, a temporary file beside it). A full disk, an unwritable cache or an
        unreadable model is a model that cannot be used, not a network error."""
        named = exc.filename
        at = f" (at {named})" if named is not None and str(named) != str(path) else ""
        return cls(f"cannot {doing} {path}{at}: {exc.strerror or exc}")


class Overloaded(StreamscribeError):
    code = "overloaded"
    close_code = 1013  # try again later
    http_status = 429

    def __init__(self, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class SlowConsumer(StreamscribeError):
    """The client does not read its events fast enough; it is disconnected, not buffered for."""

    code = "slow_consumer"
    close_code = 1008


class DecodeFailed(StreamscribeError):
    code = "decode_failed"
    close_code = 1011


class ShuttingDown(StreamscribeError):
    code = "shutting_down"
    close_code = 1001  # going away
    http_status = 503


class StorageFailed(StreamscribeError):
    """The server could not write what it keeps (a full disk, say); what was heard before stays."""

    code = "storage_failed"
    close_code = 1011
    http_status = 507  # insufficient storage


class TooManyConnections(StreamscribeError):
    """The server holds max_connections open connections: a new one is answered and closed."""

    code = "too_many_connections"
    http_status = 503
    retry_after_s = 1


class StorageFull(StreamscribeError):
    """The disk under the data directory is full (or under its reserve): nothing new is kept;
    what is stored stays readable."""

    code = "storage_full"
    close_code = 1011
    http_status = 507


class QuotaExceeded(StreamscribeError):
    """A key's recordings take as much disk as its quota (keys create --max-audio-mb)."""

    code = "quota_exceeded"
    close_code = 1008
    http_status = 507


class StorageUnavailable(StreamscribeError):
    """The transcript store or the data directory cannot be used (read-only, damaged, gone)."""

    code = "storage_unavailable"
    close_code = 1011
    http_status = 503


class DataDirInUse(StreamscribeError):
    """Another server process keeps the same data directory; this one does not start."""

    code = "data_dir_in_use"


class NodeNameInUse(StreamscribeError):
    """Another running process holds this node's name on the same Redis; this one does not start."""

    code = "node_name_in_use"


class FinalizeFailed(StreamscribeError):
    """The second pass failed; the versions stored before it stay."""

    code = "finalize_failed"


class DiarizationUnavailable(StreamscribeError):
    code = "diarization_unavailable"


class TranscriptNotFound(StreamscribeError):
    code = "transcript_not_found"
    http_status = 404


class AudioNotRetained(StreamscribeError):
    code = "audio_not_retained"
    http_status = 409


class TranscriptBusy(StreamscribeError):
    code = "transcript_busy"
    http_status = 409


class VersionLimit(StreamscribeError):
    """A re-run of a transcript that has as many versions as the server keeps (max_versions)."""

    code = "version_limit"
    http_status = 409


class UploadTooLarge(StreamscribeError):
    code = "upload_too_large"
    http_status = 413


class EmptyUpload(StreamscribeError):
    code = "empty_upload"
    http_status = 400


class NoAudioStream(StreamscribeError):
    """A file that decodes, but holds no audio (a video without sound, an image, a document)."""

    code = "no_audio_stream"
    http_status = 422


class UploadInterrupted(StreamscribeError):
    """The client went away before the whole file arrived; nothing was kept."""

    code = "upload_interrupted"
    http_status = 400


class IdleTimeout(StreamscribeError):
    """A client that stopped sending, or sends too slowly to finish: an upload body that stalls
    or trickles, a WebSocket with no `start` or no audio. A stream's words so far are kept."""

    code = "idle_timeout"
    close_code = 1008
    http_status = 408


class SessionNotFound(StreamscribeError):
    code = "session_not_found"
    http_status = 404


class EventsExpired(StreamscribeError):
    """A follower asked for events older than the session's event log still keeps."""

    code = "events_expired"
    close_code = 1008
    http_status = 410


class ResumeExpired(StreamscribeError):
    """A /v1/stream?resume= token that no stream waits for: its window passed, or it is unknown."""

    code = "resume_expired"
    close_code = 1008
    http_status = 404


class ConnectionLost(StreamscribeError):
    """On a client (the Python SDK's ConnectionLost, the browser SDK's `error` event): the
    connection dropped and the stream could not go on: the server offers no resume, did not take
    the client back within the resume window, or needs audio older than the client keeps. The
    server keeps what it received (a transcript marked as cut)."""

    code = "connection_lost"


class InvalidRequest(StreamscribeError):
    """A REST request with bad parameters or body."""

    code = "invalid_request"
    http_status = 400


class NotFound(StreamscribeError):
    """No such endpoint (an unknown transcript is transcript_not_found)."""

    code = "not_found"
    http_status = 404


class MethodNotAllowed(StreamscribeError):
    code = "method_not_allowed"
    http_status = 405


class RequestTooLarge(StreamscribeError):
    """A JSON request body past its limit (uploads have upload_too_large)."""

    code = "request_too_large"
    http_status = 413


class UnsupportedMediaType(StreamscribeError):
    """A JSON endpoint sent another Content-Type: a cross-site form can post text/plain without a
    CORS preflight, never application/json."""

    code = "unsupported_media_type"
    http_status = 415


class UnsupportedContentEncoding(StreamscribeError):
    code = "unsupported_content_encoding"
    http_status = 415


class Unauthorized(StreamscribeError):
    """No credential, or one that is not a current key, where the server has keys."""

    code = "unauthorized"
    close_code = 1008
    http_status = 401


class ForbiddenOrigin(StreamscribeError):
    """A browser request from a page on an origin the server does not allow (--allowed-origins)."""

    code = "forbidden_origin"
    close_code = 1008
    http_status = 403


class ForbiddenHost(StreamscribeError):
    """A Host header the server does not answer to (DNS rebinding of a loopback server)."""

    code = "forbidden_host"
    close_code = 1008
    http_status = 403


class AuthRequired(StreamscribeError):
    """`serve` on a network address with no API key and auth on: it refuses to start."""

    code = "auth_required"


class KeyExists(StreamscribeError):
    code = "key_exists"
    http_status = 409


def client_reason(exc: BaseException) -> str:
    """What a client may read of an unexpected failure: the message of our own errors, else only
    the kind (raw exception text can hold paths, URLs and credentials; it goes to the log)."""
    return exc.message if isinstance(exc, StreamscribeError) else type(exc).__name__


def close_code_for(error_code: str | None) -> int:
    """The WebSocket close code for a session that ended with this wire error code (None: normal)."""
    if error_code is None:
        return 1000
    return error_for(error_code, "").close_code


def error_for(error_code: str, message: str) -> StreamscribeError:
    """The error with this wire code (the root error for an unknown code)."""
    return _ERRORS_BY_CODE.get(error_code, StreamscribeError)(message)


def _all_errors(root: type[StreamscribeError]) -> list[type[StreamscribeError]]:
    kinds = [root]
    for child in root.__subclasses__():
        kinds.extend(_all_errors(child))
    return kinds


_ERRORS_BY_CODE = {kind.code: kind for kind in _all_errors(StreamscribeError)}
"""Every error class by its wire code, built once (every error is defined above)."""
ERROR_CODES = frozenset(_ERRORS_BY_CODE)
"""Every code a client may be answered with."""
