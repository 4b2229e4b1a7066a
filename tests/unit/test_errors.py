"""Errors as clients see them (errors.py), pure logic."""

from streamscribe.errors import UnknownModel


def test_a_close_reason_is_cut_between_characters() -> None:
    """Found by the fuzz suite: a model name of multibyte characters made the reason end inside
    one, an invalid close frame that the client saw as 1006."""
    error = UnknownModel("this server serves 'tiny.en', not '" + "\U00018cd6" * 40 + "'")
    reason = error.close_reason
    assert len(reason) <= 120 and reason.decode() == error.message.encode()[: len(reason)].decode()
