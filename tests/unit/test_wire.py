import msgspec
import pytest

from streamscribe import wire


def test_start_fields_are_optional_with_sane_defaults() -> None:
    start = wire.decode_client('{"type":"start"}')
    assert start == wire.Start(sample_rate=16000, encoding="pcm_s16le", channels=1)


def test_unknown_fields_and_types_are_rejected() -> None:
    with pytest.raises(msgspec.ValidationError):
        wire.decode_client('{"type":"start","bogus":1}')
    with pytest.raises(msgspec.ValidationError):
        wire.decode_client('{"type":"pause"}')
    with pytest.raises(msgspec.ValidationError):
        wire.decode_client('{"type":"start","sample_rate":"fast"}')


def test_server_events_round_trip_with_their_wire_names() -> None:
    event = wire.Final(seq=4, words=[wire.Word(text="so", start=0.5, end=0.7, confidence=0.9)])
    encoded = wire.encode(event)
    assert msgspec.json.decode(encoded)["type"] == "final"
    assert wire.decode_server(encoded) == event


def test_schema_names_every_message() -> None:
    schema = wire.json_schema()
    names = set(schema["$defs"])
    expected = {"Start", "Finalize", "Stop", "Ready", "SpeechStarted", "Partial", "Final"}
    assert expected | {"UtteranceEnd", "Error", "Closed", "Word"} <= names
    assert schema["protocol"] == wire.PROTOCOL_VERSION


def test_schema_describes_the_rest_bodies_too() -> None:
    rest = wire.json_schema()["rest"]
    assert set(rest) == {
        "ErrorBody",
        "UploadAccepted",
        "WebRtcAnswer",
        "FinalizeAnswer",
        "Health",
        "IceServers",
    }
    assert rest["ErrorBody"] == {"$ref": "#/$defs/ErrorBody"}


def test_rest_bodies_keep_their_wire_names() -> None:
    body = wire.ErrorBody(
        error=wire.ErrorDetail(code="overloaded", message="retry", type="invalid_request_error")
    )
    assert msgspec.json.decode(wire.encode(body)) == {
        "error": {"code": "overloaded", "message": "retry", "type": "invalid_request_error"}
    }
    queued = wire.FinalizeAnswer(transcript_id="t", state="queued")
    assert msgspec.json.decode(wire.encode(queued)) == {"transcript_id": "t", "state": "queued"}, (
        "no version yet"
    )
