"""One live stream, sans-I/O: audio and control in, decode requests out, results in, events out.

Speech regions come from the VAD; silence is never decoded. Inside a region a rolling window
is decoded again and again; LocalAgreement turns the hypotheses into finals; the window is
trimmed at committed words so each decode stays bounded. A region that ends (silence, finalize,
stop) is decoded once more and everything in it is committed. A session that falls behind (a
client sending faster than real time, a busy decoder) catches up with long windows over several
regions, each committed from one hypothesis, as an offline decode does.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from ..asr.engine import AsrWord, DecodeOptions
from ..audio import SAMPLE_RATE, Samples
from ..config import StreamSettings
from ..errors import DecodeFailed, FinalizeFailed, SessionTooLong
from ..vad import FRAME_SAMPLES, SpeechEnd, SpeechStart, VadEvent
from ..wire import (
    PROTOCOL_VERSION,
    Closed,
    Error,
    Final,
    Finalizing,
    Partial,
    Progress,
    Ready,
    ServerMessage,
    SpeechStarted,
    TranscriptReady,
    UtteranceEnd,
    Word,
)
from .agreement import LocalAgreement
from .progress import FileProgress
from .ring import AudioRing

FEED_SLICE_SAMPLES = SAMPLE_RATE // 2
"""Callers feed audio in slices of at most this many samples, checking `can_accept_audio`."""
_MIN_DECODE_SAMPLES = SAMPLE_RATE // 10
_MIN_SPEECH_AFTER_CUT_SAMPLES = SAMPLE_RATE // 10
"""Speech that goes on less than this past a cut is the tail of the utterance the cut ended (the
VAD frame that straddles the cut), not a new utterance."""
_RING_MARGIN_S = 2.0


class SpeechDetector(Protocol):
    """Marks speech in one stream's audio (Silero's VoiceDetector, or a script in tests)."""

    def receive_audio(self, samples: Samples) -> list[VadEvent]:
        """The next samples of the stream; returns the speech starts and ends they complete."""
        ...


class State(enum.Enum):
    """Where a session is in its life; it only ever moves down this list."""

    STREAMING = "streaming"
    """Audio is taken and decoded."""
    FLUSHING = "flushing"
    """Stop or an error was received: no more audio; what was heard is decoded and committed."""
    FINALIZING = "finalizing"
    """Every final is out; waiting for the stored transcript (`receive_transcript_*`)."""
    CLOSED = "closed"
    """`closed` was emitted; nothing more is emitted."""


@dataclass(frozen=True, slots=True)
class DecodeRequest:
    audio: Samples
    start_samples: int
    end_samples: int
    options: DecodeOptions
    flush: bool
    """Commit everything the result holds."""
    region_ends: tuple[int, ...]
    """Where the speech regions this decode completes end (a catch-up decode may complete several)."""
    answers_finalize: bool
    catching_up: bool = False
    """The session is behind: one hypothesis of this long window commits (see catch_up_margin_s)."""


class _Region:
    """A stretch of speech: [start, end); end is None while speech goes on."""

    __slots__ = ("announced", "end", "start")

    def __init__(self, start: int) -> None:
        self.start = start
        self.end: int | None = None
        self.announced = False
        """Its `speech_started` was sent (then its `utterance_end` will be)."""


class LiveSession:
    """Feed `receive_*`; drain `events_to_send()`; a scheduler calls `take_decode_request()`
    and answers with `receive_decode_result()` or `receive_decode_error()`.
    """

    def __init__(
        self,
        session_id: str,
        settings: StreamSettings,
        detector: SpeechDetector,
        model_name: str,
        input_sample_rate: int,
        language: str | None,
        transcript_id: str | None = None,
        prompt: str | None = None,
        progress_total_s: float | None = None,
        reports_progress: bool = False,
    ) -> None:
        """With a `transcript_id`, `closed` waits for `receive_transcript_*` after the last final
        (unless the client asked not to wait, or the stream ended with an error). `prompt` is the
        decode prompt until words are committed. With `reports_progress` (file replays), `progress`
        events say how much of `progress_total_s` seconds has been processed."""
        self.session_id = session_id
        self.language = language
        self.transcript_id = transcript_id
        self.state = State.STREAMING
        self._prompt = prompt
        self._progress = FileProgress(progress_total_s) if reports_progress else None
        self._wait_for_transcript = transcript_id is not None
        self.finals: list[Word] = []
        """Every final word sent, in order: the live version of the transcript."""
        self._settings = settings
        self._detector = detector
        self._agreement = LocalAgreement(settings.agreement_n, settings.commit_margin_s, settings.settle_s)
        self._step_samples = int(settings.decode_step_ms * SAMPLE_RATE / 1000)
        self._lookahead_samples = int(settings.max_lookahead_s * SAMPLE_RATE)
        self._max_window_samples = int(settings.max_window_s * SAMPLE_RATE)
        self._trim_samples = int(settings.trim_after_s * SAMPLE_RATE)
        self._min_context_samples = int(settings.min_context_s * SAMPLE_RATE)
        self._max_session_samples = int(settings.max_session_s * SAMPLE_RATE)
        self._catch_up_after_samples = int(settings.catch_up_after_s * SAMPLE_RATE)
        self._catch_up_window_samples = int(settings.catch_up_window_s * SAMPLE_RATE)
        self._catch_up_margin_s = settings.catch_up_margin_s
        self._catch_up_margin_samples = int(settings.catch_up_margin_s * SAMPLE_RATE)
        window_s = max(settings.max_window_s, settings.catch_up_window_s)
        ring_s = window_s + settings.max_lookahead_s + _RING_MARGIN_S
        self._ring = AudioRing(int(ring_s * SAMPLE_RATE) + FEED_SLICE_SAMPLES)
        self._regions: deque[_Region] = deque()
        self._window_start = 0
        self._decoded_until = 0
        self._in_flight: DecodeRequest | None = None
        self._finalize_requested = False
        self._last_region_end: int | None = None
        """Where the last region that was flushed and taken off `_regions` ended."""
        self._cut_at: int | None = None
        """Where a cut ended speech whose end the VAD had not reported: whether speech goes on
        after it is not known yet (see receive_cut)."""
        self._pad_samples = settings.speech_pad_ms * SAMPLE_RATE // 1000
        self._end_report_samples = settings.min_silence_ms * SAMPLE_RATE // 1000 + 2 * FRAME_SAMPLES
        """The VAD reports a silence at most this long after it began: min_silence_ms, the frame
        that completes it and a part of a frame it has not seen yet."""
        self.error_code: str | None = None
        """The code of the first error that ended the session, if one did."""
        self.error_message = ""
        self.transcript_failure: str | None = None
        """Why the second pass failed, if it did."""
        self._disconnected = False
        self._seq = 0
        self._events: list[ServerMessage] = []
        self._last_partial: list[Word] = []
        self._emit(
            Ready,
            session_id=session_id,
            protocol=PROTOCOL_VERSION,
            model=model_name,
            sample_rate=input_sample_rate,
            transcript_id=transcript_id,
        )

    # ---- inputs ---------------------------------------------------------------------------------

    @property
    def received_samples(self) -> int:
        return self._ring.end_samples

    @property
    def ended(self) -> bool:
        """Stop or an error was received: audio is no longer taken."""
        return self.state is not State.STREAMING

    @property
    def closed(self) -> bool:
        """`closed` has been emitted: the session is over."""
        return self.state is State.CLOSED

    @property
    def live_finished(self) -> bool:
        """The stream has ended and every final has been emitted: hand it over to be stored."""
        return self.state in (State.FINALIZING, State.CLOSED)

    def can_accept_audio(self) -> bool:
        """False while undecoded speech is `max_lookahead_s` ahead: stop reading, wait for results."""
        if not self._regions:
            return True
        return self.received_samples - self._decoded_until < self._lookahead_samples

    def detect_speech(self, samples: Samples) -> list[VadEvent]:
        """Where speech starts and ends in the next samples: the costly part of taking audio,
        which touches nothing else of the session (a caller may run it on another thread). Pass
        the result to `receive_audio` with the same samples, before detecting in the next ones."""
        return self._detector.receive_audio(samples)

    def receive_audio(self, samples: Samples, speech: list[VadEvent] | None = None) -> None:
        """The next samples of the stream (16 kHz mono), at most FEED_SLICE_SAMPLES at a time,
        with what `detect_speech` found in them (None: detected here)."""
        if self.ended:
            return  # the stream has ended (stop or error): later audio is dropped
        if samples.size > FEED_SLICE_SAMPLES:
            raise ValueError("feed audio in slices of at most FEED_SLICE_SAMPLES")
        if self.received_samples + samples.size > self._max_session_samples:
            limit_s = self._settings.max_session_s
            self.receive_error(SessionTooLong.code, f"the stream is longer than the {limit_s:.0f} s limit")
            return
        self._ring.write(samples)
        for event in self.detect_speech(samples) if speech is None else speech:
            if isinstance(event, SpeechStart):
                self._cut_at = None  # (a VAD starts only after an end: nothing can be waiting)
                self._open_region(max(event.at_samples, self._ring.start_samples))
            elif isinstance(event, SpeechEnd):
                self._receive_speech_end(event.at_samples)
        if self._cut_at is not None and self.received_samples >= (
            self._cut_at + _MIN_SPEECH_AFTER_CUT_SAMPLES + self._end_report_samples
        ):
            self._open_region(self._cut_at)  # no end came in time: speech goes on after the cut
            self._cut_at = None
        self._report_progress()

    def _receive_speech_end(self, at_samples: int) -> None:
        """The VAD's end of the speech going on, reported min_silence_ms late and padded by
        speech_pad_ms; after a cut, it says whether speech went on past the cut."""
        if self._regions and self._regions[-1].end is None:
            region = self._regions[-1]
            region.end = max(region.start, min(at_samples, self.received_samples))
        elif self._cut_at is not None:
            cut, self._cut_at = self._cut_at, None
            if at_samples - self._pad_samples >= cut + _MIN_SPEECH_AFTER_CUT_SAMPLES:
                self._open_region(cut).end = min(at_samples, self.received_samples)

    @property
    def waiting_for_audio(self) -> bool:
        """Streaming, with no decode in flight and none due before more audio comes."""
        if self.state is not State.STREAMING or self._in_flight is not None or self._finalize_requested:
            return False
        ended = any(region.end is not None for region in self._regions)
        return not ended and self._undecoded_speech() < self._step_samples

    def receive_finalize(self) -> None:
        """Commit everything heard so far, without waiting for agreement or silence."""
        if self._regions:
            self._finalize_requested = True

    @property
    def speech_start_s(self) -> float | None:
        """Where the speech going on now started (the `at` of its `speech_started`), or None in
        silence (and after a cut, until speech is known to go on past it: see receive_cut)."""
        if self._regions and self._regions[-1].end is None:
            return round(self._regions[-1].start / SAMPLE_RATE, 3)
        return None

    def receive_cut(self) -> float | None:
        """End the utterance here, as if silence began (an OpenAI Realtime commit): speech going
        on ends at the audio received so far, is decoded once more and committed, and gets its
        `utterance_end`. Speech after the cut is a new utterance only once the VAD says it went on
        past the cut: its end comes later, or has not come a silence's length after the cut (or,
        when the stream ends before either, its decode has words); then it gets its
        `speech_started` (`at` the cut). Speech that ended just before the cut, whose end the VAD
        reports late, leaves no utterance behind. A cut again before the VAD could tell makes the
        audio since the last cut an utterance of its own. Returns the `at` of the `utterance_end`
        after which every word heard before the cut has been sent (it may have been sent
        already), or None if no speech was heard yet."""
        if self.state is State.STREAMING:
            if self._regions and self._regions[-1].end is None:
                self._regions[-1].end = self.received_samples
                self._cut_at = self.received_samples
            elif self._cut_at is not None and self.received_samples > self._cut_at:
                self._open_region(self._cut_at).end = self.received_samples
                self._cut_at = self.received_samples
        ended = [region.end for region in self._regions if region.end is not None]
        last_end = ended[-1] if ended else self._last_region_end
        return None if last_end is None else round(last_end / SAMPLE_RATE, 3)

    def receive_decode_settings(self, language: str | None, prompt: str | None) -> None:
        """The language and prompt of the decodes asked for from now on (the caller checked the
        language); words already committed stay as they are."""
        self.language = language
        self._prompt = prompt

    @property
    def finalize_pending(self) -> bool:
        """A `receive_finalize` waits for the flush that answers it (False once its finals are
        emitted, and at once when nothing was heard to commit)."""
        return self._finalize_requested

    def receive_error(self, code: str, message: str, wait_for_transcript: bool = False) -> None:
        """Bad input: report it, then stop (what was heard is still flushed and stored); `closed`
        waits for the transcript only if asked (a file damaged part-way still gets one)."""
        if self.closed:
            return
        if self.error_code is None:
            self.error_code, self.error_message = code, message
        self._emit(Error, code=code, message=message)
        self.receive_stop(wait_for_transcript)

    def receive_disconnect(self) -> None:
        """The client went away without `stop`: what was heard is flushed and kept, and
        `cut_short` says so."""
        if self.state is State.STREAMING:
            self._disconnected = True
        self.receive_stop(wait_for_transcript=False)

    @property
    def cut_short(self) -> str | None:
        """Why the stream ended before the client's `stop` (a lost connection, an error), or None."""
        if self.error_code is not None:
            return f"{self.error_code}: {self.error_message}"
        if self._disconnected:
            return "the connection was lost before the client sent stop"
        return None

    def receive_stop(self, wait_for_transcript: bool = True) -> None:
        """End of stream: flush what is left, then `closed` (after the transcript, if waiting)."""
        if not wait_for_transcript:
            self._wait_for_transcript = False
        if self.state is State.STREAMING:
            self.state = State.FLUSHING
            if self._regions and self._regions[-1].end is None:
                self._regions[-1].end = self.received_samples
            elif self._cut_at is not None and self.received_samples > self._cut_at:
                # The VAD cannot tell any more whether speech went on after the cut: the decode
                # does (no words, no utterance).
                self._open_region(self._cut_at, announce=False).end = self.received_samples
            self._cut_at = None
        self._advance()

    # ---- decoding -------------------------------------------------------------------------------

    def take_decode_request(self) -> DecodeRequest | None:
        """The decode to run now over the newest audio, or None; at most one is ever in flight.
        A session more than `catch_up_after_s` behind asks for long catch-up windows instead."""
        while self._in_flight is None and self._regions and not self.closed:
            region = self._regions[0]
            catching_up = self._undecoded_speech() >= self._catch_up_after_samples
            if catching_up:
                start, end, region_ends = self._catch_up_window()
            else:
                end = self._heard_end(region)
                region_ends = () if region.end is None else (region.end,)
                waiting = not (region_ends or self._finalize_requested)
                if waiting and end - self._decoded_until < self._step_samples:
                    return None
                start = max(region.start, min(self._window_start, end - self._min_context_samples))
            flush = bool(region_ends) or (self._finalize_requested and end == self._heard_end(region))
            # A finalize is answered by the flush that reaches the end of everything heard.
            answers_finalize = (
                flush and self._finalize_requested and end >= self._heard_end(self._regions[-1])
            )
            if end - self._window_start < _MIN_DECODE_SAMPLES:
                if not flush:
                    return None
                self._finish_flush(self._agreement.tentative, end, end, region_ends, answers_finalize)
                continue
            # A long window is decoded without the recent text as its prompt: with it, tiny.en
            # skipped whole sentences of a 25 s window (its timestamps jumped past them).
            recent = (
                ""
                if catching_up
                else self._agreement.recent_text(start / SAMPLE_RATE, self._settings.prompt_chars)
            )
            self._in_flight = DecodeRequest(
                audio=self._ring.read(start, end),
                start_samples=start,
                end_samples=end,
                options=DecodeOptions(self.language, recent or self._prompt, self._settings.beam_size),
                flush=flush,
                region_ends=region_ends,
                answers_finalize=answers_finalize,
                catching_up=catching_up,
            )
            self._decoded_until = max(self._decoded_until, end)
            return self._in_flight
        return None

    def _heard_end(self, region: _Region) -> int:
        return region.end if region.end is not None else self.received_samples

    def _undecoded_speech(self) -> int:
        """Samples of speech received but not decoded yet: how far behind the session is."""
        return sum(
            max(0, self._heard_end(region) - max(self._decoded_until, region.start))
            for region in self._regions
        )

    def _catch_up_window(self) -> tuple[int, int, tuple[int, ...]]:
        """From the window's start, as many whole regions as fit in `catch_up_window_s` (the
        silence between them included), else as much of the first one as fits."""
        start = max(self._regions[0].start, self._window_start)
        limit = start + self._catch_up_window_samples
        region_ends: list[int] = []
        for region in self._regions:
            if region.end is None or region.end > limit:
                break
            region_ends.append(region.end)
        if region_ends:
            return start, region_ends[-1], tuple(region_ends)
        return start, min(self._heard_end(self._regions[0]), limit), ()

    def receive_decode_result(self, request: DecodeRequest, asr_words: list[AsrWord]) -> None:
        self._in_flight = None
        words = _to_stream_time(asr_words, request.start_samples, request.end_samples)
        start_s, end_s = request.start_samples / SAMPLE_RATE, request.end_samples / SAMPLE_RATE
        if request.flush:
            self._finish_flush(
                words,
                request.start_samples,
                request.end_samples,
                request.region_ends,
                request.answers_finalize,
            )
            return
        if request.catching_up:
            committed = self._agreement.receive_alone(words, start_s, end_s, self._catch_up_margin_s)
            self._emit_final(committed)
            self._move_window_after_catch_up(request.end_samples, bool(committed))
            self._trim_window(request.end_samples)
        else:
            self._emit_final(self._agreement.receive_hypothesis(words, start_s, end_s))
            self._trim_window(request.end_samples)
        self._emit_partial(self._agreement.tentative)
        self._report_progress()

    def receive_decode_error(self, reason: str) -> None:
        """The model failed: say so and close; finals already sent stay valid."""
        self._in_flight = None
        self._regions.clear()  # nothing more can be decoded
        self._cut_at = None
        self.receive_error(DecodeFailed.code, reason)

    def receive_transcript_progress(self, progress: float) -> None:
        if self.state is State.FINALIZING and self._wait_for_transcript:
            total_s = round(self.received_samples / SAMPLE_RATE, 3)
            self._emit(
                Finalizing, progress=progress, processed_s=round(progress * total_s, 3), total_s=total_s
            )

    def receive_transcript_ready(self, version: int) -> None:
        if self.state is State.FINALIZING and self._wait_for_transcript and self.transcript_id is not None:
            self._emit(TranscriptReady, transcript_id=self.transcript_id, version=version)
        self._wait_for_transcript = False
        self._advance()

    def receive_transcript_failed(self, message: str) -> None:
        """The second pass failed: say so; the live finals already sent are stored as version 1."""
        self.transcript_failure = message
        if self.state is State.FINALIZING and self._wait_for_transcript:
            self._emit(Error, code=FinalizeFailed.code, message=message)
        self._wait_for_transcript = False
        self._advance()

    # ---- outputs --------------------------------------------------------------------------------

    def events_to_send(self) -> list[ServerMessage]:
        events, self._events = self._events, []
        return events

    # ---- internals ------------------------------------------------------------------------------

    def _open_region(self, start: int, announce: bool = True) -> _Region:
        """A region from `start`, announced (its `speech_started`) now, or before its first words."""
        if not self._regions:
            self._window_start = start
            self._decoded_until = max(self._decoded_until, start)
        region = _Region(start)
        self._regions.append(region)
        if announce:
            self._announce(region)
        return region

    def _announce(self, region: _Region) -> None:
        region.announced = True
        self._emit(SpeechStarted, at=round(region.start / SAMPLE_RATE, 3))

    def _finish_flush(
        self,
        words: list[Word],
        audio_start: int,
        end: int,
        region_ends: tuple[int, ...],
        answers_finalize: bool,
    ) -> None:
        """Commit every word of the decode; each completed region gets its own finals and its
        `utterance_end` (one not announced yet is announced before its words; without words, it
        ends unreported)."""
        committed = self._agreement.flush(words, audio_start / SAMPLE_RATE)
        for index, group in enumerate(_split_at(committed, region_ends)):
            if group and self._regions and not self._regions[0].announced:
                self._announce(self._regions[0])
            self._emit_final(group)
            if index == 0:
                self._emit_partial([])
            if index < len(region_ends):
                region = self._regions.popleft()
                if region.announced:
                    self._last_region_end = region_ends[index]
                    self._emit(UtteranceEnd, at=round(region_ends[index] / SAMPLE_RATE, 3))
        if answers_finalize:
            self._finalize_requested = False
        if region_ends and self._regions:
            self._window_start = self._regions[0].start
            self._decoded_until = max(self._decoded_until, self._window_start)
        elif not region_ends:
            self._window_start = end
        self._advance()

    def _move_window_after_catch_up(self, decoded_end: int, committed: bool) -> None:
        """Start the next window at the last committed word; a window that committed nothing is
        left behind but for its margin (so no window is ever decoded again and again)."""
        if committed:
            committed_end = int(self._agreement.committed_end_s * SAMPLE_RATE)
            self._window_start = max(self._window_start, min(committed_end, decoded_end))
        else:
            self._window_start = max(self._window_start, decoded_end - self._catch_up_margin_samples)

    def _trim_window(self, decoded_end: int) -> None:
        committed_end = int(self._agreement.committed_end_s * SAMPLE_RATE)
        if decoded_end - self._window_start > self._trim_samples and committed_end > self._window_start:
            self._window_start = min(committed_end, decoded_end)
        if decoded_end - self._window_start > self._max_window_samples:
            cut = decoded_end - self._trim_samples
            self._emit_final(self._agreement.commit_until(cut / SAMPLE_RATE))
            self._window_start = cut

    @property
    def processed_samples(self) -> int:
        """Audio the live pass is done with: all received, less speech still waiting for a decode."""
        if not self._regions:
            return self.received_samples
        return min(self.received_samples, max(self._regions[0].start, self._decoded_until))

    def _report_progress(self) -> None:
        """A `progress` event per step of processed audio (file replays only)."""
        if self._progress is not None and self.state in (State.STREAMING, State.FLUSHING):
            self._emit_progress(self._progress.receive_processed(self.processed_samples))

    def _emit_progress(self, report: tuple[float, float | None] | None) -> None:
        if report is not None:
            self._emit(Progress, processed_s=report[0], total_s=report[1])

    def _advance(self) -> None:
        """Move on once the current state's work is done: FLUSHING ends when nothing is left to
        decode (with a last `progress`), FINALIZING when the transcript is no longer awaited."""
        if self.state is State.FLUSHING and not self._regions and self._in_flight is None:
            self.state = State.FINALIZING
            if self.received_samples == 0:
                self._wait_for_transcript = False  # no audio: no transcript is kept
            if self._progress is not None:
                self._emit_progress(self._progress.receive_finished(self.received_samples))
        else:
            self._report_progress()
        if self.state is State.FINALIZING and not self._wait_for_transcript:
            self.state = State.CLOSED
            self._emit(
                Closed,
                audio_s=round(self.received_samples / SAMPLE_RATE, 3),
                words=self._agreement.committed_count,
            )

    def _emit_final(self, words: list[Word]) -> None:
        if words:
            self.finals.extend(words)
            self._emit(Final, words=words)

    def _emit_partial(self, words: list[Word]) -> None:
        if words != self._last_partial:
            self._last_partial = list(words)
            self._emit(Partial, words=self._last_partial)

    def _emit(self, kind: type[ServerMessage], **fields: Any) -> None:
        self._seq += 1
        self._events.append(kind(seq=self._seq, **fields))


def _to_stream_time(words: list[AsrWord], start_samples: int, end_samples: int) -> list[Word]:
    offset_s = start_samples / SAMPLE_RATE
    limit_s = end_samples / SAMPLE_RATE
    return [
        Word(
            text=word.text,
            start=min(offset_s + word.start_s, limit_s),
            end=min(offset_s + word.end_s, limit_s),
            confidence=word.probability,
        )
        for word in words
    ]


def _split_at(words: list[Word], region_ends: tuple[int, ...]) -> list[list[Word]]:
    """The words of each region, by start time (the last region takes any that spill past its
    end), or all of them in one list when no region ends."""
    groups: list[list[Word]] = []
    for region_end in region_ends[:-1]:
        count = sum(1 for word in words if word.start < region_end / SAMPLE_RATE)
        groups.append(words[:count])
        words = words[count:]
    groups.append(words)
    return groups
