"""Every HTTP endpoint under generated requests: uploads (raw and multipart, with any options,
headers, filenames and bodies), the OpenAI-compatible endpoint, transcript REST with any ids
and parameters, re-runs with any JSON, tokens, event following and WebRTC offers. Each is
answered in time, and every refusal is JSON with a documented code."""

from __future__ import annotations

import asyncio
import io
import json
import struct
import wave
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamscribe.audio import to_pcm_s16le

from .conftest import FuzzServer, fuzz_settings, request
from .strategies import deeply_nested, header_text, ids, json_values, short_text, weird_numbers

UPLOAD_OPTIONS = ["language", "model", "diarize", "num_speakers", "min_speakers", "max_speakers", "prompt",
                  "speed", "wait", "format", "audio_retention_h"]  # fmt: skip
OPENAI_OPTIONS = ["model", "language", "prompt", "response_format", "timestamp_granularities[]", "stream",
                  "speed", "audio_retention_h", "temperature"]  # fmt: skip
option_values = (
    short_text | weird_numbers.map(str) | st.sampled_from(["true", "false", "max", "realtime", "srt", "word"])
)


def options(names: list[str]) -> st.SearchStrategy[dict[str, str]]:
    return st.dictionaries(st.sampled_from(names) | st.text(max_size=12), option_values, max_size=5)


def wav_bytes(samples: int, declared_frames: int | None = None, rate: int = 16000) -> bytes:
    """A real WAV of a tone; with `declared_frames`, its header claims that many (a lie)."""
    tone = (0.1 * np.sin(np.arange(samples) / 10)).astype(np.float32)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(to_pcm_s16le(tone))
    data = bytearray(buffer.getvalue())
    if declared_frames is not None:
        data[40:44] = struct.pack("<I", min(declared_frames * 2, 2**32 - 1))
        data[4:8] = struct.pack("<I", min(declared_frames * 2 + 36, 2**32 - 1))
    return bytes(data)


file_bodies = (
    st.binary(max_size=4000)
    | st.builds(
        wav_bytes, st.integers(0, 16000), st.none() | st.integers(0, 2**31), st.sampled_from([8000, 16000, 1])
    )
    | st.builds(lambda cut: wav_bytes(8000)[:cut], st.integers(0, 16000))
)
filenames = st.text(max_size=40) | st.sampled_from(
    ["../../etc/passwd", "a.wav\x00.exe", "", ".", "con", "x" * 300]
)
content_types = st.sampled_from(["audio/wav", "audio/mpeg", "application/octet-stream", "text/plain",
                                 "application/x-www-form-urlencoded", "application/json", ""]) | header_text  # fmt: skip
extra_headers = st.dictionaries(
    st.sampled_from(
        ["Content-Disposition", "Content-Encoding", "Transfer-Encoding", "Origin", "Accept", "X-Any"]
    ),
    header_text,
    max_size=2,
)


BOUNDARY = "fuzz-boundary-7f3a"


def multipart(fields: list[tuple[str, str]], file_name: str | None, file_body: bytes) -> bytes:
    """A multipart/form-data body written by hand: names, values and the filename go in as they
    are (quotes, control characters and lone surrogates included)."""
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode(
            errors="surrogatepass"
        )
        for name, value in fields
    ]
    if file_name is not None:
        head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{file_name}"\r\n\r\n'
        parts.append(head.encode(errors="surrogatepass") + file_body + b"\r\n")
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


FORM = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def headers_for(server: FuzzServer, extra: dict[str, str]) -> dict[str, str]:
    return {**server.auth, **{name: value for name, value in extra.items() if name != "Transfer-Encoding"}}


@fuzz_settings(250)
@given(query=options(UPLOAD_OPTIONS), body=file_bodies, content_type=content_types, extra=extra_headers)
def test_raw_uploads(
    fuzz_server: FuzzServer, query: dict, body: bytes, content_type: str, extra: dict
) -> None:
    headers = {**headers_for(fuzz_server, extra), "Content-Type": content_type}
    context = (query, headers, body[:64])
    run(
        request(
            "POST", fuzz_server.url + "/v1/transcriptions", context, params=query, data=body, headers=headers
        )
    )


ENDPOINTS = [("/v1/transcriptions", UPLOAD_OPTIONS), ("/v1/audio/transcriptions", OPENAI_OPTIONS)]


@fuzz_settings(400)
@given(
    endpoint=st.sampled_from(ENDPOINTS).flatmap(
        lambda chosen: st.tuples(
            st.just(chosen[0]),
            st.lists(st.tuples(st.sampled_from(chosen[1]) | st.text(max_size=10), option_values), max_size=6),
        )
    ),
    file_name=st.none() | filenames,
    body=file_bodies,
)
def test_multipart_uploads(
    fuzz_server: FuzzServer, endpoint: tuple[str, list], file_name: str | None, body: bytes
) -> None:
    """Our upload endpoint and the OpenAI-compatible one, with any fields, filename and file."""
    path, fields = endpoint
    form = multipart(fields, file_name, body)
    headers = {**fuzz_server.auth, **FORM}
    run(
        request(
            "POST", fuzz_server.url + path, (path, fields, file_name, body[:64]), data=form, headers=headers
        )
    )


REST = [
    ("GET", "/v1/transcripts/{id}"),
    ("GET", "/v1/transcripts/{id}/versions"),
    ("GET", "/v1/transcripts/{id}/versions/{n}"),
    ("GET", "/v1/transcripts/{id}/audio"),
    ("DELETE", "/v1/transcripts/{id}"),
    ("GET", "/v1/transcripts"),
    ("GET", "/v1/sessions/{id}/events"),
    ("DELETE", "/v1/webrtc/sessions/{id}"),
    ("GET", "/v1/webrtc/ice-servers"),
    ("PUT", "/v1/transcripts/{id}"),
    ("GET", "/v1/{id}"),
]


