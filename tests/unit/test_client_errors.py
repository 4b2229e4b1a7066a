"""The Python client turns a refused request into the server's own error type (client/http.py)."""

from streamscribe.client.http import refusal
from streamscribe.errors import InvalidRequest, StreamscribeError, UploadTooLarge
from streamscribe.wire import ErrorBody, ErrorDetail, encode


def test_the_servers_error_body_becomes_its_error() -> None:
    body = encode(ErrorBody(error=ErrorDetail(code="upload_too_large", message="over 1 MiB")))
    error = refusal(413, body)
    assert isinstance(error, UploadTooLarge) and error.message == "over 1 MiB" and error.http_status == 413
    assert isinstance(
        refusal(400, encode(ErrorBody(error=ErrorDetail(code="invalid_request", message="x")))),
        InvalidRequest,
    )


def test_a_body_that_is_not_the_servers_keeps_the_status_and_says_what_came() -> None:
    error = refusal(502, b"<html><body>Bad Gateway</body></html>")
    assert type(error) is StreamscribeError
    assert error.message.startswith("HTTP 502: <html><body>Bad Gateway")
