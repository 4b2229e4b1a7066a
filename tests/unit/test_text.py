"""One normal form for words: agreement, the merge of passes and WER all compare with it."""

from streamscribe.text import word_key, word_keys


def test_a_word_key_ignores_case_and_punctuation_but_keeps_apostrophes() -> None:
    assert word_key("Americans,") == word_key("americans") == "americans"
    assert word_key("don't") == "don't"
    assert word_key("students'") == "students'"
    assert word_key("...") == "", "a punctuation-only piece is no word"
    assert word_key("Café") == "café"


def test_running_text_splits_at_everything_but_letters_digits_and_apostrophes() -> None:
    assert word_keys("Twenty-five don't!  U.S. and/or\u2014yes 3.5 .") == [
        "twenty", "five", "don't", "u", "s", "and", "or", "yes", "3", "5",
    ]  # fmt: skip
