"""Errors as clients see them (errors.py), pure logic."""

from streamscribe import client
from streamscribe.errors import ERROR_CODES, ConnectionLost, UnknownModel, error_for


def test_a_close_reason_is_cut_between_characters() -> None:
    """Found by the fuzz suite: a model name of multibyte characters made the reason end inside
    one, an invalid close frame that the client saw as 1006."""
    error = UnknownModel("this server serves 'tiny.en', not '" + "\U00018cd6" * 40 + "'")
    reason = error.close_reason
    assert len(reason) <= 120 and reason.decode() == error.message.encode()[: len(reason)].decode()


def test_the_clients_connection_lost_is_one_of_the_errors_known_by_code() -> None:
    """The SDKs' own code (the Python ConnectionLost, the browser's `error` event) maps back too."""
    assert "connection_lost" in ERROR_CODES
    error = error_for("connection_lost", "not back within 30 s")
    assert isinstance(error, ConnectionLost) and error.message == "not back within 30 s"
    assert client.ConnectionLost is ConnectionLost