@fuzz_settings(400)
@given(
    route=st.sampled_from(REST),
    own=st.booleans(),
    some_id=ids,
    version=weird_numbers.map(str) | short_text,
    query=st.dictionaries(st.sampled_from(["format", "limit", "before", "after", "token", "speaker"]) | st.text(max_size=8),
                          option_values, max_size=3),
    extra=extra_headers,
)  # fmt: skip
def test_rest_endpoints(
    fuzz_server: FuzzServer,
    route: tuple[str, str],
    own: bool,
    some_id: str,
    version: str,
    query: dict,
    extra: dict,
) -> None:
    method, template = route
    if method == "DELETE" and own:
        own = False  # the transcript the other cases read stays
    path = template.replace("{id}", fuzz_server.transcript_id if own else some_id).replace("{n}", version)
    url = fuzz_server.url + path
    run(request(method, url, (method, path, query), params=query, headers=headers_for(fuzz_server, extra)))


@fuzz_settings(150)
@given(
    body=json_values,
    nested=st.none() | deeply_nested,
    as_text=st.booleans(),
    content_type=st.sampled_from(["application/json", "text/plain"]),
)
def test_re_runs_with_any_json(
    fuzz_server: FuzzServer, body: Any, nested: str | None, as_text: bool, content_type: str
) -> None:
    url = f"{fuzz_server.url}/v1/transcripts/{fuzz_server.transcript_id}/finalize"
    data = nested or (json.dumps(body) if not as_text else str(body))
    headers = {**fuzz_server.auth, "Content-Type": content_type}
    run(request("POST", url, body, data=data, headers=headers))


@fuzz_settings(150)
@given(
    body=json_values | st.fixed_dictionaries({"ttl_s": weird_numbers | json_values}),
    nested=st.none() | deeply_nested,
    bearer=st.booleans(),
)
def test_tokens_with_any_body(fuzz_server: FuzzServer, body: Any, nested: str | None, bearer: bool) -> None:
    headers = {"Content-Type": "application/json"}
    headers |= fuzz_server.auth if bearer else {"Authorization": f"Token {fuzz_server.key}"}
    data = nested or json.dumps(body)
    status, _kind, answer = run(
        request("POST", fuzz_server.url + "/v1/tokens", body, data=data, headers=headers)
    )
    if status == 201:
        assert json.loads(answer)["token"].startswith("tk-ss-")


@pytest.fixture(scope="module")
def real_offer() -> str:
    """A real SDP offer of an aiortc peer with an audio track and a data channel."""
    from aiortc import RTCPeerConnection

    async def make() -> str:
        peer = RTCPeerConnection()
        peer.addTransceiver("audio", direction="sendonly")
        peer.createDataChannel("events")
        await peer.setLocalDescription(await peer.createOffer())
        sdp = peer.localDescription.sdp
        await peer.close()
        return sdp

    return str(run(make()))


def mangle(sdp: str, dropped: set[int], replaced: dict[int, str]) -> str:
    lines = sdp.splitlines()
    return "\r\n".join(replaced.get(index, line) for index, line in enumerate(lines) if index not in dropped)


@fuzz_settings(120)
@given(
    dropped=st.sets(st.integers(0, 60), min_size=1, max_size=6),
    replaced=st.dictionaries(st.integers(0, 60), header_text, max_size=4),
    fields=st.dictionaries(st.sampled_from(["language", "prompt", "audio_retention_h", "type", "x"]), json_values, max_size=3),
    whip=st.booleans(),
    nested=st.none() | deeply_nested,
)  # fmt: skip
def test_webrtc_offers(
    fuzz_server: FuzzServer, real_offer: str, dropped: set, replaced: dict, fields: dict, whip: bool,
    nested: str | None,
) -> None:  # fmt: skip
    sdp = mangle(real_offer, dropped, replaced)
    url = fuzz_server.url + "/v1/webrtc/offer"
    if nested:
        headers = {**fuzz_server.auth, "Content-Type": "application/json"}
        status, _kind, _body = run(request("POST", url, "nested", data=nested, headers=headers))
    elif whip:
        headers = {**fuzz_server.auth, "Content-Type": "application/sdp"}
        query = {name: str(value) for name, value in fields.items()}
        status, _kind, _body = run(
            request("POST", url, (dropped, replaced), data=sdp, params=query, headers=headers)
        )
    else:
        status, _kind, _body = run(
            request("POST", url, (dropped, replaced), json={"sdp": sdp, **fields}, headers=fuzz_server.auth)
        )
    assert status in (200, 201) or status >= 400


@fuzz_settings(150)
@given(
    content_type=st.sampled_from(["multipart/form-data", f"multipart/form-data; boundary={BOUNDARY}",
                                  "multipart/form-data; boundary=", "multipart/mixed; boundary=x"]) | header_text.map(
        lambda text: "multipart/" + text),
    body=st.binary(max_size=2000) | st.builds(multipart, st.just([("a", "b")]), filenames, file_bodies).map(
        lambda form: form[: len(form) // 2]),
)  # fmt: skip
def test_malformed_forms(fuzz_server: FuzzServer, content_type: str, body: bytes) -> None:
    headers = {**fuzz_server.auth, "Content-Type": content_type}
    run(
        request(
            "POST",
            fuzz_server.url + "/v1/transcriptions",
            (content_type, body[:64]),
            data=body,
            headers=headers,
        )
    )
